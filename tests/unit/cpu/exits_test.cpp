// The exit interface: MMIO reads and writes, SBI calls, WFI, page not present, exception
// bitmap, CSR intercepts, breakpoints, single-step, kicks from another thread, budgets and
// controls changed while running.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

using namespace enc;
using std::chrono::steady_clock;

constexpr Gpa kMmio = 0x10000000;

class ExitsTest : public HartTest {
 protected:
  void set_controls(const cpu::ExecControls& c) { hart_.set_controls(c); }
};

TEST_F(ExitsTest, MmioReadCompletesIntoTheRegister) {
  struct Case {
    u32 insn;
    u8 size;
    u64 device_value;
    u64 expect;
  };
  const Case cases[] = {
      {ld(a0, a1, 8), 8, 0x1122334455667788, 0x1122334455667788},
      {lw(a0, a1, 8), 4, 0x80000001, 0xffffffff80000001},
      {lwu(a0, a1, 8), 4, 0x80000001, 0x80000001},
      {lh(a0, a1, 8), 2, 0x8001, 0xffffffffffff8001},
      {lhu(a0, a1, 8), 2, 0x8001, 0x8001},
      {lb(a0, a1, 8), 1, 0x80, 0xffffffffffffff80},
      {lbu(a0, a1, 8), 1, 0x80, 0x80},
  };
  for (const Case& c : cases) {
    load(Code{c.insn, addi(a2, a0, 0), ecall()});
    hart_.set_x(a1, kMmio);
    cpu::Exit e = run();
    auto* r = std::get_if<cpu::ExitMmioRead>(&e);
    ASSERT_NE(r, nullptr) << cpu::exit_name(e);
    EXPECT_EQ(r->gpa, kMmio + 8);
    EXPECT_EQ(r->size, c.size);
    // Retired with a placeholder (no unwinding); complete_mmio_read() writes the register.
    EXPECT_EQ(hart_.pc(), kBase + 4);
    hart_.complete_mmio_read(c.device_value);
    run_to_ecall();
    EXPECT_EQ(x(a0), c.expect) << std::hex << c.insn;
    EXPECT_EQ(x(a2), c.expect);
  }
}

TEST_F(ExitsTest, MmioReadIntoFloatRegister) {
  load(Code{flw(1, a1, 0), fmv_x_d(a0, 1), fld(2, a1, 8), fmv_x_d(a2, 2), ecall()});
  hart_.set_x(a1, kMmio);
  cpu::Exit e = run();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitMmioRead>(e)) << cpu::exit_name(e);
  EXPECT_EQ(std::get<cpu::ExitMmioRead>(e).size, 4);
  hart_.complete_mmio_read(0x3f800000);
  e = run();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitMmioRead>(e)) << cpu::exit_name(e);
  EXPECT_EQ(std::get<cpu::ExitMmioRead>(e).size, 8);
  hart_.complete_mmio_read(0x400921fb54442d18);
  run_to_ecall();
  EXPECT_EQ(x(a0), 0xffffffff3f800000u);  // NaN-boxed
  EXPECT_EQ(x(a2), 0x400921fb54442d18u);
}

TEST_F(ExitsTest, MmioWrite) {
  load(Code{sw(a2, a1, 4), sb(a2, a1, 7), sd(a2, a1, 16), ecall()});
  hart_.set_x(a1, kMmio);
  hart_.set_x(a2, 0x1122334455667788);
  const u8 sizes[] = {4, 1, 8};
  const u64 offs[] = {4, 7, 16};
  const u64 values[] = {0x55667788, 0x88, 0x1122334455667788};
  for (int i = 0; i < 3; ++i) {
    cpu::Exit e = run();
    auto* w = std::get_if<cpu::ExitMmioWrite>(&e);
    ASSERT_NE(w, nullptr) << cpu::exit_name(e);
    EXPECT_EQ(w->gpa, kMmio + offs[i]);
    EXPECT_EQ(w->size, sizes[i]);
    EXPECT_EQ(w->value & ((sizes[i] == 8) ? ~u64{0} : ((u64{1} << (8 * sizes[i])) - 1)), values[i]);
    EXPECT_EQ(hart_.pc(), kBase + 4 * static_cast<u64>(i + 1));  // already retired
  }
  run_to_ecall();
}

