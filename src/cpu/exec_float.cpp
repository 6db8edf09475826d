// The F and D extensions: register file handling (NaN boxing, FS tracking), loads/stores,
// sign injection and moves here; arithmetic goes to cpu/fpu.cpp. For instructions with a
// rounding mode, DecodedInsn::imm holds the rm field.
#include "cpu/decode.hpp"
#include "cpu/fpu.hpp"

namespace dvmm::cpu {
namespace {

#define X(r) h.xreg_[r]
#define F(r) h.freg_[r]
#define NEXT() (h.pc_ += L)

constexpr u64 kBoxUpper = 0xffffffff00000000ull;
constexpr u32 kCanonicalNan32 = 0x7fc00000u;

inline u32 unbox(u64 v) {
  return (v & kBoxUpper) == kBoxUpper ? static_cast<u32>(v) : kCanonicalNan32;
}
inline u64 box(u32 v) { return kBoxUpper | v; }

// stval for illegal FP instructions is 0, which the privileged spec allows.
inline u32 fp_raw(const DecodedInsn&) { return 0; }

inline void require_fp(Hart& h, const DecodedInsn& d) {
  if (DVMM_UNLIKELY(!h.fp_enabled())) h.illegal_instruction(fp_raw(d));
}
inline u32 rounding(Hart& h, const DecodedInsn& d) {
  u32 rm = static_cast<u32>(d.imm) & 7;
  if (rm == 7) rm = h.frm_;
  if (DVMM_UNLIKELY(rm > 4)) h.illegal_instruction(fp_raw(d));
  return rm;
}
inline void write_f(Hart& h, unsigned rd, u64 v) {
  h.freg_[rd] = v;
  h.mark_fp_dirty();
}
inline void accrue(Hart& h, u32 flags) {
  if (flags != 0) {
    h.fflags_ |= flags;
    h.mark_fp_dirty();
  }
}

// ---- loads and stores
DVMM_HANDLER(op_flw) {
  require_fp(h, d);
  const u32 v = h.load<u32>(X(d.rs1) + static_cast<u64>(static_cast<i64>(d.imm)));
  write_f(h, d.rd, box(v));
  NEXT();
}
DVMM_HANDLER(op_fld) {
  require_fp(h, d);
  const u64 v = h.load<u64>(X(d.rs1) + static_cast<u64>(static_cast<i64>(d.imm)));
  write_f(h, d.rd, v);
  NEXT();
}
DVMM_HANDLER(op_fsw) {
  require_fp(h, d);
  h.store<u32>(X(d.rs1) + static_cast<u64>(static_cast<i64>(d.imm)), static_cast<u32>(F(d.rs2)));
  NEXT();
}
DVMM_HANDLER(op_fsd) {
  require_fp(h, d);
  h.store<u64>(X(d.rs1) + static_cast<u64>(static_cast<i64>(d.imm)), F(d.rs2));
  NEXT();
}

// ---- arithmetic with rounding
#define FP_BIN32(name, fn)                                                   \
  DVMM_HANDLER(name) {                                                       \
    require_fp(h, d);                                                        \
    const u32 rm = rounding(h, d);                                           \
    u32 flags = 0;                                                           \
    const u32 r = fpu::fn(unbox(F(d.rs1)), unbox(F(d.rs2)), rm, flags);      \
    accrue(h, flags);                                                        \
    write_f(h, d.rd, box(r));                                                \
    NEXT();                                                                  \
  }
#define FP_BIN64(name, fn)                                 \
  DVMM_HANDLER(name) {                                     \
    require_fp(h, d);                                      \
    const u32 rm = rounding(h, d);                         \
    u32 flags = 0;                                         \
    const u64 r = fpu::fn(F(d.rs1), F(d.rs2), rm, flags);  \
    accrue(h, flags);                                      \
    write_f(h, d.rd, r);                                   \
    NEXT();                                                \
  }
FP_BIN32(op_fadd_s, f32_add)
FP_BIN32(op_fsub_s, f32_sub)
FP_BIN32(op_fmul_s, f32_mul)
FP_BIN32(op_fdiv_s, f32_div)
FP_BIN64(op_fadd_d, f64_add)
FP_BIN64(op_fsub_d, f64_sub)
FP_BIN64(op_fmul_d, f64_mul)
FP_BIN64(op_fdiv_d, f64_div)
#undef FP_BIN32
#undef FP_BIN64

DVMM_HANDLER(op_fsqrt_s) {
  require_fp(h, d);
  const u32 rm = rounding(h, d);
  u32 flags = 0;
  const u32 r = fpu::f32_sqrt(unbox(F(d.rs1)), rm, flags);
  accrue(h, flags);
  write_f(h, d.rd, box(r));
  NEXT();
}
DVMM_HANDLER(op_fsqrt_d) {
  require_fp(h, d);
  const u32 rm = rounding(h, d);
  u32 flags = 0;
  const u64 r = fpu::f64_sqrt(F(d.rs1), rm, flags);
  accrue(h, flags);
  write_f(h, d.rd, r);
  NEXT();
}

#define FP_FUSED32(name, fn)                                                                   \
  DVMM_HANDLER(name) {                                                                         \
    require_fp(h, d);                                                                          \
    const u32 rm = rounding(h, d);                                                             \
    u32 flags = 0;                                                                             \
    const u32 r = fpu::fn(unbox(F(d.rs1)), unbox(F(d.rs2)), unbox(F(d.rs3)), rm, flags);       \
    accrue(h, flags);                                                                          \
    write_f(h, d.rd, box(r));                                                                  \
    NEXT();                                                                                    \
  }
#define FP_FUSED64(name, fn)                                          \
  DVMM_HANDLER(name) {                                                \
    require_fp(h, d);                                                 \
    const u32 rm = rounding(h, d);                                    \
    u32 flags = 0;                                                    \
    const u64 r = fpu::fn(F(d.rs1), F(d.rs2), F(d.rs3), rm, flags);   \
    accrue(h, flags);                                                 \
    write_f(h, d.rd, r);                                              \
    NEXT();                                                           \
  }
FP_FUSED32(op_fmadd_s, f32_fmadd)
FP_FUSED32(op_fmsub_s, f32_fmsub)
FP_FUSED32(op_fnmsub_s, f32_fnmsub)
FP_FUSED32(op_fnmadd_s, f32_fnmadd)
FP_FUSED64(op_fmadd_d, f64_fmadd)
FP_FUSED64(op_fmsub_d, f64_fmsub)
FP_FUSED64(op_fnmsub_d, f64_fnmsub)
FP_FUSED64(op_fnmadd_d, f64_fnmadd)
#undef FP_FUSED32
#undef FP_FUSED64

// ---- sign injection, min/max, compare, class, moves (no rounding mode; imm = funct3)
DVMM_HANDLER(op_fsgnj_s) {
  require_fp(h, d);
  const u32 a = unbox(F(d.rs1)), b = unbox(F(d.rs2));
  u32 sign;
  switch (d.imm & 7) {
    case 0: sign = b & 0x80000000u; break;
    case 1: sign = ~b & 0x80000000u; break;
    default: sign = (a ^ b) & 0x80000000u; break;
  }
  write_f(h, d.rd, box((a & 0x7fffffffu) | sign));
  NEXT();
}
DVMM_HANDLER(op_fsgnj_d) {
  require_fp(h, d);
  const u64 a = F(d.rs1), b = F(d.rs2);
  constexpr u64 kSign = u64{1} << 63;
  u64 sign;
  switch (d.imm & 7) {
    case 0: sign = b & kSign; break;
    case 1: sign = ~b & kSign; break;
    default: sign = (a ^ b) & kSign; break;
  }
  write_f(h, d.rd, (a & ~kSign) | sign);
  NEXT();
}
DVMM_HANDLER(op_fminmax_s) {
  require_fp(h, d);
  u32 flags = 0;
  const u32 a = unbox(F(d.rs1)), b = unbox(F(d.rs2));
  const u32 r = (d.imm & 7) == 0 ? fpu::f32_min(a, b, flags) : fpu::f32_max(a, b, flags);
  accrue(h, flags);
  write_f(h, d.rd, box(r));
  NEXT();
}
DVMM_HANDLER(op_fminmax_d) {
  require_fp(h, d);
  u32 flags = 0;
  const u64 r = (d.imm & 7) == 0 ? fpu::f64_min(F(d.rs1), F(d.rs2), flags)
                                 : fpu::f64_max(F(d.rs1), F(d.rs2), flags);
  accrue(h, flags);
  write_f(h, d.rd, r);
  NEXT();
}
DVMM_HANDLER(op_fcmp_s) {
  require_fp(h, d);
  u32 flags = 0;
  const u32 a = unbox(F(d.rs1)), b = unbox(F(d.rs2));
  u64 r;
  switch (d.imm & 7) {
    case 0: r = fpu::f32_le(a, b, flags); break;
    case 1: r = fpu::f32_lt(a, b, flags); break;
    default: r = fpu::f32_eq(a, b, flags); break;
  }
  accrue(h, flags);
  X(d.rd) = r;
  NEXT();
}
DVMM_HANDLER(op_fcmp_d) {
  require_fp(h, d);
  u32 flags = 0;
  u64 r;
  switch (d.imm & 7) {
    case 0: r = fpu::f64_le(F(d.rs1), F(d.rs2), flags); break;
    case 1: r = fpu::f64_lt(F(d.rs1), F(d.rs2), flags); break;
    default: r = fpu::f64_eq(F(d.rs1), F(d.rs2), flags); break;
  }
  accrue(h, flags);
  X(d.rd) = r;
  NEXT();
}
DVMM_HANDLER(op_fclass_s) {
  require_fp(h, d);
  X(d.rd) = fpu::f32_classify(unbox(F(d.rs1)));
  NEXT();
}
DVMM_HANDLER(op_fclass_d) {
  require_fp(h, d);
  X(d.rd) = fpu::f64_classify(F(d.rs1));
  NEXT();
}
DVMM_HANDLER(op_fmv_x_w) {
  require_fp(h, d);
  X(d.rd) = static_cast<u64>(static_cast<i64>(static_cast<i32>(F(d.rs1))));
  NEXT();
}
DVMM_HANDLER(op_fmv_x_d) {
  require_fp(h, d);
  X(d.rd) = F(d.rs1);
  NEXT();
}
DVMM_HANDLER(op_fmv_w_x) {
  require_fp(h, d);
  write_f(h, d.rd, box(static_cast<u32>(X(d.rs1))));
  NEXT();
}
DVMM_HANDLER(op_fmv_d_x) {
  require_fp(h, d);
  write_f(h, d.rd, X(d.rs1));
  NEXT();
}

// ---- conversions. rs3 holds the rs2 field that selects the integer type.
DVMM_HANDLER(op_fcvt_int_s) {
  require_fp(h, d);
  const u32 rm = rounding(h, d);
  u32 flags = 0;
  const u32 a = unbox(F(d.rs1));
  u64 r;
  switch (d.rs3) {
    case 0: r = fpu::f32_to_i32(a, rm, flags); break;
    case 1: r = fpu::f32_to_u32(a, rm, flags); break;
    case 2: r = fpu::f32_to_i64(a, rm, flags); break;
    default: r = fpu::f32_to_u64(a, rm, flags); break;
  }
  accrue(h, flags);
  X(d.rd) = r;
  NEXT();
}
DVMM_HANDLER(op_fcvt_int_d) {
  require_fp(h, d);
  const u32 rm = rounding(h, d);
  u32 flags = 0;
  const u64 a = F(d.rs1);
  u64 r;
  switch (d.rs3) {
    case 0: r = fpu::f64_to_i32(a, rm, flags); break;
    case 1: r = fpu::f64_to_u32(a, rm, flags); break;
    case 2: r = fpu::f64_to_i64(a, rm, flags); break;
    default: r = fpu::f64_to_u64(a, rm, flags); break;
  }
  accrue(h, flags);
  X(d.rd) = r;
  NEXT();
}
DVMM_HANDLER(op_fcvt_s_int) {
  require_fp(h, d);
  const u32 rm = rounding(h, d);
  u32 flags = 0;
  const u64 v = X(d.rs1);
  u32 r;
  switch (d.rs3) {
    case 0: r = fpu::i32_to_f32(static_cast<i32>(v), rm, flags); break;
    case 1: r = fpu::u32_to_f32(static_cast<u32>(v), rm, flags); break;
    case 2: r = fpu::i64_to_f32(static_cast<i64>(v), rm, flags); break;
    default: r = fpu::u64_to_f32(v, rm, flags); break;
  }
  accrue(h, flags);
  write_f(h, d.rd, box(r));
  NEXT();
}
DVMM_HANDLER(op_fcvt_d_int) {
  require_fp(h, d);
  const u32 rm = rounding(h, d);
  u32 flags = 0;
  const u64 v = X(d.rs1);
  u64 r;
  switch (d.rs3) {
    case 0: r = fpu::i32_to_f64(static_cast<i32>(v), rm, flags); break;
    case 1: r = fpu::u32_to_f64(static_cast<u32>(v), rm, flags); break;
    case 2: r = fpu::i64_to_f64(static_cast<i64>(v), rm, flags); break;
    default: r = fpu::u64_to_f64(v, rm, flags); break;
  }
  accrue(h, flags);
  write_f(h, d.rd, r);
  NEXT();
}
DVMM_HANDLER(op_fcvt_s_d) {
  require_fp(h, d);
  const u32 rm = rounding(h, d);
  u32 flags = 0;
  const u32 r = fpu::f64_to_f32(F(d.rs1), rm, flags);
  accrue(h, flags);
  write_f(h, d.rd, box(r));
  NEXT();
}
DVMM_HANDLER(op_fcvt_d_s) {
  require_fp(h, d);
  (void)rounding(h, d);
  u32 flags = 0;
  const u64 r = fpu::f32_to_f64(unbox(F(d.rs1)), flags);
  accrue(h, flags);
  write_f(h, d.rd, r);
  NEXT();
}

#undef X
#undef F
#undef NEXT

}  // namespace

bool decode_float(u32 raw, unsigned len, DecodedInsn& d) {
  const u32 opcode = raw & 0x7f;
  const u32 f3 = funct3_of(raw);
  const u32 f7 = funct7_of(raw);
  const u32 rs2 = rs2_of(raw);
  d.rd = rd_of(raw);
  d.rs1 = rs1_of(raw);
  d.rs2 = static_cast<u8>(rs2);
  d.rs3 = rs3_of(raw);
  d.imm = static_cast<i32>(f3);
  switch (opcode) {
    case 0x07:  // loads
      d.imm = imm_i(raw);
      if (f3 == 2) d.fn = DVMM_PICK(op_flw, len);
      else if (f3 == 3) d.fn = DVMM_PICK(op_fld, len);
      else return false;
      return true;
    case 0x27:  // stores
      d.imm = imm_s(raw);
      if (f3 == 2) d.fn = DVMM_PICK(op_fsw, len);
      else if (f3 == 3) d.fn = DVMM_PICK(op_fsd, len);
      else return false;
      return true;
    case 0x43:
    case 0x47:
    case 0x4b:
    case 0x4f: {
      const u32 fmt = bits(raw, 26, 25);
      if (fmt > 1) return false;
      const unsigned which = (opcode - 0x43) >> 2;
      static constexpr InsnHandler kS2[4] = {op_fmadd_s<2>, op_fmsub_s<2>, op_fnmsub_s<2>, op_fnmadd_s<2>};
      static constexpr InsnHandler kS4[4] = {op_fmadd_s<4>, op_fmsub_s<4>, op_fnmsub_s<4>, op_fnmadd_s<4>};
      static constexpr InsnHandler kD2[4] = {op_fmadd_d<2>, op_fmsub_d<2>, op_fnmsub_d<2>, op_fnmadd_d<2>};
      static constexpr InsnHandler kD4[4] = {op_fmadd_d<4>, op_fmsub_d<4>, op_fnmsub_d<4>, op_fnmadd_d<4>};
      d.fn = fmt == 0 ? (len == 2 ? kS2[which] : kS4[which]) : (len == 2 ? kD2[which] : kD4[which]);
      return true;
    }
    case 0x53:
      break;
    default:
      return false;
  }
  // OP-FP. Integer destinations go through xrd so x0 writes are discarded.
  switch (f7) {
    case 0x00: d.fn = DVMM_PICK(op_fadd_s, len); return true;
    case 0x01: d.fn = DVMM_PICK(op_fadd_d, len); return true;
    case 0x04: d.fn = DVMM_PICK(op_fsub_s, len); return true;
    case 0x05: d.fn = DVMM_PICK(op_fsub_d, len); return true;
    case 0x08: d.fn = DVMM_PICK(op_fmul_s, len); return true;
    case 0x09: d.fn = DVMM_PICK(op_fmul_d, len); return true;
    case 0x0c: d.fn = DVMM_PICK(op_fdiv_s, len); return true;
    case 0x0d: d.fn = DVMM_PICK(op_fdiv_d, len); return true;
    case 0x2c:
      if (rs2 != 0) return false;
      d.fn = DVMM_PICK(op_fsqrt_s, len);
      return true;
    case 0x2d:
      if (rs2 != 0) return false;
      d.fn = DVMM_PICK(op_fsqrt_d, len);
      return true;
    case 0x10:
      if (f3 > 2) return false;
      d.fn = DVMM_PICK(op_fsgnj_s, len);
      return true;
    case 0x11:
      if (f3 > 2) return false;
      d.fn = DVMM_PICK(op_fsgnj_d, len);
      return true;
    case 0x14:
      if (f3 > 1) return false;
      d.fn = DVMM_PICK(op_fminmax_s, len);
      return true;
    case 0x15:
      if (f3 > 1) return false;
      d.fn = DVMM_PICK(op_fminmax_d, len);
      return true;
    case 0x20:
      if (rs2 != 1) return false;
      d.fn = DVMM_PICK(op_fcvt_s_d, len);
      return true;
    case 0x21:
      if (rs2 != 0) return false;
      d.fn = DVMM_PICK(op_fcvt_d_s, len);
      return true;
    case 0x50:
    case 0x51:
      if (f3 > 2) return false;
      d.rd = xrd_of(raw);
      d.fn = f7 == 0x50 ? DVMM_PICK(op_fcmp_s, len) : DVMM_PICK(op_fcmp_d, len);
      return true;
    case 0x60:
    case 0x61:
      if (rs2 > 3) return false;
      d.rd = xrd_of(raw);
      d.rs3 = static_cast<u8>(rs2);
      d.fn = f7 == 0x60 ? DVMM_PICK(op_fcvt_int_s, len) : DVMM_PICK(op_fcvt_int_d, len);
      return true;
    case 0x68:
    case 0x69:
      if (rs2 > 3) return false;
      d.rs3 = static_cast<u8>(rs2);
      d.fn = f7 == 0x68 ? DVMM_PICK(op_fcvt_s_int, len) : DVMM_PICK(op_fcvt_d_int, len);
      return true;
    case 0x70:
    case 0x71:
      if (rs2 != 0) return false;
      d.rd = xrd_of(raw);
      if (f3 == 0) d.fn = f7 == 0x70 ? DVMM_PICK(op_fmv_x_w, len) : DVMM_PICK(op_fmv_x_d, len);
      else if (f3 == 1) d.fn = f7 == 0x70 ? DVMM_PICK(op_fclass_s, len) : DVMM_PICK(op_fclass_d, len);
      else return false;
      return true;
    case 0x78:
    case 0x79:
      if (rs2 != 0 || f3 != 0) return false;
      d.fn = f7 == 0x78 ? DVMM_PICK(op_fmv_w_x, len) : DVMM_PICK(op_fmv_d_x, len);
      return true;
    default:
      return false;
  }
}

}  // namespace dvmm::cpu
