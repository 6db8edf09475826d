// The daemon-less virtual switch (switch_backend.hpp): joining and leaving the switch
// directory, the member cache of the sending side, and the receive thread.
//
// Threads: see switch_backend.hpp.
#include "devices/net/switch_backend.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "base/clock.hpp"
#include "devices/private_directory.hpp"

namespace dvmm::devices {
namespace {

constexpr std::size_t kEthernetHeader = 14;
constexpr int kSocketBufferBytes = 4 << 20;
// How long a unicast frame waits for room at a full receiver before it is dropped.
constexpr long kUnicastWaitUs = 20000;
constexpr u64 kRefreshWithoutInotifyNs = 100'000'000;  // 100 ms
constexpr int kFramesPerWakeup = 64;  // then poll again, so stop() is seen under load
constexpr std::string_view kSocketSuffix = ".sock";

std::string errno_text(int error) {
  return std::strerror(error);
}

// `path` must fit sun_path (checked when joining: every member path has the same length).
void fill_address(const std::string& path, sockaddr_un& address, socklen_t& length) {
  address = sockaddr_un{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
}

// The MAC a member socket's file name gives, or false for other files.
bool parse_socket_name(std::string_view file, MacAddress& mac) {
  if (file.size() != 17 + kSocketSuffix.size() || !file.ends_with(kSocketSuffix)) return false;
  for (std::size_t i = 0; i < 6; ++i) {
    const auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    const int high = hex(file[3 * i]);
    const int low = hex(file[3 * i + 1]);
    if (high < 0 || low < 0 || (i < 5 && file[3 * i + 2] != '-')) return false;
    mac[i] = static_cast<u8>(high << 4 | low);
  }
  return true;
}

// Whether a process still owns the socket at `address`: connect() works on a live datagram
// socket and is refused once its owner has closed it.
bool socket_is_live(const sockaddr_un& address, socklen_t length, const std::string& path) {
  const int probe = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (probe < 0) throw NetError("socket: " + errno_text(errno));
  const int result = ::connect(probe, reinterpret_cast<const sockaddr*>(&address), length);
  const int error = errno;
  ::close(probe);
  if (result == 0) return true;
  if (error == ECONNREFUSED || error == ENOENT) return false;
  throw NetError("cannot probe " + path + ": " + errno_text(error));
}

}  // namespace

std::string SwitchBackend::socket_name(const MacAddress& mac) {
  std::string name = mac_to_string(mac);
  for (char& c : name) {
    if (c == ':') c = '-';
  }
  return name + std::string(kSocketSuffix);
}

SwitchBackend::SwitchBackend(const std::string& runtime_dir, const std::string& name,
                             const MacAddress& mac)
    : name_(name),
      directory_(runtime_dir + "/switch/" + name),
      socket_path_(directory_ + "/" + socket_name(mac)),
      mac_(mac) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    throw NetError("bad switch name '" + name + "'");
  }
  bool joined = false;
  try {
    joined = join();
  } catch (const NetError& error) {
    close_descriptors();
    throw NetError("switch " + name_ + ": " + error.what());
  }
  if (!joined) {
    close_descriptors();
    throw NetError("MAC " + mac_to_string(mac_) + " is already on switch " + name_);
  }
}

SwitchBackend::~SwitchBackend() {
  stop();
  close_descriptors();
}

