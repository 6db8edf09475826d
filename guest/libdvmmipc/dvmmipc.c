/* libdvmmipc: MPI-like messages between the VMs of a dvmm --ivc group (see dvmmipc.h).
 *
 * Protocol (also in docs/IVC.md, section "Protocol")
 * ==================================================
 *
 * Mailbox values. The low 4 bits of every 64-bit mailbox value are its kind:
 *
 *   kind           bits 4..31                               bits 32..63
 *   1 HELLO        4..10 comm size N                         sender's session nonce
 *   2 INLINE       4..7 type, 8..10 length (0..4 bytes),     payload (byte i in bits 32+8i)
 *                  11..15 zero, 16..31 tag
 *   3 ANNOUNCE     4..31 sequence number (low 28 bits)       receiver's session nonce
 *   4 DATA         (doorbell: the sender published data)    sender's nonce
 *   5 SPACE        (doorbell: the receiver freed space)     sender's nonce
 *   6 BYE          (the sender finalized)                   sender's nonce
 *   7 HELLO_FWD    4..10 N, 11..16 rank of the hello's      that rank's nonce
 *                  sender (sent by a rank to itself)
 *
 * Sessions. Every ivc_init is a session with a random nonzero 32-bit nonce. A receiver owns
 * the rings it receives on: at init it resets them and stamps its nonce into each ring header
 * (rx_nonce, written last), then sends HELLO(N, nonce) to every peer, and waits for a HELLO
 * from every peer. A HELLO from p counts only if the ring me->p carries that nonce (so stale
 * hellos of p's earlier programs are dropped), and only then does this rank write into ring
 * me->p. Messages from p other than hellos are accepted only after p's hello was taken (the
 * mailbox is FIFO per pair, so p's data never precedes its hello); mailbox values found at
 * init are leftovers of an earlier session and dropped, hellos excepted. A HELLO that arrives
 * after init comes from a new session of p (p runs its next program while this one still
 * runs): p counts as gone for this session, and the hello is handed to this rank's next
 * session by a HELLO_FWD to itself at ivc_finalize. ivc_finalize sends BYE to the peers
 * (their waits for this rank end with IVC_ERR_PEER_DEAD once they have taken what it sent)
 * and zeroes rx_nonce of its rings (senders of earlier sessions then fail instead of writing
 * into a ring nobody reads).
 *
 * Comm size N = EXPECTED when set (init first waits until ranks 0..N-1 are members), else the
 * highest live rank + 1 (ranks below it that are absent count as dead). HELLOs carry N; a
 * peer whose genuine hello names another N fails init with IVC_ERR_STATE.
 *
 * Shared memory: N*N rings, one per ordered pair (src, dst), the pair's slot at
 * (src*N + dst) * slot, slot = SHM_SIZE / (N*N) rounded down to 4 KiB (at least 8 KiB). A
 * slot is a 4 KiB header page followed by the data area of slot-4096 bytes:
 *
 *   offset  field                                  written by
 *   0       magic 0x52434649 ("IFCR"), version 1   receiver (at reset)
 *   8       data_size (u64)                        receiver (at reset)
 *   16      src, dst, N (u32 each)                 receiver (at reset)
 *   28      rx_nonce (u32): receiver's session     receiver (last at reset; 0 at finalize)
 *   64      head (u64): bytes ever written         sender
 *   72      rx_waiting (u32): receiver sleeps      set by receiver, cleared by sender
 *   128     tail (u64): bytes ever consumed        receiver
 *   136     tx_waiting (u32): sender sleeps        set by sender, cleared by receiver
 *
 * head and tail count bytes since the reset (position = count % data_size); 0 <= head - tail
 * <= data_size. Each side keeps its own counter privately and only reads the other's, which
 * it validates (head - tail > data_size, a wrong magic, data_size or nonce: IVC_ERR_CORRUPT),
 * so a corrupt header never makes the library touch memory outside the ring.
 *
 * A message of more than 4 bytes is a record in the ring: a 32-byte header {magic "IFCM",
 * tag u16, type u8, flags u8 (0), seq u32, sender nonce u32, length u64, receiver nonce u32,
 * check u32 (FNV-1a of the first 28 bytes)} at a 32-byte aligned position, then the payload,
 * then padding to 32 bytes. The sender waits for 32 bytes of space, writes the header,
 * publishes head (release) and then sends ANNOUNCE; it then streams the payload in chunks
 * of at most 64 KiB straight from the caller's buffer, publishing head after each. The last
 * payload byte is published together with the padding, so a receiver that has the whole
 * payload has the whole record. The receiver processes its mailbox in FIFO order, so the
 * order of INLINE and ANNOUNCE values is the order of the pair's messages. On ANNOUNCE it
 * reads and validates the header at its read cursor (sequence numbers must follow each other)
 * and queues the message; a receive that takes it copies the payload from the ring straight
 * into the caller's buffer (the messages of that sender ahead of it are copied out first).
 *
 * Waiting. A waiter spins for IVC_SPIN_US (default 1000 us) polling the mailbox (RECV_DATA,
 * which reads 0 when the inbox is empty; IRQ_STATUS for membership every 16th time) and the
 * ring, then sleeps: it unmasks the interrupt, takes what the mailbox holds and any
 * membership change, sets the ring's waiting flag and rx_waiting of every ring holding
 * records it could take in, issues a seq_cst fence, takes in the ring data of other peers
 * that is there (progress: so that two ranks sending large messages to each other at the
 * same time, a cycle of senders, or a rank sending to itself do not deadlock; the data is
 * copied into the library), re-checks its condition and only then blocks in poll()+read() on
 * /dev/uioN. The other side publishes head/tail (release), issues a seq_cst fence and
 * exchanges the flag to 0; if it was set it sends a DATA or SPACE doorbell (a store-buffer
 * handshake: one of the two sees the other's write). A send whose destination inbox is FULL
 * retries, draining its own inbox meanwhile. Every wait handles IRQ_STATUS.MEMBERS (write 1
 * to clear, then read MEMBERS): a peer that left the group while it was being waited for
 * gives IVC_ERR_PEER_DEAD after the mailbox has been drained (messages it sent before dying
 * are still delivered). Sleeps time out after 1 s as a safety net; a timeout after which the
 * condition held, a message was in the inbox or ring data was there to take counts as a lost
 * wake-up (the host test requires none).
 *
 * Register accesses (each one a VM exit) per message: a send writes SEND_DATA and reads
 * SEND_STATUS (SEND_DEST only when the destination changes); a receive reads RECV_DATA and
 * RECV_SRC.
 */
#define _DEFAULT_SOURCE
#include "dvmmipc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "dvmmipc_internal.h"

enum {
  K_HELLO = 1,
  K_INLINE = 2,
  K_ANNOUNCE = 3,
  K_DATA = 4,
  K_SPACE = 5,
  K_BYE = 6,
  K_HELLO_FWD = 7,
};

#define INLINE_MAX 4u
#define CHUNK ((uint64_t)64 * 1024)
#define MAX_MSG ((uint64_t)1 << 40)
#define SLEEP_TIMEOUT_MS 1000

/* why a peer's session is over for us */
enum { GONE_NOT = 0, GONE_ABSENT, GONE_DIED, GONE_FINALIZED, GONE_RESTARTED };

enum { ST_NONE = 0, ST_INIT, ST_READY };

