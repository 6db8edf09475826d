// Little-endian encoding helpers for the cluster's own wire formats (bootstrap joins and
// tables). A reader never reads past its span: every getter returns false instead.
// Threads: plain values, one thread per object.
#pragma once

#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "base/types.hpp"

namespace dvmm::cluster {

class WireWriter {
 public:
  void u8v(u8 v) { out_.push_back(v); }
  void u32v(u32 v) { put(v, 4); }
  void u64v(u64 v) { put(v, 8); }
  void bytes(std::span<const u8> b) {
    u32v(static_cast<u32>(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void str(const std::string& s) { bytes({reinterpret_cast<const u8*>(s.data()), s.size()}); }
  std::vector<u8> take() { return std::move(out_); }

 private:
  void put(u64 v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<u8>(v >> (8 * i)));
  }
  std::vector<u8> out_;
};

class WireReader {
 public:
  explicit WireReader(std::span<const u8> in) : in_(in) {}
  bool u8v(u8& v) {
    if (in_.size() - pos_ < 1) return false;
    v = in_[pos_++];
    return true;
  }
  bool u32v(u32& v) {
    u64 x;
    if (!get(x, 4)) return false;
    v = static_cast<u32>(x);
    return true;
  }
  bool u64v(u64& v) { return get(v, 8); }
  bool bytes(std::vector<u8>& b) {
    u32 n;
    if (!u32v(n) || in_.size() - pos_ < n) return false;
    b.assign(in_.begin() + pos_, in_.begin() + pos_ + n);
    pos_ += n;
    return true;
  }
  bool str(std::string& s) {
    u32 n;
    if (!u32v(n) || in_.size() - pos_ < n) return false;
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  bool get(u64& v, int n) {
    if (in_.size() - pos_ < static_cast<std::size_t>(n)) return false;
    v = 0;
    for (int i = 0; i < n; ++i) v |= u64{in_[pos_ + i]} << (8 * i);
    pos_ += static_cast<std::size_t>(n);
    return true;
  }
  std::span<const u8> in_;
  std::size_t pos_ = 0;
};

}  // namespace dvmm::cluster
