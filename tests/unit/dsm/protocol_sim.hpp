// A simulated cluster for the pure protocol (src/dsm/protocol.hpp): N nodes, one page,
// a FIFO channel per ordered pair, the page's bytes modelled as one integer per node.
// Tests drive it by delivering channel heads and injecting local operations in any order
// (exhaustively or from a seed) and check the invariants after every step.
#pragma once

#include <deque>
#include <sstream>
#include <string>
#include <vector>

#include "dsm/protocol.hpp"

namespace dvmm::dsm::sim {

struct Packet {
  Message msg;
  u64 data = 0;  // the page's value when msg carries data
};

class Cluster {
 public:
  Cluster(unsigned nodes, NodeId home) : n_(nodes), home_(home) {
    for (unsigned i = 0; i < n_; ++i) {
      st_.push_back(initial_page_state(static_cast<NodeId>(i), home));
      mem_.push_back(st_.back().cache.access);
    }
    value_.assign(n_, 0);
    chan_.resize(n_ * n_);
  }

  unsigned nodes() const { return n_; }
  NodeId home() const { return home_; }
  const PageState& state(NodeId i) const { return st_[i]; }
  PageAccess access(NodeId i) const { return mem_[i]; }
  u64 value(NodeId i) const { return value_[i]; }
  u64 latest() const { return latest_; }
  const std::string& error() const { return error_; }
  bool failed() const { return !error_.empty(); }
  const std::deque<Packet>& channel(NodeId from, NodeId to) const { return chan_[from * n_ + to]; }
  u64 completed() const { return completed_; }
  u64 wakes(NodeId i) const { return i < wakes_.size() ? wakes_[i] : 0; }

  bool in_flight() const {
    for (auto& c : chan_) {
      if (!c.empty()) return true;
    }
    return false;
  }

  // ------------------------------------------------------------------ events

  void fault(NodeId i, AccessType t) {
    Step s = on_local_fault(ctx(i), st_[i], 0, t);
    apply(i, s, nullptr, "fault");
  }
  void evict(NodeId i) {
    Step s = on_local_evict(ctx(i), st_[i], 0);
    apply(i, s, nullptr, "evict");
  }
  // A store by a local hart: only with write access (the hart checks GuestRam::allows).
  bool store(NodeId i) {
    if (mem_[i] != PageAccess::kReadWrite) return false;
    value_[i] = ++latest_;
    check();
    return true;
  }
  // Delivers the head of the channel from -> to.
  bool deliver(NodeId from, NodeId to) {
    auto& c = chan_[from * n_ + to];
    if (c.empty()) return false;
    Packet p = c.front();
    c.pop_front();
    Step s = on_message(ctx(to), st_[to], p.msg);
    if (s.error != ProtocolError::kNone) {
      fail(std::string("node ") + std::to_string(to) + " rejected " + msg_type_name(p.msg.type) +
           " from " + std::to_string(from) + ": " + protocol_error_name(s.error));
      return true;
    }
    apply(to, s, &p, msg_type_name(p.msg.type));
    return true;
  }

  // ------------------------------------------------------------------ checks

  // Holds at every moment: one writer or many readers; every readable copy holds the
  // last written value; the home shares whenever the directory says Shared (outside a
  // write transaction, which may already have invalidated it).
  void check() {
    if (failed()) return;
    unsigned writers = 0, readers = 0;
    for (unsigned i = 0; i < n_; ++i) {
      if (mem_[i] != st_[i].cache.access)
        return fail("local access differs from the state at " + std::to_string(i));
      if (mem_[i] == PageAccess::kReadWrite) ++writers;
      if (mem_[i] == PageAccess::kRead) ++readers;
      if (mem_[i] != PageAccess::kNone && value_[i] != latest_) {
        return fail("node " + std::to_string(i) + " can read a stale value");
      }
    }
    if (writers > 1) return fail("two writers");
    if (writers == 1 && readers > 0) return fail("a writer and readers at once");
    const DirEntry& d = st_[home_].dir;
    if (d.mode == DirMode::kShared) {
      if ((d.sharers & node_bit(home_)) == 0) return fail("Shared without the home");
      const bool home_may_be_gone = d.busy && d.txn.kind == ReqKind::kWrite;
      if (!home_may_be_gone && mem_[home_] != PageAccess::kRead)
        return fail("home has no copy in Shared");
      if (value_[home_] != latest_) return fail("home copy stale in Shared");
    }
    if (d.queue.size() > 2 * n_) return fail("directory queue unbounded");
  }

