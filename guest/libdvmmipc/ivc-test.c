/* ivc-test: checks libdvmmipc in the guest; its output lines are for the boot tests.
 *
 *   ivc-test GROUP exchange MIN MAX   every rank sends every other rank messages of MIN..MAX
 *                                     bytes (powers of two, 1, 3, 5, 4097, 65537, 1M+3, MIN,
 *                                     MAX), each followed by its checksum; small ones (up to
 *                                     64 KiB, to itself too) all at once with mixed tags and
 *                                     received in another order, big ones pair by pair.
 *                                     -> "ivc-test: rank R of N ok bytes=B msgs=M"
 *   ivc-test GROUP errors             error codes: receive before init, bad ranks, type
 *                                     mismatch, truncation (inline and ring), double init
 *                                     -> "ivc-test: errors NAME=RC ok" lines, then
 *                                        "ivc-test: rank R of N errors ok"
 *   ivc-test GROUP waitpeer SRC       blocks receiving from SRC and prints what it returns
 *                                     (the dead-peer test kills SRC's VM)
 *                                     -> "ivc-test: waitpeer ready rank R of N", then
 *                                        "ivc-test: waitpeer src=SRC rc=RC (text)"
 *   ivc-test GROUP ping N             rank 0 <-> rank 1, N round trips of 1 byte (mailbox)
 *                                     -> "ivc-test: ping rounds=N one-way-us=X"
 *   ivc-test GROUP idle [SECONDS]     joins, prints "ivc-test: idle ready rank R of N" and
 *                                     waits (forever without SECONDS), then finalizes
 *   ivc-test GROUP info               prints "ivc-test: rank R of N"
 *
 * Sizes take a K, M or G suffix (powers of 1024). Failures print "ivc-test: FAIL ..." and
 * exit with status 1; a usage error exits with 2. Exit status 0 means every check passed (for
 * waitpeer: the receive returned IVC_ERR_PEER_DEAD).
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dvmmipc.h"
#include "ivc_main.h"
#include "ivc_pattern.h"

#define IVC_PROG "ivc-test"
#include "ivc_prog.h"

#define SMALL_MAX (64 * 1024)

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) fail("out of memory (%zu bytes)", n);
  return p;
}

static void init(const char* group) {
  check_rc(ivc_init(group), "ivc_init");
  check_rc(ivc_comm_rank(&g_rank), "ivc_comm_rank");
  check_rc(ivc_comm_size(&g_size), "ivc_comm_size");
}

/* ------------------------------------------------------------------------------------------ */
/* exchange */

static int cmp_u64(const void* a, const void* b) {
  uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

/* sizes of the exchange, sorted, unique: at most 64 */
static size_t make_sizes(uint64_t min, uint64_t max, uint64_t* out) {
  uint64_t cand[80];
  size_t n = 0, m = 0;
  static const uint64_t odd[] = {1, 3, 5, 4097, 65537, (1u << 20) + 3};
  cand[n++] = min;
  cand[n++] = max;
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) cand[n++] = odd[i];
  for (int k = 0; k < 40 && n < 80; k++) cand[n++] = 1ull << k;
  qsort(cand, n, sizeof cand[0], cmp_u64);
  for (size_t i = 0; i < n; i++) {
    if (cand[i] < min || cand[i] > max || (m && out[m - 1] == cand[i]) || m == 64) continue;
    out[m++] = cand[i];
  }
  return m;
}

struct totals {
  uint64_t bytes, msgs;
};

/* message `i` (size `len`) to dest with tag `tag`: the pattern, then its checksum */
static void send_msg(uint8_t* buf, uint64_t len, int dest, size_t i, int tag) {
  pat_fill(buf, len, pat_seed(g_rank, dest, i, len));
  uint64_t sum = pat_csum(buf, len);
  check_rc(ivc_send(buf, len, dest, tag, IVC_BYTE), "send");
  check_rc(ivc_send(&sum, 1, dest, tag, IVC_INT64), "send checksum");
}

