// Driver-side helpers for the virtio device tests and the virtio fuzzer:
//   FakeRam          guest RAM as a DmaMemory over a vector, bounds-checked (an access outside
//                    it fails, as DmaMemory promises, and is counted)
//   MemImage         an in-memory BlockImage that aborts on an offset outside the disk (virtio-blk
//                    must check the guest's sectors) and can inject host I/O errors
//   FakeNetBackend   a NetBackend that records sent frames; inject() plays a received frame
//   RecordingIrq     an IrqLine that records its levels
//   DriverRing       the driver's side of one split virtqueue laid out in FakeRam
//   VirtioTestDriver programs a VirtioMmio through its registers as Linux's virtio_mmio driver
//                    does (magic/version/device id, ACK|DRIVER, features, FEATURES_OK readback,
//                    queues, DRIVER_OK), adds chains, notifies and waits for the device's worker
// No GoogleTest here (the fuzzer uses it too): failures are return values, and a test that
// misuses the helpers gets std::logic_error.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "devices/block/block_image.hpp"
#include "devices/dma_memory.hpp"
#include "devices/mmio_device.hpp"
#include "devices/net/net_backend.hpp"
#include "devices/virtio/virtio_mmio.hpp"

namespace dvmm::devices::testing {

inline constexpr Gpa kRamBase = 0x80000000;

// Descriptor and ring flags (virtio 1.x, 2.7).
inline constexpr u16 kDescNext = 1;
inline constexpr u16 kDescWrite = 2;
inline constexpr u16 kDescIndirect = 4;
inline constexpr u16 kAvailNoInterrupt = 1;
inline constexpr u16 kUsedNoNotify = 1;

// virtio-mmio registers (4.2.2).
namespace reg {
inline constexpr u64 kMagicValue = 0x000;
inline constexpr u64 kVersion = 0x004;
inline constexpr u64 kDeviceId = 0x008;
inline constexpr u64 kVendorId = 0x00c;
inline constexpr u64 kDeviceFeatures = 0x010;
inline constexpr u64 kDeviceFeaturesSel = 0x014;
inline constexpr u64 kDriverFeatures = 0x020;
inline constexpr u64 kDriverFeaturesSel = 0x024;
inline constexpr u64 kQueueSel = 0x030;
inline constexpr u64 kQueueNumMax = 0x034;
inline constexpr u64 kQueueNum = 0x038;
inline constexpr u64 kQueueReady = 0x044;
inline constexpr u64 kQueueNotify = 0x050;
inline constexpr u64 kInterruptStatus = 0x060;
inline constexpr u64 kInterruptAck = 0x064;
inline constexpr u64 kStatus = 0x070;
inline constexpr u64 kQueueDescLow = 0x080;
inline constexpr u64 kQueueDescHigh = 0x084;
inline constexpr u64 kQueueDriverLow = 0x090;
inline constexpr u64 kQueueDriverHigh = 0x094;
inline constexpr u64 kQueueDeviceLow = 0x0a0;
inline constexpr u64 kQueueDeviceHigh = 0x0a4;
inline constexpr u64 kConfigGeneration = 0x0fc;
inline constexpr u64 kConfig = 0x100;
}  // namespace reg

inline constexpr u32 kVirtioMagic = 0x74726976;  // "virt"
inline constexpr u32 kInterruptUsedBuffer = 1;
inline constexpr u32 kInterruptConfigChange = 2;

// Polls `done` until it holds or `timeout` passes (the device works on its own thread).
inline bool wait_until(const std::function<bool()>& done,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

class FakeRam final : public DmaMemory {
 public:
  explicit FakeRam(u64 size, Gpa base = kRamBase) : base_(base), bytes_(size) {}

  Gpa base() const { return base_; }
  u64 size() const { return bytes_.size(); }
  Gpa end() const { return base_ + bytes_.size(); }
  bool contains(Gpa gpa, u64 len) const {
    return gpa >= base_ && gpa - base_ <= bytes_.size() && len <= bytes_.size() - (gpa - base_);
  }

  bool read(Gpa gpa, void* dst, u64 len) override {
    std::lock_guard lock(mutex_);
    if (!contains(gpa, len)) {
      ++rejected_;
      return false;
    }
    if (len != 0) std::memcpy(dst, bytes_.data() + (gpa - base_), len);
    return true;
  }
  bool write(Gpa gpa, const void* src, u64 len) override {
    std::lock_guard lock(mutex_);
    if (!contains(gpa, len)) {
      ++rejected_;
      return false;
    }
    if (len != 0) std::memcpy(bytes_.data() + (gpa - base_), src, len);
    return true;
  }
  // Accesses outside RAM the device attempted (and that failed).
  u64 rejected() const {
    std::lock_guard lock(mutex_);
    return rejected_;
  }

  // Driver-side access (the test's own addresses must be inside RAM).
  void poke(Gpa gpa, std::span<const u8> data) {
    if (!write(gpa, data.data(), data.size())) throw std::logic_error("test poke outside RAM");
  }
  std::vector<u8> peek(Gpa gpa, u64 len) {
    std::vector<u8> out(len);
    if (!read(gpa, out.data(), len)) throw std::logic_error("test peek outside RAM");
    return out;
  }
  template <class T>
  void put(Gpa gpa, T value) {
    if (!write(gpa, &value, sizeof value)) throw std::logic_error("test put outside RAM");
  }
  template <class T>
  T get(Gpa gpa) {
    T value{};
    if (!read(gpa, &value, sizeof value)) throw std::logic_error("test get outside RAM");
    return value;
  }
  void fill(Gpa gpa, u64 len, u8 byte) { poke(gpa, std::vector<u8>(len, byte)); }

 private:
  const Gpa base_;
  mutable std::mutex mutex_;
  std::vector<u8> bytes_;
  u64 rejected_ = 0;
};

// Hands out zeroed, aligned ranges of FakeRam (never freed; tests are short).
class RamAllocator {
 public:
  RamAllocator(FakeRam& ram, Gpa from) : ram_(ram), next_(from) {}
  explicit RamAllocator(FakeRam& ram) : RamAllocator(ram, ram.base()) {}
  Gpa alloc(u64 size, u64 align = 16) {
    const Gpa at = (next_ + align - 1) / align * align;
    if (!ram_.contains(at, size)) throw std::logic_error("test RAM exhausted");
    next_ = at + size;
    ram_.fill(at, size, 0);
    return at;
  }

 private:
  FakeRam& ram_;
  Gpa next_;
};

class RecordingIrq final : public IrqLine {
 public:
  void set_level(bool level) override {
    std::lock_guard lock(mutex_);
    level_ = level;
    raises_ += level ? 1 : 0;
    history_.push_back(level);
  }
  bool level() const {
    std::lock_guard lock(mutex_);
    return level_;
  }
  // set_level(true) calls so far.
  int raises() const {
    std::lock_guard lock(mutex_);
    return raises_;
  }
  std::vector<bool> history() const {
    std::lock_guard lock(mutex_);
    return history_;
  }

 private:
  mutable std::mutex mutex_;
  bool level_ = false;
  int raises_ = 0;
  std::vector<bool> history_;
};

class MemImage final : public BlockImage {
 public:
  explicit MemImage(u64 size, bool read_only = false) : bytes_(size), read_only_(read_only) {}

  std::string_view format_name() const override { return "mem"; }
  const std::string& path() const override { return path_; }
  u64 size() const override { return bytes_.size(); }
  bool read_only() const override { return read_only_; }
  void read(u64 offset, std::span<u8> out) override {
    check(offset, out.size());
    if (fail_io) throw ImageError("mem: injected read error");
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
  }
  void write(u64 offset, std::span<const u8> data) override {
    check(offset, data.size());
    if (read_only_) throw ImageError("mem: read-only");
    if (fail_io) throw ImageError("mem: injected write error");
    std::memcpy(bytes_.data() + offset, data.data(), data.size());
  }
  void flush() override {
    if (fail_io) throw ImageError("mem: injected flush error");
    ++flushes;
  }

  // The disk's bytes: touch them only while the device is idle (before the request is made
  // available, or after it was seen in the used ring).
  std::vector<u8>& bytes() { return bytes_; }
  std::atomic<bool> fail_io{false};
  std::atomic<int> flushes{0};

 private:
  // An access outside the disk is a device bug (virtio-blk checks the guest's sector).
  void check(u64 offset, u64 len) const {
    if (offset > bytes_.size() || len > bytes_.size() - offset) {
      std::fprintf(stderr, "MemImage: access %llu+%llu outside a disk of %zu bytes\n",
                   static_cast<unsigned long long>(offset), static_cast<unsigned long long>(len),
                   bytes_.size());
      std::abort();
    }
  }

  std::string path_ = "mem";
  std::vector<u8> bytes_;
  const bool read_only_;
};

class FakeNetBackend final : public NetBackend {
 public:
  std::string describe() const override { return "fake"; }
  void start(Receive receive) override {
    std::lock_guard lock(receive_mutex_);
    receive_ = std::move(receive);
  }
  void send(std::span<const u8> frame) override {
    {
      std::unique_lock gate(gate_mutex_);
      if (hold_) {
        held_ = true;
        gate_cv_.notify_all();
        gate_cv_.wait(gate, [&] { return !hold_; });
        held_ = false;
      }
    }
    std::lock_guard lock(sent_mutex_);
    sent_.emplace_back(frame.begin(), frame.end());
  }
  void stop() override {
    std::lock_guard lock(receive_mutex_);
    receive_ = nullptr;
  }
  // A frame from the outside for the guest; false when the backend is not started.
  bool inject(std::span<const u8> frame) {
    std::lock_guard lock(receive_mutex_);
    if (!receive_) return false;
    receive_(frame);
    return true;
  }
  std::vector<std::vector<u8>> sent() const {
    std::lock_guard lock(sent_mutex_);
    return sent_;
  }

  // Makes send() wait until release_sends(): holds the device's worker inside a batch.
  void hold_sends() {
    std::lock_guard gate(gate_mutex_);
    hold_ = true;
  }
  // Waits until the worker is held in send().
  bool wait_send_held(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock gate(gate_mutex_);
    return gate_cv_.wait_for(gate, timeout, [&] { return held_; });
  }
  void release_sends() {
    std::lock_guard gate(gate_mutex_);
    hold_ = false;
    gate_cv_.notify_all();
  }

 private:
  std::mutex gate_mutex_;
  std::condition_variable gate_cv_;
  bool hold_ = false;
  bool held_ = false;
  std::mutex receive_mutex_;
  Receive receive_;
  mutable std::mutex sent_mutex_;
  std::vector<std::vector<u8>> sent_;
};

// Collects the transport's protocol-error log lines.
class LogLines {
 public:
  std::function<void(const std::string&)> sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex_);
      lines_.push_back(line);
    };
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  std::string joined() const {
    std::string all;
    for (const std::string& l : lines()) all += l + "\n";
    return all;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
};

// One buffer of a chain the driver makes available.
struct Buffer {
  Gpa addr = 0;
  u32 len = 0;
  bool writable = false;
};

struct UsedElement {
  u32 id = 0;
  u32 len = 0;
};

// The driver's side of a split virtqueue in FakeRam (virtio 1.x, 2.7).
class DriverRing {
 public:
  DriverRing(FakeRam& ram, u16 size, Gpa desc, Gpa avail, Gpa used)
      : ram_(&ram), size_(size), desc_(desc), avail_(avail), used_(used) {
    for (u16 i = 0; i < size; ++i) free_.push_back(static_cast<u16>(size - 1 - i));
  }
  // A ring at fresh, suitably aligned addresses.
  static DriverRing allocate(FakeRam& ram, RamAllocator& alloc, u16 size) {
    const Gpa desc = alloc.alloc(16 * u64{size}, 16);
    const Gpa avail = alloc.alloc(6 + 2 * u64{size}, 2);
    const Gpa used = alloc.alloc(6 + 8 * u64{size}, 4);
    return DriverRing(ram, size, desc, avail, used);
  }

