#include "control/control_paths.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace dvmm::control {

std::string control_dir() {
  std::string dir;
  if (const char* rt = std::getenv("XDG_RUNTIME_DIR"); rt != nullptr && *rt != '\0') {
    dir = std::string(rt) + "/dvmm";
  } else {
    dir = "/tmp/dvmm-" + std::to_string(::getuid());
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create " + dir + ": " + strerror(errno));
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw std::runtime_error(dir + " is not a directory");
  }
  if (st.st_uid != ::getuid() || (st.st_mode & 0077) != 0) {
    throw std::runtime_error(dir + " must belong to you and be closed to others (mode 0700)");
  }
  return dir;
}

std::string socket_path(const std::string& name) {
  return control_dir() + "/" + name + ".sock";
}

std::vector<std::string> listed_vm_names() {
  std::vector<std::string> names;
  const std::string dir = control_dir();
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string f = e->d_name;
      if (f.size() > 5 && f.compare(f.size() - 5, 5, ".sock") == 0) {
        names.push_back(f.substr(0, f.size() - 5));
      }
    }
    ::closedir(d);
  }
  return names;
}

std::string vm_name_problem(std::string_view name) {
  constexpr std::size_t kMaxNameLength = 64;
  if (name.empty()) return "a VM name must not be empty";
  if (name.size() > kMaxNameLength) {
    return "a VM name has at most " + std::to_string(kMaxNameLength) + " characters, not " +
           std::to_string(name.size());
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
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

bool valid_vm_name(const std::string& name) {
  return vm_name_problem(name).empty();
}

}  // namespace dvmm::control
