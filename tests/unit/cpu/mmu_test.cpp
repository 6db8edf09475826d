// The page walker: Sv39 and Sv48 tables built in guest RAM, translations of 4K/2M/1G pages,
// A/D updates, faults and their stval, permissions, sfence.vma and debug_translate.
#include <gtest/gtest.h>

#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

using namespace enc;
using memory::AccessType;

constexpr u64 kV = 1, kR = 2, kW = 4, kX = 8, kU = 16, kG = 32, kA = 64, kD = 128;
constexpr u64 kSv39 = u64{8} << 60, kSv48 = u64{9} << 60;

class MmuTest : public HartTest {
 protected:
  static constexpr Gpa kTables = kBase + 0x300000;
  static constexpr Gpa kPages = kBase + 0x180000;  // test pages (physical)
  static constexpr u64 kVa = 0x40000000;
  int levels_ = 3;
  Gpa root_ = 0;
  Gpa next_ = kTables;

  Gpa new_table() {
    const Gpa t = next_;
    next_ += 4096;
    for (int i = 0; i < 512; ++i) write64(t + 8 * static_cast<u64>(i), 0);
    return t;
  }
  // Address of the PTE for va at leaf_level, creating tables.
  Gpa slot(u64 va, int leaf_level) {
    Gpa t = root_;
    for (int level = levels_ - 1; level > leaf_level; --level) {
      const Gpa e = t + 8 * ((va >> (12 + 9 * level)) & 511);
      u64 pte = read64(e);
      if (!(pte & kV)) {
        pte = ((new_table() >> 12) << 10) | kV;
        write64(e, pte);
      }
      t = (pte >> 10) << 12;
    }
    return t + 8 * ((va >> (12 + 9 * leaf_level)) & 511);
  }
  void map(u64 va, Gpa pa, u64 flags, int level = 0) {
    write64(slot(va, level), ((pa >> 12) << 10) | flags | kV);
  }
  u64 pte(u64 va, int level = 0) { return read64(slot(va, level)); }

  // Loads code at kBase (identity-mapped by a global RWX gigapage) and turns paging on.
  void setup(const Code& code, int levels = 3) {
    load(code);
    levels_ = levels;
    next_ = kTables;
    root_ = new_table();
    map(kBase, kBase, kR | kW | kX | kA | kD | kG, 2);
    ASSERT_TRUE(hart_.debug_write_csr(kSatp, (levels == 3 ? kSv39 : kSv48) | (root_ >> 12)));
  }
};

TEST_F(MmuTest, TranslatesPagesOfEverySize) {
  setup(Code{nop()});
  map(kVa, kPages, kR | kW | kA | kD);
  map(kVa + 0x200000, kBase + 0x200000, kR | kA, 1);
  map(0xc0000000, kBase, kR | kA, 2);
  EXPECT_EQ(hart_.debug_translate(kVa + 0x123, AccessType::kRead), kPages + 0x123);
  EXPECT_EQ(hart_.debug_translate(kVa + 0x212345, AccessType::kRead), kBase + 0x212345);
  EXPECT_EQ(hart_.debug_translate(0xc0345678, AccessType::kRead), kBase + 0x345678);
  EXPECT_FALSE(hart_.debug_translate(kVa + 0x1000, AccessType::kRead).has_value());
  // debug_translate has no side effects: A stays as it was on a page without it.
  map(kVa + 0x2000, kPages + 0x1000, kR);
  EXPECT_EQ(hart_.debug_translate(kVa + 0x2000, AccessType::kRead), kPages + 0x1000);
  EXPECT_EQ(pte(kVa + 0x2000) & (kA | kD), 0u);
}

TEST_F(MmuTest, Sv48Translation) {
  setup(Code{nop()}, 4);
  const u64 va = 0x0000100000000000;  // beyond Sv39
  map(va, kPages, kR | kA);
  EXPECT_EQ(hart_.debug_translate(va + 8, AccessType::kRead), kPages + 8);
  map(0xffff800000000000, kPages, kR | kA);
  EXPECT_EQ(hart_.debug_translate(0xffff800000000010, AccessType::kRead), kPages + 0x10);
  EXPECT_FALSE(hart_.debug_translate(0x0000800000000000, AccessType::kRead).has_value());
}

