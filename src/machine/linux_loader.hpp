// The RISC-V Linux boot protocol (Documentation/riscv/boot-image-header.rst and boot.rst):
// recognise an `Image` by its header, decide where the kernel, the initrd and the device
// tree go in RAM, and copy them there. The hart entry (a0 = hartid, a1 = DTB address, S-mode,
// paging off) is the machine's job (Machine::boot).
//
// Layout in RAM:
//   ram_base + text_offset   the kernel Image (2 MiB aligned, as rv64 Linux requires),
//                            occupying max(file size, header image_size) bytes
//   ...                      free memory for the kernel
//   initrd                   page aligned, just below the device tree
//   device tree              2 MiB aligned, at the top of RAM (as QEMU places it: Linux
//                            maps the early DTB by 2 MiB pages)
//
// Threads: pure functions, plus load_into() which writes RAM while no hart runs.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "base/types.hpp"
#include "machine/fdt_writer.hpp"
#include "memory/guest_ram.hpp"

namespace dvmm::machine {

struct ImageHeader {
  u64 text_offset = 0;
  u64 image_size = 0;  // effective size in memory including bss; 0 in pre-0.2 headers
  u64 flags = 0;
  u32 version = 0;
};

inline constexpr u64 kImageHeaderSize = 64;
inline constexpr u64 kKernelAlign = u64{2} << 20;
inline constexpr u64 kDtbAlign = u64{2} << 20;
inline constexpr u64 kInitrdAlign = kPageSize;

// Parses and checks the 64-byte header. Throws MachineError with a message that says what
// the file looks like instead (an ELF vmlinux, a compressed Image, ...).
ImageHeader parse_image_header(std::span<const u8> image);

struct BootLayout {
  Gpa kernel = 0;  // load address and entry point
  u64 kernel_size = 0;
  Gpa initrd = 0;  // 0 when there is no initrd
  u64 initrd_size = 0;
  Gpa dtb = 0;
  u64 dtb_size = 0;
};

// Places kernel, initrd and DTB in [ram_base, ram_base + ram_size). Throws MachineError when
// they do not fit, saying how much memory would.
BootLayout plan_boot_layout(Gpa ram_base, u64 ram_size, const ImageHeader& header,
                            u64 kernel_file_size, u64 initrd_size, u64 dtb_size);

// Copies the three images into RAM at their places in `layout`.
void load_into(memory::GuestRam& ram, const BootLayout& layout, std::span<const u8> kernel,
               std::span<const u8> initrd, std::span<const u8> dtb);

// Reads a whole file. Throws MachineError("<what> <path>: <reason>") when it cannot.
std::vector<u8> read_file(const std::string& path, const char* what);

}  // namespace dvmm::machine
