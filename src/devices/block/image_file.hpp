// The host file under a disk image (raw_image.*, qcow2_image.*): opens it read-only or
// read-write with a clear ImageError for the usual mistakes (missing, a directory, not
// writable), takes the advisory lock that keeps two VMs from writing one image, and does
// positioned I/O that loops over short transfers and EINTR.
//
// Locking: flock(2) on the open file description, shared for read-only opens and exclusive
// for read-write ones, never blocking; a conflict is "is in use by another process". Two
// opens in one process conflict too (each has its own file description). QEMU locks images
// with OFD byte-range locks instead, which flock does not see: this lock protects dvmm from
// dvmm, not from a QEMU using the same image.
//
// Threads: one thread at a time.
#pragma once

#include <span>
#include <string>

#include "base/types.hpp"

namespace dvmm::devices {

enum class OpenMode {
  kReadOnly,
  kReadWrite,
  kCreate,  // a new file, read-write; an existing file is an ImageError (never overwritten)
};

class ImageFile {
 public:
  // Throws ImageError. `lock` false skips the advisory lock (`dvmm image info` on an image a
  // running VM holds).
  ImageFile(const std::string& path, OpenMode mode, bool lock = true);
  ~ImageFile();
  ImageFile(const ImageFile&) = delete;
  ImageFile& operator=(const ImageFile&) = delete;

  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }
  // Bytes in the file (or block device) now: its size at open, grown by our writes.
  u64 size() const { return size_; }

  // Reads exactly out.size() bytes; running into the end of the file is an ImageError.
  void read_exact(u64 offset, std::span<u8> out, const char* what) const;
  // Reads what the file holds of [offset, offset + out.size()) and zero-fills the rest (the
  // part past the end of the file), as QEMU does for data clusters.
  void read_zero_filled(u64 offset, std::span<u8> out) const;
  void write_all(u64 offset, std::span<const u8> data, const char* what);
  // Sets the file's size (only grows a new file in practice).
  void truncate(u64 size);
  // fdatasync.
  void sync();

 private:
  [[noreturn]] void fail(const std::string& action, int error) const;
  // Reads up to out.size() bytes (fewer at the end of the file); returns how many. Throws
  // ImageError naming `action` on an I/O error.
  std::size_t read_available(u64 offset, std::span<u8> out, const std::string& action) const;

  std::string path_;
  bool read_only_;
  int fd_ = -1;
  u64 size_ = 0;
};

}  // namespace dvmm::devices
