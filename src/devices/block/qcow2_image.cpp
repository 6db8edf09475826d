#include "devices/block/qcow2_image.hpp"

#include <zlib.h>

#include <algorithm>

#include "devices/block/qcow2_format.hpp"

namespace dvmm::devices {

using namespace qcow2;

namespace {

constexpr u64 kL2CacheBytes = u64{32} << 20;

std::optional<ImageFormat> backing_format_from_extension(const std::string& name) {
  if (name.empty()) return ImageFormat::kAuto;
  return parse_image_format(name);
}

}  // namespace

std::string resolve_backing_path(const std::string& image_path, const std::string& backing_name) {
  if (backing_name.empty() || backing_name.front() == '/') return backing_name;
  const auto slash = image_path.rfind('/');
  if (slash == std::string::npos) return backing_name;
  return image_path.substr(0, slash + 1) + backing_name;
}

Qcow2Image::Qcow2Image(const std::string& path, const ImageOptions& options, unsigned chain_depth)
    : file_(path, options.read_only ? OpenMode::kReadOnly : OpenMode::kReadWrite,
            !options.force_share),
      header_(read_qcow2_header(file_)),
      cluster_bits_(header_.cluster_bits),
      cluster_size_(header_.cluster_size()),
      l2_entries_(header_.cluster_size() / 8),
      max_cached_l2_tables_(std::max<std::size_t>(16, kL2CacheBytes / header_.cluster_size())) {
  if (!options.read_only) check_writable();
  load_l1_table();
  open_backing(options, chain_depth);
  if (!options.read_only) {
    refcounts_.emplace(file_, header_);
    clear_autoclear_features();
    cow_buffer_.resize(cluster_size_);
  }
}

Qcow2Image::~Qcow2Image() = default;

void Qcow2Image::corrupt(const std::string& why) const {
  throw ImageError("'" + path() + "': corrupt qcow2 image: " + why +
                   " (qemu-img check -r all may repair it)");
}

void Qcow2Image::check_writable() const {
  const std::string file = "'" + path() + "'";
  const std::string way_out = "; use it read-only (readonly=on)";
  if (header_.incompatible_features & kIncompatCorrupt) {
    throw ImageError(file + " is marked corrupt (by QEMU); repair it with 'qemu-img check -r all'" +
                     way_out);
  }
  if (header_.incompatible_features & kIncompatDirty) {
    throw ImageError(file +
                     " was not closed cleanly by the program that last wrote it (its dirty bit "
                     "is set), so its refcounts may be wrong; repair it with 'qemu-img check -r "
                     "all'" +
                     way_out);
  }
  if (header_.nb_snapshots != 0) {
    throw ImageError(file + " has " + std::to_string(header_.nb_snapshots) +
                     " internal snapshot(s), and dvmm writes only to qcow2 images without any "
                     "(delete them with 'qemu-img snapshot -d'" +
                     way_out + ")");
  }
}

void Qcow2Image::load_l1_table() {
  std::vector<u8> raw(u64{header_.l1_size} * 8);
  file_.read_exact(header_.l1_table_offset, raw, "L1 table");
  l1_.resize(header_.l1_size);
  for (u64 i = 0; i < l1_.size(); ++i) {
    l1_[i] = load_be64(&raw[i * 8]);
    if ((l1_[i] & kOffsetMask) % cluster_size_ != 0) {
      corrupt("L1 entry " + std::to_string(i) + " points at an L2 table not aligned to a cluster");
    }
  }
}

void Qcow2Image::open_backing(const ImageOptions& options, unsigned chain_depth) {
  if (header_.backing_file.empty()) return;
  const std::string resolved = resolve_backing_path(path(), header_.backing_file);
  const std::string which = "its backing file '" + header_.backing_file + "'" +
                            (resolved != header_.backing_file ? " (" + resolved + ")" : "");
  const std::optional<ImageFormat> format = backing_format_from_extension(header_.backing_format);
  if (!format) {
    throw ImageError("'" + path() + "': " + which + " has format '" + header_.backing_format +
                     "', which dvmm cannot read (only raw and qcow2)");
  }
  ImageOptions backing_options;
  backing_options.format = *format;
  backing_options.read_only = true;
  backing_options.force_share = options.force_share;
  try {
    backing_ = open_block_image_in_chain(resolved, backing_options, chain_depth + 1);
  } catch (const ImageError& e) {
    throw ImageError("'" + path() + "': cannot open " + which + ": " + e.what());
  }
}

void Qcow2Image::clear_autoclear_features() {
  if (header_.version < 3 || header_.autoclear_features == 0) return;
  u8 zero[8] = {};
  file_.write_all(kOffAutoclearFeatures, zero, "qcow2 header");
  header_.autoclear_features = 0;
}

void Qcow2Image::check_range(u64 offset, u64 length) const {
  if (offset > size() || length > size() - offset) {
    throw ImageError("'" + path() + "': access to bytes [" + std::to_string(offset) + ", " +
                     std::to_string(offset + length) + ") beyond the end of the disk (" +
                     std::to_string(size()) + " bytes)");
  }
}

std::vector<u64>& Qcow2Image::load_l2_table(u64 l2_offset) {
  if (auto it = l2_cache_.find(l2_offset); it != l2_cache_.end()) return it->second;
  if (l2_offset + cluster_size_ > file_.size()) {
    corrupt("an L2 table at " + std::to_string(l2_offset) + " lies past the end of the file");
  }
  std::vector<u8> raw(cluster_size_);
  file_.read_exact(l2_offset, raw, "L2 table");
  std::vector<u64> table(l2_entries_);
  for (u64 i = 0; i < l2_entries_; ++i) table[i] = load_be64(&raw[i * 8]);
  if (l2_cache_.size() >= max_cached_l2_tables_) l2_cache_.clear();
  return l2_cache_.emplace(l2_offset, std::move(table)).first->second;
}

u64 Qcow2Image::l2_entry(u64 guest_cluster) {
  const u64 l2_offset = l1_[guest_cluster / l2_entries_] & kOffsetMask;
  if (l2_offset == 0) return 0;
  const u64 entry = load_l2_table(l2_offset)[guest_cluster % l2_entries_];
  if (!(entry & kFlagCompressed) && (entry & kOffsetMask) % cluster_size_ != 0) {
    corrupt("the L2 entry of guest offset " + std::to_string(guest_cluster << cluster_bits_) +
            " points at a host cluster not aligned to a cluster");
  }
  return entry;
}

void Qcow2Image::read(u64 offset, std::span<u8> out) {
  check_range(offset, out.size());
  while (!out.empty()) {
    const u64 in_cluster = offset & (cluster_size_ - 1);
    const std::size_t n =
        static_cast<std::size_t>(std::min<u64>(out.size(), cluster_size_ - in_cluster));
    read_in_cluster(offset, out.first(n));
    offset += n;
    out = out.subspan(n);
  }
}

void Qcow2Image::read_in_cluster(u64 guest_offset, std::span<u8> out) {
  const u64 entry = l2_entry(guest_offset >> cluster_bits_);
  const u64 in_cluster = guest_offset & (cluster_size_ - 1);
  if (entry & kFlagCompressed) {
    const std::vector<u8>& cluster = decompress_cluster(entry);
    std::copy_n(cluster.begin() + static_cast<std::ptrdiff_t>(in_cluster), out.size(), out.begin());
  } else if (entry & kFlagZero) {
    std::fill(out.begin(), out.end(), u8{0});
  } else if (const u64 host = entry & kOffsetMask; host != 0) {
    file_.read_zero_filled(host + in_cluster, out);
  } else {
    read_from_backing(guest_offset, out);
  }
}

void Qcow2Image::read_from_backing(u64 guest_offset, std::span<u8> out) {
  std::size_t covered = 0;
  if (backing_ && guest_offset < backing_->size()) {
    covered = static_cast<std::size_t>(std::min<u64>(out.size(), backing_->size() - guest_offset));
    backing_->read(guest_offset, out.first(covered));
  }
  std::fill(out.begin() + static_cast<std::ptrdiff_t>(covered), out.end(), u8{0});
}

// A compressed cluster descriptor: the host offset in the low x = 62 - (cluster_bits - 8)
// bits, then the number of additional 512-byte sectors of compressed data.
const std::vector<u8>& Qcow2Image::decompress_cluster(u64 entry) {
  if (entry == decompressed_entry_ && !decompressed_.empty()) return decompressed_;
  const unsigned sectors_shift = 62 - (cluster_bits_ - 8);
  const u64 host = entry & ((u64{1} << sectors_shift) - 1);
  const u64 sectors = ((entry >> sectors_shift) & ((u64{1} << (cluster_bits_ - 8)) - 1)) + 1;
  std::vector<u8> compressed(sectors * 512 - (host & 511));
  file_.read_zero_filled(host, compressed);

  decompressed_.resize(cluster_size_);
  decompressed_entry_ = 0;
  z_stream stream{};
  if (inflateInit2(&stream, -15) != Z_OK) throw ImageError("zlib: cannot initialize inflate");
  stream.next_in = compressed.data();
  stream.avail_in = static_cast<uInt>(compressed.size());
  stream.next_out = decompressed_.data();
  stream.avail_out = static_cast<uInt>(decompressed_.size());
  const int result = inflate(&stream, Z_FINISH);
  const bool complete = (result == Z_STREAM_END || result == Z_BUF_ERROR) && stream.avail_out == 0;
  inflateEnd(&stream);
  if (!complete) {
    corrupt("the compressed cluster at host offset " + std::to_string(host) +
            " does not decompress");
  }
  decompressed_entry_ = entry;
  return decompressed_;
}

void Qcow2Image::write(u64 offset, std::span<const u8> data) {
  if (read_only()) throw ImageError("'" + path() + "' is open read-only");
  check_range(offset, data.size());
  while (!data.empty()) {
    const u64 in_cluster = offset & (cluster_size_ - 1);
    const std::size_t n =
        static_cast<std::size_t>(std::min<u64>(data.size(), cluster_size_ - in_cluster));
    write_in_cluster(offset, data.first(n));
    offset += n;
    data = data.subspan(n);
  }
}

void Qcow2Image::write_in_cluster(u64 guest_offset, std::span<const u8> data) {
  const u64 guest_cluster = guest_offset >> cluster_bits_;
  const u64 in_cluster = guest_offset & (cluster_size_ - 1);
  const u64 entry = l2_entry(guest_cluster);
  const u64 host = entry & kOffsetMask;
  const bool compressed = entry & kFlagCompressed;
  const bool owned = !compressed && host != 0 && (entry & kFlagCopied);
  if (owned && !(entry & kFlagZero)) {
    file_.write_all(host + in_cluster, data, "data");
    return;
  }
  // Copy on write: the whole cluster as the guest sees it now (from the backing file, zeros,
  // a compressed or a shared cluster) with the new data over it, into a cluster of our own.
  if (data.size() < cluster_size_) read_in_cluster(guest_cluster << cluster_bits_, cow_buffer_);
  std::copy(data.begin(), data.end(),
            cow_buffer_.begin() + static_cast<std::ptrdiff_t>(in_cluster));
  // A zero cluster that owns a preallocated host cluster keeps it.
  const u64 target = owned ? host : refcounts_->reserve(1);
  file_.write_all(target, cow_buffer_, "data cluster");
  if (!owned) refcounts_->add(target, +1);
  set_l2_entry(guest_cluster, target | kFlagCopied);
  if (!owned) release_cluster(entry);
  if (compressed && entry == decompressed_entry_) decompressed_.clear();
}

// The L2 entry goes to the file before the L1 entry: a new L2 table is written whole (holding
// just this entry) and counted, then linked from the L1 table.
void Qcow2Image::set_l2_entry(u64 guest_cluster, u64 entry) {
  const u64 l1_index = guest_cluster / l2_entries_;
  const u64 l2_index = guest_cluster % l2_entries_;
  const u64 l2_offset = l1_[l1_index] & kOffsetMask;
  if (l2_offset != 0) {
    std::vector<u64>& table = load_l2_table(l2_offset);
    u8 raw[8];
    store_be64(raw, entry);
    file_.write_all(l2_offset + l2_index * 8, raw, "L2 table entry");
    table[l2_index] = entry;
    return;
  }
  std::vector<u64> table(l2_entries_, 0);
  table[l2_index] = entry;
  std::vector<u8> raw(cluster_size_, 0);
  store_be64(&raw[l2_index * 8], entry);
  const u64 new_offset = refcounts_->reserve(1);
  file_.write_all(new_offset, raw, "L2 table");
  refcounts_->add(new_offset, +1);
  const u64 l1_entry = new_offset | kFlagCopied;
  u8 raw_l1[8];
  store_be64(raw_l1, l1_entry);
  file_.write_all(header_.l1_table_offset + l1_index * 8, raw_l1, "L1 table entry");
  l1_[l1_index] = l1_entry;
  if (l2_cache_.size() >= max_cached_l2_tables_) l2_cache_.clear();
  l2_cache_[new_offset] = std::move(table);
}

void Qcow2Image::release_cluster(u64 old_entry) {
  if (old_entry & kFlagCompressed) {
    // Every host cluster the compressed data touches holds one reference for it.
    const unsigned sectors_shift = 62 - (cluster_bits_ - 8);
    const u64 start = old_entry & ((u64{1} << sectors_shift) - 1) & ~u64{511};
    const u64 sectors = ((old_entry >> sectors_shift) & ((u64{1} << (cluster_bits_ - 8)) - 1)) + 1;
    const u64 last = start + sectors * 512 - 1;
    for (u64 c = start >> cluster_bits_; c <= last >> cluster_bits_; ++c) {
      refcounts_->add(c << cluster_bits_, -1);
    }
  } else if (const u64 host = old_entry & kOffsetMask; host != 0) {
    refcounts_->add(host, -1);
  }
}

void Qcow2Image::flush() {
  if (!read_only()) file_.sync();
}

}  // namespace dvmm::devices
