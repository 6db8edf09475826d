/* Host test of libdvmmipc against the fake device (dvmmipc_fake.c): forked processes play the
 * VMs of a group.
 *
 *   test_dvmmipc_host [-v] [TEST...]     runs the tests (default: all)
 *   test_dvmmipc_host run N [expected=E] [shm=BYTES] [kill=R@MS] -- CMD0 [-- CMD1 ...]
 *                                        N fake VMs of group "g"; rank R runs CMD_R (the last CMD
 * for the ranks beyond), where CMD is "ivc-test ARGS..." or "ivc-bench ARGS..." (the guest
 * programs' code); prints "run: rank R exit S" per rank; exit status 0 when all exited 0 (the
 * killed rank excepted)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dvmmipc.h"
#include "dvmmipc_fake.h"
#include "dvmmipc_internal.h"
#include "ivc_main.h"
#include "ivc_pattern.h"

#define MiB (1024ull * 1024)

static int g_rank = -1;
static int g_verbose;
static struct ivc_fake_group* g_group;

#define FAIL(...)                                                      \
  do {                                                                 \
    fprintf(stderr, "  rank %d: %s:%d: ", g_rank, __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__);                                      \
    fprintf(stderr, "\n");                                             \
    exit(1);                                                           \
  } while (0)
#define CHECK(cond, ...)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "  rank %d: CHECK(%s) failed\n", g_rank, #cond); \
      FAIL(__VA_ARGS__);                                               \
    }                                                                  \
  } while (0)
#define CHECK_RC(expr, want)                                                    \
  do {                                                                          \
    int rc_ = (expr);                                                           \
    if (rc_ != (want))                                                          \
      FAIL("%s = %d (%s), want %d (%s)", #expr, rc_, ivc_strerror(rc_), (want), \
           ivc_strerror(want));                                                 \
  } while (0)
#define OK(expr) CHECK_RC(expr, IVC_OK)

static void note(const char* fmt, ...) {
  if (!g_verbose) return;
  char line[512];
  int n = snprintf(line, sizeof line, "  rank %d: ", g_rank);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  strcat(line, "\n");
  fputs(line, stderr);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) FAIL("out of memory (%zu bytes)", n);
  return p;
}

/* ------------------------------------------------------------------------------------------ */
/* running a group of forked "VMs" */

typedef int (*rank_fn)(int rank, void* arg);
static int run_rank(int rank, void* arg);

struct group_opts {
  int n;
  uint32_t expected;
  uint64_t shm;
  int prejoin;          /* the parent joins every rank before forking (no EXPECTED) */
  int join_delay_ms[8]; /* a child joins after this delay */
  int kill_rank;        /* -1: none */
  int kill_after_ms;
  int spin_us; /* -1: library default */
  int timeout_s;
};

static void default_opts(struct group_opts* o, int n) {
  memset(o, 0, sizeof *o);
  o->n = n;
  o->expected = (uint32_t)n;
  o->shm = 64 * MiB;
  o->kill_rank = -1;
  o->spin_us = -1;
  o->timeout_s = 120;
}

