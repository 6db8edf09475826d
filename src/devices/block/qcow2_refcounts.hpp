// The reference counts of a writable qcow2 image's host clusters, and where new clusters go.
//
// Allocation is append-only: new clusters are reserved at the end of the file (past the end
// of the file and of everything the refcounts say is in use), and clusters whose refcount
// drops to 0 are not reused; they stay free holes that `qemu-img check` accepts. Refcount
// blocks are allocated the same way when a cluster lands in a range no block covers yet, and
// the refcount table is moved to a larger copy when the file outgrows it.
//
// Ordering: a new refcount block is written (with its own refcount) before the table entry
// that points at it; a new refcount table is written and synced before the header points at
// it, and the old table is freed afterwards. Refcount entries are written through at once
// (the cache below holds only clean copies).
//
// Refcount widths: every refcount_order of the specification (1 to 64 bits).
//
// Threads: one thread at a time (the owning Qcow2Image's).
#pragma once

#include <span>
#include <unordered_map>
#include <vector>

#include "base/types.hpp"
#include "devices/block/image_file.hpp"
#include "devices/block/qcow2_header.hpp"

namespace dvmm::devices {

class Qcow2Refcounts {
 public:
  // Loads the refcount table and finds the end of the allocated clusters. Throws ImageError.
  Qcow2Refcounts(ImageFile& file, const Qcow2Header& header);

  // Reserves `count` contiguous clusters at the end of the image and returns the offset of the
  // first. Their refcounts are still 0: the caller writes their contents, then add()s.
  u64 reserve(u64 count);
  // Adds `delta` to the refcount of the host cluster at `host_offset` (any offset inside it).
  // Throws ImageError on an underflow or overflow (a corrupt image) or an I/O error.
  void add(u64 host_offset, int delta);

 private:
  [[noreturn]] void corrupt(const std::string& why) const;
  u64 get_entry(std::span<const u8> block, u64 index) const;
  void set_entry(std::span<u8> block, u64 index, u64 value) const;
  // The byte range [first, first + count) of a block that holds entry `index`.
  std::pair<u64, u64> entry_bytes(u64 index) const;
  std::vector<u8>& load_block(u64 block_offset);
  void allocate_block(u64 table_index);
  void grow_table(u64 needed_index);
  void write_table_entry(u64 table_index);
  void find_end_of_allocations();

  ImageFile& file_;
  const u32 cluster_bits_;
  const u64 cluster_size_;
  const u32 refcount_bits_;
  const u64 entries_per_block_;
  u64 table_offset_;
  std::vector<u64> table_;                           // host-endian refcount table entries
  u64 end_ = 0;                                      // where the next cluster is reserved
  std::unordered_map<u64, std::vector<u8>> blocks_;  // clean copies of refcount blocks
  std::size_t max_cached_blocks_;
};

}  // namespace dvmm::devices
