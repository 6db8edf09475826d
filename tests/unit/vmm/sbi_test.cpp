#include "vmm/sbi.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <thread>

namespace dvmm::vmm {
namespace {

constexpr Gpa kRamBase = 0x8000'0000;
constexpr u16 kSip = 0x144;
constexpr u64 kSsip = u64{1} << 1;

class FakePlatform final : public SbiPlatform {
 public:
  explicit FakePlatform(unsigned n) : ram_(kRamBase, u64{16} << 20) {
    for (unsigned i = 0; i < n; ++i) harts_.push_back(std::make_unique<cpu::Hart>(i, ram_, time_));
  }
  unsigned hart_count() const override { return static_cast<unsigned>(harts_.size()); }
  cpu::Hart& hart(HartId id) override { return *harts_.at(id); }
  memory::GuestRam& ram() override { return ram_; }
  void console_write(std::string_view b) override { console.append(b); }
  int console_read() override {
    if (input.empty()) return -1;
    const int c = static_cast<unsigned char>(input.front());
    input.pop_front();
    return c;
  }
  void wake(HartId id) override { woken.push_back(id); }
  bool stopping() const override { return stop.load(); }

  std::string console;
  std::deque<char> input;
  std::vector<HartId> woken;
  std::atomic<bool> stop{false};

 private:
  cpu::HostMonotonicTime time_;
  memory::GuestRam ram_;
  std::vector<std::unique_ptr<cpu::Hart>> harts_;
};

class SbiTest : public ::testing::Test {
 protected:
  SbiTest() : p_(4), sbi_(p_, 0x000100) {}

  // Makes an SBI call from `hart` and returns (a0, a1).
  std::pair<i64, u64> call(HartId hart, u64 eid, u64 fid, std::initializer_list<u64> args = {},
                           SbiOutcome* outcome = nullptr) {
    cpu::ExitSbiCall c{eid, fid, {}};
    std::size_t i = 0;
    for (u64 a : args) c.args[i++] = a;
    cpu::Hart& h = p_.hart(hart);
    h.set_x(10, c.args[0]);
    h.set_x(11, c.args[1]);
    const SbiOutcome o = sbi_.handle(h, c);
    if (outcome != nullptr) *outcome = o;
    return {static_cast<i64>(h.x(10)), h.x(11)};
  }
  bool ssip(HartId h) { return (p_.hart(h).debug_read_csr(kSip).value_or(0) & kSsip) != 0; }

