// UCX implementation of the cluster transport; see ucx_transport.hpp for the design.
#include "cluster/ucx_transport.hpp"

#include <poll.h>
#include <ucp/api/ucp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

namespace dvmm::cluster {
namespace {

using Clock = std::chrono::steady_clock;

static_assert(std::endian::native == std::endian::little,
              "the wire header is host-order; all supported hosts are little-endian");

constexpr unsigned kAmId = 7;
// Messages up to this size first try UCX's inline path from a stack buffer (no allocation).
constexpr std::size_t kStackSend = 1024;
// Heartbeat-channel kinds.
constexpr u8 kKindHeartbeat = 0;
constexpr u8 kKindGoodbye = 1;
// How long shutdown waits for the last messages and endpoint closes.
constexpr auto kShutdownFlush = std::chrono::seconds(2);

// The AM header of every message.
struct MsgHeader {
  u32 session;  // low half of PeerTable::session
  u16 from;
  u8 channel;
  u8 kind;  // kHeartbeat: kKindHeartbeat / kKindGoodbye; others: 0
  u64 seq;  // per ordered pair, across channels, from 0
};
static_assert(sizeof(MsgHeader) == 16);

// A heap copy of an outgoing message: the header, then the caller's bytes. `owner` and
// `to` let the completion callback report a failed send.
struct SendBlock {
  MsgHeader header;
  void* owner;
  NodeId to;
  std::size_t length;
  u8* data() { return reinterpret_cast<u8*>(this + 1); }
  static SendBlock* make(void* owner, NodeId to, const MsgHeader& h, std::span<const u8> a,
                         std::span<const u8> b) {
    auto* s = static_cast<SendBlock*>(std::malloc(sizeof(SendBlock) + a.size() + b.size()));
    if (!s) throw std::bad_alloc();
    s->header = h;
    s->owner = owner;
    s->to = to;
    s->length = a.size() + b.size();
    if (!a.empty()) std::memcpy(s->data(), a.data(), a.size());
    if (!b.empty()) std::memcpy(s->data() + a.size(), b.data(), b.size());
    return s;
  }
};

void default_log(const std::string& line) {
  std::fprintf(stderr, "dvmm cluster: %s\n", line.c_str());
}

std::string seconds_text(Clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s",
                std::chrono::duration_cast<std::chrono::duration<double>>(d).count());
  return buf;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

struct UcxTransport::Impl {
  // A received message on its way to a receiver. `data` points into UCX's descriptor
  // (`desc`, released after delivery) or into `owned`.
  struct Inbound {
    NodeId from = 0;
    Channel channel = Channel::kDsm;
    u8 kind = 0;
    u64 seq = 0;
    const u8* data = nullptr;
    std::size_t length = 0;
    void* desc = nullptr;
    std::unique_ptr<u8[]> owned;
  };

  struct Peer {
    Impl* impl = nullptr;
    NodeId id = 0;
    ucp_ep_h ep = nullptr;
    std::atomic<u64> next_seq{0};
    std::atomic<bool> failed{false};
    std::atomic<u64> sends_pending{0};    // sends UCX returned a request for
    std::atomic<u64> sends_completed{0};  // of those, completed
    // Progress thread only:
    u64 completed_seen = 0;
    Clock::time_point stalled_since{};
    bool kicked = false;
    u64 expected = 0;
    std::map<u64, Inbound> early;  // arrived ahead of `expected`
    Clock::time_point last_heard;
    std::atomic<bool> heard{false};  // read by create() for its error message
    bool reported = false;
  };

  struct Outbound {
    NodeId to;
    SendBlock* block;
  };

  UcxOptions opt;
  NodeId self = 0;
  unsigned n = 0;
  PeerTable table;
  u32 session = 0;

  ucp_context_h context = nullptr;
  ucp_worker_h worker = nullptr;
  int efd = -1;
  std::unique_ptr<Peer[]> peers;

  std::thread progress;
  std::atomic<bool> stopping{false};  // no new sends
  std::atomic<bool> exit_requested{false};
  std::atomic<bool> exited{false};
  std::atomic<int> senders{0};  // send() calls inside UCX (kDirect)
  std::atomic<bool> sleeping{false};
  std::atomic<i64> spin_until_ns{0};  // busy_poll_for()

  // The progress token: whoever holds it progresses the worker and runs receivers (the
  // progress thread, or a caller inside poll_until()). `tls_holder` says which transport
  // the current thread holds the token of.
  std::mutex token;
  static thread_local Impl* tls_holder;
  struct Holding {
    Impl* prev;
    explicit Holding(Impl* i) : prev(tls_holder) { tls_holder = i; }
    ~Holding() { tls_holder = prev; }
  };
  std::atomic<int> pollers{0};  // threads inside poll_until (kDirect)
  std::mutex park_mu;           // the progress thread parks while pollers > 0
  std::condition_variable park_cv;
  std::atomic<bool> parked{false};

  // Other threads -> progress thread.
  std::mutex q_mu;
  std::vector<Outbound> send_queue;                           // kQueued
  std::deque<Inbound> self_queue;                             // send() to self
  std::vector<std::pair<NodeId, std::string>> failure_queue;  // from any thread
  std::vector<std::function<void()>> tasks;                   // run on the progress thread (tests)
  std::atomic<bool> q_pending{false};

  // Receivers and failure handler: installed by the progress thread at a safe point.
  std::mutex cfg_mu;
  std::condition_variable cfg_cv;
  std::array<std::optional<Receiver>, kChannelCount> pending_rx;
  std::optional<FailureHandler> pending_fail;
  bool pending_start = false;
  u64 cfg_requested = 0;
  u64 cfg_applied = 0;
  std::atomic<bool> cfg_pending{false};

  // create() waits for every peer to be heard from.
  std::mutex conn_mu;
  std::condition_variable conn_cv;
  bool all_heard = false;

  // Progress thread only.
  bool delivering = false;  // start_delivery() was applied
  bool warned_not_started = false;
  const Clock::time_point created = Clock::now();
  std::deque<Inbound> held;  // arrived before start_delivery(), in arrival order
  // Shared so that a receiver that replaces itself keeps running safely to its end.
  std::array<std::shared_ptr<const Receiver>, kChannelCount> rx;
  std::array<std::deque<Inbound>, kChannelCount> backlog;
  std::atomic<bool> backlog_flush{false};  // also read by the progress thread before it sleeps
  FailureHandler on_fail;
  std::vector<std::pair<NodeId, std::string>> unreported;
  std::vector<Inbound> stash;  // filled by the AM callback during ucp_worker_progress
  std::vector<std::pair<NodeId, std::string>> ep_errors;  // from UCX's error callback
  bool in_receiver = false;
  bool detached = false;  // destroyed from a receiver: UCX is left to the process exit

