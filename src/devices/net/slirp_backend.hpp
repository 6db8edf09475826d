// User networking ("--net user"): the guest's frames go into libslirp, a TCP/IP stack in the
// process that turns the guest's connections into ordinary host sockets. The network is
// QEMU's: 10.0.2.0/24, the host (gateway) 10.0.2.2, which also reaches the host's own
// 127.0.0.1; the DNS forwarder 10.0.2.3; DHCP hands out 10.0.2.15 onwards; IPv6 fec0::/64.
// Host forwards (hostfwd) are listening host sockets whose connections slirp opens towards
// the guest.
//
// Threads: libslirp is not thread-safe, so only the backend's thread runs slirp (poll(2) on
// slirp's sockets, slirp's timers, frames from the guest). send() only queues the frame and
// wakes that thread through an eventfd; frames for the guest are delivered on that thread.
// libslirp also keeps process-wide state (its clock), so every call into it, from any
// instance, holds one process-wide mutex. The constructor (slirp_new, the host forwards) and
// the destructor (slirp_cleanup) run on the owner's thread while the backend thread is not
// running.
#pragma once

#include <poll.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "devices/net/net_backend.hpp"

struct Slirp;  // libslirp.h's opaque stack

namespace dvmm::devices {

class SlirpBackend final : public NetBackend {
 public:
  // Starts the stack and listens on every forward's host address. Throws NetError naming a
  // forward that cannot be set up (a host port already in use, a guest address outside
  // 10.0.2.0/24).
  explicit SlirpBackend(const std::vector<HostForward>& forwards);
  ~SlirpBackend() override;
  SlirpBackend(const SlirpBackend&) = delete;
  SlirpBackend& operator=(const SlirpBackend&) = delete;

  std::string describe() const override { return "user"; }
  void start(Receive receive) override;
  void send(std::span<const u8> frame) override;
  void stop() override;

 private:
  friend struct SlirpCallbacks;  // libslirp's C callbacks (slirp_backend.cpp)

  // A timer libslirp asked for (timer_new); fires on the backend thread.
  struct Timer {
    void (*callback)(void* opaque) = nullptr;
    void* opaque = nullptr;
    i64 expire_ms = -1;  // clock_ms(); -1: not armed
  };

  static constexpr std::size_t kMaxQueuedFrames = 1024;

  void add_host_forward(const HostForward& forward);
  void run();
  void wake();
  // Milliseconds until the earliest armed timer (0 if one is due), or `limit`.
  u32 ms_until_next_timer(u32 limit) const;
  void run_due_timers();
  void input_queued_frames();
  static i64 clock_ms();

  Slirp* slirp_ = nullptr;
  int wake_fd_ = -1;  // eventfd: a queued frame, stop(), or slirp's notify
  Receive receive_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  std::mutex queue_mutex_;
  std::vector<std::vector<u8>> queued_frames_;  // from the guest, guarded by queue_mutex_

  // Backend thread only (or the owner's thread while it is not running).
  std::vector<std::unique_ptr<Timer>> timers_;
  std::vector<pollfd> poll_fds_;  // [0] is wake_fd_, then slirp's sockets
};

}  // namespace dvmm::devices
