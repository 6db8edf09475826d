// qcow2 disk images, cross-checked with QEMU's tools: images qemu-img and qemu-io made read
// back right through Qcow2Image; what Qcow2Image writes reads back the same through
// `qemu-img compare` and passes `qemu-img check` (no errors, no leaks); and the errors for
// images dvmm cannot or must not use. Skipped without qemu-img/qemu-io (Debian qemu-utils).
#include "devices/block/qcow2_image.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <random>

#include "devices/block/block_image.hpp"
#include "devices/block/qcow2_format.hpp"
#include "devices/block/raw_image.hpp"
#include "unit/devices/image_test_util.hpp"

namespace dvmm::devices {
namespace {

using test::contains;
using test::error_of;
using test::must_run;
using test::random_bytes;
using test::read_file;
using test::run_command;
using test::TempDir;
using test::write_file;

constexpr u64 KiB = 1024;
constexpr u64 MiB = 1024 * KiB;
constexpr u64 GiB = 1024 * MiB;

ImageOptions writable() {
  return ImageOptions{};
}
ImageOptions read_only() {
  ImageOptions o;
  o.read_only = true;
  return o;
}

std::vector<u8> read_all(BlockImage& image) {
  std::vector<u8> out(image.size());
  image.read(0, out);
  return out;
}

// Data that zlib shrinks, with runs of zeros qemu-img leaves unallocated.
std::vector<u8> compressible_bytes(std::size_t n, u64 seed) {
  std::vector<u8> out = random_bytes(n, seed);
  for (std::size_t i = 0; i < n; ++i)
    out[i] = static_cast<u8>((out[i] & 0x3) + 'a' + (i / 4096) % 20);
  for (std::size_t i = n / 3; i < n / 3 + 200 * KiB && i < n; ++i) out[i] = 0;
  return out;
}

// Random data with holes of zeros, so converted images mix data and unallocated clusters.
std::vector<u8> data_with_holes(std::size_t n, u64 seed) {
  std::vector<u8> out = random_bytes(n, seed);
  std::mt19937_64 rng(seed + 1);
  for (int hole = 0; hole < 8; ++hole) {
    const std::size_t length = rng() % (300 * KiB);
    const std::size_t start = rng() % (n - length);
    std::fill_n(out.begin() + static_cast<std::ptrdiff_t>(start), length, u8{0});
  }
  return out;
}

// Random writes (any byte offset and length up to max_length), applied to the image and to
// the model.
void random_writes(BlockImage& image, std::vector<u8>& model, int count, u64 max_length, u64 seed) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < count; ++i) {
    const u64 length = rng() % max_length + 1;
    const u64 offset = rng() % (model.size() - length + 1);
    const std::vector<u8> data = random_bytes(length, rng());
    image.write(offset, data);
    std::copy(data.begin(), data.end(), model.begin() + static_cast<std::ptrdiff_t>(offset));
  }
}

// qemu-img check: no errors and no leaks (exit status 0).
void expect_clean(const std::string& path) {
  const test::CommandResult r = run_command("qemu-img check -f qcow2 " + path);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "No errors were found"));
}

// The image reads the same through QEMU as `expected` (a raw file).
void expect_same_as_raw(const std::string& qcow2, const std::string& expected_raw) {
  const test::CommandResult r =
      run_command("qemu-img compare -f qcow2 -F raw " + qcow2 + " " + expected_raw);
  EXPECT_EQ(r.status, 0) << r.output;
}

void patch_file(const std::string& path, u64 offset, const void* bytes, std::size_t n) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(offset)), static_cast<ssize_t>(n));
  ::close(fd);
}
void patch_be32(const std::string& path, u64 offset, u32 value) {
  u8 raw[4];
  qcow2::store_be32(raw, value);
  patch_file(path, offset, raw, 4);
}
void patch_be64(const std::string& path, u64 offset, u64 value) {
  u8 raw[8];
  qcow2::store_be64(raw, value);
  patch_file(path, offset, raw, 8);
}
u64 header_be64(const std::string& path, u64 offset) {
  const std::vector<u8> file = read_file(path);
  return qcow2::load_be64(&file[offset]);
}

