// A extension on one hart: every AMO in both widths, LR/SC reservation rules, alignment and
// access faults. (Several harts: tests/baremetal/smp.c and MultiHartAtomics below.)
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

using namespace enc;

const std::vector<u64> kValues = {0, 1, 5, 0x7fffffff, 0x80000000, 0xffffffff, 0x1'00000000,
                                  0x7fffffffffffffff, 0x8000000000000000, ~u64{0},
                                  0xffffffff80000001, 0x123456789abcdef0};

u64 sext32(u64 v) { return static_cast<u64>(static_cast<i64>(static_cast<i32>(v))); }

class Rv64aTest : public HartTest {};

TEST_F(Rv64aTest, AmoOperations) {
  struct Op {
    const char* name;
    AmoOp op;
    std::function<u64(u64, u64)> d;   // 64-bit result
    std::function<u32(u32, u32)> w;   // 32-bit result
  };
  const std::vector<Op> ops = {
      {"swap", kAmoSwap, [](u64, u64 b) { return b; }, [](u32, u32 b) { return b; }},
      {"add", kAmoAdd, [](u64 a, u64 b) { return a + b; }, [](u32 a, u32 b) { return a + b; }},
      {"xor", kAmoXor, [](u64 a, u64 b) { return a ^ b; }, [](u32 a, u32 b) { return a ^ b; }},
      {"and", kAmoAnd, [](u64 a, u64 b) { return a & b; }, [](u32 a, u32 b) { return a & b; }},
      {"or", kAmoOr, [](u64 a, u64 b) { return a | b; }, [](u32 a, u32 b) { return a | b; }},
      {"min", kAmoMin,
       [](u64 a, u64 b) { return static_cast<i64>(a) < static_cast<i64>(b) ? a : b; },
       [](u32 a, u32 b) { return static_cast<i32>(a) < static_cast<i32>(b) ? a : b; }},
      {"max", kAmoMax,
       [](u64 a, u64 b) { return static_cast<i64>(a) > static_cast<i64>(b) ? a : b; },
       [](u32 a, u32 b) { return static_cast<i32>(a) > static_cast<i32>(b) ? a : b; }},
      {"minu", kAmoMinu, [](u64 a, u64 b) { return std::min(a, b); },
       [](u32 a, u32 b) { return std::min(a, b); }},
      {"maxu", kAmoMaxu, [](u64 a, u64 b) { return std::max(a, b); },
       [](u32 a, u32 b) { return std::max(a, b); }},
  };
  for (const Op& op : ops) {
    for (bool dword : {false, true}) {
      load(Code{amo(op.op, dword, a0, a1, a2, dword, !dword), ecall()});
      for (u64 mem : kValues) {
        for (u64 v : kValues) {
          const u64 guard = 0x5a5a5a5a5a5a5a5a;
          write64(kData, mem);
          write64(kData + 8, guard);
          hart_.set_pc(kBase);
          hart_.set_x(a1, kData);
          hart_.set_x(a2, v);
          run_to_ecall();
          if (dword) {
            ASSERT_EQ(x(a0), mem) << op.name << ".d";
            ASSERT_EQ(read64(kData), op.d(mem, v)) << op.name << ".d 0x" << std::hex << mem << ", 0x" << v;
          } else {
            ASSERT_EQ(x(a0), sext32(mem)) << op.name << ".w";
            const u32 lo = op.w(static_cast<u32>(mem), static_cast<u32>(v));
            ASSERT_EQ(read64(kData), (mem & 0xffffffff00000000) | lo)
                << op.name << ".w 0x" << std::hex << mem << ", 0x" << v;
          }
          ASSERT_EQ(read64(kData + 8), guard);
        }
      }
    }
  }
}

TEST_F(Rv64aTest, AmoWithRdEqualToSources) {
  write64(kData, 10);
  // amoadd.d a1, a1, (a1): rs1 and rs2 are read before rd is written.
  exec(Code{amo(kAmoAdd, true, a1, a1, a2), amo(kAmoSwap, true, a3, a4, a3)},
       {{a1, kData}, {a2, 5}, {a3, 77}, {a4, kData + 8}});
  EXPECT_EQ(x(a1), 10u);
  EXPECT_EQ(read64(kData), 15u);
  EXPECT_EQ(x(a3), 0u);
  EXPECT_EQ(read64(kData + 8), 77u);
  // amoswap to x0 still stores.
  exec(Code{amo(kAmoSwap, true, zero, a1, a2)}, {{a1, kData}, {a2, 99}});
  EXPECT_EQ(read64(kData), 99u);
}

TEST_F(Rv64aTest, LrScSucceedsWithReservation) {
  write64(kData, 0xffffffff80000005);
  exec(Code{lr_w(a0, a1), addi(a0, a0, 1), sc_w(a2, a1, a0), lr_d(a3, a1), sc_d(a4, a1, a5)},
       {{a1, kData}, {a5, 0x1234}});
  EXPECT_EQ(x(a0), 0xffffffff80000006u);  // lr.w sign-extends
  EXPECT_EQ(x(a2), 0u);
  EXPECT_EQ(x(a3), 0xffffffff80000006u);
  EXPECT_EQ(x(a4), 0u);
  EXPECT_EQ(read64(kData), 0x1234u);
}

TEST_F(Rv64aTest, ScFailsWithoutReservation) {
  write64(kData, 7);
  exec(Code{sc_d(a0, a1, a2)}, {{a1, kData}, {a2, 9}});
  EXPECT_NE(x(a0), 0u);
  EXPECT_EQ(read64(kData), 7u);
}

