// Guest workload for the virtio and inter-VM benchmarks (bench/virtio.py, bench/ivc.py): one
// TCP stream between two guests, timed with the guests' clocks, the data checked on arrival;
// and a 1-byte ping-pong.
//
//   tcpstream recv PORT [BUF]      accept one connection, read to EOF in reads of BUF bytes
//                                  (default 256 KiB), close
//   tcpstream send IP PORT MIB [BUF]
//                                  connect (retrying for up to 120 s while the receiver
//                                  boots), send MIB MiB in writes of BUF bytes (default
//                                  64 KiB; a multiple of 4 KiB dividing MIB MiB), shut down
//                                  the write side and wait for the receiver to close
//   tcpstream pong PORT            accept one connection, echo every byte until EOF
//   tcpstream ping IP PORT N       connect (retrying as send does), 100 untimed then N timed
//                                  round trips of 1 byte (TCP_NODELAY on both sides)
//
// Every 4 KiB-aligned stream offset o carries the 8-byte stamp (o / 4096) * K ^ 0x5a5a...,
// the rest of the data a fixed pattern; the receiver checks every stamp that arrives whole
// in one read (bad= counts the wrong ones; checked= how many were looked at).
// Prints one line each:
//   tcpstream recv bytes=N seconds=S mib_s=X checked=C bad=B     (first byte to EOF)
//   tcpstream send bytes=N seconds=S mib_s=X connect_tries=T    (connect to the peer's close)
//   tcpstream ping n=N rtt_us=R oneway_us=O connect_tries=T      (one way = round trip / 2)
// (recv and send lines end with buf=B, the read or write size).
#include "guest_util.h"  // first: it defines _GNU_SOURCE (O_DIRECT)

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define STAMP_EVERY 4096
#define MAX_BUF (256u * 1024 * 1024)

static uint64_t stamp(uint64_t offset) {
  return (offset / STAMP_EVERY) * 0x9e3779b97f4a7c15ull ^ 0x5a5a5a5a5a5a5a5aull;
}

static void* alloc_buf(size_t size) {
  void* p = malloc(size);
  if (!p) {
    fprintf(stderr, "tcpstream: out of memory for a %zu-byte buffer\n", size);
    exit(1);
  }
  return p;
}

// Listens on port and accepts one connection; returns the socket or -1. Closes the listener.
static int accept_one(int port) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(ls, (struct sockaddr*)&a, sizeof a) != 0 || listen(ls, 1) != 0) {
    fprintf(stderr, "tcpstream: bind/listen on %d: %s\n", port, strerror(errno));
    return -1;
  }
  printf("tcpstream listening on %d\n", port);
  fflush(stdout);
  int s = accept(ls, NULL, NULL);
  if (s < 0) fprintf(stderr, "tcpstream: accept: %s\n", strerror(errno));
  close(ls);
  return s;
}

// Connects to ip:port, retrying every 100 ms for up to 120 s; returns the socket or -1.
static int connect_retrying(const char* ip, int port, int* tries) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    fprintf(stderr, "tcpstream: bad address %s\n", ip);
    return -1;
  }
  const uint64_t deadline = now_ns() + 120ull * 1000000000ull;
  *tries = 0;
  for (;;) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ++*tries;
    if (connect(s, (struct sockaddr*)&a, sizeof a) == 0) return s;
    const int e = errno;
    close(s);
    if (now_ns() > deadline) {
      fprintf(stderr, "tcpstream: connect to %s:%d: %s (%d tries)\n", ip, port, strerror(e),
              *tries);
      return -1;
    }
    usleep(100 * 1000);
  }
}

static int do_recv(int port, size_t bufsize) {
  int s = accept_one(port);
  if (s < 0) return 1;
  unsigned char* buf = alloc_buf(bufsize);
  uint64_t total = 0, checked = 0, bad = 0, t0 = 0;
  for (;;) {
    ssize_t n = read(s, buf, bufsize);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "tcpstream: read: %s\n", strerror(errno));
      return 1;
    }
    if (n == 0) break;
    if (total == 0) t0 = now_ns();
    uint64_t o = (total + STAMP_EVERY - 1) / STAMP_EVERY * STAMP_EVERY;
    for (; o + 8 <= total + (uint64_t)n; o += STAMP_EVERY) {
      uint64_t w;
      memcpy(&w, buf + (o - total), 8);
      checked++;
      if (w != stamp(o)) {
        if (bad < 5) fprintf(stderr, "tcpstream: wrong data at stream offset %" PRIu64 "\n", o);
        bad++;
      }
    }
    total += (uint64_t)n;
  }
  const double secs = (double)(now_ns() - t0) / 1e9;
  close(s);
  free(buf);
  printf("tcpstream recv bytes=%" PRIu64 " seconds=%.6f mib_s=%.2f checked=%" PRIu64
         " bad=%" PRIu64 " buf=%zu\n",
         total, secs, (double)total / secs / 1048576.0, checked, bad, bufsize);
  return bad ? 3 : 0;
}

