// CPU-bound guest workload for comparing dvmm with qemu-system-riscv64 on the same guest.
// Three parts: integer (hashing and a sieve), floating point (n-body style double math and
// a float matrix multiply), and memory-heavy (random pointer chasing and streaming copy
// over a buffer larger than caches). Each part runs on T threads (argv[1], default 1); the
// program prints the wall time of each part measured with the guest's own clock.
// argv[2] (default 1) repeats the integer and float work that many times (each repetition on
// slightly different inputs), so that they run long enough to time under a JIT.
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static volatile uint64_t sink;
static int work = 1;

static void* integer_part(void* arg) {
  (void)arg;
  for (int r = 0; r < work; r++) {
    uint64_t h = 1469598103934665603ull + r;
    for (uint32_t i = 0; i < 6000000; i++) {
      h ^= i;
      h *= 1099511628211ull;
      h ^= h >> 29;
    }
    enum { N = 200000 };
    static __thread unsigned char composite[N];
    unsigned primes = 0;
    for (int rep = 0; rep < 5; rep++) {
      memset(composite, 0, sizeof composite);
      for (unsigned i = 2; i < N; i++) {
        if (composite[i]) continue;
        primes++;
        for (unsigned j = i * 2; j < N; j += i) composite[j] = 1;
      }
    }
    sink = h + primes;
  }
  return NULL;
}

static void* float_part(void* arg) {
  (void)arg;
  for (int r = 0; r < work; r++) {
    double x[64], y[64], vx[64], vy[64];
    for (int i = 0; i < 64; i++) {
      x[i] = cos(i + r);
      y[i] = sin(i + r);
      vx[i] = vy[i] = 0;
    }
    for (int step = 0; step < 60; step++) {
      for (int i = 0; i < 64; i++) {
        double ax = 0, ay = 0;
        for (int j = 0; j < 64; j++) {
          double dx = x[j] - x[i], dy = y[j] - y[i];
          double d2 = dx * dx + dy * dy + 1e-3;
          double inv = 1.0 / (d2 * sqrt(d2));
          ax += dx * inv;
          ay += dy * inv;
        }
        vx[i] += 1e-4 * ax;
        vy[i] += 1e-4 * ay;
      }
      for (int i = 0; i < 64; i++) {
        x[i] += vx[i];
        y[i] += vy[i];
      }
    }
    enum { M = 96 };
    static __thread float a[M][M], b[M][M], c[M][M];
    for (int i = 0; i < M; i++)
      for (int j = 0; j < M; j++) a[i][j] = (float)(i + j + r) / M, b[i][j] = (float)(i - j) / M;
    for (int i = 0; i < M; i++)
      for (int j = 0; j < M; j++) {
        float s = 0;
        for (int k = 0; k < M; k++) s += a[i][k] * b[k][j];
        c[i][j] = s;
      }
    sink = (uint64_t)(x[3] * 1e6) + (uint64_t)c[5][7];
  }
  return NULL;
}

static void* memory_part(void* arg) {
  (void)arg;
  enum { N = 1 << 21 };  // 2 Mi entries of 8 bytes = 16 MiB
  uint64_t* next = malloc(N * sizeof *next);
  for (uint64_t i = 0; i < N; i++) next[i] = i;
  uint64_t s = 88172645463325252ull;
  for (uint64_t i = N - 1; i > 0; i--) {  // a random cyclic permutation (Sattolo)
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    uint64_t j = s % i;
    uint64_t t = next[i];
    next[i] = next[j];
    next[j] = t;
  }
  uint64_t p = 0;
  for (int i = 0; i < 2000000; i++) p = next[p];
  uint64_t* copy = malloc(N * sizeof *copy);
  for (int rep = 0; rep < 4; rep++) memcpy(copy, next, N * sizeof *copy);
  sink = p + copy[N / 2];
  free(copy);
  free(next);
  return NULL;
}

static double run_part(void* (*fn)(void*), int threads) {
  pthread_t t[64];
  double start = now();
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, fn, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  return now() - start;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1 || threads > 64) threads = 1;
  if (argc > 2) work = atoi(argv[2]);
  if (work < 1) work = 1;
  double ti = run_part(integer_part, threads);
  double tf = run_part(float_part, threads);
  double tm = run_part(memory_part, threads);
  printf("cpubench threads=%d work=%d integer=%.3f float=%.3f memory=%.3f total=%.3f\n", threads,
         work, ti, tf, tm, ti + tf + tm);
  return 0;
}
