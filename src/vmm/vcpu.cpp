#include "vmm/vcpu.hpp"

#include <fmt/format.h>

#include <chrono>

#include "cpu/csr.hpp"
#include "machine/memory_map.hpp"
#include "vmm/vm.hpp"

namespace dvmm::vmm {

namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

// Longest sleep without looking around (a safety net; every wake-up source notifies).
constexpr auto kMaxSleep = std::chrono::milliseconds(500);

}  // namespace

Vcpu::Vcpu(Vm& vm, cpu::Hart& hart) : vm_(vm), hart_(hart) {
  hart_.set_wakeup([this] { wake(); });
}

Vcpu::~Vcpu() {
  if (thread_.joinable()) thread_.join();
}

void Vcpu::start() {
  {
    std::lock_guard lock(mutex_);
    woken_ = false;
  }
  thread_ = std::thread([this] { thread_main(); });
}

void Vcpu::join() {
  if (thread_.joinable()) thread_.join();
}

void Vcpu::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  cv_.notify_one();
  // The vCPU may be blocked on another node (a page, an MMIO reply) rather than asleep.
  vm_.node_links().wake_blocked();
}

void Vcpu::thread_main() {
  hart_.bind_to_this_thread();
  try {
    loop();
  } catch (const std::exception& e) {
    // A guest must never crash the host: whatever went wrong inside this vCPU ends the VM
    // with a report instead.
    vm_.post_error(
        fmt::format("hart {}: internal error at pc {:#x}: {}", id(), hart_.pc(), e.what()));
  } catch (...) {
    vm_.post_error(fmt::format("hart {}: unknown internal error at pc {:#x}", id(), hart_.pc()));
  }
}

u64 Vcpu::set_controls(std::shared_ptr<const VmControls> controls) {
  hart_.set_controls(controls->exec);
  halt_poll_ns_.store(controls->halt_poll_ns, std::memory_order_relaxed);
  {
    std::lock_guard lock(controls_mutex_);
    controls_ = std::move(controls);
  }
  const u64 ticket = controls_requested_.fetch_add(1, std::memory_order_acq_rel) + 1;
  hart_.kick();  // leave run() so the loop acknowledges; wakes a sleeping vCPU too
  return ticket;
}

std::shared_ptr<const VmControls> Vcpu::controls() const {
  std::lock_guard lock(controls_mutex_);
  return controls_;
}

void Vcpu::pause() {
  pause_requested_.store(true, std::memory_order_release);
  hart_.kick();
}

void Vcpu::resume() {
  {
    std::lock_guard lock(mutex_);
    pause_requested_.store(false, std::memory_order_release);
    woken_ = true;
  }
  cv_.notify_one();
}

void Vcpu::serve_requests() {
  const u64 requested = controls_requested_.load(std::memory_order_acquire);
  hart_.service_requests();
  controls_seen_.store(requested, std::memory_order_release);
}

void Vcpu::wait_paused() {
  in_pause_.store(true, std::memory_order_release);
  while (pause_requested_.load(std::memory_order_acquire) && !vm_.vcpus_should_stop()) {
    {
      std::lock_guard debug(debug_mutex_);  // not while a debugger is in the hart
      serve_requests();
    }
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, kMaxSleep, [&] { return woken_; });
    woken_ = false;
  }
  std::lock_guard debug(debug_mutex_);  // a debugger's access ends before the hart runs
  in_pause_.store(false, std::memory_order_release);
}

bool Vcpu::with_paused_hart(const std::function<void(cpu::Hart&)>& fn) {
  std::lock_guard debug(debug_mutex_);
  if (!in_pause_.load(std::memory_order_acquire)) return false;
  fn(hart_);
  return true;
}

std::string Vcpu::csr_label(u16 csr) {
  for (const cpu::CsrInfo& info : cpu::csr_table()) {
    if (info.number == csr) return std::string(info.name);
  }
  return fmt::format("{:#x}", csr);
}

void Vcpu::trace_sbi(const VmControls& c, const cpu::ExitSbiCall& e) {
  static const char* const kNames[] = {"legacy", "base", "time", "ipi",  "rfence",
                                       "hsm",    "srst", "dbcn", "other"};
  const std::size_t index = Sbi::extension_index(e.eid);
  const char* name = index < std::size(kNames) ? kNames[index] : "other";
  if (c.sbi_trace.count(name) == 0) return;
  vm_.trace().append(
      fmt::format(R"({{"hart":{},"event":"sbi","ext":"{}","eid":{},"fid":{},"args":[{},{},{}],)"
                  R"("error":{},"value":{}}})",
                  id(), name, e.eid, e.fid, e.args[0], e.args[1], e.args[2],
                  static_cast<i64>(hart_.x(10)), hart_.x(11)));
}

