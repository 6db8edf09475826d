// The inter-VM communication device (devices/ivc/ivc_device.hpp): the registers of
// docs/IVC.md read and written as a guest would, the interrupt level seen by a recording
// line, and the device-tree node. The device's group has a second member (another IvcGroup
// of this process) when a test needs one.
#include "devices/ivc/ivc_device.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "unit/devices/ivc_test_util.hpp"

namespace dvmm::devices::ivc {
namespace {

using test::TempRuntimeDir;
using test::wait_until;

constexpr u64 kMiB = u64{1} << 20;
constexpr Gpa kShmBase = 0x200'0000'0000;

// Thread-safe: the watcher thread sets levels too.
class RecordingIrq final : public IrqLine {
 public:
  void set_level(bool level) override {
    std::lock_guard lock(mutex_);
    level_ = level;
    history_.push_back(level);
  }
  bool level() const {
    std::lock_guard lock(mutex_);
    return level_;
  }
  std::vector<bool> history() const {
    std::lock_guard lock(mutex_);
    return history_;
  }

 private:
  mutable std::mutex mutex_;
  bool level_ = false;
  std::vector<bool> history_;
};

class IvcDeviceTest : public ::testing::Test {
 protected:
  static constexpr u32 kExpected = 3;

  void SetUp() override {
    group_ = std::make_unique<IvcGroup>(JoinOptions{dir_.path(), kName, kMiB, -1});
    device_ = std::make_unique<IvcDevice>(*group_, irq_, kShmBase, kExpected);
  }
  void TearDown() override {
    device_.reset();  // stops the watcher before the group goes
    other_.reset();
    group_.reset();
  }
  std::unique_ptr<IvcGroup> join_other(const std::string& name = kName) {
    return std::make_unique<IvcGroup>(JoinOptions{dir_.path(), name, 0, -1});
  }

  u32 r32(u64 offset) { return static_cast<u32>(device_->read(offset, 4)); }
  u64 r64(u64 offset) { return device_->read(offset, 8); }
  void w32(u64 offset, u32 value) { device_->write(offset, 4, value); }
  void w64(u64 offset, u64 value) { device_->write(offset, 8, value); }
  // SEND_DEST, then SEND_DATA; returns SEND_STATUS.
  u32 send(u32 dest, u64 value) {
    w32(kRegSendDest, dest);
    w64(kRegSendData, value);
    return r32(kRegSendStatus);
  }
  // Waits for the watcher to have seen a membership change (GENERATION reaching `g`).
  bool generation_reaches(u32 g) {
    return wait_until([&] { return r32(kRegGeneration) >= g; });
  }

  static constexpr const char* kName = "dev-grp.1";
  TempRuntimeDir dir_;
  RecordingIrq irq_;
  std::unique_ptr<IvcGroup> group_;
  std::unique_ptr<IvcGroup> other_;
  std::unique_ptr<IvcDevice> device_;
};

TEST_F(IvcDeviceTest, IdentityRegisters) {
  EXPECT_EQ(device_->name(), "ivc");
  EXPECT_EQ(device_->size(), 0x1000u);
  EXPECT_EQ(r32(kRegMagic), 0x43495644u);
  const u32 magic = r32(kRegMagic);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&magic), 4), "DVIC");  // little-endian
  EXPECT_EQ(r32(kRegVersion), 1u);
  EXPECT_EQ(r32(kRegRank), 0u);
  EXPECT_EQ(r32(kRegMaxRanks), 64u);
  EXPECT_EQ(r64(kRegMembers), 1u);
  EXPECT_EQ(r32(kRegExpected), kExpected);
  EXPECT_EQ(r32(kRegGeneration), 0u);
  EXPECT_EQ(r64(kRegShmSize), kMiB);
  EXPECT_EQ(r32(kRegSendDest), 0u);
  EXPECT_EQ(r32(kRegSendStatus), 0u);
  EXPECT_EQ(r32(kRegRecvCount), 0u);
  EXPECT_EQ(r32(kRegRecvSrc), 0xffffffffu);
  EXPECT_EQ(r32(kRegIrqStatus), 0u);
  EXPECT_EQ(r32(kRegIrqEnable), kIrqMessage | kIrqMembers);
  EXPECT_EQ(r32(kRegInboxSize), 1024u);
  EXPECT_FALSE(irq_.level());
  EXPECT_TRUE(irq_.history().empty());
}