static int do_send(const char* ip, int port, uint64_t mib, size_t bufsize) {
  const uint64_t total = mib * 1024 * 1024;
  if (bufsize % STAMP_EVERY != 0 || total % bufsize != 0) {
    fprintf(stderr, "tcpstream: BUF %zu must be a multiple of %d dividing %" PRIu64 "\n",
            bufsize, STAMP_EVERY, total);
    return 2;
  }
  int tries = 0;
  int s = connect_retrying(ip, port, &tries);
  if (s < 0) return 1;
  unsigned char* buf = alloc_buf(bufsize);
  for (size_t i = 0; i < bufsize; i++) buf[i] = (unsigned char)(i * 7 + 1);
  const uint64_t t0 = now_ns();
  for (uint64_t off = 0; off < total; off += bufsize) {
    for (uint64_t o = 0; o < bufsize; o += STAMP_EVERY) {
      const uint64_t w = stamp(off + o);
      memcpy(buf + o, &w, 8);
    }
    size_t done = 0;
    while (done < bufsize) {
      ssize_t n = write(s, buf + done, bufsize - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        fprintf(stderr, "tcpstream: write: %s\n", strerror(errno));
        return 1;
      }
      done += (size_t)n;
    }
  }
  shutdown(s, SHUT_WR);
  char c;
  while (read(s, &c, 1) > 0) {
  }
  const double secs = (double)(now_ns() - t0) / 1e9;
  close(s);
  free(buf);
  printf("tcpstream send bytes=%" PRIu64 " seconds=%.6f mib_s=%.2f connect_tries=%d buf=%zu\n",
         total, secs, (double)total / secs / 1048576.0, tries, bufsize);
  return 0;
}

static void nodelay(int s) {
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// Reads or writes exactly one byte; 0 on success, -1 on error or EOF.
static int xfer1(int s, char* c, int writing) {
  for (;;) {
    ssize_t n = writing ? write(s, c, 1) : read(s, c, 1);
    if (n == 1) return 0;
    if (n < 0 && errno == EINTR) continue;
    return -1;
  }
}

static int do_pong(int port) {
  int s = accept_one(port);
  if (s < 0) return 1;
  nodelay(s);
  char c;
  uint64_t n = 0;
  while (xfer1(s, &c, 0) == 0) {
    if (xfer1(s, &c, 1) != 0) {
      fprintf(stderr, "tcpstream: pong write: %s\n", strerror(errno));
      return 1;
    }
    n++;
  }
  close(s);
  printf("tcpstream pong round_trips=%" PRIu64 "\n", n);
  return 0;
}

static int do_ping(const char* ip, int port, long n) {
  int tries = 0;
  int s = connect_retrying(ip, port, &tries);
  if (s < 0) return 1;
  nodelay(s);
  char c = 'x';
  uint64_t t0 = 0;
  for (long i = -100; i < n; i++) {
    if (i == 0) t0 = now_ns();
    if (xfer1(s, &c, 1) != 0 || xfer1(s, &c, 0) != 0) {
      fprintf(stderr, "tcpstream: ping round trip %ld: %s\n", i, strerror(errno));
      return 1;
    }
  }
  const double rtt_us = (double)(now_ns() - t0) / 1e3 / (double)n;
  shutdown(s, SHUT_WR);
  while (read(s, &c, 1) > 0) {
  }
  close(s);
  printf("tcpstream ping n=%ld rtt_us=%.3f oneway_us=%.3f connect_tries=%d\n", n, rtt_us,
         rtt_us / 2, tries);
  return 0;
}

static size_t buf_arg(const char* s) {
  const unsigned long long v = strtoull(s, NULL, 10);
  if (v == 0 || v > MAX_BUF) {
    fprintf(stderr, "tcpstream: bad buffer size %s (1..%u)\n", s, MAX_BUF);
    exit(2);
  }
  return (size_t)v;
}

int main(int argc, char** argv) {
  if ((argc == 3 || argc == 4) && strcmp(argv[1], "recv") == 0)
    return do_recv(atoi(argv[2]), argc == 4 ? buf_arg(argv[3]) : 4 * CHUNK);
  if ((argc == 5 || argc == 6) && strcmp(argv[1], "send") == 0)
    return do_send(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 10),
                   argc == 6 ? buf_arg(argv[5]) : CHUNK);
  if (argc == 3 && strcmp(argv[1], "pong") == 0) return do_pong(atoi(argv[2]));
  if (argc == 5 && strcmp(argv[1], "ping") == 0 && atol(argv[4]) > 0)
    return do_ping(argv[2], atoi(argv[3]), atol(argv[4]));
  fprintf(stderr,
          "usage: tcpstream recv PORT [BUF] | tcpstream send IP PORT MIB [BUF] |\n"
          "       tcpstream pong PORT | tcpstream ping IP PORT N\n");
  return 2;
}
