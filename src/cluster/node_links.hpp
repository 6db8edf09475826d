// vmm::NodeLinks between the node processes of one VM: IPIs, remote fences, HSM calls and
// PLIC output lines on Channel::kCpu, forwarded device accesses on Channel::kMmio, pages
// through the DSM (dsm::DsmNode over DsmAdapter). Hart h runs on node h / vcpus_per_node;
// the PLIC, the UART and the finisher are on `device_node` (rank 0); virtio devices are on
// the node place_device() names (their interrupts travel to the PLIC as DeviceIrq).
//
// Requests that need an answer (fence, HSM, MMIO) carry a request id; the caller waits for
// the reply, serving its own hart's flush requests meanwhile, and gives up when the VM
// stops or the transport reports a failed peer (fail()).
//
// Wire (little endian, WireWriter): u8 type, then per type:
//   kCpu:  Ipi{u32 hart, u64 sent_ns} ExtIrq{u32 hart, u8 level} Fence{u64 req, u32 n, u32 hart*n}
//          FenceAck{u64 req} HsmStart{u64 req, u32 hart, u64 addr, u64 opaque}
//          HsmStatus{u64 req, u32 hart} Reply{u64 req, u64 value}
//          DeviceIrq{u32 source, u8 level} (a device on another node -> the PLIC on node 0)
//   kMmio: Read{u64 req, u64 gpa, u8 size} Write{u64 req, u64 gpa, u8 size, u64 value}
//          Reply{u64 req, u64 value}
// A malformed message is counted and logged, never acted on.
//
// Threads: the NodeLinks methods from vCPU threads; receivers on the transport's progress
// thread; attach() before the transport delivers, detach() before the Vm goes away.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/latency_stats.hpp"
#include "cluster/transport.hpp"
#include "dsm/dsm_node.hpp"
#include "vmm/node_links.hpp"

namespace dvmm::vmm {
class Vm;
}
namespace dvmm::cpu {
class Hart;
}

namespace dvmm::cluster {

class ClusterLinks final : public vmm::NodeLinks {
 public:
  ClusterLinks(Transport& transport, unsigned vcpus_per_node, NodeId device_node = 0,
               std::function<void(const std::string&)> log = {});
  ~ClusterLinks() override;

  // The DSM node of this process (may be set later; before any page fault).
  void set_dsm(dsm::DsmNode* dsm) { dsm_ = dsm; }
  // Installs the kCpu and kMmio receivers that act on `vm` (its harts, SBI and devices).
  void attach(vmm::Vm& vm);
  // Removes the receivers; blocked callers return.
  void detach();
  // A peer failed or the VM is going down: every blocked call returns now, later ones
  // return at once.
  void fail(const std::string& why);

  // The DSM's flusher (dsm::GuestRamPages::Flusher, page ignored): every hart of this node
  // drops its TLB and decoded code; waits until all have, calling `while_waiting`. Remote
  // harts are not flushed (their objects here never run). Needs attach().
  void flush_local_harts(const std::function<void()>& while_waiting);

  NodeId node_of(HartId id) const { return static_cast<NodeId>(id / vcpus_per_node_); }
  u64 rejected() const { return rejected_.load(std::memory_order_relaxed); }
  // Cross-node latencies: an IPI from the sender's SBI call to the target's sip (one way;
  // one host only), a remote fence until every target acknowledged, an MMIO read until
  // its value came back.
  LatencySummary ipi_latency() const { return ipi_latency_.snapshot(); }
  LatencySummary fence_latency() const { return fence_latency_.snapshot(); }
  LatencySummary mmio_latency() const { return mmio_latency_.snapshot(); }

  // vmm::NodeLinks
  bool is_local(HartId id) const override { return node_of(id) == self_; }
  void send_ipi(HartId id) override;
  void remote_fence(const std::vector<HartId>& harts, const Serve& serve) override;
  i64 hart_start(HartId id, u64 start_addr, u64 opaque, const Serve& serve) override;
  std::optional<vmm::HsmState> hart_status(HartId id, const Serve& serve) override;
  void set_external_interrupt(HartId id, bool level) override;
  unsigned self_node() const override { return self_; }
  void place_device(Gpa base, u64 size, unsigned node) override;
  void set_device_irq(u32 source, bool level) override;
  bool mmio_is_local(Gpa gpa) const override { return mmio_node(gpa) == self_; }
  u64 mmio_read(Gpa gpa, unsigned size, const Serve& serve) override;
  void mmio_write(Gpa gpa, unsigned size, u64 value, const Serve& serve) override;
  bool acquire_page(Gpa gpa, memory::AccessType type, const Serve& serve) override;
  void wake_blocked() override;

 private:
  // The node that holds the device window of `gpa` (device_node_ when none was placed).
  NodeId mmio_node(Gpa gpa) const;
  u64 new_request();
  // Waits for the reply to `req` (serving meanwhile); nullopt if failed or stopping.
  std::optional<u64> wait(u64 req, const Serve& serve);
  void complete(u64 req, u64 value);
  void on_cpu(NodeId from, std::span<const u8> bytes);
  void on_mmio(NodeId from, std::span<const u8> bytes);
  void reject(NodeId from, const char* channel, const char* why);
  bool stopping() const;
  // After fail(): requests are not sent any more (they return their failure value).
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // Waits until every (hart, ticket) flushed: spins briefly (a running hart serves within
  // microseconds), then sleeps in short steps.
  void wait_flushed(const std::vector<std::pair<cpu::Hart*, u64>>& tickets,
                    const std::function<void()>& while_waiting);

  Transport& transport_;
  const NodeId self_;
  const unsigned vcpus_per_node_;
  const NodeId device_node_;
  std::function<void(const std::string&)> log_;
  dsm::DsmNode* dsm_ = nullptr;
  struct DeviceWindow {
    Gpa base;
    u64 size;
    NodeId node;
  };
  std::vector<DeviceWindow> device_windows_;  // set before boot, then read-only
  vmm::Vm* vm_ = nullptr;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::unordered_map<u64, std::optional<u64>> pending_;  // req -> reply (once it came)
  u64 next_req_ = 1;
  std::atomic<bool> failed_{false};
  std::atomic<u64> rejected_{0};
  LatencyStats ipi_latency_;
  LatencyStats fence_latency_;
  LatencyStats mmio_latency_;
};

}  // namespace dvmm::cluster
