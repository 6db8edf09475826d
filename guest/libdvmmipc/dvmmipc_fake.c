/* The fake ivc device of dvmmipc_fake.h (host test harness only). */
#define _GNU_SOURCE
#include "dvmmipc_fake.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dvmmipc.h"
#include "dvmmipc_internal.h"

#define INBOX 1024u

struct fake_rank {
  uint32_t members_changed; /* IRQ_STATUS bit 1 */
  uint32_t irq_enable;
  uint32_t masked;            /* the "kernel" disabled the line after it fired */
  _Atomic uint32_t irq_count; /* interrupts counted (the uio event count; a futex word) */
  uint32_t in_head, in_count; /* inbox FIFO */
  uint64_t in_val[INBOX];
  uint32_t in_src[INBOX];
};

struct ivc_fake_group {
  _Atomic int32_t lock; /* pid of the holder, 0 when free */
  char name[IVC_GROUP_NAME_LEN];
  uint64_t shm_size;
  uint64_t members;
  uint32_t generation;
  uint32_t expected;
  _Atomic uint64_t width_errors;
  size_t map_size, shm_off;
  struct fake_rank ranks[IVC_MAX_RANKS];
};

/* what one process (one VM) holds */
struct fake_dev {
  struct ivc_fake_group* g;
  uint32_t rank;
  uint32_t send_dest, send_status, recv_src;
  uint32_t seen; /* irq_count at the last wait (uio's per-open event count) */
};

static struct ivc_fake_group* use_group;
static int use_rank = -1;

/* A spinlock holding the owner's pid: a "VM" killed while holding it (once reaped) is
 * noticed and the lock taken over. (Robust pthread mutexes would do, but qemu-user lacks
 * set_robust_list, and the test also runs under qemu-riscv64.) */
static void lock(struct ivc_fake_group* g) {
  int32_t me = (int32_t)getpid();
  for (unsigned spins = 1;; spins++) {
    int32_t owner = 0;
    if (atomic_compare_exchange_weak(&g->lock, &owner, me)) return;
    if (owner && spins % 4096 == 0 && kill(owner, 0) != 0 && errno == ESRCH) {
      atomic_compare_exchange_strong(&g->lock, &owner, 0);
    }
    if (spins > 32) sched_yield();
  }
}
static void unlock(struct ivc_fake_group* g) {
  atomic_store(&g->lock, 0);
}

