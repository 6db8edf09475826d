#include "devices/private_directory.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace dvmm::devices {

std::string make_private_directories(const std::string& path) {
  for (std::size_t end = 1; end <= path.size(); ++end) {
    if (end != path.size() && path[end] != '/') continue;
    const std::string prefix = path.substr(0, end);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return "cannot create " + prefix + ": " + std::strerror(errno);
    }
  }
  struct stat status {};
  if (::stat(path.c_str(), &status) != 0 || !S_ISDIR(status.st_mode)) {
    return path + " is not a directory";
  }
  return "";
}

}  // namespace dvmm::devices
