#include "vmm/trace_buffer.hpp"

namespace dvmm::vmm {

void TraceBuffer::append(const std::string& json) {
  if (forward_) {
    forward_(json);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    const u64 seq = next_seq_++;
    std::string line = "{\"seq\":" + std::to_string(seq);
    if (json.size() > 2)
      line += "," + json.substr(1);  // json starts with '{'
    else
      line += "}";
    ring_.push_back(std::move(line));
    if (ring_.size() > capacity_) {
      ring_.pop_front();
      ++first_seq_;
    }
  }
  cv_.notify_all();
}

TraceBuffer::Batch TraceBuffer::read(u64 since, std::size_t max, std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, wait, [&] { return next_seq_ > since; });
  Batch b;
  u64 from = since;
  if (from < first_seq_) {
    b.dropped = first_seq_ - from;
    from = first_seq_;
  }
  for (u64 s = from; s < next_seq_ && b.events.size() < max; ++s) {
    b.events.push_back(ring_[s - first_seq_]);
  }
  b.next = from + b.events.size();
  return b;
}

u64 TraceBuffer::appended() const {
  std::lock_guard lock(mutex_);
  return next_seq_;
}

}  // namespace dvmm::vmm
