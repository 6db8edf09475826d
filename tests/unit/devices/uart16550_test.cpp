#include "devices/uart16550.hpp"

#include <gtest/gtest.h>

#include <string>

namespace dvmm::devices {
namespace {

class FakeLine final : public IrqLine {
 public:
  void set_level(bool l) override {
    level = l;
    ++changes;
  }
  bool level = false;
  int changes = 0;
};

using U = Uart16550;

class UartTest : public ::testing::Test {
 protected:
  UartTest() : uart_("uart0", line_, [this](char c) { out_.push_back(c); }) { uart_.reset(); }
  u8 rd(u64 reg) { return static_cast<u8>(uart_.read(reg, 1)); }
  void wr(u64 reg, u8 v) { uart_.write(reg, 1, v); }
  void push(const std::string& s) {
    uart_.push_input(std::span<const u8>(reinterpret_cast<const u8*>(s.data()), s.size()));
  }

  FakeLine line_;
  std::string out_;
  Uart16550 uart_;
};

TEST_F(UartTest, ResetState) {
  EXPECT_EQ(rd(U::kIer), 0);
  EXPECT_EQ(rd(U::kIirFcr), U::kIirNoInt);
  EXPECT_EQ(rd(U::kLcr), 0);
  EXPECT_EQ(rd(U::kLsr), U::kLsrThre | U::kLsrTemt);
  EXPECT_EQ(rd(U::kMsr), U::kMsrDcd | U::kMsrDsr | U::kMsrCts);
  EXPECT_FALSE(line_.level);
}

TEST_F(UartTest, TransmitGoesToSink) {
  for (char c : std::string("hi\n")) wr(U::kRbrThr, static_cast<u8>(c));
  EXPECT_EQ(out_, "hi\n");
  EXPECT_EQ(rd(U::kLsr) & (U::kLsrThre | U::kLsrTemt), U::kLsrThre | U::kLsrTemt);
}

TEST_F(UartTest, ScratchAndDivisorLatch) {
  wr(U::kScr, 0x5a);
  EXPECT_EQ(rd(U::kScr), 0x5a);
  wr(U::kLcr, U::kLcrDlab | 0x03);
  wr(U::kRbrThr, 0x01);  // DLL
  wr(U::kIer, 0x02);     // DLM
  EXPECT_EQ(rd(U::kRbrThr), 0x01);
  EXPECT_EQ(rd(U::kIer), 0x02);
  EXPECT_TRUE(out_.empty());  // DLAB writes do not transmit
  wr(U::kLcr, 0x03);
  EXPECT_EQ(rd(U::kLcr), 0x03);
  EXPECT_EQ(rd(U::kIer), 0);  // the real IER is untouched
}

TEST_F(UartTest, ReceiveFifoAndDataReady) {
  push("ab");
  EXPECT_EQ(rd(U::kLsr) & U::kLsrDr, U::kLsrDr);
  EXPECT_FALSE(line_.level);  // receive interrupt not enabled
  EXPECT_EQ(rd(U::kRbrThr), 'a');
  EXPECT_EQ(rd(U::kRbrThr), 'b');
  EXPECT_EQ(rd(U::kLsr) & U::kLsrDr, 0);
  EXPECT_EQ(rd(U::kRbrThr), 0);
  EXPECT_EQ(uart_.input_pending(), 0u);
}

TEST_F(UartTest, ReceiveInterruptRaisedAndCleared) {
  wr(U::kIer, U::kIerRdi);
  EXPECT_FALSE(line_.level);
  push("x");
  EXPECT_TRUE(line_.level);
  // FIFO off: trigger level 1, so "received data available".
  EXPECT_EQ(rd(U::kIirFcr), U::kIirRdi);
  EXPECT_EQ(rd(U::kRbrThr), 'x');
  EXPECT_FALSE(line_.level);
  EXPECT_EQ(rd(U::kIirFcr), U::kIirNoInt);
}

TEST_F(UartTest, FifoTriggerLevelAndTimeout) {
  wr(U::kIirFcr, U::kFcrEnable | 0x80);  // trigger at 8 bytes
  wr(U::kIer, U::kIerRdi);
  push("abc");
  // Below the trigger level: the character-timeout interrupt.
  EXPECT_EQ(rd(U::kIirFcr), U::kIirFifoEnabled | U::kIirTimeout);
  EXPECT_TRUE(line_.level);
  push("defgh");
  EXPECT_EQ(rd(U::kIirFcr), U::kIirFifoEnabled | U::kIirRdi);
}

TEST_F(UartTest, BacklogBeyondFifoIsKept) {
  wr(U::kIirFcr, U::kFcrEnable);
  std::string in(40, 'z');
  in[39] = '!';
  push(in);
  EXPECT_EQ(uart_.input_pending(), 40u);
  // Clearing the RX FIFO drops only what the FIFO holds (16 bytes).
  wr(U::kIirFcr, U::kFcrEnable | U::kFcrClearRx);
  EXPECT_EQ(uart_.input_pending(), 24u);
  std::string got;
  while (rd(U::kLsr) & U::kLsrDr) got.push_back(static_cast<char>(rd(U::kRbrThr)));
  EXPECT_EQ(got.size(), 24u);
  EXPECT_EQ(got.back(), '!');
}

TEST_F(UartTest, ThrEmptyInterrupt) {
  // Enabling THRI with THR empty raises it at once.
  wr(U::kIer, U::kIerThri);
  EXPECT_TRUE(line_.level);
  EXPECT_EQ(rd(U::kIirFcr), U::kIirThri);
  // Reading IIR acknowledged it.
  EXPECT_FALSE(line_.level);
  EXPECT_EQ(rd(U::kIirFcr), U::kIirNoInt);
  // A transmitted byte empties THR again: a new interrupt.
  wr(U::kRbrThr, 'q');
  EXPECT_TRUE(line_.level);
  // Disabling the interrupt lowers the line.
  wr(U::kIer, 0);
  EXPECT_FALSE(line_.level);
}

TEST_F(UartTest, ThreTestOfLinux8250Driver) {
  // serial8250_do_startup: IER=THRI, read IIR, IER=0, IER=THRI, read IIR; a working UART
  // reports THRI both times.
  wr(U::kIer, U::kIerThri);
  const u8 iir1 = rd(U::kIirFcr);
  wr(U::kIer, 0);
  wr(U::kIer, U::kIerThri);
  const u8 iir2 = rd(U::kIirFcr);
  wr(U::kIer, 0);
  EXPECT_EQ(iir1 & U::kIirNoInt, 0);
  EXPECT_EQ(iir2 & U::kIirNoInt, 0);
}

TEST_F(UartTest, ReceivePriorityOverThrEmpty) {
  wr(U::kIer, U::kIerRdi | U::kIerThri);
  push("k");
  EXPECT_EQ(rd(U::kIirFcr), U::kIirRdi);
  rd(U::kRbrThr);
  EXPECT_EQ(rd(U::kIirFcr), U::kIirThri);
}

TEST_F(UartTest, LoopbackAndModemStatus) {
  wr(U::kMcr, U::kMcrLoop);
  EXPECT_EQ(rd(U::kMsr) & 0xf0, 0);
  wr(U::kRbrThr, 'L');
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(rd(U::kRbrThr), 'L');
  wr(U::kIer, U::kIerMsi);
  wr(U::kMcr, U::kMcrLoop | U::kMcrRts | U::kMcrDtr);
  EXPECT_TRUE(line_.level);
  EXPECT_EQ(rd(U::kIirFcr), U::kIirMsi);
  const u8 msr = rd(U::kMsr);
  EXPECT_EQ(msr & (U::kMsrCts | U::kMsrDsr), U::kMsrCts | U::kMsrDsr);
  EXPECT_EQ(msr & 0x03, 0x03);  // delta CTS and delta DSR
  EXPECT_FALSE(line_.level);    // reading MSR cleared the deltas
}

TEST_F(UartTest, ResetLowersLineAndDropsInput) {
  wr(U::kIer, U::kIerRdi);
  push("abc");
  ASSERT_TRUE(line_.level);
  uart_.reset();
  EXPECT_FALSE(line_.level);
  EXPECT_EQ(uart_.input_pending(), 0u);
}

TEST_F(UartTest, WideAccessHitsTheByteRegister) {
  uart_.write(U::kScr, 4, 0x1234'5678);
  EXPECT_EQ(uart_.read(U::kScr, 4), 0x78u);
}

}  // namespace
}  // namespace dvmm::devices
