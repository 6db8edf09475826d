// The VM configuration file (`dvmm run --config vm.toml`, `dvmm node --config vm.toml`;
// issue 6): a TOML file that says everything the `run` flags can say, plus the execution
// controls ([controls], onto vmm::VmControls). The format is documented in docs/CONFIG.md.
// Flags given on the command line override the file; relative paths in the file are
// relative to the file's directory. Every error is one line naming the file, the line and
// the key: "vm.toml:7: controls.exceptions: unknown exception 'ilegal' (known: ...)".
//
// Threads: main thread only (plain functions).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "cli/run_command.hpp"

namespace dvmm::cli {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Whether a command-line flag was given, by its long name ("--vcpus") or, for the guest
// command, "command".
using FlagGiven = std::function<bool(std::string_view flag)>;

// What `cmd` (the parsed `run` or `node` subcommand) was given.
FlagGiven flags_given_to(const CLI::App& cmd);

// Reads the configuration file at `path` into `options`: every key in the file replaces the
// option, unless `given` says its flag was on the command line (a sizing flag overrides both
// keys of its pair: --vcpus or --vcpus-per-node drops the file's vcpus and
// cluster.vcpus_per_node, likewise for memory). [controls] goes to options.controls; the
// keys taken from the file are added to options.config_keys. Every value is checked, also
// those a flag overrides. Throws ConfigError and leaves `options` unchanged on any error.
void apply_vm_config(const std::string& path, RunOptions& options, const FlagGiven& given = {});

}  // namespace dvmm::cli
