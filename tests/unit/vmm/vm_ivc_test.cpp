// The VM's inter-VM communication groups (vmm/vm_ivc.hpp): the --ivc spec parser, and VmIvc
// joining groups and placing their devices and shared memory in a machine.
#include "vmm/vm_ivc.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "machine/memory_map.hpp"
#include "unit/devices/ivc_test_util.hpp"
#include "vmm/vm.hpp"

namespace dvmm::vmm {
namespace {

using test::TempRuntimeDir;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
namespace ivc = devices::ivc;

constexpr u64 kMiB = u64{1} << 20;

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// ------------------------------------------------------------------ parse_ivc_spec

TEST(ParseIvcSpec, AGroupAlone) {
  const IvcSpec s = parse_ivc_spec("g");
  EXPECT_EQ(s.group, "g");
  EXPECT_EQ(s.shm_size, 0u);
  EXPECT_EQ(s.rank, -1);
  EXPECT_EQ(s.expected_members, 0u);
}

TEST(ParseIvcSpec, EveryOption) {
  IvcSpec s = parse_ivc_spec("g,size=64M,rank=1,members=2");
  EXPECT_EQ(s.group, "g");
  EXPECT_EQ(s.shm_size, 64 * kMiB);
  EXPECT_EQ(s.rank, 1);
  EXPECT_EQ(s.expected_members, 2u);

  s = parse_ivc_spec("my-group_2.x,members=64,rank=63,size=4K");  // any order
  EXPECT_EQ(s.group, "my-group_2.x");
  EXPECT_EQ(s.shm_size, 4096u);
  EXPECT_EQ(s.rank, 63);
  EXPECT_EQ(s.expected_members, 64u);

  EXPECT_EQ(parse_ivc_spec("g,size=16G").shm_size, u64{16} << 30);
  EXPECT_EQ(parse_ivc_spec("g,size=2").shm_size, 2 * kMiB);  // a bare number is MiB
  EXPECT_EQ(parse_ivc_spec("g,rank=0").rank, 0);
  EXPECT_EQ(parse_ivc_spec("g,members=1").expected_members, 1u);
  EXPECT_EQ(parse_ivc_spec("g,rank=5").expected_members, 0u);
  EXPECT_EQ(parse_ivc_spec(std::string(ivc::kMaxGroupNameLength, 'x')).group.size(),
            ivc::kMaxGroupNameLength);
}

TEST(ParseIvcSpec, ErrorsNameTheBadPart) {
  const struct {
    const char* text;
    const char* names;  // what the message must mention
  } cases[] = {
      {"", "empty"},
      {",size=1M", "empty"},
      {"a/b", "letters, digits"},
      {"a b", "letters, digits"},
      {"..", "'.' or '..'"},
      {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "longer than 48"},
      {"g,colour=red", "unknown option 'colour'"},
      {"g,Size=1M", "unknown option 'Size'"},
      {"g,size", "'size' is not KEY=VALUE"},
      {"g,size=1M,rank", "'rank' is not KEY=VALUE"},
      {"g,,size=1M", "'' is not KEY=VALUE"},
      {"g,size=", "size"},
      {"g,size=12Q", "12Q"},
      {"g,size=0", "size must be"},
      {"g,size=0K", "size must be"},
      {"g,size=4097K", "size must be a multiple of 4 KiB"},
      {"g,size=1000B", "size must be a multiple of 4 KiB"},
      {"g,size=17G", "size must be"},
      {"g,size=16385M", "size must be"},
      {"g,size=1T", "size must be"},
      {"g,rank=64", "rank must be a number from 0 to 63"},
      {"g,rank=-1", "rank must be"},
      {"g,rank=x", "rank must be"},
      {"g,rank=1x", "rank must be"},
      {"g,rank=", "rank must be"},
      {"g,rank=99999999999", "rank must be"},
      {"g,members=0", "members must be a number from 1 to 64"},
      {"g,members=65", "members must be"},
      {"g,members=", "members must be"},
      {"g,rank=2,members=2", "rank 2 is not below members=2"},
      {"g,members=1,rank=1", "rank 1 is not below members=1"},
  };
  for (const auto& c : cases) {
    try {
      parse_ivc_spec(c.text);
      ADD_FAILURE() << "accepted '" << c.text << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), AllOf(StartsWith("bad inter-VM group '" + std::string(c.text) + "': "),
                                  HasSubstr(c.names)))
          << c.text;
    }
  }
}

