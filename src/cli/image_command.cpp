#include "cli/image_command.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>

#include "devices/block/block_image.hpp"
#include "devices/block/qcow2_image.hpp"
#include "devices/block/raw_image.hpp"
#include "machine/machine.hpp"

namespace dvmm::cli {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;

// "10 GiB", "1.5 MiB", "512 bytes".
std::string human_size(u64 bytes) {
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  const bool whole = bytes % (u64{1} << (10 * (unit + 1))) == 0;
  return whole ? fmt::format("{:.0f} {}", value, units[unit])
               : fmt::format("{:.1f} {}", value, units[unit]);
}

std::string size_with_bytes(u64 bytes) {
  return bytes < 1024 ? human_size(bytes) : fmt::format("{} ({} bytes)", human_size(bytes), bytes);
}

int create(const ImageCommandOptions& o, std::FILE* out) {
  const bool qcow2 = o.format == "qcow2";
  if (!qcow2 && o.format != "raw") {
    throw std::invalid_argument("-f: unknown format '" + o.format + "' (qcow2 or raw)");
  }
  if (!o.backing_format.empty() && o.backing.empty()) {
    throw std::invalid_argument("-F gives the format of a backing file: use it with -b");
  }
  if (!qcow2 && !o.backing.empty()) {
    throw std::invalid_argument("a raw image cannot have a backing file (use -f qcow2)");
  }
  if (o.size.empty() && o.backing.empty()) {
    throw std::invalid_argument("give the SIZE of the new image, e.g. 10G");
  }
  const u64 size = o.size.empty() ? 0 : parse_image_size(o.size);
  if (qcow2) {
    devices::ImageFormat backing_format = devices::ImageFormat::kAuto;
    if (!o.backing_format.empty()) {
      const auto parsed = devices::parse_image_format(o.backing_format);
      if (!parsed) {
        throw std::invalid_argument("-F: unknown format '" + o.backing_format + "' (raw or qcow2)");
      }
      backing_format = *parsed;
    }
    devices::create_qcow2_image(o.file, size, o.backing, backing_format);
  } else {
    devices::create_raw_image(o.file, size);
  }

  devices::ImageOptions options;
  options.read_only = true;
  options.force_share = true;
  const auto image = devices::open_block_image(o.file, options);
  std::string line = fmt::format("created {} image '{}', {}", image->format_name(), o.file,
                                 size_with_bytes(image->size()));
  if (const devices::BlockImage* backing = image->backing()) {
    line += fmt::format(", on backing file '{}' ({})", o.backing, backing->format_name());
  }
  fmt::print(out, "{}\n", line);
  return kExitOk;
}

void print_image(const devices::BlockImage& image, std::FILE* out, const char* indent) {
  fmt::print(out, "{}image:        {}\n", indent, image.path());
  std::string format(image.format_name());
  if (const auto* qcow2 = dynamic_cast<const devices::Qcow2Image*>(&image)) {
    const devices::Qcow2Header& h = qcow2->header();
    format += fmt::format(" (version {}, {} clusters, {}-bit refcounts)", h.version,
                          human_size(h.cluster_size()), h.refcount_bits());
  }
  fmt::print(out, "{}format:       {}\n", indent, format);
  fmt::print(out, "{}virtual size: {}\n", indent, size_with_bytes(image.size()));
  struct stat st {};
  if (::stat(image.path().c_str(), &st) == 0) {
    fmt::print(out, "{}file size:    {}, {} on disk\n", indent,
               size_with_bytes(static_cast<u64>(st.st_size)),
               human_size(static_cast<u64>(st.st_blocks) * 512));
  }
  if (const auto* qcow2 = dynamic_cast<const devices::Qcow2Image*>(&image)) {
    const devices::Qcow2Header& h = qcow2->header();
    if (!h.backing_file.empty()) {
      fmt::print(out, "{}backing file: {}{}\n", indent, h.backing_file,
                 h.backing_format.empty() ? "" : " (format " + h.backing_format + ")");
    }
    if (h.nb_snapshots != 0) fmt::print(out, "{}snapshots:    {}\n", indent, h.nb_snapshots);
    if (h.incompatible_features & 1) {
      fmt::print(out, "{}warning:      the dirty bit is set (not closed cleanly)\n", indent);
    }
    if (h.incompatible_features & 2) {
      fmt::print(out, "{}warning:      marked corrupt\n", indent);
    }
  }
}

int info(const ImageCommandOptions& o, std::FILE* out) {
  devices::ImageOptions options;
  options.read_only = true;
  options.force_share = true;  // also for an image a running VM holds
  const auto image = devices::open_block_image(o.file, options);
  print_image(*image, out, "");
  unsigned depth = 0;
  for (const devices::BlockImage* b = image->backing(); b != nullptr; b = b->backing()) {
    fmt::print(out, "\nbacking image {}:\n", ++depth);
    print_image(*b, out, "  ");
  }
  return kExitOk;
}

}  // namespace

