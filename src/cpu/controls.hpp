// Execution controls: the VMCS-execution-controls analogue. They decide which guest events
// leave the guest and exit to the monitor. Values are copied into the hart when it next
// stops (Hart::set_controls kicks it), so the fast path reads plain fields.
#pragma once

#include <bitset>
#include <vector>

#include "base/types.hpp"

namespace dvmm::cpu {

struct ExecControls {
  // Bit n set: guest exception with scause n exits (ExitException) instead of being
  // delivered. Causes 0..23 as in the privileged spec. ecall from S-mode (9) is always an
  // SBI exit and is not affected.
  u64 exception_bitmap = 0;
  // Page faults (causes 12, 13, 15) exit only when stval is inside [lo, hi) of this filter.
  u64 page_fault_filter_lo = 0;
  u64 page_fault_filter_hi = ~u64{0};
  // CSR number n set: reads (writes) of CSR n exit with ExitCsrAccess.
  std::bitset<4096> csr_read_intercept;
  std::bitset<4096> csr_write_intercept;
  // wfi exits (ExitWfi). When false, wfi is a no-op (the guest busy-waits).
  bool wfi_exiting = true;
  // Exit after every instruction.
  bool single_step = false;
  // Instruction breakpoints (guest-virtual pc).
  std::vector<u64> breakpoints;

  bool operator==(const ExecControls&) const = default;
};

}  // namespace dvmm::cpu
