// VM names: the validity rule and the default (see vm_name.hpp).
#include "cli/vm_name.hpp"

#include <unistd.h>

#include <cstdio>

namespace dvmm::cli {

namespace {

constexpr std::size_t kMaxNameLength = 64;

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

std::string vm_name_problem(std::string_view name) {
  if (name.empty()) return "a VM name must not be empty";
  if (name.size() > kMaxNameLength) {
    return "a VM name has at most " + std::to_string(kMaxNameLength) + " characters, not " +
           std::to_string(name.size());
  }
  for (char c : name) {
    if (!name_char(c)) {
      char shown[16];
      std::snprintf(shown, sizeof shown, c >= ' ' && c < 0x7f ? "'%c'" : "byte 0x%02x",
                    static_cast<unsigned char>(c));
      return "a VM name may only have letters, digits, '.', '_' and '-', not " + std::string(shown);
    }
  }
  // The name becomes a file name; these two would be directories.
  if (name == "." || name == "..") return "'" + std::string(name) + "' is not a VM name";
  return {};
}

std::string default_vm_name() {
  return "dvmm-" + std::to_string(::getpid());
}

}  // namespace dvmm::cli
