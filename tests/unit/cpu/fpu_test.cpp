// Unit tests for the soft-float F/D arithmetic (src/cpu/fpu.cpp).
//
// Two parts: hand-derived vectors for every function and rounding mode (exact results,
// ties under RNE vs RMM, overflow per mode, subnormals and after-rounding tininess, invalid
// and divide-by-zero cases, NaN handling, saturating conversions), and a randomized
// cross-check against the host's SSE/FMA hardware in the four rounding modes x86 shares with
// RISC-V (x86 also detects tininess after rounding). RMM has no x86 equivalent; it is covered
// by the vectors here and by differential runs against qemu-riscv64.
#include "cpu/fpu.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace dvmm::cpu::fpu {
namespace {

constexpr u32 kAllModes[] = {kRne, kRtz, kRdn, kRup, kRmm};

// A result value plus the flags the call raised.
struct Res {
  u64 v;
  u32 f;
  bool operator==(const Res& o) const { return v == o.v && f == o.f; }
};

void PrintTo(const Res& r, std::ostream* os) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "{0x%llx, flags 0x%x}", static_cast<unsigned long long>(r.v), r.f);
  *os << buf;
}

// Call wrappers: each returns the value and the flags raised starting from zero.
#define DVMM_WRAP2(name, T)          \
  Res name##_(T a, T b, u32 rm) {    \
    u32 f = 0;                       \
    const u64 v = name(a, b, rm, f); \
    return {v, f};                   \
  }
#define DVMM_WRAP3(name, T)             \
  Res name##_(T a, T b, T c, u32 rm) {  \
    u32 f = 0;                          \
    const u64 v = name(a, b, c, rm, f); \
    return {v, f};                      \
  }
#define DVMM_WRAP1(name, T)       \
  Res name##_(T a, u32 rm) {      \
    u32 f = 0;                    \
    const u64 v = name(a, rm, f); \
    return {v, f};                \
  }
#define DVMM_WRAP2NR(name, T)    \
  Res name##_(T a, T b) {        \
    u32 f = 0;                   \
    const u64 v = name(a, b, f); \
    return {v, f};               \
  }

DVMM_WRAP2(f32_add, u32)
DVMM_WRAP2(f32_sub, u32)
DVMM_WRAP2(f32_mul, u32)
DVMM_WRAP2(f32_div, u32)
DVMM_WRAP1(f32_sqrt, u32)
DVMM_WRAP3(f32_fmadd, u32)
DVMM_WRAP3(f32_fmsub, u32)
DVMM_WRAP3(f32_fnmsub, u32)
DVMM_WRAP3(f32_fnmadd, u32)
DVMM_WRAP2NR(f32_min, u32)
DVMM_WRAP2NR(f32_max, u32)
DVMM_WRAP2NR(f32_eq, u32)
DVMM_WRAP2NR(f32_lt, u32)
DVMM_WRAP2NR(f32_le, u32)
DVMM_WRAP1(f32_to_i32, u32)
DVMM_WRAP1(f32_to_u32, u32)
DVMM_WRAP1(f32_to_i64, u32)
DVMM_WRAP1(f32_to_u64, u32)
DVMM_WRAP1(i32_to_f32, i32)
DVMM_WRAP1(u32_to_f32, u32)
DVMM_WRAP1(i64_to_f32, i64)
DVMM_WRAP1(u64_to_f32, u64)
DVMM_WRAP2(f64_add, u64)
DVMM_WRAP2(f64_sub, u64)
DVMM_WRAP2(f64_mul, u64)
DVMM_WRAP2(f64_div, u64)
DVMM_WRAP1(f64_sqrt, u64)
DVMM_WRAP3(f64_fmadd, u64)
DVMM_WRAP3(f64_fmsub, u64)
DVMM_WRAP3(f64_fnmsub, u64)
DVMM_WRAP3(f64_fnmadd, u64)
DVMM_WRAP2NR(f64_min, u64)
DVMM_WRAP2NR(f64_max, u64)
DVMM_WRAP2NR(f64_eq, u64)
DVMM_WRAP2NR(f64_lt, u64)
DVMM_WRAP2NR(f64_le, u64)
DVMM_WRAP1(f64_to_i32, u64)
DVMM_WRAP1(f64_to_u32, u64)
DVMM_WRAP1(f64_to_i64, u64)
DVMM_WRAP1(f64_to_u64, u64)
DVMM_WRAP1(i32_to_f64, i32)
DVMM_WRAP1(u32_to_f64, u32)
DVMM_WRAP1(i64_to_f64, i64)
DVMM_WRAP1(u64_to_f64, u64)
DVMM_WRAP1(f64_to_f32, u64)

Res f32_to_f64_(u32 a) {
  u32 f = 0;
  const u64 v = f32_to_f64(a, f);
  return {v, f};
}

// f32 constants.
constexpr u32 kP0 = 0x00000000, kN0 = 0x80000000;
constexpr u32 kOne = 0x3f800000, kMOne = 0xbf800000, kTwo = 0x40000000, kThree = 0x40400000;
constexpr u32 kInf = 0x7f800000, kMInf = 0xff800000;
constexpr u32 kQNaN = 0x7fc00000, kSNaN = 0x7fa00000, kQNaNPayload = 0xffc12345;
constexpr u32 kMax = 0x7f7fffff, kMMax = 0xff7fffff;
constexpr u32 kMinNorm = 0x00800000, kMinSub = 0x00000001, kMaxSub = 0x007fffff;
constexpr u32 kHalfUlp1 = 0x33800000;  // 2^-24: half an ulp of 1.0
constexpr u32 kOnePlusUlp = 0x3f800001, kOneMinusUlp = 0x3f7fffff;

// f64 constants.
constexpr u64 kD0 = 0, kDN0 = 0x8000000000000000ull;
constexpr u64 kDOne = 0x3ff0000000000000ull, kDMOne = 0xbff0000000000000ull;
constexpr u64 kDTwo = 0x4000000000000000ull, kDThree = 0x4008000000000000ull;
constexpr u64 kDInf = 0x7ff0000000000000ull, kDMInf = 0xfff0000000000000ull;
constexpr u64 kDQNaN = 0x7ff8000000000000ull, kDSNaN = 0x7ff4000000000000ull;
constexpr u64 kDQNaNPayload = 0xfff8000000abcdefull;
constexpr u64 kDMax = 0x7fefffffffffffffull, kDMMax = 0xffefffffffffffffull;
constexpr u64 kDMinNorm = 0x0010000000000000ull, kDMinSub = 1, kDMaxSub = 0x000fffffffffffffull;
constexpr u64 kDHalfUlp1 = 0x3ca0000000000000ull;  // 2^-53
constexpr u64 kDOnePlusUlp = 0x3ff0000000000001ull, kDOneMinusUlp = 0x3fefffffffffffffull;

constexpr u64 kSext32Max = 0x000000007fffffffull;
constexpr u64 kSext32Min = 0xffffffff80000000ull;
constexpr u64 kAllOnes = ~u64{0};

// ---------------------------------------------------------------------------------------------
// Addition / subtraction

TEST(FpuAdd, ExactResultsRaiseNothingInEveryMode) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_add_(kOne, kTwo, rm), (Res{kThree, 0}));
    EXPECT_EQ(f32_sub_(kThree, kTwo, rm), (Res{kOne, 0}));
    EXPECT_EQ(f64_add_(kDOne, kDTwo, rm), (Res{kDThree, 0}));
    EXPECT_EQ(f64_sub_(kDThree, kDTwo, rm), (Res{kDOne, 0}));
    // Subnormal + subnormal is exact: no underflow flag without inexactness.
    EXPECT_EQ(f32_add_(kMinSub, kMinSub, rm), (Res{2, 0}));
    EXPECT_EQ(f64_add_(kDMaxSub, kDMinSub, rm), (Res{kDMinNorm, 0}));
    EXPECT_EQ(f32_add_(kMinSub, kP0, rm), (Res{kMinSub, 0}));
    EXPECT_EQ(f32_sub_(kP0, kMinSub, rm), (Res{0x80000001, 0}));
  }
}

TEST(FpuAdd, TiesRoundEvenVersusMaxMagnitude) {
  // 1 + 2^-24 lies exactly halfway between 1.0 (even) and 1.0+ulp.
  EXPECT_EQ(f32_add_(kOne, kHalfUlp1, kRne), (Res{kOne, kNx}));
  EXPECT_EQ(f32_add_(kOne, kHalfUlp1, kRmm), (Res{kOnePlusUlp, kNx}));
  EXPECT_EQ(f32_add_(kOne, kHalfUlp1, kRtz), (Res{kOne, kNx}));
  EXPECT_EQ(f32_add_(kOne, kHalfUlp1, kRdn), (Res{kOne, kNx}));
  EXPECT_EQ(f32_add_(kOne, kHalfUlp1, kRup), (Res{kOnePlusUlp, kNx}));
  // Negative: directed modes swap.
  const u32 neg_half = kHalfUlp1 | 0x80000000;
  EXPECT_EQ(f32_add_(kMOne, neg_half, kRne), (Res{kMOne, kNx}));
  EXPECT_EQ(f32_add_(kMOne, neg_half, kRmm), (Res{0xbf800001, kNx}));
  EXPECT_EQ(f32_add_(kMOne, neg_half, kRtz), (Res{kMOne, kNx}));
  EXPECT_EQ(f32_add_(kMOne, neg_half, kRdn), (Res{0xbf800001, kNx}));
  EXPECT_EQ(f32_add_(kMOne, neg_half, kRup), (Res{kMOne, kNx}));
  // A tie whose lower neighbour is odd: RNE and RMM agree.
  EXPECT_EQ(f32_add_(kOnePlusUlp, kHalfUlp1, kRne), (Res{0x3f800002, kNx}));
  EXPECT_EQ(f32_add_(kOnePlusUlp, kHalfUlp1, kRmm), (Res{0x3f800002, kNx}));
  EXPECT_EQ(f32_add_(kOnePlusUlp, kHalfUlp1, kRtz), (Res{kOnePlusUlp, kNx}));
  // Same in double precision.
  EXPECT_EQ(f64_add_(kDOne, kDHalfUlp1, kRne), (Res{kDOne, kNx}));
  EXPECT_EQ(f64_add_(kDOne, kDHalfUlp1, kRmm), (Res{kDOnePlusUlp, kNx}));
  EXPECT_EQ(f64_add_(kDOne, kDHalfUlp1, kRtz), (Res{kDOne, kNx}));
  EXPECT_EQ(f64_add_(kDOne, kDHalfUlp1, kRdn), (Res{kDOne, kNx}));
  EXPECT_EQ(f64_add_(kDOne, kDHalfUlp1, kRup), (Res{kDOnePlusUlp, kNx}));
  EXPECT_EQ(f64_add_(kDOnePlusUlp, kDHalfUlp1, kRne), (Res{0x3ff0000000000002ull, kNx}));
  // Just above / below the tie: every nearest mode agrees.
  EXPECT_EQ(f64_add_(kDOne, 0x3ca0000000000001ull, kRne), (Res{kDOnePlusUlp, kNx}));
  EXPECT_EQ(f64_add_(kDOne, 0x3c9fffffffffffffull, kRmm), (Res{kDOne, kNx}));
}

TEST(FpuAdd, SubtractionWithBorrowAcrossBinade) {
  // 1 - 2^-24 is exact (0x3f7fffff); 1 - 2^-25 is a tie between 1-2^-24 and 1.0.
  EXPECT_EQ(f32_sub_(kOne, kHalfUlp1, kRne), (Res{kOneMinusUlp, 0}));
  EXPECT_EQ(f32_sub_(kOne, 0x33000000, kRne), (Res{kOne, kNx}));
  EXPECT_EQ(f32_sub_(kOne, 0x33000000, kRmm), (Res{kOne, kNx}));
  EXPECT_EQ(f32_sub_(kOne, 0x33000000, kRtz), (Res{kOneMinusUlp, kNx}));
  EXPECT_EQ(f32_sub_(kOne, 0x33000000, kRdn), (Res{kOneMinusUlp, kNx}));
  EXPECT_EQ(f32_sub_(kOne, 0x33000000, kRup), (Res{kOne, kNx}));
  // A far smaller operand only affects directed rounding.
  EXPECT_EQ(f64_sub_(kDOne, kDMinSub, kRne), (Res{kDOne, kNx}));
  EXPECT_EQ(f64_sub_(kDOne, kDMinSub, kRtz), (Res{kDOneMinusUlp, kNx}));
  EXPECT_EQ(f64_sub_(kDOne, kDMinSub, kRdn), (Res{kDOneMinusUlp, kNx}));
  EXPECT_EQ(f64_sub_(kDOne, kDMinSub, kRup), (Res{kDOne, kNx}));
  EXPECT_EQ(f64_add_(kDOne, kDMinSub, kRup), (Res{kDOnePlusUlp, kNx}));
  // Massive cancellation is exact.
  EXPECT_EQ(f64_sub_(kDOnePlusUlp, kDOne, kRne), (Res{0x3cb0000000000000ull, 0}));
  EXPECT_EQ(f32_sub_(kOnePlusUlp, kOne, kRdn), (Res{0x34000000, 0}));
}

