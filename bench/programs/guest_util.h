// Helpers shared by the guest benchmark programs: a monotonic clock in ns, pinning the
// calling thread to a CPU (exits with status 2 on failure), and a CPU's NUMA node.
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // must come before the first system header of the program
#endif
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void pin_to_cpu(const char* program, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    fprintf(stderr, "%s: sched_setaffinity(cpu %d): %s\n", program, cpu, strerror(errno));
    exit(2);
  }
}

// The NUMA node of a CPU (the nodeN link in sysfs), or -1.
static inline int cpu_node(int cpu) {
  char path[64];
  snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d", cpu);
  DIR* d = opendir(path);
  if (!d) return -1;
  int node = -1;
  for (struct dirent* e; (e = readdir(d)) != NULL;) {
    if (strncmp(e->d_name, "node", 4) == 0 && e->d_name[4] >= '0' && e->d_name[4] <= '9') {
      node = atoi(e->d_name + 4);
      break;
    }
  }
  closedir(d);
  return node;
}
