// Sv39 and Sv48 paging with tables built here: 4K, 2M and 1G pages, permissions, U/SUM,
// MXR, A/D updates, page faults with their stval, misaligned superpages, sfence.vma,
// non-canonical addresses, and satp WARL with translation on.
#include "rt.h"

#define PTE_V (1ul << 0)
#define PTE_R (1ul << 1)
#define PTE_W (1ul << 2)
#define PTE_X (1ul << 3)
#define PTE_U (1ul << 4)
#define PTE_G (1ul << 5)
#define PTE_A (1ul << 6)
#define PTE_D (1ul << 7)
#define RWX (PTE_R | PTE_W | PTE_X)
#define AD (PTE_A | PTE_D)

#define SATP_SV39 (8ul << 60)
#define SATP_SV48 (9ul << 60)
#define SATP_SV57 (10ul << 60)

#define RAM_BASE 0x80000000ul
#define U_ALIAS 0x1000000000ul   // 1G U-mode alias of RAM_BASE (Sv39 VPN2 = 64)
#define TEST_VA 0x40000000ul     // 4K pages live here
#define MEGA_VA 0x40200000ul     // 2M pages
#define MEGA_PA 0x81000000ul     // 2M-aligned RAM outside the program image
#define GIGA_VA 0xc0000000ul     // 1G page -> RAM_BASE
#define NO_MEMORY 0x20000ul

static u64 pt_pool[48][512] __attribute__((aligned(4096)));
static int pt_used;
static u8 pages[16][4096] __attribute__((aligned(4096)));
static int levels = 3;
static u64* root;

static u64* new_table(void) {
  if (pt_used >= 48) {
    rt_printf("out of page tables\n");
    sbi_shutdown(1);
  }
  u64* t = pt_pool[pt_used++];
  for (int i = 0; i < 512; ++i) t[i] = 0;
  return t;
}

static u64 pte_for(u64 pa, u64 flags) { return ((pa >> 12) << 10) | flags; }
static u64* pte_table(u64 pte) { return (u64*)((pte >> 10) << 12); }

// The PTE slot for va at `leaf_level` (0 = 4K, 1 = 2M, 2 = 1G), creating tables on the way.
static u64* slot(u64 va, int leaf_level) {
  u64* t = root;
  for (int level = levels - 1; level > leaf_level; --level) {
    u64* e = &t[(va >> (12 + 9 * level)) & 511];
    if (!(*e & PTE_V)) *e = pte_for((u64)new_table(), PTE_V);
    t = pte_table(*e);
  }
  return &t[(va >> (12 + 9 * leaf_level)) & 511];
}

static void map(u64 va, u64 pa, u64 flags, int leaf_level) {
  *slot(va, leaf_level) = pte_for(pa, flags | PTE_V);
  sfence_vma_all();
}

static u64 load64(u64 va) {
  u64 v = 0xdeadull;
  __asm__ volatile("ld %0, 0(%1)" : "+r"(v) : "r"(va) : "memory");
  return v;
}
static void store64(u64 va, u64 v) { __asm__ volatile("sd %0, 0(%1)" ::"r"(v), "r"(va) : "memory"); }
static u64 call_at(u64 va) {
  register u64 a0 __asm__("a0") = 0;
  __asm__ volatile("jalr %1" : "+r"(a0) : "r"(va) : "ra", "memory");
  return a0;
}

#define EXPECT_FAULT(cause, va, stmt)            \
  do {                                           \
    struct trap_record* t_ = arm_trap(1);        \
    stmt;                                        \
    CHECK_EQ(t_->count, 1);                      \
    CHECK_EQ(t_->scause, (cause));               \
    CHECK_EQ(t_->stval, (va));                   \
    disarm_trap();                               \
  } while (0)
#define EXPECT_OK(stmt)                          \
  do {                                           \
    arm_trap(0);                                 \
    stmt;                                        \
  } while (0)

