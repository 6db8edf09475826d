#include "machine/linux_loader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <system_error>

namespace dvmm::machine {

namespace {

u64 le64(std::span<const u8> b, std::size_t at) {
  u64 v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}
u32 le32(std::span<const u8> b, std::size_t at) {
  return static_cast<u32>(le64(b, at) & 0xffff'ffff);
}

std::string mib(u64 bytes) {
  std::ostringstream s;
  if (bytes % (u64{1} << 20) == 0) {
    s << (bytes >> 20) << " MiB";
  } else {
    s.precision(1);
    s << std::fixed << static_cast<double>(bytes) / (1 << 20) << " MiB";
  }
  return s.str();
}

std::string hex(u64 v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

u64 align_up(u64 v, u64 a) {
  return (v + a - 1) & ~(a - 1);
}
u64 align_down(u64 v, u64 a) {
  return v & ~(a - 1);
}

constexpr char kNotImage[] = "not a RISC-V Linux Image";

}  // namespace

ImageHeader parse_image_header(std::span<const u8> image) {
  auto starts_with = [&](std::initializer_list<u8> magic) {
    if (image.size() < magic.size()) return false;
    return std::equal(magic.begin(), magic.end(), image.begin());
  };
  if (starts_with({0x7f, 'E', 'L', 'F'})) {
    throw MachineError(std::string(kNotImage) +
                       " (this looks like an ELF file; use arch/riscv/boot/Image)");
  }
  if (starts_with({0x1f, 0x8b})) {
    throw MachineError(std::string(kNotImage) +
                       " (this looks like a gzip file, e.g. Image.gz; use the uncompressed "
                       "arch/riscv/boot/Image)");
  }
  if (starts_with({'0', '7', '0', '7', '0'})) {
    throw MachineError(std::string(kNotImage) + " (this looks like a cpio archive, an initrd?)");
  }
  if (image.size() < kImageHeaderSize) {
    throw MachineError(std::string(kNotImage) + " (only " + std::to_string(image.size()) +
                       " bytes, shorter than the 64-byte header)");
  }
  // magic2 "RSC\x05" at 0x38 is current; "RISCV\0\0\0" at 0x30 is the deprecated magic of
  // older kernels. Either identifies an Image.
  static constexpr u8 kMagic2[4] = {'R', 'S', 'C', 0x05};
  static constexpr u8 kMagic[8] = {'R', 'I', 'S', 'C', 'V', 0, 0, 0};
  const bool magic2 = std::memcmp(image.data() + 0x38, kMagic2, sizeof kMagic2) == 0;
  const bool magic = std::memcmp(image.data() + 0x30, kMagic, sizeof kMagic) == 0;
  if (!magic && !magic2) {
    if (image.size() >= 0x40 && image[0x38] == 'A' && image[0x39] == 'R' && image[0x3a] == 'M' &&
        image[0x3b] == 0x64) {
      throw MachineError(std::string(kNotImage) + " (this is an arm64 Image)");
    }
    throw MachineError(std::string(kNotImage) + " (no \"RSC\\x05\" magic at offset 0x38)");
  }
  ImageHeader h;
  h.text_offset = le64(image, 0x08);
  h.image_size = le64(image, 0x10);
  h.flags = le64(image, 0x18);
  h.version = le32(image, 0x20);
  if (h.flags & 1)
    throw MachineError("the kernel Image is big-endian; dvmm runs little-endian RISC-V");
  if (h.text_offset % kKernelAlign != 0) {
    throw MachineError("the kernel Image asks for text_offset " + hex(h.text_offset) +
                       ", which is not 2 MiB aligned (an M-mode or rv32 kernel?)");
  }
  // Header version 0.2 introduced image_size; older ones leave it 0 (the file size is used).
  if (h.version < 0x2) h.image_size = 0;
  return h;
}

BootLayout plan_boot_layout(Gpa ram_base, u64 ram_size, const ImageHeader& header,
                            u64 kernel_file_size, u64 initrd_size, u64 dtb_size) {
  BootLayout l;
  l.kernel = ram_base + header.text_offset;
  l.kernel_size = std::max(kernel_file_size, header.image_size);
  const Gpa ram_end = ram_base + ram_size;
  const Gpa kernel_end = align_up(l.kernel + l.kernel_size, kPageSize);
  if (header.text_offset >= ram_size || l.kernel_size > ram_end - l.kernel) {
    throw MachineError("the kernel (" + mib(l.kernel_size) + " at RAM + " +
                       hex(header.text_offset) + ") does not fit in " + mib(ram_size) +
                       " of RAM; use a larger --memory");
  }
  l.dtb_size = dtb_size;
  if (dtb_size > ram_end - kernel_end) {
    throw MachineError("the device tree does not fit above the kernel in " + mib(ram_size) +
                       " of RAM; use a larger --memory");
  }
  l.dtb = align_down(ram_end - dtb_size, kDtbAlign);
  if (l.dtb < kernel_end) l.dtb = align_down(ram_end - dtb_size, 8);
  if (initrd_size > 0) {
    l.initrd_size = initrd_size;
    const u64 room = l.dtb - kernel_end;
    if (initrd_size > room) {
      // How much RAM would have held kernel + initrd + DTB with our alignments.
      const u64 need = align_up(kernel_end - ram_base + align_up(initrd_size, kInitrdAlign) +
                                    align_up(dtb_size, kDtbAlign),
                                u64{1} << 20);
      throw MachineError("the initrd (" + mib(initrd_size) + ") does not fit in " + mib(ram_size) +
                         " of RAM next to the kernel (" + mib(l.kernel_size) + "); use --memory " +
                         std::to_string(need >> 20) + "M or more");
    }
    l.initrd = align_down(l.dtb - initrd_size, kInitrdAlign);
  }
  return l;
}

void load_into(memory::GuestRam& ram, const BootLayout& l, std::span<const u8> kernel,
               std::span<const u8> initrd, std::span<const u8> dtb) {
  auto put = [&](Gpa at, std::span<const u8> bytes, const char* what) {
    if (bytes.empty()) return;
    if (!ram.write(at, bytes.data(), bytes.size())) {
      throw MachineError(std::string("internal error: the ") + what + " at " + hex(at) +
                         " is outside RAM");
    }
  };
  put(l.kernel, kernel, "kernel");
  put(l.initrd, initrd, "initrd");
  put(l.dtb, dtb, "device tree");
}

std::vector<u8> read_file(const std::string& path, const char* what) {
  auto error = [&](const std::string& why) {
    return MachineError(std::string(what) + " " + path + ": " + why);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw error(std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw error(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw error("is a directory");
  std::vector<u8> data;
  if (S_ISREG(st.st_mode)) data.reserve(static_cast<std::size_t>(st.st_size));
  u8 chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      throw error(std::strerror(errno));
    }
    data.insert(data.end(), chunk, chunk + n);
  }
  return data;
}

}  // namespace dvmm::machine
