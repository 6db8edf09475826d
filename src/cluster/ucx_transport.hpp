// The cluster transport on UCX (UCP active messages): shared memory between processes on
// one host (posix/sysv/cma), TCP between hosts, RDMA verbs where present; UCX picks per
// peer (UCX_TLS restricts it). Owns one UCP context and worker per node process, one
// endpoint per peer and the progress thread that delivers messages, sends heartbeats and
// detects failed peers. Implements transport.hpp's contract, FIFO per ordered pair across
// channels.
//
// How:
//  - Every message is one active message: a 16-byte header (session, sender rank, channel,
//    kind, per-pair sequence number) as the AM header, the caller's bytes as its data,
//    always sent eager. UCX does not promise that active messages arrive in order (its
//    API says nothing; multi-lane and pending sends can reorder), so the receiver
//    delivers by sequence number and holds early arrivals until the gap fills.
//  - The progress thread sleeps on the worker's event fd (ucp_worker_arm + poll) and keeps
//    polling for a while after any activity (a window between `busy_poll` and
//    `busy_poll_max` that adapts like KVM's halt polling), or longer when asked
//    (busy_poll_for()), so a reply that is expected soon is not delayed by a wake-up.
//  - poll_until() lets a thread that waits for a reply progress the worker and run the
//    receivers itself (kDirect), while the progress thread parks: no thread hop and no
//    wake-up between the network and the waiter, and one spinning thread per process.
//  - send(): SendPath::kDirect (default) sends from the calling thread on a
//    UCS_THREAD_MODE_MULTI worker; kQueued hands the copy to the progress thread (a
//    single-threaded worker). The benchmark (tests/tools/dvmm_transport_test bench)
//    compares them: kDirect wins on latency whenever the sender is not the progress
//    thread (no hand-off, no wake-up). The AM receive callback only queues; receivers run after
//    ucp_worker_progress returns, so a receiver that blocks never holds UCX's worker lock
//    (a vCPU sending meanwhile does not wait for it).
//  - Failure: endpoints use UCP_ERR_HANDLING_MODE_PEER (UCX's error callback reports a
//    reset TCP connection at once), and every node sends a heartbeat on kHeartbeat every
//    `heartbeat_interval`; a peer silent for `peer_timeout` is declared failed (a killed
//    process on one host: about 3 s; over TCP the reset connection reports it at once).
//    A clean shutdown() sends a goodbye, reported to the others as "shut down".
//  - UCX settings we change unless the user set them: MM_ERROR_HANDLING=y (else UCX
//    1.13 drops shared memory for peer-failure endpoints) and KEEPALIVE_INTERVAL=inf
//    (our heartbeat does the job; see init_ucx for the stall it went with).
//  - Bad input: a message with a wrong header size, another session's id, an unknown
//    channel, an out-of-range sender or a duplicate sequence number is dropped, counted
//    and logged (rate-limited). A gap that never fills (more than `max_reorder` held
//    messages) fails that peer.
//
// Trust: UCX worker addresses carry no authentication. `from` is the rank in a message
// that carries this cluster's random session id, delivered on the endpoint UCX wired to
// that peer: it keeps stray processes of other runs out, not a hostile host on the
// cluster network (the same trust model as MPI).
//
// Threads: create() and the destructor from the owner (never from a receiver); send(),
// busy_poll_for(), poll_until(), counters() from any thread; set_receiver(),
// on_peer_failure(), start_delivery() per transport.hpp (they wait for the delivery
// thread to apply them, so a receiver must not block on a thread that calls them);
// shutdown() from any thread (from a receiver it only starts it).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cluster/bootstrap.hpp"
#include "cluster/transport.hpp"