  // When nothing is in flight: the directory matches the nodes exactly and no request is
  // left waiting (a lost request would be a deadlock).
  void check_quiescent() {
    check();
    if (failed()) return;
    if (in_flight()) return fail("messages in flight");
    const DirEntry& d = st_[home_].dir;
    if (d.busy || !d.queue.empty()) return fail("home busy at quiescence");
    for (unsigned i = 0; i < n_; ++i) {
      const auto id = static_cast<NodeId>(i);
      if (st_[i].cache.pending != PageAccess::kNone)
        return fail("request never granted at " + std::to_string(i));
      if (st_[i].cache.evicting) return fail("evict never served at " + std::to_string(i));
      PageAccess expect;
      if (d.mode == DirMode::kExclusive) {
        expect = d.owner == id ? PageAccess::kReadWrite : PageAccess::kNone;
      } else {
        expect = (d.sharers & node_bit(id)) ? PageAccess::kRead : PageAccess::kNone;
      }
      if (mem_[i] != expect) return fail("directory disagrees with node " + std::to_string(i));
    }
  }

  // A canonical encoding of the whole state, for exhaustive search.
  std::string key() const {
    std::ostringstream o;
    for (unsigned i = 0; i < n_; ++i) {
      const CacheEntry& c = st_[i].cache;
      o << int(c.access) << int(c.pending) << int(c.wanted) << c.evicting << ':' << c.seq << ':'
        << value_[i] << '|';
    }
    const DirEntry& d = st_[home_].dir;
    o << int(d.mode) << d.owner << ',' << d.sharers << ',' << d.busy << d.bounced << ','
      << d.txn.node << int(d.txn.kind) << d.txn.seq << ',' << d.waiting << ',' << d.txn_seq;
    for (auto& r : d.queue) o << '<' << r.node << int(r.kind) << r.seq;
    o << '#' << latest_;
    for (auto& c : chan_) {
      o << '[';
      for (auto& p : c)
        o << int(p.msg.type) << ',' << int(p.msg.access) << ',' << p.msg.seq << ',' << p.data
          << ';';
    }
    return o.str();
  }

  std::string trace() const {
    std::string s;
    for (auto& l : log_) s += l + "\n";
    return s;
  }
  void keep_trace(bool on) { trace_on_ = on; }

 private:
  Context ctx(NodeId i) const { return Context{i, home_, n_}; }

  void fail(const std::string& why) {
    if (error_.empty()) error_ = why;
  }

  void apply(NodeId i, const Step& s, const Packet* in, const char* what) {
    if (trace_on_) log_.push_back(std::string("node ") + std::to_string(i) + " <- " + what);
    if (wakes_.size() < n_) wakes_.assign(n_, 0);
    for (const Action& a : s.actions) {
      if (trace_on_) log_.push_back("    " + describe(a));
      switch (a.kind) {
        case ActionKind::kSend: {
          if (a.to == i || a.to >= n_) return fail("send to self or nowhere");
          if (a.msg.from != i) return fail("send with a wrong from");
          Packet p{a.msg, 0};
          if (carries_data(a.msg.type)) {
            if (a.data == DataSource::kLocalPage) {
              p.data = value_[i];
            } else if (a.data == DataSource::kIncoming && in && carries_data(in->msg.type)) {
              p.data = in->data;
            } else {
              return fail("data message without a data source");
            }
          }
          chan_[i * n_ + a.to].push_back(p);
          break;
        }
        case ActionKind::kSetAccess:
          mem_[i] = a.access;
          break;
        case ActionKind::kInstallData:
          if (!in || !carries_data(in->msg.type)) return fail("install without incoming data");
          if (mem_[i] != PageAccess::kNone) return fail("install into an accessible page");
          value_[i] = in->data;
          break;
        case ActionKind::kWake:
          ++wakes_[i];
          break;
        case ActionKind::kComplete:
          ++completed_;
          break;
      }
    }
    check();
  }

  unsigned n_;
  NodeId home_;
  std::vector<PageState> st_;
  std::vector<PageAccess> mem_;
  std::vector<u64> value_;
  std::vector<std::deque<Packet>> chan_;
  std::vector<u64> wakes_;
  u64 latest_ = 0;
  u64 completed_ = 0;
  std::string error_;
  bool trace_on_ = false;
  std::vector<std::string> log_;
};

}  // namespace dvmm::dsm::sim
