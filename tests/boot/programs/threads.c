// A multi-threaded program whose threads share and modify memory: atomic counters, a
// mutex-protected sum, and a parallel merge sort. It prints results that depend only on the
// input, so the guest's output must equal the host's (the "native" result).
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define INCREMENTS 200000
#define N (1 << 18)

static _Atomic uint64_t atomic_counter;
static uint64_t locked_sum;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t data[N], scratch[N];

static uint32_t next_random(uint64_t* s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*s >> 33);
}

static void merge_sort(uint32_t* a, uint32_t* tmp, size_t n) {
  if (n < 2) return;
  size_t h = n / 2;
  merge_sort(a, tmp, h);
  merge_sort(a + h, tmp + h, n - h);
  size_t i = 0, j = h, k = 0;
  while (i < h && j < n) tmp[k++] = a[i] <= a[j] ? a[i++] : a[j++];
  while (i < h) tmp[k++] = a[i++];
  while (j < n) tmp[k++] = a[j++];
  memcpy(a, tmp, n * sizeof *a);
}

static void* worker(void* arg) {
  size_t id = (size_t)arg;
  for (int i = 0; i < INCREMENTS; i++) {
    atomic_counter++;
    if ((i & 15) == 0) {
      pthread_mutex_lock(&lock);
      locked_sum += id + 1;
      pthread_mutex_unlock(&lock);
    }
  }
  size_t chunk = N / THREADS;
  merge_sort(data + id * chunk, scratch + id * chunk, chunk);
  return NULL;
}

int main(void) {
  uint64_t seed = 12345;
  for (size_t i = 0; i < N; i++) data[i] = next_random(&seed);
  pthread_t t[THREADS];
  for (size_t i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void*)i);
  for (size_t i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  // Final merge of the sorted chunks on the main thread.
  merge_sort(data, scratch, N);
  int sorted = 1;
  uint64_t checksum = 0;
  for (size_t i = 0; i < N; i++) {
    if (i && data[i - 1] > data[i]) sorted = 0;
    checksum = checksum * 31 + data[i];
  }
  printf("counter=%llu locked_sum=%llu sorted=%d checksum=%016llx\n",
         (unsigned long long)atomic_counter, (unsigned long long)locked_sum, sorted,
         (unsigned long long)checksum);
  return 0;
}
