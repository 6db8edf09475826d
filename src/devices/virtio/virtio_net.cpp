#include "devices/virtio/virtio_net.hpp"

#include <cstring>

namespace dvmm::devices {

namespace {

constexpr u64 kFeatureMac = u64{1} << 5;
constexpr u64 kFeatureStatus = u64{1} << 16;
constexpr u16 kLinkUp = 1;
// struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
// num_buffers. All zero but num_buffers = 1 on receive.
constexpr u64 kHeaderSize = 12;
constexpr unsigned kRxQueue = 0;
constexpr unsigned kTxQueue = 1;

}  // namespace

VirtioNet::VirtioNet(std::string name, std::unique_ptr<NetBackend> backend, const MacAddress& mac)
    : name_(std::move(name)), backend_(std::move(backend)), mac_(mac) {}

VirtioNet::~VirtioNet() {
  shutdown();
}

void VirtioNet::start(std::function<void()> kick) {
  kick_ = std::move(kick);
  backend_->start([this](std::span<const u8> frame) { on_frame(frame); });
}

void VirtioNet::shutdown() {
  backend_->stop();
}

u64 VirtioNet::device_features() const {
  return kFeatureMac | kFeatureStatus;
}

u8 VirtioNet::config_byte(u64 offset) const {
  if (offset < 6) return mac_[offset];
  if (offset == 6) return kLinkUp & 0xff;
  return 0;
}

void VirtioNet::on_frame(std::span<const u8> frame) {
  {
    std::lock_guard lock(mutex_);
    if (pending_.size() >= kMaxPendingFrames) {
      ++counters_.rx_dropped;
      return;
    }
    pending_.emplace_back(frame.begin(), frame.end());
  }
  if (kick_) kick_();
}

void VirtioNet::process_queue(VirtioQueues& queues, unsigned index) {
  if (index == kTxQueue) transmit(queues);
  if (index == kRxQueue) deliver(queues);  // the guest posted receive buffers
}

void VirtioNet::process_external(VirtioQueues& queues) {
  deliver(queues);
}

void VirtioNet::deliver(VirtioQueues& queues) {
  Virtqueue& q = queues.queue(kRxQueue);
  if (!q.ready()) return;
  bool pushed = false;
  for (;;) {
    std::vector<u8> frame;
    {
      std::lock_guard lock(mutex_);
      if (pending_.empty()) break;
      frame = std::move(pending_.front());
      pending_.pop_front();
    }
    std::optional<DescriptorChain> chain = q.pop();
    if (!chain) {  // no buffer posted: keep the frame for the guest's next notification
      std::lock_guard lock(mutex_);
      pending_.push_front(std::move(frame));
      break;
    }
    if (chain->writable_bytes() < kHeaderSize + frame.size()) {
      // Too small (the guest posts MTU-sized buffers; a jumbo frame cannot fit): drop it.
      q.push(chain->head, 0);
      pushed = true;
      std::lock_guard lock(mutex_);
      ++counters_.rx_dropped;
      continue;
    }
    u8 header[kHeaderSize] = {};
    header[10] = 1;  // num_buffers
    chain->write(queues.dma(), 0, header);
    chain->write(queues.dma(), kHeaderSize, frame);
    q.push(chain->head, static_cast<u32>(kHeaderSize + frame.size()));
    pushed = true;
    std::lock_guard lock(mutex_);
    ++counters_.rx_frames;
    counters_.rx_bytes += frame.size();
  }
  if (pushed) queues.signal_used(kRxQueue);
}

void VirtioNet::transmit(VirtioQueues& queues) {
  Virtqueue& q = queues.queue(kTxQueue);
  bool pushed = false;
  while (std::optional<DescriptorChain> chain = q.pop()) {
    const u64 total = chain->readable_bytes();
    if (total < kHeaderSize || total - kHeaderSize > NetBackend::kMaxFrame) {
      std::lock_guard lock(mutex_);
      ++counters_.tx_errors;
    } else {
      tx_buffer_.resize(total - kHeaderSize);
      chain->read(queues.dma(), kHeaderSize, tx_buffer_);
      backend_->send(tx_buffer_);
      std::lock_guard lock(mutex_);
      ++counters_.tx_frames;
      counters_.tx_bytes += tx_buffer_.size();
    }
    q.push(chain->head, 0);
    pushed = true;
  }
  if (pushed) queues.signal_used(kTxQueue);
}

void VirtioNet::reset() {
  std::lock_guard lock(mutex_);
  pending_.clear();
}

VirtioNetCounters VirtioNet::counters() const {
  std::lock_guard lock(mutex_);
  VirtioNetCounters c = counters_;
  c.tx_dropped = backend_->dropped();
  return c;
}

}  // namespace dvmm::devices
