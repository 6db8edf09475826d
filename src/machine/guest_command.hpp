// The host side of the guest's command protocol (guest/initramfs/init): dvmm appends a
// second, uncompressed cpio archive to the initrd holding `dvmm/cmd`, a shell script with
// the user's command; the guest's init runs it and reports its exit status through the
// test finisher. Also: composing the initrd from its parts.
//
// Threads: pure functions.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/types.hpp"

namespace dvmm::machine {

// Quotes one word for a POSIX shell: unchanged when it is made of safe characters only,
// otherwise in single quotes (with ' written as '\'').
std::string shell_quote(std::string_view word);
// The command line `argv` as one shell command, each word quoted.
std::string shell_command(std::span<const std::string> argv);
// A newc archive with the directory `dvmm` and the script `dvmm/cmd` running `argv`.
std::vector<u8> make_command_archive(std::span<const std::string> argv);

// Concatenates initrd parts (compressed or not) the way Linux unpacks them: each part
// starts 4-byte aligned, the gap filled with zeros, which the unpacker skips.
std::vector<u8> concat_initrd(std::span<const std::vector<u8>> parts);

}  // namespace dvmm::machine
