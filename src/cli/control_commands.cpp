#include "cli/control_commands.hpp"

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/types.hpp"
#include "control/control_paths.hpp"

namespace dvmm::cli {

using nlohmann::json;

namespace {

struct Failure {
  std::string message;
};

std::unique_ptr<httplib::Client> client_for(const std::string& name, int read_timeout_s = 10) {
  const std::string path = control::socket_path(name);
  if (::access(path.c_str(), F_OK) != 0) {
    std::string running;
    for (const std::string& n : control::listed_vm_names())
      running += (running.empty() ? "" : ", ") + n;
    throw Failure{"no VM named '" + name + "'" +
                  (running.empty() ? " (none is running)" : " (running: " + running + ")")};
  }
  auto c = std::make_unique<httplib::Client>(path, 80);
  c->set_address_family(AF_UNIX);
  c->set_connection_timeout(std::chrono::seconds(2));
  c->set_read_timeout(std::chrono::seconds(read_timeout_s));
  return c;
}

// One request; the parsed JSON answer, or Failure with the API's error message.
json request(const std::string& name, const std::string& method, const std::string& path,
             const json& body = nullptr, int read_timeout_s = 10) {
  auto c = client_for(name, read_timeout_s);
  httplib::Result r = method == "GET"
                          ? c->Get(path.c_str())
                          : c->Put(path.c_str(), body.is_null() ? std::string("{}") : body.dump(),
                                   "application/json");
  if (!r) {
    throw Failure{"VM '" + name + "' does not answer on " + control::socket_path(name) + " (" +
                  httplib::to_string(r.error()) + "); it may have ended"};
  }
  json j;
  try {
    j = json::parse(r->body);
  } catch (const json::exception&) {
    throw Failure{"VM '" + name + "' answered something that is not JSON (status " +
                  std::to_string(r->status) + ")"};
  }
  if (r->status != 200) {
    throw Failure{j.contains("error") ? j["error"].get<std::string>()
                                      : "request failed with status " + std::to_string(r->status)};
  }
  return j;
}

json vcpu_body(const ControlOptions& o) {
  json b = json::object();
  if (o.vcpu) b["vcpu"] = *o.vcpu;
  return b;
}

void print(const std::string& s) {
  std::fputs(s.c_str(), stdout);
}

std::string join(const json& list) {
  std::string out;
  for (const json& e : list) {
    out += (out.empty() ? "" : ",") + (e.is_string() ? e.get<std::string>() : e.dump());
  }
  return out.empty() ? "-" : out;
}

// KEY=VALUE -> the JSON of one control.
void parse_assignment(const std::string& a, json& update) {
  const auto eq = a.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw Failure{"'" + a + "': expected KEY=VALUE (e.g. csr_write=satp, action=log)"};
  }
  const std::string key = a.substr(0, eq), value = a.substr(eq + 1);
  auto list = [&] {
    json l = json::array();
    std::size_t start = 0;
    while (start <= value.size() && !value.empty()) {
      const auto comma = value.find(',', start);
      const std::string item =
          value.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!item.empty()) l.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return l;
  };
  if (key == "exceptions" || key == "csr_read" || key == "csr_write" || key == "sbi_trace" ||
      key == "mmio_trace") {
    update[key] = list();
  } else if (key == "wfi_exiting" || key == "single_step") {
    if (value != "true" && value != "false") throw Failure{key + ": expected true or false"};
    update[key] = value == "true";
  } else if (key == "halt_poll_us") {
    try {
      update[key] = std::stoull(value);
    } catch (const std::exception&) {
      throw Failure{key + ": expected a number of microseconds, not '" + value + "'"};
    }
  } else if (key == "breakpoints" || key == "page_fault_filter") {
    json l = json::array();
    for (const json& item : list()) {
      try {
        l.push_back(std::stoull(item.get<std::string>(), nullptr, 0));
      } catch (const std::exception&) {
        throw Failure{key + ": '" + item.get<std::string>() + "' is not an address"};
      }
    }
    update[key] = l;
  } else {
    update[key] = value;  // action, or an unknown key the VM names in its error
  }
}

int run(const ControlOptions& o) {
  const std::string& cmd = o.command;
  if (cmd == "list") {
    json all = json::array();
    for (const std::string& name : control::listed_vm_names()) {
      try {
        all.push_back(request(name, "GET", "/api/v1/vm.info", nullptr, 2));
      } catch (const Failure&) {
        // A socket left by a VM that died: clean it up.
        ::unlink(control::socket_path(name).c_str());
      }
    }
    if (o.json) {
      print(all.dump(2) + "\n");
      return 0;
    }
    print(fmt::format("{:<20} {:>8} {:<8} {:>5} {:>6} {:>9} {:>9}\n", "NAME", "PID", "STATE",
                      "VCPUS", "NODES", "MEMORY", "UPTIME"));
    for (const json& v : all) {
      print(fmt::format("{:<20} {:>8} {:<8} {:>5} {:>6} {:>8}M {:>8.0f}s\n", v.value("name", "?"),
                        v.value("pid", 0), v.value("state", "?"), v.value("vcpus", 0),
                        v.value("nodes", 1), v.value("memory_bytes", u64{0}) >> 20,
                        v.value("uptime_s", 0.0)));
    }
    return 0;
  }
  if (!control::valid_vm_name(o.name)) throw Failure{"bad VM name '" + o.name + "'"};
  if (cmd == "info") {
    const json j = request(o.name, "GET", "/api/v1/vm.info");
    if (o.json) {
      print(j.dump(2) + "\n");
    } else {
      for (const auto& [k, v] : j.items())
        print(fmt::format("{:<14} {}\n", k, v.is_string() ? v.get<std::string>() : v.dump()));
    }
    return 0;
  }
  if (cmd == "pause" || cmd == "resume") {
    const json j = request(o.name, "PUT", "/api/v1/vm." + cmd, vcpu_body(o));
    if (o.json) print(j.dump() + "\n");
    return 0;
  }
  if (cmd == "kill") {
    const json j = request(o.name, "PUT", "/api/v1/vm.kill");
    if (o.json) print(j.dump() + "\n");
    return 0;
  }
  if (cmd == "stop") {
    // The VM presses its power button and stops hard after grace_s itself; the process is
    // killed only if it has not ended some time after that.
    const json j = request(o.name, "PUT", "/api/v1/vm.stop", json{{"grace_s", o.grace_s}});
    const bool graceful = j.value("graceful", false);
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(static_cast<long long>(o.grace_s * 1000)) +
                          std::chrono::seconds(10);
    const std::string path = control::socket_path(o.name);
    while (::access(path.c_str(), F_OK) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        std::fprintf(stderr, "dvmm: '%s' did not stop within %.0f s; killing it\n", o.name.c_str(),
                     o.grace_s + 10);
        request(o.name, "PUT", "/api/v1/vm.kill");
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (o.json) print(json{{"stopped", true}, {"graceful", graceful}}.dump() + "\n");
    return 0;
  }
  if (cmd == "stats") {
    const json j = request(o.name, "GET", "/api/v1/vm.stats");
    if (o.json) {
      print(j.dump(2) + "\n");
      return 0;
    }
    for (const json& v : j["vcpus"]) {
      std::string exits;
      for (const auto& [k, n] : v["exits"].items()) {
        if (n.get<u64>() != 0) exits += fmt::format(" {}={}", k, n.get<u64>());
      }
      std::string exc;
      for (const auto& [k, n] : v["exceptions"].items())
        exc += fmt::format(" {}={}", k, n.get<u64>());
      print(fmt::format("vcpu {}: {} instructions{}; exits:{}; csr reads/writes {}/{}{}\n",
                        v["id"].get<unsigned>(), v["instructions"].get<u64>(),
                        v["paused"].get<bool>() ? " (paused)" : "", exits,
                        v["csr_reads"].get<u64>(), v["csr_writes"].get<u64>(),
                        exc.empty() ? "" : "; intercepted:" + exc));
    }
    std::string sbi;
    for (const auto& [k, n] : j["sbi"].items()) {
      if (n.get<u64>() != 0) sbi += fmt::format(" {}={}", k, n.get<u64>());
    }
    print("sbi calls:" + (sbi.empty() ? std::string(" none") : sbi) + "\n");
    return 0;
  }
  if (cmd == "controls") {
    if (o.controls_verb == "get") {
      std::string path = "/api/v1/vm.controls";
      if (o.vcpu) path += "?vcpu=" + std::to_string(*o.vcpu);
      const json j = request(o.name, "GET", path);
      if (o.json) {
        print(j.dump(2) + "\n");
      } else {
        for (const auto& [k, v] : j.items()) {
          print(fmt::format("{:<13} {}\n", k,
                            v.is_array()    ? join(v)
                            : v.is_string() ? v.get<std::string>()
                                            : v.dump()));
        }
      }
      return 0;
    }
    if (o.controls_verb != "set")
      throw Failure{"controls: expected get or set, not '" + o.controls_verb + "'"};
    if (o.assignments.empty()) throw Failure{"controls set: give at least one KEY=VALUE"};
    json update = vcpu_body(o);
    for (const std::string& a : o.assignments) parse_assignment(a, update);
    const json j = request(o.name, "PUT", "/api/v1/vm.controls", update);
    if (o.json) {
      print(j.dump(2) + "\n");
    } else {
      print(fmt::format("applied on every vCPU{} in {:.0f} us\n",
                        o.vcpu ? fmt::format(" ({})", *o.vcpu) : std::string(),
                        j.value("applied_us", 0.0)));
    }
    return 0;
  }
  if (cmd == "trace") {
    unsigned long long since = o.since;
    for (;;) {
      const json j = request(
          o.name, "GET",
          fmt::format("/api/v1/vm.trace?since={}&max=1000&wait_ms={}", since, o.follow ? 1000 : 0),
          nullptr, 40);
      if (j.value("dropped", u64{0}) != 0) {
        std::fprintf(stderr, "dvmm: %llu trace events were lost (the buffer overflowed)\n",
                     static_cast<unsigned long long>(j["dropped"].get<u64>()));
      }
      for (const json& e : j["events"]) print(e.dump() + "\n");
      std::fflush(stdout);
      since = j["next"].get<u64>();
      if (!o.follow) return 0;
    }
  }
  throw Failure{"unknown command " + cmd};
}

}  // namespace

std::vector<CLI::App*> add_control_commands(CLI::App& app, ControlOptions& o) {
  std::vector<CLI::App*> cmds;
  auto add = [&](const char* name, const char* help, bool needs_name) {
    CLI::App* c = app.add_subcommand(name, help);
    if (needs_name)
      c->add_option("name", o.name, "The VM's name (dvmm run --name; dvmm list)")->required();
    c->add_flag("--json", o.json, "Print the API's JSON answer");
    c->callback([&o, name] { o.command = name; });
    cmds.push_back(c);
    return c;
  };
  add("list", "List the running VMs of this user", false);
  add("info", "Show a running VM's name, state, size and uptime", true);
  add("pause", "Pause a VM's vCPUs (all, or --vcpu N)", true)
      ->add_option("--vcpu", o.vcpu, "Only this vCPU");
  add("resume", "Resume paused vCPUs (all, or --vcpu N)", true)
      ->add_option("--vcpu", o.vcpu, "Only this vCPU");
  add("stop",
      "Stop a VM: press its power button (a guest that listens shuts down cleanly), then stop "
      "it hard after --grace seconds",
      true)
      ->add_option("--grace", o.grace_s,
                   "Seconds the guest has to shut down after the power button is pressed "
                   "before it is stopped hard (default 10; 0: stop hard at once)")
      ->check(CLI::Range(0.0, 3600.0));
  add("kill", "End a VM's process at once", true);
  add("stats", "Per-vCPU instruction and exit counters, intercepted events, SBI calls", true);
  CLI::App* controls = add("controls", "Get or set a VM's execution controls while it runs", true);
  controls->add_option("verb", o.controls_verb, "get or set")->required();
  controls->add_option("assignments", o.assignments,
                       "For set: KEY=VALUE... with KEY one of exceptions, csr_read, csr_write, "
                       "sbi_trace, mmio_trace (comma-separated names), wfi_exiting, single_step "
                       "(true/false), halt_poll_us, breakpoints (addresses), page_fault_filter "
                       "(LOW,HIGH: intercepted page faults only for those addresses), action "
                       "(count/log/pause/deliver)");
  controls->add_option("--vcpu", o.vcpu, "Only this vCPU");
  controls->footer(
      "Examples:\n"
      "  dvmm controls web1 set csr_write=satp action=log     (trace process switches)\n"
      "  dvmm controls web1 set exceptions=ecall_from_u         (trace system calls)\n"
      "  dvmm controls web1 set csr_write= exceptions=          (everything off)");
  CLI::App* trace = add("trace", "Print a VM's trace events (JSON lines)", true);
  trace->add_flag("-f,--follow", o.follow, "Keep printing new events until interrupted");
  trace->add_option("--since", o.since, "Start at this event number (default: the oldest kept)");
  return cmds;
}

int control_command(const ControlOptions& o) {
  try {
    return run(o);
  } catch (const Failure& f) {
    std::fprintf(stderr, "dvmm: error: %s\n", f.message.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dvmm: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace dvmm::cli
