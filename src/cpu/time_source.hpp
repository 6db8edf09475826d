// Where the `time` CSR and the timer comparator get their time from. One host: the host's
// monotonic clock scaled to the timebase. Several hosts: the same plus an offset measured
// at join (the cluster layer supplies it). now() must never go backwards.
#pragma once

#include <time.h>

#include <atomic>

#include "base/types.hpp"

namespace dvmm::cpu {

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  // Current time in timebase ticks. Any thread.
  virtual u64 now() const = 0;
  virtual u64 frequency_hz() const = 0;
};

// Host CLOCK_MONOTONIC scaled to `hz`, starting near zero when constructed (so guest time
// starts at boot), plus a fixed offset in ticks.
class HostMonotonicTime final : public TimeSource {
 public:
  explicit HostMonotonicTime(u64 hz = 10'000'000, u64 offset_ticks = 0)
      : hz_(hz), offset_(offset_ticks), start_ns_(host_ns()) {}
  u64 now() const override {
    const u64 ns = host_ns() - start_ns_.load(std::memory_order_relaxed);
    return offset_ + static_cast<u64>((static_cast<u128>(ns) * hz_) / 1'000'000'000u);
  }
  u64 frequency_hz() const override { return hz_; }
  // Starts counting from zero again (a reboot: the guest's time starts at its boot).
  // Call while no hart runs: time must not go backwards under a running guest.
  void restart() { start_ns_.store(host_ns(), std::memory_order_relaxed); }
  // Counts from a given CLOCK_MONOTONIC instant (host_ns()) instead: the nodes of a VM on
  // one host share the boot node's epoch, so `time` agrees across them. Same rule as
  // restart(); an epoch in the future is clamped to now.
  void restart_at(u64 epoch_ns) {
    const u64 now = host_ns();
    start_ns_.store(epoch_ns > now ? now : epoch_ns, std::memory_order_relaxed);
  }
  // The CLOCK_MONOTONIC instant at which now() was zero (minus the offset).
  u64 epoch_ns() const { return start_ns_.load(std::memory_order_relaxed); }
  static u64 host_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<u64>(ts.tv_sec) * 1'000'000'000u + static_cast<u64>(ts.tv_nsec);
  }

 private:
  u64 hz_;
  u64 offset_;
  std::atomic<u64> start_ns_;
};

}  // namespace dvmm::cpu
