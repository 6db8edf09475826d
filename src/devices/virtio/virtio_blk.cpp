#include "devices/virtio/virtio_blk.hpp"

#include <algorithm>
#include <cstring>

namespace dvmm::devices {

namespace {

constexpr u64 kFeatureSegMax = u64{1} << 2;
constexpr u64 kFeatureRo = u64{1} << 5;
constexpr u64 kFeatureBlkSize = u64{1} << 6;
constexpr u64 kFeatureFlush = u64{1} << 9;

constexpr u32 kTypeIn = 0;
constexpr u32 kTypeOut = 1;
constexpr u32 kTypeFlush = 4;
constexpr u32 kTypeGetId = 8;

constexpr u8 kStatusOk = 0;
constexpr u8 kStatusIoErr = 1;
constexpr u8 kStatusUnsupported = 2;

constexpr u64 kSector = 512;
constexpr u64 kHeaderSize = 16;
constexpr u64 kChunk = 256 << 10;  // bytes moved per image call
constexpr u32 kSegMax = 254;
constexpr unsigned kIdBytes = 20;

void put_le(std::vector<u8>& v, u64 offset, u64 value, unsigned size) {
  for (unsigned i = 0; i < size; ++i) v[offset + i] = static_cast<u8>(value >> (8 * i));
}

}  // namespace

VirtioBlk::VirtioBlk(std::string name, std::unique_ptr<BlockImage> image, std::string serial,
                     std::function<void(const std::string&)> log)
    : name_(std::move(name)),
      image_(std::move(image)),
      serial_(std::move(serial)),
      log_(std::move(log)),
      config_(24, 0),
      buffer_(kChunk) {
  put_le(config_, 0, image_->size() / kSector, 8);  // capacity in 512-byte sectors
  put_le(config_, 12, kSegMax, 4);                  // seg_max
  put_le(config_, 20, kSector, 4);                  // blk_size
}

u64 VirtioBlk::device_features() const {
  u64 f = kFeatureSegMax | kFeatureBlkSize | kFeatureFlush;
  if (image_->read_only()) f |= kFeatureRo;
  return f;
}

template <typename Update>
void VirtioBlk::count(Update&& update) {
  std::lock_guard lock(counters_mutex_);
  update(counters_);
}

u8 VirtioBlk::config_byte(u64 offset) const {
  return offset < config_.size() ? config_[offset] : 0;
}

void VirtioBlk::process_queue(VirtioQueues& queues, unsigned index) {
  Virtqueue& q = queues.queue(index);
  bool pushed = false;
  while (std::optional<DescriptorChain> chain = q.pop()) {
    const u64 writable = chain->writable_bytes();
    if (chain->readable_bytes() < kHeaderSize || writable < 1) {
      throw VirtioError("block request without a header or a status byte");
    }
    u32 written = 0;
    const u8 status = handle(queues, *chain, writable - 1, written);
    // The status byte is the last writable byte.
    chain->write(queues.dma(), writable - 1, std::span<const u8>(&status, 1));
    q.push(chain->head, written + 1);
    pushed = true;
  }
  if (pushed) queues.signal_used(index);
}

u8 VirtioBlk::handle(VirtioQueues& queues, const DescriptorChain& chain, u64 in_len, u32& written) {
  DmaMemory& dma = queues.dma();
  u8 header[kHeaderSize];
  chain.read(dma, 0, header);
  u32 type;
  u64 sector;
  std::memcpy(&type, header, 4);
  std::memcpy(&sector, header + 8, 8);
  try {
    switch (type) {
      case kTypeIn:
      case kTypeOut: {
        const u64 len = type == kTypeIn ? in_len : chain.readable_bytes() - kHeaderSize;
        const u64 offset = sector * kSector;
        if (len % kSector != 0 || sector > image_->size() / kSector ||
            len > image_->size() - offset) {
          count([](VirtioBlkCounters& c) { ++c.errors; });
          return kStatusIoErr;
        }
        if (type == kTypeOut && image_->read_only()) {
          count([](VirtioBlkCounters& c) { ++c.errors; });
          return kStatusIoErr;
        }
        for (u64 done = 0; done < len;) {
          const u64 n = std::min(kChunk, len - done);
          std::span<u8> buf(buffer_.data(), n);
          if (type == kTypeIn) {
            image_->read(offset + done, buf);
            chain.write(dma, done, buf);
          } else {
            chain.read(dma, kHeaderSize + done, buf);
            image_->write(offset + done, buf);
          }
          done += n;
        }
        if (type == kTypeIn) {
          written = static_cast<u32>(len);
          count([&](VirtioBlkCounters& c) {
            ++c.reads;
            c.bytes_read += len;
          });
        } else {
          count([&](VirtioBlkCounters& c) {
            ++c.writes;
            c.bytes_written += len;
          });
        }
        return kStatusOk;
      }
      case kTypeFlush:
        if (!image_->read_only()) image_->flush();
        count([](VirtioBlkCounters& c) { ++c.flushes; });
        return kStatusOk;
      case kTypeGetId: {
        u8 id[kIdBytes] = {};
        std::memcpy(id, serial_.data(), std::min<std::size_t>(serial_.size(), kIdBytes));
        written = static_cast<u32>(
            chain.write(dma, 0, std::span<const u8>(id, std::min<u64>(kIdBytes, in_len))));
        return kStatusOk;
      }
      default:
        return kStatusUnsupported;
    }
  } catch (const ImageError& e) {
    count([](VirtioBlkCounters& c) { ++c.errors; });
    if (log_) log_(name_ + ": " + e.what());
    return kStatusIoErr;
  }
}

}  // namespace dvmm::devices