struct ring_hdr {
  _Atomic uint32_t magic;     /* 0 */
  _Atomic uint32_t version;   /* 4 */
  _Atomic uint64_t data_size; /* 8 */
  _Atomic uint32_t src;       /* 16 */
  _Atomic uint32_t dst;       /* 20 */
  _Atomic uint32_t nranks;    /* 24 */
  _Atomic uint32_t rx_nonce;  /* 28 */
  uint8_t pad0[32];
  _Atomic uint64_t head;       /* 64 */
  _Atomic uint32_t rx_waiting; /* 72 */
  uint8_t pad1[52];
  _Atomic uint64_t tail;       /* 128 */
  _Atomic uint32_t tx_waiting; /* 136 */
};
_Static_assert(offsetof(struct ring_hdr, magic) == IVC_RING_OFF_MAGIC, "ring layout");
_Static_assert(offsetof(struct ring_hdr, data_size) == IVC_RING_OFF_DATA_SIZE, "ring layout");
_Static_assert(offsetof(struct ring_hdr, rx_nonce) == 28, "ring layout");
_Static_assert(offsetof(struct ring_hdr, head) == IVC_RING_OFF_HEAD, "ring layout");
_Static_assert(offsetof(struct ring_hdr, rx_waiting) == 72, "ring layout");
_Static_assert(offsetof(struct ring_hdr, tail) == IVC_RING_OFF_TAIL, "ring layout");
_Static_assert(offsetof(struct ring_hdr, tx_waiting) == 136, "ring layout");

struct msg_hdr {
  uint32_t magic;
  uint16_t tag;
  uint8_t type;
  uint8_t flags;
  uint32_t seq;
  uint32_t tx_nonce;
  uint64_t length;
  uint32_t rx_nonce;
  uint32_t check;
};
_Static_assert(sizeof(struct msg_hdr) == IVC_MSG_HDR_SIZE, "message header layout");

/* A message that arrived and waits for a receive, in arrival order. */
struct entry {
  struct entry* next;
  struct entry* prev;
  struct entry* rnext; /* next ring message of the same sender */
  int src, tag, type;
  int ring;        /* its record is (partly) still in the sender's ring */
  int hdr_skipped; /* the ring's tail has passed the record's header */
  uint64_t len;    /* payload bytes */
  uint64_t body;   /* ring: payload + padding */
  uint64_t taken;  /* ring: body bytes consumed */
  uint64_t pos;    /* ring: position of the record's header */
  uint8_t* buf;    /* payload copied out of the ring before a receive took it */
  uint8_t small[INLINE_MAX];
};

struct peer {
  uint32_t nonce; /* the peer's session (from its hello); 0 before */
  int gone;       /* GONE_*: the peer's session is over */
  int rx_err;     /* sticky error of the ring peer -> me (IVC_ERR_CORRUPT) */
  int tx_err;     /* sticky error of the ring me -> peer */
  struct ring_hdr* tx;
  uint8_t* txd;
  uint64_t tx_head;
  uint32_t tx_seq;
  struct ring_hdr* rx;
  uint8_t* rxd;
  uint64_t rx_tail; /* consumed */
  uint64_t rx_peek; /* position of the next record header not read yet */
  uint32_t rx_seq;
  struct entry* rfirst; /* ring messages not fully consumed, in ring order */
  struct entry* rlast;
  uint32_t fwd_nonce; /* hello of a newer session, for this rank's next session */
  unsigned fwd_n;
};

static struct {
  int state;
  struct ivc_device dev;
  int rank, size;
  uint32_t nonce;
  uint64_t slot, ds; /* ring slot and data area bytes */
  uint64_t members;
  struct peer peers[IVC_MAX_RANKS];
  struct entry* first;
  struct entry* last;
  uint64_t events; /* bumped on each arrival, departure or ring error: receives wait on it */
  int active;      /* peer whose ring a receive is streaming from (progress skips it), or -1 */
  int init_err;
  int fatal;         /* IVC_ERR_IO after an allocation failure: messages were lost */
  uint64_t spin_len; /* how long a wait spins, in spin_now() units */
  uint64_t ticks_per_s;
  unsigned polls;
  int send_dest; /* what SEND_DEST holds, -1: unknown */
} S;

static struct ivc_counters C;
static ivc_open_fn opener_override;

static int uio_open(const char* group, struct ivc_device* out);

void ivc__set_opener(ivc_open_fn fn) {
  opener_override = fn;
}
void ivc__counters(struct ivc_counters* out) {
  *out = C;
}

/* ------------------------------------------------------------------------------------------ */
/* helpers */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The clock of spin loops. On RISC-V the time CSR, read directly (as the vDSO does): Linux
 * 6.1's riscv vDSO dereferences NULL when its clock_gettime retries a read that raced a
 * timekeeping update without CONFIG_JUMP_LABEL (its cpu_relax() reads a static key through an
 * unrelocated pointer), which a loop calling clock_gettime runs into within seconds. Ticks
 * per second from the device tree; without them, clock_gettime in ns. */
static uint64_t spin_now(void) {
#if defined(__riscv)
  if (S.ticks_per_s) {
    uint64_t t;
    __asm__ volatile("rdtime %0" : "=r"(t));
    return t;
  }
#endif
  return now_ns();
}

static uint64_t timebase_hz(void) {
#if defined(__riscv)
  static const char* paths[] = {"/sys/firmware/devicetree/base/cpus/timebase-frequency",
                                "/proc/device-tree/cpus/timebase-frequency"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    uint8_t b[8];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    if (n != 4 && n != 8) continue;
    uint64_t hz = 0;
    for (ssize_t k = 0; k < n; k++) hz = hz << 8 | b[k]; /* big-endian cell(s) */
    if (hz) return hz;
  }
#endif
  return 0;
}

