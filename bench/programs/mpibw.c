// Host reference for the inter-VM communication benchmark (bench/ivc.py): MPICH between two
// processes on the host, with the same message pattern as the guests' `ivc-bench`.
//
//   mpiexec -n 2 mpibw bw TOTAL_BYTES BUF_SIZE...
//       for each BUF_SIZE: rank 0 sends TOTAL_BYTES to rank 1 in messages of BUF_SIZE bytes
//       (MPI_Send / MPI_Recv, one message at a time), then rank 1 answers with a 1-byte ack.
//       Before the timed part, 2 untimed messages of BUF_SIZE and an MPI_Barrier. Rank 1 (the
//       receiver) times from the barrier to its last MPI_Recv; rank 0 from the barrier to the
//       ack. Every 4 KiB-aligned offset of the stream carries an 8-byte stamp that rank 1
//       checks. Prints, per BUF_SIZE:
//         mpibw: buf=B bytes=N seconds=S MiB/s=X checked=C bad=E        (rank 1, receiver)
//         mpibw: sender buf=B bytes=N seconds=S MiB/s=X                 (rank 0)
//   mpiexec -n 2 mpibw lat N
//       1-byte ping-pong, N round trips after 100 untimed ones; rank 0 prints
//         mpibw: lat n=N rtt_us=R oneway_us=O                 (one way = round trip / 2)
#include <mpi.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAMP_EVERY 4096
#define TAG_DATA 1
#define TAG_ACK 2
#define TAG_PING 3

static uint64_t stamp(uint64_t offset) {
  return (offset / STAMP_EVERY) * 0x9e3779b97f4a7c15ull ^ 0x5a5a5a5a5a5a5a5aull;
}

static uint64_t parse_size(const char* s) {
  char* end;
  uint64_t v = strtoull(s, &end, 10);
  switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
  }
  if (*end != '\0' || v == 0) {
    fprintf(stderr, "mpibw: bad size '%s'\n", s);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  return v;
}

static int bandwidth(int rank, uint64_t total, uint64_t buf_size) {
  if (buf_size % STAMP_EVERY != 0 || total % buf_size != 0 || buf_size > (uint64_t)INT32_MAX) {
    if (rank == 0)
      fprintf(stderr, "mpibw: BUF_SIZE %" PRIu64 " must be a multiple of %d dividing %" PRIu64
              "\n", buf_size, STAMP_EVERY, total);
    return 2;
  }
  unsigned char* buf = malloc(buf_size);
  if (!buf) {
    fprintf(stderr, "mpibw: out of memory for %" PRIu64 " bytes\n", buf_size);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  for (uint64_t i = 0; i < buf_size; i++) buf[i] = (unsigned char)(i * 7 + 1);
  const int count = (int)buf_size;
  char ack = 0;
  // Warm-up: connection set-up, registration caches, first-touch of the buffers.
  for (int i = 0; i < 2; i++) {
    if (rank == 0)
      MPI_Send(buf, count, MPI_BYTE, 1, TAG_DATA, MPI_COMM_WORLD);
    else
      MPI_Recv(buf, count, MPI_BYTE, 0, TAG_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const double t0 = MPI_Wtime();
  uint64_t checked = 0, bad = 0;
  if (rank == 0) {
    for (uint64_t off = 0; off < total; off += buf_size) {
      for (uint64_t o = 0; o < buf_size; o += STAMP_EVERY) {
        const uint64_t w = stamp(off + o);
        memcpy(buf + o, &w, 8);
      }
      MPI_Send(buf, count, MPI_BYTE, 1, TAG_DATA, MPI_COMM_WORLD);
    }
    MPI_Recv(&ack, 1, MPI_BYTE, 1, TAG_ACK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    const double secs = MPI_Wtime() - t0;
    printf("mpibw: sender buf=%" PRIu64 " bytes=%" PRIu64 " seconds=%.6f MiB/s=%.2f\n", buf_size,
           total, secs, (double)total / secs / 1048576.0);
  } else {
    for (uint64_t off = 0; off < total; off += buf_size) {
      MPI_Status st;
      MPI_Recv(buf, count, MPI_BYTE, 0, TAG_DATA, MPI_COMM_WORLD, &st);
      int got = 0;
      MPI_Get_count(&st, MPI_BYTE, &got);
      if ((uint64_t)got != buf_size) bad++;
      for (uint64_t o = 0; o < buf_size; o += STAMP_EVERY) {
        uint64_t w;
        memcpy(&w, buf + o, 8);
        checked++;
        if (w != stamp(off + o)) {
          if (bad < 5) fprintf(stderr, "mpibw: wrong data at offset %" PRIu64 "\n", off + o);
          bad++;
        }
      }
    }
    const double secs = MPI_Wtime() - t0;
    MPI_Send(&ack, 1, MPI_BYTE, 0, TAG_ACK, MPI_COMM_WORLD);
    printf("mpibw: buf=%" PRIu64 " bytes=%" PRIu64 " seconds=%.6f MiB/s=%.2f checked=%" PRIu64
           " bad=%" PRIu64 "\n",
           buf_size, total, secs, (double)total / secs / 1048576.0, checked, bad);
  }
  fflush(stdout);
  free(buf);
  return bad ? 3 : 0;
}

static int latency(int rank, long n) {
  char b = 0;
  double t0 = 0;
  for (long i = -100; i < n; i++) {
    if (i == 0) t0 = MPI_Wtime();
    if (rank == 0) {
      MPI_Send(&b, 1, MPI_BYTE, 1, TAG_PING, MPI_COMM_WORLD);
      MPI_Recv(&b, 1, MPI_BYTE, 1, TAG_PING, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(&b, 1, MPI_BYTE, 0, TAG_PING, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(&b, 1, MPI_BYTE, 0, TAG_PING, MPI_COMM_WORLD);
    }
  }
  if (rank == 0) {
    const double rtt_us = (MPI_Wtime() - t0) / (double)n * 1e6;
    printf("mpibw: lat n=%ld rtt_us=%.3f oneway_us=%.3f\n", n, rtt_us, rtt_us / 2);
    fflush(stdout);
  }
  return 0;
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int rc = 0;
  if (size != 2) {
    if (rank == 0) fprintf(stderr, "mpibw: run with mpiexec -n 2 (got %d processes)\n", size);
    rc = 2;
  } else if (argc >= 4 && strcmp(argv[1], "bw") == 0) {
    const uint64_t total = parse_size(argv[2]);
    for (int i = 3; i < argc && rc == 0; i++) rc = bandwidth(rank, total, parse_size(argv[i]));
  } else if (argc == 3 && strcmp(argv[1], "lat") == 0 && atol(argv[2]) > 0) {
    rc = latency(rank, atol(argv[2]));
  } else {
    if (rank == 0)
      fprintf(stderr, "usage: mpiexec -n 2 mpibw bw TOTAL_BYTES BUF_SIZE... | "
              "mpiexec -n 2 mpibw lat N\n");
    rc = 2;
  }
  if (rc != 0) MPI_Abort(MPI_COMM_WORLD, rc);
  MPI_Finalize();
  return 0;
}
