// Synchronous exceptions: causes, sepc, stval, sstatus bits on entry and sret, U-mode entry
// and exit, transparent misaligned accesses, and access faults the CPU raises itself.
#include "rt.h"

// Address of the instruction emitted by `insn`, which traps.
#define AT(insn)                                                                  \
  ({                                                                              \
    u64 pc_;                                                                      \
    __asm__ volatile("lla %0, 1f\n1: " insn "\n" : "=r"(pc_)::"memory");         \
    pc_;                                                                          \
  })

// An address with no RAM and no device on both QEMU virt and the dvmm harness.
#define NO_MEMORY 0x20000ul

static void check_illegal(u64 pc, u64 bits) {
  struct trap_record* t = &this_hart()->trap;
  CHECK_EQ(t->count, 1);
  CHECK_EQ(t->scause, 2);
  CHECK_EQ(t->sepc, pc);
  // stval may be 0 or the instruction bits; dvmm writes the bits.
  if (on_dvmm() || t->stval != 0) CHECK_EQ(t->stval, bits);
}

static void test_illegal(void) {
  SECTION("illegal instructions");
  u64 pc;
  arm_trap(1);
  pc = AT(".2byte 0x0000");
  check_illegal(pc, 0);

  arm_trap(1);
  pc = AT(".word 0x00000077");  // reserved major opcode
  check_illegal(pc, 0x77);

  arm_trap(1);
  pc = AT(".word 0x30200073");  // mret from S-mode
  check_illegal(pc, 0x30200073);

  arm_trap(1);
  pc = AT("csrr a5, mstatus");
  check_illegal(pc, 0x300027f3);

  arm_trap(1);
  pc = AT(".word 0xc0001073");  // unimp: csrrw x0, cycle, x0 (read-only CSR)
  check_illegal(pc, 0xc0001073);

  arm_trap(1);
  pc = AT(".2byte 0x4002");  // c.lwsp x0: reserved
  check_illegal(pc, 0x4002);

  arm_trap(1);
  pc = AT(".2byte 0x8002");  // c.jr x0: reserved
  check_illegal(pc, 0x8002);

  arm_trap(1);
  pc = AT(".word 0x0000500f");  // MISC-MEM funct3 5: not an instruction
  check_illegal(pc, 0x500f);

  arm_trap(1);
  pc = AT(".word 0x02a5d51b");  // srliw with shamt[5] set: reserved
  check_illegal(pc, 0x02a5d51b);
  disarm_trap();
}

static void test_breakpoint(void) {
  SECTION("breakpoints");
  arm_trap(1);
  u64 pc = AT("ebreak");
  struct trap_record* t = &this_hart()->trap;
  CHECK_EQ(t->count, 1);
  CHECK_EQ(t->scause, 3);
  CHECK_EQ(t->sepc, pc);
  CHECK(t->stval == 0 || t->stval == pc);

  arm_trap(1);
  pc = AT("c.ebreak");
  CHECK_EQ(t->count, 1);
  CHECK_EQ(t->scause, 3);
  CHECK_EQ(t->sepc, pc);
  CHECK(t->stval == 0 || t->stval == pc);
  disarm_trap();
}

static u64 u_ecall(u64 arg) {
  register u64 a0 __asm__("a0") = arg;
  register u64 a7 __asm__("a7") = 1234;
  __asm__ volatile(".global u_ecall_insn\nu_ecall_insn: ecall" : "+r"(a0) : "r"(a7) : "memory");
  return a0 + 1;
}
extern char u_ecall_insn[];

static u64 u_privileged(u64 which) {
  switch (which) {
    case 0:
      __asm__ volatile("sret");
      break;
    case 1: {
      u64 v;
      __asm__ volatile("csrr %0, sstatus" : "=r"(v));
      break;
    }
    case 2:
      __asm__ volatile("wfi");
      break;
    case 3:
      __asm__ volatile("sfence.vma");
      break;
    case 4: {
      u64 v;
      __asm__ volatile("csrr %0, stimecmp" : "=r"(v));
      break;
    }
  }
  return 77;
}

static u64 u_regs(u64 arg) {
  u64 sp, tp;
  __asm__ volatile("mv %0, sp; mv %1, tp" : "=r"(sp), "=r"(tp));
  return arg ^ sp ^ tp;
}

static void test_umode(void) {
  SECTION("U-mode entry, ecall from U, exit");
  u64 top = user_stack_top();
  CHECK_EQ(run_user(u_regs, 5, 0), 5 ^ top ^ (u64)this_hart());

  arm_trap(1);
  u64 r = run_user(u_ecall, 41, 0);
  struct trap_record* t = &this_hart()->trap;
  CHECK_EQ(r, 42);
  CHECK_EQ(t->count, 1);
  CHECK_EQ(t->scause, 8);
  CHECK_EQ(t->sepc, (u64)u_ecall_insn);
  CHECK_EQ(t->stval, 0);
  CHECK_EQ(t->sstatus & SSTATUS_SPP, 0);

  SECTION("privileged instructions from U-mode");
  for (u64 i = 0; i < 5; ++i) {
    arm_trap(1);
    CHECK_EQ(run_user(u_privileged, i, 0), 77);
    CHECK_EQ(t->count, 1);
    CHECK_EQ(t->scause, 2);
  }
  disarm_trap();
}