static int run_group(const char* name, rank_fn fn, void* arg, const struct group_opts* o) {
  struct ivc_fake_group* g = ivc_fake_create(name, o->shm, o->expected);
  if (!g) {
    fprintf(stderr, "  cannot create the fake group\n");
    return 1;
  }
  g_group = g;
  if (o->prejoin) {
    for (int i = 0; i < o->n; i++) ivc_fake_join(g, i);
  }
  pid_t pid[8];
  fflush(NULL);
  for (int i = 0; i < o->n; i++) {
    pid[i] = fork();
    if (pid[i] < 0) {
      perror("fork");
      exit(2);
    }
    if (pid[i] == 0) {
      g_rank = i;
      if (o->spin_us >= 0) {
        char s[32];
        snprintf(s, sizeof s, "%d", o->spin_us);
        setenv("IVC_SPIN_US", s, 1);
      }
      if (o->join_delay_ms[i]) sleep_ms(o->join_delay_ms[i]);
      if (!o->prejoin) ivc_fake_join(g, i);
      ivc_fake_use(g, i);
      int rc = fn(i, arg);
      struct ivc_counters c;
      ivc__counters(&c);
      note(
          "counters: inline %llu ring %llu bytes %llu doorbells %llu sleeps %llu timeouts %llu "
          "lost %llu unexpected %llu full %llu stale %llu",
          (unsigned long long)c.inline_sent, (unsigned long long)c.ring_sent,
          (unsigned long long)c.bytes_sent, (unsigned long long)c.doorbells_sent,
          (unsigned long long)c.sleeps, (unsigned long long)c.sleep_timeouts,
          (unsigned long long)c.lost_wakeups, (unsigned long long)c.unexpected,
          (unsigned long long)c.send_full_retries, (unsigned long long)c.stale_dropped);
      if (c.lost_wakeups) {
        /* a sleep that ended by its 1 s timeout although there was something to do: a missed
         * doorbell or interrupt (sleeps may time out when the peer is busy, e.g. under
         * qemu-user) */
        fprintf(stderr,
                "  rank %d: %llu sleeps ended by their 1 s timeout, %llu of them lost "
                "wake-ups\n",
                i, (unsigned long long)c.sleep_timeouts, (unsigned long long)c.lost_wakeups);
        rc = 1;
      }
      fflush(NULL);
      _exit(rc);
    }
  }
  int failed = 0, left = o->n;
  double start = now_s(), killed_at = 0;
  int done[8] = {0};
  while (left > 0) {
    if (o->kill_rank >= 0 && !killed_at && now_s() - start >= o->kill_after_ms / 1000.0) {
      kill(pid[o->kill_rank], SIGKILL);
      killed_at = now_s();
    }
    int status;
    pid_t p = waitpid(-1, &status, WNOHANG);
    if (p > 0) {
      for (int i = 0; i < o->n; i++) {
        if (pid[i] != p) continue;
        done[i] = 1;
        left--;
        ivc_fake_leave(g, i); /* the VM is gone */
        if (fn == run_rank) {
          if (WIFEXITED(status)) {
            printf("run: rank %d exit %d\n", i, WEXITSTATUS(status));
          } else {
            printf("run: rank %d signal %d\n", i, WTERMSIG(status));
          }
        }
        int expected_kill = i == o->kill_rank;
        if (WIFSIGNALED(status) && !(expected_kill && WTERMSIG(status) == SIGKILL)) {
          fprintf(stderr, "  rank %d died of signal %d\n", i, WTERMSIG(status));
          failed = 1;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
          fprintf(stderr, "  rank %d exited with status %d\n", i, WEXITSTATUS(status));
          failed = 1;
        } else if (expected_kill && !WIFSIGNALED(status)) {
          fprintf(stderr, "  rank %d finished before it was killed\n", i);
          failed = 1;
        }
      }
      continue;
    }
    if (now_s() - start > o->timeout_s) {
      fprintf(stderr, "  timeout after %d s; killing the ranks still running:", o->timeout_s);
      for (int i = 0; i < o->n; i++) {
        if (!done[i]) {
          fprintf(stderr, " %d", i);
          kill(pid[i], SIGKILL);
        }
      }
      fprintf(stderr, "\n");
      failed = 1;
      while (waitpid(-1, NULL, 0) > 0) {
      }
      break;
    }
    sleep_ms(2);
  }
  uint64_t werr = ivc_fake_width_errors(g);
  if (werr) {
    fprintf(stderr, "  %llu register accesses of the wrong width\n", (unsigned long long)werr);
    failed = 1;
  }
  ivc_fake_destroy(g);
  g_group = NULL;
  return failed;
}

/* ------------------------------------------------------------------------------------------ */
/* message sets with checksums */

static const uint64_t set_sizes[] = {0,
                                     1,
                                     2,
                                     3,
                                     4,
                                     5,
                                     7,
                                     8,
                                     31,
                                     32,
                                     33,
                                     63,
                                     64,
                                     65,
                                     100,
                                     1000,
                                     4095,
                                     4096,
                                     4097,
                                     65535,
                                     65536,
                                     65537,
                                     MiB - 1,
                                     MiB + 3,
                                     4 * MiB,
                                     16 * MiB - 4096 - 7,
                                     16 * MiB - 4096,
                                     16 * MiB + 1,
                                     33 * MiB,
                                     64 * MiB};
#define NSIZES (sizeof set_sizes / sizeof set_sizes[0])

static int set_tag(int src, size_t i) {
  return (int)((i * 7 + (size_t)src * 3) % 50);
}

/* Sends message i of the set: the pattern, then its checksum (INT64, same tag). */
static void send_one(int dest, size_t i, uint64_t len, uint8_t* buf) {
  uint64_t seed = pat_seed(g_rank, dest, i, len);
  pat_fill(buf, len, seed);
  uint64_t sum = pat_csum(buf, len);
  int tag = set_tag(g_rank, i);
  OK(ivc_send(buf, len, dest, tag, IVC_BYTE));
  OK(ivc_send(&sum, 1, dest, tag, IVC_INT64));
}

static void send_set(int dest, uint64_t max) {
  uint8_t* buf = xmalloc(max);
  for (size_t i = 0; i < NSIZES; i++) {
    if (set_sizes[i] <= max) send_one(dest, i, set_sizes[i], buf);
  }
  free(buf);
}

static void recv_one(int src, size_t i, uint64_t len, uint8_t* buf, size_t bufsize, int any) {
  struct ivc_status st;
  int tag = set_tag(src, i);
  OK(ivc_recv_status(buf, bufsize, any & 1 ? IVC_ANY_SOURCE : src, any & 2 ? IVC_ANY_TAG : tag,
                     IVC_BYTE, &st));
  CHECK(st.source == src && st.tag == tag && st.count == len,
        "message %zu: source %d tag %d count %zu, want %d %d %llu", i, st.source, st.tag, st.count,
        src, tag, (unsigned long long)len);
  long long bad = pat_check(buf, len, pat_seed(src, g_rank, i, len));
  CHECK(bad < 0, "message %zu from %d (%llu bytes): wrong byte at %lld", i, src,
        (unsigned long long)len, bad);
  uint64_t sum = 0;
  OK(ivc_recv_status(&sum, 1, src, tag, IVC_INT64, &st));
  CHECK(st.count == 1 && sum == pat_csum(buf, len), "message %zu: checksum", i);
}

/* Receives the set from src: windows of 4 small messages in the order 2,0,3,1 (so most are
 * taken out of order), large ones in order with IVC_ANY_TAG. */
