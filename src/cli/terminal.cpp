#include "cli/terminal.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace dvmm::cli {

namespace {

// The saved terminal state, for the fatal-signal handler (which may only use
// async-signal-safe calls: tcsetattr is one).
termios g_saved;
std::atomic<int> g_saved_fd{-1};

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

void restore_and_reraise(int signo) {
  const int fd = g_saved_fd.exchange(-1);
  if (fd >= 0) tcsetattr(fd, TCSAFLUSH, &g_saved);
  signal(signo, SIG_DFL);
  raise(signo);
}

}  // namespace

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  if (!isatty(fd)) return;
  termios t;
  if (tcgetattr(fd, &t) != 0) return;
  g_saved = t;
  cfmakeraw(&t);
  // Keep output processing off too (cfmakeraw clears OPOST): the guest sends \r\n itself.
  if (tcsetattr(fd, TCSAFLUSH, &t) != 0) return;
  g_saved_fd.store(fd);
  active_ = true;
  for (int s : kFatalSignals) {
    struct sigaction sa {};
    sa.sa_handler = restore_and_reraise;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    sigaction(s, &sa, nullptr);
  }
}

RawTerminal::~RawTerminal() {
  restore();
}

void RawTerminal::restore() {
  if (!active_) return;
  active_ = false;
  const int fd = g_saved_fd.exchange(-1);
  if (fd >= 0) tcsetattr(fd, TCSAFLUSH, &g_saved);
}

SignalWatcher::SignalWatcher(std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGQUIT);
  sigaddset(&set, SIGUSR2);  // our own "stop watching"
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  thread_ = std::thread([this, set] {
    for (;;) {
      int signo = 0;
      if (sigwait(&set, &signo) != 0) continue;
      if (signo == SIGUSR2) return;
      last_.store(signo);
      if (on_signal_) on_signal_(signo);
    }
  });
  thread_handle_ = thread_.native_handle();
}

SignalWatcher::~SignalWatcher() {
  pthread_kill(thread_handle_, SIGUSR2);
  thread_.join();
}

}  // namespace dvmm::cli
