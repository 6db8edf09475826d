#include "vmm/vm_devices.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "devices/virtio/virtio_blk.hpp"
#include "devices/virtio/virtio_console.hpp"
#include "devices/virtio/virtio_net.hpp"
#include "devices/virtio/virtio_rng.hpp"
#include "machine/memory_map.hpp"

namespace dvmm::vmm {

namespace {

// The interrupt of a device on a node without the PLIC: forwarded to node 0.
class ForwardedIrqLine final : public devices::IrqLine {
 public:
  ForwardedIrqLine(NodeLinks& links, u32 source) : links_(links), source_(source) {}
  void set_level(bool level) override { links_.set_device_irq(source_, level); }

 private:
  NodeLinks& links_;
  u32 source_;
};

// A device that lives on another node: described in the device tree here; its accesses
// never reach this object (NodeLinks forwards them).
class RemoteVirtioSlot final : public devices::MmioDevice {
 public:
  explicit RemoteVirtioSlot(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  u64 size() const override { return devices::VirtioMmio::kWindowSize; }
  u64 read(u64, unsigned) override { return 0; }
  void write(u64, unsigned, u64) override {}
  void reset() override {}
  void describe(devices::FdtBuilder& fdt, const devices::FdtPlacement& where) const override {
    devices::describe_virtio_mmio(fdt, where);
  }

 private:
  std::string name_;
};

devices::MacAddress random_mac() {
  devices::MacAddress mac{0x52, 0x54, 0x00, 0, 0, 0};
  u8 tail[3] = {};
  if (::getrandom(tail, sizeof tail, 0) != sizeof tail) {
    const u64 pid = static_cast<u64>(::getpid());
    tail[0] = static_cast<u8>(pid >> 16);
    tail[1] = static_cast<u8>(pid >> 8);
    tail[2] = static_cast<u8>(pid);
  }
  std::memcpy(mac.data() + 3, tail, 3);
  return mac;
}

std::string mac_text(const devices::MacAddress& m) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                m[5]);
  return buf;
}

}  // namespace

DiskSpec parse_disk_spec(std::string_view text) {
  DiskSpec d;
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("--disk " + std::string(text) + ": " + why);
  };
  bool first = true;
  while (!text.empty() || first) {
    const std::size_t comma = text.find(',');
    const std::string_view part = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const std::size_t eq = part.find('=');
    if (first && eq == std::string_view::npos) {
      d.path = std::string(part);
      first = false;
      continue;
    }
    first = false;
    if (eq == std::string_view::npos)
      throw bad("expected KEY=VALUE, not '" + std::string(part) + "'");
    const std::string_view key = part.substr(0, eq);
    const std::string_view value = part.substr(eq + 1);
    if (key == "file") {
      // The rest of the text is the path (it may hold commas).
      d.path = std::string(value);
      if (!text.empty()) d.path += "," + std::string(text);
      text = {};
    } else if (key == "format") {
      if (value == "raw") {
        d.image.format = devices::ImageFormat::kRaw;
      } else if (value == "qcow2") {
        d.image.format = devices::ImageFormat::kQcow2;
      } else {
        throw bad("unknown format '" + std::string(value) + "' (raw or qcow2)");
      }
    } else if (key == "readonly" || key == "ro") {
      if (value == "on" || value == "true" || value == "1") {
        d.image.read_only = true;
      } else if (value == "off" || value == "false" || value == "0") {
        d.image.read_only = false;
      } else {
        throw bad("readonly takes on or off, not '" + std::string(value) + "'");
      }
    } else if (key == "node") {
      unsigned n = 0;
      const auto r = std::from_chars(value.data(), value.data() + value.size(), n);
      if (r.ec != std::errc() || r.ptr != value.data() + value.size() || value.empty()) {
        throw bad("node takes a node number, not '" + std::string(value) + "'");
      }
      d.node = static_cast<int>(n);
    } else if (key == "serial") {
      if (value.size() > 20) throw bad("serial is at most 20 characters");
      d.serial = std::string(value);
    } else {
      throw bad("unknown option '" + std::string(key) + "' (format, readonly, node, serial, file)");
    }
  }
  if (d.path.empty()) throw bad("no image file");
  return d;
}

