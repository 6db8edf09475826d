// A split virtqueue (virtio 1.x, 2.7) as the device side sees it: takes descriptor chains
// from the available ring, gives them back through the used ring, and decides whether the
// driver wants an interrupt (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX).
// Every guest access goes through DmaMemory and is checked: a chain that loops, points
// outside guest RAM, nests indirect tables, puts a readable descriptor after a writable
// one or exceeds the size limits throws VirtioError; the transport then puts the device
// into its error state (DEVICE_NEEDS_RESET) and stops using the queue.
//
// Threads: one thread at a time (the device's worker); configure() and reset() while the
// worker does not use the queue.
#pragma once

#include <atomic>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/types.hpp"
#include "devices/dma_memory.hpp"

namespace dvmm::devices {

// The guest broke the virtio protocol; the message says how (for the log).
class VirtioError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One buffer of a chain: guest-physical range and direction.
struct VirtqSegment {
  Gpa addr = 0;
  u32 len = 0;
  bool device_writable = false;
};

// A descriptor chain taken from the available ring: its readable segments first, then the
// writable ones (the order the spec requires). Copy helpers gather and scatter through DMA.
class DescriptorChain {
 public:
  u16 head = 0;
  std::vector<VirtqSegment> segments;

  u64 readable_bytes() const;
  u64 writable_bytes() const;
  // Copies up to out.size() readable bytes starting `offset` bytes into the readable part;
  // returns how many were copied. Throws VirtioError when guest memory is not there.
  u64 read(DmaMemory& dma, u64 offset, std::span<u8> out) const;
  // Copies into the writable part starting `offset` bytes into it; returns bytes written
  // (less than data.size() when the chain is too short).
  u64 write(DmaMemory& dma, u64 offset, std::span<const u8> data) const;
};

struct VirtqueueLimits {
  // The largest total length of one chain (guards host memory for devices that gather).
  u64 max_chain_bytes = u64{256} << 20;
};

class Virtqueue {
 public:
  static constexpr u16 kMaxSize = 1024;

  Virtqueue(DmaMemory& dma, u16 max_size = 256) : dma_(dma), max_size_(max_size) {}

  u16 max_size() const { return max_size_; }
  // The driver's layout (QueueNum, QueueDesc/Driver/Device) when it sets QueueReady.
  // Returns an error text for a bad size or misaligned ring, empty when fine.
  std::string configure(u16 size, Gpa desc, Gpa avail, Gpa used, bool event_idx);
  void reset();
  bool ready() const { return ready_; }
  u16 size() const { return size_; }

  // The next available chain, or nullopt when the ring is empty. Throws VirtioError.
  std::optional<DescriptorChain> pop();
  // Returns a chain to the driver with `written` bytes written into its writable part.
  void push(u16 head, u32 written);
  // True when the driver wants an interrupt for the chains pushed since the last call
  // (called once per batch, after the pushes). With EVENT_IDX it also asks the driver to
  // notify again for the next available chain.
  bool should_interrupt();
  // With EVENT_IDX: asks for a notification when the driver makes the next chain available
  // (before the worker sleeps). Returns true if chains are available that were not taken:
  // on a queue the device drains, they arrived meanwhile and must be processed now.
  // Chains the device has already seen but left in the ring (virtio-net's receive buffers
  // with no frame to give) do not count, or the worker would never sleep.
  bool enable_notifications();

  u64 chains_popped() const { return popped_.load(std::memory_order_relaxed); }

 private:
  u16 read_u16(Gpa gpa);
  void write_u16(Gpa gpa, u16 value);
  void walk(u16 head, DescriptorChain& chain);

  DmaMemory& dma_;
  const u16 max_size_;
  VirtqueueLimits limits_;
  bool ready_ = false;
  bool event_idx_ = false;
  u16 size_ = 0;
  Gpa desc_ = 0, avail_ = 0, used_ = 0;
  u16 last_avail_ = 0;          // next available ring slot to take
  u16 seen_avail_ = 0;          // the driver's available index when the device last read it
  u16 used_idx_ = 0;            // next used ring slot to fill
  u16 signalled_used_ = 0;      // used index at the last interrupt decision
  std::atomic<u64> popped_{0};  // read by VirtioMmio::counters() from other threads
};

}  // namespace dvmm::devices
