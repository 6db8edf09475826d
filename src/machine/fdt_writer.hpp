// The flattened device tree of the board, written with libfdt's sequential-write API. This
// file is the only user of libfdt in dvmm (STYLE: one owner per third-party library).
//
// FdtWriter is the libfdt implementation of devices::FdtBuilder; build_device_tree() writes
// the whole tree from a DeviceTreeConfig: /cpus (timebase, one cpu@N per hart with its
// riscv,cpu-intc child), /memory, /soc (each device describes its own node), /poweroff and
// /reboot (syscon nodes on the finisher), /chosen. NUMA properties (numa-node-id and a
// distance map) appear only when more than one node is configured.
//
// Threads: plain objects; use one from one thread at a time.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "devices/mmio_device.hpp"

namespace dvmm::machine {

// The machine layer's error: bad boot inputs (kernel, initrd, sizes) and device-tree
// failures. what() is one line meant for the user.
class MachineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class FdtWriter final : public devices::FdtBuilder {
 public:
  // Starts a tree: header, empty reserve map, the root node opened.
  explicit FdtWriter(std::size_t initial_capacity = 16 * 1024);

  void begin_node(std::string_view name) override;
  void end_node() override;
  void prop_empty(std::string_view name) override;
  void prop_u32(std::string_view name, u32 value) override;
  void prop_u64(std::string_view name, u64 value) override;
  void prop_cells(std::string_view name, std::span<const u32> cells) override;
  void prop_string(std::string_view name, std::string_view value) override;
  void prop_strings(std::string_view name, std::initializer_list<std::string_view> values) override;
  using devices::FdtBuilder::prop_cells;

  // A fresh phandle (1, 2, ...).
  u32 alloc_phandle() { return next_phandle_++; }
  // Full path of the node most recently closed (e.g. the node a device just described),
  // for references such as stdout-path.
  const std::string& last_closed_path() const { return last_closed_path_; }

  // Closes the root node and returns the finished blob. The writer is spent afterwards.
  std::vector<u8> finish();

 private:
  // Runs a libfdt call, growing the buffer while it reports no space.
  template <typename F>
  void call(const char* what, F&& f);
  void prop_raw(std::string_view name, const void* data, std::size_t len);

  std::vector<u8> buf_;
  std::vector<std::string> path_;  // open nodes, "" for the root
  std::string last_closed_path_;
  u32 next_phandle_ = 1;
  bool finished_ = false;
};

// What the device tree describes.
struct DeviceTreeConfig {
  // Linux 6.1 (arch/riscv/kernel/cpufeature.c) reads single letters up to the first '_',
  // then '_'-separated multi-letter extensions; of these it knows sstc, zihintpause, svpbmt,
  // zicbom, svinval and sscofpmf, and skips the others (zicsr, zifencei).
  static constexpr const char* kDefaultIsa = "rv64imafdc_zicsr_zifencei_zihintpause_sstc";

  unsigned harts = 1;
  std::string isa = kDefaultIsa;
  // The hart implements Sv39 and Sv48; Linux probes satp downwards from what this allows.
  std::string mmu_type = "riscv,sv48";
  u64 timebase_hz = 0;
  Gpa ram_base = 0;
  u64 ram_size = 0;

  // NUMA (issue 4): node n holds these harts and this slice of RAM. Emitted only when there
  // is more than one node; distance[i][j] is the SLIT-style distance (10 = local).
  struct NumaNode {
    std::vector<HartId> harts;
    Gpa mem_base = 0;
    u64 mem_size = 0;
  };
  std::vector<NumaNode> numa_nodes;
  std::vector<std::vector<u32>> numa_distance;

  struct Device {
    enum class Role { kPlain, kInterruptController, kConsole, kSyscon };
    const devices::MmioDevice* device = nullptr;
    Gpa base = 0;
    u32 irq = 0;  // source on the interrupt controller, 0 = none
    Role role = Role::kPlain;
  };
  std::vector<Device> devices;  // in address order, under /soc

  std::string bootargs;
  // Written as linux,initrd-start/end when present; patch_initrd() can fill them in later
  // (their size does not depend on the values).
  std::optional<std::pair<Gpa, Gpa>> initrd;
};

std::vector<u8> build_device_tree(const DeviceTreeConfig& config);

// Rewrites /chosen's linux,initrd-start and -end in a finished blob in place (they must
// exist). Used once the loader knows where the initrd goes, which depends on the blob size.
void patch_initrd(std::vector<u8>& blob, Gpa start, Gpa end);

}  // namespace dvmm::machine
