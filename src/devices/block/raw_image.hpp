// A raw disk image: the guest's disk byte for byte in a regular file or a block device.
// Reads and writes go straight to the file (pread/pwrite); flush is fdatasync. The size must be
// a multiple of 512 bytes. The file is locked against other dvmm processes (image_file.hpp).
//
// Threads: one thread at a time (BlockImage's contract).
#pragma once

#include <memory>
#include <string>

#include "devices/block/block_image.hpp"
#include "devices/block/image_file.hpp"

namespace dvmm::devices {

class RawImage final : public BlockImage {
 public:
  // Throws ImageError. `lock` false skips the advisory lock (see ImageFile).
  RawImage(const std::string& path, bool read_only, bool lock = true);

  std::string_view format_name() const override { return "raw"; }
  const std::string& path() const override { return file_.path(); }
  u64 size() const override { return size_; }
  bool read_only() const override { return file_.read_only(); }
  void read(u64 offset, std::span<u8> out) override;
  void write(u64 offset, std::span<const u8> data) override;
  void flush() override;

 private:
  void check_range(u64 offset, u64 length) const;

  ImageFile file_;
  u64 size_;
};

// Creates a sparse raw image of `size` bytes (a multiple of 512) at `path`, which must not
// exist. Throws ImageError.
void create_raw_image(const std::string& path, u64 size);

}  // namespace dvmm::devices
