// ClusterLinks between two in-process nodes over UCX: IPIs, HSM start and status, PLIC
// lines and forwarded MMIO reach the hart or device on the other node; malformed messages
// are rejected.
#include "cluster/node_links.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "cluster_group.hpp"
#include "machine/memory_map.hpp"
#include "vmm/vm.hpp"

namespace dvmm::cluster {
namespace {

constexpr u16 kSip = 0x144;
constexpr u64 kSsip = u64{1} << 1;
constexpr u64 kSeip = u64{1} << 9;

template <class F>
bool eventually(F f) {
  for (int i = 0; i < 2000; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

struct Node {
  Node(Transport& t, machine::MachineConfig c) : links(t, 1) {
    vmm::VmOptions o;
    o.links = &links;
    o.boot_node = t.self() == 0;
    vm = std::make_unique<vmm::Vm>(c, o);
    links.attach(*vm);
  }
  ~Node() { links.detach(); }
  ClusterLinks links;
  std::unique_ptr<vmm::Vm> vm;
};

TEST(ClusterLinks, CrossNodeCpuAndMmio) {
  auto group = testing::make_group(2);
  machine::MachineConfig c;
  c.vcpus = 2;
  c.memory_size = u64{64} << 20;
  Node n0(*group[0], c);
  Node n1(*group[1], c);
  testing::start_all(group);
  EXPECT_TRUE(n0.links.is_local(0));
  EXPECT_FALSE(n0.links.is_local(1));
  EXPECT_TRUE(n1.links.is_local(1));
  EXPECT_FALSE(n1.links.mmio_is_local(machine::kUart0Base));

  // IPI from node 0 to hart 1.
  n0.links.send_ipi(1);
  EXPECT_TRUE(eventually(
      [&] { return (n1.vm->machine().hart(1).debug_read_csr(kSip).value_or(0) & kSsip) != 0; }));
  EXPECT_EQ((n0.vm->machine().hart(1).debug_read_csr(kSip).value_or(0) & kSsip), 0u);

  // HSM: status, start, start again.
  EXPECT_EQ(n0.links.hart_status(1, {}), vmm::HsmState::kStopped);
  EXPECT_EQ(n0.links.hart_start(1, machine::kRamBase, 5, {}), vmm::kSbiSuccess);
  EXPECT_EQ(n0.links.hart_status(1, {}), vmm::HsmState::kStartPending);
  EXPECT_EQ(n0.links.hart_start(1, machine::kRamBase, 5, {}), vmm::kSbiErrAlreadyAvailable);

  // The PLIC line of hart 1 lives on node 1.
  n0.links.set_external_interrupt(1, true);
  EXPECT_TRUE(eventually(
      [&] { return (n1.vm->machine().hart(1).debug_read_csr(kSip).value_or(0) & kSeip) != 0; }));

  // MMIO from node 1 reaches the UART on node 0: write the scratch register, read it back.
  n1.links.mmio_write(machine::kUart0Base + 7, 1, 0x5a, {});
  EXPECT_EQ(n0.vm->machine().mmio_read(machine::kUart0Base + 7, 1), 0x5au);
  EXPECT_EQ(n1.links.mmio_read(machine::kUart0Base + 7, 1, {}), 0x5au);

  // A remote fence returns once hart 1 has flushed (here a thread plays its vCPU).
  std::atomic<bool> done{false};
  std::thread vcpu1([&] {
    while (!done.load()) {
      n1.vm->machine().hart(1).service_requests();
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  int served = 0;
  n0.links.remote_fence({1}, [&] { ++served; });
  // The DSM's flusher on node 1 covers hart 1 only (hart 0's object there never runs).
  n1.links.flush_local_harts({});
  done.store(true);
  vcpu1.join();

  // Malformed messages are counted, not acted on.
  const u8 junk[] = {99, 1, 2};
  group[0]->send(1, Channel::kCpu, junk);
  group[0]->send(1, Channel::kMmio, junk);
  EXPECT_TRUE(eventually([&] { return n1.links.rejected() == 2; }));

  // After fail(), blocked and new calls return at once.
  n1.links.fail("test");
  EXPECT_EQ(n1.links.mmio_read(machine::kUart0Base + 7, 1, {}), 0u);
  for (auto& t : group) t->shutdown();
}

}  // namespace
}  // namespace dvmm::cluster
