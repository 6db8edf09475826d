// The control block of an inter-VM communication group (docs/IVC.md): a file that every
// member process maps, holding the group's parameters, one slot per rank (who holds it) and
// one inbox per rank (the mailbox FIFO). The layout is shared between dvmm processes, so it
// is plain data with a magic and a version; the atomics are lock-free and address-free, which
// makes them work across processes.
//
// An inbox is a bounded multi-producer queue (Vyukov's array queue): a sender claims a
// position with a CAS on `enqueue_pos`, writes the cell and publishes it by storing the
// cell's sequence; the single consumer (the owning VM) pops in order. Messages from one
// sender therefore arrive in the order it sent them.
//
// Threads: any thread of any member process; every operation is lock-free.
#pragma once

#include <atomic>
#include <cstddef>

#include "base/types.hpp"

namespace dvmm::devices::ivc {

inline constexpr u64 kControlMagic = 0x4c5254434349'5644;  // "DVICCTRL"
inline constexpr u32 kControlVersion = 1;
inline constexpr unsigned kMaxRanks = 64;
inline constexpr unsigned kInboxCapacity = 1024;  // a power of two

static_assert(std::atomic<u64>::is_always_lock_free);
static_assert(std::atomic<i64>::is_always_lock_free);

struct InboxCell {
  std::atomic<u64> sequence;
  u64 value;
  u32 source;
  u32 reserved;
};

struct alignas(64) Inbox {
  alignas(64) std::atomic<u64> enqueue_pos;
  alignas(64) std::atomic<u64> dequeue_pos;
  InboxCell cells[kInboxCapacity];

  // Empties the inbox. Only while nobody can send to it (its rank has no member).
  void reset() {
    for (unsigned i = 0; i < kInboxCapacity; ++i) {
      cells[i].sequence.store(i, std::memory_order_relaxed);
    }
    enqueue_pos.store(0, std::memory_order_relaxed);
    dequeue_pos.store(0, std::memory_order_release);
  }

  enum class PushResult { kPushed, kPushedFirst, kFull };
  // kPushedFirst: the consumer had taken every older message when this one was published,
  // so it may be waiting and needs a doorbell. The store of the cell's sequence and the
  // load of dequeue_pos are ordered by a full fence, matching the one in pop(): either the
  // sender sees that the consumer reached this message, or the consumer sees it published.
  PushResult push(u32 source, u64 value) {
    u64 pos = enqueue_pos.load(std::memory_order_relaxed);
    for (;;) {
      InboxCell& cell = cells[pos & (kInboxCapacity - 1)];
      const u64 seq = cell.sequence.load(std::memory_order_acquire);
      const i64 diff = static_cast<i64>(seq) - static_cast<i64>(pos);
      if (diff == 0) {
        if (enqueue_pos.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
          cell.value = value;
          cell.source = source;
          cell.sequence.store(pos + 1, std::memory_order_release);
          std::atomic_thread_fence(std::memory_order_seq_cst);
          return dequeue_pos.load(std::memory_order_relaxed) == pos ? PushResult::kPushedFirst
                                                                    : PushResult::kPushed;
        }
      } else if (diff < 0) {
        return PushResult::kFull;
      } else {
        pos = enqueue_pos.load(std::memory_order_relaxed);
      }
    }
  }

  // Consumer only. False when the oldest message is not published yet (or there is none).
  bool pop(u32* source, u64* value) {
    const u64 pos = dequeue_pos.load(std::memory_order_relaxed);
    InboxCell& cell = cells[pos & (kInboxCapacity - 1)];
    if (cell.sequence.load(std::memory_order_acquire) != pos + 1) return false;
    *value = cell.value;
    *source = cell.source;
    cell.sequence.store(pos + kInboxCapacity, std::memory_order_release);
    dequeue_pos.store(pos + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return true;
  }

  // Consumer only: published messages in order from the oldest (a claimed but unpublished
  // cell ends the count: it cannot be popped yet).
  u32 ready() const {
    const u64 pos = dequeue_pos.load(std::memory_order_relaxed);
    u32 n = 0;
    while (n < kInboxCapacity && cells[(pos + n) & (kInboxCapacity - 1)].sequence.load(
                                     std::memory_order_acquire) == pos + n + 1) {
      ++n;
    }
    return n;
  }
};

struct alignas(64) RankSlot {
  // The member process holding this rank, 0 when free. A member that died keeps its pid
  // here until another member notices (its pidfd) and clears it under the group lock.
  std::atomic<i32> pid;
  u32 reserved;
  // The member's process start time (/proc/PID/stat field 22), so a reused pid is not
  // taken for the member.
  std::atomic<u64> start_time;
  // Incremented on every join of this rank.
  std::atomic<u64> joins;
};

struct ControlBlock {
  u64 magic;
  u32 version;
  u32 max_ranks;
  u64 shm_size;
  u32 inbox_capacity;
  u32 reserved;
  RankSlot slots[kMaxRanks];
  Inbox inboxes[kMaxRanks];
};

inline constexpr std::size_t kControlBlockSize = (sizeof(ControlBlock) + 4095) & ~std::size_t{4095};

}  // namespace dvmm::devices::ivc
