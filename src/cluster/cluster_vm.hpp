// One node of a distributed VM (issue 4): the Vm of this node process, joined to the others
// through the bootstrap and the UCX transport, with its guest RAM kept coherent by the DSM
// and its cross-node hart and device traffic carried by ClusterLinks.
//
// Every node builds the same Machine from the MachineDescription (all harts, all RAM, all
// devices exist everywhere); rank r runs harts [r*K, (r+1)*K) and is the home of RAM slice
// r; rank 0 holds the devices, loads the boot images into its slice and boots hart 0. The
// other nodes' harts wait (HSM stopped) until the guest starts them over the network.
//
// Lifecycle, on Channel::kControl (wire: u8 type, then per type, little endian):
//   Start{u64 epoch_ns}   rank 0 -> all, after it loaded the boot images: guest time counts
//                         from that instant of rank 0's CLOCK_MONOTONIC; the nodes may run.
//   SetControls{u64 req, u32 vcpu, controls} / ControlsApplied{u64 req, u8 ok}
//                         execution controls changed through rank 0's control socket,
//                         applied by every node to its vCPUs and acknowledged.
//   TraceEvent{str json}  a node's trace event, forwarded to rank 0's trace stream.
//   StatsRequest{u64 req} / StatsReply{u64 req, str json}
//                         rank 0 asks every node for its vCPUs' counters (`dvmm stats`);
//                         the node answers with what its stats provider returns.
//   ClockPing{u64 t_sent} / ClockPong{u64 t_sent, u64 t_rank0}
//                         a node on another host than rank 0 measures the offset between
//                         the two clocks at join (Cristian: the sample with the shortest
//                         round trip of 16), and converts the epoch; on one host the clock
//                         is shared and no offset is applied. The epoch is set once, before
//                         any local hart runs, so guest time never goes backwards.
//   End{u8 kind, u32 status, str message}
//                         rank 0 -> all: the VM is over (everyone leaves);
//                         rank r -> 0: this node's Vm ended on its own (a hart here powered
//                         off through the SBI, or an internal error); rank 0 decides.
// A node process that fails (transport heartbeat, or the launcher sees it exit) ends the VM
// on every other node with an error naming it. A malformed control message is logged and
// dropped.
//
// Benchmarks: with DVMM_STATS_DIR set, each node writes DIR/node<R>.json (ClusterStats)
// when its run() ends.
//
// Threads: the constructor, boot(), run() and the destructor on the owner's thread;
// request_stop(), push_console_input() and node_failed() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cluster/bootstrap.hpp"
#include "cluster/machine_description.hpp"
#include "cluster/ucx_transport.hpp"
#include "dsm/dsm_node.hpp"
#include "vmm/vm.hpp"

namespace dvmm::dsm {
class GuestRamPages;
}

namespace dvmm::cluster {

class ClusterLinks;
class DsmAdapter;

struct ClusterVmOptions {
  // Identical on every node (the join refuses a node whose description differs).
  MachineDescription description;
  // Rank 0 only: what it boots (kernel_path, initrd_paths, initrd_appendix, bootargs).
  machine::MachineConfig boot;
  // The Vm's options (log, verbose, console_output, timeout on rank 0, run_budget); links,
  // boot_node and reboot_allowed are set here.
  vmm::VmOptions vm;
  UcxOptions ucx;
  dsm::DsmOptions dsm;
  // How long a node waits for rank 0's verdict after its own Vm ended.
  std::chrono::milliseconds leave_timeout{5000};
};

// A snapshot for logs and benchmarks.
struct ClusterStats {
  dsm::DsmCounters dsm;
  UcxCounters transport;
  u64 rejected_links = 0;  // malformed kCpu / kMmio messages
  u64 rejected_control = 0;
  LatencySummary ipi;    // ClusterLinks::ipi_latency
  LatencySummary fence;  // ClusterLinks::fence_latency
  LatencySummary mmio;   // ClusterLinks::mmio_latency
  std::string to_json(NodeId rank) const;
};

class ClusterVm {
 public:
  // The bootstrap options every node must use for this description: the join carries the
  // dvmm version and the description's hash (so a node with another version or machine is
  // refused) and this node's resources (vCPUs, memory).
  static BootstrapOptions bootstrap_options(const MachineDescription& description,
                                            const std::string& dvmm_version,
                                            std::function<void(const std::string&)> log,
                                            std::chrono::milliseconds timeout);