class Qcow2Test : public ::testing::Test {
 protected:
  void SetUp() override { DVMM_REQUIRE_QEMU_IMG(); }
  TempDir dir_;
};

// ---- Images QEMU made ----

TEST_F(Qcow2Test, ReadsQemuImgImagesOfEveryClusterSizeAndVersion) {
  const std::vector<u8> data = data_with_holes(5 * MiB + 3 * 512, 10);
  write_file(dir_ / "source.raw", data);
  for (const u64 cluster : {512 * u64{1}, 4 * KiB, 64 * KiB, 2 * MiB}) {
    for (const char* compat : {"0.10", "1.1"}) {
      SCOPED_TRACE(std::to_string(cluster) + " byte clusters, compat " + compat);
      const std::string path = dir_ / ("c" + std::to_string(cluster) + "-" + compat + ".qcow2");
      must_run("qemu-img convert -O qcow2 -o cluster_size=" + std::to_string(cluster) +
               ",compat=" + compat + " " + (dir_ / "source.raw") + " " + path);
      auto image = open_block_image(path, read_only());
      ASSERT_EQ(image->format_name(), "qcow2");
      ASSERT_EQ(image->size(), data.size());
      EXPECT_EQ(dynamic_cast<Qcow2Image&>(*image).header().version,
                std::string(compat) == "1.1" ? 3u : 2u);
      EXPECT_TRUE(read_all(*image) == data);
      // Unaligned pieces.
      std::mt19937_64 rng(cluster);
      for (int i = 0; i < 50; ++i) {
        const u64 length = rng() % std::min<u64>(3 * cluster, data.size()) + 1;
        const u64 offset = rng() % (data.size() - length + 1);
        std::vector<u8> piece(length);
        image->read(offset, piece);
        ASSERT_TRUE(std::equal(piece.begin(), piece.end(),
                               data.begin() + static_cast<std::ptrdiff_t>(offset)));
      }
    }
  }
}

TEST_F(Qcow2Test, ReadsWhatQemuIoWrote) {
  const std::string path = dir_ / "io.qcow2";
  must_run("qemu-img create -f qcow2 " + path + " 4M");
  must_run(
      "qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'write -P 0xcd 100000 5000' "
      "-c 'write -P 0x11 1M 128k' -c 'write -z 1M 64k' -c 'write -z 3M 64k' " +
      path);
  std::vector<u8> expected(4 * MiB, 0);
  std::fill_n(expected.begin(), 64 * KiB, u8{0xab});
  std::fill_n(expected.begin() + 100000, 5000, u8{0xcd});
  std::fill_n(expected.begin() + static_cast<std::ptrdiff_t>(1 * MiB + 64 * KiB), 64 * KiB,
              u8{0x11});
  auto image = open_block_image(path, read_only());
  EXPECT_TRUE(read_all(*image) == expected);
}

TEST_F(Qcow2Test, ReadsCompressedClusters) {
  const std::vector<u8> data = compressible_bytes(3 * MiB, 20);
  write_file(dir_ / "source.raw", data);
  for (const u64 cluster : {4 * KiB, 64 * KiB, 2 * MiB}) {
    SCOPED_TRACE(std::to_string(cluster) + " byte clusters");
    const std::string path = dir_ / ("z" + std::to_string(cluster) + ".qcow2");
    must_run("qemu-img convert -c -O qcow2 -o cluster_size=" + std::to_string(cluster) + " " +
             (dir_ / "source.raw") + " " + path);
    // Compressed indeed: less than half the data, besides five clusters of metadata.
    EXPECT_LT(std::filesystem::file_size(path), data.size() / 2 + 5 * cluster);
    auto image = open_block_image(path, read_only());
    EXPECT_TRUE(read_all(*image) == data);
  }
}

