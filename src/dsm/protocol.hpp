// The coherence protocol of the distributed shared memory, as pure functions.
//
// Owns: the per-page state a node keeps (CacheEntry: what this node holds and has asked
// for; DirEntry: the directory of a page whose home is this node) and the transitions
// (state, input) -> (new state, actions). No threads, no I/O, no clocks: the runtime
// (dsm_node.hpp) feeds inputs one at a time per node and performs the actions in order;
// tests drive the same functions against a simulated network. docs/DSM.md has the tables.
//
// Protocol: home-based directory, IVY/GiantVM family. Each page has one home (HomeMap);
// the home's directory says Exclusive(owner) or Shared(sharers). One writer or many
// readers: sequential consistency. The home serializes transactions per page and queues
// requests that arrive while one is in flight. In Shared the home is always a sharer, so
// it can serve read copies from its own memory. The home acts on its own copy directly
// (never through messages to itself).
//
// Ordering assumption: messages about one page between one ordered pair of nodes arrive
// in the order they were sent (FIFO per pair is enough; different pairs may reorder).
//
// Threads: the functions are pure; a node's state for a page must be stepped by one
// thread at a time.
#pragma once

#include <string>
#include <vector>

#include "base/types.hpp"
#include "memory/guest_ram.hpp"

namespace dvmm::dsm {

using memory::AccessType;
using memory::PageAccess;

using NodeId = u16;
// Sets of nodes are bitmasks: the protocol supports up to 64 nodes.
inline constexpr unsigned kMaxNodes = 64;
using NodeSet = u64;
inline constexpr NodeSet node_bit(NodeId n) {
  return NodeSet{1} << n;
}

// Guest RAM split into per-node ranges: the node whose range holds a page is its home.
// Immutable after construction; any thread.
class HomeMap {
 public:
  // Node i contributes pages_per_node[i] pages, in node order, starting at `base`.
  HomeMap(Gpa base, std::vector<u64> pages_per_node);
  // `total_pages` split as evenly as possible (the first nodes get the remainder).
  static HomeMap even(Gpa base, u64 total_pages, unsigned nodes);

  Gpa base() const { return base_; }
  unsigned node_count() const { return static_cast<unsigned>(first_.size() - 1); }
  u64 page_count() const { return first_.back(); }
  u64 first_page(NodeId n) const { return first_[n]; }
  u64 end_page(NodeId n) const { return first_[n + 1]; }
  NodeId home_of(u64 page) const;  // page < page_count()
  bool contains(Gpa gpa) const { return gpa - base_ < (page_count() << kPageShift); }
  u64 page_index(Gpa gpa) const { return (gpa - base_) >> kPageShift; }