  u16 size() const { return size_; }
  Gpa desc() const { return desc_; }
  Gpa avail() const { return avail_; }
  Gpa used() const { return used_; }
  std::size_t free_descriptors() const { return free_.size(); }

  // Writes descriptor `index` of the table.
  void write_desc(u16 index, Gpa addr, u32 len, u16 flags, u16 next) {
    write_desc_at(desc_ + 16 * u64{index}, addr, len, flags, next);
  }
  void write_desc_at(Gpa at, Gpa addr, u32 len, u16 flags, u16 next) {
    ram_->put<u64>(at, addr);
    ram_->put<u32>(at + 8, len);
    ram_->put<u16>(at + 12, flags);
    ram_->put<u16>(at + 14, next);
  }
  // Puts `head` in the next available slot, then moves the index (the ring entry and the
  // descriptors are visible before the index: FakeRam's lock orders them).
  void publish(u16 head) {
    ram_->put<u16>(avail_ + 4 + 2 * u64{static_cast<u16>(avail_idx_ % size_)}, head);
    set_avail_idx(static_cast<u16>(avail_idx_ + 1));
  }
  void set_avail_idx(u16 idx) {
    avail_idx_ = idx;
    ram_->put<u16>(avail_ + 2, idx);
  }
  u16 avail_idx() const { return avail_idx_; }
  void set_avail_flags(u16 flags) { ram_->put<u16>(avail_, flags); }
  // used_event (EVENT_IDX): interrupt me when the used index passes this.
  void set_used_event(u16 idx) { ram_->put<u16>(avail_ + 4 + 2 * u64{size_}, idx); }
  // avail_event (EVENT_IDX): what the device asks to be notified for.
  u16 avail_event() { return ram_->get<u16>(used_ + 4 + 8 * u64{size_}); }
  u16 used_flags() { return ram_->get<u16>(used_); }
  u16 used_idx() { return ram_->get<u16>(used_ + 2); }
  // Used elements not taken yet.
  u16 pending_used() { return static_cast<u16>(used_idx() - last_used_); }

