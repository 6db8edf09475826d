// End-to-end tests of the DSM runtime (src/dsm/dsm_node.cpp) over the in-process
// transport: several nodes, each with its own GuestRam, and worker threads that behave
// like harts.
//
// A worker models a hart honestly: it checks GuestRam::allows immediately before each
// access (as a TLB fill does) and serves TLB-flush requests only between accesses (as a
// hart does at instruction boundaries). The node's flusher requests a flush from every
// worker and waits for all of them, exactly the sequence the vmm's flusher runs with
// Hart::request_flush / flush_done. If the runtime copied a page out before the flush,
// or granted two writers, increments would be lost and the totals would not match.
#include "dsm/dsm_node.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "dsm/inproc_transport.hpp"
#include "dsm/wire.hpp"

namespace dvmm::dsm {
namespace {

constexpr Gpa kBase = 0x8000'0000;

// The flush side of a hart: a ticket counter like Hart::request_flush / flush_done.
struct FakeHart {
  std::atomic<u64> requested{0};
  std::atomic<u64> done{0};
  std::atomic<bool> parked{false};  // finished: touches no memory any more
  void serve() {
    const u64 r = requested.load(std::memory_order_acquire);
    if (done.load(std::memory_order_relaxed) < r) done.store(r, std::memory_order_release);
  }
};

struct TestNode {
  std::unique_ptr<memory::GuestRam> ram;
  std::vector<std::unique_ptr<FakeHart>> harts;
  std::unique_ptr<GuestRamPages> pages;
  std::unique_ptr<DsmNode> dsm;
};

class Cluster {
 public:
  Cluster(unsigned nodes, u64 pages, unsigned harts_per_node, InProcOptions net_opts,
          DsmOptions dsm_opts = {})
      : homes_(HomeMap::even(kBase, pages, nodes)), net_(nodes, net_opts) {
    for (unsigned n = 0; n < nodes; ++n) {
      auto tn = std::make_unique<TestNode>();
      tn->ram = std::make_unique<memory::GuestRam>(kBase, pages * kPageSize);
      for (unsigned h = 0; h < harts_per_node; ++h)
        tn->harts.push_back(std::make_unique<FakeHart>());
      TestNode* raw = tn.get();
      tn->pages = std::make_unique<GuestRamPages>(*tn->ram, [raw](u64 /*page*/,
                                                                  const WaitHook& while_waiting) {
        std::vector<std::pair<FakeHart*, u64>> tickets;
        for (auto& h : raw->harts) {
          tickets.emplace_back(h.get(), h->requested.fetch_add(1, std::memory_order_acq_rel) + 1);
        }
        for (;;) {
          if (while_waiting) while_waiting();
          bool all = true;
          for (auto& [h, t] : tickets) {
            all = all && (h->parked.load(std::memory_order_acquire) ||
                          h->done.load(std::memory_order_acquire) >= t);
          }
          if (all) return;
          std::this_thread::yield();
        }
      });
      dsm_opts.log = [this](const std::string& line) {
        std::lock_guard lock(log_mutex_);
        log_.push_back(line);
      };
      tn->dsm = std::make_unique<DsmNode>(homes_, *tn->pages, net_.endpoint(static_cast<NodeId>(n)),
                                          dsm_opts);
      nodes_.push_back(std::move(tn));
    }
    for (auto& n : nodes_) n->dsm->start();
    net_.start();
  }
  ~Cluster() { shutdown(); }

  void shutdown() {
    net_.stop();
    for (auto& n : nodes_) n->dsm->stop();
  }

  TestNode& node(unsigned n) { return *nodes_[n]; }
  InProcNetwork& net() { return net_; }
  const HomeMap& homes() const { return homes_; }
  std::vector<std::string> log() {
    std::lock_guard lock(log_mutex_);
    return log_;
  }