  FakePlatform p_;
  Sbi sbi_;
};

TEST_F(SbiTest, Base) {
  EXPECT_EQ(call(0, kSbiExtBase, 0), (std::pair<i64, u64>{0, 0x0200'0000}));
  EXPECT_EQ(call(0, kSbiExtBase, 1).second, Sbi::kImplId);
  EXPECT_EQ(call(0, kSbiExtBase, 2).second, 0x000100u);
  for (u64 eid :
       {u64{kSbiExtTime}, u64{kSbiExtIpi}, u64{kSbiExtRfence}, u64{kSbiExtHsm}, u64{kSbiExtSrst},
        u64{kSbiExtDbcn}, u64{kSbiLegacyConsolePutchar}, u64{kSbiExtBase}}) {
    EXPECT_EQ(call(0, kSbiExtBase, 3, {eid}), (std::pair<i64, u64>{0, 1})) << std::hex << eid;
  }
  EXPECT_EQ(call(0, kSbiExtBase, 3, {0x504D55}).second, 0u);  // PMU: not offered
  EXPECT_EQ(call(0, kSbiExtBase, 4), (std::pair<i64, u64>{0, 0}));
  EXPECT_EQ(call(0, kSbiExtBase, 5), (std::pair<i64, u64>{0, 0}));
  EXPECT_EQ(call(0, kSbiExtBase, 6), (std::pair<i64, u64>{0, 0}));
  EXPECT_EQ(call(0, kSbiExtBase, 7).first, kSbiErrNotSupported);
}

TEST_F(SbiTest, UnknownExtension) {
  EXPECT_EQ(call(0, 0x0A00'0000, 0).first, kSbiErrNotSupported);
  EXPECT_EQ(call(0, 0x504D55, 0).first, kSbiErrNotSupported);
  EXPECT_EQ(call(0, kSbiExtTime, 1).first, kSbiErrNotSupported);
}

TEST_F(SbiTest, SetTimerWritesStimecmp) {
  EXPECT_EQ(call(1, kSbiExtTime, 0, {123456789}).first, kSbiSuccess);
  EXPECT_EQ(p_.hart(1).timer_deadline(), 123456789u);
  // Legacy set_timer too.
  call(1, kSbiLegacySetTimer, 0, {42});
  EXPECT_EQ(p_.hart(1).timer_deadline(), 42u);
}

TEST_F(SbiTest, SendIpi) {
  EXPECT_EQ(call(0, kSbiExtIpi, 0, {0b1010, 0}).first, kSbiSuccess);
  EXPECT_FALSE(ssip(0));
  EXPECT_TRUE(ssip(1));
  EXPECT_FALSE(ssip(2));
  EXPECT_TRUE(ssip(3));
}

TEST_F(SbiTest, SendIpiWithBase) {
  EXPECT_EQ(call(0, kSbiExtIpi, 0, {0b1, 2}).first, kSbiSuccess);
  EXPECT_TRUE(ssip(2));
  EXPECT_FALSE(ssip(1));
}

TEST_F(SbiTest, SendIpiToAll) {
  EXPECT_EQ(call(0, kSbiExtIpi, 0, {0, ~u64{0}}).first, kSbiSuccess);
  for (HartId h = 0; h < 4; ++h) EXPECT_TRUE(ssip(h));
}

TEST_F(SbiTest, SendIpiInvalidHartChangesNothing) {
  EXPECT_EQ(call(0, kSbiExtIpi, 0, {0b10001, 0}).first, kSbiErrInvalidParam);  // hart 4
  EXPECT_FALSE(ssip(0));
  EXPECT_EQ(call(0, kSbiExtIpi, 0, {0b1, 4}).first, kSbiErrInvalidParam);
}

TEST_F(SbiTest, LegacySendIpiReadsMaskFromMemory) {
  const u64 mask = 0b100;
  ASSERT_TRUE(p_.ram().write(kRamBase + 0x2000, &mask, sizeof mask));
  // Paging is off after reset, so the "virtual" address is physical.
  const auto r = call(0, kSbiLegacySendIpi, 0, {kRamBase + 0x2000, 777});
  EXPECT_EQ(r.first, 0);
  EXPECT_EQ(r.second, 777u);  // legacy calls leave a1 alone
  EXPECT_TRUE(ssip(2));
  EXPECT_FALSE(ssip(1));
  // Clear it again through the legacy clear_ipi (from hart 2 itself).
  call(2, kSbiLegacyClearIpi, 0);
  EXPECT_FALSE(ssip(2));
}

TEST_F(SbiTest, LegacyConsole) {
  auto r = call(0, kSbiLegacyConsolePutchar, 0, {'Z', 99});
  EXPECT_EQ(r, (std::pair<i64, u64>{0, 99}));
  EXPECT_EQ(p_.console, "Z");
  r = call(0, kSbiLegacyConsoleGetchar, 0, {0, 5});
  EXPECT_EQ(r, (std::pair<i64, u64>{-1, 5}));
  p_.input.push_back('q');
  EXPECT_EQ(call(0, kSbiLegacyConsoleGetchar, 0).first, 'q');
  EXPECT_EQ(call(0, 0x0F, 0).first, kSbiErrNotSupported);
}

TEST_F(SbiTest, DebugConsole) {
  const char text[] = "hello, world";
  ASSERT_TRUE(p_.ram().write(kRamBase + 0x1000, text, 12));
  EXPECT_EQ(call(0, kSbiExtDbcn, 0, {12, kRamBase + 0x1000, 0}), (std::pair<i64, u64>{0, 12}));
  EXPECT_EQ(p_.console, "hello, world");
  EXPECT_EQ(call(0, kSbiExtDbcn, 2, {'!'}).first, 0);
  EXPECT_EQ(p_.console, "hello, world!");
  // Outside RAM, or with the high address half set: invalid.
  EXPECT_EQ(call(0, kSbiExtDbcn, 0, {4, 0x1000, 0}).first, kSbiErrInvalidParam);
  EXPECT_EQ(call(0, kSbiExtDbcn, 0, {4, kRamBase, 1}).first, kSbiErrInvalidParam);
  // Read: as much as there is.
  p_.input = {'a', 'b'};
  EXPECT_EQ(call(0, kSbiExtDbcn, 1, {8, kRamBase + 0x3000, 0}), (std::pair<i64, u64>{0, 2}));
  char got[2] = {};
  ASSERT_TRUE(p_.ram().read(kRamBase + 0x3000, got, 2));
  EXPECT_EQ(std::string(got, 2), "ab");
  EXPECT_EQ(call(0, kSbiExtDbcn, 1, {8, kRamBase + 0x3000, 0}), (std::pair<i64, u64>{0, 0}));
}

TEST_F(SbiTest, HsmStateMachine) {
  // After reset: hart 0 runs, the others wait stopped.
  EXPECT_EQ(call(0, kSbiExtHsm, 2, {0}), (std::pair<i64, u64>{0, 0}));  // STARTED
  EXPECT_EQ(call(0, kSbiExtHsm, 2, {1}), (std::pair<i64, u64>{0, 1}));  // STOPPED
  EXPECT_EQ(call(0, kSbiExtHsm, 2, {4}).first, kSbiErrInvalidParam);

  EXPECT_EQ(call(0, kSbiExtHsm, 0, {1, kRamBase + 0x1000, 0xabcd}).first, kSbiSuccess);
  EXPECT_EQ(sbi_.state(1), HsmState::kStartPending);
  EXPECT_EQ(call(0, kSbiExtHsm, 2, {1}).second, 2u);  // START_PENDING
  ASSERT_EQ(p_.woken.size(), 1u);
  EXPECT_EQ(p_.woken[0], 1u);
  // Starting it again before it runs: already available.
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {1, kRamBase, 0}).first, kSbiErrAlreadyAvailable);
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {0, kRamBase, 0}).first, kSbiErrAlreadyAvailable);

  const auto start = sbi_.take_start(1);
  ASSERT_TRUE(start.has_value());
  EXPECT_EQ(start->start_addr, kRamBase + 0x1000);
  EXPECT_EQ(start->opaque, 0xabcdu);
  EXPECT_EQ(sbi_.state(1), HsmState::kStarted);
  EXPECT_FALSE(sbi_.take_start(1).has_value());

  // hart_stop from hart 1 itself does not return: the vCPU parks the hart.
  SbiOutcome out;
  call(1, kSbiExtHsm, 1, {}, &out);
  EXPECT_EQ(out.action, SbiOutcome::Action::kStopHart);
  EXPECT_EQ(sbi_.state(1), HsmState::kStopPending);
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {1, kRamBase, 0}).first, kSbiErrAlreadyAvailable);
  sbi_.finish_stop(1);
  EXPECT_EQ(sbi_.state(1), HsmState::kStopped);
  // Now it can be started again.
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {1, kRamBase, 0}).first, kSbiSuccess);
}

