// Directories under the runtime directory that only their owner may enter (the virtual
// switch's, the inter-VM groups'): created with their missing parents, mode 0700.
//
// Threads: any (no state).
#pragma once

#include <string>

namespace dvmm::devices {

// Creates `path` and its missing parents with mode 0700 (existing ones are left alone).
// Returns "" on success, else why not ("cannot create P: reason", "P is not a directory").
std::string make_private_directories(const std::string& path);

}  // namespace dvmm::devices
