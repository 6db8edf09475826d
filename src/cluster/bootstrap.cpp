// Bootstrap rendezvous: wire format, rank 0's server, the joiners' client, the cluster
// file, launcher environments. See bootstrap.hpp.
#include "cluster/bootstrap.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "cluster/wire_codec.hpp"

namespace dvmm::cluster {
namespace {

using Clock = std::chrono::steady_clock;

constexpr u64 kJoinMagic = 0x544f4f424d4d5644ull;  // "DVMMBOOT" little-endian
constexpr u32 kMaxFrame = 16u << 20;
constexpr u8 kReplyTable = 1;
constexpr u8 kReplyRefused = 2;  // this node is refused
constexpr u8 kReplyAborted = 3;  // the bootstrap failed for another reason
// Joiners wait this much longer than rank 0, so rank 0's verdict (which names the missing
// nodes) reaches them before their own timeout fires.
constexpr auto kJoinerGrace = std::chrono::seconds(5);
constexpr auto kRetryConnect = std::chrono::milliseconds(50);
// After a failed bootstrap rank 0 answers late joiners with its verdict for this long.
constexpr auto kLinger = std::chrono::seconds(2);

void default_log(const std::string& line) {
  std::fprintf(stderr, "dvmm cluster: %s\n", line.c_str());
}

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string this_host() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) std::snprintf(name, sizeof name, "?");
  return std::string(name) + " pid " + std::to_string(getpid());
}

std::string seconds_text(std::chrono::milliseconds ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms.count()) / 1000.0);
  return buf;
}

std::string rank_list(const std::vector<unsigned>& ranks) {
  std::string s;
  for (unsigned r : ranks) {
    if (!s.empty()) s += ", ";
    s += std::to_string(r);
  }
  return s;
}

struct Join {
  u64 magic = 0;
  u32 protocol = 0;
  std::string version;
  u32 rank = 0;
  u32 size = 0;
  u64 description_hash = 0;
  std::string host;
  std::vector<u8> node_info;
  std::vector<u8> address;
};

std::vector<u8> encode_join(const Join& j) {
  WireWriter w;
  w.u64v(j.magic);
  w.u32v(j.protocol);
  w.str(j.version);
  w.u32v(j.rank);
  w.u32v(j.size);
  w.u64v(j.description_hash);
  w.str(j.host);
  w.bytes(j.node_info);
  w.bytes(j.address);
  return w.take();
}

// Decodes as far as the fields a version check needs even when the rest is from another
// protocol version: returns false if not even magic+protocol parse.
bool decode_join(std::span<const u8> b, Join& j, bool& complete) {
  WireReader r(b);
  complete = false;
  if (!r.u64v(j.magic) || !r.u32v(j.protocol)) return false;
  if (j.magic != kJoinMagic || j.protocol != kWireProtocolVersion) return true;
  complete = r.str(j.version) && r.u32v(j.rank) && r.u32v(j.size) && r.u64v(j.description_hash) &&
             r.str(j.host) && r.bytes(j.node_info) && r.bytes(j.address) && r.at_end();
  return true;
}

std::vector<u8> encode_table(const PeerTable& t) {
  WireWriter w;
  w.u8v(kReplyTable);
  w.u64v(t.session);
  w.u32v(static_cast<u32>(t.addresses.size()));
  for (std::size_t i = 0; i < t.addresses.size(); ++i) {
    w.bytes(t.addresses[i]);
    w.bytes(t.node_infos[i]);
    w.str(t.hosts[i]);
  }
  return w.take();
}

std::vector<u8> encode_verdict(u8 kind, const std::string& reason) {
  WireWriter w;
  w.u8v(kind);
  w.str(reason);
  return w.take();
}

u64 join_hash(const JoinInfo& j) {
  return j.description_hash != 0 ? j.description_hash : description_hash(j.description);
}

