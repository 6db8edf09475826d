// UcxTransport with real UCX between workers in one process: delivery, ordering (per pair,
// across channels, with 4 KiB payloads, from many threads), self-sends, receivers wired
// late, malformed input, failure reports (goodbye and heartbeat timeout), and the DSM
// adapter. Each test runs for both send paths where it matters.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "cluster/dsm_adapter.hpp"
#include "cluster_group.hpp"

namespace dvmm::cluster {
namespace {

using namespace std::chrono_literals;
using testing::make_group;
using testing::start_all;

std::span<const u8> as_bytes(const void* p, std::size_t n) {
  return {static_cast<const u8*>(p), n};
}

template <typename Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class UcxTransportTest : public ::testing::TestWithParam<SendPath> {
 protected:
  UcxOptions options() {
    UcxOptions o;
    o.send_path = GetParam();
    return o;
  }
};

TEST_P(UcxTransportTest, PingPong) {
  std::atomic<int> replies{0};
  std::atomic<bool> order_ok{true};
  auto g = make_group(2, options());
  g[1]->set_receiver(Channel::kCpu, [&](NodeId from, std::span<const u8> b) {
    EXPECT_EQ(from, 0);
    g[1]->send(from, Channel::kCpu, b);  // echo from inside a receiver
  });
  g[0]->set_receiver(Channel::kCpu, [&](NodeId from, std::span<const u8> b) {
    EXPECT_EQ(from, 1);
    u32 v;
    ASSERT_EQ(b.size(), sizeof v);
    std::memcpy(&v, b.data(), sizeof v);
    if (v != static_cast<u32>(replies.load())) order_ok = false;
    int next = replies.fetch_add(1) + 1;
    if (next < 1000) {
      u32 w = static_cast<u32>(next);
      g[0]->send(1, Channel::kCpu, as_bytes(&w, sizeof w));
    }
  });
  start_all(g);
  u32 first = 0;
  ASSERT_TRUE(g[0]->send(1, Channel::kCpu, as_bytes(&first, sizeof first)));
  ASSERT_TRUE(wait_until([&] { return replies.load() == 1000; }));
  EXPECT_TRUE(order_ok);
}

// One sender, 4 KiB + header messages alternating over channels: the receiver must see
// them in send order across channels, with intact bytes.
TEST_P(UcxTransportTest, PagesInOrderAcrossChannels) {
  constexpr u32 kCount = 3000;
  std::atomic<u32> next{0};
  std::atomic<u32> bad{0};
  auto check = [&](NodeId, std::span<const u8> b) {
    u32 seq;
    if (b.size() != 16 + 4096) {
      ++bad;
      return;
    }
    std::memcpy(&seq, b.data(), 4);
    if (seq != next.load()) ++bad;
    for (std::size_t i = 0; i < 4096; i += 512) {
      if (b[16 + i] != static_cast<u8>(seq * 31 + i)) ++bad;
    }
    next.store(seq + 1);
  };
  auto g = make_group(2, options());
  g[1]->set_receiver(Channel::kDsm, check);
  g[1]->set_receiver(Channel::kMmio, check);
  g[1]->set_receiver(Channel::kControl, check);
  start_all(g);
  std::vector<u8> page(4096);
  u8 header[16] = {};
  for (u32 s = 0; s < kCount; ++s) {
    std::memcpy(header, &s, 4);
    for (std::size_t i = 0; i < page.size(); i += 512) page[i] = static_cast<u8>(s * 31 + i);
    Channel ch = s % 3 == 0 ? Channel::kDsm : s % 3 == 1 ? Channel::kMmio : Channel::kControl;
    ASSERT_TRUE(g[0]->send(1, ch, header, page));
  }
  ASSERT_TRUE(wait_until([&] { return next.load() == kCount; })) << next.load();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(g[1]->counters().rejected, 0u);
}

// Several threads send at once; each thread's messages arrive in its order.
TEST_P(UcxTransportTest, ManyThreadsKeepPerThreadOrder) {
  constexpr unsigned kThreads = 4;
  constexpr u32 kEach = 5000;
  std::mutex mu;
  std::vector<std::vector<u32>> last(3, std::vector<u32>(kThreads, 0));
  std::atomic<u32> got{0};
  std::atomic<u32> bad{0};
  auto g = make_group(3, options());
  g[2]->set_receiver(Channel::kCpu, [&](NodeId from, std::span<const u8> b) {
    u32 v[2];
    std::memcpy(v, b.data(), sizeof v);
    std::lock_guard lock(mu);  // not needed by the contract; guards the test's vector
    if (v[1] != last[from][v[0]]) ++bad;
    last[from][v[0]] = v[1] + 1;
    ++got;
  });
  start_all(g);
  std::vector<std::thread> ts;
  for (unsigned src = 0; src < 2; ++src) {
    for (unsigned t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, src, t] {
        for (u32 i = 0; i < kEach; ++i) {
          u32 v[2] = {t, i};
          while (!g[src]->send(2, Channel::kCpu, as_bytes(v, sizeof v))) std::this_thread::yield();
        }
      });
    }
  }
  for (auto& t : ts) t.join();
  ASSERT_TRUE(wait_until([&] { return got.load() == 2 * kThreads * kEach; }, 30s)) << got.load();
  EXPECT_EQ(bad.load(), 0u);
}

