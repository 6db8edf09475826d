// RV64I: register and immediate ALU operations (including the W forms and shifts), LUI and
// AUIPC, branches, jumps, loads and stores.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

using namespace enc;

const std::vector<u64> kValues = {
    0, 1, 2, 3, 5, 31, 32, 33, 63, 64, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff,
    0x7fffffff, 0x80000000, 0x80000001, 0xffffffff, 0x100000000, 0x123456789abcdef0,
    0x7fffffffffffffff, 0x8000000000000000, 0x8000000000000001, 0xfffffffffffffffe,
    0xffffffffffffffff, 0xffffffff80000000, 0xffffffff7fffffff, 0xaaaaaaaaaaaaaaaa,
    0x5555555555555555, 0xfedcba9876543210,
};
const std::vector<i32> kImms = {0, 1, -1, 2, 5, 31, 32, 63, 0x7ff, -0x800, 0x555, -0x556, 100};

u64 sext32(u64 v) { return static_cast<u64>(static_cast<i64>(static_cast<i32>(v))); }

struct RegOp {
  const char* name;
  u32 (*enc)(u32, u32, u32);
  std::function<u64(u64, u64)> ref;
};

const std::vector<RegOp>& reg_ops() {
  static const std::vector<RegOp> ops = {
      {"add", add, [](u64 a, u64 b) { return a + b; }},
      {"sub", sub, [](u64 a, u64 b) { return a - b; }},
      {"sll", sll, [](u64 a, u64 b) { return a << (b & 63); }},
      {"slt", slt, [](u64 a, u64 b) { return u64{static_cast<i64>(a) < static_cast<i64>(b)}; }},
      {"sltu", sltu, [](u64 a, u64 b) { return u64{a < b}; }},
      {"xor", xor_, [](u64 a, u64 b) { return a ^ b; }},
      {"srl", srl, [](u64 a, u64 b) { return a >> (b & 63); }},
      {"sra", sra, [](u64 a, u64 b) { return static_cast<u64>(static_cast<i64>(a) >> (b & 63)); }},
      {"or", or_, [](u64 a, u64 b) { return a | b; }},
      {"and", and_, [](u64 a, u64 b) { return a & b; }},
      {"addw", addw, [](u64 a, u64 b) { return sext32(a + b); }},
      {"subw", subw, [](u64 a, u64 b) { return sext32(a - b); }},
      {"sllw", sllw, [](u64 a, u64 b) { return sext32(static_cast<u32>(a) << (b & 31)); }},
      {"srlw", srlw, [](u64 a, u64 b) { return sext32(static_cast<u32>(a) >> (b & 31)); }},
      {"sraw", sraw,
       [](u64 a, u64 b) { return sext32(static_cast<u64>(static_cast<i32>(a) >> (b & 31))); }},
  };
  return ops;
}

class Rv64iTest : public HartTest {
 protected:
  // Runs a one-instruction program for each operand pair.
  void check_binary(const char* name, u32 insn, const std::function<u64(u64, u64)>& ref) {
    load(Code{insn, ecall()});
    for (u64 a : kValues) {
      for (u64 b : kValues) {
        hart_.set_pc(kBase);
        hart_.set_x(a1, a);
        hart_.set_x(a2, b);
        run_to_ecall();
        ASSERT_EQ(x(a0), ref(a, b)) << name << " 0x" << std::hex << a << ", 0x" << b;
      }
    }
  }
};

TEST_F(Rv64iTest, RegisterRegisterOps) {
  for (const RegOp& op : reg_ops()) check_binary(op.name, op.enc(a0, a1, a2), op.ref);
}

TEST_F(Rv64iTest, SameRegisterOperands) {
  exec(Code{add(a0, a0, a0), sub(a1, a1, a1), sll(a2, a2, a2)}, {{a0, 21}, {a1, 7}, {a2, 3}});
  EXPECT_EQ(x(a0), 42u);
  EXPECT_EQ(x(a1), 0u);
  EXPECT_EQ(x(a2), 24u);
}

