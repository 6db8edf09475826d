// libFuzzer target for the virtio device model (devices/virtio/): a guest that writes random
// descriptor tables, rings, buffers and registers to a VirtioMmio with virtio-blk (an
// in-memory disk, read-write or read-only), virtio-net (a fake backend that also injects
// frames) or virtio-rng, over a fake guest RAM. The host must never crash or hang: a broken
// chain puts the device into DEVICE_NEEDS_RESET, nothing more. The fake RAM refuses (and
// counts) every access outside it, the in-memory disk aborts on an offset outside the disk,
// ASan/UBSan catch the rest; the interrupt line must always match InterruptStatus.
//
// The device works on its own worker thread: after each notification or injected frame the
// target waits (bounded) until the device took it up, then until the worker is between
// batches, so that runs are mostly reproducible and the teardown finds the worker idle.
//
// Input: byte 0 picks the device and the bring-up, the rest is a list of operations
// (FuzzedDataProvider).
#include <fuzzer/FuzzedDataProvider.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <thread>

#include "devices/virtio/virtio_blk.hpp"
#include "devices/virtio/virtio_mmio.hpp"
#include "devices/virtio/virtio_net.hpp"
#include "devices/virtio/virtio_rng.hpp"
#include "unit/devices/virtio_test_driver.hpp"

namespace {

using namespace dvmm;
using namespace dvmm::devices;
using namespace dvmm::devices::testing;

constexpr u64 kRamSize = 64 << 10;
// Rings of up to 256 entries for queues 0 and 1 at fixed places; buffers above them.
constexpr Gpa kRingArea = kRamBase;
constexpr u64 kRingStride = 0x2000;
constexpr Gpa kData = kRamBase + 0x4000;
constexpr u64 kDataSize = kRamSize - 0x4000;
constexpr u64 kDiskSize = 64 << 10;
constexpr unsigned kMaxOps = 256;

// Forwards to the real device and counts the worker's calls, so that the target knows when
// a notification or a kick was taken up.
class Probe final : public VirtioDevice {
 public:
  explicit Probe(std::unique_ptr<VirtioDevice> inner) : inner_(std::move(inner)) {}
  std::string_view name() const override { return inner_->name(); }
  u32 device_id() const override { return inner_->device_id(); }
  u64 device_features() const override { return inner_->device_features(); }
  unsigned queue_count() const override { return inner_->queue_count(); }
  u16 queue_max_size(unsigned index) const override { return inner_->queue_max_size(index); }
  u8 config_byte(u64 offset) const override { return inner_->config_byte(offset); }
  u64 config_size() const override { return inner_->config_size(); }
  void write_config(u64 offset, unsigned size, u64 value) override {
    inner_->write_config(offset, size, value);
  }
  void activate(VirtioQueues& queues) override { inner_->activate(queues); }
  void process_queue(VirtioQueues& queues, unsigned index) override {
    queue_calls[index & 1].fetch_add(1);
    inner_->process_queue(queues, index);
  }
  void process_external(VirtioQueues& queues) override {
    external_calls.fetch_add(1);
    inner_->process_external(queues);
  }
  void reset() override { inner_->reset(); }
  void shutdown() override { inner_->shutdown(); }

  std::atomic<u64> queue_calls[2] = {0, 0};
  std::atomic<u64> external_calls{0};

