// virtio-blk (devices/virtio/virtio_blk.*) over an in-memory image, driven through the
// virtio-mmio registers and split rings in a fake RAM (virtio_test_driver.hpp).
#include "devices/virtio/virtio_blk.hpp"

#include <gtest/gtest.h>

#include <string>

#include "devices/virtio/virtio_mmio.hpp"
#include "unit/devices/virtio_test_driver.hpp"

namespace dvmm::devices {
namespace {

using testing::BlkRequest;
using testing::Buffer;
using testing::FakeRam;
using testing::LogLines;
using testing::MemImage;
using testing::RecordingIrq;
using testing::VirtioTestDriver;

constexpr u64 kFeatureSegMax = u64{1} << 2;
constexpr u64 kFeatureRo = u64{1} << 5;
constexpr u64 kFeatureBlkSize = u64{1} << 6;
constexpr u64 kFeatureFlush = u64{1} << 9;
constexpr u8 kOk = 0, kIoErr = 1, kUnsupported = 2;
constexpr u64 kDiskSize = 1 << 20;
constexpr u64 kSectors = kDiskSize / 512;

std::vector<u8> pattern(std::size_t size, u8 seed) {
  std::vector<u8> p(size);
  for (std::size_t i = 0; i < size; ++i) p[i] = static_cast<u8>(seed + i * 13 + (i >> 9));
  return p;
}

class VirtioBlkTest : public ::testing::Test {
 protected:
  void make(bool read_only = false, std::string serial = "disk-serial") {
    auto image = std::make_unique<MemImage>(kDiskSize, read_only);
    image_ = image.get();
    auto blk = std::make_unique<VirtioBlk>("vda", std::move(image), std::move(serial), log_.sink());
    blk_ = blk.get();
    dev_ = std::make_unique<VirtioMmio>(std::move(blk), ram_, irq_, log_.sink());
    drv_ = std::make_unique<VirtioTestDriver>(*dev_, ram_);
  }
  // Accepts every offered feature (INDIRECT_DESC, EVENT_IDX, RO, ...), as Linux would.
  void init() { ASSERT_TRUE(drv_->init(~u64{0}, 1, 16)); }

  BlkRequest request(u32 type, u64 sector, u32 len) {
    return testing::make_blk_request(ram_, drv_->allocator(), type, sector, len);
  }
  // Makes `r` available (one descriptor per part, or through an indirect table), kicks,
  // waits for it and returns the used length (~0u on timeout).
  u32 run(const BlkRequest& r, bool indirect = false) { return run_chain(r.buffers(), indirect); }
  u32 run_chain(const std::vector<Buffer>& bufs, bool indirect = false) {
    drv_->ring(0).add(bufs, indirect, &drv_->allocator());
    drv_->kick(0);
    const auto used = drv_->complete(0);
    return used.size() == 1 ? used[0].len : ~0u;
  }
  // Writes `data` at `sector` through the device; returns the status byte.
  u8 write(u64 sector, const std::vector<u8>& data, bool indirect = false) {
    const BlkRequest r = request(BlkRequest::kOut, sector, static_cast<u32>(data.size()));
    ram_.poke(r.data, data);
    EXPECT_EQ(run(r, indirect), 1u);
    return r.result(ram_);
  }
  // Reads `len` bytes at `sector` through the device into `out`; returns the status byte.
  u8 read(u64 sector, u32 len, std::vector<u8>& out, bool indirect = false) {
    const BlkRequest r = request(BlkRequest::kIn, sector, len);
    const u32 used = run(r, indirect);
    const u8 status = r.result(ram_);
    EXPECT_EQ(used, status == kOk ? len + 1 : 1u);
    out = len != 0 ? ram_.peek(r.data, len) : std::vector<u8>{};
    return status;
  }
  std::vector<u8> disk(u64 offset, u64 len) {
    drv_->quiesce();
    return {image_->bytes().begin() + static_cast<long>(offset),
            image_->bytes().begin() + static_cast<long>(offset + len)};
  }
  VirtioBlkCounters counters() {
    drv_->quiesce();
    return blk_->counters();
  }

