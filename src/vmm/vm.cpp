#include "vmm/vm.hpp"

#include <fmt/format.h>

#include <thread>

namespace dvmm::vmm {

namespace {

constexpr std::string_view kPanicMarker = "Kernel panic - not syncing";
constexpr std::string_view kPanicEndMarker = "---[ end Kernel panic";
constexpr std::size_t kMaxLine = 1024;

// Which console the kernel command line makes /dev/console: the last console= wins.
bool console_is_hvc(const std::string& bootargs) {
  std::size_t pos = 0;
  bool hvc = false;
  while ((pos = bootargs.find("console=", pos)) != std::string::npos) {
    if (pos == 0 || bootargs[pos - 1] == ' ') hvc = bootargs.compare(pos + 8, 3, "hvc") == 0;
    pos += 8;
  }
  return hvc;
}

u64 version_number() {
#ifdef DVMM_VERSION_NUMBER
  return DVMM_VERSION_NUMBER;
#else
  return 0x000100;  // 0.1.0
#endif
}

}  // namespace

Vm::Vm(const machine::MachineConfig& config, VmOptions options) : options_(std::move(options)) {
  machine::MachineCallbacks cb;
  cb.console = [this](char c) { on_console(std::string_view(&c, 1)); };
  cb.finisher = [this](const devices::FinisherEvent& e) {
    if (e.kind == devices::FinisherEvent::Kind::kReboot) {
      post_reboot("reboot through the test finisher");
    } else {
      post_poweroff(e.status, "poweroff through the test finisher");
    }
  };
  if (options_.links) {
    links_ = options_.links;
    cb.external_interrupt = [this](HartId id, bool level) {
      if (links_->is_local(id)) {
        machine_->hart(id).set_external_interrupt(level);
      } else {
        links_->set_external_interrupt(id, level);
      }
    };
  }
  machine::MachineConfig machine_config = config;
  // The power button and the inter-VM devices are bound by Linux's generic UIO driver.
  if (machine_config.bootargs.find(kUioBootParameter) == std::string::npos) {
    machine_config.bootargs +=
        std::string(machine_config.bootargs.empty() ? "" : " ") + std::string(kUioBootParameter);
  }
  machine_ = std::make_unique<machine::Machine>(machine_config, std::move(cb));
  sbi_ = std::make_unique<Sbi>(static_cast<SbiPlatform&>(*this), version_number());
  for (unsigned i = 0; i < machine_->hart_count(); ++i) {
    vcpus_.push_back(std::make_unique<Vcpu>(*this, machine_->hart(i)));
    vcpus_.back()->set_controls(std::make_shared<const VmControls>(options_.controls));
  }
  input_to_sbi_ = console_is_hvc(config.bootargs);
  devices_ = std::make_unique<VmDevices>(
      options_.devices, *machine_, *links_, options_.node_count,
      [this] { return vcpus_should_stop(); }, [this](const std::string& l) { log(l); });
  ivc_ = std::make_unique<VmIvc>(options_.devices.ivcs, options_.devices.runtime_dir, *machine_,
                                 options_.node_count);
  if (options_.verbose) {
    for (const std::string& line : devices_->describe()) log(line);
    for (const std::string& line : ivc_->describe()) log(line);
  }
}

Vm::~Vm() {
  if (running_) stop_vcpus();
}

void Vm::log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

machine::BootInfo Vm::boot() {
  if (!options_.boot_node) {
    machine_->reset_devices();
    machine_->set_time_epoch(options_.time_epoch_ns);
    sbi_->reset_harts(0);
    booted_ = true;
    return {};
  }
  machine::BootInfo info = machine_->boot();
  sbi_->reset_harts(0);
  booted_ = true;
  if (options_.verbose) {
    const auto& l = info.layout;
    log(fmt::format(
        "boot: {} harts, {} MiB RAM at {:#x}; kernel {:#x} ({} KiB), initrd {:#x} "
        "({} KiB), device tree {:#x} ({} bytes)",
        machine_->hart_count(), machine_->ram().size() >> 20, machine_->ram().base(), l.kernel,
        l.kernel_size >> 10, l.initrd, l.initrd_size >> 10, l.dtb, l.dtb_size));
    log(fmt::format("boot: command line \"{}\"", machine_->config().bootargs));
  }
  return info;
}

void Vm::start_vcpus() {
  stop_vcpus_.store(false, std::memory_order_release);
  running_ = true;
  for (auto& v : vcpus_) {
    if (links_->is_local(v->id())) v->start();
  }
}

void Vm::stop_vcpus() {
  stop_vcpus_.store(true, std::memory_order_release);
  // kick() makes a running hart leave run(); it also calls the wakeup of a sleeping one.
  for (auto& v : vcpus_) {
    if (links_->is_local(v->id())) v->hart().kick();
  }
  for (auto& v : vcpus_) v->join();
  running_ = false;
}

std::optional<std::chrono::nanoseconds> Vm::set_controls(const VmControls& controls,
                                                         std::optional<HartId> vcpu,
                                                         std::chrono::milliseconds wait) {
  const auto start = std::chrono::steady_clock::now();
  auto shared = std::make_shared<const VmControls>(controls);
  std::vector<std::pair<Vcpu*, u64>> tickets;
  for (auto& v : vcpus_) {
    if (vcpu && v->id() != *vcpu) continue;
    if (!links_->is_local(v->id())) continue;
    tickets.emplace_back(v.get(), v->set_controls(shared));
  }
  if (!running_) return std::chrono::nanoseconds(0);  // applied when the vCPUs start
  const auto deadline = start + wait;
  for (;;) {
    bool all = true;
    for (const auto& [v, ticket] : tickets) all = all && v->controls_applied(ticket);
    const auto now = std::chrono::steady_clock::now();
    if (all) return std::chrono::duration_cast<std::chrono::nanoseconds>(now - start);
    if (now >= deadline || vcpus_should_stop()) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

VmControls Vm::controls(HartId vcpu) const {
  auto c = vcpus_.at(vcpu)->controls();
  return c ? *c : VmControls{};
}

bool Vm::pause(std::optional<HartId> vcpu, std::chrono::milliseconds wait) {
  for (auto& v : vcpus_) {
    if ((!vcpu || v->id() == *vcpu) && links_->is_local(v->id())) v->pause();
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    bool all = true;
    for (auto& v : vcpus_) {
      if ((!vcpu || v->id() == *vcpu) && links_->is_local(v->id())) all = all && v->paused();
    }
    if (all || !running_) return all;
    if (std::chrono::steady_clock::now() >= deadline || vcpus_should_stop()) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void Vm::resume(std::optional<HartId> vcpu) {
  for (auto& v : vcpus_) {
    if ((!vcpu || v->id() == *vcpu) && links_->is_local(v->id())) v->resume();
  }
}

bool Vm::with_paused_hart(HartId id, const std::function<void(cpu::Hart&)>& fn) {
  if (id >= vcpus_.size() || !links_->is_local(id)) return false;
  return vcpus_[id]->with_paused_hart(fn);
}

bool Vm::paused() const {
  if (!running_) return false;
  for (const auto& v : vcpus_) {
    if (links_->is_local(v->id()) && !v->paused()) return false;
  }
  return true;
}

void Vm::post(Event e) {
  {
    std::lock_guard lock(event_mutex_);
    if (event_ && event_->kind != Event::Kind::kReboot) return;  // the first end wins
    if (e.kind == Event::Kind::kReboot && event_) return;
    event_ = std::move(e);
  }
  event_cv_.notify_all();
}

void Vm::post_poweroff(u32 status, std::string why) {
  if (options_.verbose) log(fmt::format("{} (exit status {})", why, status));
  stop_vcpus_.store(true, std::memory_order_release);
  post({Event::Kind::kPowerOff, status, std::move(why)});
}

void Vm::post_reboot(std::string why) {
  if (!options_.reboot_allowed) {
    post_poweroff(0, why + " (this VM powers off instead of rebooting)");
    return;
  }
  if (options_.verbose) log(why);
  stop_vcpus_.store(true, std::memory_order_release);
  post({Event::Kind::kReboot, 0, std::move(why)});
}

void Vm::post_error(std::string message) {
  stop_vcpus_.store(true, std::memory_order_release);
  post({Event::Kind::kError, 0, std::move(message)});
}

void Vm::request_stop(std::string reason) {
  post({Event::Kind::kStopped, 0, std::move(reason)});
}

bool Vm::request_shutdown(std::string reason, std::chrono::milliseconds grace) {
  if (!machine_->plic().source_enabled(machine::kPowerButtonIrq)) return false;
  {
    std::lock_guard lock(event_mutex_);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    if (!shutdown_deadline_ || deadline < *shutdown_deadline_) shutdown_deadline_ = deadline;
    shutdown_reason_ = fmt::format("{} (the guest did not shut down within {} s)", reason,
                                   std::chrono::duration<double>(grace).count());
  }
  event_cv_.notify_all();
  machine_->power_button().press();
  return true;
}

void Vm::console_write(std::string_view bytes) {
  on_console(bytes);
}

int Vm::console_read() {
  std::lock_guard lock(input_mutex_);
  if (sbi_input_.empty()) return -1;
  const u8 c = sbi_input_.front();
  sbi_input_.pop_front();
  return c;
}

void Vm::wake(HartId id) {
  if (links_->is_local(id)) vcpus_.at(id)->wake();
}

void Vm::push_console_input(std::span<const u8> bytes) {
  if (input_to_sbi_) {
    std::lock_guard lock(input_mutex_);
    sbi_input_.insert(sbi_input_.end(), bytes.begin(), bytes.end());
  } else {
    machine_->uart().push_input(bytes);
  }
}

void Vm::on_console(std::string_view bytes) {
  if (options_.console_output) options_.console_output(bytes);
  // Watch the console for a kernel panic, line by line.
  std::lock_guard lock(console_mutex_);
  for (char c : bytes) {
    if (c != '\n') {
      if (c != '\r' && console_line_.size() < kMaxLine) console_line_.push_back(c);
      continue;
    }
    const std::string line = std::move(console_line_);
    console_line_.clear();
    if (!panic_seen_ && line.find(kPanicMarker) != std::string::npos) {
      panic_seen_ = true;
      std::string msg = line.substr(line.find(kPanicMarker));
      {
        std::lock_guard elock(event_mutex_);
        panic_line_ = std::move(msg);
        panic_deadline_ = std::chrono::steady_clock::now() + options_.panic_grace;
      }
      event_cv_.notify_all();
    } else if (panic_seen_ && line.find(kPanicEndMarker) != std::string::npos) {
      {
        std::lock_guard elock(event_mutex_);
        panic_done_ = true;
      }
      event_cv_.notify_all();
    }
  }
}

VmResult Vm::run() {
  VmResult result;
  const auto start = std::chrono::steady_clock::now();
  const bool has_timeout = options_.timeout.count() > 0;
  const auto timeout_at = start + options_.timeout;
  try {
    if (!booted_) boot();
  } catch (const std::exception& e) {
    result.kind = VmResult::Kind::kError;
    result.message = e.what();
    return result;
  }
  start_vcpus();

  for (;;) {
    std::unique_lock lock(event_mutex_);
    auto ready = [&] { return event_.has_value() || (!panic_line_.empty() && panic_done_); };
    // Wake up for: an event, the end of a panic's grace period, or the timeout.
    for (;;) {
      if (ready()) break;
      auto until = std::chrono::steady_clock::time_point::max();
      if (has_timeout) until = timeout_at;
      if (!panic_line_.empty()) until = std::min(until, panic_deadline_);
      if (shutdown_deadline_) until = std::min(until, *shutdown_deadline_);
      if (until == std::chrono::steady_clock::time_point::max()) {
        event_cv_.wait(lock);
      } else if (event_cv_.wait_until(lock, until) == std::cv_status::timeout) {
        break;
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (!event_ && !panic_line_.empty() && (panic_done_ || now >= panic_deadline_)) {
      event_ = Event{Event::Kind::kPanic, 0, panic_line_};
    }
    if (!event_ && shutdown_deadline_ && now >= *shutdown_deadline_) {
      event_ = Event{Event::Kind::kStopped, 0, shutdown_reason_};
    }
    if (!event_) {
      if (has_timeout && now >= timeout_at) {
        event_ = Event{Event::Kind::kStopped, 0, ""};
        lock.unlock();
        stop_vcpus();
        result.kind = VmResult::Kind::kTimeout;
        result.message = fmt::format("the guest did not finish within {} s",
                                     std::chrono::duration<double>(options_.timeout).count());
        break;
      }
      continue;
    }
    Event e = *event_;
    if (e.kind == Event::Kind::kReboot) {
      event_.reset();
      panic_line_.clear();
      panic_done_ = false;
      lock.unlock();
      stop_vcpus();
      {
        std::lock_guard clock(console_mutex_);
        console_line_.clear();
        panic_seen_ = false;
      }
      ++result.reboots;
      try {
        boot();
      } catch (const std::exception& ex) {
        result.kind = VmResult::Kind::kError;
        result.message = std::string("reboot failed: ") + ex.what();
        break;
      }
      start_vcpus();
      continue;
    }
    lock.unlock();
    stop_vcpus();
    result.message = e.message;
    switch (e.kind) {
      case Event::Kind::kPowerOff:
        result.kind = VmResult::Kind::kPowerOff;
        result.status = e.status;
        break;
      case Event::Kind::kPanic:
        result.kind = VmResult::Kind::kPanic;
        break;
      case Event::Kind::kStopped:
        result.kind = VmResult::Kind::kStopped;
        break;
      default:
        result.kind = VmResult::Kind::kError;
        break;
    }
    break;
  }
  booted_ = false;
  if (options_.verbose) {
    log(fmt::format(
        "ran for {:.2f} s",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
    log_counters();
  }
  return result;
}

void Vm::log_counters() const {
  static constexpr const char* kExitNames[] = {"sbi",  "wfi",       "mmio-read", "mmio-write",
                                               "page", "exception", "csr",       "breakpoint",
                                               "step", "kicked",    "budget"};
  static_assert(std::size(kExitNames) == cpu::kExitKinds);
  for (const auto& v : vcpus_) {
    if (!links_->is_local(v->id())) continue;
    std::string line =
        fmt::format("hart {}: {} instructions; exits:", v->id(), v->hart().instret());
    for (std::size_t k = 0; k < cpu::kExitKinds; ++k) {
      if (const u64 n = v->exits(k)) line += fmt::format(" {}={}", kExitNames[k], n);
    }
    log(line);
  }
  static constexpr const char* kSbiNames[] = {"legacy", "base", "time", "ipi",  "rfence",
                                              "hsm",    "srst", "dbcn", "other"};
  std::string line = "sbi calls:";
  for (std::size_t i = 0; i < Sbi::kCounterSlots; ++i) {
    if (const u64 n = sbi_->calls(i)) line += fmt::format(" {}={}", kSbiNames[i], n);
  }
  log(line);
  for (const VirtioDeviceStats& d : devices_->stats()) {
    log(fmt::format("{}: {} notifications, {} interrupts, {} chains, {} errors; {}", d.name,
                    d.transport.notifications, d.transport.interrupts, d.transport.chains,
                    d.transport.errors, d.detail));
  }
  for (const IvcGroupStats& g : ivc_->stats()) {
    log(
        fmt::format("ivc {} (rank {}, members {:#x}): sent {}, inbox full {}, refused {}, "
                    "received {}, membership changes {}",
                    g.group, g.rank, g.members, g.counters.sent, g.counters.send_full,
                    g.counters.send_refused, g.counters.received, g.counters.member_changes));
  }
  if (const u64 n = machine_->unmapped_accesses())
    log(fmt::format("unmapped MMIO accesses: {}", n));
}

}  // namespace dvmm::vmm