static void recv_set(int src, uint64_t max, int any_source) {
  size_t n = 0;
  while (n < NSIZES && set_sizes[n] <= max) n++;
  uint8_t* buf = xmalloc(max + 64);
  static const int perm[4] = {2, 0, 3, 1};
  size_t i = 0;
  while (i < n) {
    if (i + 4 <= n && set_sizes[i + 3] <= MiB) {
      for (int k = 0; k < 4; k++) {
        size_t j = i + (size_t)perm[k];
        recv_one(src, j, set_sizes[j], buf, set_sizes[j] + 64 * (k & 1), 0);
      }
      i += 4;
    } else {
      recv_one(src, i, set_sizes[i], buf, set_sizes[i], any_source ? 3 : 2);
      i++;
    }
  }
  free(buf);
}

/* ------------------------------------------------------------------------------------------ */
/* tests */

/* two ranks: 0..64 MiB each way in turn; then both at once (both send before receiving, so
 * the library must take in the peer's data while its own send waits) */
static int t_pair(int rank, void* arg) {
  (void)arg;
  int n, r;
  OK(ivc_init("pair"));
  OK(ivc_comm_size(&n));
  OK(ivc_comm_rank(&r));
  CHECK(n == 2 && r == rank, "size %d rank %d", n, r);
  int peer = 1 - rank;
  double t0 = now_s();
  if (rank == 0) {
    send_set(peer, 64 * MiB);
    recv_set(peer, 64 * MiB, 0);
  } else {
    recv_set(peer, 64 * MiB, 1);
    send_set(peer, 64 * MiB);
  }
  note("sequential both ways: %.2f s", now_s() - t0);
  t0 = now_s();
  send_set(peer, 40 * MiB); /* both at once */
  recv_set(peer, 40 * MiB, 0);
  note("simultaneous: %.2f s", now_s() - t0);
  /* to itself */
  uint8_t* b = xmalloc(20 * MiB);
  pat_fill(b, 20 * MiB, 99);
  OK(ivc_send(b, 20 * MiB, rank, 7, IVC_BYTE)); /* > its ring: taken in while sending */
  OK(ivc_send(b, 3, rank, 8, IVC_BYTE));
  memset(b, 0, 20 * MiB);
  char small[3];
  OK(ivc_recv(small, 3, rank, 8, IVC_BYTE));
  OK(ivc_recv(b, 20 * MiB, rank, 7, IVC_BYTE));
  CHECK(pat_check(b, 20 * MiB, 99) < 0 && memcmp(small, b, 3) == 0, "self message");
  free(b);
  OK(ivc_finalize());
  return 0;
}

/* three ranks: all to all (themselves too) with ANY_SOURCE/ANY_TAG; per-pair order; then
 * receives by tag in reverse tag order; then a ring of 20 MiB messages */
#define T3_MSGS 150
static uint64_t t3_len(int src, int dst, int k) {
  uint64_t x = pat_mix((uint64_t)src * 1000003 + (uint64_t)dst * 7919 + (uint64_t)k);
  switch (k % 4) {
    case 0:
      return x % 5; /* inline */
    case 1:
      return 5 + x % 300;
    case 2:
      return 4096 + x % 70000;
    default:
      return x % (600 * 1024);
  }
}

static int t_three(int rank, void* arg) {
  (void)arg;
  int n;
  OK(ivc_init("three"));
  OK(ivc_comm_size(&n));
  CHECK(n == 3, "size %d", n);
  uint8_t* buf = xmalloc(600 * 1024 + 8);
  int token[3] = {0, 0, 0};
  for (int round = 0; round < 2; round++) {
    if (round == 1) {
      /* barrier: round 0's ANY_SOURCE receives must not take round 1's messages (they may
       * take the tokens of ranks that are done, which counts) */
      for (int d = 0; d < n; d++) OK(ivc_send(buf, 0, d, 100, IVC_BYTE));
      for (int s = 0; s < n; s++) {
        if (!token[s]) OK(ivc_recv(buf, 0, s, 100, IVC_BYTE));
      }
    }
    for (int k = 0; k < T3_MSGS; k++) {
      for (int d = 0; d < n; d++) {
        uint64_t len = t3_len(rank, d, k);
        pat_fill(buf, len, pat_seed(rank, d, (uint64_t)k, len));
        OK(ivc_send(buf, len, d, k % 5, IVC_BYTE));
      }
    }
    int next[3] = {0, 0, 0};
    if (round == 0) { /* arrival order, per source in sending order */
      for (int m = 0; m < T3_MSGS * n; m++) {
        struct ivc_status st;
        OK(ivc_recv_status(buf, 600 * 1024 + 8, IVC_ANY_SOURCE, IVC_ANY_TAG, IVC_BYTE, &st));
        CHECK(st.source >= 0 && st.source < n, "source %d", st.source);
        if (st.tag == 100 && st.count == 0 && !token[st.source]) {
          token[st.source] = 1;
          m--;
          continue;
        }
        int k = next[st.source]++;
        uint64_t len = t3_len(st.source, rank, k);
        CHECK(st.tag == k % 5 && st.count == len, "from %d message %d: tag %d count %zu", st.source,
              k, st.tag, st.count);
        CHECK(pat_check(buf, len, pat_seed(st.source, rank, (uint64_t)k, len)) < 0,
              "from %d message %d: contents", st.source, k);
      }
    } else { /* by tag, highest first; within a tag in order */
      for (int tag = 4; tag >= 0; tag--) {
        for (int s = 0; s < n; s++) {
          for (int k = tag; k < T3_MSGS; k += 5) {
            uint64_t len = t3_len(s, rank, k);
            struct ivc_status st;
            OK(ivc_recv_status(buf, len, s, tag, IVC_BYTE, &st));
            CHECK(st.count == len && st.tag == tag && st.source == s, "by tag");
            CHECK(pat_check(buf, len, pat_seed(s, rank, (uint64_t)k, len)) < 0,
                  "from %d message %d (by tag): contents", s, k);
          }
        }
      }
    }
  }
  free(buf);
  /* a ring: everybody sends 20 MiB to the next and receives from the previous */
  uint8_t* big = xmalloc(20 * MiB);
  pat_fill(big, 20 * MiB, pat_seed(rank, (rank + 1) % n, 1000, 20 * MiB));
  OK(ivc_send(big, 20 * MiB, (rank + 1) % n, 1000, IVC_BYTE));
  OK(ivc_recv(big, 20 * MiB, (rank + n - 1) % n, 1000, IVC_BYTE));
  CHECK(pat_check(big, 20 * MiB, pat_seed((rank + n - 1) % n, rank, 1000, 20 * MiB)) < 0,
        "ring message");
  free(big);
  OK(ivc_finalize());
  return 0;
}

