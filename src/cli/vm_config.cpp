// The VM configuration file: TOML (toml++) into RunOptions and vmm::VmControls, every error
// pointing at the file, line and key; see vm_config.hpp and docs/CONFIG.md.
#include "cli/vm_config.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>

#include "cli/vm_name.hpp"
#include "devices/net/net_backend.hpp"
#include "machine/machine.hpp"
#include "vmm/vm_controls.hpp"
#include "vmm/vm_devices.hpp"

namespace dvmm::cli {

namespace {

// As the command-line flags allow.
constexpr i64 kMaxCount = 64;
constexpr double kMaxTimeoutS = 1e9;  // keeps the milliseconds within an i64
// Far above any useful window (KVM polls up to 200 us by default); a longer one only burns
// a host CPU, so it is more likely a unit mistake.
constexpr i64 kMaxHaltPollUs = 1'000'000;

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

// The whole file as text; the error says why it cannot be read.
std::string read_file(const std::string& path) {
  const auto fail = [&](const std::string& why) {
    return ConfigError(path + ": cannot read the configuration file: " + why);
  };
  // O_NONBLOCK: a FIFO is refused below rather than waited on.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw fail(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw fail("not a regular file");
  }
  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw fail(std::strerror(e));
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

// Reads checked values out of one file's nodes; every error names the file, line and key.
class Reader {
 public:
  Reader(std::string file, std::filesystem::path dir)
      : file_(std::move(file)), dir_(std::move(dir)) {}

  [[noreturn]] void fail(const toml::node& n, std::string_view key, std::string_view what) const {
    throw ConfigError(fmt::format("{}:{}: {}: {}", file_, n.source().begin.line, key, what));
  }
  [[noreturn]] void wrong_type(const toml::node& n, std::string_view key,
                               std::string_view expected) const {
    fail(n, key, fmt::format("expected {}, not {}", expected, type_name(n)));
  }

  const toml::table& table(const toml::node& n, std::string_view key) const {
    if (const toml::table* t = n.as_table()) return *t;
    wrong_type(n, key, "a table");
  }

  std::string string(const toml::node& n, std::string_view key) const {
    if (const auto* s = n.as_string()) return s->get();
    wrong_type(n, key, "a string");
  }

  bool boolean(const toml::node& n, std::string_view key) const {
    if (const auto* b = n.as_boolean()) return b->get();
    wrong_type(n, key, "a boolean (true or false)");
  }

  i64 integer(const toml::node& n, std::string_view key, i64 lo, i64 hi) const {
    const auto* i = n.as_integer();
    if (i == nullptr) wrong_type(n, key, "an integer");
    if (i->get() < lo || i->get() > hi) {
      fail(n, key, fmt::format("must be between {} and {}, not {}", lo, hi, i->get()));
    }
    return i->get();
  }

  unsigned count(const toml::node& n, std::string_view key) const {
    return static_cast<unsigned>(integer(n, key, 1, kMaxCount));
  }

  double seconds(const toml::node& n, std::string_view key) const {
    double v = 0;
    if (const auto* i = n.as_integer()) {
      v = static_cast<double>(i->get());
    } else if (const auto* f = n.as_floating_point()) {
      v = f->get();
    } else {
      wrong_type(n, key, "a number of seconds");
    }
    if (!(v > 0) || !(v <= kMaxTimeoutS)) {
      fail(n, key, fmt::format("must be a positive number of seconds, not {}", v));
    }
    return v;
  }

  // A size as the --memory flags take it: "512M", or an integer number of MiB.
  std::string memory(const toml::node& n, std::string_view key) const {
    std::string text;
    if (const auto* s = n.as_string()) {
      text = s->get();
    } else if (const auto* i = n.as_integer()) {
      if (i->get() <= 0) fail(n, key, fmt::format("must be a positive size, not {}", i->get()));
      text = std::to_string(i->get());
    } else {
      wrong_type(n, key, "a size (a string such as \"512M\", or an integer number of MiB)");
    }
    try {
      machine::parse_memory_size(text);
    } catch (const machine::MachineError& e) {
      fail(n, key, e.what());
    }
    return text;
  }

  // A file name; a relative one is relative to the configuration file's directory.
  std::string path(const toml::node& n, std::string_view key) const {
    const std::string s = string(n, key);
    if (s.empty()) fail(n, key, "expected a file name, not an empty string");
    std::filesystem::path p(s);
    if (p.is_relative() && !dir_.empty()) p = dir_ / p;
    return p.string();
  }

