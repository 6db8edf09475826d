#include "machine/fdt_writer.hpp"

#include <libfdt.h>

#include <cstring>

namespace dvmm::machine {

namespace {

std::string z(std::string_view s) {
  return std::string(s);
}

[[noreturn]] void fail(const char* what, int err) {
  throw MachineError(std::string("device tree: ") + what + ": " + fdt_strerror(err));
}

}  // namespace

FdtWriter::FdtWriter(std::size_t initial_capacity) : buf_(initial_capacity) {
  if (int err = fdt_create(buf_.data(), static_cast<int>(buf_.size())); err != 0)
    fail("create", err);
  call("reserve map", [&] { return fdt_finish_reservemap(buf_.data()); });
  call("root", [&] { return fdt_begin_node(buf_.data(), ""); });
  path_.push_back("");
}

template <typename F>
void FdtWriter::call(const char* what, F&& f) {
  if (finished_) throw MachineError("device tree: writer used after finish()");
  for (;;) {
    const int err = f();
    if (err == 0) return;
    if (err != -FDT_ERR_NOSPACE) fail(what, err);
    // Sequential-write trees can move to a larger buffer mid-way (fdt_resize).
    std::vector<u8> bigger(buf_.size() * 2);
    if (int e = fdt_resize(buf_.data(), bigger.data(), static_cast<int>(bigger.size())); e != 0) {
      fail("resize", e);
    }
    buf_.swap(bigger);
  }
}

void FdtWriter::begin_node(std::string_view name) {
  const std::string n = z(name);
  call("begin node", [&] { return fdt_begin_node(buf_.data(), n.c_str()); });
  path_.push_back(path_.size() == 1 ? "/" + n : path_.back() + "/" + n);
}

void FdtWriter::end_node() {
  call("end node", [&] { return fdt_end_node(buf_.data()); });
  last_closed_path_ = path_.back();
  path_.pop_back();
}

void FdtWriter::prop_raw(std::string_view name, const void* data, std::size_t len) {
  const std::string n = z(name);
  call("property",
       [&] { return fdt_property(buf_.data(), n.c_str(), data, static_cast<int>(len)); });
}

void FdtWriter::prop_empty(std::string_view name) {
  prop_raw(name, nullptr, 0);
}

void FdtWriter::prop_u32(std::string_view name, u32 value) {
  const fdt32_t v = cpu_to_fdt32(value);
  prop_raw(name, &v, sizeof v);
}

void FdtWriter::prop_u64(std::string_view name, u64 value) {
  const fdt64_t v = cpu_to_fdt64(value);
  prop_raw(name, &v, sizeof v);
}

void FdtWriter::prop_cells(std::string_view name, std::span<const u32> cells) {
  std::vector<fdt32_t> be(cells.size());
  for (std::size_t i = 0; i < cells.size(); ++i) be[i] = cpu_to_fdt32(cells[i]);
  prop_raw(name, be.data(), be.size() * sizeof(fdt32_t));
}

void FdtWriter::prop_string(std::string_view name, std::string_view value) {
  const std::string v = z(value);
  prop_raw(name, v.c_str(), v.size() + 1);
}

void FdtWriter::prop_strings(std::string_view name,
                             std::initializer_list<std::string_view> values) {
  std::string joined;
  for (std::string_view v : values) {
    joined.append(v);
    joined.push_back('\0');
  }
  prop_raw(name, joined.data(), joined.size());
}

std::vector<u8> FdtWriter::finish() {
  if (path_.size() != 1) throw MachineError("device tree: unbalanced nodes");
  call("end root", [&] { return fdt_end_node(buf_.data()); });
  call("finish", [&] { return fdt_finish(buf_.data()); });
  finished_ = true;
  buf_.resize(fdt_totalsize(buf_.data()));
  return std::move(buf_);
}

namespace {

void reg_cells(FdtWriter& w, Gpa base, u64 size) {
  w.prop_cells("reg", {static_cast<u32>(base >> 32), static_cast<u32>(base),
                       static_cast<u32>(size >> 32), static_cast<u32>(size)});
}

}  // namespace

std::vector<u8> build_device_tree(const DeviceTreeConfig& cfg) {
  using Role = DeviceTreeConfig::Device::Role;
  const bool numa = cfg.numa_nodes.size() > 1;
  // Node of each hart (0 when NUMA is off).
  std::vector<u32> hart_node(cfg.harts, 0);
  if (numa) {
    for (std::size_t n = 0; n < cfg.numa_nodes.size(); ++n) {
      for (HartId h : cfg.numa_nodes[n].harts) {
        if (h >= cfg.harts)
          throw MachineError("device tree: NUMA node lists a hart that does not exist");
        hart_node[h] = static_cast<u32>(n);
      }
    }
  }

  FdtWriter w;
  w.prop_u32("#address-cells", 2);
  w.prop_u32("#size-cells", 2);
  w.prop_strings("compatible", {"dvmm,virt"});
  w.prop_string("model", "dvmm virt");

  // Phandles: one interrupt controller per hart, then one per device.
  std::vector<u32> intc(cfg.harts);
  for (u32& p : intc) p = w.alloc_phandle();
  std::vector<u32> dev_phandle(cfg.devices.size());
  u32 irq_parent = 0;
  u32 syscon = 0;
  for (std::size_t i = 0; i < cfg.devices.size(); ++i) {
    dev_phandle[i] = w.alloc_phandle();
    if (cfg.devices[i].role == Role::kInterruptController) irq_parent = dev_phandle[i];
    if (cfg.devices[i].role == Role::kSyscon) syscon = dev_phandle[i];
  }

  w.begin_node("cpus");
  w.prop_u32("#address-cells", 1);
  w.prop_u32("#size-cells", 0);
  w.prop_u32("timebase-frequency", static_cast<u32>(cfg.timebase_hz));
  for (unsigned h = 0; h < cfg.harts; ++h) {
    w.begin_node(devices::fdt_node_name("cpu", h));
    w.prop_string("device_type", "cpu");
    w.prop_u32("reg", h);
    w.prop_string("status", "okay");
    w.prop_strings("compatible", {"riscv"});
    w.prop_string("riscv,isa", cfg.isa);
    w.prop_string("mmu-type", cfg.mmu_type);
    if (numa) w.prop_u32("numa-node-id", hart_node[h]);
    w.begin_node("interrupt-controller");
    w.prop_u32("#interrupt-cells", 1);
    w.prop_empty("interrupt-controller");
    w.prop_string("compatible", "riscv,cpu-intc");
    w.prop_u32("phandle", intc[h]);
    w.end_node();
    w.end_node();
  }
  w.end_node();

  if (numa) {
    for (std::size_t n = 0; n < cfg.numa_nodes.size(); ++n) {
      const auto& node = cfg.numa_nodes[n];
      w.begin_node(devices::fdt_node_name("memory", node.mem_base));
      w.prop_string("device_type", "memory");
      reg_cells(w, node.mem_base, node.mem_size);
      w.prop_u32("numa-node-id", static_cast<u32>(n));
      w.end_node();
    }
    w.begin_node("distance-map");
    w.prop_string("compatible", "numa-distance-map-v1");
    std::vector<u32> matrix;
    for (std::size_t i = 0; i < cfg.numa_distance.size(); ++i) {
      for (std::size_t j = 0; j < cfg.numa_distance[i].size(); ++j) {
        matrix.insert(matrix.end(),
                      {static_cast<u32>(i), static_cast<u32>(j), cfg.numa_distance[i][j]});
      }
    }
    w.prop_cells("distance-matrix", matrix);
    w.end_node();
  } else {
    w.begin_node(devices::fdt_node_name("memory", cfg.ram_base));
    w.prop_string("device_type", "memory");
    reg_cells(w, cfg.ram_base, cfg.ram_size);
    w.end_node();
  }

  std::string console_path;
  w.begin_node("soc");
  w.prop_u32("#address-cells", 2);
  w.prop_u32("#size-cells", 2);
  w.prop_strings("compatible", {"simple-bus"});
  w.prop_empty("ranges");
  for (std::size_t i = 0; i < cfg.devices.size(); ++i) {
    const auto& d = cfg.devices[i];
    devices::FdtPlacement where;
    where.base = d.base;
    where.size = d.device->size();
    where.irq = d.irq;
    where.interrupt_parent = irq_parent;
    where.phandle = dev_phandle[i];
    where.cpu_intc_phandles = intc;
    d.device->describe(w, where);
    if (d.role == Role::kConsole) console_path = w.last_closed_path();
  }
  w.end_node();

  if (syscon != 0) {
    // As on QEMU's virt machine: Linux's syscon-poweroff and syscon-reboot drivers write
    // these values to the finisher, so `poweroff` and `reboot` work without the SBI too.
    w.begin_node("poweroff");
    w.prop_string("compatible", "syscon-poweroff");
    w.prop_u32("regmap", syscon);
    w.prop_u32("offset", 0);
    w.prop_u32("value", 0x5555);
    w.end_node();
    w.begin_node("reboot");
    w.prop_string("compatible", "syscon-reboot");
    w.prop_u32("regmap", syscon);
    w.prop_u32("offset", 0);
    w.prop_u32("value", 0x7777);
    w.end_node();
  }

  if (!console_path.empty()) {
    // serial0 pins the UART to ttyS0 (of_serial numbers ports by their alias).
    w.begin_node("aliases");
    w.prop_string("serial0", console_path);
    w.end_node();
  }

  w.begin_node("chosen");
  w.prop_string("bootargs", cfg.bootargs);
  if (!console_path.empty()) w.prop_string("stdout-path", console_path);
  if (cfg.initrd) {
    w.prop_u64("linux,initrd-start", cfg.initrd->first);
    w.prop_u64("linux,initrd-end", cfg.initrd->second);
  }
  w.end_node();

  return w.finish();
}

void patch_initrd(std::vector<u8>& blob, Gpa start, Gpa end) {
  const int chosen = fdt_path_offset(blob.data(), "/chosen");
  if (chosen < 0) fail("/chosen", chosen);
  if (int err = fdt_setprop_inplace_u64(blob.data(), chosen, "linux,initrd-start", start);
      err != 0) {
    fail("linux,initrd-start", err);
  }
  if (int err = fdt_setprop_inplace_u64(blob.data(), chosen, "linux,initrd-end", end); err != 0) {
    fail("linux,initrd-end", err);
  }
}

}  // namespace dvmm::machine
