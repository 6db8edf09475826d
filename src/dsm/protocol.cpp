#include "dsm/protocol.hpp"

#include <algorithm>
#include <bit>
#include <stdexcept>

namespace dvmm::dsm {

// ------------------------------------------------------------------------------ HomeMap

HomeMap::HomeMap(Gpa base, std::vector<u64> pages_per_node) : base_(base) {
  if (pages_per_node.empty() || pages_per_node.size() > kMaxNodes) {
    throw std::invalid_argument("dsm: between 1 and 64 nodes");
  }
  first_.reserve(pages_per_node.size() + 1);
  u64 next = 0;
  for (u64 n : pages_per_node) {
    first_.push_back(next);
    next += n;
  }
  first_.push_back(next);
}

HomeMap HomeMap::even(Gpa base, u64 total_pages, unsigned nodes) {
  std::vector<u64> per(nodes, nodes == 0 ? 0 : total_pages / nodes);
  for (unsigned i = 0; i < nodes && i < total_pages % nodes; ++i) ++per[i];
  return HomeMap(base, std::move(per));
}

NodeId HomeMap::home_of(u64 page) const {
  // first_ is sorted; the home is the last node whose first page is <= page. Nodes that
  // contribute no pages have empty ranges and are skipped by upper_bound.
  auto it = std::upper_bound(first_.begin(), first_.end() - 1, page);
  return static_cast<NodeId>(it - first_.begin() - 1);
}

// ------------------------------------------------------------------------------ names

const char* msg_type_name(MsgType t) {
  switch (t) {
    case MsgType::kReadRequest:
      return "ReadRequest";
    case MsgType::kWriteRequest:
      return "WriteRequest";
    case MsgType::kEvictRequest:
      return "EvictRequest";
    case MsgType::kDowngrade:
      return "Downgrade";
    case MsgType::kFetchInvalidate:
      return "FetchInvalidate";
    case MsgType::kInvalidate:
      return "Invalidate";
    case MsgType::kDowngradeAck:
      return "DowngradeAck";
    case MsgType::kFetchAck:
      return "FetchAck";
    case MsgType::kInvalidateAck:
      return "InvalidateAck";
    case MsgType::kGrant:
      return "Grant";
    case MsgType::kGrantData:
      return "GrantData";
  }
  return "?";
}

const char* protocol_error_name(ProtocolError e) {
  switch (e) {
    case ProtocolError::kNone:
      return "none";
    case ProtocolError::kNotHome:
      return "not the home of the page";
    case ProtocolError::kUnexpected:
      return "unexpected in the page's state";
    case ProtocolError::kStaleSequence:
      return "stale sequence number";
    case ProtocolError::kDuplicateRequest:
      return "duplicate request";
    case ProtocolError::kBadSender:
      return "bad sender";
  }
  return "?";
}

namespace {

const char* access_name(PageAccess a) {
  switch (a) {
    case PageAccess::kNone:
      return "None";
    case PageAccess::kRead:
      return "Read";
    case PageAccess::kReadWrite:
      return "ReadWrite";
  }
  return "?";
}

const char* kind_name(ReqKind k) {
  switch (k) {
    case ReqKind::kRead:
      return "read";
    case ReqKind::kWrite:
      return "write";
    case ReqKind::kEvict:
      return "evict";
  }
  return "?";
}

ReqKind kind_for(PageAccess need) {
  return need == PageAccess::kReadWrite ? ReqKind::kWrite : ReqKind::kRead;
}

// One step of one node on one page. Validation happens before any mutation, so an error
// leaves the state as it was.
class Stepper {
 public:
  Stepper(const Context& ctx, PageState& st, u64 page) : ctx_(ctx), st_(st), page_(page) {}

  Step take() { return std::move(out_); }

  Step fail(ProtocolError e) {
    out_.actions.clear();
    out_.error = e;
    return take();
  }

  // ------------------------------------------------------------------ node side

  void local_fault(PageAccess need) {
    CacheEntry& c = st_.cache;
    if (satisfies(c.access, need)) {
      wake();
      return;
    }
    if (c.pending != PageAccess::kNone) {
      // One request per page at a time: remember what else the waiters need and ask for
      // it when the current grant arrives.
      if (!satisfies(c.pending, need) && !satisfies(c.wanted, need)) c.wanted = need;
      return;
    }
    issue_request(need);
  }

