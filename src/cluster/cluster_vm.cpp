#include "cluster/cluster_vm.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "base/clock.hpp"
#include "cluster/dsm_adapter.hpp"
#include "cluster/node_links.hpp"
#include "cluster/wire_codec.hpp"
#include "dsm/local_pages.hpp"

namespace dvmm::cluster {

namespace {

enum ControlMsg : u8 {
  kStart = 1,
  kEnd = 2,
  kClockPing = 3,
  kClockPong = 4,
  kSetControls = 5,      // {u64 req, u32 vcpu (~0: all), controls}
  kControlsApplied = 6,  // {u64 req, u8 ok}
  kTraceEvent = 7,       // {str json}: a node's trace event, for rank 0's stream
  kStatsRequest = 8,     // {u64 req}
  kStatsReply = 9,       // {u64 req, str json}
};

constexpr u32 kAllVcpus = ~u32{0};

void encode_controls(WireWriter& w, const vmm::VmControls& c) {
  w.u64v(c.exec.exception_bitmap);
  w.u64v(c.exec.page_fault_filter_lo);
  w.u64v(c.exec.page_fault_filter_hi);
  for (const auto* bits : {&c.exec.csr_read_intercept, &c.exec.csr_write_intercept}) {
    std::vector<u8> packed(bits->size() / 8, 0);
    for (std::size_t i = 0; i < bits->size(); ++i) {
      if (bits->test(i)) packed[i / 8] |= static_cast<u8>(1u << (i % 8));
    }
    w.bytes(packed);
  }
  w.u8v(c.exec.wfi_exiting ? 1 : 0);
  w.u8v(c.exec.single_step ? 1 : 0);
  w.u32v(static_cast<u32>(c.exec.breakpoints.size()));
  for (u64 bp : c.exec.breakpoints) w.u64v(bp);
  w.u8v(static_cast<u8>(c.action));
  w.u64v(c.halt_poll_ns);
  for (const auto* names : {&c.sbi_trace, &c.mmio_trace}) {
    w.u32v(static_cast<u32>(names->size()));
    for (const std::string& n : *names) w.str(n);
  }
}

bool decode_controls(WireReader& r, vmm::VmControls& c) {
  if (!r.u64v(c.exec.exception_bitmap) || !r.u64v(c.exec.page_fault_filter_lo) ||
      !r.u64v(c.exec.page_fault_filter_hi)) {
    return false;
  }
  for (auto* bits : {&c.exec.csr_read_intercept, &c.exec.csr_write_intercept}) {
    std::vector<u8> packed;
    if (!r.bytes(packed) || packed.size() != bits->size() / 8) return false;
    bits->reset();
    for (std::size_t i = 0; i < bits->size(); ++i) {
      if (packed[i / 8] >> (i % 8) & 1) bits->set(i);
    }
  }
  u8 wfi = 0, step = 0, action = 0;
  u32 n = 0;
  if (!r.u8v(wfi) || !r.u8v(step) || !r.u32v(n) || n > 1024) return false;
  c.exec.wfi_exiting = wfi != 0;
  c.exec.single_step = step != 0;
  c.exec.breakpoints.resize(n);
  for (u64& bp : c.exec.breakpoints) {
    if (!r.u64v(bp)) return false;
  }
  if (!r.u8v(action) || action > static_cast<u8>(vmm::ExitAction::kDeliver) ||
      !r.u64v(c.halt_poll_ns)) {
    return false;
  }
  c.action = static_cast<vmm::ExitAction>(action);
  for (auto* names : {&c.sbi_trace, &c.mmio_trace}) {
    if (!r.u32v(n) || n > 64) return false;
    names->clear();
    for (u32 i = 0; i < n; ++i) {
      std::string name;
      if (!r.str(name)) return false;
      names->insert(name);
    }
  }
  return true;
}

// "host pid N" -> "host"
std::string host_of(const std::string& where) {
  return where.substr(0, where.find(" pid "));
}

std::vector<u8> encode_node_info(u32 vcpus, u64 memory) {
  WireWriter w;
  w.u32v(vcpus);
  w.u64v(memory);
  return w.take();
}

std::string mib(u64 bytes) {
  return fmt::format("{} MiB", bytes >> 20);
}

std::string latency_json(const LatencySummary& l) {
  return fmt::format(
      R"({{"count": {}, "mean_ns": {}, "p50_ns": {}, "p90_ns": {}, "p99_ns": {}, "max_ns": {}}})",
      l.count, l.mean_ns, l.p50_ns, l.p90_ns, l.p99_ns, l.max_ns);
}

}  // namespace

BootstrapOptions ClusterVm::bootstrap_options(const MachineDescription& description,
                                              const std::string& dvmm_version,
                                              std::function<void(const std::string&)> log,
                                              std::chrono::milliseconds timeout) {
  BootstrapOptions o;
  o.join.version = dvmm_version;
  // What every node must agree on, checked by hash at the join: the shape of the machine
  // (not rank 0's command line, nor the clock, which rank 0 sends later). Each node's
  // resources travel in full (node_info) and are compared after the join, so that a
  // refusal can say what differs.
  MachineDescription shape = description;
  shape.bootargs.clear();
  shape.time_epoch_ns = 0;
  shape.vcpus_per_node = 1;
  shape.memory_per_node = kPageSize;
  o.join.description = shape.encode();
  o.join.node_info = encode_node_info(description.vcpus_per_node, description.memory_per_node);
  o.timeout = timeout;
  o.log = std::move(log);
  return o;
}

ClusterVm::ClusterVm(Bootstrap& bootstrap, ClusterVmOptions options)
    : options_(std::move(options)), rank_(bootstrap.rank()) {
  const MachineDescription& d = options_.description;
  if (bootstrap.size() != d.nodes) {
    throw ClusterError(fmt::format("the cluster has {} nodes, the machine description {}",
                                   bootstrap.size(), d.nodes));
  }
  if (!options_.ucx.log) {
    // Peers saying goodbye while the VM winds down is the normal end, not news.
    options_.ucx.log = [this](const std::string& l) {
      if (!ending_.load() || options_.vm.verbose) log(l);
    };
  }
  transport_ = UcxTransport::create(bootstrap, options_.ucx);

  // Resource sensing: every node said what it brings; they must make up the description.
  const PeerTable& peers = transport_->peers();
  {
    WireReader rd(peers.node_infos.at(0));
    u32 vcpus = 0;
    u64 memory = 0;
    if (!rd.u32v(vcpus) || !rd.u64v(memory) || !rd.at_end()) {
      throw ClusterError("node 0 sent a malformed resource report");
    }
    if (vcpus != d.vcpus_per_node || memory != d.memory_per_node) {
      ending_ = true;  // the peers' goodbyes are no news now
      throw ClusterError(fmt::format(
          "refused by node 0 ({}): this node brings {} vCPUs and {} (--vcpus-per-node, "
          "--memory-per-node), node 0 {} vCPUs and {}; start every node with the same sizes",
          peers.hosts.at(0), d.vcpus_per_node, mib(d.memory_per_node), vcpus, mib(memory)));
    }
  }
  for (NodeId r = 0; r < d.nodes; ++r) {
    WireReader rd(peers.node_infos.at(r));
    u32 vcpus = 0;
    u64 memory = 0;
    if (!rd.u32v(vcpus) || !rd.u64v(memory) || !rd.at_end()) {
      throw ClusterError(
          fmt::format("node {} ({}) sent a malformed resource report", r, peers.hosts.at(r)));
    }
    if (vcpus != d.vcpus_per_node || memory != d.memory_per_node) {
      // Node 0's sizes are the machine's (each node reads the same table).
      ending_ = true;
      throw ClusterError(fmt::format(
          "refused node {} ({}): it brings {} vCPUs and {} (--vcpus-per-node, "
          "--memory-per-node), node 0 {} vCPUs and {}; start every node with the same sizes",
          r, peers.hosts.at(r), vcpus, mib(memory), d.vcpus_per_node, mib(d.memory_per_node)));
    }
  }

  links_ = std::make_unique<ClusterLinks>(*transport_, d.vcpus_per_node, NodeId{0},
                                          [this](const std::string& l) { log(l); });
  machine::MachineConfig config = d.machine_config();
  if (rank_ == 0) {
    config.kernel_path = options_.boot.kernel_path;
    config.initrd_paths = options_.boot.initrd_paths;
    config.initrd_appendix = options_.boot.initrd_appendix;
    config.bootargs = options_.boot.bootargs;
  }
  vmm::VmOptions vo = options_.vm;
  vo.links = links_.get();
  vo.boot_node = rank_ == 0;
  vo.reboot_allowed = false;
  if (rank_ != 0) vo.timeout = std::chrono::milliseconds(0);  // rank 0 decides
  vm_ = std::make_unique<vmm::Vm>(config, vo);
  if (rank_ != 0) {
    // One trace stream per VM: rank 0's (where the control socket is).
    vm_->trace().set_forward([this](const std::string& json) {
      WireWriter w;
      w.u8v(kTraceEvent);
      w.str(json);
      const auto msg = w.take();
      transport_->send(0, Channel::kControl, msg);
    });
  }

  memory::GuestRam& ram = vm_->machine().ram();
  const dsm::HomeMap homes(ram.base(), std::vector<u64>(d.nodes, d.memory_per_node >> kPageShift));
  pages_ = std::make_unique<dsm::GuestRamPages>(
      ram, [this](u64, const dsm::WaitHook& wait) { links_->flush_local_harts(wait); });
  dsm_transport_ = std::make_unique<DsmAdapter>(*transport_);
  if (const char* w = std::getenv("DVMM_DSM_REPLY_POLL_US"); w != nullptr && *w != '\0') {
    dsm_transport_->set_expect_reply_window(
        std::chrono::microseconds(std::strtoul(w, nullptr, 10)));
  }
  dsm::DsmOptions dsm_options = options_.dsm;
  // Tuning knob for benchmarks (docs/DSM.md): how long a faulting vCPU spins for its grant.
  if (const char* spin = std::getenv("DVMM_DSM_SPIN_US"); spin != nullptr && *spin != '\0') {
    dsm_options.spin = std::chrono::microseconds(std::strtoul(spin, nullptr, 10));
  }
  if (!dsm_options.log) dsm_options.log = [this](const std::string& l) { log("dsm: " + l); };
  dsm_ = std::make_unique<dsm::DsmNode>(homes, *pages_, *dsm_transport_, dsm_options);
  links_->set_dsm(dsm_.get());
  links_->attach(*vm_);
  dsm_->start();
  // A node that does not boot resets its harts (all stopped) now, before a hart_start
  // from another node can arrive.
  if (rank_ != 0) vm_->boot();

  transport_->set_receiver(Channel::kControl,
                           [this](NodeId from, std::span<const u8> b) { on_control(from, b); });
  transport_->on_peer_failure(
      [this](NodeId node, const std::string& reason) { on_peer_failure(node, reason); });
  transport_->start_delivery();
  if (rank_ != 0 && host_of(peers.hosts.at(rank_)) != host_of(peers.hosts.at(0))) {
    clock_offset_ns_ = measure_clock_offset();
    log(fmt::format("clock offset to node 0 ({}): {:+.3f} ms", host_of(peers.hosts.at(0)),
                    static_cast<double>(clock_offset_ns_) / 1e6));
  }
}

i64 ClusterVm::measure_clock_offset() {
  constexpr int kSamples = 16;
  i64 best_offset = 0;
  u64 best_rtt = ~u64{0};
  for (int i = 0; i < kSamples; ++i) {
    WireWriter w;
    w.u8v(kClockPing);
    const u64 sent = monotonic_ns();
    w.u64v(sent);
    const auto msg = w.take();
    if (!transport_->send(0, Channel::kControl, msg)) break;
    std::unique_lock lock(mutex_);
    const bool got = cv_.wait_for(lock, std::chrono::seconds(1), [&] {
      for (const auto& p : pongs_) {
        if (p.first == sent) return true;
      }
      return failure_.has_value();
    });
    if (!got || failure_) break;
    const u64 received = monotonic_ns();
    for (const auto& [t_sent, t_rank0] : pongs_) {
      if (t_sent != sent) continue;
      const u64 rtt = received - sent;
      if (rtt < best_rtt) {
        best_rtt = rtt;
        best_offset = static_cast<i64>(t_rank0) - static_cast<i64>(sent + rtt / 2);
      }
    }
    pongs_.clear();
  }
  if (best_rtt == ~u64{0}) {
    throw ClusterError("node 0 did not answer the clock measurement");
  }
  return best_offset;
}

ClusterVm::~ClusterVm() {
  try {
    leave();
  } catch (const std::exception& e) {
    log(std::string("leaving the cluster: ") + e.what());
  }
}

void ClusterVm::log(const std::string& line) const {
  if (options_.vm.log) options_.vm.log(line);
}

std::string ClusterVm::describe_node(NodeId node) const {
  const PeerTable& peers = transport_->peers();
  if (node < peers.hosts.size()) return fmt::format("node {} ({})", node, peers.hosts[node]);
  return fmt::format("node {}", node);
}

void ClusterVm::boot() {
  if (rank_ == 0) vm_->boot();
  booted_ = true;
}

vmm::VmResult ClusterVm::run() {
  vmm::VmResult result;
  if (rank_ == 0) {
    try {
      if (!booted_) boot();
    } catch (const std::exception& e) {
      result.kind = vmm::VmResult::Kind::kError;
      result.message = e.what();
      ending_ = true;
      broadcast_end(result);
      leave();
      return result;
    }
    WireWriter w;
    w.u8v(kStart);
    w.u64v(vm_->machine().time_epoch_ns());
    const auto msg = w.take();
    for (NodeId r = 1; r < node_count(); ++r) transport_->send(r, Channel::kControl, msg);
    result = vm_->run();
    ending_ = true;
    broadcast_end(result);
  } else {
    std::optional<u64> epoch;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return start_epoch_ || verdict_ || failure_; });
      if (!verdict_ && !failure_) epoch = start_epoch_;
    }
    if (epoch) {
      // Rank 0's instant in our clock (the offset is 0 on one host).
      vm_->machine().set_time_epoch(static_cast<u64>(static_cast<i64>(*epoch) - clock_offset_ns_));
      result = vm_->run();
    }
    std::unique_lock lock(mutex_);
    if (!verdict_ && !failure_) {
      // This node ended on its own: rank 0 decides for the VM; wait for its verdict.
      lock.unlock();
      send_end(0, result);
      lock.lock();
      cv_.wait_for(lock, options_.leave_timeout, [&] { return verdict_ || failure_; });
    }
    if (verdict_) {
      result = *verdict_;
    } else if (failure_) {
      result.kind = vmm::VmResult::Kind::kError;
      result.message = *failure_;
    } else {
      result.kind = vmm::VmResult::Kind::kError;
      result.message = "node 0 did not answer when this node's VM ended";
    }
    ending_ = true;
  }
  if (options_.vm.verbose) {
    const ClusterStats s = stats();
    log(fmt::format(
        "node {}: dsm faults r/w/x {}/{}/{}, pages in {} out {}, invalidations in {} out {}, "
        "transactions {} ({} bounced), messages in {} out {}; rejected {}",
        rank_, s.dsm.faults_read, s.dsm.faults_write, s.dsm.faults_execute, s.dsm.pages_received,
        s.dsm.pages_sent, s.dsm.invalidations_received, s.dsm.invalidations_sent,
        s.dsm.transactions, s.dsm.bounces, s.transport.messages_received, s.transport.messages_sent,
        s.dsm.rejected + s.rejected_links + s.rejected_control));
    for (const dsm::PageBounce& b : dsm_->top_bounced(3)) {
      if (b.count == 0) break;
      log(fmt::format("node {}: page {:#x} bounced {} times", rank_,
                      vm_->machine().ram().base() + (b.page << kPageShift), b.count));
    }
  }
  if (const char* dir = std::getenv("DVMM_STATS_DIR"); dir != nullptr && *dir != '\0') {
    const std::string path = fmt::format("{}/node{}.json", dir, rank_);
    if (std::FILE* f = std::fopen(path.c_str(), "w")) {
      const std::string json = stats().to_json(rank_);
      std::fwrite(json.data(), 1, json.size(), f);
      std::fclose(f);
    } else {
      log("cannot write " + path);
    }
  }
  leave();
  return result;
}

