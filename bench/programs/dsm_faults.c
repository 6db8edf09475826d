// Guest workload for bench/cluster.py: DSM page fault service time seen from inside the guest.
//
//   dsm_faults PAGES ROUNDS
//
// On a 2-node distributed VM with 1 vCPU per node (CPU 0 on NUMA node 0, CPU 1 on node 1),
// the main thread, pinned to CPU 0, fills a buffer of PAGES 4 KiB pages bound to NUMA node 0
// (mbind, raw syscall; first touch from CPU 0 as well), so node 0 is the home of every page
// and holds it exclusively. A worker thread pinned to CPU 1 then touches one 64-bit word per
// page. Each round is six phases, each timed with CLOCK_MONOTONIC around the loop only (the
// two threads hand over through a barrier between phases):
//
//   read_miss   CPU 1 reads     Excl(home) -> Shared: a ReadRequest, GrantData with the page
//   upgrade     CPU 1 writes    Shared -> Excl(node 1): WriteRequest, Grant without data (the
//                               home drops its own copy locally)
//   read_hit    CPU 1 reads     no fault: the cost of the loop itself (TLB refills included)
//   home_fetch  CPU 0 writes    the home takes the page back: FetchInvalidate -> node 1,
//                               FetchAck with the page (a fault at the home)
//   write_miss  CPU 1 writes    Excl(home) -> Excl(node 1): WriteRequest, GrantData
//   home_fetch2 CPU 0 writes    as home_fetch; the round ends where it started
//
// Output: a header line, then one line per round with nanoseconds per page for each phase:
//   dsm_faults: pages=P rounds=R cpu0_node=0 cpu1_node=1 mbind=ok placed_node0=P/P
//   dsm_faults round=1 read_miss=... upgrade=... read_hit=... home_fetch=... write_miss=...
//   home_fetch2=...
// On a single-node VM (the reference) the same program runs without any DSM fault.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "guest_util.h"

#ifndef SYS_mbind
#define SYS_mbind 235  // riscv64 (asm-generic)
#endif
#ifndef SYS_get_mempolicy
#define SYS_get_mempolicy 236
#endif
#define MPOL_BIND 2
#define MPOL_F_NODE 1
#define MPOL_F_ADDR 2

#define PAGE 4096
#define WORDS_PER_PAGE (PAGE / 8)

static long pages;
static int rounds;
static volatile uint64_t* buf;
static volatile uint64_t sink;
static pthread_barrier_t barrier;

enum { kReadMiss, kUpgrade, kReadHit, kHomeFetch, kWriteMiss, kHomeFetch2, kPhases };
static const char* const kNames[kPhases] = {"read_miss",  "upgrade",    "read_hit",
                                            "home_fetch", "write_miss", "home_fetch2"};
static const int kCpu[kPhases] = {1, 1, 1, 0, 1, 0};        // who runs the phase
static const int kWrites[kPhases] = {0, 1, 0, 1, 1, 1};     // read or write loop
static double results[64][kPhases];                         // ns per page, per round

static void pin(int cpu) { pin_to_cpu("dsm_faults", cpu); }

static double run_loop(int write, uint64_t value) {
  uint64_t t0 = now_ns();
  if (write) {
    for (long i = 0; i < pages; i++) buf[i * WORDS_PER_PAGE] = value + (uint64_t)i;
  } else {
    uint64_t sum = 0;
    for (long i = 0; i < pages; i++) sum += buf[i * WORDS_PER_PAGE];
    sink = sum;
  }
  return (double)(now_ns() - t0) / (double)pages;
}

// Both threads walk the same list of phases; the one whose CPU it is runs it.
static void phases(int me) {
  for (int r = 0; r < rounds; r++) {
    for (int p = 0; p < kPhases; p++) {
      pthread_barrier_wait(&barrier);
      if (kCpu[p] == me) results[r][p] = run_loop(kWrites[p], (uint64_t)(r * kPhases + p) << 32);
    }
  }
  pthread_barrier_wait(&barrier);
}

static void* worker(void* arg) {
  (void)arg;
  pin(1);
  phases(1);
  return NULL;
}

int main(int argc, char** argv) {
  pages = argc > 1 ? atol(argv[1]) : 4096;
  rounds = argc > 2 ? atoi(argv[2]) : 3;
  if (pages < 1 || rounds < 1 || rounds > 64) {
    fprintf(stderr, "usage: dsm_faults PAGES ROUNDS (ROUNDS <= 64)\n");
    return 2;
  }
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
    fprintf(stderr, "dsm_faults: needs 2 CPUs\n");
    return 2;
  }
  pin(0);
  size_t len = (size_t)pages * PAGE;
  void* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("dsm_faults: mmap");
    return 2;
  }
  buf = p;
  unsigned long mask = 1;  // node 0
  const char* mb = "ok";
  if (syscall(SYS_mbind, p, len, MPOL_BIND, &mask, 64, 0) != 0) mb = strerror(errno);
  for (long i = 0; i < pages; i++) buf[i * WORDS_PER_PAGE] = (uint64_t)i;  // first touch
  long on0 = 0;
  for (long i = 0; i < pages; i++) {
    int node = -1;
    if (syscall(SYS_get_mempolicy, &node, NULL, 0, (void*)(buf + i * WORDS_PER_PAGE),
                MPOL_F_NODE | MPOL_F_ADDR) == 0 && node == 0) {
      on0++;
    }
  }
  printf("dsm_faults: pages=%ld rounds=%d cpu0_node=%d cpu1_node=%d mbind=%s placed_node0=%ld/%ld\n",
         pages, rounds, cpu_node(0), cpu_node(1), mb, on0, pages);
  fflush(stdout);

  pthread_barrier_init(&barrier, NULL, 2);
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) {
    fprintf(stderr, "dsm_faults: pthread_create failed\n");
    return 2;
  }
  phases(0);
  pthread_join(t, NULL);
  for (int r = 0; r < rounds; r++) {
    printf("dsm_faults round=%d", r + 1);
    for (int ph = 0; ph < kPhases; ph++) printf(" %s=%.0f", kNames[ph], results[r][ph]);
    printf("\n");
  }
  return 0;
}
