// The transport between DSM nodes: an interface with an in-process implementation for
// tests (inproc_transport.hpp) and, later, a UCX one (shared memory, TCP, RDMA).
//
// Contract every implementation keeps:
//  - Ordering: messages from one node to one destination are delivered in the order
//    send() was called (FIFO per ordered pair). The protocol relies on it (docs/DSM.md);
//    it needs nothing across different pairs.
//  - Delivery: a node's receiver is called from the transport's thread(s), one call at a
//    time per receiving node (never concurrently with itself), never from inside send().
//    The byte span is valid only during the call. The receiver may block for a short
//    while (a DSM node waits there for its harts to flush their TLBs) and may call send().
//  - send() may be called from any thread, copies the bytes before it returns and does
//    not block on the network (it queues). It never calls the receiver.
//  - `from` passed to the receiver is the authenticated sender (the transport's notion of
//    the peer), which the receiver checks against the sender named in the message.
#pragma once

#include <chrono>
#include <functional>
#include <span>

#include "base/types.hpp"
#include "dsm/protocol.hpp"

namespace dvmm::dsm {

class Transport {
 public:
  using Receiver = std::function<void(NodeId from, std::span<const u8> bytes)>;

  virtual ~Transport() = default;
  virtual NodeId self() const = 0;
  virtual unsigned node_count() const = 0;
  // Installs the receiver, before the transport starts delivering; or, with an empty
  // function, detaches it: when that call returns the old receiver is not running and is
  // never called again. Not from inside the receiver.
  virtual void set_receiver(Receiver receiver) = 0;
  // Sends header and payload as one message (the payload may be empty). False when the
  // destination is unknown or the transport is shut down.
  virtual bool send(NodeId to, std::span<const u8> header, std::span<const u8> payload) = 0;
  // Hint: a thread just sent a request and waits for the reply; the transport may keep
  // polling the network for a short while instead of sleeping. Any thread.
  virtual void expect_reply() {}
  // Waits until done() or the timeout, whichever first; a transport may progress the
  // network on the calling thread meanwhile (receivers then run here). done() is called
  // often. Default: spins. Returns done().
  virtual bool poll_for(const std::function<bool()>& done, std::chrono::microseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= until) return done();
    }
    return true;
  }
};

}  // namespace dvmm::dsm
