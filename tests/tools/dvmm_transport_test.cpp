// Multi-process tests and benchmark of the cluster transport (src/cluster): this program
// forks/execs N copies of itself as node processes that meet through LocalBootstrap and
// talk over UcxTransport, exactly as `dvmm run --nodes N` node processes will.
//
//   dvmm_transport_test run TEST --nodes N [--send-path direct|queued] [--kill RANK]
//       TEST: pingpong | alltoall | pages | kill | refuse
//       Exit 0 when every node passed. `kill` SIGKILLs RANK (default N-1) once all nodes
//       are up and checks that every survivor reports it within 5 s. `refuse` starts the
//       last rank with another dvmm version and checks that both sides fail clearly.
//   dvmm_transport_test bench [--tls LIST]... [--iters K] [--no-perftest]
//       2 nodes per UCX_TLS setting (default: "posix,self" and "tcp") and send path:
//       one-way latency (median) and bandwidth of 8 B and 4 KiB messages, next to
//       ucx_perftest's ucp_am_lat / ucp_am_bw on the same transport in the same run.
//   dvmm_transport_test node ...   (internal: one node process)
//
// Node processes print protocol lines on stdout (READY, DETECTED, RESULT, OK, FAIL) that
// the parent reads; diagnostics go to stderr.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cluster/bootstrap.hpp"
#include "cluster/ucx_transport.hpp"

using namespace dvmm;
using namespace dvmm::cluster;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr const char* kVersion = "transport-test-1";

i64 now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

u64 fnv(std::span<const u8> b) {
  return description_hash(b);
}

[[noreturn]] void die(const std::string& msg) {
  std::printf("FAIL %s\n", msg.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "dvmm_transport_test: %s\n", msg.c_str());
  // Debugging: keep the process around to attach a debugger.
  if (std::getenv("DVMM_TT_HOLD_ON_FAIL")) std::this_thread::sleep_for(std::chrono::seconds(60));
  std::_Exit(1);
}

void say(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

struct Args {
  std::vector<std::string> pos;
  std::map<std::string, std::vector<std::string>> opt;
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = opt.find(k);
    return it == opt.end() || it->second.empty() ? def : it->second.back();
  }
  bool has(const std::string& k) const { return opt.count(k) != 0; }
};

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0) {
      std::string key = s.substr(2);
      if (key == "no-perftest") {
        a.opt[key].push_back("1");
      } else if (i + 1 < argc) {
        a.opt[key].push_back(argv[++i]);
      } else {
        die("option " + s + " needs a value");
      }
    } else {
      a.pos.push_back(s);
    }
  }
  return a;
}

// ------------------------------------------------------------------ node side

struct Node {
  Args args;
  NodeId rank = 0;
  unsigned n = 0;
  std::unique_ptr<UcxTransport> t;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<bool> fin;  // FIN received from each node
  std::optional<NodeId> expect_dead;

  void setup(SendPath path) {
    BootstrapOptions bo;
    bo.join.version = args.get("version", kVersion);
    std::string desc = "machine description of the test";
    bo.join.description.assign(desc.begin(), desc.end());
    bo.timeout = std::chrono::milliseconds(std::stoi(args.get("timeout-ms", "20000")));
    LocalBootstrap boot(args.get("dir"), rank, n, bo);
    UcxOptions uo;
    uo.send_path = path;
    // Defaults unless overridden (experiments): --busy-poll-us, --busy-poll-max-us.
    if (args.has("busy-poll-us"))
      uo.busy_poll = std::chrono::microseconds(std::stol(args.get("busy-poll-us")));
    if (args.has("busy-poll-max-us")) {
      uo.busy_poll_max = std::chrono::microseconds(std::stol(args.get("busy-poll-max-us")));
    }
    try {
      t = UcxTransport::create(boot, uo);
    } catch (const ClusterError& e) {
      die(std::string("setup: ") + e.what());
    }
    fin.assign(n, false);
    t->set_receiver(Channel::kControl, [this](NodeId from, std::span<const u8> b) {
      if (b.size() == 3 && std::memcmp(b.data(), "FIN", 3) == 0) {
        std::lock_guard lock(mu);
        fin[from] = true;
        cv.notify_all();
      } else {
        on_control(from, b);
      }
    });
    t->on_peer_failure([this](NodeId node, const std::string& why) {
      if (expect_dead) {
        if (node == *expect_dead) {
          say("DETECTED " + std::to_string(node) + " " + std::to_string(now_ns()) + " " + why);
          std::lock_guard lock(mu);
          fin[node] = true;
          cv.notify_all();
        }
        return;
      }
      std::lock_guard lock(mu);
      if (!fin[node]) die("unexpected failure of node " + std::to_string(node) + ": " + why);
    });
  }

