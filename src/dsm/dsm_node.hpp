// The DSM runtime of one node: owns the protocol state of every page on this node (the
// cache entries of all pages and the directory of the pages whose home it is), takes
// messages from the transport and local faults from vCPUs, steps the pure protocol
// (protocol.hpp) and performs its actions on LocalPages and the Transport.
//
// Processing model. Inputs (messages, local faults, evictions) go into one inbox per node
// and are processed one at a time, in order, by whichever thread finds nobody processing:
// the transport's delivery thread (no thread hop for network messages), a vCPU blocked
// in acquire() (no hop for its own fault), or the node's service thread (for inputs that
// were held back; see below). The mutex guards only the queues; the protocol step and its
// actions run outside it, so a processor may block waiting for harts to flush their TLBs
// while other threads keep queueing. A processing vCPU passes its `serve` hook, which is
// called while it waits for flushes, so its own hart's flush never waits on itself.
//
// Holds. A page just granted to waiting vCPUs is kept for them until they have returned
// from acquire() (at most DsmOptions::max_hold): inputs that could take it away are set
// aside per page, in order, meanwhile. Without this, two nodes hammering one page can
// each lose it before using it, forever. Inputs for other pages are not delayed; the
// protocol is per page, so reordering across pages is safe.
//
// Threads: acquire(), evict(), notify_waiters(), counters() and top_bounced() from any
// thread. start() and stop() from the owner. The receiver it installs on the transport runs
// on the transport's thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/latency_stats.hpp"
#include "base/types.hpp"
#include "dsm/local_pages.hpp"
#include "dsm/protocol.hpp"
#include "dsm/transport.hpp"
#include "dsm/wire.hpp"

namespace dvmm::dsm {

struct DsmOptions {
  // Longest time a fresh grant is held for the local waiters it woke (see Holds above).
  std::chrono::microseconds max_hold{2000};
  // A blocked acquire() re-checks and runs its serve hook at least this often.
  std::chrono::microseconds poll{200};
  // After sending its request, acquire() spins this long for the grant before it sleeps
  // (a remote fault is served in tens of microseconds; a sleep and wake-up cost as much).
  std::chrono::microseconds spin{20};
  // Process messages on the transport's thread as they arrive (no thread hop). Off: hand
  // them to the node's service thread, so the transport's thread never waits for harts to
  // flush (useful when other channels share that thread), at the cost of a wake-up.
  bool inline_receive = true;
  // Where rejected messages are reported; default: stderr.
  std::function<void(const std::string&)> log;
};

// A snapshot of the node's counters.
struct DsmCounters {
  u64 faults_read = 0;  // acquire() calls that had to wait, by access type
  u64 faults_write = 0;
  u64 faults_execute = 0;
  u64 requests_sent = 0;  // read/write requests to a remote home
  u64 evictions_sent = 0;
  u64 messages_sent = 0;
  u64 messages_received = 0;
  u64 pages_sent = 0;  // messages carrying a page
  u64 pages_received = 0;
  u64 invalidations_sent = 0;  // Invalidate and FetchInvalidate
  u64 invalidations_received = 0;
  u64 downgrades_sent = 0;
  u64 downgrades_received = 0;
  u64 upgrades = 0;      // write grants without data (Read -> ReadWrite) received here
  u64 transactions = 0;  // completed at this home
  u64 bounces = 0;       // of those, the ones that took the page from another node
  u64 queued = 0;        // remote requests that waited behind another transaction here
  u64 holds = 0;         // inputs set aside while a fresh grant was held for local waiters
  u64 rejected = 0;      // malformed or unexpected messages (logged)
  // Fault service time: from an acquire() that had to wait to the access being allowed,
  // for pages homed on another node, and for pages homed here (whose copies elsewhere had
  // to be recalled).
  LatencySummary fault_remote_home;
  LatencySummary fault_local_home;
};

struct PageBounce {
  u64 page = 0;  // page index in guest RAM
  u64 count = 0;
};

class DsmNode {
 public:
  // `local` covers exactly the pages of `homes`; `transport` has homes.node_count() nodes.
  DsmNode(const HomeMap& homes, LocalPages& local, Transport& transport, DsmOptions options = {});
  ~DsmNode();
  DsmNode(const DsmNode&) = delete;
  DsmNode& operator=(const DsmNode&) = delete;

