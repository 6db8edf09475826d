// Interrupts: the Sstc timer (stimecmp), SSIP, priorities, masking by sstatus.SIE and sie,
// delivery in U-mode regardless of SIE, wfi wake-up, vectored stvec and the SBI timer.
#include "rt.h"

static void reset_irq_log(void) {
  struct hart_data* h = this_hart();
  for (int i = 0; i < 16; ++i) h->irq_count[i] = 0;
  h->irq_order_n = 0;
}

static void test_timer(void) {
  SECTION("stimecmp timer interrupt");
  struct hart_data* h = this_hart();
  reset_irq_log();
  csr_write(CSR_STIMECMP, ~0ul);
  csr_write(CSR_SIE, 1ul << IRQ_STI);
  u64 start = read_time();
  u64 deadline = start + 20000;  // 2 ms at 10 MHz
  csr_write(CSR_STIMECMP, deadline);
  WAIT_WITH_IRQS(h->irq_count[IRQ_STI] != 0);
  u64 now = read_time();
  CHECK(now >= deadline);
  CHECK_EQ(h->irq_count[IRQ_STI], 1);
  CHECK_EQ(csr_read(CSR_STIMECMP), ~0ul);  // the default handler silenced it
  CHECK_EQ(csr_read(CSR_SIP) & (1ul << IRQ_STI), 0);
  // A timer in the past fires at once.
  csr_write(CSR_STIMECMP, 0);
  CHECK(csr_read(CSR_SIP) & (1ul << IRQ_STI));
  csr_set(CSR_SSTATUS, SSTATUS_SIE);
  __asm__ volatile("nop");
  csr_clear(CSR_SSTATUS, SSTATUS_SIE);
  CHECK_EQ(h->irq_count[IRQ_STI], 2);
}

static void test_masking(void) {
  SECTION("masking by SIE and sie");
  struct hart_data* h = this_hart();
  reset_irq_log();
  csr_write(CSR_SIE, 0);
  csr_write(CSR_STIMECMP, 0);  // STIP pending
  csr_set(CSR_SIP, 1ul << IRQ_SSI);
  csr_set(CSR_SSTATUS, SSTATUS_SIE);
  for (volatile int i = 0; i < 100; ++i) {
  }
  csr_clear(CSR_SSTATUS, SSTATUS_SIE);
  CHECK_EQ(h->irq_count[IRQ_STI] + h->irq_count[IRQ_SSI], 0);
  CHECK_EQ(csr_read(CSR_SIP) & 0x22, 0x22);

  csr_write(CSR_SIE, 0x222);
  for (volatile int i = 0; i < 100; ++i) {
  }
  CHECK_EQ(h->irq_count[IRQ_STI] + h->irq_count[IRQ_SSI], 0);

  SECTION("priority: SSI before STI");
  csr_set(CSR_SSTATUS, SSTATUS_SIE);
  __asm__ volatile("nop; nop");
  csr_clear(CSR_SSTATUS, SSTATUS_SIE);
  CHECK_EQ(h->irq_order_n, 2);
  CHECK_EQ(h->irq_order[0], IRQ_SSI);
  CHECK_EQ(h->irq_order[1], IRQ_STI);

  SECTION("wfi wakes with SIE clear");
  reset_irq_log();
  csr_write(CSR_SIE, 1ul << IRQ_STI);
  u64 deadline = read_time() + 10000;
  csr_write(CSR_STIMECMP, deadline);
  wfi();
  // Wake-up may be spurious; wait for the condition itself.
  while ((csr_read(CSR_SIP) & (1ul << IRQ_STI)) == 0) wfi();
  CHECK(read_time() >= deadline);
  CHECK_EQ(h->irq_count[IRQ_STI], 0);
  csr_write(CSR_STIMECMP, ~0ul);
  csr_write(CSR_SIE, 0);
}

static u64 u_spin(u64 n) {
  for (volatile u64 i = 0; i < n; ++i) {
  }
  return n;
}

