// What a node's monitor needs from the other nodes of a distributed VM (issue 4): everything
// the vCPU loop, the SBI and the interrupt wiring do that may cross nodes goes through this
// interface, so vmm never depends on the cluster layer. The cluster implementation lives in
// src/cluster/ (over the transport's kCpu / kMmio / kControl channels and the DSM); on one
// node, SingleNodeLinks says that everything is local and nothing else is ever called.
//
// Every hart exists as an object on every node (same Machine everywhere); only the harts
// that is_local() runs here. The `serve` hooks passed to blocking calls are the calling
// hart's Hart::service_requests: a vCPU blocked on another node must keep serving its own
// TLB-flush requests, or a DSM transaction or a remote fence waiting for it would deadlock.
//
// Threads: every method from any vCPU thread (concurrently); the implementation locks
// itself. Blocking calls return early (with a harmless value) when the VM stops.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "base/types.hpp"
#include "memory/guest_ram.hpp"

namespace dvmm::vmm {

enum class HsmState : u32;

class NodeLinks {
 public:
  using Serve = std::function<void()>;
  virtual ~NodeLinks() = default;

  // True if hart `id` runs on this node.
  virtual bool is_local(HartId id) const = 0;

  // ---- remote harts (called only for harts that are not local)
  // sip.SSIP of a remote hart. Asynchronous.
  virtual void send_ipi(HartId id) = 0;
  // Makes every hart in `harts` (all remote) drop its TLB and decoded code, and waits until
  // each has acknowledged (SBI RFENCE is synchronous). Calls `serve` while it waits.
  virtual void remote_fence(const std::vector<HartId>& harts, const Serve& serve) = 0;
  // SBI HSM hart_start of a remote hart: the SBI error code (0 on success).
  virtual i64 hart_start(HartId id, u64 start_addr, u64 opaque, const Serve& serve) = 0;
  // SBI HSM hart_get_status of a remote hart; nullopt if its node cannot answer.
  virtual std::optional<HsmState> hart_status(HartId id, const Serve& serve) = 0;
  // The level of the PLIC's external-interrupt output for a remote hart's context.
  virtual void set_external_interrupt(HartId id, bool level) = 0;

  // ---- devices
  // This node's number (0 on one node): devices placed on it are created here.
  virtual unsigned self_node() const { return 0; }
  // Records that the device window [base, base + size) lives on `node`: accesses to it from
  // elsewhere are forwarded there. Before boot, the same on every node.
  virtual void place_device(Gpa /*base*/, u64 /*size*/, unsigned /*node*/) {}
  // A device on this node raises or lowers its interrupt source on the node that holds the
  // interrupt controller (node 0). Asynchronous.
  virtual void set_device_irq(u32 /*source*/, bool /*level*/) {}
  // True if the device window holding `gpa` (or no device at all) is on this node.
  virtual bool mmio_is_local(Gpa gpa) const = 0;
  // Forwarded accesses to the node that holds the device; block until it answered.
  virtual u64 mmio_read(Gpa gpa, unsigned size, const Serve& serve) = 0;
  virtual void mmio_write(Gpa gpa, unsigned size, u64 value, const Serve& serve) = 0;

  // ---- memory
  // ExitPageNotPresent: blocks until this node may perform `type` on the page of `gpa`.
  // False if the page cannot come here (single node: never happens; stopping).
  virtual bool acquire_page(Gpa gpa, memory::AccessType type, const Serve& serve) = 0;

  // A local hart was woken (a flush request, an interrupt): vCPUs blocked in the calls
  // above run their `serve` hooks now instead of at their next poll. Any thread; cheap.
  virtual void wake_blocked() {}
};

// One node: every hart and device is here, and all RAM is present.
class SingleNodeLinks final : public NodeLinks {
 public:
  bool is_local(HartId) const override { return true; }
  void send_ipi(HartId) override {}
  void remote_fence(const std::vector<HartId>&, const Serve&) override {}
  i64 hart_start(HartId, u64, u64, const Serve&) override { return -2; }  // not supported
  std::optional<HsmState> hart_status(HartId, const Serve&) override { return std::nullopt; }
  void set_external_interrupt(HartId, bool) override {}
  bool mmio_is_local(Gpa) const override { return true; }
  u64 mmio_read(Gpa, unsigned, const Serve&) override { return 0; }
  void mmio_write(Gpa, unsigned, u64, const Serve&) override {}
  bool acquire_page(Gpa, memory::AccessType, const Serve&) override { return false; }
};

}  // namespace dvmm::vmm
