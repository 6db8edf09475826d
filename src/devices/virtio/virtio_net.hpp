// virtio-net (virtio 1.x, 5.1) over a NetBackend: one receive and one transmit queue, a MAC
// address and link status in the configuration space, no offloads (frames carry full
// checksums, so any backend can take them). Frames from the backend wait in a bounded
// queue until the guest posts receive buffers; when it is full they are dropped, as a real
// NIC drops them (counted).
//
// Threads: process_* on the transport's worker; the backend's receive callback (any
// thread) only queues the frame and kicks the worker.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "devices/net/net_backend.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace dvmm::devices {

struct VirtioNetCounters {
  u64 rx_frames = 0, rx_bytes = 0, rx_dropped = 0, tx_frames = 0, tx_bytes = 0, tx_errors = 0;
  u64 tx_dropped = 0;  // sent by the guest, lost by the backend (the other side was full)
};

class VirtioNet final : public VirtioDevice {
 public:
  static constexpr std::size_t kMaxPendingFrames = 1024;

  VirtioNet(std::string name, std::unique_ptr<NetBackend> backend, const MacAddress& mac);
  ~VirtioNet() override;

  // Starts the backend; frames it receives wake the worker through `kick`.
  void start(std::function<void()> kick);

  std::string_view name() const override { return name_; }
  u32 device_id() const override { return kVirtioIdNet; }
  u64 device_features() const override;
  unsigned queue_count() const override { return 2; }
  bool drains_queue(unsigned index) const override { return index != 0; }  // 0: receive
  u8 config_byte(u64 offset) const override;
  u64 config_size() const override { return 8; }
  void process_queue(VirtioQueues& queues, unsigned index) override;
  void process_external(VirtioQueues& queues) override;
  void reset() override;
  void shutdown() override;

  VirtioNetCounters counters() const;
  NetBackend& backend() { return *backend_; }

 private:
  void on_frame(std::span<const u8> frame);
  void deliver(VirtioQueues& queues);
  void transmit(VirtioQueues& queues);

  std::string name_;
  std::unique_ptr<NetBackend> backend_;
  MacAddress mac_;
  std::function<void()> kick_;

  mutable std::mutex mutex_;
  std::deque<std::vector<u8>> pending_;  // frames for the guest
  VirtioNetCounters counters_;
  std::vector<u8> tx_buffer_;
};

}  // namespace dvmm::devices