static void test_sstatus_on_trap(void) {
  SECTION("sstatus on trap entry and sret");
  struct trap_record* t = &this_hart()->trap;
  csr_write(CSR_SIE, 0);
  csr_set(CSR_SSTATUS, SSTATUS_SIE);
  arm_trap(1);
  AT("unimp");
  CHECK_EQ(t->scause, 2);
  CHECK_EQ(t->sstatus & (SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP), SSTATUS_SPIE | SSTATUS_SPP);
  // sret restored SIE from SPIE.
  CHECK(csr_read(CSR_SSTATUS) & SSTATUS_SIE);

  csr_clear(CSR_SSTATUS, SSTATUS_SIE);
  arm_trap(1);
  AT("unimp");
  CHECK_EQ(t->sstatus & (SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP), SSTATUS_SPP);
  CHECK_EQ(csr_read(CSR_SSTATUS) & SSTATUS_SIE, 0);
  disarm_trap();

  // sret to S-mode: SIE <- SPIE, SPIE <- 1, SPP <- U.
  u64 after;
  __asm__ volatile(
      "lla t0, 1f\n"
      "csrw sepc, t0\n"
      "li t0, %1\n"
      "csrs sstatus, t0\n"
      "csrci sstatus, 2\n"
      "sret\n"
      "1: csrr %0, sstatus\n"
      "csrci sstatus, 2\n"
      : "=r"(after)
      : "i"(SSTATUS_SPP | SSTATUS_SPIE)
      : "t0", "memory");
  CHECK_EQ(after & (SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP), SSTATUS_SIE | SSTATUS_SPIE);

  // sret with SPIE = 0 clears SIE.
  __asm__ volatile(
      "lla t0, 1f\n"
      "csrw sepc, t0\n"
      "li t0, %1\n"
      "csrs sstatus, t0\n"
      "li t0, %2\n"
      "csrc sstatus, t0\n"
      "csrsi sstatus, 2\n"
      "sret\n"
      "1: csrr %0, sstatus\n"
      : "=r"(after)
      : "i"(SSTATUS_SPP), "i"(SSTATUS_SPIE)
      : "t0", "memory");
  CHECK_EQ(after & (SSTATUS_SIE | SSTATUS_SPIE | SSTATUS_SPP), SSTATUS_SPIE);

  // Registers survive a trap round trip (the handler restores them all).
  u64 a = 0x1111, b = 0x2222;
  arm_trap(1);
  __asm__ volatile("unimp\n addi %0, %0, 1\n addi %1, %1, 2" : "+r"(a), "+r"(b)::"memory");
  CHECK_EQ(a, 0x1112);
  CHECK_EQ(b, 0x2224);
  disarm_trap();
}

static u8 buf[8192] __attribute__((aligned(4096)));

