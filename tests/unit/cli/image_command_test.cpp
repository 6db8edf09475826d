// `dvmm image create|info`: sizes, the created files, and what info prints.
#include "cli/image_command.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "devices/block/block_image.hpp"
#include "unit/devices/image_test_util.hpp"

namespace dvmm::cli {
namespace {

using devices::test::contains;
using devices::test::TempDir;

TEST(ImageCommand, SizesNeedAUnit) {
  EXPECT_EQ(parse_image_size("10G"), u64{10} << 30);
  EXPECT_EQ(parse_image_size("512M"), u64{512} << 20);
  EXPECT_EQ(parse_image_size("64k"), u64{64} << 10);
  EXPECT_EQ(parse_image_size("2TiB"), u64{2} << 40);
  EXPECT_EQ(parse_image_size("1GB"), u64{1} << 30);
  EXPECT_EQ(parse_image_size("1048576B"), u64{1} << 20);
  EXPECT_THROW(parse_image_size("100"), std::invalid_argument);
  EXPECT_THROW(parse_image_size("G"), std::invalid_argument);
  EXPECT_THROW(parse_image_size("10X"), std::invalid_argument);
  EXPECT_THROW(parse_image_size("10GX"), std::invalid_argument);
  EXPECT_THROW(parse_image_size("99999999999999999999G"), std::invalid_argument);
  EXPECT_THROW(parse_image_size("20000000T"), std::invalid_argument);
  try {
    parse_image_size("100");
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "give a unit"));
  }
}

// Runs the command with its output in a string.
std::pair<int, std::string> run(const ImageCommandOptions& options) {
  std::FILE* out = std::tmpfile();
  const int status = image_command(options, out);
  std::rewind(out);
  std::string text;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, out)) > 0) text.append(buffer, n);
  std::fclose(out);
  return {status, text};
}

TEST(ImageCommand, CreateAndInfo) {
  TempDir dir;
  ImageCommandOptions create;
  create.command = "create";
  create.format = "raw";
  create.file = dir / "base.img";
  create.size = "8M";
  auto [status, text] = run(create);
  EXPECT_EQ(status, 0);
  EXPECT_TRUE(contains(text, "created raw image"));
  EXPECT_EQ(std::filesystem::file_size(dir / "base.img"), u64{8} << 20);

  create.format = "qcow2";
  create.file = dir / "overlay.qcow2";
  create.size = "";
  create.backing = "base.img";
  std::tie(status, text) = run(create);
  EXPECT_EQ(status, 0);
  EXPECT_TRUE(contains(text, "created qcow2 image"));
  EXPECT_TRUE(contains(text, "8 MiB"));
  EXPECT_TRUE(contains(text, "on backing file 'base.img' (raw)"));

  std::tie(status, text) = run(create);  // exists
  EXPECT_EQ(status, 1);

  ImageCommandOptions info;
  info.command = "info";
  info.file = dir / "overlay.qcow2";
  std::tie(status, text) = run(info);
  EXPECT_EQ(status, 0);
  EXPECT_TRUE(contains(text, "format:       qcow2 (version 3, 64 KiB clusters, 16-bit refcounts)"));
  EXPECT_TRUE(contains(text, "virtual size: 8 MiB (8388608 bytes)"));
  EXPECT_TRUE(contains(text, "backing file: base.img (format raw)"));
  EXPECT_TRUE(contains(text, "backing image 1:"));
  EXPECT_TRUE(contains(text, "  format:       raw"));

  // Works on an image a VM holds.
  devices::ImageOptions writable;
  auto held = devices::open_block_image(dir / "overlay.qcow2", writable);
  std::tie(status, text) = run(info);
  EXPECT_EQ(status, 0);
}

TEST(ImageCommand, CreateRefusals) {
  TempDir dir;
  ImageCommandOptions create;
  create.command = "create";
  create.file = dir / "a.qcow2";
  EXPECT_EQ(run(create).first, 1);  // no size, no backing
  create.size = "1000B";
  EXPECT_EQ(run(create).first, 1);  // not a multiple of 512
  create.size = "1G";
  create.format = "raw";
  create.backing = "x.img";
  EXPECT_EQ(run(create).first, 1);  // raw with a backing file
  EXPECT_FALSE(std::filesystem::exists(dir / "a.qcow2"));
}

}  // namespace
}  // namespace dvmm::cli