struct VmDevices::Local {
  std::string kind;
  std::string summary;
  unsigned node = 0;
  devices::VirtioBlk* blk = nullptr;
  devices::VirtioNet* net = nullptr;
  devices::VirtioRng* rng = nullptr;
  int console_fd = -1;
  std::unique_ptr<devices::VirtioMmio> transport;
  ~Local() {
    transport.reset();  // joins the worker (and stops the backend) first
    if (console_fd >= 0) ::close(console_fd);
  }
};

VmDevices::VmDevices(const VmDeviceSpecs& specs, machine::Machine& machine, NodeLinks& links,
                     unsigned node_count, std::function<bool()> stopping,
                     std::function<void(const std::string&)> log)
    : dma_(machine.ram(), links, std::move(stopping)) {
  const unsigned self = links.self_node();
  unsigned slot = 0;
  auto check_node = [&](int node, const std::string& what) -> unsigned {
    if (node < 0) return 0;
    if (static_cast<unsigned>(node) >= node_count) {
      throw std::runtime_error(what + ": node=" + std::to_string(node) + " but the VM has " +
                               std::to_string(node_count) + (node_count == 1 ? " node" : " nodes"));
    }
    return static_cast<unsigned>(node);
  };
  auto irq_line = [&](unsigned s) -> devices::IrqLine& {
    const u32 source = machine::kVirtioFirstIrq + s;
    if (self == 0) return machine.plic().line(source);
    lines_.push_back(std::make_unique<ForwardedIrqLine>(links, source));
    return *lines_.back();
  };
  // Places slot `slot` on `node`; builds the device here with `make` if it is this node's.
  auto place = [&](unsigned node, const std::string& name, const std::string& kind,
                   const std::function<std::unique_ptr<Local>()>& make) {
    if (slot >= machine::kVirtioSlots) {
      throw std::runtime_error("too many virtio devices: the board has " +
                               std::to_string(machine::kVirtioSlots) + " slots");
    }
    links.place_device(machine::virtio_slot_base(slot), devices::VirtioMmio::kWindowSize, node);
    if (node == self) {
      std::unique_ptr<Local> l = make();
      l->kind = kind;
      l->node = node;
      machine.attach_virtio(slot, *l->transport);
      local_.push_back(std::move(l));
    } else {
      stand_ins_.push_back(
          std::make_unique<RemoteVirtioSlot>(name + "@node" + std::to_string(node)));
      machine.attach_virtio(slot, *stand_ins_.back());
    }
    ++slot;
  };
  auto device_log = log;

  for (std::size_t i = 0; i < specs.disks.size(); ++i) {
    const DiskSpec& d = specs.disks[i];
    const std::string name = "virtio-blk" + std::to_string(i);
    const unsigned node = check_node(d.node, "--disk " + d.path);
    const unsigned s = slot;
    place(node, name, "block", [&] {
      std::unique_ptr<devices::BlockImage> image;
      try {
        image = devices::open_block_image(d.path, d.image);
      } catch (const devices::ImageError& e) {
        throw std::runtime_error(std::string("--disk: ") + e.what());
      }
      auto l = std::make_unique<Local>();
      l->summary = name + ": " + d.path + " (" + std::string(image->format_name()) + ", " +
                   std::to_string(image->size() >> 20) + " MiB" +
                   (image->read_only() ? ", read-only" : "") + ")";
      auto blk = std::make_unique<devices::VirtioBlk>(
          name, std::move(image), d.serial.empty() ? "dvmm-disk" + std::to_string(i) : d.serial,
          device_log);
      l->blk = blk.get();
      l->transport =
          std::make_unique<devices::VirtioMmio>(std::move(blk), dma_, irq_line(s), device_log);
      return l;
    });
  }
  for (std::size_t i = 0; i < specs.nets.size(); ++i) {
    const devices::NetSpec& n = specs.nets[i];
    const std::string name = "virtio-net" + std::to_string(i);
    const unsigned node = check_node(n.node, "--net");
    const unsigned s = slot;
    place(node, name, "net", [&] {
      const devices::MacAddress mac = n.mac_set ? n.mac : random_mac();
      std::unique_ptr<devices::NetBackend> backend;
      try {
        backend = devices::open_net_backend(n, mac, specs.runtime_dir);
      } catch (const devices::NetError& e) {
        throw std::runtime_error(std::string("--net: ") + e.what());
      }
      auto l = std::make_unique<Local>();
      l->summary = name + ": " + backend->describe() + ", MAC " + mac_text(mac);
      auto net = std::make_unique<devices::VirtioNet>(name, std::move(backend), mac);
      l->net = net.get();
      l->transport =
          std::make_unique<devices::VirtioMmio>(std::move(net), dma_, irq_line(s), device_log);
      devices::VirtioMmio* t = l->transport.get();
      l->net->start([t] { t->kick(); });
      return l;
    });
  }
  if (specs.rng) {
    const unsigned s = slot;
    place(0, "virtio-rng", "rng", [&] {
      auto l = std::make_unique<Local>();
      l->summary = "virtio-rng: host getrandom()";
      auto rng = std::make_unique<devices::VirtioRng>("virtio-rng");
      l->rng = rng.get();
      l->transport =
          std::make_unique<devices::VirtioMmio>(std::move(rng), dma_, irq_line(s), device_log);
      return l;
    });
  }
  if (!specs.console_output.empty()) {
    const unsigned s = slot;
    place(0, "virtio-console", "console", [&] {
      auto l = std::make_unique<Local>();
      l->console_fd =
          ::open(specs.console_output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (l->console_fd < 0) {
        throw std::runtime_error("--vconsole " + specs.console_output + ": " +
                                 std::strerror(errno));
      }
      l->summary = "virtio-console: output to " + specs.console_output;
      const int fd = l->console_fd;
      auto console = std::make_unique<devices::VirtioConsole>(
          "virtio-console", [fd](std::span<const u8> bytes) {
            for (std::size_t done = 0; done < bytes.size();) {
              const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
              if (n < 0 && errno == EINTR) continue;
              if (n <= 0) return;  // the host file is gone or full: the guest's output is lost
              done += static_cast<std::size_t>(n);
            }
          });
      l->transport =
          std::make_unique<devices::VirtioMmio>(std::move(console), dma_, irq_line(s), device_log);
      return l;
    });
  }
}

VmDevices::~VmDevices() = default;

std::vector<VirtioDeviceStats> VmDevices::stats() const {
  std::vector<VirtioDeviceStats> out;
  for (const auto& l : local_) {
    VirtioDeviceStats s;
    s.name = std::string(l->transport->name());
    s.kind = l->kind;
    s.node = l->node;
    s.transport = l->transport->counters();
    if (l->blk) {
      const auto c = l->blk->counters();
      s.detail = "reads " + std::to_string(c.reads) + " (" + std::to_string(c.bytes_read) +
                 " B), writes " + std::to_string(c.writes) + " (" +
                 std::to_string(c.bytes_written) + " B), flushes " + std::to_string(c.flushes) +
                 ", errors " + std::to_string(c.errors);
    } else if (l->net) {
      const auto c = l->net->counters();
      s.detail = "rx " + std::to_string(c.rx_frames) + " frames (" + std::to_string(c.rx_bytes) +
                 " B, " + std::to_string(c.rx_dropped) + " dropped), tx " +
                 std::to_string(c.tx_frames) + " frames (" + std::to_string(c.tx_bytes) + " B, " +
                 std::to_string(c.tx_dropped) + " dropped by the backend)";
    } else if (l->rng) {
      s.detail = std::to_string(l->rng->bytes_given()) + " random bytes given";
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> VmDevices::describe() const {
  std::vector<std::string> out;
  for (const auto& l : local_) out.push_back(l->summary);
  return out;
}

}  // namespace dvmm::vmm
