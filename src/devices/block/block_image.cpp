#include "devices/block/block_image.hpp"

#include <algorithm>

#include "devices/block/image_file.hpp"
#include "devices/block/qcow2_format.hpp"
#include "devices/block/qcow2_image.hpp"
#include "devices/block/raw_image.hpp"

namespace dvmm::devices {

namespace {

// qcow2 by its magic; anything else (a file shorter than the magic included) is raw.
ImageFormat probe_format(const std::string& path) {
  const ImageFile file(path, OpenMode::kReadOnly, /*lock=*/false);
  u8 magic[sizeof qcow2::kMagic];
  file.read_zero_filled(0, magic);
  return std::equal(std::begin(magic), std::end(magic), std::begin(qcow2::kMagic))
             ? ImageFormat::kQcow2
             : ImageFormat::kRaw;
}

}  // namespace

std::optional<ImageFormat> parse_image_format(std::string_view name) {
  if (name == "raw") return ImageFormat::kRaw;
  if (name == "qcow2") return ImageFormat::kQcow2;
  if (name == "auto") return ImageFormat::kAuto;
  return std::nullopt;
}

std::unique_ptr<BlockImage> open_block_image(const std::string& path, const ImageOptions& options) {
  return open_block_image_in_chain(path, options, 0);
}

std::unique_ptr<BlockImage> open_block_image_in_chain(const std::string& path,
                                                      const ImageOptions& options,
                                                      unsigned chain_depth) {
  if (chain_depth > kMaxBackingChainDepth) {
    throw ImageError("'" + path + "': the backing chain is deeper than " +
                     std::to_string(kMaxBackingChainDepth) +
                     " images (does an image name itself or an image above it as its backing "
                     "file?)");
  }
  const ImageFormat format =
      options.format == ImageFormat::kAuto ? probe_format(path) : options.format;
  if (format == ImageFormat::kQcow2) {
    return std::make_unique<Qcow2Image>(path, options, chain_depth);
  }
  return std::make_unique<RawImage>(path, options.read_only, !options.force_share);
}

}  // namespace dvmm::devices
