// The SiFive test finisher ("sifive,test0"/"sifive,test1", QEMU's sifive_test): one 32-bit
// register at offset 0 through which the guest powers the machine off or reboots it.
//   value & 0xffff == 0x5555  poweroff, exit status 0 ("pass")
//   value & 0xffff == 0x3333  poweroff, exit status value >> 16 ("fail")
//   value & 0xffff == 0x7777  reboot
// Other values, byte writes and other offsets are ignored; reads return 0. The device tree also
// gets /poweroff and /reboot (syscon-poweroff, syscon-reboot) nodes pointing here, as on QEMU's
// virt machine, so the guest's `poweroff` and `reboot` reach it too. The dvmm guest's init reports
// the exit status of the user's command through this register.
//
// Threads: write from any vCPU thread; the callback runs on that thread and must only post
// the request (the machine stops the harts from elsewhere).
#pragma once

#include <functional>

#include "devices/mmio_device.hpp"

namespace dvmm::devices {

struct FinisherEvent {
  enum class Kind { kPowerOff, kReboot };
  Kind kind;
  u32 status;  // exit status for kPowerOff
};

class TestFinisher final : public MmioDevice {
 public:
  static constexpr u64 kWindowSize = 0x1000;
  static constexpr u32 kPass = 0x5555;
  static constexpr u32 kFail = 0x3333;
  static constexpr u32 kReset = 0x7777;

  using Callback = std::function<void(const FinisherEvent&)>;
  explicit TestFinisher(Callback callback) : callback_(std::move(callback)) {}

  std::string_view name() const override { return "finisher"; }
  u64 size() const override { return kWindowSize; }
  u64 read(u64, unsigned) override { return 0; }
  void write(u64 offset, unsigned size, u64 value) override;
  void reset() override {}
  // Writes test@ADDR with a phandle; the machine adds /poweroff and /reboot referring to it.
  void describe(FdtBuilder& fdt, const FdtPlacement& where) const override;

 private:
  Callback callback_;
};

}  // namespace dvmm::devices
