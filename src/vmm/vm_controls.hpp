// The execution controls of a VM as users name them (issue 6): in the VM configuration file
// ([controls] in TOML), in the control API (JSON) and on the command line. They map onto
// the engine's cpu::ExecControls (which events exit) plus what the monitor does with an
// intercepted event, and which SBI extensions and devices are traced.
//
// Names: exceptions by the privileged spec's names in snake case ("illegal_instruction",
// "breakpoint", "ecall_from_u" = guest system calls, "load_page_fault", ...), CSRs by
// their assembler names ("satp", "sstatus"; see cpu/csr.hpp), SBI extensions by short
// name ("base", "time", "ipi", "rfence", "hsm", "srst", "dbcn", "legacy"), devices by their
// device-tree label ("uart0", "plic", "finisher"); "all" stands for every one of a list.
//
// Threads: plain values; the name tables are immutable.
#pragma once

#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cpu/controls.hpp"

namespace dvmm::vmm {

// What the monitor does with an intercepted event (an exception, a CSR access, a
// breakpoint): it is always counted; kLog also writes it to the trace stream; kPause also
// pauses the vCPU (resume from the control API); kDeliver hands exceptions to the guest
// unchanged and only counts.
enum class ExitAction : u8 { kCount, kLog, kPause, kDeliver };

struct VmControls {
  cpu::ExecControls exec;
  ExitAction action = ExitAction::kLog;
  // WFI: poll for an interrupt this long before the vCPU thread sleeps (0: sleep at once).
  u64 halt_poll_ns = 0;
  std::set<std::string> sbi_trace;   // extension names
  std::set<std::string> mmio_trace;  // device names

  bool operator==(const VmControls&) const = default;
};

// Exception causes 0..15 of the privileged spec; nullopt for an unknown name.
std::optional<unsigned> exception_by_name(std::string_view name);
// The name of cause `cause`, or nullptr.
const char* exception_name(unsigned cause);
// Every exception name, in cause order (for help and error messages).
std::vector<std::string> exception_names();

std::optional<ExitAction> action_by_name(std::string_view name);
const char* action_name(ExitAction action);

// SBI extension and device names that may be traced.
const std::vector<std::string>& sbi_extension_names();
const std::vector<std::string>& device_names();

// Thrown by the setters below: a message that names the bad value and lists the valid ones.
class ControlError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builders used by the configuration file and the control API: each checks every name
// first and changes nothing on error (ControlError).
void set_exceptions(VmControls& c, const std::vector<std::string>& names);
void set_csr_reads(VmControls& c, const std::vector<std::string>& names);
void set_csr_writes(VmControls& c, const std::vector<std::string>& names);
void set_sbi_trace(VmControls& c, const std::vector<std::string>& names);
void set_mmio_trace(VmControls& c, const std::vector<std::string>& names);

// The inverse, for `controls get`: names of what is set.
std::vector<std::string> exception_list(const VmControls& c);
std::vector<std::string> csr_read_list(const VmControls& c);
std::vector<std::string> csr_write_list(const VmControls& c);

}  // namespace dvmm::vmm