  std::function<void(NodeId, std::span<const u8>)> on_control = [](NodeId, std::span<const u8>) {};

  // Everyone tells everyone it is done, then waits for all: after this, every message
  // sent before has been delivered (FIFO per pair).
  void finish(const std::string& summary, std::function<std::string()> check = {}) {
    const u8 msg[3] = {'F', 'I', 'N'};
    for (unsigned i = 0; i < n; ++i) {
      if (i != rank && !t->send(static_cast<NodeId>(i), Channel::kControl, msg)) {
        die("cannot send FIN to node " + std::to_string(i));
      }
    }
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, 60s, [&] {
          for (unsigned i = 0; i < n; ++i) {
            if (i != rank && !fin[i]) return false;
          }
          return true;
        })) {
      die("timed out waiting for the other nodes to finish");
    }
    lock.unlock();
    if (check) {
      std::string err = check();
      if (!err.empty()) die(err);
    }
    t->shutdown();
    say("OK " + summary);
  }
};

SendPath parse_path(const std::string& s) {
  if (s == "direct") return SendPath::kDirect;
  if (s == "queued") return SendPath::kQueued;
  die("bad --send-path " + s);
}

void node_pingpong(Node& nd) {
  constexpr u32 kRounds = 2000;
  std::atomic<u32> got{0};
  std::atomic<bool> bad{false};
  nd.t->set_receiver(Channel::kCpu, [&](NodeId from, std::span<const u8> b) {
    if (nd.rank != 0) {
      nd.t->send(from, Channel::kCpu, b);
      return;
    }
    u64 v;
    if (b.size() != 8) bad = true;
    std::memcpy(&v, b.data(), 8);
    if (v != (u64{from} << 32 | got.load())) bad = true;
    got.fetch_add(1);
    got.notify_all();
  });
  nd.t->start_delivery();
  if (nd.rank == 0) {
    auto start = Clock::now();
    for (unsigned peer = 1; peer < nd.n; ++peer) {
      for (u32 i = 0; i < kRounds; ++i) {
        got.store(i);
        u64 v = u64{peer} << 32 | i;
        nd.t->busy_poll_for(100us);
        if (!nd.t->send(static_cast<NodeId>(peer), Channel::kCpu, {reinterpret_cast<u8*>(&v), 8})) {
          die("send failed");
        }
        // Sleep in the kernel, not spin: on 2 cores a spinning waiter starves the
        // progress threads it waits for.
        auto deadline = Clock::now() + 5s;
        for (u32 g = got.load(); g != i + 1; g = got.load()) {
          got.wait(g);
          if (Clock::now() > deadline) die("no reply from node " + std::to_string(peer));
        }
      }
    }
    if (bad) die("wrong reply contents or order");
    double us = std::chrono::duration<double, std::micro>(Clock::now() - start).count() /
                (kRounds * (nd.n - 1));
    nd.finish("pingpong " + std::to_string((nd.n - 1) * kRounds) + " round trips, " +
              std::to_string(us) + " us each");
  } else {
    nd.finish("pingpong echo");
  }
}