  struct Counters {
    std::atomic<u64> messages_sent{0}, bytes_sent{0}, messages_received{0}, bytes_received{0},
        heartbeats_sent{0}, reordered{0}, rejected{0}, dropped_backlog{0}, send_pending{0},
        wakeups{0};
  } c;
  std::atomic<u64> log_budget{0};

  // ---------------------------------------------------------------- setup

  Impl(Bootstrap& bootstrap, UcxOptions o) : opt(std::move(o)) {
    if (!opt.log) opt.log = default_log;
    self = bootstrap.rank();
    n = bootstrap.size();
    try {
      init_ucx();
      std::vector<u8> address = worker_address();
      table = bootstrap.exchange(address);
      session = static_cast<u32>(table.session);
      if (table.addresses.size() != n) {
        throw ClusterError("bootstrap returned a table of the wrong size");
      }
      connect_peers();
      progress = std::thread([this] { run(); });
      wait_all_heard();
    } catch (...) {
      stop();
      teardown_ucx();
      throw;
    }
  }

  ~Impl() {
    stop();
    if (!detached) teardown_ucx();
  }

  void check(ucs_status_t st, const char* what) {
    if (st != UCS_OK) {
      throw ClusterError(std::string("UCX: ") + what + " failed: " + ucs_status_string(st));
    }
  }

  void init_ucx() {
    ucp_config_t* config = nullptr;
    check(ucp_config_read(nullptr, nullptr, &config), "reading the configuration");
    struct Release {
      ucp_config_t* c;
      ~Release() { ucp_config_release(c); }
    } release{config};
    bool user_set = std::getenv("UCX_POSIX_ERROR_HANDLING") || std::getenv("UCX_MM_ERROR_HANDLING");
    for (auto& [k, v] : opt.ucx_config) {
      user_set = user_set || k == "POSIX_ERROR_HANDLING" || k == "MM_ERROR_HANDLING";
    }
    // ... and only when shared memory may be used: UCX warns about unused settings.
    std::string tls = std::getenv("UCX_TLS") ? std::getenv("UCX_TLS") : "all";
    for (auto& [k, v] : opt.ucx_config) {
      if (k == "TLS") tls = v;
    }
    bool shm = false;
    for (const char* t : {"all", "sm", "shm", "posix", "sysv", "mm", "^"}) {
      shm = shm || tls.find(t) != std::string::npos;
    }
    if (!user_set && shm) {
      // Without it UCX 1.13 refuses shared memory (posix) for endpoints that ask for
      // peer-failure handling and silently falls back to TCP over loopback.
      ucp_config_modify(config, "MM_ERROR_HANDLING", "y");
    }
    // Our own heartbeat detects failed peers; UCX's keepalive (every 20 s by default)
    // only adds traffic and, in the TCP bandwidth test, went with rare stalls where
    // pending sends never resumed (2 runs in 18 with it, none in 48 without).
    bool keepalive_set = std::getenv("UCX_KEEPALIVE_INTERVAL") != nullptr;
    for (auto& [k, v] : opt.ucx_config) keepalive_set = keepalive_set || k == "KEEPALIVE_INTERVAL";
    if (!keepalive_set) ucp_config_modify(config, "KEEPALIVE_INTERVAL", "inf");
    for (auto& [k, v] : opt.ucx_config) {
      ucs_status_t st = ucp_config_modify(config, k.c_str(), v.c_str());
      if (st != UCS_OK) {
        throw ClusterError("UCX: bad setting " + k + "=" + v + ": " + ucs_status_string(st));
      }
    }
    ucp_params_t params{};
    params.field_mask =
        UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
    params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
    params.mt_workers_shared = 0;
    params.name = "dvmm";
    check(ucp_init(&params, config, &context), "initialization (ucp_init)");

    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode =
        opt.send_path == SendPath::kDirect ? UCS_THREAD_MODE_MULTI : UCS_THREAD_MODE_SINGLE;
    check(ucp_worker_create(context, &wp, &worker), "creating the worker");
    ucp_worker_attr_t wa{};
    wa.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
    check(ucp_worker_query(worker, &wa), "querying the worker");
    if (opt.send_path == SendPath::kDirect && wa.thread_mode != UCS_THREAD_MODE_MULTI) {
      // A UCX built without thread support: only the progress thread may touch it.
      opt.log("UCX has no multi-threaded workers; using queued sends");
      opt.send_path = SendPath::kQueued;
    }

    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = kAmId;
    hp.cb = &Impl::am_callback;
    hp.arg = this;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG | UCP_AM_FLAG_PERSISTENT_DATA;
    check(ucp_worker_set_am_recv_handler(worker, &hp), "registering the message handler");
    check(ucp_worker_get_efd(worker, &efd), "getting the worker's event fd");
  }

  std::vector<u8> worker_address() {
    ucp_address_t* addr = nullptr;
    std::size_t len = 0;
    check(ucp_worker_get_address(worker, &addr, &len), "getting the worker address");
    std::vector<u8> out(reinterpret_cast<u8*>(addr), reinterpret_cast<u8*>(addr) + len);
    ucp_worker_release_address(worker, addr);
    return out;
  }

  std::string node_name(NodeId id) const {
    std::string s = "node " + std::to_string(id);
    if (id < table.hosts.size() && !table.hosts[id].empty()) s += " (" + table.hosts[id] + ")";
    return s;
  }

  void connect_peers() {
    peers = std::make_unique<Peer[]>(n);
    const auto now = Clock::now();
    for (unsigned i = 0; i < n; ++i) {
      Peer& p = peers[i];
      p.impl = this;
      p.id = static_cast<NodeId>(i);
      p.last_heard = now;
      if (i == self) continue;
      ucp_ep_params_t ep{};
      ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
      ep.address = reinterpret_cast<const ucp_address_t*>(table.addresses[i].data());
      ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
      ep.err_handler.cb = &Impl::ep_error_callback;
      ep.err_handler.arg = &p;
      ucs_status_t st = ucp_ep_create(worker, &ep, &p.ep);
      if (st != UCS_OK) {
        throw ClusterError("UCX: cannot connect to " + node_name(p.id) + ": " +
                           ucs_status_string(st));
      }
    }
  }

