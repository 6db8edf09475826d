// A lock-free latency histogram for counters that benchmarks read (DSM fault service time,
// cross-node IPI and fence latency). Log-linear buckets: 4 per power of two, so a
// percentile is exact to within about 19%; the mean is exact.
//
// Threads: record() from any thread, concurrently; snapshot() from any thread (a snapshot
// taken while others record may miss the newest samples).
#pragma once

#include <array>
#include <atomic>
#include <bit>

#include "base/types.hpp"

namespace dvmm {

struct LatencySummary {
  u64 count = 0;
  u64 mean_ns = 0;
  u64 p50_ns = 0;
  u64 p90_ns = 0;
  u64 p99_ns = 0;
  u64 max_ns = 0;
};

class LatencyStats {
 public:
  void record(u64 ns) {
    buckets_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(ns, std::memory_order_relaxed);
    u64 old = max_.load(std::memory_order_relaxed);
    while (ns > old && !max_.compare_exchange_weak(old, ns, std::memory_order_relaxed)) {
    }
  }

  LatencySummary snapshot() const {
    LatencySummary s;
    std::array<u64, kBuckets> b;
    u64 total = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      b[i] = buckets_[i].load(std::memory_order_relaxed);
      total += b[i];
    }
    s.count = total;
    if (total == 0) return s;
    s.mean_ns = sum_.load(std::memory_order_relaxed) / std::max<u64>(count_.load(), 1);
    s.max_ns = max_.load(std::memory_order_relaxed);
    s.p50_ns = percentile(b, total, 50);
    s.p90_ns = percentile(b, total, 90);
    s.p99_ns = percentile(b, total, 99);
    return s;
  }

 private:
  static constexpr std::size_t kSub = 4;  // buckets per power of two
  static constexpr std::size_t kBuckets = 64 * kSub;

  static std::size_t bucket_of(u64 ns) {
    if (ns < kSub) return static_cast<std::size_t>(ns);
    const unsigned log = 63 - static_cast<unsigned>(std::countl_zero(ns));
    const u64 sub = (ns >> (log - 2)) & (kSub - 1);
    return log * kSub + static_cast<std::size_t>(sub);
  }
  // The midpoint of a bucket's range.
  static u64 value_of(std::size_t bucket) {
    if (bucket < kSub) return bucket;
    const unsigned log = static_cast<unsigned>(bucket / kSub);
    const u64 sub = bucket % kSub;
    const u64 lo = (u64{1} << log) + (sub << (log - 2));
    return lo + (u64{1} << (log - 2)) / 2;
  }
  static u64 percentile(const std::array<u64, kBuckets>& b, u64 total, unsigned pct) {
    const u64 rank = (total * pct + 99) / 100;  // 1-based rank of the sample
    u64 seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += b[i];
      if (seen >= rank) return value_of(i);
    }
    return value_of(kBuckets - 1);
  }

  std::array<std::atomic<u64>, kBuckets> buckets_{};
  std::atomic<u64> count_{0};
  std::atomic<u64> sum_{0};
  std::atomic<u64> max_{0};
};

}  // namespace dvmm
