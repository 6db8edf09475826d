// User networking through libslirp (slirp_backend.hpp): the stack's configuration, the C
// callbacks libslirp drives us through, and the backend thread's poll loop.
//
// Threads: see slirp_backend.hpp. Every libslirp call holds library_mutex().
#include "devices/net/slirp_backend.hpp"

#include <arpa/inet.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "base/clock.hpp"

extern "C" {
#include <libslirp.h>
}

namespace dvmm::devices {
namespace {

// QEMU's user network.
constexpr u32 kNetwork = 0x0a000200;     // 10.0.2.0
constexpr u32 kNetmask = 0xffffff00;     // /24
constexpr u32 kHost = 0x0a000202;        // 10.0.2.2: the gateway, and the host's 127.0.0.1
constexpr u32 kNameserver = 0x0a000203;  // 10.0.2.3
constexpr u32 kDhcpStart = 0x0a00020f;   // 10.0.2.15: the guest's address
constexpr const char* kPrefix6 = "fec0::";
constexpr u8 kPrefix6Length = 64;
constexpr const char* kHost6 = "fec0::2";
constexpr const char* kNameserver6 = "fec0::3";

// libslirp has process-wide state (its clock `curtime`), so calls from the threads of two
// backends must not overlap either.
std::mutex& library_mutex() {
  static std::mutex mutex;
  return mutex;
}

in_addr ipv4(u32 host_order) {
  in_addr address{};
  address.s_addr = htonl(host_order);
  return address;
}

in6_addr ipv6(const char* text) {
  in6_addr address{};
  inet_pton(AF_INET6, text, &address);
  return address;
}

std::string ipv4_to_string(in_addr address) {
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &address, text, sizeof(text));
  return text;
}

std::string errno_text(int error) {
  return std::strerror(error);
}

}  // namespace

// The SlirpCb table: libslirp calls these with the backend as `opaque`.
struct SlirpCallbacks {
  static SlirpBackend& backend(void* opaque) { return *static_cast<SlirpBackend*>(opaque); }

  // A frame for the guest.
  static ssize_t send_packet(const void* data, size_t size, void* opaque) {
    SlirpBackend& self = backend(opaque);
    if (self.receive_) self.receive_(std::span<const u8>(static_cast<const u8*>(data), size));
    return static_cast<ssize_t>(size);
  }

  static void guest_error(const char* message, void*) {
    std::fprintf(stderr, "dvmm: user network: guest error: %s\n", message);
  }

  static int64_t clock_get_ns(void*) { return static_cast<int64_t>(monotonic_ns()); }

  static void* timer_new(SlirpTimerCb callback, void* callback_opaque, void* opaque) {
    auto timer = std::make_unique<SlirpBackend::Timer>();
    timer->callback = callback;
    timer->opaque = callback_opaque;
    backend(opaque).timers_.push_back(std::move(timer));
    return backend(opaque).timers_.back().get();
  }

  static void timer_free(void* timer, void* opaque) {
    std::erase_if(backend(opaque).timers_, [timer](const std::unique_ptr<SlirpBackend::Timer>& t) {
      return t.get() == timer;
    });
  }

  static void timer_mod(void* timer, int64_t expire_ms, void*) {
    static_cast<SlirpBackend::Timer*>(timer)->expire_ms = expire_ms;
  }

  // For hosts whose poll loop registers descriptors once (Windows); ours fills every round.
  static void register_poll_fd(int, void*) {}
  static void unregister_poll_fd(int, void*) {}

  // A socket can take more data: poll again.
  static void notify(void* opaque) { backend(opaque).wake(); }

  static int add_poll(int fd, int events, void* opaque) {
    short poll_events = 0;
    if (events & SLIRP_POLL_IN) poll_events |= POLLIN;
    if (events & SLIRP_POLL_OUT) poll_events |= POLLOUT;
    if (events & SLIRP_POLL_PRI) poll_events |= POLLPRI;
    // POLLERR and POLLHUP are always reported.
    std::vector<pollfd>& fds = backend(opaque).poll_fds_;
    fds.push_back(pollfd{.fd = fd, .events = poll_events, .revents = 0});
    return static_cast<int>(fds.size() - 1);
  }

