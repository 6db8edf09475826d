// A VM's name (`--name`, `name = ...` in the configuration file, issue 6): what the user
// calls a running VM by (`dvmm info NAME`, ...), so it also becomes a file name (the VM's
// control socket), hence the narrow alphabet.
//
// Threads: plain functions, any thread.
#pragma once

#include <string>
#include <string_view>

namespace dvmm::cli {

// Why `name` is not a valid VM name (1-64 characters of A-Z, a-z, 0-9, '.', '_', '-', and
// not "." or ".."), or an empty string when it is valid.
std::string vm_name_problem(std::string_view name);

// The name of a VM the user did not name: "dvmm-<pid>".
std::string default_vm_name();

}  // namespace dvmm::cli
