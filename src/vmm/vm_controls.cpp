#include "vmm/vm_controls.hpp"

#include <array>

#include "cpu/csr.hpp"

namespace dvmm::vmm {

namespace {

// Privileged spec, table 3.6 (S-mode visible causes); 10 and 14 are reserved.
constexpr std::array<const char*, 16> kExceptionNames = {
    "instruction_misaligned",
    "instruction_access_fault",
    "illegal_instruction",
    "breakpoint",
    "load_misaligned",
    "load_access_fault",
    "store_misaligned",
    "store_access_fault",
    "ecall_from_u",
    "ecall_from_s",
    nullptr,
    "ecall_from_m",
    "instruction_page_fault",
    "load_page_fault",
    nullptr,
    "store_page_fault",
};

constexpr std::array<const char*, 4> kActionNames = {"count", "log", "pause", "deliver"};

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// Checks that every name is in `valid` (or "all").
void check_names(const std::vector<std::string>& names, const std::vector<std::string>& valid,
                 const char* what) {
  for (const std::string& n : names) {
    if (n == "all") continue;
    bool ok = false;
    for (const std::string& v : valid) ok = ok || v == n;
    if (!ok) {
      throw ControlError("unknown " + std::string(what) + " '" + n + "' (known: " + join(valid) +
                         ", all)");
    }
  }
}

std::set<std::string> expand(const std::vector<std::string>& names,
                             const std::vector<std::string>& valid) {
  std::set<std::string> out;
  for (const std::string& n : names) {
    if (n == "all") {
      out.insert(valid.begin(), valid.end());
    } else {
      out.insert(n);
    }
  }
  return out;
}

std::bitset<4096> csr_bits(const std::vector<std::string>& names) {
  std::bitset<4096> bits;
  for (const std::string& n : names) {
    if (n == "all") {
      for (const cpu::CsrInfo& info : cpu::csr_table()) bits.set(info.number);
      continue;
    }
    const auto num = cpu::csr_by_name(n);
    if (!num) throw ControlError("unknown CSR '" + n + "' (use the assembler name, e.g. satp)");
    bits.set(*num);
  }
  return bits;
}

std::vector<std::string> csr_names(const std::bitset<4096>& bits) {
  std::vector<std::string> out;
  for (const cpu::CsrInfo& info : cpu::csr_table()) {
    if (bits.test(info.number)) out.emplace_back(info.name);
  }
  return out;
}

}  // namespace

std::optional<unsigned> exception_by_name(std::string_view name) {
  for (unsigned i = 0; i < kExceptionNames.size(); ++i) {
    if (kExceptionNames[i] != nullptr && name == kExceptionNames[i]) return i;
  }
  return std::nullopt;
}

const char* exception_name(unsigned cause) {
  return cause < kExceptionNames.size() ? kExceptionNames[cause] : nullptr;
}

std::vector<std::string> exception_names() {
  std::vector<std::string> out;
  for (const char* n : kExceptionNames) {
    if (n != nullptr) out.emplace_back(n);
  }
  return out;
}

std::optional<ExitAction> action_by_name(std::string_view name) {
  for (unsigned i = 0; i < kActionNames.size(); ++i) {
    if (name == kActionNames[i]) return static_cast<ExitAction>(i);
  }
  return std::nullopt;
}

const char* action_name(ExitAction action) {
  return kActionNames.at(static_cast<unsigned>(action));
}

const std::vector<std::string>& sbi_extension_names() {
  static const std::vector<std::string> names = {"base", "time", "ipi",  "rfence",
                                                 "hsm",  "srst", "dbcn", "legacy"};
  return names;
}

const std::vector<std::string>& device_names() {
  static const std::vector<std::string> names = {"uart0", "plic", "finisher"};
  return names;
}

void set_exceptions(VmControls& c, const std::vector<std::string>& names) {
  u64 bitmap = 0;
  for (const std::string& n : names) {
    if (n == "all") {
      for (unsigned i = 0; i < kExceptionNames.size(); ++i) {
        // ecall from S-mode is the SBI: always the monitor's, never an intercept.
        if (kExceptionNames[i] != nullptr && i != 9) bitmap |= u64{1} << i;
      }
      continue;
    }
    const auto cause = exception_by_name(n);
    if (!cause) {
      throw ControlError("unknown exception '" + n + "' (known: " + join(exception_names()) +
                         ", all)");
    }
    if (*cause == 9) {
      throw ControlError("ecall_from_s is the SBI, which the monitor always handles");
    }
    bitmap |= u64{1} << *cause;
  }
  c.exec.exception_bitmap = bitmap;
}

void set_csr_reads(VmControls& c, const std::vector<std::string>& names) {
  c.exec.csr_read_intercept = csr_bits(names);
}

void set_csr_writes(VmControls& c, const std::vector<std::string>& names) {
  c.exec.csr_write_intercept = csr_bits(names);
}

void set_sbi_trace(VmControls& c, const std::vector<std::string>& names) {
  check_names(names, sbi_extension_names(), "SBI extension");
  c.sbi_trace = expand(names, sbi_extension_names());
}

void set_mmio_trace(VmControls& c, const std::vector<std::string>& names) {
  check_names(names, device_names(), "device");
  c.mmio_trace = expand(names, device_names());
}

std::vector<std::string> exception_list(const VmControls& c) {
  std::vector<std::string> out;
  for (unsigned i = 0; i < kExceptionNames.size(); ++i) {
    if (kExceptionNames[i] != nullptr && (c.exec.exception_bitmap >> i & 1)) {
      out.emplace_back(kExceptionNames[i]);
    }
  }
  return out;
}

std::vector<std::string> csr_read_list(const VmControls& c) {
  return csr_names(c.exec.csr_read_intercept);
}

std::vector<std::string> csr_write_list(const VmControls& c) {
  return csr_names(c.exec.csr_write_intercept);
}

}  // namespace dvmm::vmm