namespace dvmm::cluster {

enum class SendPath : u8 {
  kDirect,  // callers' threads call ucp_am_send_nbx (worker in UCS_THREAD_MODE_MULTI)
  kQueued,  // callers queue a copy; the progress thread sends it
};

struct UcxOptions {
  SendPath send_path = SendPath::kDirect;
  std::chrono::milliseconds heartbeat_interval{500};
  // A peer that sends nothing (not even a heartbeat) for this long has failed.
  std::chrono::milliseconds peer_timeout{3000};
  // After activity the progress thread polls at least this long before it sleeps on the
  // event fd; the window grows up to busy_poll_max while sleeps keep ending within it
  // (see run() in ucx_transport.cpp) and shrinks back when the node is idle.
  std::chrono::microseconds busy_poll{20};
  std::chrono::microseconds busy_poll_max{200};
  // create() fails if some peer has not been heard from over UCX by then.
  std::chrono::milliseconds connect_timeout{15000};
  // Messages kept per channel while it has no receiver; beyond, dropped and logged.
  std::size_t max_backlog = std::size_t{1} << 16;
  // Out-of-order messages held per peer before the peer is declared failed.
  std::size_t max_reorder = std::size_t{1} << 16;
  // UCX settings applied over the environment (name without "UCX_", e.g. {"TLS",
  // "posix,self"}). Unless set here or in the environment, MM_ERROR_HANDLING=y, so that
  // UCX keeps shared memory for endpoints that ask for peer-failure handling.
  std::vector<std::pair<std::string, std::string>> ucx_config;
  // Failures, rejected messages, shutdown problems; default: stderr.
  std::function<void(const std::string&)> log;
};

struct UcxCounters {
  u64 messages_sent = 0;
  u64 bytes_sent = 0;
  u64 messages_received = 0;  // delivered to receivers or kept for them
  u64 bytes_received = 0;
  u64 heartbeats_sent = 0;
  u64 reordered = 0;        // arrived ahead of a gap and were held
  u64 rejected = 0;         // malformed or unexpected, dropped
  u64 dropped_backlog = 0;  // no receiver and the backlog was full
  u64 send_pending = 0;     // sends UCX could not complete at once (completed later)
  u64 wakeups = 0;          // times the progress thread slept on the event fd and woke
};

class UcxTransport final : public Transport {
 public:
  // Creates the UCP context and worker, exchanges worker addresses through `bootstrap`,
  // connects to every peer, starts the progress thread and waits until every peer has
  // been heard from over UCX. Throws ClusterError (naming the node) on any failure.
  static std::unique_ptr<UcxTransport> create(Bootstrap& bootstrap, UcxOptions options = {});
  ~UcxTransport() override;
  UcxTransport(const UcxTransport&) = delete;
  UcxTransport& operator=(const UcxTransport&) = delete;

  NodeId self() const override;
  unsigned node_count() const override;
  void set_receiver(Channel channel, Receiver receiver) override;
  void on_peer_failure(FailureHandler handler) override;
  void start_delivery() override;
  bool send(NodeId to, Channel channel, std::span<const u8> header,
            std::span<const u8> payload) override;
  using Transport::send;
  void shutdown() override;

  // Keeps the progress thread polling (not sleeping) for `window` from now: call it
  // right after sending a request whose reply the caller waits for, so the reply is
  // picked up without a wake-up (a few microseconds on a busy host).
  void busy_poll_for(std::chrono::microseconds window) override;
  bool poll_until(const std::function<bool()>& done, std::chrono::microseconds timeout) override;

  // The bootstrap's table: every node's opaque node info and host, by rank.
  const PeerTable& peers() const;
  UcxCounters counters() const;
  // Which UCX transports and lanes carry messages to `peer` (ucp_ep_print_info), for
  // logs and benchmarks.
  std::string describe_lanes(NodeId peer) const;

  // Tests: sends an active message with an arbitrary header and data to `peer`, bypassing
  // all checks, to exercise the receiver's rejection of malformed input.
  bool send_raw_for_test(NodeId peer, std::span<const u8> am_header, std::span<const u8> data);
  // Tests: the wire header a well-formed message would carry (for forging variants).
  std::vector<u8> make_header_for_test(NodeId to, Channel channel, u64 seq) const;

 private:
  struct Impl;
  explicit UcxTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dvmm::cluster