// Every node sends to every other node messages of random sizes on random channels with
// a checksum; receivers check per-sender order (across channels) and contents.
void node_alltoall(Node& nd) {
  const u32 kEach = static_cast<u32>(std::stoul(nd.args.get("count", "3000")));
  struct Hdr {
    u32 src, idx, len, pad;
    u64 sum;
  };
  std::vector<u32> expected(nd.n, 0);
  std::atomic<u64> received{0};
  std::atomic<u64> errors{0};
  auto rx = [&](NodeId from, std::span<const u8> b) {
    Hdr h;
    if (b.size() < sizeof h) {
      ++errors;
      return;
    }
    std::memcpy(&h, b.data(), sizeof h);
    auto payload = b.subspan(sizeof h);
    if (h.src != from || h.idx != expected[from] || h.len != payload.size() ||
        h.sum != fnv(payload)) {
      if (errors.fetch_add(1) < 5) {
        std::fprintf(stderr, "node %u: bad message from %u: idx %u expected %u len %u/%zu\n",
                     nd.rank, from, h.idx, expected[from], h.len, payload.size());
      }
    }
    expected[from] = h.idx + 1;
    ++received;
  };
  const Channel chans[3] = {Channel::kDsm, Channel::kCpu, Channel::kMmio};
  for (Channel c : chans) nd.t->set_receiver(c, rx);
  nd.t->start_delivery();
  // Two sender threads, each for half of the destinations: sends from several threads.
  auto sender = [&](unsigned parity) {
    std::mt19937_64 rng(nd.rank * 7919 + parity);
    std::vector<u8> buf(8192);
    for (unsigned dst = 0; dst < nd.n; ++dst) {
      if (dst == nd.rank || dst % 2 != parity) continue;
      for (u32 i = 0; i < kEach; ++i) {
        u32 len = static_cast<u32>(rng() % 6000);
        if (i % 10 == 0) len = 4096;
        for (u32 k = 0; k < len; k += 8) {
          u64 r = rng();
          std::memcpy(buf.data() + k, &r, std::min<u32>(8, len - k));
        }
        std::span<const u8> payload(buf.data(), len);
        Hdr h{nd.rank, i, len, 0, fnv(payload)};
        if (!nd.t->send(static_cast<NodeId>(dst), chans[rng() % 3],
                        {reinterpret_cast<u8*>(&h), sizeof h}, payload)) {
          die("send to node " + std::to_string(dst) + " failed");
        }
      }
    }
  };
  std::thread a(sender, 0u), b(sender, 1u);
  a.join();
  b.join();
  nd.finish("alltoall", [&] {
    const u64 want = u64{kEach} * (nd.n - 1);
    if (received.load() != want || errors.load() != 0) {
      return "alltoall: received " + std::to_string(received.load()) + " of " +
             std::to_string(want) + ", " + std::to_string(errors.load()) + " bad";
    }
    return std::string();
  });
}

void node_pages(Node& nd) {
  const u32 kCount = static_cast<u32>(std::stoul(nd.args.get("count", "20000")));
  std::atomic<u32> next{0};
  std::atomic<u32> bad{0};
  auto rx = [&](NodeId, std::span<const u8> b) {
    u32 seq;
    if (b.size() != 16 + 4096) {
      ++bad;
      return;
    }
    std::memcpy(&seq, b.data(), 4);
    u64 sum;
    std::memcpy(&sum, b.data() + 8, 8);
    if (seq != next.load() || sum != fnv(b.subspan(16))) ++bad;
    next.store(seq + 1);
  };
  nd.t->set_receiver(Channel::kDsm, rx);
  nd.t->set_receiver(Channel::kMmio, rx);
  nd.t->start_delivery();
  if (nd.rank == 0) {
    std::vector<u8> page(4096);
    u8 hdr[16] = {};
    auto start = Clock::now();
    for (u32 s = 0; s < kCount; ++s) {
      for (std::size_t i = 0; i < page.size(); i += 64) page[i] = static_cast<u8>(s + i);
      u64 sum = fnv(page);
      std::memcpy(hdr, &s, 4);
      std::memcpy(hdr + 8, &sum, 8);
      if (!nd.t->send(1, s % 2 ? Channel::kMmio : Channel::kDsm, hdr, page)) die("send failed");
    }
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    nd.finish("pages sent " + std::to_string(kCount) + " in " + std::to_string(secs) + " s");
  } else {
    // Rank 0's FIN arrives after all its pages (FIFO across channels).
    nd.finish("pages", [&] {
      if (nd.rank == 1 && (next.load() != kCount || bad.load() != 0)) {
        return "pages: received " + std::to_string(next.load()) + " of " + std::to_string(kCount) +
               " in order, " + std::to_string(bad.load()) + " bad";
      }
      return std::string();
    });
  }
}

void node_kill(Node& nd) {
  // Some traffic while it happens: each node pings its right neighbour now and then.
  nd.t->set_receiver(Channel::kCpu, [](NodeId, std::span<const u8>) {});
  nd.t->start_delivery();
  say("READY");
  auto deadline = Clock::now() + 20s;
  u32 i = 0;
  for (;;) {
    {
      std::unique_lock lock(nd.mu);
      if (nd.cv.wait_for(lock, 10ms, [&] { return nd.fin[*nd.expect_dead]; })) break;
    }
    if (Clock::now() > deadline)
      die("node " + std::to_string(*nd.expect_dead) + " was never reported");
    NodeId to = static_cast<NodeId>((nd.rank + 1) % nd.n);
    nd.t->send(to, Channel::kCpu, {reinterpret_cast<u8*>(&i), 4});
    ++i;
  }
  nd.t->shutdown();
  say("OK detected");
}

