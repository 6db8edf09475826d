// RV64I, M, Zicsr, Zifencei and the privileged instructions (ecall, ebreak, sret, wfi,
// sfence.vma): their handlers and decoder. Each handler is one small function that updates
// the hart and advances pc; the template parameter L is the instruction's length.
#include <sched.h>

#include <atomic>

#include "cpu/decode.hpp"

namespace dvmm::cpu {
namespace {

#define X(r) h.xreg_[r]
#define NEXT() (h.pc_ += L)

// ---- upper immediates and jumps
DVMM_HANDLER(op_lui) {
  X(d.rd) = static_cast<u64>(static_cast<i64>(d.imm));
  NEXT();
}
DVMM_HANDLER(op_auipc) {
  X(d.rd) = h.pc_ + static_cast<u64>(static_cast<i64>(d.imm));
  NEXT();
}
DVMM_HANDLER(op_jal) {
  X(d.rd) = h.pc_ + L;
  h.pc_ += static_cast<u64>(static_cast<i64>(d.imm));
}
DVMM_HANDLER(op_jalr) {
  const u64 target = (X(d.rs1) + static_cast<u64>(static_cast<i64>(d.imm))) & ~u64{1};
  X(d.rd) = h.pc_ + L;
  h.pc_ = target;
}

// ---- branches
#define BRANCH(name, cond)                                            \
  DVMM_HANDLER(name) {                                                \
    const u64 a = X(d.rs1), b = X(d.rs2);                             \
    (void)a;                                                          \
    (void)b;                                                          \
    h.pc_ += (cond) ? static_cast<u64>(static_cast<i64>(d.imm)) : L; \
  }
BRANCH(op_beq, a == b)
BRANCH(op_bne, a != b)
BRANCH(op_blt, static_cast<i64>(a) < static_cast<i64>(b))
BRANCH(op_bge, static_cast<i64>(a) >= static_cast<i64>(b))
BRANCH(op_bltu, a < b)
BRANCH(op_bgeu, a >= b)
#undef BRANCH

// ---- loads and stores
#define LOAD(name, T)                                                                          \
  DVMM_HANDLER(name) {                                                                         \
    const u64 v = static_cast<u64>(static_cast<i64>(                                           \
        h.load<T>(X(d.rs1) + static_cast<u64>(static_cast<i64>(d.imm)))));                     \
    X(d.rd) = v;                                                                               \
    NEXT();                                                                                    \
  }
LOAD(op_lb, i8)
LOAD(op_lh, i16)
LOAD(op_lw, i32)
LOAD(op_ld, i64)
#undef LOAD
#define LOADU(name, T)                                                                         \
  DVMM_HANDLER(name) {                                                                         \
    const u64 v = h.load<T>(X(d.rs1) + static_cast<u64>(static_cast<i64>(d.imm)));             \
    X(d.rd) = v;                                                                               \
    NEXT();                                                                                    \
  }
LOADU(op_lbu, u8)
LOADU(op_lhu, u16)
LOADU(op_lwu, u32)
#undef LOADU
#define STORE(name, T)                                                                        \
  DVMM_HANDLER(name) {                                                                        \
    h.store<T>(X(d.rs1) + static_cast<u64>(static_cast<i64>(d.imm)), static_cast<T>(X(d.rs2))); \
    NEXT();                                                                                   \
  }
STORE(op_sb, u8)
STORE(op_sh, u16)
STORE(op_sw, u32)
STORE(op_sd, u64)
#undef STORE

// ---- integer register-immediate and register-register
inline u64 sext32(u64 v) { return static_cast<u64>(static_cast<i64>(static_cast<i32>(v))); }
#define ALU_IMM(name, expr)                                           \
  DVMM_HANDLER(name) {                                                \
    const u64 a = X(d.rs1);                                           \
    const u64 imm = static_cast<u64>(static_cast<i64>(d.imm));       \
    (void)imm;                                                        \
    X(d.rd) = (expr);                                                 \
    NEXT();                                                           \
  }
ALU_IMM(op_addi, a + imm)
ALU_IMM(op_slti, static_cast<i64>(a) < static_cast<i64>(imm) ? 1 : 0)
ALU_IMM(op_sltiu, a < imm ? 1 : 0)
ALU_IMM(op_xori, a ^ imm)
ALU_IMM(op_ori, a | imm)
ALU_IMM(op_andi, a & imm)
ALU_IMM(op_slli, a << (imm & 63))
ALU_IMM(op_srli, a >> (imm & 63))
ALU_IMM(op_srai, static_cast<u64>(static_cast<i64>(a) >> (imm & 63)))
ALU_IMM(op_addiw, sext32(a + imm))
ALU_IMM(op_slliw, sext32(a << (imm & 31)))
ALU_IMM(op_srliw, sext32(static_cast<u32>(a) >> (imm & 31)))
ALU_IMM(op_sraiw, static_cast<u64>(static_cast<i64>(static_cast<i32>(a) >> (imm & 31))))
#undef ALU_IMM

#define ALU_REG(name, expr)     \
  DVMM_HANDLER(name) {          \
    const u64 a = X(d.rs1);     \
    const u64 b = X(d.rs2);     \
    X(d.rd) = (expr);           \
    NEXT();                     \
  }
ALU_REG(op_add, a + b)
ALU_REG(op_sub, a - b)
ALU_REG(op_sll, a << (b & 63))
ALU_REG(op_slt, static_cast<i64>(a) < static_cast<i64>(b) ? 1 : 0)
ALU_REG(op_sltu, a < b ? 1 : 0)
ALU_REG(op_xor, a ^ b)
ALU_REG(op_srl, a >> (b & 63))
ALU_REG(op_sra, static_cast<u64>(static_cast<i64>(a) >> (b & 63)))
ALU_REG(op_or, a | b)
ALU_REG(op_and, a & b)
ALU_REG(op_addw, sext32(a + b))
ALU_REG(op_subw, sext32(a - b))
ALU_REG(op_sllw, sext32(a << (b & 31)))
ALU_REG(op_srlw, sext32(static_cast<u32>(a) >> (b & 31)))
ALU_REG(op_sraw, static_cast<u64>(static_cast<i64>(static_cast<i32>(a) >> (b & 31))))

// ---- M extension. Division by zero and overflow are defined (no traps), spec 13.2.
inline u64 div_s(u64 a, u64 b) {
  const i64 x = static_cast<i64>(a), y = static_cast<i64>(b);
  if (y == 0) return ~u64{0};
  if (x == INT64_MIN && y == -1) return a;
  return static_cast<u64>(x / y);
}
inline u64 rem_s(u64 a, u64 b) {
  const i64 x = static_cast<i64>(a), y = static_cast<i64>(b);
  if (y == 0) return a;
  if (x == INT64_MIN && y == -1) return 0;
  return static_cast<u64>(x % y);
}
inline u64 divw_s(u64 a, u64 b) {
  const i32 x = static_cast<i32>(a), y = static_cast<i32>(b);
  if (y == 0) return ~u64{0};
  if (x == INT32_MIN && y == -1) return sext32(static_cast<u64>(static_cast<u32>(x)));
  return static_cast<u64>(static_cast<i64>(x / y));
}
inline u64 remw_s(u64 a, u64 b) {
  const i32 x = static_cast<i32>(a), y = static_cast<i32>(b);
  if (y == 0) return sext32(a);
  if (x == INT32_MIN && y == -1) return 0;
  return static_cast<u64>(static_cast<i64>(x % y));
}
ALU_REG(op_mul, a * b)
ALU_REG(op_mulh, static_cast<u64>((static_cast<i128>(static_cast<i64>(a)) *
                                   static_cast<i128>(static_cast<i64>(b))) >> 64))
ALU_REG(op_mulhsu, static_cast<u64>((static_cast<i128>(static_cast<i64>(a)) *
                                     static_cast<i128>(static_cast<u128>(b))) >> 64))
ALU_REG(op_mulhu, static_cast<u64>((static_cast<u128>(a) * static_cast<u128>(b)) >> 64))
ALU_REG(op_div, div_s(a, b))
ALU_REG(op_divu, b == 0 ? ~u64{0} : a / b)
ALU_REG(op_rem, rem_s(a, b))
ALU_REG(op_remu, b == 0 ? a : a % b)
ALU_REG(op_mulw, sext32(a * b))
ALU_REG(op_divw, divw_s(a, b))
ALU_REG(op_divuw, static_cast<u32>(b) == 0
                      ? ~u64{0}
                      : sext32(static_cast<u32>(a) / static_cast<u32>(b)))
ALU_REG(op_remw, remw_s(a, b))
ALU_REG(op_remuw, static_cast<u32>(b) == 0
                      ? sext32(a)
                      : sext32(static_cast<u32>(a) % static_cast<u32>(b)))
#undef ALU_REG

// ---- fences and system
// The host is x86 (TSO): only a fence that orders earlier stores before later loads needs a
// real barrier; the others only stop the compiler from reordering.
DVMM_HANDLER(op_fence_full) {
  (void)d;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  NEXT();
}
DVMM_HANDLER(op_fence_light) {
  (void)d;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  NEXT();
}
// Zihintpause: a spin-wait hint (Linux's cpu_relax()). Like VT-x pause-loop exiting, a hart
// that spins gives its host CPU away now and then, so that the hart it waits for (maybe on
// the same host CPU) can run.
DVMM_HANDLER(op_pause) {
  (void)d;
  __builtin_ia32_pause();
  if ((++h.pause_count_ & 31) == 0) sched_yield();
  NEXT();
}
DVMM_HANDLER(op_fence_i) {
  (void)d;
  // Decoded pages are re-validated against the code generation of their page on entry;
  // leaving the current page forces that check.
  h.flush_decoded();
  NEXT();
}
DVMM_HANDLER(op_ecall) {
  (void)d;
  if (h.priv_ == Privilege::kUser) h.raise(kEcallFromU, 0);
  NEXT();
  h.exit_with(ExitSbiCall{X(17), X(16), {X(10), X(11), X(12), X(13), X(14), X(15)}});
}
DVMM_HANDLER(op_ebreak) {
  (void)d;
  h.raise(kBreakpoint, h.pc_);
}
DVMM_HANDLER(op_sret) {
  (void)d;
  if (h.priv_ == Privilege::kUser) h.illegal_instruction(0x10200073);
  h.sret();
}
DVMM_HANDLER(op_wfi) {
  (void)d;
  if (h.priv_ == Privilege::kUser) h.illegal_instruction(0x10500073);
  NEXT();
  h.wfi();
}
DVMM_HANDLER(op_sfence_vma) {
  if (h.priv_ == Privilege::kUser) {
    h.illegal_instruction((0x09u << 25) | (u32{d.rs2} << 20) | (u32{d.rs1} << 15) | 0x73);
  }
  h.flush_tlb();
  NEXT();
}

// ---- Zicsr. rs3 holds funct3; an instruction with rd = x0 does not read the CSR and one
// with rs1 = x0 (or uimm = 0) for the set/clear forms does not write it.
inline u32 csr_raw(const DecodedInsn& d) {
  const u32 rd = d.rd == 32 ? 0 : d.rd;
  return (static_cast<u32>(d.imm) << 20) | (u32{d.rs1} << 15) | (u32{d.rs3} << 12) | (rd << 7) | 0x73;
}
template <unsigned L, bool kImmediate>
void op_csrrw(Hart& h, const DecodedInsn& d) {
  const u16 csr = static_cast<u16>(d.imm);
  const u64 src = kImmediate ? d.rs1 : X(d.rs1);
  const bool reads = d.rd != 32;
  if (DVMM_UNLIKELY(h.any_csr_intercept_)) h.csr_intercept_check(csr, reads, true, src);
  const u64 old = reads ? h.csr_read(csr, csr_raw(d)) : 0;
  h.csr_write(csr, src, csr_raw(d));
  X(d.rd) = old;
  NEXT();
}
template <unsigned L, bool kImmediate, bool kSet>
void op_csrrs(Hart& h, const DecodedInsn& d) {
  const u16 csr = static_cast<u16>(d.imm);
  const u64 mask = kImmediate ? d.rs1 : X(d.rs1);
  const bool writes = d.rs1 != 0;
  if (DVMM_UNLIKELY(h.any_csr_intercept_)) {
    const u64 current = h.debug_read_csr(csr).value_or(0);
    h.csr_intercept_check(csr, true, writes, kSet ? (current | mask) : (current & ~mask));
  }
  const u64 old = h.csr_read(csr, csr_raw(d));
  if (writes) h.csr_write(csr, kSet ? (old | mask) : (old & ~mask), csr_raw(d));
  X(d.rd) = old;
  NEXT();
}

#undef X
#undef NEXT

}  // namespace

bool decode_base(u32 raw, unsigned len, DecodedInsn& d) {
  const u32 opcode = raw & 0x7f;
  const u32 f3 = funct3_of(raw);
  const u32 f7 = funct7_of(raw);
  d.rd = xrd_of(raw);
  d.rs1 = rs1_of(raw);
  d.rs2 = rs2_of(raw);
  d.rs3 = 0;
  d.imm = 0;
  switch (opcode) {
    case 0x37:
      d.imm = imm_u(raw);
      d.fn = DVMM_PICK(op_lui, len);
      return true;
    case 0x17:
      d.imm = imm_u(raw);
      d.fn = DVMM_PICK(op_auipc, len);
      return true;
    case 0x6f:
      d.imm = imm_j(raw);
      d.fn = DVMM_PICK(op_jal, len);
      return true;
    case 0x67:
      if (f3 != 0) return false;
      d.imm = imm_i(raw);
      d.fn = DVMM_PICK(op_jalr, len);
      return true;
    case 0x63: {
      d.imm = imm_b(raw);
      switch (f3) {
        case 0: d.fn = DVMM_PICK(op_beq, len); return true;
        case 1: d.fn = DVMM_PICK(op_bne, len); return true;
        case 4: d.fn = DVMM_PICK(op_blt, len); return true;
        case 5: d.fn = DVMM_PICK(op_bge, len); return true;
        case 6: d.fn = DVMM_PICK(op_bltu, len); return true;
        case 7: d.fn = DVMM_PICK(op_bgeu, len); return true;
        default: return false;
      }
    }
    case 0x03: {
      d.imm = imm_i(raw);
      switch (f3) {
        case 0: d.fn = DVMM_PICK(op_lb, len); return true;
        case 1: d.fn = DVMM_PICK(op_lh, len); return true;
        case 2: d.fn = DVMM_PICK(op_lw, len); return true;
        case 3: d.fn = DVMM_PICK(op_ld, len); return true;
        case 4: d.fn = DVMM_PICK(op_lbu, len); return true;
        case 5: d.fn = DVMM_PICK(op_lhu, len); return true;
        case 6: d.fn = DVMM_PICK(op_lwu, len); return true;
        default: return false;
      }
    }
    case 0x23: {
      d.imm = imm_s(raw);
      switch (f3) {
        case 0: d.fn = DVMM_PICK(op_sb, len); return true;
        case 1: d.fn = DVMM_PICK(op_sh, len); return true;
        case 2: d.fn = DVMM_PICK(op_sw, len); return true;
        case 3: d.fn = DVMM_PICK(op_sd, len); return true;
        default: return false;
      }
    }
    case 0x13: {
      d.imm = imm_i(raw);
      switch (f3) {
        case 0: d.fn = DVMM_PICK(op_addi, len); return true;
        case 2: d.fn = DVMM_PICK(op_slti, len); return true;
        case 3: d.fn = DVMM_PICK(op_sltiu, len); return true;
        case 4: d.fn = DVMM_PICK(op_xori, len); return true;
        case 6: d.fn = DVMM_PICK(op_ori, len); return true;
        case 7: d.fn = DVMM_PICK(op_andi, len); return true;
        case 1:
          if ((raw >> 26) != 0) return false;
          d.imm &= 63;
          d.fn = DVMM_PICK(op_slli, len);
          return true;
        case 5:
          if ((raw >> 26) == 0) {
            d.imm &= 63;
            d.fn = DVMM_PICK(op_srli, len);
            return true;
          }
          if ((raw >> 26) == 0x10) {
            d.imm &= 63;
            d.fn = DVMM_PICK(op_srai, len);
            return true;
          }
          return false;
        default: return false;
      }
    }
    case 0x1b: {
      d.imm = imm_i(raw);
      switch (f3) {
        case 0: d.fn = DVMM_PICK(op_addiw, len); return true;
        case 1:
          if (f7 != 0) return false;
          d.imm &= 31;
          d.fn = DVMM_PICK(op_slliw, len);
          return true;
        case 5:
          if (f7 == 0) {
            d.imm &= 31;
            d.fn = DVMM_PICK(op_srliw, len);
            return true;
          }
          if (f7 == 0x20) {
            d.imm &= 31;
            d.fn = DVMM_PICK(op_sraiw, len);
            return true;
          }
          return false;
        default: return false;
      }
    }
    case 0x33: {
      if (f7 == 0) {
        static constexpr InsnHandler kOps2[8] = {op_add<2>, op_sll<2>, op_slt<2>, op_sltu<2>,
                                                 op_xor<2>, op_srl<2>, op_or<2>, op_and<2>};
        static constexpr InsnHandler kOps4[8] = {op_add<4>, op_sll<4>, op_slt<4>, op_sltu<4>,
                                                 op_xor<4>, op_srl<4>, op_or<4>, op_and<4>};
        d.fn = len == 2 ? kOps2[f3] : kOps4[f3];
        return true;
      }
      if (f7 == 0x20) {
        if (f3 == 0) d.fn = DVMM_PICK(op_sub, len);
        else if (f3 == 5) d.fn = DVMM_PICK(op_sra, len);
        else return false;
        return true;
      }
      if (f7 == 1) {
        static constexpr InsnHandler kOps2[8] = {op_mul<2>, op_mulh<2>, op_mulhsu<2>, op_mulhu<2>,
                                                 op_div<2>, op_divu<2>, op_rem<2>, op_remu<2>};
        static constexpr InsnHandler kOps4[8] = {op_mul<4>, op_mulh<4>, op_mulhsu<4>, op_mulhu<4>,
                                                 op_div<4>, op_divu<4>, op_rem<4>, op_remu<4>};
        d.fn = len == 2 ? kOps2[f3] : kOps4[f3];
        return true;
      }
      return false;
    }
    case 0x3b: {
      if (f7 == 0) {
        if (f3 == 0) d.fn = DVMM_PICK(op_addw, len);
        else if (f3 == 1) d.fn = DVMM_PICK(op_sllw, len);
        else if (f3 == 5) d.fn = DVMM_PICK(op_srlw, len);
        else return false;
        return true;
      }
      if (f7 == 0x20) {
        if (f3 == 0) d.fn = DVMM_PICK(op_subw, len);
        else if (f3 == 5) d.fn = DVMM_PICK(op_sraw, len);
        else return false;
        return true;
      }
      if (f7 == 1) {
        switch (f3) {
          case 0: d.fn = DVMM_PICK(op_mulw, len); return true;
          case 4: d.fn = DVMM_PICK(op_divw, len); return true;
          case 5: d.fn = DVMM_PICK(op_divuw, len); return true;
          case 6: d.fn = DVMM_PICK(op_remw, len); return true;
          case 7: d.fn = DVMM_PICK(op_remuw, len); return true;
          default: return false;
        }
      }
      return false;
    }
    case 0x0f:
      if (f3 == 0) {  // fence, fence.tso, pause
        if (raw == 0x0100000f) {
          d.fn = DVMM_PICK(op_pause, len);
          return true;
        }
        const u32 pred = bits(raw, 27, 24), succ = bits(raw, 23, 20);
        const bool store_load = (pred & 1) != 0 && (succ & 2) != 0;  // W before R
        d.fn = store_load ? DVMM_PICK(op_fence_full, len) : DVMM_PICK(op_fence_light, len);
        return true;
      }
      if (f3 == 1) {
        d.fn = DVMM_PICK(op_fence_i, len);
        return true;
      }
      return false;
    case 0x73: {
      if (f3 == 0) {
        if (raw == 0x00000073) { d.fn = DVMM_PICK(op_ecall, len); return true; }
        if (raw == 0x00100073) { d.fn = DVMM_PICK(op_ebreak, len); return true; }
        if (raw == 0x10200073) { d.fn = DVMM_PICK(op_sret, len); return true; }
        if (raw == 0x10500073) { d.fn = DVMM_PICK(op_wfi, len); return true; }
        if (f7 == 0x09 && rd_of(raw) == 0) {
          d.fn = DVMM_PICK(op_sfence_vma, len);
          return true;
        }
        return false;
      }
      if (f3 == 4) return false;
      d.imm = static_cast<i32>(raw >> 20);  // CSR number
      d.rs3 = static_cast<u8>(f3);
      switch (f3) {
        case 1: d.fn = len == 2 ? &op_csrrw<2, false> : &op_csrrw<4, false>; return true;
        case 2: d.fn = len == 2 ? &op_csrrs<2, false, true> : &op_csrrs<4, false, true>; return true;
        case 3: d.fn = len == 2 ? &op_csrrs<2, false, false> : &op_csrrs<4, false, false>; return true;
        case 5: d.fn = len == 2 ? &op_csrrw<2, true> : &op_csrrw<4, true>; return true;
        case 6: d.fn = len == 2 ? &op_csrrs<2, true, true> : &op_csrrs<4, true, true>; return true;
        case 7: d.fn = len == 2 ? &op_csrrs<2, true, false> : &op_csrrs<4, true, false>; return true;
        default: return false;
      }
    }
    default:
      return false;
  }
}

}  // namespace dvmm::cpu