 private:
  std::unique_ptr<VirtioDevice> inner_;
};

[[noreturn]] void fail(const char* what, u32 status = 0, u32 interrupts = 0) {
  std::fprintf(stderr, "virtio_fuzz: %s (status %#x, InterruptStatus %#x)\n", what, status,
               interrupts);
  std::abort();
}

class Harness {
 public:
  Harness(FuzzedDataProvider& in) : in_(in) {
    const u8 setup = in_.ConsumeIntegral<u8>();
    kind_ = setup % 4;  // 0 blk, 1 read-only blk, 2 net, 3 rng
    std::unique_ptr<VirtioDevice> device;
    if (kind_ <= 1) {
      auto image = std::make_unique<MemImage>(kDiskSize, kind_ == 1);
      for (u64 i = 0; i < kDiskSize; i += 512) image->bytes()[i] = static_cast<u8>(i >> 9);
      device = std::make_unique<VirtioBlk>("vda", std::move(image), "fuzz");
    } else if (kind_ == 2) {
      auto backend = std::make_unique<FakeNetBackend>();
      backend_ = backend.get();
      auto net = std::make_unique<VirtioNet>("net0", std::move(backend),
                                             MacAddress{0x52, 0x54, 0, 0, 0, 1});
      net_ = net.get();
      device = std::move(net);
    } else {
      device = std::make_unique<VirtioRng>("rng0");
    }
    queues_ = device->queue_count();
    auto probe = std::make_unique<Probe>(std::move(device));
    probe_ = probe.get();
    dev_ = std::make_unique<VirtioMmio>(std::move(probe), ram_, irq_);
    if (net_ != nullptr) {
      VirtioMmio* dev = dev_.get();
      net_->start([dev] { dev->kick(); });
    }
    drv_ = std::make_unique<VirtioTestDriver>(*dev_, ram_, kData);
    // The driver's rings sit at fixed places; bit 2 leaves programming the device to the
    // register writes of the input.
    const u16 size = static_cast<u16>(1u << in_.ConsumeIntegralInRange(0, 8));
    for (unsigned q = 0; q < queues_; ++q) {
      const Gpa at = kRingArea + q * kRingStride;
      rings_.emplace_back(ram_, size, at, at + 0x1000, at + 0x1400);
    }
    // Guest memory starts with whatever the input says (descriptors, rings, buffers).
    const std::vector<u8> image = in_.ConsumeBytes<u8>(in_.ConsumeIntegralInRange<u32>(0, 512));
    ram_.poke(kData, image);
    if ((setup & 4) == 0) bring_up(setup);
  }

  ~Harness() {
    settle_idle();
    check_irq();
    dev_.reset();  // joins the worker (idle by now), then stops the backend
  }

  void run() {
    for (unsigned n = 0; n < kMaxOps && in_.remaining_bytes() > 0; ++n) step();
  }

 private:
  // The driver's bring-up with a random feature subset.
  void bring_up(u8 setup) {
    if (!drv_->probe()) fail("probe failed");  // resets the device first
    on_reset();
    const u64 mask = (setup & 8) ? ~u64{0} : in_.ConsumeIntegral<u64>();
    if (!drv_->negotiate((drv_->device_features() & mask) | kVirtioFVersion1)) return;
    for (unsigned q = 0; q < queues_; ++q) {
      rings_[q] =
          DriverRing(ram_, rings_[q].size(), rings_[q].desc(), rings_[q].avail(), rings_[q].used());
      ram_.fill(rings_[q].desc(), kRingStride, 0);
      if (!drv_->setup_queue_at(q, rings_[q])) fail("queue setup refused");
    }
    drv_->driver_ok();
  }

  Gpa address() {
    switch (in_.ConsumeIntegralInRange(0, 7)) {
      case 0:
        return in_.ConsumeIntegral<u64>();
      case 1:
        return ram_.end() - in_.ConsumeIntegralInRange<u64>(0, 64);
      case 2:
        return kRamBase + in_.ConsumeIntegralInRange<u64>(0, kRamSize - 1);
      default:
        return kData + in_.ConsumeIntegralInRange<u64>(0, kDataSize - 1);
    }
  }
  u32 length() {
    switch (in_.ConsumeIntegralInRange(0, 5)) {
      case 0:
        return in_.ConsumeIntegral<u32>();
      case 1:
        return in_.ConsumeIntegralInRange<u32>(0, 4096);
      case 2:
        return 512 * in_.ConsumeIntegralInRange<u32>(0, 8) + in_.ConsumeIntegralInRange<u32>(0, 1);
      default:
        return in_.ConsumeIntegralInRange<u32>(0, 64);
    }
  }
  unsigned queue() { return in_.ConsumeIntegralInRange<unsigned>(0, 1); }
  DriverRing* ring(unsigned q) { return q < rings_.size() ? &rings_[q] : nullptr; }

