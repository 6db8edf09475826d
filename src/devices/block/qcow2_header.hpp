// The qcow2 header (the image's first cluster): parsing with every check that needs no table
// (magic, version, cluster size, features, encryption, table placement), the header
// extensions dvmm reads (backing file format, feature names; unknown ones are skipped), and
// the encoding of a new image's header for create_qcow2_image.
//
// Threads: pure functions over an ImageFile the caller owns.
#pragma once

#include <string>
#include <vector>

#include "base/types.hpp"
#include "devices/block/image_file.hpp"

namespace dvmm::devices {

struct Qcow2Header {
  u32 version = 3;
  u64 backing_file_offset = 0;
  u32 backing_file_size = 0;
  u32 cluster_bits = 16;
  u64 size = 0;  // guest-visible bytes
  u32 crypt_method = 0;
  u32 l1_size = 0;  // entries
  u64 l1_table_offset = 0;
  u64 refcount_table_offset = 0;
  u32 refcount_table_clusters = 0;
  u32 nb_snapshots = 0;
  u64 snapshots_offset = 0;
  u64 incompatible_features = 0;  // version 3 on
  u64 compatible_features = 0;
  u64 autoclear_features = 0;
  u32 refcount_order = 4;  // refcount entries are 1 << refcount_order bits wide
  u32 header_length = 104;
  u8 compression_type = 0;  // 0 zlib

  // From the area after the header.
  std::string backing_file;    // as stored (relative paths are relative to the image's folder)
  std::string backing_format;  // the backing format extension; empty without one
  struct FeatureName {
    u8 type;  // 0 incompatible, 1 compatible, 2 autoclear
    u8 bit;
    std::string name;
  };
  std::vector<FeatureName> feature_names;

  u64 cluster_size() const { return u64{1} << cluster_bits; }
  u32 refcount_bits() const { return u32{1} << refcount_order; }
  // Names the set `bits` of feature type `type`, e.g. "bit 5 (foo), bit 7".
  std::string describe_features(u8 type, u64 bits) const;
};

// Reads and checks the header of the qcow2 image in `file` (see the file comment). Dirty and
// corrupt images pass: whether they may be opened depends on read-only, which the caller
// decides. Throws ImageError naming the file and the problem.
Qcow2Header read_qcow2_header(const ImageFile& file);

// The first cluster of a new version 3 image: the header (header_length 104), the backing
// format extension when `header.backing_format` is set, the end of extensions, and the
// backing file name. backing_file_offset/size are derived from `header.backing_file`.
std::vector<u8> encode_qcow2_header(const Qcow2Header& header);

}  // namespace dvmm::devices