static void recv_msg(uint8_t* buf, uint64_t len, int src, size_t i, int tag, int any_source,
                     struct totals* t) {
  struct ivc_status st;
  int rc = ivc_recv_status(buf, len, any_source ? IVC_ANY_SOURCE : src, tag, IVC_BYTE, &st);
  if (rc != IVC_OK) {
    fail("receive of %llu bytes from %d (tag %d): %d (%s)", (unsigned long long)len, src, tag, rc,
         ivc_strerror(rc));
  }
  if (st.source != src || st.tag != tag || st.count != len) {
    fail("message from %d tag %d: got source %d tag %d count %zu, want %llu bytes", src, tag,
         st.source, st.tag, st.count, (unsigned long long)len);
  }
  uint64_t sum = 0, mine = pat_csum(buf, len);
  check_rc(ivc_recv(&sum, 1, src, tag, IVC_INT64), "receive checksum");
  long long bad = pat_check(buf, len, pat_seed(src, g_rank, i, len));
  if (sum != mine || bad >= 0) {
    fail(
        "message of %llu bytes from %d (tag %d): checksum %016llx, sender's %016llx, first "
        "wrong byte at %lld",
        (unsigned long long)len, src, tag, (unsigned long long)mine, (unsigned long long)sum, bad);
  }
  t->bytes += len;
  t->msgs++;
}

