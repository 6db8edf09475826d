/* A fake of the dvmm ivc device (docs/IVC.md) in host memory, for testing libdvmmipc without
 * a VM: one group = a control block and a shared memory in a MAP_SHARED mapping that forked
 * processes inherit. Each process plays one VM (one rank).
 *
 * It implements the register semantics of docs/IVC.md: MAGIC .. GROUP_NAME, 32-bit and 64-bit
 * registers that take only their width (other widths read 0 and ignore writes, and are
 * counted in `width_errors`), a per-rank inbox FIFO of 1024 values with SEND_STATUS OK /
 * NOT_MEMBER / FULL / BAD_RANK, MEMBERS and GENERATION, IRQ_STATUS (MESSAGE is a level, MEMBERS
 * write-1-to-clear), IRQ_ENABLE, and the interrupt as uio_pdrv_genirq presents it: the line
 * is the level IRQ_STATUS & IRQ_ENABLE; when it fires the "kernel" masks it and counts it;
 * unmask (the write of 1 to /dev/uioN) re-enables it; wait (read() of /dev/uioN) blocks until
 * the count differs from the one this process last saw.
 *
 * The control block is protected by one lock that records its holder's pid, so a process
 * killed in the middle of a register access does not wedge the others.
 */
#ifndef DVMMIPC_FAKE_H
#define DVMMIPC_FAKE_H

#include <stdint.h>

struct ivc_fake_group;

/* Creates a group (in MAP_SHARED memory: create before fork). NULL on failure. */
struct ivc_fake_group* ivc_fake_create(const char* name, uint64_t shm_size, uint32_t expected);
void ivc_fake_destroy(struct ivc_fake_group* g);

/* Rank `rank` joins (its VM starts): MEMBERS bit set, its inbox emptied, a membership
 * interrupt for the others. Any process may call it. */
void ivc_fake_join(struct ivc_fake_group* g, int rank);
/* Rank `rank` leaves (its VM died or stopped): MEMBERS bit cleared, membership interrupt. */
void ivc_fake_leave(struct ivc_fake_group* g, int rank);

/* Makes this process's libdvmmipc open `g` as rank `rank` (through ivc__set_opener). */
void ivc_fake_use(struct ivc_fake_group* g, int rank);

/* The group's shared memory (what map1 would be), its size, and the number of register
 * accesses of the wrong width seen so far. */
void* ivc_fake_shm(struct ivc_fake_group* g);
uint64_t ivc_fake_shm_size(struct ivc_fake_group* g);
uint64_t ivc_fake_width_errors(struct ivc_fake_group* g);

#endif /* DVMMIPC_FAKE_H */
