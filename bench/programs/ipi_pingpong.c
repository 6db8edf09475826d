// Guest workload for bench/cluster.py: cross-CPU wake-ups, i.e. reschedule / call-function
// IPIs sent by the guest kernel.
//
//   ipi_pingpong ITERS [CPU_A CPU_B]
//
// Two threads pinned to CPU_A and CPU_B (default 0 and 1: NUMA nodes 0 and 1 on a 2-node
// VM with 1 vCPU per node) ping-pong ITERS times through two futex words: A bumps `ping`
// and wakes B, then sleeps in FUTEX_WAIT until B bumps `pong` and wakes it. Neither thread
// spins, so each CPU goes idle (WFI) while it waits and every wake-up is an IPI to an idle
// CPU: two IPIs per round trip. A times every round trip with CLOCK_MONOTONIC; the first
// ITERS/10 round trips warm up and are not counted.
//
// Output:
//   ipi_pingpong iters=N cpus=A,B nodes=0,1 rtt_mean_ns=... rtt_p50_ns=... rtt_p90_ns=...
//   rtt_p99_ns=... total_s=...
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "guest_util.h"

static long iters, warmup;
static int cpu_a = 0, cpu_b = 1;
// Each word on its own page, written by one side only.
static _Alignas(4096) volatile uint32_t ping;
static _Alignas(4096) volatile uint32_t pong;
static uint64_t* rtt;

static void pin(int cpu) { pin_to_cpu("ipi_pingpong", cpu); }

static void futex_wait(volatile uint32_t* w, uint32_t old) {
  while (*w == old) syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
}

static void futex_wake(volatile uint32_t* w) {
  syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void* responder(void* arg) {
  (void)arg;
  pin(cpu_b);
  for (long i = 0; i < warmup + iters; i++) {
    futex_wait(&ping, (uint32_t)i);
    pong = (uint32_t)(i + 1);
    futex_wake(&pong);
  }
  return NULL;
}

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  iters = argc > 1 ? atol(argv[1]) : 2000;
  if (argc > 3) cpu_a = atoi(argv[2]), cpu_b = atoi(argv[3]);
  if (iters < 1) {
    fprintf(stderr, "usage: ipi_pingpong ITERS [CPU_A CPU_B]\n");
    return 2;
  }
  warmup = iters / 10;
  rtt = calloc((size_t)iters, sizeof *rtt);
  pin(cpu_a);
  pthread_t t;
  if (pthread_create(&t, NULL, responder, NULL) != 0) {
    fprintf(stderr, "ipi_pingpong: pthread_create failed\n");
    return 2;
  }
  uint64_t start = 0;
  for (long i = 0; i < warmup + iters; i++) {
    uint64_t t0 = now_ns();
    if (i == warmup) start = t0;
    ping = (uint32_t)(i + 1);
    futex_wake(&ping);
    futex_wait(&pong, (uint32_t)i);
    if (i >= warmup) rtt[i - warmup] = now_ns() - t0;
  }
  double total = (double)(now_ns() - start);
  pthread_join(t, NULL);
  qsort(rtt, (size_t)iters, sizeof *rtt, cmp_u64);
  printf("ipi_pingpong iters=%ld cpus=%d,%d nodes=%d,%d rtt_mean_ns=%.0f rtt_p50_ns=%llu "
         "rtt_p90_ns=%llu rtt_p99_ns=%llu total_s=%.3f\n",
         iters, cpu_a, cpu_b, cpu_node(cpu_a), cpu_node(cpu_b), total / (double)iters,
         (unsigned long long)rtt[iters / 2], (unsigned long long)rtt[iters * 9 / 10],
         (unsigned long long)rtt[iters * 99 / 100], total / 1e9);
  return 0;
}