Join make_join(const JoinInfo& info, NodeId rank, unsigned size, std::span<const u8> address) {
  Join j;
  j.magic = kJoinMagic;
  j.protocol = kWireProtocolVersion;
  j.version = info.version;
  j.rank = rank;
  j.size = size;
  j.description_hash = join_hash(info);
  j.host = this_host();
  j.node_info = info.node_info;
  j.address.assign(address.begin(), address.end());
  return j;
}

// Why rank 0 (`ours`) refuses `j`, or empty. `taken` says which ranks already joined.
std::string refusal(const Join& ours, const Join& j, const std::vector<bool>& taken,
                    const std::vector<std::string>& hosts) {
  char buf[160];
  if (j.protocol != ours.protocol) {
    return "wire protocol version " + std::to_string(j.protocol) + " differs from rank 0's " +
           std::to_string(ours.protocol) + " (different dvmm builds)";
  }
  if (j.version != ours.version) {
    return "dvmm version '" + j.version + "' differs from rank 0's '" + ours.version + "'";
  }
  if (j.size != ours.size) {
    return "node count " + std::to_string(j.size) + " differs from rank 0's " +
           std::to_string(ours.size);
  }
  if (j.rank == 0 || j.rank >= ours.size) {
    return "rank " + std::to_string(j.rank) + " is not a joinable rank of " +
           std::to_string(ours.size) + " nodes (rank 0 is " + hosts[0] + ")";
  }
  if (taken[j.rank]) {
    return "rank " + std::to_string(j.rank) + " already joined from " + hosts[j.rank];
  }
  if (j.description_hash != ours.description_hash) {
    std::snprintf(buf, sizeof buf,
                  "machine description differs from rank 0's (hash %016llx, rank 0 has %016llx)",
                  static_cast<unsigned long long>(j.description_hash),
                  static_cast<unsigned long long>(ours.description_hash));
    return buf;
  }
  return {};
}

// ---- sockets ----

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<long long>(left.count(), 0, 1000000));
}

// Writes a whole frame (length prefix + body) before the deadline; false on error/timeout.
bool write_frame(int fd, std::span<const u8> body, Clock::time_point deadline) {
  std::vector<u8> frame(4 + body.size());
  u32 len = static_cast<u32>(body.size());
  for (int i = 0; i < 4; ++i) frame[i] = static_cast<u8>(len >> (8 * i));
  std::copy(body.begin(), body.end(), frame.begin() + 4);
  std::size_t off = 0;
  while (off < frame.size()) {
    ssize_t n = ::send(fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      int left = ms_until(deadline);
      if (left == 0) return false;
      ::poll(&p, 1, left);
      continue;
    }
    return false;
  }
  return true;
}

// Accumulates bytes from a stream and cuts frames out of it.
struct FrameBuffer {
  std::vector<u8> data;
  // Reads what is available. Returns false on EOF or error (err set; 0 for EOF).
  bool fill(int fd, int& err) {
    u8 buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        data.insert(data.end(), buf, buf + n);
        continue;
      }
      if (n == 0) {
        err = 0;
        return false;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      err = errno;
      return false;
    }
  }
  // 1: a frame is in `out`; 0: need more; -1: oversized frame.
  int next(std::vector<u8>& out) {
    if (data.size() < 4) return 0;
    u32 len = u32{data[0]} | u32{data[1]} << 8 | u32{data[2]} << 16 | u32{data[3]} << 24;
    if (len > kMaxFrame) return -1;
    if (data.size() < 4 + std::size_t{len}) return 0;
    out.assign(data.begin() + 4, data.begin() + 4 + len);
    data.erase(data.begin(), data.begin() + 4 + len);
    return 1;
  }
};

