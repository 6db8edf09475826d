// VmControls as JSON, for the control API: the same names as the configuration file's
// [controls] table (docs/CONFIG.md).
//   {"exceptions": ["illegal_instruction"], "csr_read": [], "csr_write": ["satp"],
//    "wfi_exiting": true, "halt_poll_us": 0, "single_step": false, "breakpoints": [],
//    "action": "log", "sbi_trace": [], "mmio_trace": []}
//
// Threads: free functions.
#pragma once

#include <nlohmann/json.hpp>

#include "vmm/vm_controls.hpp"

namespace dvmm::control {

nlohmann::json controls_to_json(const vmm::VmControls& c);
// A partial update: only the keys present change. Unknown keys, wrong types and unknown
// names throw vmm::ControlError naming the key; `c` is then unchanged.
void apply_controls_json(vmm::VmControls& c, const nlohmann::json& update);

}  // namespace dvmm::control
