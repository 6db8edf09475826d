// virtio-console (virtio 1.x, 5.3) with one port (no MULTIPORT): the guest's /dev/hvc1
// (hvc0 is the SBI console of the dvmm guest kernel, which registers first). Output goes to a
// host callback; input pushed with push_input() is given to the guest's receive buffers.
//
// Threads: process_* on the transport's worker; push_input from any thread.
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "devices/virtio/virtio_device.hpp"

namespace dvmm::devices {

class VirtioConsole final : public VirtioDevice {
 public:
  using Output = std::function<void(std::span<const u8>)>;
  VirtioConsole(std::string name, Output output)
      : name_(std::move(name)), output_(std::move(output)) {}

  // Where input wake-ups go (the transport's kick()).
  void set_kick(std::function<void()> kick) { kick_ = std::move(kick); }
  // Bytes for the guest (any thread).
  void push_input(std::span<const u8> bytes);

  std::string_view name() const override { return name_; }
  u32 device_id() const override { return kVirtioIdConsole; }
  u64 device_features() const override { return 0; }
  unsigned queue_count() const override { return 2; }
  bool drains_queue(unsigned index) const override { return index != 0; }  // 0: receive
  u8 config_byte(u64) const override { return 0; }
  u64 config_size() const override { return 12; }
  void process_queue(VirtioQueues& queues, unsigned index) override;
  void process_external(VirtioQueues& queues) override;
  void reset() override;

 private:
  void deliver(VirtioQueues& queues);

  std::string name_;
  Output output_;
  std::function<void()> kick_;
  std::mutex mutex_;
  std::deque<u8> input_;
  std::vector<u8> buffer_;
};

}  // namespace dvmm::devices
