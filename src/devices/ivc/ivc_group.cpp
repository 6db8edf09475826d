// Joining, leaving and watching an inter-VM communication group (ivc_group.hpp).
#include "devices/ivc/ivc_group.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <sstream>

#include "devices/private_directory.hpp"

namespace dvmm::devices::ivc {
namespace {

constexpr char kDoorbell = 'D';
constexpr char kMembership = 'M';
constexpr int kWatchIntervalMs = 200;  // liveness re-check without any event

std::string errno_text(int error) {
  return std::strerror(error);
}

std::string mib_text(u64 bytes) {
  if (bytes % (u64{1} << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

// Field 22 of /proc/PID/stat (start time in clock ticks since boot), 0 if the process is gone.
// A zombie (field 3, the state, is Z: it exited and its parent has not waited for it yet)
// is gone too: kill(pid, 0) still succeeds on it and its pidfd stays readable.
u64 process_start_time(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return 0;
  const std::size_t paren = text.rfind(')');  // the name may hold spaces and parentheses
  if (paren == std::string::npos) return 0;
  std::istringstream fields(text.substr(paren + 2));
  std::string field;
  if (!(fields >> field) || field == "Z" || field == "X") return 0;
  for (int i = 4; i <= 22; ++i) {
    if (!(fields >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

bool slot_holder_alive(const RankSlot& slot) {
  const int pid = slot.pid.load(std::memory_order_acquire);
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  const u64 start = process_start_time(pid);
  return start != 0 && start == slot.start_time.load(std::memory_order_relaxed);
}

int open_pidfd(int pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace

std::string group_name_problem(std::string_view name) {
  if (name.empty()) return "the group name is empty";
  if (name.size() > kMaxGroupNameLength) {
    return "the group name is longer than " + std::to_string(kMaxGroupNameLength) + " characters";
  }
  if (name == "." || name == "..") return "the group name may not be '.' or '..'";
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return "the group name may hold only letters, digits, '.', '_' and '-'";
  }
  return "";
}

IvcGroup::IvcGroup(const JoinOptions& options) : name_(options.name) {
  if (const std::string problem = group_name_problem(name_); !problem.empty()) {
    throw IvcError("bad inter-VM group '" + name_ + "': " + problem);
  }
  if (options.rank >= static_cast<int>(kMaxRanks)) {
    throw IvcError("inter-VM group " + name_ + ": rank " + std::to_string(options.rank) +
                   " is out of range (0.." + std::to_string(kMaxRanks - 1) + ")");
  }
  if (options.shm_size % kPageSize != 0 || options.shm_size > kMaxShmSize) {
    throw IvcError("inter-VM group " + name_ + ": the shared memory size must be a multiple of " +
                   "4 KiB and at most " + mib_text(kMaxShmSize));
  }
  directory_ = options.runtime_dir + "/ivc/" + name_;
  try {
    open_locked_directory();
    bool created = false;
    map_control_block(&created);
    free_dead_slots();
    bool anyone = false;
    for (const RankSlot& slot : control_->slots) anyone |= slot.pid.load() != 0;
    set_up_shared_memory(options.shm_size, created || !anyone);
    choose_rank(options.rank);
    bind_socket();
    inbox().reset();
    RankSlot& slot = control_->slots[rank_];
    slot.start_time.store(process_start_time(::getpid()), std::memory_order_relaxed);
    slot.joins.fetch_add(1, std::memory_order_relaxed);
    slot.pid.store(::getpid(), std::memory_order_release);
    announce_membership_change();
    unlock();
  } catch (...) {
    if (socket_fd_ >= 0) {
      ::unlink(addresses_[rank_].sun_path);
      ::close(socket_fd_);
    }
    if (shm_ != nullptr) ::munmap(shm_, shm_size_);
    if (control_ != nullptr) ::munmap(control_, kControlBlockSize);
    if (lock_fd_ >= 0) ::close(lock_fd_);
    throw;
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

IvcGroup::~IvcGroup() {
  stop();
  leave();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void IvcGroup::lock() {
  int rc;
  do {
    rc = ::flock(lock_fd_, LOCK_EX);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    throw IvcError("cannot lock " + directory_ + "/lock: " + errno_text(errno));
  }
}

void IvcGroup::unlock() {
  ::flock(lock_fd_, LOCK_UN);
}

// Takes the group lock. The last member removes the lock file, so after locking we check
// that the file we hold is still the one in the directory (else someone removed it while we
// waited, and we start again with the new one).
void IvcGroup::open_locked_directory() {
  const std::string lock_path = directory_ + "/lock";
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (const std::string problem = make_private_directories(directory_); !problem.empty()) {
      throw IvcError(problem);
    }
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) throw IvcError("cannot open " + lock_path + ": " + errno_text(errno));
    lock();
    struct stat held {
    }, current{};
    if (::fstat(lock_fd_, &held) == 0 && ::stat(lock_path.c_str(), &current) == 0 &&
        held.st_ino == current.st_ino && held.st_dev == current.st_dev) {
      return;
    }
    ::close(lock_fd_);
    lock_fd_ = -1;
  }
  throw IvcError("cannot take the lock of inter-VM group " + name_ + " in " + directory_);
}

void IvcGroup::map_control_block(bool* created) {
  const std::string path = directory_ + "/control";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw IvcError("cannot open " + path + ": " + errno_text(errno));
  struct stat st {};
  ::fstat(fd, &st);
  *created = st.st_size == 0;
  if (*created && ::ftruncate(fd, kControlBlockSize) != 0) {
    const int error = errno;
    ::close(fd);
    throw IvcError("cannot size " + path + ": " + errno_text(error));
  }
  if (!*created && static_cast<std::size_t>(st.st_size) != kControlBlockSize) {
    ::close(fd);
    throw IvcError(path + " is not the control block of this dvmm version (size " +
                   std::to_string(st.st_size) + "); remove the group directory if no VM uses it");
  }
  void* p = ::mmap(nullptr, kControlBlockSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int error = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw IvcError("cannot map " + path + ": " + errno_text(error));
  control_ = static_cast<ControlBlock*>(p);
  if (*created) {
    control_->magic = kControlMagic;
    control_->version = kControlVersion;
    control_->max_ranks = kMaxRanks;
    control_->inbox_capacity = kInboxCapacity;
  } else if (control_->magic != kControlMagic || control_->version != kControlVersion ||
             control_->max_ranks != kMaxRanks || control_->inbox_capacity != kInboxCapacity) {
    throw IvcError(path + " is not the control block of this dvmm version; remove " + directory_ +
                   " if no VM uses it");
  }
}

void IvcGroup::free_dead_slots() {
  for (unsigned r = 0; r < kMaxRanks; ++r) {
    RankSlot& slot = control_->slots[r];
    if (slot.pid.load() != 0 && !slot_holder_alive(slot)) slot.pid.store(0);
  }
}

void IvcGroup::set_up_shared_memory(u64 wanted_size, bool fresh) {
  const std::string path = directory_ + "/shm";
  if (fresh) {
    shm_size_ = wanted_size != 0 ? wanted_size : kDefaultShmSize;
    control_->shm_size = shm_size_;
    for (Inbox& inbox : control_->inboxes) inbox.reset();
  } else {
    shm_size_ = control_->shm_size;
    if (wanted_size != 0 && wanted_size != shm_size_) {
      throw IvcError("inter-VM group " + name_ + " has " + mib_text(shm_size_) +
                     " of shared memory; this VM asked for " + mib_text(wanted_size) +
                     " (give the same size=, or none)");
    }
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw IvcError("cannot open " + path + ": " + errno_text(errno));
  if (fresh) {
    // Zero it, and reserve the pages now: on tmpfs a later guest store into a page the file
    // system has no room for would be a SIGBUS in this process.
    int error = ::ftruncate(fd, 0) == 0 ? 0 : errno;
    if (error == 0) error = ::posix_fallocate(fd, 0, static_cast<off_t>(shm_size_));
    if (error != 0) {
      ::close(fd);
      ::unlink(path.c_str());
      throw IvcError("cannot reserve " + mib_text(shm_size_) + " for the shared memory of " +
                     "inter-VM group " + name_ + " in " + directory_ + ": " + errno_text(error));
    }
  }
  void* p = ::mmap(nullptr, shm_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int error = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw IvcError("cannot map " + path + ": " + errno_text(error));
  shm_ = static_cast<u8*>(p);
}

void IvcGroup::choose_rank(int wanted) {
  if (wanted >= 0) {
    const RankSlot& slot = control_->slots[wanted];
    if (slot.pid.load() != 0) {
      throw IvcError("rank " + std::to_string(wanted) + " of inter-VM group " + name_ +
                     " is taken (by process " + std::to_string(slot.pid.load()) + ")");
    }
    rank_ = static_cast<unsigned>(wanted);
  } else {
    unsigned r = 0;
    while (r < kMaxRanks && control_->slots[r].pid.load() != 0) ++r;
    if (r == kMaxRanks) {
      throw IvcError("inter-VM group " + name_ + " is full (" + std::to_string(kMaxRanks) +
                     " members)");
    }
    rank_ = r;
  }
  addresses_.resize(kMaxRanks);
  for (unsigned r = 0; r < kMaxRanks; ++r) {
    const std::string path = directory_ + "/rank-" + std::to_string(r) + ".sock";
    if (path.size() >= sizeof(sockaddr_un::sun_path)) {
      throw IvcError("the socket path " + path +
                     " is too long for AF_UNIX; set XDG_RUNTIME_DIR "
                     "to a shorter directory");
    }
    sockaddr_un& a = addresses_[r];
    a = sockaddr_un{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  }
}

void IvcGroup::bind_socket() {
  const sockaddr_un& address = addresses_[rank_];
  ::unlink(address.sun_path);  // a dead member's (the rank is free: we hold the lock)
  socket_fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (socket_fd_ < 0) throw IvcError("cannot create a socket: " + errno_text(errno));
  if (::bind(socket_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    ::close(socket_fd_);
    socket_fd_ = -1;
    throw IvcError("cannot bind " + std::string(address.sun_path) + ": " + errno_text(error));
  }
}

void IvcGroup::announce_membership_change() {
  for (unsigned r = 0; r < kMaxRanks; ++r) {
    if (r == rank_ || control_->slots[r].pid.load() == 0) continue;
    const sockaddr_un& a = addresses_[r];
    (void)::sendto(socket_fd_, &kMembership, 1, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&a),
                   sizeof(a));
  }
}

u64 IvcGroup::members() const {
  u64 bits = 0;
  for (unsigned r = 0; r < kMaxRanks; ++r) {
    if (control_->slots[r].pid.load(std::memory_order_acquire) != 0) bits |= u64{1} << r;
  }
  return bits;
}

IvcGroup::SendStatus IvcGroup::send(unsigned dest, u64 value) {
  if (dest >= kMaxRanks) return SendStatus::kBadRank;
  if (control_->slots[dest].pid.load(std::memory_order_acquire) == 0) {
    return SendStatus::kNotMember;
  }
  switch (control_->inboxes[dest].push(rank_, value)) {
    case Inbox::PushResult::kFull:
      return SendStatus::kFull;
    case Inbox::PushResult::kPushed:
      return SendStatus::kOk;
    case Inbox::PushResult::kPushedFirst:
      break;
  }
  // The receiver may be asleep: ring its doorbell. A full socket queue already holds a
  // doorbell; a refused one belongs to a member that is gone.
  const sockaddr_un& a = addresses_[dest];
  (void)::sendto(socket_fd_, &kDoorbell, 1, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&a),
                 sizeof(a));
  return SendStatus::kOk;
}

void IvcGroup::start(Notify notify) {
  if (watcher_.joinable()) return;
  stopping_.store(false);
  watcher_ = std::thread([this, notify = std::move(notify)] { watch_loop(notify); });
}

void IvcGroup::stop() {
  if (!watcher_.joinable()) return;
  stopping_.store(true);
  const u64 one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  watcher_.join();
}

// Under the lock: frees `rank`'s slot if its holder is dead. True if it did.
bool IvcGroup::free_slot_if_dead(unsigned rank) {
  RankSlot& slot = control_->slots[rank];
  if (slot.pid.load() == 0 || slot_holder_alive(slot)) return false;
  slot.pid.store(0);
  return true;
}

void IvcGroup::watch_loop(Notify notify) {
  struct Watched {
    unsigned rank;
    int pid;
    int fd;
  };
  std::vector<Watched> watched;
  const auto close_all = [&] {
    for (const Watched& w : watched) ::close(w.fd);
    watched.clear();
  };
  // Opens a pidfd for every other live member (one already watched is kept).
  const auto refresh = [&] {
    for (std::size_t i = 0; i < watched.size();) {
      if (control_->slots[watched[i].rank].pid.load() != watched[i].pid) {
        ::close(watched[i].fd);
        watched.erase(watched.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        ++i;
      }
    }
    for (unsigned r = 0; r < kMaxRanks; ++r) {
      const int pid = control_->slots[r].pid.load();
      if (r == rank_ || pid == 0) continue;
      bool known = false;
      for (const Watched& w : watched) known |= w.rank == r;
      if (known) continue;
      const int fd = open_pidfd(pid);
      if (fd >= 0) watched.push_back({r, pid, fd});
    }
  };
  const auto reap_dead = [&] {
    bool any = false;
    try {
      lock();
    } catch (const IvcError&) {
      return false;  // try again at the next event (this thread must not throw)
    }
    for (unsigned r = 0; r < kMaxRanks; ++r) {
      if (r != rank_) any |= free_slot_if_dead(r);
    }
    unlock();
    return any;
  };
  refresh();
  u64 last_members = members();
  while (!stopping_.load()) {
    std::vector<pollfd> fds;
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({socket_fd_, POLLIN, 0});
    for (const Watched& w : watched) fds.push_back({w.fd, POLLIN, 0});
    const int n = ::poll(fds.data(), fds.size(), kWatchIntervalMs);
    if (stopping_.load()) break;
    bool changed = false;
    if (n > 0 && (fds[1].revents & POLLIN)) {
      char buffer[64];
      while (::recv(socket_fd_, buffer, sizeof(buffer), MSG_DONTWAIT) > 0) {
      }
      changed = true;  // a doorbell, or membership news
    }
    bool someone_died = n > 0 && std::any_of(fds.begin() + 2, fds.end(), [](const pollfd& p) {
                          return (p.revents & (POLLIN | POLLHUP)) != 0;
                        });
    if (n == 0) someone_died = true;  // periodic check (pids without a pidfd)
    if (someone_died) changed |= reap_dead();
    refresh();
    const u64 now = members();
    changed |= now != last_members;
    last_members = now;
    if (changed) notify();
  }
  close_all();
}

void IvcGroup::leave() {
  if (control_ == nullptr) return;
  bool locked = true;
  try {
    lock();
  } catch (const IvcError&) {
    locked = false;  // leave as well as we can; the files stay for the others to clean
  }
  RankSlot& slot = control_->slots[rank_];
  if (slot.pid.load() == ::getpid()) slot.pid.store(0);
  ::unlink(addresses_[rank_].sun_path);
  if (locked) {
    announce_membership_change();
    bool last = true;
    for (unsigned r = 0; r < kMaxRanks; ++r) {
      if (control_->slots[r].pid.load() != 0 && !free_slot_if_dead(r)) last = false;
    }
    if (last) {
      ::unlink((directory_ + "/shm").c_str());
      ::unlink((directory_ + "/control").c_str());
      for (const sockaddr_un& a : addresses_) ::unlink(a.sun_path);
      ::unlink((directory_ + "/lock").c_str());
      ::rmdir(directory_.c_str());
    }
    unlock();
  }
  ::close(socket_fd_);
  ::close(lock_fd_);
  ::munmap(shm_, shm_size_);
  ::munmap(control_, kControlBlockSize);
  control_ = nullptr;
}

}  // namespace dvmm::devices::ivc