static void build_base(int nlevels) {
  levels = nlevels;
  pt_used = 0;
  root = new_table();
  // Identity map of the RAM gigapage for the program itself (S-mode only).
  *slot(RAM_BASE, 2) = pte_for(RAM_BASE, PTE_V | RWX | AD | PTE_G);
  // A U-mode alias of the same gigapage.
  *slot(U_ALIAS, 2) = pte_for(RAM_BASE, PTE_V | RWX | AD | PTE_U);
}

static u64 satp_for(u64 mode) { return mode | ((u64)root >> 12); }

static void write_code(u8* page, u32 value) {
  u32* p = (u32*)page;
  p[0] = 0x00000513u | (value << 20);  // li a0, value
  p[1] = 0x00008067u;                  // ret
  fence_i();
}

static void test_basic(void) {
  SECTION("4K, 2M and 1G pages");
  for (int i = 0; i < 512; ++i) ((u64*)pages[0])[i] = 0x1000 + i;
  map(TEST_VA, (u64)pages[0], PTE_R | PTE_W | AD, 0);
  EXPECT_OK(CHECK_EQ(load64(TEST_VA + 8), 0x1001));
  EXPECT_OK(store64(TEST_VA + 16, 0x5555));
  CHECK_EQ(((u64*)pages[0])[2], 0x5555);

  map(MEGA_VA, MEGA_PA, PTE_R | PTE_W | AD, 1);
  *(volatile u64*)(MEGA_PA + 0x7008) = 0x777;
  *(volatile u64*)(MEGA_PA + 0x1ffff8) = 0x888;
  EXPECT_OK(CHECK_EQ(load64(MEGA_VA + 0x7008), 0x777));
  EXPECT_OK(CHECK_EQ(load64(MEGA_VA + 0x1ffff8), 0x888));
  EXPECT_OK(store64(MEGA_VA + 0x10000, 0x999));
  CHECK_EQ(*(volatile u64*)(MEGA_PA + 0x10000), 0x999);

  map(GIGA_VA, RAM_BASE, PTE_R | PTE_W | AD, 2);
  static volatile u64 marker = 0xabcdef;
  EXPECT_OK(CHECK_EQ(load64((u64)&marker - RAM_BASE + GIGA_VA), 0xabcdef));

  SECTION("misaligned superpages fault");
  map(MEGA_VA + 0x200000, MEGA_PA + 0x1000, PTE_R | PTE_W | AD, 1);
  EXPECT_FAULT(13, MEGA_VA + 0x200010, load64(MEGA_VA + 0x200010));
  EXPECT_FAULT(15, MEGA_VA + 0x200010, store64(MEGA_VA + 0x200010, 1));
  map(0x100000000ul, RAM_BASE + 0x200000, PTE_R | PTE_W | AD, 2);
  EXPECT_FAULT(13, 0x100000008ul, load64(0x100000008ul));
}

