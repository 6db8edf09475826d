// Tiny RISC-V instruction encoders for unit tests, so that tests need no cross toolchain.
// Register arguments are numbers (x0..x31 / f0..f31); immediates are the architectural
// byte offsets / values. Only what the tests use.
#pragma once

#include <cstdint>

namespace dvmm::test::enc {

using u16 = std::uint16_t;
using u32 = std::uint32_t;
using i32 = std::int32_t;

// ---------------------------------------------------------------- formats
constexpr u32 r_type(u32 op, u32 rd, u32 f3, u32 rs1, u32 rs2, u32 f7) {
  return op | (rd << 7) | (f3 << 12) | (rs1 << 15) | (rs2 << 20) | (f7 << 25);
}
constexpr u32 i_type(u32 op, u32 rd, u32 f3, u32 rs1, i32 imm) {
  return op | (rd << 7) | (f3 << 12) | (rs1 << 15) | (static_cast<u32>(imm) << 20);
}
constexpr u32 s_type(u32 op, u32 f3, u32 rs1, u32 rs2, i32 imm) {
  const u32 u = static_cast<u32>(imm);
  return op | ((u & 0x1f) << 7) | (f3 << 12) | (rs1 << 15) | (rs2 << 20) | (((u >> 5) & 0x7f) << 25);
}
constexpr u32 b_type(u32 f3, u32 rs1, u32 rs2, i32 off) {
  const u32 u = static_cast<u32>(off);
  return 0x63 | (((u >> 11) & 1) << 7) | (((u >> 1) & 0xf) << 8) | (f3 << 12) | (rs1 << 15) |
         (rs2 << 20) | (((u >> 5) & 0x3f) << 25) | (((u >> 12) & 1) << 31);
}
constexpr u32 u_type(u32 op, u32 rd, u32 imm20) { return op | (rd << 7) | (imm20 << 12); }
constexpr u32 j_type(u32 rd, i32 off) {
  const u32 u = static_cast<u32>(off);
  return 0x6f | (rd << 7) | (((u >> 12) & 0xff) << 12) | (((u >> 11) & 1) << 20) |
         (((u >> 1) & 0x3ff) << 21) | (((u >> 20) & 1) << 31);
}

// ---------------------------------------------------------------- RV64I
constexpr u32 lui(u32 rd, u32 imm20) { return u_type(0x37, rd, imm20 & 0xfffff); }
constexpr u32 auipc(u32 rd, u32 imm20) { return u_type(0x17, rd, imm20 & 0xfffff); }
constexpr u32 jal(u32 rd, i32 off) { return j_type(rd, off); }
constexpr u32 jalr(u32 rd, u32 rs1, i32 imm) { return i_type(0x67, rd, 0, rs1, imm); }
constexpr u32 beq(u32 a, u32 b, i32 off) { return b_type(0, a, b, off); }
constexpr u32 bne(u32 a, u32 b, i32 off) { return b_type(1, a, b, off); }
constexpr u32 blt(u32 a, u32 b, i32 off) { return b_type(4, a, b, off); }
constexpr u32 bge(u32 a, u32 b, i32 off) { return b_type(5, a, b, off); }
constexpr u32 bltu(u32 a, u32 b, i32 off) { return b_type(6, a, b, off); }
constexpr u32 bgeu(u32 a, u32 b, i32 off) { return b_type(7, a, b, off); }
constexpr u32 lb(u32 rd, u32 rs1, i32 imm) { return i_type(0x03, rd, 0, rs1, imm); }
constexpr u32 lh(u32 rd, u32 rs1, i32 imm) { return i_type(0x03, rd, 1, rs1, imm); }
constexpr u32 lw(u32 rd, u32 rs1, i32 imm) { return i_type(0x03, rd, 2, rs1, imm); }
constexpr u32 ld(u32 rd, u32 rs1, i32 imm) { return i_type(0x03, rd, 3, rs1, imm); }
constexpr u32 lbu(u32 rd, u32 rs1, i32 imm) { return i_type(0x03, rd, 4, rs1, imm); }
constexpr u32 lhu(u32 rd, u32 rs1, i32 imm) { return i_type(0x03, rd, 5, rs1, imm); }
constexpr u32 lwu(u32 rd, u32 rs1, i32 imm) { return i_type(0x03, rd, 6, rs1, imm); }
constexpr u32 sb(u32 rs2, u32 rs1, i32 imm) { return s_type(0x23, 0, rs1, rs2, imm); }
constexpr u32 sh(u32 rs2, u32 rs1, i32 imm) { return s_type(0x23, 1, rs1, rs2, imm); }
constexpr u32 sw(u32 rs2, u32 rs1, i32 imm) { return s_type(0x23, 2, rs1, rs2, imm); }
constexpr u32 sd(u32 rs2, u32 rs1, i32 imm) { return s_type(0x23, 3, rs1, rs2, imm); }
constexpr u32 addi(u32 rd, u32 rs1, i32 imm) { return i_type(0x13, rd, 0, rs1, imm); }
constexpr u32 slti(u32 rd, u32 rs1, i32 imm) { return i_type(0x13, rd, 2, rs1, imm); }
constexpr u32 sltiu(u32 rd, u32 rs1, i32 imm) { return i_type(0x13, rd, 3, rs1, imm); }
constexpr u32 xori(u32 rd, u32 rs1, i32 imm) { return i_type(0x13, rd, 4, rs1, imm); }
constexpr u32 ori(u32 rd, u32 rs1, i32 imm) { return i_type(0x13, rd, 6, rs1, imm); }
constexpr u32 andi(u32 rd, u32 rs1, i32 imm) { return i_type(0x13, rd, 7, rs1, imm); }
constexpr u32 slli(u32 rd, u32 rs1, u32 sh) { return i_type(0x13, rd, 1, rs1, static_cast<i32>(sh & 63)); }
constexpr u32 srli(u32 rd, u32 rs1, u32 sh) { return i_type(0x13, rd, 5, rs1, static_cast<i32>(sh & 63)); }
constexpr u32 srai(u32 rd, u32 rs1, u32 sh) {
  return i_type(0x13, rd, 5, rs1, static_cast<i32>((sh & 63) | 0x400));
}
constexpr u32 addiw(u32 rd, u32 rs1, i32 imm) { return i_type(0x1b, rd, 0, rs1, imm); }
constexpr u32 slliw(u32 rd, u32 rs1, u32 sh) { return i_type(0x1b, rd, 1, rs1, static_cast<i32>(sh & 31)); }
constexpr u32 srliw(u32 rd, u32 rs1, u32 sh) { return i_type(0x1b, rd, 5, rs1, static_cast<i32>(sh & 31)); }
constexpr u32 sraiw(u32 rd, u32 rs1, u32 sh) {
  return i_type(0x1b, rd, 5, rs1, static_cast<i32>((sh & 31) | 0x400));
}
constexpr u32 add(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 0, a, b, 0); }
constexpr u32 sub(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 0, a, b, 0x20); }
constexpr u32 sll(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 1, a, b, 0); }
constexpr u32 slt(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 2, a, b, 0); }
constexpr u32 sltu(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 3, a, b, 0); }
constexpr u32 xor_(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 4, a, b, 0); }
constexpr u32 srl(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 5, a, b, 0); }
constexpr u32 sra(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 5, a, b, 0x20); }
constexpr u32 or_(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 6, a, b, 0); }
constexpr u32 and_(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 7, a, b, 0); }
constexpr u32 addw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 0, a, b, 0); }
constexpr u32 subw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 0, a, b, 0x20); }
constexpr u32 sllw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 1, a, b, 0); }
constexpr u32 srlw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 5, a, b, 0); }
constexpr u32 sraw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 5, a, b, 0x20); }
constexpr u32 fence() { return 0x0ff0000f; }
constexpr u32 fence_i() { return 0x0000100f; }
constexpr u32 ecall() { return 0x00000073; }
constexpr u32 ebreak() { return 0x00100073; }
constexpr u32 sret() { return 0x10200073; }
constexpr u32 mret() { return 0x30200073; }
constexpr u32 wfi() { return 0x10500073; }
constexpr u32 sfence_vma(u32 rs1, u32 rs2) { return r_type(0x73, 0, 0, rs1, rs2, 0x09); }
constexpr u32 nop() { return addi(0, 0, 0); }