 private:
  HomeMap homes_;
  InProcNetwork net_;
  std::vector<std::unique_ptr<TestNode>> nodes_;
  std::mutex log_mutex_;
  std::vector<std::string> log_;
};

u64* slot(TestNode& n, u64 page, unsigned index) {
  return reinterpret_cast<u64*>(n.ram->host_ptr(kBase + page * kPageSize) + index * sizeof(u64));
}

// One worker: `ops` operations on random hot pages; most increment the page's shared
// counter (slot 0), some read it and check it never goes backwards for this worker.
struct WorkerResult {
  std::vector<u64> increments;
  std::string error;
};

void run_worker(TestNode& n, FakeHart& hart, u64 seed, unsigned ops, u64 hot_pages,
                const std::atomic<bool>& go, WorkerResult& out) {
  std::mt19937_64 rng(seed);
  while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
  out.increments.assign(hot_pages, 0);
  std::vector<u64> seen(hot_pages, 0);
  const WaitHook serve = [&hart] { hart.serve(); };
  for (unsigned i = 0; i < ops;) {
    hart.serve();  // an instruction boundary
    const u64 page = rng() % hot_pages;
    const bool write = rng() % 4 != 0;
    const AccessType type = write ? AccessType::kWrite : AccessType::kRead;
    // One "instruction": the TLB-fill check and the access, with no flush in between.
    if (!n.ram->allows(page, type)) {
      if (!n.dsm->acquire(kBase + page * kPageSize, type, serve)) {
        out.error = "acquire failed";
        return;
      }
      continue;  // re-execute: the page may be gone again already
    }
    std::atomic_ref<u64> counter(*slot(n, page, 0));
    if (write) {
      const u64 old = counter.fetch_add(1, std::memory_order_acq_rel);  // an AMO
      if (old < seen[page]) out.error = "counter went backwards before an increment";
      seen[page] = old + 1;
      ++out.increments[page];
    } else {
      const u64 v = counter.load(std::memory_order_acquire);
      if (v < seen[page]) out.error = "read an older value than this worker saw";
      seen[page] = v;
    }
    if (!out.error.empty()) return;
    ++i;
    // Let the other workers in now and then: without it, on few cores, one worker may
    // finish all its operations within one grant and nothing would contend.
    if (rng() % 8 == 0) std::this_thread::yield();
  }
  hart.parked.store(true, std::memory_order_release);
}

void run_counters(unsigned nodes, unsigned harts, u64 pages, u64 hot, unsigned ops,
                  InProcOptions net, DsmOptions opts = {}) {
  Cluster c(nodes, pages, harts, net, opts);
  std::vector<std::thread> threads;
  std::vector<WorkerResult> results(nodes * harts);
  std::atomic<bool> go{false};
  for (unsigned n = 0; n < nodes; ++n) {
    for (unsigned h = 0; h < harts; ++h) {
      threads.emplace_back([&, n, h] {
        run_worker(c.node(n), *c.node(n).harts[h], net.seed * 1000 + n * 16 + h, ops, hot, go,
                   results[n * harts + h]);
      });
    }
  }
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  std::vector<u64> expected(hot, 0);
  for (auto& r : results) {
    ASSERT_TRUE(r.error.empty()) << r.error;
    for (u64 p = 0; p < hot; ++p) expected[p] += r.increments[p];
  }
  // Read every counter through node 0 (all harts are parked, so flushes do not wait).
  for (u64 p = 0; p < hot; ++p) {
    ASSERT_TRUE(c.node(0).dsm->acquire(kBase + p * kPageSize, AccessType::kRead));
    EXPECT_EQ(*slot(c.node(0), p, 0), expected[p]) << "page " << p << " seed " << net.seed;
  }
  u64 transferred = 0, invalidations = 0, faults = 0, rejected = 0;
  for (unsigned n = 0; n < nodes; ++n) {
    const DsmCounters k = c.node(n).dsm->counters();
    transferred += k.pages_sent;
    invalidations += k.invalidations_sent;
    faults += k.faults_read + k.faults_write;
    rejected += k.rejected;
  }
  std::printf(
      "[ dsm ] %u nodes x %u harts, %llu hot pages, seed %llu: %llu faults, %llu pages moved, "
      "%llu invalidations\n",
      nodes, harts, (unsigned long long)hot, (unsigned long long)net.seed,
      (unsigned long long)faults, (unsigned long long)transferred,
      (unsigned long long)invalidations);
  EXPECT_EQ(rejected, 0u);
  EXPECT_GT(transferred, 0u);
  EXPECT_GT(faults, 0u);
  EXPECT_GT(invalidations, 0u);
  EXPECT_TRUE(c.log().empty()) << c.log().front();
}

TEST(DsmNode, ThreeNodesSharedCountersInOrderDelivery) {
  run_counters(3, 2, 16, 6, 1500, InProcOptions{false, 1, 0});
}

TEST(DsmNode, ThreeNodesSharedCountersShuffledManySeeds) {
  for (u64 seed = 1; seed <= 10; ++seed) {
    run_counters(3, 2, 16, 4 + seed % 5, 400, InProcOptions{true, seed, 48});
    if (HasFatalFailure()) return;
  }
}

TEST(DsmNode, OneHotPageAllNodesHammering) {
  // The worst case for bouncing: every worker increments the same page.
  run_counters(3, 2, 16, 1, 1500, InProcOptions{true, 99, 16});
}

TEST(DsmNode, FourNodesWithoutHolds) {
  // max_hold 0: pages may be taken right after a grant; progress through re-faults.
  DsmOptions o;
  o.max_hold = std::chrono::microseconds(0);
  run_counters(4, 1, 16, 3, 400, InProcOptions{true, 7, 32}, o);
}

TEST(DsmNode, CountersAndTopBouncedPages) {
  Cluster c(2, 4, 1, InProcOptions{});
  TestNode& n0 = c.node(0);
  TestNode& n1 = c.node(1);
  n0.harts[0]->parked = true;
  n1.harts[0]->parked = true;
  // Page 0 is homed at node 0. Bounce it between the nodes 5 times; page 1 once.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(n1.dsm->acquire(kBase, AccessType::kWrite));
    ASSERT_TRUE(n0.dsm->acquire(kBase, AccessType::kWrite));
  }
  ASSERT_TRUE(n1.dsm->acquire(kBase + kPageSize, AccessType::kRead));
  // The home counts a transaction after sending its grant: let it finish.
  for (int i = 0; i < 2000 && n0.dsm->counters().transactions < 11; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const DsmCounters k0 = n0.dsm->counters();
  const DsmCounters k1 = n1.dsm->counters();
  EXPECT_EQ(k1.faults_write, 5u);
  EXPECT_EQ(k1.faults_read, 1u);
  EXPECT_EQ(k0.faults_write, 5u);
  EXPECT_EQ(k1.pages_received, 6u);
  EXPECT_EQ(k0.pages_received, 5u);
  EXPECT_EQ(k1.invalidations_received, 5u);
  EXPECT_EQ(k0.transactions, 11u);
  EXPECT_EQ(k0.bounces, 11u);
  const std::vector<PageBounce> top = n0.dsm->top_bounced(5);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].page, 0u);
  EXPECT_EQ(top[0].count, 10u);
  EXPECT_EQ(top[1].page, 1u);
  EXPECT_EQ(top[1].count, 1u);
  EXPECT_EQ(n0.dsm->top_bounced(1).size(), 1u);
  EXPECT_TRUE(n1.dsm->top_bounced(5).empty());  // node 1 homes pages 2 and 3
  // An upgrade: node 1 reads page 0 (now Shared with the home), then writes it.
  ASSERT_TRUE(n1.dsm->acquire(kBase, AccessType::kRead));
  ASSERT_TRUE(n1.dsm->acquire(kBase, AccessType::kWrite));
  EXPECT_EQ(n1.dsm->counters().upgrades, 1u);
}