// base.raw <- mid.qcow2 <- sub/top.qcow2 (backing "../mid.qcow2"), each layer written by qemu-io.
TEST_F(Qcow2Test, ReadsABackingChainWithRelativeNames) {
  write_file(dir_ / "base.raw", random_bytes(4 * MiB, 30));
  std::filesystem::create_directory(dir_ / "sub");
  must_run("qemu-img create -f qcow2 -b base.raw -F raw " + (dir_ / "mid.qcow2"));
  must_run("qemu-io -f qcow2 -c 'write -P 0x22 60k 10k' -c 'write -z 2M 64k' " +
           (dir_ / "mid.qcow2"));
  must_run("qemu-img create -f qcow2 -o cluster_size=4k -b ../mid.qcow2 -F qcow2 " +
           (dir_ / "sub/top.qcow2") + " 5M");
  must_run("qemu-io -f qcow2 -c 'write -P 0x33 62k 3k' -c 'write -P 0x44 4095k 2k' " +
           (dir_ / "sub/top.qcow2"));
  must_run("qemu-img convert -O raw " + (dir_ / "sub/top.qcow2") + " " + (dir_ / "expected.raw"));

  auto image = open_block_image(dir_ / "sub/top.qcow2", read_only());
  EXPECT_EQ(image->size(), 5 * MiB);
  EXPECT_TRUE(read_all(*image) == read_file(dir_ / "expected.raw"));
  const BlockImage* mid = image->backing();
  ASSERT_NE(mid, nullptr);
  EXPECT_EQ(mid->format_name(), "qcow2");
  EXPECT_EQ(mid->path(), dir_ / "sub/../mid.qcow2");
  ASSERT_NE(mid->backing(), nullptr);
  EXPECT_EQ(mid->backing()->format_name(), "raw");
  EXPECT_EQ(mid->backing()->backing(), nullptr);
}

// ---- Images dvmm writes ----

TEST_F(Qcow2Test, RandomWritesReadBackThroughQemu) {
  const std::string path = dir_ / "disk.qcow2";
  must_run("qemu-img create -f qcow2 " + path + " 64M");
  std::vector<u8> model(64 * MiB, 0);
  {
    auto image = open_block_image(path, writable());
    random_writes(*image, model, 300, 300 * KiB, 40);
    image->flush();
    EXPECT_TRUE(read_all(*image) == model);
  }
  write_file(dir_ / "model.raw", model);
  expect_same_as_raw(path, dir_ / "model.raw");
  expect_clean(path);
  auto reopened = open_block_image(path, writable());
  EXPECT_TRUE(read_all(*reopened) == model);
  // More writes on the reopened image, into clusters now allocated and new ones.
  random_writes(*reopened, model, 100, 200 * KiB, 41);
  reopened->flush();
  reopened.reset();
  write_file(dir_ / "model.raw", model);
  expect_same_as_raw(path, dir_ / "model.raw");
  expect_clean(path);
}

TEST_F(Qcow2Test, EveryRefcountWidth) {
  for (const int bits : {1, 2, 8, 16, 32, 64}) {
    SCOPED_TRACE(std::to_string(bits) + "-bit refcounts");
    const std::string path = dir_ / ("r" + std::to_string(bits) + ".qcow2");
    must_run("qemu-img create -f qcow2 -o cluster_size=4k,refcount_bits=" + std::to_string(bits) +
             " " + path + " 8M");
    std::vector<u8> model(8 * MiB, 0);
    {
      auto image = open_block_image(path, writable());
      random_writes(*image, model, 100, 100 * KiB, 50 + static_cast<u64>(bits));
      image->flush();
    }
    write_file(dir_ / "model.raw", model);
    expect_same_as_raw(path, dir_ / "model.raw");
    expect_clean(path);
  }
}