  void wait_all_heard() {
    std::unique_lock lock(conn_mu);
    if (conn_cv.wait_for(lock, opt.connect_timeout, [&] { return all_heard; })) return;
    lock.unlock();
    std::string missing;
    // Read racily: only for the message.
    for (unsigned i = 0; i < n; ++i) {
      if (i != self && !peers[i].heard) missing += (missing.empty() ? "" : ", ") + node_name(i);
    }
    throw ClusterError("could not reach " + missing + " over UCX within " +
                       seconds_text(opt.connect_timeout) +
                       " (the bootstrap worked; check UCX_TLS, UCX_NET_DEVICES and firewalls)");
  }

  void stop() {
    if (progress.joinable()) {
      if (std::this_thread::get_id() == progress.get_id()) {
        // Destroyed from a receiver: cannot join ourselves, nor free what the thread
        // still uses. Shut down the network and leave the rest to the process exit.
        opt.log("transport destroyed from its own progress thread; leaking it");
        exit_requested = true;
        stopping = true;
        detached = true;
        progress.detach();
        return;
      }
      begin_shutdown();
      progress.join();
    }
  }

  void teardown_ucx() {
    if (peers) {
      for (unsigned i = 0; i < n; ++i) {
        for (auto& [seq, m] : peers[i].early) release(m);
        peers[i].early.clear();
      }
    }
    for (auto& q : backlog) {
      for (auto& m : q) release(m);
      q.clear();
    }
    for (auto& m : held) release(m);
    held.clear();
    for (auto& m : stash) release(m);
    stash.clear();
    for (auto& o : send_queue) std::free(o.block);
    send_queue.clear();
    if (worker && peers) {
      // Endpoints still open (create() failed before the progress thread ran).
      for (unsigned i = 0; i < n; ++i) {
        if (peers[i].ep) {
          close_ep(peers[i], UCP_EP_CLOSE_MODE_FORCE,
                   Clock::now() + std::chrono::milliseconds(200));
        }
      }
    }
    if (worker) ucp_worker_destroy(worker);
    if (context) ucp_cleanup(context);
    worker = nullptr;
    context = nullptr;
  }

  // ---------------------------------------------------------------- callbacks from UCX

  void reject(const std::string& why) {
    c.rejected.fetch_add(1, std::memory_order_relaxed);
    u64 k = log_budget.fetch_add(1, std::memory_order_relaxed);
    if (k < 20 || k % 1000 == 0) {
      opt.log("rejected a message: " + why +
              (k >= 20 ? " (" + std::to_string(k + 1) + " so far; logging every 1000th)" : ""));
    }
  }

  static ucs_status_t am_callback(void* arg, const void* header, size_t header_length, void* data,
                                  size_t length, const ucp_am_recv_param_t* param) {
    return static_cast<Impl*>(arg)->on_am(header, header_length, data, length, param);
  }

  ucs_status_t on_am(const void* header, std::size_t header_length, void* data, std::size_t length,
                     const ucp_am_recv_param_t* param) {
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) {
      reject("rendezvous message (dvmm always sends eager)");
      return UCS_OK;  // drops it
    }
    if (header_length != sizeof(MsgHeader)) {
      reject("header of " + std::to_string(header_length) + " bytes, expected " +
             std::to_string(sizeof(MsgHeader)));
      return UCS_OK;
    }
    MsgHeader h;
    std::memcpy(&h, header, sizeof h);
    if (h.session != session) {
      reject("from another cluster session (a stale process?), claims node " +
             std::to_string(h.from));
      return UCS_OK;
    }
    if (h.from >= n || h.from == self) {
      reject("claims to come from node " + std::to_string(h.from) + " (cluster of " +
             std::to_string(n) + ", this is node " + std::to_string(self) + ")");
      return UCS_OK;
    }
    if (h.channel >= kChannelCount) {
      reject("unknown channel " + std::to_string(h.channel) + " from " + node_name(h.from));
      return UCS_OK;
    }
    if (h.channel == static_cast<u8>(Channel::kHeartbeat) && h.kind > kKindGoodbye) {
      reject("unknown heartbeat kind " + std::to_string(h.kind) + " from " + node_name(h.from));
      return UCS_OK;
    }
    Inbound m;
    m.from = h.from;
    m.channel = static_cast<Channel>(h.channel);
    m.kind = h.kind;
    m.seq = h.seq;
    m.length = length;
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_DATA) {
      m.data = static_cast<const u8*>(data);
      m.desc = data;
      stash.push_back(std::move(m));
      return UCS_INPROGRESS;  // keep UCX's buffer until delivered: no copy
    }
    own_copy(m, static_cast<const u8*>(data));
    stash.push_back(std::move(m));
    return UCS_OK;
  }

  static void ep_error_callback(void* arg, ucp_ep_h, ucs_status_t status) {
    Peer* p = static_cast<Peer*>(arg);
    p->impl->note_failure(p->id, std::string("UCX reported the connection failed (") +
                                     ucs_status_string(status) + ")");
  }

  // ---------------------------------------------------------------- sending

  ucs_status_ptr_t am_send(Peer& p, const void* header, const void* data, std::size_t length,
                           u32 op_flags, ucp_send_nbx_callback_t cb, void* user_data) {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS | op_flags;
    rp.flags = UCP_AM_SEND_FLAG_EAGER;
    if (cb) {
      rp.op_attr_mask |= UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      rp.cb.send = cb;
      rp.user_data = user_data;
    }
    return ucp_am_send_nbx(p.ep, kAmId, header, sizeof(MsgHeader), data, length, &rp);
  }

  // Sends a heap block on the current thread (UCX-safe here); takes ownership.
  bool send_block(Peer& p, SendBlock* b) {
    ucs_status_ptr_t r = am_send(p, &b->header, b->data(), b->length, 0, &Impl::send_done_block, b);
    if (r == nullptr) {
      std::free(b);
      return true;
    }
    if (UCS_PTR_IS_ERR(r)) {
      std::free(b);
      note_failure(p.id, std::string("send failed (") + ucs_status_string(UCS_PTR_STATUS(r)) + ")");
      return false;
    }
    // In flight: send_done_block frees it; the progress thread must progress the worker.
    c.send_pending.fetch_add(1, std::memory_order_relaxed);
    p.sends_pending.fetch_add(1, std::memory_order_relaxed);
    if (!on_progress_thread()) wake();
    return true;
  }

