// The device-type half of a virtio device (block, net, console, rng): what it offers, its
// configuration space, and how it serves its queues. The transport half (virtio_mmio.hpp)
// owns the registers, the queues, the worker thread and the interrupt, and calls these
// hooks on the worker thread, one at a time.
#pragma once

#include <string_view>

#include "base/types.hpp"
#include "devices/dma_memory.hpp"
#include "devices/virtio/virtqueue.hpp"

namespace dvmm::devices {

// Device IDs (virtio 1.x, 5).
inline constexpr u32 kVirtioIdNet = 1;
inline constexpr u32 kVirtioIdBlock = 2;
inline constexpr u32 kVirtioIdConsole = 3;
inline constexpr u32 kVirtioIdRng = 4;

// Transport-independent feature bits (6).
inline constexpr u64 kVirtioFIndirectDesc = u64{1} << 28;
inline constexpr u64 kVirtioFEventIdx = u64{1} << 29;
inline constexpr u64 kVirtioFVersion1 = u64{1} << 32;

// What a device type reaches of its transport (on the worker thread).
class VirtioQueues {
 public:
  virtual ~VirtioQueues() = default;
  virtual Virtqueue& queue(unsigned index) = 0;
  // After a batch of push()es on a queue: interrupts the driver if it wants one.
  virtual void signal_used(unsigned index) = 0;
  virtual DmaMemory& dma() = 0;
  // The features the driver accepted.
  virtual u64 negotiated_features() const = 0;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual std::string_view name() const = 0;
  virtual u32 device_id() const = 0;
  // Device-type feature bits; the transport adds VERSION_1, INDIRECT_DESC and EVENT_IDX.
  virtual u64 device_features() const = 0;
  virtual unsigned queue_count() const = 0;
  virtual u16 queue_max_size(unsigned /*index*/) const { return 256; }
  // True if process_queue takes every available chain of the queue. False for receive
  // queues, whose buffers wait until there is something to put in them (they are filled
  // from process_external).
  virtual bool drains_queue(unsigned /*index*/) const { return true; }
  // The configuration space (little endian), read byte by byte by the transport.
  virtual u8 config_byte(u64 offset) const = 0;
  virtual u64 config_size() const = 0;
  // A driver write to the configuration space (most devices ignore them).
  virtual void write_config(u64 /*offset*/, unsigned /*size*/, u64 /*value*/) {}

  // The driver set DRIVER_OK: the device may use its queues from now on.
  virtual void activate(VirtioQueues& /*queues*/) {}
  // The driver notified queue `index`. Throws VirtioError for a broken chain.
  virtual void process_queue(VirtioQueues& queues, unsigned index) = 0;
  // Work from outside (VirtioMmio::kick(): a frame arrived, input is ready).
  virtual void process_external(VirtioQueues& /*queues*/) {}
  // Back to the power-on state (device reset; the queues are reset by the transport).
  virtual void reset() {}
  // Stops threads of the device's backend before the transport goes away.
  virtual void shutdown() {}
};

}  // namespace dvmm::devices