TEST_F(Qcow2Test, WritesImagesOfEveryKindQemuImgMakes) {
  for (const char* options :
       {"compat=0.10", "preallocation=metadata", "preallocation=falloc", "preallocation=full",
        "lazy_refcounts=on", "cluster_size=2M", "cluster_size=512,compat=0.10"}) {
    SCOPED_TRACE(options);
    const std::string path = dir_ / "kind.qcow2";
    std::filesystem::remove(path);
    must_run("qemu-img create -f qcow2 -o " + std::string(options) + " " + path + " 8M");
    std::vector<u8> model(8 * MiB, 0);
    {
      auto image = open_block_image(path, writable());
      random_writes(*image, model, 100, 100 * KiB, 55);
      image->flush();
      EXPECT_TRUE(read_all(*image) == model);
    }
    write_file(dir_ / "model.raw", model);
    expect_same_as_raw(path, dir_ / "model.raw");
    expect_clean(path);
  }
}

// 512-byte clusters: one refcount table cluster covers 8 MiB of file, so writing 24 MiB moves
// the table (twice) and allocates many refcount blocks.
TEST_F(Qcow2Test, SmallClustersGrowTheRefcountTable) {
  const std::string path = dir_ / "small.qcow2";
  must_run("qemu-img create -f qcow2 -o cluster_size=512 " + path + " 64M");
  const u64 table_before = header_be64(path, qcow2::kOffRefcountTableOffset);
  std::vector<u8> model(64 * MiB, 0);
  {
    auto image = open_block_image(path, writable());
    const std::vector<u8> data = random_bytes(24 * MiB, 60);
    image->write(10 * MiB, data);
    std::copy(data.begin(), data.end(), model.begin() + 10 * MiB);
    random_writes(*image, model, 100, 64 * KiB, 61);
    image->flush();
    EXPECT_TRUE(read_all(*image) == model);
  }
  EXPECT_NE(header_be64(path, qcow2::kOffRefcountTableOffset), table_before);
  write_file(dir_ / "model.raw", model);
  expect_same_as_raw(path, dir_ / "model.raw");
  expect_clean(path);
}

// A 1 GiB image made by create_qcow2_image, written all over (sector-aligned, as virtio-blk
// does), with the same writes on a sparse raw model.
TEST_F(Qcow2Test, OneGibImageWith64KClusters) {
  const std::string path = dir_ / "big.qcow2";
  create_qcow2_image(path, 1 * GiB);
  create_raw_image(dir_ / "model.raw", 1 * GiB);
  {
    auto image = open_block_image(path, writable());
    auto model = open_block_image(dir_ / "model.raw", writable());
    EXPECT_EQ(image->size(), 1 * GiB);
    std::mt19937_64 rng(70);
    for (int i = 0; i < 300; ++i) {
      const u64 length = (rng() % 512 + 1) * 512;
      const u64 offset = (rng() % ((GiB - length) / 512 + 1)) * 512;
      const std::vector<u8> data = random_bytes(length, rng());
      image->write(offset, data);
      model->write(offset, data);
      std::vector<u8> back(length);
      image->read(offset, back);
      ASSERT_TRUE(back == data);
    }
    image->flush();
  }
  expect_same_as_raw(path, dir_ / "model.raw");
  expect_clean(path);
  EXPECT_TRUE(contains(must_run("qemu-img info " + path), "virtual size: 1 GiB"));
}

TEST_F(Qcow2Test, OverlayCopiesOnWriteFromItsBacking) {
  const std::vector<u8> base_data = data_with_holes(6 * MiB, 80);
  write_file(dir_ / "base.raw", base_data);
  must_run("qemu-img convert -O qcow2 -o cluster_size=4k " + (dir_ / "base.raw") + " " +
           (dir_ / "base.qcow2"));
  const std::string overlay = dir_ / "overlay.qcow2";
  create_qcow2_image(overlay, 0, "base.qcow2");  // relative: next to the overlay
  std::vector<u8> model = base_data;
  {
    auto image = open_block_image(overlay, writable());
    EXPECT_EQ(image->size(), base_data.size());
    ASSERT_NE(image->backing(), nullptr);
    EXPECT_EQ(image->backing()->format_name(), "qcow2");
    EXPECT_TRUE(read_all(*image) == model);
    random_writes(*image, model, 200, 150 * KiB, 81);
    image->flush();
    EXPECT_TRUE(read_all(*image) == model);
  }
  write_file(dir_ / "model.raw", model);
  expect_same_as_raw(overlay, dir_ / "model.raw");
  expect_clean(overlay);
  expect_same_as_raw(dir_ / "base.qcow2", dir_ / "base.raw");  // the backing file is untouched
  const std::string info = must_run("qemu-img info " + overlay);
  EXPECT_TRUE(contains(info, "backing file: base.qcow2"));
  EXPECT_TRUE(contains(info, "backing file format: qcow2"));
}

