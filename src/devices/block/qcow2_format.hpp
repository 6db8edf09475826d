// The on-disk layout of qcow2 (QEMU's docs/interop/qcow2.txt) that the qcow2 files share:
// header field offsets, feature bits, L1/L2/refcount entry bits, big-endian access.
//
// Threads: constants and pure functions only.
#pragma once

#include <bit>
#include <cstring>

#include "base/types.hpp"

namespace dvmm::devices::qcow2 {

inline constexpr u8 kMagic[4] = {'Q', 'F', 'I', 0xfb};

// Header fields (byte offsets).
inline constexpr u64 kOffVersion = 4;
inline constexpr u64 kOffBackingFileOffset = 8;
inline constexpr u64 kOffBackingFileSize = 16;
inline constexpr u64 kOffClusterBits = 20;
inline constexpr u64 kOffSize = 24;
inline constexpr u64 kOffCryptMethod = 32;
inline constexpr u64 kOffL1Size = 36;
inline constexpr u64 kOffL1TableOffset = 40;
inline constexpr u64 kOffRefcountTableOffset = 48;
inline constexpr u64 kOffRefcountTableClusters = 56;
inline constexpr u64 kOffNbSnapshots = 60;
inline constexpr u64 kOffSnapshotsOffset = 64;
inline constexpr u64 kOffIncompatibleFeatures = 72;
inline constexpr u64 kOffCompatibleFeatures = 80;
inline constexpr u64 kOffAutoclearFeatures = 88;
inline constexpr u64 kOffRefcountOrder = 96;
inline constexpr u64 kOffHeaderLength = 100;
inline constexpr u64 kOffCompressionType = 104;

inline constexpr u32 kV2HeaderLength = 72;
inline constexpr u32 kV3HeaderLength = 104;  // the minimum; 112 with compression_type

inline constexpr u32 kMinClusterBits = 9;   // 512 B
inline constexpr u32 kMaxClusterBits = 21;  // 2 MiB, QEMU's limit too
inline constexpr u32 kMaxBackingFileNameLength = 1023;
inline constexpr u64 kMaxL1TableBytes = u64{32} << 20;  // QEMU's limits
inline constexpr u64 kMaxRefcountTableBytes = u64{8} << 20;

// Incompatible feature bits.
inline constexpr u64 kIncompatDirty = u64{1} << 0;
inline constexpr u64 kIncompatCorrupt = u64{1} << 1;
inline constexpr u64 kIncompatExternalDataFile = u64{1} << 2;
inline constexpr u64 kIncompatCompressionType = u64{1} << 3;
inline constexpr u64 kIncompatExtendedL2 = u64{1} << 4;

// Header extension types.
inline constexpr u32 kExtEnd = 0;
inline constexpr u32 kExtBackingFormat = 0xe2792aca;
inline constexpr u32 kExtFeatureNameTable = 0x6803f857;
inline constexpr u32 kExtExternalDataFile = 0x44415441;

// L1 entries and L2 entries (standard clusters).
inline constexpr u64 kOffsetMask = 0x00ff'ffff'ffff'fe00;  // bits 9-55
inline constexpr u64 kFlagCopied = u64{1} << 63;           // refcount is exactly 1
inline constexpr u64 kFlagCompressed = u64{1} << 62;
inline constexpr u64 kFlagZero = u64{1} << 0;  // v3: reads as zeros

inline u64 to_or_from_be(u64 v) {
  return std::endian::native == std::endian::little ? __builtin_bswap64(v) : v;
}
inline u32 to_or_from_be(u32 v) {
  return std::endian::native == std::endian::little ? __builtin_bswap32(v) : v;
}
inline u64 load_be64(const u8* p) {
  u64 v;
  std::memcpy(&v, p, 8);
  return to_or_from_be(v);
}
inline u32 load_be32(const u8* p) {
  u32 v;
  std::memcpy(&v, p, 4);
  return to_or_from_be(v);
}
inline void store_be64(u8* p, u64 v) {
  v = to_or_from_be(v);
  std::memcpy(p, &v, 8);
}
inline void store_be32(u8* p, u32 v) {
  v = to_or_from_be(v);
  std::memcpy(p, &v, 4);
}

inline u64 round_up(u64 value, u64 alignment) {
  return (value + alignment - 1) / alignment * alignment;
}
inline u64 div_round_up(u64 value, u64 divisor) {
  return (value + divisor - 1) / divisor;
}

}  // namespace dvmm::devices::qcow2