static inline void cpu_relax(void) {
#if defined(__riscv)
  __asm__ volatile(".4byte 0x0100000f" ::: "memory"); /* pause (Zihintpause; a fence before) */
#elif defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

static inline uint64_t min64(uint64_t a, uint64_t b) {
  return a < b ? a : b;
}
static inline uint64_t align32(uint64_t x) {
  return (x + 31) & ~(uint64_t)31;
}

static size_t esize(int type) {
  switch (type) {
    case IVC_BYTE:
    case IVC_CHAR:
      return 1;
    case IVC_INT32:
    case IVC_FLOAT:
      return 4;
    case IVC_INT64:
    case IVC_DOUBLE:
      return 8;
    default:
      return 0;
  }
}

static uint32_t fnv1a32(const void* p, size_t n) {
  const uint8_t* b = p;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
  return h;
}

static inline uint32_t r32(uint32_t off) {
  return S.dev.ops->read32(S.dev.dev, off);
}
static inline uint64_t r64(uint32_t off) {
  return S.dev.ops->read64(S.dev.dev, off);
}
static inline void w32(uint32_t off, uint32_t v) {
  S.dev.ops->write32(S.dev.dev, off, v);
}
static inline void w64(uint32_t off, uint64_t v) {
  S.dev.ops->write64(S.dev.dev, off, v);
}

static inline uint8_t* shm_bytes(void) {
  return (uint8_t*)(uintptr_t)S.dev.shm;
}

static int peer_index(const struct peer* p) {
  return (int)(p - S.peers);
}

static void mark_gone(struct peer* p, int why) {
  if (p->gone == GONE_NOT) {
    p->gone = why;
    S.events++;
  }
}

static int corrupt_rx(struct peer* p) {
  if (!p->rx_err) {
    p->rx_err = IVC_ERR_CORRUPT;
    S.events++;
  }
  return p->rx_err;
}

static int corrupt_tx(struct peer* p) {
  if (!p->tx_err) p->tx_err = IVC_ERR_CORRUPT;
  return p->tx_err;
}

/* ------------------------------------------------------------------------------------------ */
/* mailbox */

static void handle_value(uint32_t src, uint64_t v);

static void handle_members(void) {
  w32(IVC_REG_IRQ_STATUS, IVC_IRQ_MEMBERS); /* clear first: a later change sets it again */
  uint64_t m = r64(IVC_REG_MEMBERS);
  S.members = m;
  if (S.state == ST_NONE) return;
  for (int i = 0; i < S.size; i++) {
    if (i != S.rank && !((m >> i) & 1)) mark_gone(&S.peers[i], GONE_DIED);
  }
}

/* Pops messages until RECV_DATA reads 0 (the inbox is empty: no value this library sends is
 * 0, and a stray 0 from elsewhere is dropped like any stray value), at most one inbox full.
 * Two register reads per message, one when there is none. Returns how many. */
static int drain_inbox(void) {
  int n = 0;
  while (n < 1024) {
    uint64_t v = r64(IVC_REG_RECV_DATA);
    if (v == 0) break;
    uint32_t src = r32(IVC_REG_RECV_SRC);
    if (src == IVC_RECV_SRC_EMPTY) break;
    handle_value(src, v);
    n++;
  }
  return n;
}

static void check_members(void) {
  if (r32(IVC_REG_IRQ_STATUS) & IVC_IRQ_MEMBERS) handle_members();
}

/* Takes the messages waiting in the inbox, and membership changes every 16th time (for spin
 * loops: each register access is a VM exit). */
static int poll_inbox(void) {
  if ((++S.polls & 15) == 0) check_members();
  return drain_inbox();
}

/* Takes membership changes and the messages waiting in the inbox. */
static int poll_all(void) {
  check_members();
  return drain_inbox();
}

/* Sends one mailbox value, retrying while the destination's inbox is full (and draining ours
 * meanwhile: the destination may be waiting for us to do so). */
static int mb_send(int dest, uint64_t v) {
  unsigned tries = 0;
  for (;;) {
    if (S.send_dest != dest) { /* the register keeps its value: one write less per message */
      w32(IVC_REG_SEND_DEST, (uint32_t)dest);
      S.send_dest = dest;
    }
    w64(IVC_REG_SEND_DATA, v);
    uint32_t st = r32(IVC_REG_SEND_STATUS);
    if (st == IVC_SEND_OK) return IVC_OK;
    if (st == IVC_SEND_NOT_MEMBER) return IVC_ERR_PEER_DEAD;
    if (st != IVC_SEND_FULL) return IVC_ERR_RANK;
    C.send_full_retries++;
    poll_inbox();
    if (dest < S.size && S.state != ST_NONE && S.peers[dest].gone) {
      return IVC_ERR_PEER_DEAD; /* nobody will drain its inbox for this session */
    }
    if (++tries > 64) {
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);
    } else {
      cpu_relax();
    }
  }
}

static void doorbell(struct peer* p, int kind) {
  if (p->gone == GONE_DIED || p->gone == GONE_ABSENT) return;
  if (mb_send(peer_index(p), (uint64_t)kind | (uint64_t)S.nonce << 32) == IVC_OK) {
    C.doorbells_sent++;
  }
}

/* ------------------------------------------------------------------------------------------ */
/* waiting */

static int progress(int skip);
static void arm_progress(int skip);
static int progress_pending(int skip);

struct waitctx {
  uint64_t spin_end; /* 0: not started */
};

typedef int (*cond_fn)(void* arg); /* >0 ready, 0 not yet, <0 error */

/* One step of a wait whose condition does not hold yet: spins (taking the mailbox) until
 * IVC_SPIN_US have passed, then sleeps on the interrupt. `flag`, if not NULL, is the ring's
 * waiting flag that makes the other side ring a doorbell. Returns 0 (check again) or an
 * error. */
static int wait_step(struct waitctx* w, _Atomic uint32_t* flag, cond_fn cond, void* arg) {
  uint64_t t = spin_now();
  if (w->spin_end == 0) w->spin_end = t + S.spin_len;
  if (t < w->spin_end) {
    poll_inbox();
    cpu_relax();
    return 0;
  }
  if (S.dev.ops->unmask(S.dev.dev) != 0) return IVC_ERR_IO;
  poll_all();
  /* Before sleeping, take in what other peers stream to us (so they can go on), with the
   * DATA doorbell armed on their rings: data published after progress() looked rings it. */
  arm_progress(S.active);
  if (flag) atomic_store_explicit(flag, 1, memory_order_seq_cst);
  atomic_thread_fence(memory_order_seq_cst);
  if (progress(S.active) > 0) {
    w->spin_end = 0;
    return 0;
  }
  int r = cond(arg);
  if (r != 0) {
    if (flag) atomic_store_explicit(flag, 0, memory_order_relaxed);
    w->spin_end = 0;
    return r < 0 ? r : 0;
  }
  C.sleeps++;
  r = S.dev.ops->wait_irq(S.dev.dev, SLEEP_TIMEOUT_MS);
  if (r < 0) return IVC_ERR_IO;
  if (r == 0) {
    /* a lost wake-up if what we wait for, a message or data for progress() is there */
    C.sleep_timeouts++;
    if (cond(arg) > 0 || r32(IVC_REG_RECV_COUNT) > 0 || progress_pending(S.active)) {
      C.lost_wakeups++;
    }
  }
  w->spin_end = 0;
  return 0;
}

static int cond_events(void* arg) {
  return S.events != *(uint64_t*)arg ? 1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* rings */

static struct ring_hdr* ring_at(uint64_t off) {
  return (struct ring_hdr*)(shm_bytes() + off);
}

static int ring_static_ok(struct ring_hdr* r) {
  return atomic_load_explicit(&r->magic, memory_order_relaxed) == IVC_RING_MAGIC &&
         atomic_load_explicit(&r->data_size, memory_order_relaxed) == S.ds;
}

/* Bytes of the peer's ring this rank may read (head - tail), or an error. */
static int64_t rx_avail(struct peer* p) {
  if (p->rx_err) return p->rx_err;
  struct ring_hdr* r = p->rx;
  if (!ring_static_ok(r) || atomic_load_explicit(&r->rx_nonce, memory_order_relaxed) != S.nonce) {
    return corrupt_rx(p);
  }
  uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
  uint64_t avail = head - p->rx_tail;
  if (avail > S.ds) return corrupt_rx(p);
  return (int64_t)avail;
}

/* Free bytes of the ring to the peer, or an error. */
static int64_t tx_space(struct peer* p) {
  if (p->tx_err) return p->tx_err;
  struct ring_hdr* r = p->tx;
  if (!ring_static_ok(r)) return corrupt_tx(p);
  uint32_t rx_nonce = atomic_load_explicit(&r->rx_nonce, memory_order_relaxed);
  if (rx_nonce != p->nonce) { /* the receiver finalized (0) or restarted and reset its ring */
    mark_gone(p, rx_nonce == 0 ? GONE_FINALIZED : GONE_RESTARTED);
    return IVC_ERR_PEER_DEAD;
  }
  uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  uint64_t used = p->tx_head - tail;
  if (used > S.ds) return corrupt_tx(p);
  return (int64_t)(S.ds - used);
}

static void rx_advance(struct peer* p, uint64_t n) {
  p->rx_tail += n;
  atomic_store_explicit(&p->rx->tail, p->rx_tail, memory_order_release);
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&p->rx->tx_waiting, memory_order_relaxed) &&
      atomic_exchange_explicit(&p->rx->tx_waiting, 0, memory_order_seq_cst)) {
    doorbell(p, K_SPACE);
  }
}

