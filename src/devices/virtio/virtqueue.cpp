#include "devices/virtio/virtqueue.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>

namespace dvmm::devices {

namespace {

constexpr u16 kDescNext = 1;
constexpr u16 kDescWrite = 2;
constexpr u16 kDescIndirect = 4;
constexpr u16 kAvailNoInterrupt = 1;

struct RawDescriptor {
  u64 addr;
  u32 len;
  u16 flags;
  u16 next;
};
static_assert(sizeof(RawDescriptor) == 16);

std::string hex(u64 v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

u64 DescriptorChain::readable_bytes() const {
  u64 n = 0;
  for (const VirtqSegment& s : segments) n += s.device_writable ? 0 : s.len;
  return n;
}

u64 DescriptorChain::writable_bytes() const {
  u64 n = 0;
  for (const VirtqSegment& s : segments) n += s.device_writable ? s.len : 0;
  return n;
}

u64 DescriptorChain::read(DmaMemory& dma, u64 offset, std::span<u8> out) const {
  u64 done = 0;
  for (const VirtqSegment& s : segments) {
    if (s.device_writable || done == out.size()) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const u64 n = std::min<u64>(s.len - offset, out.size() - done);
    if (!dma.read(s.addr + offset, out.data() + done, n)) {
      throw VirtioError("descriptor buffer " + hex(s.addr) + "+" + std::to_string(s.len) +
                        " is not in guest RAM");
    }
    done += n;
    offset = 0;
  }
  return done;
}

u64 DescriptorChain::write(DmaMemory& dma, u64 offset, std::span<const u8> data) const {
  u64 done = 0;
  for (const VirtqSegment& s : segments) {
    if (done == data.size()) break;
    if (!s.device_writable) continue;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const u64 n = std::min<u64>(s.len - offset, data.size() - done);
    if (!dma.write(s.addr + offset, data.data() + done, n)) {
      throw VirtioError("descriptor buffer " + hex(s.addr) + "+" + std::to_string(s.len) +
                        " is not in guest RAM");
    }
    done += n;
    offset = 0;
  }
  return done;
}

std::string Virtqueue::configure(u16 size, Gpa desc, Gpa avail, Gpa used, bool event_idx) {
  if (size == 0 || size > max_size_ || (size & (size - 1)) != 0) {
    return "queue size " + std::to_string(size) + " (must be a power of two up to " +
           std::to_string(max_size_) + ")";
  }
  if (desc % 16 != 0 || avail % 2 != 0 || used % 4 != 0) return "misaligned ring addresses";
  size_ = size;
  desc_ = desc;
  avail_ = avail;
  used_ = used;
  event_idx_ = event_idx;
  last_avail_ = 0;
  seen_avail_ = 0;
  used_idx_ = 0;
  signalled_used_ = 0;
  ready_ = true;
  return {};
}

void Virtqueue::reset() {
  ready_ = false;
  size_ = 0;
  desc_ = avail_ = used_ = 0;
  last_avail_ = seen_avail_ = used_idx_ = signalled_used_ = 0;
}

u16 Virtqueue::read_u16(Gpa gpa) {
  u16 v = 0;
  if (!dma_.read(gpa, &v, sizeof v))
    throw VirtioError("ring at " + hex(gpa) + " is not in guest RAM");
  return v;
}

void Virtqueue::write_u16(Gpa gpa, u16 value) {
  if (!dma_.write(gpa, &value, sizeof value)) {
    throw VirtioError("ring at " + hex(gpa) + " is not in guest RAM");
  }
}

std::optional<DescriptorChain> Virtqueue::pop() {
  if (!ready_) return std::nullopt;
  const u16 avail_idx = read_u16(avail_ + 2);
  seen_avail_ = avail_idx;
  const u16 pending = static_cast<u16>(avail_idx - last_avail_);
  if (pending == 0) return std::nullopt;
  if (pending > size_) {
    throw VirtioError("available index moved by " + std::to_string(pending) +
                      " on a queue of size " + std::to_string(size_));
  }
  // The ring entry and the descriptors were written before the index (driver's barrier).
  std::atomic_thread_fence(std::memory_order_acquire);
  const u16 head = read_u16(avail_ + 4 + 2 * u64{static_cast<u16>(last_avail_ % size_)});
  ++last_avail_;
  if (head >= size_) {
    throw VirtioError("available ring names descriptor " + std::to_string(head) +
                      " of a queue of size " + std::to_string(size_));
  }
  DescriptorChain chain;
  chain.head = head;
  walk(head, chain);
  popped_.fetch_add(1, std::memory_order_relaxed);
  return chain;
}

void Virtqueue::walk(u16 head, DescriptorChain& chain) {
  u64 total = 0;
  bool seen_writable = false;
  auto add = [&](const RawDescriptor& d) {
    const bool writable = (d.flags & kDescWrite) != 0;
    if (!writable && seen_writable) throw VirtioError("readable descriptor after a writable one");
    seen_writable = seen_writable || writable;
    if (d.addr + d.len < d.addr) throw VirtioError("descriptor wraps around the address space");
    total += d.len;
    if (total > limits_.max_chain_bytes) {
      throw VirtioError("descriptor chain longer than " + std::to_string(limits_.max_chain_bytes) +
                        " bytes");
    }
    if (d.len != 0) chain.segments.push_back({d.addr, d.len, writable});
  };

  u16 index = head;
  for (unsigned visited = 0;; ++visited) {
    if (visited >= size_) throw VirtioError("descriptor chain loops (longer than the queue)");
    RawDescriptor d{};
    if (!dma_.read(desc_ + 16 * u64{index}, &d, sizeof d)) {
      throw VirtioError("descriptor table at " + hex(desc_) + " is not in guest RAM");
    }
    if (d.flags & kDescIndirect) {
      if (d.flags & kDescNext) throw VirtioError("indirect descriptor with NEXT set");
      if (d.len == 0 || d.len % 16 != 0 || d.len / 16 > kMaxSize) {
        throw VirtioError("indirect table of " + std::to_string(d.len) + " bytes");
      }
      const unsigned entries = d.len / 16;
      std::vector<RawDescriptor> table(entries);
      if (!dma_.read(d.addr, table.data(), d.len)) {
        throw VirtioError("indirect table at " + hex(d.addr) + " is not in guest RAM");
      }
      unsigned i = 0;
      for (unsigned n = 0;; ++n) {
        if (n >= entries) throw VirtioError("indirect descriptor chain loops");
        const RawDescriptor& e = table[i];
        if (e.flags & kDescIndirect) throw VirtioError("nested indirect descriptor");
        add(e);
        if (!(e.flags & kDescNext)) break;
        if (e.next >= entries) throw VirtioError("indirect descriptor points past its table");
        i = e.next;
      }
      return;  // an indirect descriptor is the whole chain
    }
    add(d);
    if (!(d.flags & kDescNext)) return;
    if (d.next >= size_) {
      throw VirtioError("descriptor " + std::to_string(index) + " points to " +
                        std::to_string(d.next) + " of a queue of size " + std::to_string(size_));
    }
    index = d.next;
  }
}

void Virtqueue::push(u16 head, u32 written) {
  const Gpa entry = used_ + 4 + 8 * u64{static_cast<u16>(used_idx_ % size_)};
  const u32 element[2] = {head, written};
  if (!dma_.write(entry, element, sizeof element)) {
    throw VirtioError("used ring at " + hex(used_) + " is not in guest RAM");
  }
  // The element is visible before the index that publishes it.
  std::atomic_thread_fence(std::memory_order_release);
  ++used_idx_;
  write_u16(used_ + 2, used_idx_);
}

bool Virtqueue::should_interrupt() {
  if (!ready_) return false;
  // The used index store must be visible before the driver's flags/event are read.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const u16 old = signalled_used_;
  const u16 now = used_idx_;
  if (old == now) return false;
  signalled_used_ = now;
  if (event_idx_) {
    const u16 used_event = read_u16(avail_ + 4 + 2 * u64{size_});
    return static_cast<u16>(now - used_event - 1) < static_cast<u16>(now - old);
  }
  return (read_u16(avail_) & kAvailNoInterrupt) == 0;
}

bool Virtqueue::enable_notifications() {
  if (!ready_) return false;
  if (event_idx_) write_u16(used_ + 4 + 8 * u64{size_}, last_avail_);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const u16 avail_idx = read_u16(avail_ + 2);
  const bool more = avail_idx != seen_avail_;
  seen_avail_ = avail_idx;
  return more;
}

}  // namespace dvmm::devices
