// Supervisor CSRs: sstatus/sie/sip masks, satp WARL, scounteren, the FP CSRs and FS, and
// CSRs that S-mode may not access.
#include "rt.h"

#define ILLEGAL_AT(stmt)                                  \
  do {                                                    \
    struct trap_record* t_ = arm_trap(1);                 \
    stmt;                                                 \
    CHECK_EQ(t_->count, 1);                               \
    CHECK_EQ(t_->scause, 2);                              \
    disarm_trap();                                        \
  } while (0)

// QEMU 7.2 (the reference these programs are also run on) lets UXL and VS be written, keeps
// sepc[0] and supports Sv57; those checks apply on dvmm only.
static void test_sstatus(void) {
  SECTION("sstatus");
  if (!on_dvmm()) return;
  u64 saved = csr_read(CSR_SSTATUS);
  // UXL reads as 2 (64-bit U-mode) and cannot be changed.
  CHECK_EQ(saved & SSTATUS_UXL, 2ul << 32);
  csr_write(CSR_SSTATUS, ~0ul & ~SSTATUS_SIE);
  u64 v = csr_read(CSR_SSTATUS);
  u64 writable = SSTATUS_SPIE | SSTATUS_SPP | SSTATUS_FS | SSTATUS_SUM | SSTATUS_MXR;
  CHECK_EQ(v & writable, writable);
  CHECK_EQ(v & SSTATUS_UXL, 2ul << 32);
  CHECK(v & SSTATUS_SD);  // FS = Dirty
  // Nothing else (VS, XS, UBE, reserved bits) reads as set.
  CHECK_EQ(v & ~(writable | SSTATUS_UXL | SSTATUS_SD), 0);
  csr_write(CSR_SSTATUS, 0);
  v = csr_read(CSR_SSTATUS);
  CHECK_EQ(v, 2ul << 32);
  csr_write(CSR_SSTATUS, SSTATUS_FS_INITIAL);
  CHECK_EQ(csr_read(CSR_SSTATUS), (2ul << 32) | SSTATUS_FS_INITIAL);
  csr_write(CSR_SSTATUS, SSTATUS_FS_CLEAN);
  CHECK_EQ(csr_read(CSR_SSTATUS), (2ul << 32) | SSTATUS_FS_CLEAN);
  csr_write(CSR_SSTATUS, saved);
}

static void test_sie_sip(void) {
  SECTION("sie and sip");
  csr_write(CSR_SIE, ~0ul);
  u64 sie = csr_read(CSR_SIE);
  CHECK_EQ(sie & 0x222, 0x222);
  // Only SSIE, STIE, SEIE (and LCOFIE where Sscofpmf exists, not on dvmm).
  CHECK_EQ(sie & ~0x2222ul, 0);
  if (on_dvmm()) CHECK_EQ(sie, 0x222);
  csr_write(CSR_SIE, 0);
  CHECK_EQ(csr_read(CSR_SIE), 0);

  // sip: only SSIP is writable; STIP follows stimecmp; SEIP comes from the PLIC.
  csr_write(CSR_STIMECMP, ~0ul);
  csr_write(CSR_SIP, ~0ul);
  CHECK_EQ(csr_read(CSR_SIP) & 0x222, 0x2);
  csr_write(CSR_SIP, 0);
  CHECK_EQ(csr_read(CSR_SIP) & 0x222, 0);
  csr_set(CSR_SIP, 2);
  CHECK_EQ(csr_read(CSR_SIP) & 0x222, 0x2);
  csr_clear(CSR_SIP, 2);
  CHECK_EQ(csr_read(CSR_SIP) & 0x222, 0);
  // STIP from stimecmp (Sstc).
  csr_write(CSR_STIMECMP, 0);
  CHECK_EQ(csr_read(CSR_SIP) & 0x20, 0x20);
  csr_write(CSR_STIMECMP, ~0ul);
  CHECK_EQ(csr_read(CSR_SIP) & 0x20, 0);
  // Writing STIP through sip does nothing.
  csr_set(CSR_SIP, 0x20);
  CHECK_EQ(csr_read(CSR_SIP) & 0x20, 0);
}