TEST_F(MmuTest, LoadsAndStoresThroughMappings) {
  setup(Code{ld(a0, a1, 8), sd(a2, a1, 16), ld(a3, a4, 0), ecall()});
  write64(kPages + 8, 0x1111);
  map(kVa, kPages, kR | kW);  // A and D clear: the walker sets them
  map(kVa + 0x200000, kBase + 0x200000, kR, 1);
  write64(kBase + 0x200000 + 0x5000, 0x2222);
  hart_.set_x(a1, kVa);
  hart_.set_x(a2, 0x3333);
  hart_.set_x(a4, kVa + 0x205000);
  run_to_ecall();
  EXPECT_EQ(x(a0), 0x1111u);
  EXPECT_EQ(read64(kPages + 16), 0x3333u);
  EXPECT_EQ(x(a3), 0x2222u);
  EXPECT_EQ(pte(kVa) & (kA | kD), kA | kD);
  EXPECT_EQ(pte(kVa + 0x200000, 1) & (kA | kD), kA);
}

TEST_F(MmuTest, AccessedWithoutDirtyOnRead) {
  setup(Code{ld(a0, a1, 0), ecall()});
  map(kVa, kPages, kR | kW);
  hart_.set_x(a1, kVa);
  run_to_ecall();
  EXPECT_EQ(pte(kVa) & (kA | kD), kA);
}

TEST_F(MmuTest, StoreAfterCachedReadSetsDirty) {
  setup(Code{ld(a0, a1, 0), sd(a0, a1, 8), ecall()});
  map(kVa, kPages, kR | kW);
  hart_.set_x(a1, kVa);
  run_to_ecall();
  EXPECT_EQ(pte(kVa) & (kA | kD), kA | kD);
}

TEST_F(MmuTest, PageFaultsReportTheAddress) {
  struct Case {
    u64 flags;
    u32 insn;
    u64 cause;
  };
  const Case cases[] = {
      {0, ld(a0, a1, 0), 13},                 // not mapped
      {0, sd(a0, a1, 0), 15},
      {0, jalr(ra, a1, 0), 12},
      {kW | kA | kD, ld(a0, a1, 0), 13},      // W without R: reserved
      {kR | kA, sd(a0, a1, 0), 15},           // read-only
      {kR | kW | kA | kD, jalr(ra, a1, 0), 12},  // not executable
      {kX | kA, ld(a0, a1, 0), 13},           // execute-only, MXR off
      {kR | kW | kX | kU | kA | kD, ld(a0, a1, 0), 13},  // U page from S, SUM off
      {kR | kW | kX | kU | kA | kD, jalr(ra, a1, 0), 12},
  };
  for (const Case& c : cases) {
    setup(Code{c.insn, ecall()});
    if (c.flags) map(kVa, kPages, c.flags);
    hart_.set_x(a1, kVa + 0x18);
    run_to_trap(c.cause);
    EXPECT_EQ(csr(kStval), kVa + 0x18) << std::hex << c.flags;
    EXPECT_EQ(csr(kSepc), c.cause == 12 ? kVa + 0x18 : kBase) << std::hex << c.flags;
  }
}

TEST_F(MmuTest, SumAndMxr) {
  setup(Code{ld(a0, a1, 0), ld(a2, a3, 0), ecall()});
  map(kVa, kPages, kR | kW | kU | kA | kD);
  map(kVa + 0x1000, kPages + 0x1000, kX | kA);
  write64(kPages, 5);
  write64(kPages + 0x1000, 6);
  hart_.set_x(a1, kVa);
  hart_.set_x(a3, kVa + 0x1000);
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | (u64{1} << 18) | (u64{1} << 19));
  run_to_ecall();
  EXPECT_EQ(x(a0), 5u);
  EXPECT_EQ(x(a2), 6u);
}