 private:
  Gpa base_;
  std::vector<u64> first_;  // first_[n] = first page of node n; first_[node_count] = total
};

enum class MsgType : u8 {
  kReadRequest = 1,      // node -> home: wants a read copy
  kWriteRequest = 2,     // node -> home: wants to write (from None, or an upgrade from Read)
  kEvictRequest = 3,     // node -> home: asks the home to take its copy back
  kDowngrade = 4,        // home -> owner: go to Read, send the data
  kFetchInvalidate = 5,  // home -> owner: go to None, send the data
  kInvalidate = 6,       // home -> sharer: go to None, acknowledge
  kDowngradeAck = 7,     // owner -> home, with data
  kFetchAck = 8,         // owner -> home, with data
  kInvalidateAck = 9,    // sharer -> home
  kGrant = 10,           // home -> requester: access raised; the requester's copy is valid
  kGrantData = 11,       // home -> requester: access raised, with the data
};
inline constexpr u8 kFirstMsgType = 1;
inline constexpr u8 kLastMsgType = 11;

const char* msg_type_name(MsgType t);
// The message carries the 4 KiB page.
constexpr bool carries_data(MsgType t) {
  return t == MsgType::kDowngradeAck || t == MsgType::kFetchAck || t == MsgType::kGrantData;
}
// Only grants carry an access level (Read or ReadWrite); the others carry kNone.
constexpr bool carries_access(MsgType t) {
  return t == MsgType::kGrant || t == MsgType::kGrantData;
}

struct Message {
  MsgType type = MsgType::kReadRequest;
  NodeId from = 0;
  PageAccess access = PageAccess::kNone;
  u64 page = 0;
  // Requests carry the requester's sequence and grants echo it; the home's revocations
  // carry its transaction sequence and acks echo it. Stale or forged replies are caught.
  u64 seq = 0;
  bool operator==(const Message&) const = default;
};

// Node side: what this node holds of one page.
struct CacheEntry {
  PageAccess access = PageAccess::kNone;
  PageAccess pending = PageAccess::kNone;  // the access requested and not yet granted
  PageAccess wanted = PageAccess::kNone;   // needed by local waiters beyond `pending`
  bool evicting = false;                   // an EvictRequest is outstanding
  u32 seq = 0;                             // sequence of the last request sent
  bool operator==(const CacheEntry&) const = default;
};

enum class DirMode : u8 { kExclusive = 0, kShared = 1 };
enum class ReqKind : u8 { kRead = 0, kWrite = 1, kEvict = 2 };

struct Request {
  NodeId node = 0;
  ReqKind kind = ReqKind::kRead;
  u32 seq = 0;
  bool operator==(const Request&) const = default;
};

// Home side: the directory entry of a page whose home is this node.
struct DirEntry {
  DirMode mode = DirMode::kExclusive;
  NodeId owner = 0;     // kExclusive
  NodeSet sharers = 0;  // kShared; always holds the home
  // The transaction in flight, if busy.
  bool busy = false;
  bool bounced = false;  // it took rights away from a node other than the requester
  Request txn;
  NodeSet waiting = 0;  // nodes whose ack it still needs
  u32 txn_seq = 0;      // stamped on the revocations it sends
  // Requests that arrived while busy, served in arrival order. At most one read/write
  // request and one evict request per node (a node has one outstanding of each).
  std::vector<Request> queue;
  bool operator==(const DirEntry&) const = default;
};

// One node's state for one page. `dir` is meaningful only at the page's home.
struct PageState {
  CacheEntry cache;
  DirEntry dir;
  bool operator==(const PageState&) const = default;
};

// The initial state: every page exclusively owned by its home.
PageState initial_page_state(NodeId self, NodeId home);

enum class ActionKind : u8 {
  kSend,         // send `msg` to `to` (with the page data from `data` if carries_data)
  kSetAccess,    // set the local access to `access`; when lowering, local harts must have
                 // dropped the page before the next action (which may copy the data out)
  kInstallData,  // write the incoming message's data into the local page
  kWake,         // local waiters for the page may retry
  kComplete,     // the home finished a transaction (for counters): requester, kind, bounced
};

enum class DataSource : u8 {
  kNone,
  kLocalPage,  // copy the local page when the send is performed
  kIncoming,   // forward the data of the message being handled
};

struct Action {
  ActionKind kind = ActionKind::kWake;
  NodeId to = 0;                          // kSend
  Message msg;                            // kSend
  DataSource data = DataSource::kNone;    // kSend
  PageAccess access = PageAccess::kNone;  // kSetAccess
  Request request;                        // kComplete
  bool bounced = false;                   // kComplete
  bool operator==(const Action&) const = default;
};

enum class ProtocolError : u8 {
  kNone = 0,
  kNotHome,           // a request or ack for a page whose home is not this node
  kUnexpected,        // the message is not valid in the page's current state
  kStaleSequence,     // a grant or ack whose sequence does not match
  kDuplicateRequest,  // a node asked again while its request is queued or in flight
  kBadSender,         // the sender cannot send this (e.g. the home messaging itself)
};
const char* protocol_error_name(ProtocolError e);

struct Step {
  std::vector<Action> actions;
  // On an error the state is unchanged and there are no actions.
  ProtocolError error = ProtocolError::kNone;
};

// Who is stepping: this node, the page's home, the number of nodes.
struct Context {
  NodeId self = 0;
  NodeId home = 0;
  unsigned node_count = 1;
};

// A local vCPU (or device) needs `type` on the page and does not have it.
Step on_local_fault(const Context& ctx, PageState& st, u64 page, AccessType type);
// This node would like to give its copy back to the home (memory pressure, ballooning).
Step on_local_evict(const Context& ctx, PageState& st, u64 page);
// A message from another node about the page (msg.page).
Step on_message(const Context& ctx, PageState& st, const Message& msg);

inline bool satisfies(PageAccess have, PageAccess need) {
  return static_cast<u8>(have) >= static_cast<u8>(need);
}
inline PageAccess needed_access(AccessType t) {
  return t == AccessType::kWrite ? PageAccess::kReadWrite : PageAccess::kRead;
}

std::string describe(const Action& a);
std::string describe(const PageState& st);

}  // namespace dvmm::dsm
