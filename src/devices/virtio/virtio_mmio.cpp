#include "devices/virtio/virtio_mmio.hpp"

#include <algorithm>

namespace dvmm::devices {

namespace {

// Register offsets (virtio 1.x, 4.2.2).
enum : u64 {
  kMagicValue = 0x000,
  kVersion = 0x004,
  kDeviceId = 0x008,
  kVendorId = 0x00c,
  kDeviceFeatures = 0x010,
  kDeviceFeaturesSel = 0x014,
  kDriverFeatures = 0x020,
  kDriverFeaturesSel = 0x024,
  kQueueSel = 0x030,
  kQueueNumMax = 0x034,
  kQueueNum = 0x038,
  kQueueReady = 0x044,
  kQueueNotify = 0x050,
  kInterruptStatus = 0x060,
  kInterruptAck = 0x064,
  kStatus = 0x070,
  kQueueDescLow = 0x080,
  kQueueDescHigh = 0x084,
  kQueueDriverLow = 0x090,
  kQueueDriverHigh = 0x094,
  kQueueDeviceLow = 0x0a0,
  kQueueDeviceHigh = 0x0a4,
  kShmSel = 0x0ac,
  kShmLenLow = 0x0b0,
  kShmLenHigh = 0x0b4,
  kShmBaseLow = 0x0b8,
  kShmBaseHigh = 0x0bc,
  kConfigGeneration = 0x0fc,
  kConfig = 0x100,
};

constexpr u32 kMagic = 0x74726976;   // "virt"
constexpr u32 kVendor = 0x4d4d5644;  // "DVMM"
constexpr u32 kInterruptUsedBuffer = 1;
constexpr u32 kInterruptConfigChange = 2;

void set_half(u64& reg, bool high, u32 value) {
  reg = high ? (reg & 0xffffffffu) | (u64{value} << 32) : (reg & ~u64{0xffffffffu}) | value;
}

}  // namespace

VirtioMmio::VirtioMmio(std::unique_ptr<VirtioDevice> device, DmaMemory& dma, IrqLine& irq,
                       std::function<void(const std::string&)> log)
    : device_(std::move(device)), dma_(dma), irq_(irq), log_(std::move(log)) {
  const unsigned n = std::min(device_->queue_count(), 32u);
  for (unsigned i = 0; i < n; ++i) {
    queues_.push_back(std::make_unique<Virtqueue>(
        dma_, std::min<u16>(device_->queue_max_size(i), Virtqueue::kMaxSize)));
  }
  queue_regs_.resize(n);
  worker_ = std::thread([this] { worker_loop(); });
}

VirtioMmio::~VirtioMmio() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    stop_requested_.store(true, std::memory_order_relaxed);
  }
  worker_cv_.notify_all();
  worker_.join();
  device_->shutdown();
}

u64 VirtioMmio::offered_features() const {
  return device_->device_features() | kVirtioFVersion1 | kVirtioFIndirectDesc | kVirtioFEventIdx;
}

u64 VirtioMmio::read(u64 offset, unsigned size) {
  if (offset >= kConfig) {
    const u64 at = offset - kConfig;
    u64 value = 0;
    for (unsigned i = 0; i < size; ++i) {
      if (at + i < device_->config_size()) value |= u64{device_->config_byte(at + i)} << (8 * i);
    }
    return value;
  }
  if (size != 4 || offset % 4 != 0) return 0;  // registers are 32-bit (4.2.2.2)
  return read_register(offset);
}

u32 VirtioMmio::read_register(u64 offset) {
  std::lock_guard lock(mutex_);
  const QueueRegs* q = queue_sel_ < queue_regs_.size() ? &queue_regs_[queue_sel_] : nullptr;
  switch (offset) {
    case kMagicValue:
      return kMagic;
    case kVersion:
      return 2;
    case kDeviceId:
      return device_->device_id();
    case kVendorId:
      return kVendor;
    case kDeviceFeatures:
      return device_features_sel_ < 2
                 ? static_cast<u32>(offered_features() >> (32 * device_features_sel_))
                 : 0;
    case kQueueNumMax:
      return q ? queues_[queue_sel_]->max_size() : 0;
    case kQueueReady:
      return q && q->ready ? 1 : 0;
    case kInterruptStatus:
      return interrupt_status_.load(std::memory_order_acquire);
    case kStatus:
      return status_;
    case kShmLenLow:
    case kShmLenHigh:
      return 0xffffffffu;  // no shared memory regions
    case kConfigGeneration:
      return 0;
    default:
      return 0;
  }
}

