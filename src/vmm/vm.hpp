// A virtual machine on one node: the machine (board), the SBI, one vCPU thread per hart, and
// the VM's life cycle — boot, run, reboot in place (without restarting the process), power
// off with the guest's exit status, guest panic detection on the console, and a timeout.
//
// Threads: construct, run() and the accessors on one controlling thread. request_stop() and
// push_console_input() from any thread (a signal-handling or console thread). The console
// output callback is called from vCPU threads (one byte string at a time, in guest order).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "machine/machine.hpp"
#include "vmm/node_links.hpp"
#include "vmm/sbi.hpp"
#include "vmm/trace_buffer.hpp"
#include "vmm/vcpu.hpp"
#include "vmm/vm_controls.hpp"
#include "vmm/vm_devices.hpp"

namespace dvmm::vmm {

struct VmOptions {
  // Receives everything the guest prints on its consoles (UART and SBI debug console).
  std::function<void(std::string_view)> console_output;
  // Diagnostics for the user (one line each, no trailing newline): errors, and with
  // `verbose` the boot layout, reboots and counters.
  std::function<void(const std::string&)> log;
  bool verbose = false;
  // Give up after this long (zero: never).
  std::chrono::milliseconds timeout{0};
  // After the console shows "Kernel panic - not syncing", keep the guest running this long
  // to let the rest of the panic report out (it ends early at "---[ end Kernel panic").
  std::chrono::milliseconds panic_grace{1000};
  // Instructions per Hart::run() call.
  u64 run_budget = 50'000'000;
  // The other nodes of a distributed VM (not owned; must outlive the Vm). Null: one node,
  // every hart, device and page is here. Only local harts get a running vCPU thread.
  NodeLinks* links = nullptr;
  // False on the nodes of a distributed VM that do not load the boot images: boot() then
  // only resets the HSM states (every local hart stopped, waiting for hart_start) and sets
  // guest time to count from `time_epoch_ns` (the boot node's Machine::time_epoch_ns(),
  // CLOCK_MONOTONIC on the same host).
  bool boot_node = true;
  u64 time_epoch_ns = 0;
  // False: a guest reboot powers off instead (a distributed VM cannot yet reset every
  // node's memory and harts together).
  bool reboot_allowed = true;
  // The execution controls every vCPU starts with (issue 6).
  VmControls controls;
  // The virtio devices (disks, network cards, rng, console) and the VM's node count
  // (node=N placements are checked against it).
  VmDeviceSpecs devices;
  unsigned node_count = 1;
};

struct VmResult {
  enum class Kind {
    kPowerOff,  // the guest powered off; `status` is its exit status
    kPanic,     // the guest kernel panicked; `message` is the panic line
    kTimeout,   // --timeout expired
    kStopped,   // request_stop() (a signal, the console's quit key)
    kError,     // the monitor could not go on (bad boot image, internal error)
  };
  Kind kind = Kind::kError;
  u32 status = 0;
  std::string message;
  unsigned reboots = 0;
};

class Vm final : private SbiPlatform {
 public:
  // Builds the machine (throws machine::MachineError for a bad configuration).
  Vm(const machine::MachineConfig& config, VmOptions options);
  ~Vm() override;
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Loads the boot images and checks them, without running (throws MachineError: a missing
  // or non-Image kernel, an initrd that does not fit). run() boots again if needed.
  machine::BootInfo boot();
  // Boots (unless boot() just did) and runs until the guest powers off, panics, times out,
  // or request_stop(). Never throws for guest behaviour.
  VmResult run();

  // Any thread.
  void request_stop(std::string reason);
  // A graceful stop: presses the power button, and if the guest has not powered off within
  // `grace`, stops it like request_stop(reason). Returns false, doing nothing, when no guest
  // driver listens to the button (the caller then stops the guest hard).
  bool request_shutdown(std::string reason, std::chrono::milliseconds grace);
  void push_console_input(std::span<const u8> bytes);

  // ---- control plane (any thread; only this node's vCPUs are affected)
  // New controls for every vCPU, or for one; waits up to `wait` until every running vCPU
  // concerned applies them. Returns how long that took, or nullopt if some did not in time.
  std::optional<std::chrono::nanoseconds> set_controls(const VmControls& controls,
                                                       std::optional<HartId> vcpu,
                                                       std::chrono::milliseconds wait);
  VmControls controls(HartId vcpu) const;
  // Pauses (resumes) every vCPU or one; pause waits up to `wait` until they stopped.
  bool pause(std::optional<HartId> vcpu, std::chrono::milliseconds wait);
  void resume(std::optional<HartId> vcpu);
  // True when every running local vCPU is paused.
  bool paused() const;
  bool running() const { return running_; }
  const Vcpu& vcpu(HartId id) const { return *vcpus_.at(id); }
  // Runs fn on hart `id` if its vCPU is local and paused, holding it paused meanwhile
  // (Vcpu::with_paused_hart); false otherwise. For debuggers (the gdb stub).
  bool with_paused_hart(HartId id, const std::function<void(cpu::Hart&)>& fn);
  TraceBuffer& trace() { return trace_; }

  machine::Machine& machine() { return *machine_; }
  VmDevices& devices() { return *devices_; }
  NodeLinks& node_links() { return *links_; }
  Sbi& sbi() { return *sbi_; }

  // ---- for the vCPU threads (vmm-internal)
  bool vcpus_should_stop() const { return stop_vcpus_.load(std::memory_order_acquire); }
  const VmOptions& options() const { return options_; }
  void post_poweroff(u32 status, std::string why);
  void post_reboot(std::string why);
  void post_error(std::string message);
  void log(const std::string& line) const;

 private:
  struct Event {
    enum class Kind { kPowerOff, kReboot, kPanic, kStopped, kError } kind;
    u32 status = 0;
    std::string message;
  };

  // SbiPlatform
  unsigned hart_count() const override { return machine_->hart_count(); }
  cpu::Hart& hart(HartId id) override { return machine_->hart(id); }
  memory::GuestRam& ram() override { return machine_->ram(); }
  void console_write(std::string_view bytes) override;
  int console_read() override;
  void wake(HartId id) override;
  bool stopping() const override { return vcpus_should_stop(); }
  NodeLinks& links() override { return *links_; }

  void post(Event e);
  void on_console(std::string_view bytes);
  void start_vcpus();
  void stop_vcpus();
  void log_counters() const;

  VmOptions options_;
  TraceBuffer trace_;
  SingleNodeLinks single_node_;
  NodeLinks* links_ = &single_node_;
  std::unique_ptr<machine::Machine> machine_;
  std::unique_ptr<Sbi> sbi_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::unique_ptr<VmDevices> devices_;  // after the harts: its workers stop first
  std::unique_ptr<VmIvc> ivc_;          // after the machine: its devices stop first
  std::atomic<bool> stop_vcpus_{false};
  bool booted_ = false;
  std::atomic<bool> running_{false};
  bool input_to_sbi_ = false;  // console=hvc0: host input goes to the SBI console

  std::mutex event_mutex_;
  std::condition_variable event_cv_;
  std::optional<Event> event_;  // the first terminal event wins; reboot only if none
  // Panic detection (under console_mutex_).
  std::mutex console_mutex_;
  std::string console_line_;
  bool panic_seen_ = false;
  std::string panic_line_;
  std::chrono::steady_clock::time_point panic_deadline_;
  // request_shutdown(): when to stop hard, and why (under event_mutex_).
  std::optional<std::chrono::steady_clock::time_point> shutdown_deadline_;
  std::string shutdown_reason_;
  bool panic_done_ = false;

  std::mutex input_mutex_;
  std::deque<u8> sbi_input_;
};

}  // namespace dvmm::vmm
