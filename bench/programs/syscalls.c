// Guest workload for the execution-control benchmarks (issue 6): N cheap system calls
// (getppid) timed with the guest's clock, then cpubench-style integer work without any
// system call. Prints one line: "syscalls n=N ns_per_call=X integer_s=Y".
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "guest_util.h"

static volatile uint64_t sink;

int main(int argc, char** argv) {
  const long n = argc > 1 ? atol(argv[1]) : 200000;
  const int rounds = argc > 2 ? atoi(argv[2]) : 3;
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; i++) sink += (uint64_t)syscall(SYS_getppid);
  const double per_call = (double)(now_ns() - t0) / (double)n;
  t0 = now_ns();
  uint64_t h = 1469598103934665603ull;
  for (int r = 0; r < rounds; r++) {
    for (uint32_t i = 0; i < 20000000; i++) {
      h ^= i;
      h *= 1099511628211ull;
      h ^= h >> 29;
    }
  }
  sink += h;
  printf("syscalls n=%ld ns_per_call=%.1f integer_s=%.3f\n", n, per_call,
         (double)(now_ns() - t0) / 1e9);
  return 0;
}
