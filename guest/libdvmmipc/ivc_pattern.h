/* Deterministic message contents and checksums for ivc-test and the host test. */
#ifndef IVC_PATTERN_H
#define IVC_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t pat_mix(uint64_t z) { /* splitmix64 finaliser */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The seed of message `idx` from src to dst of len bytes. */
static inline uint64_t pat_seed(int src, int dst, uint64_t idx, uint64_t len) {
  return pat_mix(((uint64_t)(unsigned)src << 56) ^ ((uint64_t)(unsigned)dst << 48) ^ (idx << 32) ^
                 len);
}

static inline uint64_t pat_word(uint64_t seed, uint64_t i) {
  return pat_mix(seed + (i + 1) * 0x9e3779b97f4a7c15ull);
}

static inline void pat_fill(void* buf, size_t len, uint64_t seed) {
  uint8_t* b = buf;
  size_t words = len / 8, i;
  for (i = 0; i < words; i++) {
    uint64_t w = pat_word(seed, i);
    memcpy(b + 8 * i, &w, 8);
  }
  if (len % 8) {
    uint64_t w = pat_word(seed, i);
    memcpy(b + 8 * i, &w, len % 8);
  }
}

/* Offset of the first byte that differs from the pattern, or -1. */
static inline long long pat_check(const void* buf, size_t len, uint64_t seed) {
  const uint8_t* b = buf;
  size_t words = len / 8, i;
  for (i = 0; i < words; i++) {
    uint64_t w = pat_word(seed, i), v;
    memcpy(&v, b + 8 * i, 8);
    if (v != w) {
      for (size_t k = 0; k < 8; k++) {
        if (b[8 * i + k] != (uint8_t)(w >> (8 * k))) return (long long)(8 * i + k);
      }
    }
  }
  if (len % 8) {
    uint64_t w = pat_word(seed, i);
    for (size_t k = 0; k < len % 8; k++) {
      if (b[8 * i + k] != (uint8_t)(w >> (8 * k))) return (long long)(8 * i + k);
    }
  }
  return -1;
}

/* FNV-1a (64-bit) over little-endian 64-bit words, then the remaining bytes. */
static inline uint64_t pat_csum(const void* buf, size_t len) {
  const uint8_t* b = buf;
  uint64_t h = 0xcbf29ce484222325ull;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    h = (h ^ w) * 0x100000001b3ull;
  }
  for (; i < len; i++) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

#endif /* IVC_PATTERN_H */
