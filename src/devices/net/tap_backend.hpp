// An existing TAP interface ("--net tap=IFNAME"): the guest's frames are written to
// /dev/net/tun attached to IFNAME (IFF_TAP | IFF_NO_PI: plain Ethernet frames), and the
// frames the host's kernel sends out of IFNAME are read back for the guest. Making the
// interface is the user's (or an administrator's) job, once:
//   ip tuntap add dev IFNAME mode tap user $USER && ip link set IFNAME up
// root may also attach to a name that does not exist yet; the kernel then makes a
// temporary interface that goes away with the backend.
//
// Threads: the receive thread (start() to stop()) reads and delivers frames; send() writes
// from the device's worker; the rest from the owner.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "devices/net/net_backend.hpp"

namespace dvmm::devices {

class TapBackend final : public NetBackend {
 public:
  // Attaches to `interface_name` through `tun_device` (tests name a missing one). Throws
  // NetError saying what to do: no /dev/net/tun, no permission, the interface is busy.
  explicit TapBackend(const std::string& interface_name,
                      const std::string& tun_device = "/dev/net/tun");
  ~TapBackend() override;
  TapBackend(const TapBackend&) = delete;
  TapBackend& operator=(const TapBackend&) = delete;

  std::string describe() const override { return "tap " + interface_name_; }
  void start(Receive receive) override;
  void send(std::span<const u8> frame) override;
  void stop() override;

 private:
  void receive_loop();

  std::string interface_name_;
  int tap_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop()
  Receive receive_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
};

}  // namespace dvmm::devices
