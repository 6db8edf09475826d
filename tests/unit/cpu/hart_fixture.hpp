// Test fixture for the cpu layer: 4 MiB of guest RAM at 0x80000000, one hart, and helpers to
// place code and data and run until the program's final ecall (an SBI exit in S-mode).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>
#include <string>
#include <variant>
#include <vector>

#include "cpu/exit.hpp"
#include "cpu/hart.hpp"
#include "cpu/time_source.hpp"
#include "memory/guest_ram.hpp"
#include "unit/cpu/encode.hpp"

namespace dvmm::test {

// Code as bytes, built from 32-bit and 16-bit instructions.
class Code {
 public:
  Code() = default;
  Code(std::initializer_list<u32> words) {
    for (u32 w : words) i(w);
  }
  Code& i(u32 w) {
    for (int k = 0; k < 4; ++k) bytes_.push_back(static_cast<u8>(w >> (8 * k)));
    return *this;
  }
  Code& c(u16 h) {
    bytes_.push_back(static_cast<u8>(h));
    bytes_.push_back(static_cast<u8>(h >> 8));
    return *this;
  }
  // li rd, value: always 8 instructions (lui, addiw, then 32 bits shifted in).
  Code& li(u32 rd, u64 v) {
    const i32 hi = static_cast<i32>(v >> 32);
    const u32 lui_imm = static_cast<u32>((static_cast<i64>(hi) + 0x800) >> 12) & 0xfffff;
    const i32 lo12 = static_cast<i32>(static_cast<u32>(hi) << 20) >> 20;
    i(enc::lui(rd, lui_imm));
    i(enc::addiw(rd, rd, lo12));
    i(enc::slli(rd, rd, 11));
    i(enc::addi(rd, rd, static_cast<i32>((v >> 21) & 0x7ff)));
    i(enc::slli(rd, rd, 11));
    i(enc::addi(rd, rd, static_cast<i32>((v >> 10) & 0x7ff)));
    i(enc::slli(rd, rd, 10));
    i(enc::addi(rd, rd, static_cast<i32>(v & 0x3ff)));
    return *this;
  }
  std::size_t size() const { return bytes_.size(); }
  const std::vector<u8>& bytes() const { return bytes_; }

 private:
  std::vector<u8> bytes_;
};

template <typename T>
const char* exit_kind(const T& exit) {
  return cpu::exit_name(exit);
}

class HartTest : public ::testing::Test {
 protected:
  static constexpr Gpa kBase = 0x80000000;
  static constexpr u64 kRamSize = 4 << 20;
  static constexpr Gpa kData = kBase + 0x100000;  // a data area tests may use
  static constexpr Gpa kTrapVector = kBase + 0x200000;

  memory::GuestRam ram_{kBase, kRamSize};
  cpu::HostMonotonicTime time_;
  cpu::Hart hart_{0, ram_, time_};

  // Writes `code` at `at` and resets the hart there in S-mode. Puts an `ecall` loop at
  // kTrapVector and points stvec at it, so that an exception taken by the guest ends the run
  // as an SBI exit with a7 = kTrapMarker.
  static constexpr u64 kTrapMarker = 0x7eb;
  void load(const Code& code, Gpa at = kBase) {
    ASSERT_TRUE(ram_.write(at, code.bytes().data(), code.size()));
    Code trap;
    trap.i(enc::addi(enc::a7, 0, static_cast<i32>(kTrapMarker))).i(enc::ecall());
    ASSERT_TRUE(ram_.write(kTrapVector, trap.bytes().data(), trap.size()));
    hart_.reset(at, 0, 0);
    hart_.debug_write_csr(enc::kStvec, kTrapVector);
    hart_.debug_write_csr(enc::kSstatus, u64{1} << 13);  // FS = Initial
  }

  cpu::Exit run(u64 budget = 1'000'000) { return hart_.run(budget); }

  // Runs to the final ecall; fails the test if the guest trapped or another exit came.
  void run_to_ecall(u64 budget = 1'000'000) {
    cpu::Exit e = run(budget);
    auto* sbi = std::get_if<cpu::ExitSbiCall>(&e);
    ASSERT_NE(sbi, nullptr) << "exit " << cpu::exit_name(e) << " at pc 0x" << std::hex
                            << hart_.pc();
    ASSERT_NE(sbi->eid, kTrapMarker)
        << "guest trap: scause " << std::hex << *hart_.debug_read_csr(enc::kScause) << " sepc 0x"
        << *hart_.debug_read_csr(enc::kSepc) << " stval 0x" << *hart_.debug_read_csr(enc::kStval);
  }

  // Runs and expects the guest to take an exception with `cause` (delivered through stvec).
  void run_to_trap(u64 cause, u64 budget = 1'000'000) {
    cpu::Exit e = run(budget);
    auto* sbi = std::get_if<cpu::ExitSbiCall>(&e);
    ASSERT_NE(sbi, nullptr) << "exit " << cpu::exit_name(e);
    ASSERT_EQ(sbi->eid, kTrapMarker) << "no trap";
    EXPECT_EQ(*hart_.debug_read_csr(enc::kScause), cause);
  }

  // Convenience: runs `code` followed by an ecall with registers preset.
  void exec(Code code, std::initializer_list<std::pair<unsigned, u64>> regs = {}) {
    code.i(enc::ecall());
    load(code);
    for (auto [r, v] : regs) hart_.set_x(r, v);
    run_to_ecall();
  }

  u64 x(unsigned r) const { return hart_.x(r); }
  u64 csr(u16 n) const { return hart_.debug_read_csr(n).value_or(0xbad0bad0bad0bad0); }
  u64 read64(Gpa a) const {
    u64 v = 0;
    ram_.read(a, &v, 8);
    return v;
  }
  void write64(Gpa a, u64 v) { ram_.write(a, &v, 8); }
  u32 read32(Gpa a) const {
    u32 v = 0;
    ram_.read(a, &v, 4);
    return v;
  }
  void write32(Gpa a, u32 v) { ram_.write(a, &v, 4); }
};

}  // namespace dvmm::test
