// Minimal runtime for bare-metal S-mode test programs.
//
// The programs run on the dvmm_baremetal harness and, for comparison, on QEMU's virt machine
// with OpenSBI (fw_jump). Both enter _start in S-mode at 0x80200000 with a0 = hartid; the
// harness passes a1 = RT_DVMM_MAGIC (OpenSBI passes the device-tree address), so a test can
// tell where it runs when the spec allows two behaviours.
//
// Pass/fail: main() returns the number of failed checks; _start reports it through SBI SRST
// (shutdown, reason 0 = pass, 1 = system failure).
#pragma once

#include <stdarg.h>
#include <stdint.h>

typedef uint64_t u64;
typedef int64_t i64;
typedef uint32_t u32;
typedef int32_t i32;
typedef uint16_t u16;
typedef uint8_t u8;

#define RT_DVMM_MAGIC 0x64766d6dul /* 'dvmm' */
#define RT_MAX_HARTS 8
#define RT_UMODE_EXIT 0x55584954ul /* a7 of the ecall that leaves run_user() */

// ------------------------------------------------------------------ CSRs
#define CSR_SSTATUS 0x100
#define CSR_SIE 0x104
#define CSR_STVEC 0x105
#define CSR_SCOUNTEREN 0x106
#define CSR_SENVCFG 0x10a
#define CSR_SSCRATCH 0x140
#define CSR_SEPC 0x141
#define CSR_SCAUSE 0x142
#define CSR_STVAL 0x143
#define CSR_SIP 0x144
#define CSR_STIMECMP 0x14d
#define CSR_SATP 0x180

#define SSTATUS_SIE (1ul << 1)
#define SSTATUS_SPIE (1ul << 5)
#define SSTATUS_SPP (1ul << 8)
#define SSTATUS_FS (3ul << 13)
#define SSTATUS_FS_INITIAL (1ul << 13)
#define SSTATUS_FS_CLEAN (2ul << 13)
#define SSTATUS_FS_DIRTY (3ul << 13)
#define SSTATUS_SUM (1ul << 18)
#define SSTATUS_MXR (1ul << 19)
#define SSTATUS_UXL (3ul << 32)
#define SSTATUS_SD (1ul << 63)

#define IRQ_SSI 1
#define IRQ_STI 5
#define IRQ_SEI 9
#define SCAUSE_IRQ (1ul << 63)

#define STR_(x) #x
#define STR(x) STR_(x)
#define csr_read(csr)                                         \
  ({                                                          \
    u64 v_;                                                   \
    __asm__ volatile("csrr %0, " STR(csr) : "=r"(v_)::"memory"); \
    v_;                                                       \
  })
#define csr_write(csr, val) __asm__ volatile("csrw " STR(csr) ", %0" ::"r"((u64)(val)) : "memory")
#define csr_set(csr, val) __asm__ volatile("csrs " STR(csr) ", %0" ::"r"((u64)(val)) : "memory")
#define csr_clear(csr, val) __asm__ volatile("csrc " STR(csr) ", %0" ::"r"((u64)(val)) : "memory")
#define csr_swap(csr, val)                                                       \
  ({                                                                             \
    u64 v_;                                                                      \
    __asm__ volatile("csrrw %0, " STR(csr) ", %1" : "=r"(v_) : "r"((u64)(val)) : "memory"); \
    v_;                                                                          \
  })

static inline u64 read_time(void) {
  u64 t;
  __asm__ volatile("rdtime %0" : "=r"(t));
  return t;
}
static inline void sfence_vma_all(void) { __asm__ volatile("sfence.vma" ::: "memory"); }
static inline void sfence_vma_va(u64 va) { __asm__ volatile("sfence.vma %0" ::"r"(va) : "memory"); }
static inline void fence_i(void) { __asm__ volatile("fence.i" ::: "memory"); }
static inline void wfi(void) { __asm__ volatile("wfi" ::: "memory"); }

// Sleeps until `cond` holds, taking interrupts (enabled in sie) between WFIs. sstatus.SIE
// stays clear while `cond` is checked: with it set, an interrupt taken between the check and
// the WFI would leave the WFI waiting for another interrupt that may never come. WFI wakes on
// sip & sie whatever sstatus.SIE says, and the handler runs in the short window after it.
#define WAIT_WITH_IRQS(cond)                  \
  do {                                        \
    csr_clear(CSR_SSTATUS, SSTATUS_SIE);      \
    while (!(cond)) {                         \
      wfi();                                  \
      csr_set(CSR_SSTATUS, SSTATUS_SIE);      \
      __asm__ volatile("nop" ::: "memory");   \
      csr_clear(CSR_SSTATUS, SSTATUS_SIE);    \
    }                                         \
  } while (0)