// Reads one frame before the deadline. Throws ClusterError with `what` context.
std::vector<u8> read_frame(int fd, Clock::time_point deadline, const std::string& peer,
                           const std::string& timeout_message) {
  FrameBuffer fb;
  std::vector<u8> out;
  for (;;) {
    int r = fb.next(out);
    if (r == 1) return out;
    if (r < 0) throw ClusterError("bootstrap: oversized message from " + peer);
    pollfd p{fd, POLLIN, 0};
    int left = ms_until(deadline);
    if (left == 0) throw ClusterError(timeout_message);
    int pr = ::poll(&p, 1, left);
    if (pr < 0 && errno != EINTR) throw ClusterError("bootstrap: poll: " + errno_text(errno));
    if (pr <= 0) continue;
    int err = 0;
    if (!fb.fill(fd, err)) {
      if (fb.next(out) == 1) return out;
      throw ClusterError("bootstrap: " + peer + " closed the connection" +
                         (err ? " (" + errno_text(err) + ")" : std::string()) +
                         " before answering (see its log)");
    }
  }
}

// ---- rank 0 ----

struct ServerConn {
  Fd fd;
  FrameBuffer in;
  int rank = -1;  // joined as this rank
};

PeerTable run_server(Fd listener, const Join& ours, const BootstrapOptions& opt,
                     const std::string& where) {
  const auto& log = opt.log;
  const unsigned n = ours.size;
  PeerTable table;
  table.addresses.resize(n);
  table.node_infos.resize(n);
  table.hosts.resize(n);
  table.addresses[0] = ours.address;
  table.node_infos[0] = ours.node_info;
  table.hosts[0] = ours.host;
  std::vector<bool> taken(n, false);
  taken[0] = true;
  unsigned joined = 1;
  std::vector<std::unique_ptr<ServerConn>> conns;
  const auto start = Clock::now();
  const auto deadline = start + opt.timeout;

  // Tells every node that joined why the bootstrap failed, then keeps answering late
  // joiners with the same verdict for a moment (nodes start with some skew; without this
  // they would only report that rank 0 is unreachable).
  auto abort_all = [&](const std::string& reason) {
    auto body = encode_verdict(kReplyAborted, reason);
    auto d = Clock::now() + std::chrono::seconds(1);
    std::vector<Fd> late;  // connected but not yet joined: answered below
    for (auto& c : conns) {
      if (c->rank >= 0) {
        write_frame(c->fd.get(), body, d);
      } else if (c->fd) {
        late.push_back(std::move(c->fd));
      }
    }
    conns.clear();
    const auto linger_end = Clock::now() + kLinger;
    while (Clock::now() < linger_end) {
      std::vector<pollfd> fds{{listener.get(), POLLIN, 0}};
      for (auto& f : late) fds.push_back({f.get(), POLLIN, 0});
      if (::poll(fds.data(), fds.size(), std::max(ms_until(linger_end), 1)) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int cfd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) late.emplace_back(cfd);
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        // Read the join first: closing with unread data would reset a TCP connection
        // before the verdict is read.
        FrameBuffer fb;
        int err = 0;
        fb.fill(late[i - 1].get(), err);
        write_frame(late[i - 1].get(), body, Clock::now() + std::chrono::milliseconds(200));
        late[i - 1].reset();
      }
      late.erase(std::remove_if(late.begin(), late.end(), [](const Fd& f) { return !f; }),
                 late.end());
    }
  };

  while (joined < n) {
    if (Clock::now() >= deadline) {
      std::vector<unsigned> missing;
      for (unsigned r = 1; r < n; ++r) {
        if (!taken[r]) missing.push_back(r);
      }
      std::string reason = "bootstrap timed out after " + seconds_text(opt.timeout) + ": node" +
                           (missing.size() > 1 ? "s " : " ") + rank_list(missing) + " of " +
                           std::to_string(n) + " never joined at " + where;
      abort_all(reason);
      throw ClusterError(reason);
    }
    std::vector<pollfd> fds;
    fds.push_back({listener.get(), POLLIN, 0});
    for (auto& c : conns) fds.push_back({c->fd.get(), POLLIN, 0});
    int pr = ::poll(fds.data(), fds.size(), std::min(ms_until(deadline), 1000));
    if (pr < 0 && errno != EINTR) throw ClusterError("bootstrap: poll: " + errno_text(errno));
    if (pr <= 0) continue;
    if (fds[0].revents & POLLIN) {
      int cfd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (cfd >= 0) {
        auto c = std::make_unique<ServerConn>();
        c->fd = Fd(cfd);
        conns.push_back(std::move(c));
      }
    }
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ServerConn& c = *conns[i - 1];
      int err = 0;
      bool open = c.in.fill(c.fd.get(), err);
      std::vector<u8> frame;
      int fr;
      while ((fr = c.in.next(frame)) == 1) {
        if (c.rank >= 0) continue;  // one join per connection; ignore extra bytes
        Join j;
        bool complete = false;
        if (!decode_join(frame, j, complete) || j.magic != kJoinMagic) {
          log("bootstrap: ignored a connection that is not a dvmm join");
          open = false;
          break;
        }
        std::string why;
        if (j.protocol != kWireProtocolVersion) {
          why = refusal(ours, j, taken, table.hosts);
        } else if (!complete) {
          why = "malformed join message";
        } else {
          why = refusal(ours, j, taken, table.hosts);
        }
        if (!why.empty()) {
          std::string who = complete ? "node " + std::to_string(j.rank) + " (" + j.host + ")"
                                     : std::string("a node");
          write_frame(c.fd.get(), encode_verdict(kReplyRefused, why),
                      Clock::now() + std::chrono::seconds(1));
          std::string reason = "refused " + who + ": " + why;
          log("bootstrap: " + reason);
          abort_all(reason);
          throw ClusterError(reason);
        }
        c.rank = static_cast<int>(j.rank);
        taken[j.rank] = true;
        ++joined;
        table.addresses[j.rank] = std::move(j.address);
        table.node_infos[j.rank] = std::move(j.node_info);
        table.hosts[j.rank] = j.host;
      }
      if (fr < 0) open = false;
      if (!open) {
        if (c.rank >= 0) {
          // It may come back (a restarted process); until then it has not joined.
          log("bootstrap: node " + std::to_string(c.rank) + " (" + table.hosts[c.rank] +
              ") disconnected before the table was sent");
          taken[c.rank] = false;
          --joined;
        }
        c.fd.reset();
      }
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(), [](auto& c) { return !c->fd; }),
                conns.end());
  }

  std::random_device rd;
  table.session =
      (u64{rd()} << 32) ^ rd() ^ static_cast<u64>(Clock::now().time_since_epoch().count());
  if (table.session == 0) table.session = 1;
  auto body = encode_table(table);
  auto d = Clock::now() + std::chrono::seconds(10);
  for (auto& c : conns) {
    if (c->rank < 0) continue;
    if (!write_frame(c->fd.get(), body, d)) {
      throw ClusterError("bootstrap: could not send the table to node " + std::to_string(c->rank) +
                         " (" + table.hosts[c->rank] + ")");
    }
  }
  return table;
}

