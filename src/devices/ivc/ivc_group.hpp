// Membership of an inter-VM communication group on this host (docs/IVC.md): the directory
// runtime_dir/ivc/NAME/ with its lock, the shared control block (ivc_control_block.hpp), the
// shared memory the guests see, and one AF_UNIX datagram socket per member for doorbells and
// membership news. No daemon: the first member creates the group, the last one removes it.
//
// Joining and leaving happen under an flock on NAME/lock. A member that dies without leaving
// keeps its slot until another member's watcher sees its pidfd fire (or a joiner finds its
// pid gone) and frees it.
//
// Threads: send() from any thread (vCPUs); pop()/ready() from one consumer at a time (the
// device serialises them); members() from any thread; the watcher thread (start() to stop())
// calls the Notify callback; construction and destruction on the owner thread.
#pragma once

#include <sys/un.h>

#include <atomic>
#include <functional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/types.hpp"
#include "devices/ivc/ivc_control_block.hpp"

namespace dvmm::devices::ivc {

struct IvcError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr u64 kDefaultShmSize = u64{64} << 20;
inline constexpr u64 kMaxShmSize = u64{16} << 30;
inline constexpr std::size_t kMaxGroupNameLength = 48;

// Why `name` is not a valid group name ("" when it is): 1-48 of [A-Za-z0-9._-], not "."/"..".
std::string group_name_problem(std::string_view name);

struct JoinOptions {
  std::string runtime_dir;  // control::control_dir()
  std::string name;
  u64 shm_size = 0;  // 0: the group's size, or kDefaultShmSize when creating it
  int rank = -1;     // -1: the lowest free rank
};

class IvcGroup {
 public:
  enum class SendStatus : u32 { kOk = 0, kNotMember = 1, kFull = 2, kBadRank = 3 };
  // Something may have changed: a message arrived while the inbox was empty, or members
  // came or went. Called on the watcher thread.
  using Notify = std::function<void()>;

  // Joins (creating the group when it has no live member). Throws IvcError with a message
  // for the user: a bad name, a rank that is taken or out of range, a full group, a size
  // that differs from the group's, no room for the shared memory, ...
  explicit IvcGroup(const JoinOptions& options);
  ~IvcGroup();  // stop(), then leaves the group
  IvcGroup(const IvcGroup&) = delete;
  IvcGroup& operator=(const IvcGroup&) = delete;

  const std::string& name() const { return name_; }
  unsigned rank() const { return rank_; }
  u64 shm_size() const { return shm_size_; }
  u8* shm() const { return shm_; }

  // Ranks that have a member now (bit R = rank R), as the control block says.
  u64 members() const;
  SendStatus send(unsigned dest, u64 value);
  bool pop(u32* source, u64* value) { return inbox().pop(source, value); }
  u32 ready() const { return control_->inboxes[rank_].ready(); }

  void start(Notify notify);
  void stop();

 private:
  Inbox& inbox() { return control_->inboxes[rank_]; }
  void open_locked_directory();
  void map_control_block(bool* created);
  void free_dead_slots();
  void choose_rank(int wanted);
  void set_up_shared_memory(u64 wanted_size, bool fresh);
  void bind_socket();
  void announce_membership_change();
  void leave();
  void watch_loop(Notify notify);
  bool free_slot_if_dead(unsigned rank);
  void lock();
  void unlock();

  std::string name_;
  std::string directory_;
  unsigned rank_ = 0;
  u64 shm_size_ = 0;
  u8* shm_ = nullptr;
  ControlBlock* control_ = nullptr;
  int lock_fd_ = -1;
  int socket_fd_ = -1;
  int wake_fd_ = -1;
  std::vector<sockaddr_un> addresses_;  // of every rank's socket
  std::atomic<bool> stopping_{false};
  std::thread watcher_;
};

}  // namespace dvmm::devices::ivc
