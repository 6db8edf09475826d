#include "machine/fdt_writer.hpp"

#include <gtest/gtest.h>
#include <libfdt.h>

#include <sstream>
#include <string>
#include <vector>

#include "machine/machine.hpp"

namespace dvmm::machine {
namespace {

// Reads properties back from a blob with libfdt.
class Blob {
 public:
  explicit Blob(std::vector<u8> b) : b_(std::move(b)) {}
  const void* fdt() const { return b_.data(); }
  int node(const char* path) const { return fdt_path_offset(fdt(), path); }
  bool has(const char* path, const char* prop) const {
    const int n = node(path);
    return n >= 0 && fdt_getprop(fdt(), n, prop, nullptr) != nullptr;
  }
  std::vector<u32> cells(const char* path, const char* prop) const {
    int len = 0;
    const int n = node(path);
    const auto* p = static_cast<const fdt32_t*>(fdt_getprop(fdt(), n, prop, &len));
    std::vector<u32> out;
    if (p == nullptr) return out;
    for (int i = 0; i < len / 4; ++i) out.push_back(fdt32_to_cpu(p[i]));
    return out;
  }
  u32 u32_of(const char* path, const char* prop) const {
    const auto c = cells(path, prop);
    return c.size() == 1 ? c[0] : 0xdeadbeef;
  }
  u64 u64_of(const char* path, const char* prop) const {
    const auto c = cells(path, prop);
    return c.size() == 2 ? (u64{c[0]} << 32) | c[1] : 0xdeadbeef;
  }
  // A string list joined with '|'.
  std::string str(const char* path, const char* prop) const {
    int len = 0;
    const auto* p = static_cast<const char*>(fdt_getprop(fdt(), node(path), prop, &len));
    if (p == nullptr) return "<missing>";
    std::string s(p, static_cast<std::size_t>(len));
    while (!s.empty() && s.back() == '\0') s.pop_back();
    for (char& c : s) {
      if (c == '\0') c = '|';
    }
    return s;
  }

