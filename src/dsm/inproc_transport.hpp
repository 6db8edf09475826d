// An in-process transport for tests: N endpoints inside one process, one delivery thread
// per destination node.
//
// In order mode each destination receives messages in global send order. In shuffle
// mode each destination picks, with a seeded generator, which sender's queue to deliver
// from next and sometimes pauses to let messages pile up, so messages from different
// senders are reordered (as a real network may) while each ordered pair stays FIFO (the
// Transport contract). Thread scheduling still adds its own nondeterminism; the seed
// makes runs vary, not repeat exactly.
//
// Threads: send() from any thread; the receiver of node n runs on n's delivery thread.
// start() and stop() from the owning (test) thread. Stop the network before destroying
// the receivers' owners.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "dsm/transport.hpp"

namespace dvmm::dsm {

struct InProcOptions {
  bool shuffle = false;
  u64 seed = 0;
  // Shuffle mode: probability (in 1/256) that a delivery thread pauses briefly before
  // delivering, letting more messages from other senders arrive first.
  unsigned pause_chance = 32;
};

class InProcNetwork {
 public:
  InProcNetwork(unsigned nodes, InProcOptions options = {});
  ~InProcNetwork();
  InProcNetwork(const InProcNetwork&) = delete;
  InProcNetwork& operator=(const InProcNetwork&) = delete;

  Transport& endpoint(NodeId n);
  void start();
  // Stops delivering and joins the threads; undelivered messages are dropped.
  void stop();
  u64 delivered() const { return delivered_.load(std::memory_order_relaxed); }

 private:
  class Endpoint;
  struct Queue {
    std::mutex mutex;
    std::condition_variable cv;
    // One FIFO per sender; `order` holds senders in global send order (in-order mode).
    std::vector<std::deque<std::vector<u8>>> from;
    std::deque<NodeId> order;
    std::size_t pending = 0;
    std::mt19937_64 rng;
    std::thread thread;
  };

  bool post(NodeId from, NodeId to, std::span<const u8> header, std::span<const u8> payload);
  void deliver_loop(NodeId n);

  unsigned nodes_;
  InProcOptions options_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::atomic<bool> running_{false};
  std::atomic<u64> delivered_{0};
};

}  // namespace dvmm::dsm
