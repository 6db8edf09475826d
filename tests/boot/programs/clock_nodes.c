// Guest time across the harts of a distributed VM (issue 4): the thread hops between every
// CPU (so across node processes) and reads the clock on each; neither CLOCK_MONOTONIC nor
// the `time` CSR may ever go backwards, and both must advance. Prints one summary line.
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rdtime(void) {
  uint64_t t;
  __asm__ volatile("rdtime %0" : "=r"(t));
  return t;
}

int main(int argc, char** argv) {
  int hops = argc > 1 ? atoi(argv[1]) : 400;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  uint64_t last_ns = monotonic_ns(), last_ticks = rdtime();
  const uint64_t first_ns = last_ns, first_ticks = last_ticks;
  int backwards = 0, migrated = 0;
  for (int i = 0; i < hops; i++) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(i % cpus, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) {
      perror("sched_setaffinity");
      return 2;
    }
    if (sched_getcpu() == (int)(i % cpus)) migrated++;
    const uint64_t ns = monotonic_ns(), ticks = rdtime();
    if (ns < last_ns || ticks < last_ticks) {
      printf("clock went backwards on cpu %d: %llu -> %llu ns, %llu -> %llu ticks\n",
             sched_getcpu(), (unsigned long long)last_ns, (unsigned long long)ns,
             (unsigned long long)last_ticks, (unsigned long long)ticks);
      backwards++;
    }
    last_ns = ns;
    last_ticks = ticks;
  }
  printf("clock cpus=%ld hops=%d on_target=%d backwards=%d advanced=%d\n", cpus, hops, migrated,
         backwards, last_ns > first_ns && last_ticks > first_ticks);
  return backwards != 0;
}
