// The hart's run loop, traps and interrupts, requests from other threads, and the decoded
// instruction cache. Memory translation lives in mmu.cpp, CSRs in csr.cpp.
#include "cpu/hart.hpp"

#include <algorithm>
#include <cstring>

#include "cpu/decode.hpp"

namespace dvmm::cpu {

// Instructions between checks of the timer (and of anything else not signalled through
// attention_). 4096 instructions are a few tens of microseconds.
static constexpr u64 kSliceLength = 4096;

struct Hart::DecodedPage {
  u64 page_index = ~u64{0};
  u32 generation = 0;
  DecodedInsn slots[kPageSize / 2];

  void reset(u64 index, u32 gen) {
    page_index = index;
    generation = gen;
    for (auto& s : slots) s = DecodedInsn{&Hart::decode_and_execute, 0, 0, 0, 0, 0};
  }
};

namespace {
// Slots of "no fetch page": every entry decodes, which first establishes the fetch page.
struct MissSlots {
  DecodedInsn slots[kPageSize / 2];
  MissSlots() {
    for (auto& s : slots) s = DecodedInsn{&Hart::decode_and_execute, 0, 0, 0, 0, 0};
  }
};
MissSlots g_miss_slots;
}  // namespace

DecodedInsn* Hart::miss_slots() {
  return g_miss_slots.slots;
}

Hart::Hart(HartId id, memory::GuestRam& ram, const TimeSource& time)
    : id_(id), ram_(ram), time_(time), code_cache_(kCodeCacheSize) {
  fetch_slots_ = miss_slots();
  reset(ram.base(), id, 0);
}

Hart::~Hart() = default;

void Hart::reset(u64 pc, u64 a0, u64 a1) {
  std::fill(std::begin(xreg_), std::end(xreg_), 0);
  std::fill(std::begin(freg_), std::end(freg_), 0);
  xreg_[10] = a0;
  xreg_[11] = a1;
  pc_ = pc;
  sstatus_ = 0;
  sie_ = 0;
  stvec_ = 0;
  // What firmware hands to the kernel (OpenSBI does the same): user mode may read cycle,
  // time and instret. Linux 6.1 never writes scounteren without the SBI PMU driver, and
  // the vDSO's clock_gettime reads `time` from user mode.
  scounteren_ = 7;
  senvcfg_ = 0;
  sscratch_ = 0;
  sepc_ = 0;
  scause_ = 0;
  stval_ = 0;
  satp_ = 0;
  stimecmp_ = ~u64{0};
  stip_ = false;
  fflags_ = 0;
  frm_ = 0;
  reservation_valid_ = false;
  mmio_read_pending_ = false;
  irq_lines_.fetch_and(~(u64{1} << kSsi), std::memory_order_relaxed);
  priv_ = Privilege::kSupervisor;
  cur_tlb_ = &tlb_[static_cast<unsigned>(priv_)][0][0];
  flush_tlb();
}

// ------------------------------------------------------------------------- run loop

Exit Hart::run(u64 budget) {
  if (DVMM_UNLIKELY(mmio_read_pending_)) apply_mmio_read(0);  // monitor did not complete it
  budget_left_ = budget;
  for (;;) {
    try {
      if (DVMM_UNLIKELY(attention_.load(std::memory_order_acquire) != 0)) {
        if (auto e = take_attention()) return std::move(*e);
      }
      stip_ = time_.now() >= stimecmp_;
      if (check_interrupts() && DVMM_UNLIKELY(controls_.single_step)) {
        return ExitSingleStep{pc_};
      }
      if (budget_left_ == 0) return ExitBudgetExhausted{};
      if (DVMM_UNLIKELY(debug_checks_)) {
        if (!controls_.breakpoints.empty() && pc_ != skip_breakpoint_pc_ &&
            std::find(controls_.breakpoints.begin(), controls_.breakpoints.end(), pc_) !=
                controls_.breakpoints.end()) {
          skip_breakpoint_pc_ = pc_;
          return ExitBreakpoint{pc_};
        }
        execute_slice(1);
        skip_breakpoint_pc_ = ~u64{0};
        if (attention_.load(std::memory_order_relaxed) & kAttnExit) continue;  // taken above
        if (controls_.single_step) return ExitSingleStep{pc_};
        continue;
      }
      execute_slice(std::min(kSliceLength, budget_left_));
    } catch (const GuestTrap& trap) {
      account_slice();
      cancel_deferred_exit();
      // A trap entry costs budget like an instruction, so a guest whose trap handler itself
      // faults (a trap storm) still returns to the monitor when the budget is spent.
      if (budget_left_ != 0) --budget_left_;
      skip_breakpoint_pc_ = ~u64{0};
      if (DVMM_UNLIKELY(controls_.exception_bitmap != 0) &&
          exception_intercepted(trap.cause, trap.tval)) {
        return ExitException{trap.cause, trap.tval, pc_};
      }
      enter_trap(trap.cause, trap.tval, false);
      if (DVMM_UNLIKELY(controls_.single_step)) return ExitSingleStep{pc_};
    } catch (const ExitUnwind&) {
      account_slice();
      return std::move(pending_exit_);
    }
  }
}

void Hart::execute_slice(u64 n) {
  slice_len_ = slice_left_ = n;
  while (DVMM_LIKELY(slice_left_ != 0)) {
    if (DVMM_UNLIKELY(attention_.load(std::memory_order_relaxed) != 0)) break;
    const DecodedInsn& d = fetch_decoded();
    d.fn(*this, d);
    --slice_left_;
  }
  account_slice();
}

void Hart::account_slice() {
  const u64 executed = slice_len_ - slice_left_;
  instret_ += executed;
  budget_left_ -= std::min(budget_left_, executed);
  slice_len_ = slice_left_ = 0;
}

u64 Hart::current_instret() const {
  return instret_ + (slice_len_ - slice_left_);
}

std::optional<Exit> Hart::take_attention() {
  const u32 a = attention_.exchange(0, std::memory_order_acq_rel);
  if (a & (kAttnFlush | kAttnControls)) service_requests();
  if (a & kAttnExit) {
    // The deferred exit goes first; a kick or an interrupt stays noted for the next run().
    if (const u32 rest = a & (kAttnKick | kAttnInterrupt)) {
      attention_.fetch_or(rest, std::memory_order_relaxed);
    }
    return std::move(pending_exit_);
  }
  if (a & kAttnKick) return Exit{ExitKicked{}};
  return std::nullopt;
}

void Hart::cancel_deferred_exit() {
  // An instruction that trapped after its MMIO access (none of RV64GC's do) must not also
  // leave with the access.
  if (attention_.fetch_and(~u32{kAttnExit}, std::memory_order_relaxed) & kAttnExit) {
    mmio_read_pending_ = false;
  }
}

void Hart::service_requests() {
  const u64 requested = flush_requested_.load(std::memory_order_acquire);
  if (flush_done_.load(std::memory_order_relaxed) < requested) {
    flush_tlb();
    flush_decoded();
    flush_done_.store(requested, std::memory_order_release);
  }
  bool changed = false;
  {
    std::lock_guard lock(controls_mutex_);
    if (!(pending_controls_ == controls_)) {
      controls_ = pending_controls_;
      changed = true;
    }
  }
  if (changed) {
    debug_checks_ = controls_.single_step || !controls_.breakpoints.empty();
    any_csr_intercept_ = controls_.csr_read_intercept.any() || controls_.csr_write_intercept.any();
  }
}

// ------------------------------------------------------------------------- traps

bool Hart::exception_intercepted(u64 cause, u64 tval) const {
  if (cause >= 64 || ((controls_.exception_bitmap >> cause) & 1) == 0) return false;
  if (cause == kInsnPageFault || cause == kLoadPageFault || cause == kStorePageFault) {
    return tval >= controls_.page_fault_filter_lo && tval < controls_.page_fault_filter_hi;
  }
  return true;
}

void Hart::enter_trap(u64 cause, u64 tval, bool is_interrupt) {
  counters_.traps.fetch_add(1, std::memory_order_relaxed);
  scause_ = is_interrupt ? ((u64{1} << 63) | cause) : cause;
  sepc_ = pc_;
  stval_ = tval;
  u64 s = sstatus_;
  s = (s & ~kSstatusSpie) | ((s & kSstatusSie) ? kSstatusSpie : 0);
  s &= ~kSstatusSie;
  s = (s & ~kSstatusSpp) | (priv_ == Privilege::kSupervisor ? kSstatusSpp : 0);
  sstatus_ = s;
  reservation_valid_ = false;
  set_privilege(Privilege::kSupervisor);
  const u64 base = stvec_ & ~u64{3};
  pc_ = (is_interrupt && (stvec_ & 1)) ? base + 4 * cause : base;
}

void Hart::deliver_exception(u64 cause, u64 tval) {
  enter_trap(cause, tval, false);
}

void Hart::sret() {
  const bool to_supervisor = (sstatus_ & kSstatusSpp) != 0;
  u64 s = sstatus_;
  s = (s & ~kSstatusSie) | ((s & kSstatusSpie) ? kSstatusSie : 0);
  s |= kSstatusSpie;
  s &= ~kSstatusSpp;
  sstatus_ = s;
  reservation_valid_ = false;
  set_privilege(to_supervisor ? Privilege::kSupervisor : Privilege::kUser);
  pc_ = sepc_;
  note_interrupt_state_changed();
}

u64 Hart::sip_value() const {
  u64 v = irq_lines_.load(std::memory_order_acquire) & ((u64{1} << kSsi) | (u64{1} << kSei));
  if (stip_) v |= u64{1} << kSti;
  return v;
}

u64 Hart::pending_interrupts() const {
  return sip_value() & sie_;
}

bool Hart::interrupt_pending() const {
  u64 v = irq_lines_.load(std::memory_order_acquire) & ((u64{1} << kSsi) | (u64{1} << kSei));
  if (time_.now() >= stimecmp_) v |= u64{1} << kSti;
  return (v & sie_) != 0;
}

bool Hart::check_interrupts() {
  const u64 pending = pending_interrupts();
  if (DVMM_LIKELY(pending == 0)) return false;
  if (priv_ == Privilege::kSupervisor && (sstatus_ & kSstatusSie) == 0) return false;
  // Priority among S-level interrupts: SEI > SSI > STI (privileged spec 3.1.9).
  u64 cause;
  if (pending & (u64{1} << kSei))
    cause = kSei;
  else if (pending & (u64{1} << kSsi))
    cause = kSsi;
  else
    cause = kSti;
  counters_.interrupts.fetch_add(1, std::memory_order_relaxed);
  enter_trap(cause, 0, true);
  return true;
}

void Hart::wfi() {
  // pc is already past the wfi. It completes at once when an interrupt is pending.
  if (!controls_.wfi_exiting) return;
  stip_ = time_.now() >= stimecmp_;
  if (pending_interrupts() != 0) return;
  exit_with(ExitWfi{});
}

// ------------------------------------------------------------------------- any thread

void Hart::kick() {
  attention_.fetch_or(kAttnKick, std::memory_order_release);
  if (wakeup_) wakeup_();
}

void Hart::set_external_interrupt(bool level) {
  const u64 bit = u64{1} << kSei;
  const u64 old = level ? irq_lines_.fetch_or(bit, std::memory_order_acq_rel)
                        : irq_lines_.fetch_and(~bit, std::memory_order_acq_rel);
  if (((old & bit) != 0) == level) return;
  attention_.fetch_or(kAttnInterrupt, std::memory_order_release);
  if (level && wakeup_) wakeup_();
}

void Hart::raise_software_interrupt() {
  irq_lines_.fetch_or(u64{1} << kSsi, std::memory_order_acq_rel);
  attention_.fetch_or(kAttnInterrupt, std::memory_order_release);
  if (wakeup_) wakeup_();
}

u64 Hart::request_flush() {
  const u64 ticket = flush_requested_.fetch_add(1, std::memory_order_acq_rel) + 1;
  attention_.fetch_or(kAttnFlush, std::memory_order_release);
  if (wakeup_) wakeup_();
  return ticket;
}

void Hart::set_controls(const ExecControls& controls) {
  {
    std::lock_guard lock(controls_mutex_);
    pending_controls_ = controls;
  }
  attention_.fetch_or(kAttnControls, std::memory_order_release);
  if (wakeup_) wakeup_();
}

// ------------------------------------------------------------------------- monitor side

void Hart::set_sbi_result(i64 error, u64 value) {
  xreg_[10] = static_cast<u64>(error);
  xreg_[11] = value;
}

void Hart::complete_mmio_read(u64 value) {
  if (mmio_read_pending_) apply_mmio_read(value);
}

void Hart::apply_mmio_read(u64 value) {
  mmio_read_pending_ = false;
  u32 raw = mmio_raw_;
  const unsigned len = mmio_len_;
  if (len == 2) raw = expand_compressed(static_cast<u16>(raw));
  const u32 opcode = raw & 0x7f;
  const u32 f3 = funct3_of(raw);
  const unsigned rd = rd_of(raw);
  if (opcode == 0x03) {
    u64 v;
    switch (f3) {
      case 0:
        v = static_cast<u64>(static_cast<i64>(static_cast<i8>(value)));
        break;
      case 1:
        v = static_cast<u64>(static_cast<i64>(static_cast<i16>(value)));
        break;
      case 2:
        v = static_cast<u64>(static_cast<i64>(static_cast<i32>(value)));
        break;
      case 4:
        v = value & 0xff;
        break;
      case 5:
        v = value & 0xffff;
        break;
      case 6:
        v = value & 0xffffffffu;
        break;
      default:
        v = value;
        break;
    }
    set_x(rd, v);
  } else if (opcode == 0x07) {
    freg_[rd] = f3 == 2 ? (0xffffffff00000000ull | (value & 0xffffffffu)) : value;
    mark_fp_dirty();
  }
  // pc is past the load already: its handler completed (with a placeholder value).
}

// ------------------------------------------------------------------------- decoded code

void Hart::set_privilege(Privilege p) {
  priv_ = p;
  cur_tlb_ = &tlb_[static_cast<unsigned>(p)][0][0];
  // Execute permission depends on the mode, so the fetch page is looked up again.
  fetch_vpage_ = kInvalidFetchPage;
  fetch_slots_ = miss_slots();
}

void Hart::flush_decoded() {
  fetch_vpage_ = kInvalidFetchPage;
  fetch_slots_ = miss_slots();
}

const DecodedInsn& Hart::fetch_slow() {
  u64 page_index;
  const u8* host;
  const TlbEntry& e = tlb_entry(memory::AccessType::kExecute, pc_);
  if (e.tag == (pc_ >> kPageShift)) {
    host = reinterpret_cast<const u8*>(pc_ + e.addend);
    page_index = e.page_index;
  } else {
    Gpa gpa;
    host = translate_to_host(pc_, memory::AccessType::kExecute, &gpa);
    if (host == nullptr) raise(kInsnAccessFault, pc_);
    page_index = ram_.page_index(gpa);
  }
  std::unique_ptr<DecodedPage>& slot = code_cache_[page_index % kCodeCacheSize];
  if (!slot) slot = std::make_unique<DecodedPage>();
  // Mark before reading the generation and the bytes: a concurrent store either lands
  // before we decode or bumps the generation.
  if (!ram_.is_code(page_index)) ram_.mark_code(page_index);
  const u32 gen = ram_.code_generation(page_index);
  if (slot->page_index != page_index || slot->generation != gen) {
    slot->reset(page_index, gen);
    counters_.decoded_pages.fetch_add(1, std::memory_order_relaxed);
  }
  const u64 offset = pc_ & kPageMask;
  fetch_vpage_ = pc_ - offset;
  fetch_slots_ = slot->slots;
  fetch_host_ = host - offset;
  fetch_page_index_ = page_index;
  return fetch_slots_[offset >> 1];
}

void Hart::decode_and_execute(Hart& h, const DecodedInsn& slot) {
  (void)slot;
  if (h.fetch_slots_ == miss_slots() || h.pc_ - h.fetch_vpage_ >= kPageSize) {
    const DecodedInsn& d = h.fetch_slow();
    d.fn(h, d);
    return;
  }
  const u64 offset = h.pc_ & kPageMask;
  u16 lo;
  std::memcpy(&lo, h.fetch_host_ + offset, 2);
  u32 raw;
  unsigned len;
  if ((lo & 3) != 3) {
    raw = expand_compressed(lo);
    len = 2;
  } else if (offset == kPageSize - 2) {
    // A 32-bit instruction across a page boundary: decode it each time, never cache it.
    Gpa gpa;
    const u8* next = h.translate_to_host(h.pc_ + 2, memory::AccessType::kExecute, &gpa);
    if (next == nullptr) h.raise(kInsnAccessFault, h.pc_ + 2);
    u16 hi;
    std::memcpy(&hi, next, 2);
    raw = static_cast<u32>(lo) | (static_cast<u32>(hi) << 16);
    const DecodedInsn tmp = decode(raw, 4, raw);
    tmp.fn(h, tmp);
    return;
  } else {
    std::memcpy(&raw, h.fetch_host_ + offset, 4);
    len = 4;
  }
  DecodedInsn& target = h.fetch_slots_[offset >> 1];
  target = decode(raw, len, len == 2 ? lo : raw);
  target.fn(h, target);
}

u32 Hart::raw_instruction_at_pc(unsigned* len) {
  u16 lo;
  Gpa gpa;
  const u8* p = translate_to_host(pc_, memory::AccessType::kExecute, &gpa);
  if (p == nullptr) raise(kInsnAccessFault, pc_);
  std::memcpy(&lo, p, 2);
  if ((lo & 3) != 3) {
    *len = 2;
    return lo;
  }
  *len = 4;
  u16 hi;
  const u8* q = ((pc_ + 2) & kPageMask) == 0
                    ? translate_to_host(pc_ + 2, memory::AccessType::kExecute, &gpa)
                    : p + 2;
  if (q == nullptr) raise(kInsnAccessFault, pc_ + 2);
  std::memcpy(&hi, q, 2);
  return static_cast<u32>(lo) | (static_cast<u32>(hi) << 16);
}

// ------------------------------------------------------------------------- exits

const char* exit_name(const Exit& exit) {
  static constexpr const char* kNames[] = {
      "sbi_call",   "wfi",        "mmio_read",   "mmio_write", "page_not_present", "exception",
      "csr_access", "breakpoint", "single_step", "kicked",     "budget_exhausted"};
  static_assert(std::size(kNames) == kExitKinds);
  return kNames[exit.index()];
}

}  // namespace dvmm::cpu