bool SwitchBackend::join() {
  if (const std::string problem = make_private_directories(directory_); !problem.empty()) {
    throw NetError(problem);
  }
  sockaddr_un address{};
  socklen_t address_length = 0;
  if (socket_path_.size() >= sizeof(address.sun_path)) {
    throw NetError("the socket path " + socket_path_ + " is longer than a UNIX socket allows (" +
                   std::to_string(sizeof(address.sun_path) - 1) +
                   " bytes); use a shorter runtime directory");
  }
  fill_address(socket_path_, address, address_length);

  // Watch before joining, so no member that joins after us goes unnoticed.
  watch_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (watch_fd_ >= 0 &&
      ::inotify_add_watch(watch_fd_, directory_.c_str(),
                          IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO) < 0) {
    ::close(watch_fd_);
    watch_fd_ = -1;
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw NetError("eventfd: " + errno_text(errno));
  socket_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (socket_fd_ < 0) throw NetError("socket: " + errno_text(errno));
  // Best effort: the kernel caps them at net.core.{w,r}mem_max.
  ::setsockopt(socket_fd_, SOL_SOCKET, SO_SNDBUF, &kSocketBufferBytes, sizeof(kSocketBufferBytes));
  ::setsockopt(socket_fd_, SOL_SOCKET, SO_RCVBUF, &kSocketBufferBytes, sizeof(kSocketBufferBytes));
  // A unicast frame to a member whose queue is full waits this long for room (flow control,
  // like a switch with pause frames); the kernel queues only net.unix.max_dgram_qlen
  // datagrams per receiver (10 by default), far too few for a burst of TCP segments.
  const timeval send_wait{0, kUnicastWaitUs};
  ::setsockopt(socket_fd_, SOL_SOCKET, SO_SNDTIMEO, &send_wait, sizeof(send_wait));

  // The lock makes probing and replacing a stale socket atomic against other joiners.
  const int directory_fd = ::open(directory_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (directory_fd < 0) throw NetError("cannot open " + directory_ + ": " + errno_text(errno));
  const auto bind_locked = [&]() -> bool {
    if (::flock(directory_fd, LOCK_EX) != 0) {
      throw NetError("cannot lock " + directory_ + ": " + errno_text(errno));
    }
    const auto bind_socket = [&] {
      return ::bind(socket_fd_, reinterpret_cast<const sockaddr*>(&address), address_length);
    };
    if (bind_socket() != 0) {
      if (errno != EADDRINUSE) {
        throw NetError("cannot bind " + socket_path_ + ": " + errno_text(errno));
      }
      if (socket_is_live(address, address_length, socket_path_)) return false;
      ::unlink(socket_path_.c_str());  // stale: its owner is gone
      if (bind_socket() != 0) {
        throw NetError("cannot bind " + socket_path_ + ": " + errno_text(errno));
      }
    }
    struct stat status {};
    if (::stat(socket_path_.c_str(), &status) == 0) {
      socket_device_ = status.st_dev;
      socket_inode_ = status.st_ino;
    }
    return true;
  };
  bool joined = false;
  try {
    joined = bind_locked();
  } catch (...) {
    ::close(directory_fd);  // also releases the lock
    throw;
  }
  ::close(directory_fd);
  return joined;
}

void SwitchBackend::close_descriptors() {
  for (int* fd : {&socket_fd_, &wake_fd_, &watch_fd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

void SwitchBackend::start(Receive receive) {
  if (thread_.joinable()) return;
  receive_ = std::move(receive);
  thread_ = std::thread([this] { receive_loop(); });
}

void SwitchBackend::stop() {
  stopping_.store(true, std::memory_order_release);
  if (wake_fd_ >= 0) {
    const u64 one = 1;
    [[maybe_unused]] const ssize_t written = ::write(wake_fd_, &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
  remove_socket_file();
}

void SwitchBackend::remove_socket_file() {
  if (socket_removed_ || socket_fd_ < 0) return;
  socket_removed_ = true;
  struct stat status {};
  if (::lstat(socket_path_.c_str(), &status) == 0 && status.st_dev == socket_device_ &&
      status.st_ino == socket_inode_) {
    ::unlink(socket_path_.c_str());
  }
}

void SwitchBackend::receive_loop() {
  std::vector<u8> buffer(kMaxFrame);
  pollfd fds[2] = {{.fd = socket_fd_, .events = POLLIN, .revents = 0},
                   {.fd = wake_fd_, .events = POLLIN, .revents = 0}};
  while (!stopping_.load(std::memory_order_acquire)) {
    if (::poll(fds, 2, -1) < 0) continue;  // EINTR
    if (fds[1].revents != 0) return;       // stop()
    for (int frames = 0; frames < kFramesPerWakeup; ++frames) {
      // MSG_TRUNC: the real length, so an oversized datagram is recognised and dropped.
      const ssize_t length =
          ::recv(socket_fd_, buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_TRUNC);
      if (length < 0) break;  // EAGAIN: drained
      if (static_cast<std::size_t>(length) < kEthernetHeader ||
          static_cast<std::size_t>(length) > buffer.size()) {
        continue;
      }
      receive_(std::span<const u8>(buffer.data(), static_cast<std::size_t>(length)));
    }
  }
}

void SwitchBackend::send(std::span<const u8> frame) {
  if (stopping_.load(std::memory_order_relaxed) || frame.size() < kEthernetHeader ||
      frame.size() > kMaxFrame) {
    return;
  }
  MacAddress destination;
  std::memcpy(destination.data(), frame.data(), destination.size());
  const bool unicast = (destination[0] & 1) == 0;
  if (unicast) {
    if (destination == mac_) return;
    Member* member = find_member(destination);
    if (member == nullptr) {
      refresh_members_if_changed();
      member = find_member(destination);
    }
    if (member != nullptr) {
      deliver(*member, frame, /*wait=*/true);
      return;
    }
    // Nobody has that MAC: flood, as a switch does with an unknown destination.
  } else {
    refresh_members_if_changed();
  }
  for (Member& member : members_) {
    if (!member.gone) deliver(member, frame, /*wait=*/false);
  }
}

SwitchBackend::Member* SwitchBackend::find_member(const MacAddress& mac) {
  for (Member& member : members_) {
    if (member.mac == mac && !member.gone) return &member;
  }
  return nullptr;
}

void SwitchBackend::refresh_members_if_changed() {
  bool changed = members_loaded_ns_ == 0;
  if (watch_fd_ >= 0) {
    alignas(inotify_event) char events[4096];
    while (::read(watch_fd_, events, sizeof(events)) > 0) changed = true;
  } else if (monotonic_ns() - members_loaded_ns_ >= kRefreshWithoutInotifyNs) {
    changed = true;
  }
  if (changed) load_members();
}

void SwitchBackend::load_members() {
  members_.clear();
  members_loaded_ns_ = std::max<u64>(monotonic_ns(), 1);
  DIR* directory = ::opendir(directory_.c_str());
  if (directory == nullptr) return;
  while (const dirent* entry = ::readdir(directory)) {
    Member member;
    if (!parse_socket_name(entry->d_name, member.mac) || member.mac == mac_) continue;
    fill_address(directory_ + "/" + entry->d_name, member.address, member.address_length);
    members_.push_back(member);
  }
  ::closedir(directory);
}

void SwitchBackend::deliver(Member& member, std::span<const u8> frame, bool wait) {
  ssize_t sent;
  do {
    sent =
        ::sendto(socket_fd_, frame.data(), frame.size(), (wait ? 0 : MSG_DONTWAIT) | MSG_NOSIGNAL,
                 reinterpret_cast<const sockaddr*>(&member.address), member.address_length);
  } while (sent < 0 && errno == EINTR);
  // EAGAIN (the receiver stayed full) and the like: the frame is lost, as on a busy link.
  if (sent < 0 && (errno == ECONNREFUSED || errno == ENOENT)) {
    member.gone = true;
  } else if (sent < 0 && wait) {
    count_drop();  // a unicast frame that a live member had no room for
  }
}

}  // namespace dvmm::devices
