#include "vmm/host_console.hpp"

namespace dvmm::vmm {

EscapeParser::Result EscapeParser::feed(const u8* data, std::size_t len) {
  Result r;
  for (std::size_t i = 0; i < len; ++i) {
    const u8 c = data[i];
    if (!escaped_) {
      if (c == kEscape) {
        escaped_ = true;
      } else {
        r.to_guest.push_back(c);
      }
      continue;
    }
    escaped_ = false;
    if (c == kEscape) {
      r.to_guest.push_back(kEscape);
    } else if (c == 'x' || c == 'X') {
      r.command = Command::kQuit;
      return r;  // the rest is not for the guest any more
    } else if (c == 'h' || c == 'H' || c == '?') {
      r.command = Command::kHelp;
    }
    // Any other key after Ctrl-A is swallowed, as in QEMU.
  }
  return r;
}

const char* EscapeParser::help_text() {
  return "\r\n"
         "C-a h    print this help\r\n"
         "C-a x    exit dvmm (the guest is stopped)\r\n"
         "C-a C-a  send C-a to the guest\r\n";
}

bool LineFilter::could_match(std::string_view partial) const {
  for (const std::string& d : drop_) {
    const std::string_view dv(d);
    // "line\r" is still a candidate for "line".
    if (dv.substr(0, partial.size()) == partial) return true;
    if (!partial.empty() && partial.back() == '\r' && partial.substr(0, partial.size() - 1) == dv)
      return true;
  }
  return false;
}

bool LineFilter::matches(std::string_view line) const {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  for (const std::string& d : drop_) {
    if (line == d) return true;
  }
  return false;
}

std::string LineFilter::feed(std::string_view bytes) {
  std::string out;
  for (char c : bytes) {
    if (passing_) {
      out.push_back(c);
      if (c == '\n') passing_ = false;
      continue;
    }
    if (c == '\n') {
      if (!matches(held_)) {
        out += held_;
        out.push_back(c);
      }
      held_.clear();
      continue;
    }
    held_.push_back(c);
    if (!could_match(held_)) {
      out += held_;
      held_.clear();
      passing_ = true;
    }
  }
  return out;
}

std::string CrlfFilter::feed(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 1);
  for (char c : bytes) {
    if (held_cr_) {
      held_cr_ = false;
      if (c != '\n') out.push_back('\r');
    }
    if (c == '\r') {
      held_cr_ = true;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace dvmm::vmm