void Vcpu::trace_mmio(const VmControls& c, Gpa gpa, unsigned size, u64 value, bool write) {
  const char* device = nullptr;
  Gpa base = 0;
  if (gpa - machine::kUart0Base < machine::kUart0Size) {
    device = "uart0";
    base = machine::kUart0Base;
  } else if (gpa - machine::kPlicBase < machine::kPlicSize) {
    device = "plic";
    base = machine::kPlicBase;
  } else if (gpa - machine::kFinisherBase < machine::kFinisherSize) {
    device = "finisher";
    base = machine::kFinisherBase;
  }
  if (device == nullptr || c.mmio_trace.count(device) == 0) return;
  vm_.trace().append(fmt::format(
      R"({{"hart":{},"event":"mmio","device":"{}","offset":{},"size":{},"write":{},"value":{}}})",
      id(), device, gpa - base, size, write, value));
}

void Vcpu::intercepted(const VmControls& c, const std::string& json) {
  if (c.action == ExitAction::kLog || c.action == ExitAction::kPause) vm_.trace().append(json);
  if (c.action == ExitAction::kPause) {
    self_pause_kind_.store(exit_kind_, std::memory_order_relaxed);
    self_pauses_.fetch_add(1, std::memory_order_release);
    pause_requested_.store(true, std::memory_order_release);
  }
}

void Vcpu::loop() {
  Sbi& sbi = vm_.sbi();
  const u64 budget = vm_.options().run_budget;
  while (!vm_.vcpus_should_stop()) {
    serve_requests();
    if (DVMM_UNLIKELY(pause_requested_.load(std::memory_order_acquire))) {
      wait_paused();
      continue;
    }
    switch (sbi.state(id())) {
      case HsmState::kStarted:
        break;
      case HsmState::kStartPending:
        if (auto start = sbi.take_start(id())) {
          // SBI HSM hart_start: S-mode, paging off, a0 = hartid, a1 = opaque (spec 9.1).
          hart_.reset(start->start_addr, id(), start->opaque);
        }
        continue;
      case HsmState::kStopPending:
        sbi.finish_stop(id());
        continue;
      case HsmState::kStopped:
        wait_parked();
        continue;
      default:
        // Suspended states are entered and left inside handle() on this thread.
        break;
    }
    cpu::Exit exit = hart_.run(budget);
    exits_[exit.index()].fetch_add(1, std::memory_order_relaxed);
    handle(exit);
  }
}