static void test_permissions(void) {
  SECTION("invalid and reserved PTEs");
  const u64 va = TEST_VA + 0x1000;
  *slot(va, 0) = 0;
  sfence_vma_all();
  EXPECT_FAULT(13, va, load64(va));
  EXPECT_FAULT(15, va + 8, store64(va + 8, 1));
  EXPECT_FAULT(12, va, call_at(va));
  // W without R is reserved.
  map(va, (u64)pages[1], PTE_W | AD, 0);
  EXPECT_FAULT(13, va, load64(va));
  EXPECT_FAULT(15, va, store64(va, 1));
  // A pointer PTE at the last level.
  *slot(va, 0) = pte_for((u64)pages[1], PTE_V);
  sfence_vma_all();
  EXPECT_FAULT(13, va, load64(va));

  SECTION("R, W, X permissions and MXR");
  write_code(pages[1], 42);
  map(va, (u64)pages[1], PTE_R | AD, 0);
  EXPECT_OK(CHECK_EQ(load64(va), ((u64*)pages[1])[0]));
  EXPECT_FAULT(15, va + 8, store64(va + 8, 1));
  EXPECT_FAULT(12, va, call_at(va));
  map(va, (u64)pages[1], PTE_X | AD, 0);
  EXPECT_OK(CHECK_EQ(call_at(va), 42));
  EXPECT_FAULT(13, va, load64(va));
  csr_set(CSR_SSTATUS, SSTATUS_MXR);
  EXPECT_OK(CHECK_EQ(load64(va), ((u64*)pages[1])[0]));
  EXPECT_FAULT(15, va, store64(va, 1));
  csr_clear(CSR_SSTATUS, SSTATUS_MXR);
  map(va, (u64)pages[1], RWX | AD, 0);
  EXPECT_OK(CHECK_EQ(call_at(va), 42));
  EXPECT_OK(store64(va + 64, 3));

  SECTION("U pages from S-mode and SUM");
  map(va, (u64)pages[1], RWX | AD | PTE_U, 0);
  EXPECT_FAULT(13, va + 8, load64(va + 8));
  EXPECT_FAULT(15, va + 8, store64(va + 8, 1));
  EXPECT_FAULT(12, va, call_at(va));
  csr_set(CSR_SSTATUS, SSTATUS_SUM);
  EXPECT_OK(CHECK_EQ(load64(va + 64), 3));
  EXPECT_OK(store64(va + 64, 4));
  // S never executes U pages. (QEMU 7.2 lets it once a SUM data access cached the page.)
  if (on_dvmm()) EXPECT_FAULT(12, va, call_at(va));
  csr_clear(CSR_SSTATUS, SSTATUS_SUM);
}

static u64 u_load(u64 va) { return load64(va); }
static u64 u_store(u64 va) {
  store64(va, 0x600d);
  return 1;
}
static u64 u_call(u64 va) { return call_at(va); }
// Runs fn in U-mode through the U alias of RAM (code, stack and exit stub).
static u64 run_alias(u64 (*fn)(u64), u64 arg) {
  return run_user_ex((u64)fn - RAM_BASE + U_ALIAS, arg, user_stack_top() - RAM_BASE + U_ALIAS,
                     (u64)&user_exit - RAM_BASE + U_ALIAS);
}

static void test_user(void) {
  SECTION("U-mode accesses");
  const u64 uva = TEST_VA + 0x2000, sva = TEST_VA;
  write_code(pages[2], 7);
  ((u64*)pages[2])[8] = 0x1234;
  map(uva, (u64)pages[2], RWX | AD | PTE_U, 0);
  arm_trap(0);
  CHECK_EQ(run_alias(u_load, uva + 64), 0x1234);
  CHECK_EQ(run_alias(u_store, uva + 72), 1);
  CHECK_EQ(((u64*)pages[2])[9], 0x600d);
  CHECK_EQ(run_alias(u_call, uva), 7);
  struct trap_record* t = arm_trap(1);
  CHECK_EQ(run_alias(u_load, sva), 0xdead);
  CHECK_TRAP(13, sva);
  CHECK_EQ(t->sstatus & SSTATUS_SPP, 0);
  arm_trap(1);
  run_alias(u_store, sva);
  CHECK_TRAP(15, sva);
  // U-mode cannot run S pages: the RAM identity map is S-only.
  arm_trap(1);
  run_user_ex((u64)u_load, 0, user_stack_top() - RAM_BASE + U_ALIAS,
              (u64)&user_exit - RAM_BASE + U_ALIAS);
  CHECK_EQ(t->count, 1);
  CHECK_EQ(t->scause, 12);
  CHECK_EQ(t->stval, (u64)u_load);
  disarm_trap();
}