static void tx_publish(struct peer* p, uint64_t n) {
  p->tx_head += n;
  atomic_store_explicit(&p->tx->head, p->tx_head, memory_order_release);
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&p->tx->rx_waiting, memory_order_relaxed) &&
      atomic_exchange_explicit(&p->tx->rx_waiting, 0, memory_order_seq_cst)) {
    doorbell(p, K_DATA);
  }
}

static int cond_rx(void* arg) {
  int64_t a = rx_avail(arg);
  return a > 0 ? 1 : (int)a;
}

/* Waits for data in the peer's ring. */
static int wait_rx(struct peer* p, struct waitctx* w) {
  if (S.fatal) return S.fatal;
  if (p->gone) {
    /* it wrote all it ever will (the mailbox said it is gone after its last message) */
    int64_t a = rx_avail(p);
    if (a != 0) return a > 0 ? 0 : (int)a;
    return IVC_ERR_PEER_DEAD;
  }
  return wait_step(w, &p->rx->rx_waiting, cond_rx, p);
}

struct tx_need {
  struct peer* p;
  uint64_t need;
};

static int cond_tx(void* arg) {
  struct tx_need* t = arg;
  int64_t s = tx_space(t->p);
  if (s < 0) return (int)s;
  return (uint64_t)s >= t->need ? 1 : 0;
}

/* Waits until the ring to the peer has `need` free bytes. */
static int wait_tx(struct peer* p, uint64_t need, struct waitctx* w) {
  if (S.fatal) return S.fatal;
  if (p->gone) return IVC_ERR_PEER_DEAD;
  struct tx_need t = {p, need};
  return wait_step(w, &p->tx->tx_waiting, cond_tx, &t);
}

/* ------------------------------------------------------------------------------------------ */
/* arrivals */

static struct entry* new_entry(int src, int tag, int type, uint64_t len) {
  struct entry* e = calloc(1, sizeof *e);
  if (!e) {
    S.fatal = IVC_ERR_IO;
    return NULL;
  }
  e->src = src;
  e->tag = tag;
  e->type = type;
  e->len = len;
  e->prev = S.last;
  if (S.last) {
    S.last->next = e;
  } else {
    S.first = e;
  }
  S.last = e;
  S.events++;
  return e;
}

static void free_entry(struct entry* e) {
  if (e->prev) {
    e->prev->next = e->next;
  } else {
    S.first = e->next;
  }
  if (e->next) {
    e->next->prev = e->prev;
  } else {
    S.last = e->prev;
  }
  if (e->ring) { /* unfinished ring record: unlink it from its sender's list */
    struct peer* p = &S.peers[e->src];
    struct entry* prev = NULL;
    for (struct entry* x = p->rfirst; x; prev = x, x = x->rnext) {
      if (x != e) continue;
      if (prev) {
        prev->rnext = e->rnext;
      } else {
        p->rfirst = e->rnext;
      }
      if (p->rlast == e) p->rlast = prev;
      break;
    }
  }
  free(e->buf);
  free(e);
}

/* Reads and validates the header of the peer's next ring record (announced by `seq28`). */
static int read_msg_hdr(struct peer* p, uint32_t seq28, struct msg_hdr* h) {
  int64_t avail = rx_avail(p);
  if (avail < 0) return (int)avail;
  uint64_t ahead = p->rx_peek - p->rx_tail; /* bytes of queued records before this one */
  if (ahead > (uint64_t)avail || (uint64_t)avail - ahead < IVC_MSG_HDR_SIZE || p->rx_peek % 32) {
    return corrupt_rx(p);
  }
  memcpy(h, p->rxd + p->rx_peek % S.ds, sizeof *h);
  if (h->magic != IVC_MSG_MAGIC || h->check != fnv1a32(h, offsetof(struct msg_hdr, check)) ||
      h->seq != p->rx_seq || (h->seq & 0x0fffffffu) != seq28 || h->tx_nonce != p->nonce ||
      h->rx_nonce != S.nonce || !esize(h->type) || h->flags != 0 || h->length > MAX_MSG ||
      h->length % esize(h->type)) {
    return corrupt_rx(p);
  }
  return IVC_OK;
}

static void handle_hello(unsigned src, uint32_t nonce, unsigned n);

static void handle_value(uint32_t src, uint64_t v) {
  unsigned kind = (unsigned)(v & 15);
  uint32_t hi = (uint32_t)(v >> 32);
  if (src >= IVC_MAX_RANKS) return;
  if (kind == K_HELLO) {
    handle_hello(src, hi, (unsigned)(v >> 4) & 127);
    return;
  }
  if (kind == K_HELLO_FWD) {
    if ((int)src == S.rank) handle_hello((unsigned)(v >> 11) & 63, hi, (unsigned)(v >> 4) & 127);
    return;
  }
  /* Values of p count from its hello on. A later session of p sends nothing but its hello
   * before it has our next one, so everything after the hello (even after p has gone) is
   * from the session we know. */
  if ((int)src >= S.size || S.peers[src].nonce == 0) {
    C.stale_dropped++; /* from an earlier session, or from outside the group */
    return;
  }
  struct peer* p = &S.peers[src];
  switch (kind) {
    case K_INLINE: {
      unsigned type = (unsigned)(v >> 4) & 15, len = (unsigned)(v >> 8) & 7;
      if (!esize((int)type) || len > INLINE_MAX || len % esize((int)type) || (v & 0xf800)) {
        corrupt_rx(p);
        return;
      }
      struct entry* e = new_entry((int)src, (int)(v >> 16) & 0xffff, (int)type, len);
      if (!e) return;
      for (unsigned i = 0; i < len; i++) e->small[i] = (uint8_t)(hi >> (8 * i));
      return;
    }
    case K_ANNOUNCE: {
      if (hi != S.nonce) {
        C.stale_dropped++;
        return;
      }
      if (p->rx_err) return;
      struct msg_hdr h;
      if (read_msg_hdr(p, (uint32_t)(v >> 4) & 0x0fffffffu, &h) != IVC_OK) return;
      struct entry* e = new_entry((int)src, h.tag, h.type, h.length);
      if (!e) return;
      e->ring = 1;
      e->pos = p->rx_peek;
      e->body = align32(IVC_MSG_HDR_SIZE + h.length) - IVC_MSG_HDR_SIZE;
      p->rx_peek += IVC_MSG_HDR_SIZE + e->body;
      p->rx_seq++;
      if (p->rlast) {
        p->rlast->rnext = e;
      } else {
        p->rfirst = e;
      }
      p->rlast = e;
      return;
    }
    case K_BYE:
      if (hi == p->nonce && (int)src != S.rank) mark_gone(p, GONE_FINALIZED);
      return;
    case K_DATA:
    case K_SPACE:
      return; /* doorbells only wake us up */
    default:
      C.stale_dropped++;
      return;
  }
}

/* Consumes the body of the peer's first ring record `x`, copying payload bytes below `cap`
 * to dst (payload offset = body offset). Blocking: until the whole body is consumed; else
 * takes what the ring holds. Returns 1 when the record is done, 0 when not yet, or an error. */
