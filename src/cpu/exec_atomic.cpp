// The A extension: LR/SC and AMOs, done with host atomics on guest RAM so that harts on
// different host threads see each other's atomic operations. All are sequentially
// consistent here, which satisfies any aq/rl combination.
//
// LR/SC: LR remembers the address and the value it loaded; SC succeeds with a
// compare-and-swap against that value. Another hart's store of a different value makes the
// SC fail; the ABA case (a store of the same value) lets it succeed, which is
// indistinguishable from the store having happened before the LR.
#include "cpu/decode.hpp"

namespace dvmm::cpu {
namespace {

#define X(r) h.xreg_[r]
#define NEXT() (h.pc_ += L)

template <unsigned L, typename T>
void op_lr(Hart& h, const DecodedInsn& d) {
  const u64 va = X(d.rs1);
  if (va & (sizeof(T) - 1)) h.raise(kLoadMisaligned, va);
  // LR needs read access only, but its host pointer must be naturally aligned RAM.
  const u8* p = reinterpret_cast<const u8*>(h.load_reserved_ptr(va, sizeof(T)));
  const T v = __atomic_load_n(reinterpret_cast<const T*>(p), __ATOMIC_SEQ_CST);
  h.reservation_addr_ = va;
  h.reservation_value_ = static_cast<u64>(v);
  h.reservation_valid_ = true;
  X(d.rd) = static_cast<u64>(static_cast<i64>(static_cast<std::make_signed_t<T>>(v)));
  NEXT();
}

template <unsigned L, typename T>
void op_sc(Hart& h, const DecodedInsn& d) {
  const u64 va = X(d.rs1);
  if (va & (sizeof(T) - 1)) h.raise(kStoreMisaligned, va);
  u8* p = h.atomic_host_ptr(va, sizeof(T));
  bool ok = false;
  if (h.reservation_valid_ && h.reservation_addr_ == va) {
    T expected = static_cast<T>(h.reservation_value_);
    ok = __atomic_compare_exchange_n(reinterpret_cast<T*>(p), &expected, static_cast<T>(X(d.rs2)),
                                     false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    if (ok) h.note_host_write(p);
  }
  h.reservation_valid_ = false;
  X(d.rd) = ok ? 0 : 1;
  NEXT();
}

enum class AmoOp { kSwap, kAdd, kXor, kAnd, kOr, kMin, kMax, kMinu, kMaxu };

template <typename T, AmoOp kOp>
T amo_apply(T old, T src) {
  using S = std::make_signed_t<T>;
  switch (kOp) {
    case AmoOp::kSwap: return src;
    case AmoOp::kAdd: return static_cast<T>(old + src);
    case AmoOp::kXor: return old ^ src;
    case AmoOp::kAnd: return old & src;
    case AmoOp::kOr: return old | src;
    case AmoOp::kMin: return static_cast<S>(old) < static_cast<S>(src) ? old : src;
    case AmoOp::kMax: return static_cast<S>(old) > static_cast<S>(src) ? old : src;
    case AmoOp::kMinu: return old < src ? old : src;
    case AmoOp::kMaxu: return old > src ? old : src;
  }
  return old;
}

template <unsigned L, typename T, AmoOp kOp>
void op_amo(Hart& h, const DecodedInsn& d) {
  const u64 va = X(d.rs1);
  if (va & (sizeof(T) - 1)) h.raise(kStoreMisaligned, va);
  T* p = reinterpret_cast<T*>(h.atomic_host_ptr(va, sizeof(T)));
  const T src = static_cast<T>(X(d.rs2));
  T old;
  switch (kOp) {
    case AmoOp::kSwap: old = __atomic_exchange_n(p, src, __ATOMIC_SEQ_CST); break;
    case AmoOp::kAdd: old = __atomic_fetch_add(p, src, __ATOMIC_SEQ_CST); break;
    case AmoOp::kXor: old = __atomic_fetch_xor(p, src, __ATOMIC_SEQ_CST); break;
    case AmoOp::kAnd: old = __atomic_fetch_and(p, src, __ATOMIC_SEQ_CST); break;
    case AmoOp::kOr: old = __atomic_fetch_or(p, src, __ATOMIC_SEQ_CST); break;
    default: {
      old = __atomic_load_n(p, __ATOMIC_RELAXED);
      while (!__atomic_compare_exchange_n(p, &old, amo_apply<T, kOp>(old, src), true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
      }
      break;
    }
  }
  h.note_host_write(reinterpret_cast<const u8*>(p));
  X(d.rd) = static_cast<u64>(static_cast<i64>(static_cast<std::make_signed_t<T>>(old)));
  NEXT();
}

template <unsigned L, typename T>
InsnHandler pick_amo(u32 funct5) {
  switch (funct5) {
    case 0x00: return &op_amo<L, T, AmoOp::kAdd>;
    case 0x01: return &op_amo<L, T, AmoOp::kSwap>;
    case 0x02: return &op_lr<L, T>;
    case 0x03: return &op_sc<L, T>;
    case 0x04: return &op_amo<L, T, AmoOp::kXor>;
    case 0x08: return &op_amo<L, T, AmoOp::kOr>;
    case 0x0c: return &op_amo<L, T, AmoOp::kAnd>;
    case 0x10: return &op_amo<L, T, AmoOp::kMin>;
    case 0x14: return &op_amo<L, T, AmoOp::kMax>;
    case 0x18: return &op_amo<L, T, AmoOp::kMinu>;
    case 0x1c: return &op_amo<L, T, AmoOp::kMaxu>;
    default: return nullptr;
  }
}

#undef X
#undef NEXT

}  // namespace

bool decode_atomic(u32 raw, unsigned len, DecodedInsn& d) {
  const u32 f3 = funct3_of(raw);
  const u32 funct5 = raw >> 27;
  if (f3 != 2 && f3 != 3) return false;
  if (funct5 == 0x02 && rs2_of(raw) != 0) return false;  // lr with rs2 != 0 is reserved
  d.rd = xrd_of(raw);
  d.rs1 = rs1_of(raw);
  d.rs2 = rs2_of(raw);
  d.rs3 = 0;
  d.imm = 0;
  InsnHandler fn;
  if (f3 == 2) {
    fn = len == 2 ? pick_amo<2, u32>(funct5) : pick_amo<4, u32>(funct5);
  } else {
    fn = len == 2 ? pick_amo<2, u64>(funct5) : pick_amo<4, u64>(funct5);
  }
  if (fn == nullptr) return false;
  d.fn = fn;
  return true;
}

}  // namespace dvmm::cpu