TEST_F(ExitsTest, MmioThroughPagingReportsThePhysicalAddress) {
  // Sv39 root at kData + 0x10000: gigapage identity for RAM, a 4K page at 0x40000000 -> MMIO.
  const Gpa root = kData + 0x10000, l1 = root + 0x1000, l0 = root + 0x2000;
  for (Gpa t = root; t < root + 0x3000; t += 8) write64(t, 0);
  write64(root + 8 * 2, ((kBase >> 12) << 10) | 0xcf);  // RWX AD V
  write64(root + 8 * 1, ((l1 >> 12) << 10) | 1);
  write64(l1, ((l0 >> 12) << 10) | 1);
  write64(l0, ((kMmio >> 12) << 10) | 0xc7);  // RW AD V
  load(Code{lw(a0, a1, 0x10), ecall()});
  hart_.debug_write_csr(kSatp, (u64{8} << 60) | (root >> 12));
  hart_.set_x(a1, 0x40000000);
  cpu::Exit e = run();
  auto* r = std::get_if<cpu::ExitMmioRead>(&e);
  ASSERT_NE(r, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(r->gpa, kMmio + 0x10);
  hart_.complete_mmio_read(9);
  run_to_ecall();
  EXPECT_EQ(x(a0), 9u);
}

TEST_F(ExitsTest, WfiExitsAndCanBeDisabled) {
  load(Code{wfi(), addi(a0, 0, 1), ecall()});
  cpu::Exit e = run();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitWfi>(e)) << cpu::exit_name(e);
  EXPECT_EQ(hart_.pc(), kBase + 4);
  run_to_ecall();
  EXPECT_EQ(x(a0), 1u);

  cpu::ExecControls c;
  c.wfi_exiting = false;
  set_controls(c);
  load(Code{wfi(), addi(a0, 0, 2), ecall()});
  run_to_ecall();
  EXPECT_EQ(x(a0), 2u);
}