// ---- bench (rank 0 measures, rank 1 echoes) ----

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void node_bench(Node& nd) {
  const u32 iters = static_cast<u32>(std::stoul(nd.args.get("iters", "20000")));
  // Receiver-driven ping-pong: the whole round trip runs on the progress threads (how
  // the DSM's protocol messages flow): one-way latency = RTT / 2.
  std::atomic<u32> count{0};
  std::atomic<u32> target{0};
  std::vector<i64> stamps;
  std::vector<u8> buf(4096, 0x5a);
  std::atomic<u64> bw_got{0};
  std::atomic<u32> bw_expect{0};
  std::atomic<bool> bw_done{false};
  std::atomic<bool> pong{false};
  std::size_t size = 8;
  nd.t->set_receiver(Channel::kCpu, [&](NodeId from, std::span<const u8> b) {
    if (nd.rank == 1) {
      nd.t->send(from, Channel::kCpu, b);
      return;
    }
    stamps.push_back(now_ns());
    u32 c = count.fetch_add(1) + 1;
    if (c < target.load()) nd.t->send(1, Channel::kCpu, {buf.data(), size});
  });
  nd.t->set_receiver(Channel::kMmio, [&](NodeId from, std::span<const u8> b) {
    // Thread-driven ping-pong: the reply wakes a waiting thread.
    if (nd.rank == 1) {
      nd.t->send(from, Channel::kMmio, b);
      return;
    }
    pong.store(true, std::memory_order_release);
  });
  nd.t->set_receiver(Channel::kDsm, [&](NodeId from, std::span<const u8> b) {
    if (nd.rank == 1) {
      u64 k = bw_got.fetch_add(1) + 1;
      if (k == bw_expect.load()) {
        bw_got = 0;
        nd.t->send(from, Channel::kDsm, b.subspan(0, 1));
      }
      return;
    }
    bw_done = true;
  });
  nd.on_control = [&](NodeId, std::span<const u8> b) {
    u32 v;
    std::memcpy(&v, b.data(), 4);
    bw_expect = v;
  };
  nd.t->start_delivery();
  if (nd.rank != 0) {
    nd.finish("bench responder");
    auto c = nd.t->counters();
    say("RESULT counters1 wakeups " + std::to_string(c.wakeups) + " pending " +
        std::to_string(c.send_pending) + " received " + std::to_string(c.messages_received));
    return;
  }
  say("LANES " + [&] {
    std::string s = nd.t->describe_lanes(1);
    std::string out;
    std::istringstream in(s);
    for (std::string line; std::getline(in, line);) {
      if (line.find("lane[") != std::string::npos) out += line + " |";
    }
    return out;
  }());
  const bool only_bw = nd.args.get("only") == "bw";
  for (std::size_t sz : {std::size_t{8}, std::size_t{4096}}) {
    size = sz;
    if (!only_bw) {
      // receiver-driven
      for (int round = 0; round < 2; ++round) {  // round 0 warms up
        stamps.clear();
        stamps.reserve(iters + 1);
        count = 0;
        target = round == 0 ? iters / 10 : iters;
        i64 t0 = now_ns();
        stamps.push_back(t0);
        nd.t->send(1, Channel::kCpu, {buf.data(), size});
        while (count.load() < target.load()) std::this_thread::sleep_for(1ms);
        if (round == 1) {
          std::vector<double> rtt;
          for (std::size_t k = 1; k < stamps.size(); ++k)
            rtt.push_back((stamps[k] - stamps[k - 1]) / 1e3);
          double total = (stamps.back() - stamps.front()) / 1e3;
          say("RESULT lat_rx " + std::to_string(sz) + " median_us " +
              std::to_string(median(rtt) / 2) + " avg_us " + std::to_string(total / iters / 2));
        }
      }
      // thread-driven (a vCPU sends and spins for the reply, with busy_poll_for)
      std::vector<double> one;
      one.reserve(iters);
      for (u32 k = 0; k < iters; ++k) {
        pong.store(false);
        i64 t0 = now_ns();
        nd.t->busy_poll_for(200us);
        nd.t->send(1, Channel::kMmio, {buf.data(), size});
        while (!pong.load(std::memory_order_acquire)) {
        }
        one.push_back((now_ns() - t0) / 2e3);
      }
      say("RESULT lat_thread " + std::to_string(sz) + " median_us " + std::to_string(median(one)));
      // thread-driven with poll_until: the waiting thread progresses UCX and runs the
      // receiver itself (no hop from the progress thread)
      std::vector<double> polled;
      polled.reserve(iters);
      for (u32 k = 0; k < iters; ++k) {
        pong.store(false);
        i64 t0 = now_ns();
        nd.t->send(1, Channel::kMmio, {buf.data(), size});
        if (!nd.t->poll_until([&] { return pong.load(std::memory_order_acquire); }, 5s)) {
          die("no reply within 5 s");
        }
        polled.push_back((now_ns() - t0) / 2e3);
      }
      say("RESULT lat_poll " + std::to_string(sz) + " median_us " + std::to_string(median(polled)));
      // sleeping: a lone request after idleness (wake-ups on both sides)
      std::vector<double> idle;
      for (u32 k = 0; k < 200; ++k) {
        std::this_thread::sleep_for(2ms);
        pong.store(false);
        i64 t0 = now_ns();
        nd.t->send(1, Channel::kMmio, {buf.data(), size});
        while (!pong.load(std::memory_order_acquire)) std::this_thread::yield();
        idle.push_back((now_ns() - t0) / 2e3);
      }
      say("RESULT lat_idle " + std::to_string(sz) + " median_us " + std::to_string(median(idle)));
    }
    // bandwidth: a burst from this thread, acknowledged once at the end
    for (int round = 0; round < 2; ++round) {
      const u32 m = round == 0 ? iters / 10 : iters * 5;
      bw_done = false;
      nd.t->send(1, Channel::kControl, {reinterpret_cast<const u8*>(&m), 4});
      std::this_thread::sleep_for(20ms);
      i64 t0 = now_ns();
      for (u32 k = 0; k < m; ++k) nd.t->send(1, Channel::kDsm, {buf.data(), size});
      if (!nd.t->poll_until([&] { return bw_done.load(); }, 60s)) die("bandwidth: no ack");
      double secs = (now_ns() - t0) / 1e9;
      if (round == 1) {
        say("RESULT bw " + std::to_string(sz) + " MBps " +
            std::to_string(m * double(sz) / secs / 1e6) + " msgps " + std::to_string(m / secs));
      }
    }
  }
  auto c = nd.t->counters();
  say("RESULT counters wakeups " + std::to_string(c.wakeups) + " pending " +
      std::to_string(c.send_pending) + " reordered " + std::to_string(c.reordered));
  nd.finish("bench");
}