TEST_F(IvcDeviceTest, TheRankOfASecondMember) {
  other_ = join_other();
  IvcDevice second(*other_, irq_, kShmBase, 0);
  EXPECT_EQ(second.read(kRegRank, 4), 1u);
  EXPECT_EQ(second.read(kRegExpected, 4), 0u);
  EXPECT_EQ(second.read(kRegMembers, 8), 3u);
  EXPECT_EQ(r64(kRegMembers), 3u);
}

// GROUP_NAME: 64 bytes, NUL-padded, readable in any width.
TEST_F(IvcDeviceTest, GroupNameInEveryWidth) {
  std::string expected(kName);
  expected.resize(64, '\0');
  for (unsigned width : {1u, 2u, 4u, 8u}) {
    std::string got(64, '?');
    for (u64 at = 0; at < 64; at += width) {
      const u64 v = device_->read(kRegGroupName + at, width);
      std::memcpy(got.data() + at, &v, width);
    }
    EXPECT_EQ(got, expected) << "width " << width;
  }
  // Unaligned too, in the middle of the name.
  EXPECT_EQ(device_->read(kRegGroupName + 3, 2), u64{'-'} | (u64{'g'} << 8));

  // The longest name fills 48 bytes; the rest stays NUL.
  const std::string longest(kMaxGroupNameLength, 'n');
  auto group = join_other(longest);
  NullIrqLine line;
  IvcDevice device(*group, line, kShmBase, 0);
  for (u64 at = 0; at < 64; at += 8) {
    u64 want = 0;
    for (u64 i = 0; i < 8; ++i) {
      if (at + i < longest.size()) want |= u64{'n'} << (8 * i);
    }
    EXPECT_EQ(device.read(kRegGroupName + at, 8), want) << at;
  }
}

TEST_F(IvcDeviceTest, OtherWidthsReadZeroAndAreIgnored) {
  for (unsigned width : {1u, 2u, 8u}) {
    EXPECT_EQ(device_->read(kRegMagic, width), 0u) << width;
    EXPECT_EQ(device_->read(kRegVersion, width), 0u) << width;
    EXPECT_EQ(device_->read(kRegInboxSize, width), 0u) << width;
    EXPECT_EQ(device_->read(kRegIrqEnable, width), 0u) << width;
  }
  for (unsigned width : {1u, 2u, 4u}) {
    EXPECT_EQ(device_->read(kRegMembers, width), 0u) << width;
    EXPECT_EQ(device_->read(kRegShmSize, width), 0u) << width;
  }
  // Offsets with no register.
  for (u64 offset : {u64{0x054}, u64{0x058}, u64{0x0fc}, u64{0x140}, u64{0xff8}}) {
    EXPECT_EQ(device_->read(offset, 4), 0u) << offset;
    EXPECT_EQ(device_->read(offset, 8), 0u) << offset;
  }

  // A message waiting (sent to ourselves), so a wrong-width RECV_DATA would show.
  ASSERT_EQ(send(0, 0xabc), 0u);
  EXPECT_EQ(device_->read(kRegRecvData, 4), 0u);
  EXPECT_EQ(device_->read(kRegRecvData + 4, 4), 0u);
  EXPECT_EQ(r32(kRegRecvCount), 1u) << "a 32-bit read of RECV_DATA pops nothing";
  EXPECT_EQ(r32(kRegRecvSrc), 0xffffffffu);

  // Wrong-width writes change nothing.
  device_->write(kRegSendData, 4, 0x111);
  device_->write(kRegSendData + 4, 4, 0x111);
  EXPECT_EQ(r32(kRegRecvCount), 1u) << "a 32-bit write of SEND_DATA sends nothing";
  device_->write(kRegSendDest, 8, 7);
  device_->write(kRegSendDest, 2, 7);
  EXPECT_EQ(r32(kRegSendDest), 0u);
  device_->write(kRegIrqEnable, 8, 0);
  device_->write(kRegIrqEnable, 1, 0);
  EXPECT_EQ(r32(kRegIrqEnable), kIrqMessage | kIrqMembers);
  // Read-only registers ignore writes.
  w32(kRegMagic, 0);
  w32(kRegRank, 5);
  w32(kRegRecvCount, 0);
  w64(kRegShmSize, 0);
  w64(kRegRecvData, 0);
  EXPECT_EQ(r32(kRegMagic), kMagic);
  EXPECT_EQ(r32(kRegRank), 0u);
  EXPECT_EQ(r64(kRegShmSize), kMiB);
  EXPECT_EQ(r32(kRegRecvCount), 1u);
  EXPECT_EQ(r64(kRegRecvData), 0xabcu);
}

