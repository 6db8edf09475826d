#include "machine/cpio_writer.hpp"

#include <cstdio>

namespace dvmm::machine {

namespace {
constexpr u32 kDirectory = 0040000;
constexpr u32 kRegular = 0100000;
}  // namespace

void CpioWriter::pad4() {
  while (out_.size() % 4 != 0) out_.push_back(0);
}

void CpioWriter::add_entry(std::string_view path, u32 mode, std::span<const u8> data) {
  const bool trailer = path == "TRAILER!!!";
  const u32 fields[13] = {
      trailer ? 0 : next_ino_++,          // c_ino
      mode,                               // c_mode
      0,                                  // c_uid (root)
      0,                                  // c_gid
      (mode & kDirectory) ? 2u : 1u,      // c_nlink
      0,                                  // c_mtime
      static_cast<u32>(data.size()),      // c_filesize
      0,                                  // c_devmajor
      0,                                  // c_devminor
      0,                                  // c_rdevmajor
      0,                                  // c_rdevminor
      static_cast<u32>(path.size() + 1),  // c_namesize, with the NUL
      0,                                  // c_check (newc: 0)
  };
  char header[6 + 13 * 8 + 1];
  int n = std::snprintf(header, sizeof header, "070701");
  for (u32 f : fields)
    n += std::snprintf(header + n, sizeof header - static_cast<std::size_t>(n), "%08X", f);
  out_.insert(out_.end(), header, header + n);
  out_.insert(out_.end(), path.begin(), path.end());
  out_.push_back(0);
  pad4();
  out_.insert(out_.end(), data.begin(), data.end());
  pad4();
}

void CpioWriter::add_directory(std::string_view path, u32 mode) {
  add_entry(path, kDirectory | (mode & 07777), {});
}

void CpioWriter::add_file(std::string_view path, std::span<const u8> data, u32 mode) {
  add_entry(path, kRegular | (mode & 07777), data);
}

void CpioWriter::add_file(std::string_view path, std::string_view text, u32 mode) {
  add_file(path, std::span<const u8>(reinterpret_cast<const u8*>(text.data()), text.size()), mode);
}

std::vector<u8> CpioWriter::finish() {
  add_entry("TRAILER!!!", 0, {});
  std::vector<u8> result;
  result.swap(out_);
  next_ino_ = 1;
  return result;
}

}  // namespace dvmm::machine
