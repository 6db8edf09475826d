#include "dsm/inproc_transport.hpp"

#include <chrono>
#include <cstring>
#include <stdexcept>

namespace dvmm::dsm {

class InProcNetwork::Endpoint final : public Transport {
 public:
  Endpoint(InProcNetwork& net, NodeId self) : net_(net), self_(self) {}
  NodeId self() const override { return self_; }
  unsigned node_count() const override { return net_.nodes_; }
  void set_receiver(Receiver receiver) override {
    std::lock_guard lock(rx_mutex_);
    receiver_ = std::move(receiver);
  }
  bool send(NodeId to, std::span<const u8> header, std::span<const u8> payload) override {
    return net_.post(self_, to, header, payload);
  }
  // Held while the receiver runs, so that detaching waits for a delivery in progress.
  std::mutex rx_mutex_;
  Receiver receiver_;

 private:
  InProcNetwork& net_;
  NodeId self_;
};

InProcNetwork::InProcNetwork(unsigned nodes, InProcOptions options)
    : nodes_(nodes), options_(options) {
  if (nodes == 0 || nodes > kMaxNodes) throw std::invalid_argument("inproc: 1 to 64 nodes");
  for (unsigned n = 0; n < nodes; ++n) {
    endpoints_.push_back(std::make_unique<Endpoint>(*this, static_cast<NodeId>(n)));
    auto q = std::make_unique<Queue>();
    q->from.resize(nodes);
    q->rng.seed(options.seed * 0x9E3779B97F4A7C15ull + n);
    queues_.push_back(std::move(q));
  }
}

InProcNetwork::~InProcNetwork() {
  stop();
}

Transport& InProcNetwork::endpoint(NodeId n) {
  return *endpoints_.at(n);
}

void InProcNetwork::start() {
  if (running_.exchange(true)) return;
  for (unsigned n = 0; n < nodes_; ++n) {
    queues_[n]->thread = std::thread([this, n] { deliver_loop(static_cast<NodeId>(n)); });
  }
}

void InProcNetwork::stop() {
  if (!running_.exchange(false)) return;
  for (auto& q : queues_) {
    { std::lock_guard lock(q->mutex); }
    q->cv.notify_all();
  }
  for (auto& q : queues_) {
    if (q->thread.joinable()) q->thread.join();
  }
}

bool InProcNetwork::post(NodeId from, NodeId to, std::span<const u8> header,
                         std::span<const u8> payload) {
  if (to >= nodes_ || to == from) return false;
  std::vector<u8> bytes(header.size() + payload.size());
  if (!header.empty()) std::memcpy(bytes.data(), header.data(), header.size());
  if (!payload.empty()) std::memcpy(bytes.data() + header.size(), payload.data(), payload.size());
  Queue& q = *queues_[to];
  {
    std::lock_guard lock(q.mutex);
    q.from[from].push_back(std::move(bytes));
    if (!options_.shuffle) q.order.push_back(from);
    ++q.pending;
  }
  q.cv.notify_one();
  return true;
}

void InProcNetwork::deliver_loop(NodeId n) {
  Queue& q = *queues_[n];
  Endpoint& ep = *endpoints_[n];
  std::unique_lock lock(q.mutex);
  for (;;) {
    q.cv.wait(lock, [&] { return q.pending != 0 || !running_.load(); });
    if (!running_.load()) return;
    NodeId src = 0;
    if (options_.shuffle) {
      if ((q.rng() & 255) < options_.pause_chance) {
        // Let other senders' messages arrive so there is something to reorder.
        lock.unlock();
        std::this_thread::sleep_for(std::chrono::microseconds(q.rng() % 50));
        lock.lock();
        if (!running_.load()) return;
      }
      // A uniformly random non-empty sender queue; its head keeps the pair FIFO.
      unsigned nonempty = 0;
      for (auto& f : q.from) nonempty += !f.empty();
      unsigned pick = static_cast<unsigned>(q.rng() % nonempty);
      for (unsigned s = 0; s < nodes_; ++s) {
        if (q.from[s].empty()) continue;
        if (pick-- == 0) {
          src = static_cast<NodeId>(s);
          break;
        }
      }
    } else {
      src = q.order.front();
      q.order.pop_front();
    }
    std::vector<u8> bytes = std::move(q.from[src].front());
    q.from[src].pop_front();
    --q.pending;
    lock.unlock();
    {
      std::lock_guard rx(ep.rx_mutex_);
      if (ep.receiver_) ep.receiver_(src, bytes);
    }
    delivered_.fetch_add(1, std::memory_order_relaxed);
    lock.lock();
  }
}

}  // namespace dvmm::dsm
