// A writer for "newc" cpio archives (the SVR4 format with no CRC that Linux's initramfs
// unpacker reads; Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte
// ASCII header ("070701" and thirteen 8-digit hex fields), the NUL-terminated name, padding
// to 4 bytes, the data, padding to 4 bytes; "TRAILER!!!" ends the archive.
//
// Threads: a plain object; one thread at a time.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/types.hpp"

namespace dvmm::machine {

class CpioWriter {
 public:
  // Paths are relative to the archive root, without a leading '/' ("dvmm/cmd"). Parent
  // directories must be added before their contents (the unpacker does not create them).
  void add_directory(std::string_view path, u32 mode = 0755);
  void add_file(std::string_view path, std::span<const u8> data, u32 mode = 0644);
  void add_file(std::string_view path, std::string_view text, u32 mode = 0644);
  // Appends the trailer and returns the archive; the writer is empty afterwards.
  std::vector<u8> finish();

 private:
  void add_entry(std::string_view path, u32 mode, std::span<const u8> data);
  void pad4();

  std::vector<u8> out_;
  u32 next_ino_ = 1;
};

}  // namespace dvmm::machine
