// Self-modifying code and fence.i: rewritten code buffers, compressed/32-bit changes, an
// instruction that straddles a page boundary, patching a function in .text, and code
// written by one hart and run by another. Run with 2 harts.
#include "rt.h"

static u8 code[3][4096] __attribute__((aligned(4096)));

static u32 li_a0(i32 v) { return 0x00000513u | ((u32)v << 20); }  // addi a0, zero, v
#define RET 0x00008067u
#define C_RET 0x8082u

typedef u64 (*fn_t)(void);
static u64 call(void* p) { return ((fn_t)p)(); }

static void put32(u8* p, u32 v) {
  p[0] = (u8)v;
  p[1] = (u8)(v >> 8);
  p[2] = (u8)(v >> 16);
  p[3] = (u8)(v >> 24);
}
static void put16(u8* p, u16 v) {
  p[0] = (u8)v;
  p[1] = (u8)(v >> 8);
}

__attribute__((noinline, aligned(8))) static u64 patchme(void) {
  u64 r;
  __asm__ volatile(
      ".option push\n.option norvc\n"
      ".global patch_site\n"
      "patch_site: li %0, 100\n"
      ".option pop\n"
      : "=r"(r));
  return r;
}
extern char patch_site[];

static void test_rewrite(void) {
  SECTION("rewrite a code buffer");
  for (int i = 0; i < 200; ++i) {
    put32(code[0], li_a0(i));
    put32(code[0] + 4, RET);
    fence_i();
    CHECK_EQ(call(code[0]), (u64)i);
  }
  // Loop body rewritten while the loop calls it.
  u64 sum = 0;
  for (int i = 0; i < 64; ++i) {
    put32(code[0], li_a0(i * 3));
    fence_i();
    sum += call(code[0]);
  }
  CHECK_EQ(sum, 3 * 63 * 64 / 2);

  SECTION("compressed and 32-bit forms at the same address");
  put16(code[1], 0x4515);  // c.li a0, 5
  put16(code[1] + 2, C_RET);
  fence_i();
  CHECK_EQ(call(code[1]), 5);
  put32(code[1], li_a0(-7));
  put32(code[1] + 4, RET);
  fence_i();
  CHECK_EQ(call(code[1]), (u64)-7);
  put16(code[1], 0x4525);  // c.li a0, 9
  put16(code[1] + 2, C_RET);
  fence_i();
  CHECK_EQ(call(code[1]), 9);
  // Only the second halfword of a 32-bit instruction changes.
  put32(code[1], li_a0(0x123));
  put32(code[1] + 4, RET);
  fence_i();
  CHECK_EQ(call(code[1]), 0x123);
  put32(code[1], li_a0(0x7ff));
  fence_i();
  CHECK_EQ(call(code[1]), 0x7ff);

  SECTION("instruction straddling a page boundary");
  u8* p = code[1] + 4096 - 2;  // code[1] and code[2] are adjacent
  put32(p, li_a0(11));
  put32(p + 4, RET);
  fence_i();
  CHECK_EQ(call(p), 11);
  put32(p, li_a0(0x456));  // changes the halfword in the second page
  fence_i();
  CHECK_EQ(call(p), 0x456);
  put16(code[2], (u16)(li_a0(0x321) >> 16));  // only the second page
  fence_i();
  CHECK_EQ(call(p), 0x321);
  put16(p, (u16)li_a0(0) | 0);  // first half unchanged value; rewrite anyway
  fence_i();
  CHECK_EQ(call(p), 0x321);

  SECTION("patching .text");
  CHECK_EQ(patchme(), 100);
  u32 insn = *(volatile u32*)patch_site;
  u32 rd = (insn >> 7) & 31;
  *(volatile u32*)patch_site = 0x00000013u | (rd << 7) | (200u << 20);  // addi rd, zero, 200
  fence_i();
  CHECK_EQ(patchme(), 200);
  *(volatile u32*)patch_site = insn;
  fence_i();
  CHECK_EQ(patchme(), 100);
}

// Code that modifies the instruction right after itself, then executes fence.i before it.
static void test_modify_next(void) {
  SECTION("store to the next instruction followed by fence.i");
  u32* c = (u32*)code[0];
  // 0: sw a1, 12(a2)     ; overwrite instruction 3
  // 4: fence.i
  // 8: li a0, 1
  // 12: li a0, 2         ; replaced by li a0, 3
  // 16: ret
  c[0] = 0x00b62623u;  // sw a1, 12(a2)
  c[1] = 0x0000100fu;  // fence.i
  c[2] = li_a0(1);
  c[3] = li_a0(2);
  c[4] = RET;
  fence_i();
  register u64 a0 __asm__("a0");
  register u64 a1 __asm__("a1") = li_a0(3);
  register u64 a2 __asm__("a2") = (u64)c;
  __asm__ volatile("jalr %3" : "=r"(a0) : "r"(a1), "r"(a2), "r"(c) : "ra", "memory");
  CHECK_EQ(a0, 3);
}

static volatile u32 phase;
static volatile u64 seen[8];

static void remote(u64 hartid, u64 arg) {
  (void)hartid;
  (void)arg;
  for (u32 round = 1; round <= 8; ++round) {
    while (phase != round * 2 - 1) {
    }
    fence_i();
    seen[round - 1] = call(code[2] + 64);
    __atomic_store_n(&phase, round * 2, __ATOMIC_RELEASE);
  }
}

static void test_cross_hart(void) {
  SECTION("code written by hart 0, run by hart 1");
  put32(code[2] + 64, li_a0(0));
  put32(code[2] + 68, RET);
  fence_i();
  CHECK_EQ(sbi_hart_start(1, remote, 0), 0);
  for (u32 round = 1; round <= 8; ++round) {
    put32(code[2] + 64, li_a0((i32)round * 10));
    __atomic_store_n(&phase, round * 2 - 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&phase, __ATOMIC_ACQUIRE) != round * 2) {
    }
  }
  for (u32 round = 1; round <= 8; ++round) CHECK_EQ(seen[round - 1], round * 10);
  // SBI remote fence.i is accepted.
  CHECK_EQ(sbi_call(0x52464e43, 0, 1ul << 1, 0, 0).error, 0);
}

int main(u64 hartid) {
  (void)hartid;
  test_rewrite();
  test_modify_next();
  test_cross_hart();
  return rt_failures;
}
