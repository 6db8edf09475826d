// Compressed-instruction expansion (RVC for RV64, "C" chapter of the unprivileged spec) and
// the top-level decoder that hands each major opcode to its extension's decoder.
#include "cpu/decode.hpp"

namespace dvmm::cpu {
namespace {

constexpr u32 enc_i(i32 imm, u32 rs1, u32 f3, u32 rd, u32 op) {
  return (static_cast<u32>(imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
constexpr u32 enc_s(i32 imm, u32 rs2, u32 rs1, u32 f3, u32 op) {
  const u32 u = static_cast<u32>(imm);
  return (bits(u, 11, 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (bits(u, 4, 0) << 7) | op;
}
constexpr u32 enc_r(u32 f7, u32 rs2, u32 rs1, u32 f3, u32 rd, u32 op) {
  return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
constexpr u32 enc_b(i32 imm, u32 rs2, u32 rs1, u32 f3, u32 op) {
  const u32 u = static_cast<u32>(imm);
  return (bits(u, 12, 12) << 31) | (bits(u, 10, 5) << 25) | (rs2 << 20) | (rs1 << 15) |
         (f3 << 12) | (bits(u, 4, 1) << 8) | (bits(u, 11, 11) << 7) | op;
}
constexpr u32 enc_j(i32 imm, u32 rd, u32 op) {
  const u32 u = static_cast<u32>(imm);
  return (bits(u, 20, 20) << 31) | (bits(u, 10, 1) << 21) | (bits(u, 11, 11) << 20) |
         (bits(u, 19, 12) << 12) | (rd << 7) | op;
}
constexpr i32 sext(u32 v, unsigned width) {
  return static_cast<i32>(v << (32 - width)) >> (32 - width);
}

constexpr u32 kOpLoad = 0x03, kOpLoadFp = 0x07, kOpImm = 0x13, kOpImm32 = 0x1b, kOpStore = 0x23,
              kOpStoreFp = 0x27, kOpReg = 0x33, kOpLui = 0x37, kOpReg32 = 0x3b, kOpBranch = 0x63,
              kOpJalr = 0x67, kOpJal = 0x6f;

DVMM_HANDLER(op_illegal) {
  (void)L;
  h.illegal_instruction(static_cast<u32>(d.imm));
}

}  // namespace

u32 expand_compressed(u16 c) {
  const u32 in = c;
  const u32 op = in & 3;
  const u32 f3 = bits(in, 15, 13);
  const u32 rdp = bits(in, 4, 2) + 8;   // rd' / rs2'
  const u32 rs1p = bits(in, 9, 7) + 8;  // rs1' / rd'
  const u32 rd = bits(in, 11, 7);
  const u32 rs2 = bits(in, 6, 2);
  if (in == 0) return 0;
  switch (op) {
    case 0:
      switch (f3) {
        case 0: {  // c.addi4spn
          const u32 imm = (bits(in, 12, 11) << 4) | (bits(in, 10, 7) << 6) | (bits(in, 6, 6) << 2) |
                          (bits(in, 5, 5) << 3);
          if (imm == 0) return 0;
          return enc_i(static_cast<i32>(imm), 2, 0, rdp, kOpImm);
        }
        case 1: {  // c.fld
          const u32 imm = (bits(in, 12, 10) << 3) | (bits(in, 6, 5) << 6);
          return enc_i(static_cast<i32>(imm), rs1p, 3, rdp, kOpLoadFp);
        }
        case 2: {  // c.lw
          const u32 imm = (bits(in, 12, 10) << 3) | (bits(in, 6, 6) << 2) | (bits(in, 5, 5) << 6);
          return enc_i(static_cast<i32>(imm), rs1p, 2, rdp, kOpLoad);
        }
        case 3: {  // c.ld
          const u32 imm = (bits(in, 12, 10) << 3) | (bits(in, 6, 5) << 6);
          return enc_i(static_cast<i32>(imm), rs1p, 3, rdp, kOpLoad);
        }
        case 5: {  // c.fsd
          const u32 imm = (bits(in, 12, 10) << 3) | (bits(in, 6, 5) << 6);
          return enc_s(static_cast<i32>(imm), rdp, rs1p, 3, kOpStoreFp);
        }
        case 6: {  // c.sw
          const u32 imm = (bits(in, 12, 10) << 3) | (bits(in, 6, 6) << 2) | (bits(in, 5, 5) << 6);
          return enc_s(static_cast<i32>(imm), rdp, rs1p, 2, kOpStore);
        }
        case 7: {  // c.sd
          const u32 imm = (bits(in, 12, 10) << 3) | (bits(in, 6, 5) << 6);
          return enc_s(static_cast<i32>(imm), rdp, rs1p, 3, kOpStore);
        }
        default:
          return 0;
      }
    case 1: {
      const i32 imm6 = sext((bits(in, 12, 12) << 5) | bits(in, 6, 2), 6);
      switch (f3) {
        case 0:  // c.addi (c.nop)
          return enc_i(imm6, rd, 0, rd, kOpImm);
        case 1:  // c.addiw
          if (rd == 0) return 0;
          return enc_i(imm6, rd, 0, rd, kOpImm32);
        case 2:  // c.li
          return enc_i(imm6, 0, 0, rd, kOpImm);
        case 3:
          if (rd == 2) {  // c.addi16sp
            const u32 imm = (bits(in, 12, 12) << 9) | (bits(in, 6, 6) << 4) | (bits(in, 5, 5) << 6) |
                            (bits(in, 4, 3) << 7) | (bits(in, 2, 2) << 5);
            if (imm == 0) return 0;
            return enc_i(sext(imm, 10), 2, 0, 2, kOpImm);
          } else {  // c.lui
            const u32 imm = (bits(in, 12, 12) << 17) | (bits(in, 6, 2) << 12);
            if (imm == 0) return 0;
            return (static_cast<u32>(sext(imm, 18)) & 0xfffff000u) | (rd << 7) | kOpLui;
          }
        case 4: {
          const u32 shamt = (bits(in, 12, 12) << 5) | bits(in, 6, 2);
          switch (bits(in, 11, 10)) {
            case 0:  // c.srli
              return enc_i(static_cast<i32>(shamt), rs1p, 5, rs1p, kOpImm);
            case 1:  // c.srai
              return enc_i(static_cast<i32>(shamt | 0x400), rs1p, 5, rs1p, kOpImm);
            case 2:  // c.andi
              return enc_i(imm6, rs1p, 7, rs1p, kOpImm);
            default: {
              const u32 sub = bits(in, 6, 5);
              if (bits(in, 12, 12) == 0) {
                static constexpr u32 f3s[4] = {0, 4, 6, 7};  // sub, xor, or, and
                return enc_r(sub == 0 ? 0x20 : 0, rdp, rs1p, f3s[sub], rs1p, kOpReg);
              }
              if (sub == 0) return enc_r(0x20, rdp, rs1p, 0, rs1p, kOpReg32);  // c.subw
              if (sub == 1) return enc_r(0, rdp, rs1p, 0, rs1p, kOpReg32);     // c.addw
              return 0;
            }
          }
        }
        case 5: {  // c.j
          const u32 imm = (bits(in, 12, 12) << 11) | (bits(in, 11, 11) << 4) |
                          (bits(in, 10, 9) << 8) | (bits(in, 8, 8) << 10) | (bits(in, 7, 7) << 6) |
                          (bits(in, 6, 6) << 7) | (bits(in, 5, 3) << 1) | (bits(in, 2, 2) << 5);
          return enc_j(sext(imm, 12), 0, kOpJal);
        }
        default: {  // c.beqz, c.bnez
          const u32 imm = (bits(in, 12, 12) << 8) | (bits(in, 11, 10) << 3) |
                          (bits(in, 6, 5) << 6) | (bits(in, 4, 3) << 1) | (bits(in, 2, 2) << 5);
          return enc_b(sext(imm, 9), 0, rs1p, f3 == 6 ? 0 : 1, kOpBranch);
        }
      }
    }
    case 2:
      switch (f3) {
        case 0: {  // c.slli
          const u32 shamt = (bits(in, 12, 12) << 5) | bits(in, 6, 2);
          return enc_i(static_cast<i32>(shamt), rd, 1, rd, kOpImm);
        }
        case 1: {  // c.fldsp
          const u32 imm = (bits(in, 12, 12) << 5) | (bits(in, 6, 5) << 3) | (bits(in, 4, 2) << 6);
          return enc_i(static_cast<i32>(imm), 2, 3, rd, kOpLoadFp);
        }
        case 2: {  // c.lwsp
          if (rd == 0) return 0;
          const u32 imm = (bits(in, 12, 12) << 5) | (bits(in, 6, 4) << 2) | (bits(in, 3, 2) << 6);
          return enc_i(static_cast<i32>(imm), 2, 2, rd, kOpLoad);
        }
        case 3: {  // c.ldsp
          if (rd == 0) return 0;
          const u32 imm = (bits(in, 12, 12) << 5) | (bits(in, 6, 5) << 3) | (bits(in, 4, 2) << 6);
          return enc_i(static_cast<i32>(imm), 2, 3, rd, kOpLoad);
        }
        case 4:
          if (bits(in, 12, 12) == 0) {
            if (rs2 == 0) {  // c.jr
              if (rd == 0) return 0;
              return enc_i(0, rd, 0, 0, kOpJalr);
            }
            return enc_r(0, rs2, 0, 0, rd, kOpReg);  // c.mv
          }
          if (rs2 == 0) {
            if (rd == 0) return 0x00100073;          // c.ebreak
            return enc_i(0, rd, 0, 1, kOpJalr);      // c.jalr
          }
          return enc_r(0, rs2, rd, 0, rd, kOpReg);   // c.add
        case 5: {  // c.fsdsp
          const u32 imm = (bits(in, 12, 10) << 3) | (bits(in, 9, 7) << 6);
          return enc_s(static_cast<i32>(imm), rs2, 2, 3, kOpStoreFp);
        }
        case 6: {  // c.swsp
          const u32 imm = (bits(in, 12, 9) << 2) | (bits(in, 8, 7) << 6);
          return enc_s(static_cast<i32>(imm), rs2, 2, 2, kOpStore);
        }
        default: {  // c.sdsp
          const u32 imm = (bits(in, 12, 10) << 3) | (bits(in, 9, 7) << 6);
          return enc_s(static_cast<i32>(imm), rs2, 2, 3, kOpStore);
        }
      }
    default:
      return 0;
  }
}

DecodedInsn decode(u32 raw, unsigned len, u32 original) {
  DecodedInsn d{};
  if (raw != 0 && (raw & 3) == 3) {
    const u32 opcode = raw & 0x7f;
    bool ok;
    switch (opcode) {
      case 0x2f:  // AMO
        ok = decode_atomic(raw, len, d);
        break;
      case 0x07:
      case 0x27:
      case 0x43:
      case 0x47:
      case 0x4b:
      case 0x4f:
      case 0x53:
        ok = decode_float(raw, len, d);
        break;
      default:
        ok = decode_base(raw, len, d);
        break;
    }
    if (ok) return d;
  }
  d = DecodedInsn{};
  d.fn = DVMM_PICK(op_illegal, len);
  d.imm = static_cast<i32>(original);
  return d;
}

}  // namespace dvmm::cpu
