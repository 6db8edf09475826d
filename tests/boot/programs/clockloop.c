// Calls clock_gettime() in a tight loop for SECONDS (default 3) on every online CPU and prints
// how many calls each thread made. Guards the guest kernel's vDSO: Linux 6.1's riscv vDSO
// built without CONFIG_JUMP_LABEL faults (at address 0x4) when a read retries during a
// timekeeping update, which a tight loop hits within seconds.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double seconds = 3;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void* loop(void* arg) {
  unsigned long* calls = arg;
  const double end = now() + seconds;
  while (now() < end) ++*calls;
  return NULL;
}

int main(int argc, char** argv) {
  if (argc > 1) seconds = atof(argv[1]);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1 || n > 64) n = 1;
  pthread_t threads[64];
  unsigned long calls[64] = {0};
  for (long i = 0; i < n; ++i) pthread_create(&threads[i], NULL, loop, &calls[i]);
  unsigned long total = 0;
  for (long i = 0; i < n; ++i) {
    pthread_join(threads[i], NULL);
    total += calls[i];
  }
  printf("clockloop: %ld threads, %lu calls\n", n, total);
  return 0;
}
