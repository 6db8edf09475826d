#include "devices/block/qcow2_header.hpp"

#include <algorithm>

#include "devices/block/block_image.hpp"
#include "devices/block/qcow2_format.hpp"

namespace dvmm::devices {

using namespace qcow2;

namespace {

constexpr u64 kKnownIncompatibleFeatures = kIncompatDirty | kIncompatCorrupt |
                                           kIncompatExternalDataFile | kIncompatCompressionType |
                                           kIncompatExtendedL2;
constexpr u64 kFeatureNameEntrySize = 48;

class HeaderReader {
 public:
  explicit HeaderReader(const ImageFile& file) : file_(file) {}

  Qcow2Header read() {
    if (file_.size() < kV2HeaderLength) {
      fail("the file is too short (" + std::to_string(file_.size()) + " bytes) for a qcow2 header");
    }
    std::vector<u8> fixed(kV2HeaderLength);
    file_.read_exact(0, fixed, "qcow2 header");
    if (!std::equal(std::begin(kMagic), std::end(kMagic), fixed.begin())) {
      fail("not a qcow2 image (bad magic)");
    }
    h_.version = load_be32(&fixed[kOffVersion]);
    if (h_.version != 2 && h_.version != 3) {
      fail("qcow2 version " + std::to_string(h_.version) +
           " is not supported (dvmm reads versions 2 and 3)");
    }
    h_.cluster_bits = load_be32(&fixed[kOffClusterBits]);
    if (h_.cluster_bits < kMinClusterBits || h_.cluster_bits > kMaxClusterBits) {
      fail("cluster_bits " + std::to_string(h_.cluster_bits) +
           " is outside the supported cluster sizes 512 B to 2 MiB");
    }
    read_fixed_fields(fixed);
    if (h_.version >= 3) read_v3_fields();
    check_features();
    check_geometry();
    const std::vector<u8> first_cluster = read_first_cluster();
    read_backing_file_name(first_cluster);
    read_extensions(first_cluster);
    return h_;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw ImageError("'" + file_.path() + "': " + why);
  }
  [[noreturn]] void corrupt(const std::string& why) const { fail("corrupt qcow2 image: " + why); }

  void read_fixed_fields(const std::vector<u8>& b) {
    h_.backing_file_offset = load_be64(&b[kOffBackingFileOffset]);
    h_.backing_file_size = load_be32(&b[kOffBackingFileSize]);
    h_.size = load_be64(&b[kOffSize]);
    h_.crypt_method = load_be32(&b[kOffCryptMethod]);
    h_.l1_size = load_be32(&b[kOffL1Size]);
    h_.l1_table_offset = load_be64(&b[kOffL1TableOffset]);
    h_.refcount_table_offset = load_be64(&b[kOffRefcountTableOffset]);
    h_.refcount_table_clusters = load_be32(&b[kOffRefcountTableClusters]);
    h_.nb_snapshots = load_be32(&b[kOffNbSnapshots]);
    h_.snapshots_offset = load_be64(&b[kOffSnapshotsOffset]);
    h_.incompatible_features = 0;
    h_.compatible_features = 0;
    h_.autoclear_features = 0;
    h_.refcount_order = 4;
    h_.header_length = kV2HeaderLength;
    h_.compression_type = 0;
  }

  void read_v3_fields() {
    std::vector<u8> b(kV3HeaderLength);
    file_.read_exact(0, b, "qcow2 header");
    h_.incompatible_features = load_be64(&b[kOffIncompatibleFeatures]);
    h_.compatible_features = load_be64(&b[kOffCompatibleFeatures]);
    h_.autoclear_features = load_be64(&b[kOffAutoclearFeatures]);
    h_.refcount_order = load_be32(&b[kOffRefcountOrder]);
    h_.header_length = load_be32(&b[kOffHeaderLength]);
    if (h_.header_length < kV3HeaderLength || h_.header_length % 8 != 0 ||
        h_.header_length > h_.cluster_size()) {
      corrupt("header_length " + std::to_string(h_.header_length) +
              " (must be a multiple of 8 from 104 to the cluster size)");
    }
    if (h_.header_length > kOffCompressionType) {
      u8 type = 0;
      file_.read_exact(kOffCompressionType, std::span<u8>(&type, 1), "qcow2 header");
      h_.compression_type = type;
    }
    if (h_.refcount_order > 6) {
      corrupt("refcount_order " + std::to_string(h_.refcount_order) + " (at most 6)");
    }
  }