static int entry_take(struct peer* p, struct entry* x, uint8_t* dst, uint64_t cap, int block) {
  struct waitctx w = {0};
  if (p->rfirst != x) return corrupt_rx(p); /* cannot happen */
  if (!x->hdr_skipped) {
    if (p->rx_tail != x->pos) return corrupt_rx(p);
    rx_advance(p, IVC_MSG_HDR_SIZE);
    x->hdr_skipped = 1;
  }
  while (x->taken < x->body) {
    int64_t avail = rx_avail(p);
    if (avail < 0) return (int)avail;
    if (avail == 0) {
      if (!block) return 0;
      int r = wait_rx(p, &w);
      if (r < 0) return r;
      continue;
    }
    w.spin_end = 0;
    uint64_t off = p->rx_tail % S.ds;
    uint64_t n = min64(min64((uint64_t)avail, x->body - x->taken), min64(S.ds - off, CHUNK));
    if (x->taken < cap) memcpy(dst + x->taken, p->rxd + off, min64(n, cap - x->taken));
    x->taken += n;
    rx_advance(p, n);
  }
  p->rfirst = x->rnext;
  if (!p->rfirst) p->rlast = NULL;
  x->ring = 0;
  return 1;
}

/* Copies ring data that arrived from peers into the library (not from `skip`), without
 * waiting. Returns whether anything was consumed. */
static int progress(int skip) {
  int did = 0;
  if (S.state == ST_NONE) return 0;
  for (int i = 0; i < S.size; i++) {
    struct peer* p = &S.peers[i];
    if (i == skip) continue;
    struct entry* x;
    while ((x = p->rfirst) != NULL && !p->rx_err) {
      if (!x->buf && x->len) {
        x->buf = malloc(x->len);
        if (!x->buf) break; /* stays in the ring until its receive */
        C.unexpected++;
      }
      uint64_t before = x->taken;
      int hdr = x->hdr_skipped;
      int r = entry_take(p, x, x->buf, x->len, 0);
      if (x->taken != before || x->hdr_skipped != hdr) did = 1;
      if (r <= 0) break;
    }
  }
  return did;
}

/* Sets rx_waiting on the rings that progress(skip) would read, so that their senders ring
 * a DATA doorbell when they publish more. */
static void arm_progress(int skip) {
  for (int i = 0; i < S.size; i++) {
    struct peer* p = &S.peers[i];
    if (i != skip && p->rfirst && !p->rx_err) {
      atomic_store_explicit(&p->rx->rx_waiting, 1, memory_order_seq_cst);
    }
  }
}

