#include "cluster/machine_description.hpp"

#include "cluster/transport.hpp"
#include "cluster/wire_codec.hpp"
#include "machine/memory_map.hpp"

namespace dvmm::cluster {

namespace {
constexpr u32 kMagic = 0x4453'4d44;  // "DMSD"
constexpr u32 kVersion = 1;
constexpr u32 kLocalDistance = 10;
constexpr u32 kRemoteDistance = 20;
}  // namespace

std::vector<u8> MachineDescription::encode() const {
  WireWriter w;
  w.u32v(kMagic);
  w.u32v(kVersion);
  w.u32v(nodes);
  w.u32v(vcpus_per_node);
  w.u64v(memory_per_node);
  w.str(bootargs);
  w.u64v(time_epoch_ns);
  return w.take();
}

std::optional<MachineDescription> MachineDescription::decode(std::span<const u8> bytes) {
  WireReader r(bytes);
  u32 magic = 0, version = 0;
  MachineDescription d;
  if (!r.u32v(magic) || magic != kMagic || !r.u32v(version) || version != kVersion ||
      !r.u32v(d.nodes) || !r.u32v(d.vcpus_per_node) || !r.u64v(d.memory_per_node) ||
      !r.str(d.bootargs) || !r.u64v(d.time_epoch_ns) || !r.at_end()) {
    return std::nullopt;
  }
  if (d.nodes == 0 || d.nodes > kMaxNodes || d.vcpus_per_node == 0 ||
      u64{d.nodes} * d.vcpus_per_node > 64 || d.memory_per_node == 0 ||
      d.memory_per_node % kPageSize != 0 || d.memory_per_node > (u64{1} << 40)) {
    return std::nullopt;
  }
  return d;
}

machine::MachineConfig MachineDescription::machine_config() const {
  machine::MachineConfig c;
  c.vcpus = nodes * vcpus_per_node;
  c.memory_size = u64{nodes} * memory_per_node;
  c.bootargs = bootargs;
  c.boot_memory_size = memory_per_node;
  if (nodes > 1) {
    for (u32 n = 0; n < nodes; ++n) {
      machine::DeviceTreeConfig::NumaNode node;
      for (u32 k = 0; k < vcpus_per_node; ++k) node.harts.push_back(n * vcpus_per_node + k);
      node.mem_base = machine::kRamBase + u64{n} * memory_per_node;
      node.mem_size = memory_per_node;
      c.numa_nodes.push_back(std::move(node));
      std::vector<u32> row(nodes, kRemoteDistance);
      row[n] = kLocalDistance;
      c.numa_distance.push_back(std::move(row));
    }
  }
  return c;
}

}  // namespace dvmm::cluster