void VirtioMmio::write(u64 offset, unsigned size, u64 value) {
  if (offset >= kConfig) {
    device_->write_config(offset - kConfig, size, value);
    return;
  }
  if (size != 4 || offset % 4 != 0) return;
  write_register(offset, static_cast<u32>(value));
}

void VirtioMmio::write_register(u64 offset, u32 value) {
  if (offset == kInterruptAck) {
    std::lock_guard lock(irq_mutex_);
    if ((interrupt_status_.fetch_and(~value, std::memory_order_acq_rel) & ~value) == 0) {
      irq_.set_level(false);
    }
    return;
  }
  std::unique_lock lock(mutex_);
  QueueRegs* q = queue_sel_ < queue_regs_.size() ? &queue_regs_[queue_sel_] : nullptr;
  switch (offset) {
    case kDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case kDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case kDriverFeatures:
      if ((status_ & kStatusFeaturesOk) == 0 && driver_features_sel_ < 2) {
        set_half(driver_features_, driver_features_sel_ == 1, value);
      }
      return;
    case kQueueSel:
      queue_sel_ = value;
      return;
    case kQueueNum:
      if (q && !q->ready) q->num = value;
      return;
    case kQueueDescLow:
    case kQueueDescHigh:
      if (q && !q->ready) set_half(q->desc, offset == kQueueDescHigh, value);
      return;
    case kQueueDriverLow:
    case kQueueDriverHigh:
      if (q && !q->ready) set_half(q->driver, offset == kQueueDriverHigh, value);
      return;
    case kQueueDeviceLow:
    case kQueueDeviceHigh:
      if (q && !q->ready) set_half(q->device, offset == kQueueDeviceHigh, value);
      return;
    case kQueueReady: {
      if (!q) return;
      const unsigned index = queue_sel_;
      with_worker_idle(lock, [&] {
        if (value == 0) {
          q->ready = false;
          queues_[index]->reset();
          return;
        }
        if (q->ready) return;
        const std::string bad = queues_[index]->configure(
            static_cast<u16>(std::min<u32>(q->num, 0xffff)), q->desc, q->driver, q->device,
            (driver_features_ & kVirtioFEventIdx) != 0);
        if (!bad.empty()) {
          if (log_)
            log_(std::string(device_->name()) + ": queue " + std::to_string(index) + ": " + bad);
          return;  // QueueReady reads back 0: the driver sees the failure
        }
        q->ready = true;
      });
      return;
    }
    case kQueueNotify:
      notifications_.fetch_add(1, std::memory_order_relaxed);
      if (value < queues_.size()) {
        notified_ |= 1u << value;
        lock.unlock();
        worker_cv_.notify_one();
      }
      return;
    case kStatus:
      set_status(value);
      if (value == 0) reset_locked();
      if (value & kStatusDriverOk) {
        lock.unlock();
        worker_cv_.notify_one();
      }
      return;
    default:
      return;
  }
}

void VirtioMmio::set_status(u32 value) {
  if (value == 0) return;  // reset: reset_locked()
  if ((value & kStatusFeaturesOk) && !(status_ & kStatusFeaturesOk)) {
    // Accept the driver's features only if we offered them all and it speaks virtio 1.
    const u64 features = driver_features_;
    if ((features & ~offered_features()) != 0 || !(features & kVirtioFVersion1)) {
      value &= ~kStatusFeaturesOk;
    }
  }
  status_ = value | (status_ & kStatusNeedsReset);
  if ((status_ & kStatusDriverOk) && !(status_ & kStatusNeedsReset) && !active_) {
    active_ = true;
    notified_ =
        queues_.size() >= 32 ? ~0u : (1u << queues_.size()) - 1;  // look at every queue once
    kicked_ = true;
  }
}

void VirtioMmio::reset() {
  std::unique_lock lock(mutex_);
  reset_locked();
}