void ClusterVm::send_end(NodeId to, const vmm::VmResult& result) {
  WireWriter w;
  w.u8v(kEnd);
  w.u8v(static_cast<u8>(result.kind));
  w.u32v(result.status);
  w.str(result.message);
  const auto msg = w.take();
  transport_->send(to, Channel::kControl, msg);
}

void ClusterVm::broadcast_end(const vmm::VmResult& result) {
  for (NodeId r = 1; r < node_count(); ++r) send_end(r, result);
}

void ClusterVm::leave() {
  if (left_) return;
  left_ = true;
  ending_ = true;
  if (links_) links_->detach();
  if (dsm_) dsm_->stop();
  if (transport_) transport_->shutdown();
}

void ClusterVm::request_stop(std::string reason) {
  vm_->request_stop(std::move(reason));
}

bool ClusterVm::set_remote_controls(const vmm::VmControls& controls, std::optional<HartId> vcpu,
                                    std::chrono::milliseconds wait) {
  std::vector<std::pair<NodeId, u64>> reqs;
  for (NodeId r = 0; r < node_count(); ++r) {
    if (r == rank_) continue;
    if (vcpu && links_->node_of(*vcpu) != r) continue;
    u64 req;
    {
      std::lock_guard lock(mutex_);
      req = next_controls_req_++;
      controls_acks_[req] = std::nullopt;
    }
    WireWriter w;
    w.u8v(kSetControls);
    w.u64v(req);
    w.u32v(vcpu ? *vcpu : kAllVcpus);
    encode_controls(w, controls);
    const auto msg = w.take();
    if (!transport_->send(r, Channel::kControl, msg)) return false;
    reqs.emplace_back(r, req);
  }
  std::unique_lock lock(mutex_);
  const bool done = cv_.wait_for(lock, wait, [&] {
    for (const auto& [r, req] : reqs) {
      if (!controls_acks_[req]) return false;
    }
    return true;
  });
  bool ok = done;
  for (const auto& [r, req] : reqs) {
    ok = ok && controls_acks_[req].value_or(false);
    controls_acks_.erase(req);
  }
  return ok;
}

