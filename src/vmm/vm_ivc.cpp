#include "vmm/vm_ivc.hpp"

#include <fmt/format.h>

#include <charconv>
#include <stdexcept>

#include "machine/memory_map.hpp"

namespace dvmm::vmm {

namespace ivc = devices::ivc;

IvcSpec parse_ivc_spec(std::string_view text) {
  const auto bad = [&](const std::string& why) {
    return std::invalid_argument("bad inter-VM group '" + std::string(text) + "': " + why);
  };
  IvcSpec spec;
  std::string_view rest = text;
  const std::size_t comma = rest.find(',');
  spec.group = std::string(rest.substr(0, comma));
  if (const std::string problem = ivc::group_name_problem(spec.group); !problem.empty()) {
    throw bad(problem);
  }
  rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  const auto number = [&](std::string_view key, std::string_view value, unsigned lo, unsigned hi) {
    unsigned n = 0;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (error != std::errc{} || end != value.data() + value.size() || n < lo || n > hi) {
      throw bad(std::string(key) + " must be a number from " + std::to_string(lo) + " to " +
                std::to_string(hi));
    }
    return n;
  };
  while (!rest.empty()) {
    const std::size_t next = rest.find(',');
    const std::string_view item = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view{} : rest.substr(next + 1);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) throw bad("'" + std::string(item) + "' is not KEY=VALUE");
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (key == "size") {
      try {
        spec.shm_size = machine::parse_memory_size(value, "shared memory size");
      } catch (const std::exception& e) {
        throw bad(e.what());
      }
      if (spec.shm_size == 0 || spec.shm_size % kPageSize != 0 ||
          spec.shm_size > ivc::kMaxShmSize) {
        throw bad("size must be a multiple of 4 KiB from 4K to 16G");
      }
    } else if (key == "rank") {
      spec.rank = static_cast<int>(number(key, value, 0, ivc::kMaxRanks - 1));
    } else if (key == "members") {
      spec.expected_members = number(key, value, 1, ivc::kMaxRanks);
    } else {
      throw bad("unknown option '" + std::string(key) + "' (size, rank, members)");
    }
  }
  if (spec.rank >= 0 && spec.expected_members != 0 &&
      static_cast<unsigned>(spec.rank) >= spec.expected_members) {
    throw bad("rank " + std::to_string(spec.rank) +
              " is not below members=" + std::to_string(spec.expected_members));
  }
  return spec;
}

VmIvc::VmIvc(const std::vector<IvcSpec>& specs, const std::string& runtime_dir,
             machine::Machine& machine, unsigned node_count) {
  if (specs.empty()) return;
  if (node_count > 1) {
    throw std::runtime_error(
        "--ivc: inter-VM communication needs a VM on one node (the shared "
        "memory is an object of one host); drop --nodes or --ivc");
  }
  if (specs.size() > machine::kIvcSlots) {
    throw std::runtime_error("--ivc: at most " + std::to_string(machine::kIvcSlots) +
                             " groups per VM");
  }
  for (unsigned slot = 0; slot < specs.size(); ++slot) {
    const IvcSpec& spec = specs[slot];
    for (unsigned j = 0; j < slot; ++j) {
      if (specs[j].group == spec.group) {
        throw std::runtime_error("--ivc: group " + spec.group + " is given twice");
      }
    }
    Member m;
    try {
      m.group = std::make_unique<ivc::IvcGroup>(
          ivc::JoinOptions{runtime_dir, spec.group, spec.shm_size, spec.rank});
    } catch (const ivc::IvcError& e) {
      throw std::runtime_error(std::string("--ivc: ") + e.what());
    }
    if (spec.expected_members != 0 && m.group->rank() >= spec.expected_members) {
      throw std::runtime_error(
          "--ivc: joined group " + spec.group + " as rank " + std::to_string(m.group->rank()) +
          ", but members=" + std::to_string(spec.expected_members) + " (ranks 0 to " +
          std::to_string(spec.expected_members - 1) + " are taken)");
    }
    m.device = std::make_unique<ivc::IvcDevice>(*m.group,
                                                machine.plic().line(machine::kIvcFirstIrq + slot),
                                                machine::ivc_shm_base(slot), spec.expected_members);
    machine.attach_ivc(slot, *m.device, m.group->shm(), m.group->shm_size());
    members_.push_back(std::move(m));
  }
}

VmIvc::~VmIvc() {
  for (Member& m : members_) m.device.reset();  // stops the watcher before leaving
  members_.clear();
}

std::vector<IvcGroupStats> VmIvc::stats() const {
  std::vector<IvcGroupStats> out;
  for (const Member& m : members_) {
    out.push_back({m.group->name(), m.group->rank(), m.group->members(), m.device->counters()});
  }
  return out;
}

std::vector<std::string> VmIvc::describe() const {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    const ivc::IvcGroup& g = *members_[i].group;
    out.push_back("ivc" + std::to_string(i) + ": group " + g.name() + ", rank " +
                  std::to_string(g.rank()) + ", " + std::to_string(g.shm_size() >> 20) +
                  " MiB shared memory at " + fmt::format("{:#x}", machine::ivc_shm_base(i)));
  }
  return out;
}

}  // namespace dvmm::vmm