TEST_F(ExitsTest, PageNotPresent) {
  const u64 page = ram_.page_index(kData);
  write64(kData, 42);
  load(Code{ld(a0, a1, 0), sd(a0, a1, 8), ecall()});
  hart_.set_x(a1, kData);
  ram_.set_access(page, memory::PageAccess::kNone);
  cpu::Exit e = run();
  auto* p = std::get_if<cpu::ExitPageNotPresent>(&e);
  ASSERT_NE(p, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(p->gpa & ~kPageMask, kData);
  EXPECT_EQ(p->access, memory::AccessType::kRead);
  EXPECT_EQ(hart_.pc(), kBase);
  ram_.set_access(page, memory::PageAccess::kRead);
  e = run();
  p = std::get_if<cpu::ExitPageNotPresent>(&e);
  ASSERT_NE(p, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(p->access, memory::AccessType::kWrite);
  EXPECT_EQ(x(a0), 42u);
  EXPECT_EQ(hart_.pc(), kBase + 4);
  ram_.set_access(page, memory::PageAccess::kReadWrite);
  run_to_ecall();
  EXPECT_EQ(read64(kData + 8), 42u);
}

TEST_F(ExitsTest, PageNotPresentOnFetch) {
  load(Code{nop(), ecall()}, kData);
  ram_.set_access(ram_.page_index(kData), memory::PageAccess::kNone);
  cpu::Exit e = run();
  auto* p = std::get_if<cpu::ExitPageNotPresent>(&e);
  ASSERT_NE(p, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(p->access, memory::AccessType::kExecute);
  ram_.set_access(ram_.page_index(kData), memory::PageAccess::kRead);
  run_to_ecall();
}

TEST_F(ExitsTest, ExceptionBitmap) {
  cpu::ExecControls c;
  c.exception_bitmap = u64{1} << 2;
  set_controls(c);
  load(Code{nop(), 0xffffffff, ecall()});
  cpu::Exit e = run();
  auto* x_ = std::get_if<cpu::ExitException>(&e);
  ASSERT_NE(x_, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(x_->cause, 2u);
  EXPECT_EQ(x_->tval, 0xffffffffu);
  EXPECT_EQ(x_->pc, kBase + 4);
  EXPECT_EQ(hart_.pc(), kBase + 4);
  EXPECT_NE(csr(kScause), 2u);  // not delivered
  hart_.deliver_exception(x_->cause, x_->tval);
  run_to_trap(2);
  EXPECT_EQ(csr(kSepc), kBase + 4);
  EXPECT_EQ(csr(kStval), 0xffffffffu);
  // Other exceptions are still delivered to the guest.
  load(Code{ebreak()});
  run_to_trap(3);
}

TEST_F(ExitsTest, ExceptionBitmapPageFaultFilter) {
  cpu::ExecControls c;
  c.exception_bitmap = u64{1} << 13;
  c.page_fault_filter_lo = 0x40000000;
  c.page_fault_filter_hi = 0x40001000;
  set_controls(c);
  const Gpa root = kData + 0x10000;
  for (Gpa t = root; t < root + 0x1000; t += 8) write64(t, 0);
  write64(root + 8 * 2, ((kBase >> 12) << 10) | 0xcf);
  load(Code{ld(a0, a1, 0), ld(a0, a2, 0), ecall()});
  hart_.debug_write_csr(kSatp, (u64{8} << 60) | (root >> 12));
  hart_.set_x(a1, 0x40000008);
  hart_.set_x(a2, 0x50000000);
  cpu::Exit e = run();
  auto* x_ = std::get_if<cpu::ExitException>(&e);
  ASSERT_NE(x_, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(x_->cause, 13u);
  EXPECT_EQ(x_->tval, 0x40000008u);
  hart_.set_pc(kBase + 4);  // the monitor "fixed" it by skipping
  run_to_trap(13);          // outside the filter: delivered
  EXPECT_EQ(csr(kStval), 0x50000000u);
}

TEST_F(ExitsTest, CsrIntercepts) {
  cpu::ExecControls c;
  c.csr_write_intercept.set(kSatp);
  c.csr_write_intercept.set(kSscratch);
  c.csr_read_intercept.set(kTime);
  set_controls(c);
  load(Code{csrrs(a0, kSscratch, a1), csrw(kSatp, zero), csrr(a2, kTime), ecall()});
  hart_.debug_write_csr(kSscratch, 0x10);
  hart_.set_x(a1, 0x3);
  cpu::Exit e = run();
  auto* a = std::get_if<cpu::ExitCsrAccess>(&e);
  ASSERT_NE(a, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(a->csr, kSscratch);
  EXPECT_TRUE(a->write);
  EXPECT_EQ(a->new_value, 0x13u);
  EXPECT_EQ(a->pc, kBase);
  EXPECT_EQ(csr(kSscratch), 0x10u);  // not yet executed
  e = run();                         // executes it once without intercepting
  a = std::get_if<cpu::ExitCsrAccess>(&e);
  ASSERT_NE(a, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(x(a0), 0x10u);
  EXPECT_EQ(csr(kSscratch), 0x13u);
  EXPECT_EQ(a->csr, kSatp);
  EXPECT_EQ(a->new_value, 0u);
  e = run();
  a = std::get_if<cpu::ExitCsrAccess>(&e);
  ASSERT_NE(a, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(a->csr, kTime);
  EXPECT_FALSE(a->write);
  run_to_ecall();
}

TEST_F(ExitsTest, CsrInterceptSkippedWhenMonitorMovesPc) {
  cpu::ExecControls c;
  c.csr_write_intercept.set(kSscratch);
  set_controls(c);
  load(Code{csrw(kSscratch, a1), ecall()});
  hart_.set_x(a1, 5);
  cpu::Exit e = run();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitCsrAccess>(e));
  hart_.set_pc(kBase + 4);  // emulated by the monitor
  run_to_ecall();
  EXPECT_EQ(csr(kSscratch), 0u);
}

TEST_F(ExitsTest, Breakpoints) {
  cpu::ExecControls c;
  c.breakpoints = {kBase + 8};
  set_controls(c);
  // a0 counts iterations of a 3-iteration loop whose body contains the breakpoint.
  load(Code{addi(a1, 0, 3), addi(a0, a0, 0), addi(a0, a0, 1), addi(a1, a1, -1), bne(a1, 0, -8),
            ecall()});
  hart_.set_x(a0, 0);
  for (int i = 0; i < 3; ++i) {
    cpu::Exit e = run();
    auto* b = std::get_if<cpu::ExitBreakpoint>(&e);
    ASSERT_NE(b, nullptr) << i << " " << cpu::exit_name(e);
    EXPECT_EQ(b->pc, kBase + 8);
    EXPECT_EQ(x(a0), static_cast<u64>(i));  // not executed yet
  }
  run_to_ecall();
  EXPECT_EQ(x(a0), 3u);
}

TEST_F(ExitsTest, SingleStep) {
  cpu::ExecControls c;
  c.single_step = true;
  set_controls(c);
  load(Code{addi(a0, 0, 1), jal(0, 8), addi(a0, 0, 2), addi(a1, 0, 3), ecall()});
  const u64 pcs[] = {kBase + 4, kBase + 12, kBase + 16};
  for (u64 pc : pcs) {
    cpu::Exit e = run();
    auto* s = std::get_if<cpu::ExitSingleStep>(&e);
    ASSERT_NE(s, nullptr) << cpu::exit_name(e);
    EXPECT_EQ(s->pc, pc);
    EXPECT_EQ(hart_.pc(), pc);
  }
  run_to_ecall();
  EXPECT_EQ(x(a0), 1u);
  EXPECT_EQ(x(a1), 3u);
}

TEST_F(ExitsTest, SingleStepOverATrap) {
  cpu::ExecControls c;
  c.single_step = true;
  set_controls(c);
  load(Code{0xffffffff});
  cpu::Exit e = run();
  auto* s = std::get_if<cpu::ExitSingleStep>(&e);
  ASSERT_NE(s, nullptr) << cpu::exit_name(e);
  EXPECT_EQ(s->pc, kTrapVector);
}

TEST_F(ExitsTest, BudgetExhausted) {
  load(Code{addi(a0, a0, 1), jal(0, -4)});
  hart_.set_x(a0, 0);
  const u64 before = hart_.instret();
  cpu::Exit e = run(100);
  ASSERT_TRUE(std::holds_alternative<cpu::ExitBudgetExhausted>(e)) << cpu::exit_name(e);
  EXPECT_EQ(hart_.instret() - before, 100u);
  EXPECT_EQ(x(a0), 50u);
  e = run(1);
  ASSERT_TRUE(std::holds_alternative<cpu::ExitBudgetExhausted>(e));
  EXPECT_EQ(x(a0), 51u);
}

// A guest whose trap vector itself faults takes exceptions forever without retiring an
// instruction; run(budget) must still come back (trap entries count against the budget).
TEST_F(ExitsTest, BudgetBoundsATrapStorm) {
  load(Code{0xffffffff});
  hart_.debug_write_csr(kStvec, 0x1000);  // not RAM: the fetch at the vector faults again
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 200 && !finished.load(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!finished.load()) hart_.kick();
  });
  cpu::Exit e = run(1000);
  finished = true;
  watchdog.join();
  EXPECT_TRUE(std::holds_alternative<cpu::ExitBudgetExhausted>(e))
      << "run(1000) on a trap storm returned " << cpu::exit_name(e)
      << " (ExitKicked means it only stopped because the watchdog kicked it after 2 s)";
}

TEST_F(ExitsTest, KickFromAnotherThreadStopsQuickly) {
  load(Code{jal(0, 0)});  // spin forever
  std::atomic<bool> running{false};
  steady_clock::time_point kicked_at;
  std::thread kicker([&] {
    while (!running.load()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    kicked_at = steady_clock::now();
    hart_.kick();
  });
  running = true;
  cpu::Exit e = hart_.run();
  const auto returned_at = steady_clock::now();
  kicker.join();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitKicked>(e)) << cpu::exit_name(e);
  const auto latency =
      std::chrono::duration_cast<std::chrono::microseconds>(returned_at - kicked_at);
  EXPECT_LT(latency.count(), 20000) << "kick latency " << latency.count() << " us";
}

TEST_F(ExitsTest, InterruptFromAnotherThreadWhileRunning) {
  load(Code{jal(0, 0)});
  hart_.debug_write_csr(kSie, 2);
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | 2);
  std::atomic<int> wakeups{0};
  hart_.set_wakeup([&] { wakeups++; });
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    hart_.raise_software_interrupt();
  });
  cpu::Exit e = hart_.run(2'000'000'000);
  t.join();
  // The interrupt is taken at an instruction boundary (the trap vector ends the run) or the
  // hart stopped with a kick to take it.
  for (int i = 0; i < 3 && std::holds_alternative<cpu::ExitKicked>(e); ++i) e = hart_.run(100000);
  ASSERT_TRUE(std::holds_alternative<cpu::ExitSbiCall>(e)) << cpu::exit_name(e);
  EXPECT_EQ(std::get<cpu::ExitSbiCall>(e).eid, kTrapMarker);
  EXPECT_EQ(csr(kScause), (u64{1} << 63) | 1);
  EXPECT_GE(wakeups.load(), 1);
}

TEST_F(ExitsTest, ControlsChangedWhileRunningApplyAfterKick) {
  load(Code{addi(a0, a0, 1), jal(0, -4)});
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    cpu::ExecControls c;
    c.single_step = true;
    hart_.set_controls(c);
    hart_.kick();
  });
  cpu::Exit e = hart_.run();
  t.join();
  EXPECT_TRUE(std::holds_alternative<cpu::ExitKicked>(e) ||
              std::holds_alternative<cpu::ExitSingleStep>(e))
      << cpu::exit_name(e);
  e = hart_.run();
  // If the new controls took effect before the kick landed, the kick is still pending and
  // ends this run() first; the step comes on the next.
  if (std::holds_alternative<cpu::ExitKicked>(e)) e = hart_.run();
  EXPECT_TRUE(std::holds_alternative<cpu::ExitSingleStep>(e)) << cpu::exit_name(e);
  EXPECT_TRUE(hart_.controls().single_step);
}

TEST_F(ExitsTest, FlushRequestFromAnotherThreadIsServiced) {
  load(Code{jal(0, 0)});
  std::atomic<bool> done{false};
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const u64 ticket = hart_.request_flush();
    const auto deadline = steady_clock::now() + std::chrono::seconds(2);
    while (!hart_.flush_done(ticket) && steady_clock::now() < deadline) std::this_thread::yield();
    done = hart_.flush_done(ticket);
    hart_.kick();
  });
  cpu::Exit e = hart_.run();  // the kick comes after the flush (or after 2 s)
  t.join();
  EXPECT_TRUE(std::holds_alternative<cpu::ExitKicked>(e)) << cpu::exit_name(e);
  EXPECT_TRUE(done.load());
}

TEST_F(ExitsTest, ExitNames) {
  EXPECT_STRNE(cpu::exit_name(cpu::Exit{cpu::ExitWfi{}}), "");
  EXPECT_STRNE(cpu::exit_name(cpu::Exit{cpu::ExitKicked{}}),
               cpu::exit_name(cpu::Exit{cpu::ExitBudgetExhausted{}}));
}

}  // namespace
}  // namespace dvmm::test
