// A gdb remote stub for a running VM (issue 6, docs/GDB.md): `dvmm run --gdb [HOST:]PORT`
// listens on TCP and gdb (Debian's gdb-multiarch, `target remote HOST:PORT`) debugs the
// guest while it runs, in all-stop mode:
//   - threads are harts (thread id = hart id + 1);
//   - registers x0-x31, pc (32), f0-f31 (33-64), fflags/frm/fcsr (66-68), the S-mode CSRs as
//     gdb numbers them (65 + CSR number) and priv (4161), with a target description for
//     riscv:rv64 (qXfer:features:read);
//   - memory at guest-virtual addresses, through the page tables of the selected hart
//     (physical while its paging is off);
//   - software and hardware breakpoints (Z0/Z1) are the execution controls' instruction
//     breakpoints, so guest memory is never written; single-step is the controls'
//     single-step, with the stepping hart's interrupts held off for the step;
//   - a breakpoint or a step pauses its vCPU by itself (the controls' action kPause); the
//     stub then pauses the other vCPUs and reports the stop; Ctrl-C pauses every vCPU;
//   - detach (or a gdb that goes away) removes the breakpoints, restores the controls as they
//     were before gdb came and resumes every vCPU: the guest keeps running.
//
// Threads: the stub owns one thread that accepts one gdb at a time and talks to it; it uses
// only the Vm's any-thread control API. Construct after the Vm exists (binding may throw);
// destroy before the Vm goes away (a gdb waiting for a stop is told the VM exited).
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "vmm/vm.hpp"

namespace dvmm::control {

struct GdbAddress {
  std::string host;  // a name or a numeric address (IPv6 without brackets)
  u16 port = 0;      // 0: any free port (the stub's where() tells which)
};

// "PORT" (on 127.0.0.1), "HOST:PORT" or "[IPV6]:PORT". nullopt and a message in *error
// for anything else.
std::optional<GdbAddress> parse_gdb_address(std::string_view text, std::string* error);

struct GdbStubHooks {
  // gdb's kill ('k'): end the VM.
  std::function<void(const std::string& why)> stop;
  // Diagnostics, one line each (attach, detach, protocol trouble).
  std::function<void(const std::string&)> log;
};

class GdbStub {
 public:
  // Binds and listens (throws std::runtime_error: an unknown host, a port in use), then
  // serves from its own thread.
  GdbStub(const GdbAddress& address, vmm::Vm& vm, GdbStubHooks hooks);
  ~GdbStub();
  GdbStub(const GdbStub&) = delete;
  GdbStub& operator=(const GdbStub&) = delete;

  // The address it listens on, "HOST:PORT" (the port the kernel chose for port 0).
  const std::string& where() const { return where_; }

 private:
  class Session;
  void serve();

  vmm::Vm& vm_;
  GdbStubHooks hooks_;
  std::string where_;
  int listen_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};  // written once at destruction: every poll() wakes up
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace dvmm::control
