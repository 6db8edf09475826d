#include "cli/run_command.hpp"

#include <fcntl.h>
#include <fmt/format.h>
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
#include <optional>
#include <thread>

#include "cli/node_processes.hpp"
#include "cli/terminal.hpp"
#include "cli/vm_name.hpp"
#include "cluster/bootstrap.hpp"
#include "cluster/cluster_vm.hpp"
#include "control/control_paths.hpp"
#include "control/control_server.hpp"
#include "control/gdb_stub.hpp"
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

namespace {

CLI::Validator count_validator(unsigned lo, unsigned hi, const char* what) {
  return CLI::Validator(
      [lo, hi, what](std::string& s) -> std::string {
        if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) {
          return "'" + s + "' is not a number";
        }
        if (s.size() > 4 || std::stoul(s) < lo || std::stoul(s) > hi) {
          return std::string(what) + " must be between " + std::to_string(lo) + " and " +
                 std::to_string(hi) + ", not " + s;
        }
        return {};
      },
      std::to_string(lo) + "-" + std::to_string(hi));
}

// The options that say what to boot and how to show it (run, and node for rank 0).
void add_guest_options(CLI::App* cmd, RunOptions& o) {
  cmd->add_option("--config", o.config_file,
                  "VM configuration file (TOML, docs/CONFIG.md): everything these options say, "
                  "and the execution controls; options given here override it");
  cmd->add_option("--name", o.name, "The VM's name (1-64 of A-Z a-z 0-9 . _ -; default dvmm-<pid>)")
      ->check(CLI::Validator([](std::string& s) { return vm_name_problem(s); }, "NAME"));
  cmd->add_option("--kernel", o.kernel,
                  "RISC-V Linux Image (default: the built-in guest's, under $DVMM_CACHE_DIR or "
                  "~/.cache/dvmm/guest/current)");
  cmd->add_option("--initrd", o.initrd, "Initramfs (default: the built-in guest's)");
  cmd->add_option("--initrd-extra", o.initrd_extra,
                  "A cpio archive (plain or compressed) appended to the initrd, e.g. with your "
                  "own programs; repeatable")
      ->allow_extra_args(false)  // one value per flag, so `--disk IMG -- CMD -x` works
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--append", o.append,
                  std::string("Kernel command line, replacing the default (\"") + kDefaultAppend +
                      "\"; with a command: \"" + kCommandAppend + "\"; with --verbose: \"" +
                      kVerboseAppend + "\")");
  cmd->add_option("--timeout", o.timeout_s, "Stop the guest after SECONDS and exit with status 124")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            char* end = nullptr;
            const double v = std::strtod(s.c_str(), &end);
            if (s.empty() || end == nullptr || *end != '\0') return "'" + s + "' is not a number";
            if (!(v > 0)) return "must be a positive number of seconds, not " + s;
            return {};
          },
          "SECONDS"));
  cmd->add_flag("-v,--verbose", o.verbose,
                "Show the kernel's boot messages (early console included) and monitor details "
                "(exit counters, DSM traffic)");
  cmd->add_option("--vcpus-per-node", o.vcpus_per_node,
                  "vCPUs each node contributes (distributed VM; default 1)")
      ->check(count_validator(1, 64, "--vcpus-per-node"));
  cmd->add_option("--memory-per-node", o.memory_per_node,
                  "Guest RAM each node contributes and is home for (distributed VM; default 256M)");
  cmd->add_option("--disk", o.disks,
                  "A virtio disk: PATH[,format=raw|qcow2][,readonly=on][,node=N][,serial=S] "
                  "(vda, vdb, ... in order; node: the node that holds it); repeatable")
      ->allow_extra_args(false)  // one value per flag, so `--disk IMG -- CMD -x` works
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--net", o.nets,
                  "A virtio network card: user[,hostfwd=tcp:[HOSTADDR]:PORT-[GUESTADDR]:PORT]... "
                  "(NAT through libslirp), switch=NAME (a virtual switch shared with the other "
                  "VMs of this host that join NAME) or tap=IFNAME; then [,mac=..][,node=N]; "
                  "repeatable")
      ->allow_extra_args(false)  // one value per flag, so `--disk IMG -- CMD -x` works
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_option("--ivc", o.ivcs,
                  "Join an inter-VM communication group of this host: GROUP[,size=64M][,rank=R]"
                  "[,members=N] (mailbox registers and shared memory, /dev/uioN in the guest, "
                  "libdvmmipc; see docs/IVC.md); repeatable, one node only")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  cmd->add_flag("--rng", o.rng, "A virtio-rng device fed from the host's getrandom()");
  cmd->add_option("--vconsole", o.vconsole,
                  "A virtio console (/dev/hvc1 in the guest) whose output is appended to FILE");
  cmd->add_option("--root", o.root,
                  "Boot from a disk: the guest's init checks /dev/DEV (e.g. vda, the first "
                  "--disk) with e2fsck and switches to it as its root file system; the "
                  "built-in guest's rootfs.ext4 is such a disk (copy it first)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            if (s.rfind("/dev/", 0) == 0) s = s.substr(5);
            if (s.empty() ||
                s.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") != std::string::npos) {
              return "expected a device name such as vda";
            }
            return {};
          },
          "DEV"));
  cmd->add_option("command", o.command, "Command to run in the guest (after --)");
}

}  // namespace