  void local_evict() {
    CacheEntry& c = st_.cache;
    // The home keeps its own pages; a page being waited for is not given away.
    if (ctx_.self == ctx_.home || c.access == PageAccess::kNone || c.evicting ||
        c.pending != PageAccess::kNone) {
      return;
    }
    c.evicting = true;
    send(ctx_.home, MsgType::kEvictRequest, 0, PageAccess::kNone, DataSource::kNone);
  }

  ProtocolError message(const Message& m) {
    if (m.from >= ctx_.node_count || m.from == ctx_.self) return ProtocolError::kBadSender;
    switch (m.type) {
      case MsgType::kReadRequest:
      case MsgType::kWriteRequest:
      case MsgType::kEvictRequest:
        return remote_request(m);
      case MsgType::kDowngradeAck:
      case MsgType::kFetchAck:
      case MsgType::kInvalidateAck:
        return ack(m);
      case MsgType::kGrant:
      case MsgType::kGrantData:
        return grant_received(m);
      case MsgType::kDowngrade:
      case MsgType::kFetchInvalidate:
      case MsgType::kInvalidate:
        return revoke_received(m);
    }
    return ProtocolError::kUnexpected;
  }

 private:
  void issue_request(PageAccess need) {
    CacheEntry& c = st_.cache;
    c.pending = need;
    c.wanted = PageAccess::kNone;
    ++c.seq;
    if (ctx_.self == ctx_.home) {
      submit(Request{ctx_.self, kind_for(need), c.seq});
    } else {
      send(ctx_.home,
           need == PageAccess::kReadWrite ? MsgType::kWriteRequest : MsgType::kReadRequest, c.seq,
           PageAccess::kNone, DataSource::kNone);
    }
  }

  ProtocolError grant_received(const Message& m) {
    CacheEntry& c = st_.cache;
    if (m.from != ctx_.home || ctx_.self == ctx_.home) return ProtocolError::kBadSender;
    if (c.pending == PageAccess::kNone) return ProtocolError::kUnexpected;
    if (m.seq != c.seq) return ProtocolError::kStaleSequence;
    if (m.access == PageAccess::kNone || !satisfies(m.access, c.pending)) {
      return ProtocolError::kUnexpected;
    }
    // A grant without data only goes to a node the directory lists as holding a valid
    // copy; with FIFO per pair, any invalidation of that copy arrived before it.
    const bool with_data = m.type == MsgType::kGrantData;
    if (with_data != (c.access == PageAccess::kNone)) return ProtocolError::kUnexpected;
    if (with_data) install();
    set_access(m.access);
    c.pending = PageAccess::kNone;
    wake();
    const PageAccess more = c.wanted;
    c.wanted = PageAccess::kNone;
    if (more != PageAccess::kNone && !satisfies(c.access, more)) issue_request(more);
    return ProtocolError::kNone;
  }

  ProtocolError revoke_received(const Message& m) {
    CacheEntry& c = st_.cache;
    if (m.from != ctx_.home || ctx_.self == ctx_.home) return ProtocolError::kBadSender;
    switch (m.type) {
      case MsgType::kDowngrade:
        if (c.access != PageAccess::kReadWrite) return ProtocolError::kUnexpected;
        set_access(PageAccess::kRead);
        send(ctx_.home, MsgType::kDowngradeAck, m.seq, PageAccess::kNone, DataSource::kLocalPage);
        return ProtocolError::kNone;
      case MsgType::kFetchInvalidate:
        if (c.access != PageAccess::kReadWrite) return ProtocolError::kUnexpected;
        set_access(PageAccess::kNone);
        c.evicting = false;
        send(ctx_.home, MsgType::kFetchAck, m.seq, PageAccess::kNone, DataSource::kLocalPage);
        return ProtocolError::kNone;
      case MsgType::kInvalidate:
        // Also while this node's own request (an upgrade) is outstanding: the home
        // serves that later and, seeing the node no longer shares, sends the data.
        if (c.access != PageAccess::kRead) return ProtocolError::kUnexpected;
        set_access(PageAccess::kNone);
        c.evicting = false;
        send(ctx_.home, MsgType::kInvalidateAck, m.seq, PageAccess::kNone, DataSource::kNone);
        return ProtocolError::kNone;
      default:
        return ProtocolError::kUnexpected;
    }
  }

