// End-to-end tests of the single-node VM with tiny hand-assembled guests (no toolchain):
// vCPU threads, HSM start of a parked hart, IPI and timer wake-ups from WFI, the finisher,
// reboot in place, panic detection on the console, and the timeout.
#include "vmm/vm.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "unit/cpu/encode.hpp"

namespace dvmm::vmm {
namespace {

namespace enc = dvmm::test::enc;

// Register numbers.
constexpr u32 t0 = 5, t1 = 6, a0 = 10, a1 = 11, a2 = 12, a6 = 16, a7 = 17;
constexpr u32 kSie = 0x104, kSip = 0x144, kTime = 0xc01;

// An rv64 Linux-style Image: the 64-byte header, then code placed at given offsets. Entry
// (offset 0) jumps to 0x40.
class ImageBuilder {
 public:
  ImageBuilder() : bytes_(0x1000, 0) {
    put32(0, enc::jal(0, 0x40));
    put64(0x08, 0x200000);  // text_offset
    put64(0x10, bytes_.size());
    put64(0x20, 2);  // header version 0.2
    std::memcpy(&bytes_[0x30], "RISCV\0\0\0", 8);
    std::memcpy(&bytes_[0x38], "RSC\x05", 4);
  }
  // Appends instructions at `offset`.
  void code(std::size_t offset, std::initializer_list<u32> insns) {
    for (u32 i : insns) {
      put32(offset, i);
      offset += 4;
    }
  }
  void data(std::size_t offset, std::string_view s) {
    std::memcpy(&bytes_[offset], s.data(), s.size());
  }
  std::string write() {
    char name[] = "/tmp/dvmm-vm-test-XXXXXX";
    const int fd = mkstemp(name);
    EXPECT_EQ(::write(fd, bytes_.data(), bytes_.size()), static_cast<ssize_t>(bytes_.size()));
    ::close(fd);
    return name;
  }

 private:
  void put32(std::size_t at, u32 v) { std::memcpy(&bytes_[at], &v, 4); }
  void put64(std::size_t at, u64 v) { std::memcpy(&bytes_[at], &v, 8); }
  std::vector<u8> bytes_;
};

// li rd, value for 32-bit values (lui + addi with the carry handled).
std::vector<u32> li32(u32 rd, u32 value) {
  const u32 lo = value & 0xfff;
  const u32 hi = (value + (lo >= 0x800 ? 0x1000 : 0)) >> 12;
  const i32 lo_signed = lo >= 0x800 ? static_cast<i32>(lo) - 0x1000 : static_cast<i32>(lo);
  return {enc::lui(rd, hi), enc::addi(rd, rd, lo_signed)};
}

struct Program {
  std::map<std::size_t, std::vector<u32>> code;
  void at(std::size_t off, std::vector<u32> insns) {
    auto& v = code[off];
    v.insert(v.end(), insns.begin(), insns.end());
  }
};

// Writes `status` to the finisher: t0 = 0x100000, t1 = (status << 16) | 0x3333.
std::vector<u32> finish(u32 status) {
  std::vector<u32> v = {enc::lui(t0, 0x100)};
  for (u32 i : li32(t1, (status << 16) | 0x3333)) v.push_back(i);
  v.push_back(enc::sw(t1, t0, 0));
  v.push_back(enc::jal(0, 0));
  return v;
}

class VmTest : public ::testing::Test {
 protected:
  ~VmTest() override {
    if (!path_.empty()) std::remove(path_.c_str());
  }

  VmResult run(ImageBuilder& image, unsigned vcpus, std::chrono::milliseconds timeout,
               std::string* console = nullptr) {
    path_ = image.write();
    machine::MachineConfig c;
    c.vcpus = vcpus;
    c.memory_size = u64{64} << 20;
    c.kernel_path = path_;
    c.bootargs = "test";
    VmOptions o;
    o.timeout = timeout;
    o.panic_grace = std::chrono::milliseconds(100);
    o.console_output = [console](std::string_view s) {
      if (console) console->append(s);
    };
    Vm vm(c, o);
    return vm.run();
  }

