// An ns16550a UART (National Semiconductor PC16550D data sheet): the guest's serial console.
// Owns the UART registers, the 16-byte receive FIFO, the host-side input backlog that feeds
// it, and the UART's interrupt line (level: receive data available / character timeout,
// transmitter holding register empty, modem status).
//
// Transmission is instantaneous: a byte written to THR goes straight to the ConsoleSink, so
// THR and the transmitter are always empty again by the next guest access (LSR.THRE and
// LSR.TEMT read 1). Bytes from the host (push_input) queue in an unbounded backlog and move
// into the 16-byte FIFO as the guest drains it, so pasted text is never dropped. The
// character-timeout interrupt is raised at once when the FIFO holds fewer bytes than the
// trigger level: with no line timing to model, "no new byte for four character times" is
// always true.
//
// Registers (reg-shift 0, reg-io-width 1; DLAB = LCR bit 7):
//   0 RBR (read) / THR (write) / DLL (DLAB)    4 MCR
//   1 IER / DLM (DLAB)                         5 LSR
//   2 IIR (read) / FCR (write)                 6 MSR
//   3 LCR                                      7 SCR
//
// Threads: read/write from any vCPU thread, push_input from the host console thread. One
// mutex guards everything; the sink and the IrqLine are called with it held, so output keeps
// the guest's order (the sink must not call back into the UART).
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "devices/mmio_device.hpp"

namespace dvmm::devices {

class Uart16550 final : public MmioDevice {
 public:
  // Receives every byte the guest transmits (outside loopback mode).
  using ConsoleSink = std::function<void(char)>;

  static constexpr u64 kWindowSize = 0x100;
  static constexpr unsigned kFifoSize = 16;
  // The input clock announced in the device tree (the classic 1.8432 MHz * 2); only the
  // divisor the guest computes from it depends on it.
  static constexpr u32 kClockHz = 3'686'400;

  // Register offsets and bits (data sheet names).
  enum Reg : u64 {
    kRbrThr = 0,
    kIer = 1,
    kIirFcr = 2,
    kLcr = 3,
    kMcr = 4,
    kLsr = 5,
    kMsr = 6,
    kScr = 7
  };
  static constexpr u8 kIerRdi = 0x01;   // received data available
  static constexpr u8 kIerThri = 0x02;  // THR empty
  static constexpr u8 kIerRlsi = 0x04;  // receiver line status
  static constexpr u8 kIerMsi = 0x08;   // modem status
  static constexpr u8 kIirNoInt = 0x01;
  static constexpr u8 kIirMsi = 0x00;
  static constexpr u8 kIirThri = 0x02;
  static constexpr u8 kIirRdi = 0x04;
  static constexpr u8 kIirRlsi = 0x06;
  static constexpr u8 kIirTimeout = 0x0c;
  static constexpr u8 kIirFifoEnabled = 0xc0;
  static constexpr u8 kFcrEnable = 0x01;
  static constexpr u8 kFcrClearRx = 0x02;
  static constexpr u8 kFcrClearTx = 0x04;
  static constexpr u8 kLcrDlab = 0x80;
  static constexpr u8 kMcrDtr = 0x01;
  static constexpr u8 kMcrRts = 0x02;
  static constexpr u8 kMcrOut1 = 0x04;
  static constexpr u8 kMcrOut2 = 0x08;
  static constexpr u8 kMcrLoop = 0x10;
  static constexpr u8 kLsrDr = 0x01;
  static constexpr u8 kLsrThre = 0x20;
  static constexpr u8 kLsrTemt = 0x40;
  static constexpr u8 kMsrCts = 0x10;
  static constexpr u8 kMsrDsr = 0x20;
  static constexpr u8 kMsrRi = 0x40;
  static constexpr u8 kMsrDcd = 0x80;

  Uart16550(std::string name, IrqLine& irq, ConsoleSink sink);

  std::string_view name() const override { return name_; }
  u64 size() const override { return kWindowSize; }
  u64 read(u64 offset, unsigned size) override;
  void write(u64 offset, unsigned size, u64 value) override;
  void reset() override;
  void describe(FdtBuilder& fdt, const FdtPlacement& where) const override;

  // Queues bytes typed on the host console; raises the receive interrupt if enabled.
  void push_input(std::span<const u8> bytes);
  // Bytes queued from the host that the guest has not read yet (FIFO plus backlog).
  std::size_t input_pending() const;

 private:
  u8 read_reg(u64 reg);
  void write_reg(u64 reg, u8 value);
  void receive(u8 byte);
  std::size_t fifo_count() const;
  unsigned trigger_level() const;
  u8 msr_value() const;
  // The interrupt identification the IIR would return now (without the FIFO bits).
  u8 interrupt_id() const;
  void update_irq();

  const std::string name_;
  IrqLine& irq_;
  ConsoleSink sink_;

  mutable std::mutex mutex_;
  std::deque<u8> rx_;  // FIFO (the first kFifoSize bytes) followed by the host backlog
  u8 ier_ = 0;
  u8 fcr_ = 0;
  u8 lcr_ = 0;
  u8 mcr_ = 0;
  u8 scr_ = 0;
  u8 dll_ = 12;
  u8 dlm_ = 0;
  u8 msr_delta_ = 0;            // MSR bits 0..3: modem-status changes since the last MSR read
  bool thr_empty_irq_ = false;  // THR-empty interrupt condition, cleared by IIR read or THR write
  bool irq_level_ = false;
};

}  // namespace dvmm::devices
