// How a device reaches guest memory (DMA): copies to and from guest-physical addresses.
// The vmm implements it over guest RAM and, on a distributed VM, the DSM (each page is
// brought to the device's node before it is touched), so devices never hold host pointers
// into guest memory and work the same on any node.
//
// Threads: any thread (a device's worker); implementations lock as needed.
#pragma once

#include "base/types.hpp"

namespace dvmm::devices {

class DmaMemory {
 public:
  virtual ~DmaMemory() = default;
  // False (and nothing or part copied) when [gpa, gpa + len) is not all guest RAM, or the
  // VM is stopping.
  virtual bool read(Gpa gpa, void* dst, u64 len) = 0;
  virtual bool write(Gpa gpa, const void* src, u64 len) = 0;
};

}  // namespace dvmm::devices
