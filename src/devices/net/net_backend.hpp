// The host side of a virtio-net device: where the guest's Ethernet frames go and where the
// frames for the guest come from. Backends:
//   user    libslirp user networking: outbound TCP/UDP, DHCP and DNS (10.0.2.0/24 as QEMU),
//           host port forwarding (hostfwd); no root needed.
//   switch  a virtual switch joined by name: every VM on one host that joins NAME sees the
//           others' frames; no root, no daemon (switch_backend.*).
//   tap     an existing TAP interface (/dev/net/tun) where the user has one.
// Frames are plain Ethernet frames (no virtio-net header), at most kMaxFrame bytes.
//
// Threads: start() and stop() from the owner. send() from the device's worker thread (one at
// a time). The receive callback runs on the backend's own thread and must not block for long.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "base/types.hpp"

namespace dvmm::devices {

// A bad --net specification, or a backend that cannot start (the message says why).
class NetError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using MacAddress = std::array<u8, 6>;

struct HostForward {
  enum class Protocol { kTcp, kUdp } protocol = Protocol::kTcp;
  std::string host_address;  // empty: 127.0.0.1 (QEMU binds every address; say 0.0.0.0 for that)
  u16 host_port = 0;
  std::string guest_address;  // empty: the guest's DHCP address (10.0.2.15)
  u16 guest_port = 0;
};

struct NetSpec {
  enum class Kind { kUser, kSwitch, kTap } kind = Kind::kUser;
  std::string name;                   // switch name, or TAP interface name
  std::vector<HostForward> forwards;  // user only
  MacAddress mac{};                   // all zero: derived by the caller
  bool mac_set = false;
  int node = -1;  // the node that holds the device; -1: the default (rank 0)
};

// Parses a --net value: "user[,hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...",
// "switch=NAME", "tap=IFNAME", each optionally followed by ",mac=52:54:00:xx:xx:xx" and
// ",node=N". Throws NetError naming the bad part.
NetSpec parse_net_spec(std::string_view text);

// "52:54:00:12:34:56".
std::string mac_to_string(const MacAddress& mac);

class NetBackend {
 public:
  static constexpr std::size_t kMaxFrame = 65550;  // 64 KiB + Ethernet header + VLAN tag
  using Receive = std::function<void(std::span<const u8> frame)>;
  virtual ~NetBackend() = default;
  // "user", "switch NAME", "tap IFNAME", for logs.
  virtual std::string describe() const = 0;
  // Starts delivering frames for the guest to `receive` (on the backend's thread).
  virtual void start(Receive receive) = 0;
  // A frame from the guest. Never blocks for long: drops when the other side is full
  // (as a real link does; TCP in the guest recovers).
  virtual void send(std::span<const u8> frame) = 0;
  // Stops the backend's thread; no receive callback runs after it returns. Idempotent.
  virtual void stop() = 0;
  // Frames from the guest that could not be passed on (the other side stayed full). Any
  // thread.
  u64 dropped() const { return dropped_.load(std::memory_order_relaxed); }

 protected:
  void count_drop() { dropped_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::atomic<u64> dropped_{0};
};

// Opens the backend a spec names. `runtime_dir` is where switches live
// (runtime_dir/switch/NAME/). Throws NetError (e.g. TAP without permission, bad hostfwd,
// a port already in use).
std::unique_ptr<NetBackend> open_net_backend(const NetSpec& spec, const MacAddress& mac,
                                             const std::string& runtime_dir);

}  // namespace dvmm::devices
