// The virtio-mmio transport (devices/virtio/virtio_mmio.*) driven through its registers as
// Linux's virtio_mmio driver does (virtio_test_driver.hpp): identity, feature negotiation,
// queue setup, interrupts and their suppression, the error state a broken chain puts the
// device in and the reset that revives it. Also virtio-rng and virtio-net end to end.
#include "devices/virtio/virtio_mmio.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <ostream>
#include <string>

#include "devices/virtio/virtio_blk.hpp"
#include "devices/virtio/virtio_net.hpp"
#include "devices/virtio/virtio_rng.hpp"
#include "unit/devices/virtio_test_driver.hpp"

namespace dvmm::devices {
namespace {

using testing::BlkRequest;
using testing::Buffer;
using testing::DriverRing;
using testing::FakeNetBackend;
using testing::FakeRam;
using testing::LogLines;
using testing::MemImage;
using testing::RecordingIrq;
using testing::VirtioTestDriver;
namespace reg = testing::reg;

constexpr u32 kUsedBuffer = testing::kInterruptUsedBuffer;
constexpr u32 kConfigChange = testing::kInterruptConfigChange;
constexpr u64 kBlkFeatureRo = u64{1} << 5;

class VirtioMmioTest : public ::testing::Test {
 protected:
  void make(std::unique_ptr<VirtioDevice> device) {
    dev_ = std::make_unique<VirtioMmio>(std::move(device), ram_, irq_, log_.sink());
    drv_ = std::make_unique<VirtioTestDriver>(*dev_, ram_);
  }
  void make_rng() { make(std::make_unique<VirtioRng>("rng0")); }
  void make_blk(u64 size = 64 << 10) {
    auto image = std::make_unique<MemImage>(size);
    image_ = image.get();
    make(std::make_unique<VirtioBlk>("vda", std::move(image), "disk-serial"));
  }
  // A writable buffer of `len` bytes on the rng queue.
  u16 post_rng(u32 len) { return drv_->ring(0).add({{drv_->alloc(len), len, true}}); }
  // A one-sector read on the block queue; returns the request (status 0 when it worked).
  BlkRequest read_sector(u64 sector) {
    BlkRequest r = testing::make_blk_request(ram_, drv_->allocator(), BlkRequest::kIn, sector, 512);
    drv_->ring(0).add(r.buffers());
    drv_->notify(0);
    return r;
  }
  u32 interrupt_status() { return drv_->reg(reg::kInterruptStatus); }

