#include "cli/run_command.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "cli/terminal.hpp"
#include "machine/guest_command.hpp"
#include "machine/machine.hpp"
#include "vmm/host_console.hpp"
#include "vmm/vm.hpp"

namespace dvmm::cli {

namespace {

constexpr const char* kDefaultAppend = "console=ttyS0 quiet";
constexpr const char* kCommandAppend = "console=ttyS0 quiet loglevel=1";
constexpr const char* kVerboseAppend = "console=ttyS0 earlycon=sbi dvmm.verbose";
constexpr const char* kInitBanner = "dvmm-guest: init reached";

std::string guest_dir() {
  if (const char* d = std::getenv("DVMM_CACHE_DIR"); d != nullptr && *d != '\0') {
    return std::string(d) + "/guest/current";
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.cache/dvmm/guest/current";
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string build_hint() {
  return std::string("build the default guest image with ") + DVMM_SOURCE_DIR +
         "/guest/build.sh (or run the README's setup command)";
}

// Writes all of `bytes` to fd, ignoring errors (a closed stdout must not stop the guest).
void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

struct Failure {
  std::string message;
};

}  // namespace

CLI::App* add_run_command(CLI::App& app, RunOptions& o) {
  CLI::App* run = app.add_subcommand(
      "run", "Boot a guest; run CMD in it and exit with its status, or give a console");
  run->add_option("--vcpus", o.vcpus, "Number of virtual harts (1-64)")
      ->default_val(2)
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) {
              return "'" + s + "' is not a number";
            }
            if (s.size() > 3 || std::stoi(s) < 1 || std::stoi(s) > 64) {
              return "must be between 1 and 64, not " + s;
            }
            return {};
          },
          "1-64"));
  run->add_option("--memory", o.memory,
                  "Guest RAM: a number with K, M, G or T (a bare number is MiB); at least 64M")
      ->default_val("512M");
  run->add_option("--kernel", o.kernel,
                  "RISC-V Linux Image (default: the built-in guest's, under $DVMM_CACHE_DIR or "
                  "~/.cache/dvmm/guest/current)");
  run->add_option("--initrd", o.initrd, "Initramfs (default: the built-in guest's)");
  run->add_option("--initrd-extra", o.initrd_extra,
                  "A cpio archive (plain or compressed) appended to the initrd, e.g. with your "
                  "own programs; repeatable")
      ->take_last()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  run->add_option("--append", o.append,
                  std::string("Kernel command line, replacing the default (\"") + kDefaultAppend +
                      "\"; with a command: \"" + kCommandAppend + "\"; with --verbose: \"" +
                      kVerboseAppend + "\")");
  run->add_option("--timeout", o.timeout_s, "Stop the guest after SECONDS and exit with status 124")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            char* end = nullptr;
            const double v = std::strtod(s.c_str(), &end);
            if (s.empty() || end == nullptr || *end != '\0') return "'" + s + "' is not a number";
            if (!(v > 0)) return "must be a positive number of seconds, not " + s;
            return {};
          },
          "SECONDS"));
  run->add_flag("-v,--verbose", o.verbose,
                "Show the kernel's boot messages (early console included) and monitor details");
  run->add_option("command", o.command, "Command to run in the guest (after --)");
  run->footer(
      "With a command, dvmm prints its output and exits with its exit status; 124 means the\n"
      "--timeout expired, 125 that the guest kernel panicked, 1 a monitor error.\n"
      "Without one, the guest's shell is on this terminal: C-a x quits, C-a h helps.\n"
      "Examples:\n"
      "  dvmm run -- uname -a\n"
      "  dvmm run --vcpus 4 --memory 1G -- nproc\n"
      "  dvmm run --initrd-extra my-files.cpio -- /my/program");
  return run;
}

