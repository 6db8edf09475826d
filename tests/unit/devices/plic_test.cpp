#include "devices/plic.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace dvmm::devices {
namespace {

constexpr u64 kClaim0 = Plic::kContextBase + 4;
constexpr u64 kThreshold0 = Plic::kContextBase;
u64 claim_of(unsigned ctx) {
  return Plic::kContextBase + ctx * Plic::kContextStride + 4;
}
u64 threshold_of(unsigned ctx) {
  return Plic::kContextBase + ctx * Plic::kContextStride;
}
u64 enable_of(unsigned ctx, unsigned word = 0) {
  return Plic::kEnableBase + ctx * Plic::kEnableStride + 4 * word;
}
u64 priority_of(u32 id) {
  return Plic::kPriorityBase + 4 * id;
}

class PlicTest : public ::testing::Test {
 protected:
  PlicTest() : plic_(make_callbacks()) {}

  std::vector<Plic::ContextCallback> make_callbacks() {
    std::vector<Plic::ContextCallback> cbs;
    for (unsigned i = 0; i < 2; ++i) {
      cbs.emplace_back([this, i](bool level) {
        levels_[i] = level;
        ++calls_[i];
      });
    }
    return cbs;
  }

  bool levels_[2] = {false, false};
  int calls_[2] = {0, 0};
  Plic plic_;
};

TEST_F(PlicTest, NothingPendingAfterReset) {
  EXPECT_EQ(plic_.read(kClaim0, 4), 0u);
  EXPECT_EQ(plic_.read(Plic::kPendingBase, 4), 0u);
  EXPECT_FALSE(levels_[0]);
  EXPECT_EQ(plic_.context_count(), 2u);
}

TEST_F(PlicTest, ClaimAndComplete) {
  plic_.write(priority_of(10), 4, 1);
  plic_.write(enable_of(0), 4, 1u << 10);
  plic_.set_source_level(10, true);
  EXPECT_TRUE(levels_[0]);
  EXPECT_FALSE(levels_[1]);  // not enabled for context 1
  EXPECT_EQ(plic_.read(Plic::kPendingBase, 4), 1u << 10);

  EXPECT_EQ(plic_.read(kClaim0, 4), 10u);
  EXPECT_FALSE(levels_[0]);  // claimed: no longer pending
  EXPECT_EQ(plic_.read(Plic::kPendingBase, 4), 0u);
  EXPECT_EQ(plic_.read(kClaim0, 4), 0u);  // nothing else

  // The line is still high: the gateway holds the request until completion...
  plic_.write(kClaim0, 4, 10);
  // ...and then forwards it again (level-triggered).
  EXPECT_TRUE(levels_[0]);
  EXPECT_EQ(plic_.read(kClaim0, 4), 10u);
  plic_.set_source_level(10, false);
  plic_.write(kClaim0, 4, 10);
  EXPECT_FALSE(levels_[0]);
  EXPECT_EQ(plic_.read(kClaim0, 4), 0u);
}

TEST_F(PlicTest, LineDroppedBeforeClaimWithdrawsRequest) {
  plic_.write(priority_of(3), 4, 1);
  plic_.write(enable_of(0), 4, 1u << 3);
  plic_.set_source_level(3, true);
  EXPECT_TRUE(levels_[0]);
  plic_.set_source_level(3, false);
  EXPECT_FALSE(levels_[0]);
  EXPECT_EQ(plic_.read(kClaim0, 4), 0u);
}

TEST_F(PlicTest, PriorityZeroNeverInterrupts) {
  plic_.write(enable_of(0), 4, 1u << 5);
  plic_.set_source_level(5, true);
  EXPECT_FALSE(levels_[0]);
  EXPECT_EQ(plic_.read(kClaim0, 4), 0u);
  plic_.write(priority_of(5), 4, 2);
  EXPECT_TRUE(levels_[0]);
}

TEST_F(PlicTest, HighestPriorityWinsTiesToLowestId) {
  plic_.write(enable_of(0), 4, (1u << 4) | (1u << 7) | (1u << 9));
  plic_.write(priority_of(4), 4, 2);
  plic_.write(priority_of(7), 4, 5);
  plic_.write(priority_of(9), 4, 5);
  plic_.set_source_level(4, true);
  plic_.set_source_level(7, true);
  plic_.set_source_level(9, true);
  EXPECT_EQ(plic_.read(kClaim0, 4), 7u);
  EXPECT_EQ(plic_.read(kClaim0, 4), 9u);
  EXPECT_EQ(plic_.read(kClaim0, 4), 4u);
  EXPECT_EQ(plic_.read(kClaim0, 4), 0u);
}

TEST_F(PlicTest, ThresholdMasks) {
  plic_.write(enable_of(0), 4, 1u << 10);
  plic_.write(priority_of(10), 4, 3);
  plic_.write(kThreshold0, 4, 3);
  EXPECT_EQ(plic_.read(kThreshold0, 4), 3u);
  plic_.set_source_level(10, true);
  EXPECT_FALSE(levels_[0]);  // priority must exceed the threshold
  EXPECT_EQ(plic_.read(kClaim0, 4), 0u);
  plic_.write(kThreshold0, 4, 2);
  EXPECT_TRUE(levels_[0]);
  plic_.write(kThreshold0, 4, 7);
  EXPECT_FALSE(levels_[0]);
}

TEST_F(PlicTest, PriorityAndThresholdAreThreeBits) {
  plic_.write(priority_of(1), 4, 0xffff'ffff);
  EXPECT_EQ(plic_.read(priority_of(1), 4), Plic::kMaxPriority);
  plic_.write(threshold_of(1), 4, 0xff);
  EXPECT_EQ(plic_.read(threshold_of(1), 4), Plic::kMaxPriority);
  // Source 0 does not exist.
  plic_.write(priority_of(0), 4, 1);
  EXPECT_EQ(plic_.read(priority_of(0), 4), 0u);
}

TEST_F(PlicTest, EnablesPerContextAndSourceZeroHardwired) {
  plic_.write(enable_of(1, 0), 4, 0xffff'ffff);
  plic_.write(enable_of(1, 1), 4, 0x8000'0001);
  EXPECT_EQ(plic_.read(enable_of(1, 0), 4), 0xffff'fffeu);
  EXPECT_EQ(plic_.read(enable_of(1, 1), 4), 0x8000'0001u);
  EXPECT_EQ(plic_.read(enable_of(0, 0), 4), 0u);

  // Source 63 lives in the second word.
  plic_.write(priority_of(63), 4, 1);
  plic_.set_source_level(63, true);
  EXPECT_FALSE(levels_[0]);
  EXPECT_TRUE(levels_[1]);
  EXPECT_EQ(plic_.read(Plic::kPendingBase + 4, 4), 0x8000'0000u);
  EXPECT_EQ(plic_.read(claim_of(1), 4), 63u);
}

TEST_F(PlicTest, TwoContextsShareOneSource) {
  plic_.write(priority_of(10), 4, 1);
  plic_.write(enable_of(0), 4, 1u << 10);
  plic_.write(enable_of(1), 4, 1u << 10);
  plic_.set_source_level(10, true);
  EXPECT_TRUE(levels_[0]);
  EXPECT_TRUE(levels_[1]);
  // The first claim wins; the other context sees nothing and its output drops.
  EXPECT_EQ(plic_.read(claim_of(1), 4), 10u);
  EXPECT_FALSE(levels_[0]);
  EXPECT_EQ(plic_.read(claim_of(0), 4), 0u);
}

TEST_F(PlicTest, CompletionOfSourceNotEnabledIsIgnored) {
  plic_.write(priority_of(10), 4, 1);
  plic_.write(enable_of(0), 4, 1u << 10);
  plic_.set_source_level(10, true);
  ASSERT_EQ(plic_.read(kClaim0, 4), 10u);
  plic_.write(claim_of(1), 4, 10);  // context 1 does not have 10 enabled
  EXPECT_FALSE(levels_[0]);
  plic_.write(kClaim0, 4, 10);
  EXPECT_TRUE(levels_[0]);
}

TEST_F(PlicTest, CallbackOnlyOnChange) {
  plic_.write(priority_of(10), 4, 1);
  plic_.write(enable_of(0), 4, 1u << 10);
  const int before = calls_[0];
  plic_.set_source_level(10, true);
  plic_.set_source_level(10, true);
  plic_.write(priority_of(10), 4, 2);
  EXPECT_EQ(calls_[0], before + 1);
}

TEST_F(PlicTest, IrqLineDrivesSource) {
  plic_.write(priority_of(10), 4, 1);
  plic_.write(enable_of(0), 4, 1u << 10);
  plic_.line(10).set_level(true);
  EXPECT_TRUE(levels_[0]);
  plic_.line(10).set_level(false);
  EXPECT_FALSE(levels_[0]);
}

TEST_F(PlicTest, ResetClearsConfigurationButKeepsLevels) {
  plic_.write(priority_of(10), 4, 1);
  plic_.write(enable_of(0), 4, 1u << 10);
  plic_.set_source_level(10, true);
  ASSERT_TRUE(levels_[0]);
  plic_.reset();
  EXPECT_FALSE(levels_[0]);
  EXPECT_EQ(plic_.read(priority_of(10), 4), 0u);
  EXPECT_EQ(plic_.read(enable_of(0), 4), 0u);
  EXPECT_EQ(plic_.read(Plic::kPendingBase, 4), 1u << 10);
}

TEST_F(PlicTest, NarrowReadsDoNotClaim) {
  plic_.write(priority_of(10), 4, 1);
  plic_.write(enable_of(0), 4, 1u << 10);
  plic_.set_source_level(10, true);
  EXPECT_EQ(plic_.read(kClaim0, 1), 0u);
  EXPECT_TRUE(levels_[0]);
  EXPECT_EQ(plic_.read(priority_of(10), 1), 1u);
}

TEST_F(PlicTest, OutOfRangeContextsReadZero) {
  EXPECT_EQ(plic_.read(claim_of(5), 4), 0u);
  plic_.write(threshold_of(5), 4, 1);  // ignored, no crash
  EXPECT_EQ(plic_.read(enable_of(7), 4), 0u);
}

}  // namespace
}  // namespace dvmm::devices