  FakeRam ram_{4 << 20};
  RecordingIrq irq_;
  LogLines log_;
  MemImage* image_ = nullptr;
  std::unique_ptr<VirtioMmio> dev_;
  std::unique_ptr<VirtioTestDriver> drv_;
};

TEST_F(VirtioMmioTest, RegisterIdentity) {
  make_rng();
  EXPECT_EQ(drv_->reg(reg::kMagicValue), testing::kVirtioMagic);
  EXPECT_EQ(drv_->reg(reg::kVersion), 2u);
  EXPECT_EQ(drv_->reg(reg::kDeviceId), kVirtioIdRng);
  EXPECT_EQ(drv_->reg(reg::kVendorId), 0x4d4d5644u);  // "DVMM"
  EXPECT_EQ(drv_->status(), 0u);
  EXPECT_EQ(interrupt_status(), 0u);
  EXPECT_EQ(drv_->reg(reg::kConfigGeneration), 0u);
  const u64 features = drv_->device_features();
  EXPECT_EQ(features & (kVirtioFVersion1 | kVirtioFIndirectDesc | kVirtioFEventIdx),
            kVirtioFVersion1 | kVirtioFIndirectDesc | kVirtioFEventIdx);
  drv_->set_reg(reg::kDeviceFeaturesSel, 2);
  EXPECT_EQ(drv_->reg(reg::kDeviceFeatures), 0u);

  drv_->set_reg(reg::kQueueSel, 0);
  EXPECT_EQ(drv_->reg(reg::kQueueNumMax), 256u);
  EXPECT_EQ(drv_->reg(reg::kQueueReady), 0u);
  drv_->set_reg(reg::kQueueSel, 1);  // rng has one queue
  EXPECT_EQ(drv_->reg(reg::kQueueNumMax), 0u);
  drv_->set_reg(reg::kQueueSel, 0xffffffffu);
  EXPECT_EQ(drv_->reg(reg::kQueueNumMax), 0u);

  // Registers are 32-bit: narrower or misaligned accesses read 0 and write nothing.
  EXPECT_EQ(dev_->read(reg::kMagicValue, 2), 0u);
  EXPECT_EQ(dev_->read(reg::kMagicValue + 1, 4), 0u);
  dev_->write(reg::kStatus, 1, VirtioMmio::kStatusAcknowledge);
  EXPECT_EQ(drv_->status(), 0u);
  // No configuration space.
  EXPECT_EQ(dev_->read(reg::kConfig, 4), 0u);
  EXPECT_EQ(dev_->size(), 0x1000u);
}

TEST_F(VirtioMmioTest, DeviceIdsAndConfigOfEachType) {
  make_blk(1 << 20);
  EXPECT_EQ(drv_->reg(reg::kDeviceId), kVirtioIdBlock);
  EXPECT_EQ(drv_->config64(0), (1u << 20) / 512);  // capacity in sectors
  EXPECT_EQ(dev_->read(reg::kConfig, 8), (1u << 20) / 512);
  EXPECT_EQ(drv_->config32(20), 512u);  // blk_size
  EXPECT_EQ(dev_->read(reg::kConfig + 1000, 4), 0u);

  make(std::make_unique<VirtioNet>("net0", std::make_unique<FakeNetBackend>(),
                                   MacAddress{0x52, 0x54, 0, 1, 2, 3}));
  EXPECT_EQ(drv_->reg(reg::kDeviceId), kVirtioIdNet);
  EXPECT_EQ(drv_->reg(reg::kMagicValue), testing::kVirtioMagic);
  drv_->set_reg(reg::kQueueSel, 1);
  EXPECT_EQ(drv_->reg(reg::kQueueNumMax), 256u);  // rx and tx
}

TEST_F(VirtioMmioTest, FeatureNegotiationRefusesUnofferedFeatures) {
  make_rng();
  ASSERT_TRUE(drv_->probe());
  EXPECT_EQ(drv_->status(), VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver);
  // A feature the device did not offer: FEATURES_OK does not stick.
  EXPECT_FALSE(drv_->negotiate(kVirtioFVersion1 | (u64{1} << 40)));
  EXPECT_FALSE(drv_->negotiate(kVirtioFVersion1 | kBlkFeatureRo));  // a blk bit, not rng's
  // A legacy driver (no VERSION_1) is refused too.
  EXPECT_FALSE(drv_->negotiate(kVirtioFIndirectDesc));
  EXPECT_EQ(drv_->status() & VirtioMmio::kStatusFeaturesOk, 0u);
  // The offered ones are accepted.
  EXPECT_TRUE(drv_->negotiate(kVirtioFVersion1 | kVirtioFEventIdx | kVirtioFIndirectDesc));
  EXPECT_EQ(drv_->status(), VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver |
                                VirtioMmio::kStatusFeaturesOk);
  // Features are frozen once FEATURES_OK is set: this write does not remove EVENT_IDX...
  drv_->set_reg(reg::kDriverFeaturesSel, 0);
  drv_->set_reg(reg::kDriverFeatures, 0);
  ASSERT_TRUE(drv_->setup_queue(0, 8));
  drv_->driver_ok();
  // ...so the device publishes avail_event (EVENT_IDX) when it goes idle.
  drv_->ring(0).add({{drv_->alloc(8), 8, true}});
  drv_->notify(0);
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  EXPECT_TRUE(testing::wait_until([&] { return drv_->ring(0).avail_event() == 1; }));
}

TEST_F(VirtioMmioTest, QueueSetupIsChecked) {
  make_rng();
  ASSERT_TRUE(drv_->probe());
  ASSERT_TRUE(drv_->negotiate(kVirtioFVersion1));
  DriverRing good = DriverRing::allocate(ram_, drv_->allocator(), 8);
  // Not a power of two, too large, misaligned: QueueReady reads back 0 and the log says why.
  EXPECT_FALSE(
      drv_->setup_queue_at(0, DriverRing(ram_, 3, good.desc(), good.avail(), good.used())));
  EXPECT_FALSE(
      drv_->setup_queue_at(0, DriverRing(ram_, 512, good.desc(), good.avail(), good.used())));
  EXPECT_FALSE(
      drv_->setup_queue_at(0, DriverRing(ram_, 8, good.desc() + 8, good.avail(), good.used())));
  EXPECT_EQ(log_.lines().size(), 3u) << log_.joined();
  EXPECT_TRUE(drv_->setup_queue_at(0, good));
  // Layout registers are ignored while the queue is ready.
  drv_->set_reg(reg::kQueueNum, 3);
  drv_->set_reg(reg::kQueueDescLow, 0x1234);
  drv_->driver_ok();
  post_rng(16);
  drv_->notify(0);
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  // QueueReady = 0 takes the queue away; it can be set up again.
  drv_->set_reg(reg::kQueueSel, 0);
  drv_->set_reg(reg::kQueueReady, 0);
  EXPECT_EQ(drv_->reg(reg::kQueueReady), 0u);
  ASSERT_TRUE(drv_->setup_queue(0, 4));
  post_rng(16);
  drv_->notify(0);
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  EXPECT_EQ(dev_->counters().errors, 0u);
}

TEST_F(VirtioMmioTest, QueuesWaitForDriverOk) {
  make_rng();
  ASSERT_TRUE(drv_->probe());
  ASSERT_TRUE(drv_->negotiate(kVirtioFVersion1));
  ASSERT_TRUE(drv_->setup_queue(0, 8));
  post_rng(16);
  drv_->notify(0);
  drv_->quiesce();
  EXPECT_EQ(drv_->ring(0).used_idx(), 0);  // not live yet
  drv_->driver_ok();                       // the device looks at every queue once
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  EXPECT_EQ(dev_->counters().notifications, 1u);
  drv_->notify(7);  // no such queue: counted, ignored
  EXPECT_EQ(dev_->counters().notifications, 2u);
}

TEST_F(VirtioMmioTest, InterruptRaisedAndLoweredOnAck) {
  make_rng();
  ASSERT_TRUE(drv_->init(0, 1, 8));
  EXPECT_FALSE(irq_.level());
  post_rng(32);
  drv_->notify(0);
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  ASSERT_TRUE(drv_->wait_interrupt(kUsedBuffer));
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(interrupt_status(), kUsedBuffer);
  drv_->set_reg(reg::kInterruptAck, kConfigChange);  // not pending: the line stays up
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(drv_->ack_interrupt(), kUsedBuffer);
  EXPECT_FALSE(irq_.level());
  EXPECT_EQ(interrupt_status(), 0u);
  EXPECT_EQ(irq_.raises(), 1);
  EXPECT_EQ(dev_->counters().interrupts, 1u);

  // Several chains in one notification: at least one interrupt, all of them used.
  for (int i = 0; i < 4; ++i) post_rng(8);
  drv_->notify(0);
  ASSERT_EQ(drv_->complete(0, 4).size(), 4u);
  ASSERT_TRUE(drv_->wait_interrupt(kUsedBuffer));
  EXPECT_EQ(drv_->ack_interrupt(), kUsedBuffer);
  EXPECT_FALSE(irq_.level());
}

TEST_F(VirtioMmioTest, NoInterruptFlagIsRespected) {
  make_rng();
  ASSERT_TRUE(drv_->init(0, 1, 8));
  drv_->ring(0).set_avail_flags(testing::kAvailNoInterrupt);
  post_rng(8);
  drv_->notify(0);
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  drv_->quiesce();  // the batch, and its interrupt decision, are over
  EXPECT_EQ(irq_.raises(), 0);
  EXPECT_EQ(interrupt_status(), 0u);
  EXPECT_EQ(dev_->counters().interrupts, 0u);

  drv_->ring(0).set_avail_flags(0);
  post_rng(8);
  drv_->notify(0);
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  ASSERT_TRUE(drv_->wait_interrupt(kUsedBuffer));
  EXPECT_EQ(irq_.raises(), 1);
}

TEST_F(VirtioMmioTest, EventIdxIsRespected) {
  make_rng();
  ASSERT_TRUE(drv_->init(kVirtioFEventIdx, 1, 8));
  ASSERT_TRUE(drv_->event_idx());
  DriverRing& ring = drv_->ring(0);
  ring.set_avail_flags(testing::kAvailNoInterrupt);  // ignored with EVENT_IDX
  ring.set_used_event(1);                            // interrupt once used idx passes 1
  post_rng(8);
  EXPECT_TRUE(drv_->kick(0));  // avail_event 0: the device wants this one
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  drv_->quiesce();
  EXPECT_EQ(irq_.raises(), 0);  // used idx 1 has not passed used_event 1
  EXPECT_EQ(ring.avail_event(), 1);

  post_rng(8);
  EXPECT_TRUE(drv_->kick(0));
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  ASSERT_TRUE(drv_->wait_interrupt(kUsedBuffer));  // used idx 2 passed 1
  drv_->ack_interrupt();
  drv_->quiesce();
  EXPECT_EQ(ring.avail_event(), 2);

  // Two chains, one kick: avail_event (2) lies in the new range.
  post_rng(8);
  post_rng(8);
  ring.set_used_event(10);
  EXPECT_TRUE(drv_->kick(0));
  ASSERT_EQ(drv_->complete(0, 2).size(), 2u);
  drv_->quiesce();
  EXPECT_EQ(irq_.raises(), 1);  // used idx 4 has not passed 10
  EXPECT_EQ(ring.avail_event(), 4);
}

TEST_F(VirtioMmioTest, ResetReturnsToPowerOnState) {
  make_rng();
  ASSERT_TRUE(drv_->init(kVirtioFEventIdx, 1, 8));
  post_rng(8);
  drv_->notify(0);
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  ASSERT_TRUE(drv_->wait_interrupt(kUsedBuffer));
  drv_->set_status(0);
  EXPECT_EQ(drv_->status(), 0u);
  EXPECT_EQ(interrupt_status(), 0u);
  EXPECT_FALSE(irq_.level());
  drv_->set_reg(reg::kQueueSel, 0);
  EXPECT_EQ(drv_->reg(reg::kQueueReady), 0u);
  // The machine's reset does the same.
  ASSERT_TRUE(drv_->init(0, 1, 8));
  dev_->reset();
  EXPECT_EQ(drv_->status(), 0u);
  EXPECT_EQ(drv_->reg(reg::kQueueReady), 0u);
  // And the device works after it.
  ASSERT_TRUE(drv_->init(0, 1, 4));
  post_rng(8);
  drv_->notify(0);
  EXPECT_EQ(drv_->complete(0).size(), 1u);
}

// --- broken chains: DEVICE_NEEDS_RESET with a config interrupt; a reset revives the device.

struct BrokenChain {
  std::string name;
  // Makes the bad chain available on queue 0 (a block device, queue size 8).
  std::function<void(VirtioTestDriver&, FakeRam&)> make;
  std::string message;  // part of the logged reason
};

void PrintTo(const BrokenChain& c, std::ostream* os) {
  *os << c.name;
}

class VirtioBrokenChainTest : public VirtioMmioTest,
                              public ::testing::WithParamInterface<BrokenChain> {};

TEST_P(VirtioBrokenChainTest, NeedsResetThenWorksAfterReset) {
  make_blk();
  image_->bytes()[512] = 0xab;
  ASSERT_TRUE(drv_->init(kVirtioFIndirectDesc, 1, 8));
  GetParam().make(*drv_, ram_);
  drv_->notify(0);
  ASSERT_TRUE(drv_->wait_status(VirtioMmio::kStatusNeedsReset)) << log_.joined();
  ASSERT_TRUE(drv_->wait_interrupt(kConfigChange));
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(dev_->counters().errors, 1u);
  ASSERT_EQ(log_.lines().size(), 1u) << log_.joined();
  EXPECT_NE(log_.lines()[0].find(GetParam().message), std::string::npos) << log_.lines()[0];
  EXPECT_NE(log_.lines()[0].find("vda"), std::string::npos);

  // Broken: DRIVER_OK again or more notifications do nothing.
  drv_->set_status(drv_->status() | VirtioMmio::kStatusDriverOk);
  EXPECT_NE(drv_->status() & VirtioMmio::kStatusNeedsReset, 0u);
  const u16 used_before = drv_->ring(0).used_idx();
  drv_->notify(0);
  drv_->quiesce();
  EXPECT_EQ(drv_->ring(0).used_idx(), used_before);

  drv_->set_status(0);
  EXPECT_EQ(drv_->status(), 0u);
  EXPECT_EQ(interrupt_status(), 0u);
  EXPECT_FALSE(irq_.level());

  ASSERT_TRUE(drv_->init(kVirtioFIndirectDesc, 1, 8));
  const BlkRequest r = read_sector(1);
  ASSERT_EQ(drv_->complete(0).size(), 1u);
  EXPECT_EQ(r.result(ram_), 0);
  EXPECT_EQ(ram_.get<u8>(r.data), 0xab);
  EXPECT_EQ(drv_->status() & VirtioMmio::kStatusNeedsReset, 0u);
  EXPECT_EQ(dev_->counters().errors, 1u);
}

BlkRequest request(VirtioTestDriver& d, FakeRam& ram, u32 type = BlkRequest::kIn) {
  return testing::make_blk_request(ram, d.allocator(), type, 0, 512);
}

INSTANTIATE_TEST_SUITE_P(
    Chains, VirtioBrokenChainTest,
    ::testing::Values(
        BrokenChain{"DescriptorLoop",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      const BlkRequest r = request(d, ram, BlkRequest::kOut);
                      d.ring(0).write_desc(0, r.header, 16, testing::kDescNext, 1);
                      d.ring(0).write_desc(1, r.data, 512, testing::kDescNext, 0);
                      d.ring(0).publish(0);
                    },
                    "loops"},
        BrokenChain{"NextOutOfRange",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      const BlkRequest r = request(d, ram);
                      d.ring(0).write_desc(0, r.header, 16, testing::kDescNext, 8);
                      d.ring(0).publish(0);
                    },
                    "points to 8"},
        BrokenChain{"DataBufferOutsideRam",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      BlkRequest r = request(d, ram);
                      r.data = ram.end() - 256;  // half of it outside
                      d.ring(0).add(r.buffers());
                    },
                    "not in guest RAM"},
        BrokenChain{"HeaderOutsideRam",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      BlkRequest r = request(d, ram);
                      r.header = ram.base() - 16;
                      d.ring(0).add(r.buffers());
                    },
                    "not in guest RAM"},
        BrokenChain{"StatusOutsideRam",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      BlkRequest r = request(d, ram);
                      r.status = ram.end();
                      d.ring(0).add(r.buffers());
                    },
                    "not in guest RAM"},
        BrokenChain{"IndirectTableOutsideRam",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      d.ring(0).write_desc(0, ram.end() - 16, 32, testing::kDescIndirect, 0);
                      d.ring(0).publish(0);
                    },
                    "indirect table"},
        BrokenChain{"IndirectWithNext",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      const BlkRequest r = request(d, ram);
                      const Gpa table = d.alloc(48);
                      d.ring(0).write_desc_at(table, r.header, 16, testing::kDescNext, 1);
                      d.ring(0).write_desc_at(table + 16, r.data, 512,
                                              testing::kDescWrite | testing::kDescNext, 2);
                      d.ring(0).write_desc_at(table + 32, r.status, 1, testing::kDescWrite, 0);
                      d.ring(0).write_desc(0, table, 48,
                                           testing::kDescIndirect | testing::kDescNext, 1);
                      d.ring(0).write_desc(1, r.status, 1, testing::kDescWrite, 0);
                      d.ring(0).publish(0);
                    },
                    "indirect descriptor with NEXT set"},
        BrokenChain{"NestedIndirect",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      const BlkRequest r = request(d, ram);
                      const Gpa inner = d.alloc(16);
                      d.ring(0).write_desc_at(inner, r.header, 16, 0, 0);
                      const Gpa table = d.alloc(16);
                      d.ring(0).write_desc_at(table, inner, 16, testing::kDescIndirect, 0);
                      d.ring(0).write_desc(0, table, 16, testing::kDescIndirect, 0);
                      d.ring(0).publish(0);
                    },
                    "nested indirect"},
        BrokenChain{
            "ReadableAfterWritable",
            [](VirtioTestDriver& d, FakeRam& ram) {
              const BlkRequest r = request(d, ram, BlkRequest::kOut);
              d.ring(0).add({{r.header, 16, false}, {r.status, 1, true}, {r.data, 512, false}});
            },
            "readable descriptor after a writable"},
        BrokenChain{"ReadableAfterWritableInIndirect",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      const BlkRequest r = request(d, ram, BlkRequest::kOut);
                      d.ring(0).add(
                          {{r.header, 16, false}, {r.status, 1, true}, {r.data, 512, false}}, true,
                          &d.allocator());
                    },
                    "readable descriptor after a writable"},
        BrokenChain{"AvailIndexJump",
                    [](VirtioTestDriver& d, FakeRam&) { d.ring(0).set_avail_idx(8 + 1); },
                    "available index moved by 9"},
        BrokenChain{"HeadOutOfRange", [](VirtioTestDriver& d, FakeRam&) { d.ring(0).publish(8); },
                    "names descriptor 8"},
        BrokenChain{"RequestWithoutStatusByte",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      const BlkRequest r = request(d, ram, BlkRequest::kOut);
                      d.ring(0).add({{r.header, 16, false}, {r.data, 512, false}});
                    },
                    "without a header or a status byte"},
        BrokenChain{"ShortHeader",
                    [](VirtioTestDriver& d, FakeRam& ram) {
                      const BlkRequest r = request(d, ram);
                      d.ring(0).add({{r.header, 8, false}, {r.status, 1, true}});
                    },
                    "without a header or a status byte"}),
    [](const ::testing::TestParamInfo<BrokenChain>& info) { return info.param.name; });