static int t_errors(int rank, void* arg) {
  (void)arg;
  char b[64];
  int n;
  CHECK_RC(ivc_recv(b, 1, 0, 0, IVC_BYTE), IVC_ERR_STATE);
  CHECK_RC(ivc_send(b, 1, 0, 0, IVC_BYTE), IVC_ERR_STATE);
  CHECK_RC(ivc_comm_size(&n), IVC_ERR_STATE);
  CHECK_RC(ivc_finalize(), IVC_ERR_STATE);
  CHECK_RC(ivc_init("no-such-group"), IVC_ERR_NODEV);
  CHECK_RC(ivc_init(NULL), IVC_ERR_ARG);
  OK(ivc_init("errors"));
  CHECK_RC(ivc_init("errors"), IVC_ERR_STATE);
  OK(ivc_comm_size(&n));
  int peer = 1 - rank;
  CHECK_RC(ivc_send(b, 1, 2, 0, IVC_BYTE), IVC_ERR_RANK);
  CHECK_RC(ivc_send(b, 1, -1, 0, IVC_BYTE), IVC_ERR_RANK);
  CHECK_RC(ivc_recv(b, 1, 5, 0, IVC_BYTE), IVC_ERR_RANK);
  CHECK_RC(ivc_send(b, 1, peer, 0, 0), IVC_ERR_TYPE);
  CHECK_RC(ivc_send(b, 1, peer, 0, 7), IVC_ERR_TYPE);
  CHECK_RC(ivc_recv(b, 1, peer, 0, 9), IVC_ERR_TYPE);
  CHECK_RC(ivc_send(b, 1, peer, 65536, IVC_BYTE), IVC_ERR_ARG);
  CHECK_RC(ivc_send(b, 1, peer, IVC_ANY_TAG, IVC_BYTE), IVC_ERR_ARG);
  CHECK_RC(ivc_recv(b, 1, peer, -2, IVC_BYTE), IVC_ERR_ARG);
  CHECK_RC(ivc_send(NULL, 1, peer, 0, IVC_BYTE), IVC_ERR_ARG);
  CHECK_RC(ivc_send(b, SIZE_MAX / 2, peer, 0, IVC_DOUBLE), IVC_ERR_SIZE);
  CHECK_RC(ivc_comm_size(NULL), IVC_ERR_ARG);
  if (rank == 0) {
    int32_t v = 42;
    int64_t big[100];
    for (int i = 0; i < 100; i++) big[i] = i;
    OK(ivc_send(&v, 1, peer, 1, IVC_INT32));    /* inline, type mismatch */
    OK(ivc_send(big, 100, peer, 2, IVC_INT64)); /* ring, type mismatch */
    OK(ivc_send("abcd", 4, peer, 3, IVC_CHAR)); /* inline, truncated */
    OK(ivc_send(big, 100, peer, 4, IVC_INT64)); /* ring, truncated */
    OK(ivc_send(&v, 1, peer, 5, IVC_INT32));    /* fine */
    OK(ivc_send(big, 0, peer, 6, IVC_DOUBLE));  /* empty */
    OK(ivc_recv(b, 1, peer, 9, IVC_BYTE));      /* done */
  } else {
    struct ivc_status st;
    double d[200];
    CHECK_RC(ivc_recv_status(d, 1, peer, 1, IVC_FLOAT, &st), IVC_ERR_TYPE);
    CHECK(st.count == 1 && st.tag == 1 && st.source == peer, "status of the type mismatch");
    CHECK_RC(ivc_recv_status(d, 200, peer, 2, IVC_DOUBLE, &st), IVC_ERR_TYPE);
    CHECK(st.count == 100, "count %zu", st.count);
    memset(b, 0, sizeof b);
    CHECK_RC(ivc_recv_status(b, 2, peer, 3, IVC_CHAR, &st), IVC_ERR_SIZE);
    CHECK(st.count == 4 && b[0] == 'a' && b[1] == 'b' && b[2] == 0, "truncated inline");
    int64_t part[10];
    CHECK_RC(ivc_recv_status(part, 10, peer, 4, IVC_INT64, &st), IVC_ERR_SIZE);
    CHECK(st.count == 100 && part[9] == 9, "truncated ring message");
    int32_t v = 0;
    OK(ivc_recv(&v, 1, peer, 5, IVC_INT32));
    CHECK(v == 42, "v %d", v);
    OK(ivc_recv_status(d, 0, peer, 6, IVC_DOUBLE, &st));
    CHECK(st.count == 0, "empty");
    OK(ivc_send(b, 1, peer, 9, IVC_BYTE));
  }
  CHECK_RC(ivc_recv(b, 1, rank, 0, IVC_BYTE), IVC_ERR_STATE); /* nothing sent to itself */
  OK(ivc_finalize());
  CHECK_RC(ivc_finalize(), IVC_ERR_STATE);
  return 0;
}