TEST(DsmNode, DataFollowsThePageAndCodeGenerationsBump) {
  Cluster c(2, 4, 1, InProcOptions{});
  TestNode& n0 = c.node(0);
  TestNode& n1 = c.node(1);
  n0.harts[0]->parked = true;
  n1.harts[0]->parked = true;
  *slot(n0, 1, 5) = 0xfeed;
  n1.ram->mark_code(1);
  const u32 gen = n1.ram->code_generation(1);
  ASSERT_TRUE(n1.dsm->acquire(kBase + kPageSize + 40, AccessType::kExecute));
  EXPECT_EQ(*slot(n1, 1, 5), 0xfeedu);
  EXPECT_NE(n1.ram->code_generation(1), gen);  // decoded code from the old bytes is dropped
  EXPECT_EQ(n1.ram->access(1), PageAccess::kRead);
  EXPECT_EQ(n0.ram->access(1), PageAccess::kRead);
  ASSERT_TRUE(n1.dsm->acquire(kBase + kPageSize, AccessType::kWrite));
  EXPECT_EQ(n0.ram->access(1), PageAccess::kNone);
  *slot(n1, 1, 5) = 0xbeef;
  ASSERT_TRUE(n0.dsm->acquire(kBase + kPageSize, AccessType::kRead));
  EXPECT_EQ(*slot(n0, 1, 5), 0xbeefu);
  EXPECT_EQ(n1.ram->access(1), PageAccess::kRead);
  // Evict: node 1's read copy goes back.
  n1.dsm->evict(kBase + kPageSize);
  for (int i = 0; i < 1000 && n1.ram->access(1) != PageAccess::kNone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(n1.ram->access(1), PageAccess::kNone);
}

TEST(DsmNode, MalformedAndForgedMessagesAreRejectedAndLogged) {
  Cluster c(3, 6, 1, InProcOptions{});
  for (unsigned n = 0; n < 3; ++n) c.node(n).harts[0]->parked = true;
  Transport& t2 = c.net().endpoint(2);
  const u8 junk[40] = {1, 2, 3};
  t2.send(0, junk, {});
  // A well-formed message that claims to come from node 1.
  const Header forged = encode_header({MsgType::kReadRequest, 1, PageAccess::kNone, 0, 1});
  t2.send(0, forged, {});
  // A well-formed grant nobody asked for.
  const std::vector<u8> page(kPageSize, 0xAA);
  const Header grant = encode_header({MsgType::kGrantData, 2, PageAccess::kReadWrite, 0, 1});
  t2.send(1, grant, page);
  for (int i = 0; i < 1000 && (c.node(0).dsm->counters().rejected < 2 ||
                               c.node(1).dsm->counters().rejected < 1);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(c.node(0).dsm->counters().rejected, 2u);
  EXPECT_EQ(c.node(1).dsm->counters().rejected, 1u);
  EXPECT_EQ(c.log().size(), 3u);
  EXPECT_EQ(c.node(1).ram->access(0), PageAccess::kNone);  // the forged grant changed nothing
  // The cluster still works.
  ASSERT_TRUE(c.node(2).dsm->acquire(kBase, AccessType::kWrite));
  ASSERT_TRUE(c.node(1).dsm->acquire(kBase, AccessType::kRead));
}

TEST(DsmNode, StopReleasesBlockedAcquire) {
  Cluster c(2, 4, 1, InProcOptions{});
  c.node(0).harts[0]->parked = true;
  c.node(1).harts[0]->parked = true;
  c.net().stop();  // nothing will be delivered: the acquire below cannot complete
  std::atomic<int> result{-1};
  std::thread t([&] { result = c.node(1).dsm->acquire(kBase, AccessType::kRead) ? 1 : 0; });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(result.load(), -1);
  c.node(1).dsm->stop();
  t.join();
  EXPECT_EQ(result.load(), 0);
}

}  // namespace
}  // namespace dvmm::dsm