  // Completion of a send that UCX could not finish at once: on the progress thread,
  // inside ucp_worker_progress.
  static void send_done_block(void* request, ucs_status_t status, void* user_data) {
    auto* b = static_cast<SendBlock*>(user_data);
    Impl* impl = static_cast<Impl*>(b->owner);
    impl->peers[b->to].sends_completed.fetch_add(1, std::memory_order_relaxed);
    if (status != UCS_OK && status != UCS_ERR_CANCELED) {
      impl->note_failure(b->to, std::string("send failed (") + ucs_status_string(status) + ")");
    }
    std::free(b);
    ucp_request_free(request);
  }

  MsgHeader header_for(Peer& p, Channel ch, u8 kind) {
    return MsgHeader{session, self, static_cast<u8>(ch), kind,
                     p.next_seq.fetch_add(1, std::memory_order_relaxed)};
  }

  // Sends on the current thread, which may touch UCX (progress thread, or any thread in
  // kDirect). Copies nothing for small messages that UCX can send inline.
  bool send_now(Peer& p, const MsgHeader& h, std::span<const u8> a, std::span<const u8> b) {
    const std::size_t len = a.size() + b.size();
    if (len <= kStackSend) {
      alignas(16) u8 buf[kStackSend];
      if (!a.empty()) std::memcpy(buf, a.data(), a.size());
      if (!b.empty()) std::memcpy(buf + a.size(), b.data(), b.size());
      ucs_status_ptr_t r =
          am_send(p, &h, buf, len, UCP_OP_ATTR_FLAG_FORCE_IMM_CMPL, nullptr, nullptr);
      if (r == nullptr) return true;
      if (UCS_PTR_STATUS(r) != UCS_ERR_NO_RESOURCE) {
        note_failure(p.id,
                     std::string("send failed (") + ucs_status_string(UCS_PTR_STATUS(r)) + ")");
        return false;
      }
      // Not inline-sized for this transport, or no resources now: copy and send.
    }
    return send_block(p, SendBlock::make(this, p.id, h, a, b));
  }

  bool send(NodeId to, Channel ch, u8 kind, std::span<const u8> a, std::span<const u8> b) {
    if (to >= n || static_cast<unsigned>(ch) >= kChannelCount) return false;
    if (stopping.load(std::memory_order_acquire)) return false;
    const std::size_t len = a.size() + b.size();
    if (to == self) {
      Inbound m;
      m.from = self;
      m.channel = ch;
      m.kind = kind;
      m.length = len;
      m.owned = std::make_unique<u8[]>(len ? len : 1);
      if (!a.empty()) std::memcpy(m.owned.get(), a.data(), a.size());
      if (!b.empty()) std::memcpy(m.owned.get() + a.size(), b.data(), b.size());
      m.data = m.owned.get();
      {
        std::lock_guard lock(q_mu);
        self_queue.push_back(std::move(m));
        q_pending.store(true, std::memory_order_seq_cst);
      }
      count_sent(len);
      wake();
      return true;
    }
    Peer& p = peers[to];
    if (p.failed.load(std::memory_order_acquire)) return false;
    if (on_progress_thread()) {
      bool ok = send_now(p, header_for(p, ch, kind), a, b);
      if (ok) count_sent(len);
      return ok;
    }
    if (opt.send_path == SendPath::kQueued) {
      SendBlock* blk = SendBlock::make(this, to, header_for(p, ch, kind), a, b);
      {
        std::lock_guard lock(q_mu);
        send_queue.push_back({to, blk});
        q_pending.store(true, std::memory_order_seq_cst);
      }
      count_sent(len);
      wake();
      return true;
    }
    // kDirect: announce ourselves so shutdown waits before closing endpoints.
    senders.fetch_add(1, std::memory_order_seq_cst);
    if (stopping.load(std::memory_order_seq_cst)) {
      senders.fetch_sub(1, std::memory_order_release);
      return false;
    }
    bool ok = send_now(p, header_for(p, ch, kind), a, b);
    senders.fetch_sub(1, std::memory_order_release);
    if (ok) count_sent(len);
    return ok;
  }

  void count_sent(std::size_t len) {
    c.messages_sent.fetch_add(1, std::memory_order_relaxed);
    c.bytes_sent.fetch_add(len, std::memory_order_relaxed);
  }

  // True on the thread that holds the progress token: the progress thread, or a receiver
  // running inside poll_until(). Such a thread may touch UCX in either send path and
  // owns the receive-side state.
  bool on_progress_thread() const { return tls_holder == this; }

  void wake() {
    if (sleeping.load(std::memory_order_seq_cst)) ucp_worker_signal(worker);
  }

  // Any thread: a peer failed. Reported (once) by the progress thread.
  void note_failure(NodeId id, std::string reason) {
    if (id >= n || id == self) return;
    peers[id].failed.store(true, std::memory_order_release);
    if (on_progress_thread()) {
      ep_errors.emplace_back(id, std::move(reason));
      return;
    }
    {
      std::lock_guard lock(q_mu);
      failure_queue.emplace_back(id, std::move(reason));
      q_pending.store(true, std::memory_order_seq_cst);
    }
    wake();
  }

  // ---------------------------------------------------------------- receiving

  void own_copy(Inbound& m, const u8* src) {
    m.owned = std::make_unique<u8[]>(m.length ? m.length : 1);
    if (m.length) std::memcpy(m.owned.get(), src, m.length);
    m.data = m.owned.get();
    m.desc = nullptr;
  }
  // Moves a message off UCX's buffer (before keeping it for longer than one pass).
  void detach(Inbound& m) {
    if (!m.desc) return;
    void* desc = m.desc;
    own_copy(m, m.data);
    ucp_am_data_release(worker, desc);
  }
  void release(Inbound& m) {
    if (m.desc) ucp_am_data_release(worker, m.desc);
    m.desc = nullptr;
    m.owned.reset();
  }

  // One message from the network, in arrival order.
  void accept(Inbound& m, Clock::time_point now) {
    Peer& p = peers[m.from];
    if (p.reported) {
      release(m);  // from a failed peer: ignore
      return;
    }
    p.last_heard = now;
    if (!p.heard) {
      p.heard = true;
      check_all_heard();
    }
    if (m.seq == p.expected) {
      ++p.expected;
      dispatch(m);
      while (!p.early.empty() && p.early.begin()->first == p.expected && !p.reported) {
        Inbound e = std::move(p.early.begin()->second);
        p.early.erase(p.early.begin());
        ++p.expected;
        dispatch(e);
      }
      return;
    }
    if (m.seq < p.expected) {
      reject("duplicate sequence number " + std::to_string(m.seq) + " from " + node_name(m.from) +
             " (expected " + std::to_string(p.expected) + ")");
      release(m);
      return;
    }
    if (p.early.size() >= opt.max_reorder) {
      release(m);
      fail_peer(m.from, "protocol error: message " + std::to_string(p.expected) +
                            " never arrived while " + std::to_string(p.early.size()) +
                            " later ones did");
      return;
    }
    if (!p.early.emplace(m.seq, Inbound{}).second) {
      reject("duplicate sequence number " + std::to_string(m.seq) + " from " + node_name(m.from));
      release(m);
      return;
    }
    detach(m);
    p.early[m.seq] = std::move(m);
    c.reordered.fetch_add(1, std::memory_order_relaxed);
  }

