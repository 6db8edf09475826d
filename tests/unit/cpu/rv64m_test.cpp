// M extension: multiplication (all high-part forms), division and remainder including the
// defined results for division by zero and signed overflow, and the W forms.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <vector>

#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

using namespace enc;

const std::vector<u64> kValues = {
    0, 1, 2, 3, 7, 0xffffffffffffffff, 0xfffffffffffffffe, 0xfffffffffffffff9,
    0x7fffffffffffffff, 0x8000000000000000, 0x8000000000000001, 0x7fffffff, 0x80000000,
    0xffffffff, 0xffffffff80000000, 0x100000000, 0x123456789abcdef0, 0xfedcba9876543210,
    0x00000000fffffffe, 0x0000000080000001,
};

u64 sext32(u64 v) { return static_cast<u64>(static_cast<i64>(static_cast<i32>(v))); }

u64 ref_div(u64 a, u64 b) {
  const i64 x = static_cast<i64>(a), y = static_cast<i64>(b);
  if (y == 0) return ~u64{0};
  if (x == std::numeric_limits<i64>::min() && y == -1) return a;
  return static_cast<u64>(x / y);
}
u64 ref_rem(u64 a, u64 b) {
  const i64 x = static_cast<i64>(a), y = static_cast<i64>(b);
  if (y == 0) return a;
  if (x == std::numeric_limits<i64>::min() && y == -1) return 0;
  return static_cast<u64>(x % y);
}
u64 ref_divw(u64 a, u64 b) {
  const i32 x = static_cast<i32>(a), y = static_cast<i32>(b);
  if (y == 0) return ~u64{0};
  if (x == std::numeric_limits<i32>::min() && y == -1) return sext32(a);
  return static_cast<u64>(static_cast<i64>(x / y));
}
u64 ref_remw(u64 a, u64 b) {
  const i32 x = static_cast<i32>(a), y = static_cast<i32>(b);
  if (y == 0) return sext32(a);
  if (x == std::numeric_limits<i32>::min() && y == -1) return 0;
  return static_cast<u64>(static_cast<i64>(x % y));
}

class Rv64mTest : public HartTest {};

TEST_F(Rv64mTest, AllOperations) {
  struct Op {
    const char* name;
    u32 (*enc)(u32, u32, u32);
    std::function<u64(u64, u64)> ref;
  };
  const std::vector<Op> ops = {
      {"mul", mul, [](u64 a, u64 b) { return a * b; }},
      {"mulh", mulh,
       [](u64 a, u64 b) {
         return static_cast<u64>((static_cast<i128>(static_cast<i64>(a)) * static_cast<i64>(b)) >> 64);
       }},
      {"mulhsu", mulhsu,
       [](u64 a, u64 b) {
         return static_cast<u64>((static_cast<i128>(static_cast<i64>(a)) * static_cast<i128>(b)) >> 64);
       }},
      {"mulhu", mulhu, [](u64 a, u64 b) { return static_cast<u64>((static_cast<u128>(a) * b) >> 64); }},
      {"div", div, ref_div},
      {"divu", divu, [](u64 a, u64 b) { return b == 0 ? ~u64{0} : a / b; }},
      {"rem", rem, ref_rem},
      {"remu", remu, [](u64 a, u64 b) { return b == 0 ? a : a % b; }},
      {"mulw", mulw, [](u64 a, u64 b) { return sext32(a * b); }},
      {"divw", divw, ref_divw},
      {"divuw", divuw,
       [](u64 a, u64 b) {
         const u32 x = static_cast<u32>(a), y = static_cast<u32>(b);
         return y == 0 ? ~u64{0} : sext32(x / y);
       }},
      {"remw", remw, ref_remw},
      {"remuw", remuw,
       [](u64 a, u64 b) {
         const u32 x = static_cast<u32>(a), y = static_cast<u32>(b);
         return y == 0 ? sext32(x) : sext32(x % y);
       }},
  };
  for (const Op& op : ops) {
    load(Code{op.enc(a0, a1, a2), ecall()});
    for (u64 a : kValues) {
      for (u64 b : kValues) {
        hart_.set_pc(kBase);
        hart_.set_x(a1, a);
        hart_.set_x(a2, b);
        run_to_ecall();
        ASSERT_EQ(x(a0), op.ref(a, b)) << op.name << " 0x" << std::hex << a << ", 0x" << b;
      }
    }
  }
}

TEST_F(Rv64mTest, SpecCornerCases) {
  // Table 7.1 of the unprivileged spec, spelled out.
  const u64 min64 = u64{1} << 63;
  exec(Code{div(a0, a1, zero), divu(a2, a1, zero), rem(a3, a1, zero), remu(a4, a1, zero),
            div(a5, a6, a7), rem(t0, a6, a7)},
       {{a1, 42}, {a6, min64}, {a7, ~u64{0}}});
  EXPECT_EQ(x(a0), ~u64{0});
  EXPECT_EQ(x(a2), ~u64{0});
  EXPECT_EQ(x(a3), 42u);
  EXPECT_EQ(x(a4), 42u);
  EXPECT_EQ(x(a5), min64);
  EXPECT_EQ(x(t0), 0u);
  exec(Code{divw(a0, a1, zero), divuw(a2, a1, zero), remw(a3, a1, zero), remuw(a4, a1, zero),
            divw(a5, a6, a7), remw(t0, a6, a7)},
       {{a1, 0x00000001'80000000}, {a6, 0x80000000}, {a7, 0xffffffff}});
  EXPECT_EQ(x(a0), ~u64{0});
  EXPECT_EQ(x(a2), ~u64{0});
  EXPECT_EQ(x(a3), 0xffffffff80000000u);
  EXPECT_EQ(x(a4), 0xffffffff80000000u);
  EXPECT_EQ(x(a5), 0xffffffff80000000u);
  EXPECT_EQ(x(t0), 0u);
}

TEST_F(Rv64mTest, DestinationEqualsSource) {
  exec(Code{mul(a0, a0, a0), div(a1, a1, a2), rem(a2, a3, a2)}, {{a0, 12}, {a1, 100}, {a2, 7}, {a3, 30}});
  EXPECT_EQ(x(a0), 144u);
  EXPECT_EQ(x(a1), 14u);
  EXPECT_EQ(x(a2), 2u);
}

}  // namespace
}  // namespace dvmm::test
