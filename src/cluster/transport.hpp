// The message transport between the node processes of one VM (ranks 0..N-1): an interface
// that the DSM, the vCPU layer (IPIs, RFENCE, HSM, interrupt lines), MMIO forwarding and the
// control plane share, each on its own channel. ucx_transport.hpp implements it on UCX.
//
// Contract every implementation keeps:
//  - Ordering: FIFO per ordered pair of nodes *across all channels*: if node A sends m1
//    (on any channel) and then m2 (on any channel) to B from one thread, or from several
//    threads with the second send() starting after the first returned, B's receivers see
//    m1 before m2. Nothing is promised between different pairs.
//  - Delivery: receivers run on the transport's progress thread (or on a thread inside
//    poll_until()), one call at a time for the whole node (never concurrently with each
//    other or themselves), never from inside send(). The byte span is valid only during
//    the call. A receiver may block for a short while (the DSM waits there for its
//    harts to flush their TLBs; no other message of this node is delivered meanwhile)
//    and may call send().
//  - Nothing is delivered before start_delivery(): wire the receivers, then start. What
//    arrives before is kept, in arrival order, and delivered first. A message on a channel
//    that has no receiver after the start is kept (up to a bound) until one is set; such
//    kept messages stay in order within their channel but are overtaken by the other
//    channels' messages, so wire every channel a peer may use before starting.
//  - send() may be called from any thread, copies the bytes before it returns, does not
//    block on the network and never calls a receiver. It returns false when the
//    destination is out of range, has failed, or the transport is shut down.
//  - Sending to self() is allowed and goes through the same queue (delivered later on the
//    progress thread, in order).
//  - `from` passed to a receiver is the sender as the transport knows it (the rank in a
//    message tagged with this cluster's session id; see ucx_transport.hpp for the limits).
//  - Peer failure (a process that dies, stops answering, leaves, or violates the wire
//    protocol) is reported once per peer through on_peer_failure, where receivers run,
//    naming the node; afterwards nothing from that peer is delivered and sends to it fail.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>

#include "base/types.hpp"

namespace dvmm::cluster {

using NodeId = u16;
// Same bound as the DSM's node sets (dsm::kMaxNodes).
inline constexpr unsigned kMaxNodes = 64;

// Kept small and dense: a channel indexes arrays and travels in one byte.
enum class Channel : u8 {
  kDsm = 0,        // coherence protocol (dsm_adapter.hpp)
  kControl = 1,    // join, machine description, VM lifecycle
  kCpu = 2,        // IPIs, RFENCE, HSM, interrupt lines
  kMmio = 3,       // forwarded device accesses and their replies
  kHeartbeat = 4,  // reserved for the transport's own liveness messages
};
inline constexpr unsigned kChannelCount = 5;
const char* channel_name(Channel c);

// Setup-time failures (bootstrap, UCX initialization, bad configuration): one line that
// says what failed and, where it helps, which node.
class ClusterError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Transport {
 public:
  using Receiver = std::function<void(NodeId from, std::span<const u8> bytes)>;
  using FailureHandler = std::function<void(NodeId node, const std::string& reason)>;

  virtual ~Transport() = default;
  virtual NodeId self() const = 0;
  virtual unsigned node_count() const = 0;

  // Installs (or, with an empty function, removes) the receiver of a channel. Any thread
  // except that it must not race with itself for one channel; when it returns, the old
  // receiver is no longer running and will not be called again. Messages kept while the
  // channel had no receiver are delivered to the new one. kHeartbeat is reserved: throws
  // ClusterError.
  virtual void set_receiver(Channel channel, Receiver receiver) = 0;
  // Installs the failure handler (same rules as set_receiver). Failures that happened
  // before it was installed (or before start_delivery) are reported to it then.
  virtual void on_peer_failure(FailureHandler handler) = 0;
  // Starts calling receivers and the failure handler. Once; any thread.
  virtual void start_delivery() = 0;

  // Sends header followed by payload as one message (either may be empty).
  virtual bool send(NodeId to, Channel channel, std::span<const u8> header,
                    std::span<const u8> payload) = 0;
  bool send(NodeId to, Channel channel, std::span<const u8> bytes) {
    return send(to, channel, bytes, {});
  }

  // Hint: the caller just sent a request and waits for the reply; the transport keeps
  // polling the network (instead of sleeping on an event) for `window`, so the reply is
  // not delayed by a wake-up. Any thread; cheap.
  virtual void busy_poll_for(std::chrono::microseconds window) { (void)window; }

  // For a thread that waits for a reply (a vCPU waiting for a page or an IPI ack): runs
  // the transport's progress on the calling thread (receivers included, still one at a
  // time for the node) until done() is true or the timeout passes; returns done(). This
  // saves the thread hop from the progress thread to the waiter. A receiver may then run
  // on the calling thread: it must not wait for something only that thread can do (a
  // DSM receiver that waits for every local hart's TLB flush deadlocks if the waiting
  // hart is the caller, unless the wait serves the caller's own flush). Implementations
  // without it just wait. done() is called often: keep it a flag test.
  virtual bool poll_until(const std::function<bool()>& done, std::chrono::microseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    busy_poll_for(timeout);
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return done();
    }
    return true;
  }

  // Says goodbye to the peers (they report this node as "shut down"), flushes what was
  // sent, stops the progress thread and releases the network. Idempotent. After it
  // returns no receiver runs. Called from a receiver, it only starts the shutdown (the
  // progress thread finishes it after the receiver returns; the destructor waits).
  virtual void shutdown() = 0;
};

}  // namespace dvmm::cluster