  // --disk specs (vmm::parse_disk_spec), checked; a relative image path is relative to the
  // configuration file's directory.
  std::vector<std::string> disk_specs(const toml::node& n, std::string_view key) const {
    std::vector<std::string> out;
    const toml::array& a = array(n, key);
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string item_key = fmt::format("{}[{}]", key, i);
      std::string spec = string(a[i], item_key);
      try {
        const vmm::DiskSpec d = vmm::parse_disk_spec(spec);
        if (std::filesystem::path(d.path).is_relative() && !dir_.empty()) {
          const std::size_t at = spec.find(d.path);
          spec.replace(at, d.path.size(), (dir_ / d.path).string());
        }
      } catch (const std::invalid_argument& e) {
        fail(a[i], item_key, e.what());
      }
      out.push_back(spec);
    }
    return out;
  }

  const toml::array& array(const toml::node& n, std::string_view key) const {
    if (const toml::array* a = n.as_array()) return *a;
    wrong_type(n, key, "an array");
  }

  std::vector<std::string> strings(const toml::node& n, std::string_view key) const {
    std::vector<std::string> out;
    const toml::array& a = array(n, key);
    for (std::size_t i = 0; i < a.size(); ++i) {
      out.push_back(string(a[i], fmt::format("{}[{}]", key, i)));
    }
    return out;
  }

  // Strings that `check` accepts; it throws with the reason, reported against KEY[i]'s line.
  template <typename Check>
  std::vector<std::string> checked_strings(const toml::node& n, std::string_view key,
                                           Check check) const {
    std::vector<std::string> out = strings(n, key);
    for (std::size_t i = 0; i < out.size(); ++i) {
      try {
        check(out[i]);
      } catch (const std::exception& e) {
        fail(*n.as_array()->get(i), fmt::format("{}[{}]", key, i), e.what());
      }
    }
    return out;
  }

  std::vector<std::string> paths(const toml::node& n, std::string_view key) const {
    std::vector<std::string> out;
    const toml::array& a = array(n, key);
    for (std::size_t i = 0; i < a.size(); ++i) {
      out.push_back(path(a[i], fmt::format("{}[{}]", key, i)));
    }
    return out;
  }

  // A list of names for one of vm_controls.hpp's setters. Each name is tried alone first,
  // so the error points at the line of the bad one in a list written over several lines.
  template <typename Setter>
  void names(const toml::node& n, std::string_view key, vmm::VmControls& c, Setter set) const {
    const std::vector<std::string> all = strings(n, key);
    const toml::array& a = *n.as_array();
    for (std::size_t i = 0; i < all.size(); ++i) {
      try {
        vmm::VmControls scratch;
        set(scratch, std::vector<std::string>{all[i]});
      } catch (const vmm::ControlError& e) {
        fail(a[i], key, e.what());
      }
    }
    try {
      set(c, all);
    } catch (const vmm::ControlError& e) {
      fail(n, key, e.what());
    }
  }

  // Guest virtual addresses: integers, or strings for addresses at or above 2^63 (the
  // kernel's half on RV64), which TOML's signed 64-bit integers cannot hold.
  std::vector<u64> addresses(const toml::node& n, std::string_view key) const {
    std::vector<u64> out;
    const toml::array& a = array(n, key);
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string k = fmt::format("{}[{}]", key, i);
      if (const auto* v = a[i].as_integer()) {
        if (v->get() < 0) {
          fail(a[i], k,
               "an address cannot be negative (write one at or above 2^63 as a string, "
               "\"0xffffffff80000000\")");
        }
        out.push_back(static_cast<u64>(v->get()));
      } else if (const auto* s = a[i].as_string()) {
        const auto value = parse_address(s->get());
        if (!value) {
          fail(a[i], k,
               fmt::format("'{}' is not an address (e.g. \"0xffffffff80000000\")", s->get()));
        }
        out.push_back(*value);
      } else {
        wrong_type(a[i], k, "an address (an integer, or a string such as \"0xffffffff80000000\")");
      }
    }
    return out;
  }

