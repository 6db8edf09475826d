// Bare-metal test runtime: SBI calls, output, checks and the C part of the trap handler.
#include "rt.h"

struct hart_data rt_harts[RT_MAX_HARTS];
volatile u64 rt_boot_a1;
volatile int rt_failures;
static volatile int print_lock;

#define TRAP_STACK_SIZE 8192
#define USER_STACK_SIZE 16384
static u8 trap_stacks[RT_MAX_HARTS][TRAP_STACK_SIZE] __attribute__((aligned(4096)));
static u8 user_stacks[RT_MAX_HARTS][USER_STACK_SIZE] __attribute__((aligned(4096)));
static void (*volatile start_fn[RT_MAX_HARTS])(u64, u64);
static volatile u64 start_arg[RT_MAX_HARTS];

void* memset(void* d, int c, unsigned long n) {
  u8* p = d;
  while (n--) *p++ = (u8)c;
  return d;
}
void* memcpy(void* d, const void* s, unsigned long n) {
  u8* p = d;
  const u8* q = s;
  while (n--) *p++ = *q++;
  return d;
}

// ------------------------------------------------------------------ SBI
struct sbiret sbi_call(u64 eid, u64 fid, u64 a0, u64 a1, u64 a2) {
  register u64 r_a0 __asm__("a0") = a0;
  register u64 r_a1 __asm__("a1") = a1;
  register u64 r_a2 __asm__("a2") = a2;
  register u64 r_a6 __asm__("a6") = fid;
  register u64 r_a7 __asm__("a7") = eid;
  __asm__ volatile("ecall" : "+r"(r_a0), "+r"(r_a1) : "r"(r_a2), "r"(r_a6), "r"(r_a7) : "memory");
  struct sbiret r = {(long)r_a0, (long)r_a1};
  return r;
}

void sbi_putchar(char c) {
  register u64 r_a0 __asm__("a0") = (u8)c;
  register u64 r_a7 __asm__("a7") = 1;
  __asm__ volatile("ecall" : "+r"(r_a0) : "r"(r_a7) : "memory", "a1");
}

void sbi_shutdown(int fail) {
  sbi_call(0x53525354, 0, 0, fail ? 1 : 0, 0);
  for (;;) {
  }
}

extern void rt_secondary_entry(void);
long sbi_hart_start(u64 hartid, void (*fn)(u64, u64), u64 arg) {
  start_fn[hartid] = fn;
  start_arg[hartid] = arg;
  __asm__ volatile("fence rw, rw" ::: "memory");
  return sbi_call(0x48534d, 0, hartid, (u64)&rt_secondary_entry, 0).error;
}
long sbi_hart_status(u64 hartid) {
  struct sbiret r = sbi_call(0x48534d, 2, hartid, 0, 0);
  return r.error ? r.error : r.value;
}
long sbi_send_ipi(u64 mask, u64 base) { return sbi_call(0x735049, 0, mask, base, 0).error; }
void sbi_set_timer(u64 when) { sbi_call(0x54494d45, 0, when, 0, 0); }

// ------------------------------------------------------------------ output
void rt_putc(char c) { sbi_putchar(c); }
void rt_puts(const char* s) {
  while (*s) rt_putc(*s++);
}

static void put_u64(u64 v, unsigned base, int width, char pad) {
  char buf[24];
  int n = 0;
  do {
    unsigned d = (unsigned)(v % base);
    buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v);
  while (n < width) buf[n++] = pad;
  while (n) rt_putc(buf[--n]);
}

void rt_vprintf(const char* fmt, va_list ap) {
  for (; *fmt; ++fmt) {
    if (*fmt != '%') {
      rt_putc(*fmt);
      continue;
    }
    ++fmt;
    char pad = ' ';
    int width = 0;
    if (*fmt == '0') {
      pad = '0';
      ++fmt;
    }
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    int is_long = 0;
    while (*fmt == 'l') {
      is_long = 1;
      ++fmt;
    }
    switch (*fmt) {
      case 'd': {
        i64 v = is_long ? va_arg(ap, i64) : va_arg(ap, int);
        if (v < 0) {
          rt_putc('-');
          v = -v;
        }
        put_u64((u64)v, 10, width, pad);
        break;
      }
      case 'u':
        put_u64(is_long ? va_arg(ap, u64) : va_arg(ap, unsigned), 10, width, pad);
        break;
      case 'x':
        put_u64(is_long ? va_arg(ap, u64) : va_arg(ap, unsigned), 16, width, pad);
        break;
      case 'p':
        rt_puts("0x");
        put_u64(va_arg(ap, u64), 16, 0, ' ');
        break;
      case 's':
        rt_puts(va_arg(ap, const char*));
        break;
      case 'c':
        rt_putc((char)va_arg(ap, int));
        break;
      default:
        rt_putc('%');
        rt_putc(*fmt);
    }
  }
}

void rt_lock(volatile int* l) {
  while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) {
  }
}
void rt_unlock(volatile int* l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

void rt_printf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rt_lock(&print_lock);
  rt_vprintf(fmt, ap);
  rt_unlock(&print_lock);
  va_end(ap);
}