void VirtioMmio::reset_locked() {
  // Called with mutex_ held (a unique_lock in the callers' frames).
  std::unique_lock<std::mutex> lock(mutex_, std::adopt_lock);
  with_worker_idle(lock, [&] {
    status_ = 0;
    device_features_sel_ = driver_features_sel_ = 0;
    driver_features_ = 0;
    queue_sel_ = 0;
    for (QueueRegs& r : queue_regs_) r = QueueRegs{};
    for (auto& q : queues_) q->reset();
    notified_ = 0;
    kicked_ = false;
    active_ = false;
    device_->reset();
    std::lock_guard irq_lock(irq_mutex_);
    interrupt_status_.store(0, std::memory_order_release);
    irq_.set_level(false);
  });
  lock.release();
}

void VirtioMmio::with_worker_idle(std::unique_lock<std::mutex>& lock,
                                  const std::function<void()>& fn) {
  idle_cv_.wait(lock, [&] { return !busy_; });
  fn();
}

void VirtioMmio::kick() {
  {
    std::lock_guard lock(mutex_);
    kicked_ = true;
  }
  worker_cv_.notify_one();
}

void VirtioMmio::raise(u32 bits) {
  std::lock_guard lock(irq_mutex_);
  interrupt_status_.fetch_or(bits, std::memory_order_acq_rel);
  irq_.set_level(true);
}

void VirtioMmio::signal_used(unsigned index) {
  if (queues_[index]->should_interrupt()) {
    interrupts_.fetch_add(1, std::memory_order_relaxed);
    raise(kInterruptUsedBuffer);
  }
}

void VirtioMmio::fail_device(const std::string& why) {
  // Called with mutex_ held, before the worker leaves its batch: a driver reset (which waits
  // for the worker) comes after the error state and clears it, never before it.
  errors_.fetch_add(1, std::memory_order_relaxed);
  if (log_) log_(std::string(device_->name()) + ": " + why + "; device needs a reset");
  status_ |= kStatusNeedsReset;
  active_ = false;
  notified_ = 0;
  kicked_ = false;
  raise(kInterruptConfigChange);  // irq_mutex_ inside mutex_, as in reset_locked()
}

void VirtioMmio::worker_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    worker_cv_.wait(lock, [&] { return stopping_ || (active_ && (notified_ != 0 || kicked_)); });
    if (stopping_) return;
    u32 notified = notified_;
    bool kicked = kicked_;
    notified_ = 0;
    kicked_ = false;
    busy_ = true;
    lock.unlock();
    bool failed = false;
    std::string error;
    try {
      for (;;) {
        for (unsigned q = 0; q < queues_.size(); ++q) {
          if ((notified & (1u << q)) && queues_[q]->ready()) device_->process_queue(*this, q);
        }
        if (kicked) device_->process_external(*this);
        kicked = false;
        // Before sleeping, ask the driver for notifications (after process_external too: it
        // may have taken chains, and avail_event must follow); chains that arrived in the
        // window are processed now (no notification will come for them).
        notified = 0;
        for (unsigned q = 0; q < queues_.size(); ++q) {
          if (queues_[q]->enable_notifications() && device_->drains_queue(q)) notified |= 1u << q;
        }
        if (notified == 0 || stop_requested_.load(std::memory_order_relaxed)) break;
      }
    } catch (const VirtioError& e) {
      failed = true;
      error = e.what();
    }
    lock.lock();
    if (failed) fail_device(error);
    busy_ = false;
    idle_cv_.notify_all();
  }
}

VirtioCounters VirtioMmio::counters() const {
  VirtioCounters c;
  c.notifications = notifications_.load(std::memory_order_relaxed);
  c.interrupts = interrupts_.load(std::memory_order_relaxed);
  c.errors = errors_.load(std::memory_order_relaxed);
  std::lock_guard lock(mutex_);
  for (const auto& q : queues_) c.chains += q->chains_popped();
  return c;
}

u32 VirtioMmio::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void VirtioMmio::describe(FdtBuilder& fdt, const FdtPlacement& where) const {
  describe_virtio_mmio(fdt, where);
}

void describe_virtio_mmio(FdtBuilder& fdt, const FdtPlacement& where) {
  fdt.begin_node(fdt_node_name("virtio_mmio", where.base));
  fdt.prop_string("compatible", "virtio,mmio");
  fdt.prop_reg(where.base, where.size);
  if (where.irq != 0) {
    fdt.prop_u32("interrupt-parent", where.interrupt_parent);
    fdt.prop_u32("interrupts", where.irq);
  }
  fdt.prop_empty("dma-coherent");
  fdt.end_node();
}

}  // namespace dvmm::devices