int run_command(const RunOptions& o) {
  const bool command_mode = !o.command.empty();
  std::mutex out_mutex;  // stdout/stderr lines from several threads
  bool raw = false;
  auto log = [&](const std::string& line) {
    std::lock_guard lock(out_mutex);
    std::string s = "dvmm: " + line + (raw ? "\r\n" : "\n");
    write_all(STDERR_FILENO, s);
  };
  auto fail = [&](const std::string& message) {
    log("error: " + message);
    return kExitError;
  };

  // ---- inputs
  machine::MachineConfig config;
  config.vcpus = o.vcpus;
  try {
    config.memory_size = machine::parse_memory_size(o.memory);
    machine::check_memory_size(config.memory_size);
  } catch (const machine::MachineError& e) {
    return fail(e.what());
  }
  const std::string dir = guest_dir();
  if (!o.kernel.empty()) {
    if (!is_file(o.kernel)) {
      return fail("kernel " + o.kernel + ": " +
                  (::access(o.kernel.c_str(), F_OK) == 0 ? "not a regular file" : "no such file"));
    }
    config.kernel_path = o.kernel;
  } else {
    config.kernel_path = dir + "/Image";
    if (!is_file(config.kernel_path)) {
      return fail("no guest kernel at " + config.kernel_path + "; " + build_hint() +
                  ", or pass --kernel");
    }
  }
  if (!o.initrd.empty()) {
    if (!is_file(o.initrd)) return fail("initrd " + o.initrd + ": no such file");
    config.initrd_paths.push_back(o.initrd);
  } else if (is_file(dir + "/initramfs.cpio.gz")) {
    config.initrd_paths.push_back(dir + "/initramfs.cpio.gz");
  } else if (o.kernel.empty() || command_mode) {
    return fail("no guest initramfs at " + dir + "/initramfs.cpio.gz; " + build_hint() +
                ", or pass --initrd");
  }
  for (const std::string& extra : o.initrd_extra) {
    if (!is_file(extra)) return fail("--initrd-extra " + extra + ": no such file");
    config.initrd_paths.push_back(extra);
  }
  if (command_mode) config.initrd_appendix = machine::make_command_archive(o.command);
  if (!o.append.empty()) {
    config.bootargs = o.append;
  } else {
    config.bootargs = o.verbose ? kVerboseAppend : command_mode ? kCommandAppend : kDefaultAppend;
  }

  // ---- console output
  vmm::LineFilter filter(command_mode && !o.verbose ? std::vector<std::string>{kInitBanner}
                                                    : std::vector<std::string>{});
  // In command mode the output is the command's: plain "\n" line ends, as from a program.
  vmm::CrlfFilter crlf;
  vmm::VmOptions vo;
  vo.verbose = o.verbose;
  vo.log = log;
  vo.console_output = [&](std::string_view bytes) {
    // Called under the console device's lock: output is in guest order already.
    std::string shown = filter.feed(bytes);
    if (command_mode) shown = crlf.feed(shown);
    if (!shown.empty()) write_all(STDOUT_FILENO, shown);
  };
  if (o.timeout_s > 0) {
    vo.timeout = std::chrono::milliseconds(static_cast<i64>(std::ceil(o.timeout_s * 1000)));
  }

  // Signals go to one thread (set up before any other thread starts).
  ::signal(SIGPIPE, SIG_IGN);
  vmm::Vm* vm_ptr = nullptr;
  std::atomic<bool> vm_ready{false};
  SignalWatcher signals([&](int signo) {
    if (vm_ready.load()) vm_ptr->request_stop(std::string("stopped by signal ") + strsignal(signo));
  });

  std::unique_ptr<vmm::Vm> vm;
  try {
    vm = std::make_unique<vmm::Vm>(config, vo);
    vm->boot();
  } catch (const machine::MachineError& e) {
    return fail(e.what());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  vm_ptr = vm.get();
  vm_ready.store(true);
  if (signals.last_signal() != 0) return 128 + signals.last_signal();

  // ---- interactive console input
  std::unique_ptr<RawTerminal> terminal;
  std::thread input_thread;
  int wake_pipe[2] = {-1, -1};
  std::atomic<bool> quit_by_key{false};
  if (!command_mode) {
    terminal = std::make_unique<RawTerminal>(STDIN_FILENO);
    raw = terminal->active();
    if (raw) {
      std::lock_guard lock(out_mutex);
      write_all(STDERR_FILENO, "dvmm: console on this terminal; C-a x quits, C-a h helps\r\n");
    }
    if (::pipe2(wake_pipe, O_CLOEXEC) != 0) return fail(std::string("pipe: ") + strerror(errno));
    input_thread = std::thread([&, tty = raw] {
      vmm::EscapeParser escape;
      bool stdin_open = true;
      u8 buf[256];
      for (;;) {
        pollfd fds[2] = {{wake_pipe[0], POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
        const int n = ::poll(fds, stdin_open ? 2 : 1, -1);
        if (n < 0) {
          if (errno == EINTR) continue;
          return;
        }
        if (fds[0].revents != 0) return;
        if (!stdin_open || fds[1].revents == 0) continue;
        const ssize_t len = ::read(STDIN_FILENO, buf, sizeof buf);
        if (len < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (len <= 0) {
          stdin_open = false;  // EOF: the guest keeps running without input
          continue;
        }
        if (!tty) {
          vm->push_console_input(std::span<const u8>(buf, static_cast<std::size_t>(len)));
          continue;
        }
        const auto r = escape.feed(buf, static_cast<std::size_t>(len));
        if (!r.to_guest.empty()) vm->push_console_input(r.to_guest);
        if (r.command == vmm::EscapeParser::Command::kHelp) {
          std::lock_guard lock(out_mutex);
          write_all(STDOUT_FILENO, vmm::EscapeParser::help_text());
        } else if (r.command == vmm::EscapeParser::Command::kQuit) {
          quit_by_key.store(true);
          vm->request_stop("quit from the console (C-a x)");
          return;
        }
      }
    });
  }

  const vmm::VmResult result = vm->run();

  if (input_thread.joinable()) {
    const char c = 0;
    [[maybe_unused]] ssize_t ignored = ::write(wake_pipe[1], &c, 1);
    input_thread.join();
  }
  if (wake_pipe[0] >= 0) {
    ::close(wake_pipe[0]);
    ::close(wake_pipe[1]);
  }
  if (terminal) {
    terminal->restore();
    raw = false;
  }

  switch (result.kind) {
    case vmm::VmResult::Kind::kPowerOff:
      if (o.verbose) log("guest powered off with status " + std::to_string(result.status));
      return static_cast<int>(std::min<u32>(result.status, 255));
    case vmm::VmResult::Kind::kPanic:
      log("the guest kernel panicked: " + result.message);
      return kExitPanic;
    case vmm::VmResult::Kind::kTimeout:
      log("timeout: " + result.message + " (--timeout)");
      return kExitTimeout;
    case vmm::VmResult::Kind::kStopped:
      if (quit_by_key.load()) return 0;
      if (int s = signals.last_signal(); s != 0) {
        log(result.message);
        return 128 + s;
      }
      log(result.message);
      return kExitError;
    case vmm::VmResult::Kind::kError:
    default:
      return fail(result.message);
  }
}

}  // namespace dvmm::cli
