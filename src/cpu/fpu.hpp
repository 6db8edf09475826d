// IEEE 754 arithmetic for the F and D extensions, exactly as the RISC-V spec requires:
// all five rounding modes (including RMM, round to nearest ties-to-max-magnitude), fflags
// accrued per operation, tininess detected after rounding, canonical NaN results
// (0x7fc00000 / 0x7ff8000000000000), signalling-NaN handling, and saturating conversions.
//
// Pure functions: no global state, safe from any thread. Values are raw bit patterns.
// NaN boxing of single-precision values in 64-bit registers is the interpreter's job, not
// this module's: f32 functions take and return the low 32 bits.
#pragma once

#include "base/types.hpp"

namespace dvmm::cpu::fpu {

// Rounding modes as encoded in the rm field / frm CSR. Callers resolve DYN (7) to frm and
// reject the reserved encodings (5, 6) before calling.
enum RoundingMode : u32 { kRne = 0, kRtz = 1, kRdn = 2, kRup = 3, kRmm = 4 };

// fflags bits (accrued exceptions), as in the fcsr.
enum Flag : u32 { kNx = 1, kUf = 2, kOf = 4, kDz = 8, kNv = 16 };

// Every function ORs the exceptions it raises into `flags`.
u32 f32_add(u32 a, u32 b, u32 rm, u32& flags);
u32 f32_sub(u32 a, u32 b, u32 rm, u32& flags);
u32 f32_mul(u32 a, u32 b, u32 rm, u32& flags);
u32 f32_div(u32 a, u32 b, u32 rm, u32& flags);
u32 f32_sqrt(u32 a, u32 rm, u32& flags);
// Fused: a*b+c with a single rounding. The four RISC-V variants:
// fmadd = a*b+c, fmsub = a*b-c, fnmsub = -(a*b)+c, fnmadd = -(a*b)-c.
u32 f32_fmadd(u32 a, u32 b, u32 c, u32 rm, u32& flags);
u32 f32_fmsub(u32 a, u32 b, u32 c, u32 rm, u32& flags);
u32 f32_fnmsub(u32 a, u32 b, u32 c, u32 rm, u32& flags);
u32 f32_fnmadd(u32 a, u32 b, u32 c, u32 rm, u32& flags);
// fmin/fmax per the ratified F extension 2.2 (minimumNumber semantics: -0 < +0, one NaN
// input returns the other operand, two NaNs return the canonical NaN, sNaN raises NV).
u32 f32_min(u32 a, u32 b, u32& flags);
u32 f32_max(u32 a, u32 b, u32& flags);
// Comparisons return 0 or 1. feq raises NV only for sNaN; flt/fle raise NV for any NaN.
u64 f32_eq(u32 a, u32 b, u32& flags);
u64 f32_lt(u32 a, u32 b, u32& flags);
u64 f32_le(u32 a, u32 b, u32& flags);
// fclass: the 10-bit mask of the spec.
u64 f32_classify(u32 a);
// Conversions to integers saturate and raise NV on NaN / out of range (NaN converts to the
// maximum positive value), NX when inexact. 32-bit results are returned sign-extended to
// 64 bits, as the W forms write them to the register (also for the unsigned W form).
u64 f32_to_i32(u32 a, u32 rm, u32& flags);
u64 f32_to_u32(u32 a, u32 rm, u32& flags);
u64 f32_to_i64(u32 a, u32 rm, u32& flags);
u64 f32_to_u64(u32 a, u32 rm, u32& flags);
u32 i32_to_f32(i32 v, u32 rm, u32& flags);
u32 u32_to_f32(u32 v, u32 rm, u32& flags);
u32 i64_to_f32(i64 v, u32 rm, u32& flags);
u32 u64_to_f32(u64 v, u32 rm, u32& flags);

u64 f64_add(u64 a, u64 b, u32 rm, u32& flags);
u64 f64_sub(u64 a, u64 b, u32 rm, u32& flags);
u64 f64_mul(u64 a, u64 b, u32 rm, u32& flags);
u64 f64_div(u64 a, u64 b, u32 rm, u32& flags);
u64 f64_sqrt(u64 a, u32 rm, u32& flags);
u64 f64_fmadd(u64 a, u64 b, u64 c, u32 rm, u32& flags);
u64 f64_fmsub(u64 a, u64 b, u64 c, u32 rm, u32& flags);
u64 f64_fnmsub(u64 a, u64 b, u64 c, u32 rm, u32& flags);
u64 f64_fnmadd(u64 a, u64 b, u64 c, u32 rm, u32& flags);
u64 f64_min(u64 a, u64 b, u32& flags);
u64 f64_max(u64 a, u64 b, u32& flags);
u64 f64_eq(u64 a, u64 b, u32& flags);
u64 f64_lt(u64 a, u64 b, u32& flags);
u64 f64_le(u64 a, u64 b, u32& flags);
u64 f64_classify(u64 a);
u64 f64_to_i32(u64 a, u32 rm, u32& flags);
u64 f64_to_u32(u64 a, u32 rm, u32& flags);
u64 f64_to_i64(u64 a, u32 rm, u32& flags);
u64 f64_to_u64(u64 a, u32 rm, u32& flags);
u64 i32_to_f64(i32 v, u32 rm, u32& flags);
u64 u32_to_f64(u32 v, u32 rm, u32& flags);
u64 i64_to_f64(i64 v, u32 rm, u32& flags);
u64 u64_to_f64(u64 v, u32 rm, u32& flags);

u64 f32_to_f64(u32 a, u32& flags);            // exact; sNaN raises NV, NaN -> canonical
u32 f64_to_f32(u64 a, u32 rm, u32& flags);

}  // namespace dvmm::cpu::fpu
