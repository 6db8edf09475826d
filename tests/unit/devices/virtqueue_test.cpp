// The device side of a split virtqueue (devices/virtio/virtqueue.*), driven synchronously:
// the driver's rings are laid out in a fake RAM by DriverRing (virtio_test_driver.hpp).
#include "devices/virtio/virtqueue.hpp"

#include <gtest/gtest.h>

#include <string>

#include "unit/devices/virtio_test_driver.hpp"

namespace dvmm::devices {
namespace {

using testing::Buffer;
using testing::DriverRing;
using testing::FakeRam;
using testing::RamAllocator;

constexpr u16 kSize = 8;

class VirtqueueTest : public ::testing::Test {
 protected:
  VirtqueueTest() : ring_(DriverRing::allocate(ram_, alloc_, kSize)) {}

  void configure(bool event_idx = false) {
    ASSERT_EQ(queue_.configure(kSize, ring_.desc(), ring_.avail(), ring_.used(), event_idx), "");
  }
  // Pops the next chain and expects it to be broken with a message containing `what`.
  void expect_broken(const std::string& what) {
    try {
      queue_.pop();
      ADD_FAILURE() << "no VirtioError (expected \"" << what << "\")";
    } catch (const VirtioError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
  Gpa buf(u64 size) { return alloc_.alloc(size); }

  FakeRam ram_{256 << 10};
  RamAllocator alloc_{ram_};
  DriverRing ring_;
  Virtqueue queue_{ram_, 16};
};

TEST_F(VirtqueueTest, ConfigureChecksSizeAndAlignment) {
  const Gpa d = ring_.desc(), a = ring_.avail(), u = ring_.used();
  EXPECT_NE(queue_.configure(0, d, a, u, false), "");
  EXPECT_NE(queue_.configure(3, d, a, u, false), "");
  EXPECT_NE(queue_.configure(32, d, a, u, false), "");  // above max_size (16)
  EXPECT_NE(queue_.configure(8, d + 8, a, u, false), "");
  EXPECT_NE(queue_.configure(8, d, a + 1, u, false), "");
  EXPECT_NE(queue_.configure(8, d, a, u + 2, false), "");
  EXPECT_FALSE(queue_.ready());
  EXPECT_EQ(queue_.configure(16, d, a, u, false), "");
  EXPECT_TRUE(queue_.ready());
  EXPECT_EQ(queue_.size(), 16);
  EXPECT_EQ(queue_.max_size(), 16);
  queue_.reset();
  EXPECT_FALSE(queue_.ready());
  EXPECT_FALSE(queue_.pop().has_value());
}

TEST_F(VirtqueueTest, EmptyRingPopsNothing) {
  EXPECT_FALSE(queue_.pop().has_value());  // not configured
  configure();
  EXPECT_FALSE(queue_.pop().has_value());
  EXPECT_EQ(queue_.chains_popped(), 0u);
}

TEST_F(VirtqueueTest, DirectChainGivesSegmentsInOrder) {
  configure();
  const Gpa a = buf(10), b = buf(20), c = buf(30);
  const u16 head = ring_.add({{a, 10, false}, {b, 20, false}, {c, 30, true}});
  auto chain = queue_.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->head, head);
  ASSERT_EQ(chain->segments.size(), 3u);
  EXPECT_EQ(chain->segments[0].addr, a);
  EXPECT_EQ(chain->segments[0].len, 10u);
  EXPECT_FALSE(chain->segments[0].device_writable);
  EXPECT_EQ(chain->segments[1].addr, b);
  EXPECT_EQ(chain->segments[2].addr, c);
  EXPECT_TRUE(chain->segments[2].device_writable);
  EXPECT_EQ(chain->readable_bytes(), 30u);
  EXPECT_EQ(chain->writable_bytes(), 30u);
  EXPECT_EQ(queue_.chains_popped(), 1u);
  EXPECT_FALSE(queue_.pop().has_value());
}

TEST_F(VirtqueueTest, ChainUsingEveryDescriptorIsNotALoop) {
  configure();
  std::vector<Buffer> bufs;
  for (int i = 0; i < kSize; ++i) bufs.push_back({buf(4), 4, i >= 4});
  ring_.add(bufs);
  auto chain = queue_.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->segments.size(), kSize);
}

TEST_F(VirtqueueTest, ZeroLengthDescriptorsAreSkipped) {
  configure();
  const Gpa a = buf(8);
  ring_.add({{a, 0, false}, {a, 8, false}, {a, 0, true}});
  auto chain = queue_.pop();
  ASSERT_TRUE(chain.has_value());
  ASSERT_EQ(chain->segments.size(), 1u);
  EXPECT_EQ(chain->segments[0].len, 8u);
}

TEST_F(VirtqueueTest, IndirectChain) {
  configure();
  const Gpa a = buf(16), b = buf(100);
  const u16 head = ring_.add({{a, 16, false}, {b, 100, true}}, true, &alloc_);
  auto chain = queue_.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_EQ(chain->head, head);
  ASSERT_EQ(chain->segments.size(), 2u);
  EXPECT_EQ(chain->segments[0].addr, a);
  EXPECT_EQ(chain->segments[1].addr, b);
  EXPECT_TRUE(chain->segments[1].device_writable);
  EXPECT_EQ(ring_.free_descriptors(), kSize - 1u);  // one ring descriptor for the table
}

TEST_F(VirtqueueTest, ChainCopiesGatherAndScatterAcrossSegments) {
  configure();
  const Gpa r1 = buf(3), r2 = buf(5), w1 = buf(4), w2 = buf(6);
  ram_.poke(r1, std::vector<u8>{1, 2, 3});
  ram_.poke(r2, std::vector<u8>{4, 5, 6, 7, 8});
  ring_.add({{r1, 3, false}, {r2, 5, false}, {w1, 4, true}, {w2, 6, true}});
  auto chain = queue_.pop();
  ASSERT_TRUE(chain.has_value());

  std::vector<u8> out(4);
  EXPECT_EQ(chain->read(ram_, 2, out), 4u);  // crosses from the first buffer to the second
  EXPECT_EQ(out, (std::vector<u8>{3, 4, 5, 6}));
  std::vector<u8> tail(10);
  EXPECT_EQ(chain->read(ram_, 6, tail), 2u);  // only 2 readable bytes left
  EXPECT_EQ(chain->read(ram_, 8, tail), 0u);

  const std::vector<u8> data{10, 11, 12, 13, 14};
  EXPECT_EQ(chain->write(ram_, 2, data), 5u);
  EXPECT_EQ(ram_.peek(w1, 4), (std::vector<u8>{0, 0, 10, 11}));
  EXPECT_EQ(ram_.peek(w2, 6), (std::vector<u8>{12, 13, 14, 0, 0, 0}));
  EXPECT_EQ(chain->write(ram_, 8, data), 2u);  // 10 writable bytes in all
  EXPECT_EQ(ram_.peek(w2, 6), (std::vector<u8>{12, 13, 14, 0, 10, 11}));
  // The readable buffers were not written.
  EXPECT_EQ(ram_.peek(r1, 3), (std::vector<u8>{1, 2, 3}));
}

TEST_F(VirtqueueTest, PushFillsTheUsedRing) {
  configure();
  const Gpa a = buf(8);
  const u16 h1 = ring_.add({{a, 8, true}});
  const u16 h2 = ring_.add({{a, 8, true}});
  auto c1 = queue_.pop();
  auto c2 = queue_.pop();
  ASSERT_TRUE(c1 && c2);
  queue_.push(c2->head, 7);
  queue_.push(c1->head, 3);
  EXPECT_EQ(ring_.used_idx(), 2);
  auto used = ring_.take_used();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[0].id, h2);
  EXPECT_EQ(used[0].len, 7u);
  EXPECT_EQ(used[1].id, h1);
  EXPECT_EQ(used[1].len, 3u);
}

TEST_F(VirtqueueTest, IndicesWrapAround) {
  configure();
  const Gpa a = buf(4);
  for (u32 i = 0; i < 65536 + 20; ++i) {
    ring_.add({{a, 4, true}});
    auto chain = queue_.pop();
    ASSERT_TRUE(chain.has_value()) << i;
    queue_.push(chain->head, 4);
    ASSERT_EQ(ring_.take_used().size(), 1u) << i;
  }
  EXPECT_EQ(ring_.used_idx(), 20);
  EXPECT_FALSE(queue_.pop().has_value());
}

TEST_F(VirtqueueTest, NoInterruptFlagSuppressesInterrupts) {
  configure();
  const Gpa a = buf(4);
  EXPECT_FALSE(queue_.should_interrupt());  // nothing pushed
  ring_.add({{a, 4, true}});
  queue_.push(queue_.pop()->head, 0);
  EXPECT_TRUE(queue_.should_interrupt());
  EXPECT_FALSE(queue_.should_interrupt());  // already signalled

  ring_.set_avail_flags(testing::kAvailNoInterrupt);
  ring_.add({{a, 4, true}});
  queue_.push(queue_.pop()->head, 0);
  EXPECT_FALSE(queue_.should_interrupt());
  ring_.set_avail_flags(0);
  ring_.add({{a, 4, true}});
  queue_.push(queue_.pop()->head, 0);
  EXPECT_TRUE(queue_.should_interrupt());
}

TEST_F(VirtqueueTest, EventIdxInterruptsWhenUsedIndexPassesUsedEvent) {
  configure(/*event_idx=*/true);
  const Gpa a = buf(4);
  ring_.set_avail_flags(testing::kAvailNoInterrupt);  // ignored with EVENT_IDX
  ring_.set_used_event(2);                            // interrupt when used idx goes past 2
  auto one = [&] {
    ring_.add({{a, 4, true}});
    queue_.push(queue_.pop()->head, 0);
    ring_.take_used();
    return queue_.should_interrupt();
  };
  EXPECT_FALSE(one());  // used 1
  EXPECT_FALSE(one());  // used 2
  EXPECT_TRUE(one());   // used 3: passed used_event
  EXPECT_FALSE(one());  // used 4: used_event still 2

  // A batch that steps over used_event interrupts once.
  ring_.set_used_event(5);
  for (int i = 0; i < 3; ++i) {
    ring_.add({{a, 4, true}});
    queue_.push(queue_.pop()->head, 0);
  }
  EXPECT_TRUE(queue_.should_interrupt());  // used 4 -> 7 passed 5
}

TEST_F(VirtqueueTest, EventIdxAcrossIndexWrapAround) {
  configure(/*event_idx=*/true);
  const Gpa a = buf(4);
  for (u32 i = 0; i < 65535; ++i) {
    ring_.add({{a, 4, true}});
    queue_.push(queue_.pop()->head, 0);
    ring_.take_used();
    ring_.set_used_event(static_cast<u16>(i + 1));  // never passed yet
    ASSERT_FALSE(queue_.should_interrupt()) << i;
  }
  ring_.set_used_event(0xffff);
  ring_.add({{a, 4, true}});
  queue_.push(queue_.pop()->head, 0);  // used idx 65535 -> 0 passes 0xffff
  EXPECT_EQ(ring_.used_idx(), 0);
  EXPECT_TRUE(queue_.should_interrupt());
}

TEST_F(VirtqueueTest, EnableNotificationsPublishesAvailEvent) {
  configure(/*event_idx=*/true);
  const Gpa a = buf(4);
  ring_.add({{a, 4, true}});
  ring_.add({{a, 4, true}});
  ASSERT_TRUE(queue_.pop().has_value());
  ASSERT_TRUE(queue_.pop().has_value());
  EXPECT_FALSE(queue_.pop().has_value());
  EXPECT_FALSE(queue_.enable_notifications());  // nothing new
  EXPECT_EQ(ring_.avail_event(), 2);            // notify me for the chain at index 2
  ring_.add({{a, 4, true}});
  EXPECT_TRUE(ring_.kick_prepare(true));
  EXPECT_TRUE(queue_.enable_notifications());  // arrived meanwhile: process it first
}

// A device that leaves chains in the ring (virtio-net's receive queue with no frame to
// give) must not be told again and again that chains arrived: the worker would spin.
TEST_F(VirtqueueTest, EnableNotificationsReportsOnlyNewChains) {
  configure();
  const Gpa a = buf(4);
  ring_.add({{a, 4, true}});
  ring_.add({{a, 4, true}});
  EXPECT_TRUE(queue_.enable_notifications());   // new since the queue was set up
  EXPECT_FALSE(queue_.enable_notifications());  // the same two, not consumed
  ring_.add({{a, 4, true}});
  EXPECT_TRUE(queue_.enable_notifications());
  EXPECT_FALSE(queue_.enable_notifications());
  EXPECT_TRUE(queue_.pop().has_value());
  EXPECT_FALSE(queue_.enable_notifications());
}

TEST_F(VirtqueueTest, BrokenChainsThrow) {
  configure();
  const Gpa a = buf(64);
  // A loop of readable descriptors.
  ring_.write_desc(0, a, 4, testing::kDescNext, 1);
  ring_.write_desc(1, a, 4, testing::kDescNext, 0);
  ring_.publish(0);
  expect_broken("loops");

  ring_.write_desc(2, a, 4, testing::kDescNext, kSize);
  ring_.publish(2);
  expect_broken("points to 8");

  ring_.write_desc(3, a, 4, testing::kDescWrite | testing::kDescNext, 4);
  ring_.write_desc(4, a, 4, 0, 0);
  ring_.publish(3);
  expect_broken("readable descriptor after a writable");

  ring_.publish(kSize);  // head out of range
  expect_broken("names descriptor 8");

  ring_.write_desc(5, ~u64{0} - 5, 100, 0, 0);
  ring_.publish(5);
  expect_broken("wraps");

  ring_.write_desc(5, a, 0x80000000u, 0, 0);
  ring_.write_desc(6, a, 0x80000000u, 0, 0);
  ring_.write_desc(5, a, 0x80000000u, testing::kDescNext, 6);
  ring_.publish(5);
  expect_broken("longer than");

  ring_.write_desc(7, ram_.end(), 16, testing::kDescIndirect, 0);
  ring_.publish(7);
  expect_broken("not in guest RAM");
}

TEST_F(VirtqueueTest, BrokenIndirectTablesThrow) {
  configure();
  const Gpa a = buf(64);
  const Gpa table = buf(16 * 4);
  auto indirect = [&](u32 len, u16 flags = testing::kDescIndirect) {
    ring_.write_desc(0, table, len, flags, 1);
    ring_.publish(0);
  };
  ring_.write_desc_at(table, a, 4, 0, 0);
  indirect(32, testing::kDescIndirect | testing::kDescNext);
  expect_broken("indirect descriptor with NEXT set");
  indirect(0);
  expect_broken("indirect table of 0 bytes");
  indirect(24);
  expect_broken("indirect table of 24 bytes");
  indirect(16 * (Virtqueue::kMaxSize + 1));
  expect_broken("indirect table of");

  ring_.write_desc_at(table, a, 16, testing::kDescIndirect, 0);
  indirect(16);
  expect_broken("nested indirect");

  ring_.write_desc_at(table, a, 4, testing::kDescNext, 1);
  ring_.write_desc_at(table + 16, a, 4, testing::kDescNext, 0);
  indirect(32);
  expect_broken("indirect descriptor chain loops");

  ring_.write_desc_at(table, a, 4, testing::kDescNext, 2);
  indirect(32);
  expect_broken("points past its table");

  ring_.write_desc_at(table, a, 4, testing::kDescWrite | testing::kDescNext, 1);
  ring_.write_desc_at(table + 16, a, 4, 0, 0);
  indirect(32);
  expect_broken("readable descriptor after a writable");
}

TEST_F(VirtqueueTest, AvailIndexJumpingPastTheQueueSizeThrows) {
  configure();
  ring_.set_avail_idx(kSize + 1);
  expect_broken("available index moved by 9");
}

TEST_F(VirtqueueTest, RingsOutsideRamThrow) {
  ASSERT_EQ(queue_.configure(kSize, ring_.desc(), ram_.end() + 0x1000, ring_.used(), false), "");
  EXPECT_THROW(queue_.pop(), VirtioError);

  // A descriptor table outside RAM is found when a chain is taken.
  ASSERT_EQ(queue_.configure(kSize, ram_.end(), ring_.avail(), ring_.used(), false), "");
  ring_.publish(0);
  expect_broken("descriptor table");

  // The used ring outside RAM is found when a chain is given back.
  DriverRing other = DriverRing::allocate(ram_, alloc_, kSize);
  ASSERT_EQ(queue_.configure(kSize, other.desc(), other.avail(), ram_.end() - 4, false), "");
  other.add({{buf(4), 4, true}});
  auto chain = queue_.pop();
  ASSERT_TRUE(chain.has_value());
  EXPECT_THROW(queue_.push(chain->head, 0), VirtioError);
}

TEST_F(VirtqueueTest, BuffersOutsideRamFailOnCopy) {
  configure();
  ring_.add({{ram_.end() - 4, 8, false}, {ram_.end() - 2, 4, true}});
  auto chain = queue_.pop();  // taking the chain does not touch the buffers
  ASSERT_TRUE(chain.has_value());
  std::vector<u8> out(8);
  EXPECT_THROW(chain->read(ram_, 0, out), VirtioError);
  EXPECT_THROW(chain->write(ram_, 0, out), VirtioError);
  EXPECT_EQ(ram_.rejected(), 2u);
}

}  // namespace
}  // namespace dvmm::devices
