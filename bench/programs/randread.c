// Guest workload for the virtio benchmarks (bench/virtio.py): random 4 KiB reads from a
// block device, one at a time (queue depth 1), timed with the guest's clock.
//
//   randread DEV OPS RANGE_MIB [SEED]
//
// Reads OPS blocks of 4 KiB at offsets drawn uniformly (splitmix64, SEED) from the first
// RANGE_MIB MiB of DEV, with O_DIRECT (the guest's page cache is bypassed, every read goes to
// the device); if the kernel refuses O_DIRECT, it falls back to buffered reads after
// dropping the page cache and says direct=0. Prints one line:
//   randread ops=N range_mib=R direct=0|1 seconds=S iops=X mean_us=Y check=HEX
// check folds the first 8 bytes of every block read (in order) so that the host can verify
// the data against the image file: check = (check ^ word) * 0x100000001b3 (mod 2^64).
#include "guest_util.h"  // first: it defines _GNU_SOURCE (O_DIRECT)

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK 4096

static uint64_t splitmix64(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: randread DEV OPS RANGE_MIB [SEED]\n");
    return 2;
  }
  const char* dev = argv[1];
  const long ops = atol(argv[2]);
  const uint64_t range_mib = strtoull(argv[3], NULL, 10);
  uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 1;
  const uint64_t blocks = range_mib * (1024 * 1024 / BLOCK);
  if (ops <= 0 || blocks == 0) {
    fprintf(stderr, "randread: bad OPS or RANGE_MIB\n");
    return 2;
  }

  int direct = 1;
  int fd = open(dev, O_RDONLY | O_DIRECT);
  if (fd < 0 && errno == EINVAL) {
    direct = 0;
    FILE* f = fopen("/proc/sys/vm/drop_caches", "w");
    if (f) {
      fputs("3\n", f);
      fclose(f);
    }
    fd = open(dev, O_RDONLY);
  }
  if (fd < 0) {
    fprintf(stderr, "randread: open %s: %s\n", dev, strerror(errno));
    return 1;
  }
  void* buf;
  if (posix_memalign(&buf, BLOCK, BLOCK) != 0) {
    fprintf(stderr, "randread: out of memory\n");
    return 1;
  }

  uint64_t check = 0;
  const uint64_t t0 = now_ns();
  for (long i = 0; i < ops; i++) {
    const uint64_t off = (splitmix64(&seed) % blocks) * BLOCK;
    const ssize_t n = pread(fd, buf, BLOCK, (off_t)off);
    if (n != BLOCK) {
      fprintf(stderr, "randread: pread at %" PRIu64 ": %s\n", off,
              n < 0 ? strerror(errno) : "short read");
      return 1;
    }
    uint64_t word;
    memcpy(&word, buf, sizeof word);
    check = (check ^ word) * 0x100000001b3ull;
  }
  const double secs = (double)(now_ns() - t0) / 1e9;
  printf("randread ops=%ld range_mib=%" PRIu64 " direct=%d seconds=%.6f iops=%.1f mean_us=%.2f "
         "check=%016" PRIx64 "\n",
         ops, range_mib, direct, secs, (double)ops / secs, secs * 1e6 / (double)ops, check);
  close(fd);
  return 0;
}