  void check_all_heard() {
    for (unsigned i = 0; i < n; ++i) {
      if (i != self && !peers[i].heard) return;
    }
    std::lock_guard lock(conn_mu);
    all_heard = true;
    conn_cv.notify_all();
  }

  // In order, per pair: to the transport itself or to the channel's receiver.
  void dispatch(Inbound& m) {
    if (m.channel == Channel::kHeartbeat) {
      if (m.kind == kKindGoodbye) fail_peer(m.from, node_name(m.from) + " shut down");
      release(m);
      return;
    }
    c.messages_received.fetch_add(1, std::memory_order_relaxed);
    c.bytes_received.fetch_add(m.length, std::memory_order_relaxed);
    if (!delivering) {
      if (held.size() >= opt.max_backlog * kChannelCount) {
        c.dropped_backlog.fetch_add(1, std::memory_order_relaxed);
        reject("delivery not started and too many messages kept; dropped one from " +
               node_name(m.from));
        release(m);
        return;
      }
      detach(m);
      held.push_back(std::move(m));
      return;
    }
    route(m);
  }

  // To the channel's receiver, or its backlog.
  void route(Inbound& m) {
    const unsigned ch = static_cast<unsigned>(m.channel);
    if (!rx[ch] || !backlog[ch].empty()) {
      if (backlog[ch].size() >= opt.max_backlog) {
        c.dropped_backlog.fetch_add(1, std::memory_order_relaxed);
        reject(std::string("no receiver on channel ") + channel_name(m.channel) +
               " and its backlog is full; dropped a message from " + node_name(m.from));
        release(m);
        return;
      }
      detach(m);
      backlog[ch].push_back(std::move(m));
      if (rx[ch]) backlog_flush = true;
      return;
    }
    const auto r = rx[ch];
    deliver(*r, m);
    release(m);
  }

  void deliver(const Receiver& r, const Inbound& m) {
    in_receiver = true;
    try {
      r(m.from, std::span<const u8>(m.data, m.length));
    } catch (const std::exception& e) {
      opt.log(std::string("receiver of channel ") + channel_name(m.channel) +
              " threw: " + e.what());
    } catch (...) {
      opt.log(std::string("receiver of channel ") + channel_name(m.channel) + " threw");
    }
    in_receiver = false;
  }

  void flush_backlogs() {
    backlog_flush = false;
    while (delivering && !held.empty()) {
      Inbound m = std::move(held.front());
      held.pop_front();
      if (m.from != self && peers[m.from].reported) {
        release(m);
        continue;
      }
      route(m);
    }
    for (unsigned ch = 0; ch < kChannelCount; ++ch) {
      while (rx[ch] && !backlog[ch].empty()) {
        Inbound m = std::move(backlog[ch].front());
        backlog[ch].pop_front();
        if (m.from != self && peers[m.from].reported) {
          release(m);
          continue;
        }
        const auto r = rx[ch];  // a receiver may replace itself
        deliver(*r, m);
        release(m);
      }
    }
  }

  // `detail` either names the node itself ("node 2 (host pid 7) shut down") or is
  // prefixed with its name; handlers and logs get one self-contained line.
  void fail_peer(NodeId id, const std::string& detail) {
    const std::string name = node_name(id);
    const std::string reason = detail.rfind(name, 0) == 0 ? detail : name + ": " + detail;
    Peer& p = peers[id];
    if (p.reported) return;
    p.reported = true;
    p.failed.store(true, std::memory_order_release);
    for (auto& [seq, m] : p.early) release(m);
    p.early.clear();
    if (!p.heard) {
      p.heard = true;  // create() should not wait for it any more
      check_all_heard();
    }
    if (stopping.load()) return;  // we are leaving too: peers' goodbyes are no news
    opt.log(reason);
    if (on_fail && delivering) {
      call_failure(FailureHandler(on_fail), id, reason);  // a copy: it may replace itself
    } else {
      unreported.emplace_back(id, reason);
    }
  }

  void call_failure(const FailureHandler& h, NodeId id, const std::string& reason) {
    in_receiver = true;
    try {
      h(id, reason);
    } catch (const std::exception& e) {
      opt.log(std::string("peer-failure handler threw: ") + e.what());
    } catch (...) {
      opt.log("peer-failure handler threw");
    }
    in_receiver = false;
  }

  // ---------------------------------------------------------------- configuration

  static std::shared_ptr<const Receiver> as_shared(Receiver r) {
    return r ? std::make_shared<const Receiver>(std::move(r)) : nullptr;
  }

  void set_receiver(Channel ch, Receiver r) {
    if (static_cast<unsigned>(ch) >= kChannelCount || ch == Channel::kHeartbeat) {
      throw ClusterError(std::string("cannot set a receiver on channel ") + channel_name(ch));
    }
    const unsigned i = static_cast<unsigned>(ch);
    if (on_progress_thread() || exited.load()) {
      rx[i] = as_shared(std::move(r));
      backlog_flush = true;
      return;
    }
    std::unique_lock lock(cfg_mu);
    pending_rx[i] = std::move(r);
    const u64 ticket = ++cfg_requested;
    cfg_pending.store(true, std::memory_order_seq_cst);
    lock.unlock();
    wake();
    lock.lock();
    cfg_cv.wait(lock, [&] { return cfg_applied >= ticket || exited.load(); });
    if (exited.load() && cfg_applied < ticket) {
      if (pending_rx[i]) rx[i] = as_shared(std::move(*pending_rx[i]));
      pending_rx[i].reset();
    }
  }

  void on_peer_failure(FailureHandler h) {
    if (on_progress_thread() || exited.load()) {
      on_fail = std::move(h);
      report_unreported();
      return;
    }
    std::unique_lock lock(cfg_mu);
    pending_fail = std::move(h);
    const u64 ticket = ++cfg_requested;
    cfg_pending.store(true, std::memory_order_seq_cst);
    lock.unlock();
    wake();
    lock.lock();
    cfg_cv.wait(lock, [&] { return cfg_applied >= ticket || exited.load(); });
  }