// ---------------------------------------------------------------- Zicsr
constexpr u32 csrrw(u32 rd, u32 csr, u32 rs1) { return i_type(0x73, rd, 1, rs1, static_cast<i32>(csr)); }
constexpr u32 csrrs(u32 rd, u32 csr, u32 rs1) { return i_type(0x73, rd, 2, rs1, static_cast<i32>(csr)); }
constexpr u32 csrrc(u32 rd, u32 csr, u32 rs1) { return i_type(0x73, rd, 3, rs1, static_cast<i32>(csr)); }
constexpr u32 csrrwi(u32 rd, u32 csr, u32 uimm) { return i_type(0x73, rd, 5, uimm, static_cast<i32>(csr)); }
constexpr u32 csrrsi(u32 rd, u32 csr, u32 uimm) { return i_type(0x73, rd, 6, uimm, static_cast<i32>(csr)); }
constexpr u32 csrrci(u32 rd, u32 csr, u32 uimm) { return i_type(0x73, rd, 7, uimm, static_cast<i32>(csr)); }
constexpr u32 csrr(u32 rd, u32 csr) { return csrrs(rd, csr, 0); }
constexpr u32 csrw(u32 csr, u32 rs1) { return csrrw(0, csr, rs1); }

// ---------------------------------------------------------------- M
constexpr u32 mul(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 0, a, b, 1); }
constexpr u32 mulh(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 1, a, b, 1); }
constexpr u32 mulhsu(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 2, a, b, 1); }
constexpr u32 mulhu(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 3, a, b, 1); }
constexpr u32 div(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 4, a, b, 1); }
constexpr u32 divu(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 5, a, b, 1); }
constexpr u32 rem(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 6, a, b, 1); }
constexpr u32 remu(u32 rd, u32 a, u32 b) { return r_type(0x33, rd, 7, a, b, 1); }
constexpr u32 mulw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 0, a, b, 1); }
constexpr u32 divw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 4, a, b, 1); }
constexpr u32 divuw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 5, a, b, 1); }
constexpr u32 remw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 6, a, b, 1); }
constexpr u32 remuw(u32 rd, u32 a, u32 b) { return r_type(0x3b, rd, 7, a, b, 1); }

