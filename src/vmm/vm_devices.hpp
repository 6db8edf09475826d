// The VM's virtio devices: what the user asked for (--disk, --net, --rng, --vconsole, or the
// configuration file), parsed into specs, and the devices built from them on the node that
// holds each one. Slots are filled in a fixed order — disks, network cards, the rng, the
// console — so that every node of a distributed VM builds the same board and the guest
// names disks in the order given (vda, vdb, ...).
//
// A device on another node is a stand-in here that only describes itself in the device
// tree; NodeLinks forwards its MMIO and its interrupts. Backends (image files, network) are
// opened in the constructor, so a missing or corrupt image is an error before boot.
//
// Threads: built and destroyed on the VM's owner thread while no vCPU runs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "devices/block/block_image.hpp"
#include "devices/net/net_backend.hpp"
#include "devices/virtio/virtio_mmio.hpp"
#include "machine/machine.hpp"
#include "vmm/guest_dma.hpp"
#include "vmm/node_links.hpp"
#include "vmm/vm_ivc.hpp"

namespace dvmm::vmm {

struct DiskSpec {
  std::string path;
  devices::ImageOptions image;
  int node = -1;  // -1: node 0
  std::string serial;
};

// "PATH[,format=raw|qcow2][,readonly=on|off][,node=N][,serial=TEXT]"; a path that holds a
// comma can be given as "file=PATH,...". Throws std::invalid_argument naming the bad part.
DiskSpec parse_disk_spec(std::string_view text);

struct VmDeviceSpecs {
  std::vector<DiskSpec> disks;
  std::vector<devices::NetSpec> nets;
  bool rng = false;
  // virtio-console: the file its output is appended to ("" = no virtio console).
  std::string console_output;
  // Inter-VM communication groups (--ivc; built by VmIvc, not VmDevices).
  std::vector<IvcSpec> ivcs;
  // Where switches and inter-VM groups live (control::control_dir()).
  std::string runtime_dir;
  bool empty() const {
    return disks.empty() && nets.empty() && !rng && console_output.empty() && ivcs.empty();
  }
};

struct VirtioDeviceStats {
  std::string name;
  std::string kind;  // "block", "net", "rng", "console"
  unsigned node = 0;
  devices::VirtioCounters transport;
  std::string detail;  // device counters, one line
};

class VmDevices {
 public:
  // Places every device in `machine` and builds those of this node. `node_count` bounds
  // node=N. Throws std::runtime_error with a message for the user.
  VmDevices(const VmDeviceSpecs& specs, machine::Machine& machine, NodeLinks& links,
            unsigned node_count, std::function<bool()> stopping,
            std::function<void(const std::string&)> log);
  ~VmDevices();
  VmDevices(const VmDevices&) = delete;
  VmDevices& operator=(const VmDevices&) = delete;

  // Counters of this node's devices.
  std::vector<VirtioDeviceStats> stats() const;
  // One line per local device, for --verbose logs.
  std::vector<std::string> describe() const;

 private:
  struct Local;
  GuestDma dma_;
  std::vector<std::unique_ptr<devices::IrqLine>> lines_;
  std::vector<std::unique_ptr<devices::MmioDevice>> stand_ins_;
  std::vector<std::unique_ptr<Local>> local_;
};

}  // namespace dvmm::vmm