int node_main(const Args& a) {
  Node nd;
  nd.args = a;
  nd.rank = static_cast<NodeId>(std::stoul(a.get("rank")));
  nd.n = static_cast<unsigned>(std::stoul(a.get("nodes")));
  if (a.has("expect-dead")) nd.expect_dead = static_cast<NodeId>(std::stoul(a.get("expect-dead")));
  const std::string test = a.get("test");
  SendPath path = parse_path(a.get("send-path", "direct"));
  if (test == "refuse") {
    // The bootstrap must refuse; reaching setup's end is the failure.
    BootstrapOptions bo;
    bo.join.version = a.get("version", kVersion);
    bo.timeout = 10s;
    try {
      LocalBootstrap boot(a.get("dir"), nd.rank, nd.n, bo);
      auto t = UcxTransport::create(boot, {});
    } catch (const ClusterError& e) {
      say(std::string("REFUSED ") + e.what());
      return 0;
    }
    die("bootstrap was not refused");
  }
  nd.setup(path);
  if (test == "pingpong") {
    node_pingpong(nd);
  } else if (test == "alltoall") {
    node_alltoall(nd);
  } else if (test == "pages") {
    node_pages(nd);
  } else if (test == "kill") {
    node_kill(nd);
  } else if (test == "bench") {
    node_bench(nd);
  } else {
    die("unknown test " + test);
  }
  return 0;
}

// ------------------------------------------------------------------ parent side

struct Child {
  pid_t pid = -1;
  int out = -1;
  std::string buf;
  std::vector<std::string> lines;
  int status = -1;
  bool done = false;
};

std::string self_exe() {
  char p[4096];
  ssize_t n = readlink("/proc/self/exe", p, sizeof p - 1);
  if (n <= 0) die("cannot find /proc/self/exe");
  p[n] = 0;
  return p;
}