TEST_F(SbiTest, HsmStartChecksAddressAndHart) {
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {2, 0x1000, 0}).first, kSbiErrInvalidAddress);
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {9, kRamBase, 0}).first, kSbiErrInvalidParam);
  EXPECT_EQ(sbi_.state(2), HsmState::kStopped);
}

TEST_F(SbiTest, HsmSuspend) {
  SbiOutcome out;
  EXPECT_EQ(call(0, kSbiExtHsm, 3, {0, 0, 0}, &out).first, kSbiSuccess);
  EXPECT_EQ(out.action, SbiOutcome::Action::kSuspend);
  EXPECT_EQ(call(1, kSbiExtHsm, 2, {0}).second, 4u);  // SUSPENDED
  sbi_.end_suspend(0);
  EXPECT_EQ(sbi_.state(0), HsmState::kStarted);
  EXPECT_EQ(call(0, kSbiExtHsm, 3, {1, 0, 0}).first, kSbiErrInvalidParam);
  EXPECT_EQ(call(0, kSbiExtHsm, 3, {0x8000'0000, kRamBase, 0}).first, kSbiErrNotSupported);
  EXPECT_EQ(sbi_.state(0), HsmState::kStarted);
}

TEST_F(SbiTest, SystemReset) {
  SbiOutcome out;
  call(0, kSbiExtSrst, 0, {0, 0}, &out);
  EXPECT_EQ(out.action, SbiOutcome::Action::kShutdown);
  EXPECT_EQ(out.status, 0u);
  call(0, kSbiExtSrst, 0, {0, 1}, &out);
  EXPECT_EQ(out.action, SbiOutcome::Action::kShutdown);
  EXPECT_EQ(out.status, 1u);
  call(0, kSbiExtSrst, 0, {1, 0}, &out);
  EXPECT_EQ(out.action, SbiOutcome::Action::kReboot);
  call(0, kSbiExtSrst, 0, {2, 0}, &out);
  EXPECT_EQ(out.action, SbiOutcome::Action::kReboot);
  EXPECT_EQ(call(0, kSbiExtSrst, 0, {3, 0}, &out).first, kSbiErrInvalidParam);
  EXPECT_EQ(out.action, SbiOutcome::Action::kResume);
  EXPECT_EQ(call(0, kSbiExtSrst, 0, {0, 2}, &out).first, kSbiErrInvalidParam);
  call(0, kSbiLegacyShutdown, 0, {}, &out);
  EXPECT_EQ(out.action, SbiOutcome::Action::kShutdown);
}

TEST_F(SbiTest, RemoteFenceWaitsForTheTarget) {
  std::atomic<bool> served{false};
  // Hart 2's "vCPU thread": serves its requests only after a while.
  std::thread target([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    served.store(true);
    p_.hart(2).service_requests();
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(call(0, kSbiExtRfence, 1, {0b100, 0, 0, ~u64{0}}).first, kSbiSuccess);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(served.load());  // did not return before the target flushed
  EXPECT_GE(waited, std::chrono::milliseconds(50));
  target.join();
}

TEST_F(SbiTest, RemoteFenceOnSelfIsImmediate) {
  EXPECT_EQ(call(1, kSbiExtRfence, 0, {0b10, 0}).first, kSbiSuccess);
  EXPECT_EQ(call(1, kSbiExtRfence, 2, {0b1, 1, 0, 4096, 7}).first, kSbiSuccess);
  EXPECT_EQ(call(1, kSbiExtRfence, 3, {0b1, 1}).first, kSbiErrNotSupported);  // hfence
  EXPECT_EQ(call(1, kSbiExtRfence, 0, {0b1, 9}).first, kSbiErrInvalidParam);
}

TEST_F(SbiTest, TwoHartsFencingEachOtherDoNotDeadlock) {
  // Each hart's thread fences the other: each must serve its own requests while waiting.
  // Each thread then goes on serving its hart, as a vCPU thread would, until both are done.
  std::atomic<int> finished{0};
  std::thread t1([&] {
    cpu::ExitSbiCall c{kSbiExtRfence, 0, {0b1, 0}};  // hart 1 -> hart 0
    sbi_.handle(p_.hart(1), c);
    finished.fetch_add(1);
    while (finished.load() < 2) p_.hart(1).service_requests();
  });
  cpu::ExitSbiCall c{kSbiExtRfence, 0, {0b10, 0}};  // hart 0 -> hart 1
  sbi_.handle(p_.hart(0), c);
  finished.fetch_add(1);
  while (finished.load() < 2) p_.hart(0).service_requests();
  t1.join();
  SUCCEED();
}

TEST_F(SbiTest, RemoteFenceGivesUpWhenTheVmStops) {
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    p_.stop.store(true);
  });
  // Nobody serves hart 3: only the VM stopping ends the wait.
  EXPECT_EQ(call(0, kSbiExtRfence, 0, {0b1000, 0}).first, kSbiSuccess);
  stopper.join();
}

TEST_F(SbiTest, CountsCalls) {
  call(0, kSbiExtBase, 0);
  call(0, kSbiExtBase, 0);
  call(0, kSbiLegacyConsolePutchar, 0, {'x'});
  EXPECT_EQ(sbi_.calls(Sbi::extension_index(kSbiExtBase)), 2u);
  EXPECT_EQ(sbi_.calls(0), 1u);
}

}  // namespace
}  // namespace dvmm::vmm
