// One vCPU: the host thread that runs one hart (Hart::run) and handles its exits, the
// analogue of a KVM vCPU thread around KVM_RUN. MMIO goes to the machine's devices, SBI calls
// to the Sbi, WFI and a stopped or suspended hart sleep on a condition variable until an
// interrupt, the hart's timer deadline, a request from another thread (TLB flush, HSM start)
// or the VM's stop.
//
// Threads: start()/join() on the VM's controlling thread; wake(), the counters and the
// control-plane section from any thread (wake() is the hart's wakeup callback); everything
// else on the vCPU's own thread.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cpu/exit.hpp"
#include "cpu/hart.hpp"
#include "vmm/vm_controls.hpp"

namespace dvmm::vmm {

class Vm;

class Vcpu {
 public:
  Vcpu(Vm& vm, cpu::Hart& hart);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  HartId id() const { return hart_.id(); }
  cpu::Hart& hart() { return hart_; }

  // Starts the thread; it runs until the VM asks the vCPUs to stop.
  void start();
  // Waits for the thread to end (after Vm has asked it to stop).
  void join();
  // Wakes the thread if it sleeps (WFI, stopped, suspended). Any thread.
  void wake();

  // Exits taken, by kind (index of the cpu::Exit alternative).
  u64 exits(std::size_t kind) const { return exits_[kind].load(std::memory_order_relaxed); }
  // Intercepted exceptions by cause (0..15), CSR accesses, breakpoints and single steps.
  u64 intercepted_exceptions(unsigned cause) const {
    return cause < intercepts_.size() ? intercepts_[cause].load(std::memory_order_relaxed) : 0;
  }
  u64 csr_reads() const { return csr_reads_.load(std::memory_order_relaxed); }
  u64 csr_writes() const { return csr_writes_.load(std::memory_order_relaxed); }

  // ---- control plane (any thread)
  // New controls for this vCPU: the hart applies the engine part at its next instruction
  // boundary (the returned ticket turns controls_applied(ticket) true then); the monitor
  // part (action, tracing, halt polling) applies at the next exit.
  u64 set_controls(std::shared_ptr<const VmControls> controls);
  bool controls_applied(u64 ticket) const {
    return controls_seen_.load(std::memory_order_acquire) >= ticket;
  }
  std::shared_ptr<const VmControls> controls() const;
  // Pause: the vCPU stops at its next instruction boundary and waits (serving flush
  // requests) until resume(). paused() is true while it waits.
  void pause();
  void resume();
  bool paused() const { return in_pause_.load(std::memory_order_acquire); }
  // Intercepted events that paused this vCPU by themselves (action kPause): how many so
  // far, and the exit kind (index of the cpu::Exit alternative) of the last one. A debugger
  // compares the count across a resume to learn which vCPU stopped, and why.
  u64 self_pauses() const { return self_pauses_.load(std::memory_order_acquire); }
  std::size_t last_self_pause_kind() const {
    return self_pause_kind_.load(std::memory_order_relaxed);
  }
  // Runs fn(hart) if the vCPU is paused, and keeps it paused until fn returns (a resume
  // waits for it); false, without calling fn, if it is not paused. The only safe way for
  // another thread to read or change the hart's registers (a debugger).
  bool with_paused_hart(const std::function<void(cpu::Hart&)>& fn);

 private:
  void thread_main();
  void loop();
  // Handles one exit; returns false when the thread should leave its loop.
  void handle(cpu::Exit& exit);
  // Sleeps until an interrupt is pending for the hart (WFI semantics), the VM stops, or
  // something wakes us; serves the hart's pending requests each time it wakes.
  void wait_for_interrupt();
  // Sleeps while the hart is stopped (HSM); serves requests (remote fences) meanwhile.
  void wait_parked();
  void wait_paused();
  // Serves the hart's flush and control requests and acknowledges the controls.
  void serve_requests();
  // What the controls say to do with an intercepted event: trace it, pause.
  void intercepted(const VmControls& c, const std::string& json);
  void trace_sbi(const VmControls& c, const cpu::ExitSbiCall& e);
  void trace_mmio(const VmControls& c, Gpa gpa, unsigned size, u64 value, bool write);
  static std::string csr_label(u16 csr);

  Vm& vm_;
  cpu::Hart& hart_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool woken_ = false;
  std::array<std::atomic<u64>, cpu::kExitKinds> exits_{};
  std::array<std::atomic<u64>, 16> intercepts_{};
  std::atomic<u64> csr_reads_{0};
  std::atomic<u64> csr_writes_{0};

  mutable std::mutex controls_mutex_;
  std::shared_ptr<const VmControls> controls_;
  std::atomic<u64> controls_requested_{0};
  std::atomic<u64> controls_seen_{0};
  std::atomic<bool> pause_requested_{false};
  std::atomic<bool> in_pause_{false};
  std::atomic<u64> halt_poll_ns_{0};
  std::size_t exit_kind_ = 0;  // of the exit being handled (vCPU thread)
  std::atomic<u64> self_pauses_{0};
  std::atomic<std::size_t> self_pause_kind_{0};
  // Held by with_paused_hart() and by the paused vCPU while it serves requests or leaves
  // the pause, so a debugger never touches the hart while this thread does.
  std::mutex debug_mutex_;
};

}  // namespace dvmm::vmm
