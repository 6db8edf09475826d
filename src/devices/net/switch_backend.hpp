// A virtual Ethernet switch between the VMs of one host ("--net switch=NAME"), with no daemon
// and no root. The switch is a directory, runtime_dir/switch/NAME/ (mode 0700); each member
// (one VM's NIC) is an AF_UNIX datagram socket in it named after the member's MAC address
// (52-54-00-12-34-56.sock), and each datagram is one Ethernet frame. A member sends a unicast
// frame straight to the socket its destination MAC names, and floods broadcast, multicast and
// unknown-unicast frames to every other member: a switch that already knows every port. A
// receiver whose queue is full loses the frame (MSG_DONTWAIT), as a congested link would.
//
// Joining: under an flock on the directory, the member binds its socket; if the name exists,
// a socket that accepts connect() belongs to a live member (the MAC is taken: NetError), and
// one that refuses it (ECONNREFUSED: its owner is gone) is stale and is replaced. Leaving
// (stop() or the destructor) removes the socket file.
//
// The sending side caches the member list; an inotify watch on the directory says when
// members came or went (without inotify, the list is re-read every 100 ms).
//
// Threads: send() from the device's worker only (the member cache is its alone); the receive
// thread (start() to stop()) delivers frames; the rest from the owner.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "devices/net/net_backend.hpp"

namespace dvmm::devices {

class SwitchBackend final : public NetBackend {
 public:
  // Joins switch `name` (runtime_dir/switch/NAME/, created as needed) as `mac`. Throws
  // NetError: a live member already has `mac`, the directory cannot be created, the socket
  // path is too long for AF_UNIX, ...
  SwitchBackend(const std::string& runtime_dir, const std::string& name, const MacAddress& mac);
  ~SwitchBackend() override;
  SwitchBackend(const SwitchBackend&) = delete;
  SwitchBackend& operator=(const SwitchBackend&) = delete;

  std::string describe() const override { return "switch " + name_; }
  void start(Receive receive) override;
  void send(std::span<const u8> frame) override;
  void stop() override;

  // "52-54-00-12-34-56.sock": a member's socket file name.
  static std::string socket_name(const MacAddress& mac);

 private:
  struct Member {
    MacAddress mac{};
    sockaddr_un address{};
    socklen_t address_length = 0;
    bool gone = false;  // refused a frame; skipped until the directory changes
  };

  // False if a live member already has our MAC.
  bool join();
  void close_descriptors();
  void receive_loop();
  Member* find_member(const MacAddress& mac);
  void refresh_members_if_changed();
  void load_members();
  // `wait`: a unicast frame may wait kUnicastWaitUs for room at the receiver; floods never
  // wait (one slow member must not hold up the others).
  void deliver(Member& member, std::span<const u8> frame, bool wait);
  void remove_socket_file();

  std::string name_;
  std::string directory_;    // runtime_dir/switch/NAME
  std::string socket_path_;  // directory_/MAC.sock
  MacAddress mac_;
  int socket_fd_ = -1;       // our member socket: we receive on it and send from it
  int wake_fd_ = -1;         // eventfd: stop()
  int watch_fd_ = -1;        // inotify on directory_, or -1
  dev_t socket_device_ = 0;  // identify our socket file, so stop() removes no newer one
  ino_t socket_inode_ = 0;
  bool socket_removed_ = false;

  Receive receive_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  // send() only.
  std::vector<Member> members_;
  u64 members_loaded_ns_ = 0;  // 0: never loaded
};

}  // namespace dvmm::devices
