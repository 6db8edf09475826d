/* libdvmmipc: MPI-like messages between VMs of one dvmm inter-VM communication group.
 *
 * The group's device (`dvmm run --ivc GROUP`, docs/IVC.md) appears in the guest as /dev/uioN
 * with /sys/class/uio/uioN/name = "ivc": mailbox registers (map0) and a shared memory (map1).
 * Messages of up to 4 bytes travel in one mailbox register write; larger ones stream through
 * a ring per ordered pair of ranks in the shared memory (the protocol is described at the top
 * of dvmmipc.c and in docs/IVC.md, section "Protocol").
 *
 * Semantics:
 * - `count` is in elements of `type`; a message carries its type, and a receive whose type
 *   differs fails with IVC_ERR_TYPE.
 * - Tags are 0..65535; IVC_ANY_TAG and IVC_ANY_SOURCE are for receives only.
 * - Matching is MPI's: a receive takes the oldest message that matches its source and tag;
 *   messages from one sender to one receiver are never overtaken by later ones of the same
 *   pair. A message that matches no receive yet is kept (copied into the library) for a later
 *   receive.
 * - Sends are blocking: ivc_send returns when the whole message is in the receiver's ring or
 *   mailbox (not when it is received). While a send or receive waits, the library keeps taking
 *   in messages that arrive for this rank, so two ranks that send to each other at the same
 *   time do not deadlock (the incoming message is then copied into the library).
 * - A receive that fails with IVC_ERR_TYPE or IVC_ERR_SIZE consumes the message (for
 *   IVC_ERR_SIZE the buffer holds its first `count` elements); the status, if asked for,
 *   describes the message.
 * - A wait for a rank that died (its VM left the group), finalized, or restarted its program
 *   ends with IVC_ERR_PEER_DEAD; messages it sent before are still delivered.
 * - Not thread-safe: one thread of one process at a time uses the library (the device is
 *   driven by one thread; see docs/IVC.md).
 *
 * Environment: IVC_INIT_TIMEOUT (seconds ivc_init waits for the members and their hellos,
 * default 300, 0 = forever), IVC_SPIN_US (microseconds a wait spins before it sleeps on the
 * interrupt, default 1000: longer than a round trip between two guests, so a ping-pong
 * does not sleep).
 */
#ifndef DVMMIPC_H
#define DVMMIPC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ivc_type { IVC_BYTE = 1, IVC_CHAR, IVC_INT32, IVC_INT64, IVC_FLOAT, IVC_DOUBLE };

#define IVC_ANY_SOURCE (-1)
#define IVC_ANY_TAG (-1)

enum ivc_error {
  IVC_OK = 0,
  IVC_ERR_NODEV = -1,     /* no such group / no device */
  IVC_ERR_RANK = -2,      /* dest/source not a rank of the group */
  IVC_ERR_TYPE = -3,      /* type unknown or differs from the sender's */
  IVC_ERR_SIZE = -4,      /* message larger than the receive buffer, or count too large */
  IVC_ERR_PEER_DEAD = -5, /* the peer left the group, finalized or restarted */
  IVC_ERR_CORRUPT = -6,   /* ring header or message header fails validation */
  IVC_ERR_STATE = -7,     /* not initialised / already initialised / members disagree */
  IVC_ERR_ARG = -8,       /* bad argument (NULL buffer, tag out of range, ...) */
  IVC_ERR_IO = -9,        /* device access failed, or out of memory */
  IVC_ERR_TIMEOUT = -10   /* ivc_init: members or hellos missing after IVC_INIT_TIMEOUT */
};

struct ivc_status {
  int source;   /* rank the message came from */
  int tag;      /* its tag */
  size_t count; /* elements of its type that it carried */
};

/* Attaches the device of group `group_name`, waits for EXPECTED members (if the device sets
 * it) and for every peer's hello. Comm size = EXPECTED, or the highest live rank + 1. */
int ivc_init(const char* group_name);
int ivc_finalize(void);
int ivc_comm_size(int* size);
int ivc_comm_rank(int* rank);
int ivc_send(const void* buf, size_t count, int dest, int tag, int type);
int ivc_recv(void* buf, size_t count, int source, int tag, int type);
int ivc_recv_status(void* buf, size_t count, int source, int tag, int type, struct ivc_status* st);
const char* ivc_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* DVMMIPC_H */