  FakeRam ram_{8 << 20};
  RecordingIrq irq_;
  LogLines log_;
  MemImage* image_ = nullptr;
  VirtioBlk* blk_ = nullptr;
  std::unique_ptr<VirtioMmio> dev_;
  std::unique_ptr<VirtioTestDriver> drv_;
};

TEST_F(VirtioBlkTest, FeaturesAndConfig) {
  make();
  EXPECT_EQ(drv_->reg(testing::reg::kDeviceId), kVirtioIdBlock);
  const u64 f = drv_->device_features();
  EXPECT_EQ(f & (kFeatureSegMax | kFeatureBlkSize | kFeatureFlush),
            kFeatureSegMax | kFeatureBlkSize | kFeatureFlush);
  EXPECT_EQ(f & kFeatureRo, 0u);
  EXPECT_EQ(drv_->config64(0), kSectors);
  EXPECT_EQ(drv_->config32(12), 254u);  // seg_max
  EXPECT_EQ(drv_->config32(20), 512u);  // blk_size
  EXPECT_EQ(blk_->image().size(), kDiskSize);
}

TEST_F(VirtioBlkTest, WriteThenReadRoundTrip) {
  make();
  init();
  const std::vector<u8> data = pattern(1024, 1);
  EXPECT_EQ(write(3, data), kOk);
  EXPECT_EQ(disk(3 * 512, 1024), data);
  EXPECT_EQ(disk(2 * 512, 512), std::vector<u8>(512, 0));  // neighbours untouched
  EXPECT_EQ(disk(5 * 512, 512), std::vector<u8>(512, 0));
  std::vector<u8> back;
  EXPECT_EQ(read(3, 1024, back), kOk);
  EXPECT_EQ(back, data);
  // The last sector of the disk.
  const std::vector<u8> last = pattern(512, 2);
  EXPECT_EQ(write(kSectors - 1, last), kOk);
  EXPECT_EQ(read(kSectors - 1, 512, back), kOk);
  EXPECT_EQ(back, last);
  const VirtioBlkCounters c = counters();
  EXPECT_EQ(c.writes, 2u);
  EXPECT_EQ(c.reads, 2u);
  EXPECT_EQ(c.bytes_written, 1536u);
  EXPECT_EQ(c.bytes_read, 1536u);
  EXPECT_EQ(c.errors, 0u);
  ASSERT_TRUE(drv_->wait_interrupt(testing::kInterruptUsedBuffer));
}

TEST_F(VirtioBlkTest, ReadsWhatTheImageHolds) {
  make();
  const std::vector<u8> content = pattern(kDiskSize, 3);
  image_->bytes() = content;
  init();
  std::vector<u8> back;
  EXPECT_EQ(read(0, 4096, back), kOk);
  EXPECT_EQ(back, std::vector<u8>(content.begin(), content.begin() + 4096));
  EXPECT_EQ(read(100, 512, back), kOk);
  EXPECT_EQ(back, std::vector<u8>(content.begin() + 100 * 512, content.begin() + 101 * 512));
}

// Larger than the device's bounce buffer (256 KiB): moved in several image calls.
TEST_F(VirtioBlkTest, LargeRequests) {
  make();
  init();
  const std::vector<u8> data = pattern(600 << 10, 4);
  EXPECT_EQ(write(8, data), kOk);
  EXPECT_EQ(disk(8 * 512, data.size()), data);
  std::vector<u8> back;
  EXPECT_EQ(read(8, static_cast<u32>(data.size()), back), kOk);
  EXPECT_EQ(back, data);
}

TEST_F(VirtioBlkTest, RequestSplitOverSeveralDescriptors) {
  make();
  init();
  // Write: the header in two pieces, the data in three of odd sizes.
  const std::vector<u8> data = pattern(1024, 5);
  const BlkRequest w = request(BlkRequest::kOut, 10, 1024);
  ram_.poke(w.data, data);
  EXPECT_EQ(run_chain({{w.header, 8, false},
                       {w.header + 8, 8, false},
                       {w.data, 100, false},
                       {w.data + 100, 700, false},
                       {w.data + 800, 224, false},
                       {w.status, 1, true}}),
            1u);
  EXPECT_EQ(w.result(ram_), kOk);
  EXPECT_EQ(disk(10 * 512, 1024), data);

  // Write: header and data in one buffer.
  const Gpa both = drv_->alloc(16 + 512);
  ram_.put<u32>(both, BlkRequest::kOut);
  ram_.put<u64>(both + 8, 20);
  const std::vector<u8> sector = pattern(512, 6);
  ram_.poke(both + 16, sector);
  const Gpa status = drv_->alloc(1);
  EXPECT_EQ(run_chain({{both, 16 + 512, false}, {status, 1, true}}), 1u);
  EXPECT_EQ(ram_.get<u8>(status), kOk);
  EXPECT_EQ(disk(20 * 512, 512), sector);

  // Read: data in three pieces, the last one also holding the status byte.
  const BlkRequest r = request(BlkRequest::kIn, 10, 1024);
  const Gpa tail = drv_->alloc(225);
  ram_.put<u8>(tail + 224, 0xff);
  EXPECT_EQ(run_chain({{r.header, 16, false},
                       {r.data, 300, true},
                       {r.data + 300, 500, true},
                       {tail, 225, true}}),
            1025u);
  EXPECT_EQ(ram_.get<u8>(tail + 224), kOk);
  std::vector<u8> back = ram_.peek(r.data, 800);
  const std::vector<u8> rest = ram_.peek(tail, 224);
  back.insert(back.end(), rest.begin(), rest.end());
  EXPECT_EQ(back, data);
}

TEST_F(VirtioBlkTest, IndirectRequests) {
  make();
  init();
  const std::vector<u8> data = pattern(2048, 7);
  EXPECT_EQ(write(30, data, /*indirect=*/true), kOk);
  EXPECT_EQ(disk(30 * 512, 2048), data);
  std::vector<u8> back;
  EXPECT_EQ(read(30, 2048, back, /*indirect=*/true), kOk);
  EXPECT_EQ(back, data);
  // An indirect table with the data split over several entries.
  const BlkRequest r = request(BlkRequest::kIn, 30, 2048);
  EXPECT_EQ(run_chain({{r.header, 16, false},
                       {r.data, 1000, true},
                       {r.data + 1000, 1048, true},
                       {r.status, 1, true}},
                      true),
            2049u);
  EXPECT_EQ(r.result(ram_), kOk);
  EXPECT_EQ(ram_.peek(r.data, 2048), data);
  EXPECT_EQ(drv_->ring(0).free_descriptors(), 16u);  // all given back
}

TEST_F(VirtioBlkTest, ManyRequestsInOneNotification) {
  make();
  init();
  constexpr u32 kCount = 10;
  std::vector<BlkRequest> reqs;
  for (u32 i = 0; i < kCount; ++i) {
    reqs.push_back(request(BlkRequest::kOut, 40 + i, 512));
    ram_.poke(reqs.back().data, pattern(512, static_cast<u8>(i)));
  }
  // Two direct chains (3 descriptors each) and eight indirect ones fill 14 of 16 descriptors.
  for (u32 i = 0; i < kCount; ++i) {
    drv_->ring(0).add(reqs[i].buffers(), i % 5 != 0, &drv_->allocator());
  }
  drv_->kick(0);
  const auto used = drv_->complete(0, kCount);
  ASSERT_EQ(used.size(), kCount);
  for (u32 i = 0; i < kCount; ++i) {
    EXPECT_EQ(reqs[i].result(ram_), kOk) << i;
    EXPECT_EQ(disk((40 + i) * 512, 512), pattern(512, static_cast<u8>(i))) << i;
  }
}

TEST_F(VirtioBlkTest, Flush) {
  make();
  init();
  const BlkRequest r = request(BlkRequest::kFlush, 0, 0);
  EXPECT_EQ(run(r), 1u);
  EXPECT_EQ(r.result(ram_), kOk);
  EXPECT_EQ(image_->flushes.load(), 1);
  EXPECT_EQ(counters().flushes, 1u);
}

TEST_F(VirtioBlkTest, GetId) {
  make(false, "disk-serial");
  init();
  const BlkRequest r = request(BlkRequest::kGetId, 0, 20);
  ram_.fill(r.data, 20, 0xee);
  EXPECT_EQ(run(r), 21u);
  EXPECT_EQ(r.result(ram_), kOk);
  std::vector<u8> want(20, 0);
  const std::string serial = "disk-serial";
  std::copy(serial.begin(), serial.end(), want.begin());
  EXPECT_EQ(ram_.peek(r.data, 20), want);
  // A shorter buffer gets the start of it.
  const BlkRequest s = request(BlkRequest::kGetId, 0, 4);
  EXPECT_EQ(run(s), 5u);
  EXPECT_EQ(ram_.peek(s.data, 4), std::vector<u8>(serial.begin(), serial.begin() + 4));
}

TEST_F(VirtioBlkTest, GetIdTruncatesALongSerial) {
  make(false, "0123456789abcdefghijKLMNOP");
  init();
  const BlkRequest r = request(BlkRequest::kGetId, 0, 32);
  EXPECT_EQ(run(r), 21u);
  const std::string want = "0123456789abcdefghij";
  std::vector<u8> expected(want.begin(), want.end());
  expected.resize(32, 0);
  EXPECT_EQ(ram_.peek(r.data, 32), expected);
}

TEST_F(VirtioBlkTest, OutOfRangeSectorsGiveIoErr) {
  make();
  init();
  std::vector<u8> back;
  EXPECT_EQ(read(kSectors, 512, back), kIoErr);
  EXPECT_EQ(read(kSectors - 1, 1024, back), kIoErr);      // starts inside, ends outside
  EXPECT_EQ(read(~u64{0} / 512 + 1, 512, back), kIoErr);  // sector * 512 overflows
  EXPECT_EQ(read(~u64{0}, 512, back), kIoErr);
  EXPECT_EQ(write(kSectors, pattern(512, 8)), kIoErr);
  EXPECT_EQ(write(kSectors - 1, pattern(1024, 8)), kIoErr);
  EXPECT_EQ(disk(kDiskSize - 512, 512), std::vector<u8>(512, 0));
  // Not a whole number of sectors.
  EXPECT_EQ(read(0, 100, back), kIoErr);
  EXPECT_EQ(write(0, pattern(700, 8)), kIoErr);
  EXPECT_EQ(counters().errors, 8u);
  // A zero-length read at the end of the disk is fine.
  EXPECT_EQ(read(kSectors, 0, back), kOk);
  EXPECT_EQ(drv_->status() & VirtioMmio::kStatusNeedsReset, 0u);
}

TEST_F(VirtioBlkTest, ReadOnlyImage) {
  make(/*read_only=*/true);
  image_->bytes()[0] = 0x5a;
  EXPECT_NE(drv_->device_features() & kFeatureRo, 0u);
  init();
  EXPECT_NE(drv_->features() & kFeatureRo, 0u);
  EXPECT_EQ(write(0, pattern(512, 9)), kIoErr);
  EXPECT_EQ(disk(0, 1)[0], 0x5a);
  std::vector<u8> back;
  EXPECT_EQ(read(0, 512, back), kOk);
  EXPECT_EQ(back[0], 0x5a);
  const BlkRequest f = request(BlkRequest::kFlush, 0, 0);
  EXPECT_EQ(run(f), 1u);
  EXPECT_EQ(f.result(ram_), kOk);
  EXPECT_EQ(image_->flushes.load(), 0);
}

TEST_F(VirtioBlkTest, UnsupportedRequestType) {
  make();
  init();
  const BlkRequest r = request(11, 0, 512);  // DISCARD: not offered
  EXPECT_EQ(run(r), 1u);
  EXPECT_EQ(r.result(ram_), kUnsupported);
}

TEST_F(VirtioBlkTest, HostIoErrorGivesIoErr) {
  make();
  init();
  image_->fail_io = true;
  std::vector<u8> back;
  EXPECT_EQ(read(0, 512, back), kIoErr);
  EXPECT_EQ(write(0, pattern(512, 10)), kIoErr);
  const BlkRequest f = request(BlkRequest::kFlush, 0, 0);
  EXPECT_EQ(run(f), 1u);
  EXPECT_EQ(f.result(ram_), kIoErr);
  EXPECT_EQ(counters().errors, 3u);
  const auto lines = log_.lines();
  ASSERT_EQ(lines.size(), 3u) << log_.joined();
  EXPECT_NE(lines[0].find("injected read error"), std::string::npos) << lines[0];
  // The guest saw disk errors; the device carries on.
  image_->fail_io = false;
  EXPECT_EQ(write(0, pattern(512, 10)), kOk);
  EXPECT_EQ(drv_->status() & VirtioMmio::kStatusNeedsReset, 0u);
}

}  // namespace
}  // namespace dvmm::devices