  std::string path_;
};

TEST_F(VmTest, PoweroffStatusFromTheFinisher) {
  ImageBuilder img;
  auto f = finish(42);
  std::size_t off = 0x40;
  for (u32 i : f) img.code(off, {i}), off += 4;
  const VmResult r = run(img, 1, std::chrono::seconds(20));
  EXPECT_EQ(r.kind, VmResult::Kind::kPowerOff) << r.message;
  EXPECT_EQ(r.status, 42u);
}

TEST_F(VmTest, HartStartIpiAndWfi) {
  ImageBuilder img;
  std::vector<u32> h0 = {enc::csrrsi(0, kSie, 2)};   // sie.SSIE: an IPI ends our WFI
  for (u32 i : li32(a7, 0x48534D)) h0.push_back(i);  // HSM
  h0.insert(h0.end(), {enc::addi(a6, 0, 0),          // hart_start
                       enc::addi(a0, 0, 1),          // hart 1
                       enc::auipc(a1, 0)});          // a1 = here (0x54)
  h0.insert(h0.end(),
            {enc::addi(a1, a1, 0x200 - 0x54), enc::addi(a2, 0, 0x2a), enc::ecall(),
             // loop: wfi until sip.SSIP
             enc::wfi(), enc::csrr(t0, kSip), enc::andi(t0, t0, 2), enc::beq(t0, 0, -12)});
  for (u32 i : finish(7)) h0.push_back(i);
  std::size_t off = 0x40;
  for (u32 i : h0) img.code(off, {i}), off += 4;
  ASSERT_LT(off, 0x200u);
  // Hart 1 (a1 = opaque = 0x2a): IPI hart 0, then sleep forever.
  std::vector<u32> h1;
  for (u32 i : li32(a7, 0x735049)) h1.push_back(i);  // sPI
  h1.insert(h1.end(), {enc::addi(a6, 0, 0), enc::addi(a0, 0, 1), enc::addi(a1, 0, 0), enc::ecall(),
                       enc::wfi(), enc::jal(0, -4)});
  off = 0x200;
  for (u32 i : h1) img.code(off, {i}), off += 4;
  const VmResult r = run(img, 2, std::chrono::seconds(20));
  EXPECT_EQ(r.kind, VmResult::Kind::kPowerOff) << r.message;
  EXPECT_EQ(r.status, 7u);
}

TEST_F(VmTest, TimerWakesWfi) {
  ImageBuilder img;
  std::vector<u32> p = {enc::csrrsi(0, kSie, 0), enc::addi(t0, 0, 0x20),  // STIE (bit 5)
                        enc::csrrs(0, kSie, t0), enc::csrr(t0, kTime)};
  for (u32 i : li32(t1, 500'000)) p.push_back(i);  // 50 ms at 10 MHz
  p.push_back(enc::add(a0, t0, t1));
  for (u32 i : li32(a7, 0x54494D45)) p.push_back(i);  // TIME
  p.insert(p.end(), {enc::addi(a6, 0, 0), enc::ecall(), enc::wfi(), enc::csrr(t0, kSip),
                     enc::andi(t0, t0, 0x20), enc::beq(t0, 0, -12)});
  for (u32 i : finish(5)) p.push_back(i);
  std::size_t off = 0x40;
  for (u32 i : p) img.code(off, {i}), off += 4;
  const auto t = std::chrono::steady_clock::now();
  const VmResult r = run(img, 1, std::chrono::seconds(20));
  const auto took = std::chrono::steady_clock::now() - t;
  EXPECT_EQ(r.kind, VmResult::Kind::kPowerOff) << r.message;
  EXPECT_EQ(r.status, 5u);
  EXPECT_GE(took, std::chrono::milliseconds(45));
}

TEST_F(VmTest, RebootInPlace) {
  // A flag below the kernel survives the reboot (RAM is reloaded, not cleared): the first
  // boot sets it and reboots through the finisher, the second powers off with status 3.
  ImageBuilder img;
  // t0 = 0x8010_0000 (lui alone would sign-extend it on rv64).
  std::vector<u32> p = {enc::addi(t0, 0, 1),  enc::slli(t0, t0, 31), enc::lui(t1, 0x100),
                        enc::add(t0, t0, t1), enc::lw(t1, t0, 0),    enc::bne(t1, 0, 6 * 4),
                        enc::addi(t1, 0, 1),  enc::sw(t1, t0, 0),    enc::lui(t0, 0x100)};
  for (u32 i : li32(t1, 0x7777)) p.push_back(i);
  p.push_back(enc::sw(t1, t0, 0));  // reboot
  // (bne lands here: 6 instructions after it)
  for (u32 i : finish(3)) p.push_back(i);
  std::size_t off = 0x40;
  for (u32 i : p) img.code(off, {i}), off += 4;
  const VmResult r = run(img, 2, std::chrono::seconds(20));
  EXPECT_EQ(r.kind, VmResult::Kind::kPowerOff) << r.message;
  EXPECT_EQ(r.status, 3u);
  EXPECT_EQ(r.reboots, 1u);
}

TEST_F(VmTest, PanicOnTheConsoleIsDetected) {
  ImageBuilder img;
  const std::string msg =
      "[ 1.0] Kernel panic - not syncing: test\n[ 1.1] ---[ end Kernel panic - not syncing ]---\n";
  img.data(0x400, msg);
  // DBCN write(len, addr): a1 = base + 0x400.
  std::vector<u32> p = {enc::addi(a0, 0, static_cast<i32>(msg.size())), enc::auipc(a1, 0)};
  p.push_back(enc::addi(a1, a1, 0x400 - 0x44));
  p.push_back(enc::addi(a2, 0, 0));
  for (u32 i : li32(a7, 0x4442434E)) p.push_back(i);
  p.insert(p.end(), {enc::addi(a6, 0, 0), enc::ecall(), enc::jal(0, 0)});
  std::size_t off = 0x40;
  for (u32 i : p) img.code(off, {i}), off += 4;
  std::string console;
  const VmResult r = run(img, 1, std::chrono::seconds(20), &console);
  EXPECT_EQ(r.kind, VmResult::Kind::kPanic);
  EXPECT_EQ(r.message, "Kernel panic - not syncing: test");
  EXPECT_EQ(console, msg);
}

TEST_F(VmTest, Timeout) {
  ImageBuilder img;
  img.code(0x40, {enc::jal(0, 0)});
  const auto t = std::chrono::steady_clock::now();
  const VmResult r = run(img, 2, std::chrono::milliseconds(200));
  EXPECT_EQ(r.kind, VmResult::Kind::kTimeout);
  EXPECT_LT(std::chrono::steady_clock::now() - t, std::chrono::seconds(5));
}

TEST_F(VmTest, BadKernelIsAnErrorNotACrash) {
  machine::MachineConfig c;
  c.vcpus = 1;
  c.memory_size = u64{64} << 20;
  c.kernel_path = "/nonexistent";
  Vm vm(c, {});
  const VmResult r = vm.run();
  EXPECT_EQ(r.kind, VmResult::Kind::kError);
  EXPECT_EQ(r.message, "kernel /nonexistent: No such file or directory");
}

}  // namespace
}  // namespace dvmm::vmm
