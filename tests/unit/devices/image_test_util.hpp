// Helpers for the disk image tests (raw_image_test.cpp, qcow2_image_test.cpp): a temporary
// folder, files filled with reproducible random bytes, and running qemu-img/qemu-io.
//
// Threads: test thread only.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/types.hpp"
#include "devices/block/block_image.hpp"

namespace dvmm::devices::test {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "dvmm-image-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::vector<u8> random_bytes(std::size_t n, u64 seed) {
  std::mt19937_64 rng(seed);
  std::vector<u8> out(n);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const u64 v = rng();
    std::memcpy(&out[i], &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<u8>(rng());
  return out;
}

inline void write_file(const std::string& path, const std::vector<u8>& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!f) throw std::runtime_error("cannot write " + path);
}

inline std::vector<u8> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<u8>(std::istreambuf_iterator<char>(f), {});
}

struct CommandResult {
  int status = -1;     // the exit status, or -1 if the command did not exit normally
  std::string output;  // stdout and stderr
};

// Runs `command` with /bin/sh, capturing its output.
inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buffer[4096];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, p)) > 0) r.output.append(buffer, n);
  const int wait_status = ::pclose(p);
  r.status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  return r;
}

inline bool have_qemu_img() {
  static const bool present =
      run_command("qemu-img --version").status == 0 && run_command("qemu-io --version").status == 0;
  return present;
}

#define DVMM_REQUIRE_QEMU_IMG()                                                                    \
  do {                                                                                             \
    if (!::dvmm::devices::test::have_qemu_img()) GTEST_SKIP() << "qemu-img/qemu-io not installed"; \
  } while (0)

// EXPECT_TRUE(contains(message, "part")) says what the message was when it fails.
inline ::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << part << "' not in: " << text;
}

// The message of the ImageError that f() throws, or "(no ImageError)".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ImageError& e) {
    return e.what();
  }
  return "(no ImageError)";
}

// Runs a command that must succeed.
inline std::string must_run(const std::string& command) {
  const CommandResult r = run_command(command);
  EXPECT_EQ(r.status, 0) << command << "\n" << r.output;
  return r.output;
}

}  // namespace dvmm::devices::test
