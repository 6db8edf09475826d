// The virtio-mmio transport, version 2 (virtio 1.x, 4.2): the register window a driver sees,
// feature negotiation, the device status machine, queue setup and the interrupt, around a
// VirtioDevice (block, net, console, rng).
//
// The device works on its own worker thread, like an I/O thread: a QueueNotify write only
// wakes it, so the vCPU that notified goes on at once, and a device on another node than
// the vCPU never makes a network thread wait for guest memory. A guest that breaks the
// protocol (bad chain, bad ring) puts the device into DEVICE_NEEDS_RESET with a config
// interrupt, as the spec says; the host process carries on and a driver reset revives it.
//
// Threads: read()/write() from vCPU threads (register state under a mutex; QueueReady,
// reset and DRIVER_OK wait for the worker to be between batches). kick() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "devices/mmio_device.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace dvmm::devices {

struct VirtioCounters {
  u64 notifications = 0;  // QueueNotify writes
  u64 interrupts = 0;     // used-buffer interrupts raised
  u64 chains = 0;         // chains taken from all queues
  u64 errors = 0;         // times the device entered DEVICE_NEEDS_RESET
};

class VirtioMmio final : public MmioDevice, private VirtioQueues {
 public:
  static constexpr u64 kWindowSize = 0x1000;
  // Device status bits (2.1).
  static constexpr u32 kStatusAcknowledge = 1;
  static constexpr u32 kStatusDriver = 2;
  static constexpr u32 kStatusDriverOk = 4;
  static constexpr u32 kStatusFeaturesOk = 8;
  static constexpr u32 kStatusNeedsReset = 64;
  static constexpr u32 kStatusFailed = 128;

  // `log` receives one line per protocol error (may be empty).
  VirtioMmio(std::unique_ptr<VirtioDevice> device, DmaMemory& dma, IrqLine& irq,
             std::function<void(const std::string&)> log = {});
  ~VirtioMmio() override;

  std::string_view name() const override { return device_->name(); }
  u64 size() const override { return kWindowSize; }
  u64 read(u64 offset, unsigned size) override;
  void write(u64 offset, unsigned size, u64 value) override;
  void reset() override;
  void describe(FdtBuilder& fdt, const FdtPlacement& where) const override;

  // Wakes the worker to run VirtioDevice::process_external (any thread).
  void kick();
  VirtioDevice& device() { return *device_; }
  VirtioCounters counters() const;
  u32 status() const;

 private:
  // VirtioQueues (worker thread)
  Virtqueue& queue(unsigned index) override { return *queues_[index]; }
  void signal_used(unsigned index) override;
  DmaMemory& dma() override { return dma_; }
  u64 negotiated_features() const override { return driver_features_; }

  u64 offered_features() const;
  u32 read_register(u64 offset);
  void write_register(u64 offset, u32 value);
  void set_status(u32 value);
  void raise(u32 bits);
  void worker_loop();
  void fail_device(const std::string& why);  // mutex_ held
  void reset_locked();
  // Runs `fn` while the worker is between batches (blocks the caller until then).
  void with_worker_idle(std::unique_lock<std::mutex>& lock, const std::function<void()>& fn);

  std::unique_ptr<VirtioDevice> device_;
  DmaMemory& dma_;
  IrqLine& irq_;
  std::function<void(const std::string&)> log_;
  std::vector<std::unique_ptr<Virtqueue>> queues_;

  // Register state, under mutex_.
  mutable std::mutex mutex_;
  std::condition_variable worker_cv_;  // work for the worker
  std::condition_variable idle_cv_;    // the worker finished a batch
  u32 status_ = 0;
  u32 device_features_sel_ = 0;
  u32 driver_features_sel_ = 0;
  u64 driver_features_ = 0;
  u32 queue_sel_ = 0;
  struct QueueRegs {
    u32 num = 0;
    u64 desc = 0, driver = 0, device = 0;
    bool ready = false;
  };
  std::vector<QueueRegs> queue_regs_;
  u32 notified_ = 0;  // bit per queue, for the worker
  bool kicked_ = false;
  bool busy_ = false;    // the worker is in a batch
  bool active_ = false;  // DRIVER_OK and not failed
  bool stopping_ = false;
  std::atomic<bool> stop_requested_{false};  // stopping_, readable without the mutex

  std::mutex irq_mutex_;
  std::atomic<u32> interrupt_status_{0};

  std::atomic<u64> notifications_{0}, interrupts_{0}, errors_{0};
  std::thread worker_;
};

// The device-tree node of a virtio-mmio window (the same for every device type; also used
// for a device that lives on another node of a distributed VM).
void describe_virtio_mmio(FdtBuilder& fdt, const FdtPlacement& where);

}  // namespace dvmm::devices