TEST_F(IvcDeviceTest, SendToAnotherMember) {
  other_ = join_other();
  EXPECT_EQ(send(1, 0x123456789abcdef0), 0u);
  EXPECT_EQ(r32(kRegSendDest), 1u);
  EXPECT_EQ(r32(kRegRecvCount), 0u) << "not for us";
  ASSERT_EQ(other_->ready(), 1u);
  u32 source = 0;
  u64 value = 0;
  ASSERT_TRUE(other_->pop(&source, &value));
  EXPECT_EQ(source, 0u);
  EXPECT_EQ(value, 0x123456789abcdef0u);
  // SEND_DEST stays: more data to the same rank needs no new SEND_DEST.
  w64(kRegSendData, 1);
  w64(kRegSendData, 2);
  EXPECT_EQ(r32(kRegSendStatus), 0u);
  EXPECT_EQ(other_->ready(), 2u);
  EXPECT_EQ(device_->counters().sent, 3u);
}

TEST_F(IvcDeviceTest, SendStatusCodes) {
  other_ = join_other();
  EXPECT_EQ(send(1, 1), 0u);           // OK
  EXPECT_EQ(send(5, 1), 1u);           // NOT_MEMBER
  EXPECT_EQ(send(64, 1), 3u);          // BAD_RANK
  EXPECT_EQ(send(0xffffffff, 1), 3u);  // BAD_RANK
  for (u32 i = 1; i < kInboxCapacity; ++i) ASSERT_EQ(send(1, i), 0u) << i;
  EXPECT_EQ(send(1, 1), 2u);  // FULL
  EXPECT_EQ(r32(kRegSendStatus), 2u) << "the status stays until the next send";
  u32 source = 0;
  u64 value = 0;
  ASSERT_TRUE(other_->pop(&source, &value));
  EXPECT_EQ(send(1, 1), 0u);  // room again
  const IvcCounters c = device_->counters();
  EXPECT_EQ(c.sent, kInboxCapacity + 1);
  EXPECT_EQ(c.send_full, 1u);
  EXPECT_EQ(c.send_refused, 3u);
  EXPECT_EQ(c.received, 0u);
}