// The range named for members= is the one accepted (1..64), whichever way it is out of range.
TEST(ParseIvcSpec, TheMembersRangeIsStatedAsAccepted) {
  for (const char* text : {"g,members=0", "g,members=65", "g,members=x"}) {
    try {
      parse_ivc_spec(text);
      ADD_FAILURE() << text;
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr("from 1 to 64")) << text;
    }
  }
}

// ------------------------------------------------------------------ VmIvc

class VmIvcTest : public ::testing::Test {
 protected:
  VmIvcTest() : machine_(config(), {}) {}
  static machine::MachineConfig config() {
    machine::MachineConfig c;
    c.vcpus = 1;
    c.memory_size = 64 * kMiB;
    return c;
  }
  static IvcSpec spec(const std::string& group, u64 size = kMiB, int rank = -1,
                      unsigned members = 0) {
    IvcSpec s;
    s.group = group;
    s.shm_size = size;
    s.rank = rank;
    s.expected_members = members;
    return s;
  }
  std::string error_of(const std::vector<IvcSpec>& specs, unsigned node_count = 1) {
    try {
      VmIvc v(specs, dir_.path(), machine_, node_count);
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return {};
  }

  TempRuntimeDir dir_;
  machine::Machine machine_;
};

TEST_F(VmIvcTest, NoGroupsNoDevices) {
  VmIvc v({}, dir_.path(), machine_, 4);  // any node count without --ivc
  EXPECT_TRUE(v.stats().empty());
  EXPECT_TRUE(v.describe().empty());
  EXPECT_EQ(machine_.ram().window_for(machine::kIvcShmBase), nullptr);
  EXPECT_EQ(machine_.mmio_read(machine::kIvcBase, 4), 0u);
}

TEST_F(VmIvcTest, JoinsAndPlacesTheDeviceAndTheSharedMemory) {
  {
    VmIvc v({spec("one", kMiB, -1, 2), spec("two", 2 * kMiB)}, dir_.path(), machine_, 1);
    // The registers of slot 0 and 1.
    EXPECT_EQ(machine_.mmio_read(machine::kIvcBase + ivc::kRegMagic, 4), ivc::kMagic);
    EXPECT_EQ(machine_.mmio_read(machine::kIvcBase + ivc::kRegShmSize, 8), kMiB);
    EXPECT_EQ(machine_.mmio_read(machine::kIvcBase + ivc::kRegExpected, 4), 2u);
    EXPECT_EQ(machine_.mmio_read(machine::ivc_slot_base(1) + ivc::kRegShmSize, 8), 2 * kMiB);
    EXPECT_EQ(machine_.mmio_read(machine::ivc_slot_base(1) + ivc::kRegGroupName, 4),
              u64{'t'} | (u64{'w'} << 8) | (u64{'o'} << 16));
    // The shared memory windows.
    const memory::MemoryWindow* w0 = machine_.ram().window_for(machine::ivc_shm_base(0));
    const memory::MemoryWindow* w1 = machine_.ram().window_for(machine::ivc_shm_base(1) + 5);
    ASSERT_NE(w0, nullptr);
    ASSERT_NE(w1, nullptr);
    EXPECT_EQ(w0->base, machine::kIvcShmBase);
    EXPECT_EQ(w0->size, kMiB);
    EXPECT_EQ(w1->base, machine::kIvcShmBase + machine::kIvcShmStride);
    EXPECT_EQ(w1->size, 2 * kMiB);
    EXPECT_EQ(machine_.ram().window_for(machine::ivc_shm_base(0) + kMiB), nullptr);
    // ...are the groups' memory: another member sees what goes through the window.
    ivc::IvcGroup other(ivc::JoinOptions{dir_.path(), "one", 0, -1});
    EXPECT_EQ(other.rank(), 1u);
    w0->host[100] = 0x42;
    EXPECT_EQ(other.shm()[100], 0x42);
    EXPECT_EQ(machine_.mmio_read(machine::kIvcBase + ivc::kRegMembers, 8), 3u);

    const std::vector<IvcGroupStats> stats = v.stats();
    ASSERT_EQ(stats.size(), 2u);
    EXPECT_EQ(stats[0].group, "one");
    EXPECT_EQ(stats[0].rank, 0u);
    EXPECT_EQ(stats[0].members, 3u);
    EXPECT_EQ(stats[1].group, "two");
    EXPECT_EQ(v.describe(), (std::vector<std::string>{
                                "ivc0: group one, rank 0, 1 MiB shared memory at 0x20000000000",
                                "ivc1: group two, rank 0, 2 MiB shared memory at 0x21000000000"}));

    // The device tree has both nodes, bound by the generic UIO driver.
    const std::vector<u8> dtb = machine_.build_device_tree(std::nullopt);
    const std::string blob(dtb.begin(), dtb.end());
    EXPECT_NE(blob.find("ivc@10010000"), std::string::npos);
    EXPECT_NE(blob.find("ivc@10011000"), std::string::npos);
    EXPECT_NE(blob.find("generic-uio"), std::string::npos);
  }
  // Destroyed: left both groups (the last member of each).
  EXPECT_FALSE(exists(dir_.group_dir("one")));
  EXPECT_FALSE(exists(dir_.group_dir("two")));
}

TEST_F(VmIvcTest, OneNodeOnly) {
  EXPECT_THAT(error_of({spec("g")}, 2), AllOf(HasSubstr("--ivc"), HasSubstr("one node")));
  EXPECT_FALSE(exists(dir_.group_dir("g")));
}

TEST_F(VmIvcTest, AGroupGivenTwice) {
  EXPECT_THAT(error_of({spec("g"), spec("h"), spec("g")}),
              AllOf(HasSubstr("group g"), HasSubstr("twice")));
  // What was joined before the error was left again.
  EXPECT_FALSE(exists(dir_.group_dir("g")));
  EXPECT_FALSE(exists(dir_.group_dir("h")));
}

TEST_F(VmIvcTest, AtMostFourGroups) {
  EXPECT_THAT(error_of({spec("a"), spec("b"), spec("c"), spec("d"), spec("e")}),
              HasSubstr("at most 4"));
  EXPECT_FALSE(exists(dir_.path() + "/ivc/a"));
  VmIvc four({spec("a"), spec("b"), spec("c"), spec("d")}, dir_.path(), machine_, 1);
  EXPECT_EQ(four.stats().size(), 4u);
}

TEST_F(VmIvcTest, AGroupThatRefusesTheVm) {
  ivc::IvcGroup first(ivc::JoinOptions{dir_.path(), "g", kMiB, 0});
  EXPECT_THAT(error_of({spec("g", 2 * kMiB)}),
              AllOf(StartsWith("--ivc: "), HasSubstr("1 MiB"), HasSubstr("2 MiB")));
  EXPECT_THAT(error_of({spec("g", 0, 0)}), AllOf(StartsWith("--ivc: "), HasSubstr("rank 0")));
  // members=1: rank 0 is taken, so this VM would be rank 1, which the guest would not wait for.
  EXPECT_THAT(error_of({spec("g", 0, -1, 1)}),
              AllOf(HasSubstr("as rank 1"), HasSubstr("members=1")));
  EXPECT_EQ(first.members(), 1u) << "the refused VMs left";
}

// The Vm has the kernel command line bind uio_pdrv_genirq to the devices, once.
TEST(VmWithIvc, TheCommandLineBindsTheUioDriver) {
  TempRuntimeDir dir;
  machine::MachineConfig c;
  c.vcpus = 1;
  c.memory_size = 64 * kMiB;
  c.bootargs = "console=ttyS0";
  VmOptions o;
  o.devices.ivcs = {parse_ivc_spec("g,size=1M")};
  o.devices.runtime_dir = dir.path();
  {
    Vm vm(c, o);
    EXPECT_EQ(vm.machine().config().bootargs, "console=ttyS0 uio_pdrv_genirq.of_id=generic-uio");
    EXPECT_NE(vm.machine().ram().window_for(machine::kIvcShmBase), nullptr);
    EXPECT_TRUE(exists(dir.group_dir("g")));
  }
  EXPECT_FALSE(exists(dir.group_dir("g"))) << "the Vm left the group";
  c.bootargs = "uio_pdrv_genirq.of_id=generic-uio quiet";
  Vm vm(c, o);
  EXPECT_EQ(vm.machine().config().bootargs, "uio_pdrv_genirq.of_id=generic-uio quiet");
}

}  // namespace
}  // namespace dvmm::vmm