/* Whether progress(skip) would find data (for the lost wake-up counter). */
static int progress_pending(int skip) {
  for (int i = 0; i < S.size; i++) {
    struct peer* p = &S.peers[i];
    if (i != skip && p->rfirst && !p->rx_err && rx_avail(p) > 0) return 1;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* init, hello */

/* rx_nonce of ring src -> dst in the layout of an n-rank group, 0 if none. */
static uint32_t ring_nonce(unsigned n, unsigned src, unsigned dst) {
  if (n == 0 || n > IVC_MAX_RANKS || src >= n || dst >= n) return 0;
  uint64_t slot = ivc__slot_size(S.dev.shm_size, n);
  if (!slot) return 0;
  struct ring_hdr* r = ring_at(ivc__ring_offset(S.dev.shm_size, n, src, dst));
  if (atomic_load_explicit(&r->magic, memory_order_relaxed) != IVC_RING_MAGIC) return 0;
  return atomic_load_explicit(&r->rx_nonce, memory_order_acquire);
}

static void handle_hello(unsigned src, uint32_t nonce, unsigned n) {
  if (src >= IVC_MAX_RANKS || nonce == 0 || (int)src == S.rank) return;
  struct peer* p = &S.peers[src];
  if (S.state == ST_READY) {
    if ((int)src < S.size && nonce == p->nonce) {
      C.stale_dropped++;
      return;
    }
    /* a new session of src: it waits for our next session's hello */
    p->fwd_nonce = nonce;
    p->fwd_n = n;
    if ((int)src < S.size) mark_gone(p, GONE_RESTARTED);
    return;
  }
  if (S.state != ST_INIT) return;
  if ((int)src < S.size && n == (unsigned)S.size) {
    /* genuine when src has stamped this nonce into the ring we send it on */
    if (ring_nonce(n, (unsigned)S.rank, src) == nonce) {
      p->nonce = nonce;
      p->gone = GONE_NOT;
      S.events++;
    } else {
      C.stale_dropped++;
    }
    return;
  }
  if (ring_nonce(n, (unsigned)S.rank, src) == nonce) {
    S.init_err = IVC_ERR_STATE; /* a member counts the group differently */
  } else {
    C.stale_dropped++;
  }
}

static uint32_t new_nonce(void) {
  uint64_t x =
      now_ns() ^ ((uint64_t)getpid() << 32) ^ ((uint64_t)S.rank << 56) ^ (uint64_t)(uintptr_t)&x;
  for (;;) {
    x += 0x9e3779b97f4a7c15ull; /* splitmix64 */
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    uint32_t n = (uint32_t)(z ^ (z >> 31));
    int clash = n == 0;
    for (int i = 0; i < S.size && !clash; i++) {
      if (atomic_load_explicit(&S.peers[i].rx->rx_nonce, memory_order_relaxed) == n) clash = 1;
    }
    if (!clash) return n;
  }
}

static uint64_t env_u64(const char* name, uint64_t dflt) {
  const char* s = getenv(name);
  if (!s || !*s) return dflt;
  char* end;
  unsigned long long v = strtoull(s, &end, 10);
  return *end ? dflt : (uint64_t)v;
}

struct pre_hello {
  uint32_t nonce;
  unsigned n;
};

/* Before the session exists: keeps hellos (of peers' new sessions), drops the rest. */
static void pre_drain(struct pre_hello* pre) {
  uint32_t st = r32(IVC_REG_IRQ_STATUS);
  if (st & IVC_IRQ_MEMBERS) handle_members();
  uint32_t cnt = r32(IVC_REG_RECV_COUNT);
  while (cnt-- > 0) {
    uint64_t v = r64(IVC_REG_RECV_DATA);
    uint32_t src = r32(IVC_REG_RECV_SRC);
    if (src == IVC_RECV_SRC_EMPTY) break;
    unsigned kind = (unsigned)(v & 15);
    if (kind == K_HELLO_FWD && (int)src == S.rank) {
      src = (uint32_t)(v >> 11) & 63;
      kind = K_HELLO;
    }
    if (kind == K_HELLO && src < IVC_MAX_RANKS) {
      pre[src].nonce = (uint32_t)(v >> 32);
      pre[src].n = (unsigned)(v >> 4) & 127;
    } else {
      C.stale_dropped++;
    }
  }
}

static int init_session(uint64_t deadline) {
  struct pre_hello pre[IVC_MAX_RANKS];
  memset(pre, 0, sizeof pre);
  uint32_t magic = r32(IVC_REG_MAGIC), version = r32(IVC_REG_VERSION);
  if (magic != IVC_MAGIC || version != IVC_VERSION) return IVC_ERR_NODEV;
  uint32_t rank = r32(IVC_REG_RANK), max = r32(IVC_REG_MAX_RANKS);
  uint32_t expected = r32(IVC_REG_EXPECTED);
  if (max == 0 || max > IVC_MAX_RANKS || rank >= max) return IVC_ERR_IO;
  S.rank = (int)rank;
  if (expected > max || (expected && rank >= expected)) return IVC_ERR_RANK;
  w32(IVC_REG_IRQ_ENABLE, IVC_IRQ_MESSAGE | IVC_IRQ_MEMBERS);
  w32(IVC_REG_IRQ_STATUS, IVC_IRQ_MEMBERS);
  S.members = r64(IVC_REG_MEMBERS);
  pre_drain(pre);

  if (expected) {
    uint64_t want = expected == 64 ? ~0ull : (1ull << expected) - 1;
    while ((S.members & want) != want) {
      if (deadline && now_ns() > deadline) return IVC_ERR_TIMEOUT;
      if (S.dev.ops->unmask(S.dev.dev) != 0) return IVC_ERR_IO;
      pre_drain(pre);
      if ((S.members & want) == want) break;
      if (S.dev.ops->wait_irq(S.dev.dev, SLEEP_TIMEOUT_MS) < 0) return IVC_ERR_IO;
      pre_drain(pre);
    }
    S.size = (int)expected;
  } else {
    uint64_t m = S.members | 1ull << rank;
    int hi = 63;
    while (!((m >> hi) & 1)) hi--;
    S.size = hi + 1;
  }

  S.slot = ivc__slot_size(S.dev.shm_size, (unsigned)S.size);
  if (!S.slot) return IVC_ERR_SIZE;
  S.ds = S.slot - IVC_RING_HDR_SIZE;
  for (int i = 0; i < S.size; i++) {
    struct peer* p = &S.peers[i];
    p->tx = ring_at(ivc__ring_offset(S.dev.shm_size, (unsigned)S.size, rank, (unsigned)i));
    p->txd = (uint8_t*)p->tx + IVC_RING_HDR_SIZE;
    p->rx = ring_at(ivc__ring_offset(S.dev.shm_size, (unsigned)S.size, (unsigned)i, rank));
    p->rxd = (uint8_t*)p->rx + IVC_RING_HDR_SIZE;
    if (i != S.rank && !((S.members >> i) & 1)) p->gone = GONE_ABSENT;
  }
  S.nonce = new_nonce();
  /* reset the rings this rank receives on; the nonce goes last */
  for (int i = 0; i < S.size; i++) {
    struct ring_hdr* r = S.peers[i].rx;
    atomic_store_explicit(&r->rx_nonce, 0, memory_order_seq_cst);
    atomic_store_explicit(&r->magic, IVC_RING_MAGIC, memory_order_relaxed);
    atomic_store_explicit(&r->version, IVC_RING_VERSION, memory_order_relaxed);
    atomic_store_explicit(&r->data_size, S.ds, memory_order_relaxed);
    atomic_store_explicit(&r->src, (uint32_t)i, memory_order_relaxed);
    atomic_store_explicit(&r->dst, rank, memory_order_relaxed);
    atomic_store_explicit(&r->nranks, (uint32_t)S.size, memory_order_relaxed);
    atomic_store_explicit(&r->head, 0, memory_order_relaxed);
    atomic_store_explicit(&r->tail, 0, memory_order_relaxed);
    atomic_store_explicit(&r->rx_waiting, 0, memory_order_relaxed);
    atomic_store_explicit(&r->tx_waiting, 0, memory_order_relaxed);
    atomic_store_explicit(&r->rx_nonce, S.nonce, memory_order_release);
  }
  atomic_thread_fence(memory_order_seq_cst);
  S.peers[S.rank].nonce = S.nonce;
  S.state = ST_INIT;
  for (unsigned i = 0; i < IVC_MAX_RANKS; i++) {
    if (pre[i].nonce) handle_hello(i, pre[i].nonce, pre[i].n);
  }
  uint64_t hello = K_HELLO | (uint64_t)S.size << 4 | (uint64_t)S.nonce << 32;
  for (int i = 0; i < S.size; i++) {
    if (i == S.rank || S.peers[i].gone) continue;
    int rc = mb_send(i, hello);
    if (rc == IVC_ERR_PEER_DEAD) {
      if (expected) return rc;
      mark_gone(&S.peers[i], GONE_ABSENT);
    } else if (rc) {
      return rc;
    }
  }
  struct waitctx w = {0};
  for (;;) {
    if (S.init_err) return S.init_err;
    if (S.fatal) return S.fatal;
    int missing = 0;
    for (int i = 0; i < S.size; i++) {
      struct peer* p = &S.peers[i];
      if (i == S.rank || p->nonce) continue;
      if (p->gone && expected) return IVC_ERR_PEER_DEAD;
      if (!p->gone) missing++;
    }
    if (!missing) break;
    if (deadline && now_ns() > deadline) return IVC_ERR_TIMEOUT;
    uint64_t seen = S.events;
    int rc = wait_step(&w, NULL, cond_events, &seen);
    if (rc) return rc;
  }
  S.state = ST_READY;
  return IVC_OK;
}

static void release_all(void) {
  while (S.first) free_entry(S.first);
  if (S.dev.ops) S.dev.ops->close(S.dev.dev);
  memset(&S, 0, sizeof S);
  S.active = -1;
}

int ivc_init(const char* group_name) {
  if (S.state != ST_NONE) return IVC_ERR_STATE;
  if (!group_name || !*group_name || strlen(group_name) >= IVC_GROUP_NAME_LEN) {
    return IVC_ERR_ARG;
  }
  memset(&S, 0, sizeof S);
  S.active = -1;
  S.send_dest = -1;
  S.ticks_per_s = timebase_hz();
  uint64_t spin_us = env_u64("IVC_SPIN_US", 1000);
  if (spin_us > 60000000) spin_us = 60000000;
  S.spin_len = S.ticks_per_s ? spin_us * S.ticks_per_s / 1000000 : spin_us * 1000;
  uint64_t timeout_s = env_u64("IVC_INIT_TIMEOUT", 300);
  uint64_t deadline = timeout_s ? now_ns() + timeout_s * 1000000000ull : 0;
  int rc = (opener_override ? opener_override : uio_open)(group_name, &S.dev);
  if (rc) {
    memset(&S, 0, sizeof S);
    return rc;
  }
  rc = init_session(deadline);
  if (rc) release_all();
  return rc;
}

int ivc_finalize(void) {
  if (S.state != ST_READY) return IVC_ERR_STATE;
  uint64_t bye = K_BYE | (uint64_t)S.nonce << 32;
  for (int i = 0; i < S.size; i++) {
    struct peer* p = &S.peers[i];
    if (i != S.rank && p->gone != GONE_DIED && p->gone != GONE_ABSENT) mb_send(i, bye);
  }
  for (int i = 0; i < S.size; i++) { /* close our rings: late senders fail instead of writing */
    uint32_t mine = S.nonce;
    atomic_compare_exchange_strong(&S.peers[i].rx->rx_nonce, &mine, 0);
  }
  for (int i = 0; i < IVC_MAX_RANKS; i++) { /* hellos for our next session */
    struct peer* p = &S.peers[i];
    if (p->fwd_nonce) {
      mb_send(S.rank, K_HELLO_FWD | (uint64_t)(p->fwd_n & 127) << 4 | (uint64_t)i << 11 |
                          (uint64_t)p->fwd_nonce << 32);
    }
  }
  release_all();
  return IVC_OK;
}

int ivc_comm_size(int* size) {
  if (S.state != ST_READY) return IVC_ERR_STATE;
  if (!size) return IVC_ERR_ARG;
  *size = S.size;
  return IVC_OK;
}

int ivc_comm_rank(int* rank) {
  if (S.state != ST_READY) return IVC_ERR_STATE;
  if (!rank) return IVC_ERR_ARG;
  *rank = S.rank;
  return IVC_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* send */

static int ring_send(struct peer* p, const uint8_t* buf, uint64_t len, int tag, int type) {
  struct waitctx w = {0};
  int64_t sp;
  if (p->tx_err) return p->tx_err; /* the ring is broken; the mailbox may still work */
  while ((sp = tx_space(p)) < (int64_t)IVC_MSG_HDR_SIZE) {
    if (sp < 0) return (int)sp;
    int r = wait_tx(p, IVC_MSG_HDR_SIZE, &w);
    if (r < 0) return r;
  }
  struct msg_hdr h = {IVC_MSG_MAGIC, (uint16_t)tag, (uint8_t)type, 0, p->tx_seq,
                      S.nonce,       len,           p->nonce,      0};
  h.check = fnv1a32(&h, offsetof(struct msg_hdr, check));
  memcpy(p->txd + p->tx_head % S.ds, &h, sizeof h);
  tx_publish(p, IVC_MSG_HDR_SIZE);
  int rc = mb_send(peer_index(p), K_ANNOUNCE | (uint64_t)(p->tx_seq & 0x0fffffffu) << 4 |
                                      (uint64_t)p->nonce << 32);
  if (rc) return rc;
  p->tx_seq++;
  C.ring_sent++;
  uint64_t body = align32(IVC_MSG_HDR_SIZE + len) - IVC_MSG_HDR_SIZE, done = 0;
  w.spin_end = 0;
  while (done < body) {
    sp = tx_space(p);
    if (sp < 0) return (int)sp;
    uint64_t off = p->tx_head % S.ds;
    uint64_t n = min64(min64((uint64_t)sp, body - done), min64(S.ds - off, CHUNK));
    /* the last payload byte goes out together with the padding */
    if (done + n >= len && done + n < body) n = len - 1 > done ? len - 1 - done : 0;
    if (n == 0) {
      int r = wait_tx(p, sp == 0 ? 1 : min64(body - done, S.ds), &w);
      if (r < 0) return r;
      continue;
    }
    w.spin_end = 0;
    if (done < len) memcpy(p->txd + off, buf + done, min64(n, len - done));
    done += n;
    tx_publish(p, n);
  }
  return IVC_OK;
}

int ivc_send(const void* buf, size_t count, int dest, int tag, int type) {
  if (S.state != ST_READY) return IVC_ERR_STATE;
  size_t es = esize(type);
  if (!es) return IVC_ERR_TYPE;
  if (tag < 0 || tag > 65535) return IVC_ERR_ARG;
  if (dest < 0 || dest >= S.size) return IVC_ERR_RANK;
  if (count > MAX_MSG / es) return IVC_ERR_SIZE;
  uint64_t len = (uint64_t)count * es;
  if (!buf && len) return IVC_ERR_ARG;
  if (S.fatal) return S.fatal;
  struct peer* p = &S.peers[dest];
  if (p->gone) return IVC_ERR_PEER_DEAD;
  int rc;
  if (len <= INLINE_MAX) {
    uint32_t payload = 0;
    for (unsigned i = 0; i < len; i++) payload |= (uint32_t)((const uint8_t*)buf)[i] << (8 * i);
    rc = mb_send(dest, K_INLINE | (uint64_t)type << 4 | (uint64_t)len << 8 | (uint64_t)tag << 16 |
                           (uint64_t)payload << 32);
    if (rc == IVC_OK) C.inline_sent++;
  } else {
    rc = ring_send(p, buf, len, tag, type);
  }
  if (rc == IVC_ERR_PEER_DEAD) mark_gone(p, GONE_DIED);
  if (rc == IVC_OK) C.bytes_sent += len;
  return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* receive */

static struct entry* find_match(int source, int tag) {
  for (struct entry* e = S.first; e; e = e->next) {
    if ((source == IVC_ANY_SOURCE || e->src == source) && (tag == IVC_ANY_TAG || e->tag == tag)) {
      return e;
    }
  }
  return NULL;
}

/* Why no message for (source) may ever come, or 0. */
static int recv_blocked(int source) {
  if (source != IVC_ANY_SOURCE) {
    struct peer* p = &S.peers[source];
    if (p->rx_err) return p->rx_err;
    if (source == S.rank) return IVC_ERR_STATE; /* nothing sent to ourselves: would hang */
    return p->gone ? IVC_ERR_PEER_DEAD : 0;
  }
  int live = 0;
  for (int i = 0; i < S.size; i++) {
    if (S.peers[i].rx_err) return S.peers[i].rx_err;
    if (i != S.rank && !S.peers[i].gone) live++;
  }
  return live ? 0 : IVC_ERR_PEER_DEAD;
}

static int deliver(struct entry* e, uint8_t* buf, uint64_t cap, int type, struct ivc_status* st) {
  if (st) {
    st->source = e->src;
    st->tag = e->tag;
    st->count = (size_t)(e->len / esize(e->type));
  }
  int rc = IVC_OK;
  uint64_t want = e->len;
  if (e->type != type) {
    rc = IVC_ERR_TYPE;
    want = 0;
  } else if (e->len > cap) {
    rc = IVC_ERR_SIZE;
    want = cap;
  }
  if (e->ring) {
    struct peer* p = &S.peers[e->src];
    int r = 0;
    S.active = e->src;
    /* the sender's earlier records are ahead of this one in the ring: copy them out */
    while (r >= 0 && p->rfirst != e) {
      struct entry* x = p->rfirst;
      if (!x->buf && x->len) {
        x->buf = malloc(x->len);
        if (!x->buf) {
          r = IVC_ERR_IO;
          break;
        }
        C.unexpected++;
      }
      r = entry_take(p, x, x->buf, x->len, 1);
    }
    if (r >= 0) {
      if (e->taken && want) memcpy(buf, e->buf, min64(e->taken, want));
      r = entry_take(p, e, buf, want, 1);
    }
    S.active = -1;
    if (r < 0) {
      /* the ring is mid-record: the sender is gone (IVC_ERR_PEER_DEAD) or its ring corrupt
       * (sticky), so nothing more will be read from it */
      if (r == IVC_ERR_IO) S.fatal = r;
      free_entry(e);
      return r;
    }
  } else if (want) {
    memcpy(buf, e->buf ? e->buf : e->small, want);
  }
  free_entry(e);
  return rc;
}

int ivc_recv_status(void* buf, size_t count, int source, int tag, int type, struct ivc_status* st) {
  if (S.state != ST_READY) return IVC_ERR_STATE;
  size_t es = esize(type);
  if (!es) return IVC_ERR_TYPE;
  if (tag != IVC_ANY_TAG && (tag < 0 || tag > 65535)) return IVC_ERR_ARG;
  if (source != IVC_ANY_SOURCE && (source < 0 || source >= S.size)) return IVC_ERR_RANK;
  if (count > MAX_MSG / es) return IVC_ERR_SIZE;
  uint64_t cap = (uint64_t)count * es;
  if (!buf && cap) return IVC_ERR_ARG;
  struct waitctx w = {0};
  int drained = 0;
  for (;;) {
    struct entry* e = find_match(source, tag);
    if (e) return deliver(e, buf, cap, type, st);
    if (S.fatal) return S.fatal;
    int r = recv_blocked(source);
    if (r) {
      if (drained) return r;
      /* what the peer sent before it went is in the mailbox already */
      check_members();
      while (drain_inbox() > 0) {
      }
      drained = 1;
      continue;
    }
    uint64_t seen = S.events;
    r = wait_step(&w, NULL, cond_events, &seen);
    if (r < 0) return r;
  }
}

int ivc_recv(void* buf, size_t count, int source, int tag, int type) {
  return ivc_recv_status(buf, count, source, tag, type, NULL);
}

const char* ivc_strerror(int err) {
  switch (err) {
    case IVC_OK:
      return "success";
    case IVC_ERR_NODEV:
      return "no ivc device for this group";
    case IVC_ERR_RANK:
      return "not a rank of the group";
    case IVC_ERR_TYPE:
      return "unknown type, or type differs from the sender's";
    case IVC_ERR_SIZE:
      return "message larger than the receive buffer, or count too large";
    case IVC_ERR_PEER_DEAD:
      return "peer left the group, finalized or restarted";
    case IVC_ERR_CORRUPT:
      return "corrupt ring or message header in shared memory";
    case IVC_ERR_STATE:
      return "not initialised, already initialised, or members disagree";
    case IVC_ERR_ARG:
      return "invalid argument";
    case IVC_ERR_IO:
      return "device access failed or out of memory";
    case IVC_ERR_TIMEOUT:
      return "timed out waiting for the group's members";
    default:
      return "unknown error";
  }
}

/* ------------------------------------------------------------------------------------------ */
/* the real device: /dev/uioN */

struct uio_dev {
  int fd;
  volatile uint8_t* regs;
  void* shm;
  size_t shm_len;
};

/* RISC-V: device accesses are ordered against memory accesses on both sides (the mailbox
 * value announces data written to the shared memory before it). */
static inline void io_fence(void) {
#if defined(__riscv)
  __asm__ volatile("fence iorw, iorw" ::: "memory");
#else
  atomic_thread_fence(memory_order_seq_cst);
#endif
}

static uint32_t uio_read32(void* d, uint32_t off) {
  struct uio_dev* u = d;
  io_fence();
  uint32_t v = *(volatile uint32_t*)(u->regs + off);
  io_fence();
  return v;
}

static uint64_t uio_read64(void* d, uint32_t off) {
  struct uio_dev* u = d;
  io_fence();
  uint64_t v = *(volatile uint64_t*)(u->regs + off);
  io_fence();
  return v;
}

static void uio_write32(void* d, uint32_t off, uint32_t v) {
  struct uio_dev* u = d;
  io_fence();
  *(volatile uint32_t*)(u->regs + off) = v;
  io_fence();
}

static void uio_write64(void* d, uint32_t off, uint64_t v) {
  struct uio_dev* u = d;
  io_fence();
  *(volatile uint64_t*)(u->regs + off) = v;
  io_fence();
}

static int uio_unmask(void* d) {
  struct uio_dev* u = d;
  uint32_t one = 1;
  for (;;) {
    ssize_t n = write(u->fd, &one, sizeof one);
    if (n == (ssize_t)sizeof one) return 0;
    if (n < 0 && errno == EINTR) continue;
    return -1;
  }
}

static int uio_wait_irq(void* d, int timeout_ms) {
  struct uio_dev* u = d;
  struct pollfd pfd = {u->fd, POLLIN, 0};
  int r = poll(&pfd, 1, timeout_ms);
  if (r < 0) return errno == EINTR ? 1 : -1;
  if (r == 0) return 0;
  uint32_t count;
  ssize_t n = read(u->fd, &count, sizeof count);
  if (n == (ssize_t)sizeof count) return 1;
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
  return -1;
}

static void uio_close(void* d) {
  struct uio_dev* u = d;
  if (u->shm) munmap(u->shm, u->shm_len);
  if (u->regs) munmap((void*)(uintptr_t)u->regs, IVC_REGS_SIZE);
  if (u->fd >= 0) close(u->fd);
  free(u);
}

static const struct ivc_backend uio_backend = {
    uio_read32, uio_read64, uio_write32, uio_write64, uio_unmask, uio_wait_irq, uio_close,
};

static int read_small_file(const char* path, char* buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = 0;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
  return 0;
}

/* Tries /dev/uioN (N = `name` + 3) for the group: 0, IVC_ERR_NODEV (not the group's) or
 * IVC_ERR_IO. */
static int uio_try(const char* name, const char* group, struct ivc_device* out) {
  char path[128], text[80];
  snprintf(path, sizeof path, "/sys/class/uio/%s/name", name);
  if (read_small_file(path, text, sizeof text) != 0 || strcmp(text, "ivc") != 0) {
    return IVC_ERR_NODEV;
  }
  struct uio_dev* u = calloc(1, sizeof *u);
  if (!u) return IVC_ERR_IO;
  snprintf(path, sizeof path, "/dev/%s", name);
  u->fd = open(path, O_RDWR | O_CLOEXEC);
  if (u->fd < 0) {
    free(u);
    return errno == ENOENT ? IVC_ERR_NODEV : IVC_ERR_IO;
  }
  void* regs = mmap(NULL, IVC_REGS_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, u->fd, 0);
  if (regs == MAP_FAILED) {
    uio_close(u);
    return IVC_ERR_IO;
  }
  u->regs = regs;
  if (uio_read32(u, IVC_REG_MAGIC) != IVC_MAGIC || uio_read32(u, IVC_REG_VERSION) != IVC_VERSION) {
    uio_close(u);
    return IVC_ERR_NODEV;
  }
  char gname[IVC_GROUP_NAME_LEN + 1];
  for (unsigned i = 0; i < IVC_GROUP_NAME_LEN / 4; i++) {
    uint32_t v = uio_read32(u, IVC_REG_GROUP_NAME + 4 * i);
    for (unsigned b = 0; b < 4; b++) gname[4 * i + b] = (char)(v >> (8 * b));
  }
  gname[IVC_GROUP_NAME_LEN] = 0;
  if (strcmp(gname, group) != 0) {
    uio_close(u);
    return IVC_ERR_NODEV;
  }
  uint64_t size = uio_read64(u, IVC_REG_SHM_SIZE);
  snprintf(path, sizeof path, "/sys/class/uio/%s/maps/map1/size", name);
  if (read_small_file(path, text, sizeof text) == 0) {
    unsigned long long map_size = strtoull(text, NULL, 0);
    if (map_size && map_size < size) size = map_size; /* never map beyond the window */
  }
  long page = sysconf(_SC_PAGESIZE);
  if (size == 0 || page <= 0) {
    uio_close(u);
    return IVC_ERR_IO;
  }
  void* shm = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, u->fd, (off_t)page);
  if (shm == MAP_FAILED) {
    uio_close(u);
    return IVC_ERR_IO;
  }
  u->shm = shm;
  u->shm_len = size;
  out->ops = &uio_backend;
  out->dev = u;
  out->shm = shm;
  out->shm_size = size;
  return IVC_OK;
}

static int uio_open(const char* group, struct ivc_device* out) {
  DIR* d = opendir("/sys/class/uio");
  if (!d) return IVC_ERR_NODEV;
  int rc = IVC_ERR_NODEV;
  for (struct dirent* de; (de = readdir(d)) != NULL;) {
    if (strncmp(de->d_name, "uio", 3) != 0 || de->d_name[3] < '0' || de->d_name[3] > '9') {
      continue;
    }
    int r = uio_try(de->d_name, group, out);
    if (r == IVC_OK) {
      rc = IVC_OK;
      break;
    }
    if (r == IVC_ERR_IO) rc = r;
  }
  closedir(d);
  return rc;
}