Child spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) die("pipe failed");
  Child c;
  c.pid = fork();
  if (c.pid < 0) die("fork failed");
  if (c.pid == 0) {
    dup2(fds[1], 1);
    for (auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> av;
    for (auto& s : argv) av.push_back(const_cast<char*>(s.c_str()));
    av.push_back(nullptr);
    execv(av[0], av.data());
    _exit(127);
  }
  close(fds[1]);
  c.out = fds[0];
  return c;
}

// Reads children's lines until all exited or the deadline; `on_line(rank, line)` sees
// every line as it arrives.
template <typename F>
void pump(std::vector<Child>& cs, Clock::time_point deadline, F on_line, const std::string& tag) {
  for (;;) {
    std::vector<pollfd> p;
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < cs.size(); ++i) {
      if (cs[i].out >= 0) {
        p.push_back({cs[i].out, POLLIN, 0});
        idx.push_back(i);
      }
    }
    if (p.empty()) break;
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      for (auto& c : cs) {
        if (c.pid > 0) kill(c.pid, SIGKILL);
      }
      die(tag + ": timed out; killed the node processes");
    }
    poll(p.data(), p.size(), static_cast<int>(std::min<long long>(left, 200)));
    for (std::size_t k = 0; k < p.size(); ++k) {
      if (!(p[k].revents & (POLLIN | POLLHUP))) continue;
      Child& c = cs[idx[k]];
      char b[4096];
      ssize_t r = read(c.out, b, sizeof b);
      if (r <= 0) {
        close(c.out);
        c.out = -1;
        continue;
      }
      c.buf.append(b, static_cast<std::size_t>(r));
      std::size_t nl;
      while ((nl = c.buf.find('\n')) != std::string::npos) {
        std::string line = c.buf.substr(0, nl);
        c.buf.erase(0, nl + 1);
        c.lines.push_back(line);
        std::printf("[%s rank %zu] %s\n", tag.c_str(), idx[k], line.c_str());
        std::fflush(stdout);
        on_line(idx[k], line);
      }
    }
  }
  for (auto& c : cs) {
    if (c.pid > 0) waitpid(c.pid, &c.status, 0);
  }
}

std::string make_dir() {
  char tmpl[] = "/tmp/dvmm-tt-XXXXXX";
  if (!mkdtemp(tmpl)) die("mkdtemp failed");
  return tmpl;
}

int run_main(const Args& a) {
  if (a.pos.size() < 2) die("usage: run TEST --nodes N");
  const std::string test = a.pos[1];
  const unsigned n = static_cast<unsigned>(std::stoul(a.get("nodes", "3")));
  const std::string dir = make_dir();
  const std::string exe = self_exe();
  const unsigned victim = static_cast<unsigned>(std::stoul(a.get("kill", std::to_string(n - 1))));
  std::vector<Child> cs;
  for (unsigned r = 0; r < n; ++r) {
    std::vector<std::string> av = {exe,           "node",
                                   "--test",      test,
                                   "--rank",      std::to_string(r),
                                   "--nodes",     std::to_string(n),
                                   "--dir",       dir,
                                   "--send-path", a.get("send-path", "direct")};
    if (a.has("count")) {
      av.push_back("--count");
      av.push_back(a.get("count"));
    }
    if (test == "kill") {
      av.push_back("--expect-dead");
      av.push_back(std::to_string(victim));
    }
    if (test == "refuse" && r == n - 1) {
      av.push_back("--version");
      av.push_back("some-other-version");
    }
    cs.push_back(spawn(av, {}));
  }
  unsigned ready = 0;
  i64 killed_at = 0;
  pump(
      cs, Clock::now() + 120s,
      [&](std::size_t rank, const std::string& line) {
        if (test == "kill" && line == "READY" && ++ready == n) {
          killed_at = now_ns();
          kill(cs[victim].pid, SIGKILL);
          std::printf("[run] killed rank %u (pid %d) with SIGKILL\n", victim, cs[victim].pid);
        }
        (void)rank;
      },
      test);
  rmdir(dir.c_str());
  bool ok = true;
  double worst = 0;
  for (unsigned r = 0; r < n; ++r) {
    Child& c = cs[r];
    if (test == "kill" && r == victim) {
      if (!(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGKILL)) {
        std::printf("[run] rank %u was not killed as planned\n", r);
        ok = false;
      }
      continue;
    }
    if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
      std::printf("[run] rank %u failed (status %d)\n", r, c.status);
      ok = false;
    }
    if (test == "kill") {
      bool seen = false;
      for (auto& l : c.lines) {
        unsigned node;
        long long t;
        if (std::sscanf(l.c_str(), "DETECTED %u %lld", &node, &t) == 2 && node == victim) {
          double s = (t - killed_at) / 1e9;
          worst = std::max(worst, s);
          seen = true;
          if (s > 5.0) {
            std::printf("[run] rank %u detected the death after %.2f s (> 5 s)\n", r, s);
            ok = false;
          }
          if (l.find("node " + std::to_string(victim)) == std::string::npos) {
            std::printf("[run] rank %u's report does not name node %u\n", r, victim);
            ok = false;
          }
        }
      }
      if (!seen) ok = false;
    }
    if (test == "refuse") {
      bool named = false;
      for (auto& l : c.lines) {
        named =
            named || (l.rfind("REFUSED", 0) == 0 &&
                      (r == n - 1 ? l.find("refused this node") != std::string::npos
                                  : l.find("node " + std::to_string(n - 1)) != std::string::npos) &&
                      l.find("version") != std::string::npos);
      }
      if (!named) {
        std::printf("[run] rank %u did not fail with a clear refusal\n", r);
        ok = false;
      }
    }
  }
  if (test == "kill" && ok) std::printf("[run] slowest detection: %.2f s after SIGKILL\n", worst);
  std::printf("[run] %s: %s\n", test.c_str(), ok ? "PASSED" : "FAILED");
  return ok ? 0 : 1;
}