  // ------------------------------------------------------------------ home side

  ProtocolError remote_request(const Message& m) {
    if (ctx_.self != ctx_.home) return ProtocolError::kNotHome;
    const ReqKind kind = m.type == MsgType::kReadRequest    ? ReqKind::kRead
                         : m.type == MsgType::kWriteRequest ? ReqKind::kWrite
                                                            : ReqKind::kEvict;
    // Bound the queue: one read/write and one evict per node, as the node side sends.
    const DirEntry& d = st_.dir;
    auto same_class = [&](const Request& r) {
      return r.node == m.from && ((r.kind == ReqKind::kEvict) == (kind == ReqKind::kEvict));
    };
    if ((d.busy && same_class(d.txn)) || std::any_of(d.queue.begin(), d.queue.end(), same_class)) {
      return ProtocolError::kDuplicateRequest;
    }
    submit(Request{m.from, kind, static_cast<u32>(m.seq)});
    return ProtocolError::kNone;
  }

  void submit(const Request& r) {
    DirEntry& d = st_.dir;
    if (d.busy) {
      d.queue.push_back(r);
      return;
    }
    begin(r);
    drain();
  }

  void drain() {
    DirEntry& d = st_.dir;
    while (!d.busy && !d.queue.empty()) {
      const Request r = d.queue.front();
      d.queue.erase(d.queue.begin());
      begin(r);
    }
  }

  void begin(const Request& r) {
    DirEntry& d = st_.dir;
    d.busy = true;
    d.txn = r;
    d.waiting = 0;
    d.bounced = false;
    ++d.txn_seq;
    const NodeId self = ctx_.self;
    switch (r.kind) {
      case ReqKind::kRead:
        if (d.mode == DirMode::kExclusive) {
          if (d.owner == r.node) {
            grant(r, PageAccess::kReadWrite, DataSource::kNone);  // it holds more already
          } else if (d.owner == self) {
            lower_home(PageAccess::kRead);
            d.mode = DirMode::kShared;
            d.sharers = node_bit(self) | node_bit(r.node);
            d.bounced = true;
            grant(r, PageAccess::kRead, DataSource::kLocalPage);
          } else {
            d.bounced = true;
            revoke(d.owner, MsgType::kDowngrade);
            return;
          }
        } else if (d.sharers & node_bit(r.node)) {
          grant(r, PageAccess::kRead, DataSource::kNone);
        } else {
          // The home shares in Shared, so its copy is valid: no other node is involved.
          d.sharers |= node_bit(r.node);
          grant(r, PageAccess::kRead, DataSource::kLocalPage);
        }
        break;
      case ReqKind::kWrite:
        if (d.mode == DirMode::kExclusive) {
          if (d.owner == r.node) {
            grant(r, PageAccess::kReadWrite, DataSource::kNone);
          } else if (d.owner == self) {
            lower_home(PageAccess::kNone);
            d.owner = r.node;
            d.bounced = true;
            grant(r, PageAccess::kReadWrite, DataSource::kLocalPage);
          } else {
            d.bounced = true;
            revoke(d.owner, MsgType::kFetchInvalidate);
            return;
          }
        } else {
          NodeSet others = d.sharers & ~node_bit(r.node);
          if (others & node_bit(self)) {
            // The home's bytes stay valid after it loses access: nobody writes until the
            // grant, so they can still be sent to a requester without a copy.
            lower_home(PageAccess::kNone);
            others &= ~node_bit(self);
            d.bounced = true;
          }
          if (others != 0) {
            d.bounced = true;
            for (NodeSet s = others; s != 0; s &= s - 1) {
              revoke(static_cast<NodeId>(std::countr_zero(s)), MsgType::kInvalidate);
            }
            return;
          }
          write_from_shared();
          return;  // write_from_shared finished the transaction
        }
        break;
      case ReqKind::kEvict:
        if (r.node != self) {
          if (d.mode == DirMode::kExclusive && d.owner == r.node) {
            revoke(r.node, MsgType::kFetchInvalidate);
            return;
          }
          if (d.mode == DirMode::kShared && (d.sharers & node_bit(r.node))) {
            revoke(r.node, MsgType::kInvalidate);
            return;
          }
        }
        break;  // nothing held there any more: done
    }
    finish();
  }