void Vcpu::handle(cpu::Exit& exit) {
  machine::Machine& m = vm_.machine();
  NodeLinks& links = vm_.node_links();
  const NodeLinks::Serve serve = [this] { hart_.service_requests(); };
  exit_kind_ = exit.index();
  // Only the rarer exits look at the controls (a lock and a reference count).
  std::shared_ptr<const VmControls> c;
  if (!std::holds_alternative<cpu::ExitPageNotPresent>(exit) &&
      !std::holds_alternative<cpu::ExitWfi>(exit) &&
      !std::holds_alternative<cpu::ExitBudgetExhausted>(exit)) {
    c = controls();
  }
  std::visit(
      Overloaded{
          [&](const cpu::ExitMmioRead& e) {
            const u64 v = links.mmio_is_local(e.gpa) ? m.mmio_read(e.gpa, e.size)
                                                     : links.mmio_read(e.gpa, e.size, serve);
            hart_.complete_mmio_read(v);
            if (c && !c->mmio_trace.empty()) trace_mmio(*c, e.gpa, e.size, v, false);
          },
          [&](const cpu::ExitMmioWrite& e) {
            if (links.mmio_is_local(e.gpa)) {
              m.mmio_write(e.gpa, e.size, e.value);
            } else {
              links.mmio_write(e.gpa, e.size, e.value, serve);
            }
            if (c && !c->mmio_trace.empty()) trace_mmio(*c, e.gpa, e.size, e.value, true);
          },
          [&](const cpu::ExitSbiCall& e) {
            const SbiOutcome out = vm_.sbi().handle(hart_, e);
            if (c && !c->sbi_trace.empty()) trace_sbi(*c, e);
            switch (out.action) {
              case SbiOutcome::Action::kResume:
              case SbiOutcome::Action::kStopHart:  // the loop parks the hart
                break;
              case SbiOutcome::Action::kSuspend:
                wait_for_interrupt();
                vm_.sbi().end_suspend(id());
                break;
              case SbiOutcome::Action::kShutdown:
                vm_.post_poweroff(out.status, fmt::format("SBI shutdown from hart {}", id()));
                break;
              case SbiOutcome::Action::kReboot:
                vm_.post_reboot(fmt::format("SBI reboot from hart {}", id()));
                break;
            }
          },
          [&](const cpu::ExitWfi&) { wait_for_interrupt(); },
          [&](const cpu::ExitPageNotPresent& e) {
            // The distributed memory brings the page here (blocking; serves our flushes).
            if (links.acquire_page(e.gpa, e.access, serve) || vm_.vcpus_should_stop()) return;
            // On one node all RAM is here: this cannot happen.
            vm_.post_error(fmt::format(
                "hart {}: guest-physical page {:#x} is not present on this node (pc {:#x}); "
                "this cannot happen on a single node",
                id(), e.gpa & ~kPageMask, hart_.pc()));
            hart_.kick();
          },
          [&](const cpu::ExitException& e) {
            // Intercepted by the exception bitmap: count (and trace, or pause), then
            // hand the exception to the guest as if nothing had intercepted it.
            if (e.cause < intercepts_.size()) {
              intercepts_[e.cause].fetch_add(1, std::memory_order_relaxed);
            }
            if (c && c->action != ExitAction::kDeliver) {
              const char* name = exception_name(static_cast<unsigned>(e.cause));
              intercepted(*c, fmt::format(R"({{"hart":{},"event":"exception","cause":"{}",)"
                                          R"("code":{},"tval":{},"pc":{}}})",
                                          id(), name ? name : "reserved", e.cause, e.tval, e.pc));
            }
            hart_.deliver_exception(e.cause, e.tval);
          },
          [&](const cpu::ExitCsrAccess& e) {
            // run() again executes the access.
            (e.write ? csr_writes_ : csr_reads_).fetch_add(1, std::memory_order_relaxed);
            if (c && c->action != ExitAction::kDeliver) {
              intercepted(*c, fmt::format(R"({{"hart":{},"event":"csr","csr":"{}",)"
                                          R"("write":{},"value":{},"pc":{}}})",
                                          id(), csr_label(e.csr), e.write, e.new_value, e.pc));
            }
          },
          [&](const cpu::ExitBreakpoint& e) {
            if (c) {
              intercepted(*c,
                          fmt::format(R"({{"hart":{},"event":"breakpoint","pc":{}}})", id(), e.pc));
            }
          },
          [&](const cpu::ExitSingleStep& e) {
            if (c && c->action != ExitAction::kCount && c->action != ExitAction::kDeliver) {
              intercepted(*c, fmt::format(R"({{"hart":{},"event":"step","pc":{}}})", id(), e.pc));
            }
          },
          [&](const cpu::ExitKicked&) {},  // the loop re-checks the VM and HSM state
          [&](const cpu::ExitBudgetExhausted&) {},
      },
      exit);
}

void Vcpu::wait_for_interrupt() {
  const cpu::TimeSource& time = hart_.time_source();
  // Halt polling: an interrupt due soon is taken without a sleep and a wake-up.
  if (const u64 poll_ns = halt_poll_ns_.load(std::memory_order_relaxed); poll_ns != 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(poll_ns);
    while (std::chrono::steady_clock::now() < until) {
      if (hart_.interrupt_pending() || vm_.vcpus_should_stop() ||
          pause_requested_.load(std::memory_order_relaxed)) {
        return;
      }
      serve_requests();
    }
  }
  for (;;) {
    serve_requests();
    if (pause_requested_.load(std::memory_order_acquire)) return;
    if (hart_.interrupt_pending() || vm_.vcpus_should_stop()) return;
    std::unique_lock lock(mutex_);
    if (woken_) {
      woken_ = false;
      continue;
    }
    auto wait = std::chrono::nanoseconds(kMaxSleep);
    const u64 deadline = hart_.timer_deadline();
    const u64 now = time.now();
    if (deadline > now) {
      // Sleep until the timer fires (if it is enabled in sie, interrupt_pending() then
      // holds); ticks -> ns at the time source's frequency.
      const u128 ns = static_cast<u128>(deadline - now) * 1'000'000'000u / time.frequency_hz();
      if (ns < static_cast<u128>(wait.count()))
        wait = std::chrono::nanoseconds(static_cast<i64>(ns) + 1);
    }
    // A timer that has already expired but is masked in sie cannot wake us: wait for
    // something else (the wait cap keeps us honest).
    cv_.wait_for(lock, wait, [&] { return woken_; });
    woken_ = false;
  }
}

void Vcpu::wait_parked() {
  for (;;) {
    serve_requests();
    if (vm_.vcpus_should_stop() || vm_.sbi().state(id()) != HsmState::kStopped ||
        pause_requested_.load(std::memory_order_acquire)) {
      return;
    }
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, kMaxSleep, [&] { return woken_; });
    woken_ = false;
  }
}

}  // namespace dvmm::vmm
