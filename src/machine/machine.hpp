// The board: guest RAM, the harts (sharing one time source), the devices at their places in
// the memory map (machine/memory_map.hpp), the device tree, and the Linux boot. It owns all of
// them, so a process (or a test) can build several machines side by side. Built explicitly
// from a MachineConfig; no registration by static constructors.
//
// Threads: construction, boot() and reset_devices() happen on the controlling thread while
// no hart runs. mmio_read/mmio_write come from vCPU threads concurrently (devices lock
// themselves). The callbacks in MachineCallbacks run on whichever thread caused them.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cpu/hart.hpp"
#include "cpu/time_source.hpp"
#include "devices/plic.hpp"
#include "devices/power_button.hpp"
#include "devices/test_finisher.hpp"
#include "devices/uart16550.hpp"
#include "machine/fdt_writer.hpp"
#include "machine/linux_loader.hpp"
#include "machine/memory_map.hpp"
#include "memory/guest_ram.hpp"

namespace dvmm::machine {

struct MachineConfig {
  unsigned vcpus = 2;
  u64 memory_size = u64{512} << 20;
  std::string kernel_path;
  // Initrd parts, concatenated in order (Linux unpacks every archive): normally the guest's
  // initramfs, then the user's --initrd-extra archives.
  std::vector<std::string> initrd_paths;
  // A last part held in memory (the command archive of `dvmm run -- CMD`).
  std::vector<u8> initrd_appendix;
  std::string bootargs;
  // NUMA layout for the device tree (issue 4); empty = one node.
  std::vector<DeviceTreeConfig::NumaNode> numa_nodes;
  std::vector<std::vector<u32>> numa_distance;
  // The boot images (kernel, initrd, device tree) go into the first `boot_memory_size`
  // bytes of RAM (a distributed VM: the boot node's own range); 0 = all of RAM.
  u64 boot_memory_size = 0;
};

struct MachineCallbacks {
  // Every byte the guest writes to the UART.
  std::function<void(char)> console;
  // The finisher was written (poweroff with a status, or reboot).
  std::function<void(const devices::FinisherEvent&)> finisher;
  // The PLIC's external-interrupt output for hart `id`'s context (a distributed VM routes
  // the lines of harts on other nodes through it). Unset: straight to the hart.
  std::function<void(HartId id, bool level)> external_interrupt;
};

// What boot() did, for logs.
struct BootInfo {
  BootLayout layout;
  ImageHeader header;
};

class Machine {
 public:
  // Checks the configuration (vcpus, memory size) and builds RAM, harts and devices.
  // Throws MachineError for bad values and when the host refuses the RAM.
  Machine(const MachineConfig& config, MachineCallbacks callbacks);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  const MachineConfig& config() const { return config_; }
  memory::GuestRam& ram() { return *ram_; }
  const cpu::TimeSource& time() const { return time_; }
  // The CLOCK_MONOTONIC instant at which guest time was zero (set by boot()).
  u64 time_epoch_ns() const { return time_.epoch_ns(); }
  // A node that does not boot the guest itself takes the boot node's epoch (one host).
  // Call while no hart runs.
  void set_time_epoch(u64 epoch_ns) { time_.restart_at(epoch_ns); }
  unsigned hart_count() const { return static_cast<unsigned>(harts_.size()); }
  cpu::Hart& hart(HartId id) { return *harts_.at(id); }
  devices::Plic& plic() { return *plic_; }
  devices::Uart16550& uart() { return *uart_; }
  devices::PowerButton& power_button() { return *power_button_; }

  // Reads the kernel and initrd files (again, on every boot: a reboot picks up a rebuilt
  // kernel), resets the devices, builds the device tree, loads everything into RAM and
  // resets hart 0 to the kernel entry (a0 = 0, a1 = DTB). The other harts are left for the
  // SBI's HSM to start. Throws MachineError with a one-line reason.
  BootInfo boot();
  // Puts every device back into its power-on state.
  void reset_devices();

  // Places `device` (owned by the caller, alive as long as the machine) in virtio-mmio slot
  // `slot` (window virtio_slot_base(slot), IRQ kVirtioFirstIrq + slot), before boot(). On a
  // distributed VM every node places every slot (a device on another node as a stand-in
  // that only describes itself), so that all nodes agree on the board. Throws MachineError
  // for a bad or taken slot.
  void attach_virtio(unsigned slot, devices::MmioDevice& device);
  // Places inter-VM communication device `slot` (registers at ivc_slot_base(slot), IRQ
  // kIvcFirstIrq + slot) and maps `shm` (the group's shared memory, owned by the caller)
  // at ivc_shm_base(slot), before boot(). Throws MachineError for a bad or taken slot.
  void attach_ivc(unsigned slot, devices::MmioDevice& device, u8* shm, u64 shm_size);

  // The blob of the last boot().
  const std::vector<u8>& device_tree() const { return dtb_; }
  // Builds the device tree for the current configuration (initrd range as given).
  std::vector<u8> build_device_tree(std::optional<std::pair<Gpa, Gpa>> initrd) const;

  // Guest MMIO: dispatches to the device whose window holds [gpa, gpa + size). Accesses
  // that hit no device (or straddle a window's end) read as 0 and writes are dropped; they
  // are counted in unmapped_accesses().
  u64 mmio_read(Gpa gpa, unsigned size);
  void mmio_write(Gpa gpa, unsigned size, u64 value);
  u64 unmapped_accesses() const { return unmapped_.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    Gpa base;
    u64 size;
    devices::MmioDevice* device;
    u32 irq;
    DeviceTreeConfig::Device::Role role;
  };
  devices::MmioDevice* find(Gpa gpa, unsigned size, u64* offset);

  MachineConfig config_;
  MachineCallbacks callbacks_;
  cpu::HostMonotonicTime time_{kTimebaseHz};
  std::unique_ptr<memory::GuestRam> ram_;
  std::vector<std::unique_ptr<cpu::Hart>> harts_;
  std::unique_ptr<devices::Plic> plic_;
  std::unique_ptr<devices::Uart16550> uart_;
  std::unique_ptr<devices::TestFinisher> finisher_;
  std::unique_ptr<devices::PowerButton> power_button_;
  std::vector<Slot> slots_;  // sorted by base
  std::vector<u8> dtb_;
  std::atomic<u64> unmapped_{0};
};

// Checks a RAM size against the board's limits (kMinRamSize..kMaxRamSize, whole pages).
// Throws MachineError with a message for the user.
void check_memory_size(u64 bytes);

// Parses a memory size as QEMU does: a number with an optional K, M, G or T suffix (binary
// units; "iB"/"B" may follow); a bare number means MiB. Throws MachineError with a message.
// `what` names the quantity in the messages ("memory size", "image size").
u64 parse_memory_size(std::string_view text, std::string_view what = "memory size");

}  // namespace dvmm::machine
