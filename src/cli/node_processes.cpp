#include "cli/node_processes.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace dvmm::cli {

namespace {

std::mutex g_mutex;  // pids_ and finishing_ (one NodeProcesses per process)

std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0)
    throw std::runtime_error(std::string("cannot find dvmm's executable: ") + strerror(errno));
  return std::string(buf, static_cast<std::size_t>(n));
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "ended (wait status " + std::to_string(status) + ")";
}

void remove_tree(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      ::unlink((dir + "/" + e->d_name).c_str());
    }
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

}  // namespace

std::string NodeProcesses::make_bootstrap_dir() {
  // Short: the directory holds a UNIX socket, whose path is limited to ~100 bytes.
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  std::string base = runtime != nullptr && *runtime != '\0' && std::strlen(runtime) < 60
                         ? std::string(runtime)
                         : std::string("/tmp");
  std::string tmpl = base + "/dvmm-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("cannot create a directory under " + base + ": " + strerror(errno));
  }
  return tmpl;
}

NodeProcesses::NodeProcesses(
    unsigned count,
    const std::function<std::vector<std::string>(unsigned rank, const std::string& dir)>& node_args,
    ExitCallback on_exit)
    : on_exit_(std::move(on_exit)) {
  dir_ = make_bootstrap_dir();
  const std::string exe = self_executable();
  const pid_t parent = ::getpid();
  for (unsigned rank = 1; rank < count; ++rank) {
    std::vector<std::string> args = node_args(rank, dir_);
    args.insert(args.begin(), "dvmm");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      const std::string why = strerror(errno);
      finish(0);
      throw std::runtime_error("cannot start node " + std::to_string(rank) + ": fork: " + why);
    }
    if (pid == 0) {
      // The child: die with the parent; stay out of the terminal's signals; undo the
      // parent's blocked signals (SignalWatcher), which exec would keep.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::setpgid(0, 0);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(exe.c_str(), argv.data());
      const std::string msg = "dvmm: error: cannot start node " + std::to_string(rank) + ": " +
                              exe + ": " + strerror(errno) + "\n";
      [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, msg.data(), msg.size());
      ::_exit(127);
    }
    std::lock_guard lock(g_mutex);
    pids_.push_back(pid);
  }
  watcher_ = std::thread([this] { watch(); });
}

NodeProcesses::~NodeProcesses() {
  finish(0);
}

void NodeProcesses::watch() {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      return;  // ECHILD: all reaped
    }
    unsigned rank = 0;
    bool report = false;
    {
      std::lock_guard lock(g_mutex);
      for (std::size_t i = 0; i < pids_.size(); ++i) {
        if (pids_[i] == pid) {
          pids_[i] = -1;
          rank = static_cast<unsigned>(i + 1);
          report = !finishing_;
        }
      }
    }
    if (report && on_exit_) on_exit_(rank, describe_status(status));
  }
}

void NodeProcesses::finish(int grace_ms) {
  if (finished_) return;
  finished_ = true;
  {
    std::lock_guard lock(g_mutex);
    finishing_ = true;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  for (;;) {
    bool all = true;
    {
      std::lock_guard lock(g_mutex);
      for (pid_t p : pids_) all = all && p < 0;
      if (!all && std::chrono::steady_clock::now() >= deadline) {
        for (pid_t p : pids_) {
          if (p > 0) ::kill(p, SIGKILL);
        }
        break;
      }
    }
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (watcher_.joinable()) watcher_.join();
  if (!dir_.empty()) remove_tree(dir_);
}

}  // namespace dvmm::cli
