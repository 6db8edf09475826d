// A RISC-V RV64GC hart in S- and U-mode. The monitor plays M-mode: it implements the SBI
// and owns the machine. Hart::run() executes guest code until an exit (cpu/exit.hpp).
//
// Threads. Each hart belongs to one host thread, its "hart thread": run() and every method
// in the "hart thread only" section are called from it alone. The methods in the "any
// thread" section may be called from anywhere (other harts, device threads, the control
// plane); they post a request and kick the hart, which takes it at the next instruction
// boundary.
//
// Inside: instructions are decoded once per physical page into DecodedInsn slots (a
// function pointer plus operands) and dispatched through them; a per-privilege software TLB
// holds host-pointer addends for read, write and execute separately. The members under
// "interpreter internals" are used by the instruction implementations in cpu/*.cpp only.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "base/types.hpp"
#include "cpu/controls.hpp"
#include "cpu/exit.hpp"
#include "cpu/time_source.hpp"
#include "memory/guest_ram.hpp"

namespace dvmm::cpu {

class Hart;
struct DecodedInsn;
using InsnHandler = void (*)(Hart&, const DecodedInsn&);

// One decoded instruction. Compressed instructions are expanded to their 32-bit form first;
// handlers are instantiated per instruction length, so the length is in `fn`.
struct DecodedInsn {
  InsnHandler fn;
  i32 imm;
  u8 rd, rs1, rs2, rs3;  // rs3 also carries the rounding mode / CSR details where needed
};
static_assert(sizeof(DecodedInsn) == 16);

enum class Privilege : u8 { kUser = 0, kSupervisor = 1 };

// Exception causes (scause with the interrupt bit clear), privileged spec table 4.2.
enum ExceptionCause : u64 {
  kInsnMisaligned = 0,
  kInsnAccessFault = 1,
  kIllegalInsn = 2,
  kBreakpoint = 3,
  kLoadMisaligned = 4,
  kLoadAccessFault = 5,
  kStoreMisaligned = 6,
  kStoreAccessFault = 7,
  kEcallFromU = 8,
  kEcallFromS = 9,
  kInsnPageFault = 12,
  kLoadPageFault = 13,
  kStorePageFault = 15,
};

// Interrupt numbers (bit positions in sip/sie).
enum InterruptBit : u64 { kSsi = 1, kSti = 5, kSei = 9 };

// Thrown by the interpreter to raise a guest exception; caught in run().
struct GuestTrap {
  u64 cause;
  u64 tval;
};
// Thrown to leave run() with pending_exit_ set.
struct ExitUnwind {};

struct TlbEntry {
  u64 tag = ~u64{0};   // virtual page number, or all-ones when empty
  i64 addend = 0;      // host address = guest virtual address + addend
  u64 page_index = 0;  // RAM page index (for code-write tracking)
};

// Counters a monitor may read at any time (relaxed).
struct HartCounters {
  std::atomic<u64> tlb_misses{0};
  std::atomic<u64> page_walks{0};
  std::atomic<u64> traps{0};
  std::atomic<u64> interrupts{0};
  std::atomic<u64> decoded_pages{0};
};

class Hart {
 public:
  Hart(HartId id, memory::GuestRam& ram, const TimeSource& time);
  ~Hart();
  Hart(const Hart&) = delete;
  Hart& operator=(const Hart&) = delete;

  HartId id() const { return id_; }

  // ---------------------------------------------------------------- hart thread only
  // Runs guest code for at most `budget` instructions.
  Exit run(u64 budget = ~u64{0});
  // Completes the ExitMmioRead returned by the last run().
  void complete_mmio_read(u64 value);
  // Writes the result of the SBI call returned by the last run() (a0 = error, a1 = value).
  void set_sbi_result(i64 error, u64 value);
  // Delivers an exception to the guest as if it had just been raised (trap entry).
  void deliver_exception(u64 cause, u64 tval);
  // Resets the architectural state for entry at `pc` in S-mode with paging off and
  // interrupts disabled, a0 = `a0`, a1 = `a1` (the boot protocol and SBI HSM hart_start).
  void reset(u64 pc, u64 a0, u64 a1);
  // Takes pending any-thread requests (TLB flushes, controls) without running guest code;
  // the monitor calls it while the hart waits (WFI, stopped).
  void service_requests();

