// Host-side console plumbing that does not touch the terminal itself: the QEMU-style escape
// key on the input side, and a filter on the output side that drops given whole lines (the
// guest init's banner in command mode) without delaying anything else.
//
// Threads: plain objects; each used by one thread (the stdin thread, a vCPU thread under the
// console's ordering).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/types.hpp"

namespace dvmm::vmm {

// QEMU's console escape: Ctrl-A then a command key.
//   Ctrl-A x       quit
//   Ctrl-A h       help
//   Ctrl-A Ctrl-A  send one Ctrl-A to the guest
// feed() takes raw input bytes and returns those meant for the guest.
class EscapeParser {
 public:
  static constexpr u8 kEscape = 0x01;  // Ctrl-A
  enum class Command { kNone, kQuit, kHelp };
  struct Result {
    std::vector<u8> to_guest;
    Command command = Command::kNone;
  };
  Result feed(const u8* data, std::size_t len);
  static const char* help_text();

 private:
  bool escaped_ = false;
};

// Passes console output through, except lines equal to one of `drop` (compared without
// their "\r\n" or "\n"). Bytes are held back only while the current line could still
// become a dropped one, so prompts without a newline appear at once.
class LineFilter {
 public:
  explicit LineFilter(std::vector<std::string> drop) : drop_(std::move(drop)) {}
  // Returns the bytes to show now.
  std::string feed(std::string_view bytes);

 private:
  bool could_match(std::string_view partial) const;
  bool matches(std::string_view line) const;

  std::vector<std::string> drop_;
  std::string held_;
  bool passing_ = false;  // the current line can no longer match: pass bytes straight on
};

// Turns the guest tty's "\r\n" line ends into "\n", for output that goes to a file or a
// pipe (command mode): `x=$(dvmm run -- nproc)` must give "1", not "1\r". A '\r' not
// followed by '\n' (a progress line) is kept; it is held until the next byte decides.
class CrlfFilter {
 public:
  std::string feed(std::string_view bytes);

 private:
  bool held_cr_ = false;
};

}  // namespace dvmm::vmm
