// dsm::Transport over a cluster transport's kDsm channel, so a dsm::DsmNode runs unchanged
// between node processes. Owns nothing but a reference: the cluster transport must outlive
// the adapter, and the DSM node must be stopped before the transport shuts down.
//
// The cluster contract (transport.hpp) is a superset of dsm::Transport's: FIFO per ordered
// pair (across channels, even), receivers on the progress thread one at a time, send()
// from any thread that copies and never blocks or calls the receiver, `from`
// authenticated as far as the transport can.
//
// The owner of the cluster transport calls start_delivery() once every channel (this
// adapter's kDsm included) has its receiver.
//
// Threads: as dsm::Transport (send() from any thread; set_receiver once, before use).
#pragma once

#include <utility>

#include "cluster/transport.hpp"
#include "dsm/transport.hpp"

namespace dvmm::cluster {

static_assert(sizeof(dsm::NodeId) == sizeof(NodeId) && dsm::kMaxNodes == kMaxNodes,
              "cluster and dsm must agree on node ids");

class DsmAdapter final : public dsm::Transport {
 public:
  explicit DsmAdapter(cluster::Transport& transport) : transport_(transport) {}

  dsm::NodeId self() const override { return transport_.self(); }
  unsigned node_count() const override { return transport_.node_count(); }
  void set_receiver(Receiver receiver) override {
    transport_.set_receiver(Channel::kDsm, std::move(receiver));
  }
  bool send(dsm::NodeId to, std::span<const u8> header, std::span<const u8> payload) override {
    return transport_.send(to, Channel::kDsm, header, payload);
  }
  void expect_reply() override {
    if (expect_reply_window_.count() > 0) transport_.busy_poll_for(expect_reply_window_);
  }
  // How long the transport's progress thread keeps polling after a request went out.
  void set_expect_reply_window(std::chrono::microseconds w) { expect_reply_window_ = w; }
  bool poll_for(const std::function<bool()>& done, std::chrono::microseconds timeout) override {
    return transport_.poll_until(done, timeout);
  }

 private:
  cluster::Transport& transport_;
  std::chrono::microseconds expect_reply_window_{200};
};

}  // namespace dvmm::cluster
