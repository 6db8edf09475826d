#include "dsm/wire.hpp"

#include <cstring>
#include <stdexcept>

namespace dvmm::dsm {

namespace {

// Explicit little-endian stores and loads: the format must not depend on the host.
void put16(u8* p, u16 v) {
  p[0] = static_cast<u8>(v);
  p[1] = static_cast<u8>(v >> 8);
}
void put32(u8* p, u32 v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<u8>(v >> (8 * i));
}
void put64(u8* p, u64 v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<u8>(v >> (8 * i));
}
u16 get16(const u8* p) {
  return static_cast<u16>(p[0] | (p[1] << 8));
}
u32 get32(const u8* p) {
  u32 v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
u64 get64(const u8* p) {
  u64 v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

const char* wire_error_name(WireError e) {
  switch (e) {
    case WireError::kOk:
      return "ok";
    case WireError::kTooShort:
      return "shorter than a header";
    case WireError::kBadMagic:
      return "bad magic";
    case WireError::kBadVersion:
      return "unsupported version";
    case WireError::kUnknownType:
      return "unknown message type";
    case WireError::kBadAccess:
      return "bad access field";
    case WireError::kBadReserved:
      return "reserved bits set";
    case WireError::kBadLength:
      return "bad length";
    case WireError::kBadNode:
      return "sender outside the cluster";
    case WireError::kPageOutOfRange:
      return "page out of range";
  }
  return "?";
}

Header encode_header(const Message& m) {
  Header h{};
  put32(&h[0], kWireMagic);
  h[4] = kWireVersion;
  h[5] = static_cast<u8>(m.type);
  h[6] = carries_access(m.type) ? static_cast<u8>(m.access) : 0;
  h[7] = 0;
  put16(&h[8], m.from);
  put16(&h[10], 0);
  put32(&h[12], carries_data(m.type) ? static_cast<u32>(kPageSize) : 0);
  put64(&h[16], m.page);
  put64(&h[24], m.seq);
  return h;
}

std::vector<u8> encode(const Message& m, std::span<const u8> payload) {
  const std::size_t want = carries_data(m.type) ? kPageSize : 0;
  if (payload.size() != want) throw std::invalid_argument("dsm wire: payload size for type");
  std::vector<u8> out(kHeaderSize + want);
  const Header h = encode_header(m);
  std::memcpy(out.data(), h.data(), kHeaderSize);
  if (want != 0) std::memcpy(out.data() + kHeaderSize, payload.data(), want);
  return out;
}

Decoded decode(std::span<const u8> bytes, const WireLimits& limits) {
  Decoded d;
  auto fail = [&](WireError e) {
    d.error = e;
    d.payload = {};
    return d;
  };
  if (bytes.size() < kHeaderSize) return fail(WireError::kTooShort);
  const u8* p = bytes.data();
  if (get32(p) != kWireMagic) return fail(WireError::kBadMagic);
  if (p[4] != kWireVersion) return fail(WireError::kBadVersion);
  if (p[5] < kFirstMsgType || p[5] > kLastMsgType) return fail(WireError::kUnknownType);
  const auto type = static_cast<MsgType>(p[5]);
  const u8 access = p[6];
  if (carries_access(type)) {
    if (access != static_cast<u8>(PageAccess::kRead) &&
        access != static_cast<u8>(PageAccess::kReadWrite)) {
      return fail(WireError::kBadAccess);
    }
  } else if (access != 0) {
    return fail(WireError::kBadAccess);
  }
  if (p[7] != 0 || get16(p + 10) != 0) return fail(WireError::kBadReserved);
  const u32 len = get32(p + 12);
  if (len != (carries_data(type) ? kPageSize : 0) || bytes.size() != kHeaderSize + len) {
    return fail(WireError::kBadLength);
  }
  const u16 from = get16(p + 8);
  if (from >= limits.node_count) return fail(WireError::kBadNode);
  const u64 page = get64(p + 16);
  if (page >= limits.page_count) return fail(WireError::kPageOutOfRange);
  d.msg = Message{type, from, static_cast<PageAccess>(access), page, get64(p + 24)};
  d.payload = bytes.subspan(kHeaderSize, len);
  return d;
}

}  // namespace dvmm::dsm