// ---- other ranks ----

PeerTable decode_reply(std::span<const u8> frame, unsigned size, NodeId rank,
                       const std::string& where) {
  WireReader r(frame);
  u8 kind = 0;
  if (!r.u8v(kind)) throw ClusterError("bootstrap: empty reply from rank 0 at " + where);
  if (kind == kReplyRefused || kind == kReplyAborted) {
    std::string reason;
    r.str(reason);
    if (kind == kReplyRefused) {
      throw ClusterError("rank 0 at " + where + " refused this node (rank " + std::to_string(rank) +
                         "): " + reason);
    }
    throw ClusterError("bootstrap failed at rank 0: " + reason);
  }
  PeerTable t;
  u32 n = 0;
  if (kind != kReplyTable || !r.u64v(t.session) || !r.u32v(n) || n != size) {
    throw ClusterError("bootstrap: malformed table from rank 0 at " + where);
  }
  t.addresses.resize(n);
  t.node_infos.resize(n);
  t.hosts.resize(n);
  for (u32 i = 0; i < n; ++i) {
    if (!r.bytes(t.addresses[i]) || !r.bytes(t.node_infos[i]) || !r.str(t.hosts[i])) {
      throw ClusterError("bootstrap: malformed table from rank 0 at " + where);
    }
  }
  return t;
}