  void start_delivery() {
    if (on_progress_thread() || exited.load()) {
      delivering = true;
      backlog_flush = true;
      report_unreported();
      return;
    }
    std::unique_lock lock(cfg_mu);
    pending_start = true;
    const u64 ticket = ++cfg_requested;
    cfg_pending.store(true, std::memory_order_seq_cst);
    lock.unlock();
    wake();
    lock.lock();
    cfg_cv.wait(lock, [&] { return cfg_applied >= ticket || exited.load(); });
  }

  void report_unreported() {
    if (!on_fail || !delivering) return;
    auto list = std::move(unreported);
    unreported.clear();
    for (auto& [id, reason] : list) call_failure(FailureHandler(on_fail), id, reason);
  }

  void apply_config() {
    if (!cfg_pending.load(std::memory_order_seq_cst)) return;
    bool fail_changed = false;
    {
      std::lock_guard lock(cfg_mu);
      cfg_pending.store(false);
      for (unsigned i = 0; i < kChannelCount; ++i) {
        if (pending_rx[i]) {
          rx[i] = as_shared(std::move(*pending_rx[i]));
          pending_rx[i].reset();
          backlog_flush = true;
        }
      }
      if (pending_fail) {
        on_fail = std::move(*pending_fail);
        pending_fail.reset();
        fail_changed = true;
      }
      if (pending_start && !delivering) {
        delivering = true;
        backlog_flush = true;
        fail_changed = true;
      }
      pending_start = false;
      cfg_applied = cfg_requested;
    }
    cfg_cv.notify_all();
    if (fail_changed) report_unreported();
  }

  // ---------------------------------------------------------------- progress thread

  bool has_work() {
    return q_pending.load(std::memory_order_seq_cst) ||
           cfg_pending.load(std::memory_order_seq_cst) ||
           exit_requested.load(std::memory_order_seq_cst) || backlog_flush;
  }

  // Drains what other threads queued. Returns how many items.
  unsigned drain_queues(Clock::time_point now) {
    if (!q_pending.load(std::memory_order_acquire)) return 0;
    std::vector<Outbound> sends;
    std::deque<Inbound> selfs;
    std::vector<std::pair<NodeId, std::string>> fails;
    std::vector<std::function<void()>> todo;
    {
      std::lock_guard lock(q_mu);
      sends.swap(send_queue);
      selfs.swap(self_queue);
      fails.swap(failure_queue);
      todo.swap(tasks);
      q_pending.store(false, std::memory_order_relaxed);
    }
    for (auto& o : sends) {
      Peer& p = peers[o.to];
      if (p.failed.load(std::memory_order_acquire)) {
        std::free(o.block);
        continue;
      }
      send_block(p, o.block);
    }
    for (auto& m : selfs) dispatch(m);
    for (auto& [id, reason] : fails) fail_peer(id, reason);
    for (auto& t : todo) t();
    (void)now;
    return static_cast<unsigned>(sends.size() + selfs.size() + fails.size() + todo.size());
  }

  unsigned progress_once() {
    unsigned events = 0;
    while (ucp_worker_progress(worker) != 0) ++events;
    Clock::time_point now{};
    if (!stash.empty()) {
      now = Clock::now();
      // accept() may call receivers, which may send (not progress), so `stash` is stable.
      std::vector<Inbound> batch;
      batch.swap(stash);
      events += static_cast<unsigned>(batch.size());
      for (auto& m : batch) accept(m, now);
    }
    if (!ep_errors.empty()) {
      auto errs = std::move(ep_errors);
      ep_errors.clear();
      for (auto& [id, reason] : errs) fail_peer(id, reason);
    }
    events += drain_queues(now);
    apply_config();
    if (backlog_flush.load(std::memory_order_relaxed)) flush_backlogs();
    return events;
  }

  void heartbeat(Clock::time_point now) {
    if (!delivering && !held.empty() && !warned_not_started &&
        now - created > std::chrono::seconds(5)) {
      warned_not_started = true;
      opt.log(std::to_string(held.size()) +
              " messages are waiting for delivery: the owner never called start_delivery()");
    }
    for (unsigned i = 0; i < n; ++i) {
      Peer& p = peers[i];
      if (i == self || p.reported) continue;
      if (now - p.last_heard > opt.peer_timeout) {
        fail_peer(p.id, node_name(p.id) + " stopped answering: no message for " +
                            seconds_text(now - p.last_heard));
        continue;
      }
      if (!p.failed.load(std::memory_order_acquire) &&
          send_now(p, header_for(p, Channel::kHeartbeat, kKindHeartbeat), {}, {})) {
        c.heartbeats_sent.fetch_add(1, std::memory_order_relaxed);
      }
      watch_stall(p, now);
    }
  }

  // Sends that UCX queued (no resources at the time) must complete as the peer drains
  // them. Rarely, under TCP bulk traffic, UCX 1.13 left them queued with an idle socket
  // (see the KEEPALIVE note in init_ucx). If none completes for a second, say so and
  // flush the endpoint: flushing makes UCX's TCP transport re-arm its write event.
  void watch_stall(Peer& p, Clock::time_point now) {
    const u64 done = p.sends_completed.load(std::memory_order_relaxed);
    const bool waiting = p.sends_pending.load(std::memory_order_relaxed) > done;
    if (!waiting || done != p.completed_seen) {
      p.completed_seen = done;
      p.stalled_since = {};
      p.kicked = false;
      return;
    }
    if (p.stalled_since == Clock::time_point{}) {
      p.stalled_since = now;
      return;
    }
    if (p.kicked || now - p.stalled_since < std::chrono::seconds(1)) return;
    p.kicked = true;
    opt.log(std::to_string(p.sends_pending.load() - done) + " sends to " + node_name(p.id) +
            " have made no progress for " + seconds_text(now - p.stalled_since) +
            "; flushing the endpoint");
    ucp_request_param_t fp{};
    fp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK;
    fp.cb.send = [](void* request, ucs_status_t, void*) { ucp_request_free(request); };
    ucs_status_ptr_t r = ucp_ep_flush_nbx(p.ep, &fp);
    (void)r;  // a request frees itself in the callback; NULL or an error needs nothing
  }

