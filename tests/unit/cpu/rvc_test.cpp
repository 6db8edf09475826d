// C extension: expansion of every compressed form against GNU as (rvc_golden.inc, made by
// make_rvc_golden.py), reserved encodings, and execution of mixed 16/32-bit code.
#include <gtest/gtest.h>

#include "cpu/decode.hpp"
#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

using namespace enc;

struct Golden {
  u16 half;
  u32 full;
  const char* text;
};
const Golden kGolden[] = {
#include "unit/cpu/rvc_golden.inc"
};

TEST(RvcExpansion, MatchesAssembler) {
  for (const Golden& g : kGolden) {
    EXPECT_EQ(cpu::expand_compressed(g.half), g.full)
        << g.text << " (0x" << std::hex << g.half << ")";
  }
}

TEST(RvcExpansion, ReservedEncodingsAreIllegal) {
  const struct {
    u16 half;
    const char* what;
  } reserved[] = {
      {0x0000, "all zeros"},
      {0x0010, "c.addi4spn with nzuimm = 0"},
      {0x001c, "c.addi4spn with nzuimm = 0 (rd' = a5)"},
      {0x8000, "quadrant 0, funct3 100"},
      {0x8c00, "quadrant 0, funct3 100 (other bits)"},
      {0x2001, "c.addiw with rd = 0"},
      {0x6081, "c.lui x1 with nzimm = 0"},
      {0x6101, "c.addi16sp with nzimm = 0"},
      {0x9c41, "c.subw/c.addw space, funct2 = 10"},
      {0x9c61, "c.subw/c.addw space, funct2 = 11"},
      {0x4002, "c.lwsp with rd = 0"},
      {0x6002, "c.ldsp with rd = 0"},
      {0x8002, "c.jr with rs1 = 0"},
  };
  for (const auto& r : reserved) {
    EXPECT_EQ(cpu::expand_compressed(r.half), 0u) << r.what << " 0x" << std::hex << r.half;
  }
}

TEST(RvcExpansion, HintsAreLegal) {
  // HINTs execute as no-ops; they must not be illegal.
  EXPECT_NE(cpu::expand_compressed(0x0001), 0u);  // c.nop
  EXPECT_NE(cpu::expand_compressed(0x0005), 0u);  // c.nop with nzimm (HINT)
  EXPECT_NE(cpu::expand_compressed(0x4015), 0u);  // c.li x0, 5 (HINT)
  EXPECT_NE(cpu::expand_compressed(0x0002 | (1 << 2)), 0u);  // c.slli x0, 1 (HINT)
  EXPECT_NE(cpu::expand_compressed(0x8006), 0u);  // c.mv x0, x1 (HINT)
  EXPECT_NE(cpu::expand_compressed(0x9006), 0u);  // c.add x0, x1 (HINT)
  EXPECT_NE(cpu::expand_compressed(0x6005), 0u);  // c.lui x0, 1 (HINT)
}

class RvcTest : public HartTest {};

TEST_F(RvcTest, ExecutesMixedCode) {
  Code code;
  code.c(c_li(a0, 5))          // 0
      .c(c_addi(a0, -2))       // 2
      .i(addi(a1, a0, 10))     // 4
      .c(c_mv(a2, a1))         // 8
      .c(c_add(a2, a0))        // 10
      .c(c_j(6))               // 12 -> 18
      .c(c_li(a3, 1))          // 14 (skipped)
      .c(c_li(a3, 2))          // 16 (skipped)
      .c(c_beqz(s0, 4))        // 18: s0 == 0 -> 22
      .c(c_li(a3, 3))          // 20 (skipped)
      .c(c_sd(a2, s1, 8))      // 22
      .c(c_lw(a4, s1, 8))      // 24
      .c(c_nop());             // 26
  code.i(ecall());             // 28
  load(code);
  hart_.set_x(s0, 0);
  hart_.set_x(s1, kData);
  run_to_ecall();
  EXPECT_EQ(x(a0), 3u);
  EXPECT_EQ(x(a1), 13u);
  EXPECT_EQ(x(a2), 16u);
  EXPECT_EQ(x(a3), 0u);
  EXPECT_EQ(read64(kData + 8), 16u);
  EXPECT_EQ(x(a4), 16u);
  EXPECT_EQ(hart_.pc(), kBase + 32);
}

TEST_F(RvcTest, CompressedJumpAndLinkRegister) {
  // c.jalr writes pc + 2.
  Code code;
  code.c(0x9282)  // c.jalr t0
      .c(c_li(a0, 1));
  code.i(ecall());  // 4
  load(code);
  hart_.set_x(t0, kBase + 4);
  run_to_ecall();
  EXPECT_EQ(x(ra), kBase + 2);
  EXPECT_EQ(x(a0), 0u);
}

TEST_F(RvcTest, IllegalCompressedTrapsWithBitsInStval) {
  load(Code().c(c_nop()).c(0x0000));
  run_to_trap(2);
  EXPECT_EQ(csr(kSepc), kBase + 2);
  EXPECT_EQ(csr(kStval), 0u);
  load(Code().c(0x6002));  // c.ldsp x0
  run_to_trap(2);
  EXPECT_EQ(csr(kStval), 0x6002u);
}

TEST_F(RvcTest, CompressedBreakpoint) {
  load(Code().c(c_nop()).c(c_ebreak()));
  run_to_trap(3);
  EXPECT_EQ(csr(kSepc), kBase + 2);
}

TEST_F(RvcTest, InstructionAtEndOfPageAndAcrossPages) {
  // A 32-bit instruction whose halves are in two pages, then a compressed one at the end of
  // the page.
  const Gpa at = kBase + 0x1000 - 2;
  Code code;
  code.i(addi(a0, 0, 77)).c(c_li(a1, 9)).i(ecall());
  load(code, at);
  run_to_ecall();
  EXPECT_EQ(x(a0), 77u);
  EXPECT_EQ(x(a1), 9u);
  const Gpa at2 = kBase + 0x3000 - 2;
  Code code2;
  code2.c(c_li(a2, 4)).i(ecall());
  load(code2, at2);
  run_to_ecall();
  EXPECT_EQ(x(a2), 4u);
}

}  // namespace
}  // namespace dvmm::test