static void futex_wake(_Atomic uint32_t* addr) {
  syscall(SYS_futex, (uint32_t*)addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static uint32_t irq_status(struct ivc_fake_group* g, uint32_t r) {
  return (g->ranks[r].in_count ? IVC_IRQ_MESSAGE : 0) |
         (g->ranks[r].members_changed ? IVC_IRQ_MEMBERS : 0);
}

/* the interrupt line of rank r after a change (lock held) */
static void update_irq(struct ivc_fake_group* g, uint32_t r) {
  struct fake_rank* k = &g->ranks[r];
  if ((irq_status(g, r) & k->irq_enable) && !k->masked) {
    k->masked = 1;
    atomic_fetch_add(&k->irq_count, 1);
    futex_wake(&k->irq_count);
  }
}

static void membership_changed(struct ivc_fake_group* g) {
  g->generation++;
  for (uint32_t r = 0; r < IVC_MAX_RANKS; r++) {
    if (!((g->members >> r) & 1)) continue;
    g->ranks[r].members_changed = 1;
    update_irq(g, r);
  }
}

struct ivc_fake_group* ivc_fake_create(const char* name, uint64_t shm_size, uint32_t expected) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t ctl = (sizeof(struct ivc_fake_group) + page - 1) / page * page;
  size_t total = ctl + shm_size;
  void* m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  struct ivc_fake_group* g = m;
  snprintf(g->name, sizeof g->name, "%s", name);
  g->shm_size = shm_size;
  g->expected = expected;
  g->map_size = total;
  g->shm_off = ctl;
  for (int r = 0; r < IVC_MAX_RANKS; r++) g->ranks[r].irq_enable = 3;
  return g;
}

void ivc_fake_destroy(struct ivc_fake_group* g) {
  munmap(g, g->map_size);
}

void* ivc_fake_shm(struct ivc_fake_group* g) {
  return (char*)g + g->shm_off;
}
uint64_t ivc_fake_shm_size(struct ivc_fake_group* g) {
  return g->shm_size;
}
uint64_t ivc_fake_width_errors(struct ivc_fake_group* g) {
  return atomic_load(&g->width_errors);
}

void ivc_fake_join(struct ivc_fake_group* g, int rank) {
  lock(g);
  struct fake_rank* k = &g->ranks[rank];
  k->in_head = k->in_count = 0;
  k->members_changed = 0;
  k->irq_enable = 3; /* reset */
  g->members |= 1ull << rank;
  membership_changed(g);
  unlock(g);
}

void ivc_fake_leave(struct ivc_fake_group* g, int rank) {
  lock(g);
  g->members &= ~(1ull << rank);
  membership_changed(g);
  unlock(g);
}

/* ------------------------------------------------------------------------------------------ */
/* registers */

static uint32_t fake_read32(void* d, uint32_t off) {
  struct fake_dev* f = d;
  struct ivc_fake_group* g = f->g;
  uint32_t v = 0;
  lock(g);
  switch (off) {
    case IVC_REG_MAGIC:
      v = IVC_MAGIC;
      break;
    case IVC_REG_VERSION:
      v = IVC_VERSION;
      break;
    case IVC_REG_RANK:
      v = f->rank;
      break;
    case IVC_REG_MAX_RANKS:
      v = IVC_MAX_RANKS;
      break;
    case IVC_REG_EXPECTED:
      v = g->expected;
      break;
    case IVC_REG_GENERATION:
      v = g->generation;
      break;
    case IVC_REG_SEND_DEST:
      v = f->send_dest;
      break;
    case IVC_REG_SEND_STATUS:
      v = f->send_status;
      break;
    case IVC_REG_RECV_COUNT:
      v = g->ranks[f->rank].in_count;
      break;
    case IVC_REG_RECV_SRC:
      v = f->recv_src;
      break;
    case IVC_REG_IRQ_STATUS:
      v = irq_status(g, f->rank);
      break;
    case IVC_REG_IRQ_ENABLE:
      v = g->ranks[f->rank].irq_enable;
      break;
    case IVC_REG_INBOX_SIZE:
      v = INBOX;
      break;
    default:
      if (off >= IVC_REG_GROUP_NAME && off < IVC_REG_GROUP_NAME + IVC_GROUP_NAME_LEN &&
          off % 4 == 0) {
        memcpy(&v, g->name + (off - IVC_REG_GROUP_NAME), 4);
      } else {
        atomic_fetch_add(&g->width_errors, 1);
      }
  }
  unlock(g);
  return v;
}

static uint64_t fake_read64(void* d, uint32_t off) {
  struct fake_dev* f = d;
  struct ivc_fake_group* g = f->g;
  uint64_t v = 0;
  lock(g);
  switch (off) {
    case IVC_REG_MEMBERS:
      v = g->members;
      break;
    case IVC_REG_SHM_SIZE:
      v = g->shm_size;
      break;
    case IVC_REG_RECV_DATA: {
      struct fake_rank* k = &g->ranks[f->rank];
      if (k->in_count == 0) {
        f->recv_src = IVC_RECV_SRC_EMPTY;
        break;
      }
      v = k->in_val[k->in_head];
      f->recv_src = k->in_src[k->in_head];
      k->in_head = (k->in_head + 1) % INBOX;
      k->in_count--;
      break; /* the MESSAGE level may drop: nothing to raise */
    }
    default:
      atomic_fetch_add(&g->width_errors, 1);
  }
  unlock(g);
  return v;
}

static void fake_write32(void* d, uint32_t off, uint32_t v) {
  struct fake_dev* f = d;
  struct ivc_fake_group* g = f->g;
  lock(g);
  switch (off) {
    case IVC_REG_SEND_DEST:
      f->send_dest = v;
      break;
    case IVC_REG_IRQ_STATUS:
      if (v & IVC_IRQ_MEMBERS) g->ranks[f->rank].members_changed = 0;
      break;
    case IVC_REG_IRQ_ENABLE:
      g->ranks[f->rank].irq_enable = v & 3;
      update_irq(g, f->rank);
      break;
    default:
      atomic_fetch_add(&g->width_errors, 1);
  }
  unlock(g);
}

static void fake_write64(void* d, uint32_t off, uint64_t v) {
  struct fake_dev* f = d;
  struct ivc_fake_group* g = f->g;
  lock(g);
  if (off != IVC_REG_SEND_DATA) {
    atomic_fetch_add(&g->width_errors, 1);
  } else if (f->send_dest >= IVC_MAX_RANKS) {
    f->send_status = IVC_SEND_BAD_RANK;
  } else if (!((g->members >> f->send_dest) & 1)) {
    f->send_status = IVC_SEND_NOT_MEMBER;
  } else {
    struct fake_rank* k = &g->ranks[f->send_dest];
    if (k->in_count == INBOX) {
      f->send_status = IVC_SEND_FULL;
    } else {
      uint32_t slot = (k->in_head + k->in_count) % INBOX;
      k->in_val[slot] = v;
      k->in_src[slot] = f->rank;
      k->in_count++;
      f->send_status = IVC_SEND_OK;
      update_irq(g, f->send_dest);
    }
  }
  unlock(g);
}

static int fake_unmask(void* d) {
  struct fake_dev* f = d;
  lock(f->g);
  f->g->ranks[f->rank].masked = 0;
  update_irq(f->g, f->rank);
  unlock(f->g);
  return 0;
}

static int fake_wait_irq(void* d, int timeout_ms) {
  struct fake_dev* f = d;
  _Atomic uint32_t* cnt = &f->g->ranks[f->rank].irq_count;
  struct timespec end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  end.tv_sec += timeout_ms / 1000;
  end.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
  if (end.tv_nsec >= 1000000000) {
    end.tv_sec++;
    end.tv_nsec -= 1000000000;
  }
  for (;;) {
    uint32_t c = atomic_load(cnt);
    if (c != f->seen) {
      f->seen = c;
      return 1;
    }
    struct timespec now, rel;
    clock_gettime(CLOCK_MONOTONIC, &now);
    rel.tv_sec = end.tv_sec - now.tv_sec;
    rel.tv_nsec = end.tv_nsec - now.tv_nsec;
    if (rel.tv_nsec < 0) {
      rel.tv_sec--;
      rel.tv_nsec += 1000000000;
    }
    if (rel.tv_sec < 0) return 0;
    if (syscall(SYS_futex, (uint32_t*)cnt, FUTEX_WAIT, c, &rel, NULL, 0) != 0 && errno != EAGAIN &&
        errno != EINTR && errno != ETIMEDOUT) {
      return -1;
    }
  }
}

static void fake_close(void* d) {
  free(d);
}

static const struct ivc_backend fake_backend = {
    fake_read32, fake_read64, fake_write32, fake_write64, fake_unmask, fake_wait_irq, fake_close,
};

static int fake_open(const char* group, struct ivc_device* out) {
  struct ivc_fake_group* g = use_group;
  if (!g || use_rank < 0 || strcmp(group, g->name) != 0) return IVC_ERR_NODEV;
  struct fake_dev* f = calloc(1, sizeof *f);
  if (!f) return IVC_ERR_IO;
  f->g = g;
  f->rank = (uint32_t)use_rank;
  f->recv_src = IVC_RECV_SRC_EMPTY;
  f->seen = atomic_load(&g->ranks[use_rank].irq_count); /* as uio's open() */
  out->ops = &fake_backend;
  out->dev = f;
  out->shm = ivc_fake_shm(g);
  out->shm_size = g->shm_size;
  return 0;
}

void ivc_fake_use(struct ivc_fake_group* g, int rank) {
  use_group = g;
  use_rank = rank;
  ivc__set_opener(fake_open);
}