  static int get_revents(int index, void* opaque) {
    const std::vector<pollfd>& fds = backend(opaque).poll_fds_;
    if (index < 0 || static_cast<std::size_t>(index) >= fds.size()) return 0;
    const short revents = fds[static_cast<std::size_t>(index)].revents;
    int events = 0;
    if (revents & POLLIN) events |= SLIRP_POLL_IN;
    if (revents & POLLOUT) events |= SLIRP_POLL_OUT;
    if (revents & POLLPRI) events |= SLIRP_POLL_PRI;
    if (revents & POLLERR) events |= SLIRP_POLL_ERR;
    if (revents & POLLHUP) events |= SLIRP_POLL_HUP;
    return events;
  }

  static constexpr SlirpCb kTable = {
      .send_packet = send_packet,
      .guest_error = guest_error,
      .clock_get_ns = clock_get_ns,
      .timer_new = timer_new,
      .timer_free = timer_free,
      .timer_mod = timer_mod,
      .register_poll_fd = register_poll_fd,
      .unregister_poll_fd = unregister_poll_fd,
      .notify = notify,
      .init_completed = nullptr,
      .timer_new_opaque = nullptr,  // timer_new is used instead
  };
};

SlirpBackend::SlirpBackend(const std::vector<HostForward>& forwards) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw NetError("user network: eventfd: " + errno_text(errno));
  poll_fds_.push_back(pollfd{.fd = wake_fd_, .events = POLLIN, .revents = 0});

  SlirpConfig config{};
  config.version = 4;  // through disable_dhcp
  config.restricted = 0;
  config.in_enabled = true;
  config.vnetwork = ipv4(kNetwork);
  config.vnetmask = ipv4(kNetmask);
  config.vhost = ipv4(kHost);
  config.in6_enabled = true;
  config.vprefix_addr6 = ipv6(kPrefix6);
  config.vprefix_len = kPrefix6Length;
  config.vhost6 = ipv6(kHost6);
  config.vdhcp_start = ipv4(kDhcpStart);
  config.vnameserver = ipv4(kNameserver);
  config.vnameserver6 = ipv6(kNameserver6);
  config.if_mtu = 0;  // libslirp's default, 1500
  config.if_mru = 0;
  config.disable_host_loopback = false;  // 10.0.2.2 reaches the host's 127.0.0.1
  config.enable_emu = false;
  config.disable_dns = false;
  config.disable_dhcp = false;
  {
    std::lock_guard lock(library_mutex());
    slirp_ = slirp_new(&config, &SlirpCallbacks::kTable, this);
  }
  if (slirp_ == nullptr) {
    ::close(wake_fd_);
    throw NetError("user network: libslirp could not start");
  }
  try {
    for (const HostForward& forward : forwards) add_host_forward(forward);
  } catch (...) {
    {
      std::lock_guard lock(library_mutex());
      slirp_cleanup(slirp_);
    }
    ::close(wake_fd_);
    throw;
  }
}

SlirpBackend::~SlirpBackend() {
  stop();
  {
    std::lock_guard lock(library_mutex());
    slirp_cleanup(slirp_);
  }
  ::close(wake_fd_);
}

void SlirpBackend::add_host_forward(const HostForward& forward) {
  const bool udp = forward.protocol == HostForward::Protocol::kUdp;
  in_addr host = ipv4(INADDR_LOOPBACK);
  if (!forward.host_address.empty() &&
      inet_pton(AF_INET, forward.host_address.c_str(), &host) != 1) {
    throw NetError("user network: bad hostfwd host address '" + forward.host_address + "'");
  }
  in_addr guest = ipv4(kDhcpStart);
  if (!forward.guest_address.empty() &&
      inet_pton(AF_INET, forward.guest_address.c_str(), &guest) != 1) {
    throw NetError("user network: bad hostfwd guest address '" + forward.guest_address + "'");
  }
  const std::string described = std::string(udp ? "udp:" : "tcp:") + ipv4_to_string(host) + ":" +
                                std::to_string(forward.host_port) + "-" + ipv4_to_string(guest) +
                                ":" + std::to_string(forward.guest_port);
  if ((ntohl(guest.s_addr) & kNetmask) != kNetwork) {
    throw NetError("user network: hostfwd " + described + ": the guest address " +
                   ipv4_to_string(guest) + " is outside the user network 10.0.2.0/24");
  }
  int result = 0;
  int error = 0;
  {
    std::lock_guard lock(library_mutex());
    errno = 0;
    result =
        slirp_add_hostfwd(slirp_, udp ? 1 : 0, host, forward.host_port, guest, forward.guest_port);
    error = errno;
  }
  if (result < 0) {
    throw NetError("user network: hostfwd " + described + ": cannot listen on " +
                   ipv4_to_string(host) + ":" + std::to_string(forward.host_port) +
                   (error != 0 ? " (" + errno_text(error) + ")" : std::string()));
  }
}

