// create_qcow2_image (declared in block_image.hpp): a new qcow2 version 3 image with 64 KiB
// clusters and 16-bit refcounts, laid out as qemu-img does:
//
//   cluster 0   header, backing format extension, backing file name
//   cluster 1   refcount table (one cluster: 8192 blocks, enough for 16 TiB of file)
//   cluster 2   refcount block 0 (clusters 0..32767)
//   cluster 3.. L1 table, all entries 0 (nothing allocated)
//
// Threads: any; touches only the new file (and reads the backing file).
#include <unistd.h>

#include "devices/block/block_image.hpp"
#include "devices/block/image_file.hpp"
#include "devices/block/qcow2_format.hpp"
#include "devices/block/qcow2_header.hpp"
#include "devices/block/qcow2_image.hpp"

namespace dvmm::devices {

using namespace qcow2;

namespace {

constexpr u32 kNewImageClusterBits = 16;
constexpr u32 kNewImageRefcountOrder = 4;

// Opens the backing file as the new image will (its chain too) and returns its format and
// size; a backing file that cannot be opened makes no image.
std::pair<std::string, u64> check_backing_file(const std::string& path,
                                               const std::string& backing_path,
                                               ImageFormat backing_format) {
  if (backing_path.size() > kMaxBackingFileNameLength) {
    throw ImageError("'" + path + "': the backing file name is longer than 1023 bytes");
  }
  const std::string resolved = resolve_backing_path(path, backing_path);
  ImageOptions options;
  options.format = backing_format;
  options.read_only = true;
  options.force_share = true;
  try {
    const auto backing = open_block_image(resolved, options);
    return {std::string(backing->format_name()), backing->size()};
  } catch (const ImageError& e) {
    throw ImageError("'" + path + "': cannot use '" + backing_path + "' as its backing file" +
                     (resolved != backing_path ? " (" + resolved + ")" : "") + ": " + e.what());
  }
}

}  // namespace

void create_qcow2_image(const std::string& path, u64 size, const std::string& backing_path,
                        ImageFormat backing_format) {
  Qcow2Header header;
  header.version = 3;
  header.cluster_bits = kNewImageClusterBits;
  header.refcount_order = kNewImageRefcountOrder;
  if (!backing_path.empty()) {
    auto [format, backing_size] = check_backing_file(path, backing_path, backing_format);
    header.backing_file = backing_path;
    header.backing_format = format;
    if (size == 0) size = backing_size;
  }
  if (size == 0) throw ImageError("'" + path + "': a new disk image needs a size");
  if (size % 512 != 0) {
    throw ImageError("'" + path +
                     "': the size of a disk image must be a multiple of 512 bytes, not " +
                     std::to_string(size));
  }
  const u64 cluster = header.cluster_size();
  const u64 l1_entries = div_round_up(size, cluster * (cluster / 8));
  if (l1_entries * 8 > kMaxL1TableBytes) {
    throw ImageError("'" + path + "': " + std::to_string(size) +
                     " bytes is too large for a qcow2 image with 64 KiB clusters");
  }
  const u64 l1_clusters = div_round_up(l1_entries * 8, cluster);
  header.size = size;
  header.refcount_table_offset = 1 * cluster;
  header.refcount_table_clusters = 1;
  header.l1_table_offset = 3 * cluster;
  header.l1_size = static_cast<u32>(l1_entries);
  const u64 total_clusters = 3 + l1_clusters;

  std::vector<u8> refcount_table(cluster, 0);
  store_be64(refcount_table.data(), 2 * cluster);
  std::vector<u8> refcount_block(cluster, 0);
  for (u64 c = 0; c < total_clusters; ++c) refcount_block[c * 2 + 1] = 1;  // 16-bit big-endian 1

  ImageFile file(path, OpenMode::kCreate);
  try {
    file.write_all(0, encode_qcow2_header(header), "qcow2 header");
    file.write_all(header.refcount_table_offset, refcount_table, "refcount table");
    file.write_all(2 * cluster, refcount_block, "refcount block");
    file.truncate(total_clusters * cluster);  // the L1 table: zeros
    file.sync();
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
}

}  // namespace dvmm::devices
