// Helpers for the inter-VM communication tests (devices/ivc, vmm/vm_ivc): a private runtime
// directory per test, and waiting for something the group's watcher thread does.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

namespace dvmm::test {

// A fresh directory under the test temporary directory, removed (with whatever is left in it)
// at the end. Short, because the group's sockets live below it (AF_UNIX paths < 108 bytes).
class TempRuntimeDir {
 public:
  TempRuntimeDir() {
    std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "ivcXXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp " << tmpl;
      return;
    }
    path_ = tmpl;
  }
  ~TempRuntimeDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempRuntimeDir(const TempRuntimeDir&) = delete;
  TempRuntimeDir& operator=(const TempRuntimeDir&) = delete;

  const std::string& path() const { return path_; }
  std::string group_dir(const std::string& name) const { return path_ + "/ivc/" + name; }

 private:
  std::string path_;
};

// Polls `condition` until it holds or `timeout` passes; returns its last value. For events
// of another thread (the watcher): never a fixed sleep.
template <typename Condition>
bool wait_until(Condition condition,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace dvmm::test