TEST(FpuAdd, ZeroSignRules) {
  for (u32 rm : kAllModes) {
    const u32 z32 = rm == kRdn ? kN0 : kP0;
    const u64 z64 = rm == kRdn ? kDN0 : kD0;
    EXPECT_EQ(f32_add_(kOne, kMOne, rm), (Res{z32, 0}));
    EXPECT_EQ(f32_sub_(kOne, kOne, rm), (Res{z32, 0}));
    EXPECT_EQ(f64_add_(kDOne, kDMOne, rm), (Res{z64, 0}));
    EXPECT_EQ(f64_sub_(kDMax, kDMax, rm), (Res{z64, 0}));
    EXPECT_EQ(f32_add_(kP0, kN0, rm), (Res{z32, 0}));
    EXPECT_EQ(f32_sub_(kP0, kP0, rm), (Res{z32, 0}));
    EXPECT_EQ(f64_add_(kDN0, kD0, rm), (Res{z64, 0}));
    EXPECT_EQ(f32_add_(kP0, kP0, rm), (Res{kP0, 0}));
    EXPECT_EQ(f32_add_(kN0, kN0, rm), (Res{kN0, 0}));
    EXPECT_EQ(f32_sub_(kN0, kP0, rm), (Res{kN0, 0}));
    EXPECT_EQ(f64_add_(kDN0, kDN0, rm), (Res{kDN0, 0}));
    EXPECT_EQ(f64_sub_(kD0, kDN0, rm), (Res{kD0, 0}));
    // x + 0 returns x exactly, keeping its sign.
    EXPECT_EQ(f32_add_(kMOne, kP0, rm), (Res{kMOne, 0}));
    EXPECT_EQ(f64_sub_(kDN0, kDOne, rm), (Res{kDMOne, 0}));
  }
}

