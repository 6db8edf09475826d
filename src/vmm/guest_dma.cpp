#include "vmm/guest_dma.hpp"

#include <cstring>
#include <shared_mutex>

namespace dvmm::vmm {

template <typename Copy>
bool GuestDma::each_page(Gpa gpa, u64 len, memory::AccessType type, Copy&& copy) {
  if (len == 0) return true;
  if (!ram_.contains(gpa, len)) return false;
  for (u64 done = 0; done < len;) {
    const Gpa at = gpa + done;
    const u64 n = std::min(len - done, kPageSize - (at & kPageMask));
    const u64 page = ram_.page_index(at);
    for (;;) {
      {
        std::shared_lock lock(ram_.dma_mutex());
        if (ram_.allows(page, type)) {
          copy(ram_.host_ptr(at), done, n);
          break;
        }
      }
      if (stopping_ && stopping_()) return false;
      if (!links_.acquire_page(at, type, {})) return false;
    }
    done += n;
  }
  return true;
}

bool GuestDma::read(Gpa gpa, void* dst, u64 len) {
  u8* out = static_cast<u8*>(dst);
  return each_page(gpa, len, memory::AccessType::kRead,
                   [&](const u8* host, u64 offset, u64 n) { std::memcpy(out + offset, host, n); });
}

bool GuestDma::write(Gpa gpa, const void* src, u64 len) {
  const u8* in = static_cast<const u8*>(src);
  const bool ok = each_page(gpa, len, memory::AccessType::kWrite, [&](u8* host, u64 offset, u64 n) {
    std::memcpy(host, in + offset, n);
    ram_.note_write_range(gpa + offset, n);
  });
  return ok;
}

}  // namespace dvmm::vmm
