#include "machine/linux_loader.hpp"

#include <gtest/gtest.h>
#include <libfdt.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "machine/machine.hpp"

namespace dvmm::machine {
namespace {

void put64(std::vector<u8>& b, std::size_t at, u64 v) {
  for (int i = 0; i < 8; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<u8>(v >> (8 * i));
}

// A minimal rv64 Image: the header of arch/riscv/kernel/head.S plus `size` bytes in all.
std::vector<u8> fake_image(std::size_t size, u64 text_offset = 0x200000, u64 image_size = 0) {
  std::vector<u8> b(size, 0);
  b[0] = 0x6f;  // j _start_kernel (any code)
  put64(b, 0x08, text_offset);
  put64(b, 0x10, image_size != 0 ? image_size : size);
  put64(b, 0x18, 0);    // flags: little-endian
  put64(b, 0x20, 0x2);  // version 0.2
  std::memcpy(&b[0x30], "RISCV\0\0\0", 8);
  std::memcpy(&b[0x38], "RSC\x05", 4);
  return b;
}

std::string error_of(std::span<const u8> image) {
  try {
    parse_image_header(image);
  } catch (const MachineError& e) {
    return e.what();
  }
  return "";
}

TEST(ImageHeader, Parses) {
  const auto img = fake_image(4096, 0x200000, 0x123000);
  const ImageHeader h = parse_image_header(img);
  EXPECT_EQ(h.text_offset, 0x200000u);
  EXPECT_EQ(h.image_size, 0x123000u);
  EXPECT_EQ(h.version, 2u);
}

TEST(ImageHeader, RejectsElf) {
  std::vector<u8> elf(4096, 0);
  std::memcpy(elf.data(),
              "\x7f"
              "ELF",
              4);
  EXPECT_EQ(error_of(elf),
            "not a RISC-V Linux Image (this looks like an ELF file; use arch/riscv/boot/Image)");
}

TEST(ImageHeader, RejectsOtherFiles) {
  std::vector<u8> gz = {0x1f, 0x8b, 8, 0};
  gz.resize(100);
  EXPECT_NE(error_of(gz).find("gzip"), std::string::npos);
  std::vector<u8> tiny = {1, 2, 3};
  EXPECT_NE(error_of(tiny).find("shorter than the 64-byte header"), std::string::npos);
  std::vector<u8> zeros(4096, 0);
  EXPECT_NE(error_of(zeros).find("no \"RSC\\x05\" magic"), std::string::npos);
  std::vector<u8> text(4096, 'a');
  EXPECT_EQ(error_of(text).rfind("not a RISC-V Linux Image", 0), 0u);
}

TEST(ImageHeader, AcceptsOldMagicOnly) {
  auto img = fake_image(4096);
  std::memset(&img[0x38], 0, 4);
  EXPECT_NO_THROW(parse_image_header(img));
}

TEST(ImageHeader, RejectsUnalignedTextOffsetAndBigEndian) {
  EXPECT_NE(error_of(fake_image(4096, 0x1000)).find("not 2 MiB aligned"), std::string::npos);
  auto be = fake_image(4096);
  put64(be, 0x18, 1);
  EXPECT_NE(error_of(be).find("big-endian"), std::string::npos);
}

constexpr Gpa kBase = 0x8000'0000;
constexpr u64 kMiB = u64{1} << 20;

TEST(BootLayout, PlacesKernelInitrdAndDtb) {
  ImageHeader h;
  h.text_offset = 0x200000;
  h.image_size = 12 * kMiB;
  const BootLayout l = plan_boot_layout(kBase, 128 * kMiB, h, 5 * kMiB, 3 * kMiB + 123, 4000);
  EXPECT_EQ(l.kernel, kBase + 0x200000);
  EXPECT_EQ(l.kernel_size, 12 * kMiB);  // image_size covers the bss
  EXPECT_EQ(l.dtb % kDtbAlign, 0u);
  EXPECT_LE(l.dtb + l.dtb_size, kBase + 128 * kMiB);
  EXPECT_EQ(l.initrd % kPageSize, 0u);
  EXPECT_LE(l.initrd + l.initrd_size, l.dtb);
  EXPECT_GE(l.initrd, l.kernel + l.kernel_size);
  EXPECT_EQ(l.initrd_size, 3 * kMiB + 123);
}

TEST(BootLayout, NoInitrd) {
  ImageHeader h;
  h.text_offset = 0x200000;
  const BootLayout l = plan_boot_layout(kBase, 64 * kMiB, h, 5 * kMiB, 0, 4000);
  EXPECT_EQ(l.initrd, 0u);
  EXPECT_EQ(l.initrd_size, 0u);
}

TEST(BootLayout, InitrdTooBig) {
  ImageHeader h;
  h.text_offset = 0x200000;
  try {
    plan_boot_layout(kBase, 64 * kMiB, h, 20 * kMiB, 60 * kMiB, 4000);
    FAIL() << "expected an error";
  } catch (const MachineError& e) {
    EXPECT_EQ(std::string(e.what()),
              "the initrd (60 MiB) does not fit in 64 MiB of RAM next to the kernel (20 MiB); "
              "use --memory 84M or more");
  }
}

TEST(BootLayout, KernelTooBig) {
  ImageHeader h;
  h.text_offset = 0x200000;
  h.image_size = 100 * kMiB;
  EXPECT_THROW(plan_boot_layout(kBase, 64 * kMiB, h, 5 * kMiB, 0, 4000), MachineError);
}

class TempFile {
 public:
  explicit TempFile(const std::vector<u8>& data) {
    char name[] = "/tmp/dvmm-test-XXXXXX";
    const int fd = mkstemp(name);
    path_ = name;
    EXPECT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    close(fd);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(MachineBoot, LoadsEverythingAndSetsEntry) {
  auto image = fake_image(64 * 1024);
  image[100] = 0xab;
  const TempFile kernel(image);
  const TempFile initrd(std::vector<u8>(10000, 0x5a));
  MachineConfig c;
  c.vcpus = 2;
  c.memory_size = 64 * kMiB;
  c.kernel_path = kernel.path();
  c.initrd_paths = {initrd.path()};
  c.initrd_appendix = {1, 2, 3};
  c.bootargs = "console=ttyS0";
  Machine m(c, {});
  const BootInfo info = m.boot();

  u8 byte = 0;
  ASSERT_TRUE(m.ram().read(kBase + 0x200000 + 100, &byte, 1));
  EXPECT_EQ(byte, 0xab);
  // initrd = file (10000 bytes), zero padding to 4, the appendix.
  EXPECT_EQ(info.layout.initrd_size, 10000u + 3u);
  ASSERT_TRUE(m.ram().read(info.layout.initrd + 10000, &byte, 1));
  EXPECT_EQ(byte, 1);

  std::vector<u8> dtb(info.layout.dtb_size);
  ASSERT_TRUE(m.ram().read(info.layout.dtb, dtb.data(), dtb.size()));
  ASSERT_EQ(fdt_check_header(dtb.data()), 0);
  const int chosen = fdt_path_offset(dtb.data(), "/chosen");
  int len = 0;
  const void* start = fdt_getprop(dtb.data(), chosen, "linux,initrd-start", &len);
  ASSERT_NE(start, nullptr);
  ASSERT_EQ(len, 8);
  fdt64_t be;  // properties are only 4-byte aligned
  std::memcpy(&be, start, sizeof be);
  EXPECT_EQ(fdt64_to_cpu(be), info.layout.initrd);

  cpu::Hart& h0 = m.hart(0);
  EXPECT_EQ(h0.pc(), kBase + 0x200000);
  EXPECT_EQ(h0.x(10), 0u);
  EXPECT_EQ(h0.x(11), info.layout.dtb);
  EXPECT_EQ(h0.privilege(), cpu::Privilege::kSupervisor);
}

// A distributed VM (issue 4): the boot images stay in the boot node's slice of RAM, and the
// device tree has one memory node per NUMA node, numa-node-id on cpus and a distance map.
TEST(MachineBoot, BootSliceAndNuma) {
  const TempFile kernel(fake_image(64 * 1024));
  const TempFile initrd(std::vector<u8>(10000, 0x5a));
  MachineConfig c;
  c.vcpus = 4;
  c.memory_size = 128 * kMiB;
  c.boot_memory_size = 64 * kMiB;
  c.kernel_path = kernel.path();
  c.initrd_paths = {initrd.path()};
  c.numa_nodes = {{{0, 1}, kBase, 64 * kMiB}, {{2, 3}, kBase + 64 * kMiB, 64 * kMiB}};
  c.numa_distance = {{10, 20}, {20, 10}};
  Machine m(c, {});
  const BootInfo info = m.boot();
  EXPECT_LT(info.layout.initrd + info.layout.initrd_size, kBase + 64 * kMiB);
  EXPECT_LE(info.layout.dtb + info.layout.dtb_size, kBase + 64 * kMiB);
  EXPECT_GT(info.layout.dtb, kBase + 32 * kMiB);  // at the top of the slice, not of RAM

  const std::vector<u8>& dtb = m.device_tree();
  ASSERT_EQ(fdt_check_header(dtb.data()), 0);
  int len = 0;
  const int mem1 = fdt_path_offset(dtb.data(), "/memory@84000000");
  ASSERT_GE(mem1, 0);
  const void* id = fdt_getprop(dtb.data(), mem1, "numa-node-id", &len);
  ASSERT_NE(id, nullptr);
  fdt32_t be32;
  std::memcpy(&be32, id, sizeof be32);
  EXPECT_EQ(fdt32_to_cpu(be32), 1u);
  const int cpu3 = fdt_path_offset(dtb.data(), "/cpus/cpu@3");
  ASSERT_GE(cpu3, 0);
  id = fdt_getprop(dtb.data(), cpu3, "numa-node-id", &len);
  ASSERT_NE(id, nullptr);
  std::memcpy(&be32, id, sizeof be32);
  EXPECT_EQ(fdt32_to_cpu(be32), 1u);
  EXPECT_GE(fdt_path_offset(dtb.data(), "/distance-map"), 0);
}

TEST(MachineBoot, TimeEpochIsShared) {
  MachineConfig c;
  c.vcpus = 1;
  c.memory_size = 64 * kMiB;
  Machine a(c, {});
  Machine b(c, {});
  b.set_time_epoch(a.time_epoch_ns());
  EXPECT_EQ(b.time_epoch_ns(), a.time_epoch_ns());
  const u64 ta = a.time().now();
  const u64 tb = b.time().now();
  EXPECT_GE(tb, ta);
  EXPECT_LT(tb - ta, u64{10'000'000});  // within a second at 10 MHz
  b.set_time_epoch(~u64{0});            // a future epoch is clamped: time starts at 0
  EXPECT_LT(b.time().now(), u64{10'000'000});
}

TEST(MachineBoot, ClearErrors) {
  MachineConfig c;
  c.vcpus = 1;
  c.memory_size = 64 * kMiB;
  c.kernel_path = "/nonexistent/Image";
  Machine m(c, {});
  try {
    m.boot();
    FAIL();
  } catch (const MachineError& e) {
    EXPECT_EQ(std::string(e.what()), "kernel /nonexistent/Image: No such file or directory");
  }
  std::vector<u8> elf(4096, 0);
  std::memcpy(elf.data(),
              "\x7f"
              "ELF",
              4);
  const TempFile vmlinux(elf);
  c.kernel_path = vmlinux.path();
  Machine m2(c, {});
  EXPECT_THROW(m2.boot(), MachineError);
  c.kernel_path = "/tmp";
  Machine m3(c, {});
  try {
    m3.boot();
    FAIL();
  } catch (const MachineError& e) {
    EXPECT_EQ(std::string(e.what()), "kernel /tmp: is a directory");
  }
}

}  // namespace
}  // namespace dvmm::machine