void ClusterVm::set_stats_provider(std::function<std::string()> provider) {
  std::lock_guard lock(mutex_);
  stats_provider_ = std::move(provider);
}

std::optional<std::vector<std::string>> ClusterVm::remote_stats(std::chrono::milliseconds wait) {
  std::vector<u64> reqs;
  for (NodeId r = 0; r < node_count(); ++r) {
    if (r == rank_) continue;
    u64 req;
    {
      std::lock_guard lock(mutex_);
      req = next_controls_req_++;
      stats_replies_[req] = std::nullopt;
    }
    reqs.push_back(req);
    WireWriter w;
    w.u8v(kStatsRequest);
    w.u64v(req);
    const auto msg = w.take();
    if (!transport_->send(r, Channel::kControl, msg)) break;
  }
  std::unique_lock lock(mutex_);
  const bool done = cv_.wait_for(lock, wait, [&] {
    for (u64 req : reqs) {
      if (!stats_replies_[req]) return false;
    }
    return true;
  });
  std::vector<std::string> out;
  for (u64 req : reqs) {
    if (done) out.push_back(std::move(*stats_replies_[req]));
    stats_replies_.erase(req);
  }
  if (!done || out.size() + 1 != node_count()) return std::nullopt;
  return out;
}

void ClusterVm::push_console_input(std::span<const u8> bytes) {
  vm_->push_console_input(bytes);
}