static void test_simple_rw(void) {
  SECTION("sscratch, sepc, scause, stval, stvec, stimecmp, senvcfg");
  u64 saved_scratch = csr_read(CSR_SSCRATCH);
  csr_write(CSR_SSCRATCH, 0x123456789abcdef0ul);
  CHECK_EQ(csr_read(CSR_SSCRATCH), 0x123456789abcdef0ul);
  CHECK_EQ(csr_swap(CSR_SSCRATCH, saved_scratch), 0x123456789abcdef0ul);

  // sepc: bit 0 is always zero (IALIGN = 16 with C).
  csr_write(CSR_SEPC, 0x80001235ul);
  if (on_dvmm()) CHECK_EQ(csr_read(CSR_SEPC), 0x80001234ul);
  csr_write(CSR_SEPC, 0x80001002ul);
  CHECK_EQ(csr_read(CSR_SEPC), 0x80001002ul);
  csr_write(CSR_STVAL, 0xdeadbeefcafe0000ul);
  CHECK_EQ(csr_read(CSR_STVAL), 0xdeadbeefcafe0000ul);
  csr_write(CSR_SCAUSE, 0x800000000000000ful | (1ul << 63));
  CHECK_EQ(csr_read(CSR_SCAUSE) >> 63, 1);
  csr_write(CSR_SCAUSE, 13);
  CHECK_EQ(csr_read(CSR_SCAUSE), 13);

  u64 saved_tvec = csr_read(CSR_STVEC);
  csr_write(CSR_STVEC, 0x80300001ul);  // vectored
  CHECK_EQ(csr_read(CSR_STVEC), 0x80300001ul);
  csr_write(CSR_STVEC, 0x80300000ul);
  CHECK_EQ(csr_read(CSR_STVEC), 0x80300000ul);
  csr_write(CSR_STVEC, saved_tvec);
  CHECK_EQ(csr_read(CSR_STVEC), saved_tvec);

  csr_write(CSR_STIMECMP, 0x1234567890ul);
  CHECK_EQ(csr_read(CSR_STIMECMP), 0x1234567890ul);
  csr_write(CSR_STIMECMP, ~0ul);
  CHECK_EQ(csr_read(CSR_STIMECMP), ~0ul);

  (void)csr_read(CSR_SENVCFG);  // exists
}

static void test_satp(void) {
  SECTION("satp WARL");
  CHECK_EQ(csr_read(CSR_SATP), 0);
  // Sv57 (mode 10) is not supported: the write is ignored entirely.
  if (on_dvmm()) {
    csr_write(CSR_SATP, (10ul << 60) | 0x80400ul);
    CHECK_EQ(csr_read(CSR_SATP), 0);
  }
  // Other unsupported modes too.
  csr_write(CSR_SATP, (11ul << 60) | 0x80400ul);
  CHECK_EQ(csr_read(CSR_SATP), 0);
  csr_write(CSR_SATP, (1ul << 60) | 0x80400ul);
  CHECK_EQ(csr_read(CSR_SATP), 0);
  // Bare with a non-zero PPN: either kept or zero; stays in Bare mode (no translation).
  csr_write(CSR_SATP, 0x80400ul);
  CHECK_EQ(csr_read(CSR_SATP) >> 60, 0);
  csr_write(CSR_SATP, 0);
  // Sv39 / Sv48 are accepted (paging.c switches to them with real tables).
}

static u64 u_counters(u64 which) {
  u64 v = 0;
  switch (which) {
    case 0:
      __asm__ volatile("rdcycle %0" : "=r"(v));
      break;
    case 1:
      __asm__ volatile("rdtime %0" : "=r"(v));
      break;
    case 2:
      __asm__ volatile("rdinstret %0" : "=r"(v));
      break;
  }
  return 1;
}

