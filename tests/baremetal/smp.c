// Several harts: SBI HSM start/stop/status, IPIs (SSIP through the SBI) and shared counters
// updated with AMOs and LR/SC loops; the totals must be exact. Run with 4 harts.
#include "rt.h"

#define NHARTS 4
#define ITERS 100000

static volatile u32 count_w;
static volatile u64 count_d;
static volatile u32 count_lr_w;
static volatile u64 count_lr_d;
static volatile u64 count_locked;  // plain increments under an amoswap spin lock
static volatile int lock_word;
static volatile u64 or_bits;
static volatile i64 max_value = -1000000;
static volatile i64 min_value = 1000000;
static volatile u32 workers_done;
static volatile u32 go;

static inline void lr_sc_inc_w(volatile u32* p) {
  u32 tmp, fail;
  __asm__ volatile(
      "1: lr.w %0, (%2)\n"
      "   addiw %0, %0, 1\n"
      "   sc.w %1, %0, (%2)\n"
      "   bnez %1, 1b\n"
      : "=&r"(tmp), "=&r"(fail)
      : "r"(p)
      : "memory");
}
static inline void lr_sc_inc_d(volatile u64* p) {
  u64 tmp, fail;
  __asm__ volatile(
      "1: lr.d.aqrl %0, (%2)\n"
      "   addi %0, %0, 1\n"
      "   sc.d.rl %1, %0, (%2)\n"
      "   bnez %1, 1b\n"
      : "=&r"(tmp), "=&r"(fail)
      : "r"(p)
      : "memory");
}

static void worker(u64 hartid, u64 iters) {
  while (!go) {
  }
  for (u64 i = 0; i < iters; ++i) {
    __asm__ volatile("amoadd.w zero, %0, (%1)" ::"r"(1), "r"(&count_w) : "memory");
    __asm__ volatile("amoadd.d.aqrl zero, %0, (%1)" ::"r"(1), "r"(&count_d) : "memory");
    lr_sc_inc_w(&count_lr_w);
    lr_sc_inc_d(&count_lr_d);
    if ((i & 15) == 0) {
      while (__atomic_exchange_n(&lock_word, 1, __ATOMIC_ACQUIRE)) {
      }
      count_locked = count_locked + 1;
      __atomic_store_n(&lock_word, 0, __ATOMIC_RELEASE);
    }
  }
  __asm__ volatile("amoor.d zero, %0, (%1)" ::"r"(1ul << (hartid * 8)), "r"(&or_bits) : "memory");
  __asm__ volatile("amomax.d zero, %0, (%1)" ::"r"((i64)hartid * 7 - 3), "r"(&max_value) : "memory");
  __asm__ volatile("amomin.d zero, %0, (%1)" ::"r"(-(i64)hartid * 5), "r"(&min_value) : "memory");
  __atomic_fetch_add(&workers_done, 1, __ATOMIC_RELEASE);
}

static void secondary(u64 hartid, u64 arg) { worker(hartid, arg); }

// ------------------------------------------------------------------ IPIs
#define PINGS 500
static volatile u64 pings_received;  // by hart 1
static volatile u64 pongs_received;  // by hart 0
static volatile int ipi_ready;
static volatile int ipi_stop;

static void ipi_handler(struct trap_frame* f, u64 cause) {
  (void)f;
  if (cause != IRQ_SSI) {
    csr_clear(CSR_SIE, 1ul << cause);
    return;
  }
  csr_clear(CSR_SIP, 1ul << IRQ_SSI);
  if (this_hart()->hartid == 1) {
    pings_received++;
    sbi_send_ipi(1, 0);  // pong to hart 0
  } else {
    pongs_received++;
  }
}

static void ipi_responder(u64 hartid, u64 arg) {
  (void)hartid;
  (void)arg;
  this_hart()->irq = ipi_handler;
  csr_write(CSR_SIE, 1ul << IRQ_SSI);
  ipi_ready = 1;
  WAIT_WITH_IRQS(ipi_stop);
}

static void wait_status(u64 hart, long status) {
  for (int i = 0; i < 10000000 && sbi_hart_status(hart) != status; ++i) {
  }
  CHECK_EQ(sbi_hart_status(hart), status);
}

static void test_ipi(void) {
  SECTION("IPI ping-pong between two harts");
  CHECK_EQ(sbi_hart_status(1), 1);  // stopped
  CHECK_EQ(sbi_hart_start(1, ipi_responder, 0), 0);
  CHECK(sbi_hart_start(1, ipi_responder, 0) != 0);  // already started
  while (!ipi_ready) {
  }
  CHECK_EQ(sbi_hart_status(1), 0);  // started
  this_hart()->irq = ipi_handler;
  csr_write(CSR_SIE, 1ul << IRQ_SSI);
  for (u64 i = 0; i < PINGS; ++i) {
    CHECK_EQ(sbi_send_ipi(1ul << 1, 0), 0);
    WAIT_WITH_IRQS(pongs_received >= i + 1);
  }
  CHECK_EQ(pings_received, PINGS);
  CHECK_EQ(pongs_received, PINGS);
  // hart_mask_base with an offset.
  sbi_send_ipi(1, 1);
  WAIT_WITH_IRQS(pongs_received >= PINGS + 1);
  CHECK_EQ(pings_received, PINGS + 1);
  ipi_stop = 1;
  sbi_send_ipi(1ul << 1, 0);
  wait_status(1, 1);  // the responder returned and stopped
  csr_set(CSR_SSTATUS, SSTATUS_SIE);  // take the last pong
  __asm__ volatile("nop");
  csr_clear(CSR_SSTATUS, SSTATUS_SIE);
  csr_write(CSR_SIE, 0);
  this_hart()->irq = 0;
  if (on_dvmm()) CHECK_EQ(sbi_send_ipi(1ul << 40, 0) != 0, 1);  // no such hart (OpenSBI 1.1 ignores it)
}