TEST_F(IvcDeviceTest, SendToSelfAndReceive) {
  EXPECT_EQ(send(0, 0xfeedface'00000001), 0u);
  EXPECT_EQ(r32(kRegRecvCount), 1u);
  EXPECT_TRUE(irq_.level()) << "a message to oneself raises the line at once";
  EXPECT_EQ(r32(kRegIrqStatus), kIrqMessage);
  EXPECT_EQ(send(0, 2), 0u);
  EXPECT_EQ(r32(kRegRecvCount), 2u);
  EXPECT_EQ(r64(kRegRecvData), 0xfeedface'00000001u);
  EXPECT_EQ(r32(kRegRecvSrc), 0u);
  EXPECT_TRUE(irq_.level()) << "one message left";
  EXPECT_EQ(r64(kRegRecvData), 2u);
  EXPECT_EQ(r32(kRegRecvCount), 0u);
  EXPECT_FALSE(irq_.level()) << "the last pop lowers the line";
  EXPECT_EQ(r32(kRegIrqStatus), 0u);
  // Empty: 0, and RECV_SRC says so.
  EXPECT_EQ(r64(kRegRecvData), 0u);
  EXPECT_EQ(r32(kRegRecvSrc), 0xffffffffu);
  EXPECT_EQ(device_->counters().received, 2u);
}

TEST_F(IvcDeviceTest, AMessageFromAnotherMemberRaisesTheLine) {
  other_ = join_other();
  ASSERT_TRUE(generation_reaches(1));  // the watcher saw other_ join...
  w32(kRegIrqStatus, kIrqMembers);     // ...which we acknowledge
  ASSERT_FALSE(irq_.level());
  EXPECT_EQ(other_->send(0, 77), IvcGroup::SendStatus::kOk);
  EXPECT_EQ(other_->send(0, 78), IvcGroup::SendStatus::kOk);
  EXPECT_TRUE(wait_until([&] { return irq_.level(); })) << "the doorbell reaches the watcher";
  EXPECT_EQ(r32(kRegIrqStatus), kIrqMessage);
  EXPECT_EQ(r32(kRegRecvCount), 2u);
  EXPECT_EQ(r64(kRegRecvData), 77u);
  EXPECT_EQ(r32(kRegRecvSrc), 1u);
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(r64(kRegRecvData), 78u);
  EXPECT_EQ(r32(kRegRecvSrc), 1u);
  EXPECT_FALSE(irq_.level());
  // And again, from empty.
  EXPECT_EQ(other_->send(0, 79), IvcGroup::SendStatus::kOk);
  EXPECT_TRUE(wait_until([&] { return irq_.level(); }));
  EXPECT_EQ(r64(kRegRecvData), 79u);
  EXPECT_FALSE(irq_.level());
}

TEST_F(IvcDeviceTest, IrqEnableMasksTheLine) {
  EXPECT_EQ(send(0, 1), 0u);
  ASSERT_TRUE(irq_.level());
  w32(kRegIrqEnable, 0);
  EXPECT_FALSE(irq_.level());
  EXPECT_EQ(r32(kRegIrqEnable), 0u);
  EXPECT_EQ(r32(kRegIrqStatus), kIrqMessage) << "the status shows what is masked";
  w32(kRegIrqEnable, kIrqMembers);
  EXPECT_FALSE(irq_.level());
  w32(kRegIrqEnable, kIrqMessage);
  EXPECT_TRUE(irq_.level());
  w32(kRegIrqEnable, 0xffffffff);
  EXPECT_EQ(r32(kRegIrqEnable), kIrqMessage | kIrqMembers) << "only the defined bits";
  EXPECT_TRUE(irq_.level());
  // Masked while a message arrives: no interrupt, the message still counts.
  w32(kRegIrqEnable, 0);
  EXPECT_EQ(send(0, 2), 0u);
  EXPECT_FALSE(irq_.level());
  EXPECT_EQ(r32(kRegRecvCount), 2u);
}

TEST_F(IvcDeviceTest, MembershipChangesSetTheMembersBit) {
  EXPECT_EQ(r32(kRegGeneration), 0u);
  other_ = join_other();
  ASSERT_TRUE(generation_reaches(1));
  EXPECT_EQ(r32(kRegGeneration), 1u);
  EXPECT_EQ(r64(kRegMembers), 3u);
  EXPECT_EQ(r32(kRegIrqStatus), kIrqMembers);
  EXPECT_TRUE(irq_.level());
  // Write-1-to-clear: 0 and the MESSAGE bit do not clear it.
  w32(kRegIrqStatus, 0);
  EXPECT_EQ(r32(kRegIrqStatus), kIrqMembers);
  w32(kRegIrqStatus, kIrqMessage);
  EXPECT_EQ(r32(kRegIrqStatus), kIrqMembers);
  EXPECT_TRUE(irq_.level());
  w32(kRegIrqStatus, kIrqMembers);
  EXPECT_EQ(r32(kRegIrqStatus), 0u);
  EXPECT_FALSE(irq_.level());

  // A member leaving.
  other_.reset();
  ASSERT_TRUE(generation_reaches(2));
  EXPECT_EQ(r32(kRegGeneration), 2u);
  EXPECT_EQ(r64(kRegMembers), 1u);
  EXPECT_EQ(r32(kRegIrqStatus), kIrqMembers);
  EXPECT_TRUE(irq_.level());
  w32(kRegIrqStatus, 0xffffffff);
  EXPECT_EQ(r32(kRegIrqStatus), 0u);
  EXPECT_FALSE(irq_.level());

  // Masked: the status shows the change, the line stays low.
  w32(kRegIrqEnable, kIrqMessage);
  other_ = join_other();
  ASSERT_TRUE(generation_reaches(3));
  EXPECT_EQ(r32(kRegIrqStatus), kIrqMembers);
  EXPECT_FALSE(irq_.level());
  EXPECT_EQ(device_->counters().member_changes, 3u);
}

TEST_F(IvcDeviceTest, ResetDrainsTheInboxAndRestoresTheDefaults) {
  other_ = join_other();
  ASSERT_TRUE(generation_reaches(1));
  for (u64 i = 0; i < 3; ++i) ASSERT_EQ(send(0, i), 0u);
  EXPECT_EQ(r64(kRegRecvData), 0u);  // RECV_SRC = 0
  EXPECT_EQ(send(9, 1), 1u);         // SEND_DEST = 9, SEND_STATUS = NOT_MEMBER
  w32(kRegIrqEnable, kIrqMembers);
  ASSERT_EQ(r32(kRegIrqStatus), kIrqMessage | kIrqMembers);
  ASSERT_TRUE(irq_.level());

  device_->reset();
  EXPECT_EQ(r32(kRegRecvCount), 0u);
  EXPECT_EQ(group_->ready(), 0u);
  EXPECT_EQ(r32(kRegSendDest), 0u);
  EXPECT_EQ(r32(kRegSendStatus), 0u);
  EXPECT_EQ(r32(kRegRecvSrc), 0xffffffffu);
  EXPECT_EQ(r32(kRegIrqStatus), 0u);
  EXPECT_EQ(r32(kRegIrqEnable), kIrqMessage | kIrqMembers);
  EXPECT_FALSE(irq_.level());
  // Membership is the group's, not the device's.
  EXPECT_EQ(r64(kRegMembers), 3u);
  EXPECT_EQ(r32(kRegRank), 0u);
  // And it works as before.
  EXPECT_EQ(send(1, 5), 0u);
  EXPECT_EQ(other_->ready(), 1u);
  EXPECT_EQ(send(0, 6), 0u);
  EXPECT_TRUE(irq_.level());
  EXPECT_EQ(r64(kRegRecvData), 6u);
}

// ------------------------------------------------------------------ device tree

class RecordingFdt final : public FdtBuilder {
 public:
  void begin_node(std::string_view name) override { log.push_back("begin " + std::string(name)); }
  void end_node() override { log.push_back("end"); }
  void prop_empty(std::string_view name) override { log.push_back(std::string(name)); }
  void prop_u32(std::string_view name, u32 value) override {
    log.push_back(std::string(name) + "=" + std::to_string(value));
  }
  void prop_u64(std::string_view name, u64 value) override {
    log.push_back(std::string(name) + "=u64:" + std::to_string(value));
  }
  void prop_cells(std::string_view name, std::span<const u32> values) override {
    std::string s = std::string(name) + "=<";
    for (std::size_t i = 0; i < values.size(); ++i) {
      s += (i ? " " : "") + fmt_hex(values[i]);
    }
    log.push_back(s + ">");
  }
  void prop_string(std::string_view name, std::string_view value) override {
    log.push_back(std::string(name) + "=\"" + std::string(value) + "\"");
  }
  void prop_strings(std::string_view name,
                    std::initializer_list<std::string_view> values) override {
    std::string s = std::string(name) + "=";
    for (std::string_view v : values) s += "\"" + std::string(v) + "\",";
    log.push_back(s);
  }
  static std::string fmt_hex(u32 v) {
    char buffer[16];
    std::snprintf(buffer, sizeof(buffer), "0x%x", v);
    return buffer;
  }

  std::vector<std::string> log;
};

TEST_F(IvcDeviceTest, DescribesAGenericUioNode) {
  RecordingFdt fdt;
  FdtPlacement where;
  where.base = 0x1001'1000;
  where.size = 0x1000;
  where.irq = 12;
  where.interrupt_parent = 3;
  where.phandle = 9;
  device_->describe(fdt, where);
  EXPECT_EQ(fdt.log, (std::vector<std::string>{
                         "begin ivc@10011000",
                         "compatible=\"generic-uio\"",
                         // map0: the registers; map1: the shared memory window.
                         "reg=<0x0 0x10011000 0x0 0x1000 0x200 0x0 0x0 0x100000>",
                         "interrupt-parent=3",
                         "interrupts=12",
                         "end",
                     }));

  // The window of another slot (its own high address cell); with no interrupt controller,
  // no interrupts.
  const std::string name = "big";
  auto big = std::make_unique<IvcGroup>(JoinOptions{dir_.path(), name, kMiB, -1});
  NullIrqLine line;
  IvcDevice device(*big, line, kShmBase + 0x10'0000'0000, 0);
  RecordingFdt plain;
  where.irq = 0;
  device.describe(plain, where);
  EXPECT_EQ(plain.log, (std::vector<std::string>{
                           "begin ivc@10011000",
                           "compatible=\"generic-uio\"",
                           "reg=<0x0 0x10011000 0x0 0x1000 0x210 0x0 0x0 0x100000>",
                           "end",
                       }));
}

}  // namespace
}  // namespace dvmm::devices::ivc