TEST_P(UcxTransportTest, SendToSelf) {
  std::atomic<int> got{0};
  auto g = make_group(2, options());
  g[0]->set_receiver(Channel::kControl, [&](NodeId from, std::span<const u8> b) {
    EXPECT_EQ(from, 0);
    EXPECT_EQ(b.size(), 3u);
    ++got;
  });
  const u8 msg[3] = {1, 2, 3};
  start_all(g);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(g[0]->send(0, Channel::kControl, msg));
  ASSERT_TRUE(wait_until([&] { return got.load() == 10; }));
}

// Messages that arrive before the channel's receiver is set are kept and delivered to it.
TEST_P(UcxTransportTest, ReceiverWiredLateGetsEarlyMessages) {
  std::vector<u32> seen;
  std::mutex mu;
  auto g = make_group(2, options());
  for (u32 i = 0; i < 100; ++i) ASSERT_TRUE(g[0]->send(1, Channel::kMmio, as_bytes(&i, 4)));
  std::this_thread::sleep_for(50ms);
  g[1]->set_receiver(Channel::kMmio, [&](NodeId, std::span<const u8> b) {
    u32 v;
    std::memcpy(&v, b.data(), 4);
    std::lock_guard lock(mu);
    seen.push_back(v);
  });
  start_all(g);
  for (u32 i = 100; i < 200; ++i) ASSERT_TRUE(g[0]->send(1, Channel::kMmio, as_bytes(&i, 4)));
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return seen.size() == 200;
  }));
  for (u32 i = 0; i < 200; ++i) EXPECT_EQ(seen[i], i);
}

// After the start, a channel without a receiver keeps its messages until one is set.
TEST_P(UcxTransportTest, ChannelWiredAfterStartGetsKeptMessages) {
  std::atomic<int> got{0};
  auto g = make_group(2, options());
  start_all(g);
  for (u32 i = 0; i < 50; ++i) ASSERT_TRUE(g[0]->send(1, Channel::kCpu, as_bytes(&i, 4)));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(got.load(), 0);
  g[1]->set_receiver(Channel::kCpu, [&](NodeId, std::span<const u8> b) {
    u32 v;
    std::memcpy(&v, b.data(), 4);
    EXPECT_EQ(v, static_cast<u32>(got.load()));
    ++got;
  });
  ASSERT_TRUE(wait_until([&] { return got.load() == 50; }));
}

// Failures that happen before the start are reported after it.
TEST(UcxTransport, FailureBeforeStartIsReportedAtStart) {
  std::atomic<int> reports{0};
  auto g = make_group(2);
  g[0]->on_peer_failure([&](NodeId, const std::string&) { ++reports; });
  g[1]->shutdown();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(reports.load(), 0);
  g[0]->start_delivery();
  ASSERT_TRUE(wait_until([&] { return reports.load() == 1; }));
}

TEST_P(UcxTransportTest, RemovedReceiverIsNotCalledAfterSetReturns) {
  std::atomic<bool> removed{false};
  std::atomic<int> late{0};
  auto g = make_group(2, options());
  g[1]->set_receiver(Channel::kCpu, [&](NodeId, std::span<const u8>) {
    if (removed.load()) ++late;
  });
  start_all(g);
  std::thread sender([&] {
    u8 b = 0;
    for (int i = 0; i < 20000; ++i) g[0]->send(1, Channel::kCpu, as_bytes(&b, 1));
  });
  std::this_thread::sleep_for(5ms);
  g[1]->set_receiver(Channel::kCpu, nullptr);
  removed = true;
  sender.join();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(late.load(), 0);
}

