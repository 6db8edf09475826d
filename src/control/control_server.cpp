#include "control/control_server.hpp"

#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "control/control_paths.hpp"
#include "control/controls_json.hpp"

namespace dvmm::control {

using nlohmann::json;

namespace {

constexpr const char* kExitNames[] = {"sbi",  "wfi",       "mmio_read", "mmio_write",
                                      "page", "exception", "csr",       "breakpoint",
                                      "step", "kicked",    "budget"};
static_assert(std::size(kExitNames) == cpu::kExitKinds);
constexpr const char* kSbiNames[] = {"legacy", "base", "time", "ipi",  "rfence",
                                     "hsm",    "srst", "dbcn", "other"};
static_assert(std::size(kSbiNames) == vmm::Sbi::kCounterSlots);

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void error(httplib::Response& res, int status, const std::string& message) {
  reply(res, status, json{{"error", message}});
}

// A connect() to the socket: is a VM answering there?
bool socket_answers(const std::string& path) {
  httplib::Client c(path, 80);
  c.set_address_family(AF_UNIX);
  c.set_connection_timeout(std::chrono::milliseconds(300));
  c.set_read_timeout(std::chrono::seconds(1));
  auto r = c.Get("/api/v1/vm.info");
  return static_cast<bool>(r);
}

}  // namespace

std::string node_stats_json(vmm::Vm& vm) {
  json list = json::array();
  for (HartId h = 0; h < vm.machine().hart_count(); ++h) {
    if (!vm.node_links().is_local(h)) continue;
    const vmm::Vcpu& v = vm.vcpu(h);
    json e;
    for (std::size_t k = 0; k < cpu::kExitKinds; ++k) e[kExitNames[k]] = v.exits(k);
    json exc = json::object();
    for (unsigned c = 0; c < 16; ++c) {
      if (const char* n = vmm::exception_name(c); n && v.intercepted_exceptions(c) != 0) {
        exc[n] = v.intercepted_exceptions(c);
      }
    }
    list.push_back(json{{"id", h},
                        {"instructions", vm.machine().hart(h).instret()},
                        {"paused", v.paused()},
                        {"exits", e},
                        {"exceptions", exc},
                        {"csr_reads", v.csr_reads()},
                        {"csr_writes", v.csr_writes()}});
  }
  json sbi;
  for (std::size_t k = 0; k < vmm::Sbi::kCounterSlots; ++k) sbi[kSbiNames[k]] = vm.sbi().calls(k);
  return json{{"vcpus", list}, {"sbi", sbi}, {"trace_events", vm.trace().appended()}}.dump();
}

ControlServer::ControlServer(std::string name, vmm::Vm& vm, ControlHooks hooks)
    : name_(std::move(name)), vm_(vm), hooks_(std::move(hooks)) {
  if (const std::string why = vm_name_problem(name_); !why.empty()) {
    throw std::runtime_error("bad VM name '" + name_ + "': " + why);
  }
  path_ = socket_path(name_);
  if (::access(path_.c_str(), F_OK) == 0) {
    if (socket_answers(path_)) {
      throw std::runtime_error("a VM named '" + name_ + "' is already running (" + path_ +
                               "); choose another --name");
    }
    ::unlink(path_.c_str());  // left by a VM that died
  }
  server_ = std::make_unique<httplib::Server>();
  server_->set_address_family(AF_UNIX);
  routes();
  if (!server_->bind_to_port(path_.c_str(), 80)) {
    throw std::runtime_error("cannot listen on " + path_);
  }
  ::chmod(path_.c_str(), 0600);
  started_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() does nothing before the accept loop has started (is_running()), and the
  // loop then never ends: a server destroyed at once (a later startup error) would hang.
  for (int i = 0; i < 5000 && !server_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

ControlServer::~ControlServer() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
  ::unlink(path_.c_str());
}

void ControlServer::routes() {
  httplib::Server& s = *server_;
  const unsigned vcpus = vm_.machine().hart_count();

  // The optional {"vcpu": N} of a request body (or ?vcpu=N); throws on a bad one.
  auto which = [vcpus](const httplib::Request& req) -> std::optional<HartId> {
    std::optional<u64> v;
    if (req.has_param("vcpu")) {
      v = std::stoull(req.get_param_value("vcpu"));
    } else if (!req.body.empty()) {
      const json body = json::parse(req.body);
      if (body.contains("vcpu")) {
        if (!body["vcpu"].is_number_unsigned()) throw vmm::ControlError("vcpu: expected a number");
        v = body["vcpu"].get<u64>();
      }
    }
    if (!v) return std::nullopt;
    if (*v >= vcpus) {
      throw std::out_of_range("no vCPU " + std::to_string(*v) + " (the VM has " +
                              std::to_string(vcpus) + ")");
    }
    return static_cast<HartId>(*v);
  };
  // Runs a handler, turning exceptions into error replies.
  auto guarded = [](auto&& f) {
    return [f](const httplib::Request& req, httplib::Response& res) {
      try {
        f(req, res);
      } catch (const json::exception& e) {
        error(res, 400, std::string("malformed request: ") + e.what());
      } catch (const vmm::ControlError& e) {
        error(res, 400, e.what());
      } catch (const std::out_of_range& e) {
        error(res, 404, e.what());
      } catch (const std::invalid_argument& e) {
        error(res, 400, std::string("bad number: ") + e.what());
      }
    };
  };

  s.Get("/api/v1/vm.info", guarded([this, vcpus](const httplib::Request&, httplib::Response& res) {
          json j = hooks_.info_json ? json::parse(hooks_.info_json()) : json::object();
          j["name"] = name_;
          j["pid"] = ::getpid();
          j["state"] = !vm_.running() ? "stopped" : vm_.paused() ? "paused" : "running";
          j["vcpus"] = vcpus;
          j["memory_bytes"] = vm_.machine().ram().size();
          j["uptime_s"] =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
          reply(res, 200, j);
        }));
  s.Put("/api/v1/vm.pause",
        guarded([this, which](const httplib::Request& req, httplib::Response& res) {
          const auto v = which(req);
          if (!vm_.running()) return error(res, 409, "the VM is not running");
          const bool ok = vm_.pause(v, std::chrono::milliseconds(2000));
          if (!ok) return error(res, 409, "the vCPUs did not pause within 2 s");
          reply(res, 200, json{{"paused", true}});
        }));
  s.Put("/api/v1/vm.resume",
        guarded([this, which](const httplib::Request& req, httplib::Response& res) {
          vm_.resume(which(req));
          reply(res, 200, json{{"paused", false}});
        }));
  s.Put("/api/v1/vm.stop", guarded([this](const httplib::Request& req, httplib::Response& res) {
          double grace_s = 10;
          if (!req.body.empty()) {
            const json body = json::parse(req.body);
            if (body.contains("grace_s")) {
              if (!body["grace_s"].is_number() || body["grace_s"].get<double>() < 0 ||
                  body["grace_s"].get<double>() > 3600) {
                throw vmm::ControlError("grace_s: expected a number of seconds from 0 to 3600");
              }
              grace_s = body["grace_s"].get<double>();
            }
          }
          bool graceful = false;
          if (hooks_.stop) {
            graceful = hooks_.stop("stopped through the control API (dvmm stop)",
                                   std::chrono::milliseconds(static_cast<i64>(grace_s * 1000)));
          }
          reply(res, 200, json{{"stopping", true}, {"graceful", graceful}});
        }));
  s.Put("/api/v1/vm.kill", guarded([this](const httplib::Request&, httplib::Response& res) {
          reply(res, 200, json{{"killed", true}});
          if (hooks_.kill) {
            // After the reply has gone out.
            std::thread([k = hooks_.kill] {
              std::this_thread::sleep_for(std::chrono::milliseconds(50));
              k();
            }).detach();
          }
        }));
  s.Get("/api/v1/vm.stats", guarded([this](const httplib::Request&, httplib::Response& res) {
          json j = json::parse(node_stats_json(vm_));
          if (hooks_.remote_stats) {
            // A distributed VM: the other nodes' vCPUs and SBI calls too.
            const auto others = hooks_.remote_stats();
            if (!others) return error(res, 504, "a node did not send its counters within 2 s");
            for (const std::string& text : *others) {
              const json node = json::parse(text);
              for (const json& v : node.at("vcpus")) j["vcpus"].push_back(v);
              for (const auto& [k, n] : node.at("sbi").items()) {
                j["sbi"][k] = j["sbi"].value(k, u64{0}) + n.get<u64>();
              }
            }
            std::sort(j["vcpus"].begin(), j["vcpus"].end(),
                      [](const json& a, const json& b) { return a["id"] < b["id"]; });
          }
          reply(res, 200, j);
        }));
  s.Get("/api/v1/vm.controls",
        guarded([this, which](const httplib::Request& req, httplib::Response& res) {
          const auto v = which(req);
          reply(res, 200, controls_to_json(vm_.controls(v.value_or(0))));
        }));
  s.Put("/api/v1/vm.controls",
        guarded([this, which](const httplib::Request& req, httplib::Response& res) {
          const auto v = which(req);
          const json update = json::parse(req.body.empty() ? "{}" : req.body);
          vmm::VmControls next = vm_.controls(v.value_or(0));
          apply_controls_json(next, update);  // throws before anything changes
          const auto took = vm_.set_controls(next, v, std::chrono::milliseconds(2000));
          if (!took) return error(res, 409, "the vCPUs did not apply the controls within 2 s");
          auto total = *took;
          if (hooks_.set_remote_controls) {
            const auto start = std::chrono::steady_clock::now();
            if (!hooks_.set_remote_controls(next, v)) {
              return error(res, 409, "another node did not apply the controls");
            }
            total += std::chrono::steady_clock::now() - start;
          }
          json out = controls_to_json(next);
          out["applied_us"] = std::chrono::duration<double, std::micro>(total).count();
          reply(res, 200, out);
        }));
  s.Get(
      "/api/v1/vm.trace", guarded([this](const httplib::Request& req, httplib::Response& res) {
        const u64 since = req.has_param("since") ? std::stoull(req.get_param_value("since")) : 0;
        const u64 max = req.has_param("max") ? std::stoull(req.get_param_value("max")) : 1000;
        const u64 wait = req.has_param("wait_ms") ? std::stoull(req.get_param_value("wait_ms")) : 0;
        const auto batch = vm_.trace().read(since, std::min<u64>(max, 10000),
                                            std::chrono::milliseconds(std::min<u64>(wait, 30000)));
        std::string body = "{\"next\":" + std::to_string(batch.next) +
                           ",\"dropped\":" + std::to_string(batch.dropped) + ",\"events\":[";
        for (std::size_t i = 0; i < batch.events.size(); ++i) {
          if (i) body += ",";
          body += batch.events[i];
        }
        body += "]}";
        res.status = 200;
        res.set_content(body, "application/json");
      }));
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404 && res.body.empty()) {
      error(res, 404, "no such route: " + req.method + " " + req.path);
    }
  });
}

}  // namespace dvmm::control
