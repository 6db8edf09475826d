#include "machine/machine.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dvmm::machine {
namespace {

TEST(MemorySize, Parses) {
  EXPECT_EQ(parse_memory_size("512M"), u64{512} << 20);
  EXPECT_EQ(parse_memory_size("512"), u64{512} << 20);  // QEMU: bare number = MiB
  EXPECT_EQ(parse_memory_size("1G"), u64{1} << 30);
  EXPECT_EQ(parse_memory_size("2g"), u64{2} << 30);
  EXPECT_EQ(parse_memory_size("65536K"), u64{64} << 20);
  EXPECT_EQ(parse_memory_size("1GiB"), u64{1} << 30);
  EXPECT_EQ(parse_memory_size("1T"), u64{1} << 40);
}

TEST(MemorySize, RejectsGarbage) {
  for (const char* bad :
       {"", "abc", "M", "12X", "1.5G", "-1G", "0x100", "12MM", "99999999999999999999"}) {
    EXPECT_THROW(parse_memory_size(bad), MachineError) << bad;
  }
}

TEST(MemorySize, Limits) {
  EXPECT_THROW(check_memory_size(u64{32} << 20), MachineError);
  EXPECT_NO_THROW(check_memory_size(u64{64} << 20));
  EXPECT_THROW(check_memory_size((u64{64} << 20) + 100), MachineError);
  try {
    check_memory_size(u64{16} << 20);
  } catch (const MachineError& e) {
    EXPECT_EQ(std::string(e.what()), "memory size 16M is too small; dvmm needs at least 64M");
  }
}

TEST(Machine, RejectsBadVcpus) {
  MachineConfig c;
  c.memory_size = u64{64} << 20;
  c.vcpus = 0;
  EXPECT_THROW(Machine(c, {}), MachineError);
  c.vcpus = kMaxHarts + 1;
  EXPECT_THROW(Machine(c, {}), MachineError);
}

TEST(Machine, MmioDispatch) {
  std::string console;
  std::vector<devices::FinisherEvent> events;
  MachineConfig c;
  c.vcpus = 2;
  c.memory_size = u64{64} << 20;
  MachineCallbacks cb;
  cb.console = [&](char ch) { console.push_back(ch); };
  cb.finisher = [&](const devices::FinisherEvent& e) { events.push_back(e); };
  Machine m(c, cb);

  m.mmio_write(kUart0Base, 1, 'A');
  m.mmio_write(kUart0Base + 7, 1, 0x42);  // scratch
  EXPECT_EQ(console, "A");
  EXPECT_EQ(m.mmio_read(kUart0Base + 7, 1), 0x42u);
  EXPECT_EQ(m.mmio_read(kUart0Base + 5, 1) & 0x60, 0x60u);  // LSR: THRE | TEMT

  m.mmio_write(kPlicBase + 4 * kUart0Irq, 4, 1);
  EXPECT_EQ(m.mmio_read(kPlicBase + 4 * kUart0Irq, 4), 1u);

  m.mmio_write(kFinisherBase, 4, (3u << 16) | 0x3333);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].status, 3u);

  // Unmapped: reads 0, writes vanish, both counted.
  EXPECT_EQ(m.mmio_read(0x2000'0000, 4), 0u);
  m.mmio_write(virtio_slot_base(0), 4, 1);
  EXPECT_EQ(m.unmapped_accesses(), 2u);
  // Straddling the end of a window is unmapped too.
  EXPECT_EQ(m.mmio_read(kUart0Base + kUart0Size - 2, 4), 0u);
}

TEST(Machine, UartInterruptReachesHartThroughPlic) {
  MachineConfig c;
  c.vcpus = 2;
  c.memory_size = u64{64} << 20;
  Machine m(c, {});
  cpu::Hart& h1 = m.hart(1);
  // Let the hart take S-mode external interrupts (sie.SEIE), so interrupt_pending() shows it.
  ASSERT_TRUE(h1.debug_write_csr(0x104, u64{1} << 9));
  m.mmio_write(kPlicBase + 4 * kUart0Irq, 4, 1);                    // priority
  m.mmio_write(kPlicBase + 0x2000 + 0x80 * 1, 4, 1u << kUart0Irq);  // enable, context 1
  m.mmio_write(kUart0Base + 1, 1, 0x01);                            // IER: RX data
  EXPECT_FALSE(h1.interrupt_pending());
  const u8 key = 'k';
  m.uart().push_input(std::span<const u8>(&key, 1));
  EXPECT_TRUE(h1.interrupt_pending());
  EXPECT_FALSE(m.hart(0).interrupt_pending());
  EXPECT_EQ(m.mmio_read(kPlicBase + 0x20'0000 + 0x1000 * 1 + 4, 4), kUart0Irq);  // claim
  EXPECT_EQ(m.mmio_read(kUart0Base, 1), 'k');
  m.mmio_write(kPlicBase + 0x20'0000 + 0x1000 * 1 + 4, 4, kUart0Irq);  // complete
  EXPECT_FALSE(h1.interrupt_pending());
}

}  // namespace
}  // namespace dvmm::machine
