// Raw disk images: I/O, sizes, read-only opens, locking, and the errors for bad files.
#include "devices/block/raw_image.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

#include "devices/block/block_image.hpp"
#include "unit/devices/image_test_util.hpp"

namespace dvmm::devices {
namespace {

using test::contains;
using test::error_of;
using test::random_bytes;
using test::read_file;
using test::TempDir;
using test::write_file;

ImageOptions read_write() {
  return ImageOptions{};
}
ImageOptions read_only() {
  ImageOptions o;
  o.read_only = true;
  return o;
}

TEST(RawImage, ReadsAndWritesAtAnyOffset) {
  TempDir dir;
  const std::string path = dir / "disk.img";
  std::vector<u8> model = random_bytes(1 << 20, 1);
  write_file(path, model);

  auto image = open_block_image(path, read_write());
  EXPECT_EQ(image->format_name(), "raw");
  EXPECT_EQ(image->size(), model.size());
  EXPECT_FALSE(image->read_only());

  std::mt19937_64 rng(2);
  for (int i = 0; i < 200; ++i) {
    const u64 length = rng() % 70000 + 1;
    const u64 offset = rng() % (model.size() - length + 1);
    const std::vector<u8> data = random_bytes(length, rng());
    image->write(offset, data);
    std::copy(data.begin(), data.end(), model.begin() + static_cast<std::ptrdiff_t>(offset));
  }
  image->flush();
  std::vector<u8> back(model.size());
  image->read(0, back);
  EXPECT_EQ(back, model);
  EXPECT_EQ(read_file(path), model);
}

TEST(RawImage, RefusesAccessBeyondTheEnd) {
  TempDir dir;
  write_file(dir / "disk.img", std::vector<u8>(4096));
  auto image = open_block_image(dir / "disk.img", read_write());
  std::vector<u8> buffer(1024);
  EXPECT_THROW(image->read(3584, buffer), ImageError);
  EXPECT_THROW(image->write(4096, std::span<const u8>(buffer).first(1)), ImageError);
}

TEST(RawImage, SizeMustBeAMultipleOf512) {
  TempDir dir;
  write_file(dir / "odd.img", std::vector<u8>(1000));
  EXPECT_TRUE(contains(error_of([&] { open_block_image(dir / "odd.img", read_write()); }),
                       "not a multiple of 512"));
}

TEST(RawImage, ReadOnlyOpenRefusesWrites) {
  TempDir dir;
  const std::vector<u8> content = random_bytes(8192, 3);
  write_file(dir / "disk.img", content);
  auto image = open_block_image(dir / "disk.img", read_only());
  EXPECT_TRUE(image->read_only());
  std::vector<u8> data(512, 0xee);
  EXPECT_TRUE(contains(error_of([&] { image->write(0, data); }), "read-only"));
  image->flush();
  EXPECT_EQ(read_file(dir / "disk.img"), content);
}

// Opening for writing a file the user may only read says how to use it read-only. Run as an
// unprivileged user in a child process when the tests run as root (root may write anything).
TEST(RawImage, FileTheUserCannotWriteAsksForReadOnly) {
  TempDir dir;
  const std::string path = dir / "disk.img";
  write_file(path, std::vector<u8>(4096));
  ASSERT_EQ(::chmod(path.c_str(), 0444), 0);
  if (::geteuid() != 0) {
    const std::string message = error_of([&] { open_block_image(path, read_write()); });
    EXPECT_TRUE(contains(message, "not writable"));
    EXPECT_TRUE(contains(message, "readonly=on"));
    EXPECT_NO_THROW(open_block_image(path, read_only()));
    return;
  }
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipe_fds[0]);
    std::string message;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      message = "setuid failed";
    } else if (::access(path.c_str(), R_OK) != 0) {
      message = "unreachable";  // a TMPDIR user nobody may not enter
    } else {
      message = error_of([&] { open_block_image(path, read_write()); });
      message += error_of([&] { open_block_image(path, read_only()); });
    }
    (void)!::write(pipe_fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[1024];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0) message.append(buffer, n);
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (message == "setuid failed" || message == "unreachable") {
    GTEST_SKIP() << "cannot test as user nobody: " << message;
  }
  EXPECT_TRUE(contains(message, "is not writable by you"));
  EXPECT_TRUE(contains(message, "readonly=on"));
  EXPECT_TRUE(contains(message, "(no ImageError)"));  // the read-only open worked
}

TEST(RawImage, TwoWritersConflict) {
  TempDir dir;
  const std::string path = dir / "disk.img";
  write_file(path, std::vector<u8>(4096));
  {
    auto writer = open_block_image(path, read_write());
    EXPECT_TRUE(contains(error_of([&] { open_block_image(path, read_write()); }),
                         "is in use by another process"));
    EXPECT_TRUE(contains(error_of([&] { open_block_image(path, read_only()); }),
                         "is in use by another process"));
    ImageOptions shared = read_only();
    shared.force_share = true;
    EXPECT_NO_THROW(open_block_image(path, shared));
  }
  {
    auto reader1 = open_block_image(path, read_only());
    auto reader2 = open_block_image(path, read_only());  // readers share
    EXPECT_TRUE(contains(error_of([&] { open_block_image(path, read_write()); }),
                         "is in use by another process"));
  }
  EXPECT_NO_THROW(open_block_image(path, read_write()));  // locks go with the images
}

TEST(RawImage, MissingFileAndDirectory) {
  TempDir dir;
  EXPECT_TRUE(contains(error_of([&] { open_block_image(dir / "nope.img", read_write()); }),
                       "no such file"));
  EXPECT_TRUE(
      contains(error_of([&] { open_block_image(dir.path(), read_only()); }), "is a directory"));
  ImageOptions raw;
  raw.format = ImageFormat::kRaw;
  EXPECT_TRUE(contains(error_of([&] { open_block_image(dir.path(), raw); }), "is a directory"));
}

TEST(RawImage, CreateMakesASparseFileAndNeverOverwrites) {
  TempDir dir;
  const std::string path = dir / "new.img";
  create_raw_image(path, u64{1} << 30);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<u64>(st.st_size), u64{1} << 30);
  EXPECT_LT(static_cast<u64>(st.st_blocks) * 512, u64{1} << 20);
  EXPECT_TRUE(contains(error_of([&] { create_raw_image(path, 4096); }), "already exists"));
  EXPECT_EQ(open_block_image(path, read_only())->size(), u64{1} << 30);
  EXPECT_TRUE(
      contains(error_of([&] { create_raw_image(dir / "odd.img", 1000); }), "multiple of 512"));
}

TEST(RawImage, ImageFormatNames) {
  EXPECT_EQ(parse_image_format("raw"), ImageFormat::kRaw);
  EXPECT_EQ(parse_image_format("qcow2"), ImageFormat::kQcow2);
  EXPECT_EQ(parse_image_format("auto"), ImageFormat::kAuto);
  EXPECT_EQ(parse_image_format("vmdk"), std::nullopt);
}

}  // namespace
}  // namespace dvmm::devices
