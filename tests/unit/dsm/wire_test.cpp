// Unit tests for the DSM wire format (src/dsm/wire.cpp): round trips of every message
// type, the exact header layout, each malformed-input error, and random and mutated bytes
// that must be rejected or decoded without crashing or reading out of bounds.
#include "dsm/wire.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace dvmm::dsm {
namespace {

const WireLimits kLimits{1024, 4};

Message sample(MsgType t) {
  Message m;
  m.type = t;
  m.from = 3;
  m.access = carries_access(t) ? PageAccess::kReadWrite : PageAccess::kNone;
  m.page = 1023;
  m.seq = 0x0123'4567'89ab'cdefull;
  return m;
}

std::vector<u8> page_bytes() {
  std::vector<u8> p(kPageSize);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<u8>(i * 7 + 1);
  return p;
}

TEST(DsmWire, RoundTripsEveryType) {
  const std::vector<u8> page = page_bytes();
  for (u8 t = kFirstMsgType; t <= kLastMsgType; ++t) {
    const Message m = sample(static_cast<MsgType>(t));
    const bool data = carries_data(m.type);
    const std::vector<u8> bytes =
        encode(m, data ? std::span<const u8>(page) : std::span<const u8>());
    ASSERT_EQ(bytes.size(), kHeaderSize + (data ? kPageSize : 0));
    const Decoded d = decode(bytes, kLimits);
    ASSERT_EQ(d.error, WireError::kOk) << msg_type_name(m.type);
    EXPECT_EQ(d.msg, m);
    if (data) {
      ASSERT_EQ(d.payload.size(), kPageSize);
      EXPECT_EQ(std::memcmp(d.payload.data(), page.data(), kPageSize), 0);
    } else {
      EXPECT_TRUE(d.payload.empty());
    }
  }
}

TEST(DsmWire, HeaderLayoutIsLittleEndianAndFixed) {
  Message m{MsgType::kGrant, 0x0102, PageAccess::kRead, 0x1122334455667788ull, 0x99};
  const Header h = encode_header(m);
  const u8 expect[kHeaderSize] = {'D',  'V',  'S',  'M', 1, 10,   1,    0,    0x02, 0x01, 0,
                                  0,    0,    0,    0,   0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33,
                                  0x22, 0x11, 0x99, 0,   0, 0,    0,    0,    0,    0};
  EXPECT_EQ(std::memcmp(h.data(), expect, kHeaderSize), 0);
  const Header g = encode_header({MsgType::kGrantData, 1, PageAccess::kRead, 2, 3});
  EXPECT_EQ(g[12] | (g[13] << 8), static_cast<int>(kPageSize));
}

TEST(DsmWire, EncodeRefusesAWrongPayloadSize) {
  std::vector<u8> page = page_bytes();
  EXPECT_THROW(encode(sample(MsgType::kGrantData)), std::invalid_argument);
  EXPECT_THROW(encode(sample(MsgType::kInvalidate), page), std::invalid_argument);
}

TEST(DsmWire, RejectsEachKindOfMalformedInput) {
  const std::vector<u8> page = page_bytes();
  const std::vector<u8> good = encode(sample(MsgType::kGrantData), page);
  auto with = [&](auto mutate) {
    std::vector<u8> b = good;
    mutate(b);
    return decode(b, kLimits).error;
  };
  EXPECT_EQ(with([](auto& b) { b.resize(kHeaderSize - 1); }), WireError::kTooShort);
  EXPECT_EQ(with([](auto& b) { b.clear(); }), WireError::kTooShort);
  EXPECT_EQ(with([](auto& b) { b[0] ^= 1; }), WireError::kBadMagic);
  EXPECT_EQ(with([](auto& b) { b[4] = 2; }), WireError::kBadVersion);
  EXPECT_EQ(with([](auto& b) { b[5] = 0; }), WireError::kUnknownType);
  EXPECT_EQ(with([](auto& b) { b[5] = kLastMsgType + 1; }), WireError::kUnknownType);
  EXPECT_EQ(with([](auto& b) { b[6] = 0; }), WireError::kBadAccess);  // a grant of nothing
  EXPECT_EQ(with([](auto& b) { b[6] = 3; }), WireError::kBadAccess);
  EXPECT_EQ(with([](auto& b) { b[7] = 1; }), WireError::kBadReserved);
  EXPECT_EQ(with([](auto& b) { b[11] = 1; }), WireError::kBadReserved);
  EXPECT_EQ(with([](auto& b) { b.pop_back(); }), WireError::kBadLength);
  EXPECT_EQ(with([](auto& b) { b.push_back(0); }), WireError::kBadLength);
  EXPECT_EQ(with([](auto& b) { b[13] = 0; }), WireError::kBadLength);
  EXPECT_EQ(with([](auto& b) { b[8] = 4; }), WireError::kBadNode);
  EXPECT_EQ(with([](auto& b) { b[17] = 4; }), WireError::kPageOutOfRange);  // page 1024+
  EXPECT_EQ(with([](auto& b) { b[23] = 0x80; }), WireError::kPageOutOfRange);
  // A type without data that claims a payload; an access on a type that has none.
  std::vector<u8> inv = encode(sample(MsgType::kInvalidate));
  inv[12] = 0x00;
  inv[13] = 0x10;
  EXPECT_EQ(decode(inv, kLimits).error, WireError::kBadLength);
  inv = encode(sample(MsgType::kInvalidate));
  inv[6] = 1;
  EXPECT_EQ(decode(inv, kLimits).error, WireError::kBadAccess);
}

// Random byte strings of every length around the valid sizes, and valid messages with
// random bytes flipped: decode must return (ok or an error) without crashing; whatever
// it accepts must be in range and re-encode to the same bytes.
TEST(DsmWire, RandomAndMutatedBytesNeverCrash) {
  std::mt19937_64 rng(42);
  const std::vector<u8> page = page_bytes();
  u64 ok = 0, bad = 0;
  for (int i = 0; i < 100'000; ++i) {
    std::vector<u8> b;
    if (i % 2 == 0) {
      const std::size_t len =
          rng() % 3 == 0 ? kHeaderSize + kPageSize + (rng() % 5) - 2 : rng() % 64;
      b.resize(len);
      for (auto& x : b) x = static_cast<u8>(rng());
      if (b.size() >= 4 && rng() % 2) std::memcpy(b.data(), "DVSM", 4);  // get past the magic
      if (b.size() >= 6 && rng() % 2) b[4] = kWireVersion;
    } else {
      const auto t = static_cast<MsgType>(kFirstMsgType + rng() % kLastMsgType);
      Message m = sample(t);
      m.page = rng() % kLimits.page_count;
      b = encode(m, carries_data(t) ? std::span<const u8>(page) : std::span<const u8>());
      for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips) {
        b[rng() % std::min<std::size_t>(b.size(), kHeaderSize)] ^=
            static_cast<u8>(1u << (rng() % 8));
      }
    }
    const Decoded d = decode(b, kLimits);
    if (d.error != WireError::kOk) {
      ++bad;
      EXPECT_TRUE(d.payload.empty());
      continue;
    }
    ++ok;
    ASSERT_LT(d.msg.page, kLimits.page_count);
    ASSERT_LT(d.msg.from, kLimits.node_count);
    const std::vector<u8> again = encode(d.msg, d.payload);
    ASSERT_EQ(again, b);
  }
  EXPECT_GT(bad, 50'000u);
  EXPECT_GT(ok, 100u);  // some flips land in seq or payload-free fields and stay valid
}

}  // namespace
}  // namespace dvmm::dsm