// ---------------------------------------------------------------- A
enum AmoOp : u32 {
  kAmoAdd = 0x00, kAmoSwap = 0x01, kLr = 0x02, kSc = 0x03, kAmoXor = 0x04, kAmoOr = 0x08,
  kAmoAnd = 0x0c, kAmoMin = 0x10, kAmoMax = 0x14, kAmoMinu = 0x18, kAmoMaxu = 0x1c,
};
constexpr u32 amo(AmoOp op, bool dword, u32 rd, u32 rs1, u32 rs2, bool aq = false, bool rl = false) {
  return r_type(0x2f, rd, dword ? 3 : 2, rs1, rs2,
                (static_cast<u32>(op) << 2) | (aq ? 2u : 0u) | (rl ? 1u : 0u));
}
constexpr u32 lr_w(u32 rd, u32 rs1) { return amo(kLr, false, rd, rs1, 0); }
constexpr u32 lr_d(u32 rd, u32 rs1) { return amo(kLr, true, rd, rs1, 0); }
constexpr u32 sc_w(u32 rd, u32 rs1, u32 rs2) { return amo(kSc, false, rd, rs1, rs2); }
constexpr u32 sc_d(u32 rd, u32 rs1, u32 rs2) { return amo(kSc, true, rd, rs1, rs2); }

// ---------------------------------------------------------------- F / D (a few)
constexpr u32 flw(u32 rd, u32 rs1, i32 imm) { return i_type(0x07, rd, 2, rs1, imm); }
constexpr u32 fld(u32 rd, u32 rs1, i32 imm) { return i_type(0x07, rd, 3, rs1, imm); }
constexpr u32 fsw(u32 rs2, u32 rs1, i32 imm) { return s_type(0x27, 2, rs1, rs2, imm); }
constexpr u32 fsd(u32 rs2, u32 rs1, i32 imm) { return s_type(0x27, 3, rs1, rs2, imm); }
constexpr u32 fadd_d(u32 rd, u32 a, u32 b, u32 rm = 7) { return r_type(0x53, rd, rm, a, b, 0x01); }
constexpr u32 fadd_s(u32 rd, u32 a, u32 b, u32 rm = 7) { return r_type(0x53, rd, rm, a, b, 0x00); }
constexpr u32 fmv_x_d(u32 rd, u32 fs) { return r_type(0x53, rd, 0, fs, 0, 0x71); }
constexpr u32 fmv_d_x(u32 fd, u32 rs) { return r_type(0x53, fd, 0, rs, 0, 0x79); }
constexpr u32 fmv_x_w(u32 rd, u32 fs) { return r_type(0x53, rd, 0, fs, 0, 0x70); }
constexpr u32 fmv_w_x(u32 fd, u32 rs) { return r_type(0x53, fd, 0, rs, 0, 0x78); }