// ------------------------------------------------------------------ checks
void rt_check_fail(const char* file, int line, const char* expr) {
  __atomic_fetch_add(&rt_failures, 1, __ATOMIC_RELAXED);
  rt_printf("FAILED %s:%d: %s\n", file, line, expr);
}
void rt_check_fail_eq(const char* file, int line, const char* a, const char* b, u64 va, u64 vb) {
  __atomic_fetch_add(&rt_failures, 1, __ATOMIC_RELAXED);
  rt_printf("FAILED %s:%d: %s == %s\n    actual   0x%lx\n    expected 0x%lx\n", file, line, a, b,
            va, vb);
}

void rt_finish(int failures) {
  if (failures || rt_failures) {
    rt_printf("FAIL: %d check(s) failed\n", failures > rt_failures ? failures : rt_failures);
    sbi_shutdown(1);
  }
  rt_printf("PASS\n");
  sbi_shutdown(0);
}

// ------------------------------------------------------------------ harts
struct hart_data* rt_hart_init(u64 hartid) {
  if (hartid >= RT_MAX_HARTS) {
    rt_printf("hart id %lu too large\n", hartid);
    sbi_shutdown(1);
  }
  struct hart_data* h = &rt_harts[hartid];
  h->hartid = hartid;
  h->trap_stack_top = (u64)&trap_stacks[hartid][TRAP_STACK_SIZE];
  return h;
}

void rt_secondary_main(u64 hartid) {
  __asm__ volatile("fence rw, rw" ::: "memory");
  start_fn[hartid](hartid, start_arg[hartid]);
  sbi_call(0x48534d, 1, 0, 0, 0);  // hart_stop
  for (;;) {
  }
}

u64 user_stack_top(void) { return (u64)&user_stacks[this_hart()->hartid][USER_STACK_SIZE]; }

extern u64 rt_enter_user(u64 pc, u64 arg, u64 sp, u64 ra);
extern __attribute__((noreturn)) void rt_user_return(u64 value);

u64 run_user_ex(u64 pc, u64 arg, u64 user_sp, u64 ra) {
  return rt_enter_user(pc, arg, user_sp ? user_sp : user_stack_top(), ra);
}
u64 run_user_at(u64 pc, u64 arg, u64 user_sp) {
  return run_user_ex(pc, arg, user_sp, (u64)&user_exit);
}
u64 run_user(u64 (*fn)(u64), u64 arg, u64 user_sp) { return run_user_at((u64)fn, arg, user_sp); }

struct trap_record* arm_trap(int n) {
  struct trap_record* t = &this_hart()->trap;
  t->count = 0;
  t->scause = ~0ul;
  t->sepc = ~0ul;
  t->stval = ~0ul;
  t->resume = RESUME_SKIP;
  t->resume_pc = 0;
  t->hook = 0;
  __asm__ volatile("" ::: "memory");
  t->expect = n;
  return t;
}
void disarm_trap(void) { this_hart()->trap.expect = 0; }

unsigned insn_length_at(u64 va) {
  u64 bits = SSTATUS_SUM | SSTATUS_MXR;
  u64 old = csr_read(CSR_SSTATUS);
  csr_set(CSR_SSTATUS, bits);
  u16 h = *(volatile u16*)va;
  csr_write(CSR_SSTATUS, old);
  return (h & 3) == 3 ? 4 : 2;
}

static void dump_frame(struct trap_frame* f) {
  rt_printf("  scause 0x%lx sepc 0x%lx stval 0x%lx sstatus 0x%lx ra 0x%lx sp 0x%lx\n", f->scause,
            f->sepc, f->stval, f->sstatus, f->x[1], f->x[2]);
}

void rt_trap(struct trap_frame* f) {
  struct hart_data* h = this_hart();
  if (f->scause & SCAUSE_IRQ) {
    u64 cause = f->scause & 0xff;
    if (cause < 16) {
      h->irq_count[cause]++;
      if (h->irq_order_n < 16) h->irq_order[h->irq_order_n++] = cause;
    }
    if (h->irq) {
      h->irq(f, cause);
    } else {
      // Default: silence the source.
      if (cause == IRQ_SSI) csr_clear(CSR_SIP, 1ul << IRQ_SSI);
      else if (cause == IRQ_STI) csr_write(CSR_STIMECMP, ~0ul);
      else csr_clear(CSR_SIE, 1ul << cause);
    }
    return;
  }
  if (f->scause == 8 && f->x[17] == RT_UMODE_EXIT) {
    rt_user_return(f->x[10]);
  }
  struct trap_record* t = &h->trap;
  if (t->expect <= 0) {
    rt_printf("FAILED: unexpected trap on hart %lu\n", h->hartid);
    dump_frame(f);
    rt_failures++;
    rt_finish(1);
  }
  t->expect--;
  t->count++;
  t->scause = f->scause;
  t->sepc = f->sepc;
  t->stval = f->stval;
  t->sstatus = f->sstatus;
  int resume = t->resume;
  if (t->hook) t->hook(f);
  switch (resume) {
    case RESUME_AT:
      f->sepc = t->resume_pc;
      break;
    case RESUME_RETRY:
      break;
    default:
      if (f->scause == 0 || f->scause == 1 || f->scause == 12) {
        f->sepc = f->x[1];  // fetch fault: return to the caller
      } else {
        f->sepc += insn_length_at(f->sepc);
      }
  }
}
