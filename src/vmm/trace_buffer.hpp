// The live trace stream of a VM (issue 6): the events that the execution controls ask to
// log (intercepted exceptions and CSR accesses, breakpoints, single steps, traced SBI calls
// and MMIO accesses), one JSON object per event, numbered. A bounded ring: readers that
// fall behind lose the oldest events and are told how many (`dropped`).
//
// Threads: append() from any thread (vCPUs); read() from any thread, and may block up to
// its timeout waiting for new events.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "base/types.hpp"

namespace dvmm::vmm {

class TraceBuffer {
 public:
  explicit TraceBuffer(std::size_t capacity = 65536) : capacity_(capacity) {}

  // `json` is one complete JSON object without a trailing newline; the buffer adds the
  // sequence number as field "seq" in front.
  void append(const std::string& json);
  // Hands every event to `forward` instead of keeping it (a node of a distributed VM whose
  // stream is on another node). Set before events arrive.
  void set_forward(std::function<void(const std::string&)> forward) {
    forward_ = std::move(forward);
  }

  struct Batch {
    std::vector<std::string> events;  // JSON objects, oldest first
    u64 next = 0;                     // pass as `since` to read on
    u64 dropped = 0;                  // events after `since` that were overwritten
  };
  // Events with seq >= since, at most `max`; waits up to `wait` for the first one.
  Batch read(u64 since, std::size_t max, std::chrono::milliseconds wait);
  u64 appended() const;

 private:
  const std::size_t capacity_;
  std::function<void(const std::string&)> forward_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string> ring_;
  u64 first_seq_ = 0;  // seq of ring_.front()
  u64 next_seq_ = 0;
};

}  // namespace dvmm::vmm