  // Makes a chain of `bufs` available (readable ones must come first for a valid chain);
  // with `indirect`, through one indirect descriptor pointing at a table allocated from
  // `alloc`. Returns the head; the descriptors are freed when the chain is taken back.
  u16 add(std::span<const Buffer> bufs, bool indirect = false, RamAllocator* alloc = nullptr) {
    if (bufs.empty()) throw std::logic_error("empty chain");
    std::vector<u16> descs;
    if (indirect) {
      if (alloc == nullptr) throw std::logic_error("indirect chain without an allocator");
      const Gpa table = alloc->alloc(16 * bufs.size(), 16);
      for (std::size_t i = 0; i < bufs.size(); ++i) {
        const bool last = i + 1 == bufs.size();
        write_desc_at(
            table + 16 * i, bufs[i].addr, bufs[i].len,
            static_cast<u16>((bufs[i].writable ? kDescWrite : 0) | (last ? 0 : kDescNext)),
            static_cast<u16>(last ? 0 : i + 1));
      }
      descs.push_back(take_free());
      write_desc(descs[0], table, static_cast<u32>(16 * bufs.size()), kDescIndirect, 0);
    } else {
      if (bufs.size() > free_.size()) throw std::logic_error("ring full");
      for (std::size_t i = 0; i < bufs.size(); ++i) descs.push_back(take_free());
      for (std::size_t i = 0; i < bufs.size(); ++i) {
        const bool last = i + 1 == bufs.size();
        write_desc(descs[i], bufs[i].addr, bufs[i].len,
                   static_cast<u16>((bufs[i].writable ? kDescWrite : 0) | (last ? 0 : kDescNext)),
                   last ? 0 : descs[i + 1]);
      }
    }
    chains_[descs[0]] = descs;
    publish(descs[0]);
    return descs[0];
  }
  u16 add(std::initializer_list<Buffer> bufs, bool indirect = false,
          RamAllocator* alloc = nullptr) {
    return add(std::span<const Buffer>(bufs.begin(), bufs.size()), indirect, alloc);
  }