TEST_F(VirtioMmioTest, RingsOutsideRamNeedReset) {
  make_blk();
  ASSERT_TRUE(drv_->probe());
  ASSERT_TRUE(drv_->negotiate(kVirtioFVersion1));
  DriverRing good = DriverRing::allocate(ram_, drv_->allocator(), 8);
  // The avail ring outside RAM: found as soon as the device looks at the queue.
  ASSERT_TRUE(drv_->setup_queue_at(0, DriverRing(ram_, 8, good.desc(), ram_.end(), good.used())));
  drv_->driver_ok();
  ASSERT_TRUE(drv_->wait_status(VirtioMmio::kStatusNeedsReset));
  ASSERT_TRUE(drv_->wait_interrupt(kConfigChange));

  // The used ring outside RAM: found when the first request completes.
  drv_->set_status(0);
  ASSERT_TRUE(drv_->probe());
  ASSERT_TRUE(drv_->negotiate(kVirtioFVersion1));
  ASSERT_TRUE(
      drv_->setup_queue_at(0, DriverRing(ram_, 8, good.desc(), good.avail(), ram_.end() - 4)));
  drv_->driver_ok();
  drv_->quiesce();
  EXPECT_EQ(drv_->status() & VirtioMmio::kStatusNeedsReset, 0u);
  read_sector(0);
  ASSERT_TRUE(drv_->wait_status(VirtioMmio::kStatusNeedsReset));
  EXPECT_EQ(dev_->counters().errors, 2u);
  EXPECT_GE(ram_.rejected(), 2u);
}

