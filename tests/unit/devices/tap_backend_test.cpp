// TapBackend: only the errors that tell the user what to do; attaching to a real TAP
// interface needs an administrator, so it is not tested here.
#include "devices/net/tap_backend.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

namespace dvmm::devices {
namespace {

std::string error_of(const std::string& name, const std::string& device) {
  try {
    TapBackend backend(name, device);
  } catch (const NetError& error) {
    return error.what();
  }
  return "";
}

TEST(TapBackendTest, MissingTunDeviceIsAnError) {
  const std::string error = error_of("dvmmtest0", "/nonexistent/net/tun");
  EXPECT_NE(error.find("tap dvmmtest0"), std::string::npos) << error;
  EXPECT_NE(error.find("/nonexistent/net/tun does not exist"), std::string::npos) << error;
}

TEST(TapBackendTest, NoPermissionSaysHowToCreateTheInterface) {
  const int probe = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (probe >= 0) ::close(probe);
  if (probe >= 0 && ::geteuid() == 0) {
    GTEST_SKIP() << "root may create TAP interfaces; no permission error to see";
  }
  if (probe < 0 && errno != EACCES && errno != EPERM) GTEST_SKIP() << "no /dev/net/tun";
  const std::string error = error_of("dvmmtest0", "/dev/net/tun");
  EXPECT_NE(error.find("ip tuntap add dev dvmmtest0 mode tap user $USER"), std::string::npos)
      << error;
}

}  // namespace
}  // namespace dvmm::devices
