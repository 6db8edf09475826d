// The platform-level interrupt controller: SiFive-compatible ("sifive,plic-1.0.0",
// "riscv,plic0"), as described by the RISC-V PLIC specification 1.0.0. Owns the gateways of
// up to 63 interrupt sources (ids 1..63; id 0 means "none") and one context per hart, which
// is that hart's S-mode context (context n = hart n; the device tree's interrupts-extended
// lists <&cpuN_intc 9> in hart order, so Linux numbers the contexts the same way).
//
// Register map (offsets into the 0x400_0000 window):
//   0x00_0000 + 4*id        priority of source id (0 = never interrupts, 1..7)
//   0x00_1000 + 4*w         pending bits of sources 32w..32w+31 (read-only)
//   0x00_2000 + 0x80*c + 4*w enable bits of context c
//   0x20_0000 + 0x1000*c    priority threshold of context c
//   0x20_0004 + 0x1000*c    claim (read) / complete (write) of context c
//
// Sources are level-triggered: a source whose line is high becomes pending unless it is
// claimed and not yet completed; at completion a still-high line makes it pending again.
//
// Threads: read/write from any vCPU thread, set_source_level from any device thread. One
// mutex guards all state; the context callbacks run with it held (so the levels they report
// are never reordered), which means a callback must not call back into the PLIC.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/mmio_device.hpp"

namespace dvmm::devices {

class Plic final : public MmioDevice {
 public:
  static constexpr u32 kSources = 64;  // ids 0..63, 0 reserved: riscv,ndev = 63
  static constexpr u64 kWindowSize = 0x400'0000;
  static constexpr u32 kMaxPriority = 7;
  static constexpr u64 kPriorityBase = 0x0;
  static constexpr u64 kPendingBase = 0x1000;
  static constexpr u64 kEnableBase = 0x2000;
  static constexpr u64 kEnableStride = 0x80;
  static constexpr u64 kContextBase = 0x20'0000;
  static constexpr u64 kContextStride = 0x1000;
  static constexpr unsigned kMaxContexts =
      static_cast<unsigned>((kWindowSize - kContextBase) / kContextStride);

  // Called with the new level of a context's interrupt output (its hart's SEIP) whenever it
  // changes. The machine wires context n to Hart::set_external_interrupt of hart n.
  using ContextCallback = std::function<void(bool level)>;

  // One context per callback, in hart order.
  explicit Plic(std::vector<ContextCallback> contexts);
  ~Plic() override;

  std::string_view name() const override { return "plic"; }
  u64 size() const override { return kWindowSize; }
  u64 read(u64 offset, unsigned size) override;
  void write(u64 offset, unsigned size, u64 value) override;
  void reset() override;
  void describe(FdtBuilder& fdt, const FdtPlacement& where) const override;

  // The level of source `id`'s input line (1..63; others are ignored). Any thread.
  void set_source_level(u32 id, bool level);
  // An IrqLine object that drives source `id`; owned by the PLIC, valid as long as it is.
  IrqLine& line(u32 id);

  unsigned context_count() const { return static_cast<unsigned>(contexts_.size()); }
  // The current output level of context `ctx` (what its callback last reported).
  bool context_output(unsigned ctx) const;
  // Whether a guest driver listens to source `id`: a priority above 0 and enabled in some
  // context.
  bool source_enabled(u32 id) const;

 private:
  struct Context {
    ContextCallback callback;
    u64 enable = 0;
    u32 threshold = 0;
    bool output = false;
  };
  class Line;

  u32 read32(u64 offset);
  void write32(u64 offset, u32 value);
  // Highest-priority source that is pending, enabled for ctx, not claimed, and above the
  // threshold; 0 when there is none. Ties go to the lowest id (PLIC spec, "Interrupt
  // Priorities").
  u32 best_source(const Context& ctx) const;
  u32 claim(Context& ctx);
  void complete(Context& ctx, u32 id);
  // Recomputes every context's output and calls the callbacks whose level changed.
  void update_outputs();

  mutable std::mutex mutex_;
  std::array<u32, kSources> priority_{};
  u64 level_ = 0;    // input line levels
  u64 pending_ = 0;  // gateway pending bits
  u64 claimed_ = 0;  // claimed, completion outstanding: the gateway holds new requests
  std::vector<Context> contexts_;
  std::vector<std::unique_ptr<Line>> lines_;
};

}  // namespace dvmm::devices