  ProtocolError ack(const Message& m) {
    if (ctx_.self != ctx_.home) return ProtocolError::kNotHome;
    DirEntry& d = st_.dir;
    if (!d.busy || (d.waiting & node_bit(m.from)) == 0) return ProtocolError::kUnexpected;
    if (m.seq != d.txn_seq) return ProtocolError::kStaleSequence;
    const MsgType expected = d.mode == DirMode::kShared     ? MsgType::kInvalidateAck
                             : d.txn.kind == ReqKind::kRead ? MsgType::kDowngradeAck
                                                            : MsgType::kFetchAck;
    if (m.type != expected) return ProtocolError::kUnexpected;
    d.waiting &= ~node_bit(m.from);
    const Request r = d.txn;
    switch (m.type) {
      case MsgType::kDowngradeAck:
        // Exclusive -> Shared: the data passes through the home, which keeps a copy.
        install();
        set_access(PageAccess::kRead);
        d.mode = DirMode::kShared;
        d.sharers = node_bit(m.from) | node_bit(ctx_.self) | node_bit(r.node);
        // Installed here already; a requester elsewhere gets the incoming bytes forwarded.
        grant(r, PageAccess::kRead,
              r.node == ctx_.self ? DataSource::kLocalPage : DataSource::kIncoming);
        finish();
        break;
      case MsgType::kFetchAck:
        if (r.kind == ReqKind::kWrite) {
          d.owner = r.node;
          grant(r, PageAccess::kReadWrite, DataSource::kIncoming);
        } else {  // evict: the page comes home
          install();
          set_access(PageAccess::kReadWrite);
          d.owner = ctx_.self;
        }
        finish();
        break;
      default:  // kInvalidateAck
        if (d.waiting != 0) return ProtocolError::kNone;
        if (r.kind == ReqKind::kWrite) {
          write_from_shared();
        } else {
          d.sharers &= ~node_bit(m.from);
          finish();
        }
        break;
    }
    drain();
    return ProtocolError::kNone;
  }

  // All other sharers are gone: hand the page over exclusively.
  void write_from_shared() {
    DirEntry& d = st_.dir;
    const Request r = d.txn;
    const bool had_copy = (d.sharers & node_bit(r.node)) != 0;
    d.mode = DirMode::kExclusive;
    d.owner = r.node;
    d.sharers = 0;
    grant(r, PageAccess::kReadWrite, had_copy ? DataSource::kNone : DataSource::kLocalPage);
    finish();
  }

  void grant(const Request& r, PageAccess access, DataSource data) {
    if (r.node != ctx_.self) {
      send(r.node, data == DataSource::kNone ? MsgType::kGrant : MsgType::kGrantData, r.seq, access,
           data);
      return;
    }
    // The home is the requester: act on its own copy. kLocalPage data is already here.
    CacheEntry& c = st_.cache;
    if (data == DataSource::kIncoming) install();
    if (c.access != access) set_access(access);
    c.pending = PageAccess::kNone;
    wake();
    const PageAccess more = c.wanted;
    c.wanted = PageAccess::kNone;
    if (more != PageAccess::kNone && !satisfies(c.access, more)) {
      // Behind whatever else is queued: the transaction in flight is still this one.
      c.pending = more;
      ++c.seq;
      st_.dir.queue.push_back(Request{ctx_.self, kind_for(more), c.seq});
    }
  }

  void finish() {
    DirEntry& d = st_.dir;
    Action a;
    a.kind = ActionKind::kComplete;
    a.request = d.txn;
    a.bounced = d.bounced;
    out_.actions.push_back(a);
    d.busy = false;
    d.waiting = 0;
    d.bounced = false;
  }

