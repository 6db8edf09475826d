#include "machine/machine.hpp"

#include <algorithm>
#include <cctype>
#include <system_error>

#include "machine/guest_command.hpp"

namespace dvmm::machine {

namespace {

std::string size_text(u64 bytes) {
  if (bytes % (u64{1} << 40) == 0) return std::to_string(bytes >> 40) + "T";
  if (bytes % (u64{1} << 30) == 0) return std::to_string(bytes >> 30) + "G";
  if (bytes % (u64{1} << 20) == 0) return std::to_string(bytes >> 20) + "M";
  if (bytes % (u64{1} << 10) == 0) return std::to_string(bytes >> 10) + "K";
  return std::to_string(bytes) + " bytes";
}

}  // namespace

u64 parse_memory_size(std::string_view text, std::string_view what) {
  const std::string shown(text);
  auto bad = [&](const std::string& why) {
    return MachineError("invalid " + std::string(what) + " '" + shown + "': " + why);
  };
  std::size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  u64 value = 0;
  const std::size_t digits_start = i;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    const u64 d = static_cast<u64>(text[i] - '0');
    if (value > (~u64{0} - d) / 10) throw bad("too large");
    value = value * 10 + d;
    ++i;
  }
  if (i == digits_start)
    throw bad("expected a number with an optional K, M, G or T suffix, e.g. 512M");
  unsigned shift = 20;  // QEMU: a bare number is in MiB
  if (i < text.size()) {
    switch (std::toupper(static_cast<unsigned char>(text[i]))) {
      case 'K':
        shift = 10;
        break;
      case 'M':
        shift = 20;
        break;
      case 'G':
        shift = 30;
        break;
      case 'T':
        shift = 40;
        break;
      case 'B':
        shift = 0;
        break;
      default:
        throw bad("unknown unit; use K, M, G or T, e.g. 512M");
    }
    ++i;
    std::string_view rest = text.substr(i);
    if (shift != 0 && (rest == "iB" || rest == "ib" || rest == "B" || rest == "b")) rest = {};
    if (!rest.empty()) throw bad("unexpected '" + std::string(rest) + "' after the unit");
  }
  if (value > (~u64{0} >> shift)) throw bad("too large");
  return value << shift;
}

void check_memory_size(u64 bytes) {
  if (bytes < kMinRamSize) {
    throw MachineError("memory size " + size_text(bytes) + " is too small; dvmm needs at least " +
                       size_text(kMinRamSize));
  }
  if (bytes > kMaxRamSize) {
    throw MachineError("memory size " + size_text(bytes) + " is too large; at most " +
                       size_text(kMaxRamSize));
  }
  if (bytes % kPageSize != 0) throw MachineError("memory size must be a multiple of 4K");
}

Machine::Machine(const MachineConfig& config, MachineCallbacks callbacks)
    : config_(config), callbacks_(std::move(callbacks)) {
  if (config_.vcpus < 1 || config_.vcpus > kMaxHarts) {
    throw MachineError("--vcpus must be between 1 and " + std::to_string(kMaxHarts) + ", not " +
                       std::to_string(config_.vcpus));
  }
  check_memory_size(config_.memory_size);
  try {
    ram_ = std::make_unique<memory::GuestRam>(kRamBase, config_.memory_size);
  } catch (const std::system_error& e) {
    throw MachineError("cannot allocate " + size_text(config_.memory_size) +
                       " of guest memory: " + e.what());
  }
  for (unsigned i = 0; i < config_.vcpus; ++i) {
    harts_.push_back(std::make_unique<cpu::Hart>(i, *ram_, time_));
  }

  std::vector<devices::Plic::ContextCallback> contexts;
  for (unsigned i = 0; i < config_.vcpus; ++i) {
    cpu::Hart* h = harts_[i].get();
    if (callbacks_.external_interrupt) {
      contexts.emplace_back([this, i](bool level) { callbacks_.external_interrupt(i, level); });
    } else {
      contexts.emplace_back([h](bool level) { h->set_external_interrupt(level); });
    }
  }
  plic_ = std::make_unique<devices::Plic>(std::move(contexts));
  uart_ = std::make_unique<devices::Uart16550>("uart0", plic_->line(kUart0Irq), [this](char c) {
    if (callbacks_.console) callbacks_.console(c);
  });
  finisher_ = std::make_unique<devices::TestFinisher>([this](const devices::FinisherEvent& e) {
    if (callbacks_.finisher) callbacks_.finisher(e);
  });

  power_button_ = std::make_unique<devices::PowerButton>(plic_->line(kPowerButtonIrq));

  using Role = DeviceTreeConfig::Device::Role;
  slots_ = {
      {kPowerButtonBase, kPowerButtonSize, power_button_.get(), kPowerButtonIrq, Role::kPlain},
      {kFinisherBase, kFinisherSize, finisher_.get(), 0, Role::kSyscon},
      {kPlicBase, kPlicSize, plic_.get(), 0, Role::kInterruptController},
      {kUart0Base, kUart0Size, uart_.get(), kUart0Irq, Role::kConsole},
  };
  std::sort(slots_.begin(), slots_.end(),
            [](const Slot& a, const Slot& b) { return a.base < b.base; });
  reset_devices();
}

Machine::~Machine() = default;

void Machine::reset_devices() {
  for (const Slot& s : slots_) s.device->reset();
}