  u64 x(unsigned i) const { return xreg_[i & 31]; }
  void set_x(unsigned i, u64 v) {
    if ((i & 31) != 0) xreg_[i & 31] = v;
  }
  u64 f(unsigned i) const { return freg_[i & 31]; }
  void set_f(unsigned i, u64 v) { freg_[i & 31] = v; }
  u64 pc() const { return pc_; }
  void set_pc(u64 pc) { pc_ = pc; }
  Privilege privilege() const { return priv_; }
  u64 instret() const { return instret_; }
  const ExecControls& controls() const { return controls_; }
  // Whether an interrupt is pending and enabled in sie (ignoring sstatus.SIE): the WFI
  // wake-up condition. Hart thread, but reads only atomics and hart-owned fields.
  bool interrupt_pending() const;
  // stimecmp (Sstc); the time at which the timer interrupt becomes pending.
  u64 timer_deadline() const { return stimecmp_; }
  const TimeSource& time_source() const { return time_; }
  // The hart whose thread this is (bound by the monitor's vCPU thread), or null. A thread
  // that waits for every local hart to flush (a DSM downgrade, a remote fence) serves its
  // own hart's request through it instead of waiting for itself.
  static Hart* on_this_thread() { return this_thread_hart_; }
  void bind_to_this_thread() { this_thread_hart_ = this; }

  // Debugger and monitor access to CSRs: no privilege checks and no side effects beyond the
  // CSR's own state. nullopt / false for a CSR this hart does not implement.
  std::optional<u64> debug_read_csr(u16 csr) const;
  bool debug_write_csr(u16 csr, u64 value);
  // Translates a guest-virtual address with the current satp, without side effects (no A/D
  // updates). nullopt when not mapped.
  std::optional<Gpa> debug_translate(Gva va, memory::AccessType type) const;

  // ---------------------------------------------------------------- any thread
  // Asks the hart to stop at the next instruction boundary; run() returns ExitKicked.
  void kick();
  // The S-mode external interrupt line (from the PLIC): level-triggered.
  void set_external_interrupt(bool level);
  // Sets sip.SSIP (an IPI through the SBI).
  void raise_software_interrupt();
  // Asks the hart to drop its TLB and decoded instructions (sfence.vma + fence.i on its
  // behalf). Returns a ticket; flush_done(ticket) turns true once the hart has done it.
  u64 request_flush();
  bool flush_done(u64 ticket) const {
    return flush_done_.load(std::memory_order_acquire) >= ticket;
  }
  // New execution controls, applied at the next instruction boundary.
  void set_controls(const ExecControls& controls);
  // Called (from the posting thread) after any of the above, so that a monitor waiting
  // for this hart in WFI can wake up. Set it before the hart runs.
  void set_wakeup(std::function<void()> wakeup) { wakeup_ = std::move(wakeup); }
  const HartCounters& counters() const { return counters_; }

  // ---------------------------------------------------------------- interpreter internals
  // Used by the instruction implementations (cpu/exec_*.cpp); not an API for monitors.
  static constexpr unsigned kTlbSize = 1024;
  static constexpr u64 kInvalidFetchPage = u64{1} << 63;

  u64 xreg_[33] = {};  // x0..x31, plus a sink that decoded writes to x0 go to
  u64 freg_[32] = {};
  u64 pc_ = 0;
  Privilege priv_ = Privilege::kSupervisor;

  // CSR state
  u64 sstatus_ = 0;  // SIE, SPIE, SPP, FS, SUM, MXR (UXL and SD are synthesized)
  u64 sie_ = 0;
  u64 stvec_ = 0;
  u64 scounteren_ = 0;
  u64 senvcfg_ = 0;
  u64 sscratch_ = 0;
  u64 sepc_ = 0;
  u64 scause_ = 0;
  u64 stval_ = 0;
  u64 satp_ = 0;
  u64 stimecmp_ = ~u64{0};
  u32 fflags_ = 0;
  u32 frm_ = 0;
  u64 instret_ = 0;
  u64 pause_count_ = 0;  // Zihintpause hints executed (spin-wait detection)