TEST(FpuAdd, OverflowPerRoundingMode) {
  // max + max: result depends on mode and sign.
  EXPECT_EQ(f32_add_(kMax, kMax, kRne), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMax, kMax, kRmm), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMax, kMax, kRtz), (Res{kMax, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMax, kMax, kRdn), (Res{kMax, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMax, kMax, kRup), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMMax, kMMax, kRne), (Res{kMInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMMax, kMMax, kRmm), (Res{kMInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMMax, kMMax, kRtz), (Res{kMMax, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMMax, kMMax, kRdn), (Res{kMInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMMax, kMMax, kRup), (Res{kMMax, kOf | kNx}));
  EXPECT_EQ(f64_add_(kDMax, kDMax, kRne), (Res{kDInf, kOf | kNx}));
  EXPECT_EQ(f64_add_(kDMax, kDMax, kRtz), (Res{kDMax, kOf | kNx}));
  EXPECT_EQ(f64_add_(kDMMax, kDMMax, kRup), (Res{kDMMax, kOf | kNx}));
  EXPECT_EQ(f64_add_(kDMMax, kDMMax, kRdn), (Res{kDMInf, kOf | kNx}));
  // max + half an ulp of max: a tie. It overflows only in modes that round it up.
  const u32 half_ulp_max = 0x73000000;  // 2^103
  EXPECT_EQ(f32_add_(kMax, half_ulp_max, kRne), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMax, half_ulp_max, kRmm), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMax, half_ulp_max, kRup), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_add_(kMax, half_ulp_max, kRtz), (Res{kMax, kNx}));
  EXPECT_EQ(f32_add_(kMax, half_ulp_max, kRdn), (Res{kMax, kNx}));
  // Below the tie, nearest modes do not overflow.
  EXPECT_EQ(f32_add_(kMax, 0x72ffffff, kRne), (Res{kMax, kNx}));
  EXPECT_EQ(f32_add_(kMax, 0x72ffffff, kRmm), (Res{kMax, kNx}));
  EXPECT_EQ(f32_add_(kMax, 0x72ffffff, kRup), (Res{kInf, kOf | kNx}));
}

TEST(FpuAdd, InfinitiesAndNaNs) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_add_(kInf, kMInf, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_sub_(kInf, kInf, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_add_(kInf, kInf, rm), (Res{kInf, 0}));
    EXPECT_EQ(f32_add_(kMInf, kMax, rm), (Res{kMInf, 0}));
    EXPECT_EQ(f32_sub_(kOne, kInf, rm), (Res{kMInf, 0}));
    EXPECT_EQ(f64_add_(kDInf, kDMInf, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f64_sub_(kDMInf, kDMInf, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f64_sub_(kDMax, kDMInf, rm), (Res{kDInf, 0}));
    // NaN results are canonical; only signalling NaNs raise NV.
    EXPECT_EQ(f32_add_(kQNaNPayload, kOne, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f32_add_(kOne, kSNaN, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_sub_(kSNaN, kQNaN, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_add_(kQNaN, kInf, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f64_add_(kDQNaNPayload, kDOne, rm), (Res{kDQNaN, 0}));
    EXPECT_EQ(f64_sub_(kDOne, kDSNaN, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f64_add_(kDInf, 0x7ff0000000000001ull, rm), (Res{kDQNaN, kNv}));
  }
}

// ---------------------------------------------------------------------------------------------
// Multiplication

TEST(FpuMul, ExactAndRounded) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_mul_(kThree, 0x40a00000, rm), (Res{0x41700000, 0}));  // 3*5 = 15
    EXPECT_EQ(f64_mul_(kDThree, 0xc014000000000000ull, rm), (Res{0xc02e000000000000ull, 0}));
    EXPECT_EQ(f32_mul_(kMinSub, kOne, rm), (Res{kMinSub, 0}));  // exact subnormal: no UF
    EXPECT_EQ(f64_mul_(kDMaxSub, kDMOne, rm), (Res{0x800fffffffffffffull, 0}));
  }
  // (1+2^-23)^2 = 1 + 2^-22 + 2^-46: above the midpoint, below the next value.
  EXPECT_EQ(f32_mul_(kOnePlusUlp, kOnePlusUlp, kRne), (Res{0x3f800002, kNx}));
  EXPECT_EQ(f32_mul_(kOnePlusUlp, kOnePlusUlp, kRtz), (Res{0x3f800002, kNx}));
  EXPECT_EQ(f32_mul_(kOnePlusUlp, kOnePlusUlp, kRup), (Res{0x3f800003, kNx}));
  EXPECT_EQ(f64_mul_(kDOnePlusUlp, kDOnePlusUlp, kRdn), (Res{0x3ff0000000000002ull, kNx}));
  EXPECT_EQ(f64_mul_(kDOnePlusUlp, kDOnePlusUlp, kRup), (Res{0x3ff0000000000003ull, kNx}));
  // 3 * (1+2^-23) = 3 + 3*2^-23 = tie between 3+2^-22 (odd) and 3+2*2^-22 (even).
  EXPECT_EQ(f32_mul_(kThree, kOnePlusUlp, kRne), (Res{0x40400002, kNx}));
  EXPECT_EQ(f32_mul_(kThree, kOnePlusUlp, kRmm), (Res{0x40400002, kNx}));
  EXPECT_EQ(f32_mul_(kThree, kOnePlusUlp, kRtz), (Res{0x40400001, kNx}));
  // 3 * (1+2^-23) * ... with the tie landing on an even neighbour: 3*(1+3*2^-23)
  // = 3 + 9*2^-23, halfway between 3+4*2^-22 (even) and 3+5*2^-22.
  EXPECT_EQ(f32_mul_(kThree, 0x3f800003, kRne), (Res{0x40400004, kNx}));
  EXPECT_EQ(f32_mul_(kThree, 0x3f800003, kRmm), (Res{0x40400005, kNx}));
}

TEST(FpuMul, OverflowPerRoundingMode) {
  EXPECT_EQ(f32_mul_(kMax, kTwo, kRne), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_mul_(kMax, kTwo, kRtz), (Res{kMax, kOf | kNx}));
  EXPECT_EQ(f32_mul_(kMax, kTwo, kRdn), (Res{kMax, kOf | kNx}));
  EXPECT_EQ(f32_mul_(kMax, kTwo, kRup), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_mul_(kMax, kTwo, kRmm), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f64_mul_(kDMMax, kDTwo, kRne), (Res{kDMInf, kOf | kNx}));
  EXPECT_EQ(f64_mul_(kDMMax, kDTwo, kRtz), (Res{kDMMax, kOf | kNx}));
  EXPECT_EQ(f64_mul_(kDMMax, kDTwo, kRdn), (Res{kDMInf, kOf | kNx}));
  EXPECT_EQ(f64_mul_(kDMMax, kDTwo, kRup), (Res{kDMMax, kOf | kNx}));
  EXPECT_EQ(f64_mul_(kDMMax, kDTwo, kRmm), (Res{kDMInf, kOf | kNx}));
  // Far beyond the range.
  EXPECT_EQ(f64_mul_(kDMax, kDMax, kRtz), (Res{kDMax, kOf | kNx}));
}

TEST(FpuMul, UnderflowAndTininessAfterRounding) {
  // (1-2^-24) * 2^-126 = 2^-126 - 2^-150: exact at 24 bits (so tiny after rounding), and a
  // tie between the largest subnormal and the smallest normal at subnormal precision.
  EXPECT_EQ(f32_mul_(kOneMinusUlp, kMinNorm, kRne), (Res{kMinNorm, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kOneMinusUlp, kMinNorm, kRmm), (Res{kMinNorm, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kOneMinusUlp, kMinNorm, kRup), (Res{kMinNorm, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kOneMinusUlp, kMinNorm, kRtz), (Res{kMaxSub, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kOneMinusUlp, kMinNorm, kRdn), (Res{kMaxSub, kUf | kNx}));
  // (1+2^-23) * (2^-126 - 2^-149) = 2^-126 - 2^-172: rounding to 24 bits with unbounded
  // exponent gives 2^-126, so it is NOT tiny when the mode rounds it up: NX only.
  EXPECT_EQ(f32_mul_(kOnePlusUlp, kMaxSub, kRne), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f32_mul_(kOnePlusUlp, kMaxSub, kRmm), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f32_mul_(kOnePlusUlp, kMaxSub, kRup), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f32_mul_(kOnePlusUlp, kMaxSub, kRtz), (Res{kMaxSub, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kOnePlusUlp, kMaxSub, kRdn), (Res{kMaxSub, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kOnePlusUlp | 0x80000000, kMaxSub, kRdn), (Res{kMinNorm | 0x80000000, kNx}));
  EXPECT_EQ(f32_mul_(kOnePlusUlp | 0x80000000, kMaxSub, kRup),
            (Res{kMaxSub | 0x80000000, kUf | kNx}));
  // Double precision versions of both cases.
  EXPECT_EQ(f64_mul_(kDOneMinusUlp, kDMinNorm, kRne), (Res{kDMinNorm, kUf | kNx}));
  EXPECT_EQ(f64_mul_(kDOneMinusUlp, kDMinNorm, kRtz), (Res{kDMaxSub, kUf | kNx}));
  EXPECT_EQ(f64_mul_(kDOnePlusUlp, kDMaxSub, kRne), (Res{kDMinNorm, kNx}));
  EXPECT_EQ(f64_mul_(kDOnePlusUlp, kDMaxSub, kRmm), (Res{kDMinNorm, kNx}));
  EXPECT_EQ(f64_mul_(kDOnePlusUlp, kDMaxSub, kRup), (Res{kDMinNorm, kNx}));
  EXPECT_EQ(f64_mul_(kDOnePlusUlp, kDMaxSub, kRdn), (Res{kDMaxSub, kUf | kNx}));
  // Half of the smallest subnormal: a tie between 0 and 2^-149.
  const u32 half = 0x3f000000;
  EXPECT_EQ(f32_mul_(kMinSub, half, kRne), (Res{kP0, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kMinSub, half, kRmm), (Res{kMinSub, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kMinSub, half, kRtz), (Res{kP0, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kMinSub, half, kRdn), (Res{kP0, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kMinSub, half, kRup), (Res{kMinSub, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kMinSub | 0x80000000, half, kRdn), (Res{0x80000001, kUf | kNx}));
  EXPECT_EQ(f32_mul_(kMinSub | 0x80000000, half, kRne), (Res{kN0, kUf | kNx}));
  // 3 * 2^-150 = 1.5 subnormal ulps: tie, even is 2.
  EXPECT_EQ(f32_mul_(0x00000003, half, kRne), (Res{2, kUf | kNx}));
  EXPECT_EQ(f32_mul_(0x00000003, half, kRmm), (Res{2, kUf | kNx}));
  EXPECT_EQ(f32_mul_(0x00000003, half, kRtz), (Res{1, kUf | kNx}));
  // Total underflow of a product of tiny values.
  EXPECT_EQ(f64_mul_(kDMinSub, kDMinSub, kRne), (Res{kD0, kUf | kNx}));
  EXPECT_EQ(f64_mul_(kDMinSub, kDMinSub, kRup), (Res{kDMinSub, kUf | kNx}));
  EXPECT_EQ(f64_mul_(kDMinSub | kDN0, kDMinSub, kRdn), (Res{kDMinSub | kDN0, kUf | kNx}));
  EXPECT_EQ(f64_mul_(kDMinSub | kDN0, kDMinSub, kRtz), (Res{kDN0, kUf | kNx}));
}

TEST(FpuMul, SpecialOperands) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_mul_(kInf, kP0, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_mul_(kN0, kMInf, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f64_mul_(kDInf, kD0, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f32_mul_(kMInf, kMinSub, rm), (Res{kMInf, 0}));
    EXPECT_EQ(f64_mul_(kDMInf, kDMOne, rm), (Res{kDInf, 0}));
    EXPECT_EQ(f32_mul_(kN0, kOne, rm), (Res{kN0, 0}));
    EXPECT_EQ(f64_mul_(kDN0, kDMOne, rm), (Res{kD0, 0}));
    EXPECT_EQ(f32_mul_(kQNaN, kP0, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f32_mul_(kSNaN, kP0, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f64_mul_(kDQNaNPayload, kDInf, rm), (Res{kDQNaN, 0}));
    EXPECT_EQ(f64_mul_(kDOne, kDSNaN, rm), (Res{kDQNaN, kNv}));
  }
}

// ---------------------------------------------------------------------------------------------
// Division

TEST(FpuDiv, RoundingModes) {
  // 1/3 = 0x3eaaaaab rounded to nearest (the discarded part is above one half).
  EXPECT_EQ(f32_div_(kOne, kThree, kRne), (Res{0x3eaaaaab, kNx}));
  EXPECT_EQ(f32_div_(kOne, kThree, kRmm), (Res{0x3eaaaaab, kNx}));
  EXPECT_EQ(f32_div_(kOne, kThree, kRtz), (Res{0x3eaaaaaa, kNx}));
  EXPECT_EQ(f32_div_(kOne, kThree, kRdn), (Res{0x3eaaaaaa, kNx}));
  EXPECT_EQ(f32_div_(kOne, kThree, kRup), (Res{0x3eaaaaab, kNx}));
  EXPECT_EQ(f32_div_(kMOne, kThree, kRdn), (Res{0xbeaaaaab, kNx}));
  EXPECT_EQ(f32_div_(kMOne, kThree, kRup), (Res{0xbeaaaaaa, kNx}));
  // 1/3 in double: the discarded part is below one half.
  EXPECT_EQ(f64_div_(kDOne, kDThree, kRne), (Res{0x3fd5555555555555ull, kNx}));
  EXPECT_EQ(f64_div_(kDOne, kDThree, kRmm), (Res{0x3fd5555555555555ull, kNx}));
  EXPECT_EQ(f64_div_(kDOne, kDThree, kRup), (Res{0x3fd5555555555556ull, kNx}));
  EXPECT_EQ(f64_div_(kDOne, kDThree, kRtz), (Res{0x3fd5555555555555ull, kNx}));
  EXPECT_EQ(f64_div_(kDMOne, kDThree, kRdn), (Res{0xbfd5555555555556ull, kNx}));
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_div_(0x41700000, kThree, rm), (Res{0x40a00000, 0}));  // 15/3 = 5
    EXPECT_EQ(f64_div_(kDOne, 0x4010000000000000ull, rm), (Res{0x3fd0000000000000ull, 0}));
    // Exact division into the subnormal range raises nothing.
    EXPECT_EQ(f64_div_(kDMinNorm, kDTwo, rm), (Res{0x0008000000000000ull, 0}));
  }
  EXPECT_EQ(f32_div_(kMax, 0x3f000000, kRne), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_div_(kMax, 0x3f000000, kRtz), (Res{kMax, kOf | kNx}));
  EXPECT_EQ(f64_div_(kDMinSub, kDTwo, kRne), (Res{kD0, kUf | kNx}));
  EXPECT_EQ(f64_div_(kDMinSub, kDTwo, kRmm), (Res{kDMinSub, kUf | kNx}));
  EXPECT_EQ(f64_div_(kDMinSub, 0x3ff8000000000000ull, kRne), (Res{kDMinSub, kUf | kNx}));
}

TEST(FpuDiv, DivideByZeroAndInvalid) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_div_(kOne, kP0, rm), (Res{kInf, kDz}));
    EXPECT_EQ(f32_div_(kOne, kN0, rm), (Res{kMInf, kDz}));
    EXPECT_EQ(f32_div_(kMinSub, kN0, rm), (Res{kMInf, kDz}));
    EXPECT_EQ(f64_div_(kDMOne, kD0, rm), (Res{kDMInf, kDz}));
    EXPECT_EQ(f32_div_(kP0, kP0, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f64_div_(kDN0, kD0, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f32_div_(kInf, kMInf, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f64_div_(kDInf, kDInf, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f32_div_(kInf, kP0, rm), (Res{kInf, 0}));  // no DZ for an infinite dividend
    EXPECT_EQ(f64_div_(kDMInf, kD0, rm), (Res{kDMInf, 0}));
    EXPECT_EQ(f32_div_(kP0, kInf, rm), (Res{kP0, 0}));
    EXPECT_EQ(f32_div_(kOne, kMInf, rm), (Res{kN0, 0}));
    EXPECT_EQ(f64_div_(kD0, kDMOne, rm), (Res{kDN0, 0}));
    EXPECT_EQ(f32_div_(kQNaN, kP0, rm), (Res{kQNaN, 0}));  // NaN beats DZ
    EXPECT_EQ(f32_div_(kP0, kSNaN, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f64_div_(kDQNaNPayload, kD0, rm), (Res{kDQNaN, 0}));
  }
}

// ---------------------------------------------------------------------------------------------
// Square root

TEST(FpuSqrt, Values) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_sqrt_(0x40800000, rm), (Res{kTwo, 0}));                 // sqrt(4) = 2
    EXPECT_EQ(f64_sqrt_(0x4022000000000000ull, rm), (Res{kDThree, 0}));   // sqrt(9) = 3
    EXPECT_EQ(f32_sqrt_(0x00000002, rm), (Res{0x1a800000, 0}));           // sqrt(2^-148) = 2^-74
    EXPECT_EQ(f64_sqrt_(kDMinSub, rm), (Res{0x1e60000000000000ull, 0}));  // 2^-537
  }
  // sqrt(2): f32 rounds down to nearest, f64 rounds up to nearest.
  EXPECT_EQ(f32_sqrt_(kTwo, kRne), (Res{0x3fb504f3, kNx}));
  EXPECT_EQ(f32_sqrt_(kTwo, kRmm), (Res{0x3fb504f3, kNx}));
  EXPECT_EQ(f32_sqrt_(kTwo, kRtz), (Res{0x3fb504f3, kNx}));
  EXPECT_EQ(f32_sqrt_(kTwo, kRdn), (Res{0x3fb504f3, kNx}));
  EXPECT_EQ(f32_sqrt_(kTwo, kRup), (Res{0x3fb504f4, kNx}));
  EXPECT_EQ(f64_sqrt_(kDTwo, kRne), (Res{0x3ff6a09e667f3bcdull, kNx}));
  EXPECT_EQ(f64_sqrt_(kDTwo, kRmm), (Res{0x3ff6a09e667f3bcdull, kNx}));
  EXPECT_EQ(f64_sqrt_(kDTwo, kRtz), (Res{0x3ff6a09e667f3bccull, kNx}));
  EXPECT_EQ(f64_sqrt_(kDTwo, kRdn), (Res{0x3ff6a09e667f3bccull, kNx}));
  EXPECT_EQ(f64_sqrt_(kDTwo, kRup), (Res{0x3ff6a09e667f3bcdull, kNx}));
  // Largest values: sqrt(max) lies just below the midpoint under 2^64 (f32) / 2^512 (f64).
  EXPECT_EQ(f32_sqrt_(kMax, kRtz), (Res{0x5f7fffff, kNx}));
  EXPECT_EQ(f32_sqrt_(kMax, kRne), (Res{0x5f7fffff, kNx}));
  EXPECT_EQ(f32_sqrt_(kMax, kRmm), (Res{0x5f7fffff, kNx}));
  EXPECT_EQ(f32_sqrt_(kMax, kRup), (Res{0x5f800000, kNx}));
  EXPECT_EQ(f64_sqrt_(kDMax, kRne), (Res{0x5fefffffffffffffull, kNx}));
  EXPECT_EQ(f64_sqrt_(kDMax, kRup), (Res{0x5ff0000000000000ull, kNx}));
}

TEST(FpuSqrt, SpecialOperands) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_sqrt_(kMOne, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_sqrt_(0x80000001, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_sqrt_(kMInf, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f64_sqrt_(kDMOne, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f64_sqrt_(kDMInf, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f32_sqrt_(kN0, rm), (Res{kN0, 0}));
    EXPECT_EQ(f64_sqrt_(kDN0, rm), (Res{kDN0, 0}));
    EXPECT_EQ(f32_sqrt_(kP0, rm), (Res{kP0, 0}));
    EXPECT_EQ(f32_sqrt_(kInf, rm), (Res{kInf, 0}));
    EXPECT_EQ(f64_sqrt_(kDInf, rm), (Res{kDInf, 0}));
    EXPECT_EQ(f32_sqrt_(kSNaN, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_sqrt_(kQNaNPayload, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f64_sqrt_(kDSNaN | kDN0, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f64_sqrt_(kDQNaNPayload, rm), (Res{kDQNaN, 0}));
  }
}

// ---------------------------------------------------------------------------------------------
// Fused multiply-add

TEST(FpuFma, SingleRounding) {
  // (1+2^-23)(1-2^-23) - 1 = -2^-46 exactly; a separate multiply would round to 1 and give 0.
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f32_fmadd_(kOnePlusUlp, 0x3f7ffffe, kMOne, rm), (Res{0xa8800000, 0}));
    EXPECT_EQ(f32_fmsub_(kOnePlusUlp, 0x3f7ffffe, kOne, rm), (Res{0xa8800000, 0}));
    EXPECT_EQ(f32_fnmsub_(kOnePlusUlp, 0x3f7ffffe, kOne, rm), (Res{0x28800000, 0}));
    EXPECT_EQ(f32_fnmadd_(kOnePlusUlp, 0x3f7ffffe, kMOne, rm), (Res{0x28800000, 0}));
    // (1+2^-52)(1-2^-52) - 1 = -2^-104.
    EXPECT_EQ(f64_fmadd_(kDOnePlusUlp, 0x3feffffffffffffeull, kDMOne, rm),
              (Res{0xb970000000000000ull, 0}));
    // The four variants on 2*3 and 1.
    EXPECT_EQ(f32_fmadd_(kTwo, kThree, kOne, rm), (Res{0x40e00000, 0}));   // 7
    EXPECT_EQ(f32_fmsub_(kTwo, kThree, kOne, rm), (Res{0x40a00000, 0}));   // 5
    EXPECT_EQ(f32_fnmsub_(kTwo, kThree, kOne, rm), (Res{0xc0a00000, 0}));  // -5
    EXPECT_EQ(f32_fnmadd_(kTwo, kThree, kOne, rm), (Res{0xc0e00000, 0}));  // -7
    EXPECT_EQ(f64_fmadd_(kDTwo, kDThree, kDOne, rm), (Res{0x401c000000000000ull, 0}));
    EXPECT_EQ(f64_fmsub_(kDTwo, kDThree, kDOne, rm), (Res{0x4014000000000000ull, 0}));
    EXPECT_EQ(f64_fnmsub_(kDTwo, kDThree, kDOne, rm), (Res{0xc014000000000000ull, 0}));
    EXPECT_EQ(f64_fnmadd_(kDTwo, kDThree, kDOne, rm), (Res{0xc01c000000000000ull, 0}));
  }
  // Ties: 1*1 + 2^-24.
  EXPECT_EQ(f32_fmadd_(kOne, kOne, kHalfUlp1, kRne), (Res{kOne, kNx}));
  EXPECT_EQ(f32_fmadd_(kOne, kOne, kHalfUlp1, kRmm), (Res{kOnePlusUlp, kNx}));
  EXPECT_EQ(f32_fmadd_(kOne, kOne, kHalfUlp1, kRup), (Res{kOnePlusUlp, kNx}));
  EXPECT_EQ(f32_fnmadd_(kOne, kOne, kHalfUlp1, kRmm), (Res{0xbf800001, kNx}));
  EXPECT_EQ(f32_fnmadd_(kOne, kOne, kHalfUlp1, kRdn), (Res{0xbf800001, kNx}));
  EXPECT_EQ(f32_fnmadd_(kOne, kOne, kHalfUlp1, kRup), (Res{kMOne, kNx}));
  EXPECT_EQ(f64_fmadd_(kDOne, kDOne, kDHalfUlp1, kRne), (Res{kDOne, kNx}));
  EXPECT_EQ(f64_fmadd_(kDOne, kDOne, kDHalfUlp1, kRmm), (Res{kDOnePlusUlp, kNx}));
  // A product tie broken by a tiny addend, which only a fused operation can see:
  // (1+2^-23)(1+2^-23) = 1 + 2^-22 + 2^-46; minus 2^-46 gives exactly 1+2^-22.
  EXPECT_EQ(f32_fmadd_(kOnePlusUlp, kOnePlusUlp, 0xa8800000, kRup), (Res{0x3f800002, 0}));
  // Tiny products added to a large value: only the directed modes notice.
  EXPECT_EQ(f64_fmadd_(kDMinSub, kDMinSub, kDOne, kRne), (Res{kDOne, kNx}));
  EXPECT_EQ(f64_fmadd_(kDMinSub, kDMinSub, kDOne, kRup), (Res{kDOnePlusUlp, kNx}));
  EXPECT_EQ(f64_fmsub_(kDMinSub, kDMinSub, kDMOne, kRtz), (Res{kDOne, kNx}));
  EXPECT_EQ(f64_fmsub_(kDMinSub, kDMinSub, kDOne, kRtz), (Res{kDOneMinusUlp | kDN0, kNx}));
}

TEST(FpuFma, OverflowAndUnderflow) {
  EXPECT_EQ(f32_fmadd_(kMax, kTwo, kMMax, kRne), (Res{kMax, 0}));  // 2max - max, exact
  EXPECT_EQ(f32_fmadd_(kMax, kTwo, kP0, kRne), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f32_fmadd_(kMax, kTwo, kP0, kRtz), (Res{kMax, kOf | kNx}));
  EXPECT_EQ(f64_fnmadd_(kDMax, kDTwo, kD0, kRup), (Res{kDMMax, kOf | kNx}));
  EXPECT_EQ(f64_fnmadd_(kDMax, kDTwo, kD0, kRdn), (Res{kDMInf, kOf | kNx}));
  // 2^-126 * (1-2^-24) + 0: the tiny tie from the multiply tests.
  EXPECT_EQ(f32_fmadd_(kOneMinusUlp, kMinNorm, kP0, kRne), (Res{kMinNorm, kUf | kNx}));
  EXPECT_EQ(f32_fmadd_(kOnePlusUlp, kMaxSub, kN0, kRne), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f32_fmadd_(kOnePlusUlp, kMaxSub, kN0, kRtz), (Res{kMaxSub, kUf | kNx}));
  // min_normal - min_sub * 0.5: between max_sub and min_normal, exact at 24 bits.
  EXPECT_EQ(f32_fmadd_(kMinSub, 0xbf000000, kMinNorm, kRne), (Res{kMinNorm, kUf | kNx}));
  EXPECT_EQ(f32_fmadd_(kMinSub, 0xbf000000, kMinNorm, kRtz), (Res{kMaxSub, kUf | kNx}));
  // Exact subnormal result: no flags.
  EXPECT_EQ(f64_fmadd_(kDMinSub, kDThree, kDMinSub, kRne), (Res{4, 0}));
}

TEST(FpuFma, ZeroSigns) {
  for (u32 rm : kAllModes) {
    const u32 z32 = rm == kRdn ? kN0 : kP0;
    const u64 z64 = rm == kRdn ? kDN0 : kD0;
    // Exact cancellation of a non-zero product.
    EXPECT_EQ(f32_fmadd_(kTwo, kThree, 0xc0c00000, rm), (Res{z32, 0}));
    EXPECT_EQ(f32_fmsub_(kOne, kOne, kOne, rm), (Res{z32, 0}));
    EXPECT_EQ(f32_fnmsub_(kOne, kOne, kOne, rm), (Res{z32, 0}));
    EXPECT_EQ(f64_fnmadd_(kDOne, kDOne, kDMOne, rm), (Res{z64, 0}));
    // Zero product plus zero.
    EXPECT_EQ(f32_fmadd_(kP0, kOne, kN0, rm), (Res{z32, 0}));
    EXPECT_EQ(f32_fmadd_(kN0, kOne, kN0, rm), (Res{kN0, 0}));
    EXPECT_EQ(f32_fmadd_(kP0, kOne, kP0, rm), (Res{kP0, 0}));
    EXPECT_EQ(f32_fnmadd_(kP0, kOne, kP0, rm), (Res{kN0, 0}));    // -(+0) - (+0)
    EXPECT_EQ(f32_fnmsub_(kP0, kOne, kP0, rm), (Res{z32, 0}));    // -(+0) + (+0)
    EXPECT_EQ(f32_fmsub_(kP0, kOne, kP0, rm), (Res{z32, 0}));     // +0 - +0
    EXPECT_EQ(f64_fmsub_(kDN0, kDOne, kD0, rm), (Res{kDN0, 0}));  // -0 - +0
    EXPECT_EQ(f64_fmadd_(kDN0, kDN0, kDN0, rm), (Res{z64, 0}));
    // Zero product plus a non-zero value returns it exactly (negated for the minus forms).
    EXPECT_EQ(f32_fmadd_(kP0, kInf - 1, kMinSub, rm), (Res{kMinSub, 0}));
    EXPECT_EQ(f32_fmsub_(kP0, kOne, kMinSub, rm), (Res{0x80000001, 0}));
    EXPECT_EQ(f64_fnmadd_(kD0, kDOne, kDMax, rm), (Res{kDMMax, 0}));
    // Non-zero product plus zero is the rounded product.
    EXPECT_EQ(f64_fmadd_(kDThree, kDOne, kDN0, rm), (Res{kDThree, 0}));
    EXPECT_EQ(f64_fnmsub_(kDThree, kDOne, kD0, rm), (Res{kDThree | kDN0, 0}));
  }
}

TEST(FpuFma, InvalidAndNaN) {
  for (u32 rm : kAllModes) {
    // inf * 0 is invalid whatever c is, even a quiet NaN.
    EXPECT_EQ(f32_fmadd_(kInf, kP0, kOne, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_fmadd_(kP0, kMInf, kQNaN, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_fnmadd_(kInf, kN0, kQNaNPayload, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f64_fmadd_(kDInf, kD0, kDQNaN, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f64_fmsub_(kD0, kDInf, kDInf, rm), (Res{kDQNaN, kNv}));
    // inf - inf.
    EXPECT_EQ(f32_fmadd_(kInf, kOne, kMInf, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_fmsub_(kInf, kOne, kInf, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f64_fnmsub_(kDInf, kDOne, kDInf, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f32_fmadd_(kInf, kOne, kInf, rm), (Res{kInf, 0}));
    EXPECT_EQ(f32_fnmadd_(kInf, kOne, kInf, rm), (Res{kMInf, 0}));
    EXPECT_EQ(f64_fmadd_(kDOne, kDMax, kDMInf, rm), (Res{kDMInf, 0}));
    // NaN operands: canonical result, NV only for signalling NaNs.
    EXPECT_EQ(f32_fmadd_(kQNaN, kOne, kOne, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f32_fmadd_(kOne, kOne, kQNaNPayload, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f32_fmadd_(kInf, kOne, kQNaN, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f32_fmadd_(kOne, kOne, kSNaN, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_fmadd_(kSNaN, kP0, kInf, rm), (Res{kQNaN, kNv}));
    EXPECT_EQ(f32_fmadd_(kQNaN, kInf, kP0, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f64_fmadd_(kDQNaN, kDInf, kDSNaN, rm), (Res{kDQNaN, kNv}));
    EXPECT_EQ(f64_fmadd_(kDOne, kDQNaNPayload, kDInf, rm), (Res{kDQNaN, 0}));
  }
}

// ---------------------------------------------------------------------------------------------
// Min / max

TEST(FpuMinMax, Values) {
  EXPECT_EQ(f32_min_(kOne, kTwo), (Res{kOne, 0}));
  EXPECT_EQ(f32_max_(kOne, kTwo), (Res{kTwo, 0}));
  EXPECT_EQ(f32_min_(kMOne, 0xc0000000), (Res{0xc0000000, 0}));
  EXPECT_EQ(f32_max_(kMOne, 0xc0000000), (Res{kMOne, 0}));
  EXPECT_EQ(f32_min_(kMInf, kMMax), (Res{kMInf, 0}));
  EXPECT_EQ(f32_max_(kInf, kMax), (Res{kInf, 0}));
  EXPECT_EQ(f64_min_(kDMOne, kDOne), (Res{kDMOne, 0}));
  EXPECT_EQ(f64_max_(kDMinSub, kDMinSub | kDN0), (Res{kDMinSub, 0}));
  // -0 is less than +0 in either order.
  EXPECT_EQ(f32_min_(kP0, kN0), (Res{kN0, 0}));
  EXPECT_EQ(f32_min_(kN0, kP0), (Res{kN0, 0}));
  EXPECT_EQ(f32_max_(kP0, kN0), (Res{kP0, 0}));
  EXPECT_EQ(f32_max_(kN0, kP0), (Res{kP0, 0}));
  EXPECT_EQ(f64_min_(kD0, kDN0), (Res{kDN0, 0}));
  EXPECT_EQ(f64_max_(kDN0, kD0), (Res{kD0, 0}));
}

TEST(FpuMinMax, NaNs) {
  // One NaN: the other operand; sNaN raises NV.
  EXPECT_EQ(f32_min_(kQNaN, kOne), (Res{kOne, 0}));
  EXPECT_EQ(f32_max_(kMOne, kQNaNPayload), (Res{kMOne, 0}));
  EXPECT_EQ(f32_min_(kSNaN, kOne), (Res{kOne, kNv}));
  EXPECT_EQ(f32_max_(kN0, kSNaN), (Res{kN0, kNv}));
  EXPECT_EQ(f64_min_(kDQNaN, kDMInf), (Res{kDMInf, 0}));
  EXPECT_EQ(f64_max_(kDSNaN, kDOne), (Res{kDOne, kNv}));
  // Two NaNs: the canonical NaN.
  EXPECT_EQ(f32_min_(kQNaNPayload, kQNaNPayload), (Res{kQNaN, 0}));
  EXPECT_EQ(f32_max_(kSNaN, kQNaN), (Res{kQNaN, kNv}));
  EXPECT_EQ(f64_min_(kDQNaNPayload, kDQNaN), (Res{kDQNaN, 0}));
  EXPECT_EQ(f64_max_(kDQNaN, kDSNaN), (Res{kDQNaN, kNv}));
}

// ---------------------------------------------------------------------------------------------
// Comparisons

TEST(FpuCompare, Ordered) {
  EXPECT_EQ(f32_eq_(kOne, kOne), (Res{1, 0}));
  EXPECT_EQ(f32_eq_(kOne, kTwo), (Res{0, 0}));
  EXPECT_EQ(f32_eq_(kP0, kN0), (Res{1, 0}));
  EXPECT_EQ(f32_lt_(kN0, kP0), (Res{0, 0}));
  EXPECT_EQ(f32_le_(kN0, kP0), (Res{1, 0}));
  EXPECT_EQ(f32_le_(kP0, kN0), (Res{1, 0}));
  EXPECT_EQ(f32_lt_(kMOne, kOne), (Res{1, 0}));
  EXPECT_EQ(f32_lt_(kOne, kMOne), (Res{0, 0}));
  EXPECT_EQ(f32_lt_(0xc0000000, kMOne), (Res{1, 0}));
  EXPECT_EQ(f32_lt_(kMOne, 0xc0000000), (Res{0, 0}));
  EXPECT_EQ(f32_le_(kMOne, kMOne), (Res{1, 0}));
  EXPECT_EQ(f32_lt_(kMOne, kMOne), (Res{0, 0}));
  EXPECT_EQ(f32_le_(kInf, kInf), (Res{1, 0}));
  EXPECT_EQ(f32_lt_(kMInf, kMMax), (Res{1, 0}));
  EXPECT_EQ(f32_lt_(kMinSub, kMinNorm), (Res{1, 0}));
  EXPECT_EQ(f64_eq_(kDN0, kD0), (Res{1, 0}));
  EXPECT_EQ(f64_lt_(kDN0, kD0), (Res{0, 0}));
  EXPECT_EQ(f64_le_(kD0, kDN0), (Res{1, 0}));
  EXPECT_EQ(f64_lt_(kDMOne, kDMinSub), (Res{1, 0}));
  EXPECT_EQ(f64_le_(kDMax, kDMOne), (Res{0, 0}));
  EXPECT_EQ(f64_lt_(kDMInf, kDInf), (Res{1, 0}));
}

TEST(FpuCompare, NaNsQuietVersusSignalling) {
  // feq is a quiet comparison: NV only for sNaN.
  EXPECT_EQ(f32_eq_(kQNaN, kQNaN), (Res{0, 0}));
  EXPECT_EQ(f32_eq_(kOne, kQNaNPayload), (Res{0, 0}));
  EXPECT_EQ(f32_eq_(kSNaN, kOne), (Res{0, kNv}));
  EXPECT_EQ(f32_eq_(kQNaN, kSNaN), (Res{0, kNv}));
  EXPECT_EQ(f64_eq_(kDQNaN, kDQNaN), (Res{0, 0}));
  EXPECT_EQ(f64_eq_(kDOne, kDSNaN), (Res{0, kNv}));
  // flt / fle are signalling: NV for any NaN.
  EXPECT_EQ(f32_lt_(kQNaN, kOne), (Res{0, kNv}));
  EXPECT_EQ(f32_le_(kOne, kQNaN), (Res{0, kNv}));
  EXPECT_EQ(f32_lt_(kSNaN, kOne), (Res{0, kNv}));
  EXPECT_EQ(f32_le_(kQNaN, kQNaN), (Res{0, kNv}));
  EXPECT_EQ(f64_lt_(kDQNaN, kDOne), (Res{0, kNv}));
  EXPECT_EQ(f64_le_(kDOne, kDQNaNPayload), (Res{0, kNv}));
  EXPECT_EQ(f64_le_(kDSNaN, kDSNaN), (Res{0, kNv}));
}

// ---------------------------------------------------------------------------------------------
// Classify

TEST(FpuClassify, AllClasses) {
  EXPECT_EQ(f32_classify(kMInf), 1u << 0);
  EXPECT_EQ(f32_classify(kMOne), 1u << 1);
  EXPECT_EQ(f32_classify(0x80000001), 1u << 2);
  EXPECT_EQ(f32_classify(kN0), 1u << 3);
  EXPECT_EQ(f32_classify(kP0), 1u << 4);
  EXPECT_EQ(f32_classify(kMaxSub), 1u << 5);
  EXPECT_EQ(f32_classify(kMinNorm), 1u << 6);
  EXPECT_EQ(f32_classify(kInf), 1u << 7);
  EXPECT_EQ(f32_classify(kSNaN), 1u << 8);
  EXPECT_EQ(f32_classify(0xff800001), 1u << 8);
  EXPECT_EQ(f32_classify(kQNaN), 1u << 9);
  EXPECT_EQ(f32_classify(kQNaNPayload), 1u << 9);
  EXPECT_EQ(f64_classify(kDMInf), 1u << 0);
  EXPECT_EQ(f64_classify(kDMMax), 1u << 1);
  EXPECT_EQ(f64_classify(kDMaxSub | kDN0), 1u << 2);
  EXPECT_EQ(f64_classify(kDN0), 1u << 3);
  EXPECT_EQ(f64_classify(kD0), 1u << 4);
  EXPECT_EQ(f64_classify(kDMinSub), 1u << 5);
  EXPECT_EQ(f64_classify(kDOne), 1u << 6);
  EXPECT_EQ(f64_classify(kDInf), 1u << 7);
  EXPECT_EQ(f64_classify(kDSNaN), 1u << 8);
  EXPECT_EQ(f64_classify(kDQNaNPayload), 1u << 9);
}

// ---------------------------------------------------------------------------------------------
// Float -> integer conversions

TEST(FpuToInt, RoundingModes) {
  const u32 p25 = 0x40200000, m25 = 0xc0200000, p35 = 0x40600000, half = 0x3f000000;
  // +2.5 / -2.5 / 3.5 / 0.5 in every mode.
  const struct {
    u32 rm;
    i64 p25, m25, p35, half, mhalf, quarter;
  } rows[] = {
      {kRne, 2, -2, 4, 0, 0, 0}, {kRtz, 2, -2, 3, 0, 0, 0},  {kRdn, 2, -3, 3, 0, -1, 0},
      {kRup, 3, -2, 4, 1, 0, 1}, {kRmm, 3, -3, 4, 1, -1, 0},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(r.rm);
    EXPECT_EQ(f32_to_i32_(p25, r.rm), (Res{static_cast<u64>(r.p25), kNx}));
    EXPECT_EQ(f32_to_i32_(m25, r.rm), (Res{static_cast<u64>(r.m25), kNx}));
    EXPECT_EQ(f32_to_i64_(p35, r.rm), (Res{static_cast<u64>(r.p35), kNx}));
    EXPECT_EQ(f32_to_i64_(half, r.rm), (Res{static_cast<u64>(r.half), kNx}));
    EXPECT_EQ(f32_to_i32_(half | 0x80000000, r.rm), (Res{static_cast<u64>(r.mhalf), kNx}));
    EXPECT_EQ(f32_to_i32_(0x3e800000, r.rm), (Res{static_cast<u64>(r.quarter), kNx}));
    EXPECT_EQ(f64_to_i32_(0x4004000000000000ull, r.rm), (Res{static_cast<u64>(r.p25), kNx}));
    EXPECT_EQ(f64_to_i64_(0xc004000000000000ull, r.rm), (Res{static_cast<u64>(r.m25), kNx}));
    EXPECT_EQ(f64_to_u64_(0x400c000000000000ull, r.rm), (Res{static_cast<u64>(r.p35), kNx}));
    EXPECT_EQ(f64_to_u32_(0x3fe0000000000000ull, r.rm), (Res{static_cast<u64>(r.half), kNx}));
    EXPECT_EQ(f64_to_i64_(0xbfe0000000000000ull, r.rm), (Res{static_cast<u64>(r.mhalf), kNx}));
    EXPECT_EQ(f64_to_u64_(0x3fd0000000000000ull, r.rm), (Res{static_cast<u64>(r.quarter), kNx}));
    // Smallest subnormal: only RUP moves it away from zero.
    EXPECT_EQ(f64_to_i64_(kDMinSub, r.rm), (Res{r.rm == kRup ? 1u : 0u, kNx}));
    EXPECT_EQ(f32_to_i32_(0x80000001, r.rm), (Res{r.rm == kRdn ? kAllOnes : 0, kNx}));
    // Exact values and zeros.
    EXPECT_EQ(f32_to_i32_(0xc2f60000, r.rm), (Res{static_cast<u64>(-123), 0}));
    EXPECT_EQ(f64_to_u64_(0x4058c00000000000ull, r.rm), (Res{99, 0}));
    EXPECT_EQ(f32_to_u32_(kN0, r.rm), (Res{0, 0}));
    EXPECT_EQ(f64_to_i64_(kDN0, r.rm), (Res{0, 0}));
  }
}

TEST(FpuToInt, SaturationAndNaN) {
  for (u32 rm : kAllModes) {
    // NaN converts to the largest positive value, whatever its sign.
    EXPECT_EQ(f32_to_i32_(kQNaN, rm), (Res{kSext32Max, kNv}));
    EXPECT_EQ(f32_to_i32_(kQNaNPayload, rm), (Res{kSext32Max, kNv}));
    EXPECT_EQ(f32_to_u32_(kSNaN, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f32_to_i64_(kQNaNPayload, rm), (Res{0x7fffffffffffffffull, kNv}));
    EXPECT_EQ(f32_to_u64_(kQNaNPayload, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f64_to_i32_(kDQNaNPayload, rm), (Res{kSext32Max, kNv}));
    EXPECT_EQ(f64_to_u32_(kDQNaN, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f64_to_i64_(kDSNaN, rm), (Res{0x7fffffffffffffffull, kNv}));
    EXPECT_EQ(f64_to_u64_(kDQNaNPayload, rm), (Res{kAllOnes, kNv}));
    // Infinities.
    EXPECT_EQ(f32_to_i32_(kInf, rm), (Res{kSext32Max, kNv}));
    EXPECT_EQ(f32_to_i32_(kMInf, rm), (Res{kSext32Min, kNv}));
    EXPECT_EQ(f32_to_u32_(kMInf, rm), (Res{0, kNv}));
    EXPECT_EQ(f64_to_u64_(kDInf, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f64_to_i64_(kDMInf, rm), (Res{0x8000000000000000ull, kNv}));
    EXPECT_EQ(f64_to_u64_(kDMInf, rm), (Res{0, kNv}));
    // Range limits: 2^31, -2^31, 2^32, 2^63, -2^63, 2^64.
    EXPECT_EQ(f32_to_i32_(0x4f000000, rm), (Res{kSext32Max, kNv}));
    EXPECT_EQ(f32_to_i32_(0xcf000000, rm), (Res{kSext32Min, 0}));
    EXPECT_EQ(f32_to_i32_(0xcf000001, rm), (Res{kSext32Min, kNv}));
    EXPECT_EQ(f32_to_u32_(0x4f000000, rm), (Res{0xffffffff80000000ull, 0}));  // sign-extended
    EXPECT_EQ(f32_to_u32_(0x4f7fffff, rm), (Res{0xffffffffffffff00ull, 0}));
    EXPECT_EQ(f32_to_u32_(0x4f800000, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f32_to_u32_(0x4f32d05e, rm), (Res{0xffffffffb2d05e00ull, 0}));  // 3e9
    EXPECT_EQ(f32_to_i64_(0x5f000000, rm), (Res{0x7fffffffffffffffull, kNv}));
    EXPECT_EQ(f32_to_i64_(0xdf000000, rm), (Res{0x8000000000000000ull, 0}));
    EXPECT_EQ(f32_to_u64_(0x5f000000, rm), (Res{0x8000000000000000ull, 0}));
    EXPECT_EQ(f32_to_u64_(0x5f7fffff, rm), (Res{0xffffff0000000000ull, 0}));
    EXPECT_EQ(f32_to_u64_(0x5f800000, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f32_to_u64_(kMax, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f64_to_i32_(0x41dfffffffc00000ull, rm), (Res{kSext32Max, 0}));  // 2^31-1
    EXPECT_EQ(f64_to_i32_(0x41e0000000000000ull, rm), (Res{kSext32Max, kNv}));
    EXPECT_EQ(f64_to_i32_(0xc1e0000000000000ull, rm), (Res{kSext32Min, 0}));
    EXPECT_EQ(f64_to_u32_(0x41efffffffe00000ull, rm), (Res{kAllOnes, 0}));  // 2^32-1
    EXPECT_EQ(f64_to_u32_(0x41f0000000000000ull, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f64_to_i64_(0x43dfffffffffffffull, rm), (Res{0x7ffffffffffffc00ull, 0}));
    EXPECT_EQ(f64_to_i64_(0x43e0000000000000ull, rm), (Res{0x7fffffffffffffffull, kNv}));
    EXPECT_EQ(f64_to_i64_(0xc3e0000000000000ull, rm), (Res{0x8000000000000000ull, 0}));
    EXPECT_EQ(f64_to_i64_(0xc3e0000000000001ull, rm), (Res{0x8000000000000000ull, kNv}));
    EXPECT_EQ(f64_to_u64_(0x43efffffffffffffull, rm), (Res{0xfffffffffffff800ull, 0}));
    EXPECT_EQ(f64_to_u64_(0x43f0000000000000ull, rm), (Res{kAllOnes, kNv}));
    EXPECT_EQ(f64_to_i32_(kDMax, rm), (Res{kSext32Max, kNv}));
    EXPECT_EQ(f64_to_i32_(kDMMax, rm), (Res{kSext32Min, kNv}));
    // Negative values to unsigned: invalid unless they round to 0.
    EXPECT_EQ(f32_to_u32_(kMOne, rm), (Res{0, kNv}));
    EXPECT_EQ(f64_to_u64_(kDMOne, rm), (Res{0, kNv}));
    EXPECT_EQ(f64_to_u64_(kDMMax, rm), (Res{0, kNv}));
  }
  // 2^31 - 0.5 is a tie between 2^31-1 (odd) and 2^31: RNE and RMM overflow.
  const u64 tie = 0x41dfffffffe00000ull;
  EXPECT_EQ(f64_to_i32_(tie, kRne), (Res{kSext32Max, kNv}));
  EXPECT_EQ(f64_to_i32_(tie, kRmm), (Res{kSext32Max, kNv}));
  EXPECT_EQ(f64_to_i32_(tie, kRup), (Res{kSext32Max, kNv}));
  EXPECT_EQ(f64_to_i32_(tie, kRtz), (Res{kSext32Max, kNx}));
  EXPECT_EQ(f64_to_i32_(tie, kRdn), (Res{kSext32Max, kNx}));
  // -2^31 - 0.5: RNE rounds to the even -2^31, RMM and RDN overflow.
  const u64 ntie = 0xc1e0000000100000ull;
  EXPECT_EQ(f64_to_i32_(ntie, kRne), (Res{kSext32Min, kNx}));
  EXPECT_EQ(f64_to_i32_(ntie, kRtz), (Res{kSext32Min, kNx}));
  EXPECT_EQ(f64_to_i32_(ntie, kRup), (Res{kSext32Min, kNx}));
  EXPECT_EQ(f64_to_i32_(ntie, kRmm), (Res{kSext32Min, kNv}));
  EXPECT_EQ(f64_to_i32_(ntie, kRdn), (Res{kSext32Min, kNv}));
  // 2^32 - 0.5 to unsigned.
  EXPECT_EQ(f64_to_u32_(0x41effffffff00000ull, kRne), (Res{kAllOnes, kNv}));
  EXPECT_EQ(f64_to_u32_(0x41effffffff00000ull, kRtz), (Res{kAllOnes, kNx}));
  // Small negative values to unsigned: 0 with NX if they round to 0, otherwise NV.
  const u32 m03 = 0xbe99999a;  // -0.3
  EXPECT_EQ(f32_to_u32_(m03, kRne), (Res{0, kNx}));
  EXPECT_EQ(f32_to_u32_(m03, kRtz), (Res{0, kNx}));
  EXPECT_EQ(f32_to_u32_(m03, kRup), (Res{0, kNx}));
  EXPECT_EQ(f32_to_u32_(m03, kRmm), (Res{0, kNx}));
  EXPECT_EQ(f32_to_u32_(m03, kRdn), (Res{0, kNv}));
  EXPECT_EQ(f32_to_u64_(0xbf000000, kRne), (Res{0, kNx}));             // -0.5 -> -0 (even)
  EXPECT_EQ(f32_to_u64_(0xbf000000, kRmm), (Res{0, kNv}));             // -0.5 -> -1
  EXPECT_EQ(f64_to_u32_(0xbfe8000000000000ull, kRne), (Res{0, kNv}));  // -0.75 -> -1
  EXPECT_EQ(f64_to_u32_(0xbfe8000000000000ull, kRtz), (Res{0, kNx}));
  EXPECT_EQ(f64_to_u64_(0x8000000000000001ull, kRdn), (Res{0, kNv}));
  EXPECT_EQ(f64_to_u64_(0x8000000000000001ull, kRne), (Res{0, kNx}));
}

// ---------------------------------------------------------------------------------------------
// Integer -> float conversions

TEST(FpuFromInt, Values) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(i32_to_f32_(0, rm), (Res{kP0, 0}));
    EXPECT_EQ(i64_to_f64_(0, rm), (Res{kD0, 0}));
    EXPECT_EQ(u64_to_f32_(0, rm), (Res{kP0, 0}));
    EXPECT_EQ(i32_to_f32_(-1, rm), (Res{kMOne, 0}));
    EXPECT_EQ(u32_to_f32_(3, rm), (Res{kThree, 0}));
    EXPECT_EQ(i32_to_f32_(INT32_MIN, rm), (Res{0xcf000000, 0}));
    EXPECT_EQ(i64_to_f32_(INT64_MIN, rm), (Res{0xdf000000, 0}));
    EXPECT_EQ(i32_to_f64_(INT32_MIN, rm), (Res{0xc1e0000000000000ull, 0}));
    EXPECT_EQ(i32_to_f64_(INT32_MAX, rm), (Res{0x41dfffffffc00000ull, 0}));
    EXPECT_EQ(u32_to_f64_(0xffffffffu, rm), (Res{0x41efffffffe00000ull, 0}));
    EXPECT_EQ(i64_to_f64_(INT64_MIN, rm), (Res{0xc3e0000000000000ull, 0}));
    EXPECT_EQ(u64_to_f64_(u64{1} << 63, rm), (Res{0x43e0000000000000ull, 0}));
    EXPECT_EQ(i64_to_f32_(16777216, rm), (Res{0x4b800000, 0}));
  }
  // 2^24 + 1: a tie between 2^24 (even) and 2^24 + 2.
  EXPECT_EQ(i32_to_f32_(16777217, kRne), (Res{0x4b800000, kNx}));
  EXPECT_EQ(i32_to_f32_(16777217, kRmm), (Res{0x4b800001, kNx}));
  EXPECT_EQ(i32_to_f32_(16777217, kRtz), (Res{0x4b800000, kNx}));
  EXPECT_EQ(i32_to_f32_(16777217, kRdn), (Res{0x4b800000, kNx}));
  EXPECT_EQ(i32_to_f32_(16777217, kRup), (Res{0x4b800001, kNx}));
  EXPECT_EQ(i32_to_f32_(-16777217, kRne), (Res{0xcb800000, kNx}));
  EXPECT_EQ(i32_to_f32_(-16777217, kRmm), (Res{0xcb800001, kNx}));
  EXPECT_EQ(i32_to_f32_(-16777217, kRdn), (Res{0xcb800001, kNx}));
  EXPECT_EQ(i32_to_f32_(-16777217, kRup), (Res{0xcb800000, kNx}));
  // 2^24 + 3: a tie between 2^24 + 2 (odd significand) and 2^24 + 4.
  EXPECT_EQ(u32_to_f32_(16777219, kRne), (Res{0x4b800002, kNx}));
  EXPECT_EQ(u32_to_f32_(16777219, kRmm), (Res{0x4b800002, kNx}));
  EXPECT_EQ(u32_to_f32_(16777219, kRtz), (Res{0x4b800001, kNx}));
  // Largest unsigned values.
  EXPECT_EQ(u32_to_f32_(0xffffffffu, kRne), (Res{0x4f800000, kNx}));
  EXPECT_EQ(u32_to_f32_(0xffffffffu, kRtz), (Res{0x4f7fffff, kNx}));
  EXPECT_EQ(u64_to_f64_(kAllOnes, kRne), (Res{0x43f0000000000000ull, kNx}));
  EXPECT_EQ(u64_to_f64_(kAllOnes, kRdn), (Res{0x43efffffffffffffull, kNx}));
  EXPECT_EQ(u64_to_f32_(kAllOnes, kRmm), (Res{0x5f800000, kNx}));
  EXPECT_EQ(u64_to_f32_(kAllOnes, kRtz), (Res{0x5f7fffff, kNx}));
  EXPECT_EQ(i64_to_f64_(INT64_MAX, kRtz), (Res{0x43dfffffffffffffull, kNx}));
  EXPECT_EQ(i64_to_f64_(INT64_MAX, kRne), (Res{0x43e0000000000000ull, kNx}));
  // 2^53 + 1.
  const i64 t = (i64{1} << 53) + 1;
  EXPECT_EQ(i64_to_f64_(t, kRne), (Res{0x4340000000000000ull, kNx}));
  EXPECT_EQ(i64_to_f64_(t, kRmm), (Res{0x4340000000000001ull, kNx}));
  EXPECT_EQ(i64_to_f64_(-t, kRdn), (Res{0xc340000000000001ull, kNx}));
  EXPECT_EQ(i64_to_f64_(-t, kRup), (Res{0xc340000000000000ull, kNx}));
  EXPECT_EQ(u64_to_f64_(static_cast<u64>(t), kRtz), (Res{0x4340000000000000ull, kNx}));
}

// ---------------------------------------------------------------------------------------------
// Float <-> float conversions

TEST(FpuFloatConvert, WidenIsExact) {
  EXPECT_EQ(f32_to_f64_(kOne), (Res{kDOne, 0}));
  EXPECT_EQ(f32_to_f64_(kN0), (Res{kDN0, 0}));
  EXPECT_EQ(f32_to_f64_(kMInf), (Res{kDMInf, 0}));
  EXPECT_EQ(f32_to_f64_(kMinSub), (Res{0x36a0000000000000ull, 0}));     // 2^-149
  EXPECT_EQ(f32_to_f64_(0x80400000), (Res{0xb800000000000000ull, 0}));  // -2^-127
  EXPECT_EQ(f32_to_f64_(kMax), (Res{0x47efffffe0000000ull, 0}));
  EXPECT_EQ(f32_to_f64_(kQNaNPayload), (Res{kDQNaN, 0}));
  EXPECT_EQ(f32_to_f64_(kSNaN), (Res{kDQNaN, kNv}));
}

TEST(FpuFloatConvert, Narrow) {
  for (u32 rm : kAllModes) {
    EXPECT_EQ(f64_to_f32_(kDOne, rm), (Res{kOne, 0}));
    EXPECT_EQ(f64_to_f32_(kDN0, rm), (Res{kN0, 0}));
    EXPECT_EQ(f64_to_f32_(kDInf, rm), (Res{kInf, 0}));
    EXPECT_EQ(f64_to_f32_(0x47efffffe0000000ull, rm), (Res{kMax, 0}));
    EXPECT_EQ(f64_to_f32_(0x36a0000000000000ull, rm), (Res{kMinSub, 0}));
    EXPECT_EQ(f64_to_f32_(kDQNaNPayload, rm), (Res{kQNaN, 0}));
    EXPECT_EQ(f64_to_f32_(kDSNaN, rm), (Res{kQNaN, kNv}));
  }
  // 0.1.
  EXPECT_EQ(f64_to_f32_(0x3fb999999999999aull, kRne), (Res{0x3dcccccd, kNx}));
  EXPECT_EQ(f64_to_f32_(0x3fb999999999999aull, kRtz), (Res{0x3dcccccc, kNx}));
  EXPECT_EQ(f64_to_f32_(0xbfb999999999999aull, kRup), (Res{0xbdcccccc, kNx}));
  // 1 + 2^-24: a tie.
  EXPECT_EQ(f64_to_f32_(0x3ff0000010000000ull, kRne), (Res{kOne, kNx}));
  EXPECT_EQ(f64_to_f32_(0x3ff0000010000000ull, kRmm), (Res{kOnePlusUlp, kNx}));
  // Overflow per mode: 2^128.
  const u64 big = 0x47f0000000000000ull;
  EXPECT_EQ(f64_to_f32_(big, kRne), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f64_to_f32_(big, kRmm), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f64_to_f32_(big, kRtz), (Res{kMax, kOf | kNx}));
  EXPECT_EQ(f64_to_f32_(big, kRdn), (Res{kMax, kOf | kNx}));
  EXPECT_EQ(f64_to_f32_(big, kRup), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f64_to_f32_(big | kDN0, kRdn), (Res{kMInf, kOf | kNx}));
  EXPECT_EQ(f64_to_f32_(big | kDN0, kRup), (Res{kMMax, kOf | kNx}));
  EXPECT_EQ(f64_to_f32_(kDMax, kRtz), (Res{kMax, kOf | kNx}));
  // max + half ulp (2^128 - 2^103): a tie that overflows only when rounded up.
  EXPECT_EQ(f64_to_f32_(0x47effffff0000000ull, kRne), (Res{kInf, kOf | kNx}));
  EXPECT_EQ(f64_to_f32_(0x47effffff0000000ull, kRtz), (Res{kMax, kNx}));
  // Tininess after rounding at the normal/subnormal boundary.
  // 2^-126 (1 - 2^-24): exact at 24 bits, hence tiny; a tie at subnormal precision.
  const u64 tiny_tie = 0x380fffffe0000000ull;
  EXPECT_EQ(f64_to_f32_(tiny_tie, kRne), (Res{kMinNorm, kUf | kNx}));
  EXPECT_EQ(f64_to_f32_(tiny_tie, kRmm), (Res{kMinNorm, kUf | kNx}));
  EXPECT_EQ(f64_to_f32_(tiny_tie, kRtz), (Res{kMaxSub, kUf | kNx}));
  // 2^-126 (1 - 2^-26): rounds to 2^-126 at 24 bits, so not tiny when rounded up.
  const u64 not_tiny = 0x380ffffff8000000ull;
  EXPECT_EQ(f64_to_f32_(not_tiny, kRne), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f64_to_f32_(not_tiny, kRmm), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f64_to_f32_(not_tiny, kRup), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f64_to_f32_(not_tiny, kRtz), (Res{kMaxSub, kUf | kNx}));
  EXPECT_EQ(f64_to_f32_(not_tiny, kRdn), (Res{kMaxSub, kUf | kNx}));
  EXPECT_EQ(f64_to_f32_(not_tiny | kDN0, kRdn), (Res{kMinNorm | 0x80000000, kNx}));
  // 2^-126 (1 - 2^-25) is a tie at 24 bits that rounds (even) up to 2^-126: not tiny
  // for RNE / RMM / RUP.
  const u64 tie24 = 0x380ffffff0000000ull;
  EXPECT_EQ(f64_to_f32_(tie24, kRne), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f64_to_f32_(tie24, kRmm), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f64_to_f32_(tie24, kRup), (Res{kMinNorm, kNx}));
  EXPECT_EQ(f64_to_f32_(tie24, kRtz), (Res{kMaxSub, kUf | kNx}));
  // Far below the range.
  EXPECT_EQ(f64_to_f32_(kDMinSub, kRne), (Res{kP0, kUf | kNx}));
  EXPECT_EQ(f64_to_f32_(kDMinSub, kRup), (Res{kMinSub, kUf | kNx}));
  EXPECT_EQ(f64_to_f32_(kDMinSub | kDN0, kRdn), (Res{0x80000001, kUf | kNx}));
  EXPECT_EQ(f64_to_f32_(kDMinSub | kDN0, kRmm), (Res{kN0, kUf | kNx}));
  // 2^-150 exactly: tie between 0 and the smallest subnormal.
  EXPECT_EQ(f64_to_f32_(0x3690000000000000ull, kRne), (Res{kP0, kUf | kNx}));
  EXPECT_EQ(f64_to_f32_(0x3690000000000000ull, kRmm), (Res{kMinSub, kUf | kNx}));
}

// ---------------------------------------------------------------------------------------------
// Randomized cross-check against the host's SSE / FMA / AVX-512 hardware.

#if defined(__x86_64__)

// Random operands mixing special values, boundary exponents and plain random bits.
class OperandGen {
 public:
  explicit OperandGen(u64 seed) : rng_(seed) {}
  u64 Next() { return rng_(); }

  u32 F32() {
    static constexpr u32 kSpecial[] = {
        0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7fa00000, 0xffc00001,
        0x7f800001, 0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff,
        0x3f800000, 0xbf800000, 0x3f000000, 0x4f000000, 0xcf000000, 0x4f800000, 0x5f000000,
        0xdf000000, 0x5f800000, 0x3effffff, 0x3fc00000, 0x40200000, 0x00800001, 0x3f7fffff};
    const u32 bits = static_cast<u32>(rng_());
    switch (rng_() % 8) {
      case 0:
        return kSpecial[rng_() % std::size(kSpecial)];
      case 1:  // subnormal or tiny normal
        return (bits & 0x807fffff) | (static_cast<u32>(rng_() % 3) << 23);
      case 2:  // huge
        return (bits & 0x807fffff) | (static_cast<u32>(230 + rng_() % 25) << 23);
      case 3:  // moderate, around the integer conversion range
        return (bits & 0x807fffff) | (static_cast<u32>(120 + rng_() % 70) << 23);
      case 4: {  // few significant bits: exact results and ties are likely
        const u32 frac = (rng_() % 2) ? (bits & 0x00780000) : (bits & 0x007fc000) | 0x7fff;
        return (bits & 0x80000000) | (static_cast<u32>(rng_() % 255) << 23) | (frac & 0x7fffff);
      }
      default:
        return bits;
    }
  }

  u64 F64() {
    static constexpr u64 kSpecial[] = {0,
                                       1ull << 63,
                                       0x7ff0000000000000ull,
                                       0xfff0000000000000ull,
                                       0x7ff8000000000000ull,
                                       0x7ff4000000000000ull,
                                       0xfff8000000000001ull,
                                       0x7ff0000000000001ull,
                                       1,
                                       0x8000000000000001ull,
                                       0x000fffffffffffffull,
                                       0x0010000000000000ull,
                                       0x7fefffffffffffffull,
                                       0xffefffffffffffffull,
                                       0x3ff0000000000000ull,
                                       0xbff0000000000000ull,
                                       0x3fe0000000000000ull,
                                       0x41e0000000000000ull,
                                       0xc1e0000000000000ull,
                                       0x41f0000000000000ull,
                                       0x43e0000000000000ull,
                                       0xc3e0000000000000ull,
                                       0x43f0000000000000ull,
                                       0x380fffffffffffffull,
                                       0x3810000000000000ull,
                                       0x47efffffe0000000ull,
                                       0x36a0000000000000ull};
    constexpr u64 kFracSign = 0x800fffffffffffffull;
    const u64 bits = rng_();
    switch (rng_() % 10) {
      case 0:
        return kSpecial[rng_() % std::size(kSpecial)];
      case 1:
        return (bits & kFracSign) | ((rng_() % 3) << 52);
      case 2:
        return (bits & kFracSign) | ((1990 + rng_() % 57) << 52);
      case 3:
        return (bits & kFracSign) | ((1013 + rng_() % 140) << 52);
      case 4:  // around the f32 subnormal range (for narrowing)
        return (bits & kFracSign) | ((1023 - 160 + rng_() % 40) << 52);
      case 5:  // around the f32 overflow threshold
        return (bits & kFracSign) | ((1023 + 124 + rng_() % 8) << 52);
      case 6: {
        const u64 frac = (rng_() % 2) ? (bits & 0x000f000000000000ull)
                                      : (bits & 0x000ffffff0000000ull) | 0xfffffff;
        return (bits & (1ull << 63)) | ((rng_() % 2047) << 52) | frac;
      }
      default:
        return bits;
    }
  }

  u64 Int() {
    switch (rng_() % 4) {
      case 0:
        return rng_() >> (rng_() % 64);
      case 1:
        return 0 - (rng_() >> (rng_() % 64));
      case 2:
        return (rng_() | 1) << (rng_() % 64);
      default:
        return rng_();
    }
  }

 private:
  std::mt19937_64 rng_;
};

// MXCSR rounding control for a RISC-V mode (RMM has none).
u32 Mxcsr(u32 rm) {
  u32 rc = 0;
  switch (rm) {
    case kRne:
      rc = 0;
      break;
    case kRdn:
      rc = 1;
      break;
    case kRup:
      rc = 2;
      break;
    case kRtz:
      rc = 3;
      break;
    default:
      ADD_FAILURE() << "no x86 rounding mode for " << rm;
      break;
  }
  return 0x1f80u | (rc << 13);  // all exceptions masked, flags clear, no FTZ / DAZ
}

u32 HostFlags(u32 csr) {
  u32 f = 0;
  if (csr & 0x01) f |= kNv;
  if (csr & 0x04) f |= kDz;
  if (csr & 0x08) f |= kOf;
  if (csr & 0x10) f |= kUf;
  if (csr & 0x20) f |= kNx;
  return f;  // the denormal-operand flag (0x02) has no RISC-V counterpart
}

// Runs `op` under the given rounding mode with clear flags; returns the flags it raised.
// The empty asm statements pin the operation between the MXCSR write and read.
template <class V, class Op>
u32 HostRun(u32 rm, V& a, V& b, V& c, V& r, Op op) {
  _mm_setcsr(Mxcsr(rm));
  asm volatile("" : "+x"(a), "+x"(b), "+x"(c));
  r = op(a, b, c);
  asm volatile("" : "+x"(r));
  const u32 csr = _mm_getcsr();
  _mm_setcsr(0x1f80);
  return HostFlags(csr);
}

__m128 F32Vec(u32 v) {
  return _mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(v)));
}
__m128d F64Vec(u64 v) {
  return _mm_castsi128_pd(_mm_cvtsi64_si128(static_cast<long long>(v)));
}
u32 F32Bits(__m128 v) {
  return static_cast<u32>(_mm_cvtsi128_si32(_mm_castps_si128(v)));
}
u64 F64Bits(__m128d v) {
  return static_cast<u64>(_mm_cvtsi128_si64(_mm_castpd_si128(v)));
}

u32 Canon32(u32 v) {
  return (v & 0x7fffffff) > 0x7f800000 ? 0x7fc00000 : v;
}
u64 Canon64(u64 v) {
  return (v & 0x7fffffffffffffffull) > 0x7ff0000000000000ull ? 0x7ff8000000000000ull : v;
}
bool IsNaN32(u32 v) {
  return (v & 0x7fffffff) > 0x7f800000;
}
bool IsNaN64(u64 v) {
  return (v & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
}

constexpr u32 kHostModes[] = {kRne, kRtz, kRdn, kRup};

__attribute__((target("fma"))) __m128 HostFma32(int kind, __m128 a, __m128 b, __m128 c) {
  switch (kind) {
    case 0:
      return _mm_fmadd_ss(a, b, c);
    case 1:
      return _mm_fmsub_ss(a, b, c);
    case 2:
      return _mm_fnmadd_ss(a, b, c);  // -(a*b)+c: RISC-V fnmsub
    default:
      return _mm_fnmsub_ss(a, b, c);  // -(a*b)-c: RISC-V fnmadd
  }
}
__attribute__((target("fma"))) __m128d HostFma64(int kind, __m128d a, __m128d b, __m128d c) {
  switch (kind) {
    case 0:
      return _mm_fmadd_sd(a, b, c);
    case 1:
      return _mm_fmsub_sd(a, b, c);
    case 2:
      return _mm_fnmadd_sd(a, b, c);
    default:
      return _mm_fnmsub_sd(a, b, c);
  }
}

struct Mismatch {
  int count = 0;
  void Report(const char* what, u32 rm, u64 a, u64 b, u64 c, u64 mine, u32 mine_f, u64 host,
              u32 host_f) {
    if (++count <= 20) {
      ADD_FAILURE() << what << " rm=" << rm << std::hex << " a=0x" << a << " b=0x" << b << " c=0x"
                    << c << ": soft 0x" << mine << " flags 0x" << mine_f << ", host 0x" << host
                    << " flags 0x" << host_f;
    }
  }
};

constexpr int kIterations = 30000;  // per operation and rounding mode

TEST(FpuHostCrossCheck, F32Arithmetic) {
  OperandGen gen(1);
  Mismatch bad;
  const bool have_fma = __builtin_cpu_supports("fma");
  long checked = 0;
  for (u32 rm : kHostModes) {
    for (int i = 0; i < kIterations; ++i) {
      const u32 a = gen.F32();
      u32 b = gen.F32();
      u32 c = gen.F32();
      if (gen.Next() % 4 == 0) b = a ^ ((gen.Next() & 1) << 31);  // cancellation
      for (int op = 0; op < 9; ++op) {
        if (op >= 5 && !have_fma) continue;
        __m128 va = F32Vec(a), vb = F32Vec(b), vc = F32Vec(c), vr;
        u32 mine_f = 0;
        u32 mine = 0;
        u32 host_f = 0;
        const char* name = "";
        switch (op) {
          case 0:
            name = "add";
            mine = f32_add(a, b, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128 x, __m128 y, __m128) { return _mm_add_ss(x, y); });
            break;
          case 1:
            name = "sub";
            mine = f32_sub(a, b, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128 x, __m128 y, __m128) { return _mm_sub_ss(x, y); });
            break;
          case 2:
            name = "mul";
            mine = f32_mul(a, b, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128 x, __m128 y, __m128) { return _mm_mul_ss(x, y); });
            break;
          case 3:
            name = "div";
            mine = f32_div(a, b, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128 x, __m128 y, __m128) { return _mm_div_ss(x, y); });
            break;
          case 4:
            name = "sqrt";
            mine = f32_sqrt(a, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128 x, __m128, __m128) { return _mm_sqrt_ss(x); });
            break;
          default: {
            const int kind = op - 5;
            // x86 need not raise invalid for inf*0 + qNaN; RISC-V does (covered above).
            const bool inf_zero = ((a & 0x7fffffff) == 0x7f800000 && (b & 0x7fffffff) == 0) ||
                                  ((b & 0x7fffffff) == 0x7f800000 && (a & 0x7fffffff) == 0);
            if (inf_zero && IsNaN32(c)) continue;
            static const char* const kNames[] = {"fmadd", "fmsub", "fnmsub", "fnmadd"};
            name = kNames[kind];
            switch (kind) {
              case 0:
                mine = f32_fmadd(a, b, c, rm, mine_f);
                break;
              case 1:
                mine = f32_fmsub(a, b, c, rm, mine_f);
                break;
              case 2:
                mine = f32_fnmsub(a, b, c, rm, mine_f);
                break;
              default:
                mine = f32_fnmadd(a, b, c, rm, mine_f);
                break;
            }
            host_f = HostRun(rm, va, vb, vc, vr, [kind](__m128 x, __m128 y, __m128 z) {
              return HostFma32(kind, x, y, z);
            });
            break;
          }
        }
        const u32 host = Canon32(F32Bits(vr));
        ++checked;
        if (mine != host || mine_f != host_f)
          bad.Report(name, rm, a, b, c, mine, mine_f, host, host_f);
      }
    }
  }
  EXPECT_EQ(bad.count, 0);
  EXPECT_GT(checked, 4L * kIterations * 5);
}

TEST(FpuHostCrossCheck, F64Arithmetic) {
  OperandGen gen(2);
  Mismatch bad;
  const bool have_fma = __builtin_cpu_supports("fma");
  long checked = 0;
  for (u32 rm : kHostModes) {
    for (int i = 0; i < kIterations; ++i) {
      const u64 a = gen.F64();
      u64 b = gen.F64();
      u64 c = gen.F64();
      if (gen.Next() % 4 == 0) b = a ^ ((gen.Next() & 1) << 63);
      if (gen.Next() % 4 == 0) {
        // c close to -(a*b): exercises cancellation in the fused forms.
        u32 ignored = 0;
        c = f64_mul(a, b, gen.Next() % 5, ignored) ^ (1ull << 63) ^ (gen.Next() % 4);
      }
      for (int op = 0; op < 9; ++op) {
        if (op >= 5 && !have_fma) continue;
        __m128d va = F64Vec(a), vb = F64Vec(b), vc = F64Vec(c), vr;
        u32 mine_f = 0;
        u64 mine = 0;
        u32 host_f = 0;
        const char* name = "";
        switch (op) {
          case 0:
            name = "add";
            mine = f64_add(a, b, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128d x, __m128d y, __m128d) { return _mm_add_sd(x, y); });
            break;
          case 1:
            name = "sub";
            mine = f64_sub(a, b, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128d x, __m128d y, __m128d) { return _mm_sub_sd(x, y); });
            break;
          case 2:
            name = "mul";
            mine = f64_mul(a, b, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128d x, __m128d y, __m128d) { return _mm_mul_sd(x, y); });
            break;
          case 3:
            name = "div";
            mine = f64_div(a, b, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128d x, __m128d y, __m128d) { return _mm_div_sd(x, y); });
            break;
          case 4:
            name = "sqrt";
            mine = f64_sqrt(a, rm, mine_f);
            host_f = HostRun(rm, va, vb, vc, vr,
                             [](__m128d x, __m128d, __m128d) { return _mm_sqrt_sd(x, x); });
            break;
          default: {
            const int kind = op - 5;
            const u64 mag = 0x7fffffffffffffffull;
            const bool inf_zero = ((a & mag) == 0x7ff0000000000000ull && (b & mag) == 0) ||
                                  ((b & mag) == 0x7ff0000000000000ull && (a & mag) == 0);
            if (inf_zero && IsNaN64(c)) continue;
            static const char* const kNames[] = {"fmadd", "fmsub", "fnmsub", "fnmadd"};
            name = kNames[kind];
            switch (kind) {
              case 0:
                mine = f64_fmadd(a, b, c, rm, mine_f);
                break;
              case 1:
                mine = f64_fmsub(a, b, c, rm, mine_f);
                break;
              case 2:
                mine = f64_fnmsub(a, b, c, rm, mine_f);
                break;
              default:
                mine = f64_fnmadd(a, b, c, rm, mine_f);
                break;
            }
            host_f = HostRun(rm, va, vb, vc, vr, [kind](__m128d x, __m128d y, __m128d z) {
              return HostFma64(kind, x, y, z);
            });
            break;
          }
        }
        const u64 host = Canon64(F64Bits(vr));
        ++checked;
        if (mine != host || mine_f != host_f)
          bad.Report(name, rm, a, b, c, mine, mine_f, host, host_f);
      }
    }
  }
  EXPECT_EQ(bad.count, 0);
  EXPECT_GT(checked, 4L * kIterations * 5);
}

__attribute__((target("avx512f"))) u64 HostCvtU32(int src64, __m128 s, __m128d d) {
  return src64 ? _mm_cvtsd_u32(d) : _mm_cvtss_u32(s);
}
__attribute__((target("avx512f"))) u64 HostCvtU64(int src64, __m128 s, __m128d d) {
  return src64 ? _mm_cvtsd_u64(d) : _mm_cvtss_u64(s);
}
__attribute__((target("avx512f"))) __m128 HostU64ToF32(u64 v) {
  return _mm_cvtu64_ss(_mm_setzero_ps(), v);
}
__attribute__((target("avx512f"))) __m128d HostU64ToF64(u64 v) {
  return _mm_cvtu64_sd(_mm_setzero_pd(), v);
}
__attribute__((target("avx512f"))) __m128 HostU32ToF32(u32 v) {
  return _mm_cvtu32_ss(_mm_setzero_ps(), v);
}

// Float -> integer. x86 returns an "integer indefinite" value on overflow / NaN, so results
// are compared only where the host raises no invalid; there both must raise NV or neither.
TEST(FpuHostCrossCheck, FloatToInt) {
  OperandGen gen(3);
  Mismatch bad;
  const bool have_avx512 = __builtin_cpu_supports("avx512f");
  long compared = 0;
  for (u32 rm : kHostModes) {
    for (int i = 0; i < kIterations; ++i) {
      const u32 s = gen.F32();
      const u64 d = gen.F64();
      for (int op = 0; op < 8; ++op) {
        const bool src64 = op >= 4;
        const int kind = op % 4;  // i32, i64, u32, u64
        if (kind >= 2 && !have_avx512) continue;
        __m128 vs = F32Vec(s);
        __m128d vd = F64Vec(d);
        u64 host = 0;
        _mm_setcsr(Mxcsr(rm));
        asm volatile("" : "+x"(vs), "+x"(vd));
        switch (kind) {
          case 0:
            host =
                static_cast<u64>(static_cast<i64>(src64 ? _mm_cvtsd_si32(vd) : _mm_cvtss_si32(vs)));
            break;
          case 1:
            host = static_cast<u64>(src64 ? _mm_cvtsd_si64(vd) : _mm_cvtss_si64(vs));
            break;
          case 2:
            host = HostCvtU32(src64, vs, vd);
            host = static_cast<u64>(static_cast<i64>(static_cast<i32>(static_cast<u32>(host))));
            break;
          default:
            host = HostCvtU64(src64, vs, vd);
            break;
        }
        asm volatile("" : "+r"(host));
        const u32 host_f = HostFlags(_mm_getcsr());
        _mm_setcsr(0x1f80);
        u32 mine_f = 0;
        u64 mine = 0;
        switch (op) {
          case 0:
            mine = f32_to_i32(s, rm, mine_f);
            break;
          case 1:
            mine = f32_to_i64(s, rm, mine_f);
            break;
          case 2:
            mine = f32_to_u32(s, rm, mine_f);
            break;
          case 3:
            mine = f32_to_u64(s, rm, mine_f);
            break;
          case 4:
            mine = f64_to_i32(d, rm, mine_f);
            break;
          case 5:
            mine = f64_to_i64(d, rm, mine_f);
            break;
          case 6:
            mine = f64_to_u32(d, rm, mine_f);
            break;
          default:
            mine = f64_to_u64(d, rm, mine_f);
            break;
        }
        static const char* const kNames[] = {"f32_to_i32", "f32_to_i64", "f32_to_u32",
                                             "f32_to_u64", "f64_to_i32", "f64_to_i64",
                                             "f64_to_u32", "f64_to_u64"};
        const u64 src = src64 ? d : s;
        if (host_f & kNv) {
          if (mine_f != kNv) bad.Report(kNames[op], rm, src, 0, 0, mine, mine_f, host, host_f);
          continue;
        }
        ++compared;
        if (mine != host || mine_f != host_f) {
          bad.Report(kNames[op], rm, src, 0, 0, mine, mine_f, host, host_f);
        }
      }
    }
  }
  EXPECT_EQ(bad.count, 0);
  EXPECT_GT(compared, kIterations);
}

TEST(FpuHostCrossCheck, IntToFloatAndFloatToFloat) {
  OperandGen gen(4);
  Mismatch bad;
  const bool have_avx512 = __builtin_cpu_supports("avx512f");
  for (u32 rm : kHostModes) {
    for (int i = 0; i < kIterations; ++i) {
      const u64 v = gen.Int();
      const u32 s = gen.F32();
      const u64 d = gen.F64();
      for (int op = 0; op < 9; ++op) {
        if ((op == 3 || op == 4 || op == 7) && !have_avx512) continue;
        __m128 fs = F32Vec(s);
        __m128d fd = F64Vec(d);
        u64 vv = v;
        u64 host = 0;
        u64 mine = 0;
        u32 mine_f = 0;
        _mm_setcsr(Mxcsr(rm));
        asm volatile("" : "+x"(fs), "+x"(fd), "+r"(vv));
        switch (op) {
          case 0:
            host = F32Bits(_mm_cvtsi32_ss(_mm_setzero_ps(), static_cast<i32>(vv)));
            break;
          case 1:
            host = F32Bits(_mm_cvtsi64_ss(_mm_setzero_ps(), static_cast<i64>(vv)));
            break;
          case 2:
            host = F64Bits(_mm_cvtsi64_sd(_mm_setzero_pd(), static_cast<i64>(vv)));
            break;
          case 3:
            host = F32Bits(HostU64ToF32(vv));
            break;
          case 4:
            host = F64Bits(HostU64ToF64(vv));
            break;
          case 5:
            host = Canon32(F32Bits(_mm_cvtsd_ss(_mm_setzero_ps(), fd)));
            break;
          case 6:
            host = Canon64(F64Bits(_mm_cvtss_sd(_mm_setzero_pd(), fs)));
            break;
          case 7:
            host = F32Bits(HostU32ToF32(static_cast<u32>(vv)));
            break;
          default:
            host = F64Bits(_mm_cvtsi32_sd(_mm_setzero_pd(), static_cast<i32>(vv)));
            break;
        }
        asm volatile("" : "+r"(host));
        const u32 host_f = HostFlags(_mm_getcsr());
        _mm_setcsr(0x1f80);
        u64 src = v;
        switch (op) {
          case 0:
            mine = i32_to_f32(static_cast<i32>(v), rm, mine_f);
            break;
          case 1:
            mine = i64_to_f32(static_cast<i64>(v), rm, mine_f);
            break;
          case 2:
            mine = i64_to_f64(static_cast<i64>(v), rm, mine_f);
            break;
          case 3:
            mine = u64_to_f32(v, rm, mine_f);
            break;
          case 4:
            mine = u64_to_f64(v, rm, mine_f);
            break;
          case 5:
            mine = f64_to_f32(d, rm, mine_f);
            src = d;
            break;
          case 6:
            mine = f32_to_f64(s, mine_f);
            src = s;
            break;
          case 7:
            mine = u32_to_f32(static_cast<u32>(v), rm, mine_f);
            break;
          default:
            mine = i32_to_f64(static_cast<i32>(v), rm, mine_f);
            break;
        }
        static const char* const kNames[] = {"i32_to_f32", "i64_to_f32", "i64_to_f64",
                                             "u64_to_f32", "u64_to_f64", "f64_to_f32",
                                             "f32_to_f64", "u32_to_f32", "i32_to_f64"};
        if (mine != host || mine_f != host_f) {
          bad.Report(kNames[op], rm, src, 0, 0, mine, mine_f, host, host_f);
        }
      }
    }
  }
  EXPECT_EQ(bad.count, 0);
}

#endif  // __x86_64__

}  // namespace
}  // namespace dvmm::cpu::fpu
