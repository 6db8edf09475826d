// Guest RAM: one contiguous guest-physical range backed by anonymous host memory.
//
// Owns, per 4 KiB page, (a) the access the local node holds (the distributed memory of
// the dsm layer lowers and raises it; on a single node every page is read-write) and
// (b) a code-generation counter that lets harts drop decoded instructions when a page that
// holds code is written.
//
// Threads: every method may be called from any thread. Page state is atomic; the bytes
// of guest memory are shared like RAM is shared between real harts.
#pragma once

#include <atomic>
#include <memory>
#include <shared_mutex>
#include <vector>

#include "base/types.hpp"

namespace dvmm::memory {

// What this node may do with a page right now.
enum class PageAccess : u8 { kNone = 0, kRead = 1, kReadWrite = 2 };

enum class AccessType : u8 { kRead = 0, kWrite = 1, kExecute = 2 };

// Host memory that appears at a guest-physical window outside RAM, such as the shared
// memory of an inter-VM communication group: loads, stores and atomics reach it directly
// (the TLB maps it like RAM), instructions may not be fetched from it, and it has no DSM
// access state or code tracking (it is local to the host, see docs/IVC.md).
struct MemoryWindow {
  Gpa base = 0;
  u64 size = 0;
  u8* host = nullptr;
};

class GuestRam {
 public:
  // Maps `size` bytes (a multiple of the page size) at guest-physical `base`.
  // Throws std::system_error when the host refuses the mapping.
  GuestRam(Gpa base, u64 size);
  ~GuestRam();
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  Gpa base() const { return base_; }
  u64 size() const { return size_; }
  u64 page_count() const { return size_ >> kPageShift; }
  u8* host_base() const { return host_; }

  bool contains(Gpa gpa) const { return gpa - base_ < size_; }
  bool contains(Gpa gpa, u64 len) const {
    return gpa - base_ < size_ && len <= size_ - (gpa - base_);
  }
  // Caller has checked contains().
  u8* host_ptr(Gpa gpa) const { return host_ + (gpa - base_); }
  u64 page_index(Gpa gpa) const { return (gpa - base_) >> kPageShift; }

  PageAccess access(u64 page_index) const {
    return static_cast<PageAccess>(access_[page_index].load(std::memory_order_acquire));
  }
  void set_access(u64 page_index, PageAccess a) {
    access_[page_index].store(static_cast<u8>(a), std::memory_order_release);
  }
  void set_all_access(PageAccess a);
  // True when the local node may perform `type` on the page now.
  bool allows(u64 page_index, AccessType type) const {
    u8 a = access_[page_index].load(std::memory_order_acquire);
    return type == AccessType::kWrite ? a == static_cast<u8>(PageAccess::kReadWrite) : a != 0;
  }

  // Code tracking. A hart that decodes instructions from a page marks it; any write to a
  // marked page bumps the page's generation, which invalidates decoded copies.
  void mark_code(u64 page_index) { code_flag_[page_index].store(1, std::memory_order_relaxed); }
  bool is_code(u64 page_index) const {
    return code_flag_[page_index].load(std::memory_order_relaxed) != 0;
  }
  u32 code_generation(u64 page_index) const {
    return code_gen_[page_index].load(std::memory_order_acquire);
  }
  // Called after a write to a page (by a store, device DMA or the loader).
  void note_write(u64 page_index) {
    if (DVMM_UNLIKELY(code_flag_[page_index].load(std::memory_order_relaxed))) {
      code_gen_[page_index].fetch_add(1, std::memory_order_acq_rel);
    }
  }
  void note_write_range(Gpa gpa, u64 len);

  // Windows outside RAM (MemoryWindow). Added while no hart runs; the memory stays owned
  // by the caller and must outlive every hart. Throws std::invalid_argument when the window
  // is not page aligned or overlaps RAM or another window.
  void add_window(const MemoryWindow& window);
  const MemoryWindow* window_for(Gpa gpa) const {
    for (const MemoryWindow& w : windows_) {
      if (gpa - w.base < w.size) return &w;
    }
    return nullptr;
  }
  // The page index TLB entries of a window carry: one past the last RAM page, whose code
  // flag is always clear, so a store's note_write() through such an entry does nothing.
  u64 window_page_index() const { return page_count(); }

  // Device DMA on a distributed VM: a device copies a page under the shared side after
  // checking allows(); the DSM takes the exclusive side after lowering a page's access, so
  // no copy made under the old access is still running when the page leaves this node.
  std::shared_mutex& dma_mutex() const { return dma_mutex_; }

  // Copies for loaders and devices; both return false when the range is outside RAM.
  bool write(Gpa gpa, const void* src, u64 len);
  bool read(Gpa gpa, void* dst, u64 len) const;

 private:
  Gpa base_;
  u64 size_;
  u8* host_ = nullptr;
  std::unique_ptr<std::atomic<u8>[]> access_;
  std::unique_ptr<std::atomic<u8>[]> code_flag_;
  std::unique_ptr<std::atomic<u32>[]> code_gen_;
  mutable std::shared_mutex dma_mutex_;
  std::vector<MemoryWindow> windows_;
};

}  // namespace dvmm::memory