CLI::App* add_run_command(CLI::App& app, RunOptions& o) {
  CLI::App* run = app.add_subcommand(
      "run", "Boot a guest; run CMD in it and exit with its status, or give a console");
  run->add_option("--vcpus", o.vcpus,
                  "Number of virtual harts (1-64; default 2; with --nodes: the total, split "
                  "evenly)")
      ->check(count_validator(1, 64, "--vcpus"));
  run->add_option("--memory", o.memory,
                  "Guest RAM: a number with K, M, G or T (a bare number is MiB); at least 64M; "
                  "default 512M (with --nodes: the total, split evenly)");
  run->add_option("--nodes", o.nodes,
                  "Run one VM across N node processes on this host (a distributed VM: each "
                  "node runs its vCPUs and is home for its part of the memory)")
      ->check(count_validator(1, 64, "--nodes"));
  run->add_option("--gdb", o.gdb,
                  "Listen for gdb on [HOST:]PORT (default host 127.0.0.1): `target remote "
                  "HOST:PORT` in gdb-multiarch debugs the guest while it runs (docs/GDB.md)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            std::string error;
            return control::parse_gdb_address(s, &error) ? std::string() : error;
          },
          "[HOST:]PORT"));
  add_guest_options(run, o);
  run->footer(
      "With a command, dvmm prints its output and exits with its exit status; 124 means the\n"
      "--timeout expired, 125 that the guest kernel panicked, 1 a monitor error.\n"
      "Without one, the guest's shell is on this terminal: C-a x quits, C-a h helps.\n"
      "Examples:\n"
      "  dvmm run -- uname -a\n"
      "  dvmm run --vcpus 4 --memory 1G -- nproc\n"
      "  dvmm run --nodes 3 --vcpus-per-node 2 -- nproc       (6 harts on 3 node processes)\n"
      "  dvmm run --initrd-extra my-files.cpio -- /my/program\n"
      "  dvmm run --gdb 1234       (then: gdb-multiarch vmlinux -ex 'target remote :1234')\n"
      "  dvmm run --config vm.toml --vcpus 4                   (the file, with 4 vCPUs)");
  return run;
}

CLI::App* add_node_command(CLI::App& app, RunOptions& o) {
  CLI::App* node = app.add_subcommand(
      "node",
      "Join a distributed VM as one of its nodes (one per host, started by you or a "
      "launcher)");
  node->add_option("--cluster", o.cluster_file,
                   "Cluster file: one line per node in rank order, HOST:PORT (rank 0 listens "
                   "there for the others to join)");
  node->add_option("--rank", o.rank,
                   "This node's rank (default: from SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK "
                   "or PMIX_RANK)");
  node->add_option("--nodes", o.nodes, "Number of nodes (with --bootstrap-dir)")
      ->check(count_validator(1, 64, "--nodes"));
  node->add_option("--bootstrap-dir", o.bootstrap_dir,
                   "Meet on this host through a UNIX socket in DIR (what `dvmm run --nodes` uses)");
  node->add_option("--join-timeout", o.join_timeout_s,
                   "Seconds to wait for every node to join (default 30)");
  add_guest_options(node, o);
  node->footer(
      "Every node must be started with the same --vcpus-per-node and --memory-per-node and the\n"
      "same dvmm version, or it is refused. Rank 0 boots the guest, holds its devices and\n"
      "console, and takes the guest options (--kernel, CMD, ...); its exit status is the VM's.\n"
      "Example, two hosts (cluster file: 'hostA:7700' and 'hostB:7700'):\n"
      "  hostA$ dvmm node --cluster c.txt --rank 0 --vcpus-per-node 2 -- nproc\n"
      "  hostB$ dvmm node --cluster c.txt --rank 1 --vcpus-per-node 2");
  node->callback([&o] { o.node_mode = true; });
  return node;
}