TEST_P(UcxTransportTest, CleanShutdownIsReportedAsShutDown) {
  std::mutex mu;
  std::vector<std::pair<NodeId, std::string>> reports;
  auto g = make_group(3, options());
  for (unsigned i = 0; i < 2; ++i) {
    g[i]->on_peer_failure([&, i](NodeId n, const std::string& why) {
      std::lock_guard lock(mu);
      reports.emplace_back(n, std::to_string(i) + ": " + why);
    });
  }
  start_all(g);
  g[2]->shutdown();
  EXPECT_FALSE(g[2]->send(0, Channel::kCpu, as_bytes("x", 1)));
  ASSERT_TRUE(wait_until([&] {
    std::lock_guard lock(mu);
    return reports.size() == 2;
  }));
  std::unique_lock lock(mu);  // later reports (the others' own shutdowns) race with this
  for (auto& [n, why] : reports) {
    EXPECT_EQ(n, 2);
    EXPECT_NE(why.find("node 2"), std::string::npos) << why;
    EXPECT_NE(why.find("shut down"), std::string::npos) << why;
  }
  lock.unlock();
  EXPECT_FALSE(g[0]->send(2, Channel::kCpu, as_bytes("x", 1)));
  EXPECT_TRUE(g[0]->send(1, Channel::kCpu, as_bytes("x", 1)));
}

// A waiting thread progresses the transport itself: replies reach it without a hop.
TEST_P(UcxTransportTest, PollUntilDeliversToTheWaiter) {
  std::atomic<bool> pong{false};
  std::atomic<int> on_caller{0};
  const auto caller = std::this_thread::get_id();
  auto g = make_group(2, options());
  g[1]->set_receiver(Channel::kCpu, [&](NodeId from, std::span<const u8> b) {
    g[1]->send(from, Channel::kCpu, b);
  });
  g[0]->set_receiver(Channel::kCpu, [&](NodeId, std::span<const u8>) {
    if (std::this_thread::get_id() == caller) ++on_caller;
    pong.store(true);
  });
  start_all(g);
  for (int i = 0; i < 2000; ++i) {
    pong.store(false);
    ASSERT_TRUE(g[0]->send(1, Channel::kCpu, as_bytes(&i, 4)));
    ASSERT_TRUE(g[0]->poll_until([&] { return pong.load(); }, 5s)) << i;
  }
  if (GetParam() == SendPath::kDirect) {
    EXPECT_GT(on_caller.load(), 0);
  } else {
    EXPECT_EQ(on_caller.load(), 0);  // kQueued: only the progress thread touches UCX
  }
  EXPECT_FALSE(g[0]->poll_until([] { return false; }, 1ms));
}

INSTANTIATE_TEST_SUITE_P(Paths, UcxTransportTest,
                         ::testing::Values(SendPath::kDirect, SendPath::kQueued),
                         [](const auto& info) {
                           return info.param == SendPath::kDirect ? "Direct" : "Queued";
                         });

// A peer whose progress thread stops (here: a receiver that blocks far too long, as a
// hung process would) is declared failed by the heartbeat timeout, naming it.
TEST(UcxTransport, SilentPeerIsDeclaredFailed) {
  UcxOptions o;
  o.heartbeat_interval = 100ms;
  o.peer_timeout = 600ms;
  std::atomic<bool> release{false};
  std::mutex mu;
  std::string reason;
  std::atomic<int> reports{0};
  auto g = make_group(2, o);
  g[1]->set_receiver(Channel::kControl, [&](NodeId, std::span<const u8>) {
    while (!release.load()) std::this_thread::sleep_for(1ms);
  });
  g[0]->on_peer_failure([&](NodeId n, const std::string& why) {
    EXPECT_EQ(n, 1);
    std::lock_guard lock(mu);
    reason = why;
    ++reports;
  });
  start_all(g);
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(g[0]->send(1, Channel::kControl, as_bytes("stall", 5)));
  ASSERT_TRUE(wait_until([&] { return reports.load() == 1; }, 5s));
  auto took = std::chrono::steady_clock::now() - start;
  release = true;
  EXPECT_LT(took, 2s);
  std::lock_guard lock(mu);
  EXPECT_NE(reason.find("node 1"), std::string::npos) << reason;
  EXPECT_NE(reason.find("stopped answering"), std::string::npos) << reason;
}

