#include "vmm/vcpu.hpp"

#include <fmt/format.h>

#include <chrono>

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

void Vcpu::loop() {
  Sbi& sbi = vm_.sbi();
  const u64 budget = vm_.options().run_budget;
  while (!vm_.vcpus_should_stop()) {
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
  std::visit(Overloaded{
                 [&](const cpu::ExitMmioRead& e) {
                   if (links.mmio_is_local(e.gpa)) {
                     hart_.complete_mmio_read(m.mmio_read(e.gpa, e.size));
                   } else {
                     hart_.complete_mmio_read(links.mmio_read(e.gpa, e.size, serve));
                   }
                 },
                 [&](const cpu::ExitMmioWrite& e) {
                   if (links.mmio_is_local(e.gpa)) {
                     m.mmio_write(e.gpa, e.size, e.value);
                   } else {
                     links.mmio_write(e.gpa, e.size, e.value, serve);
                   }
                 },
                 [&](const cpu::ExitSbiCall& e) {
                   const SbiOutcome out = vm_.sbi().handle(hart_, e);
                   switch (out.action) {
                     case SbiOutcome::Action::kResume:
                     case SbiOutcome::Action::kStopHart:  // the loop parks the hart
                       break;
                     case SbiOutcome::Action::kSuspend:
                       wait_for_interrupt();
                       vm_.sbi().end_suspend(id());
                       break;
                     case SbiOutcome::Action::kShutdown:
                       vm_.post_poweroff(out.status,
                                         fmt::format("SBI shutdown from hart {}", id()));
                       break;
                     case SbiOutcome::Action::kReboot:
                       vm_.post_reboot(fmt::format("SBI reboot from hart {}", id()));
                       break;
                   }
                 },
                 [&](const cpu::ExitWfi&) { wait_for_interrupt(); },
                 [&](const cpu::ExitPageNotPresent& e) {
                   // The distributed memory brings the page here (blocking; serves our flushes).
                   if (links.acquire_page(e.gpa, e.access, serve) || vm_.vcpus_should_stop())
                     return;
                   // On one node all RAM is here: this cannot happen.
                   vm_.post_error(fmt::format(
                       "hart {}: guest-physical page {:#x} is not present on this node (pc {:#x}); "
                       "this cannot happen on a single node",
                       id(), e.gpa & ~kPageMask, hart_.pc()));
                   hart_.kick();
                 },
                 [&](const cpu::ExitException& e) {
                   // Not intercepted in this monitor's default controls; if a control asked for it,
                   // hand the exception to the guest as if nothing had intercepted it.
                   hart_.deliver_exception(e.cause, e.tval);
                 },
                 [&](const cpu::ExitCsrAccess&) {},  // run() again executes the access
                 [&](const cpu::ExitBreakpoint&) {},
                 [&](const cpu::ExitSingleStep&) {},
                 [&](const cpu::ExitKicked&) {},  // the loop re-checks the VM and HSM state
                 [&](const cpu::ExitBudgetExhausted&) {},
             },
             exit);
}

void Vcpu::wait_for_interrupt() {
  const cpu::TimeSource& time = hart_.time_source();
  for (;;) {
    hart_.service_requests();
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
    hart_.service_requests();
    if (vm_.vcpus_should_stop() || vm_.sbi().state(id()) != HsmState::kStopped) return;
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, kMaxSleep, [&] { return woken_; });
    woken_ = false;
  }
}

}  // namespace dvmm::vmm