// --- virtio-rng

TEST_F(VirtioMmioTest, RngFillsBuffers) {
  make_rng();
  ASSERT_TRUE(drv_->init(kVirtioFIndirectDesc, 1, 16));
  const Gpa a = drv_->alloc(64), b1 = drv_->alloc(1000), b2 = drv_->alloc(3096),
            c = drv_->alloc(128), r = drv_->alloc(32);
  const u16 h1 = drv_->ring(0).add({{a, 64, true}});
  const u16 h2 = drv_->ring(0).add({{b1, 1000, true}, {b2, 3096, true}});
  const u16 h3 = drv_->ring(0).add({{c, 128, true}}, true, &drv_->allocator());
  const u16 h4 = drv_->ring(0).add({{r, 32, false}});  // nothing to fill
  drv_->notify(0);
  const auto used = drv_->complete(0, 4);
  ASSERT_EQ(used.size(), 4u);
  EXPECT_EQ(used[0].id, h1);
  EXPECT_EQ(used[0].len, 64u);
  EXPECT_EQ(used[1].id, h2);
  EXPECT_EQ(used[1].len, 4096u);
  EXPECT_EQ(used[2].id, h3);
  EXPECT_EQ(used[2].len, 128u);
  EXPECT_EQ(used[3].id, h4);
  EXPECT_EQ(used[3].len, 0u);
  auto nonzero = [&](Gpa at, u64 len) {
    const std::vector<u8> bytes = ram_.peek(at, len);
    return std::count(bytes.begin(), bytes.end(), 0) < static_cast<long>(len / 8 + 2);
  };
  EXPECT_TRUE(nonzero(a, 64));
  EXPECT_TRUE(nonzero(b1, 1000));
  EXPECT_TRUE(nonzero(b2, 3096));
  EXPECT_TRUE(nonzero(c, 128));
  EXPECT_EQ(ram_.peek(r, 32), std::vector<u8>(32, 0));
  EXPECT_NE(ram_.peek(a, 32), ram_.peek(c, 32));
  auto& rng = static_cast<VirtioRng&>(dev_->device());
  EXPECT_EQ(rng.bytes_given(), 64u + 4096 + 128);
}