// ---- bench: ours and ucx_perftest, same transport, same run ----

struct Perf {
  double lat_median_us = 0;
  double bw_MBps = 0;
  double msgps = 0;
};

// Runs ucx_perftest server + client on localhost; parses the client's "Final:" line.
// `sleep`: perftest's event-driven mode (-I -E sleep), the analogue of our progress
// thread sleeping on the event fd; otherwise it busy-polls all the time.
std::optional<Perf> perftest(const std::string& tls, const std::string& test, std::size_t size,
                             u32 iters, bool sleep) {
  const std::string port = std::to_string(20000 + (getpid() % 20000));
  std::vector<std::string> env = {"UCX_TLS=" + tls};
  std::vector<std::string> common = {
      "/usr/bin/ucx_perftest", "-t", test, "-s", std::to_string(size), "-n",
      std::to_string(iters),   "-p", port};
  if (sleep) {
    for (const char* o : {"-I", "-E", "sleep"}) common.push_back(o);
  }
  if (access("/usr/bin/ucx_perftest", X_OK) != 0) return std::nullopt;
  std::vector<Child> cs;
  cs.push_back(spawn(common, env));
  std::this_thread::sleep_for(300ms);
  auto client = common;
  client.insert(client.begin() + 1, "127.0.0.1");
  cs.push_back(spawn(client, env));
  pump(
      cs, Clock::now() + 120s, [](std::size_t, const std::string&) {}, "perftest");
  for (auto& l : cs[1].lines) {
    if (l.rfind("Final:", 0) != 0) continue;
    std::istringstream in(l.substr(6));
    double it, p50, avg, overall, bwa, bwo, mra, mro;
    if (in >> it >> p50 >> avg >> overall >> bwa >> bwo >> mra >> mro) {
      Perf p;
      p.lat_median_us = p50;
      p.bw_MBps = bwo * 1.048576;  // perftest's MB is MiB
      p.msgps = mro;
      return p;
    }
  }
  return std::nullopt;
}

