// The machine description of a distributed VM (issue 4): what rank 0 tells every node on
// Channel::kControl so that all of them build the same Machine. N nodes x K vCPUs, hart h
// on node h / K; RAM = N x M bytes, one contiguous range from kRamBase, node r's slice
// homed at r; the guest's NUMA topology mirrors the nodes (one NUMA node per dvmm node,
// distance 10 local, 20 remote); the boot images go into rank 0's slice.
//
// Threads: plain values.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/types.hpp"
#include "machine/machine.hpp"

namespace dvmm::cluster {

struct MachineDescription {
  u32 nodes = 1;
  u32 vcpus_per_node = 1;
  u64 memory_per_node = u64{256} << 20;
  std::string bootargs;
  // Rank 0's guest-time epoch (CLOCK_MONOTONIC ns; one host).
  u64 time_epoch_ns = 0;

  std::vector<u8> encode() const;
  // nullopt for malformed bytes or values out of range.
  static std::optional<MachineDescription> decode(std::span<const u8> bytes);
  // The board every node builds (kernel and initrd paths are left for rank 0 to fill in).
  machine::MachineConfig machine_config() const;
  bool operator==(const MachineDescription&) const = default;
};

}  // namespace dvmm::cluster