TEST_F(MmuTest, MisalignedSuperpagesFault) {
  setup(Code{ld(a0, a1, 0), ecall()});
  map(kVa + 0x200000, kBase + 0x201000, kR | kA, 1);
  hart_.set_x(a1, kVa + 0x200008);
  run_to_trap(13);
  EXPECT_EQ(csr(kStval), kVa + 0x200008);
  setup(Code{ld(a0, a1, 0), ecall()});
  map(0x100000000, kBase + 0x200000, kR | kA, 2);
  hart_.set_x(a1, 0x100000000);
  run_to_trap(13);
}

TEST_F(MmuTest, NonCanonicalAddressesFault) {
  setup(Code{ld(a0, a1, 0), ecall()});
  hart_.set_x(a1, 0x0000004000000000);
  run_to_trap(13);
  EXPECT_EQ(csr(kStval), 0x0000004000000000u);
}

TEST_F(MmuTest, PageTableOutsideRamIsAnAccessFault) {
  setup(Code{ld(a0, a1, 0), ecall()});
  write64(slot(kVa, 1), ((u64{0x10000000} >> 12) << 10) | kV);
  hart_.set_x(a1, kVa);
  run_to_trap(5);
  EXPECT_EQ(csr(kStval), kVa);
}

TEST_F(MmuTest, SfenceVmaDropsStaleTranslations) {
  // ld a0; (host remaps); ld a2 again without sfence may see either; after sfence.vma the
  // new mapping is used.
  setup(Code{ld(a0, a1, 0), ecall(), sfence_vma(a1, 0), ld(a2, a1, 0), ecall()});
  write64(kPages, 1);
  write64(kPages + 0x1000, 2);
  map(kVa, kPages, kR | kA);
  hart_.set_x(a1, kVa);
  run_to_ecall();
  EXPECT_EQ(x(a0), 1u);
  map(kVa, kPages + 0x1000, kR | kA);
  run_to_ecall();
  EXPECT_EQ(x(a2), 2u);
}

TEST_F(MmuTest, RequestFlushDropsTranslations) {
  setup(Code{ld(a0, a1, 0), ecall(), ld(a2, a1, 0), ecall()});
  write64(kPages, 1);
  write64(kPages + 0x1000, 2);
  map(kVa, kPages, kR | kA);
  hart_.set_x(a1, kVa);
  run_to_ecall();
  map(kVa, kPages + 0x1000, kR | kA);
  const u64 ticket = hart_.request_flush();
  hart_.service_requests();
  EXPECT_TRUE(hart_.flush_done(ticket));
  run_to_ecall();
  EXPECT_EQ(x(a2), 2u);
}

TEST_F(MmuTest, SatpWarlWithPagingOn) {
  setup(Code{csrw(kSatp, a1), csrr(a0, kSatp), ecall()});
  const u64 before = csr(kSatp);
  hart_.set_x(a1, (u64{10} << 60) | (root_ >> 12));
  run_to_ecall();
  EXPECT_EQ(x(a0), before);
}

TEST_F(MmuTest, UserModeAccess) {
  // U code in a U page at kVa; U data page at kVa + 0x1000; S data page at kVa + 0x2000.
  Code user{ld(a0, a1, 0), ld(a2, a3, 0), ecall()};
  ram_.write(kPages, user.bytes().data(), user.size());
  setup(Code{csrw(kSepc, t0), addi(t1, 0, 1 << 8), csrrc(0, kSstatus, t1), sret()});
  map(kVa, kPages, kR | kX | kU | kA);
  map(kVa + 0x1000, kPages + 0x1000, kR | kW | kU | kA | kD);
  map(kVa + 0x2000, kPages + 0x2000, kR | kW | kA | kD);
  write64(kPages + 0x1000, 77);
  hart_.set_x(t0, kVa);
  hart_.set_x(a1, kVa + 0x1000);
  hart_.set_x(a3, kVa + 0x2000);
  run_to_trap(13);  // the second load: S page from U
  EXPECT_EQ(x(a0), 77u);
  EXPECT_EQ(csr(kStval), kVa + 0x2000);
  EXPECT_EQ(csr(kSepc), kVa + 4);
}

}  // namespace
}  // namespace dvmm::test
