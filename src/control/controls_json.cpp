#include "control/controls_json.hpp"

#include <string>
#include <vector>

namespace dvmm::control {

using nlohmann::json;

namespace {

std::vector<std::string> string_list(const json& v, const char* key) {
  if (!v.is_array()) throw vmm::ControlError(std::string(key) + ": expected an array of names");
  std::vector<std::string> out;
  for (const json& e : v) {
    if (!e.is_string()) throw vmm::ControlError(std::string(key) + ": expected names (strings)");
    out.push_back(e.get<std::string>());
  }
  return out;
}

bool boolean(const json& v, const char* key) {
  if (!v.is_boolean()) throw vmm::ControlError(std::string(key) + ": expected true or false");
  return v.get<bool>();
}

u64 unsigned_number(const json& v, const char* key) {
  if (!v.is_number_unsigned()) {
    throw vmm::ControlError(std::string(key) + ": expected a non-negative integer");
  }
  return v.get<u64>();
}

}  // namespace

json controls_to_json(const vmm::VmControls& c) {
  json j;
  j["exceptions"] = vmm::exception_list(c);
  j["csr_read"] = vmm::csr_read_list(c);
  j["csr_write"] = vmm::csr_write_list(c);
  j["wfi_exiting"] = c.exec.wfi_exiting;
  j["halt_poll_us"] = c.halt_poll_ns / 1000;
  j["single_step"] = c.exec.single_step;
  j["breakpoints"] = c.exec.breakpoints;
  j["page_fault_filter"] = {c.exec.page_fault_filter_lo, c.exec.page_fault_filter_hi};
  j["action"] = vmm::action_name(c.action);
  j["sbi_trace"] = std::vector<std::string>(c.sbi_trace.begin(), c.sbi_trace.end());
  j["mmio_trace"] = std::vector<std::string>(c.mmio_trace.begin(), c.mmio_trace.end());
  return j;
}

void apply_controls_json(vmm::VmControls& c, const json& update) {
  if (!update.is_object()) throw vmm::ControlError("controls: expected a JSON object");
  vmm::VmControls next = c;
  for (const auto& [key, v] : update.items()) {
    const char* k = key.c_str();
    if (key == "exceptions") {
      vmm::set_exceptions(next, string_list(v, k));
    } else if (key == "csr_read") {
      vmm::set_csr_reads(next, string_list(v, k));
    } else if (key == "csr_write") {
      vmm::set_csr_writes(next, string_list(v, k));
    } else if (key == "wfi_exiting") {
      next.exec.wfi_exiting = boolean(v, k);
    } else if (key == "halt_poll_us") {
      const u64 us = unsigned_number(v, k);
      if (us > 1'000'000) throw vmm::ControlError("halt_poll_us: at most 1000000 (1 s)");
      next.halt_poll_ns = us * 1000;
    } else if (key == "single_step") {
      next.exec.single_step = boolean(v, k);
    } else if (key == "breakpoints") {
      if (!v.is_array()) throw vmm::ControlError("breakpoints: expected an array of addresses");
      std::vector<u64> bps;
      for (const json& e : v) bps.push_back(unsigned_number(e, k));
      next.exec.breakpoints = std::move(bps);
    } else if (key == "page_fault_filter") {
      if (!v.is_array() || v.size() != 2) {
        throw vmm::ControlError("page_fault_filter: expected [low, high]");
      }
      const u64 lo = unsigned_number(v[0], k), hi = unsigned_number(v[1], k);
      if (lo >= hi) throw vmm::ControlError("page_fault_filter: low must be below high");
      next.exec.page_fault_filter_lo = lo;
      next.exec.page_fault_filter_hi = hi;
    } else if (key == "action") {
      if (!v.is_string()) throw vmm::ControlError("action: expected a string");
      const auto a = vmm::action_by_name(v.get<std::string>());
      if (!a) {
        throw vmm::ControlError("action: unknown action '" + v.get<std::string>() +
                                "' (known: count, log, pause, deliver)");
      }
      next.action = *a;
    } else if (key == "sbi_trace") {
      vmm::set_sbi_trace(next, string_list(v, k));
    } else if (key == "mmio_trace") {
      vmm::set_mmio_trace(next, string_list(v, k));
    } else if (key == "vcpu") {
      // Addressing, handled by the caller.
    } else {
      throw vmm::ControlError(
          "unknown control '" + key +
          "' (known: exceptions, csr_read, csr_write, wfi_exiting, halt_poll_us, single_step, "
          "breakpoints, page_fault_filter, action, sbi_trace, mmio_trace)");
    }
  }
  c = std::move(next);
}

}  // namespace dvmm::control