TEST_F(VirtioMmioTest, RngCapsHugeRequests) {
  make_rng();
  ASSERT_TRUE(drv_->init(0, 1, 4));
  const Gpa big = drv_->alloc(1 << 20);
  drv_->ring(0).add({{big, 1 << 20, true}});
  drv_->notify(0);
  const auto used = drv_->complete(0);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].len, 64u << 10);
}

// --- virtio-net

constexpr MacAddress kMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr u32 kNetHeader = 12;
constexpr unsigned kRx = 0, kTx = 1;

std::vector<u8> frame(std::size_t size, u8 seed) {
  std::vector<u8> f(size);
  for (std::size_t i = 0; i < size; ++i) f[i] = static_cast<u8>(seed + i * 7);
  return f;
}

class VirtioNetTest : public ::testing::Test {
 protected:
  VirtioNetTest() {
    auto backend = std::make_unique<FakeNetBackend>();
    backend_ = backend.get();
    auto net = std::make_unique<VirtioNet>("net0", std::move(backend), kMac);
    net_ = net.get();
    dev_ = std::make_unique<VirtioMmio>(std::move(net), ram_, irq_, log_.sink());
    net_->start([this] { dev_->kick(); });
    drv_ = std::make_unique<VirtioTestDriver>(*dev_, ram_);
  }

