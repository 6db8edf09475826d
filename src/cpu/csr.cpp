// The CSRs an S/U-mode hart implements (privileged spec chapter 4, Sstc, Zicntr, F).
// The monitor plays M-mode with every S-level delegation and counter enable set, so there
// are no M-level CSRs here: touching one from S-mode is an illegal instruction.
#include "cpu/csr.hpp"

#include "cpu/hart.hpp"

namespace dvmm::cpu {

namespace {
constexpr u64 kSstatusWritable = Hart::kSstatusSie | Hart::kSstatusSpie | Hart::kSstatusSpp |
                                 Hart::kSstatusFs | Hart::kSstatusSum | Hart::kSstatusMxr;
constexpr u64 kSstatusUxl64 = u64{2} << 32;
constexpr u64 kSieWritable = (u64{1} << kSsi) | (u64{1} << kSti) | (u64{1} << kSei);
constexpr u64 kSatpAsidBits = 16;
constexpr u64 kSatpWritable = (u64{0xf} << 60) | (((u64{1} << kSatpAsidBits) - 1) << 44) |
                              ((u64{1} << 44) - 1);
}  // namespace

const std::vector<CsrInfo>& csr_table() {
  static const std::vector<CsrInfo> table = {
      {0x001, "fflags", CsrInfo::kFloat},   {0x002, "frm", CsrInfo::kFloat},
      {0x003, "fcsr", CsrInfo::kFloat},     {0x100, "sstatus", 0},
      {0x104, "sie", 0},                    {0x105, "stvec", 0},
      {0x106, "scounteren", 0},             {0x10a, "senvcfg", 0},
      {0x140, "sscratch", 0},               {0x141, "sepc", 0},
      {0x142, "scause", 0},                 {0x143, "stval", 0},
      {0x144, "sip", 0},                    {0x14d, "stimecmp", 0},
      {0x180, "satp", 0},                   {0xc00, "cycle", CsrInfo::kCounter},
      {0xc01, "time", CsrInfo::kCounter},   {0xc02, "instret", CsrInfo::kCounter},
  };
  return table;
}

std::optional<u16> csr_by_name(std::string_view name) {
  for (const auto& c : csr_table()) {
    if (c.name == name) return c.number;
  }
  if (name.starts_with("hpmcounter")) {
    int n = 0;
    for (char ch : name.substr(10)) {
      if (ch < '0' || ch > '9') return std::nullopt;
      n = n * 10 + (ch - '0');
    }
    if (n >= 3 && n <= 31) return static_cast<u16>(0xc00 + n);
  }
  return std::nullopt;
}

// Reads without permission checks; nullopt when not implemented.
std::optional<u64> Hart::debug_read_csr(u16 csr) const {
  switch (csr) {
    case 0x001: return fflags_;
    case 0x002: return frm_;
    case 0x003: return (u64{frm_} << 5) | fflags_;
    case 0x100: {
      u64 v = sstatus_ | kSstatusUxl64;
      if ((sstatus_ & kSstatusFs) == kSstatusFs) v |= u64{1} << 63;
      return v;
    }
    case 0x104: return sie_;
    case 0x105: return stvec_;
    case 0x106: return scounteren_;
    case 0x10a: return senvcfg_;
    case 0x140: return sscratch_;
    case 0x141: return sepc_;
    case 0x142: return scause_;
    case 0x143: return stval_;
    case 0x144: {
      u64 v = irq_lines_.load(std::memory_order_acquire) & ((u64{1} << kSsi) | (u64{1} << kSei));
      if (time_.now() >= stimecmp_) v |= u64{1} << kSti;
      return v;
    }
    case 0x14d: return stimecmp_;
    case 0x180: return satp_;
    case 0xc00: return current_instret();
    case 0xc01: return time_.now();
    case 0xc02: return current_instret();
    default:
      if (csr >= 0xc03 && csr <= 0xc1f) return 0;  // hpmcounters: present, count nothing
      return std::nullopt;
  }
}

bool Hart::debug_write_csr(u16 csr, u64 value) {
  switch (csr) {
    case 0x001: fflags_ = value & 0x1f; mark_fp_dirty(); return true;
    case 0x002: frm_ = value & 7; mark_fp_dirty(); return true;
    case 0x003:
      fflags_ = value & 0x1f;
      frm_ = (value >> 5) & 7;
      mark_fp_dirty();
      return true;
    case 0x100: {
      const u64 changed = (sstatus_ ^ value) & (kSstatusSum | kSstatusMxr);
      sstatus_ = value & kSstatusWritable;
      // Permissions cached in the TLB depend on SUM and MXR.
      if (changed) flush_tlb();
      note_interrupt_state_changed();
      return true;
    }
    case 0x104: sie_ = value & kSieWritable; note_interrupt_state_changed(); return true;
    case 0x105: stvec_ = value & ~u64{2}; return true;  // modes 0 and 1 only
    case 0x106: scounteren_ = value & 0xffffffffu; return true;
    case 0x10a: senvcfg_ = value & 1; return true;      // FIOM only
    case 0x140: sscratch_ = value; return true;
    case 0x141: sepc_ = value & ~u64{1}; return true;
    case 0x142: scause_ = value; return true;
    case 0x143: stval_ = value; return true;
    case 0x144: {
      // Only SSIP is writable; STIP follows stimecmp and SEIP follows the PLIC line.
      const u64 bit = u64{1} << kSsi;
      if (value & bit) irq_lines_.fetch_or(bit, std::memory_order_acq_rel);
      else irq_lines_.fetch_and(~bit, std::memory_order_acq_rel);
      note_interrupt_state_changed();
      return true;
    }
    case 0x14d:
      stimecmp_ = value;
      stip_ = time_.now() >= stimecmp_;
      note_interrupt_state_changed();
      return true;
    case 0x180: {
      const u64 mode = value >> 60;
      // WARL: an unsupported mode leaves satp unchanged (Linux probes Sv57 this way).
      if (mode != 0 && mode != 8 && mode != 9) return true;
      satp_ = value & kSatpWritable;
      // ASIDs are not kept in the TLB, so every address-space switch flushes it.
      flush_tlb();
      return true;
    }
    default:
      return false;
  }
}

u64 Hart::csr_read(u16 csr, u32 raw) {
  const unsigned min_priv = (csr >> 8) & 3;
  if (min_priv > static_cast<unsigned>(priv_)) illegal_instruction(raw);
  if (csr <= 0x003 && !fp_enabled()) illegal_instruction(raw);
  if (csr >= 0xc00 && csr <= 0xc1f && priv_ == Privilege::kUser &&
      !((scounteren_ >> (csr - 0xc00)) & 1)) {
    illegal_instruction(raw);
  }
  const auto v = debug_read_csr(csr);
  if (!v) illegal_instruction(raw);
  return *v;
}

void Hart::csr_write(u16 csr, u64 value, u32 raw) {
  const unsigned min_priv = (csr >> 8) & 3;
  if (min_priv > static_cast<unsigned>(priv_)) illegal_instruction(raw);
  if ((csr >> 10) == 3) illegal_instruction(raw);  // read-only CSR
  if (csr <= 0x003 && !fp_enabled()) illegal_instruction(raw);
  if (!debug_write_csr(csr, value)) illegal_instruction(raw);
}

void Hart::csr_intercept_check(u16 csr, bool reads, bool writes, u64 new_value) {
  if (pc_ == skip_csr_intercept_pc_) {
    skip_csr_intercept_pc_ = ~u64{0};
    return;
  }
  if ((reads && controls_.csr_read_intercept.test(csr)) ||
      (writes && controls_.csr_write_intercept.test(csr))) {
    skip_csr_intercept_pc_ = pc_;
    exit_with(ExitCsrAccess{csr, writes, new_value, pc_});
  }
}

}  // namespace dvmm::cpu
