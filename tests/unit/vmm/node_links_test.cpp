// The SBI routes calls for harts on other nodes through NodeLinks (issue 4): IPIs, remote
// fences, HSM start and status. Local harts are handled as on one node.
#include "vmm/node_links.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "vmm/sbi.hpp"

namespace dvmm::vmm {
namespace {

constexpr Gpa kRamBase = 0x8000'0000;
constexpr u16 kSip = 0x144;
constexpr u64 kSsip = u64{1} << 1;

// Harts 0..1 local, 2..3 on "another node"; records what the SBI asked of it.
class FakeLinks final : public NodeLinks {
 public:
  bool is_local(HartId id) const override { return id < 2; }
  void send_ipi(HartId id) override { ipis.push_back(id); }
  void remote_fence(const std::vector<HartId>& harts, const Serve& serve) override {
    fenced.insert(fenced.end(), harts.begin(), harts.end());
    if (serve) serve();
  }
  i64 hart_start(HartId id, u64 addr, u64 opaque, const Serve&) override {
    started.push_back({id, addr, opaque});
    return kSbiSuccess;
  }
  std::optional<HsmState> hart_status(HartId id, const Serve&) override {
    if (id == 3) return std::nullopt;
    return HsmState::kStarted;
  }
  void set_external_interrupt(HartId, bool) override {}
  bool mmio_is_local(Gpa) const override { return true; }
  u64 mmio_read(Gpa, unsigned, const Serve&) override { return 0; }
  void mmio_write(Gpa, unsigned, u64, const Serve&) override {}
  bool acquire_page(Gpa, memory::AccessType, const Serve&) override { return false; }

  std::vector<HartId> ipis, fenced;
  struct Start {
    HartId id;
    u64 addr, opaque;
  };
  std::vector<Start> started;
};

class Platform final : public SbiPlatform {
 public:
  Platform() : ram_(kRamBase, u64{16} << 20) {
    for (unsigned i = 0; i < 4; ++i) harts_.push_back(std::make_unique<cpu::Hart>(i, ram_, time_));
  }
  unsigned hart_count() const override { return 4; }
  cpu::Hart& hart(HartId id) override { return *harts_.at(id); }
  memory::GuestRam& ram() override { return ram_; }
  void console_write(std::string_view) override {}
  int console_read() override { return -1; }
  void wake(HartId id) override { woken.push_back(id); }
  bool stopping() const override { return false; }
  NodeLinks& links() override { return links_; }

  FakeLinks links_;
  std::vector<HartId> woken;

 private:
  cpu::HostMonotonicTime time_;
  memory::GuestRam ram_;
  std::vector<std::unique_ptr<cpu::Hart>> harts_;
};

class NodeLinksSbiTest : public ::testing::Test {
 protected:
  NodeLinksSbiTest() : sbi_(p_) {}
  std::pair<i64, u64> call(HartId hart, u64 eid, u64 fid, std::initializer_list<u64> args = {}) {
    cpu::ExitSbiCall c{eid, fid, {}};
    std::size_t i = 0;
    for (u64 a : args) c.args[i++] = a;
    cpu::Hart& h = p_.hart(hart);
    sbi_.handle(h, c);
    return {static_cast<i64>(h.x(10)), h.x(11)};
  }
  bool ssip(HartId h) { return (p_.hart(h).debug_read_csr(kSip).value_or(0) & kSsip) != 0; }
  Platform p_;
  Sbi sbi_;
};

TEST_F(NodeLinksSbiTest, IpiGoesToLocalHartsDirectlyAndRemoteOnesThroughLinks) {
  EXPECT_EQ(call(0, kSbiExtIpi, 0, {0b1110, 0}).first, kSbiSuccess);
  EXPECT_FALSE(ssip(0));
  EXPECT_TRUE(ssip(1));
  EXPECT_FALSE(ssip(2));  // the object exists here, but the hart runs elsewhere
  EXPECT_EQ(p_.links_.ipis, (std::vector<HartId>{2, 3}));
}

TEST_F(NodeLinksSbiTest, RemoteFenceCoversOnlyRemoteHarts) {
  EXPECT_EQ(call(0, kSbiExtRfence, 0, {0b1101, 0}).first, kSbiSuccess);
  EXPECT_EQ(p_.links_.fenced, (std::vector<HartId>{2, 3}));
}

TEST_F(NodeLinksSbiTest, HsmStartAndStatusOfRemoteHarts) {
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {2, kRamBase + 0x1000, 7}).first, kSbiSuccess);
  ASSERT_EQ(p_.links_.started.size(), 1u);
  EXPECT_EQ(p_.links_.started[0].id, 2u);
  EXPECT_EQ(p_.links_.started[0].addr, kRamBase + 0x1000);
  EXPECT_EQ(p_.links_.started[0].opaque, 7u);
  EXPECT_TRUE(p_.woken.empty());                 // no local vCPU to wake
  EXPECT_EQ(sbi_.state(2), HsmState::kStopped);  // this node's copy is not the truth

  EXPECT_EQ(call(0, kSbiExtHsm, 2, {2}), (std::pair<i64, u64>{kSbiSuccess, 0}));  // started
  EXPECT_EQ(call(0, kSbiExtHsm, 2, {3}).first, kSbiErrFailed);

  // A local hart: as on one node.
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {1, kRamBase, 0}).first, kSbiSuccess);
  EXPECT_EQ(sbi_.state(1), HsmState::kStartPending);
  EXPECT_EQ(p_.woken, (std::vector<HartId>{1}));
  // A bad address is refused before anything crosses nodes.
  EXPECT_EQ(call(0, kSbiExtHsm, 0, {3, 0x1000, 0}).first, kSbiErrInvalidAddress);
  EXPECT_EQ(p_.links_.started.size(), 1u);
}

TEST_F(NodeLinksSbiTest, ForwardedStartOfALocalHart) {
  EXPECT_EQ(sbi_.hart_start_local(1, kRamBase, 3), kSbiSuccess);
  EXPECT_EQ(sbi_.hart_start_local(1, kRamBase, 3), kSbiErrAlreadyAvailable);
  EXPECT_EQ(sbi_.hart_start_local(9, kRamBase, 3), kSbiErrInvalidParam);
}

}  // namespace
}  // namespace dvmm::vmm
