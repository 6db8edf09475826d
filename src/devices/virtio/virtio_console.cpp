#include "devices/virtio/virtio_console.hpp"

#include <algorithm>

namespace dvmm::devices {

namespace {
constexpr unsigned kReceiveQueue = 0;
constexpr unsigned kTransmitQueue = 1;
constexpr std::size_t kMaxInput = 64 << 10;
constexpr u64 kMaxOutputChain = 1 << 20;
}  // namespace

void VirtioConsole::push_input(std::span<const u8> bytes) {
  {
    std::lock_guard lock(mutex_);
    const std::size_t room = kMaxInput - std::min(kMaxInput, input_.size());
    input_.insert(input_.end(), bytes.begin(), bytes.begin() + std::min(room, bytes.size()));
  }
  if (kick_) kick_();
}

void VirtioConsole::process_queue(VirtioQueues& queues, unsigned index) {
  if (index == kReceiveQueue) {
    deliver(queues);
    return;
  }
  Virtqueue& q = queues.queue(kTransmitQueue);
  bool pushed = false;
  while (std::optional<DescriptorChain> chain = q.pop()) {
    buffer_.resize(std::min(chain->readable_bytes(), kMaxOutputChain));
    chain->read(queues.dma(), 0, buffer_);
    if (output_ && !buffer_.empty()) output_(buffer_);
    q.push(chain->head, 0);
    pushed = true;
  }
  if (pushed) queues.signal_used(kTransmitQueue);
}

void VirtioConsole::process_external(VirtioQueues& queues) {
  deliver(queues);
}

void VirtioConsole::deliver(VirtioQueues& queues) {
  Virtqueue& q = queues.queue(kReceiveQueue);
  if (!q.ready()) return;
  bool pushed = false;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (input_.empty()) break;
    }
    std::optional<DescriptorChain> chain = q.pop();
    if (!chain) break;
    std::vector<u8> bytes;
    {
      std::lock_guard lock(mutex_);
      const std::size_t n = std::min<std::size_t>(input_.size(), chain->writable_bytes());
      bytes.assign(input_.begin(), input_.begin() + static_cast<std::ptrdiff_t>(n));
      input_.erase(input_.begin(), input_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    const u64 written = chain->write(queues.dma(), 0, bytes);
    q.push(chain->head, static_cast<u32>(written));
    pushed = true;
  }
  if (pushed) queues.signal_used(kReceiveQueue);
}

void VirtioConsole::reset() {
  std::lock_guard lock(mutex_);
  input_.clear();
}

}  // namespace dvmm::devices
