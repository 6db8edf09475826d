#include "devices/block/qcow2_refcounts.hpp"

#include <algorithm>

#include "devices/block/block_image.hpp"
#include "devices/block/qcow2_format.hpp"

namespace dvmm::devices {

using namespace qcow2;

namespace {

constexpr u64 kBlockCacheBytes = u64{8} << 20;

}  // namespace

Qcow2Refcounts::Qcow2Refcounts(ImageFile& file, const Qcow2Header& header)
    : file_(file),
      cluster_bits_(header.cluster_bits),
      cluster_size_(header.cluster_size()),
      refcount_bits_(header.refcount_bits()),
      entries_per_block_(header.cluster_size() * 8 / header.refcount_bits()),
      table_offset_(header.refcount_table_offset),
      max_cached_blocks_(std::max<std::size_t>(16, kBlockCacheBytes / header.cluster_size())) {
  const u64 table_bytes = u64{header.refcount_table_clusters} * cluster_size_;
  std::vector<u8> raw(table_bytes);
  file_.read_exact(table_offset_, raw, "refcount table");
  table_.resize(table_bytes / 8);
  for (u64 i = 0; i < table_.size(); ++i) {
    table_[i] = load_be64(&raw[i * 8]);
    if (table_[i] % cluster_size_ != 0) {
      corrupt("refcount table entry " + std::to_string(i) + " (" + std::to_string(table_[i]) +
              ") is not aligned to a cluster");
    }
    if (table_[i] != 0 && (table_[i] > file_.size() || cluster_size_ > file_.size() - table_[i])) {
      corrupt("refcount table entry " + std::to_string(i) + " points past the end of the file");
    }
  }
  find_end_of_allocations();
}

void Qcow2Refcounts::corrupt(const std::string& why) const {
  throw ImageError("'" + file_.path() + "': corrupt qcow2 image: " + why +
                   " (qemu-img check -r all may repair it)");
}

// The first cluster nothing uses: past the end of the file, the refcount table, every refcount
// block, and the last cluster with a non-zero refcount (which may lie past the end of the file
// when another program reserved clusters it had not written yet).
void Qcow2Refcounts::find_end_of_allocations() {
  end_ = round_up(file_.size(), cluster_size_);
  end_ = std::max(end_, table_offset_ + table_.size() * 8);
  for (const u64 block : table_) end_ = std::max(end_, block + cluster_size_);
  for (u64 t = table_.size(); t-- > 0;) {
    if (table_[t] == 0) continue;
    const std::vector<u8>& block = load_block(table_[t]);
    for (u64 i = entries_per_block_; i-- > 0;) {
      if (get_entry(block, i) != 0) {
        end_ = std::max(end_, (t * entries_per_block_ + i + 1) * cluster_size_);
        return;
      }
    }
  }
}

u64 Qcow2Refcounts::reserve(u64 count) {
  const u64 offset = end_;
  end_ += count * cluster_size_;
  return offset;
}

std::pair<u64, u64> Qcow2Refcounts::entry_bytes(u64 index) const {
  if (refcount_bits_ >= 8) return {index * (refcount_bits_ / 8), refcount_bits_ / 8};
  return {index / (8 / refcount_bits_), 1};
}

u64 Qcow2Refcounts::get_entry(std::span<const u8> block, u64 index) const {
  const auto [first, count] = entry_bytes(index);
  if (refcount_bits_ >= 8) {
    u64 value = 0;
    for (u64 i = 0; i < count; ++i) value = value << 8 | block[first + i];
    return value;
  }
  // Sub-byte entries: entry 0 in the least significant bits of byte 0.
  const unsigned shift = static_cast<unsigned>(index % (8 / refcount_bits_)) * refcount_bits_;
  return (block[first] >> shift) & ((1u << refcount_bits_) - 1);
}

void Qcow2Refcounts::set_entry(std::span<u8> block, u64 index, u64 value) const {
  const auto [first, count] = entry_bytes(index);
  if (refcount_bits_ >= 8) {
    for (u64 i = count; i-- > 0; value >>= 8) block[first + i] = static_cast<u8>(value);
    return;
  }
  const unsigned shift = static_cast<unsigned>(index % (8 / refcount_bits_)) * refcount_bits_;
  const unsigned mask = ((1u << refcount_bits_) - 1) << shift;
  block[first] = static_cast<u8>((block[first] & ~mask) | ((value << shift) & mask));
}

std::vector<u8>& Qcow2Refcounts::load_block(u64 block_offset) {
  if (auto it = blocks_.find(block_offset); it != blocks_.end()) return it->second;
  if (block_offset + cluster_size_ > file_.size()) {
    corrupt("refcount block at " + std::to_string(block_offset) + " lies past the end of the file");
  }
  if (blocks_.size() >= max_cached_blocks_) blocks_.clear();
  std::vector<u8> block(cluster_size_);
  file_.read_exact(block_offset, block, "refcount block");
  return blocks_.emplace(block_offset, std::move(block)).first->second;
}

void Qcow2Refcounts::add(u64 host_offset, int delta) {
  const u64 cluster = host_offset >> cluster_bits_;
  const u64 t = cluster / entries_per_block_;
  if (delta > 0) {
    if (t >= table_.size()) grow_table(t);
    if (table_[t] == 0) allocate_block(t);
  } else if (t >= table_.size() || table_[t] == 0) {
    corrupt("the refcount of the cluster at " + std::to_string(host_offset) +
            " would drop below 0");
  }
  std::vector<u8>& block = load_block(table_[t]);
  const u64 index = cluster % entries_per_block_;
  const u64 old_value = get_entry(block, index);
  const u64 max_value = refcount_bits_ == 64 ? ~u64{0} : (u64{1} << refcount_bits_) - 1;
  if (delta < 0 && old_value < static_cast<u64>(-delta)) {
    corrupt("the refcount of the cluster at " + std::to_string(host_offset) +
            " would drop below 0");
  }
  if (delta > 0 && max_value - old_value < static_cast<u64>(delta)) {
    throw ImageError("'" + file_.path() + "': the refcount of the cluster at " +
                     std::to_string(host_offset) + " would overflow its " +
                     std::to_string(refcount_bits_) + " bits");
  }
  // Update the cached block, write the entry's bytes, and undo the update if the write fails.
  const auto [first, count] = entry_bytes(index);
  const std::span<u8> bytes = std::span<u8>(block).subspan(first, count);
  u8 saved[8];
  std::copy(bytes.begin(), bytes.end(), saved);
  set_entry(block, index, old_value + static_cast<u64>(static_cast<i64>(delta)));
  try {
    file_.write_all(table_[t] + first, bytes, "refcount block entry");
  } catch (...) {
    std::copy_n(saved, count, bytes.begin());
    throw;
  }
}

// A new refcount block for table entry `t`, at the end of the file. When the block falls in its
// own range it counts itself; otherwise its refcount goes into the block covering it (which
// may in turn be new). Then the table entry.
void Qcow2Refcounts::allocate_block(u64 t) {
  const u64 offset = reserve(1);
  const u64 own_cluster = offset >> cluster_bits_;
  const bool counts_itself = own_cluster / entries_per_block_ == t;
  std::vector<u8> block(cluster_size_, 0);
  if (counts_itself) set_entry(block, own_cluster % entries_per_block_, 1);
  file_.write_all(offset, block, "refcount block");
  if (blocks_.size() >= max_cached_blocks_) blocks_.clear();
  blocks_[offset] = std::move(block);
  if (!counts_itself) add(offset, +1);
  table_[t] = offset;
  write_table_entry(t);
}

void Qcow2Refcounts::write_table_entry(u64 t) {
  u8 raw[8];
  store_be64(raw, table_[t]);
  file_.write_all(table_offset_ + t * 8, raw, "refcount table entry");
}

// Moves the refcount table to a larger copy at the end of the file that has entries up to
// `needed_index`. The copy and any refcount blocks it needs for its own clusters are placed
// together, counted, written and synced; then the header points at the copy (one write of
// the two adjacent fields), and the old table's clusters are freed.
void Qcow2Refcounts::grow_table(u64 needed_index) {
  const u64 entries_per_cluster = cluster_size_ / 8;
  u64 new_entries = std::max<u64>(needed_index + 1, table_.size() * 2);
  const u64 first = end_ >> cluster_bits_;  // the new table's first cluster
  u64 table_clusters = 0, new_blocks = 0;
  std::vector<u64> uncovered;  // table indexes that get a new block
  for (;;) {
    new_entries = round_up(new_entries, entries_per_cluster);
    table_clusters = new_entries / entries_per_cluster;
    // The new clusters [first, first + table_clusters + new_blocks) need refcounts; count the
    // blocks that requires until the count stops changing (it only grows).
    new_blocks = 0;
    for (;;) {
      const u64 last = first + table_clusters + new_blocks - 1;
      uncovered.clear();
      for (u64 t = first / entries_per_block_; t <= last / entries_per_block_; ++t) {
        if (t >= table_.size() || table_[t] == 0) uncovered.push_back(t);
      }
      if (uncovered.size() == new_blocks) break;
      new_blocks = uncovered.size();
    }
    const u64 last = first + table_clusters + new_blocks - 1;
    if (last / entries_per_block_ < new_entries) break;
    new_entries *= 2;
  }
  if (new_entries * 8 > kMaxRefcountTableBytes) {
    throw ImageError("'" + file_.path() + "': the image has grown past what a refcount table of " +
                     "8 MiB can describe");
  }

  const u64 table_offset = reserve(table_clusters);
  const u64 blocks_offset = reserve(new_blocks);
  const u64 end_cluster = first + table_clusters + new_blocks;
  std::vector<u64> table = table_;
  table.resize(new_entries, 0);
  for (u64 i = 0; i < new_blocks; ++i) {
    const u64 t = uncovered[i];
    const u64 offset = blocks_offset + i * cluster_size_;
    table[t] = offset;
    std::vector<u8> block(cluster_size_, 0);
    for (u64 c = std::max(first, t * entries_per_block_);
         c < std::min(end_cluster, (t + 1) * entries_per_block_); ++c) {
      set_entry(block, c % entries_per_block_, 1);
    }
    file_.write_all(offset, block, "refcount block");
  }
  // New clusters in ranges that already have a block.
  for (u64 c = first; c < end_cluster; ++c) {
    const u64 t = c / entries_per_block_;
    if (t < table_.size() && table_[t] != 0) add(c << cluster_bits_, +1);
  }
  std::vector<u8> raw(table_clusters * cluster_size_, 0);
  for (u64 t = 0; t < table.size(); ++t) store_be64(&raw[t * 8], table[t]);
  file_.write_all(table_offset, raw, "refcount table");
  file_.sync();

  u8 header_fields[12];
  store_be64(header_fields, table_offset);
  store_be32(header_fields + 8, static_cast<u32>(table_clusters));
  static_assert(kOffRefcountTableClusters == kOffRefcountTableOffset + 8);
  file_.write_all(kOffRefcountTableOffset, header_fields, "qcow2 header");
  file_.sync();

  const u64 old_offset = table_offset_;
  const u64 old_clusters = div_round_up(table_.size() * 8, cluster_size_);
  table_ = std::move(table);
  table_offset_ = table_offset;
  for (u64 i = 0; i < old_clusters; ++i) add(old_offset + i * cluster_size_, -1);
}

}  // namespace dvmm::devices
