#include "memory/guest_ram.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace dvmm::memory {

GuestRam::GuestRam(Gpa base, u64 size) : base_(base), size_(size) {
  if (size == 0 || (size & kPageMask) != 0 || (base & kPageMask) != 0) {
    throw std::invalid_argument("guest RAM base and size must be non-zero multiples of 4 KiB");
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap guest RAM");
  host_ = static_cast<u8*>(p);
  // Transparent huge pages: the guest touches its RAM sparsely but widely, and every first
  // touch of a host page is a host page fault (expensive when the host is itself a VM).
  // 2 MiB pages cut those faults 512-fold. Advice only: failure changes nothing.
  (void)madvise(p, size, MADV_HUGEPAGE);
  const u64 pages = page_count();
  access_ = std::make_unique<std::atomic<u8>[]>(pages);
  // One more code flag than pages: window_page_index(), never set.
  code_flag_ = std::make_unique<std::atomic<u8>[]>(pages + 1);
  code_flag_[pages].store(0, std::memory_order_relaxed);
  code_gen_ = std::make_unique<std::atomic<u32>[]>(pages);
  for (u64 i = 0; i < pages; ++i) {
    access_[i].store(static_cast<u8>(PageAccess::kReadWrite), std::memory_order_relaxed);
    code_flag_[i].store(0, std::memory_order_relaxed);
    code_gen_[i].store(0, std::memory_order_relaxed);
  }
}

GuestRam::~GuestRam() {
  if (host_ != nullptr) munmap(host_, size_);
}

void GuestRam::set_all_access(PageAccess a) {
  for (u64 i = 0; i < page_count(); ++i) set_access(i, a);
}

void GuestRam::add_window(const MemoryWindow& window) {
  if (window.size == 0 || ((window.base | window.size) & kPageMask) != 0 ||
      window.host == nullptr) {
    throw std::invalid_argument("a memory window must be a non-empty, page-aligned range");
  }
  const auto overlaps = [&](Gpa base, u64 size) {
    return window.base < base + size && base < window.base + window.size;
  };
  if (window.base + window.size < window.base || overlaps(base_, size_)) {
    throw std::invalid_argument("a memory window overlaps guest RAM");
  }
  for (const MemoryWindow& w : windows_) {
    if (overlaps(w.base, w.size)) {
      throw std::invalid_argument("a memory window overlaps another window");
    }
  }
  windows_.push_back(window);
}

void GuestRam::note_write_range(Gpa gpa, u64 len) {
  if (len == 0) return;
  u64 first = page_index(gpa);
  u64 last = page_index(gpa + len - 1);
  for (u64 i = first; i <= last; ++i) note_write(i);
}

bool GuestRam::write(Gpa gpa, const void* src, u64 len) {
  if (!contains(gpa, len)) return false;
  std::memcpy(host_ptr(gpa), src, len);
  note_write_range(gpa, len);
  return true;
}

bool GuestRam::read(Gpa gpa, void* dst, u64 len) const {
  if (!contains(gpa, len)) return false;
  std::memcpy(dst, host_ptr(gpa), len);
  return true;
}

}  // namespace dvmm::memory
