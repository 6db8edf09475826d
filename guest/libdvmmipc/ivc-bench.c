/* ivc-bench: bandwidth and latency of libdvmmipc between rank 0 and rank 1 (bench/ivc.sh).
 *
 *   ivc-bench GROUP bw TOTAL BUF...   for each BUF: rank 0 sends TOTAL bytes to rank 1 in
 *                                     messages of BUF bytes (TOTAL/BUF of them, at least
 *                                     one); rank 1 receives them and acks; rank 0 times from
 *                                     the first send to the ack and prints
 *                                     "ivc-bench: buf=BUF bytes=B seconds=S MiB/s=X"
 *   ivc-bench GROUP lat N [SIZE]      N round trips of SIZE bytes (default 1: the mailbox);
 *                                     rank 0 prints
 *                                     "ivc-bench: lat size=SIZE rounds=N one-way-us=X"
 *
 * Sizes take a K, M or G suffix (powers of 1024). Ranks above 1 only join and wait. Rank 1
 * checks the contents of the last message of each size after the timing. Exit status 0 on
 * success, 1 on an error ("ivc-bench: FAIL ..."), 2 on a usage error.
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dvmmipc.h"
#include "ivc_main.h"
#include "ivc_pattern.h"

#define IVC_PROG "ivc-bench"
#include "ivc_prog.h"

enum { TAG_DATA = 1, TAG_READY = 2, TAG_ACK = 3, TAG_DONE = 4, TAG_LAT = 5 };

static int do_bw(uint64_t total, const uint64_t* bufs, int nbufs) {
  uint64_t max = 0;
  for (int i = 0; i < nbufs; i++) max = bufs[i] > max ? bufs[i] : max;
  uint8_t* buf = malloc(max);
  if (!buf) fail("out of memory (%llu bytes)", (unsigned long long)max);
  char c = 0;
  for (int i = 0; i < nbufs && g_rank <= 1; i++) {
    uint64_t bs = bufs[i], n = total / bs ? total / bs : 1;
    if (g_rank == 0) {
      pat_fill(buf, bs, bs);
      check_rc(ivc_recv(&c, 1, 1, TAG_READY, IVC_BYTE), "ready");
      double t0 = now_s();
      for (uint64_t k = 0; k < n; k++) check_rc(ivc_send(buf, bs, 1, TAG_DATA, IVC_BYTE), "send");
      check_rc(ivc_recv(&c, 1, 1, TAG_ACK, IVC_BYTE), "ack");
      double secs = now_s() - t0;
      printf("ivc-bench: buf=%llu bytes=%llu seconds=%.4f MiB/s=%.1f\n", (unsigned long long)bs,
             (unsigned long long)(n * bs), secs, (double)(n * bs) / secs / (1024.0 * 1024.0));
    } else {
      memset(buf, 0, bs);
      check_rc(ivc_send(&c, 1, 0, TAG_READY, IVC_BYTE), "ready");
      for (uint64_t k = 0; k < n; k++) check_rc(ivc_recv(buf, bs, 0, TAG_DATA, IVC_BYTE), "recv");
      check_rc(ivc_send(&c, 1, 0, TAG_ACK, IVC_BYTE), "ack");
      if (pat_check(buf, bs, bs) >= 0) fail("buf=%llu: wrong contents", (unsigned long long)bs);
    }
  }
  free(buf);
  return 0;
}

static int do_lat(long rounds, uint64_t size) {
  uint8_t* buf = calloc(1, size);
  if (!buf) fail("out of memory");
  const long warmup = 20;
  double t0 = 0;
  if (g_rank <= 1) {
    int peer = 1 - g_rank;
    for (long i = 0; i < rounds + warmup; i++) {
      if (i == warmup) t0 = now_s();
      if (g_rank == 0) {
        check_rc(ivc_send(buf, size, peer, TAG_LAT, IVC_BYTE), "send");
        check_rc(ivc_recv(buf, size, peer, TAG_LAT, IVC_BYTE), "recv");
      } else {
        check_rc(ivc_recv(buf, size, peer, TAG_LAT, IVC_BYTE), "recv");
        check_rc(ivc_send(buf, size, peer, TAG_LAT, IVC_BYTE), "send");
      }
    }
  }
  if (g_rank == 0) {
    double secs = now_s() - t0;
    printf("ivc-bench: lat size=%llu rounds=%ld one-way-us=%.2f\n", (unsigned long long)size,
           rounds, secs / (double)rounds / 2 * 1e6);
  }
  free(buf);
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: ivc-bench GROUP bw TOTAL_BYTES BUF_SIZE... | lat N [SIZE]\n");
  return 2;
}

int ivc_bench_main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 4) return usage();
  const char *group = argv[1], *mode = argv[2];
  uint64_t total = 0, bufs[64], size = 1;
  int nbufs = 0;
  long rounds = 0;
  if (!strcmp(mode, "bw")) {
    if (argc < 5 || argc - 4 > 64 || parse_size(argv[3], &total) || total == 0) return usage();
    for (int i = 4; i < argc; i++) {
      if (parse_size(argv[i], &bufs[nbufs]) || bufs[nbufs++] == 0) return usage();
    }
  } else if (!strcmp(mode, "lat")) {
    rounds = atol(argv[3]);
    if (rounds <= 0 || argc > 5 || (argc == 5 && (parse_size(argv[4], &size) || size == 0)))
      return usage();
  } else {
    return usage();
  }
  check_rc(ivc_init(group), "ivc_init");
  check_rc(ivc_comm_rank(&g_rank), "ivc_comm_rank");
  check_rc(ivc_comm_size(&g_size), "ivc_comm_size");
  if (g_size < 2) fail("needs two ranks (the group has %d)", g_size);
  int rc = !strcmp(mode, "bw") ? do_bw(total, bufs, nbufs) : do_lat(rounds, size);
  /* the others wait until rank 0 is done */
  char c = 0;
  if (g_rank == 0) {
    for (int d = 1; d < g_size; d++) check_rc(ivc_send(&c, 1, d, TAG_DONE, IVC_BYTE), "done");
  } else {
    check_rc(ivc_recv(&c, 1, 0, TAG_DONE, IVC_BYTE), "done");
  }
  check_rc(ivc_finalize(), "ivc_finalize");
  return rc;
}
