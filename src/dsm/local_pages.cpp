#include "dsm/local_pages.hpp"

#include <cstring>
#include <mutex>

namespace dvmm::dsm {

void GuestRamPages::set_access(u64 page, memory::PageAccess access, const WaitHook& while_waiting) {
  const memory::PageAccess old = ram_.access(page);
  // Store first: a hart that refills its TLB after this sees the new access, so once every
  // hart has flushed, none can still reach the page with the old one.
  ram_.set_access(page, access);
  if (static_cast<u8>(access) < static_cast<u8>(old)) {
    // Device DMA copies under the shared side of this lock after checking the access:
    // once we hold it, no copy that saw the old access is still running.
    { std::unique_lock dma_done(ram_.dma_mutex()); }
    if (flusher_) {
      flusher_(page, while_waiting);
    } else if (while_waiting) {
      while_waiting();
    }
  }
}

void GuestRamPages::read_page(u64 page, std::span<u8, kPageSize> out) const {
  std::memcpy(out.data(), ram_.host_base() + (page << kPageShift), kPageSize);
}

void GuestRamPages::write_page(u64 page, std::span<const u8, kPageSize> data) {
  std::memcpy(ram_.host_base() + (page << kPageShift), data.data(), kPageSize);
  ram_.note_write_range(ram_.base() + (page << kPageShift), kPageSize);
}

}  // namespace dvmm::dsm
