#include "devices/plic.hpp"

namespace dvmm::devices {

class Plic::Line final : public IrqLine {
 public:
  Line(Plic& plic, u32 id) : plic_(plic), id_(id) {}
  void set_level(bool level) override { plic_.set_source_level(id_, level); }

 private:
  Plic& plic_;
  u32 id_;
};

Plic::Plic(std::vector<ContextCallback> contexts) {
  contexts_.resize(contexts.size());
  for (std::size_t i = 0; i < contexts.size(); ++i) contexts_[i].callback = std::move(contexts[i]);
  lines_.reserve(kSources);
  for (u32 id = 0; id < kSources; ++id) lines_.push_back(std::make_unique<Line>(*this, id));
}

Plic::~Plic() = default;

IrqLine& Plic::line(u32 id) {
  return *lines_.at(id);
}

bool Plic::context_output(unsigned ctx) const {
  std::lock_guard lock(mutex_);
  return ctx < contexts_.size() && contexts_[ctx].output;
}

void Plic::reset() {
  std::lock_guard lock(mutex_);
  priority_.fill(0);
  // Input levels are the devices' business: they reset themselves and lower their lines.
  pending_ = level_ & ~u64{1};
  claimed_ = 0;
  for (Context& c : contexts_) {
    c.enable = 0;
    c.threshold = 0;
  }
  update_outputs();
}

void Plic::set_source_level(u32 id, bool level) {
  if (id == 0 || id >= kSources) return;
  std::lock_guard lock(mutex_);
  const u64 bit = u64{1} << id;
  if (level) {
    level_ |= bit;
    // The gateway forwards a request only when the previous one has been completed.
    if (!(claimed_ & bit)) pending_ |= bit;
  } else {
    level_ &= ~bit;
    // A source that drops its line before being claimed withdraws the request, as in QEMU.
    // (The spec lets the request stand; then the handler finds nothing to do.)
    pending_ &= ~bit;
  }
  update_outputs();
}

u32 Plic::best_source(const Context& ctx) const {
  u64 candidates = pending_ & ctx.enable & ~claimed_;
  u32 best = 0;
  u32 best_priority = ctx.threshold;
  while (candidates != 0) {
    const u32 id = static_cast<u32>(__builtin_ctzll(candidates));
    candidates &= candidates - 1;
    if (priority_[id] > best_priority) {
      best = id;
      best_priority = priority_[id];
    }
  }
  return best;
}

void Plic::update_outputs() {
  for (Context& c : contexts_) {
    const bool level = best_source(c) != 0;
    if (level != c.output) {
      c.output = level;
      if (c.callback) c.callback(level);
    }
  }
}

u32 Plic::claim(Context& ctx) {
  // Like QEMU, a claim honours the threshold: it returns what the context is being
  // notified of, and 0 when nothing is.
  const u32 id = best_source(ctx);
  if (id != 0) {
    const u64 bit = u64{1} << id;
    pending_ &= ~bit;
    claimed_ |= bit;
    update_outputs();
  }
  return id;
}

void Plic::complete(Context& ctx, u32 id) {
  if (id == 0 || id >= kSources) return;
  const u64 bit = u64{1} << id;
  // PLIC spec: a completion for a source not enabled for the context is ignored.
  if (!(ctx.enable & bit)) return;
  claimed_ &= ~bit;
  if (level_ & bit) pending_ |= bit;
  update_outputs();
}

u64 Plic::read(u64 offset, unsigned size) {
  if (size == 4) {
    std::lock_guard lock(mutex_);
    return read32(offset);
  }
  if (size == 8 && (offset & 7) == 0) {
    std::lock_guard lock(mutex_);
    const u64 lo = read32(offset);
    const u64 hi = read32(offset + 4);
    return lo | (hi << 32);
  }
  // The spec defines 32-bit registers only; narrower reads see part of the word, without
  // side effects (a byte read of claim does not claim).
  std::lock_guard lock(mutex_);
  const u64 word_offset = offset & ~u64{3};
  if (word_offset >= kContextBase && ((word_offset - kContextBase) % kContextStride) == 4) return 0;
  const u64 word = read32(word_offset);
  const unsigned shift = static_cast<unsigned>(offset & 3) * 8;
  const u64 mask = size >= 4 ? ~u64{0} : (u64{1} << (size * 8)) - 1;
  return (word >> shift) & mask;
}

void Plic::write(u64 offset, unsigned size, u64 value) {
  std::lock_guard lock(mutex_);
  if (size == 4) {
    write32(offset, static_cast<u32>(value));
  } else if (size == 8 && (offset & 7) == 0) {
    write32(offset, static_cast<u32>(value));
    write32(offset + 4, static_cast<u32>(value >> 32));
  }
  // Narrower writes are not defined by the spec and are ignored.
}

u32 Plic::read32(u64 offset) {
  if (offset < kPendingBase) {
    const u64 id = (offset - kPriorityBase) / 4;
    return id < kSources ? priority_[id] : 0;
  }
  if (offset < kEnableBase) {
    const u64 word = (offset - kPendingBase) / 4;
    return word < kSources / 32 ? static_cast<u32>(pending_ >> (32 * word)) : 0;
  }
  if (offset < kContextBase) {
    const u64 ctx = (offset - kEnableBase) / kEnableStride;
    const u64 word = ((offset - kEnableBase) % kEnableStride) / 4;
    if (ctx >= contexts_.size() || word >= kSources / 32) return 0;
    return static_cast<u32>(contexts_[ctx].enable >> (32 * word));
  }
  const u64 ctx = (offset - kContextBase) / kContextStride;
  const u64 reg = (offset - kContextBase) % kContextStride;
  if (ctx >= contexts_.size()) return 0;
  if (reg == 0) return contexts_[ctx].threshold;
  if (reg == 4) return claim(contexts_[ctx]);
  return 0;
}

void Plic::write32(u64 offset, u32 value) {
  if (offset < kPendingBase) {
    const u64 id = (offset - kPriorityBase) / 4;
    if (id == 0 || id >= kSources) return;
    priority_[id] = value & kMaxPriority;
    update_outputs();
    return;
  }
  if (offset < kEnableBase) return;  // pending bits are read-only
  if (offset < kContextBase) {
    const u64 ctx = (offset - kEnableBase) / kEnableStride;
    const u64 word = ((offset - kEnableBase) % kEnableStride) / 4;
    if (ctx >= contexts_.size() || word >= kSources / 32) return;
    u64& enable = contexts_[ctx].enable;
    const unsigned shift = static_cast<unsigned>(32 * word);
    enable = (enable & ~(u64{0xffff'ffff} << shift)) | (u64{value} << shift);
    enable &= ~u64{1};  // source 0 does not exist
    update_outputs();
    return;
  }
  const u64 ctx = (offset - kContextBase) / kContextStride;
  const u64 reg = (offset - kContextBase) % kContextStride;
  if (ctx >= contexts_.size()) return;
  if (reg == 0) {
    contexts_[ctx].threshold = value & kMaxPriority;
    update_outputs();
  } else if (reg == 4) {
    complete(contexts_[ctx], value);
  }
}

void Plic::describe(FdtBuilder& fdt, const FdtPlacement& where) const {
  fdt.begin_node(fdt_node_name("plic", where.base));
  fdt.prop_u32("#interrupt-cells", 1);
  fdt.prop_u32("#address-cells", 0);
  fdt.prop_strings("compatible", {"sifive,plic-1.0.0", "riscv,plic0"});
  fdt.prop_reg(where.base, where.size);
  fdt.prop_empty("interrupt-controller");
  fdt.prop_u32("riscv,ndev", kSources - 1);
  std::vector<u32> ext;
  // Context n is hart n's S-mode context: <&cpuN_intc 9> (9 = supervisor external).
  for (std::size_t i = 0; i < contexts_.size() && i < where.cpu_intc_phandles.size(); ++i) {
    ext.push_back(where.cpu_intc_phandles[i]);
    ext.push_back(9);
  }
  fdt.prop_cells("interrupts-extended", ext);
  fdt.prop_u32("phandle", where.phandle);
  fdt.end_node();
}

bool Plic::source_enabled(u32 id) const {
  if (id == 0 || id >= kSources) return false;
  std::lock_guard lock(mutex_);
  if (priority_[id] == 0) return false;
  for (const Context& c : contexts_) {
    if (c.enable & (u64{1} << id)) return true;
  }
  return false;
}

}  // namespace dvmm::devices
