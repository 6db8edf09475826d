// The wire format of protocol messages between nodes.
//
// Owns the encoding: a fixed 32-byte little-endian header, then the 4 KiB page for the
// message types that carry data (protocol.hpp: carries_data). Decoding validates every
// field and returns an error value for malformed input; it never crashes or reads past
// the input, whatever the bytes (there is a fuzz-style test).
//
//   offset size field
//        0    4 magic        kWireMagic ("DVSM" as bytes)
//        4    1 version      kWireVersion; a node refuses other versions
//        5    1 type         MsgType
//        6    1 access       PageAccess for grants, 0 otherwise
//        7    1 flags        0 (reserved)
//        8    2 from         sending node
//       10    2 reserved     0
//       12    4 payload_len  kPageSize if the type carries data, else 0
//       16    8 page         page index in guest RAM (HomeMap)
//       24    8 seq          sequence number (protocol.hpp: Message::seq)
//       32    payload_len    the page
//
// Threads: pure functions; any thread.
#pragma once

#include <array>
#include <span>
#include <vector>

#include "base/types.hpp"
#include "dsm/protocol.hpp"

namespace dvmm::dsm {

inline constexpr u32 kWireMagic = 0x4D535644;  // bytes 'D' 'V' 'S' 'M'
inline constexpr u8 kWireVersion = 1;
inline constexpr std::size_t kHeaderSize = 32;
inline constexpr std::size_t kMaxWireSize = kHeaderSize + kPageSize;

enum class WireError : u8 {
  kOk = 0,
  kTooShort,  // fewer bytes than a header
  kBadMagic,
  kBadVersion,
  kUnknownType,
  kBadAccess,    // an access value out of range, or on a type that carries none
  kBadReserved,  // non-zero flags or reserved bits
  kBadLength,    // payload_len wrong for the type, or the byte count disagrees
  kBadNode,      // `from` outside the cluster
  kPageOutOfRange,
};
const char* wire_error_name(WireError e);

// What the receiver knows about the cluster, to reject out-of-range fields.
struct WireLimits {
  u64 page_count = 0;
  unsigned node_count = 0;
};

using Header = std::array<u8, kHeaderSize>;

// The header for `m`; payload_len follows from the type.
Header encode_header(const Message& m);
// Header plus payload in one buffer. `payload` must be kPageSize bytes when the type
// carries data and empty otherwise (a broken invariant of the caller: throws).
std::vector<u8> encode(const Message& m, std::span<const u8> payload = {});

struct Decoded {
  WireError error = WireError::kOk;
  Message msg;
  std::span<const u8> payload;  // points into the input; empty when the type has none
};
Decoded decode(std::span<const u8> bytes, const WireLimits& limits);

}  // namespace dvmm::dsm
