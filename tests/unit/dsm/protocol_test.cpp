// Unit tests for the pure coherence protocol (src/dsm/protocol.cpp).
//
// Three layers: transitions one at a time with the exact actions expected (home as
// requester, home as owner, upgrades, races with invalidations, queueing); an exhaustive
// search of every interleaving of a 3-node cluster with bounded local operations,
// checking the invariants in every reachable state and quiescence in every final one;
// and random runs over thousands of seeds with more nodes and longer runs. A fourth test
// throws every message at every local state and checks that errors change nothing.
#include "dsm/protocol.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <random>
#include <unordered_set>

#include "protocol_sim.hpp"

namespace dvmm::dsm {
namespace {

using sim::Cluster;
using V = std::vector<std::string>;

V describe_all(const Step& s) {
  V out;
  for (const Action& a : s.actions) out.push_back(describe(a));
  return out;
}

// Delivers the head of a channel and returns the receiver's actions.
V deliver(Cluster& c, NodeId from, NodeId to) {
  c.keep_trace(true);
  const std::string before = c.trace();
  EXPECT_TRUE(c.deliver(from, to));
  const std::string after = c.trace().substr(before.size());
  V out;
  std::size_t pos = 0;
  while (pos < after.size()) {
    std::size_t nl = after.find('\n', pos);
    std::string line = after.substr(pos, nl - pos);
    if (line.rfind("    ", 0) == 0) out.push_back(line.substr(4));
    pos = nl + 1;
  }
  return out;
}

TEST(DsmHomeMap, SplitsRangesAndFindsHomes) {
  HomeMap m = HomeMap::even(0x8000'0000, 10, 3);
  EXPECT_EQ(m.node_count(), 3u);
  EXPECT_EQ(m.page_count(), 10u);
  EXPECT_EQ(m.first_page(0), 0u);
  EXPECT_EQ(m.end_page(0), 4u);
  EXPECT_EQ(m.first_page(2), 7u);
  EXPECT_EQ(m.home_of(0), 0);
  EXPECT_EQ(m.home_of(3), 0);
  EXPECT_EQ(m.home_of(4), 1);
  EXPECT_EQ(m.home_of(9), 2);
  EXPECT_TRUE(m.contains(0x8000'0000 + 10 * kPageSize - 1));
  EXPECT_FALSE(m.contains(0x8000'0000 + 10 * kPageSize));
  EXPECT_FALSE(m.contains(0x7fff'ffff));
  EXPECT_EQ(m.page_index(0x8000'0000 + 5 * kPageSize + 7), 5u);
  HomeMap gaps(0, {2, 0, 3});  // a node without memory homes nothing
  EXPECT_EQ(gaps.home_of(1), 0);
  EXPECT_EQ(gaps.home_of(2), 2);
}

TEST(DsmProtocol, InitialStateIsHomeExclusive) {
  PageState home = initial_page_state(1, 1);
  PageState other = initial_page_state(0, 1);
  EXPECT_EQ(home.cache.access, PageAccess::kReadWrite);
  EXPECT_EQ(other.cache.access, PageAccess::kNone);
  EXPECT_EQ(home.dir.mode, DirMode::kExclusive);
  EXPECT_EQ(home.dir.owner, 1);
}

TEST(DsmProtocol, ReadFromHomeOwnedPage) {
  PageState n1 = initial_page_state(1, 0);
  EXPECT_EQ(describe_all(on_local_fault({1, 0, 3}, n1, 0, AccessType::kRead)),
            V{"send ReadRequest to 0 seq 1"});
  Cluster c2(3, 0);
  c2.fault(1, AccessType::kRead);
  EXPECT_EQ(deliver(c2, 1, 0),
            (V{"set access Read", "send GrantData to 1 seq 1 access Read data=local",
               "complete read by 1 (bounced)"}));
  EXPECT_EQ(deliver(c2, 0, 1), (V{"install data", "set access Read", "wake"}));
  EXPECT_EQ(c2.state(0).dir.mode, DirMode::kShared);
  EXPECT_EQ(c2.state(0).dir.sharers, node_bit(0) | node_bit(1));
  c2.check_quiescent();
  EXPECT_FALSE(c2.failed()) << c2.error();
}

TEST(DsmProtocol, WriteFromRemoteOwnerGoesThroughHome) {
  Cluster c(3, 0);
  c.fault(1, AccessType::kWrite);
  EXPECT_EQ(deliver(c, 1, 0),
            (V{"set access None", "send GrantData to 1 seq 1 access ReadWrite data=local",
               "complete write by 1 (bounced)"}));
  deliver(c, 0, 1);
  ASSERT_TRUE(c.store(1));
  // Node 2 writes: the home fetches from node 1 and forwards the data.
  c.fault(2, AccessType::kWrite);
  EXPECT_EQ(deliver(c, 2, 0), V{"send FetchInvalidate to 1 seq 2"});
  EXPECT_EQ(deliver(c, 0, 1), (V{"set access None", "send FetchAck to 0 seq 2 data=local"}));
  EXPECT_EQ(deliver(c, 1, 0), (V{"send GrantData to 2 seq 1 access ReadWrite data=forward",
                                 "complete write by 2 (bounced)"}));
  EXPECT_EQ(deliver(c, 0, 2), (V{"install data", "set access ReadWrite", "wake"}));
  EXPECT_EQ(c.value(2), c.latest());
  c.check_quiescent();
  EXPECT_FALSE(c.failed()) << c.error();
}

TEST(DsmProtocol, ReadFromRemoteOwnerDowngradesAndHomeKeepsACopy) {
  Cluster c(3, 0);
  c.fault(1, AccessType::kWrite);
  deliver(c, 1, 0);
  deliver(c, 0, 1);
  c.store(1);
  c.fault(2, AccessType::kRead);
  EXPECT_EQ(deliver(c, 2, 0), V{"send Downgrade to 1 seq 2"});
  EXPECT_EQ(deliver(c, 0, 1), (V{"set access Read", "send DowngradeAck to 0 seq 2 data=local"}));
  EXPECT_EQ(deliver(c, 1, 0), (V{"install data", "set access Read",
                                 "send GrantData to 2 seq 1 access Read data=forward",
                                 "complete read by 2 (bounced)"}));
  deliver(c, 0, 2);
  EXPECT_EQ(c.state(0).dir.sharers, node_bit(0) | node_bit(1) | node_bit(2));
  EXPECT_EQ(c.value(0), c.latest());
  c.check_quiescent();
  EXPECT_FALSE(c.failed()) << c.error();
}

TEST(DsmProtocol, HomeRequestsItsOwnPageBack) {
  Cluster c(3, 0);
  c.fault(1, AccessType::kWrite);
  deliver(c, 1, 0);
  deliver(c, 0, 1);
  c.store(1);
  // The home itself faults: no message to itself, a FetchInvalidate to the owner.
  c.keep_trace(true);
  c.fault(0, AccessType::kWrite);
  EXPECT_EQ(c.channel(0, 1).size(), 1u);
  EXPECT_EQ(c.channel(0, 1).front().msg.type, MsgType::kFetchInvalidate);
  deliver(c, 0, 1);
  EXPECT_EQ(deliver(c, 1, 0),
            (V{"install data", "set access ReadWrite", "wake", "complete write by 0 (bounced)"}));
  EXPECT_TRUE(c.store(0));
  c.check_quiescent();
  EXPECT_FALSE(c.failed()) << c.error();
}

TEST(DsmProtocol, HomeReadThenWriteWhileReadPendingIssuesUpgradeAfterGrant) {
  Cluster c(3, 0);
  c.fault(1, AccessType::kWrite);
  deliver(c, 1, 0);
  deliver(c, 0, 1);
  c.fault(0, AccessType::kRead);   // home: Downgrade to 1
  c.fault(0, AccessType::kWrite);  // another home vCPU wants to write meanwhile
  EXPECT_EQ(c.state(0).cache.wanted, PageAccess::kReadWrite);
  deliver(c, 0, 1);  // Downgrade
  // DowngradeAck: the home gets Read, then asks for write at once: node 1 is invalidated.
  EXPECT_EQ(deliver(c, 1, 0), (V{"install data", "set access Read", "wake",
                                 "complete read by 0 (bounced)", "send Invalidate to 1 seq 3"}));
  deliver(c, 0, 1);
  EXPECT_EQ(deliver(c, 1, 0), (V{"set access ReadWrite", "wake", "complete write by 0 (bounced)"}));
  c.check_quiescent();
  EXPECT_FALSE(c.failed()) << c.error();
}

TEST(DsmProtocol, UpgradeWithoutDataAndSharerInvalidation) {
  Cluster c(3, 0);
  c.fault(1, AccessType::kRead);
  deliver(c, 1, 0);
  deliver(c, 0, 1);
  c.fault(2, AccessType::kRead);
  deliver(c, 2, 0);
  deliver(c, 0, 2);
  // Shared{0,1,2}: node 1 upgrades; the home drops its own copy and invalidates node 2.
  c.fault(1, AccessType::kWrite);
  EXPECT_EQ(deliver(c, 1, 0), (V{"set access None", "send Invalidate to 2 seq 3"}));
  EXPECT_EQ(deliver(c, 0, 2), (V{"set access None", "send InvalidateAck to 0 seq 3"}));
  EXPECT_EQ(deliver(c, 2, 0),
            (V{"send Grant to 1 seq 2 access ReadWrite", "complete write by 1 (bounced)"}));
  EXPECT_EQ(deliver(c, 0, 1), (V{"set access ReadWrite", "wake"}));
  c.check_quiescent();
  EXPECT_FALSE(c.failed()) << c.error();
}

TEST(DsmProtocol, ConcurrentUpgradesLoserGetsDataAfterBeingInvalidated) {
  Cluster c(3, 0);
  for (NodeId n : {1, 2}) {
    c.fault(n, AccessType::kRead);
    deliver(c, n, 0);
    deliver(c, 0, n);
  }
  c.fault(1, AccessType::kWrite);
  c.fault(2, AccessType::kWrite);
  deliver(c, 1, 0);                  // node 1 first: invalidates 2 (whose own upgrade is in flight)
  EXPECT_EQ(deliver(c, 2, 0), V{});  // node 2's upgrade queues behind
  EXPECT_EQ(c.state(0).dir.queue.size(), 1u);
  EXPECT_EQ(deliver(c, 0, 2), (V{"set access None", "send InvalidateAck to 0 seq 3"}));
  EXPECT_EQ(c.state(2).cache.pending, PageAccess::kReadWrite);
  // The ack completes node 1's upgrade and starts node 2's: it no longer shares, so the
  // home fetches from node 1 and sends data rather than an upgrade.
  EXPECT_EQ(deliver(c, 2, 0),
            (V{"send Grant to 1 seq 2 access ReadWrite", "complete write by 1 (bounced)",
               "send FetchInvalidate to 1 seq 4"}));
  deliver(c, 0, 1);  // grant
  c.store(1);
  deliver(c, 0, 1);  // fetch-invalidate
  EXPECT_EQ(deliver(c, 1, 0), (V{"send GrantData to 2 seq 2 access ReadWrite data=forward",
                                 "complete write by 2 (bounced)"}));
  EXPECT_EQ(deliver(c, 0, 2), (V{"install data", "set access ReadWrite", "wake"}));
  EXPECT_EQ(c.value(2), c.latest());
  c.check_quiescent();
  EXPECT_FALSE(c.failed()) << c.error();
}

TEST(DsmProtocol, EvictionReturnsThePageHome) {
  Cluster c(3, 0);
  c.fault(1, AccessType::kWrite);
  deliver(c, 1, 0);
  deliver(c, 0, 1);
  c.store(1);
  c.evict(1);
  EXPECT_EQ(deliver(c, 1, 0), V{"send FetchInvalidate to 1 seq 2"});
  deliver(c, 0, 1);
  EXPECT_EQ(deliver(c, 1, 0), (V{"install data", "set access ReadWrite", "complete evict by 1"}));
  EXPECT_EQ(c.state(0).dir.owner, 0);
  EXPECT_EQ(c.value(0), c.latest());
  c.evict(0);  // the home keeps its pages
  EXPECT_FALSE(c.in_flight());
  c.check_quiescent();
  EXPECT_FALSE(c.failed()) << c.error();
}

TEST(DsmProtocol, EvictOvertakenByInvalidationIsANoOp) {
  Cluster c(3, 0);
  c.fault(1, AccessType::kRead);
  deliver(c, 1, 0);
  deliver(c, 0, 1);
  c.evict(1);
  c.fault(2, AccessType::kWrite);
  deliver(c, 2, 0);  // node 2's write first: invalidates node 1
  deliver(c, 0, 1);
  EXPECT_FALSE(c.state(1).cache.evicting);
  deliver(c, 1, 0);  // the evict (queued behind) and the ack
  deliver(c, 1, 0);
  deliver(c, 0, 2);
  c.check_quiescent();
  EXPECT_FALSE(c.failed()) << c.error();
}

TEST(DsmProtocol, RejectsForgedAndStaleMessages) {
  const Context home{0, 0, 3};
  const Context node1{1, 0, 3};
  PageState h = initial_page_state(0, 0);
  PageState n = initial_page_state(1, 0);
  const PageState h0 = h, n0 = n;
  auto expect_error = [](Step s, ProtocolError e) {
    EXPECT_EQ(s.error, e);
    EXPECT_TRUE(s.actions.empty());
  };
  // A grant nobody asked for, a grant from a non-home, an ack nobody waits for.
  expect_error(on_message(node1, n, {MsgType::kGrantData, 0, PageAccess::kRead, 0, 1}),
               ProtocolError::kUnexpected);
  expect_error(on_message(node1, n, {MsgType::kGrantData, 2, PageAccess::kRead, 0, 1}),
               ProtocolError::kBadSender);
  expect_error(on_message(home, h, {MsgType::kFetchAck, 1, PageAccess::kNone, 0, 1}),
               ProtocolError::kUnexpected);
  // Requests to a node that is not the home; a message claiming to come from oneself.
  expect_error(on_message(node1, n, {MsgType::kReadRequest, 2, PageAccess::kNone, 0, 1}),
               ProtocolError::kNotHome);
  expect_error(on_message(home, h, {MsgType::kReadRequest, 0, PageAccess::kNone, 0, 1}),
               ProtocolError::kBadSender);
  expect_error(on_message(home, h, {MsgType::kReadRequest, 7, PageAccess::kNone, 0, 1}),
               ProtocolError::kBadSender);
  // Revocations of rights the node does not hold.
  expect_error(on_message(node1, n, {MsgType::kInvalidate, 0, PageAccess::kNone, 0, 1}),
               ProtocolError::kUnexpected);
  EXPECT_EQ(h, h0);
  EXPECT_EQ(n, n0);
  // A grant with the wrong sequence.
  on_local_fault(node1, n, 0, AccessType::kRead);
  const PageState n1 = n;
  expect_error(on_message(node1, n, {MsgType::kGrantData, 0, PageAccess::kRead, 0, 99}),
               ProtocolError::kStaleSequence);
  EXPECT_EQ(n, n1);
  // A duplicate request while the first is in flight at the home.
  on_message(home, h,
             {MsgType::kWriteRequest, 2, PageAccess::kNone, 0, 1});  // starts: sets 2 as owner
  on_message(home, h, {MsgType::kReadRequest, 1, PageAccess::kNone, 0, 1});  // Downgrade to 2
  const PageState h1 = h;
  expect_error(on_message(home, h, {MsgType::kReadRequest, 1, PageAccess::kNone, 0, 2}),
               ProtocolError::kDuplicateRequest);
  EXPECT_EQ(h, h1);
  // An ack of the wrong kind or sequence.
  expect_error(on_message(home, h, {MsgType::kFetchAck, 2, PageAccess::kNone, 0, h.dir.txn_seq}),
               ProtocolError::kUnexpected);
  expect_error(
      on_message(home, h, {MsgType::kDowngradeAck, 2, PageAccess::kNone, 0, h.dir.txn_seq + 1}),
      ProtocolError::kStaleSequence);
  EXPECT_EQ(h, h1);
}

// ------------------------------------------------------------------------ exhaustive

// Every interleaving of deliveries and local operations (fault read, fault write, store,
// evict) with `budget` operations per node. Checks the invariants after every step and
// quiescence in every state where nothing can happen any more.
struct SearchResult {
  u64 states = 0;
  u64 finals = 0;
  std::string error;
};

SearchResult explore(unsigned nodes, NodeId home, unsigned budget) {
  struct Item {
    Cluster c;
    std::vector<unsigned> left;
  };
  SearchResult res;
  std::unordered_set<std::string> seen;
  std::vector<Item> stack;
  stack.push_back({Cluster(nodes, home), std::vector<unsigned>(nodes, budget)});
  auto key = [](const Item& it) {
    std::string k = it.c.key();
    for (unsigned l : it.left) k += char('0' + l);
    return k;
  };
  seen.insert(key(stack.back()));
  while (!stack.empty() && res.error.empty()) {
    Item it = std::move(stack.back());
    stack.pop_back();
    ++res.states;
    std::vector<std::function<void(Item&)>> moves;
    for (unsigned f = 0; f < nodes; ++f) {
      for (unsigned t = 0; t < nodes; ++t) {
        if (!it.c.channel(f, t).empty()) {
          moves.push_back([f, t](Item& x) { x.c.deliver(NodeId(f), NodeId(t)); });
        }
      }
    }
    for (unsigned n = 0; n < nodes; ++n) {
      if (it.left[n] == 0) continue;
      const auto id = NodeId(n);
      const PageAccess a = it.c.access(id);
      if (a == PageAccess::kNone) {
        moves.push_back([id](Item& x) {
          x.c.fault(id, AccessType::kRead);
          --x.left[id];
        });
      }
      if (a != PageAccess::kReadWrite) {
        moves.push_back([id](Item& x) {
          x.c.fault(id, AccessType::kWrite);
          --x.left[id];
        });
      } else {
        moves.push_back([id](Item& x) {
          x.c.store(id);
          --x.left[id];
        });
      }
      if (a != PageAccess::kNone && id != home) {
        moves.push_back([id](Item& x) {
          x.c.evict(id);
          --x.left[id];
        });
      }
    }
    if (moves.empty()) {
      ++res.finals;
      it.c.check_quiescent();
      if (it.c.failed()) res.error = it.c.error() + " (final state)";
      continue;
    }
    for (auto& m : moves) {
      Item next = it;
      m(next);
      if (next.c.failed()) {
        res.error = next.c.error();
        break;
      }
      if (seen.insert(key(next)).second) stack.push_back(std::move(next));
    }
  }
  return res;
}

TEST(DsmProtocolExhaustive, ThreeNodesEveryInterleaving) {
  const unsigned kBudget =
      std::getenv("DSM_BUDGET") ? unsigned(std::atoi(std::getenv("DSM_BUDGET"))) : 2;
  for (NodeId home : {0, 1}) {  // the home at the edge and in the middle of the node order
    SearchResult r = explore(3, home, kBudget);
    EXPECT_TRUE(r.error.empty()) << "home " << home << ": " << r.error;
    EXPECT_GT(r.finals, 0u);
    std::printf("[ dsm ] home %u: %llu states, %llu final\n", home, (unsigned long long)r.states,
                (unsigned long long)r.finals);
  }
}

// ------------------------------------------------------------------------ random

// Long random runs: a random enabled event at each step; then everything in flight is
// delivered and the cluster must be quiescent with nobody left waiting.
TEST(DsmProtocolRandom, ThousandsOfSeeds) {
  u64 total_steps = 0;
  for (u64 seed = 1; seed <= 3000; ++seed) {
    std::mt19937_64 rng(seed);
    const unsigned nodes = 2 + static_cast<unsigned>(seed % 4);  // 2..5
    const auto home = static_cast<NodeId>(rng() % nodes);
    Cluster c(nodes, home);
    for (unsigned step = 0; step < 400 && !c.failed(); ++step) {
      const unsigned r = rng() % 100;
      const auto n = static_cast<NodeId>(rng() % nodes);
      if (r < 50) {
        // Deliver from a random non-empty channel.
        std::vector<std::pair<NodeId, NodeId>> ch;
        for (unsigned f = 0; f < nodes; ++f)
          for (unsigned t = 0; t < nodes; ++t)
            if (!c.channel(NodeId(f), NodeId(t)).empty()) ch.push_back({NodeId(f), NodeId(t)});
        if (!ch.empty()) {
          auto [f, t] = ch[rng() % ch.size()];
          c.deliver(f, t);
        }
      } else if (r < 65) {
        if (c.access(n) == PageAccess::kNone) c.fault(n, AccessType::kRead);
      } else if (r < 80) {
        if (c.access(n) != PageAccess::kReadWrite) c.fault(n, AccessType::kWrite);
      } else if (r < 95) {
        c.store(n);
      } else {
        c.evict(n);
      }
      ++total_steps;
    }
    // Drain.
    for (bool moved = true; moved && !c.failed();) {
      moved = false;
      for (unsigned f = 0; f < nodes; ++f)
        for (unsigned t = 0; t < nodes; ++t) moved |= c.deliver(NodeId(f), NodeId(t));
    }
    c.check_quiescent();
    ASSERT_FALSE(c.failed()) << "seed " << seed << ": " << c.error();
  }
  EXPECT_GT(total_steps, 1'000'000u);
}

// ------------------------------------------------------------------------ every input

// Every message type from every sender with a range of sequence numbers, against a
// catalogue of local states (home and non-home, every access, pending, busy directory
// in each mode). Accepted inputs keep the local invariants; rejected ones change nothing.
TEST(DsmProtocolInputs, EveryMessageAgainstEveryLocalState) {
  constexpr unsigned kNodes = 3;
  std::vector<std::pair<Context, PageState>> states;
  // Collect local states by running the random cluster and snapshotting every node.
  for (u64 seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    Cluster c(kNodes, static_cast<NodeId>(seed % kNodes));
    for (int step = 0; step < 60; ++step) {
      const auto n = static_cast<NodeId>(rng() % kNodes);
      switch (rng() % 5) {
        case 0:
          c.fault(n, AccessType::kRead);
          break;
        case 1:
          c.fault(n, AccessType::kWrite);
          break;
        case 2:
          c.store(n);
          break;
        case 3:
          c.evict(n);
          break;
        default:
          c.deliver(static_cast<NodeId>(rng() % kNodes), n);
          break;
      }
      for (unsigned i = 0; i < kNodes; ++i) {
        states.push_back({Context{NodeId(i), c.home(), kNodes}, c.state(NodeId(i))});
      }
    }
  }
  u64 accepted = 0, rejected = 0;
  for (auto& [ctx, st0] : states) {
    for (u8 t = kFirstMsgType; t <= kLastMsgType; ++t) {
      for (NodeId from = 0; from < kNodes + 1; ++from) {
        for (u64 seq :
             {u64{0}, u64{1}, u64{st0.cache.seq}, u64{st0.dir.txn_seq}, u64{st0.dir.txn_seq + 1}}) {
          for (PageAccess acc : {PageAccess::kNone, PageAccess::kRead, PageAccess::kReadWrite}) {
            PageState st = st0;
            const Message m{static_cast<MsgType>(t), from, acc, 0, seq};
            Step s = on_message(ctx, st, m);
            if (s.error != ProtocolError::kNone) {
              ++rejected;
              ASSERT_TRUE(s.actions.empty());
              ASSERT_EQ(st, st0) << describe(st0) << " " << msg_type_name(m.type);
              continue;
            }
            ++accepted;
            for (const Action& a : s.actions) {
              if (a.kind == ActionKind::kSend) {
                ASSERT_NE(a.to, ctx.self);
                ASSERT_LT(a.to, kNodes);
              }
            }
            if (ctx.self == ctx.home && st.dir.mode == DirMode::kShared) {
              ASSERT_NE(st.dir.sharers & node_bit(ctx.home), 0u) << describe(st);
            }
            ASSERT_LE(st.dir.queue.size(), 2 * kNodes);
          }
        }
      }
    }
  }
  EXPECT_GT(accepted, 1000u);
  EXPECT_GT(rejected, 1000u);
}

}  // namespace
}  // namespace dvmm::dsm