void ClusterVm::node_failed(NodeId node, const std::string& why) {
  on_peer_failure(node, why);
}

std::string ClusterStats::to_json(NodeId rank) const {
  const dsm::DsmCounters& d = dsm;
  return fmt::format(
      "{{\n  \"rank\": {},\n  \"dsm\": {{\"faults_read\": {}, \"faults_write\": {}, "
      "\"faults_execute\": {}, \"pages_sent\": {}, \"pages_received\": {}, "
      "\"invalidations_sent\": {}, \"invalidations_received\": {}, \"transactions\": {}, "
      "\"bounces\": {}, \"rejected\": {},\n    \"fault_remote_home\": {},\n    "
      "\"fault_local_home\": {}}},\n  \"ipi\": {},\n  \"fence\": {},\n  \"mmio\": {},\n  "
      "\"transport\": {{\"messages_sent\": {}, \"messages_received\": {}, \"bytes_sent\": {}, "
      "\"bytes_received\": {}, \"rejected\": {}}},\n  \"rejected_links\": {},\n  "
      "\"rejected_control\": {}\n}}\n",
      rank, d.faults_read, d.faults_write, d.faults_execute, d.pages_sent, d.pages_received,
      d.invalidations_sent, d.invalidations_received, d.transactions, d.bounces, d.rejected,
      latency_json(d.fault_remote_home), latency_json(d.fault_local_home), latency_json(ipi),
      latency_json(fence), latency_json(mmio), transport.messages_sent, transport.messages_received,
      transport.bytes_sent, transport.bytes_received, transport.rejected, rejected_links,
      rejected_control);
}

