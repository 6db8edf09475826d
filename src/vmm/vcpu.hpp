// One vCPU: the host thread that runs one hart (Hart::run) and handles its exits, the
// analogue of a KVM vCPU thread around KVM_RUN. MMIO goes to the machine's devices, SBI calls
// to the Sbi, WFI and a stopped or suspended hart sleep on a condition variable until an
// interrupt, the hart's timer deadline, a request from another thread (TLB flush, HSM start)
// or the VM's stop.
//
// Threads: start()/join() on the VM's controlling thread; wake() from any thread (it is the
// hart's wakeup callback); everything else on the vCPU's own thread.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "cpu/exit.hpp"
#include "cpu/hart.hpp"

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

  Vm& vm_;
  cpu::Hart& hart_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool woken_ = false;
  std::array<std::atomic<u64>, cpu::kExitKinds> exits_{};
};

}  // namespace dvmm::vmm