  // LR/SC reservation: address and the value loaded by LR (SC compares-and-swaps it).
  u64 reservation_addr_ = ~u64{0};
  u64 reservation_value_ = 0;
  bool reservation_valid_ = false;

  // Instruction fetch: the decoded slots of the page pc is in.
  u64 fetch_vpage_ = kInvalidFetchPage;
  DecodedInsn* fetch_slots_ = nullptr;
  const u8* fetch_host_ = nullptr;  // host address of the fetch page's first byte
  u64 fetch_page_index_ = 0;
  // Instructions left in the current slice, and its length.
  u64 slice_left_ = 0;
  u64 slice_len_ = 0;
  bool stip_ = false;  // time >= stimecmp, refreshed at slice boundaries
  bool any_csr_intercept_ = false;
  static DecodedInsn* miss_slots();
  static inline thread_local Hart* this_thread_hart_ = nullptr;

  DVMM_ALWAYS_INLINE const DecodedInsn& fetch_decoded() {
    const u64 offset = pc_ - fetch_vpage_;
    if (DVMM_LIKELY(offset < kPageSize)) return fetch_slots_[offset >> 1];
    return fetch_slow();
  }
  const DecodedInsn& fetch_slow();
  // Decodes the instruction at pc_ into its slot (or a temporary for one that crosses a
  // page) and executes it. The handler of undecoded slots.
  static void decode_and_execute(Hart& h, const DecodedInsn& slot);

  TlbEntry* cur_tlb_ = nullptr;  // tlb_[priv_]
  TlbEntry tlb_[2][3][kTlbSize];

  static DVMM_ALWAYS_INLINE unsigned tlb_index(u64 va) {
    return static_cast<unsigned>(va >> kPageShift) & (kTlbSize - 1);
  }
  DVMM_ALWAYS_INLINE TlbEntry& tlb_entry(memory::AccessType type, u64 va) {
    return cur_tlb_[static_cast<unsigned>(type) * kTlbSize + tlb_index(va)];
  }

  template <typename T>
  DVMM_ALWAYS_INLINE T load(u64 va) {
    const TlbEntry& e = tlb_entry(memory::AccessType::kRead, va);
    if (DVMM_LIKELY(e.tag == (va >> kPageShift) && (va & kPageMask) <= kPageSize - sizeof(T))) {
      T v;
      __builtin_memcpy(&v, reinterpret_cast<const void*>(va + e.addend), sizeof(T));
      return v;
    }
    return static_cast<T>(load_slow(va, sizeof(T)));
  }
  template <typename T>
  DVMM_ALWAYS_INLINE void store(u64 va, T v) {
    const TlbEntry& e = tlb_entry(memory::AccessType::kWrite, va);
    if (DVMM_LIKELY(e.tag == (va >> kPageShift) && (va & kPageMask) <= kPageSize - sizeof(T))) {
      __builtin_memcpy(reinterpret_cast<void*>(va + e.addend), &v, sizeof(T));
      ram_.note_write(e.page_index);
      return;
    }
    store_slow(va, static_cast<u64>(v), sizeof(T));
  }
  u64 load_slow(u64 va, unsigned size);
  const u8* load_reserved_ptr(u64 va, unsigned size);
  void note_host_write(const u8* host);
  u32 raw_instruction_at_pc(unsigned* len);
  void store_slow(u64 va, u64 value, unsigned size);
  // Host pointer for an atomic access (AMO, LR, SC): requires natural alignment and RAM,
  // and write permission (the page must be exclusive).
  u8* atomic_host_ptr(u64 va, unsigned size);

  // Translation. Returns the guest-physical address or throws the page fault for `type`.
  Gpa translate(u64 va, memory::AccessType type);
  // Fills the TLB for `va` if it maps RAM this node may access; returns the host pointer of
  // va, or nullptr for MMIO. Throws ExitUnwind (page not present) or GuestTrap.
  u8* translate_to_host(u64 va, memory::AccessType type, Gpa* gpa_out);