static void test_misaligned(void) {
  SECTION("misaligned loads and stores are transparent");
  arm_trap(0);  // any trap is unexpected
  for (int i = 0; i < 64; ++i) buf[i] = (u8)(0x10 + i);
  for (int off = 0; off < 8; ++off) {
    u64 p = (u64)buf + (u64)off;
    u64 h, w, d, hu, wu;
    __asm__ volatile("lh %0, 0(%5)\n lw %1, 0(%5)\n ld %2, 0(%5)\n lhu %3, 0(%5)\n lwu %4, 0(%5)"
                     : "=&r"(h), "=&r"(w), "=&r"(d), "=&r"(hu), "=&r"(wu)
                     : "r"(p)
                     : "memory");
    u64 expect = 0;
    for (int i = 7; i >= 0; --i) expect = (expect << 8) | (u8)(0x10 + off + i);
    CHECK_EQ(d, expect);
    CHECK_EQ(wu, expect & 0xffffffff);
    CHECK_EQ(w, (u64)(i64)(i32)(expect & 0xffffffff));
    CHECK_EQ(hu, expect & 0xffff);
    CHECK_EQ(h, (u64)(i64)(int16_t)(expect & 0xffff));
  }
  // Sign extension of misaligned loads with the top bit set.
  for (int i = 0; i < 16; ++i) buf[i] = 0xf0 | (u8)i;
  {
    u64 h, w;
    __asm__ volatile("lh %0, 1(%2)\n lw %1, 3(%2)" : "=&r"(h), "=&r"(w) : "r"(buf) : "memory");
    CHECK_EQ(h, 0xfffffffffffff2f1ul);
    CHECK_EQ(w, 0xfffffffff6f5f4f3ul);
  }
  for (int off = 1; off < 8; ++off) {
    for (int i = 0; i < 32; ++i) buf[i] = 0;
    u64 p = (u64)buf + (u64)off;
    __asm__ volatile("sd %0, 0(%1)" ::"r"(0x8877665544332211ul), "r"(p) : "memory");
    __asm__ volatile("sw %0, 8(%1)" ::"r"(0xddccbbaaul), "r"(p) : "memory");
    __asm__ volatile("sh %0, 12(%1)" ::"r"(0xfeeful), "r"(p) : "memory");
    for (int i = 0; i < 8; ++i) CHECK_EQ(buf[off + i], 0x11 * (i + 1));
    CHECK_EQ(buf[off + 8], 0xaa);
    CHECK_EQ(buf[off + 11], 0xdd);
    CHECK_EQ(buf[off + 12], 0xef);
    CHECK_EQ(buf[off + 13], 0xfe);
    CHECK_EQ(buf[off - 1], 0);
    CHECK_EQ(buf[off + 14], 0);
  }
  // Across a page boundary.
  {
    u64 p = (u64)buf + 4096 - 3;
    __asm__ volatile("sd %0, 0(%1)" ::"r"(0x0102030405060708ul), "r"(p) : "memory");
    u64 v;
    __asm__ volatile("ld %0, 0(%1)" : "=r"(v) : "r"(p) : "memory");
    CHECK_EQ(v, 0x0102030405060708ul);
    CHECK_EQ(buf[4096 - 3], 0x08);
    CHECK_EQ(buf[4096 + 4], 0x01);
  }
  // Floating-point loads and stores.
  {
    u64 p = (u64)buf + 5;
    u64 out;
    __asm__ volatile("sd %1, 0(%2)\n fld fa0, 0(%2)\n fsd fa0, 1(%2)\n ld %0, 1(%2)"
                     : "=&r"(out)
                     : "r"(0x400921fb54442d18ul), "r"(p)
                     : "fa0", "memory");
    CHECK_EQ(out, 0x400921fb54442d18ul);
    u32 o32;
    __asm__ volatile("sw %1, 0(%2)\n flw fa0, 0(%2)\n fsw fa0, 3(%2)\n lwu %0, 3(%2)"
                     : "=&r"(o32)
                     : "r"(0x40490fdbu), "r"(p)
                     : "fa0", "memory");
    CHECK_EQ(o32, 0x40490fdb);
  }
  CHECK_NO_TRAP();
}

static void test_atomic_alignment_and_access(void) {
  SECTION("misaligned atomics and access faults");
  struct trap_record* t = &this_hart()->trap;
  u64 addr = (u64)buf + 2;
  arm_trap(1);
  __asm__ volatile("amoadd.w zero, zero, (%0)" ::"r"(addr) : "memory");
  CHECK_EQ(t->count, 1);
  // QEMU 7.2 may report the load-side cause (4/5) for an AMO.
  CHECK(t->scause == 6 || t->scause == 7 || (!on_dvmm() && (t->scause == 4 || t->scause == 5)));
  CHECK_EQ(t->stval, addr);

  arm_trap(1);
  addr = (u64)buf + 4;
  __asm__ volatile("amoswap.d zero, zero, (%0)" ::"r"(addr) : "memory");
  CHECK_EQ(t->count, 1);
  // QEMU 7.2 may report the load-side cause (4/5) for an AMO.
  CHECK(t->scause == 6 || t->scause == 7 || (!on_dvmm() && (t->scause == 4 || t->scause == 5)));
  CHECK_EQ(t->stval, addr);

  arm_trap(1);
  __asm__ volatile("lr.d zero, (%0)" ::"r"(addr) : "memory");
  CHECK_EQ(t->count, 1);
  CHECK(t->scause == 4 || t->scause == 5);
  CHECK_EQ(t->stval, addr);

  arm_trap(1);
  __asm__ volatile("amoadd.w zero, zero, (%0)" ::"r"(NO_MEMORY) : "memory");
  // QEMU 7.2 reports a load access fault for an AMO; the spec says store/AMO (7).
  CHECK_TRAP(on_dvmm() || t->scause != 5 ? 7 : 5, NO_MEMORY);

  arm_trap(1);
  __asm__ volatile("lr.w zero, (%0)" ::"r"(NO_MEMORY) : "memory");
  CHECK_TRAP(5, NO_MEMORY);

  SECTION("instruction access fault");
  arm_trap(1);
  __asm__ volatile("jalr %0" ::"r"(NO_MEMORY) : "ra", "memory");
  CHECK_TRAP(1, NO_MEMORY);
  CHECK_EQ(t->sepc, NO_MEMORY);
  disarm_trap();
}

int main(u64 hartid) {
  (void)hartid;
  rt_printf("traps: running on %s\n", on_dvmm() ? "dvmm" : "reference");
  test_illegal();
  test_breakpoint();
  test_umode();
  test_sstatus_on_trap();
  test_misaligned();
  test_atomic_alignment_and_access();
  return rt_failures;
}