// Malformed messages are rejected and counted; the connection keeps working.
TEST(UcxTransport, MalformedMessagesAreRejected) {
  std::atomic<int> got{0};
  auto g = make_group(3);
  g[1]->set_receiver(Channel::kCpu, [&](NodeId, std::span<const u8>) { ++got; });
  start_all(g);
  const u8 junk[7] = {1, 2, 3, 4, 5, 6, 7};
  // Too short a header.
  EXPECT_TRUE(g[0]->send_raw_for_test(1, std::span<const u8>(junk, 7), junk));
  // No header at all.
  EXPECT_TRUE(g[0]->send_raw_for_test(1, {}, junk));
  // Unknown channel.
  auto h = g[0]->make_header_for_test(1, Channel::kCpu, 0);
  h[6] = 99;
  EXPECT_TRUE(g[0]->send_raw_for_test(1, h, junk));
  // Another session.
  h = g[0]->make_header_for_test(1, Channel::kCpu, 0);
  h[0] ^= 0xff;
  EXPECT_TRUE(g[0]->send_raw_for_test(1, h, junk));
  // A sender out of range, and one claiming to be the receiver itself.
  h = g[0]->make_header_for_test(1, Channel::kCpu, 0);
  h[4] = 40;
  EXPECT_TRUE(g[0]->send_raw_for_test(1, h, junk));
  h[4] = 1;
  EXPECT_TRUE(g[0]->send_raw_for_test(1, h, junk));
  ASSERT_TRUE(wait_until([&] { return g[1]->counters().rejected == 6; }))
      << g[1]->counters().rejected;
  // Still works.
  ASSERT_TRUE(g[0]->send(1, Channel::kCpu, junk));
  ASSERT_TRUE(wait_until([&] { return got.load() == 1; }));
  // A forged duplicate sequence number (0 was delivered) is rejected too.
  h = g[0]->make_header_for_test(1, Channel::kCpu, 0);
  EXPECT_TRUE(g[0]->send_raw_for_test(1, h, junk));
  ASSERT_TRUE(wait_until([&] { return g[1]->counters().rejected == 7; }));
  EXPECT_EQ(got.load(), 1);
}

// A receiver may replace (or remove) itself; the next message goes to the new one.
TEST(UcxTransport, ReceiverReplacesItself) {
  std::atomic<int> first{0}, second{0};
  auto g = make_group(2);
  g[1]->set_receiver(
      Channel::kCpu, [&, big = std::vector<u8>(4096, 1)](NodeId, std::span<const u8>) {
        ++first;
        g[1]->set_receiver(Channel::kCpu, [&](NodeId, std::span<const u8>) { ++second; });
        EXPECT_EQ(big.size(), 4096u);  // the old receiver's captures are still alive
      });
  g[1]->on_peer_failure([&](NodeId, const std::string&) { g[1]->on_peer_failure({}); });
  start_all(g);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(g[0]->send(1, Channel::kCpu, as_bytes("x", 1)));
  ASSERT_TRUE(wait_until([&] { return second.load() == 4; }));
  EXPECT_EQ(first.load(), 1);
}

TEST(UcxTransport, HeartbeatChannelIsReserved) {
  auto g = make_group(2);
  EXPECT_THROW(g[0]->set_receiver(Channel::kHeartbeat, [](NodeId, std::span<const u8>) {}),
               ClusterError);
  EXPECT_FALSE(g[0]->send(1, Channel::kHeartbeat, as_bytes("x", 1)));
  EXPECT_FALSE(g[0]->send(7, Channel::kCpu, as_bytes("x", 1)));
}

TEST(UcxTransport, LargeMessage) {
  std::vector<u8> big(1 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<u8>(i * 7);
  std::atomic<bool> ok{false};
  auto g = make_group(2);
  g[1]->set_receiver(Channel::kControl, [&](NodeId, std::span<const u8> b) {
    ok = b.size() == big.size() && std::memcmp(b.data(), big.data(), big.size()) == 0;
  });
  start_all(g);
  ASSERT_TRUE(g[0]->send(1, Channel::kControl, big));
  ASSERT_TRUE(wait_until([&] { return ok.load(); }));
}

TEST(UcxTransport, DsmAdapterCarriesDsmChannel) {
  auto g = make_group(2);
  DsmAdapter a0(*g[0]);
  DsmAdapter a1(*g[1]);
  EXPECT_EQ(a1.self(), 1);
  EXPECT_EQ(a1.node_count(), 2u);
  std::atomic<int> got{0};
  a1.set_receiver([&](dsm::NodeId from, std::span<const u8> b) {
    EXPECT_EQ(from, 0);
    EXPECT_EQ(b.size(), 5u + 4096u);
    ++got;
  });
  std::vector<u8> page(4096, 0xab);
  const u8 hdr[5] = {1, 2, 3, 4, 5};
  start_all(g);
  ASSERT_TRUE(a0.send(1, hdr, page));
  ASSERT_TRUE(wait_until([&] { return got.load() == 1; }));
}

}  // namespace
}  // namespace dvmm::cluster