  void flush_tlb();
  void flush_decoded();
  void set_privilege(Privilege p);

  // Traps and interrupts
  [[noreturn]] void raise(u64 cause, u64 tval) { throw GuestTrap{cause, tval}; }
  [[noreturn]] void illegal_instruction(u32 raw) { throw GuestTrap{kIllegalInsn, raw}; }
  void enter_trap(u64 cause, u64 tval, bool is_interrupt);
  void sret();
  u64 pending_interrupts() const;  // sip & sie
  u64 sip_value() const;
  void note_interrupt_state_changed() {
    attention_.fetch_or(kAttnInterrupt, std::memory_order_relaxed);
  }
  [[noreturn]] void exit_with(Exit e) {
    pending_exit_ = std::move(e);
    throw ExitUnwind{};
  }
  // An exit after the current instruction completes (no unwinding: MMIO accesses are
  // frequent, and a C++ exception costs microseconds). The instruction's handler goes on
  // (a load writes a placeholder that complete_mmio_read() replaces) and advances pc.
  void defer_exit(Exit e) {
    pending_exit_ = std::move(e);
    attention_.fetch_or(kAttnExit, std::memory_order_relaxed);
  }
  void wfi();

  // CSR instructions (cpu/csr.cpp).
  u64 csr_read(u16 csr, u32 raw);
  void csr_write(u16 csr, u64 value, u32 raw);
  void csr_intercept_check(u16 csr, bool reads, bool writes, u64 new_value);
  bool fp_enabled() const { return (sstatus_ & kSstatusFs) != 0; }
  void mark_fp_dirty() { sstatus_ |= kSstatusFs; }
  u64 read_time() const { return time_.now(); }
  u64 current_instret() const;

  static constexpr u64 kSstatusSie = 1u << 1;
  static constexpr u64 kSstatusSpie = 1u << 5;
  static constexpr u64 kSstatusSpp = 1u << 8;
  static constexpr u64 kSstatusFs = 3u << 13;
  static constexpr u64 kSstatusSum = 1u << 18;
  static constexpr u64 kSstatusMxr = 1u << 19;

  // kAttnExit: an instruction completed with an exit for the monitor (an MMIO access,
  // defer_exit()); the loop stops before the next instruction and run() returns it.
  enum Attention : u32 {
    kAttnKick = 1,
    kAttnInterrupt = 2,
    kAttnFlush = 4,
    kAttnControls = 8,
    kAttnExit = 16
  };
  std::atomic<u32> attention_{0};

 private:
  struct DecodedPage;
  void execute_slice(u64 n);
  void account_slice();
  std::optional<Exit> take_attention();
  void cancel_deferred_exit();
  bool check_interrupts();
  bool exception_intercepted(u64 cause, u64 tval) const;
  void apply_mmio_read(u64 value);

  HartId id_;
  memory::GuestRam& ram_;
  const TimeSource& time_;
  std::function<void()> wakeup_;

  std::atomic<u64> irq_lines_{0};  // SSIP and SEIP as set from outside
  std::atomic<u64> flush_requested_{0};
  std::atomic<u64> flush_done_{0};
  std::mutex controls_mutex_;
  ExecControls pending_controls_;
  ExecControls controls_;
  bool debug_checks_ = false;  // single-step or breakpoints on: per-instruction checks
  u64 skip_breakpoint_pc_ = ~u64{0};
  u64 skip_csr_intercept_pc_ = ~u64{0};

  Exit pending_exit_;
  bool mmio_read_pending_ = false;
  u32 mmio_raw_ = 0;  // the load instruction waiting for its MMIO value
  unsigned mmio_len_ = 0;
  u64 budget_left_ = 0;

  static constexpr unsigned kCodeCacheSize = 512;
  std::vector<std::unique_ptr<DecodedPage>> code_cache_;

  HartCounters counters_;
};

}  // namespace dvmm::cpu