int run_command(const RunOptions& o) {
  const bool command_mode = !o.command.empty();
  std::mutex out_mutex;  // stdout/stderr lines from several threads
  bool raw = false;
  std::string prefix = "dvmm: ";
  auto log = [&](const std::string& line) {
    std::lock_guard lock(out_mutex);
    std::string s = prefix + line + (raw ? "\r\n" : "\n");
    write_all(STDERR_FILENO, s);
  };
  auto fail = [&](const std::string& message) {
    log("error: " + message);
    return kExitError;
  };

  // ---- topology: one node, or this process's place in a distributed VM
  unsigned nodes = o.nodes == 0 ? 1 : o.nodes;
  cluster::NodeId rank = 0;
  std::optional<cluster::ClusterFile> cluster_file;
  if (o.node_mode) {
    if (o.cluster_file.empty() == o.bootstrap_dir.empty()) {
      return fail("dvmm node needs --cluster FILE (or, on one host, --bootstrap-dir DIR)");
    }
    try {
      if (!o.cluster_file.empty()) {
        cluster_file = cluster::ClusterFile::load(o.cluster_file);
        if (o.nodes != 0 && o.nodes != cluster_file->nodes.size()) {
          return fail(fmt::format("--nodes {} disagrees with {} ({} nodes)", o.nodes,
                                  o.cluster_file, cluster_file->nodes.size()));
        }
        nodes = static_cast<unsigned>(cluster_file->nodes.size());
      } else if (o.nodes == 0) {
        return fail("--bootstrap-dir needs --nodes N");
      }
      const cluster::LaunchRank lr = cluster::resolve_launch_rank(o.rank);
      if (lr.size && *lr.size != nodes) {
        return fail(fmt::format("the launcher says {} nodes ({}), the cluster has {}", *lr.size,
                                lr.source, nodes));
      }
      rank = lr.rank;
      if (rank >= nodes) {
        return fail(fmt::format("rank {} (from {}) is not below the node count {}", rank, lr.source,
                                nodes));
      }
    } catch (const cluster::ClusterError& e) {
      return fail(e.what());
    }
  }
  const bool distributed = o.node_mode || nodes > 1;
  if (distributed && !o.gdb.empty()) {
    return fail("--gdb works with a single-node VM only, not with --nodes yet");
  }
  if (distributed && rank != 0) prefix = fmt::format("dvmm[node {}]: ", rank);

  // ---- sizes
  machine::MachineConfig config;
  cluster::MachineDescription description;
  try {
    if (!distributed) {
      if (o.vcpus_per_node != 0 || !o.memory_per_node.empty()) {
        return fail("--vcpus-per-node and --memory-per-node are for a distributed VM (--nodes N)");
      }
      config.vcpus = o.vcpus != 0 ? o.vcpus : 2;
      config.memory_size = machine::parse_memory_size(o.memory.empty() ? "512M" : o.memory);
      machine::check_memory_size(config.memory_size);
    } else {
      unsigned per_node = 1;
      if (o.vcpus_per_node != 0) {
        if (o.vcpus != 0) return fail("give --vcpus (the total) or --vcpus-per-node, not both");
        per_node = o.vcpus_per_node;
      } else if (o.vcpus != 0) {
        if (o.vcpus % nodes != 0) {
          return fail(
              fmt::format("--vcpus {} cannot be split evenly across {} nodes; use --vcpus-per-node",
                          o.vcpus, nodes));
        }
        per_node = o.vcpus / nodes;
      }
      if (per_node * nodes > 64) {
        return fail(fmt::format("at most 64 vCPUs in all, not {} nodes x {}", nodes, per_node));
      }
      u64 memory_per_node = u64{256} << 20;
      if (!o.memory_per_node.empty()) {
        if (!o.memory.empty())
          return fail("give --memory (the total) or --memory-per-node, not both");
        memory_per_node = machine::parse_memory_size(o.memory_per_node);
      } else if (!o.memory.empty()) {
        memory_per_node = machine::parse_memory_size(o.memory) / nodes;
      }
      memory_per_node &= ~((u64{1} << 20) - 1);  // whole MiB: each node's slice is a NUMA node
      if (memory_per_node < (u64{32} << 20)) {
        return fail("each node needs at least 32M of guest memory (--memory-per-node)");
      }
      machine::check_memory_size(memory_per_node * nodes);
      description.nodes = nodes;
      description.vcpus_per_node = per_node;
      description.memory_per_node = memory_per_node;
      config = description.machine_config();
    }
  } catch (const machine::MachineError& e) {
    return fail(e.what());
  }

  // ---- inputs (only the node that boots the guest needs them)
  if (rank != 0) {
    // The same configuration file may be given to every node: only flags are refused here.
    const auto flag = [&](bool set, const char* key) { return set && !o.config_keys.count(key); };
    if (flag(command_mode, "command") || flag(!o.kernel.empty(), "kernel") ||
        flag(!o.initrd.empty(), "initrd") || flag(!o.initrd_extra.empty(), "initrd_extra") ||
        flag(!o.append.empty(), "append")) {
      return fail("the guest's kernel, initrd, command line and command go to rank 0 only");
    }
  } else {
    const std::string dir = guest_dir();
    if (!o.kernel.empty()) {
      if (!is_file(o.kernel)) {
        return fail(
            "kernel " + o.kernel + ": " +
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
    if (!o.root.empty()) config.bootargs += " root=/dev/" + o.root;
  }
  const bool has_console = rank == 0;

  // ---- console output
  vmm::LineFilter filter(command_mode && !o.verbose ? std::vector<std::string>{kInitBanner}
                                                    : std::vector<std::string>{});
  // In command mode the output is the command's: plain "\n" line ends, as from a program.
  vmm::CrlfFilter crlf;
  vmm::VmOptions vo;
  vo.verbose = o.verbose;
  vo.controls = o.controls;
  vo.node_count = nodes;
  try {
    for (const std::string& d : o.disks) vo.devices.disks.push_back(vmm::parse_disk_spec(d));
    for (const std::string& n : o.nets) vo.devices.nets.push_back(devices::parse_net_spec(n));
    for (const std::string& g : o.ivcs) vo.devices.ivcs.push_back(vmm::parse_ivc_spec(g));
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  if (nodes > 1 && !vo.devices.ivcs.empty()) {
    return fail("--ivc needs a VM on one node (the shared memory is an object of one host)");
  }
  vo.devices.rng = o.rng;
  vo.devices.console_output = o.vconsole;
  vo.devices.runtime_dir = control::control_dir();
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
  std::function<void(std::string)> stop_guest;
  std::atomic<bool> vm_ready{false};
  SignalWatcher signals([&](int signo) {
    if (vm_ready.load()) stop_guest(std::string("stopped by signal ") + strsignal(signo));
  });

  std::unique_ptr<vmm::Vm> vm;
  std::unique_ptr<NodeProcesses> children;
  std::unique_ptr<cluster::Bootstrap> bootstrap;
  std::unique_ptr<cluster::ClusterVm> cluster_vm;
  std::atomic<cluster::ClusterVm*> cluster_ptr{nullptr};
  std::mutex exits_mutex;  // node processes that ended before the cluster was up
  std::vector<std::pair<unsigned, std::string>> early_exits;
  std::function<void(std::span<const u8>)> console_input;
  std::function<vmm::VmResult()> run_guest;
  try {
    if (!distributed) {
      vm = std::make_unique<vmm::Vm>(config, vo);
      vm->boot();
      stop_guest = [&](std::string why) { vm->request_stop(std::move(why)); };
      console_input = [&](std::span<const u8> b) { vm->push_console_input(b); };
      run_guest = [&] { return vm->run(); };
    } else {
      const auto join_timeout =
          std::chrono::milliseconds(static_cast<i64>(std::ceil(o.join_timeout_s * 1000)));
      const cluster::BootstrapOptions bootstrap_options =
          cluster::ClusterVm::bootstrap_options(description, DVMM_VERSION, log, join_timeout);
      if (!o.node_mode) {
        // `run --nodes N`: this process is rank 0 and starts the others.
        const u64 mib = description.memory_per_node >> 20;
        children = std::make_unique<NodeProcesses>(
            nodes,
            [&](unsigned r, const std::string& dir) {
              std::vector<std::string> args = {"node",
                                               "--bootstrap-dir",
                                               dir,
                                               "--rank",
                                               std::to_string(r),
                                               "--nodes",
                                               std::to_string(nodes),
                                               "--vcpus-per-node",
                                               std::to_string(description.vcpus_per_node),
                                               "--memory-per-node",
                                               std::to_string(mib) + "M",
                                               "--join-timeout",
                                               fmt::format("{}", o.join_timeout_s)};
              if (o.verbose) args.emplace_back("--verbose");
              // Every node builds the same board; each opens the devices placed on it.
              for (const std::string& d : o.disks) args.insert(args.end(), {"--disk", d});
              for (const std::string& n : o.nets) args.insert(args.end(), {"--net", n});
              if (o.rng) args.emplace_back("--rng");
              if (!o.vconsole.empty()) args.insert(args.end(), {"--vconsole", o.vconsole});
              return args;
            },
            [&](unsigned r, const std::string& how) {
              if (cluster::ClusterVm* c = cluster_ptr.load()) {
                c->node_failed(static_cast<cluster::NodeId>(r), "its process " + how);
              } else {
                std::lock_guard lock(exits_mutex);
                early_exits.emplace_back(r, how);
              }
            });
        bootstrap = std::make_unique<cluster::LocalBootstrap>(children->bootstrap_dir(), 0, nodes,
                                                              bootstrap_options);
      } else if (!o.bootstrap_dir.empty()) {
        bootstrap = std::make_unique<cluster::LocalBootstrap>(o.bootstrap_dir, rank, nodes,
                                                              bootstrap_options);
      } else {
        bootstrap = std::make_unique<cluster::TcpBootstrap>(*cluster_file, rank, bootstrap_options);
      }
      if (o.verbose) log(fmt::format("joining {} nodes through {}", nodes, bootstrap->where()));
      cluster::ClusterVmOptions co;
      co.description = description;
      co.boot = config;
      co.vm = vo;
      cluster_vm = std::make_unique<cluster::ClusterVm>(*bootstrap, co);
      cluster_vm->set_stats_provider(
          [vm_of_node = &cluster_vm->vm()] { return control::node_stats_json(*vm_of_node); });
      cluster_vm->boot();
      cluster_ptr.store(cluster_vm.get());
      // The configuration file's controls reach every node's vCPUs.
      if (rank == 0 && !(o.controls == vmm::VmControls{}) &&
          !cluster_vm->set_remote_controls(o.controls, std::nullopt,
                                           std::chrono::milliseconds(5000))) {
        throw std::runtime_error("the other nodes did not take the execution controls");
      }
      {
        std::lock_guard lock(exits_mutex);
        for (const auto& [r, how] : early_exits) {
          cluster_vm->node_failed(static_cast<cluster::NodeId>(r), "its process " + how);
        }
      }
      stop_guest = [&](std::string why) { cluster_vm->request_stop(std::move(why)); };
      console_input = [&](std::span<const u8> b) { cluster_vm->push_console_input(b); };
      run_guest = [&] { return cluster_vm->run(); };
    }
  } catch (const std::exception& e) {
    if (children) children->finish(0);
    return fail(e.what());
  }
  vm_ready.store(true);
  if (signals.last_signal() != 0) return 128 + signals.last_signal();

  std::unique_ptr<RawTerminal> terminal;
  std::thread input_thread;
  int wake_pipe[2] = {-1, -1};
  std::atomic<bool> quit_by_key{false};

  // ---- the control endpoint (on the node with the console: rank 0)
  std::atomic<bool> stopped_by_api{false};
  std::unique_ptr<control::ControlServer> control_server;
  if (has_console) {
    control::ControlHooks hooks;
    hooks.info_json = [&] {
      return fmt::format(R"({{"nodes": {}, "rank": {}, "command": {}}})", nodes, rank,
                         command_mode ? "true" : "false");
    };
    hooks.stop = [&](const std::string& why, std::chrono::milliseconds grace) {
      stopped_by_api.store(true);
      vmm::Vm& target = distributed ? cluster_vm->vm() : *vm;
      if (grace.count() > 0 && target.request_shutdown(why, grace)) return true;
      stop_guest(why);
      return false;
    };
    hooks.kill = [&] {
      if (terminal) terminal->restore();
      std::_Exit(137);  // the node processes die with us (PR_SET_PDEATHSIG)
    };
    if (distributed) {
      hooks.set_remote_controls = [&](const vmm::VmControls& c, std::optional<HartId> v) {
        return cluster_vm->set_remote_controls(c, v, std::chrono::milliseconds(2000));
      };
      hooks.remote_stats = [&] {
        return cluster_vm->remote_stats(std::chrono::milliseconds(2000));
      };
    }
    try {
      control_server = std::make_unique<control::ControlServer>(
          o.name, distributed ? cluster_vm->vm() : *vm, std::move(hooks));
    } catch (const std::exception& e) {
      if (terminal) terminal->restore();
      if (children) children->finish(0);
      return fail(e.what());
    }
    if (o.verbose) log("control socket: " + control_server->path());
  }

  // ---- the gdb stub (single-node VMs: refused above for --nodes)
  std::unique_ptr<control::GdbStub> gdb_stub;
  if (!o.gdb.empty()) {
    std::string error;
    const auto address = control::parse_gdb_address(o.gdb, &error);
    try {
      if (!address) throw std::runtime_error("--gdb: " + error);
      control::GdbStubHooks hooks;
      hooks.stop = [&](const std::string& why) {
        stopped_by_api.store(true);  // a stop the user asked for: exit status 0
        stop_guest(why);
      };
      hooks.log = log;
      gdb_stub = std::make_unique<control::GdbStub>(*address, *vm, std::move(hooks));
    } catch (const std::exception& e) {
      if (input_thread.joinable()) {  // a joinable std::thread must not be destroyed
        const char c = 0;
        [[maybe_unused]] ssize_t ignored = ::write(wake_pipe[1], &c, 1);
        input_thread.join();
      }
      if (terminal) terminal->restore();
      return fail(e.what());
    }
    if (o.verbose || address->port == 0) {
      log("gdb stub on " + gdb_stub->where() + " (gdb: target remote " + gdb_stub->where() + ")");
    }
  }

  // ---- interactive console input
  if (!command_mode && has_console) {
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
          console_input(std::span<const u8>(buf, static_cast<std::size_t>(len)));
          continue;
        }
        const auto r = escape.feed(buf, static_cast<std::size_t>(len));
        if (!r.to_guest.empty()) console_input(r.to_guest);
        if (r.command == vmm::EscapeParser::Command::kHelp) {
          std::lock_guard lock(out_mutex);
          write_all(STDOUT_FILENO, vmm::EscapeParser::help_text());
        } else if (r.command == vmm::EscapeParser::Command::kQuit) {
          quit_by_key.store(true);
          stop_guest("quit from the console (C-a x)");
          return;
        }
      }
    });
  }

  const vmm::VmResult result = run_guest();
  gdb_stub.reset();        // a gdb waiting for a stop hears that the VM exited
  control_server.reset();  // the VM is over: `dvmm list` no longer shows it
  // The other node processes leave once node 0 told them the VM is over.
  if (children) children->finish(5000);

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

  if (rank != 0) {
    // Node 0 reports the VM's end to the user; this node only says what went wrong here.
    if (result.kind == vmm::VmResult::Kind::kPowerOff) return 0;
    if (result.kind == vmm::VmResult::Kind::kError || o.verbose) log(result.message);
    return result.kind == vmm::VmResult::Kind::kError ? kExitError : 0;
  }
  switch (result.kind) {
    case vmm::VmResult::Kind::kPowerOff:
      if (o.verbose) log("guest powered off with status " + std::to_string(result.status));
      if (stopped_by_api.load()) return 0;  // it shut down because `dvmm stop` asked it to
      return static_cast<int>(std::min<u32>(result.status, 255));
    case vmm::VmResult::Kind::kPanic:
      log("the guest kernel panicked: " + result.message);
      return kExitPanic;
    case vmm::VmResult::Kind::kTimeout:
      log("timeout: " + result.message + " (--timeout)");
      return kExitTimeout;
    case vmm::VmResult::Kind::kStopped:
      // Stops the user asked for (the console's quit key, `dvmm stop`) end with status 0.
      if (quit_by_key.load()) return 0;
      if (stopped_by_api.load()) {
        if (o.verbose) log(result.message);
        return 0;
      }
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