TEST_F(Qcow2Test, OverlayLargerThanItsBackingReadsZerosPastIt) {
  write_file(dir_ / "base.raw", random_bytes(1 * MiB, 90));
  const std::string overlay = dir_ / "overlay.qcow2";
  create_qcow2_image(overlay, 4 * MiB, dir_ / "base.raw", ImageFormat::kRaw);
  std::vector<u8> model = read_file(dir_ / "base.raw");
  model.resize(4 * MiB, 0);
  {
    auto image = open_block_image(overlay, writable());
    EXPECT_TRUE(read_all(*image) == model);
    const std::vector<u8> data = random_bytes(10000, 91);  // across the end of the backing file
    image->write(1 * MiB - 5000, data);
    std::copy(data.begin(), data.end(),
              model.begin() + static_cast<std::ptrdiff_t>(1 * MiB - 5000));
    EXPECT_TRUE(read_all(*image) == model);
  }
  write_file(dir_ / "model.raw", model);
  expect_same_as_raw(overlay, dir_ / "model.raw");
  expect_clean(overlay);
}

TEST_F(Qcow2Test, RewritesCompressedAndZeroClusters) {
  const std::vector<u8> data = compressible_bytes(2 * MiB, 100);
  write_file(dir_ / "source.raw", data);
  const std::string path = dir_ / "z.qcow2";
  must_run("qemu-img convert -c -O qcow2 -o cluster_size=4k " + (dir_ / "source.raw") + " " + path);
  // Zero clusters with and without a preallocated host cluster.
  must_run(
      "qemu-io -f qcow2 -c 'write -P 0x55 1536k 64k' -c 'write -z 1536k 32k' "
      "-c 'write -z -u 1600k 16k' " +
      path);
  must_run("qemu-img convert -O raw " + path + " " + (dir_ / "before.raw"));
  std::vector<u8> model = read_file(dir_ / "before.raw");
  {
    auto image = open_block_image(path, writable());
    EXPECT_TRUE(read_all(*image) == model);
    // Partial writes into a compressed cluster, a zero cluster with a host cluster, and one
    // without.
    for (const u64 offset : {100 * KiB + 7, 1536 * KiB + 100, 1600 * KiB + 100}) {
      const std::vector<u8> data = random_bytes(1000, offset);
      image->write(offset, data);
      std::copy(data.begin(), data.end(), model.begin() + static_cast<std::ptrdiff_t>(offset));
    }
    random_writes(*image, model, 150, 20 * KiB, 101);
    image->flush();
    EXPECT_TRUE(read_all(*image) == model);
  }
  write_file(dir_ / "model.raw", model);
  expect_same_as_raw(path, dir_ / "model.raw");
  expect_clean(path);
}