ClusterStats ClusterVm::stats() const {
  ClusterStats s;
  s.ipi = links_->ipi_latency();
  s.fence = links_->fence_latency();
  s.mmio = links_->mmio_latency();
  s.dsm = dsm_->counters();
  s.transport = transport_->counters();
  s.rejected_links = links_->rejected();
  s.rejected_control = rejected_control_.load(std::memory_order_relaxed);
  return s;
}

void ClusterVm::on_peer_failure(NodeId node, const std::string& reason) {
  if (ending_.load()) return;  // goodbyes while the VM winds down
  const std::string message = describe_node(node) + " failed: " + reason;
  {
    std::lock_guard lock(mutex_);
    if (failure_ || verdict_) return;
    failure_ = message;
  }
  cv_.notify_all();
  vm_->post_error(message);
  links_->fail(message);
}

void ClusterVm::on_control(NodeId from, std::span<const u8> bytes) {
  auto reject = [&](const char* why) {
    rejected_control_.fetch_add(1, std::memory_order_relaxed);
    log(fmt::format("rejected a control message from node {}: {}", from, why));
  };
  WireReader r(bytes);
  u8 type = 0;
  if (!r.u8v(type)) return reject("empty");
  switch (type) {
    case kStart: {
      u64 epoch = 0;
      if (!r.u64v(epoch) || !r.at_end()) return reject("malformed start");
      if (from != 0 || rank_ == 0) return reject("start from a node that does not boot");
      {
        std::lock_guard lock(mutex_);
        if (start_epoch_) return reject("second start");
        start_epoch_ = epoch;
      }
      cv_.notify_all();
      return;
    }
    case kEnd: {
      u8 kind = 0;
      u32 status = 0;
      std::string message;
      if (!r.u8v(kind) || !r.u32v(status) || !r.str(message) || !r.at_end() ||
          kind > static_cast<u8>(vmm::VmResult::Kind::kError)) {
        return reject("malformed end");
      }
      vmm::VmResult result;
      result.kind = static_cast<vmm::VmResult::Kind>(kind);
      result.status = status;
      result.message = std::move(message);
      if (rank_ != 0) {
        if (from != 0) return reject("end from a node other than node 0");
        ending_ = true;
        {
          std::lock_guard lock(mutex_);
          verdict_ = result;
        }
        cv_.notify_all();
        vm_->request_stop("the VM ended on node 0");
        return;
      }
      // Rank 0: another node's Vm ended on its own.
      if (result.kind == vmm::VmResult::Kind::kPowerOff) {
        vm_->post_poweroff(result.status, fmt::format("node {}: {}", from, result.message));
      } else {
        vm_->post_error(fmt::format("{}: {}", describe_node(from), result.message));
      }
      return;
    }
    case kClockPing: {
      u64 sent = 0;
      if (!r.u64v(sent) || !r.at_end() || rank_ != 0) return reject("malformed clock ping");
      WireWriter w;
      w.u8v(kClockPong);
      w.u64v(sent);
      w.u64v(monotonic_ns());
      const auto msg = w.take();
      transport_->send(from, Channel::kControl, msg);
      return;
    }
    case kClockPong: {
      u64 sent = 0, theirs = 0;
      if (!r.u64v(sent) || !r.u64v(theirs) || !r.at_end() || from != 0) {
        return reject("malformed clock pong");
      }
      {
        std::lock_guard lock(mutex_);
        pongs_.emplace_back(sent, theirs);
      }
      cv_.notify_all();
      return;
    }
    case kSetControls: {
      u64 req = 0;
      u32 vcpu = 0;
      vmm::VmControls c;
      if (!r.u64v(req) || !r.u32v(vcpu) || !decode_controls(r, c) || !r.at_end() ||
          (vcpu != kAllVcpus && vcpu >= vm_->machine().hart_count())) {
        return reject("malformed controls");
      }
      // Not on the delivery thread: waiting for our vCPUs to apply them may take a while.
      std::thread([this, req, vcpu, c, from] {
        const auto took =
            vm_->set_controls(c, vcpu == kAllVcpus ? std::nullopt : std::optional<HartId>(vcpu),
                              std::chrono::milliseconds(2000));
        WireWriter w;
        w.u8v(kControlsApplied);
        w.u64v(req);
        w.u8v(took ? 1 : 0);
        const auto msg = w.take();
        transport_->send(from, Channel::kControl, msg);
      }).detach();
      return;
    }
    case kControlsApplied: {
      u64 req = 0;
      u8 ok = 0;
      if (!r.u64v(req) || !r.u8v(ok) || !r.at_end()) return reject("malformed controls ack");
      {
        std::lock_guard lock(mutex_);
        auto it = controls_acks_.find(req);
        if (it == controls_acks_.end()) return;  // the caller gave up
        it->second = ok != 0;
      }
      cv_.notify_all();
      return;
    }
    case kStatsRequest: {
      u64 req = 0;
      if (!r.u64v(req) || !r.at_end() || from != 0) return reject("malformed stats request");
      std::function<std::string()> provider;
      {
        std::lock_guard lock(mutex_);
        provider = stats_provider_;
      }
      WireWriter w;
      w.u8v(kStatsReply);
      w.u64v(req);
      w.str(provider ? provider() : std::string("{}"));
      const auto msg = w.take();
      transport_->send(from, Channel::kControl, msg);
      return;
    }
    case kStatsReply: {
      u64 req = 0;
      std::string json;
      if (!r.u64v(req) || !r.str(json) || !r.at_end() || rank_ != 0) {
        return reject("malformed stats reply");
      }
      {
        std::lock_guard lock(mutex_);
        auto it = stats_replies_.find(req);
        if (it == stats_replies_.end()) return;  // the caller gave up
        it->second = std::move(json);
      }
      cv_.notify_all();
      return;
    }
    case kTraceEvent: {
      std::string json;
      if (!r.str(json) || !r.at_end() || rank_ != 0 || json.size() < 2 || json.front() != '{') {
        return reject("malformed trace event");
      }
      vm_->trace().append(json);
      return;
    }
    default:
      return reject("unknown type");
  }
}

}  // namespace dvmm::cluster
