// A disk image as virtio-blk sees it: a byte-addressed guest-visible disk of size() bytes,
// whatever the file format underneath (raw_image.*, qcow2_image.*). open_block_image() probes
// the format (qcow2 by its magic, anything else is raw) and checks the file before boot, so a
// missing, unreadable, read-only or corrupt image is a clear ImageError, not a guest I/O error.
//
// Threads: one thread at a time per image (the device's worker serializes requests).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "base/types.hpp"

namespace dvmm::devices {

// A bad image file, or a host I/O error on it. The message names the file and the reason.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ImageFormat { kAuto, kRaw, kQcow2 };

struct ImageOptions {
  ImageFormat format = ImageFormat::kAuto;
  // Open read-only: writes from the guest fail (virtio-blk offers VIRTIO_BLK_F_RO).
  bool read_only = false;
  // Take no lock on the file (and its backing files): for reading the metadata of an image a
  // running VM holds (`dvmm image info`), like qemu-img's --force-share.
  bool force_share = false;
};

// "raw" -> kRaw, "qcow2" -> kQcow2, "auto" -> kAuto; anything else is nullopt.
std::optional<ImageFormat> parse_image_format(std::string_view name);

class BlockImage {
 public:
  virtual ~BlockImage() = default;
  virtual std::string_view format_name() const = 0;  // "raw", "qcow2"
  virtual const std::string& path() const = 0;
  // Guest-visible size in bytes (a multiple of 512).
  virtual u64 size() const = 0;
  virtual bool read_only() const = 0;
  // Guest bytes [offset, offset + out.size()), which lies within size(). Unallocated parts
  // of a sparse format read from the backing image or as zeros. Throws ImageError.
  virtual void read(u64 offset, std::span<u8> out) = 0;
  // Throws ImageError (also when read_only()).
  virtual void write(u64 offset, std::span<const u8> data) = 0;
  // Everything written so far (data and metadata) reaches stable storage (fdatasync): what a
  // guest's FLUSH promises. Throws ImageError.
  virtual void flush() = 0;
  // The image unallocated parts read from (a qcow2 backing file), or nullptr.
  virtual const BlockImage* backing() const { return nullptr; }
};

// Opens `path` (format probed unless given). Throws ImageError.
std::unique_ptr<BlockImage> open_block_image(const std::string& path, const ImageOptions& options);

// open_block_image for the images of a backing chain: `chain_depth` counts the images above
// this one. A chain deeper than kMaxBackingChainDepth (a loop, most likely) is an ImageError.
inline constexpr unsigned kMaxBackingChainDepth = 32;
std::unique_ptr<BlockImage> open_block_image_in_chain(const std::string& path,
                                                      const ImageOptions& options,
                                                      unsigned chain_depth);

// Creates a qcow2 v3 image of `size` bytes at `path` (which must not exist), optionally on a
// backing file (its size is used when size == 0; the backing path is stored as given, relative
// paths resolve against the overlay's directory as qemu-img does). Throws ImageError.
void create_qcow2_image(const std::string& path, u64 size, const std::string& backing_path = {},
                        ImageFormat backing_format = ImageFormat::kAuto);

}  // namespace dvmm::devices