  // Takes the used elements the device returned since the last call.
  std::vector<UsedElement> take_used() {
    std::vector<UsedElement> out;
    const u16 idx = used_idx();
    for (; last_used_ != idx; ++last_used_) {
      const Gpa e = used_ + 4 + 8 * u64{static_cast<u16>(last_used_ % size_)};
      UsedElement u{ram_->get<u32>(e), ram_->get<u32>(e + 4)};
      auto it = chains_.find(static_cast<u16>(u.id));
      if (it != chains_.end()) {
        for (u16 d : it->second) free_.push_back(d);
        chains_.erase(it);
      }
      out.push_back(u);
    }
    return out;
  }

  // Linux's virtqueue_kick_prepare(): whether the device wants a notification for the
  // chains made available since the last kick (EVENT_IDX: avail_event; otherwise the used
  // ring's NO_NOTIFY flag).
  bool kick_prepare(bool event_idx) {
    const u16 old = kicked_idx_;
    const u16 now = avail_idx_;
    kicked_idx_ = now;
    if (event_idx) {
      const u16 event = avail_event();
      return static_cast<u16>(now - event - 1) < static_cast<u16>(now - old);
    }
    return (used_flags() & kUsedNoNotify) == 0;
  }

 private:
  u16 take_free() {
    if (free_.empty()) throw std::logic_error("ring full");
    const u16 d = free_.back();
    free_.pop_back();
    return d;
  }