TEST_F(Rv64aTest, SecondScFails) {
  write64(kData, 7);
  exec(Code{lr_d(a0, a1), sc_d(a3, a1, a2), sc_d(a4, a1, a5)}, {{a1, kData}, {a2, 9}, {a5, 11}});
  EXPECT_EQ(x(a3), 0u);
  EXPECT_NE(x(a4), 0u);
  EXPECT_EQ(read64(kData), 9u);
}

TEST_F(Rv64aTest, ScToAnotherAddressFails) {
  write64(kData, 1);
  write64(kData + 256, 2);
  exec(Code{lr_d(a0, a1), sc_d(a3, a2, a4)}, {{a1, kData}, {a2, kData + 256}, {a4, 5}});
  EXPECT_NE(x(a3), 0u);
  EXPECT_EQ(read64(kData + 256), 2u);
  EXPECT_EQ(read64(kData), 1u);
}

TEST_F(Rv64aTest, ScFailsAfterAnotherHartWrites) {
  // The write comes from the host between LR and SC (like another hart).
  write64(kData, 1);
  load(Code{lr_d(a0, a1), ecall(), sc_d(a3, a1, a4), ecall()});
  hart_.set_x(a1, kData);
  hart_.set_x(a4, 5);
  run_to_ecall();
  EXPECT_EQ(x(a0), 1u);
  write64(kData, 3);
  run_to_ecall();
  EXPECT_NE(x(a3), 0u);
  EXPECT_EQ(read64(kData), 3u);
}

TEST_F(Rv64aTest, MisalignedAtomicsFault) {
  load(Code{amo(kAmoAdd, false, a0, a1, a2), ecall()});
  hart_.set_x(a1, kData + 2);
  ASSERT_TRUE(std::holds_alternative<cpu::ExitSbiCall>(run()));
  const u64 cause = csr(kScause);
  EXPECT_TRUE(cause == 6 || cause == 7) << cause;
  EXPECT_EQ(csr(kStval), kData + 2);
  EXPECT_EQ(csr(kSepc), kBase);

  load(Code{lr_d(a0, a1), ecall()});
  hart_.set_x(a1, kData + 4);
  cpu::Exit e = run();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitSbiCall>(e));
  EXPECT_TRUE(csr(kScause) == 4 || csr(kScause) == 5) << csr(kScause);
  EXPECT_EQ(csr(kStval), kData + 4);

  load(Code{sc_w(a0, a1, a2), ecall()});
  hart_.set_x(a1, kData + 1);
  e = run();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitSbiCall>(e));
  EXPECT_TRUE(csr(kScause) == 6 || csr(kScause) == 7) << csr(kScause);
}

TEST_F(Rv64aTest, AtomicsOutsideRamAreAccessFaults) {
  load(Code{amo(kAmoSwap, true, a0, a1, a2), ecall()});
  hart_.set_x(a1, 0x10000000);
  run_to_trap(7);
  EXPECT_EQ(csr(kStval), 0x10000000u);
  load(Code{lr_w(a0, a1), ecall()});
  hart_.set_x(a1, 0x10000000);
  run_to_trap(5);
}

// Two harts on two threads increment the same counters.
TEST(MultiHartAtomics, CountersAreExact) {
  constexpr Gpa kBase = 0x80000000;
  constexpr Gpa kCounters = kBase + 0x10000;
  constexpr u64 kIters = 20000;
  memory::GuestRam ram(kBase, 1 << 20);
  cpu::HostMonotonicTime time;
  // a0 = iterations. Loop: amoadd.w and amoadd.d on (t0), an LR/SC.d increment of (t2).
  Code code{
      addi(t1, 0, 1),
      amo(kAmoAdd, false, zero, t0, t1),       // 4: loop
      amo(kAmoAdd, true, zero, t0, t1, true, true),
      lr_d(t3, t2),
      addi(t3, t3, 1),
      sc_d(t4, t2, t3),
      bne(t4, 0, -12),
      addi(a0, a0, -1),
      bne(a0, 0, -28),
      ecall(),
  };
  ram.write(kBase, code.bytes().data(), code.size());
  std::vector<std::unique_ptr<cpu::Hart>> harts;
  for (HartId id = 0; id < 2; ++id) harts.push_back(std::make_unique<cpu::Hart>(id, ram, time));
  std::vector<std::thread> threads;
  for (auto& h : harts) {
    threads.emplace_back([&h] {
      h->reset(kBase, 0, 0);
      h->set_x(a0, kIters);
      h->set_x(t0, kCounters + 64);  // amoadd.w and amoadd.d counter
      h->set_x(t2, kCounters);       // LR/SC counter
      for (;;) {
        cpu::Exit e = h->run(1'000'000);
        if (std::holds_alternative<cpu::ExitSbiCall>(e)) break;
        ASSERT_TRUE(std::holds_alternative<cpu::ExitBudgetExhausted>(e) ||
                    std::holds_alternative<cpu::ExitKicked>(e))
            << cpu::exit_name(e);
      }
    });
  }
  for (auto& t : threads) t.join();
  u64 lrsc = 0, w = 0;
  ram.read(kCounters, &lrsc, 8);
  ram.read(kCounters + 64, &w, 8);
  // amoadd.w and amoadd.d both add to the word at kCounters + 64: 2 per iteration.
  EXPECT_EQ(lrsc, 2 * kIters);
  EXPECT_EQ(w, 2 * 2 * kIters);
}

}  // namespace
}  // namespace dvmm::test