TEST_F(Rv64iTest, ImmediateOps) {
  struct ImmOp {
    const char* name;
    u32 (*enc)(u32, u32, i32);
    std::function<u64(u64, i64)> ref;
  };
  const std::vector<ImmOp> ops = {
      {"addi", addi, [](u64 a, i64 i) { return a + static_cast<u64>(i); }},
      {"slti", slti, [](u64 a, i64 i) { return u64{static_cast<i64>(a) < i}; }},
      {"sltiu", sltiu, [](u64 a, i64 i) { return u64{a < static_cast<u64>(i)}; }},
      {"xori", xori, [](u64 a, i64 i) { return a ^ static_cast<u64>(i); }},
      {"ori", ori, [](u64 a, i64 i) { return a | static_cast<u64>(i); }},
      {"andi", andi, [](u64 a, i64 i) { return a & static_cast<u64>(i); }},
      {"addiw", addiw, [](u64 a, i64 i) { return sext32(a + static_cast<u64>(i)); }},
  };
  for (const ImmOp& op : ops) {
    for (i32 imm : kImms) {
      load(Code{op.enc(a0, a1, imm), ecall()});
      for (u64 a : kValues) {
        hart_.set_pc(kBase);
        hart_.set_x(a1, a);
        run_to_ecall();
        ASSERT_EQ(x(a0), op.ref(a, imm)) << op.name << " 0x" << std::hex << a << ", " << std::dec
                                         << imm;
      }
    }
  }
}

TEST_F(Rv64iTest, ImmediateShifts) {
  for (u32 sh = 0; sh < 64; ++sh) {
    load(Code{slli(a0, a1, sh), srli(a2, a1, sh), srai(a3, a1, sh), ecall()});
    for (u64 a : kValues) {
      hart_.set_pc(kBase);
      hart_.set_x(a1, a);
      run_to_ecall();
      ASSERT_EQ(x(a0), a << sh) << "slli " << sh;
      ASSERT_EQ(x(a2), a >> sh) << "srli " << sh;
      ASSERT_EQ(x(a3), static_cast<u64>(static_cast<i64>(a) >> sh)) << "srai " << sh;
    }
  }
  for (u32 sh = 0; sh < 32; ++sh) {
    load(Code{slliw(a0, a1, sh), srliw(a2, a1, sh), sraiw(a3, a1, sh), ecall()});
    for (u64 a : kValues) {
      hart_.set_pc(kBase);
      hart_.set_x(a1, a);
      run_to_ecall();
      ASSERT_EQ(x(a0), sext32(static_cast<u32>(a) << sh)) << "slliw " << sh;
      ASSERT_EQ(x(a2), sext32(static_cast<u32>(a) >> sh)) << "srliw " << sh;
      ASSERT_EQ(x(a3), sext32(static_cast<u64>(static_cast<i32>(a) >> sh))) << "sraiw " << sh;
    }
  }
}

TEST_F(Rv64iTest, LuiAuipc) {
  exec(Code{lui(a0, 0x12345), lui(a1, 0x80000), lui(a2, 0xfffff), auipc(a3, 0), auipc(a4, 0x80000),
            auipc(a5, 1)});
  EXPECT_EQ(x(a0), 0x12345000u);
  EXPECT_EQ(x(a1), 0xffffffff80000000u);
  EXPECT_EQ(x(a2), 0xfffffffffffff000u);
  EXPECT_EQ(x(a3), kBase + 12);
  EXPECT_EQ(x(a4), kBase + 16 + 0xffffffff80000000u);
  EXPECT_EQ(x(a5), kBase + 20 + 0x1000);
}

TEST_F(Rv64iTest, WritesToX0AreIgnored) {
  exec(Code{addi(zero, zero, 5), lui(zero, 0x12345), add(a0, zero, zero), addi(a1, zero, -1),
            ld(zero, a2, 0)},
       {{a2, kData}});
  EXPECT_EQ(x(0), 0u);
  EXPECT_EQ(x(a0), 0u);
  EXPECT_EQ(x(a1), ~u64{0});
}