static uint8_t* ring_hdr_of(int src, int dst, int n) {
  uint8_t* shm = ivc_fake_shm(g_group);
  return shm +
         ivc__ring_offset(ivc_fake_shm_size(g_group), (unsigned)n, (unsigned)src, (unsigned)dst);
}

/* a hostile or broken guest scribbles over ring headers and message headers */
static int t_corrupt(int rank, void* arg) {
  (void)arg;
  uint8_t buf[100000];
  memset(buf, 1, sizeof buf);
  /* 1: the sender finds its ring's data_size changed */
  OK(ivc_init("corrupt"));
  if (rank == 1) {
    uint64_t bogus = 1ull << 50;
    memcpy(ring_hdr_of(0, 1, 2) + IVC_RING_OFF_DATA_SIZE, &bogus, 8);
    OK(ivc_send(buf, 1, 0, 1, IVC_BYTE));
    OK(ivc_recv(buf, 1, 0, 2, IVC_BYTE));
  } else {
    OK(ivc_recv(buf, 1, 1, 1, IVC_BYTE));
    CHECK_RC(ivc_send(buf, sizeof buf, 1, 0, IVC_BYTE), IVC_ERR_CORRUPT);
    CHECK_RC(ivc_send(buf, sizeof buf, 1, 0, IVC_BYTE), IVC_ERR_CORRUPT); /* sticky */
    OK(ivc_send(buf, 1, 1, 2, IVC_BYTE)); /* the mailbox still works */
  }
  OK(ivc_finalize());
  /* 2: a message header overwritten after its announce */
  OK(ivc_init("corrupt"));
  if (rank == 1) {
    OK(ivc_recv(buf, 1, 0, 9, IVC_BYTE)); /* rank 0 is out of the library from now on */
    OK(ivc_send(buf, 5000, 0, 1, IVC_BYTE));
    uint8_t* data = ring_hdr_of(1, 0, 2) + IVC_RING_HDR_SIZE;
    data[0] ^= 0xff; /* the first record's magic */
    OK(ivc_send(buf, 1, 0, 2, IVC_BYTE));
    OK(ivc_recv(buf, 1, 0, 3, IVC_BYTE));
  } else {
    OK(ivc_send(buf, 1, 1, 9, IVC_BYTE));
    sleep_ms(100); /* the announce waits in the mailbox while the header is broken */
    CHECK_RC(ivc_recv(buf, 5000, 1, 1, IVC_BYTE), IVC_ERR_CORRUPT);
    CHECK_RC(ivc_recv(buf, 1, 1, 2, IVC_BYTE), IVC_OK); /* inline, queued before */
    CHECK_RC(ivc_recv(buf, 1, IVC_ANY_SOURCE, 5, IVC_BYTE), IVC_ERR_CORRUPT);
    OK(ivc_send(buf, 1, 1, 3, IVC_BYTE));
  }
  OK(ivc_finalize());
  /* 3: head moved far beyond the tail by someone */
  OK(ivc_init("corrupt"));
  if (rank == 1) {
    OK(ivc_recv(buf, 1, 0, 9, IVC_BYTE));
    OK(ivc_send(buf, 70000, 0, 1, IVC_BYTE));
    uint64_t head = 1ull << 40;
    memcpy(ring_hdr_of(1, 0, 2) + IVC_RING_OFF_HEAD, &head, 8);
    OK(ivc_recv(buf, 1, 0, 3, IVC_BYTE));
  } else {
    OK(ivc_send(buf, 1, 1, 9, IVC_BYTE));
    sleep_ms(100);
    CHECK_RC(ivc_recv(buf, 70000, 1, 1, IVC_BYTE), IVC_ERR_CORRUPT);
    OK(ivc_send(buf, 1, 1, 3, IVC_BYTE));
  }
  OK(ivc_finalize());
  /* 4: and after all that, a clean session works */
  OK(ivc_init("corrupt"));
  int peer = 1 - rank;
  pat_fill(buf, sizeof buf, 5 + (uint64_t)rank);
  OK(ivc_send(buf, sizeof buf, peer, 1, IVC_BYTE));
  OK(ivc_recv(buf, sizeof buf, peer, 1, IVC_BYTE));
  CHECK(pat_check(buf, sizeof buf, 5 + (uint64_t)peer) < 0, "clean session");
  OK(ivc_finalize());
  return 0;
}