  FakeRam* ram_;
  u16 size_;
  Gpa desc_, avail_, used_;
  u16 avail_idx_ = 0;
  u16 last_used_ = 0;
  u16 kicked_idx_ = 0;
  std::vector<u16> free_;
  std::map<u16, std::vector<u16>> chains_;
};

// Drives a VirtioMmio like Linux's virtio_mmio + virtio core.
class VirtioTestDriver {
 public:
  static constexpr auto kTimeout = std::chrono::seconds(10);

  // Rings and buffers are allocated from `ram` starting at `alloc_from` (default: its base).
  VirtioTestDriver(VirtioMmio& device, FakeRam& ram) : VirtioTestDriver(device, ram, ram.base()) {}
  VirtioTestDriver(VirtioMmio& device, FakeRam& ram, Gpa alloc_from)
      : device_(device), ram_(ram), alloc_(ram, alloc_from) {}

  VirtioMmio& device() { return device_; }
  FakeRam& ram() { return ram_; }
  RamAllocator& allocator() { return alloc_; }
  Gpa alloc(u64 size, u64 align = 16) { return alloc_.alloc(size, align); }

  u32 reg(u64 offset) { return static_cast<u32>(device_.read(offset, 4)); }
  void set_reg(u64 offset, u32 value) { device_.write(offset, 4, value); }
  u32 status() { return reg(reg::kStatus); }
  void set_status(u32 value) { set_reg(reg::kStatus, value); }
  u8 config8(u64 offset) { return static_cast<u8>(device_.read(reg::kConfig + offset, 1)); }
  u32 config32(u64 offset) { return static_cast<u32>(device_.read(reg::kConfig + offset, 4)); }
  u64 config64(u64 offset) {
    return config32(offset) | u64{config32(offset + 4)} << 32;  // as Linux reads 64-bit fields
  }

  u64 device_features() {
    set_reg(reg::kDeviceFeaturesSel, 0);
    u64 f = reg(reg::kDeviceFeatures);
    set_reg(reg::kDeviceFeaturesSel, 1);
    f |= u64{reg(reg::kDeviceFeatures)} << 32;
    return f;
  }

  // virtio_mmio_probe + the start of virtio_dev_probe: identity checks, reset,
  // ACKNOWLEDGE|DRIVER. False when the window is not a virtio-mmio v2 device.
  bool probe() {
    if (reg(reg::kMagicValue) != kVirtioMagic || reg(reg::kVersion) != 2) return false;
    if (reg(reg::kDeviceId) == 0) return false;
    set_status(0);
    set_status(VirtioMmio::kStatusAcknowledge);
    set_status(VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver);
    return true;
  }

  // Writes `features` (both halves) and sets FEATURES_OK; returns whether it stuck.
  bool negotiate(u64 features) {
    set_reg(reg::kDriverFeaturesSel, 1);
    set_reg(reg::kDriverFeatures, static_cast<u32>(features >> 32));
    set_reg(reg::kDriverFeaturesSel, 0);
    set_reg(reg::kDriverFeatures, static_cast<u32>(features));
    set_status(status() | VirtioMmio::kStatusFeaturesOk);
    const bool ok = (status() & VirtioMmio::kStatusFeaturesOk) != 0;
    if (ok) features_ = features;
    return ok;
  }

  // vm_setup_vq(): programs queue `index` with a fresh ring of `size` entries (0: the
  // device's maximum). Returns false when the device refuses it.
  bool setup_queue(unsigned index, u16 size = 0) {
    set_reg(reg::kQueueSel, index);
    if (reg(reg::kQueueReady) != 0) return false;
    const u32 max = reg(reg::kQueueNumMax);
    if (max == 0) return false;
    if (size == 0) size = static_cast<u16>(std::min<u32>(max, 0x8000));
    return setup_queue_at(index, DriverRing::allocate(ram_, alloc_, size));
  }
  // Same with a ring the caller laid out (possibly at bad addresses).
  bool setup_queue_at(unsigned index, DriverRing ring) {
    set_reg(reg::kQueueSel, index);
    set_reg(reg::kQueueNum, ring.size());
    set_reg(reg::kQueueDescLow, static_cast<u32>(ring.desc()));
    set_reg(reg::kQueueDescHigh, static_cast<u32>(ring.desc() >> 32));
    set_reg(reg::kQueueDriverLow, static_cast<u32>(ring.avail()));
    set_reg(reg::kQueueDriverHigh, static_cast<u32>(ring.avail() >> 32));
    set_reg(reg::kQueueDeviceLow, static_cast<u32>(ring.used()));
    set_reg(reg::kQueueDeviceHigh, static_cast<u32>(ring.used() >> 32));
    set_reg(reg::kQueueReady, 1);
    if (reg(reg::kQueueReady) != 1) return false;
    if (rings_.size() <= index) rings_.resize(index + 1);
    rings_[index] = std::make_unique<DriverRing>(ring);
    return true;
  }

