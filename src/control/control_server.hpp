// The control endpoint of a running VM (issue 6): JSON over HTTP on a UNIX socket named
// after the VM (control_paths.hpp), in the style of cloud-hypervisor's API. The socket's
// directory is the owner's alone. Routes (errors are {"error": "..."} with status 400 for
// bad input, 404 for an unknown route or vCPU, 409 when the VM is not running):
//   GET  /api/v1/vm.info                      name, pid, state, vCPUs, memory, nodes, uptime
//   PUT  /api/v1/vm.pause   {"vcpu": N}?       pause all (or one) vCPU; waits until paused
//   PUT  /api/v1/vm.resume  {"vcpu": N}?
//   PUT  /api/v1/vm.stop {"grace_s": G}?      ends the VM (exit status 0 of `dvmm run`, as a
//                                             console quit): presses the power button and
//                                             stops hard after G s (default 10) if the guest
//                                             has not shut down, or at once if no guest
//                                             driver listens to the button (or G is 0);
//                                             answers {"stopping", "graceful"}.
//                                             PUT /api/v1/vm.kill ends the process at once
//   GET  /api/v1/vm.stats                     per-vCPU instructions, exits, intercepts; SBI
//   GET  /api/v1/vm.controls?vcpu=N           the controls (controls_json.hpp)
//   PUT  /api/v1/vm.controls {"vcpu": N?, ...} a partial update; answers when every vCPU
//                                             concerned applied it, with "applied_us"
//   GET  /api/v1/vm.trace?since=S&max=M&wait_ms=W
//                                             {"next", "dropped", "events": [...]}
//
// Threads: the server runs its own threads (httplib's pool); handlers call the Vm's any-
// thread control methods. Construct after the Vm exists; destroy before it goes away.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "vmm/vm.hpp"

namespace httplib {
class Server;
}

namespace dvmm::control {

struct ControlHooks {
  // Static facts for vm.info (nodes, memory as given, ...), merged into the answer.
  std::function<std::string()> info_json;  // a JSON object
  // Ends the VM (a stop request: graceful for `grace` when the guest listens to the power
  // button; returns whether it was graceful) / the process.
  std::function<bool(const std::string& why, std::chrono::milliseconds grace)> stop;
  std::function<void()> kill;
  // A distributed VM: applies controls on the other nodes too (after this node's); returns
  // false on failure. Unset: one node.
  std::function<bool(const vmm::VmControls&, std::optional<HartId>)> set_remote_controls;
  // A distributed VM: the other nodes' node_stats_json(), or nullopt when one did not answer.
  std::function<std::optional<std::vector<std::string>>()> remote_stats;
  std::function<void(const std::string&)> log;
};

// The counters of this node's vCPUs and SBI calls, as the vm.stats route shows them (a JSON
// object: "vcpus", "sbi", "trace_events"); what each node of a distributed VM contributes.
std::string node_stats_json(vmm::Vm& vm);

class ControlServer {
 public:
  // Binds the socket (throws std::runtime_error: a VM of that name runs already, the
  // directory is unusable) and starts serving.
  ControlServer(std::string name, vmm::Vm& vm, ControlHooks hooks);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::string& path() const { return path_; }

 private:
  void routes();

  std::string name_;
  std::string path_;
  vmm::Vm& vm_;
  ControlHooks hooks_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace dvmm::control