 private:
  std::vector<u8> b_;
};

MachineConfig config(unsigned vcpus) {
  MachineConfig c;
  c.vcpus = vcpus;
  c.memory_size = u64{128} << 20;
  c.bootargs = "console=ttyS0 quiet";
  return c;
}

TEST(FdtWriter, GrowsItsBuffer) {
  FdtWriter w(64);  // far too small: must grow with fdt_resize
  for (int i = 0; i < 50; ++i) {
    w.begin_node("node" + std::to_string(i));
    w.prop_string("a-long-property-name", std::string(100, 'x'));
    w.end_node();
  }
  const std::vector<u8> blob = w.finish();
  ASSERT_EQ(fdt_check_header(blob.data()), 0);
  EXPECT_GE(fdt_path_offset(blob.data(), "/node49"), 0);
}

TEST(DeviceTree, BoardNodesAndProperties) {
  Machine m(config(2), {});
  const Blob b(m.build_device_tree(std::pair<Gpa, Gpa>{0x8400'0000, 0x8410'0000}));
  ASSERT_EQ(fdt_check_header(b.fdt()), 0);

  EXPECT_EQ(b.u32_of("/", "#address-cells"), 2u);
  EXPECT_EQ(b.u32_of("/", "#size-cells"), 2u);

  EXPECT_EQ(b.u32_of("/cpus", "timebase-frequency"), 10'000'000u);
  for (const char* cpu : {"/cpus/cpu@0", "/cpus/cpu@1"}) {
    EXPECT_EQ(b.str(cpu, "device_type"), "cpu");
    EXPECT_EQ(b.str(cpu, "status"), "okay");
    EXPECT_EQ(b.str(cpu, "compatible"), "riscv");
    EXPECT_EQ(b.str(cpu, "riscv,isa"), "rv64imafdc_zicsr_zifencei_zihintpause_sstc");
    EXPECT_EQ(b.str(cpu, "mmu-type"), "riscv,sv48");
    EXPECT_FALSE(b.has(cpu, "numa-node-id"));  // one node: no NUMA properties
  }
  EXPECT_EQ(b.u32_of("/cpus/cpu@1", "reg"), 1u);
  EXPECT_EQ(b.str("/cpus/cpu@0/interrupt-controller", "compatible"), "riscv,cpu-intc");
  EXPECT_EQ(b.u32_of("/cpus/cpu@0/interrupt-controller", "#interrupt-cells"), 1u);
  EXPECT_TRUE(b.has("/cpus/cpu@0/interrupt-controller", "interrupt-controller"));
  const u32 intc0 = b.u32_of("/cpus/cpu@0/interrupt-controller", "phandle");
  const u32 intc1 = b.u32_of("/cpus/cpu@1/interrupt-controller", "phandle");
  EXPECT_NE(intc0, intc1);

  EXPECT_EQ(b.str("/memory@80000000", "device_type"), "memory");
  EXPECT_EQ(b.cells("/memory@80000000", "reg"), (std::vector<u32>{0, 0x8000'0000, 0, 0x0800'0000}));

  const char* plic = "/soc/plic@c000000";
  EXPECT_EQ(b.str(plic, "compatible"), "sifive,plic-1.0.0|riscv,plic0");
  EXPECT_EQ(b.u32_of(plic, "riscv,ndev"), 63u);
  EXPECT_EQ(b.cells(plic, "reg"), (std::vector<u32>{0, 0x0c00'0000, 0, 0x0400'0000}));
  EXPECT_EQ(b.cells(plic, "interrupts-extended"), (std::vector<u32>{intc0, 9, intc1, 9}));
  const u32 plic_phandle = b.u32_of(plic, "phandle");

  const char* uart = "/soc/serial@10000000";
  EXPECT_EQ(b.str(uart, "compatible"), "ns16550a");
  EXPECT_EQ(b.u32_of(uart, "interrupts"), 10u);
  EXPECT_EQ(b.u32_of(uart, "interrupt-parent"), plic_phandle);
  EXPECT_EQ(b.u32_of(uart, "clock-frequency"), 3'686'400u);
  EXPECT_EQ(b.u32_of(uart, "reg-shift"), 0u);
  EXPECT_EQ(b.u32_of(uart, "reg-io-width"), 1u);

  const char* test = "/soc/test@100000";
  EXPECT_EQ(b.str(test, "compatible"), "sifive,test1|sifive,test0|syscon");
  const u32 test_phandle = b.u32_of(test, "phandle");
  EXPECT_EQ(b.str("/poweroff", "compatible"), "syscon-poweroff");
  EXPECT_EQ(b.u32_of("/poweroff", "regmap"), test_phandle);
  EXPECT_EQ(b.u32_of("/poweroff", "value"), 0x5555u);
  EXPECT_EQ(b.str("/reboot", "compatible"), "syscon-reboot");
  EXPECT_EQ(b.u32_of("/reboot", "value"), 0x7777u);
  EXPECT_EQ(b.u32_of("/reboot", "offset"), 0u);

  EXPECT_EQ(b.str("/chosen", "bootargs"), "console=ttyS0 quiet");
  EXPECT_EQ(b.str("/chosen", "stdout-path"), "/soc/serial@10000000");
  EXPECT_EQ(b.str("/aliases", "serial0"), "/soc/serial@10000000");
  EXPECT_EQ(b.u64_of("/chosen", "linux,initrd-start"), 0x8400'0000u);
  EXPECT_EQ(b.u64_of("/chosen", "linux,initrd-end"), 0x8410'0000u);
  EXPECT_FALSE(b.has("/", "distance-map"));
}

TEST(DeviceTree, NoInitrdNoInitrdProperties) {
  Machine m(config(1), {});
  const Blob b(m.build_device_tree(std::nullopt));
  EXPECT_FALSE(b.has("/chosen", "linux,initrd-start"));
  EXPECT_LT(b.node("/cpus/cpu@1"), 0);
}

TEST(DeviceTree, PatchInitrdInPlace) {
  Machine m(config(1), {});
  std::vector<u8> blob = m.build_device_tree(std::pair<Gpa, Gpa>{0, 0});
  const std::size_t size = blob.size();
  patch_initrd(blob, 0x8765'4000, 0x8766'0000);
  EXPECT_EQ(blob.size(), size);
  const Blob b(std::move(blob));
  EXPECT_EQ(b.u64_of("/chosen", "linux,initrd-start"), 0x8765'4000u);
  EXPECT_EQ(b.u64_of("/chosen", "linux,initrd-end"), 0x8766'0000u);
}

TEST(DeviceTree, NumaOnlyWithSeveralNodes) {
  MachineConfig c = config(4);
  c.numa_nodes = {{{0, 1}, 0x8000'0000, 0x0400'0000}, {{2, 3}, 0x8400'0000, 0x0400'0000}};
  c.numa_distance = {{10, 20}, {20, 10}};
  Machine m(c, {});
  const Blob b(m.build_device_tree(std::nullopt));
  EXPECT_EQ(b.u32_of("/cpus/cpu@0", "numa-node-id"), 0u);
  EXPECT_EQ(b.u32_of("/cpus/cpu@3", "numa-node-id"), 1u);
  EXPECT_EQ(b.u32_of("/memory@84000000", "numa-node-id"), 1u);
  EXPECT_EQ(b.cells("/memory@84000000", "reg"), (std::vector<u32>{0, 0x8400'0000, 0, 0x0400'0000}));
  EXPECT_EQ(b.str("/distance-map", "compatible"), "numa-distance-map-v1");
  EXPECT_EQ(b.cells("/distance-map", "distance-matrix"),
            (std::vector<u32>{0, 0, 10, 0, 1, 20, 1, 0, 20, 1, 1, 10}));
}

}  // namespace
}  // namespace dvmm::machine