TEST_F(Qcow2Test, QemuAndDvmmShareACreatedImage) {
  const std::string path = dir_ / "new.qcow2";
  create_qcow2_image(path, 1 * GiB);
  expect_clean(path);
  const std::string info = must_run("qemu-img info --output=json " + path);
  EXPECT_TRUE(contains(info, "\"virtual-size\": 1073741824"));
  EXPECT_TRUE(contains(info, "\"cluster-size\": 65536"));
  EXPECT_TRUE(contains(info, "\"compat\": \"1.1\""));
  EXPECT_TRUE(contains(info, "\"refcount-bits\": 16"));
  // QEMU writes, dvmm reads and writes, QEMU checks.
  must_run("qemu-io -f qcow2 -c 'write -P 0x5a 1M 64k' " + path);
  {
    auto image = open_block_image(path, writable());
    std::vector<u8> piece(64 * KiB);
    image->read(1 * MiB, piece);
    EXPECT_TRUE(std::all_of(piece.begin(), piece.end(), [](u8 b) { return b == 0x5a; }));
    std::vector<u8> data(4096, 0x77);
    image->write(1 * MiB + 4096, data);
    image->write(900 * MiB, data);
  }
  must_run(
      "qemu-io -f qcow2 -c 'read -P 0x77 1052672 4096' -c 'read -P 0x5a 1M 4k' "
      "-c 'read -P 0x77 900M 4k' -c 'read -P 0 901M 4k' " +
      path);
  expect_clean(path);
}