void SlirpBackend::start(Receive receive) {
  if (thread_.joinable()) return;
  receive_ = std::move(receive);
  thread_ = std::thread([this] { run(); });
}

void SlirpBackend::stop() {
  stopping_.store(true, std::memory_order_release);
  wake();
  if (thread_.joinable()) thread_.join();
}

void SlirpBackend::send(std::span<const u8> frame) {
  if (stopping_.load(std::memory_order_relaxed) || frame.size() > kMaxFrame) return;
  bool was_empty = false;
  {
    std::lock_guard lock(queue_mutex_);
    if (queued_frames_.size() >= kMaxQueuedFrames) {  // the stack is behind: drop
      count_drop();
      return;
    }
    was_empty = queued_frames_.empty();
    queued_frames_.emplace_back(frame.begin(), frame.end());
  }
  // The backend thread takes the whole queue after reading the eventfd, so only the frame
  // that finds the queue empty needs to wake it.
  if (was_empty) wake();
}

void SlirpBackend::wake() {
  const u64 one = 1;
  [[maybe_unused]] const ssize_t written = ::write(wake_fd_, &one, sizeof(one));
}

i64 SlirpBackend::clock_ms() {
  return static_cast<i64>(monotonic_ns() / 1'000'000);
}

u32 SlirpBackend::ms_until_next_timer(u32 limit) const {
  const i64 now = clock_ms();
  i64 earliest = static_cast<i64>(limit);
  for (const std::unique_ptr<Timer>& timer : timers_) {
    if (timer->expire_ms >= 0)
      earliest = std::min(earliest, std::max<i64>(timer->expire_ms - now, 0));
  }
  return static_cast<u32>(earliest);
}

void SlirpBackend::run_due_timers() {
  // One at a time: a callback may re-arm, create or free timers.
  for (;;) {
    const i64 now = clock_ms();
    Timer* due = nullptr;
    for (const std::unique_ptr<Timer>& timer : timers_) {
      if (timer->expire_ms >= 0 && timer->expire_ms <= now) {
        due = timer.get();
        break;
      }
    }
    if (due == nullptr) return;
    due->expire_ms = -1;
    due->callback(due->opaque);
  }
}

void SlirpBackend::input_queued_frames() {
  std::vector<std::vector<u8>> frames;
  {
    std::lock_guard lock(queue_mutex_);
    frames.swap(queued_frames_);
  }
  for (const std::vector<u8>& frame : frames) {
    slirp_input(slirp_, frame.data(), static_cast<int>(frame.size()));
  }
}

void SlirpBackend::run() {
  while (!stopping_.load(std::memory_order_acquire)) {
    u32 timeout_ms = UINT32_MAX;  // slirp lowers it to at most a second
    poll_fds_.resize(1);
    poll_fds_[0].revents = 0;
    {
      std::lock_guard lock(library_mutex());
      slirp_pollfds_fill(slirp_, &timeout_ms, &SlirpCallbacks::add_poll, this);
    }
    timeout_ms = ms_until_next_timer(timeout_ms);
    const int ready = ::poll(poll_fds_.data(), poll_fds_.size(),
                             static_cast<int>(std::min<u32>(timeout_ms, INT_MAX)));
    if (ready > 0 && (poll_fds_[0].revents & POLLIN)) {
      u64 count = 0;
      [[maybe_unused]] const ssize_t got = ::read(wake_fd_, &count, sizeof(count));
    }
    if (stopping_.load(std::memory_order_acquire)) break;
    std::lock_guard lock(library_mutex());
    slirp_pollfds_poll(slirp_, ready < 0 ? 1 : 0, &SlirpCallbacks::get_revents, this);
    input_queued_frames();
    run_due_timers();
  }
}

}  // namespace dvmm::devices