  // Joins the cluster (blocks until every node joined) and builds this node's Vm, DSM and
  // links. Throws ClusterError (bootstrap, transport, a node that brings other resources)
  // or machine::MachineError (a bad configuration).
  ClusterVm(Bootstrap& bootstrap, ClusterVmOptions options);
  ~ClusterVm();
  ClusterVm(const ClusterVm&) = delete;
  ClusterVm& operator=(const ClusterVm&) = delete;

  NodeId rank() const { return rank_; }
  unsigned node_count() const { return options_.description.nodes; }
  // Rank 0: loads the boot images now (throws machine::MachineError). Others: nothing.
  void boot();
  // Runs this node's part of the VM until the VM ends on every node. Rank 0's result is
  // the VM's; another node's says how it saw the end.
  vmm::VmResult run();

  void request_stop(std::string reason);
  // This node's Vm (for the control endpoint on rank 0).
  vmm::Vm& vm() { return *vm_; }
  // Applies controls on every other node's vCPUs (or on vCPU `vcpu`'s node) and waits
  // until each node's vCPUs applied them. False on a failure or timeout.
  bool set_remote_controls(const vmm::VmControls& controls, std::optional<HartId> vcpu,
                           std::chrono::milliseconds wait);
  // What this node answers to a StatsRequest (a JSON text; set before run()).
  void set_stats_provider(std::function<std::string()> provider);
  // Rank 0: every other node's stats (in rank order), or nullopt if one did not answer in
  // `wait`.
  std::optional<std::vector<std::string>> remote_stats(std::chrono::milliseconds wait);
  // Rank 0 (the console's node).
  void push_console_input(std::span<const u8> bytes);
  // The launcher saw node `node`'s process end while the VM ran.
  void node_failed(NodeId node, const std::string& why);

  ClusterStats stats() const;
  std::string describe_node(NodeId node) const;

 private:
  void on_control(NodeId from, std::span<const u8> bytes);
  // Rank 0's clock minus ours, measured over the network (other host than rank 0).
  i64 measure_clock_offset();
  void on_peer_failure(NodeId node, const std::string& reason);
  void broadcast_end(const vmm::VmResult& result);
  void send_end(NodeId to, const vmm::VmResult& result);
  void leave();
  void log(const std::string& line) const;

  ClusterVmOptions options_;
  NodeId rank_ = 0;
  std::unique_ptr<UcxTransport> transport_;
  std::unique_ptr<ClusterLinks> links_;
  std::unique_ptr<vmm::Vm> vm_;
  std::unique_ptr<dsm::GuestRamPages> pages_;
  std::unique_ptr<DsmAdapter> dsm_transport_;
  std::unique_ptr<dsm::DsmNode> dsm_;
  bool booted_ = false;
  bool left_ = false;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<u64> start_epoch_;          // from rank 0's Start
  i64 clock_offset_ns_ = 0;                 // rank 0's CLOCK_MONOTONIC minus ours
  std::vector<std::pair<u64, u64>> pongs_;  // clock pongs: (t_sent, t_rank0)
  std::optional<vmm::VmResult> verdict_;    // from rank 0's End (other ranks)
  std::optional<std::string> failure_;      // a failed node, before run() started
  std::atomic<bool> ending_{false};         // the VM is over: peer goodbyes are expected
  std::atomic<u64> rejected_control_{0};
  u64 next_controls_req_ = 1;                                // under mutex_
  std::map<u64, std::optional<bool>> controls_acks_;         // under mutex_
  std::map<u64, std::optional<std::string>> stats_replies_;  // under mutex_
  std::function<std::string()> stats_provider_;
};

}  // namespace dvmm::cluster
