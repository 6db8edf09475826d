// Basic types shared by every layer: fixed-width integers and the address kinds.
// Any thread may use these; they carry no state.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dvmm {

using u8 = std::uint8_t;
using u16 = std::uint16_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;
using i8 = std::int8_t;
using i16 = std::int16_t;
using i32 = std::int32_t;
using i64 = std::int64_t;
using u128 = unsigned __int128;
using i128 = __int128;

// Guest-physical address. Kept as a plain integer alias inside the CPU hot paths for speed;
// interfaces between layers use the names to say which kind of address they take.
using Gpa = u64;
// Guest-virtual address.
using Gva = u64;
using HartId = u32;

inline constexpr u64 kPageShift = 12;
inline constexpr u64 kPageSize = u64{1} << kPageShift;
inline constexpr u64 kPageMask = kPageSize - 1;

#if defined(__GNUC__)
#define DVMM_LIKELY(x) __builtin_expect(!!(x), 1)
#define DVMM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define DVMM_ALWAYS_INLINE inline __attribute__((always_inline))
#define DVMM_NOINLINE __attribute__((noinline))
#else
#define DVMM_LIKELY(x) (x)
#define DVMM_UNLIKELY(x) (x)
#define DVMM_ALWAYS_INLINE inline
#define DVMM_NOINLINE
#endif

}  // namespace dvmm
