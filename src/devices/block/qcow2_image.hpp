// A qcow2 disk image (versions 2 and 3, QEMU's docs/interop/qcow2.txt): guest clusters mapped
// through the L1 and L2 tables onto host clusters of the file; unallocated clusters read from
// the backing image (raw or qcow2, opened read-only, recursively) or as zeros.
//
// Reads: standard clusters, zero clusters (v3 flag), zlib-compressed clusters, the backing
// chain. Writes: in place into clusters this image owns alone (L2 flag "copied"); anything
// else (unallocated, zero, compressed or shared clusters) is copied on write into a whole new
// cluster at the end of the file, with a new L2 table when the range has none. The steps go
// to the file in the order data cluster, its refcount, L2 entry, L1 entry, and the old
// cluster's refcount is dropped last, so an interrupted write leaves at worst a leaked
// cluster. There are no barriers between the steps: after a crash of the host (not of dvmm,
// whose writes the kernel already has) only what the guest flushed is certain, and the
// metadata may need `qemu-img check -r all`.
//
// The dirty bit is not used: dvmm never sets it (refcounts are written through, not cached),
// and it refuses to write an image that has it set (another program's crash left its
// refcounts unreliable) or the corrupt bit, or internal snapshots (shared clusters would need
// reference-counted copy-on-write of L2 tables). Such images open read-only. Unknown autoclear
// features are cleared on a writable open, as the specification requires. Not supported at
// all: encryption, external data files, extended L2 entries (subclusters), compression other
// than zlib, unknown incompatible features; resizing.
//
// Threads: one thread at a time (BlockImage's contract).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "devices/block/block_image.hpp"
#include "devices/block/image_file.hpp"
#include "devices/block/qcow2_header.hpp"
#include "devices/block/qcow2_refcounts.hpp"

namespace dvmm::devices {

class Qcow2Image final : public BlockImage {
 public:
  // Opens the image and its backing chain. `chain_depth` is the number of images above this
  // one in a backing chain (0 for the image a VM uses). Throws ImageError.
  Qcow2Image(const std::string& path, const ImageOptions& options, unsigned chain_depth = 0);
  ~Qcow2Image() override;

  std::string_view format_name() const override { return "qcow2"; }
  const std::string& path() const override { return file_.path(); }
  u64 size() const override { return header_.size; }
  bool read_only() const override { return file_.read_only(); }
  void read(u64 offset, std::span<u8> out) override;
  void write(u64 offset, std::span<const u8> data) override;
  void flush() override;
  const BlockImage* backing() const override { return backing_.get(); }

  const Qcow2Header& header() const { return header_; }

 private:
  [[noreturn]] void corrupt(const std::string& why) const;
  void check_writable() const;
  void load_l1_table();
  void open_backing(const ImageOptions& options, unsigned chain_depth);
  void clear_autoclear_features();
  void check_range(u64 offset, u64 length) const;

  // The L2 entry of guest cluster `guest_cluster` (0 when its range has no L2 table).
  u64 l2_entry(u64 guest_cluster);
  std::vector<u64>& load_l2_table(u64 l2_offset);
  void set_l2_entry(u64 guest_cluster, u64 entry);

  // [guest_offset, guest_offset + out.size()) within one guest cluster.
  void read_in_cluster(u64 guest_offset, std::span<u8> out);
  void write_in_cluster(u64 guest_offset, std::span<const u8> data);
  void read_from_backing(u64 guest_offset, std::span<u8> out);
  const std::vector<u8>& decompress_cluster(u64 entry);
  // Drops this image's reference to the host cluster(s) of a replaced L2 entry.
  void release_cluster(u64 old_entry);

  ImageFile file_;
  Qcow2Header header_;
  u32 cluster_bits_;
  u64 cluster_size_;
  u64 l2_entries_;  // per L2 table
  std::vector<u64> l1_;
  std::unordered_map<u64, std::vector<u64>> l2_cache_;  // by table offset; clean copies
  std::size_t max_cached_l2_tables_;
  std::optional<Qcow2Refcounts> refcounts_;  // writable images only
  std::unique_ptr<BlockImage> backing_;
  std::vector<u8> cow_buffer_;  // one cluster
  u64 decompressed_entry_ = 0;  // the L2 entry decompressed_ holds
  std::vector<u8> decompressed_;
};

// The path of a backing file named `backing_name` in the image at `image_path`: absolute
// names as they are, relative ones against the image's folder (as QEMU resolves them).
std::string resolve_backing_path(const std::string& image_path, const std::string& backing_name);

}  // namespace dvmm::devices
