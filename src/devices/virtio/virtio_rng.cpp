#include "devices/virtio/virtio_rng.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>

namespace dvmm::devices {

namespace {
constexpr u64 kMaxPerRequest = 64 << 10;  // a guest may post huge buffers; fill this much
}

void VirtioRng::process_queue(VirtioQueues& queues, unsigned index) {
  Virtqueue& q = queues.queue(index);
  bool pushed = false;
  while (std::optional<DescriptorChain> chain = q.pop()) {
    const u64 want = std::min(chain->writable_bytes(), kMaxPerRequest);
    buffer_.resize(want);
    u64 got = 0;
    while (got < want) {
      const ssize_t n = ::getrandom(buffer_.data() + got, want - got, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;  // give what we have
      }
      got += static_cast<u64>(n);
    }
    const u64 written = chain->write(queues.dma(), 0, std::span<const u8>(buffer_.data(), got));
    bytes_given_.fetch_add(written, std::memory_order_relaxed);
    q.push(chain->head, static_cast<u32>(written));
    pushed = true;
  }
  if (pushed) queues.signal_used(index);
}

}  // namespace dvmm::devices