static void test_counters(void) {
  SECTION("counters and scounteren");
  u64 c0, c1, i0, i1, t0, t1;
  __asm__ volatile("rdcycle %0\n rdinstret %1\n rdtime %2" : "=r"(c0), "=r"(i0), "=r"(t0));
  for (volatile int i = 0; i < 1000; ++i) {
  }
  __asm__ volatile("rdcycle %0\n rdinstret %1\n rdtime %2" : "=r"(c1), "=r"(i1), "=r"(t1));
  CHECK(c1 > c0);
  CHECK(i1 > i0 + 1000);
  CHECK(t1 >= t0);

  struct trap_record* t = &this_hart()->trap;
  for (u64 which = 0; which < 3; ++which) {
    // QEMU 7.2 + OpenSBI 1.1 let U-mode read time regardless of scounteren.
    if (which == 1 && !on_dvmm()) continue;
    csr_write(CSR_SCOUNTEREN, 0);
    arm_trap(1);
    CHECK_EQ(run_user(u_counters, which, 0), 1);
    CHECK_EQ(t->count, 1);
    CHECK_EQ(t->scause, 2);
    // Only the counter's own bit enables it.
    csr_write(CSR_SCOUNTEREN, 7ul & ~(1ul << which));
    arm_trap(1);
    run_user(u_counters, which, 0);
    CHECK_EQ(t->count, 1);
    csr_write(CSR_SCOUNTEREN, 1ul << which);
    arm_trap(0);
    CHECK_EQ(run_user(u_counters, which, 0), 1);
    CHECK_EQ(t->count, 0);
  }
  csr_write(CSR_SCOUNTEREN, 7);
  CHECK_EQ(csr_read(CSR_SCOUNTEREN) & 7, 7);
  csr_write(CSR_SCOUNTEREN, 0);
  disarm_trap();

  // Counters are read-only.
  ILLEGAL_AT(__asm__ volatile("csrw cycle, zero"));
  ILLEGAL_AT(__asm__ volatile("csrw time, zero"));
  ILLEGAL_AT(__asm__ volatile("csrw instret, zero"));
  ILLEGAL_AT(__asm__ volatile("csrsi time, 1"));
  // csrrs with rs1 = x0 does not write, so it is legal on a read-only CSR.
  {
    u64 v;
    arm_trap(0);
    __asm__ volatile("csrrs %0, time, zero" : "=r"(v));
    __asm__ volatile("csrrc %0, cycle, zero" : "=r"(v));
    __asm__ volatile("csrrsi %0, instret, 0" : "=r"(v));
    disarm_trap();
  }
}

