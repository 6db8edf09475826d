// Guest workload for bench/cluster.py: CPU-bound parallel work with no sharing.
//
//   parallel THREADS WORK
//
// Runs cpubench's integer part (hashing and a sieve over a thread-local array; the same code,
// included from cpubench.c) WORK times on each of THREADS threads, thread i pinned to CPU i,
// and prints the wall time of the whole part (guest CLOCK_MONOTONIC) and of each thread:
//   parallel threads=T work=W wall=S per_thread=S0,S1,...
// Throughput is THREADS * WORK / wall; on a distributed VM with one vCPU per node every
// thread runs on its own node.
#define _GNU_SOURCE  // sched_setaffinity
#include <sched.h>

#define main cpubench_main
#include "cpubench.c"
#undef main

static double started[64], finished[64];

static void* pinned(void* arg) {
  long cpu = (long)arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET((int)cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    fprintf(stderr, "parallel: sched_setaffinity(cpu %ld) failed\n", cpu);
    exit(2);
  }
  started[cpu] = now();
  integer_part(NULL);
  finished[cpu] = now();
  return NULL;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  work = argc > 2 ? atoi(argv[2]) : 1;
  if (threads < 1 || threads > 64 || work < 1) {
    fprintf(stderr, "usage: parallel THREADS WORK\n");
    return 2;
  }
  pthread_t t[64];
  double start = now();
  for (long i = 0; i < threads; i++) pthread_create(&t[i], NULL, pinned, (void*)i);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  double wall = now() - start;
  printf("parallel threads=%d work=%d wall=%.3f per_thread=", threads, work, wall);
  for (int i = 0; i < threads; i++) printf("%s%.3f", i ? "," : "", finished[i] - started[i]);
  printf("\n");
  return 0;
}
