#include "devices/uart16550.hpp"

#include <algorithm>

namespace dvmm::devices {

Uart16550::Uart16550(std::string name, IrqLine& irq, ConsoleSink sink)
    : name_(std::move(name)), irq_(irq), sink_(std::move(sink)) {}

void Uart16550::reset() {
  std::lock_guard lock(mutex_);
  rx_.clear();
  ier_ = fcr_ = lcr_ = mcr_ = scr_ = 0;
  dll_ = 12;  // 9600 baud at 1.8432 MHz: the PC default, never used by us
  dlm_ = 0;
  msr_delta_ = 0;
  thr_empty_irq_ = false;
  update_irq();
}

u64 Uart16550::read(u64 offset, unsigned size) {
  std::lock_guard lock(mutex_);
  // reg-io-width 1: wider accesses read the addressed register in the low byte.
  (void)size;
  if (offset >= 8) return 0;
  return read_reg(offset);
}

void Uart16550::write(u64 offset, unsigned size, u64 value) {
  std::lock_guard lock(mutex_);
  (void)size;
  if (offset >= 8) return;
  write_reg(offset, static_cast<u8>(value));
}

void Uart16550::push_input(std::span<const u8> bytes) {
  if (bytes.empty()) return;
  std::lock_guard lock(mutex_);
  rx_.insert(rx_.end(), bytes.begin(), bytes.end());
  update_irq();
}

std::size_t Uart16550::input_pending() const {
  std::lock_guard lock(mutex_);
  return rx_.size();
}

std::size_t Uart16550::fifo_count() const {
  const std::size_t depth = (fcr_ & kFcrEnable) ? kFifoSize : 1;
  return std::min(rx_.size(), depth);
}

unsigned Uart16550::trigger_level() const {
  if (!(fcr_ & kFcrEnable)) return 1;
  static constexpr unsigned kLevels[4] = {1, 4, 8, 14};
  return kLevels[fcr_ >> 6];
}

u8 Uart16550::msr_value() const {
  u8 lines;
  if (mcr_ & kMcrLoop) {
    // Loopback wires the modem outputs back to the inputs (data sheet, MCR bit 4).
    lines = static_cast<u8>(((mcr_ & kMcrRts) ? kMsrCts : 0) | ((mcr_ & kMcrDtr) ? kMsrDsr : 0) |
                            ((mcr_ & kMcrOut1) ? kMsrRi : 0) | ((mcr_ & kMcrOut2) ? kMsrDcd : 0));
  } else {
    // A console that is always connected and ready.
    lines = kMsrDcd | kMsrDsr | kMsrCts;
  }
  return static_cast<u8>(lines | msr_delta_);
}

u8 Uart16550::interrupt_id() const {
  // Priority order of the data sheet's table 4: line status, received data (or character
  // timeout), THR empty, modem status. No line errors happen here.
  const std::size_t count = fifo_count();
  if ((ier_ & kIerRdi) && count > 0) return count >= trigger_level() ? kIirRdi : kIirTimeout;
  if ((ier_ & kIerThri) && thr_empty_irq_) return kIirThri;
  if ((ier_ & kIerMsi) && msr_delta_ != 0) return kIirMsi;
  return kIirNoInt;
}

void Uart16550::update_irq() {
  // MCR.OUT2 gates the IRQ on PC boards only; like QEMU we ignore it.
  const bool level = interrupt_id() != kIirNoInt;
  if (level != irq_level_) {
    irq_level_ = level;
    irq_.set_level(level);
  }
}

void Uart16550::receive(u8 byte) {
  rx_.push_back(byte);
}

u8 Uart16550::read_reg(u64 reg) {
  switch (reg) {
    case kRbrThr: {
      if (lcr_ & kLcrDlab) return dll_;
      if (rx_.empty()) return 0;
      const u8 byte = rx_.front();
      rx_.pop_front();
      update_irq();
      return byte;
    }
    case kIer:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIirFcr: {
      const u8 id = interrupt_id();
      // Reading IIR while it reports THR empty acknowledges that interrupt.
      if (id == kIirThri) {
        thr_empty_irq_ = false;
        update_irq();
      }
      return static_cast<u8>(id | ((fcr_ & kFcrEnable) ? kIirFifoEnabled : 0));
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return static_cast<u8>((rx_.empty() ? 0 : kLsrDr) | kLsrThre | kLsrTemt);
    case kMsr: {
      const u8 v = msr_value();
      msr_delta_ = 0;
      update_irq();
      return v;
    }
    case kScr:
      return scr_;
    default:
      return 0;
  }
}

void Uart16550::write_reg(u64 reg, u8 value) {
  switch (reg) {
    case kRbrThr:
      if (lcr_ & kLcrDlab) {
        dll_ = value;
        return;
      }
      if (mcr_ & kMcrLoop) {
        receive(value);
      } else if (sink_) {
        sink_(static_cast<char>(value));
      }
      // Sent at once: THR is empty again, which is a new THR-empty event.
      thr_empty_irq_ = true;
      update_irq();
      return;
    case kIer: {
      if (lcr_ & kLcrDlab) {
        dlm_ = value;
        return;
      }
      const u8 old = ier_;
      ier_ = value & 0x0f;
      // Enabling the THR-empty interrupt while THR is empty raises it (as on the 16550 and in
      // QEMU); Linux's 8250 driver relies on it to start transmitting and to test the UART.
      if ((ier_ & kIerThri) && !(old & kIerThri)) thr_empty_irq_ = true;
      update_irq();
      return;
    }
    case kIirFcr: {
      const u8 old = fcr_;
      // Toggling FIFO mode resets both FIFOs (data sheet, FCR bit 0).
      const bool clear_rx = (value & kFcrClearRx) || ((old ^ value) & kFcrEnable);
      fcr_ = value & 0xc9;  // enable, DMA mode, trigger level; the clear bits self-clear
      if (clear_rx) {
        // Drop what the guest could see in the FIFO; the host backlog is still on the wire.
        const std::size_t n = std::min<std::size_t>(rx_.size(), kFifoSize);
        rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(n));
      }
      update_irq();
      return;
    }
    case kLcr:
      lcr_ = value;
      return;
    case kMcr: {
      const u8 before = msr_value() & 0xf0;
      mcr_ = value & 0x1f;
      const u8 after = msr_value() & 0xf0;
      const u8 changed = before ^ after;
      if (changed & kMsrCts) msr_delta_ |= 0x01;
      if (changed & kMsrDsr) msr_delta_ |= 0x02;
      if ((before & kMsrRi) && !(after & kMsrRi)) msr_delta_ |= 0x04;  // trailing edge of RI
      if (changed & kMsrDcd) msr_delta_ |= 0x08;
      update_irq();
      return;
    }
    case kLsr:
    case kMsr:
      return;  // read-only (factory test writes are not modelled)
    case kScr:
      scr_ = value;
      return;
    default:
      return;
  }
}

void Uart16550::describe(FdtBuilder& fdt, const FdtPlacement& where) const {
  fdt.begin_node(fdt_node_name("serial", where.base));
  fdt.prop_string("compatible", "ns16550a");
  fdt.prop_reg(where.base, where.size);
  fdt.prop_u32("clock-frequency", kClockHz);
  fdt.prop_u32("reg-shift", 0);
  fdt.prop_u32("reg-io-width", 1);
  if (where.irq != 0) {
    fdt.prop_u32("interrupt-parent", where.interrupt_parent);
    fdt.prop_u32("interrupts", where.irq);
  }
  fdt.end_node();
}

}  // namespace dvmm::devices
