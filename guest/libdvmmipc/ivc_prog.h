/* What ivc-test.c and ivc-bench.c share: the rank for messages, failing with a message,
 * timing, and sizes with a K/M/G suffix. Each program file defines IVC_PROG (its name in
 * messages) and includes this once. */
#ifndef IVC_PROG_H
#define IVC_PROG_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "dvmmipc.h"

static int g_rank = -1, g_size = 0;

/* Prints "IVC_PROG: FAIL rank R: ..." and exits with status 1. */
static void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf(IVC_PROG ": FAIL rank %d: ", g_rank);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(stdout);
  exit(1);
}

static void check_rc(int rc, const char* what) {
  if (rc != IVC_OK) fail("%s: %d (%s)", what, rc, ivc_strerror(rc));
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A decimal size with an optional K, M or G suffix (powers of 1024); -1 if malformed. */
static int parse_size(const char* s, uint64_t* out) {
  char* end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s) return -1;
  int shift = 0;
  if (*end == 'K' || *end == 'k') shift = 10;
  if (*end == 'M' || *end == 'm') shift = 20;
  if (*end == 'G' || *end == 'g') shift = 30;
  if (shift) end++;
  if (*end) return -1;
  *out = (uint64_t)v << shift;
  return 0;
}

#endif /* IVC_PROG_H */
