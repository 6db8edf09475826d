// devices::DmaMemory over this node's guest RAM: what virtio devices use to reach guest
// memory. Page by page, the page is brought here through NodeLinks::acquire_page when this
// node may not access it (a distributed VM; on one node every page is always here), and
// copied under GuestRam::dma_mutex() so that the DSM cannot take it away mid-copy.
//
// Threads: any thread that is not a vCPU thread (device workers); concurrently.
#pragma once

#include <functional>

#include "devices/dma_memory.hpp"
#include "memory/guest_ram.hpp"
#include "vmm/node_links.hpp"

namespace dvmm::vmm {

class GuestDma final : public devices::DmaMemory {
 public:
  // `stopping` ends waits for pages (the VM is going down).
  GuestDma(memory::GuestRam& ram, NodeLinks& links, std::function<bool()> stopping)
      : ram_(ram), links_(links), stopping_(std::move(stopping)) {}

  bool read(Gpa gpa, void* dst, u64 len) override;
  bool write(Gpa gpa, const void* src, u64 len) override;

 private:
  // Calls copy(host_ptr, offset, n) for each piece of [gpa, gpa + len) while it may be
  // accessed with `type`.
  template <typename Copy>
  bool each_page(Gpa gpa, u64 len, memory::AccessType type, Copy&& copy);

  memory::GuestRam& ram_;
  NodeLinks& links_;
  std::function<bool()> stopping_;
};

}  // namespace dvmm::vmm