  void step() {
    switch (in_.ConsumeIntegralInRange(0, 12)) {
      case 0: {  // a raw descriptor
        DriverRing* r = ring(queue());
        if (r == nullptr) return;
        const u16 index = in_.ConsumeIntegralInRange<u16>(0, r->size() - 1);
        const Gpa addr = address();
        const u32 len = length();
        const u16 flags = in_.ConsumeIntegral<u16>() & (in_.ConsumeBool() ? 0xffff : 7);
        const u16 next = in_.ConsumeIntegralInRange<u16>(0, r->size());
        r->write_desc(index, addr, len, flags, next);
        return;
      }
      case 1: {  // a raw indirect table entry in the data area
        const Gpa at = kData + in_.ConsumeIntegralInRange<u64>(0, kDataSize / 16 - 1) * 16;
        const Gpa addr = address();
        const u32 len = length();
        ram_.put<u64>(at, addr);
        ram_.put<u32>(at + 8, len);
        ram_.put<u16>(at + 12, in_.ConsumeIntegral<u16>() & 7);
        ram_.put<u16>(at + 14, in_.ConsumeIntegralInRange<u16>(0, 8));
        return;
      }
      case 2: {  // make a head available
        DriverRing* r = ring(queue());
        if (r == nullptr) return;
        r->publish(in_.ConsumeIntegralInRange<u16>(0, r->size()));
        return;
      }
      case 3: {  // ring fields: avail idx, flags, used_event
        DriverRing* r = ring(queue());
        if (r == nullptr) return;
        switch (in_.ConsumeIntegralInRange(0, 2)) {
          case 0:
            r->set_avail_idx(in_.ConsumeIntegral<u16>());
            return;
          case 1:
            r->set_avail_flags(in_.ConsumeIntegral<u16>());
            return;
          default:
            r->set_used_event(in_.ConsumeIntegral<u16>());
            return;
        }
      }
      case 4: {  // bytes anywhere in RAM (buffers, rings, block headers)
        const u64 offset = in_.ConsumeIntegralInRange<u64>(0, kRamSize - 1);
        std::vector<u8> bytes = in_.ConsumeBytes<u8>(in_.ConsumeIntegralInRange<u32>(1, 64));
        bytes.resize(std::min<u64>(bytes.size(), kRamSize - offset));
        ram_.poke(kRamBase + offset, bytes);
        return;
      }
      case 5:  // notify
        notify(queue());
        return;
      case 6:
      case 7:
        add_chain();
        return;
      case 8: {  // a register write
        const unsigned size = 1u << in_.ConsumeIntegralInRange(0, 3);
        u64 offset = in_.ConsumeBool() ? 4 * in_.ConsumeIntegralInRange<u64>(0, 0x44)
                                       : in_.ConsumeIntegralInRange<u64>(0, 0x1000 - size);
        const u64 value = in_.ConsumeIntegral<u64>();
        if (offset == reg::kQueueNotify && size == 4) {
          notify(static_cast<u32>(value));
          return;
        }
        if (offset == reg::kInterruptAck) acked_ = true;
        dev_->write(offset, size, value);
        if (offset == reg::kStatus && size == 4 && static_cast<u32>(value) == 0) on_reset();
        return;
      }
      case 9: {  // a register read
        const unsigned size = 1u << in_.ConsumeIntegralInRange(0, 3);
        (void)dev_->read(in_.ConsumeIntegralInRange<u64>(0, 0x1000 - size), size);
        return;
      }
      case 10:  // the interrupt handler
        acked_ = acked_ || drv_->ack_interrupt() != 0;
        check_irq();
        return;
      case 11: {  // a frame from the network
        if (backend_ == nullptr) return;
        const std::vector<u8> frame =
            in_.ConsumeBytes<u8>(in_.ConsumeBool() ? in_.ConsumeIntegralInRange<u32>(0, 2048)
                                                   : in_.ConsumeIntegralInRange<u32>(0, 64));
        const u64 before = probe_->external_calls.load();
        const bool will_run = live();
        backend_->inject(frame);
        if (will_run) wait_for([&] { return probe_->external_calls.load() != before; });
        settle_idle();
        return;
      }
      default:  // reset, and maybe a fresh bring-up
        drv_->set_status(0);
        on_reset();
        check_irq();
        if (in_.ConsumeBool()) bring_up(in_.ConsumeIntegral<u8>());
        return;
    }
  }

  // A chain that is well formed as far as the ring goes (readable buffers first), possibly
  // indirect, over random buffers; for a block device the first one is a request header.
  void add_chain() {
    const unsigned q = queue();
    DriverRing* r = ring(q);
    if (r == nullptr) return;
    std::vector<Buffer> bufs;
    const unsigned readable = in_.ConsumeIntegralInRange(0, 3);
    const unsigned writable = in_.ConsumeIntegralInRange(0, 3);
    for (unsigned i = 0; i < readable + writable; ++i) {
      const Gpa at = in_.ConsumeIntegralInRange(0, 15) == 0
                         ? address()
                         : kData + 64 * in_.ConsumeIntegralInRange<u64>(0, kDataSize / 64 - 1);
      bufs.push_back({at, length(), i >= readable});
    }
    if (bufs.empty()) return;
    if (kind_ <= 1 && !bufs[0].writable && ram_.contains(bufs[0].addr, 16)) {
      ram_.put<u32>(bufs[0].addr, in_.ConsumeIntegralInRange<u32>(0, 9));
      ram_.put<u64>(bufs[0].addr + 8, in_.ConsumeBool() ? in_.ConsumeIntegralInRange<u64>(0, 130)
                                                        : in_.ConsumeIntegral<u64>());
    }
    RamAllocator tables(ram_, kData + kDataSize - 0x1000);
    try {
      r->add(bufs, in_.ConsumeBool(), &tables);
    } catch (const std::logic_error&) {
      return;  // the driver's ring is full
    }
    if (in_.ConsumeBool()) notify(q);
  }