static int gcd(int a, int b) {
  while (b) {
    int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static int do_exchange(const char* group, uint64_t min, uint64_t max) {
  uint64_t sizes[64];
  size_t ns = make_sizes(min, max, sizes);
  if (ns == 0)
    fail("no sizes between %llu and %llu", (unsigned long long)min, (unsigned long long)max);
  init(group);
  int n = g_size, me = g_rank;
  struct totals t = {0, 0};
  double t0 = now_s();
  uint8_t* buf = xmalloc(max);
  uint8_t* rbuf = xmalloc(max);
  /* small messages: all at once (to itself too), tag = 64 * source + index */
  size_t nsmall = 0;
  while (nsmall < ns && sizes[nsmall] <= SMALL_MAX) nsmall++;
  for (size_t i = 0; i < nsmall; i++) {
    for (int d = 0; d < n; d++) send_msg(buf, sizes[i], d, i, 64 * me + (int)i);
  }
  /* received per source in windows of 4 in the order 2,0,3,1; every other source with
   * IVC_ANY_SOURCE (the tag says who sent it) */
  static const int perm[4] = {2, 0, 3, 1};
  for (int k = 1; k <= n; k++) {
    int s = (me + k) % n;
    for (size_t base = 0; base < nsmall; base += 4) {
      for (int j = 0; j < 4; j++) {
        size_t i = base + (size_t)perm[j];
        if (i >= nsmall) continue;
        recv_msg(rbuf, sizes[i], s, i, 64 * s + (int)i, k % 2, &t);
      }
    }
  }
  /* big messages: in round r every rank sends to me+r and receives from me-r; in each cycle
   * of that permutation its smallest rank sends first, the others receive first */
  for (int r = 1; r < n; r++) {
    int dest = (me + r) % n, src = (me + n - r) % n;
    int first = me < gcd(r, n);
    for (size_t i = nsmall; i < ns; i++) {
      int tag = (int)(1000 + i);
      if (first) send_msg(buf, sizes[i], dest, i, tag);
      recv_msg(rbuf, sizes[i], src, i, tag, 0, &t);
      if (!first) send_msg(buf, sizes[i], dest, i, tag);
    }
  }
  /* nobody leaves before everybody is done */
  for (int d = 0; d < n; d++) check_rc(ivc_send(buf, 0, d, 4000, IVC_BYTE), "barrier send");
  for (int s = 0; s < n; s++) check_rc(ivc_recv(rbuf, 0, s, 4000, IVC_BYTE), "barrier");
  double secs = now_s() - t0;
  free(buf);
  free(rbuf);
  check_rc(ivc_finalize(), "ivc_finalize");
  printf("ivc-test: rank %d exchange sizes=%zu min=%llu max=%llu seconds=%.3f\n", me, ns,
         (unsigned long long)sizes[0], (unsigned long long)sizes[ns - 1], secs);
  printf("ivc-test: rank %d of %d ok bytes=%llu msgs=%llu\n", me, n, (unsigned long long)t.bytes,
         (unsigned long long)t.msgs);
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* errors */

static int errors_failed;

static void expect(const char* name, int rc, int want) {
  int ok = rc == want;
  printf("ivc-test: errors %s=%d %s", name, rc, ok ? "ok" : "FAIL");
  if (!ok) printf(" (want %d: %s; got: %s)", want, ivc_strerror(want), ivc_strerror(rc));
  printf("\n");
  if (!ok) errors_failed = 1;
}

static int do_errors(const char* group) {
  char b[16];
  int32_t v = 7;
  expect("recv-before-init", ivc_recv(b, 1, 0, 0, IVC_BYTE), IVC_ERR_STATE);
  expect("send-before-init", ivc_send(b, 1, 0, 0, IVC_BYTE), IVC_ERR_STATE);
  expect("init", ivc_init(group), IVC_OK);
  if (errors_failed) return 1;
  check_rc(ivc_comm_rank(&g_rank), "ivc_comm_rank");
  check_rc(ivc_comm_size(&g_size), "ivc_comm_size");
  expect("init-twice", ivc_init(group), IVC_ERR_STATE);
  int n = g_size, next = (g_rank + 1) % n, prev = (g_rank + n - 1) % n;
  expect("send-bad-rank", ivc_send(b, 1, n, 0, IVC_BYTE), IVC_ERR_RANK);
  expect("send-negative-rank", ivc_send(b, 1, -3, 0, IVC_BYTE), IVC_ERR_RANK);
  expect("recv-bad-rank", ivc_recv(b, 1, n + 5, 0, IVC_BYTE), IVC_ERR_RANK);
  expect("send-bad-type", ivc_send(b, 1, next, 0, 42), IVC_ERR_TYPE);
  expect("send-bad-tag", ivc_send(b, 1, next, 70000, IVC_BYTE), IVC_ERR_ARG);
  expect("send-too-large", ivc_send(b, (size_t)-1 / 4, next, 0, IVC_INT64), IVC_ERR_SIZE);
  /* to the next rank (itself in a group of one): mismatches and truncations, inline and
   * through the ring, then a good one */
  int64_t* big = xmalloc(100000 * sizeof(int64_t));
  for (int i = 0; i < 100000; i++) big[i] = i;
  check_rc(ivc_send(&v, 1, next, 1, IVC_INT32), "send 1");
  check_rc(ivc_send(big, 100000, next, 2, IVC_INT64), "send 2");
  check_rc(ivc_send("abcd", 4, next, 3, IVC_CHAR), "send 3");
  check_rc(ivc_send(big, 100000, next, 4, IVC_INT64), "send 4");
  check_rc(ivc_send(&v, 1, next, 5, IVC_INT32), "send 5");
  struct ivc_status st;
  float f;
  double d[4];
  expect("type-mismatch", ivc_recv_status(&f, 1, prev, 1, IVC_FLOAT, &st), IVC_ERR_TYPE);
  expect("type-mismatch-ring", ivc_recv_status(d, 4, prev, 2, IVC_DOUBLE, &st), IVC_ERR_TYPE);
  expect("type-mismatch-count", st.count == 100000 ? 0 : -1, 0);
  memset(b, 0, sizeof b);
  expect("truncation", ivc_recv_status(b, 2, prev, 3, IVC_CHAR, &st), IVC_ERR_SIZE);
  expect("truncation-data", b[0] == 'a' && b[1] == 'b' && b[2] == 0 && st.count == 4 ? 0 : -1, 0);
  int64_t part[10] = {0};
  expect("truncation-ring", ivc_recv_status(part, 10, prev, 4, IVC_INT64, &st), IVC_ERR_SIZE);
  expect("truncation-ring-data", part[9] == 9 && st.count == 100000 ? 0 : -1, 0);
  int32_t w = 0;
  expect("recv-after-errors", ivc_recv(&w, 1, prev, 5, IVC_INT32), IVC_OK);
  expect("recv-after-errors-data", w == 7 ? 0 : -1, 0);
  free(big);
  /* nobody leaves before everybody is done */
  for (int i = 0; i < n; i++) check_rc(ivc_send(b, 0, i, 9, IVC_BYTE), "barrier send");
  for (int i = 0; i < n; i++) check_rc(ivc_recv(b, 0, i, 9, IVC_BYTE), "barrier");
  expect("finalize", ivc_finalize(), IVC_OK);
  expect("finalize-twice", ivc_finalize(), IVC_ERR_STATE);
  printf("ivc-test: rank %d of %d errors %s\n", g_rank, n, errors_failed ? "FAIL" : "ok");
  return errors_failed;
}

/* ------------------------------------------------------------------------------------------ */

static int do_waitpeer(const char* group, int src) {
  init(group);
  printf("ivc-test: waitpeer ready rank %d of %d\n", g_rank, g_size);
  fflush(stdout);
  char c;
  double t0 = now_s();
  int rc = ivc_recv(&c, 1, src, IVC_ANY_TAG, IVC_BYTE);
  printf("ivc-test: waitpeer src=%d rc=%d (%s) seconds=%.3f\n", src, rc, ivc_strerror(rc),
         now_s() - t0);
  ivc_finalize();
  return rc == IVC_ERR_PEER_DEAD ? 0 : 1;
}

static int do_ping(const char* group, long rounds) {
  init(group);
  if (g_size < 2) fail("ping needs two ranks (the group has %d)", g_size);
  char c = 1;
  double t0 = 0;
  const long warmup = 20;
  if (g_rank <= 1) {
    int peer = 1 - g_rank;
    for (long i = 0; i < rounds + warmup; i++) {
      if (i == warmup) t0 = now_s();
      if (g_rank == 0) {
        check_rc(ivc_send(&c, 1, peer, 0, IVC_BYTE), "ping send");
        check_rc(ivc_recv(&c, 1, peer, 0, IVC_BYTE), "ping receive");
      } else {
        check_rc(ivc_recv(&c, 1, peer, 0, IVC_BYTE), "ping receive");
        check_rc(ivc_send(&c, 1, peer, 0, IVC_BYTE), "ping send");
      }
    }
  }
  double secs = now_s() - t0;
  /* the others wait until rank 0 is done */
  if (g_rank == 0) {
    for (int d = 1; d < g_size; d++) check_rc(ivc_send(&c, 1, d, 1, IVC_BYTE), "done");
    printf("ivc-test: ping rounds=%ld one-way-us=%.2f\n", rounds, secs / (double)rounds / 2 * 1e6);
  } else {
    check_rc(ivc_recv(&c, 1, 0, 1, IVC_BYTE), "done");
  }
  check_rc(ivc_finalize(), "ivc_finalize");
  return 0;
}

static int do_idle(const char* group, long seconds) {
  init(group);
  printf("ivc-test: idle ready rank %d of %d\n", g_rank, g_size);
  fflush(stdout);
  if (seconds < 0) {
    for (;;) pause();
  }
  sleep((unsigned)seconds);
  check_rc(ivc_finalize(), "ivc_finalize");
  return 0;
}

static int usage(void) {
  fprintf(stderr,
          "usage: ivc-test GROUP exchange MIN MAX | errors | waitpeer SRC | ping N |\n"
          "                      idle [SECONDS] | info\n");
  return 2;
}

int ivc_test_main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 3) return usage();
  const char *group = argv[1], *pat = argv[2];
  if (!strcmp(pat, "exchange") && argc == 5) {
    uint64_t min, max;
    if (parse_size(argv[3], &min) || parse_size(argv[4], &max) || min > max || max > (1ull << 34)) {
      return usage();
    }
    return do_exchange(group, min, max);
  }
  if (!strcmp(pat, "errors") && argc == 3) return do_errors(group);
  if (!strcmp(pat, "waitpeer") && argc == 4) return do_waitpeer(group, atoi(argv[3]));
  if (!strcmp(pat, "ping") && argc == 4 && atol(argv[3]) > 0) return do_ping(group, atol(argv[3]));
  if (!strcmp(pat, "idle") && (argc == 3 || argc == 4)) {
    return do_idle(group, argc == 4 ? atol(argv[3]) : -1);
  }
  if (!strcmp(pat, "info") && argc == 3) {
    init(group);
    printf("ivc-test: rank %d of %d\n", g_rank, g_size);
    check_rc(ivc_finalize(), "ivc_finalize");
    return 0;
  }
  return usage();
}