static void test_user_interrupt(void) {
  SECTION("interrupts are taken in U-mode even with SIE clear");
  struct hart_data* h = this_hart();
  reset_irq_log();
  csr_clear(CSR_SSTATUS, SSTATUS_SIE | SSTATUS_SPIE);
  csr_write(CSR_SIE, 1ul << IRQ_SSI);
  csr_set(CSR_SIP, 1ul << IRQ_SSI);
  CHECK_EQ(h->irq_count[IRQ_SSI], 0);
  CHECK_EQ(run_user(u_spin, 10, 0), 10);
  CHECK_EQ(h->irq_count[IRQ_SSI], 1);
  // A timer that expires while U-mode runs.
  reset_irq_log();
  csr_write(CSR_SIE, 1ul << IRQ_STI);
  csr_write(CSR_STIMECMP, read_time() + 1000);
  run_user(u_spin, 3000000, 0);
  CHECK_EQ(h->irq_count[IRQ_STI], 1);
  csr_write(CSR_SIE, 0);
}

// Vectored mode: interrupts jump to base + 4 * cause.
extern char vec_table[];
volatile u64 vec_hits[16];
__asm__(
    ".align 8\n"
    ".option push\n.option norvc\n"
    "vec_table:\n"
    "  j rt_trap_vector\n"  // exceptions
    "  j vec_ssi\n"
    "  j vec_bad\n j vec_bad\n j vec_bad\n"
    "  j vec_sti\n"
    "  j vec_bad\n j vec_bad\n j vec_bad\n j vec_bad\n"
    ".option pop\n"
    "vec_ssi:\n"
    "  csrrw sp, sscratch, sp\n addi sp, sp, -16\n sd t0, 0(sp)\n sd t1, 8(sp)\n"
    "  lla t0, vec_hits\n ld t1, 8(t0)\n addi t1, t1, 1\n sd t1, 8(t0)\n"
    "  csrci sip, 2\n"
    "  ld t0, 0(sp)\n ld t1, 8(sp)\n addi sp, sp, 16\n csrrw sp, sscratch, sp\n sret\n"
    "vec_sti:\n"
    "  csrrw sp, sscratch, sp\n addi sp, sp, -16\n sd t0, 0(sp)\n sd t1, 8(sp)\n"
    "  lla t0, vec_hits\n ld t1, 40(t0)\n addi t1, t1, 1\n sd t1, 40(t0)\n"
    "  li t0, -1\n csrw stimecmp, t0\n"
    "  ld t0, 0(sp)\n ld t1, 8(sp)\n addi sp, sp, 16\n csrrw sp, sscratch, sp\n sret\n"
    "vec_bad:\n"
    "  lla t0, vec_hits\n li t1, 1\n sd t1, 0(t0)\n j vec_bad_loop\n"
    "vec_bad_loop: csrci sstatus, 2\n sret\n");

static void test_vectored(void) {
  SECTION("vectored stvec");
  u64 saved = csr_read(CSR_STVEC);
  csr_write(CSR_STVEC, (u64)vec_table | 1);
  CHECK_EQ(csr_read(CSR_STVEC), (u64)vec_table | 1);
  csr_write(CSR_SIE, (1ul << IRQ_SSI) | (1ul << IRQ_STI));
  csr_set(CSR_SIP, 1ul << IRQ_SSI);
  csr_write(CSR_STIMECMP, 0);
  csr_set(CSR_SSTATUS, SSTATUS_SIE);
  __asm__ volatile("nop; nop; nop");
  csr_clear(CSR_SSTATUS, SSTATUS_SIE);
  CHECK_EQ(vec_hits[1], 1);
  CHECK_EQ(vec_hits[5], 1);
  CHECK_EQ(vec_hits[0], 0);
  // Exceptions still go to the base. (QEMU 7.2 jumps to stvec with the mode bits still set,
  // so this runs on dvmm only.)
  if (on_dvmm()) {
    struct trap_record* t = arm_trap(1);
    __asm__ volatile("unimp");
    CHECK_EQ(t->count, 1);
    CHECK_EQ(t->scause, 2);
    disarm_trap();
  }
  csr_write(CSR_STVEC, saved);
  csr_write(CSR_SIE, 0);
}

static void test_sbi_timer(void) {
  SECTION("SBI set_timer");
  struct hart_data* h = this_hart();
  reset_irq_log();
  csr_write(CSR_SIE, 1ul << IRQ_STI);
  u64 deadline = read_time() + 5000;
  sbi_set_timer(deadline);
  WAIT_WITH_IRQS(h->irq_count[IRQ_STI] != 0);
  CHECK(read_time() >= deadline);
  csr_write(CSR_SIE, 0);
  csr_write(CSR_STIMECMP, ~0ul);
}

int main(u64 hartid) {
  (void)hartid;
  test_timer();
  test_masking();
  test_user_interrupt();
  test_vectored();
  test_sbi_timer();
  return rt_failures;
}
