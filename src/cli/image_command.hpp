// `dvmm image create [-f qcow2|raw] [-b BACKING [-F FMT]] FILE [SIZE]` makes a disk image for
// virtio-blk (never overwriting a file); `dvmm image info FILE` shows its format, sizes and
// backing chain. The formats are devices/block/ (block_image.hpp).
//
// main() only registers the command: the parsed subcommand runs from its CLI11 callback and
// ends the process with its exit status (0, or 1 with one line on stderr).
//
// Threads: main thread only.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <string_view>

#include "base/types.hpp"

namespace dvmm::cli {

struct ImageCommandOptions {
  std::string command;  // "create" or "info"
  std::string file;
  std::string size;              // create: SIZE as given; empty: the backing file's
  std::string format = "qcow2";  // create -f
  std::string backing;           // create -b
  std::string backing_format;    // create -F; empty: probed
};

// Adds `dvmm image` and its subcommands to `app`.
void add_image_commands(CLI::App& app);

// Runs a parsed `dvmm image` subcommand, printing to `out`; returns the exit status.
int image_command(const ImageCommandOptions& options, std::FILE* out = stdout);

// An image size: a number with a unit K, M, G or T (binary; "KiB", "KB" and so on too) or B
// for bytes. A bare number is refused (dvmm's --memory reads it as MiB, qemu-img as bytes).
// Throws std::invalid_argument with a message for the user.
u64 parse_image_size(std::string_view text);

}  // namespace dvmm::cli