  void check_features() const {
    if (h_.crypt_method != 0) {
      fail(std::string("the image is encrypted (") +
           (h_.crypt_method == 1   ? "AES"
            : h_.crypt_method == 2 ? "LUKS"
                                   : "method " + std::to_string(h_.crypt_method)) +
           "); dvmm does not support encrypted qcow2 images (decrypt it with qemu-img convert)");
    }
    const u64 unknown = h_.incompatible_features & ~kKnownIncompatibleFeatures;
    if (unknown != 0) {
      fail("the image uses incompatible qcow2 features dvmm does not know: " +
           h_.describe_features(0, unknown));
    }
    if (h_.incompatible_features & kIncompatExternalDataFile) {
      fail("the image keeps its data in an external data file, which dvmm does not support");
    }
    if (h_.incompatible_features & kIncompatExtendedL2) {
      fail("the image uses extended L2 entries (subclusters), which dvmm does not support");
    }
    if ((h_.incompatible_features & kIncompatCompressionType) || h_.compression_type != 0) {
      fail(std::string("the image compresses clusters with ") +
           (h_.compression_type == 1 ? "zstd"
                                     : "compression type " + std::to_string(h_.compression_type)) +
           "; dvmm reads only zlib-compressed qcow2 images");
    }
  }

  void check_geometry() const {
    const u64 cluster = h_.cluster_size();
    if (h_.size % 512 != 0) {
      fail("the virtual size (" + std::to_string(h_.size) +
           " bytes) is not a multiple of 512 bytes");
    }
    const u64 l2_entries = cluster / 8;
    const u64 bytes_per_l1_entry = cluster * l2_entries;
    const u64 l1_needed = div_round_up(h_.size, bytes_per_l1_entry);
    if (h_.l1_size < l1_needed) {
      corrupt("the L1 table has " + std::to_string(h_.l1_size) + " entries, fewer than the " +
              std::to_string(l1_needed) + " the virtual size needs");
    }
    if (u64{h_.l1_size} * 8 > kMaxL1TableBytes) {
      fail("the L1 table (" + std::to_string(h_.l1_size) + " entries) is larger than 32 MiB");
    }
    check_table("L1 table", h_.l1_table_offset, u64{h_.l1_size} * 8);
    if (h_.refcount_table_clusters == 0) corrupt("the refcount table has no clusters");
    const u64 refcount_table_bytes = u64{h_.refcount_table_clusters} * cluster;
    if (refcount_table_bytes > kMaxRefcountTableBytes) {
      fail("the refcount table (" + std::to_string(refcount_table_bytes) +
           " bytes) is larger than 8 MiB");
    }
    check_table("refcount table", h_.refcount_table_offset, refcount_table_bytes);
  }

  void check_table(const std::string& what, u64 offset, u64 bytes) const {
    if (offset % h_.cluster_size() != 0) {
      corrupt("the " + what + " offset " + std::to_string(offset) + " is not aligned to a cluster");
    }
    if (bytes > 0 && (offset == 0 || offset > file_.size() || bytes > file_.size() - offset)) {
      corrupt("the " + what + " [" + std::to_string(offset) + ", " +
              std::to_string(offset + bytes) + ") lies outside the file (" +
              std::to_string(file_.size()) + " bytes): truncated image?");
    }
  }

  std::vector<u8> read_first_cluster() const {
    std::vector<u8> b(h_.cluster_size());
    file_.read_zero_filled(0, b);
    return b;
  }

  void read_backing_file_name(const std::vector<u8>& first_cluster) {
    if (h_.backing_file_offset == 0) return;
    if (h_.backing_file_size > kMaxBackingFileNameLength) {
      corrupt("the backing file name is " + std::to_string(h_.backing_file_size) +
              " bytes long (at most 1023)");
    }
    if (h_.backing_file_offset > first_cluster.size() ||
        h_.backing_file_size > first_cluster.size() - h_.backing_file_offset) {
      corrupt("the backing file name lies outside the first cluster");
    }
    h_.backing_file.assign(
        reinterpret_cast<const char*>(first_cluster.data() + h_.backing_file_offset),
        h_.backing_file_size);
    if (h_.backing_file.empty()) corrupt("the backing file name is empty");
  }

