// libFuzzer target for the decoder and interpreter: the input is a sequence of instruction
// words (and halfwords) written into guest RAM and run on a hart for a small budget, once in
// S-mode and once in U-mode, with every exit ending the run. It must never crash the host.
//
// Input layout: byte 0 selects options (bit 0: paging on with an identity map, bit 1: all
// exceptions exit instead of being delivered); the rest is code, also copied to the data
// page so that loads and stores find interesting values.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "cpu/exit.hpp"
#include "cpu/hart.hpp"
#include "cpu/time_source.hpp"
#include "memory/guest_ram.hpp"

namespace {

using namespace dvmm;

constexpr Gpa kBase = 0x80000000;
constexpr u64 kRamSize = 1 << 20;
constexpr Gpa kCode = kBase + 0x1000;
constexpr Gpa kData = kBase + 0x8000;
constexpr Gpa kRoot = kBase + 0x10000;
// stvec: an ecall, so that a trap ends the run with an SBI exit. (A guest that points stvec
// at faulting code makes a trap storm; run(budget) must still return - see
// ExitsTest.BudgetBoundsATrapStorm.)
constexpr Gpa kVector = kBase + 0x800;

struct World {
  memory::GuestRam ram{kBase, kRamSize};
  cpu::HostMonotonicTime time;
  cpu::Hart hart{0, ram, time};
};

World& world() {
  static World* w = new World();
  return *w;
}

void run_once(World& w, const uint8_t* code, size_t len, uint8_t options, bool user) {
  static const uint8_t zeros[4096] = {};
  w.ram.write(kCode, zeros, sizeof zeros);
  w.ram.write(kCode, code, len);
  w.ram.write(kData, code, len);
  // Identity map of the RAM for the paging variant, with 4K pages: the first page (S-mode
  // stub and trap vector) is S-only, the others are U pages when the code runs in U-mode.
  const u64 l1 = kRoot + 0x1000, l0 = kRoot + 0x2000;
  const u64 to_l1 = ((l1 >> 12) << 10) | 1, to_l0 = ((l0 >> 12) << 10) | 1;
  w.ram.write(kRoot + 8 * 2, &to_l1, 8);
  w.ram.write(l1, &to_l0, 8);
  for (u64 i = 0; i < kRamSize / 4096; ++i) {
    const u64 pte = (((kBase >> 12) + i) << 10) | 0xcf | (user && i != 0 ? 0x10 : 0);
    w.ram.write(l0 + 8 * i, &pte, 8);
  }
  cpu::ExecControls controls;
  controls.exception_bitmap = (options & 2) ? 0xffffff : 0;
  w.hart.set_controls(controls);
  w.hart.reset(user ? kBase : kCode, 0, 0);
  w.hart.debug_write_csr(0x100, (u64{1} << 13) | (user ? 0 : 2));  // FS = Initial
  const uint32_t ecall = 0x00000073;
  w.ram.write(kVector, &ecall, 4);
  w.hart.debug_write_csr(0x105, kVector);                          // stvec
  w.hart.debug_write_csr(0x104, 0x222);
  for (unsigned r = 1; r < 32; ++r) w.hart.set_x(r, kData + 8 * r);
  if (options & 1) w.hart.debug_write_csr(0x180, (u64{8} << 60) | (kRoot >> 12));
  if (user) {
    // A tiny S-mode stub at kBase: sepc = kCode, SPP = 0, sret.
    const uint32_t stub[] = {
        0x000012b7,  // lui t0, 1
        0x80000337,  // lui t1, 0x80000
        0x0062e2b3,  // or t0, t0, t1 -> 0xffffffff80001000
        0x02029293,  // slli t0, t0, 32
        0x0202d293,  // srli t0, t0, 32 -> 0x80001000
        0x14129073,  // csrw sepc, t0
        0x10000313,  // li t1, 256
        0x10033073,  // csrc sstatus, t1
        0x10200073,  // sret
    };
    w.ram.write(kBase, stub, sizeof stub);
  }
  for (int slice = 0; slice < 8; ++slice) {
    cpu::Exit e = w.hart.run(256);
    if (auto* r = std::get_if<cpu::ExitMmioRead>(&e)) {
      w.hart.complete_mmio_read(r->gpa * 0x9e3779b97f4a7c15ull);
      continue;
    }
    if (std::holds_alternative<cpu::ExitSbiCall>(e)) {
      w.hart.set_sbi_result(-2, 0);
      continue;
    }
    if (std::holds_alternative<cpu::ExitBudgetExhausted>(e) ||
        std::holds_alternative<cpu::ExitMmioWrite>(e) || std::holds_alternative<cpu::ExitWfi>(e)) {
      continue;
    }
    break;  // every other exit ends the run
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t options = data[0];
  const uint8_t* code = data + 1;
  size_t len = size - 1;
  if (len > 4096) len = 4096;
  World& w = world();
  run_once(w, code, len, options, false);
  run_once(w, code, len, options, true);
  return 0;
}