  // Whether the worker takes up notifications and kicks now. (DRIVER_OK without
  // NEEDS_RESET means the transport is active; it may also be active without them, after
  // the driver rewrote the status, and then the target merely does not wait.)
  bool live() {
    const u32 status = drv_->status();
    return (status & VirtioMmio::kStatusDriverOk) && !(status & VirtioMmio::kStatusNeedsReset);
  }

  // Notifies queue `q` and waits until the worker took it up (when it will) and is idle.
  void notify(u32 q) {
    bool will_run = false;
    if (q < queues_ && live()) {
      drv_->set_reg(reg::kQueueSel, q);
      will_run = drv_->reg(reg::kQueueReady) == 1;
    }
    const u64 before = will_run ? probe_->queue_calls[q].load() : 0;
    drv_->notify(q);
    if (will_run) wait_for([&] { return probe_->queue_calls[q].load() != before; });
    settle_idle();
    for (DriverRing& r : rings_) {
      if (r.pending_used() <= r.size()) r.take_used();  // frees the driver's descriptors
    }
  }

  // Waits (bounded) for `done` or the error state.
  void wait_for(const std::function<bool()>& done) {
    // Generous: only a device bug (or a starved machine) takes that long.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!done() && !(drv_->status() & VirtioMmio::kStatusNeedsReset)) {
      if (std::chrono::steady_clock::now() >= deadline) fail("the worker did not take up work");
      std::this_thread::yield();
    }
  }
  // Returns once the worker is between batches: a QueueReady write that changes nothing
  // waits for that. (A new batch may start right after, if work is pending.)
  void settle_idle() {
    drv_->set_reg(reg::kQueueSel, 0);
    drv_->set_reg(reg::kQueueReady, drv_->reg(reg::kQueueReady));
    check_irq();
  }
  // The interrupt line is up exactly when InterruptStatus has a bit set. Checked only when
  // no batch can run (after a reset, or a device error), as the worker sets the two apart.
  // A device error since the last reset shows as DEVICE_NEEDS_RESET with a config-change
  // interrupt (unless the input acknowledged interrupts: then the bit may be gone). The
  // driver may write DEVICE_NEEDS_RESET itself, so that bit alone proves nothing.
  void check_irq() {
    // The error count first: the transport sets it, DEVICE_NEEDS_RESET and the interrupt in
    // one critical section, so the status read after it (which takes the same lock) sees
    // them all, and no batch runs any more.
    const bool failed = dev_->counters().errors != errors_at_reset_;
    const u32 status = drv_->status();
    if (status != 0 && !failed) return;
    const u32 interrupts = drv_->reg(reg::kInterruptStatus);
    if (irq_.level() != (interrupts != 0)) {
      fail("interrupt line does not match InterruptStatus", status, interrupts);
    }
    if (failed && !(status & VirtioMmio::kStatusNeedsReset)) {
      fail("a device error without DEVICE_NEEDS_RESET", status, interrupts);
    }
    if (failed && !(interrupts & kInterruptConfigChange) && !acked_) {
      fail("a device error without a config-change interrupt", status, interrupts);
    }
  }
  // The driver reset the device (status 0).
  void on_reset() {
    acked_ = false;
    errors_at_reset_ = dev_->counters().errors;
  }

  FuzzedDataProvider& in_;
  unsigned kind_ = 0;
  unsigned queues_ = 0;
  FakeRam ram_{kRamSize};
  RecordingIrq irq_;
  FakeNetBackend* backend_ = nullptr;
  VirtioNet* net_ = nullptr;
  Probe* probe_ = nullptr;
  std::unique_ptr<VirtioMmio> dev_;
  std::unique_ptr<VirtioTestDriver> drv_;
  std::vector<DriverRing> rings_;
  bool acked_ = false;       // the input acknowledged interrupts since the last reset
  u64 errors_at_reset_ = 0;  // the device's error count at the last reset
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Harness harness(in);
  harness.run();
  return 0;
}