/* the peer is killed (SIGKILL; the parent clears its MEMBERS bit) while rank `survivor`
 * sends or receives big messages */
struct dead_arg {
  int sender_dies;
};

static int t_dead(int rank, void* arg) {
  struct dead_arg* a = arg;
  OK(ivc_init("dead"));
  size_t len = 64 * MiB;
  uint8_t* buf = xmalloc(len);
  memset(buf, 3, len);
  int victim = a->sender_dies ? 0 : 1;
  if (rank == victim) { /* runs until killed */
    for (;;) {
      if (rank == 0) {
        OK(ivc_send(buf, len, 1, 0, IVC_BYTE));
      } else {
        OK(ivc_recv(buf, len, 0, 0, IVC_BYTE));
      }
    }
  }
  double t0 = now_s();
  for (int i = 0;; i++) {
    int rc = rank == 0 ? ivc_send(buf, len, 1, 0, IVC_BYTE) : ivc_recv(buf, len, 0, 0, IVC_BYTE);
    if (rc == IVC_ERR_PEER_DEAD) {
      note("peer dead noticed after %d messages, %.2f s", i, now_s() - t0);
      break;
    }
    OK(rc);
  }
  /* everything with it fails now, nothing hangs */
  CHECK_RC(ivc_send(buf, 1, victim, 0, IVC_BYTE), IVC_ERR_PEER_DEAD);
  CHECK_RC(ivc_send(buf, 100, victim, 0, IVC_BYTE), IVC_ERR_PEER_DEAD);
  CHECK_RC(ivc_recv(buf, 1, victim, 0, IVC_BYTE), IVC_ERR_PEER_DEAD);
  CHECK_RC(ivc_recv(buf, 1, IVC_ANY_SOURCE, IVC_ANY_TAG, IVC_BYTE), IVC_ERR_PEER_DEAD);
  OK(ivc_finalize());
  free(buf);
  return 0;
}

/* waitpeer: rank 1 blocks in a receive from rank 0, which exits (its VM is gone) or
 * finalizes (and lives on) without sending; messages sent before are still delivered */
struct wait_arg {
  int finalize;
};

static int t_waitpeer(int rank, void* arg) {
  struct wait_arg* a = arg;
  OK(ivc_init("waitpeer"));
  char c = 'x';
  if (rank == 0) {
    uint8_t big[9000];
    pat_fill(big, sizeof big, 77);
    OK(ivc_send(&c, 1, 1, 1, IVC_BYTE));
    OK(ivc_send(big, sizeof big, 1, 2, IVC_BYTE));
    sleep_ms(200);
    if (a->finalize) {
      OK(ivc_finalize());
      sleep_ms(1500); /* still a member */
    }
    _exit(0); /* no finalize: the VM just goes away */
  }
  uint8_t big[9000];
  double t0 = now_s();
  CHECK_RC(ivc_recv(&c, 1, 0, 0, IVC_BYTE), IVC_ERR_PEER_DEAD); /* tag 0 never comes */
  note("waitpeer returned after %.2f s", now_s() - t0);
  CHECK(now_s() - t0 < 1.4 || !a->finalize, "BYE not seen");
  OK(ivc_recv(&c, 1, 0, 1, IVC_BYTE)); /* sent before it went */
  OK(ivc_recv(big, sizeof big, 0, 2, IVC_BYTE));
  CHECK(c == 'x' && pat_check(big, sizeof big, 77) < 0, "messages of the dead peer");
  CHECK_RC(ivc_recv(&c, 1, 0, 1, IVC_BYTE), IVC_ERR_PEER_DEAD);
  OK(ivc_finalize());
  return 0;
}

/* a group of one: messages to itself bigger than the ring (1 MiB of shared memory) */
static int t_self(int rank, void* arg) {
  (void)arg;
  int n;
  OK(ivc_init("self"));
  OK(ivc_comm_size(&n));
  CHECK(n == 1 && rank == 0, "size %d", n);
  size_t len = 5 * MiB;
  uint8_t* a = xmalloc(len);
  uint8_t* b = xmalloc(len);
  for (int i = 0; i < 3; i++) {
    pat_fill(a, len - (size_t)i, (uint64_t)i);
    OK(ivc_send(a, len - (size_t)i, 0, i, IVC_BYTE));
  }
  for (int i = 2; i >= 0; i--) {
    OK(ivc_recv(b, len, 0, i, IVC_BYTE));
    CHECK(pat_check(b, len - (size_t)i, (uint64_t)i) < 0, "self %d", i);
  }
  CHECK_RC(ivc_recv(b, 1, IVC_ANY_SOURCE, 0, IVC_BYTE), IVC_ERR_PEER_DEAD); /* nobody else */
  OK(ivc_finalize());
  free(a);
  free(b);
  return 0;
}

/* EXPECTED: rank 2 joins late; init waits for it. No EXPECTED: the members present. */
static int t_members(int rank, void* arg) {
  int want = *(int*)arg, n;
  double t0 = now_s();
  OK(ivc_init("members"));
  OK(ivc_comm_size(&n));
  CHECK(n == want, "size %d, want %d", n, want);
  note("init took %.2f s", now_s() - t0);
  int x = rank;
  for (int d = 0; d < n; d++) OK(ivc_send(&x, 1, d, 0, IVC_INT32));
  int sum = 0;
  for (int s = 0; s < n; s++) {
    OK(ivc_recv(&x, 1, s, 0, IVC_INT32));
    sum += x;
  }
  CHECK(sum == n * (n - 1) / 2, "sum %d", sum);
  OK(ivc_finalize());
  return 0;
}

