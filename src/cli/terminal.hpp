// The host terminal for interactive `dvmm run`: raw mode (restored on every way out: normal
// return, exceptions, SIGTERM/SIGHUP, and crashes), and a signal thread that turns SIGINT,
// SIGTERM and SIGHUP into a stop request.
//
// Threads: RawTerminal and SignalWatcher are created and destroyed on the main thread.
#pragma once

#include <pthread.h>
#include <termios.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace dvmm::cli {

// Puts a terminal into raw mode for its lifetime. Also installs handlers for fatal signals
// that restore the terminal before the process dies.
class RawTerminal {
 public:
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  bool active() const { return active_; }
  void restore();

 private:
  int fd_;
  bool active_ = false;
};

// Blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT in the calling thread (and so in every thread
// it starts afterwards: create it before any other thread) and waits for them on its own
// thread, calling `on_signal(signo)`. The destructor stops the thread.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void(int)> on_signal);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  // The last signal received, 0 if none.
  int last_signal() const { return last_.load(); }

 private:
  std::function<void(int)> on_signal_;
  std::thread thread_;
  pthread_t thread_handle_{};
  std::atomic<int> last_{0};
};

}  // namespace dvmm::cli
