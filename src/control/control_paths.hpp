// Where the control sockets of running VMs live: one UNIX socket per VM, named after it,
// in a directory only its owner can enter ($XDG_RUNTIME_DIR/dvmm, else /tmp/dvmm-UID).
//
// Threads: free functions, any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dvmm::control {

// The directory (created with mode 0700 if missing). Throws std::runtime_error when it
// cannot be created or belongs to someone else / is open to others.
std::string control_dir();
// The socket path of VM `name`.
std::string socket_path(const std::string& name);
// Names of the VMs that have a socket in the directory (live or stale).
std::vector<std::string> listed_vm_names();
// Why `name` is not a valid VM name (1-64 of [A-Za-z0-9._-], not "." or ".."), or "" if
// it is one. The CLI, the configuration file and the control socket share this rule.
std::string vm_name_problem(std::string_view name);
bool valid_vm_name(const std::string& name);

}  // namespace dvmm::control