  void revoke(NodeId n, MsgType t) {
    st_.dir.waiting |= node_bit(n);
    send(n, t, st_.dir.txn_seq, PageAccess::kNone, DataSource::kNone);
  }

  void lower_home(PageAccess a) { set_access(a); }

  // ------------------------------------------------------------------ actions

  void set_access(PageAccess a) {
    st_.cache.access = a;
    Action act;
    act.kind = ActionKind::kSetAccess;
    act.access = a;
    out_.actions.push_back(act);
  }

  void install() {
    Action act;
    act.kind = ActionKind::kInstallData;
    out_.actions.push_back(act);
  }

  void wake() {
    Action act;
    act.kind = ActionKind::kWake;
    out_.actions.push_back(act);
  }

  void send(NodeId to, MsgType t, u64 seq, PageAccess access, DataSource data) {
    Action act;
    act.kind = ActionKind::kSend;
    act.to = to;
    act.msg = Message{t, ctx_.self, access, page_, seq};
    act.data = carries_data(t) ? data : DataSource::kNone;
    out_.actions.push_back(act);
  }

  const Context& ctx_;
  PageState& st_;
  u64 page_;
  Step out_;
};

}  // namespace

PageState initial_page_state(NodeId self, NodeId home) {
  PageState st;
  st.cache.access = self == home ? PageAccess::kReadWrite : PageAccess::kNone;
  st.dir.mode = DirMode::kExclusive;
  st.dir.owner = home;
  return st;
}

Step on_local_fault(const Context& ctx, PageState& st, u64 page, AccessType type) {
  Stepper s(ctx, st, page);
  s.local_fault(needed_access(type));
  return s.take();
}

Step on_local_evict(const Context& ctx, PageState& st, u64 page) {
  Stepper s(ctx, st, page);
  s.local_evict();
  return s.take();
}

Step on_message(const Context& ctx, PageState& st, const Message& msg) {
  Stepper s(ctx, st, msg.page);
  const ProtocolError e = s.message(msg);
  if (e != ProtocolError::kNone) return s.fail(e);
  return s.take();
}

// ------------------------------------------------------------------------------ describe

std::string describe(const Action& a) {
  std::string s;
  switch (a.kind) {
    case ActionKind::kSend:
      s = std::string("send ") + msg_type_name(a.msg.type) + " to " + std::to_string(a.to) +
          " seq " + std::to_string(a.msg.seq);
      if (carries_access(a.msg.type)) s += std::string(" access ") + access_name(a.msg.access);
      if (a.data == DataSource::kLocalPage) s += " data=local";
      if (a.data == DataSource::kIncoming) s += " data=forward";
      return s;
    case ActionKind::kSetAccess:
      return std::string("set access ") + access_name(a.access);
    case ActionKind::kInstallData:
      return "install data";
    case ActionKind::kWake:
      return "wake";
    case ActionKind::kComplete:
      return std::string("complete ") + kind_name(a.request.kind) + " by " +
             std::to_string(a.request.node) + (a.bounced ? " (bounced)" : "");
  }
  return "?";
}

std::string describe(const PageState& st) {
  std::string s =
      std::string("cache{") + access_name(st.cache.access) +
      " pending=" + access_name(st.cache.pending) + " wanted=" + access_name(st.cache.wanted) +
      (st.cache.evicting ? " evicting" : "") + " seq=" + std::to_string(st.cache.seq) + "} dir{";
  if (st.dir.mode == DirMode::kExclusive) {
    s += "Exclusive(" + std::to_string(st.dir.owner) + ")";
  } else {
    s += "Shared(";
    for (NodeSet m = st.dir.sharers; m != 0; m &= m - 1) {
      s += std::to_string(std::countr_zero(m));
      if ((m & (m - 1)) != 0) s += ",";
    }
    s += ")";
  }
  if (st.dir.busy) {
    s += std::string(" busy ") + kind_name(st.dir.txn.kind) + " by " +
         std::to_string(st.dir.txn.node) + " waiting=" + std::to_string(st.dir.waiting);
  }
  if (!st.dir.queue.empty()) s += " queued=" + std::to_string(st.dir.queue.size());
  return s + "}";
}

}  // namespace dvmm::dsm