  // A receive buffer as Linux's virtio-net posts them (header + MTU-sized frame).
  u16 post_rx(u32 len = kNetHeader + 1514) {
    const Gpa at = drv_->alloc(len);
    const u16 head = drv_->ring(kRx).add({{at, len, true}});
    rx_buffers_[head] = at;
    return head;
  }
  // A transmit chain: the header and the frame in separate descriptors.
  u16 post_tx(const std::vector<u8>& f) {
    const Gpa hdr = drv_->alloc(kNetHeader), data = drv_->alloc(f.size());
    ram_.poke(data, f);
    return drv_->ring(kTx).add(
        {{hdr, kNetHeader, false}, {data, static_cast<u32>(f.size()), false}});
  }
  bool inject(const std::vector<u8>& f) { return backend_->inject(f); }
  // The header and frame the device wrote into the receive buffer of `used`.
  std::vector<u8> received(const testing::UsedElement& used) {
    return ram_.peek(rx_buffers_.at(static_cast<u16>(used.id)), used.len);
  }
  static std::vector<u8> expected(const std::vector<u8>& f) {
    std::vector<u8> out(kNetHeader + f.size(), 0);
    out[10] = 1;  // num_buffers
    std::copy(f.begin(), f.end(), out.begin() + kNetHeader);
    return out;
  }