  void read_extensions(const std::vector<u8>& first_cluster) {
    u64 offset = h_.header_length;
    const u64 end = h_.backing_file_offset != 0
                        ? std::min<u64>(h_.backing_file_offset, first_cluster.size())
                        : first_cluster.size();
    while (offset + 8 <= end) {
      const u32 type = load_be32(&first_cluster[offset]);
      const u32 length = load_be32(&first_cluster[offset + 4]);
      if (type == kExtEnd) return;
      const u64 data = offset + 8;
      if (length > end - data) {
        corrupt("header extension 0x" + hex(type) + " (" + std::to_string(length) +
                " bytes) runs past the header area");
      }
      const char* text = reinterpret_cast<const char*>(&first_cluster[data]);
      if (type == kExtBackingFormat) {
        h_.backing_format.assign(text, length);
      } else if (type == kExtFeatureNameTable) {
        for (u64 e = 0; e + kFeatureNameEntrySize <= length; e += kFeatureNameEntrySize) {
          const char* name = text + e + 2;
          h_.feature_names.push_back({first_cluster[data + e], first_cluster[data + e + 1],
                                      std::string(name, strnlen(name, kFeatureNameEntrySize - 2))});
        }
      }  // else unknown or unused here: skipped, as the specification allows
      offset = data + round_up(length, 8);
    }
  }

  static std::string hex(u32 v) {
    static const char* digits = "0123456789abcdef";
    std::string s(8, '0');
    for (int i = 7; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = digits[v & 0xf];
    return s;
  }

  const ImageFile& file_;
  Qcow2Header h_;
};

}  // namespace

std::string Qcow2Header::describe_features(u8 type, u64 bits) const {
  std::string out;
  for (u8 bit = 0; bit < 64; ++bit) {
    if (!(bits & (u64{1} << bit))) continue;
    out += out.empty() ? "" : ", ";
    out += "bit " + std::to_string(bit);
    for (const FeatureName& f : feature_names) {
      if (f.type == type && f.bit == bit && !f.name.empty()) out += " (" + f.name + ")";
    }
  }
  return out;
}

Qcow2Header read_qcow2_header(const ImageFile& file) {
  return HeaderReader(file).read();
}

std::vector<u8> encode_qcow2_header(const Qcow2Header& h) {
  std::vector<u8> b(h.cluster_size(), 0);
  std::copy(std::begin(kMagic), std::end(kMagic), b.begin());
  store_be32(&b[kOffVersion], 3);
  store_be32(&b[kOffClusterBits], h.cluster_bits);
  store_be64(&b[kOffSize], h.size);
  store_be32(&b[kOffCryptMethod], 0);
  store_be32(&b[kOffL1Size], h.l1_size);
  store_be64(&b[kOffL1TableOffset], h.l1_table_offset);
  store_be64(&b[kOffRefcountTableOffset], h.refcount_table_offset);
  store_be32(&b[kOffRefcountTableClusters], h.refcount_table_clusters);
  store_be32(&b[kOffNbSnapshots], 0);
  store_be64(&b[kOffSnapshotsOffset], 0);
  store_be64(&b[kOffIncompatibleFeatures], h.incompatible_features);
  store_be64(&b[kOffCompatibleFeatures], h.compatible_features);
  store_be64(&b[kOffAutoclearFeatures], h.autoclear_features);
  store_be32(&b[kOffRefcountOrder], h.refcount_order);
  store_be32(&b[kOffHeaderLength], kV3HeaderLength);

  u64 offset = kV3HeaderLength;
  auto add_extension = [&](u32 type, const std::string& data) {
    store_be32(&b[offset], type);
    store_be32(&b[offset + 4], static_cast<u32>(data.size()));
    std::copy(data.begin(), data.end(), b.begin() + static_cast<std::ptrdiff_t>(offset + 8));
    offset += 8 + round_up(data.size(), 8);
  };
  if (!h.backing_format.empty()) add_extension(kExtBackingFormat, h.backing_format);
  offset += 8;  // the end-of-extensions marker: type 0, length 0
  if (!h.backing_file.empty()) {
    std::copy(h.backing_file.begin(), h.backing_file.end(),
              b.begin() + static_cast<std::ptrdiff_t>(offset));
    store_be64(&b[kOffBackingFileOffset], offset);
    store_be32(&b[kOffBackingFileSize], static_cast<u32>(h.backing_file.size()));
  }
  return b;
}

}  // namespace dvmm::devices