TEST_F(Rv64iTest, Branches) {
  struct Br {
    const char* name;
    u32 (*enc)(u32, u32, i32);
    std::function<bool(u64, u64)> taken;
  };
  const std::vector<Br> brs = {
      {"beq", beq, [](u64 a, u64 b) { return a == b; }},
      {"bne", bne, [](u64 a, u64 b) { return a != b; }},
      {"blt", blt, [](u64 a, u64 b) { return static_cast<i64>(a) < static_cast<i64>(b); }},
      {"bge", bge, [](u64 a, u64 b) { return static_cast<i64>(a) >= static_cast<i64>(b); }},
      {"bltu", bltu, [](u64 a, u64 b) { return a < b; }},
      {"bgeu", bgeu, [](u64 a, u64 b) { return a >= b; }},
  };
  for (const Br& br : brs) {
    // 0: b a1, a2, +12 -> 12; 4: li a0, 1; 8: ecall; 12: li a0, 2; 16: ecall
    load(Code{br.enc(a1, a2, 12), addi(a0, 0, 1), ecall(), addi(a0, 0, 2), ecall()});
    for (u64 a : kValues) {
      for (u64 b : {a, a + 1, a - 1, u64{0}, ~u64{0}, u64{1} << 63}) {
        hart_.set_pc(kBase);
        hart_.set_x(a1, a);
        hart_.set_x(a2, b);
        run_to_ecall();
        ASSERT_EQ(x(a0), br.taken(a, b) ? 2u : 1u)
            << br.name << " 0x" << std::hex << a << ", 0x" << b;
        ASSERT_EQ(hart_.pc(), kBase + (br.taken(a, b) ? 20 : 12));
      }
    }
  }
}

TEST_F(Rv64iTest, BackwardBranchLoop) {
  // a0 = 0; a1 = 100; loop: a0 += a1; a1 -= 1; bnez a1, loop
  exec(Code{addi(a0, 0, 0), addi(a1, 0, 100), add(a0, a0, a1), addi(a1, a1, -1), bne(a1, 0, -8)});
  EXPECT_EQ(x(a0), 5050u);
  EXPECT_EQ(x(a1), 0u);
}

TEST_F(Rv64iTest, JalAndJalr) {
  // 0: jal ra, +8; 4: li a0, 1 (skipped); 8: jalr t0, 13(t1) (-> t1+12, bit 0 cleared)
  // t1 = kBase + 4 -> jumps to kBase + 16; 12: li a1, 9 (skipped); 16: ecall
  exec(Code{jal(ra, 8), addi(a0, 0, 1), jalr(t0, t1, 13), addi(a1, 0, 9)}, {{t1, kBase + 4}});
  EXPECT_EQ(x(ra), kBase + 4);
  EXPECT_EQ(x(t0), kBase + 12);
  EXPECT_EQ(x(a0), 0u);
  EXPECT_EQ(x(a1), 0u);
  EXPECT_EQ(hart_.pc(), kBase + 20);
  // jalr with rd == rs1 uses the old rs1.
  exec(Code{jalr(t1, t1, 0), addi(a0, 0, 1)}, {{t1, kBase + 8}});
  EXPECT_EQ(x(t1), kBase + 4);
  EXPECT_EQ(x(a0), 0u);
  // jal with a negative offset.
  exec(Code{jal(0, 12), addi(a0, 0, 7), ecall(), jal(ra, -8)});
  EXPECT_EQ(x(a0), 7u);
  EXPECT_EQ(x(ra), kBase + 16);
}