// `connect_once` returns a connected socket or an invalid Fd with errno set (retryable
// while rank 0 is not listening yet).
template <typename Connect>
PeerTable run_client(Connect connect_once, const Join& ours, const BootstrapOptions& opt,
                     const std::string& where) {
  const auto start = Clock::now();
  const auto deadline = start + opt.timeout + kJoinerGrace;
  Fd fd;
  int last_err = 0;
  while (!(fd = connect_once(last_err))) {
    if (Clock::now() + kRetryConnect >= start + opt.timeout) {
      throw ClusterError("bootstrap: could not reach rank 0 at " + where + " within " +
                         seconds_text(opt.timeout) + " (" + errno_text(last_err) +
                         "); is rank 0 running?");
    }
    std::this_thread::sleep_for(kRetryConnect);
  }
  if (!write_frame(fd.get(), encode_join(ours), deadline)) {
    throw ClusterError("bootstrap: could not send the join to rank 0 at " + where);
  }
  auto frame = read_frame(
      fd.get(), deadline, "rank 0 at " + where,
      "bootstrap: timed out after " +
          seconds_text(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - start)) +
          " waiting for rank 0 at " + where + " to report that all nodes joined");
  return decode_reply(frame, ours.size, static_cast<NodeId>(ours.rank), where);
}