 private:
  // "0x..." in hex or plain decimal digits, '_' allowed between digits as in TOML.
  static std::optional<u64> parse_address(std::string_view s) {
    unsigned base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
      base = 16;
      s.remove_prefix(2);
    }
    if (s.empty() || s.front() == '_' || s.back() == '_') return std::nullopt;
    u64 value = 0;
    for (char ch : s) {
      if (ch == '_') continue;
      unsigned d = 0;
      if (ch >= '0' && ch <= '9') {
        d = static_cast<unsigned>(ch - '0');
      } else if (base == 16 && ch >= 'a' && ch <= 'f') {
        d = static_cast<unsigned>(ch - 'a' + 10);
      } else if (base == 16 && ch >= 'A' && ch <= 'F') {
        d = static_cast<unsigned>(ch - 'A' + 10);
      } else {
        return std::nullopt;
      }
      if (value > (~u64{0} - d) / base) return std::nullopt;
      value = value * base + d;
    }
    return value;
  }

  std::string file_;
  std::filesystem::path dir_;
};

// One key of a table: the flags that override it and how its value is read into options.
struct Rule {
  const char* name;  // within its table
  // The flags that override the key: its own, and for sizes the other of the pair (a
  // total on the command line replaces the file's per-node value and vice versa).
  const char* flag;
  const char* pair_flag;
  void (*read)(const Reader& r, const toml::node& n, std::string_view key, RunOptions& o);
};

const Rule kTopRules[] = {
    {"name", "--name", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.name = r.string(n, key);
       if (std::string why = vm_name_problem(o.name); !why.empty()) r.fail(n, key, why);
     }},
    {"vcpus", "--vcpus", "--vcpus-per-node",
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.vcpus = r.count(n, key);
     }},
    {"memory", "--memory", "--memory-per-node",
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.memory = r.memory(n, key);
       try {
         machine::check_memory_size(machine::parse_memory_size(o.memory));
       } catch (const machine::MachineError& e) {
         r.fail(n, key, e.what());
       }
     }},
    {"kernel", "--kernel", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.kernel = r.path(n, key);
     }},
    {"initrd", "--initrd", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.initrd = r.path(n, key);
     }},
    {"initrd_extra", "--initrd-extra", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.initrd_extra = r.paths(n, key);
     }},
    {"append", "--append", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.append = r.string(n, key);
     }},
    {"timeout", "--timeout", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.timeout_s = r.seconds(n, key);
     }},
    {"verbose", "--verbose", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.verbose = r.boolean(n, key);
     }},
    {"command", "command", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.command = r.strings(n, key);
     }},
    {"disks", "--disk", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.disks = r.disk_specs(n, key);
     }},
    {"nets", "--net", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.nets = r.checked_strings(n, key, [](const std::string& t) { devices::parse_net_spec(t); });
     }},
    {"ivc", "--ivc", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.ivcs = r.checked_strings(n, key, [](const std::string& t) { vmm::parse_ivc_spec(t); });
     }},
    {"rng", "--rng", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.rng = r.boolean(n, key);
     }},
    {"vconsole", "--vconsole", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.vconsole = r.path(n, key);
     }},
    {"root", "--root", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.root = r.string(n, key);
     }},
};

const Rule kClusterRules[] = {
    {"nodes", "--nodes", nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.nodes = r.count(n, key);
     }},
    {"vcpus_per_node", "--vcpus-per-node", "--vcpus",
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.vcpus_per_node = r.count(n, key);
     }},
    {"memory_per_node", "--memory-per-node", "--memory",
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.memory_per_node = r.memory(n, key);
     }},
};

// No flags set controls, so these always apply.
const Rule kControlRules[] = {
    {"exceptions", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       r.names(n, key, o.controls, vmm::set_exceptions);
     }},
    {"csr_read", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       r.names(n, key, o.controls, vmm::set_csr_reads);
     }},
    {"csr_write", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       r.names(n, key, o.controls, vmm::set_csr_writes);
     }},
    {"wfi_exiting", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.controls.exec.wfi_exiting = r.boolean(n, key);
     }},
    {"halt_poll_us", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.controls.halt_poll_ns = static_cast<u64>(r.integer(n, key, 0, kMaxHaltPollUs)) * 1000;
     }},
    {"single_step", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.controls.exec.single_step = r.boolean(n, key);
     }},
    {"breakpoints", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       o.controls.exec.breakpoints = r.addresses(n, key);
     }},
    {"page_fault_filter", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       // [lo, hi): intercepted page faults exit only for faulting addresses in the range.
       const std::vector<u64> range = r.addresses(n, key);
       if (range.size() != 2 || range[0] >= range[1]) {
         r.fail(n, key,
                "expected [low, high] with low < high (the faulting addresses to intercept)");
       }
       o.controls.exec.page_fault_filter_lo = range[0];
       o.controls.exec.page_fault_filter_hi = range[1];
     }},
    {"action", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       const std::string s = r.string(n, key);
       const auto action = vmm::action_by_name(s);
       if (!action) {
         r.fail(n, key, fmt::format("unknown action '{}' (known: count, log, pause, deliver)", s));
       }
       o.controls.action = *action;
     }},
    {"sbi_trace", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       r.names(n, key, o.controls, vmm::set_sbi_trace);
     }},
    {"mmio_trace", nullptr, nullptr,
     [](const Reader& r, const toml::node& n, std::string_view key, RunOptions& o) {
       r.names(n, key, o.controls, vmm::set_mmio_trace);
     }},
};