u64 parse_image_size(std::string_view text) {
  // machine::parse_memory_size reads a bare number as MiB; an image size must say its unit.
  const std::size_t digits = text.find_first_not_of("0123456789");
  if (digits == std::string_view::npos) {
    throw std::invalid_argument("invalid image size '" + std::string(text) +
                                "': give a unit: K, M, G or T (binary), or B for bytes, e.g. "
                                "10G or 1048576B");
  }
  try {
    return machine::parse_memory_size(text, "image size");
  } catch (const machine::MachineError& e) {
    throw std::invalid_argument(e.what());
  }
}

int image_command(const ImageCommandOptions& options, std::FILE* out) {
  try {
    return options.command == "create" ? create(options, out) : info(options, out);
  } catch (const std::exception& e) {  // ImageError, or a bad argument
    std::fflush(out);
    std::fprintf(stderr, "dvmm: error: %s\n", e.what());
    return kExitFailure;
  }
}

void add_image_commands(CLI::App& app) {
  auto options = std::make_shared<ImageCommandOptions>();
  CLI::App* image = app.add_subcommand("image", "Create disk images or show what is in one");
  image->require_subcommand(1);

  CLI::App* create = image->add_subcommand("create", "Create a disk image (never overwrites)");
  create->add_option("-f,--format", options->format, "Format: qcow2 (default) or raw")
      ->check(CLI::IsMember({"qcow2", "raw"}));
  create->add_option("-b,--backing", options->backing,
                     "qcow2 only: unwritten parts read from this image, which stays unchanged "
                     "(a relative path is relative to FILE's folder, as in qemu-img)");
  create
      ->add_option("-F,--backing-format", options->backing_format,
                   "Format of the backing file: raw or qcow2 (default: probed, and recorded)")
      ->check(CLI::IsMember({"raw", "qcow2"}));
  create->add_option("FILE", options->file, "The new image file")->required();
  create->add_option("SIZE", options->size,
                     "Size with a unit: K, M, G or T (binary, e.g. 10G) or B for bytes "
                     "(e.g. 1048576B); a bare number is refused. Default with -b: the backing "
                     "file's size");
  create->footer(
      "Examples:\n"
      "  dvmm image create disk.qcow2 20G\n"
      "  dvmm image create -b base.qcow2 overlay.qcow2     (a copy-on-write overlay)\n"
      "  dvmm image create -f raw disk.img 1G              (sparse)");

  CLI::App* info = image->add_subcommand(
      "info", "Show an image's format, virtual size, file size and backing chain");
  info->add_option("FILE", options->file, "The image file")->required();

  for (CLI::App* sub : {create, info}) {
    sub->callback([options, name = sub->get_name()] {
      options->command = name;
      const int status = image_command(*options);
      std::fflush(stdout);
      std::exit(status);
    });
  }
}

}  // namespace dvmm::cli
