// `dvmm run`: boot a guest, either running one command in it (`dvmm run -- CMD ARGS...`,
// exit status = the command's) or with an interactive console; on this process alone, or
// across N node processes on this host (`--nodes N`, issue 4).
// `dvmm node`: one node of a distributed VM whose nodes are started by the user or a
// launcher (Slurm, mpirun) on several hosts, meeting through a cluster file; also what
// `dvmm run --nodes N` starts for ranks 1..N-1.
// Both may take their options from a VM configuration file (`--config`, cli/vm_config.hpp),
// which main() reads into RunOptions before run_command().
//
// Threads: main thread only.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "vmm/vm_controls.hpp"

namespace dvmm::cli {

// Exit statuses of `dvmm run` besides the guest command's own.
inline constexpr int kExitError = 1;      // bad input or a monitor error
inline constexpr int kExitTimeout = 124;  // --timeout expired (as timeout(1))
inline constexpr int kExitPanic = 125;    // the guest kernel panicked

struct RunOptions {
  std::string name;  // empty: not given (main() makes it "dvmm-<pid>")
  // --config FILE (cli/vm_config.hpp) and the keys ("kernel", "cluster.nodes", ...) that
  // came from it rather than from flags: nodes other than rank 0 ignore the guest inputs
  // from the file instead of refusing them, so every node can read the same file.
  std::string config_file;
  std::set<std::string> config_keys;
  unsigned vcpus = 0;  // 0: not given (2 on one node)
  std::string memory;  // empty: not given (512M on one node)
  // A distributed VM: N nodes (0: not given, one node), each with its vCPUs and memory.
  unsigned nodes = 0;
  unsigned vcpus_per_node = 0;  // 0: not given
  std::string memory_per_node;
  // `dvmm node`
  bool node_mode = false;
  std::optional<unsigned> rank;
  std::string bootstrap_dir;  // one host (what `run --nodes` passes its children)
  std::string cluster_file;   // several hosts
  double join_timeout_s = 30;
  std::string kernel;
  std::string initrd;
  std::vector<std::string> initrd_extra;
  std::string append;
  bool append_given = false;
  double timeout_s = 0;
  bool verbose = false;
  std::vector<std::string> command;
  // The execution controls the VM starts with (the file's [controls]).
  vmm::VmControls controls;
  // --gdb [HOST:]PORT: a gdb remote stub listens there (control/gdb_stub.hpp); one node only.
  std::string gdb;
  // Virtio devices: --disk and --net specs as given (vmm::parse_disk_spec,
  // devices::parse_net_spec), --rng, --vconsole FILE.
  std::vector<std::string> disks;
  std::vector<std::string> nets;
  bool rng = false;
  std::string vconsole;
  // --ivc GROUP[,size=..][,rank=R][,members=N]: inter-VM communication groups
  // (vmm::parse_ivc_spec).
  std::vector<std::string> ivcs;
  // --root DEV: the guest's init mounts /dev/DEV as its root (added to the command line).
  std::string root;
};

// Adds the `run` subcommand and its options to `app`.
CLI::App* add_run_command(CLI::App& app, RunOptions& options);
// Adds the `node` subcommand (sets options.node_mode when parsed).
CLI::App* add_node_command(CLI::App& app, RunOptions& options);
// Runs it; returns the process exit status.
int run_command(const RunOptions& options);

}  // namespace dvmm::cli