  // The loop: progress, deliver, heartbeats; poll for a while after activity, then
  // sleep on the event fd. The polling window adapts like KVM's halt polling: a sleep
  // that an event ended sooner than the longest window means polling a bit longer would
  // have caught it without a wake-up, so the window doubles; a sleep longer than that
  // (real idleness) halves it. Without this, once a round trip takes longer than the
  // window (one preemption on a busy host), both ends sleep on every message and the
  // wake-ups keep every round trip slow.
  void run() {
    auto now = Clock::now();
    auto next_heartbeat = now;  // the first one right away: create() waits for it
    auto last_activity = now;
    const Clock::duration base = opt.busy_poll;
    const Clock::duration longest = std::max<Clock::duration>(opt.busy_poll_max, base);
    Clock::duration window = base;
    bool woke = false;  // the previous iteration ended a sleep
    Clock::duration slept{};
    unsigned idle_iterations = 0;
    while (!exit_requested.load(std::memory_order_acquire)) {
      if (pollers.load(std::memory_order_acquire) > 0) {
        // A caller progresses the worker itself (poll_until): stay out of its way (one
        // spinning thread per process is all a small host affords) until it leaves or a
        // heartbeat is due.
        park(next_heartbeat);
        now = Clock::now();
        if (now >= next_heartbeat) {
          std::lock_guard lock(token);
          Holding h(this);
          heartbeat(now);
          next_heartbeat = now + opt.heartbeat_interval;
        }
        last_activity = now;
        continue;
      }
      unsigned events;
      {
        std::lock_guard lock(token);
        Holding h(this);
        events = progress_once();
        // Reading the clock costs about as much as an empty ucp_worker_progress
        // (kvm-clock in a VM: ~80 ns), so an idle spin reads it every 16th time round.
        if (!events && (++idle_iterations & 15) != 0) {
          cpu_relax();
          continue;
        }
        now = Clock::now();
        if (now >= next_heartbeat) {
          heartbeat(now);
          next_heartbeat = now + opt.heartbeat_interval;
        }
      }
      if (woke) {
        woke = false;
        if (events && slept < longest) {
          window = std::min(longest, window < std::chrono::microseconds(10)
                                         ? Clock::duration(std::chrono::microseconds(10))
                                         : window * 2);
        } else if (slept >= longest) {
          window = std::max(base, window / 2);
        }
      }
      if (events) {
        last_activity = now;
        continue;
      }
      const i64 now_ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
      if ((now - last_activity < window ||
           now_ns < spin_until_ns.load(std::memory_order_relaxed)) &&
          pollers.load(std::memory_order_relaxed) == 0) {
        // No sched_yield here: on a loaded host it hands the core to any runnable task
        // for a whole slice (measured: 0.7 us round trips became 9 us); the window is
        // bounded anyway and the scheduler preempts a spinner when others need the core.
        cpu_relax();
        continue;
      }
      if (pollers.load(std::memory_order_acquire) > 0) continue;
      sleeping.store(true, std::memory_order_seq_cst);
      if (has_work()) {
        sleeping.store(false, std::memory_order_relaxed);
        continue;
      }
      ucs_status_t st = ucp_worker_arm(worker);
      if (st == UCS_ERR_BUSY || has_work()) {
        sleeping.store(false, std::memory_order_relaxed);
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next_heartbeat - now);
      pollfd pfd{efd, POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(std::max<i64>(left.count() + 1, 1)));
      sleeping.store(false, std::memory_order_seq_cst);
      c.wakeups.fetch_add(1, std::memory_order_relaxed);
      const auto before = now;
      now = Clock::now();
      slept = now - before;
      woke = true;
    }
    {
      std::lock_guard lock(token);
      Holding h(this);
      finish();
      exited.store(true);
    }
    { std::lock_guard lock(cfg_mu); }
    cfg_cv.notify_all();
    {
      std::lock_guard lock(conn_mu);
      all_heard = true;
    }
    conn_cv.notify_all();
  }