static void test_accessed_dirty(void) {
  SECTION("A and D bits set by the walker");
  const u64 va = TEST_VA + 0x3000;
  u64* e = slot(va, 0);
  write_code(pages[3], 9);
  *e = pte_for((u64)pages[3], PTE_V | RWX);
  sfence_vma_all();
  EXPECT_OK(load64(va));
  CHECK_EQ(*e & AD, PTE_A);
  *e &= ~AD;
  sfence_vma_all();
  EXPECT_OK(store64(va + 64, 5));
  CHECK_EQ(*e & AD, AD);
  *e &= ~AD;
  sfence_vma_all();
  EXPECT_OK(CHECK_EQ(call_at(va), 9));
  CHECK_EQ(*e & AD, PTE_A);
  // A store through a cached read translation still sets D.
  *e &= ~AD;
  sfence_vma_all();
  EXPECT_OK(load64(va));
  EXPECT_OK(store64(va + 64, 6));
  CHECK_EQ(*e & AD, AD);
  // Superpage leaf.
  u64* m = slot(MEGA_VA, 1);
  *m &= ~AD;
  sfence_vma_all();
  EXPECT_OK(store64(MEGA_VA + 0x3000, 1));
  CHECK_EQ(*m & AD, AD);
}

static void test_sfence(void) {
  SECTION("sfence.vma");
  const u64 va = TEST_VA + 0x4000;
  ((u64*)pages[4])[0] = 0x4444;
  ((u64*)pages[5])[0] = 0x5555;
  map(va, (u64)pages[4], PTE_R | AD, 0);
  EXPECT_OK(CHECK_EQ(load64(va), 0x4444));
  *slot(va, 0) = pte_for((u64)pages[5], PTE_V | PTE_R | AD);
  sfence_vma_va(va);
  EXPECT_OK(CHECK_EQ(load64(va), 0x5555));
  // By address and ASID (the mapping is not global).
  *slot(va, 0) = pte_for((u64)pages[4], PTE_V | PTE_R | AD);
  __asm__ volatile("sfence.vma %0, zero" ::"r"(va) : "memory");
  EXPECT_OK(CHECK_EQ(load64(va), 0x4444));
  *slot(va, 0) = pte_for((u64)pages[5], PTE_V | PTE_R | AD);
  __asm__ volatile("sfence.vma zero, %0" ::"r"(csr_read(CSR_SATP) >> 44 & 0xffff) : "memory");
  EXPECT_OK(CHECK_EQ(load64(va), 0x5555));
  // Unmapped after sfence.
  *slot(va, 0) = 0;
  sfence_vma_va(va);
  EXPECT_FAULT(13, va, load64(va));

  SECTION("code remapped under the same VA");
  write_code(pages[6], 61);
  write_code(pages[7], 62);
  const u64 cva = TEST_VA + 0x6000;
  map(cva, (u64)pages[6], PTE_X | AD, 0);
  EXPECT_OK(CHECK_EQ(call_at(cva), 61));
  *slot(cva, 0) = pte_for((u64)pages[7], PTE_V | PTE_X | AD);
  sfence_vma_va(cva);
  EXPECT_OK(CHECK_EQ(call_at(cva), 62));
}

static void test_cross_page(void) {
  SECTION("misaligned access across two mapped pages");
  const u64 va = TEST_VA + 0x8000;
  map(va, (u64)pages[9], PTE_R | PTE_W | AD, 0);
  map(va + 0x1000, (u64)pages[8], PTE_R | PTE_W | AD, 0);
  EXPECT_OK(store64(va + 0xffc, 0x1122334455667788ul));
  CHECK_EQ(*(u32*)&pages[9][0xffc], 0x55667788u);
  CHECK_EQ(*(u32*)&pages[8][0], 0x11223344u);
  EXPECT_OK(CHECK_EQ(load64(va + 0xffc), 0x1122334455667788ul));
  // The second page unmapped: a page fault for an address inside the access.
  *slot(va + 0x1000, 0) = 0;
  sfence_vma_all();
  struct trap_record* t = arm_trap(1);
  load64(va + 0xffc);
  CHECK_EQ(t->count, 1);
  CHECK_EQ(t->scause, 13);
  CHECK(t->stval >= va + 0xffc && t->stval <= va + 0x1000);
  disarm_trap();
}