  FakeRam ram_{4 << 20};
  RecordingIrq irq_;
  LogLines log_;
  FakeNetBackend* backend_ = nullptr;
  VirtioNet* net_ = nullptr;
  std::unique_ptr<VirtioMmio> dev_;
  std::unique_ptr<VirtioTestDriver> drv_;
  std::map<u16, Gpa> rx_buffers_;
};

TEST_F(VirtioNetTest, ConfigAndFeatures) {
  EXPECT_EQ(drv_->reg(reg::kDeviceId), kVirtioIdNet);
  const u64 f = drv_->device_features();
  EXPECT_NE(f & (u64{1} << 5), 0u);   // VIRTIO_NET_F_MAC
  EXPECT_NE(f & (u64{1} << 16), 0u);  // VIRTIO_NET_F_STATUS
  for (unsigned i = 0; i < 6; ++i) EXPECT_EQ(drv_->config8(i), kMac[i]);
  EXPECT_EQ(drv_->config8(6) & 1, 1);  // VIRTIO_NET_S_LINK_UP
}

TEST_F(VirtioNetTest, TransmitStripsTheHeader) {
  ASSERT_TRUE(drv_->init(kVirtioFIndirectDesc, 2));
  const std::vector<u8> f1 = frame(60, 1), f2 = frame(1514, 2), f3 = frame(100, 3);
  post_tx(f1);
  // Header and frame in one buffer (Linux with VIRTIO_F_ANY_LAYOUT does this).
  const Gpa one = drv_->alloc(kNetHeader + f2.size());
  ram_.poke(one + kNetHeader, f2);
  drv_->ring(kTx).add({{one, static_cast<u32>(kNetHeader + f2.size()), false}});
  // Indirect, frame split over two buffers.
  const Gpa hdr = drv_->alloc(kNetHeader), p1 = drv_->alloc(30), p2 = drv_->alloc(70);
  ram_.poke(p1, std::span<const u8>(f3.data(), 30));
  ram_.poke(p2, std::span<const u8>(f3.data() + 30, 70));
  drv_->ring(kTx).add({{hdr, kNetHeader, false}, {p1, 30, false}, {p2, 70, false}}, true,
                      &drv_->allocator());
  EXPECT_TRUE(drv_->kick(kTx));
  const auto used = drv_->complete(kTx, 3);
  ASSERT_EQ(used.size(), 3u);
  for (const auto& u : used) EXPECT_EQ(u.len, 0u);
  const auto sent = backend_->sent();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0], f1);
  EXPECT_EQ(sent[1], f2);
  EXPECT_EQ(sent[2], f3);
  ASSERT_TRUE(drv_->wait_interrupt(kUsedBuffer));
  const VirtioNetCounters c = net_->counters();
  EXPECT_EQ(c.tx_frames, 3u);
  EXPECT_EQ(c.tx_bytes, f1.size() + f2.size() + f3.size());
}

TEST_F(VirtioNetTest, TransmitWithoutAHeaderIsAnError) {
  ASSERT_TRUE(drv_->init(0, 2));
  drv_->ring(kTx).add({{drv_->alloc(8), 8, false}});
  drv_->notify(kTx);
  const auto used = drv_->complete(kTx);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_TRUE(backend_->sent().empty());
  EXPECT_EQ(net_->counters().tx_errors, 1u);
  EXPECT_EQ(drv_->status() & VirtioMmio::kStatusNeedsReset, 0u);
}

TEST_F(VirtioNetTest, ReceiveIntoPostedBuffers) {
  ASSERT_TRUE(drv_->init(0, 2));
  for (int i = 0; i < 4; ++i) post_rx();
  drv_->kick(kRx);
  const std::vector<u8> f1 = frame(60, 9), f2 = frame(1514, 10);
  ASSERT_TRUE(inject(f1));
  ASSERT_TRUE(inject(f2));
  const auto used = drv_->complete(kRx, 2);
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[0].len, kNetHeader + f1.size());
  EXPECT_EQ(received(used[0]), expected(f1));
  EXPECT_EQ(used[1].len, kNetHeader + f2.size());
  EXPECT_EQ(received(used[1]), expected(f2));
  ASSERT_TRUE(drv_->wait_interrupt(kUsedBuffer));
  EXPECT_EQ(net_->counters().rx_frames, 2u);
  EXPECT_EQ(net_->counters().rx_bytes, f1.size() + f2.size());
}