// ---------------------------------------------------------------- C (a few)
constexpr u16 c_nop() { return 0x0001; }
constexpr u16 c_addi(u32 rd, i32 imm) {
  const u32 u = static_cast<u32>(imm);
  return static_cast<u16>(0x0001 | (((u >> 5) & 1) << 12) | (rd << 7) | ((u & 0x1f) << 2));
}
constexpr u16 c_li(u32 rd, i32 imm) {
  const u32 u = static_cast<u32>(imm);
  return static_cast<u16>(0x4001 | (((u >> 5) & 1) << 12) | (rd << 7) | ((u & 0x1f) << 2));
}
constexpr u16 c_mv(u32 rd, u32 rs2) { return static_cast<u16>(0x8002 | (rd << 7) | (rs2 << 2)); }
constexpr u16 c_add(u32 rd, u32 rs2) { return static_cast<u16>(0x9002 | (rd << 7) | (rs2 << 2)); }
constexpr u16 c_jr(u32 rs1) { return static_cast<u16>(0x8002 | (rs1 << 7)); }
constexpr u16 c_ebreak() { return 0x9002; }
constexpr u16 c_j(i32 off) {
  const u32 u = static_cast<u32>(off);
  return static_cast<u16>(0xa001 | (((u >> 11) & 1) << 12) | (((u >> 4) & 1) << 11) |
                          (((u >> 8) & 3) << 9) | (((u >> 10) & 1) << 8) | (((u >> 6) & 1) << 7) |
                          (((u >> 7) & 1) << 6) | (((u >> 1) & 7) << 3) | (((u >> 5) & 1) << 2));
}
constexpr u16 c_beqz(u32 rs1p, i32 off) {  // rs1p = x8..x15
  const u32 u = static_cast<u32>(off);
  return static_cast<u16>(0xc001 | (((u >> 8) & 1) << 12) | (((u >> 3) & 3) << 10) |
                          ((rs1p - 8) << 7) | (((u >> 6) & 3) << 5) | (((u >> 1) & 3) << 3) |
                          (((u >> 5) & 1) << 2));
}
constexpr u16 c_lw(u32 rdp, u32 rs1p, u32 off) {  // registers x8..x15
  return static_cast<u16>(0x4000 | (((off >> 3) & 7) << 10) | ((rs1p - 8) << 7) |
                          (((off >> 2) & 1) << 6) | (((off >> 6) & 1) << 5) | ((rdp - 8) << 2));
}
constexpr u16 c_sd(u32 rs2p, u32 rs1p, u32 off) {
  return static_cast<u16>(0xe000 | (((off >> 3) & 7) << 10) | ((rs1p - 8) << 7) |
                          (((off >> 6) & 3) << 5) | ((rs2p - 8) << 2));
}

// CSR numbers used by tests.
enum Csr : u32 {
  kFflags = 0x001, kFrm = 0x002, kFcsr = 0x003,
  kCycle = 0xc00, kTime = 0xc01, kInstret = 0xc02,
  kSstatus = 0x100, kSie = 0x104, kStvec = 0x105, kScounteren = 0x106, kSenvcfg = 0x10a,
  kSscratch = 0x140, kSepc = 0x141, kScause = 0x142, kStval = 0x143, kSip = 0x144,
  kStimecmp = 0x14d, kSatp = 0x180,
};

// Register numbers by ABI name.
enum Reg : u32 {
  zero = 0, ra = 1, sp = 2, gp = 3, tp = 4, t0 = 5, t1 = 6, t2 = 7, s0 = 8, s1 = 9, a0 = 10,
  a1 = 11, a2 = 12, a3 = 13, a4 = 14, a5 = 15, a6 = 16, a7 = 17, s2 = 18, s3 = 19, t3 = 28,
  t4 = 29, t5 = 30, t6 = 31,
};

}  // namespace dvmm::test::enc