std::vector<u8> Machine::build_device_tree(std::optional<std::pair<Gpa, Gpa>> initrd) const {
  DeviceTreeConfig dt;
  dt.harts = hart_count();
  dt.timebase_hz = time_.frequency_hz();
  dt.ram_base = ram_->base();
  dt.ram_size = ram_->size();
  dt.numa_nodes = config_.numa_nodes;
  dt.numa_distance = config_.numa_distance;
  for (const Slot& s : slots_) dt.devices.push_back({s.device, s.base, s.irq, s.role});
  dt.bootargs = config_.bootargs;
  dt.initrd = initrd;
  return machine::build_device_tree(dt);
}

BootInfo Machine::boot() {
  BootInfo info;
  const std::vector<u8> kernel = read_file(config_.kernel_path, "kernel");
  info.header = parse_image_header(kernel);

  std::vector<std::vector<u8>> parts;
  for (const std::string& p : config_.initrd_paths) parts.push_back(read_file(p, "initrd"));
  if (!config_.initrd_appendix.empty()) parts.push_back(config_.initrd_appendix);
  const std::vector<u8> initrd = concat_initrd(parts);

  std::optional<std::pair<Gpa, Gpa>> placeholder;
  if (!initrd.empty()) placeholder = std::pair<Gpa, Gpa>{0, 0};
  std::vector<u8> dtb = build_device_tree(placeholder);
  const u64 boot_size = config_.boot_memory_size != 0
                            ? std::min(config_.boot_memory_size, ram_->size())
                            : ram_->size();
  info.layout = plan_boot_layout(ram_->base(), boot_size, info.header, kernel.size(), initrd.size(),
                                 dtb.size());
  if (!initrd.empty()) {
    patch_initrd(dtb, info.layout.initrd, info.layout.initrd + info.layout.initrd_size);
  }

  reset_devices();
  time_.restart();  // guest time starts at each boot, as on a real machine after reset
  load_into(*ram_, info.layout, kernel, initrd, dtb);
  dtb_ = std::move(dtb);
  // Boot protocol: hart 0 enters the kernel in S-mode with paging off, a0 = hartid,
  // a1 = the DTB's physical address. The others stay stopped until the SBI HSM starts them.
  for (unsigned i = 0; i < hart_count(); ++i) harts_[i]->reset(0, i, 0);
  harts_[0]->reset(info.layout.kernel, 0, info.layout.dtb);
  return info;
}

void Machine::attach_virtio(unsigned slot, devices::MmioDevice& device) {
  if (slot >= kVirtioSlots) {
    throw MachineError("too many virtio devices: the board has " + std::to_string(kVirtioSlots) +
                       " virtio-mmio slots");
  }
  const Gpa base = virtio_slot_base(slot);
  for (const Slot& s : slots_) {
    if (s.base == base)
      throw MachineError("virtio-mmio slot " + std::to_string(slot) + " is taken");
  }
  slots_.push_back({base, kVirtioSlotSize, &device, kVirtioFirstIrq + slot,
                    DeviceTreeConfig::Device::Role::kPlain});
  std::sort(slots_.begin(), slots_.end(),
            [](const Slot& a, const Slot& b) { return a.base < b.base; });
}

void Machine::attach_ivc(unsigned slot, devices::MmioDevice& device, u8* shm, u64 shm_size) {
  if (slot >= kIvcSlots) {
    throw MachineError("too many inter-VM groups: the board has " + std::to_string(kIvcSlots) +
                       " inter-VM communication slots");
  }
  if (shm_size > kIvcShmStride) throw MachineError("inter-VM shared memory is too large");
  const Gpa base = ivc_slot_base(slot);
  for (const Slot& s : slots_) {
    if (s.base == base) throw MachineError("inter-VM slot " + std::to_string(slot) + " is taken");
  }
  try {
    ram_->add_window({ivc_shm_base(slot), shm_size, shm});
  } catch (const std::invalid_argument& e) {
    throw MachineError(std::string("inter-VM shared memory: ") + e.what());
  }
  slots_.push_back(
      {base, kIvcSlotSize, &device, kIvcFirstIrq + slot, DeviceTreeConfig::Device::Role::kPlain});
  std::sort(slots_.begin(), slots_.end(),
            [](const Slot& a, const Slot& b) { return a.base < b.base; });
}

devices::MmioDevice* Machine::find(Gpa gpa, unsigned size, u64* offset) {
  // A handful of devices: a linear scan of the sorted slots is as fast as anything.
  for (const Slot& s : slots_) {
    if (gpa < s.base) break;
    const u64 off = gpa - s.base;
    if (off < s.size && size <= s.size - off) {
      *offset = off;
      return s.device;
    }
  }
  return nullptr;
}

u64 Machine::mmio_read(Gpa gpa, unsigned size) {
  u64 offset = 0;
  if (devices::MmioDevice* d = find(gpa, size, &offset)) return d->read(offset, size);
  unmapped_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

void Machine::mmio_write(Gpa gpa, unsigned size, u64 value) {
  u64 offset = 0;
  if (size < 8) value &= (u64{1} << (size * 8)) - 1;
  if (devices::MmioDevice* d = find(gpa, size, &offset)) return d->write(offset, size, value);
  unmapped_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace dvmm::machine