TEST_F(VirtioNetTest, ReceivedFramesWaitForBuffers) {
  ASSERT_TRUE(drv_->init(0, 2));
  const std::vector<u8> f1 = frame(64, 20), f2 = frame(70, 21), f3 = frame(80, 22);
  ASSERT_TRUE(inject(f1));
  ASSERT_TRUE(inject(f2));
  ASSERT_TRUE(inject(f3));
  drv_->quiesce();
  EXPECT_EQ(drv_->ring(kRx).used_idx(), 0);
  EXPECT_EQ(irq_.raises(), 0);

  post_rx();
  drv_->kick(kRx);
  auto used = drv_->complete(kRx);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(received(used[0]), expected(f1));
  post_rx();
  post_rx();
  drv_->kick(kRx);
  used = drv_->complete(kRx, 2);
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(received(used[0]), expected(f2));
  EXPECT_EQ(received(used[1]), expected(f3));
  EXPECT_EQ(net_->counters().rx_dropped, 0u);
}

TEST_F(VirtioNetTest, TooSmallReceiveBufferDropsTheFrame) {
  ASSERT_TRUE(drv_->init(0, 2));
  post_rx(kNetHeader + 10);
  post_rx();
  drv_->kick(kRx);
  const std::vector<u8> big = frame(100, 30), small = frame(60, 31);
  ASSERT_TRUE(inject(big));
  ASSERT_TRUE(inject(small));
  const auto used = drv_->complete(kRx, 2);
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[0].len, 0u);  // the small buffer comes back empty
  EXPECT_EQ(received(used[1]), expected(small));
  EXPECT_EQ(net_->counters().rx_dropped, 1u);
}

// Receive buffers posted and no frame to give: the worker must go to sleep (it stays in
// its batch otherwise, and a QueueReady write, a reset or the destructor waits forever).
TEST_F(VirtioNetTest, IdleWithReceiveBuffersPosted) {
  ASSERT_TRUE(drv_->init(0, 2));
  for (int i = 0; i < 8; ++i) post_rx();
  drv_->kick(kRx);
  drv_->quiesce();
  drv_->set_status(0);
  EXPECT_EQ(drv_->status(), 0u);
  ASSERT_TRUE(drv_->init(kVirtioFEventIdx, 2));
  for (int i = 0; i < 8; ++i) post_rx();
  drv_->kick(kRx);
  drv_->quiesce();
  const std::vector<u8> f = frame(60, 40);
  ASSERT_TRUE(inject(f));
  const auto used = drv_->complete(kRx);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(received(used[0]), expected(f));
}

// EVENT_IDX: after frames were given from a kick (not a notification), the device must
// publish a fresh avail_event, or a driver refilling the ring does not notify and a frame
// still waiting is stuck until the next one arrives.
TEST_F(VirtioNetTest, EventIdxReceiveAfterABurst) {
  ASSERT_TRUE(drv_->probe());
  ASSERT_TRUE(drv_->negotiate(kVirtioFVersion1 | kVirtioFEventIdx));
  ASSERT_TRUE(drv_->setup_queue(kRx, 8));
  ASSERT_TRUE(drv_->setup_queue(kTx, 8));
  post_rx();
  // The device has seen the receive buffer (no frame for it yet) once DRIVER_OK's batch
  // published avail_event; wait for that batch to end.
  const Gpa rx_avail_event = drv_->ring(kRx).used() + 4 + 8 * 8;
  ram_.put<u16>(rx_avail_event, 0xffff);
  drv_->driver_ok();
  ASSERT_TRUE(testing::wait_until([&] { return drv_->ring(kRx).avail_event() == 0; }));
  drv_->quiesce();
  drv_->ring(kRx).kick_prepare(true);  // as if kicked: the device has seen the buffer
  // Hold the worker in a transmit while two frames arrive, so that one batch (the one after
  // this) takes both kicks: it gives the first frame and keeps the second.
  backend_->hold_sends();
  post_tx(frame(60, 50));
  drv_->kick(kTx);
  ASSERT_TRUE(backend_->wait_send_held());
  const std::vector<u8> f1 = frame(60, 51), f2 = frame(61, 52);
  ASSERT_TRUE(inject(f1));
  ASSERT_TRUE(inject(f2));
  backend_->release_sends();
  auto used = drv_->complete(kRx);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(received(used[0]), expected(f1));
  // Refill as Linux does: post, then kick only if the device asked for it.
  post_rx();
  drv_->kick(kRx);
  used = drv_->complete(kRx);
  ASSERT_EQ(used.size(), 1u) << "the second frame was not delivered";
  EXPECT_EQ(received(used[0]), expected(f2));
}

TEST_F(VirtioNetTest, ResetDropsPendingFrames) {
  ASSERT_TRUE(drv_->init(0, 2));
  ASSERT_TRUE(inject(frame(60, 60)));
  drv_->quiesce();
  drv_->set_status(0);
  ASSERT_TRUE(drv_->init(0, 2));
  post_rx();
  drv_->kick(kRx);
  const std::vector<u8> f = frame(70, 61);
  ASSERT_TRUE(inject(f));
  const auto used = drv_->complete(kRx);
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(received(used[0]), expected(f));  // not the frame from before the reset
}

}  // namespace
}  // namespace dvmm::devices
