#include "cluster/node_links.hpp"

#include <fmt/format.h>

#include <chrono>
#include <map>
#include <thread>

#include "base/clock.hpp"
#include "cluster/wire_codec.hpp"
#include "vmm/vm.hpp"

namespace dvmm::cluster {

namespace {

enum CpuMsg : u8 {
  kIpi = 1,
  kExtIrq = 2,
  kFence = 3,
  kFenceAck = 4,
  kHsmStart = 5,
  kHsmStatus = 6,
  kCpuReply = 7,
  kDeviceIrq = 8,
};
enum MmioMsg : u8 { kRead = 1, kWrite = 2, kMmioReply = 3 };

// A blocked caller re-checks (and serves its hart) at least this often.
constexpr auto kPoll = std::chrono::microseconds(200);
// How long the sender asks the transport to spin for the reply.
constexpr auto kBusyPoll = std::chrono::microseconds(100);
// Sentinel reply for "no such value" (a status the remote node could not give).
constexpr u64 kNoValue = ~u64{0};

}  // namespace

ClusterLinks::ClusterLinks(Transport& transport, unsigned vcpus_per_node, NodeId device_node,
                           std::function<void(const std::string&)> log)
    : transport_(transport),
      self_(transport.self()),
      vcpus_per_node_(vcpus_per_node == 0 ? 1 : vcpus_per_node),
      device_node_(device_node),
      log_(std::move(log)) {}

ClusterLinks::~ClusterLinks() {
  detach();
}

void ClusterLinks::attach(vmm::Vm& vm) {
  vm_ = &vm;
  transport_.set_receiver(Channel::kCpu,
                          [this](NodeId from, std::span<const u8> b) { on_cpu(from, b); });
  transport_.set_receiver(Channel::kMmio,
                          [this](NodeId from, std::span<const u8> b) { on_mmio(from, b); });
}

void ClusterLinks::detach() {
  if (!vm_) return;
  fail("detached");
  transport_.set_receiver(Channel::kCpu, {});
  transport_.set_receiver(Channel::kMmio, {});
  vm_ = nullptr;
}

void ClusterLinks::fail(const std::string& why) {
  (void)why;
  {
    std::lock_guard lock(mutex_);
    failed_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
}

bool ClusterLinks::stopping() const {
  return failed_.load(std::memory_order_acquire) || (vm_ && vm_->vcpus_should_stop());
}

void ClusterLinks::reject(NodeId from, const char* channel, const char* why) {
  rejected_.fetch_add(1, std::memory_order_relaxed);
  if (log_) log_(fmt::format("rejected a {} message from node {}: {}", channel, from, why));
}

u64 ClusterLinks::new_request() {
  std::lock_guard lock(mutex_);
  const u64 req = next_req_++;
  pending_.emplace(req, std::nullopt);
  return req;
}

std::optional<u64> ClusterLinks::wait(u64 req, const Serve& serve) {
  transport_.busy_poll_for(kBusyPoll);
  std::unique_lock lock(mutex_);
  for (;;) {
    auto it = pending_.find(req);
    if (it != pending_.end() && it->second) {
      const u64 v = *it->second;
      pending_.erase(it);
      return v;
    }
    if (stopping()) {
      pending_.erase(req);
      return std::nullopt;
    }
    cv_.wait_for(lock, kPoll);
    lock.unlock();
    if (serve) serve();
    lock.lock();
  }
}

void ClusterLinks::complete(u64 req, u64 value) {
  {
    std::lock_guard lock(mutex_);
    auto it = pending_.find(req);
    if (it == pending_.end() || it->second) return;  // stale (the caller gave up)
    it->second = value;
  }
  cv_.notify_all();
}

// ------------------------------------------------------------------ outgoing

void ClusterLinks::send_ipi(HartId id) {
  WireWriter w;
  w.u8v(kIpi);
  w.u32v(id);
  w.u64v(monotonic_ns());
  const auto b = w.take();
  transport_.send(node_of(id), Channel::kCpu, b);
}

void ClusterLinks::set_external_interrupt(HartId id, bool level) {
  WireWriter w;
  w.u8v(kExtIrq);
  w.u32v(id);
  w.u8v(level ? 1 : 0);
  const auto b = w.take();
  transport_.send(node_of(id), Channel::kCpu, b);
}

void ClusterLinks::place_device(Gpa base, u64 size, unsigned node) {
  device_windows_.push_back({base, size, static_cast<NodeId>(node)});
}

NodeId ClusterLinks::mmio_node(Gpa gpa) const {
  for (const DeviceWindow& w : device_windows_) {
    if (gpa - w.base < w.size) return w.node;
  }
  return device_node_;
}

void ClusterLinks::set_device_irq(u32 source, bool level) {
  WireWriter w;
  w.u8v(kDeviceIrq);
  w.u32v(source);
  w.u8v(level ? 1 : 0);
  const auto b = w.take();
  transport_.send(device_node_, Channel::kCpu, b);
}

void ClusterLinks::remote_fence(const std::vector<HartId>& harts, const Serve& serve) {
  if (failed()) return;
  std::map<NodeId, std::vector<HartId>> by_node;
  for (HartId h : harts) by_node[node_of(h)].push_back(h);
  std::vector<u64> reqs;
  const u64 started = monotonic_ns();
  for (const auto& [node, list] : by_node) {
    const u64 req = new_request();
    WireWriter w;
    w.u8v(kFence);
    w.u64v(req);
    w.u32v(static_cast<u32>(list.size()));
    for (HartId h : list) w.u32v(h);
    const auto b = w.take();
    if (transport_.send(node, Channel::kCpu, b)) {
      reqs.push_back(req);
    } else {
      std::lock_guard lock(mutex_);
      pending_.erase(req);
    }
  }
  bool ok = true;
  for (u64 req : reqs) ok = wait(req, serve).has_value() && ok;
  if (ok && !reqs.empty()) fence_latency_.record(monotonic_ns() - started);
}

i64 ClusterLinks::hart_start(HartId id, u64 start_addr, u64 opaque, const Serve& serve) {
  if (failed()) return vmm::kSbiErrFailed;
  const u64 req = new_request();
  WireWriter w;
  w.u8v(kHsmStart);
  w.u64v(req);
  w.u32v(id);
  w.u64v(start_addr);
  w.u64v(opaque);
  const auto b = w.take();
  if (!transport_.send(node_of(id), Channel::kCpu, b)) {
    std::lock_guard lock(mutex_);
    pending_.erase(req);
    return vmm::kSbiErrFailed;
  }
  const auto r = wait(req, serve);
  return r ? static_cast<i64>(*r) : vmm::kSbiErrFailed;
}

std::optional<vmm::HsmState> ClusterLinks::hart_status(HartId id, const Serve& serve) {
  if (failed()) return std::nullopt;
  const u64 req = new_request();
  WireWriter w;
  w.u8v(kHsmStatus);
  w.u64v(req);
  w.u32v(id);
  const auto b = w.take();
  if (!transport_.send(node_of(id), Channel::kCpu, b)) {
    std::lock_guard lock(mutex_);
    pending_.erase(req);
    return std::nullopt;
  }
  const auto r = wait(req, serve);
  if (!r || *r == kNoValue) return std::nullopt;
  return static_cast<vmm::HsmState>(*r);
}

u64 ClusterLinks::mmio_read(Gpa gpa, unsigned size, const Serve& serve) {
  if (failed()) return 0;
  const u64 req = new_request();
  WireWriter w;
  w.u8v(kRead);
  w.u64v(req);
  w.u64v(gpa);
  w.u8v(static_cast<u8>(size));
  const auto b = w.take();
  const u64 started = monotonic_ns();
  if (!transport_.send(mmio_node(gpa), Channel::kMmio, b)) {
    std::lock_guard lock(mutex_);
    pending_.erase(req);
    return 0;
  }
  const auto v = wait(req, serve);
  if (v) mmio_latency_.record(monotonic_ns() - started);
  return v.value_or(0);
}

void ClusterLinks::mmio_write(Gpa gpa, unsigned size, u64 value, const Serve& serve) {
  if (failed()) return;
  const u64 req = new_request();
  WireWriter w;
  w.u8v(kWrite);
  w.u64v(req);
  w.u64v(gpa);
  w.u8v(static_cast<u8>(size));
  w.u64v(value);
  const auto b = w.take();
  if (!transport_.send(mmio_node(gpa), Channel::kMmio, b)) {
    std::lock_guard lock(mutex_);
    pending_.erase(req);
    return;
  }
  wait(req, serve);
}

bool ClusterLinks::acquire_page(Gpa gpa, memory::AccessType type, const Serve& serve) {
  if (!dsm_ || stopping()) return false;
  return dsm_->acquire(gpa, type, serve, [this] { return stopping(); });
}

void ClusterLinks::wake_blocked() {
  if (dsm_) dsm_->notify_waiters();
  cv_.notify_all();
}

void ClusterLinks::wait_flushed(const std::vector<std::pair<cpu::Hart*, u64>>& tickets,
                                const std::function<void()>& while_waiting) {
  const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
  // On a vCPU thread (a receiver run inside poll_until, or a DSM step on a faulting vCPU),
  // our own hart is among the targets and only this thread can serve it.
  cpu::Hart* self = cpu::Hart::on_this_thread();
  for (;;) {
    if (while_waiting) while_waiting();
    if (self) self->service_requests();
    bool all = true;
    for (const auto& [hart, ticket] : tickets) all = all && hart->flush_done(ticket);
    if (all || stopping()) return;
    if (std::chrono::steady_clock::now() < spin_until) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(10));
    }
  }
}

