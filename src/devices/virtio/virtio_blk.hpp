// virtio-blk (virtio 1.x, 5.2) over a BlockImage: reads, writes, FLUSH (the image's data and
// metadata reach stable storage before the request completes), GET_ID, and read-only disks
// (VIRTIO_BLK_F_RO; writes complete with IOERR). A host I/O error completes the request with
// IOERR and is logged; the guest sees a disk error, never a dead monitor.
//
// Threads: the transport's worker thread only.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/block/block_image.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace dvmm::devices {

struct VirtioBlkCounters {
  u64 reads = 0, writes = 0, flushes = 0, bytes_read = 0, bytes_written = 0, errors = 0;
};

class VirtioBlk final : public VirtioDevice {
 public:
  // `serial` is what GET_ID returns (up to 20 bytes; /sys/block/vdX/serial in the guest).
  VirtioBlk(std::string name, std::unique_ptr<BlockImage> image, std::string serial,
            std::function<void(const std::string&)> log = {});

  std::string_view name() const override { return name_; }
  u32 device_id() const override { return kVirtioIdBlock; }
  u64 device_features() const override;
  unsigned queue_count() const override { return 1; }
  u8 config_byte(u64 offset) const override;
  u64 config_size() const override { return config_.size(); }
  void process_queue(VirtioQueues& queues, unsigned index) override;

  BlockImage& image() { return *image_; }
  // Any thread.
  VirtioBlkCounters counters() const {
    std::lock_guard lock(counters_mutex_);
    return counters_;
  }

 private:
  template <typename Update>
  void count(Update&& update);
  u8 handle(VirtioQueues& queues, const DescriptorChain& chain, u64 data_len, u32& written);

  std::string name_;
  std::unique_ptr<BlockImage> image_;
  std::string serial_;
  std::function<void(const std::string&)> log_;
  std::vector<u8> config_;
  std::vector<u8> buffer_;
  mutable std::mutex counters_mutex_;  // the worker updates, stats readers copy
  VirtioBlkCounters counters_;
};

}  // namespace dvmm::devices
