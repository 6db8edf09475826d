#include "devices/block/raw_image.hpp"

#include <unistd.h>

namespace dvmm::devices {

namespace {

constexpr u64 kSectorSize = 512;

}  // namespace

RawImage::RawImage(const std::string& path, bool read_only, bool lock)
    : file_(path, read_only ? OpenMode::kReadOnly : OpenMode::kReadWrite, lock),
      size_(file_.size()) {
  if (size_ % kSectorSize != 0) {
    throw ImageError("'" + path + "': its size (" + std::to_string(size_) +
                     " bytes) is not a multiple of 512 bytes, which a raw disk image must be "
                     "(e.g. truncate -s %512 '" +
                     path + "' to round it up)");
  }
}

void RawImage::check_range(u64 offset, u64 length) const {
  if (offset > size_ || length > size_ - offset) {
    throw ImageError("'" + path() + "': access to bytes [" + std::to_string(offset) + ", " +
                     std::to_string(offset + length) + ") beyond the end of the disk (" +
                     std::to_string(size_) + " bytes)");
  }
}

void RawImage::read(u64 offset, std::span<u8> out) {
  check_range(offset, out.size());
  file_.read_exact(offset, out, "data");
}

void RawImage::write(u64 offset, std::span<const u8> data) {
  check_range(offset, data.size());
  file_.write_all(offset, data, "data");
}

void RawImage::flush() {
  if (!read_only()) file_.sync();
}

void create_raw_image(const std::string& path, u64 size) {
  if (size % kSectorSize != 0) {
    throw ImageError("'" + path +
                     "': the size of a disk image must be a multiple of 512 bytes, not " +
                     std::to_string(size));
  }
  ImageFile file(path, OpenMode::kCreate);
  try {
    file.truncate(size);
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
}

}  // namespace dvmm::devices
