// The node processes of `dvmm run --nodes N` on one host: this process is rank 0; it
// starts ranks 1..N-1 as `dvmm node --bootstrap-dir DIR --rank R ...` children, watches
// them, and cleans up. The children die with their parent (PR_SET_PDEATHSIG), live in their
// own process group (a Ctrl-C on the terminal reaches only rank 0, which ends the VM for
// all) and share this process's stdout and stderr.
//
// Threads: the constructor, finish() and the destructor on one thread; the exit callback
// runs on the watcher thread.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace dvmm::cli {

class NodeProcesses {
 public:
  // Called once per child that ends before finish(): its rank and what happened ("exited
  // with status 3", "was killed by signal 9 (Killed)").
  using ExitCallback = std::function<void(unsigned rank, const std::string& how)>;

  // Creates the bootstrap directory and starts ranks 1..count-1, each running this
  // executable with `node_args(rank, bootstrap dir)` (the arguments after argv[0]). Throws
  // std::runtime_error if the directory or a process cannot be created.
  NodeProcesses(unsigned count,
                const std::function<std::vector<std::string>(unsigned rank,
                                                             const std::string& dir)>& node_args,
                ExitCallback on_exit);
  ~NodeProcesses();
  NodeProcesses(const NodeProcesses&) = delete;
  NodeProcesses& operator=(const NodeProcesses&) = delete;

  // Where the nodes meet (LocalBootstrap's directory).
  static std::string make_bootstrap_dir();
  const std::string& bootstrap_dir() const { return dir_; }
  // Waits up to `grace_ms` for every child to exit, then kills the rest; removes the
  // bootstrap directory. Exits seen from now on are not reported. Idempotent.
  void finish(int grace_ms);

 private:
  void watch();

  std::string dir_;
  std::vector<pid_t> pids_;  // index rank - 1; -1 once reaped
  ExitCallback on_exit_;
  std::thread watcher_;
  bool finishing_ = false;
  bool finished_ = false;
};

}  // namespace dvmm::cli