static void test_walk_faults(void) {
  SECTION("non-canonical addresses");
  const u64 bad = levels == 3 ? 0x0000004000000000ul : 0x0000800000000000ul;
  EXPECT_FAULT(13, bad, load64(bad));
  EXPECT_FAULT(15, bad, store64(bad, 0));
  EXPECT_FAULT(12, bad, call_at(bad));
  const u64 bad2 = 0x8000000000000000ul;
  EXPECT_FAULT(13, bad2, load64(bad2));

  if (on_dvmm()) {  // QEMU 7.2 raises a page fault here
    SECTION("page table outside RAM: access fault");
    const u64 va = TEST_VA + 0x20000000;  // its own level-0 table
    u64* l1 = slot(va, 1);
    *l1 = pte_for(NO_MEMORY, PTE_V);
    sfence_vma_all();
    EXPECT_FAULT(5, va, load64(va));
    EXPECT_FAULT(7, va, store64(va, 0));
    EXPECT_FAULT(1, va, call_at(va));
    *l1 = 0;
    sfence_vma_all();
  }
}

static void test_satp_warl(u64 mode) {
  SECTION("satp WARL with translation on");
  u64 cur = csr_read(CSR_SATP);
  CHECK_EQ(cur >> 60, mode >> 60);
  if (on_dvmm()) {
    csr_write(CSR_SATP, SATP_SV57 | ((u64)root >> 12));
    CHECK_EQ(csr_read(CSR_SATP), cur);
  }
  csr_write(CSR_SATP, (1ul << 60) | ((u64)root >> 12));
  CHECK_EQ(csr_read(CSR_SATP), cur);
  // ASID bits: whatever ASIDLEN is, writing them keeps translation working.
  csr_write(CSR_SATP, cur | (0xfffful << 44));
  u64 asid = csr_read(CSR_SATP) >> 44 & 0xffff;
  sfence_vma_all();
  CHECK_EQ(csr_read(CSR_SATP), cur | (asid << 44));
  csr_write(CSR_SATP, cur);
  sfence_vma_all();
}

static void run_all(int nlevels, u64 mode) {
  build_base(nlevels);
  u64 satp = satp_for(mode);
  csr_write(CSR_SATP, satp);
  sfence_vma_all();
  CHECK_EQ(csr_read(CSR_SATP), satp);
  test_basic();
  test_permissions();
  test_user();
  test_accessed_dirty();
  test_sfence();
  test_cross_page();
  test_walk_faults();
  test_satp_warl(mode);
  if (nlevels == 4) {
    SECTION("Sv48-only addresses");
    const u64 va = 0x0000100000000000ul;  // not canonical in Sv39
    ((u64*)pages[10])[3] = 0x4848;
    map(va, (u64)pages[10], PTE_R | AD, 0);
    EXPECT_OK(CHECK_EQ(load64(va + 24), 0x4848));
    const u64 high = 0xffff800000001000ul;  // canonical, upper half
    map(high, (u64)pages[10], PTE_R | AD, 0);
    EXPECT_OK(CHECK_EQ(load64(high + 24), 0x4848));
    // 512 GiB-level pages are not allowed in Sv48? They are: a level-3 leaf is a 512G
    // "terapage"; misaligned ones fault.
    *slot(0x0000200000000000ul, 3) = pte_for(RAM_BASE, PTE_V | PTE_R | AD);
    sfence_vma_all();
    EXPECT_FAULT(13, 0x0000200000000000ul, load64(0x0000200000000000ul));
  }
  csr_write(CSR_SATP, 0);
  sfence_vma_all();
  CHECK_EQ(csr_read(CSR_SATP), 0);
}

int main(u64 hartid) {
  (void)hartid;
  rt_printf("== Sv39\n");
  run_all(3, SATP_SV39);
  rt_printf("== Sv48\n");
  run_all(4, SATP_SV48);
  return rt_failures;
}
