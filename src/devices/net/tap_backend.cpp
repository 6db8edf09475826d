// The TAP backend (tap_backend.hpp): attaching to the interface, and the receive thread.
//
// Threads: see tap_backend.hpp.
#include "devices/net/tap_backend.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace dvmm::devices {
namespace {

constexpr std::size_t kEthernetHeader = 14;
constexpr int kFramesPerWakeup = 64;  // then poll again, so stop() is seen under load
constexpr int kErrorBackoffMs = 100;

std::string errno_text(int error) {
  return std::strerror(error);
}

std::string how_to_create(const std::string& name) {
  return "create it with `ip tuntap add dev " + name + " mode tap user $USER && ip link set " +
         name + " up`";
}

}  // namespace

TapBackend::TapBackend(const std::string& interface_name, const std::string& tun_device)
    : interface_name_(interface_name) {
  const std::string context = "tap " + interface_name + ": ";
  if (interface_name.empty() || interface_name.size() >= IFNAMSIZ) {
    throw NetError(context + "bad interface name (1 to " + std::to_string(IFNAMSIZ - 1) +
                   " characters)");
  }
  tap_fd_ = ::open(tun_device.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (tap_fd_ < 0) {
    const int error = errno;
    if (error == ENOENT || error == ENODEV || error == ENXIO) {
      throw NetError(context + tun_device + " does not exist (" + errno_text(error) +
                     "): the kernel needs TUN/TAP support (modprobe tun)");
    }
    if (error == EACCES || error == EPERM) {
      throw NetError(context + "no permission to open " + tun_device +
                     " (normally mode 0666: an administrator can fix that); then " +
                     how_to_create(interface_name));
    }
    throw NetError(context + "cannot open " + tun_device + ": " + errno_text(error));
  }
  ifreq request{};
  request.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::memcpy(request.ifr_name, interface_name.c_str(), interface_name.size() + 1);
  if (::ioctl(tap_fd_, TUNSETIFF, &request) != 0) {
    const int error = errno;
    ::close(tap_fd_);
    if (error == EPERM || error == EACCES) {
      throw NetError(context + "no permission to attach (the interface is missing or not " +
                     "yours); " + how_to_create(interface_name));
    }
    if (error == EBUSY) {
      throw NetError(context + "the interface is already in use (by another VM?)");
    }
    if (error == EINVAL) {
      throw NetError(context + "not a TAP interface (a TUN one, or with other flags?)");
    }
    throw NetError(context + "TUNSETIFF: " + errno_text(error));
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    const int error = errno;
    ::close(tap_fd_);
    throw NetError(context + "eventfd: " + errno_text(error));
  }
}

TapBackend::~TapBackend() {
  stop();
  ::close(tap_fd_);
  ::close(wake_fd_);
}

void TapBackend::start(Receive receive) {
  if (thread_.joinable()) return;
  receive_ = std::move(receive);
  thread_ = std::thread([this] { receive_loop(); });
}

void TapBackend::stop() {
  stopping_.store(true, std::memory_order_release);
  const u64 one = 1;
  [[maybe_unused]] const ssize_t written = ::write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

void TapBackend::send(std::span<const u8> frame) {
  if (stopping_.load(std::memory_order_relaxed) || frame.size() < kEthernetHeader ||
      frame.size() > kMaxFrame) {
    return;
  }
  // Dropped on EAGAIN (the kernel's queue is full) or EIO (the interface is down).
  [[maybe_unused]] const ssize_t written = ::write(tap_fd_, frame.data(), frame.size());
}

void TapBackend::receive_loop() {
  std::vector<u8> buffer(kMaxFrame);
  pollfd fds[2] = {{.fd = tap_fd_, .events = POLLIN, .revents = 0},
                   {.fd = wake_fd_, .events = POLLIN, .revents = 0}};
  while (!stopping_.load(std::memory_order_acquire)) {
    if (::poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents != 0) return;       // stop()
    for (int frames = 0; frames < kFramesPerWakeup; ++frames) {
      const ssize_t length = ::read(tap_fd_, buffer.data(), buffer.size());
      if (length < 0) {
        // EAGAIN: drained. Anything else (the interface went away): do not spin on it.
        if (errno != EAGAIN && errno != EINTR) ::poll(&fds[1], 1, kErrorBackoffMs);
        break;
      }
      if (static_cast<std::size_t>(length) < kEthernetHeader) continue;
      receive_(std::span<const u8>(buffer.data(), static_cast<std::size_t>(length)));
    }
  }
}

}  // namespace dvmm::devices
