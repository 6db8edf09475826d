/* libdvmmipc internals shared with the host test harness (not installed in the guest).
 *
 * The library reaches the device through a backend: the real one maps /dev/uioN (dvmmipc.c),
 * the fake one (dvmmipc_fake.c) implements the registers of docs/IVC.md in host memory shared
 * by forked processes, so the protocol can be tested without a VM.
 */
#ifndef DVMMIPC_INTERNAL_H
#define DVMMIPC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* registers (docs/IVC.md) */
#define IVC_REG_MAGIC 0x000       /* r 32 */
#define IVC_REG_VERSION 0x004     /* r 32 */
#define IVC_REG_RANK 0x008        /* r 32 */
#define IVC_REG_MAX_RANKS 0x00c   /* r 32 */
#define IVC_REG_MEMBERS 0x010     /* r 64 */
#define IVC_REG_EXPECTED 0x018    /* r 32 */
#define IVC_REG_GENERATION 0x01c  /* r 32 */
#define IVC_REG_SHM_SIZE 0x020    /* r 64 */
#define IVC_REG_SEND_DEST 0x028   /* rw 32 */
#define IVC_REG_SEND_STATUS 0x02c /* r 32 */
#define IVC_REG_SEND_DATA 0x030   /* w 64 */
#define IVC_REG_RECV_COUNT 0x038  /* r 32 */
#define IVC_REG_RECV_SRC 0x03c    /* r 32 */
#define IVC_REG_RECV_DATA 0x040   /* r 64 */
#define IVC_REG_IRQ_STATUS 0x048  /* r 32 / w1c */
#define IVC_REG_IRQ_ENABLE 0x04c  /* rw 32 */
#define IVC_REG_INBOX_SIZE 0x050  /* r 32 */
#define IVC_REG_GROUP_NAME 0x100  /* r 32 x 16 */

#define IVC_MAGIC 0x43495644u /* "DVIC" */
#define IVC_VERSION 1u
#define IVC_MAX_RANKS 64
#define IVC_GROUP_NAME_LEN 64
#define IVC_REGS_SIZE 4096

#define IVC_SEND_OK 0u
#define IVC_SEND_NOT_MEMBER 1u
#define IVC_SEND_FULL 2u
#define IVC_SEND_BAD_RANK 3u

#define IVC_IRQ_MESSAGE 1u
#define IVC_IRQ_MEMBERS 2u

#define IVC_RECV_SRC_EMPTY 0xffffffffu

/* A device as the library sees it. */
struct ivc_backend {
  uint32_t (*read32)(void* dev, uint32_t off);
  uint64_t (*read64)(void* dev, uint32_t off);
  void (*write32)(void* dev, uint32_t off, uint32_t value);
  void (*write64)(void* dev, uint32_t off, uint64_t value);
  /* Unmasks the interrupt (uio: write 1 to the fd). 0 or -1. */
  int (*unmask)(void* dev);
  /* Blocks until the interrupt fired since the last wait or timeout_ms passed (uio: poll and
   * a 4-byte read). 1 fired, 0 timed out, -1 error. */
  int (*wait_irq)(void* dev, int timeout_ms);
  void (*close)(void* dev);
};

struct ivc_device {
  const struct ivc_backend* ops;
  void* dev;
  volatile void* shm; /* map1 */
  uint64_t shm_size;  /* bytes of map1 that may be used */
};

/* Finds and opens the device of `group`: 0, or an IVC_ERR_* code. */
typedef int (*ivc_open_fn)(const char* group, struct ivc_device* out);

/* Test hook: replaces the device opener (NULL restores /dev/uio). */
void ivc__set_opener(ivc_open_fn fn);

/* Counters for tests and diagnostics (since the process started). */
struct ivc_counters {
  uint64_t inline_sent, ring_sent, bytes_sent;
  uint64_t doorbells_sent; /* DATA and SPACE doorbells */
  uint64_t sleeps;         /* blocking waits on the interrupt */
  uint64_t sleep_timeouts; /* waits that ended by their safety timeout */
  uint64_t lost_wakeups;   /* ... after which what it waited for, a message in the inbox, or
                            * ring data to take in was there: a protocol bug */
  uint64_t unexpected;     /* messages copied into the library before a receive took them */
  uint64_t send_full_retries;
  uint64_t stale_dropped; /* mailbox values of earlier sessions dropped */
};
void ivc__counters(struct ivc_counters* out);

/* Shared-memory layout (see the protocol comment in dvmmipc.c). */
#define IVC_RING_MAGIC 0x52434649u /* "IFCR" */
#define IVC_RING_VERSION 1u
#define IVC_RING_HDR_SIZE 4096u
#define IVC_MSG_MAGIC 0x4d434649u /* "IFCM" */
#define IVC_MSG_HDR_SIZE 32u

/* Bytes per ring slot (header page + data) for a group of n ranks; 0 if too small. */
static inline uint64_t ivc__slot_size(uint64_t shm_size, unsigned n) {
  uint64_t slot = shm_size / ((uint64_t)n * n);
  slot &= ~(uint64_t)4095;
  return slot >= 2 * IVC_RING_HDR_SIZE ? slot : 0;
}
/* Offset of ring src -> dst in the shared memory. */
static inline uint64_t ivc__ring_offset(uint64_t shm_size, unsigned n, unsigned src, unsigned dst) {
  return ((uint64_t)src * n + dst) * ivc__slot_size(shm_size, n);
}

/* The ring header (first page of a slot); offsets of its fields for tests. */
#define IVC_RING_OFF_MAGIC 0
#define IVC_RING_OFF_DATA_SIZE 8
#define IVC_RING_OFF_HEAD 64
#define IVC_RING_OFF_TAIL 128

#endif /* DVMMIPC_INTERNAL_H */
