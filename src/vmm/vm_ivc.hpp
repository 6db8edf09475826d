// The VM's inter-VM communication groups (--ivc, docs/IVC.md): the spec parsed from the
// command line or the configuration file, and, per group, the membership (IvcGroup) and
// the device placed in the machine with the shared memory mapped as a memory window.
//
// Threads: built and destroyed on the VM's owner thread while no vCPU runs.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "devices/ivc/ivc_device.hpp"
#include "devices/ivc/ivc_group.hpp"
#include "machine/machine.hpp"

namespace dvmm::vmm {

struct IvcSpec {
  std::string group;
  u64 shm_size = 0;  // 0: the group's, or the default when this VM creates it
  int rank = -1;     // -1: the lowest free rank
  unsigned expected_members = 0;
};

// "GROUP[,size=64M][,rank=R][,members=N]". Throws std::invalid_argument naming the bad part.
IvcSpec parse_ivc_spec(std::string_view text);

// The kernel command-line parameter that makes uio_pdrv_genirq bind the devices.
inline constexpr std::string_view kUioBootParameter = "uio_pdrv_genirq.of_id=generic-uio";

struct IvcGroupStats {
  std::string group;
  unsigned rank = 0;
  u64 members = 0;
  devices::ivc::IvcCounters counters;
};

class VmIvc {
 public:
  // Joins every group and places its device. Throws std::runtime_error with a message for
  // the user (a group that refuses us, too many groups, a multi-node VM).
  VmIvc(const std::vector<IvcSpec>& specs, const std::string& runtime_dir,
        machine::Machine& machine, unsigned node_count);
  ~VmIvc();  // stops the devices, then leaves the groups
  VmIvc(const VmIvc&) = delete;
  VmIvc& operator=(const VmIvc&) = delete;

  std::vector<IvcGroupStats> stats() const;
  std::vector<std::string> describe() const;

 private:
  struct Member {
    std::unique_ptr<devices::ivc::IvcGroup> group;
    std::unique_ptr<devices::ivc::IvcDevice> device;
  };
  std::vector<Member> members_;
};

}  // namespace dvmm::vmm