  // Sets every page's local access to its initial state (the home ReadWrite, others None),
  // installs the transport receiver and starts the service thread. Before the transport
  // delivers and before any acquire().
  void start();
  // Wakes every blocked acquire() (they return false), waits for the input being
  // processed (if any: its flush wait must be able to finish), joins the service thread
  // and detaches from the transport. Idempotent; the destructor calls it. Blocked
  // acquire() callers must have returned before the node is destroyed.
  void stop();

  // Blocks until this node may perform `type` on the page holding `gpa`. The page may be
  // taken away again at any time after it returns (the vCPU re-runs and faults again).
  // `serve` is called repeatedly while blocked and while this thread waits for harts to
  // flush: a vCPU thread passes its hart's service_requests, so that this hart can drop
  // pages that other transactions take away meanwhile. `give_up` (a cheap flag test, called
  // with an internal lock held) ends the wait early, e.g. when the VM stops. False only
  // when stopping or giving up.
  bool acquire(Gpa gpa, AccessType type, const WaitHook& serve = {},
               const std::function<bool()>& give_up = {});
  // Asks the home to take this node's copy of the page back (no effect at the home).
  // Asynchronous: the service thread sends the request.
  void evict(Gpa gpa);
  // Makes blocked acquire() calls run their serve hooks now (e.g. from a hart's wakeup
  // callback when a flush is requested), instead of at the next poll.
  void notify_waiters();

  NodeId self() const { return self_; }
  const HomeMap& homes() const { return homes_; }
  DsmCounters counters() const;
  // The pages homed here that bounced most between nodes, most first.
  std::vector<PageBounce> top_bounced(std::size_t n) const;

  // Tests and debugging: the protocol state of a page. Only meaningful when the node is
  // quiescent (idle() and no messages in flight).
  PageState debug_state(u64 page) const;
  bool idle() const;

 private:
  using PageBuf = std::array<u8, kPageSize>;
  struct Input {
    enum class Kind : u8 { kMessage, kFault, kEvict };
    Kind kind = Kind::kMessage;
    u64 page = 0;
    AccessType type = AccessType::kRead;  // kFault
    Message msg;                          // kMessage
    std::unique_ptr<PageBuf> payload;     // kMessage carrying data
  };
  struct Waiter {
    u64 page;
    PageAccess need;
    bool refault = false;  // the page was taken away after a grant: fault again
  };
  using Clock = std::chrono::steady_clock;

  void on_receive(NodeId from, std::span<const u8> bytes);
  void push_and_process(Input in, const WaitHook& hook, bool process_here);
  void process_locked(std::unique_lock<std::mutex>& lock, const WaitHook& hook);
  bool take_next_locked(Input& in);
  bool has_work_locked();
  bool held_locked(u64 page, Clock::time_point now);
  void handle(Input& in, const WaitHook& hook);
  void execute(const Step& step, Input& in, const WaitHook& hook);
  void service_loop();
  void reject(const std::string& why);
  bool is_home(u64 page) const { return page - home_first_ < home_count_; }

  const NodeId self_;
  const HomeMap homes_;
  LocalPages& local_;
  Transport& transport_;
  const DsmOptions options_;
  const WireLimits limits_;
  const u64 home_first_;
  const u64 home_count_;

  // Protocol state: touched only by the current processor (handed over under mutex_).
  std::vector<CacheEntry> cache_;                      // every page
  std::vector<DirEntry> dir_;                          // pages homed here, from home_first_
  std::unique_ptr<std::atomic<u64>[]> bounce_counts_;  // pages homed here

  mutable std::mutex mutex_;
  std::condition_variable waiters_cv_;
  std::condition_variable service_cv_;
  std::condition_variable idle_cv_;  // processing_ went false (for stop())
  std::deque<Input> inbox_;
  std::map<u64, std::deque<Input>> deferred_;          // held-back inputs per page, in order
  std::unordered_map<u64, Clock::time_point> raised_;  // when a page was granted to waiters
  std::vector<Waiter*> waiters_;
  bool processing_ = false;
  bool stopping_ = false;
  bool started_ = false;
  std::thread service_;

  struct AtomicCounters {
    std::atomic<u64> faults[3]{};
    std::atomic<u64> requests_sent{0}, evictions_sent{0}, messages_sent{0}, messages_received{0},
        pages_sent{0}, pages_received{0}, invalidations_sent{0}, invalidations_received{0},
        downgrades_sent{0}, downgrades_received{0}, upgrades{0}, transactions{0}, bounces{0},
        queued{0}, holds{0}, rejected{0};
  };
  AtomicCounters counters_;
  LatencyStats fault_remote_home_;
  LatencyStats fault_local_home_;
};

}  // namespace dvmm::dsm
