// VM names: the validity rule (control/control_paths.hpp, shared with the control socket)
// and the default (see vm_name.hpp).
#include "cli/vm_name.hpp"

#include <unistd.h>

#include "control/control_paths.hpp"

namespace dvmm::cli {

std::string vm_name_problem(std::string_view name) {
  return control::vm_name_problem(name);
}

std::string default_vm_name() {
  return "dvmm-" + std::to_string(::getpid());
}

}  // namespace dvmm::cli