TEST_F(Qcow2Test, CreateWithBackingRecordsItsFormat) {
  write_file(dir_ / "base.img", random_bytes(2 * MiB, 110));
  create_qcow2_image(dir_ / "overlay.qcow2", 0, "base.img");  // format probed: raw
  const std::string info = must_run("qemu-img info " + (dir_ / "overlay.qcow2"));
  EXPECT_TRUE(contains(info, "backing file: base.img"));
  EXPECT_TRUE(contains(info, "backing file format: raw"));
  EXPECT_TRUE(contains(info, "virtual size: 2 MiB"));
  EXPECT_TRUE(contains(error_of([&] { create_qcow2_image(dir_ / "overlay.qcow2", 1 * MiB); }),
                       "already exists"));
  EXPECT_TRUE(contains(error_of([&] { create_qcow2_image(dir_ / "x.qcow2", 0, "missing.img"); }),
                       "no such file"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.qcow2"));
  EXPECT_TRUE(
      contains(error_of([&] { create_qcow2_image(dir_ / "y.qcow2", 1000); }), "multiple of 512"));
}

// ---- Images dvmm refuses ----

TEST_F(Qcow2Test, ReadOnlyOpenRefusesWrites) {
  const std::string path = dir_ / "ro.qcow2";
  create_qcow2_image(path, 1 * MiB);
  auto image = open_block_image(path, read_only());
  EXPECT_TRUE(image->read_only());
  std::vector<u8> data(512, 1);
  EXPECT_TRUE(contains(error_of([&] { image->write(0, data); }), "read-only"));
}

TEST_F(Qcow2Test, BadMagicAndBadHeaders) {
  write_file(dir_ / "junk.img", random_bytes(64 * KiB, 120));
  ImageOptions qcow2_format = read_only();
  qcow2_format.format = ImageFormat::kQcow2;
  EXPECT_TRUE(
      contains(error_of([&] { open_block_image(dir_ / "junk.img", qcow2_format); }), "bad magic"));
  write_file(dir_ / "short.img", {'Q', 'F', 'I', 0xfb, 0, 0});
  EXPECT_TRUE(
      contains(error_of([&] { open_block_image(dir_ / "short.img", read_only()); }), "too short"));

  auto patched = [&](const std::string& name, auto patch) {
    const std::string path = dir_ / name;
    create_qcow2_image(path, 1 * MiB);
    patch(path);
    return error_of([&] { open_block_image(path, read_only()); });
  };
  EXPECT_TRUE(contains(patched("v4.qcow2", [](auto& p) { patch_be32(p, qcow2::kOffVersion, 4); }),
                       "version 4 is not supported"));
  EXPECT_TRUE(
      contains(patched("cb.qcow2", [](auto& p) { patch_be32(p, qcow2::kOffClusterBits, 30); }),
               "cluster sizes 512 B to 2 MiB"));
  EXPECT_TRUE(
      contains(patched("aes.qcow2", [](auto& p) { patch_be32(p, qcow2::kOffCryptMethod, 1); }),
               "encrypted (AES)"));
  EXPECT_TRUE(contains(
      patched("feature.qcow2",
              [](auto& p) { patch_be64(p, qcow2::kOffIncompatibleFeatures, u64{1} << 20); }),
      "incompatible qcow2 features dvmm does not know: bit 20"));
  EXPECT_TRUE(
      contains(patched("hl.qcow2", [](auto& p) { patch_be32(p, qcow2::kOffHeaderLength, 50); }),
               "header_length"));
  EXPECT_TRUE(
      contains(patched("ro.qcow2", [](auto& p) { patch_be32(p, qcow2::kOffRefcountOrder, 7); }),
               "refcount_order 7"));
  EXPECT_TRUE(
      contains(patched("l1small.qcow2", [](auto& p) { patch_be64(p, qcow2::kOffSize, 1 * GiB); }),
               "fewer than"));
}

TEST_F(Qcow2Test, FeaturesQemuHasAndDvmmLacks) {
  const std::string ext_l2 = dir_ / "ext.qcow2";
  must_run("qemu-img create -f qcow2 -o extended_l2=on " + ext_l2 + " 1M");
  EXPECT_TRUE(
      contains(error_of([&] { open_block_image(ext_l2, read_only()); }), "extended L2 entries"));
  const std::string zstd = dir_ / "zstd.qcow2";
  if (run_command("qemu-img create -f qcow2 -o compression_type=zstd " + zstd + " 1M").status ==
      0) {
    EXPECT_TRUE(contains(error_of([&] { open_block_image(zstd, read_only()); }), "zstd"));
  }
  const std::string luks = dir_ / "luks.qcow2";
  if (run_command("qemu-img create -f qcow2 --object secret,id=s0,data=pw -o "
                  "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 " +
                  luks + " 1M")
          .status == 0) {
    EXPECT_TRUE(contains(error_of([&] { open_block_image(luks, read_only()); }), "encrypted"));
  }
}

TEST_F(Qcow2Test, TruncatedL1Table) {
  const std::string path = dir_ / "cut.qcow2";
  create_qcow2_image(path, 4 * u64{1} << 40);  // 4 TiB: a 64 KiB L1 table at cluster 3
  std::filesystem::resize_file(path, 3 * 64 * KiB + 4096);
  const std::string message = error_of([&] { open_block_image(path, read_only()); });
  EXPECT_TRUE(contains(message, "L1 table"));
  EXPECT_TRUE(contains(message, "truncated"));
}

TEST_F(Qcow2Test, L2TablePastTheEndOfTheFile) {
  const std::string path = dir_ / "l2.qcow2";
  create_qcow2_image(path, 1 * MiB);
  patch_be64(path, 3 * 64 * KiB, (u64{1} << 30) | qcow2::kFlagCopied);  // L1[0]
  auto image = open_block_image(path, read_only());
  std::vector<u8> sector(512);
  EXPECT_TRUE(contains(error_of([&] { image->read(0, sector); }), "past the end of the file"));
}

TEST_F(Qcow2Test, MissingBackingFile) {
  write_file(dir_ / "base.raw", random_bytes(1 * MiB, 130));
  create_qcow2_image(dir_ / "overlay.qcow2", 0, "base.raw");
  std::filesystem::remove(dir_ / "base.raw");
  const std::string message =
      error_of([&] { open_block_image(dir_ / "overlay.qcow2", read_only()); });
  EXPECT_TRUE(contains(message, "backing file 'base.raw'"));
  EXPECT_TRUE(contains(message, "no such file"));
}

TEST_F(Qcow2Test, BackingFileLoop) {
  const std::string path = dir_ / "self.qcow2";
  create_qcow2_image(path, 1 * MiB);
  must_run("qemu-img rebase -u -f qcow2 -b self.qcow2 -F qcow2 " + path);
  EXPECT_TRUE(contains(error_of([&] { open_block_image(path, read_only()); }), "deeper than"));
}

TEST_F(Qcow2Test, DirtyCorruptAndSnapshottedImagesOpenOnlyReadOnly) {
  const std::string dirty = dir_ / "dirty.qcow2";
  create_qcow2_image(dirty, 1 * MiB);
  patch_be64(dirty, qcow2::kOffIncompatibleFeatures, qcow2::kIncompatDirty);
  EXPECT_TRUE(contains(error_of([&] { open_block_image(dirty, writable()); }), "dirty bit"));
  EXPECT_NO_THROW(open_block_image(dirty, read_only()));

  const std::string corrupt = dir_ / "corrupt.qcow2";
  create_qcow2_image(corrupt, 1 * MiB);
  patch_be64(corrupt, qcow2::kOffIncompatibleFeatures, qcow2::kIncompatCorrupt);
  EXPECT_TRUE(contains(error_of([&] { open_block_image(corrupt, writable()); }), "corrupt"));
  EXPECT_NO_THROW(open_block_image(corrupt, read_only()));

  const std::string snap = dir_ / "snap.qcow2";
  must_run("qemu-img create -f qcow2 " + snap + " 1M");
  must_run("qemu-io -f qcow2 -c 'write -P 0x66 0 64k' " + snap);
  must_run("qemu-img snapshot -c first " + snap);
  EXPECT_TRUE(contains(error_of([&] { open_block_image(snap, writable()); }), "snapshot"));
  auto image = open_block_image(snap, read_only());
  std::vector<u8> piece(4096);
  image->read(0, piece);
  EXPECT_EQ(piece[4095], 0x66);
}

// Random damage to the metadata of an image with data: opening, reading and writing either
// work or throw ImageError, never anything worse.
TEST_F(Qcow2Test, DamagedMetadataIsAnImageErrorAtWorst) {
  write_file(dir_ / "source.raw", data_with_holes(1 * MiB, 150));
  must_run("qemu-img convert -c -O qcow2 -o cluster_size=4k " + (dir_ / "source.raw") + " " +
           (dir_ / "good.qcow2"));
  const std::vector<u8> good = read_file(dir_ / "good.qcow2");
  const std::string path = dir_ / "damaged.qcow2";
  std::mt19937_64 rng(151);
  int opened = 0;
  for (int round = 0; round < 300; ++round) {
    std::vector<u8> damaged = good;
    const std::size_t metadata_end = std::min<std::size_t>(damaged.size(), 6 * 4096);
    for (int i = 0; i < 1 + round % 4; ++i) damaged[rng() % metadata_end] = static_cast<u8>(rng());
    write_file(path, damaged);
    for (const bool ro : {true, false}) {
      ImageOptions options = ro ? read_only() : writable();
      try {
        auto image = open_block_image(path, options);
        ++opened;
        std::vector<u8> buffer(image->size() < 64 * KiB ? image->size() : 64 * KiB);
        for (u64 offset = 0; offset + buffer.size() <= image->size() && offset < 4 * MiB;
             offset += buffer.size()) {
          image->read(offset, buffer);
        }
        if (!ro && image->size() >= 4096) {
          image->write(rng() % (image->size() - 4095), std::vector<u8>(4096, 0x42));
        }
      } catch (const ImageError&) {
      }
    }
  }
  EXPECT_GT(opened, 0);
}

TEST_F(Qcow2Test, LockConflictsReachTheBackingFile) {
  write_file(dir_ / "base.raw", random_bytes(1 * MiB, 140));
  create_qcow2_image(dir_ / "overlay.qcow2", 0, "base.raw");
  auto overlay = open_block_image(dir_ / "overlay.qcow2", writable());
  EXPECT_TRUE(contains(error_of([&] { open_block_image(dir_ / "overlay.qcow2", writable()); }),
                       "is in use by another process"));
  // The backing file is shared read-only: nobody may write it while the overlay is open.
  EXPECT_TRUE(contains(error_of([&] { open_block_image(dir_ / "base.raw", writable()); }),
                       "is in use by another process"));
  EXPECT_NO_THROW(open_block_image(dir_ / "base.raw", read_only()));
}

}  // namespace
}  // namespace dvmm::devices
