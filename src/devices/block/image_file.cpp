#include "devices/block/image_file.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "devices/block/block_image.hpp"

namespace dvmm::devices {

namespace {

std::string quoted(const std::string& path) {
  return "'" + path + "'";
}

// The message for a failed open(2), with the way out where there is one.
std::string open_problem(const std::string& path, OpenMode mode, int error) {
  const std::string file = quoted(path);
  switch (error) {
    case ENOENT:
      return file + ": no such file";
    case EEXIST:
      return file + " already exists; dvmm does not overwrite images (remove it first)";
    case EISDIR:
      return file + " is a directory, not a disk image";
    case EACCES:
    case EPERM:
      if (mode == OpenMode::kReadWrite && ::access(path.c_str(), R_OK) == 0) {
        return file +
               " is not writable by you (permission denied); use it read-only "
               "(readonly=on) or change its permissions";
      }
      return file + ": permission denied";
    case EROFS:
      return file + " is on a read-only file system; use it read-only (readonly=on)";
    case ETXTBSY:
      return file + " is busy (being executed)";
    default:
      return file + ": cannot open: " + std::strerror(error);
  }
}

}  // namespace

ImageFile::ImageFile(const std::string& path, OpenMode mode, bool lock)
    : path_(path), read_only_(mode == OpenMode::kReadOnly) {
  int flags = O_CLOEXEC;
  switch (mode) {
    case OpenMode::kReadOnly:
      flags |= O_RDONLY;
      break;
    case OpenMode::kReadWrite:
      flags |= O_RDWR;
      break;
    case OpenMode::kCreate:
      flags |= O_RDWR | O_CREAT | O_EXCL;
      break;
  }
  do {
    fd_ = ::open(path.c_str(), flags, 0644);
  } while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0) throw ImageError(open_problem(path, mode, errno));

  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("cannot stat", errno);
    if (S_ISREG(st.st_mode)) {
      size_ = static_cast<u64>(st.st_size);
    } else if (S_ISBLK(st.st_mode)) {
      u64 bytes = 0;
      if (::ioctl(fd_, BLKGETSIZE64, &bytes) != 0)
        fail("cannot get the block device's size", errno);
      size_ = bytes;
    } else if (S_ISDIR(st.st_mode)) {
      throw ImageError(quoted(path) + " is a directory, not a disk image");
    } else {
      throw ImageError(quoted(path) + " is not a regular file or a block device");
    }

    if (lock) {
      const int how = (read_only_ ? LOCK_SH : LOCK_EX) | LOCK_NB;
      int r;
      do {
        r = ::flock(fd_, how);
      } while (r != 0 && errno == EINTR);
      if (r != 0 && errno == EWOULDBLOCK) {
        throw ImageError(quoted(path) + " is in use by another process (" +
                         (read_only_
                              ? "a VM has it open for writing"
                              : "a VM has it open; two VMs cannot share an image they write") +
                         ")");
      }
      if (r != 0) fail("cannot lock", errno);
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

ImageFile::~ImageFile() {
  if (fd_ >= 0) ::close(fd_);
}

void ImageFile::fail(const std::string& action, int error) const {
  throw ImageError(quoted(path_) + ": " + action + ": " + std::strerror(error));
}

std::size_t ImageFile::read_available(u64 offset, std::span<u8> out,
                                      const std::string& action) const {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(action + " at offset " + std::to_string(offset + done), errno);
    }
    if (n == 0) break;  // end of file
    done += static_cast<std::size_t>(n);
  }
  return done;
}

void ImageFile::read_exact(u64 offset, std::span<u8> out, const char* what) const {
  if (read_available(offset, out, std::string("cannot read the ") + what) < out.size()) {
    throw ImageError(quoted(path_) + ": the " + what + " at offset " + std::to_string(offset) +
                     " lies beyond the end of the file (" + std::to_string(size_) +
                     " bytes): truncated or corrupt image");
  }
}

void ImageFile::read_zero_filled(u64 offset, std::span<u8> out) const {
  const std::size_t done = read_available(offset, out, "cannot read");
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(done), out.end(), u8{0});
}

void ImageFile::write_all(u64 offset, std::span<const u8> data, const char* what) {
  if (read_only_) throw ImageError(quoted(path_) + " is open read-only");
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(std::string("cannot write the ") + what + " at offset " + std::to_string(offset + done),
           errno);
    }
    if (n == 0) fail(std::string("cannot write the ") + what, ENOSPC);
    done += static_cast<std::size_t>(n);
  }
  size_ = std::max(size_, offset + data.size());
}

void ImageFile::truncate(u64 size) {
  int r;
  do {
    r = ::ftruncate(fd_, static_cast<off_t>(size));
  } while (r != 0 && errno == EINTR);
  if (r != 0) fail("cannot set the file size to " + std::to_string(size), errno);
  size_ = size;
}

void ImageFile::sync() {
  int r;
  do {
    r = ::fdatasync(fd_);
  } while (r != 0 && errno == EINTR);
  if (r != 0) fail("cannot flush to stable storage (fdatasync)", errno);
}

}  // namespace dvmm::devices
