// The device contract of the devices layer: a memory-mapped device (MmioDevice), the wire it
// raises interrupts on (IrqLine), and the narrow interface through which a device describes
// itself in the device tree (FdtBuilder; the machine layer implements it with libfdt, so this
// layer does not depend on libfdt).
//
// Threads: read() and write() come from any vCPU thread, concurrently; every device locks
// internally. reset() is called by the machine while no vCPU runs. describe() is called once
// per boot by the machine thread. IrqLine::set_level may be called from any thread.
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "base/types.hpp"

namespace dvmm::devices {

// A level-triggered interrupt wire from a device to an interrupt controller input.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  // Raises (true) or lowers (false) the line. Idempotent: the controller sees levels, not
  // edges, so a device may repeat a level.
  virtual void set_level(bool level) = 0;
};

// A line that goes nowhere: for tests and for devices wired to no controller.
class NullIrqLine final : public IrqLine {
 public:
  void set_level(bool) override {}
};

// Sequential device-tree writer (the order of calls is the order in the blob: a node's
// properties come before its children). Implemented by machine::FdtWriter.
class FdtBuilder {
 public:
  virtual ~FdtBuilder() = default;
  virtual void begin_node(std::string_view name) = 0;
  virtual void end_node() = 0;
  virtual void prop_empty(std::string_view name) = 0;
  virtual void prop_u32(std::string_view name, u32 value) = 0;
  virtual void prop_u64(std::string_view name, u64 value) = 0;
  // A list of 32-bit cells (big-endian in the blob).
  virtual void prop_cells(std::string_view name, std::span<const u32> cells) = 0;
  void prop_cells(std::string_view name, std::initializer_list<u32> cells) {
    prop_cells(name, std::span<const u32>(cells.begin(), cells.size()));
  }
  virtual void prop_string(std::string_view name, std::string_view value) = 0;
  // A string list ("a\0b\0"), as used by `compatible`.
  virtual void prop_strings(std::string_view name,
                            std::initializer_list<std::string_view> values) = 0;
  // `reg = <base size>` with the two-cell address and size of /soc.
  void prop_reg(Gpa base, u64 size) {
    prop_cells("reg", {static_cast<u32>(base >> 32), static_cast<u32>(base),
                       static_cast<u32>(size >> 32), static_cast<u32>(size)});
  }
};

// Where the machine put a device, handed to MmioDevice::describe().
struct FdtPlacement {
  Gpa base = 0;
  u64 size = 0;
  u32 irq = 0;               // interrupt source number on the interrupt controller; 0 = none
  u32 interrupt_parent = 0;  // phandle of that interrupt controller
  u32 phandle = 0;           // a phandle reserved for this device's node
  // Phandles of the per-hart interrupt controllers (cpuN/interrupt-controller), index = hart.
  std::span<const u32> cpu_intc_phandles;
};

// A memory-mapped device. The bus (machine::Machine) guarantees that offset + size <= size()
// and that size is 1, 2, 4 or 8; devices do not re-check that.
class MmioDevice {
 public:
  virtual ~MmioDevice() = default;
  // Short name for logs and counters ("plic", "uart0").
  virtual std::string_view name() const = 0;
  // Size of the register window in bytes.
  virtual u64 size() const = 0;
  // A guest load; returns the value zero-extended to 64 bits.
  virtual u64 read(u64 offset, unsigned size) = 0;
  // A guest store of the low `size` bytes of value.
  virtual void write(u64 offset, unsigned size, u64 value) = 0;
  // Back to the power-on state (machine reset and reboot).
  virtual void reset() = 0;
  // Writes the device's node (under /soc) into the device tree. Default: no node.
  virtual void describe(FdtBuilder& fdt, const FdtPlacement& where) const {
    (void)fdt;
    (void)where;
  }
};

// "name@hexaddr" as device-tree unit names spell it.
std::string fdt_node_name(std::string_view name, Gpa base);

}  // namespace dvmm::devices
