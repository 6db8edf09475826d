// `dvmm run`: boot a guest on this node, either running one command in it (`dvmm run --
// CMD ARGS...`, exit status = the command's) or with an interactive console.
//
// Threads: main thread only.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace dvmm::cli {

// Exit statuses of `dvmm run` besides the guest command's own.
inline constexpr int kExitError = 1;      // bad input or a monitor error
inline constexpr int kExitTimeout = 124;  // --timeout expired (as timeout(1))
inline constexpr int kExitPanic = 125;    // the guest kernel panicked

struct RunOptions {
  unsigned vcpus = 2;
  std::string memory = "512M";
  std::string kernel;
  std::string initrd;
  std::vector<std::string> initrd_extra;
  std::string append;
  bool append_given = false;
  double timeout_s = 0;
  bool verbose = false;
  std::vector<std::string> command;
};

// Adds the `run` subcommand and its options to `app`.
CLI::App* add_run_command(CLI::App& app, RunOptions& options);
// Runs it; returns the process exit status.
int run_command(const RunOptions& options);

}  // namespace dvmm::cli
