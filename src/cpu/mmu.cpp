// Address translation (Sv39, Sv48; privileged spec 4.3-4.5), the software TLB, and the
// slow paths of loads and stores: page crossings, MMIO and pages not present on this node.
#include <cstring>

#include "cpu/decode.hpp"
#include "cpu/hart.hpp"

namespace dvmm::cpu {

using memory::AccessType;

namespace {

constexpr u64 kPteV = 1 << 0, kPteR = 1 << 1, kPteW = 1 << 2, kPteX = 1 << 3, kPteU = 1 << 4,
              kPteA = 1 << 6, kPteD = 1 << 7;
constexpr u64 kPpnMask = (u64{1} << 44) - 1;

u64 page_fault_cause(AccessType t) {
  switch (t) {
    case AccessType::kExecute:
      return kInsnPageFault;
    case AccessType::kWrite:
      return kStorePageFault;
    default:
      return kLoadPageFault;
  }
}
u64 access_fault_cause(AccessType t) {
  switch (t) {
    case AccessType::kExecute:
      return kInsnAccessFault;
    case AccessType::kWrite:
      return kStoreAccessFault;
    default:
      return kLoadAccessFault;
  }
}

enum class WalkStatus { kOk, kPageFault, kAccessFault, kNotPresent };
struct WalkResult {
  WalkStatus status;
  Gpa gpa;            // translated address, or the PTE address for kNotPresent
  AccessType needed;  // for kNotPresent: the access the PTE page needs
};

// The page walk. `update` says whether A/D bits may be set (false for debugger reads).
WalkResult walk(const memory::GuestRam& ram, u64 satp, Privilege priv, u64 sstatus, u64 va,
                AccessType type, bool update) {
  const u64 mode = satp >> 60;
  if (mode == 0) return {WalkStatus::kOk, va, type};
  const int levels = mode == 8 ? 3 : 4;
  const int va_bits = 12 + 9 * levels;
  if (static_cast<u64>(static_cast<i64>(va << (64 - va_bits)) >> (64 - va_bits)) != va) {
    return {WalkStatus::kPageFault, 0, type};
  }
  for (;;) {  // restarted when the A/D update races with another writer of the PTE
    u64 table = (satp & kPpnMask) << kPageShift;
    bool restart = false;
    for (int level = levels - 1; level >= 0; --level) {
      const u64 vpn = (va >> (kPageShift + 9 * level)) & 0x1ff;
      const Gpa pte_addr = table + vpn * 8;
      if (!ram.contains(pte_addr, 8)) return {WalkStatus::kAccessFault, 0, type};
      const u64 page = ram.page_index(pte_addr);
      if (!ram.allows(page, AccessType::kRead)) {
        return {WalkStatus::kNotPresent, pte_addr, AccessType::kRead};
      }
      u64* pte_ptr = reinterpret_cast<u64*>(ram.host_ptr(pte_addr));
      const u64 pte = __atomic_load_n(pte_ptr, __ATOMIC_ACQUIRE);
      if (!(pte & kPteV) || (!(pte & kPteR) && (pte & kPteW)))
        return {WalkStatus::kPageFault, 0, type};
      if (pte >> 54) return {WalkStatus::kPageFault, 0, type};  // reserved / Svpbmt / Svnapot bits
      const u64 ppn = (pte >> 10) & kPpnMask;
      if (!(pte & (kPteR | kPteX))) {  // pointer to the next level
        if (level == 0 || (pte & (kPteA | kPteD | kPteU))) return {WalkStatus::kPageFault, 0, type};
        table = ppn << kPageShift;
        continue;
      }
      // Leaf: permissions.
      const bool user_page = (pte & kPteU) != 0;
      if (priv == Privilege::kUser) {
        if (!user_page) return {WalkStatus::kPageFault, 0, type};
      } else if (user_page) {
        if (type == AccessType::kExecute || !(sstatus & Hart::kSstatusSum)) {
          return {WalkStatus::kPageFault, 0, type};
        }
      }
      switch (type) {
        case AccessType::kExecute:
          if (!(pte & kPteX)) return {WalkStatus::kPageFault, 0, type};
          break;
        case AccessType::kRead:
          if (!(pte & kPteR) && !((sstatus & Hart::kSstatusMxr) && (pte & kPteX))) {
            return {WalkStatus::kPageFault, 0, type};
          }
          break;
        case AccessType::kWrite:
          if (!(pte & kPteW)) return {WalkStatus::kPageFault, 0, type};
          break;
      }
      const u64 level_mask = (u64{1} << (9 * level)) - 1;
      if (ppn & level_mask) return {WalkStatus::kPageFault, 0, type};  // misaligned superpage
      const u64 wanted = kPteA | (type == AccessType::kWrite ? kPteD : 0);
      if ((pte & wanted) != wanted && update) {
        if (!ram.allows(page, AccessType::kWrite)) {
          return {WalkStatus::kNotPresent, pte_addr, AccessType::kWrite};
        }
        u64 expected = pte;
        if (!__atomic_compare_exchange_n(pte_ptr, &expected, pte | wanted, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
          restart = true;
          break;
        }
        const_cast<memory::GuestRam&>(ram).note_write(page);
      }
      // Without updates (a debugger's view) a clear A or D bit is no fault: the mapping is
      // valid, the guest's first access would set the bit.
      const u64 offset_mask = (u64{1} << (kPageShift + 9 * level)) - 1;
      return {WalkStatus::kOk, ((ppn << kPageShift) & ~offset_mask) | (va & offset_mask), type};
    }
    if (!restart) return {WalkStatus::kPageFault, 0, type};
  }
}

// After a store to `gpa` (RAM or a memory window, which has no code tracking).
void note_gpa_write(memory::GuestRam& ram, Gpa gpa) {
  if (ram.contains(gpa)) ram.note_write(ram.page_index(gpa));
}

}  // namespace

Gpa Hart::translate(u64 va, AccessType type) {
  counters_.page_walks.fetch_add(1, std::memory_order_relaxed);
  const WalkResult r = walk(ram_, satp_, priv_, sstatus_, va, type, true);
  switch (r.status) {
    case WalkStatus::kOk:
      return r.gpa;
    case WalkStatus::kPageFault:
      raise(page_fault_cause(type), va);
    case WalkStatus::kAccessFault:
      raise(access_fault_cause(type), va);
    case WalkStatus::kNotPresent:
      exit_with(ExitPageNotPresent{r.gpa & ~kPageMask, r.needed});
  }
  raise(page_fault_cause(type), va);
}

std::optional<Gpa> Hart::debug_translate(Gva va, AccessType type) const {
  const WalkResult r = walk(ram_, satp_, priv_, sstatus_ | kSstatusSum, va, type, false);
  if (r.status == WalkStatus::kOk) return r.gpa;
  return std::nullopt;
}

u8* Hart::translate_to_host(u64 va, AccessType type, Gpa* gpa_out) {
  counters_.tlb_misses.fetch_add(1, std::memory_order_relaxed);
  const Gpa gpa = translate(va, type);
  *gpa_out = gpa;
  u64 page;
  u8* host;
  if (DVMM_LIKELY(ram_.contains(gpa))) {
    page = ram_.page_index(gpa);
    if (!ram_.allows(page, type)) exit_with(ExitPageNotPresent{gpa & ~kPageMask, type});
    host = ram_.host_ptr(gpa);
  } else {
    // A memory window (inter-VM shared memory) is data only: fetching from it is an
    // access fault, like fetching from MMIO.
    const memory::MemoryWindow* w = ram_.window_for(gpa);
    if (w == nullptr || type == AccessType::kExecute) return nullptr;
    page = ram_.window_page_index();
    host = w->host + (gpa - w->base);
  }
  TlbEntry& e = tlb_entry(type, va);
  e.tag = va >> kPageShift;
  e.addend = reinterpret_cast<i64>(host - (va & kPageMask)) - static_cast<i64>(va & ~kPageMask);
  e.page_index = page;
  return host;
}

void Hart::flush_tlb() {
  for (auto& mode : tlb_) {
    for (auto& set : mode) {
      for (auto& e : set) e.tag = ~u64{0};
    }
  }
  fetch_vpage_ = kInvalidFetchPage;
  fetch_slots_ = miss_slots();
}

void Hart::note_host_write(const u8* host) {
  const u64 offset = static_cast<u64>(host - ram_.host_base());
  if (offset < ram_.size()) ram_.note_write(offset >> kPageShift);  // else a memory window
}

u64 Hart::load_slow(u64 va, unsigned size) {
  if ((va & kPageMask) + size > kPageSize) {
    // Crosses a page: both pages must be readable RAM; assemble byte by byte.
    Gpa g1, g2;
    const u8* p1 = translate_to_host(va, AccessType::kRead, &g1);
    const u64 va2 = (va | kPageMask) + 1;
    const u8* p2 = translate_to_host(va2, AccessType::kRead, &g2);
    if (p1 == nullptr || p2 == nullptr) raise(kLoadAccessFault, va);
    const unsigned first = static_cast<unsigned>(va2 - va);
    u64 v = 0;
    std::memcpy(&v, p1, first);
    u64 rest = 0;
    std::memcpy(&rest, p2, size - first);
    return v | (rest << (8 * first));
  }
  Gpa gpa;
  const u8* host = translate_to_host(va, AccessType::kRead, &gpa);
  if (host != nullptr) {
    u64 v = 0;
    std::memcpy(&v, host, size);
    return v;
  }
  if (va & (size - 1)) raise(kLoadAccessFault, va);  // misaligned device access
  mmio_raw_ = raw_instruction_at_pc(&mmio_len_);
  mmio_read_pending_ = true;
  defer_exit(ExitMmioRead{gpa, static_cast<u8>(size)});
  return 0;  // replaced by complete_mmio_read()
}

void Hart::store_slow(u64 va, u64 value, unsigned size) {
  if ((va & kPageMask) + size > kPageSize) {
    Gpa g1, g2;
    u8* p1 = translate_to_host(va, AccessType::kWrite, &g1);
    const u64 va2 = (va | kPageMask) + 1;
    u8* p2 = translate_to_host(va2, AccessType::kWrite, &g2);
    if (p1 == nullptr || p2 == nullptr) raise(kStoreAccessFault, va);
    const unsigned first = static_cast<unsigned>(va2 - va);
    std::memcpy(p1, &value, first);
    const u64 rest = value >> (8 * first);
    std::memcpy(p2, &rest, size - first);
    note_gpa_write(ram_, g1);
    note_gpa_write(ram_, g2);
    return;
  }
  Gpa gpa;
  u8* host = translate_to_host(va, AccessType::kWrite, &gpa);
  if (host != nullptr) {
    std::memcpy(host, &value, size);
    note_gpa_write(ram_, gpa);
    return;
  }
  if (va & (size - 1)) raise(kStoreAccessFault, va);
  if (size < 8) value &= (u64{1} << (8 * size)) - 1;
  // The store is complete from the guest's point of view once its handler advances pc.
  defer_exit(ExitMmioWrite{gpa, static_cast<u8>(size), value});
}

u8* Hart::atomic_host_ptr(u64 va, unsigned size) {
  (void)size;
  const TlbEntry& e = tlb_entry(AccessType::kWrite, va);
  if (e.tag == (va >> kPageShift)) return reinterpret_cast<u8*>(va + e.addend);
  Gpa gpa;
  u8* host = translate_to_host(va, AccessType::kWrite, &gpa);
  if (host == nullptr) raise(kStoreAccessFault, va);
  return host;
}

const u8* Hart::load_reserved_ptr(u64 va, unsigned size) {
  (void)size;
  const TlbEntry& e = tlb_entry(AccessType::kRead, va);
  if (e.tag == (va >> kPageShift)) return reinterpret_cast<const u8*>(va + e.addend);
  Gpa gpa;
  const u8* host = translate_to_host(va, AccessType::kRead, &gpa);
  if (host == nullptr) raise(kLoadAccessFault, va);
  return host;
}

}  // namespace dvmm::cpu
