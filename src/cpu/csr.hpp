// The table of CSRs a hart implements, by number and by the name the spec gives them, for
// the control plane and debugger (execution controls name CSRs; gdb reads them).
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "base/types.hpp"

namespace dvmm::cpu {

struct CsrInfo {
  enum Flags : unsigned { kFloat = 1, kCounter = 2 };
  u16 number;
  std::string_view name;
  unsigned flags;
};

// The CSRs with side effects or state (hpmcounter3..31 read as zero and are not listed).
const std::vector<CsrInfo>& csr_table();
// A CSR number from its name ("satp", "hpmcounter5"); nullopt when unknown.
std::optional<u16> csr_by_name(std::string_view name);

}  // namespace dvmm::cpu