  void driver_ok() { set_status(status() | VirtioMmio::kStatusDriverOk); }

  // The whole bring-up: probe, negotiate `wanted` & offered (| VERSION_1), set up
  // `queues` queues of `queue_size` entries (0: the maximum), DRIVER_OK.
  bool init(u64 wanted, unsigned queues, u16 queue_size = 0) {
    rings_.clear();
    if (!probe()) return false;
    if (!negotiate((device_features() & wanted) | kVirtioFVersion1)) return false;
    for (unsigned i = 0; i < queues; ++i) {
      if (!setup_queue(i, queue_size)) return false;
    }
    driver_ok();
    return true;
  }

  u64 features() const { return features_; }
  bool event_idx() const { return (features_ & kVirtioFEventIdx) != 0; }
  DriverRing& ring(unsigned index) {
    if (index >= rings_.size() || !rings_[index]) throw std::logic_error("queue not set up");
    return *rings_[index];
  }

  // QueueNotify, unconditionally.
  void notify(unsigned index) { set_reg(reg::kQueueNotify, index); }
  // virtqueue_kick(): notifies only if the device asked for it. Returns whether it did.
  bool kick(unsigned index) {
    if (!ring(index).kick_prepare(event_idx())) return false;
    notify(index);
    return true;
  }

  // Waits until the device returned `count` more chains on queue `index`.
  bool wait_used(unsigned index, u16 count = 1) {
    DriverRing& r = ring(index);
    return wait_until([&] { return r.pending_used() >= count; }, kTimeout);
  }
  // Waits for the device to return `count` chains and takes them (empty on timeout).
  std::vector<UsedElement> complete(unsigned index, u16 count = 1) {
    if (!wait_used(index, count)) return {};
    return ring(index).take_used();
  }
  bool wait_status(u32 bits) {
    return wait_until([&] { return (status() & bits) == bits; }, kTimeout);
  }
  bool wait_interrupt(u32 bits) {
    return wait_until([&] { return (reg(reg::kInterruptStatus) & bits) == bits; }, kTimeout);
  }
  // vm_interrupt(): reads InterruptStatus and acknowledges it; returns what was pending.
  u32 ack_interrupt() {
    const u32 pending = reg(reg::kInterruptStatus);
    if (pending != 0) set_reg(reg::kInterruptAck, pending);
    return pending;
  }

  // Returns once the device's worker is between batches: a QueueReady write that changes
  // nothing (the transport makes it wait for the worker). Selects queue 0.
  void quiesce() {
    set_reg(reg::kQueueSel, 0);
    set_reg(reg::kQueueReady, reg(reg::kQueueReady));
  }

 private:
  VirtioMmio& device_;
  FakeRam& ram_;
  RamAllocator alloc_;
  u64 features_ = 0;
  std::vector<std::unique_ptr<DriverRing>> rings_;
};

// A virtio-blk request (5.2.6) laid out in RAM: a 16-byte header (type, sector), the data
// buffer and the status byte (preset to 0xff, so that a completion is visible).
struct BlkRequest {
  static constexpr u32 kIn = 0, kOut = 1, kFlush = 4, kGetId = 8;
  Gpa header = 0, data = 0, status = 0;
  u32 type = 0, data_len = 0;

  // The chain as one descriptor per part (the data part left out when empty).
  std::vector<Buffer> buffers() const {
    std::vector<Buffer> b{{header, 16, false}};
    if (data_len != 0) b.push_back({data, data_len, type != kOut});
    b.push_back({status, 1, true});
    return b;
  }
  u8 result(FakeRam& ram) const { return ram.get<u8>(status); }
};

inline BlkRequest make_blk_request(FakeRam& ram, RamAllocator& alloc, u32 type, u64 sector,
                                   u32 data_len) {
  BlkRequest r;
  r.type = type;
  r.data_len = data_len;
  r.header = alloc.alloc(16);
  ram.put<u32>(r.header, type);
  ram.put<u64>(r.header + 8, sector);
  r.data = data_len != 0 ? alloc.alloc(data_len) : 0;
  r.status = alloc.alloc(1, 1);
  ram.put<u8>(r.status, 0xff);
  return r;
}

}  // namespace dvmm::devices::testing