/* consecutive sessions (like programs run one after the other in each VM) that overlap:
 * one side starts its next session while the other is still in its previous one, and leaves
 * messages behind that the next session must not see */
static int t_sessions(int rank, void* arg) {
  (void)arg;
  uint8_t buf[20000];
  for (int s = 0; s < 30; s++) {
    OK(ivc_init("sessions"));
    int peer = 1 - rank;
    uint64_t seed = (uint64_t)s * 16 + (uint64_t)rank;
    pat_fill(buf, sizeof buf, seed);
    OK(ivc_send(buf, sizeof buf, peer, 1, IVC_BYTE));
    OK(ivc_send(&s, 1, peer, 2, IVC_INT32));
    /* never received: left over for the next session to drop (or, when the peer is done with
     * this session already, refused) */
    int rc = ivc_send(buf, 100 + (size_t)s, peer, 3, IVC_BYTE);
    CHECK(rc == IVC_OK || rc == IVC_ERR_PEER_DEAD, "left-over send: %d", rc);
    rc = ivc_send(&s, 1, peer, 4, IVC_INT32);
    CHECK(rc == IVC_OK || rc == IVC_ERR_PEER_DEAD, "left-over send: %d", rc);
    int got = -1;
    OK(ivc_recv(&got, 1, peer, 2, IVC_INT32));
    CHECK(got == s, "session %d got %d", s, got);
    OK(ivc_recv(buf, sizeof buf, peer, 1, IVC_BYTE));
    CHECK(pat_check(buf, sizeof buf, (uint64_t)s * 16 + (uint64_t)peer) < 0, "session %d", s);
    if ((s + rank) % 3 == 0) sleep_ms(s % 2 ? 5 : 30); /* one side lags, then the other */
    OK(ivc_finalize());
  }
  return 0;
}

/* thousands of mailbox messages each way before anybody receives (inboxes full) */
static int t_flood(int rank, void* arg) {
  (void)arg;
  OK(ivc_init("flood"));
  int peer = 1 - rank;
  enum { N = 5000 };
  for (int i = 0; i < N; i++) {
    int32_t v = i * 2 + rank;
    OK(ivc_send(&v, 1, peer, i % 3, IVC_INT32));
  }
  for (int tag = 2; tag >= 0; tag--) {
    for (int i = tag; i < N; i += 3) {
      int32_t v;
      OK(ivc_recv(&v, 1, peer, tag, IVC_INT32));
      CHECK(v == i * 2 + peer, "flood %d: %d", i, v);
    }
  }
  OK(ivc_finalize());
  return 0;
}

/* ping-pong of 1-byte messages (mailbox latency of the fake, for information) */
static int t_ping(int rank, void* arg) {
  (void)arg;
  OK(ivc_init("ping"));
  char c = 0;
  int rounds = 20000;
  double t0 = now_s();
  for (int i = 0; i < rounds; i++) {
    if (rank == 0) {
      OK(ivc_send(&c, 1, 1, 0, IVC_BYTE));
      OK(ivc_recv(&c, 1, 1, 0, IVC_BYTE));
    } else {
      OK(ivc_recv(&c, 1, 0, 0, IVC_BYTE));
      OK(ivc_send(&c, 1, 0, 0, IVC_BYTE));
    }
  }
  if (rank == 0) note("one-way latency %.2f us", (now_s() - t0) / rounds / 2 * 1e6);
  OK(ivc_finalize());
  return 0;
}

/* ------------------------------------------------------------------------------------------ */