TEST_F(Rv64iTest, Loads) {
  const u8 bytes[16] = {0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0xf8,
                        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x08};
  ram_.write(kData, bytes, 16);
  exec(Code{lb(a0, a1, 0), lbu(a2, a1, 0), lh(a3, a1, 0), lhu(a4, a1, 0), lw(a5, a1, 0),
            lwu(a6, a1, 0), ld(a7, a1, 0), ld(t0, a1, 8), lb(t1, a1, 8), lw(t2, a1, 12)},
       {{a1, kData}});
  EXPECT_EQ(x(a0), 0xffffffffffffff81u);
  EXPECT_EQ(x(a2), 0x81u);
  EXPECT_EQ(x(a3), 0xffffffffffff8281u);
  EXPECT_EQ(x(a4), 0x8281u);
  EXPECT_EQ(x(a5), 0xffffffff84838281u);
  EXPECT_EQ(x(a6), 0x84838281u);
  EXPECT_EQ(x(a7), 0xf887868584838281u);
  EXPECT_EQ(x(t0), 0x0877665544332211u);
  EXPECT_EQ(x(t1), 0x11u);
  EXPECT_EQ(x(t2), 0x08776655u);
  // Negative offsets.
  exec(Code{ld(a0, a1, -8), lbu(a2, a1, -1)}, {{a1, kData + 16}});
  EXPECT_EQ(x(a0), 0x0877665544332211u);
  EXPECT_EQ(x(a2), 0x08u);
}

TEST_F(Rv64iTest, Stores) {
  write64(kData, 0);
  write64(kData + 8, 0);
  exec(Code{sb(a2, a1, 0), sh(a2, a1, 2), sw(a2, a1, 4), sd(a2, a1, 8)},
       {{a1, kData}, {a2, 0x1122334455667788}});
  EXPECT_EQ(read64(kData), 0x5566778877880088u);
  EXPECT_EQ(read64(kData + 8), 0x1122334455667788u);
}

TEST_F(Rv64iTest, MisalignedLoadsAndStoresAreTransparent) {
  for (u64 off = 1; off < 8; ++off) {
    for (int i = 0; i < 32; ++i) {
      const u8 b = static_cast<u8>(0xa0 + i);
      ram_.write(kData + static_cast<u64>(i), &b, 1);
    }
    exec(Code{ld(a0, a1, 0), lw(a2, a1, 0), lhu(a3, a1, 0), sd(a4, a1, 8), sw(a4, a1, 17),
              sh(a4, a1, 22)},
         {{a1, kData + off}, {a4, 0x0102030405060708}});
    u64 expect = 0;
    for (int i = 7; i >= 0; --i) expect = (expect << 8) | (0xa0 + off + static_cast<u64>(i));
    EXPECT_EQ(x(a0), expect) << off;
    EXPECT_EQ(x(a2), sext32(expect)) << off;
    EXPECT_EQ(x(a3), expect & 0xffff) << off;
    u64 v = 0;
    ram_.read(kData + off + 8, &v, 8);
    EXPECT_EQ(v, 0x0102030405060708u) << off;
    u32 w = 0;
    ram_.read(kData + off + 17, &w, 4);
    EXPECT_EQ(w, 0x05060708u) << off;
    u16 h = 0;
    ram_.read(kData + off + 22, &h, 2);
    EXPECT_EQ(h, 0x0708u) << off;
  }
  // Across a page boundary.
  const Gpa edge = kData + 0x1000 - 3;
  exec(Code{sd(a2, a1, 0), ld(a0, a1, 0)}, {{a1, edge}, {a2, 0xdeadbeefcafef00d}});
  EXPECT_EQ(x(a0), 0xdeadbeefcafef00du);
  EXPECT_EQ(read64(edge), 0xdeadbeefcafef00du);
}

TEST_F(Rv64iTest, FenceAndPauseAreNoOps) {
  exec(Code{fence(), 0x0100000f /* pause */, fence_i(), 0x8330000f /* fence.tso */,
            addi(a0, 0, 3)});
  EXPECT_EQ(x(a0), 3u);
}

TEST_F(Rv64iTest, InstretCountsRetiredInstructions) {
  exec(Code{csrr(a0, kInstret), nop(), nop(), nop(), nop(), nop(), csrr(a1, kInstret)});
  EXPECT_EQ(x(a1) - x(a0), 6u);
}

}  // namespace
}  // namespace dvmm::test
