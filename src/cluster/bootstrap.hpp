// Bootstrap of a cluster: before the transport can connect, every node needs every other
// node's transport address (a UCX worker address). Rank 0 runs a small rendezvous server;
// every other rank connects, sends a join (protocol version, dvmm version, machine
// description hash, its own opaque node info and its address), and rank 0 answers with
// the full table once all N have joined (or with a refusal). Two flavours:
//   - LocalBootstrap: one host (`dvmm run --nodes N`), a UNIX socket in a directory;
//   - TcpBootstrap: several hosts, rank 0 listens on the TCP host:port of a cluster file
//     (ClusterFile), the rank coming from the command line or the launcher
//     (resolve_launch_rank: Slurm, Open MPI, PMI).
// A node with a different protocol, dvmm version, node count or description hash is
// refused: it fails with a message saying what differs, and rank 0 fails too (naming the
// node) after telling the nodes that already joined. A node that never joins makes rank 0
// fail at the timeout with a message naming the missing ranks; the others get the same
// message from rank 0.
//
// Also: InProcessBootstrap, the same exchange between threads of one process (tests).
//
// Threads: a Bootstrap object is used by one thread; exchange() blocks and is called once.
// The free functions are thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cluster/transport.hpp"

namespace dvmm::cluster {

// Version of the bootstrap and transport wire formats; a join with another is refused.
inline constexpr u32 kWireProtocolVersion = 1;

// What a node brings to the join.
struct JoinInfo {
  // dvmm's version string (the CLI's DVMM_VERSION); all nodes must agree.
  std::string version;
  // The machine description the caller built (opaque here); all nodes must agree. Only
  // its hash travels.
  std::vector<u8> description;
  // Hash of `description`; 0 means "compute it" (description_hash()).
  u64 description_hash = 0;
  // This node's own opaque bytes (e.g. its vCPUs and memory), handed to every node in
  // the table (PeerTable::node_infos), in rank order.
  std::vector<u8> node_info;
};

// 64-bit FNV-1a: stable across builds and hosts (std::hash is not).
u64 description_hash(std::span<const u8> bytes);

// The result of a successful bootstrap; identical on every node.
struct PeerTable {
  u64 session = 0;                         // random per cluster start; tags every transport message
  std::vector<std::vector<u8>> addresses;  // per rank: transport address
  std::vector<std::vector<u8>> node_infos;  // per rank: JoinInfo::node_info
  std::vector<std::string> hosts;           // per rank: "hostname pid N", for messages
};

struct BootstrapOptions {
  JoinInfo join;
  // Rank 0 waits this long for all nodes; the others this long plus a grace period for
  // rank 0's own verdict (so theirs names the missing node too).
  std::chrono::milliseconds timeout{30000};
  // Progress and refusals; default: stderr.
  std::function<void(const std::string&)> log;
};

class Bootstrap {
 public:
  virtual ~Bootstrap() = default;
  virtual NodeId rank() const = 0;
  virtual unsigned size() const = 0;
  // Blocks until every node joined; throws ClusterError (naming the nodes that never
  // joined or were refused) on timeout or refusal.
  virtual PeerTable exchange(std::span<const u8> address) = 0;
  // Where the rendezvous is, for messages ("UNIX socket /run/x/rank0.sock").
  virtual std::string where() const = 0;
};

// One host: rank 0 listens on `dir`/rank0.sock (the directory is created if missing;
// its path must fit a UNIX socket address, about 100 bytes).
class LocalBootstrap final : public Bootstrap {
 public:
  LocalBootstrap(std::string dir, NodeId rank, unsigned size, BootstrapOptions options);
  NodeId rank() const override { return rank_; }
  unsigned size() const override { return size_; }
  PeerTable exchange(std::span<const u8> address) override;
  std::string where() const override;

 private:
  std::string dir_;
  NodeId rank_;
  unsigned size_;
  BootstrapOptions options_;
};

// The cluster file: one node per line in rank order, either `HOST:PORT` ([v6]:PORT for
// IPv6) or `RANK HOST PORT` (every rank 0..N-1 exactly once); '#' starts a comment.
// Only rank 0's host and port are used (for the bootstrap server); the other lines give
// N and name the nodes in messages.
struct ClusterNode {
  std::string host;
  u16 port = 0;
};
struct ClusterFile {
  std::vector<ClusterNode> nodes;  // index = rank
  // `origin` names the text in errors (a path).
  static ClusterFile parse(const std::string& text, const std::string& origin);
  static ClusterFile load(const std::string& path);
};

// Where this process's rank (and the launcher's idea of N) came from.
struct LaunchRank {
  NodeId rank = 0;
  std::optional<unsigned> size;  // from the launcher, when it says
  std::string source;            // "--rank", "SLURM_PROCID", ...
};
// The command line wins; then SLURM_PROCID/SLURM_NTASKS, OMPI_COMM_WORLD_RANK/SIZE,
// PMI_RANK/PMI_SIZE, PMIX_RANK. Throws ClusterError when none is set or one is garbage.
LaunchRank resolve_launch_rank(std::optional<unsigned> command_line_rank);

// Several hosts: rank 0 listens on TCP (all interfaces, the port of its line); the
// others connect to its host:port. Throws ClusterError if rank >= the file's node count.
class TcpBootstrap final : public Bootstrap {
 public:
  TcpBootstrap(ClusterFile file, NodeId rank, BootstrapOptions options);
  NodeId rank() const override { return rank_; }
  unsigned size() const override { return static_cast<unsigned>(file_.nodes.size()); }
  PeerTable exchange(std::span<const u8> address) override;
  std::string where() const override;

 private:
  ClusterFile file_;
  NodeId rank_;
  BootstrapOptions options_;
};

// N bootstraps in one process that meet in memory (tests with several transports in one
// process). Applies the same join checks as the socket bootstraps.
class InProcessBootstrap final : public Bootstrap {
 public:
  class Rendezvous;
  // Creates the shared meeting point for `size` nodes.
  static std::shared_ptr<Rendezvous> make_rendezvous(unsigned size);
  InProcessBootstrap(std::shared_ptr<Rendezvous> rendezvous, NodeId rank, BootstrapOptions options);
  NodeId rank() const override { return rank_; }
  unsigned size() const override;
  PeerTable exchange(std::span<const u8> address) override;
  std::string where() const override { return "in-process rendezvous"; }

 private:
  std::shared_ptr<Rendezvous> rendezvous_;
  NodeId rank_;
  BootstrapOptions options_;
};

}  // namespace dvmm::cluster