int bench_main(const Args& a) {
  std::vector<std::string> tls_list = {"posix,self", "tcp"};
  if (a.has("tls")) tls_list = a.opt.at("tls");
  const std::string iters = a.get("iters", "20000");
  const std::string exe = self_exe();
  std::vector<std::string> table;
  for (const std::string& tls : tls_list) {
    std::map<std::string, double> ours[2];
    for (int path = 0; path < 2; ++path) {
      const std::string dir = make_dir();
      std::vector<Child> cs;
      for (unsigned r = 0; r < 2; ++r) {
        cs.push_back(spawn({exe,
                            "node",
                            "--test",
                            "bench",
                            "--rank",
                            std::to_string(r),
                            "--nodes",
                            "2",
                            "--dir",
                            dir,
                            "--iters",
                            iters,
                            "--only",
                            a.get("only", "all"),
                            "--busy-poll-us",
                            a.get("busy-poll-us", "20"),
                            "--busy-poll-max-us",
                            a.get("busy-poll-max-us", "200"),
                            "--send-path",
                            path == 0 ? "direct" : "queued"},
                           {"UCX_TLS=" + tls}));
      }
      pump(
          cs, Clock::now() + 300s,
          [&](std::size_t, const std::string& line) {
            std::istringstream in(line);
            std::string tag, kind, k1, k2;
            double sz, v1, v2;
            if (!(in >> tag >> kind) || tag != "RESULT" || kind == "counters") return;
            in >> sz >> k1 >> v1;
            std::string key = kind + "_" + std::to_string(static_cast<int>(sz));
            ours[path][key] = v1;
            if (in >> k2 >> v2) ours[path][key + "_rate"] = v2;
          },
          tls + (path == 0 ? " direct" : " queued"));
      rmdir(dir.c_str());
    }
    std::map<std::string, Perf> ref;
    if (!a.has("no-perftest")) {
      const u32 it = static_cast<u32>(std::stoul(iters));
      for (std::size_t sz : {8, 4096}) {
        for (bool sleep : {false, true}) {
          const std::string sfx = std::to_string(sz) + (sleep ? "_sleep" : "");
          if (auto p = perftest(tls, "ucp_am_lat", sz, sleep ? it / 10 : it, sleep))
            ref["lat_" + sfx] = *p;
          if (auto p = perftest(tls, "ucp_am_bw", sz, it * 5, sleep)) ref["bw_" + sfx] = *p;
        }
      }
    }
    char line[512];
    table.push_back("UCX_TLS=" + tls);
    table.push_back(
        "  metric                              direct    queued  perftest  perftest  direct/");
    table.push_back(
        "                                                           (poll)   (sleep)  perftest");
    for (std::size_t sz : {8, 4096}) {
      const std::string s = std::to_string(sz);
      auto get = [&](const std::string& key, double Perf::*f) {
        return ref.count(key) ? ref[key].*f : 0.0;
      };
      // `cmp` picks which perftest column the ratio uses (1: poll, 2: sleep).
      auto row = [&](const std::string& name, const std::string& key, double Perf::*f,
                     const std::string& refkey, int cmp) {
        double d = ours[0].count(key) ? ours[0][key] : -1;
        double q = ours[1].count(key) ? ours[1][key] : -1;
        double rp = get(refkey, f), rs = get(refkey + "_sleep", f);
        double r = cmp == 1 ? rp : rs;
        std::string ratio = r > 0 && d > 0 ? std::to_string(d / r).substr(0, 5) + "x" : "-";
        std::snprintf(line, sizeof line, "  %-34s %9.2f %9.2f %9.2f %9.2f  %s", name.c_str(), d, q,
                      rp, rs, ratio.c_str());
        table.push_back(line);
      };
      row("one-way us, receivers " + s + " B", "lat_rx_" + s, &Perf::lat_median_us, "lat_" + s, 1);
      row("one-way us, poll_until " + s + " B", "lat_poll_" + s, &Perf::lat_median_us, "lat_" + s,
          1);
      row("one-way us, thread spins " + s + " B", "lat_thread_" + s, &Perf::lat_median_us,
          "lat_" + s, 1);
      row("one-way us, after idle " + s + " B", "lat_idle_" + s, &Perf::lat_median_us, "lat_" + s,
          2);
      row("bandwidth MB/s " + s + " B", "bw_" + s, &Perf::bw_MBps, "bw_" + s, 1);
      row("message rate/s " + s + " B", "bw_" + s + "_rate", &Perf::msgps, "bw_" + s, 1);
    }
  }
  std::printf("\n");
  for (auto& l : table) std::printf("%s\n", l.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Args a = parse_args(argc, argv);
  if (a.pos.empty()) {
    std::fprintf(stderr,
                 "usage: dvmm_transport_test run pingpong|alltoall|pages|kill|refuse --nodes N "
                 "[--send-path direct|queued] [--kill RANK]\n"
                 "       dvmm_transport_test bench [--tls LIST]... [--iters K] [--no-perftest]\n");
    return 2;
  }
  if (a.pos[0] == "node") return node_main(a);
  if (a.pos[0] == "run") return run_main(a);
  if (a.pos[0] == "bench") return bench_main(a);
  die("unknown mode " + a.pos[0]);
}