struct TableRules {
  const char* name;  // "" for the top level
  std::span<const Rule> rules;
};

const TableRules kTables[] = {
    {"", kTopRules}, {"cluster", kClusterRules}, {"controls", kControlRules}};

std::string known_keys(const TableRules& t) {
  std::string out;
  for (const Rule& rule : t.rules) out += (out.empty() ? "" : ", ") + std::string(rule.name);
  if (t.name[0] == '\0') {
    for (const TableRules& sub : kTables) {
      if (sub.name[0] != '\0') out += ", [" + std::string(sub.name) + "]";
    }
  }
  return out;
}

// Reads one table's keys into `out`, or into `ignored` when a flag overrides them.
void read_table(const Reader& r, const toml::table& table, const TableRules& t,
                const FlagGiven& given, RunOptions& out) {
  const std::string prefix = t.name[0] == '\0' ? "" : std::string(t.name) + ".";
  // In file order (toml++ keeps keys sorted), so the error shown is the first in the file.
  std::vector<std::pair<const toml::key*, const toml::node*>> entries;
  for (auto&& [k, node] : table) entries.emplace_back(&k, &node);
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    const toml::source_position pa = a.second->source().begin;
    const toml::source_position pb = b.second->source().begin;
    return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
  });
  for (const auto& [key_ptr, node_ptr] : entries) {
    const toml::key& k = *key_ptr;
    const toml::node& node = *node_ptr;
    const std::string key = prefix + std::string(k.str());
    if (t.name[0] == '\0') {
      bool sub_table = false;
      for (const TableRules& sub : kTables) {
        if (sub.name[0] != '\0' && k.str() == sub.name) {
          read_table(r, r.table(node, key), sub, given, out);
          sub_table = true;
        }
      }
      if (sub_table) continue;
    }
    const Rule* rule = nullptr;
    for (const Rule& candidate : t.rules) {
      if (k.str() == candidate.name) rule = &candidate;
    }
    if (rule == nullptr) {
      r.fail(node, key,
             fmt::format("unknown key (known{}: {})",
                         t.name[0] == '\0' ? "" : fmt::format(" in [{}]", t.name), known_keys(t)));
    }
    const bool overridden = given && ((rule->flag != nullptr && given(rule->flag)) ||
                                      (rule->pair_flag != nullptr && given(rule->pair_flag)));
    // Checked all the same: a bad file is an error even where a flag hides the mistake.
    RunOptions ignored;
    rule->read(r, node, key, overridden ? ignored : out);
    if (!overridden) out.config_keys.insert(key);
  }
}

// A total and a per-node size in the same file contradict each other (as the flags do).
void check_pair(const Reader& r, const toml::table& root, const char* total, const char* per_node) {
  const toml::node* a = root.get(total);
  const toml::node* b = root["cluster"][per_node].node();
  if (a != nullptr && b != nullptr) {
    r.fail(*b, std::string("cluster.") + per_node,
           fmt::format("give {} (the total) or cluster.{}, not both", total, per_node));
  }
}

}  // namespace

FlagGiven flags_given_to(const CLI::App& cmd) {
  return [&cmd](std::string_view flag) {
    const CLI::Option* opt = cmd.get_option_no_throw(std::string(flag));
    return opt != nullptr && opt->count() > 0;
  };
}

void apply_vm_config(const std::string& path, RunOptions& options, const FlagGiven& given) {
  const std::string text = read_file(path);
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("{}:{}: syntax error: {} (column {})", path,
                                  e.source().begin.line, e.description(), e.source().begin.column));
  }
  const Reader reader(path, std::filesystem::path(path).parent_path());
  RunOptions out = options;  // `options` stays as it is if the file is bad
  read_table(reader, root, kTables[0], given, out);
  check_pair(reader, root, "vcpus", "vcpus_per_node");
  check_pair(reader, root, "memory", "memory_per_node");
  out.config_file = path;
  options = std::move(out);
}

}  // namespace dvmm::cli
