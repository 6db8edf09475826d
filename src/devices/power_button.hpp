// A power button: how `dvmm stop` asks a cooperating guest to shut down. There is no ACPI
// on this board, so the button is a small MMIO device that Linux's generic UIO driver binds
// (compatible "generic-uio", like the inter-VM device): the guest's init waits in a blocking
// read() of /dev/uioN (/sys/class/uio/uioN/name = "power-button") and shuts down when the
// interrupt arrives (guest/initramfs/init).
//
// Registers (32-bit): 0x0 MAGIC "DVPB" (0x42505644), 0x4 STATUS (bit 0: pressed; write 1 to
// clear), 0x8 PRESSES (how many times it was pressed). The interrupt is the level of
// STATUS bit 0.
//
// Threads: press() from any thread; read()/write() from vCPU threads; a mutex serialises.
#pragma once

#include <mutex>

#include "devices/mmio_device.hpp"

namespace dvmm::devices {

class PowerButton final : public MmioDevice {
 public:
  static constexpr u32 kMagic = 0x42505644;
  static constexpr u64 kRegMagic = 0x0;
  static constexpr u64 kRegStatus = 0x4;
  static constexpr u64 kRegPresses = 0x8;

  explicit PowerButton(IrqLine& irq) : irq_(irq) {}

  std::string_view name() const override { return "power-button"; }
  u64 size() const override { return 0x1000; }
  u64 read(u64 offset, unsigned size) override;
  void write(u64 offset, unsigned size, u64 value) override;
  void reset() override;
  void describe(FdtBuilder& fdt, const FdtPlacement& where) const override;

  void press();

 private:
  IrqLine& irq_;
  std::mutex mutex_;
  bool pressed_ = false;
  u32 presses_ = 0;
};

}  // namespace dvmm::devices