static void test_single_hart_amo(void) {
  SECTION("AMO results on one hart");
  static volatile u64 v __attribute__((aligned(64)));
  u64 old;
  v = 10;
  __asm__ volatile("amoswap.d %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(20ul) : "memory");
  CHECK_EQ(old, 10);
  CHECK_EQ(v, 20);
  __asm__ volatile("amoand.d %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(0x14ul) : "memory");
  CHECK_EQ(old, 20);
  CHECK_EQ(v, 0x14);
  __asm__ volatile("amoxor.d %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(0xfful) : "memory");
  CHECK_EQ(v, 0xeb);
  __asm__ volatile("amominu.d %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(~0ul) : "memory");
  CHECK_EQ(v, 0xeb);
  __asm__ volatile("amomin.d %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(~0ul) : "memory");
  CHECK_EQ(v, ~0ul);
  __asm__ volatile("amomaxu.d %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(5ul) : "memory");
  CHECK_EQ(v, ~0ul);
  __asm__ volatile("amomax.d %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(5ul) : "memory");
  CHECK_EQ(v, 5);
  // W forms sign-extend the old value and leave the upper word alone.
  v = 0x1234567880000000ul;
  __asm__ volatile("amoadd.w %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(1ul) : "memory");
  CHECK_EQ(old, 0xffffffff80000000ul);
  CHECK_EQ(v, 0x1234567880000001ul);
  __asm__ volatile("amomaxu.w %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(0x7ffffffful) : "memory");
  CHECK_EQ(v, 0x1234567880000001ul);
  __asm__ volatile("amomax.w %0, %2, (%1)" : "=r"(old) : "r"(&v), "r"(0x7ffffffful) : "memory");
  CHECK_EQ(v, 0x123456787ffffffful);
  // SC fails without a reservation... or after a store to the reserved address on this hart
  // is allowed to succeed; only check that a matching LR/SC pair succeeds.
  u64 fail;
  __asm__ volatile("lr.d %0, (%2)\n sc.d %1, %3, (%2)" : "=&r"(old), "=&r"(fail) : "r"(&v), "r"(9ul) : "memory");
  CHECK_EQ(fail, 0);
  CHECK_EQ(v, 9);
  // sc.w after lr.w to the same word.
  static volatile u32 w = 3;
  u32 ow;
  __asm__ volatile("lr.w %0, (%2)\n sc.w %1, %3, (%2)" : "=&r"(ow), "=&r"(fail) : "r"(&w), "r"(4u) : "memory");
  CHECK_EQ(ow, 3);
  CHECK_EQ(fail, 0);
  CHECK_EQ(w, 4);
  // An SC to a different address than the LR must fail (and not store).
  static volatile u64 other __attribute__((aligned(64))) = 77;
  __asm__ volatile("lr.d %0, (%2)\n sc.d %1, %4, (%3)" : "=&r"(old), "=&r"(fail) : "r"(&v), "r"(&other), "r"(1ul) : "memory");
  CHECK(fail != 0);
  CHECK_EQ(other, 77);
  // A second SC after a successful one fails (the reservation is gone).
  __asm__ volatile("lr.d %0, (%2)\n sc.d %1, %3, (%2)\n sc.d %1, %3, (%2)" : "=&r"(old), "=&r"(fail) : "r"(&v), "r"(11ul) : "memory");
  CHECK(fail != 0);
  CHECK_EQ(v, 11);
}

static void test_counters(void) {
  SECTION("shared counters: 4 harts x 100000 increments");
  for (u64 h = 1; h < NHARTS; ++h) CHECK_EQ(sbi_hart_start(h, secondary, ITERS), 0);
  for (u64 h = 1; h < NHARTS; ++h) wait_status(h, 0);
  go = 1;
  worker(0, ITERS);
  while (__atomic_load_n(&workers_done, __ATOMIC_ACQUIRE) < NHARTS) {
  }
  CHECK_EQ(count_w, NHARTS * ITERS);
  CHECK_EQ(count_d, NHARTS * ITERS);
  CHECK_EQ(count_lr_w, NHARTS * ITERS);
  CHECK_EQ(count_lr_d, NHARTS * ITERS);
  CHECK_EQ(count_locked, NHARTS * ((ITERS + 15) / 16));
  CHECK_EQ(or_bits, 0x01010101ul);
  CHECK_EQ(max_value, (NHARTS - 1) * 7 - 3);
  CHECK_EQ(min_value, -(i64)(NHARTS - 1) * 5);
  for (u64 h = 1; h < NHARTS; ++h) wait_status(h, 1);
}

int main(u64 hartid) {
  if (hartid != 0) {
    rt_printf("boot hart must be 0 (got %lu)\n", hartid);
    return 1;
  }
  test_single_hart_amo();
  test_ipi();
  test_counters();
  return rt_failures;
}
