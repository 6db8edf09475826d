#include "cluster/machine_description.hpp"

#include <gtest/gtest.h>

#include "machine/memory_map.hpp"

namespace dvmm::cluster {
namespace {

MachineDescription sample() {
  MachineDescription d;
  d.nodes = 3;
  d.vcpus_per_node = 2;
  d.memory_per_node = u64{128} << 20;
  d.bootargs = "console=ttyS0 quiet";
  d.time_epoch_ns = 123456789;
  return d;
}

TEST(MachineDescriptionTest, RoundTrip) {
  const auto d = sample();
  const auto back = MachineDescription::decode(d.encode());
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, d);
}

TEST(MachineDescriptionTest, RejectsMalformedAndOutOfRange) {
  auto bytes = sample().encode();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(MachineDescription::decode(std::span(bytes).first(n))) << n;
  }
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(MachineDescription::decode(longer));
  auto bad_magic = bytes;
  bad_magic[0] ^= 1;
  EXPECT_FALSE(MachineDescription::decode(bad_magic));
  auto d = sample();
  d.nodes = 0;
  EXPECT_FALSE(MachineDescription::decode(d.encode()));
  d = sample();
  d.vcpus_per_node = 40;  // 120 harts
  EXPECT_FALSE(MachineDescription::decode(d.encode()));
  d = sample();
  d.memory_per_node = 4095;
  EXPECT_FALSE(MachineDescription::decode(d.encode()));
}

TEST(MachineDescriptionTest, MachineConfigMirrorsTheNodes) {
  const auto c = sample().machine_config();
  EXPECT_EQ(c.vcpus, 6u);
  EXPECT_EQ(c.memory_size, u64{384} << 20);
  EXPECT_EQ(c.boot_memory_size, u64{128} << 20);
  ASSERT_EQ(c.numa_nodes.size(), 3u);
  EXPECT_EQ(c.numa_nodes[1].harts, (std::vector<HartId>{2, 3}));
  EXPECT_EQ(c.numa_nodes[2].mem_base, machine::kRamBase + (u64{256} << 20));
  EXPECT_EQ(c.numa_nodes[2].mem_size, u64{128} << 20);
  EXPECT_EQ(c.numa_distance[0], (std::vector<u32>{10, 20, 20}));
  EXPECT_EQ(c.numa_distance[2][2], 10u);
  MachineDescription one = sample();
  one.nodes = 1;
  EXPECT_TRUE(one.machine_config().numa_nodes.empty());
}

}  // namespace
}  // namespace dvmm::cluster
