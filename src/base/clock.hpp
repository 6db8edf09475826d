// CLOCK_MONOTONIC (std::chrono::steady_clock) in nanoseconds: the clock that node processes
// on one host share, so timestamps taken by one can be compared by another (IPI latency,
// the guest-time epoch).
//
// Threads: any.
#pragma once

#include <chrono>

#include "base/types.hpp"

namespace dvmm {

inline u64 monotonic_ns() {
  return static_cast<u64>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now().time_since_epoch())
                              .count());
}

}  // namespace dvmm
