// virtio-rng (virtio 1.x, 5.4): fills the guest's buffers with bytes from the host's
// getrandom(2), feeding the guest kernel's entropy pool (/dev/hwrng, hw_random).
//
// Threads: the transport's worker thread only.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "devices/virtio/virtio_device.hpp"

namespace dvmm::devices {

class VirtioRng final : public VirtioDevice {
 public:
  explicit VirtioRng(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  u32 device_id() const override { return kVirtioIdRng; }
  u64 device_features() const override { return 0; }
  unsigned queue_count() const override { return 1; }
  u8 config_byte(u64) const override { return 0; }
  u64 config_size() const override { return 0; }
  void process_queue(VirtioQueues& queues, unsigned index) override;
  u64 bytes_given() const { return bytes_given_.load(std::memory_order_relaxed); }  // any thread

 private:
  std::string name_;
  std::vector<u8> buffer_;
  std::atomic<u64> bytes_given_{0};
};

}  // namespace dvmm::devices
