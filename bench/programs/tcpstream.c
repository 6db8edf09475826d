// Guest workload for the virtio benchmarks (bench/virtio.py): one TCP stream between two
// guests, timed with the guests' clocks, the data checked on arrival.
//
//   tcpstream recv PORT            accept one connection, read to EOF, close
//   tcpstream send IP PORT MIB     connect (retrying for up to 120 s while the receiver
//                                  boots), send MIB MiB, shut down the write side and wait
//                                  for the receiver to close
//
// Every 4 KiB-aligned stream offset o carries the 8-byte stamp (o / 4096) * K ^ 0x5a5a...,
// the rest of the data a fixed pattern; the receiver checks every stamp that arrives whole
// in one read (bad= counts the wrong ones; checked= how many were looked at).
// Prints one line each:
//   tcpstream recv bytes=N seconds=S mib_s=X checked=C bad=B     (first byte to EOF)
//   tcpstream send bytes=N seconds=S mib_s=X connect_tries=T    (connect to the peer's close)
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

static uint64_t stamp(uint64_t offset) {
  return (offset / STAMP_EVERY) * 0x9e3779b97f4a7c15ull ^ 0x5a5a5a5a5a5a5a5aull;
}

static int do_recv(int port) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(ls, (struct sockaddr*)&a, sizeof a) != 0 || listen(ls, 1) != 0) {
    fprintf(stderr, "tcpstream: bind/listen on %d: %s\n", port, strerror(errno));
    return 1;
  }
  printf("tcpstream listening on %d\n", port);
  fflush(stdout);
  int s = accept(ls, NULL, NULL);
  if (s < 0) {
    fprintf(stderr, "tcpstream: accept: %s\n", strerror(errno));
    return 1;
  }
  static unsigned char buf[4 * CHUNK];
  uint64_t total = 0, checked = 0, bad = 0, t0 = 0;
  for (;;) {
    ssize_t n = read(s, buf, sizeof buf);
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
  close(ls);
  printf("tcpstream recv bytes=%" PRIu64 " seconds=%.6f mib_s=%.2f checked=%" PRIu64
         " bad=%" PRIu64 "\n",
         total, secs, (double)total / secs / 1048576.0, checked, bad);
  return bad ? 3 : 0;
}

static int do_send(const char* ip, int port, uint64_t mib) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    fprintf(stderr, "tcpstream: bad address %s\n", ip);
    return 2;
  }
  int s = -1, tries = 0;
  const uint64_t deadline = now_ns() + 120ull * 1000000000ull;
  for (;;) {
    s = socket(AF_INET, SOCK_STREAM, 0);
    tries++;
    if (connect(s, (struct sockaddr*)&a, sizeof a) == 0) break;
    const int e = errno;
    close(s);
    if (now_ns() > deadline) {
      fprintf(stderr, "tcpstream: connect to %s:%d: %s (%d tries)\n", ip, port, strerror(e),
              tries);
      return 1;
    }
    usleep(100 * 1000);
  }
  static unsigned char buf[CHUNK];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(i * 7 + 1);
  const uint64_t total = mib * 1024 * 1024;
  const uint64_t t0 = now_ns();
  for (uint64_t off = 0; off < total; off += CHUNK) {
    for (uint64_t o = 0; o < CHUNK; o += STAMP_EVERY) {
      const uint64_t w = stamp(off + o);
      memcpy(buf + o, &w, 8);
    }
    size_t done = 0;
    while (done < CHUNK) {
      ssize_t n = write(s, buf + done, CHUNK - done);
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
  printf("tcpstream send bytes=%" PRIu64 " seconds=%.6f mib_s=%.2f connect_tries=%d\n", total,
         secs, (double)total / secs / 1048576.0, tries);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "recv") == 0) return do_recv(atoi(argv[2]));
  if (argc == 5 && strcmp(argv[1], "send") == 0)
    return do_send(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 10));
  fprintf(stderr, "usage: tcpstream recv PORT | tcpstream send IP PORT MIB\n");
  return 2;
}
