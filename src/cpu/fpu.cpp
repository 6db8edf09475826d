// Software IEEE 754 binary32/binary64 arithmetic for the RISC-V F and D extensions.
//
// Design: every operand is unpacked into a class (zero, finite, inf, qNaN, sNaN), a sign, and
// for finite non-zero values an exact value sig * 2^exp with sig normalized so bit 63 is set.
// Each operation computes its result exactly, or as a truncated value whose lowest bit is a
// "sticky" bit recording that non-zero bits were dropped (shift-right-jam). A single
// round-and-pack routine per format then rounds that value once, in any of the five RISC-V
// rounding modes, and raises NX / UF / OF. Tininess is detected after rounding and underflow
// is only signalled when the result is also inexact, matching SoftFloat's RISC-V build (and
// thus QEMU and Spike). NaN results are always the canonical NaN.
//
// The sticky-bit argument: a jammed value s (odd whenever bits were lost) lies strictly
// between the even integers s-1 and s+1, so rounding it at any position with at least two
// dropped bits gives the same result and the same inexactness as rounding the true value.
// Every operation below keeps the final rounding position at least two bits above bit 0.
#include "cpu/fpu.hpp"

#include <cmath>
#include <utility>

namespace dvmm::cpu::fpu {
namespace {

template <typename Bits, int kExpBitsT, int kFracBitsT>
struct Format {
  using T = Bits;
  static constexpr int kExpBits = kExpBitsT;
  static constexpr int kFrac = kFracBitsT;
  static constexpr int kPrec = kFracBitsT + 1;  // precision including the hidden bit
  static constexpr int kBias = (1 << (kExpBitsT - 1)) - 1;
  static constexpr int kMaxField = (1 << kExpBitsT) - 1;  // exponent field of inf / NaN
  static constexpr T kSignBit = T{1} << (kExpBitsT + kFracBitsT);
  static constexpr T kFracMask = (T{1} << kFracBitsT) - 1;
  static constexpr T kQuietBit = T{1} << (kFracBitsT - 1);
  static constexpr T kInf = T(kMaxField) << kFracBitsT;
  static constexpr T kMaxFinite = kInf - 1;
  static constexpr T kCanonicalNaN = kInf | kQuietBit;
};
using F32 = Format<u32, 8, 23>;
using F64 = Format<u64, 11, 52>;

enum class Cls : u8 { kZero, kFinite, kInf, kQNaN, kSNaN };

// value = (-1)^sign * sig * 2^exp for kFinite, with bit 63 of sig set.
struct Unpacked {
  Cls cls;
  bool sign;
  int exp;
  u64 sig;
};

template <class F>
DVMM_ALWAYS_INLINE Unpacked unpack(typename F::T bits) {
  Unpacked u{};
  u.sign = (bits & F::kSignBit) != 0;
  const int field = static_cast<int>((bits >> F::kFrac) & F::kMaxField);
  const u64 frac = static_cast<u64>(bits & F::kFracMask);
  if (field == F::kMaxField) {
    u.cls = frac == 0 ? Cls::kInf : ((frac & F::kQuietBit) ? Cls::kQNaN : Cls::kSNaN);
    return u;
  }
  if (field == 0) {
    if (frac == 0) {
      u.cls = Cls::kZero;
      return u;
    }
    const int lz = __builtin_clzll(frac);
    u.cls = Cls::kFinite;
    u.sig = frac << lz;
    u.exp = 1 - F::kBias - F::kFrac - lz;
    return u;
  }
  const u64 sig = frac | (u64{1} << F::kFrac);
  constexpr int kShift = 63 - F::kFrac;
  u.cls = Cls::kFinite;
  u.sig = sig << kShift;
  u.exp = field - F::kBias - F::kFrac - kShift;
  return u;
}

DVMM_ALWAYS_INLINE bool is_nan(Cls c) {
  return c == Cls::kQNaN || c == Cls::kSNaN;
}

template <class F>
DVMM_ALWAYS_INLINE bool bits_is_nan(typename F::T a) {
  return (a & ~F::kSignBit) > F::kInf;
}
template <class F>
DVMM_ALWAYS_INLINE bool bits_is_snan(typename F::T a) {
  return bits_is_nan<F>(a) && (a & F::kQuietBit) == 0;
}

// Whether the magnitude is incremented when `r` (the dropped bits, `half` being the value of
// the most significant dropped bit) is discarded from a value whose kept part is `odd`.
DVMM_ALWAYS_INLINE bool round_up(u32 rm, bool sign, bool odd, u64 r, u64 half) {
  switch (rm) {
    case kRne:
      return r > half || (r == half && odd);
    case kRmm:
      return r >= half;
    case kRdn:
      return r != 0 && sign;
    case kRup:
      return r != 0 && !sign;
    default:
      return false;
  }
}

DVMM_ALWAYS_INLINE u64 shift_right_jam64(u64 v, int n) {
  if (n <= 0) return v;
  if (n >= 64) return v != 0 ? 1 : 0;
  return (v >> n) | ((v & ((u64{1} << n) - 1)) != 0 ? 1 : 0);
}

DVMM_ALWAYS_INLINE u128 shift_right_jam128(u128 v, int n) {
  if (n <= 0) return v;
  if (n >= 128) return v != 0 ? 1 : 0;
  return (v >> n) | ((v & ((u128{1} << n) - 1)) != 0 ? 1 : 0);
}

DVMM_ALWAYS_INLINE int clz128(u128 v) {
  const u64 hi = static_cast<u64>(v >> 64);
  if (hi != 0) return __builtin_clzll(hi);
  return 64 + __builtin_clzll(static_cast<u64>(v));
}

template <class F>
DVMM_ALWAYS_INLINE typename F::T overflow_result(bool sign, u32 rm, u32& flags) {
  flags |= kOf | kNx;
  const bool to_inf = rm == kRne || rm == kRmm || (rm == kRdn && sign) || (rm == kRup && !sign);
  return (sign ? F::kSignBit : 0) | (to_inf ? F::kInf : F::kMaxFinite);
}

// Rounds (-1)^sign * sig * 2^exp (sig != 0, bit 0 possibly a sticky bit) to format F.
template <class F>
typename F::T round_pack(bool sign, int exp, u64 sig, u32 rm, u32& flags) {
  using T = typename F::T;
  constexpr int kDrop = 64 - F::kPrec;
  constexpr u64 kDropMask = (u64{1} << kDrop) - 1;
  constexpr u64 kHalf = u64{1} << (kDrop - 1);
  constexpr u64 kKeptOnes = (u64{1} << F::kPrec) - 1;
  const T sign_bit = sign ? F::kSignBit : 0;

  const int lz = __builtin_clzll(sig);
  sig <<= lz;
  exp -= lz;
  // Biased exponent of the value: it lies in [2^(be-bias), 2^(be-bias+1)).
  int be = exp + 63 + F::kBias;
  if (be >= F::kMaxField) return overflow_result<F>(sign, rm, flags);

  bool tiny = false;
  const bool subnormal = be < 1;
  if (subnormal) {
    if (be < 0) {
      tiny = true;
    } else {
      // be == 0: tiny unless rounding to full precision carries up to 2^emin.
      const u64 kept = sig >> kDrop;
      const bool inc = round_up(rm, sign, kept & 1, sig & kDropMask, kHalf);
      tiny = !(inc && kept == kKeptOnes);
    }
    sig = shift_right_jam64(sig, 1 - be);
  }
  u64 kept = sig >> kDrop;
  const u64 r = sig & kDropMask;
  if (r != 0) {
    flags |= kNx;
    if (tiny) flags |= kUf;
  }
  if (round_up(rm, sign, kept & 1, r, kHalf)) ++kept;
  if (subnormal) {
    // Exponent field 0; a carry into bit kFrac yields the smallest normal number.
    return sign_bit | static_cast<T>(kept);
  }
  if (kept >> F::kPrec) {
    kept >>= 1;
    ++be;
    if (be >= F::kMaxField) return overflow_result<F>(sign, rm, flags);
  }
  // kept includes the hidden bit, which adds one to the exponent field.
  return sign_bit | ((static_cast<T>(be - 1) << F::kFrac) + static_cast<T>(kept));
}

template <class F>
DVMM_ALWAYS_INLINE typename F::T round_pack_wide(bool sign, int exp, u128 sig, u32 rm, u32& flags) {
  const int lz = clz128(sig);
  sig <<= lz;
  exp -= lz;
  const u64 hi = static_cast<u64>(sig >> 64);
  const u64 lo = static_cast<u64>(sig);
  return round_pack<F>(sign, exp + 64, hi | (lo != 0 ? 1 : 0), rm, flags);
}

template <class F>
DVMM_ALWAYS_INLINE typename F::T zero(bool sign) {
  return sign ? F::kSignBit : 0;
}

// Adds two finite non-zero values whose significands have bit 125 set exactly (so exponent
// order is magnitude order). Significands carry at most 106 significant bits, so the
// low 20 bits are zero and aligning shifts of up to 20 bits are exact; any jam implies
// an exponent difference of at least 2, which keeps the sum's top bit at 124 or above.
template <class F>
typename F::T add_core(bool sa, int ea, u128 a, bool sb, int eb, u128 b, u32 rm, u32& flags) {
  if (ea < eb || (ea == eb && a < b)) {
    std::swap(sa, sb);
    std::swap(ea, eb);
    std::swap(a, b);
  }
  // |a| >= |b| now.
  b = shift_right_jam128(b, ea - eb);
  u128 s;
  if (sa == sb) {
    s = a + b;
  } else {
    s = a - b;
    if (s == 0) return zero<F>(rm == kRdn);
  }
  return round_pack_wide<F>(sa, ea, s, rm, flags);
}

template <class F>
typename F::T add(typename F::T a, typename F::T b, bool negate_b, u32 rm, u32& flags) {
  Unpacked x = unpack<F>(a);
  Unpacked y = unpack<F>(b);
  y.sign ^= negate_b;
  if (is_nan(x.cls) || is_nan(y.cls)) {
    if (x.cls == Cls::kSNaN || y.cls == Cls::kSNaN) flags |= kNv;
    return F::kCanonicalNaN;
  }
  if (x.cls == Cls::kInf) {
    if (y.cls == Cls::kInf && x.sign != y.sign) {
      flags |= kNv;
      return F::kCanonicalNaN;
    }
    return zero<F>(x.sign) | F::kInf;
  }
  if (y.cls == Cls::kInf) return zero<F>(y.sign) | F::kInf;
  if (x.cls == Cls::kZero) {
    if (y.cls == Cls::kZero) {
      return zero<F>(x.sign == y.sign ? x.sign : rm == kRdn);
    }
    return negate_b ? (b ^ F::kSignBit) : b;
  }
  if (y.cls == Cls::kZero) return a;
  return add_core<F>(x.sign, x.exp - 62, u128{x.sig} << 62, y.sign, y.exp - 62, u128{y.sig} << 62,
                     rm, flags);
}

template <class F>
typename F::T mul(typename F::T a, typename F::T b, u32 rm, u32& flags) {
  const Unpacked x = unpack<F>(a);
  const Unpacked y = unpack<F>(b);
  const bool sign = x.sign != y.sign;
  if (is_nan(x.cls) || is_nan(y.cls)) {
    if (x.cls == Cls::kSNaN || y.cls == Cls::kSNaN) flags |= kNv;
    return F::kCanonicalNaN;
  }
  if (x.cls == Cls::kInf || y.cls == Cls::kInf) {
    if (x.cls == Cls::kZero || y.cls == Cls::kZero) {
      flags |= kNv;
      return F::kCanonicalNaN;
    }
    return zero<F>(sign) | F::kInf;
  }
  if (x.cls == Cls::kZero || y.cls == Cls::kZero) return zero<F>(sign);
  return round_pack_wide<F>(sign, x.exp + y.exp, u128{x.sig} * y.sig, rm, flags);
}

template <class F>
typename F::T div(typename F::T a, typename F::T b, u32 rm, u32& flags) {
  const Unpacked x = unpack<F>(a);
  const Unpacked y = unpack<F>(b);
  const bool sign = x.sign != y.sign;
  if (is_nan(x.cls) || is_nan(y.cls)) {
    if (x.cls == Cls::kSNaN || y.cls == Cls::kSNaN) flags |= kNv;
    return F::kCanonicalNaN;
  }
  if (x.cls == Cls::kInf) {
    if (y.cls == Cls::kInf) {
      flags |= kNv;
      return F::kCanonicalNaN;
    }
    return zero<F>(sign) | F::kInf;
  }
  if (y.cls == Cls::kInf) return zero<F>(sign);
  if (y.cls == Cls::kZero) {
    if (x.cls == Cls::kZero) {
      flags |= kNv;
      return F::kCanonicalNaN;
    }
    flags |= kDz;
    return zero<F>(sign) | F::kInf;
  }
  if (x.cls == Cls::kZero) return zero<F>(sign);
  // x.sig / y.sig is in (1/2, 2), so the quotient of x.sig * 2^62 lies in (2^61, 2^63).
  const u128 n = u128{x.sig} << 62;
  const u64 q = static_cast<u64>(n / y.sig);
  const bool rem = static_cast<u64>(n - u128{q} * y.sig) != 0;
  return round_pack<F>(sign, x.exp - y.exp - 62, q | (rem ? 1 : 0), rm, flags);
}

// floor(sqrt(m)) for m in [2^126, 2^128): the result lies in [2^63, 2^64).
u64 isqrt128(u128 m) {
  // The host estimate only seeds a Newton step; the exact fix-up below makes the result
  // independent of host rounding.
  double est = std::sqrt(static_cast<double>(m));
  u128 r = est >= 18446744073709551615.0 ? ~u64{0} : static_cast<u64>(est);
  if (r < (u128{1} << 63)) r = u128{1} << 63;
  r = (r + m / r) >> 1;
  constexpr u128 kMax = ~u64{0};
  if (r > kMax) r = kMax;  // keeps r * r from wrapping
  while (r * r > m) --r;
  while (r < kMax && (r + 1) * (r + 1) <= m) ++r;
  return static_cast<u64>(r);
}

template <class F>
typename F::T sqrt(typename F::T a, u32 rm, u32& flags) {
  const Unpacked x = unpack<F>(a);
  if (is_nan(x.cls)) {
    if (x.cls == Cls::kSNaN) flags |= kNv;
    return F::kCanonicalNaN;
  }
  if (x.cls == Cls::kZero) return a;
  if (x.sign) {
    flags |= kNv;
    return F::kCanonicalNaN;
  }
  if (x.cls == Cls::kInf) return a;
  // value = m * 2^e with e even and m in [2^126, 2^128).
  const bool odd = (x.exp & 1) != 0;
  const u128 m = u128{x.sig} << (odd ? 63 : 64);
  const int e = x.exp - (odd ? 63 : 64);
  const u64 r = isqrt128(m);
  const bool inexact = u128{r} * r != m;
  return round_pack<F>(false, e / 2, r | (inexact ? 1 : 0), rm, flags);
}

// a*b + c with one rounding; negate_prod / negate_c select the RISC-V variants.
template <class F>
typename F::T fma(typename F::T a, typename F::T b, typename F::T c, bool negate_prod,
                  bool negate_c, u32 rm, u32& flags) {
  const Unpacked x = unpack<F>(a);
  const Unpacked y = unpack<F>(b);
  Unpacked z = unpack<F>(c);
  const bool sp = (x.sign != y.sign) != negate_prod;
  z.sign ^= negate_c;
  if (x.cls == Cls::kSNaN || y.cls == Cls::kSNaN || z.cls == Cls::kSNaN) flags |= kNv;
  if (is_nan(x.cls) || is_nan(y.cls)) return F::kCanonicalNaN;
  const bool prod_inf = x.cls == Cls::kInf || y.cls == Cls::kInf;
  const bool prod_zero = x.cls == Cls::kZero || y.cls == Cls::kZero;
  if (prod_inf && prod_zero) {
    // inf * 0 is invalid even when c is a quiet NaN (as SoftFloat's RISC-V build does).
    flags |= kNv;
    return F::kCanonicalNaN;
  }
  if (is_nan(z.cls)) return F::kCanonicalNaN;
  if (prod_inf) {
    if (z.cls == Cls::kInf && z.sign != sp) {
      flags |= kNv;
      return F::kCanonicalNaN;
    }
    return zero<F>(sp) | F::kInf;
  }
  if (z.cls == Cls::kInf) return zero<F>(z.sign) | F::kInf;
  if (prod_zero) {
    if (z.cls == Cls::kZero) return zero<F>(sp == z.sign ? sp : rm == kRdn);
    return zero<F>(z.sign) | (c & ~F::kSignBit);
  }
  // Product: exact, 128 bits with the top bit at 126 or 127 and at most 106 significant
  // bits; shifting it down so the top bit is at 125 is therefore exact.
  u128 p = u128{x.sig} * y.sig;
  int ep = x.exp + y.exp;
  const int sh = (p >> 127) ? 2 : 1;
  p >>= sh;
  ep += sh;
  if (z.cls == Cls::kZero) return round_pack_wide<F>(sp, ep, p, rm, flags);
  return add_core<F>(sp, ep, p, z.sign, z.exp - 62, u128{z.sig} << 62, rm, flags);
}

template <class F>
typename F::T min_max(typename F::T a, typename F::T b, bool is_max, u32& flags) {
  const bool an = bits_is_nan<F>(a);
  const bool bn = bits_is_nan<F>(b);
  if (bits_is_snan<F>(a) || bits_is_snan<F>(b)) flags |= kNv;
  if (an && bn) return F::kCanonicalNaN;
  if (an) return b;
  if (bn) return a;
  const bool sa = (a & F::kSignBit) != 0;
  const bool sb = (b & F::kSignBit) != 0;
  // Total order on non-NaN values with -0 < +0.
  const bool less = sa != sb ? sa : (a != b && (sa != (a < b)));
  return (less != is_max) ? a : b;
}

template <class F>
u64 feq(typename F::T a, typename F::T b, u32& flags) {
  if (bits_is_nan<F>(a) || bits_is_nan<F>(b)) {
    if (bits_is_snan<F>(a) || bits_is_snan<F>(b)) flags |= kNv;
    return 0;
  }
  return (a == b || ((a | b) & ~F::kSignBit) == 0) ? 1 : 0;
}

template <class F>
u64 flt(typename F::T a, typename F::T b, u32& flags) {
  if (bits_is_nan<F>(a) || bits_is_nan<F>(b)) {
    flags |= kNv;
    return 0;
  }
  const bool sa = (a & F::kSignBit) != 0;
  const bool sb = (b & F::kSignBit) != 0;
  if (sa != sb) return (sa && ((a | b) & ~F::kSignBit) != 0) ? 1 : 0;
  return (a != b && (sa != (a < b))) ? 1 : 0;
}

template <class F>
u64 fle(typename F::T a, typename F::T b, u32& flags) {
  if (bits_is_nan<F>(a) || bits_is_nan<F>(b)) {
    flags |= kNv;
    return 0;
  }
  const bool sa = (a & F::kSignBit) != 0;
  const bool sb = (b & F::kSignBit) != 0;
  if (sa != sb) return (sa || ((a | b) & ~F::kSignBit) == 0) ? 1 : 0;
  return (a == b || (sa != (a < b))) ? 1 : 0;
}

template <class F>
u64 classify(typename F::T a) {
  const Unpacked u = unpack<F>(a);
  const bool subnormal = ((a >> F::kFrac) & F::kMaxField) == 0;
  switch (u.cls) {
    case Cls::kInf:
      return u.sign ? 1u << 0 : 1u << 7;
    case Cls::kZero:
      return u.sign ? 1u << 3 : 1u << 4;
    case Cls::kSNaN:
      return 1u << 8;
    case Cls::kQNaN:
      return 1u << 9;
    case Cls::kFinite:
    default:
      if (subnormal) return u.sign ? 1u << 2 : 1u << 5;
      return u.sign ? 1u << 1 : 1u << 6;
  }
}

enum class IntKind { kI32, kU32, kI64, kU64 };

// Float to integer, rounding per rm, saturating per the RISC-V table. W results are
// sign-extended to 64 bits.
template <class F>
u64 to_int(typename F::T a, IntKind kind, u32 rm, u32& flags) {
  const Unpacked x = unpack<F>(a);
  const bool is_signed = kind == IntKind::kI32 || kind == IntKind::kI64;
  const bool is32 = kind == IntKind::kI32 || kind == IntKind::kU32;
  // Magnitude limits for positive and negative results.
  u64 pos_max;
  u64 neg_max;
  switch (kind) {
    case IntKind::kI32:
      pos_max = 0x7fffffffu;
      neg_max = 0x80000000u;
      break;
    case IntKind::kU32:
      pos_max = 0xffffffffu;
      neg_max = 0;
      break;
    case IntKind::kI64:
      pos_max = 0x7fffffffffffffffull;
      neg_max = 0x8000000000000000ull;
      break;
    case IntKind::kU64:
    default:
      pos_max = ~u64{0};
      neg_max = 0;
      break;
  }
  auto saturate = [&](bool negative) -> u64 {
    flags |= kNv;
    u64 v;
    if (negative) {
      v = is_signed ? (0 - neg_max) : 0;
    } else {
      v = pos_max;
    }
    if (is32) v = static_cast<u64>(static_cast<i64>(static_cast<i32>(static_cast<u32>(v))));
    return v;
  };
  if (is_nan(x.cls)) return saturate(false);
  if (x.cls == Cls::kInf) return saturate(x.sign);
  if (x.cls == Cls::kZero) return 0;

  u64 mag;
  bool inexact = false;
  if (x.exp > 0) {
    return saturate(x.sign);  // magnitude >= 2^64
  } else if (x.exp == 0) {
    mag = x.sig;
  } else {
    const int k = -x.exp;
    u64 r;
    u64 half;
    if (k >= 65) {
      // value < 1/2: integer part 0, dropped bits non-zero and below one half.
      mag = 0;
      r = 1;
      half = 2;
    } else if (k == 64) {
      mag = 0;
      r = x.sig;
      half = u64{1} << 63;
    } else {
      mag = x.sig >> k;
      r = x.sig & ((u64{1} << k) - 1);
      half = u64{1} << (k - 1);
    }
    inexact = r != 0;
    if (round_up(rm, x.sign, mag & 1, r, half)) ++mag;  // cannot wrap: mag < 2^63 here
  }
  if (x.sign ? mag > neg_max : mag > pos_max) return saturate(x.sign);
  if (inexact) flags |= kNx;
  u64 v = x.sign ? 0 - mag : mag;
  if (is32) v = static_cast<u64>(static_cast<i64>(static_cast<i32>(static_cast<u32>(v))));
  return v;
}

template <class F>
typename F::T from_int(bool sign, u64 mag, u32 rm, u32& flags) {
  if (mag == 0) return 0;
  return round_pack<F>(sign, 0, mag, rm, flags);
}

}  // namespace

u32 f32_add(u32 a, u32 b, u32 rm, u32& flags) {
  return add<F32>(a, b, false, rm, flags);
}
u32 f32_sub(u32 a, u32 b, u32 rm, u32& flags) {
  return add<F32>(a, b, true, rm, flags);
}
u32 f32_mul(u32 a, u32 b, u32 rm, u32& flags) {
  return mul<F32>(a, b, rm, flags);
}
u32 f32_div(u32 a, u32 b, u32 rm, u32& flags) {
  return div<F32>(a, b, rm, flags);
}
u32 f32_sqrt(u32 a, u32 rm, u32& flags) {
  return sqrt<F32>(a, rm, flags);
}
u32 f32_fmadd(u32 a, u32 b, u32 c, u32 rm, u32& flags) {
  return fma<F32>(a, b, c, false, false, rm, flags);
}
u32 f32_fmsub(u32 a, u32 b, u32 c, u32 rm, u32& flags) {
  return fma<F32>(a, b, c, false, true, rm, flags);
}
u32 f32_fnmsub(u32 a, u32 b, u32 c, u32 rm, u32& flags) {
  return fma<F32>(a, b, c, true, false, rm, flags);
}
u32 f32_fnmadd(u32 a, u32 b, u32 c, u32 rm, u32& flags) {
  return fma<F32>(a, b, c, true, true, rm, flags);
}
u32 f32_min(u32 a, u32 b, u32& flags) {
  return min_max<F32>(a, b, false, flags);
}
u32 f32_max(u32 a, u32 b, u32& flags) {
  return min_max<F32>(a, b, true, flags);
}
u64 f32_eq(u32 a, u32 b, u32& flags) {
  return feq<F32>(a, b, flags);
}
u64 f32_lt(u32 a, u32 b, u32& flags) {
  return flt<F32>(a, b, flags);
}
u64 f32_le(u32 a, u32 b, u32& flags) {
  return fle<F32>(a, b, flags);
}
u64 f32_classify(u32 a) {
  return classify<F32>(a);
}
u64 f32_to_i32(u32 a, u32 rm, u32& flags) {
  return to_int<F32>(a, IntKind::kI32, rm, flags);
}
u64 f32_to_u32(u32 a, u32 rm, u32& flags) {
  return to_int<F32>(a, IntKind::kU32, rm, flags);
}
u64 f32_to_i64(u32 a, u32 rm, u32& flags) {
  return to_int<F32>(a, IntKind::kI64, rm, flags);
}
u64 f32_to_u64(u32 a, u32 rm, u32& flags) {
  return to_int<F32>(a, IntKind::kU64, rm, flags);
}
u32 i32_to_f32(i32 v, u32 rm, u32& flags) {
  return from_int<F32>(
      v < 0, v < 0 ? 0 - static_cast<u64>(static_cast<i64>(v)) : static_cast<u64>(v), rm, flags);
}
u32 u32_to_f32(u32 v, u32 rm, u32& flags) {
  return from_int<F32>(false, v, rm, flags);
}
u32 i64_to_f32(i64 v, u32 rm, u32& flags) {
  return from_int<F32>(v < 0, v < 0 ? 0 - static_cast<u64>(v) : static_cast<u64>(v), rm, flags);
}
u32 u64_to_f32(u64 v, u32 rm, u32& flags) {
  return from_int<F32>(false, v, rm, flags);
}

u64 f64_add(u64 a, u64 b, u32 rm, u32& flags) {
  return add<F64>(a, b, false, rm, flags);
}
u64 f64_sub(u64 a, u64 b, u32 rm, u32& flags) {
  return add<F64>(a, b, true, rm, flags);
}
u64 f64_mul(u64 a, u64 b, u32 rm, u32& flags) {
  return mul<F64>(a, b, rm, flags);
}
u64 f64_div(u64 a, u64 b, u32 rm, u32& flags) {
  return div<F64>(a, b, rm, flags);
}
u64 f64_sqrt(u64 a, u32 rm, u32& flags) {
  return sqrt<F64>(a, rm, flags);
}
u64 f64_fmadd(u64 a, u64 b, u64 c, u32 rm, u32& flags) {
  return fma<F64>(a, b, c, false, false, rm, flags);
}
u64 f64_fmsub(u64 a, u64 b, u64 c, u32 rm, u32& flags) {
  return fma<F64>(a, b, c, false, true, rm, flags);
}
u64 f64_fnmsub(u64 a, u64 b, u64 c, u32 rm, u32& flags) {
  return fma<F64>(a, b, c, true, false, rm, flags);
}
u64 f64_fnmadd(u64 a, u64 b, u64 c, u32 rm, u32& flags) {
  return fma<F64>(a, b, c, true, true, rm, flags);
}
u64 f64_min(u64 a, u64 b, u32& flags) {
  return min_max<F64>(a, b, false, flags);
}
u64 f64_max(u64 a, u64 b, u32& flags) {
  return min_max<F64>(a, b, true, flags);
}
u64 f64_eq(u64 a, u64 b, u32& flags) {
  return feq<F64>(a, b, flags);
}
u64 f64_lt(u64 a, u64 b, u32& flags) {
  return flt<F64>(a, b, flags);
}
u64 f64_le(u64 a, u64 b, u32& flags) {
  return fle<F64>(a, b, flags);
}
u64 f64_classify(u64 a) {
  return classify<F64>(a);
}
u64 f64_to_i32(u64 a, u32 rm, u32& flags) {
  return to_int<F64>(a, IntKind::kI32, rm, flags);
}
u64 f64_to_u32(u64 a, u32 rm, u32& flags) {
  return to_int<F64>(a, IntKind::kU32, rm, flags);
}
u64 f64_to_i64(u64 a, u32 rm, u32& flags) {
  return to_int<F64>(a, IntKind::kI64, rm, flags);
}
u64 f64_to_u64(u64 a, u32 rm, u32& flags) {
  return to_int<F64>(a, IntKind::kU64, rm, flags);
}
u64 i32_to_f64(i32 v, u32 rm, u32& flags) {
  return from_int<F64>(
      v < 0, v < 0 ? 0 - static_cast<u64>(static_cast<i64>(v)) : static_cast<u64>(v), rm, flags);
}
u64 u32_to_f64(u32 v, u32 rm, u32& flags) {
  return from_int<F64>(false, v, rm, flags);
}
u64 i64_to_f64(i64 v, u32 rm, u32& flags) {
  return from_int<F64>(v < 0, v < 0 ? 0 - static_cast<u64>(v) : static_cast<u64>(v), rm, flags);
}
u64 u64_to_f64(u64 v, u32 rm, u32& flags) {
  return from_int<F64>(false, v, rm, flags);
}

u64 f32_to_f64(u32 a, u32& flags) {
  const Unpacked x = unpack<F32>(a);
  switch (x.cls) {
    case Cls::kSNaN:
      flags |= kNv;
      return F64::kCanonicalNaN;
    case Cls::kQNaN:
      return F64::kCanonicalNaN;
    case Cls::kInf:
      return zero<F64>(x.sign) | F64::kInf;
    case Cls::kZero:
      return zero<F64>(x.sign);
    case Cls::kFinite:
    default:
      return round_pack<F64>(x.sign, x.exp, x.sig, kRne, flags);  // always exact
  }
}

u32 f64_to_f32(u64 a, u32 rm, u32& flags) {
  const Unpacked x = unpack<F64>(a);
  switch (x.cls) {
    case Cls::kSNaN:
      flags |= kNv;
      return F32::kCanonicalNaN;
    case Cls::kQNaN:
      return F32::kCanonicalNaN;
    case Cls::kInf:
      return zero<F32>(x.sign) | F32::kInf;
    case Cls::kZero:
      return zero<F32>(x.sign);
    case Cls::kFinite:
    default:
      return round_pack<F32>(x.sign, x.exp, x.sig, rm, flags);
  }
}

}  // namespace dvmm::cpu::fpu