  // Progress-thread side of shutdown: last queued sends, goodbyes, flush, close.
  void finish() {
    while (senders.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    auto now = Clock::now();
    drain_queues(now);
    for (unsigned i = 0; i < n; ++i) {
      Peer& p = peers[i];
      if (i == self || p.failed.load()) continue;
      send_now(p, header_for(p, Channel::kHeartbeat, kKindGoodbye), {}, {});
    }
    // Flush each live endpoint (so the goodbye and everything before it reach the peer),
    // bounded in time; then close all endpoints in FORCE mode: a FLUSH-mode close waits
    // for the peer to answer, which a peer that is leaving too may never do.
    const auto deadline = Clock::now() + kShutdownFlush;
    std::vector<ucs_status_ptr_t> flushes;
    for (unsigned i = 0; i < n; ++i) {
      Peer& p = peers[i];
      if (!p.ep || p.failed.load()) continue;
      ucp_request_param_t fp{};
      ucs_status_ptr_t r = ucp_ep_flush_nbx(p.ep, &fp);
      if (UCS_PTR_IS_PTR(r)) flushes.push_back(r);
    }
    auto pending = [&] {
      for (auto r : flushes) {
        if (ucp_request_check_status(r) == UCS_INPROGRESS) return true;
      }
      return false;
    };
    while (pending() && Clock::now() < deadline) ucp_worker_progress(worker);
    for (auto r : flushes) {
      if (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(worker, r);
      ucp_request_free(r);
    }
    for (unsigned i = 0; i < n; ++i) {
      if (peers[i].ep) close_ep(peers[i], UCP_EP_CLOSE_MODE_FORCE, deadline);
    }
    for (auto& m : stash) release(m);
    stash.clear();
  }

  void close_ep(Peer& p, ucp_ep_close_mode mode, Clock::time_point deadline) {
    ucp_request_param_t cp{};
    cp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    cp.flags = mode == UCP_EP_CLOSE_MODE_FORCE ? UCP_EP_CLOSE_FLAG_FORCE : 0;
    ucs_status_ptr_t r = ucp_ep_close_nbx(p.ep, &cp);
    p.ep = nullptr;
    if (!UCS_PTR_IS_PTR(r)) return;
    while (ucp_request_check_status(r) == UCS_INPROGRESS && Clock::now() < deadline) {
      ucp_worker_progress(worker);
    }
    // A peer that never answers the close: UCX finishes (or drops) it when the worker
    // is destroyed.
    ucp_request_free(r);
  }

  // The progress thread waits while callers poll (or until `until`).
  void park(Clock::time_point until) {
    std::unique_lock lock(park_mu);
    parked.store(true, std::memory_order_seq_cst);
    park_cv.wait_until(lock, until, [&] {
      return pollers.load(std::memory_order_seq_cst) == 0 || exit_requested.load();
    });
    parked.store(false, std::memory_order_relaxed);
  }

  bool poll_until(const std::function<bool()>& done, std::chrono::microseconds timeout) {
    if (done()) return true;
    const auto deadline = Clock::now() + timeout;
    if (opt.send_path != SendPath::kDirect || on_progress_thread() || exited.load()) {
      // The worker is the progress thread's alone (kQueued), or we already hold the
      // token: keep it polling and wait.
      unsigned k = 0;
      while (!done()) {
        if ((++k & 63) == 0) {
          if (Clock::now() >= deadline) return done();
          busy_poll_for(std::chrono::microseconds(200));
        }
        cpu_relax();
      }
      return true;
    }
    pollers.fetch_add(1, std::memory_order_seq_cst);
    wake();  // a sleeping progress thread gets out of poll() and parks
    unsigned k = 0;
    bool ok = false;
    for (;;) {
      if (done()) {
        ok = true;
        break;
      }
      if (token.try_lock()) {
        {
          Holding h(this);
          progress_once();
        }
        token.unlock();
      } else {
        cpu_relax();
      }
      if ((++k & 15) == 0 && Clock::now() >= deadline) {
        ok = done();
        break;
      }
    }
    if (pollers.fetch_sub(1, std::memory_order_seq_cst) == 1 && parked.load()) {
      std::lock_guard lock(park_mu);
      park_cv.notify_all();
    }
    return ok;
  }

  void busy_poll_for(std::chrono::microseconds window) {
    const i64 until = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          (Clock::now() + window).time_since_epoch())
                          .count();
    i64 cur = spin_until_ns.load(std::memory_order_relaxed);
    while (cur < until &&
           !spin_until_ns.compare_exchange_weak(cur, until, std::memory_order_relaxed)) {
    }
    wake();
  }

  // Runs `f` on the progress thread and waits for it (false if the thread has exited).
  bool run_on_progress(std::function<void()> f) {
    if (on_progress_thread()) {
      f();
      return true;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    {
      std::lock_guard lock(q_mu);
      tasks.push_back([f = std::move(f), done] {
        f();
        done->store(true);
      });
      q_pending.store(true, std::memory_order_seq_cst);
    }
    wake();
    while (!done->load()) {
      if (exited.load()) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
  }

  void begin_shutdown() {
    stopping.store(true, std::memory_order_seq_cst);
    exit_requested.store(true, std::memory_order_seq_cst);
    if (worker) ucp_worker_signal(worker);
    std::lock_guard lock(park_mu);
    park_cv.notify_all();
  }
};

thread_local UcxTransport::Impl* UcxTransport::Impl::tls_holder = nullptr;

// ---------------------------------------------------------------- public API

UcxTransport::UcxTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<UcxTransport> UcxTransport::create(Bootstrap& bootstrap, UcxOptions options) {
  return std::unique_ptr<UcxTransport>(
      new UcxTransport(std::make_unique<Impl>(bootstrap, std::move(options))));
}

UcxTransport::~UcxTransport() = default;

NodeId UcxTransport::self() const {
  return impl_->self;
}
unsigned UcxTransport::node_count() const {
  return impl_->n;
}

void UcxTransport::set_receiver(Channel channel, Receiver receiver) {
  impl_->set_receiver(channel, std::move(receiver));
}

void UcxTransport::on_peer_failure(FailureHandler handler) {
  impl_->on_peer_failure(std::move(handler));
}

void UcxTransport::start_delivery() {
  impl_->start_delivery();
}

bool UcxTransport::send(NodeId to, Channel channel, std::span<const u8> header,
                        std::span<const u8> payload) {
  if (channel == Channel::kHeartbeat) return false;  // reserved
  return impl_->send(to, channel, 0, header, payload);
}

void UcxTransport::shutdown() {
  if (impl_->on_progress_thread()) {
    // From a receiver: the progress thread finishes the shutdown once it returns.
    impl_->begin_shutdown();
    return;
  }
  impl_->stop();
}

void UcxTransport::busy_poll_for(std::chrono::microseconds window) {
  impl_->busy_poll_for(window);
}

bool UcxTransport::poll_until(const std::function<bool()>& done,
                              std::chrono::microseconds timeout) {
  return impl_->poll_until(done, timeout);
}

const PeerTable& UcxTransport::peers() const {
  return impl_->table;
}

UcxCounters UcxTransport::counters() const {
  auto& c = impl_->c;
  UcxCounters o;
  o.messages_sent = c.messages_sent.load();
  o.bytes_sent = c.bytes_sent.load();
  o.messages_received = c.messages_received.load();
  o.bytes_received = c.bytes_received.load();
  o.heartbeats_sent = c.heartbeats_sent.load();
  o.reordered = c.reordered.load();
  o.rejected = c.rejected.load();
  o.dropped_backlog = c.dropped_backlog.load();
  o.send_pending = c.send_pending.load();
  o.wakeups = c.wakeups.load();
  return o;
}

std::string UcxTransport::describe_lanes(NodeId peer) const {
  if (peer >= impl_->n || peer == impl_->self || !impl_->peers[peer].ep) return "";
  char* buf = nullptr;
  std::size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (!f) return "";
  ucp_ep_print_info(impl_->peers[peer].ep, f);
  std::fclose(f);
  std::string s(buf, len);
  std::free(buf);
  return s;
}

bool UcxTransport::send_raw_for_test(NodeId peer, std::span<const u8> am_header,
                                     std::span<const u8> data) {
  if (peer >= impl_->n || peer == impl_->self) return false;
  std::vector<u8> h(am_header.begin(), am_header.end());
  std::vector<u8> d(data.begin(), data.end());
  bool ok = false;
  Impl* impl = impl_.get();
  impl->run_on_progress([&] {
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    rp.flags = UCP_AM_SEND_FLAG_EAGER;
    ucs_status_ptr_t r =
        ucp_am_send_nbx(impl->peers[peer].ep, kAmId, h.data(), h.size(), d.data(), d.size(), &rp);
    ok = !UCS_PTR_IS_ERR(r);
    if (UCS_PTR_IS_PTR(r)) {
      while (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_worker_progress(impl->worker);
      ucp_request_free(r);
    }
  });
  return ok;
}

std::vector<u8> UcxTransport::make_header_for_test(NodeId to, Channel channel, u64 seq) const {
  (void)to;
  MsgHeader h{impl_->session, impl_->self, static_cast<u8>(channel), 0, seq};
  std::vector<u8> out(sizeof h);
  std::memcpy(out.data(), &h, sizeof h);
  return out;
}

}  // namespace dvmm::cluster