void ClusterLinks::flush_local_harts(const std::function<void()>& while_waiting) {
  if (!vm_) return;
  machine::Machine& m = vm_->machine();
  std::vector<std::pair<cpu::Hart*, u64>> tickets;
  for (HartId h = 0; h < m.hart_count(); ++h) {
    if (is_local(h)) tickets.emplace_back(&m.hart(h), m.hart(h).request_flush());
  }
  wait_flushed(tickets, while_waiting);
}

// ------------------------------------------------------------------ incoming

void ClusterLinks::on_cpu(NodeId from, std::span<const u8> bytes) {
  if (!vm_) return;
  WireReader r(bytes);
  u8 type = 0;
  if (!r.u8v(type)) return reject(from, "cpu", "empty");
  machine::Machine& m = vm_->machine();
  auto local_hart = [&](u32 id) { return id < m.hart_count() && is_local(id); };
  auto reply = [&](u64 req, u64 value) {
    WireWriter w;
    w.u8v(type == kFence ? kFenceAck : kCpuReply);
    w.u64v(req);
    if (type != kFence) w.u64v(value);
    const auto b = w.take();
    transport_.send(from, Channel::kCpu, b);
  };
  switch (type) {
    case kIpi: {
      u32 h;
      u64 sent = 0;
      if (!r.u32v(h) || !r.u64v(sent) || !r.at_end() || !local_hart(h))
        return reject(from, "cpu", "bad IPI");
      m.hart(h).raise_software_interrupt();
      // steady_clock is CLOCK_MONOTONIC, shared by the processes of one host (across hosts
      // the figure is meaningless and not recorded).
      const u64 now = monotonic_ns();
      if (now >= sent && now - sent < u64{1'000'000'000}) ipi_latency_.record(now - sent);
      return;
    }
    case kExtIrq: {
      u32 h;
      u8 level;
      if (!r.u32v(h) || !r.u8v(level) || !r.at_end() || !local_hart(h) || level > 1)
        return reject(from, "cpu", "bad interrupt line");
      m.hart(h).set_external_interrupt(level != 0);
      return;
    }
    case kDeviceIrq: {
      u32 source;
      u8 level;
      if (!r.u32v(source) || !r.u8v(level) || !r.at_end() || level > 1 || self_ != device_node_ ||
          source == 0 || source >= devices::Plic::kSources)
        return reject(from, "cpu", "bad device interrupt");
      m.plic().line(source).set_level(level != 0);
      return;
    }
    case kFence: {
      u64 req;
      u32 n;
      if (!r.u64v(req) || !r.u32v(n) || n > m.hart_count()) return reject(from, "cpu", "bad fence");
      std::vector<std::pair<cpu::Hart*, u64>> tickets;
      for (u32 i = 0; i < n; ++i) {
        u32 h;
        if (!r.u32v(h) || !local_hart(h)) return reject(from, "cpu", "bad fence target");
        tickets.emplace_back(&m.hart(h), 0);
      }
      if (!r.at_end()) return reject(from, "cpu", "bad fence");
      for (auto& [hart, ticket] : tickets) ticket = hart->request_flush();
      // The targets take the request at their next instruction boundary or while they
      // wait (WFI, parked, blocked on another node: all serve their requests).
      wait_flushed(tickets, {});
      reply(req, 0);
      return;
    }
    case kHsmStart: {
      u64 req, addr, opaque;
      u32 h;
      if (!r.u64v(req) || !r.u32v(h) || !r.u64v(addr) || !r.u64v(opaque) || !r.at_end() ||
          !local_hart(h))
        return reject(from, "cpu", "bad hart_start");
      reply(req, static_cast<u64>(vm_->sbi().hart_start_local(h, addr, opaque)));
      return;
    }
    case kHsmStatus: {
      u64 req;
      u32 h;
      if (!r.u64v(req) || !r.u32v(h) || !r.at_end() || !local_hart(h))
        return reject(from, "cpu", "bad hart_get_status");
      reply(req, static_cast<u64>(vm_->sbi().state(h)));
      return;
    }
    case kFenceAck: {
      u64 req;
      if (!r.u64v(req) || !r.at_end()) return reject(from, "cpu", "bad fence ack");
      complete(req, 0);
      return;
    }
    case kCpuReply: {
      u64 req, value;
      if (!r.u64v(req) || !r.u64v(value) || !r.at_end()) return reject(from, "cpu", "bad reply");
      complete(req, value);
      return;
    }
    default:
      return reject(from, "cpu", "unknown type");
  }
}

void ClusterLinks::on_mmio(NodeId from, std::span<const u8> bytes) {
  if (!vm_) return;
  WireReader r(bytes);
  u8 type = 0;
  u64 req = 0;
  if (!r.u8v(type) || !r.u64v(req)) return reject(from, "mmio", "short");
  auto valid_size = [](u8 s) { return s == 1 || s == 2 || s == 4 || s == 8; };
  auto reply = [&](u64 value) {
    WireWriter w;
    w.u8v(kMmioReply);
    w.u64v(req);
    w.u64v(value);
    const auto b = w.take();
    transport_.send(from, Channel::kMmio, b);
  };
  switch (type) {
    case kRead: {
      u64 gpa;
      u8 size;
      if (!r.u64v(gpa) || !r.u8v(size) || !r.at_end() || !valid_size(size) ||
          mmio_node(gpa) != self_)
        return reject(from, "mmio", "bad read");
      reply(vm_->machine().mmio_read(gpa, size));
      return;
    }
    case kWrite: {
      u64 gpa, value;
      u8 size;
      if (!r.u64v(gpa) || !r.u8v(size) || !r.u64v(value) || !r.at_end() || !valid_size(size) ||
          mmio_node(gpa) != self_)
        return reject(from, "mmio", "bad write");
      vm_->machine().mmio_write(gpa, size, value);
      reply(0);
      return;
    }
    case kMmioReply: {
      u64 value;
      if (!r.u64v(value) || !r.at_end()) return reject(from, "mmio", "bad reply");
      complete(req, value);
      return;
    }
    default:
      return reject(from, "mmio", "unknown type");
  }
}

}  // namespace dvmm::cluster
