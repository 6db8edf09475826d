// The exit interface between a vCPU and its monitor: the analogue of VT-x's VM exits and of
// KVM_RUN's exit reasons. Hart::run() executes guest code until something needs the monitor
// and returns one of these. It is a closed set: the monitor handles every alternative.
#pragma once

#include <variant>

#include "base/types.hpp"
#include "memory/guest_ram.hpp"

namespace dvmm::cpu {

// ecall from S-mode: an SBI call. The hart has already advanced pc past the ecall; the
// monitor writes the result to a0/a1 (Hart::set_sbi_result) before the next run().
struct ExitSbiCall {
  u64 eid;      // a7
  u64 fid;      // a6
  u64 args[6];  // a0..a5
};

// wfi executed with WFI exiting on. pc is past the wfi. The monitor waits until
// Hart::interrupt_pending() (or its own reasons) and runs again.
struct ExitWfi {};

// A load from guest-physical space that is not RAM. The monitor performs the device read
// and must call Hart::complete_mmio_read(value) before the next run(); that fills the
// destination register and advances pc.
struct ExitMmioRead {
  Gpa gpa;
  u8 size;  // 1, 2, 4 or 8
};

// A store to guest-physical space that is not RAM. The store is considered done from the
// guest's point of view: pc is already past the instruction.
struct ExitMmioWrite {
  Gpa gpa;
  u8 size;
  u64 value;
};

// The page holding `gpa` is not accessible on this node for `access` (the distributed
// memory has not brought it here, or holds it read-only and this is a write). Nothing was
// executed: the monitor makes the page available and runs again; the access is retried.
struct ExitPageNotPresent {
  Gpa gpa;
  memory::AccessType access;
};

// A guest exception selected by the exception bitmap of the execution controls. It has not
// been delivered: the guest state is that of the faulting instruction. The monitor either
// calls Hart::deliver_exception(cause, tval) to pass it to the guest, or changes state.
struct ExitException {
  u64 cause;
  u64 tval;
  u64 pc;
};

// An access to a CSR selected by the CSR intercept bitmaps, before it executes. Calling
// run() again executes the instruction once without intercepting it (Hart::skip_intercept
// is implied), unless the monitor moved pc.
struct ExitCsrAccess {
  u16 csr;
  bool write;     // the instruction writes the CSR
  u64 new_value;  // the value it would write (computed from rs1/uimm and the old value)
  u64 pc;
};

// pc reached an instruction breakpoint; the instruction has not executed. run() again
// executes it once before breakpoints at this pc apply again.
struct ExitBreakpoint {
  u64 pc;
};

// Single-step is on and one instruction (or a trap entry) completed.
struct ExitSingleStep {
  u64 pc;
};

// Another thread called Hart::kick(): stop to take a request (interrupt, TLB flush,
// new controls, pause).
struct ExitKicked {};

// The instruction budget given to run() is spent.
struct ExitBudgetExhausted {};

using Exit = std::variant<ExitSbiCall, ExitWfi, ExitMmioRead, ExitMmioWrite, ExitPageNotPresent,
                          ExitException, ExitCsrAccess, ExitBreakpoint, ExitSingleStep, ExitKicked,
                          ExitBudgetExhausted>;

// A short, stable name for each exit kind (for counters and traces).
const char* exit_name(const Exit& exit);
inline constexpr std::size_t kExitKinds = std::variant_size_v<Exit>;

}  // namespace dvmm::cpu