// ------------------------------------------------------------------ SBI
struct sbiret {
  long error;
  long value;
};
struct sbiret sbi_call(u64 eid, u64 fid, u64 a0, u64 a1, u64 a2);
void sbi_putchar(char c);
__attribute__((noreturn)) void sbi_shutdown(int fail);
long sbi_hart_start(u64 hartid, void (*fn)(u64 hartid, u64 arg), u64 arg);
long sbi_hart_status(u64 hartid);
long sbi_send_ipi(u64 mask, u64 base);
void sbi_set_timer(u64 when);

// ------------------------------------------------------------------ output
void rt_putc(char c);
void rt_puts(const char* s);
void rt_printf(const char* fmt, ...);
void rt_vprintf(const char* fmt, va_list ap);

// ------------------------------------------------------------------ checks
extern volatile int rt_failures;
void rt_check_fail(const char* file, int line, const char* expr);
void rt_check_fail_eq(const char* file, int line, const char* a, const char* b, u64 va, u64 vb);
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) rt_check_fail(__FILE__, __LINE__, #cond);            \
  } while (0)
#define CHECK_EQ(a, b)                                                                  \
  do {                                                                                  \
    u64 a_ = (u64)(a), b_ = (u64)(b);                                                   \
    if (a_ != b_) rt_check_fail_eq(__FILE__, __LINE__, #a, #b, a_, b_);                \
  } while (0)
#define SECTION(name) rt_printf("-- %s\n", name)

// ------------------------------------------------------------------ per hart / traps
struct trap_frame {
  u64 x[32];  // x[2] is the interrupted sp
  u64 sepc;
  u64 sstatus;
  u64 scause;
  u64 stval;
};

// What the trap handler does with an expected synchronous exception after recording it.
enum trap_resume {
  RESUME_SKIP = 0,  // sepc += length of the trapping instruction (default; fetch faults
                    // return to ra instead, as if the called code returned)
  RESUME_AT = 1,    // sepc = resume_pc
  RESUME_RETRY = 2, // sepc unchanged (the hook fixed the cause)
};

struct trap_record {
  volatile int expect;  // expected synchronous exceptions left to accept
  volatile int count;   // synchronous exceptions taken since arm
  volatile u64 scause, sepc, stval, sstatus;  // of the last one
  volatile int resume;
  volatile u64 resume_pc;
  // Optional hook for synchronous exceptions (called after recording).
  void (*hook)(struct trap_frame* f);
};

typedef void (*irq_handler_t)(struct trap_frame* f, u64 cause);

struct hart_data {
  u64 hartid;
  u64 trap_stack_top;
  u64 user_ctx[14];  // ra, sp, s0..s11 of run_user()'s caller
  struct trap_record trap;
  irq_handler_t irq;
  volatile u64 irq_count[16];
  volatile u64 irq_order[16];
  volatile int irq_order_n;
};

extern struct hart_data rt_harts[RT_MAX_HARTS];
extern volatile u64 rt_boot_a1;
static inline struct hart_data* this_hart(void) {
  struct hart_data* h;
  __asm__("mv %0, tp" : "=r"(h));
  return h;
}
static inline int on_dvmm(void) { return rt_boot_a1 == RT_DVMM_MAGIC; }

// Arms the trap recorder for `n` expected synchronous exceptions.
struct trap_record* arm_trap(int n);
void disarm_trap(void);
// Checks that exactly one exception with `cause` was taken (and stval when check_tval).
#define CHECK_TRAP(cause_, tval_)                                 \
  do {                                                            \
    struct trap_record* t_ = &this_hart()->trap;                  \
    CHECK_EQ(t_->count, 1);                                       \
    CHECK_EQ(t_->scause, (cause_));                               \
    CHECK_EQ(t_->stval, (tval_));                                 \
  } while (0)
#define CHECK_NO_TRAP()                                           \
  do {                                                            \
    CHECK_EQ(this_hart()->trap.count, 0);                         \
  } while (0)

// Runs fn(arg) in U-mode with stack `user_sp` (0: a stack in this hart's user area), with
// sstatus.SPIE = `spie`. The U-mode code returns by ecall with a7 = RT_UMODE_EXIT and a0 =
// the value, which run_user returns. user_exit() does that ecall.
u64 run_user(u64 (*fn)(u64), u64 arg, u64 user_sp);
u64 run_user_at(u64 pc, u64 arg, u64 user_sp);
// Same, with the address the U-mode function returns to (an alias of user_exit).
u64 run_user_ex(u64 pc, u64 arg, u64 user_sp, u64 ra);
__attribute__((noreturn)) void user_exit(u64 value);
// The U-mode stack top of this hart (identity-mapped RAM).
u64 user_stack_top(void);

// Length of the instruction at va (reads with SUM and MXR set).
unsigned insn_length_at(u64 va);

// Spin lock for output from several harts.
void rt_lock(volatile int* l);
void rt_unlock(volatile int* l);

// Provided by each test.
int main(u64 hartid);

void* memset(void* d, int c, unsigned long n);
void* memcpy(void* d, const void* s, unsigned long n);
