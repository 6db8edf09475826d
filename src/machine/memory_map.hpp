// The board's guest-physical memory map: constants only, shared by the machine builder, the
// device tree and the tests. The layout follows QEMU's riscv `virt` machine where it can,
// so that guest kernels and habits carry over.
//
//   0x0000_0000 +-----------------------------+
//               |  (unmapped)                 |
//   0x0010_0000 +-----------------------------+
//               |  test finisher (sifive_test)|  0x1000: poweroff / reboot / exit status
//   0x0010_1000 +-----------------------------+
//               |  (unmapped)                 |
//   0x0c00_0000 +-----------------------------+
//               |  PLIC                       |  0x400_0000: 63 sources, 1 S-context/hart
//   0x1000_0000 +-----------------------------+
//               |  UART0 ns16550a    IRQ 10   |  0x100
//   0x1000_1000 +-----------------------------+
//               |  virtio-mmio slot 0  IRQ 1  |  0x1000 each, 8 slots, filled in the
//               |  ...                        |  order of --disk, --net, ... (vm_devices)
//               |  virtio-mmio slot 7  IRQ 8  |
//   0x1000_9000 +-----------------------------+
//               |  (unmapped)                 |
//   0x1001_0000 +-----------------------------+
//               |  inter-VM mailbox 0  IRQ 11 |  0x1000 each, 4 slots, one per --ivc
//               |  ...                        |  group (docs/IVC.md)
//   0x1001_4000 +-----------------------------+
//               |  (unmapped)                 |
//   0x1002_0000 +-----------------------------+
//               |  power button       IRQ 15  |  0x1000 (generic-uio; `dvmm stop`)
//   0x1002_1000 +-----------------------------+
//               |  (unmapped)                 |
//   0x8000_0000 +-----------------------------+
//               |  RAM                        |  --memory bytes; the kernel Image at
//               |                             |  + text_offset, the initrd and the device
//               |                             |  tree at the top
//               +-----------------------------+
//               |  (unmapped)                 |
// 0x200_0000_0000 +---------------------------+
//               |  inter-VM shared memory 0   |  a memory window per --ivc group, 64 GiB
//               |  ...                        |  apart (the group's size=, at most 16 GiB)
//               +-----------------------------+
//
// Threads: constants; any thread.
#pragma once

#include "base/types.hpp"

namespace dvmm::machine {

inline constexpr Gpa kFinisherBase = 0x0010'0000;
inline constexpr u64 kFinisherSize = 0x1000;

inline constexpr Gpa kPlicBase = 0x0c00'0000;
inline constexpr u64 kPlicSize = 0x0400'0000;

inline constexpr Gpa kUart0Base = 0x1000'0000;
inline constexpr u64 kUart0Size = 0x100;
inline constexpr u32 kUart0Irq = 10;

inline constexpr Gpa kVirtioBase = 0x1000'1000;
inline constexpr u64 kVirtioSlotSize = 0x1000;
inline constexpr unsigned kVirtioSlots = 8;
// IRQ of virtio-mmio slot n (0-based): 1 + n.
inline constexpr u32 kVirtioFirstIrq = 1;
constexpr Gpa virtio_slot_base(unsigned slot) {
  return kVirtioBase + slot * kVirtioSlotSize;
}

inline constexpr Gpa kIvcBase = 0x1001'0000;
inline constexpr u64 kIvcSlotSize = 0x1000;
inline constexpr unsigned kIvcSlots = 4;
inline constexpr u32 kIvcFirstIrq = 11;
inline constexpr Gpa kIvcShmBase = 0x200'0000'0000;
inline constexpr u64 kIvcShmStride = 0x10'0000'0000;
constexpr Gpa ivc_slot_base(unsigned slot) {
  return kIvcBase + slot * kIvcSlotSize;
}
constexpr Gpa ivc_shm_base(unsigned slot) {
  return kIvcShmBase + slot * kIvcShmStride;
}

inline constexpr Gpa kPowerButtonBase = 0x1002'0000;
inline constexpr u64 kPowerButtonSize = 0x1000;
inline constexpr u32 kPowerButtonIrq = 15;

inline constexpr Gpa kRamBase = 0x8000'0000;

// Limits of what the board can describe.
inline constexpr unsigned kMaxHarts = 64;  // also the guest kernel's NR_CPUS
inline constexpr u64 kMinRamSize = u64{64} << 20;
inline constexpr u64 kMaxRamSize = u64{1} << 40;

// The timebase of the `time` CSR: cpu::HostMonotonicTime's default, announced in /cpus.
inline constexpr u64 kTimebaseHz = 10'000'000;

}  // namespace dvmm::machine