static int run_test(const char* name) {
  struct group_opts o;
  if (!strcmp(name, "pair")) {
    default_opts(&o, 2);
    return run_group("pair", t_pair, NULL, &o);
  }
  if (!strcmp(name, "pair-nospin")) { /* every wait sleeps: doorbells and flags */
    default_opts(&o, 2);
    o.spin_us = 0;
    return run_group("pair", t_pair, NULL, &o);
  }
  if (!strcmp(name, "pair-smallshm")) { /* 64 KiB rings: many wraps */
    default_opts(&o, 2);
    o.shm = 4 * 68 * 1024;
    return run_group("pair", t_pair, NULL, &o);
  }
  if (!strcmp(name, "three")) {
    default_opts(&o, 3);
    return run_group("three", t_three, NULL, &o);
  }
  if (!strcmp(name, "three-nospin")) {
    default_opts(&o, 3);
    o.spin_us = 0;
    o.shm = 9 * 260 * 1024; /* 256 KiB rings */
    return run_group("three", t_three, NULL, &o);
  }
  if (!strcmp(name, "errors")) {
    default_opts(&o, 2);
    return run_group("errors", t_errors, NULL, &o);
  }
  if (!strcmp(name, "corrupt")) {
    default_opts(&o, 2);
    return run_group("corrupt", t_corrupt, NULL, &o);
  }
  if (!strcmp(name, "dead-sender")) {
    static struct dead_arg a = {1};
    default_opts(&o, 2);
    o.kill_rank = 0;
    o.kill_after_ms = 400;
    return run_group("dead", t_dead, &a, &o);
  }
  if (!strcmp(name, "dead-receiver")) {
    static struct dead_arg a = {0};
    default_opts(&o, 2);
    o.kill_rank = 1;
    o.kill_after_ms = 400;
    return run_group("dead", t_dead, &a, &o);
  }
  if (!strcmp(name, "waitpeer-exit")) {
    static struct wait_arg a = {0};
    default_opts(&o, 2);
    return run_group("waitpeer", t_waitpeer, &a, &o);
  }
  if (!strcmp(name, "waitpeer-finalize")) {
    static struct wait_arg a = {1};
    default_opts(&o, 2);
    return run_group("waitpeer", t_waitpeer, &a, &o);
  }
  if (!strcmp(name, "self")) {
    default_opts(&o, 1);
    o.shm = MiB;
    return run_group("self", t_self, NULL, &o);
  }
  if (!strcmp(name, "expected")) {
    static int want = 3;
    default_opts(&o, 3);
    o.join_delay_ms[2] = 400;
    o.join_delay_ms[1] = 100;
    return run_group("members", t_members, &want, &o);
  }
  if (!strcmp(name, "no-expected")) {
    static int want = 3;
    default_opts(&o, 3);
    o.expected = 0;
    o.prejoin = 1;
    return run_group("members", t_members, &want, &o);
  }
  if (!strcmp(name, "sessions")) {
    default_opts(&o, 2);
    return run_group("sessions", t_sessions, NULL, &o);
  }
  if (!strcmp(name, "flood")) {
    default_opts(&o, 2);
    return run_group("flood", t_flood, NULL, &o);
  }
  if (!strcmp(name, "ping")) {
    default_opts(&o, 2);
    return run_group("ping", t_ping, NULL, &o);
  }
  fprintf(stderr, "unknown test %s\n", name);
  return 2;
}

/* run mode: the guest programs on fake VMs */
static char** run_cmd[8];
static int run_argc[8];

static int run_rank(int rank, void* arg) {
  (void)arg;
  char** argv = run_cmd[rank];
  int argc = run_argc[rank];
  if (!strcmp(argv[0], "ivc-bench")) return ivc_bench_main(argc, argv);
  return ivc_test_main(argc, argv);
}

static int run_mode(int argc, char** argv) {
  struct group_opts o;
  int n = argc > 0 ? atoi(argv[0]) : 0, i = 1;
  if (n < 1 || n > 8) {
    fprintf(stderr, "run: N must be 1..8\n");
    return 2;
  }
  default_opts(&o, n);
  o.timeout_s = 600;
  for (; i < argc && strcmp(argv[i], "--"); i++) {
    if (!strncmp(argv[i], "expected=", 9)) {
      o.expected = (uint32_t)atoi(argv[i] + 9);
      if (!o.expected) o.prejoin = 1;
    } else if (!strncmp(argv[i], "shm=", 4)) {
      o.shm = strtoull(argv[i] + 4, NULL, 0);
    } else if (sscanf(argv[i], "kill=%d@%d", &o.kill_rank, &o.kill_after_ms) == 2) {
    } else {
      fprintf(stderr, "run: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  int ncmd = 0;
  while (i < argc && ncmd < 8) { /* at "--" */
    argv[i] = NULL;
    run_cmd[ncmd] = argv + i + 1;
    int k = i + 1;
    while (k < argc && strcmp(argv[k], "--")) k++;
    run_argc[ncmd] = k - i - 1;
    if (run_argc[ncmd] == 0) break;
    ncmd++;
    i = k;
  }
  if (i < argc) argv[i] = NULL; /* terminates the last command */
  if (ncmd == 0) {
    fprintf(stderr, "run: no command\n");
    return 2;
  }
  for (int r = ncmd; r < n; r++) {
    run_cmd[r] = run_cmd[ncmd - 1];
    run_argc[r] = run_argc[ncmd - 1];
  }
  return run_group("g", run_rank, NULL, &o) ? 1 : 0;
}

static const char* all_tests[] = {
    "errors",        "pair",          "pair-nospin",       "pair-smallshm",
    "three",         "three-nospin",  "corrupt",           "dead-sender",
    "dead-receiver", "waitpeer-exit", "waitpeer-finalize", "self",
    "expected",      "no-expected",   "sessions",          "flood",
    "ping"};

int main(int argc, char** argv) {
  int first = 1;
  if (argc > 1 && !strcmp(argv[1], "-v")) {
    g_verbose = 1;
    first = 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > first && !strcmp(argv[first], "run"))
    return run_mode(argc - first - 1, argv + first + 1);
  const char** tests = all_tests;
  int ntests = (int)(sizeof all_tests / sizeof all_tests[0]);
  if (argc > first) {
    tests = (const char**)argv + first;
    ntests = argc - first;
  }
  int failed = 0;
  for (int i = 0; i < ntests; i++) {
    double t0 = now_s();
    int r = run_test(tests[i]);
    printf("%s %s (%.2f s)\n", r ? "FAIL" : "ok  ", tests[i], now_s() - t0);
    if (r) failed++;
  }
  printf("%d of %d tests failed\n", failed, ntests);
  return failed ? 1 : 0;
}