Fd make_socket(int domain) {
  return Fd(::socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

// Connect on a non-blocking socket, waiting up to a second for TCP's handshake.
bool connect_fd(int fd, const sockaddr* sa, socklen_t len, int& err) {
  if (::connect(fd, sa, len) == 0) return true;
  if (errno != EINPROGRESS) {
    err = errno;
    return false;
  }
  pollfd p{fd, POLLOUT, 0};
  if (::poll(&p, 1, 1000) <= 0) {
    err = ETIMEDOUT;
    return false;
  }
  int so = 0;
  socklen_t sl = sizeof so;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
  if (so != 0) {
    err = so;
    return false;
  }
  return true;
}

void check_size(unsigned size) {
  if (size == 0 || size > kMaxNodes) {
    throw ClusterError("node count " + std::to_string(size) + " is out of range (1.." +
                       std::to_string(kMaxNodes) + ")");
  }
}

BootstrapOptions with_defaults(BootstrapOptions o) {
  if (!o.log) o.log = default_log;
  return o;
}

PeerTable single_node_table(const Join& ours) {
  PeerTable t;
  std::random_device rd;
  t.session = (u64{rd()} << 32) ^ rd() ^ 1;
  t.addresses.push_back(ours.address);
  t.node_infos.push_back(ours.node_info);
  t.hosts.push_back(ours.host);
  return t;
}

}  // namespace

u64 description_hash(std::span<const u8> bytes) {
  u64 h = 0xcbf29ce484222325ull;
  for (u8 b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

// ---- LocalBootstrap ----

LocalBootstrap::LocalBootstrap(std::string dir, NodeId rank, unsigned size,
                               BootstrapOptions options)
    : dir_(std::move(dir)), rank_(rank), size_(size), options_(with_defaults(std::move(options))) {
  check_size(size);
  if (rank >= size) {
    throw ClusterError("rank " + std::to_string(rank) + " is out of range for " +
                       std::to_string(size) + " nodes");
  }
  if (where().size() + 1 > sizeof(sockaddr_un{}.sun_path)) {
    throw ClusterError("bootstrap directory path too long for a UNIX socket: " + dir_);
  }
}

std::string LocalBootstrap::where() const {
  return dir_ + "/rank0.sock";
}

PeerTable LocalBootstrap::exchange(std::span<const u8> address) {
  Join ours = make_join(options_.join, rank_, size_, address);
  if (size_ == 1) return single_node_table(ours);
  const std::string path = where();
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (rank_ == 0) {
    if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
      throw ClusterError("bootstrap: cannot create " + dir_ + ": " + errno_text(errno));
    }
    ::unlink(path.c_str());  // a stale socket of an earlier run
    Fd l = make_socket(AF_UNIX);
    if (!l || ::bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(l.get(), 128) != 0) {
      throw ClusterError("bootstrap: cannot listen on " + path + ": " + errno_text(errno));
    }
    struct Unlink {
      std::string p;
      ~Unlink() { ::unlink(p.c_str()); }
    } unlink_after{path};
    return run_server(std::move(l), ours, options_, path);
  }
  auto connect_once = [&](int& err) {
    Fd fd = make_socket(AF_UNIX);
    if (!fd) {
      err = errno;
      return Fd();
    }
    if (!connect_fd(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa, err)) return Fd();
    return fd;
  };
  return run_client(connect_once, ours, options_, path);
}

// ---- cluster file and launchers ----

namespace {

bool parse_uint(const std::string& s, unsigned long max, unsigned long& out) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  out = std::stoul(s);
  return out <= max;
}

}  // namespace

ClusterFile ClusterFile::parse(const std::string& text, const std::string& origin) {
  ClusterFile f;
  std::vector<bool> have;
  std::istringstream in(text);
  std::string line;
  unsigned lineno = 0;
  int style = 0;  // 1: HOST:PORT, 2: RANK HOST PORT
  while (std::getline(in, line)) {
    ++lineno;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream ls(line);
    std::vector<std::string> tok;
    for (std::string t; ls >> t;) tok.push_back(t);
    if (tok.empty()) continue;
    const std::string at = origin + ":" + std::to_string(lineno) + ": ";
    auto bad = [&](const std::string& why) { return ClusterError(at + why); };
    unsigned long port = 0;
    if (tok.size() == 1) {
      if (style == 2) throw bad("mixes 'HOST:PORT' with 'RANK HOST PORT' lines");
      style = 1;
      const std::string& t = tok[0];
      std::string host;
      std::string port_text;
      if (t[0] == '[') {
        auto close = t.find("]:");
        if (close == std::string::npos) throw bad("expected '[IPV6]:PORT', got '" + t + "'");
        host = t.substr(1, close - 1);
        port_text = t.substr(close + 2);
      } else {
        auto colon = t.rfind(':');
        if (colon == std::string::npos || colon == 0) {
          throw bad("expected 'HOST:PORT' or 'RANK HOST PORT', got '" + t + "'");
        }
        host = t.substr(0, colon);
        port_text = t.substr(colon + 1);
      }
      if (!parse_uint(port_text, 65535, port) || port == 0) {
        throw bad("bad port '" + port_text + "'");
      }
      f.nodes.push_back({host, static_cast<u16>(port)});
      have.push_back(true);
    } else if (tok.size() == 3) {
      if (style == 1) throw bad("mixes 'RANK HOST PORT' with 'HOST:PORT' lines");
      style = 2;
      unsigned long rank = 0;
      if (!parse_uint(tok[0], kMaxNodes - 1, rank)) {
        throw bad("bad rank '" + tok[0] + "' (0.." + std::to_string(kMaxNodes - 1) + ")");
      }
      if (!parse_uint(tok[2], 65535, port) || port == 0) throw bad("bad port '" + tok[2] + "'");
      if (rank >= f.nodes.size()) {
        f.nodes.resize(rank + 1);
        have.resize(rank + 1, false);
      }
      if (have[rank]) throw bad("rank " + std::to_string(rank) + " listed twice");
      f.nodes[rank] = {tok[1], static_cast<u16>(port)};
      have[rank] = true;
    } else {
      throw bad("expected 'HOST:PORT' or 'RANK HOST PORT'");
    }
  }
  if (f.nodes.empty()) throw ClusterError(origin + ": lists no nodes");
  if (f.nodes.size() > kMaxNodes) {
    throw ClusterError(origin + ": lists " + std::to_string(f.nodes.size()) + " nodes; at most " +
                       std::to_string(kMaxNodes) + " are supported");
  }
  for (std::size_t r = 0; r < have.size(); ++r) {
    if (!have[r]) throw ClusterError(origin + ": rank " + std::to_string(r) + " is missing");
  }
  return f;
}

ClusterFile ClusterFile::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ClusterError("cannot read cluster file " + path + ": " + errno_text(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

LaunchRank resolve_launch_rank(std::optional<unsigned> command_line_rank) {
  LaunchRank lr;
  struct Source {
    const char* rank;
    const char* size;
  };
  static constexpr Source kSources[] = {{"SLURM_PROCID", "SLURM_NTASKS"},
                                        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                        {"PMI_RANK", "PMI_SIZE"},
                                        {"PMIX_RANK", nullptr}};
  auto number = [](const char* name, const char* v, unsigned long max) {
    unsigned long out = 0;
    if (!parse_uint(v, max, out)) {
      throw ClusterError(std::string("environment variable ") + name + "='" + v +
                         "' is not a valid number");
    }
    return static_cast<unsigned>(out);
  };
  if (command_line_rank) {
    if (*command_line_rank >= kMaxNodes) {
      throw ClusterError("--rank " + std::to_string(*command_line_rank) + " is out of range (0.." +
                         std::to_string(kMaxNodes - 1) + ")");
    }
    lr.rank = static_cast<NodeId>(*command_line_rank);
    lr.source = "--rank";
    return lr;
  }
  for (const Source& s : kSources) {
    const char* v = std::getenv(s.rank);
    if (!v) continue;
    lr.rank = static_cast<NodeId>(number(s.rank, v, kMaxNodes - 1));
    lr.source = s.rank;
    if (s.size) {
      if (const char* n = std::getenv(s.size)) lr.size = number(s.size, n, kMaxNodes);
    }
    return lr;
  }
  throw ClusterError(
      "no rank for this node: pass --rank, or start it under Slurm (SLURM_PROCID) or an MPI "
      "launcher (OMPI_COMM_WORLD_RANK, PMI_RANK, PMIX_RANK)");
}

// ---- TcpBootstrap ----

TcpBootstrap::TcpBootstrap(ClusterFile file, NodeId rank, BootstrapOptions options)
    : file_(std::move(file)), rank_(rank), options_(with_defaults(std::move(options))) {
  check_size(static_cast<unsigned>(file_.nodes.size()));
  if (rank >= file_.nodes.size()) {
    throw ClusterError("rank " + std::to_string(rank) + " is not in the cluster file (" +
                       std::to_string(file_.nodes.size()) + " nodes)");
  }
}

std::string TcpBootstrap::where() const {
  const ClusterNode& n = file_.nodes[0];
  bool v6 = n.host.find(':') != std::string::npos;
  return "TCP " + (v6 ? "[" + n.host + "]" : n.host) + ":" + std::to_string(n.port);
}

PeerTable TcpBootstrap::exchange(std::span<const u8> address) {
  const unsigned n = size();
  Join ours = make_join(options_.join, rank_, n, address);
  if (n == 1) return single_node_table(ours);
  const ClusterNode& r0 = file_.nodes[0];
  if (rank_ == 0) {
    // Listen on every interface: the file's host is how the others reach us, which need
    // not be an address we can bind (NAT, DNS aliases).
    Fd l = make_socket(AF_INET6);
    bool v6 = static_cast<bool>(l);
    if (v6) {
      int off = 0;
      setsockopt(l.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    } else {
      l = make_socket(AF_INET);
    }
    int one = 1;
    setsockopt(l.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
      sockaddr_in6 sa{};
      sa.sin6_family = AF_INET6;
      sa.sin6_addr = in6addr_any;
      sa.sin6_port = htons(r0.port);
      rc = ::bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    } else {
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_ANY);
      sa.sin_port = htons(r0.port);
      rc = ::bind(l.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    }
    if (rc != 0 || ::listen(l.get(), 128) != 0) {
      throw ClusterError("bootstrap: cannot listen on TCP port " + std::to_string(r0.port) + ": " +
                         errno_text(errno));
    }
    return run_server(std::move(l), ours, options_, where());
  }
  auto connect_once = [&](int& err) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int gai = getaddrinfo(r0.host.c_str(), std::to_string(r0.port).c_str(), &hints, &res);
    if (gai != 0) {
      err = EHOSTUNREACH;
      return Fd();
    }
    Fd out;
    for (addrinfo* ai = res; ai && !out; ai = ai->ai_next) {
      Fd fd = make_socket(ai->ai_family);
      if (!fd) continue;
      if (connect_fd(fd.get(), ai->ai_addr, ai->ai_addrlen, err)) {
        int one = 1;
        setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        out = std::move(fd);
      }
    }
    freeaddrinfo(res);
    return out;
  };
  return run_client(connect_once, ours, options_, where());
}

// ---- InProcessBootstrap ----

class InProcessBootstrap::Rendezvous {
 public:
  explicit Rendezvous(unsigned size) : size_(size), joins_(size) {}
  unsigned size() const { return size_; }

  PeerTable exchange(Join j, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    const NodeId rank = static_cast<NodeId>(j.rank);
    joins_[rank] = std::move(j);
    ++arrived_;
    if (arrived_ == size_) decide();
    cv_.notify_all();
    if (!cv_.wait_for(lock, timeout, [&] { return done_; })) {
      std::vector<unsigned> missing;
      for (unsigned r = 0; r < size_; ++r) {
        if (!joins_[r]) missing.push_back(r);
      }
      error_ = "bootstrap timed out after " + seconds_text(timeout) + ": node" +
               (missing.size() > 1 ? "s " : " ") + rank_list(missing) + " of " +
               std::to_string(size_) + " never joined (in-process)";
      done_ = true;
      cv_.notify_all();
    }
    if (!error_.empty()) throw ClusterError(error_);
    return table_;
  }

 private:
  void decide() {
    const Join& ours = *joins_[0];
    std::vector<bool> taken(size_, false);
    std::vector<std::string> hosts(size_);
    taken[0] = true;
    hosts[0] = ours.host;
    for (unsigned r = 1; r < size_; ++r) {
      std::string why = refusal(ours, *joins_[r], taken, hosts);
      if (!why.empty()) {
        error_ = "refused node " + std::to_string(r) + ": " + why;
        done_ = true;
        return;
      }
      taken[r] = true;
      hosts[r] = joins_[r]->host;
    }
    table_ = single_node_table(ours);
    for (unsigned r = 1; r < size_; ++r) {
      table_.addresses.push_back(joins_[r]->address);
      table_.node_infos.push_back(joins_[r]->node_info);
      table_.hosts.push_back(joins_[r]->host + " thread " + std::to_string(r));
    }
    done_ = true;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  unsigned size_;
  unsigned arrived_ = 0;
  std::vector<std::optional<Join>> joins_;
  bool done_ = false;
  std::string error_;
  PeerTable table_;
};

std::shared_ptr<InProcessBootstrap::Rendezvous> InProcessBootstrap::make_rendezvous(unsigned size) {
  check_size(size);
  return std::make_shared<Rendezvous>(size);
}

InProcessBootstrap::InProcessBootstrap(std::shared_ptr<Rendezvous> rendezvous, NodeId rank,
                                       BootstrapOptions options)
    : rendezvous_(std::move(rendezvous)), rank_(rank), options_(with_defaults(std::move(options))) {
  if (rank >= rendezvous_->size()) {
    throw ClusterError("rank " + std::to_string(rank) + " is out of range for " +
                       std::to_string(rendezvous_->size()) + " nodes");
  }
}

unsigned InProcessBootstrap::size() const {
  return rendezvous_->size();
}

PeerTable InProcessBootstrap::exchange(std::span<const u8> address) {
  return rendezvous_->exchange(make_join(options_.join, rank_, size(), address), options_.timeout);
}

}  // namespace dvmm::cluster