static void test_fp_csrs(void) {
  SECTION("fcsr, frm, fflags");
  csr_set(CSR_SSTATUS, SSTATUS_FS_INITIAL);
  u64 v;
  __asm__ volatile("fscsr %0" ::"r"(0xfful));
  __asm__ volatile("frcsr %0" : "=r"(v));
  CHECK_EQ(v, 0xff);
  __asm__ volatile("frrm %0" : "=r"(v));
  CHECK_EQ(v, 7);
  __asm__ volatile("frflags %0" : "=r"(v));
  CHECK_EQ(v, 0x1f);
  __asm__ volatile("fscsr %0" ::"r"(0xffffffffffffffff));
  __asm__ volatile("frcsr %0" : "=r"(v));
  CHECK_EQ(v, 0xff);
  __asm__ volatile("fsrm %0" ::"r"(0x1a));  // only 3 bits
  __asm__ volatile("frrm %0" : "=r"(v));
  CHECK_EQ(v, 2);
  __asm__ volatile("fsflags %0" ::"r"(0x3e));
  __asm__ volatile("frflags %0" : "=r"(v));
  CHECK_EQ(v, 0x1e);
  __asm__ volatile("frcsr %0" : "=r"(v));
  CHECK_EQ(v, 0x5e);
  __asm__ volatile("csrci fflags, 0x10");
  __asm__ volatile("frcsr %0" : "=r"(v));
  CHECK_EQ(v, 0x4e);
  __asm__ volatile("fscsr zero");

  // fflags accrue from arithmetic: 1.0 / 0.0 sets DZ.
  __asm__ volatile(
      "li t0, 1\n fcvt.d.l ft0, t0\n fmv.d.x ft1, zero\n fdiv.d ft2, ft0, ft1\n frflags %0"
      : "=r"(v)::"t0", "ft0", "ft1", "ft2");
  CHECK_EQ(v, 0x8);
  // Invalid rounding mode in frm makes dynamic-rounding instructions illegal.
  __asm__ volatile("fsrmi 5");
  ILLEGAL_AT(__asm__ volatile("fadd.d ft0, ft0, ft0, dyn" ::: "ft0"));
  __asm__ volatile("fsrmi 7");
  ILLEGAL_AT(__asm__ volatile("fadd.d ft0, ft0, ft0, dyn" ::: "ft0"));
  __asm__ volatile("fsrmi 0");
  // Reserved static rounding modes 5 and 6.
  ILLEGAL_AT(__asm__ volatile(".word 0x0200d053"));  // fadd.d f0, f1, f0 with rm=5
  ILLEGAL_AT(__asm__ volatile(".word 0x0200e053"));  // rm=6
  __asm__ volatile("fscsr zero");

  SECTION("FS field");
  csr_clear(CSR_SSTATUS, SSTATUS_FS);
  CHECK_EQ(csr_read(CSR_SSTATUS) & (SSTATUS_FS | SSTATUS_SD), 0);
  ILLEGAL_AT(__asm__ volatile("fadd.d ft0, ft0, ft0" ::: "ft0"));
  ILLEGAL_AT(__asm__ volatile("fmv.x.d t0, ft0" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("fmv.d.x ft0, zero" ::: "ft0"));
  ILLEGAL_AT(__asm__ volatile("fld ft0, 0(sp)" ::: "ft0"));
  ILLEGAL_AT(__asm__ volatile("fsd ft0, -8(sp)"));
  ILLEGAL_AT(__asm__ volatile("c.fldsp ft0, 0(sp)" ::: "ft0"));
  ILLEGAL_AT(__asm__ volatile("frcsr t0" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("frflags t0" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("fsrmi 1"));
  CHECK_EQ(csr_read(CSR_SSTATUS) & SSTATUS_FS, 0);

  // Initial -> Dirty on an FP register write.
  csr_set(CSR_SSTATUS, SSTATUS_FS_INITIAL);
  __asm__ volatile("fmv.d.x ft0, zero" ::: "ft0");
  CHECK_EQ(csr_read(CSR_SSTATUS) & SSTATUS_FS, SSTATUS_FS_DIRTY);
  CHECK(csr_read(CSR_SSTATUS) & SSTATUS_SD);
  // Clean -> Dirty on an fcsr write.
  csr_clear(CSR_SSTATUS, SSTATUS_FS);
  csr_set(CSR_SSTATUS, SSTATUS_FS_CLEAN);
  CHECK_EQ(csr_read(CSR_SSTATUS) & (SSTATUS_FS | SSTATUS_SD), SSTATUS_FS_CLEAN);
  __asm__ volatile("fsflags zero");
  CHECK_EQ(csr_read(CSR_SSTATUS) & SSTATUS_FS, SSTATUS_FS_DIRTY);
  // Clean -> Dirty on an FP load.
  csr_clear(CSR_SSTATUS, SSTATUS_FS);
  csr_set(CSR_SSTATUS, SSTATUS_FS_CLEAN);
  __asm__ volatile("fld ft0, 0(sp)" ::: "ft0");
  CHECK_EQ(csr_read(CSR_SSTATUS) & SSTATUS_FS, SSTATUS_FS_DIRTY);
  // An FP store or fmv to an integer register need not dirty the state; Dirty stays Dirty.
  csr_set(CSR_SSTATUS, SSTATUS_FS_DIRTY);
}

static void test_forbidden(void) {
  SECTION("M-mode and unimplemented CSRs are illegal from S-mode");
  ILLEGAL_AT(__asm__ volatile("csrr t0, mstatus" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("csrr t0, misa" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("csrr t0, mtvec" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("csrr t0, mepc" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("csrr t0, mhartid" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("csrr t0, mcycle" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("csrr t0, mip" ::: "t0"));
  ILLEGAL_AT(__asm__ volatile("csrw medeleg, zero"));
  ILLEGAL_AT(__asm__ volatile("csrr t0, 0x7b0" ::: "t0"));  // dcsr (debug mode)
  ILLEGAL_AT(__asm__ volatile("csrr t0, 0x5c0" ::: "t0"));  // custom, unimplemented
  if (on_dvmm()) {  // QEMU 7.2 implements the H extension
    ILLEGAL_AT(__asm__ volatile("csrr t0, 0x200" ::: "t0"));  // hypervisor vsstatus
    ILLEGAL_AT(__asm__ volatile("csrr t0, 0x600" ::: "t0"));  // hstatus
  }
  if (on_dvmm()) ILLEGAL_AT(__asm__ volatile("csrr t0, 0xc80" ::: "t0"));  // cycleh: RV32 only
}

int main(u64 hartid) {
  (void)hartid;
  test_sstatus();
  test_sie_sip();
  test_simple_rw();
  test_satp();
  test_counters();
  test_fp_csrs();
  test_forbidden();
  return rt_failures;
}
