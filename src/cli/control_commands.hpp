// The commands that talk to running VMs through their control sockets (issue 6):
// dvmm list | info | pause | resume | stop | kill | stats | controls | trace. Each prints a
// human-readable answer, or the API's JSON with --json; exit status 0 on success, 1 on an
// error (a VM that does not exist, a refused request), with one line on stderr.
//
// Threads: main thread only.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

namespace dvmm::cli {

struct ControlOptions {
  std::string command;  // which subcommand was parsed
  std::string name;
  bool json = false;
  std::optional<unsigned> vcpu;
  std::string controls_verb;             // get | set
  std::vector<std::string> assignments;  // KEY=VALUE for `controls set`
  bool follow = false;                   // trace --follow
  unsigned long long since = 0;          // trace --since
  double grace_s = 10;                   // stop: graceful wait before kill
};

// Adds the subcommands; returns them so main can tell which one was parsed.
std::vector<CLI::App*> add_control_commands(CLI::App& app, ControlOptions& options);
int control_command(const ControlOptions& options);

}  // namespace dvmm::cli
