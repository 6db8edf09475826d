#include "machine/guest_command.hpp"

#include "machine/cpio_writer.hpp"

namespace dvmm::machine {

std::string shell_quote(std::string_view word) {
  auto safe = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == '/' || c == ',' || c == ':' || c == '=' || c == '+' ||
           c == '@' || c == '%';
  };
  bool plain = !word.empty();
  for (char c : word) plain = plain && safe(c);
  if (plain) return std::string(word);
  std::string q = "'";
  for (char c : word) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  q += '\'';
  return q;
}

std::string shell_command(std::span<const std::string> argv) {
  std::string cmd;
  for (const std::string& w : argv) {
    if (!cmd.empty()) cmd += ' ';
    cmd += shell_quote(w);
  }
  return cmd;
}

std::vector<u8> make_command_archive(std::span<const std::string> argv) {
  CpioWriter w;
  w.add_directory("dvmm");
  w.add_file("dvmm/cmd", "# written by dvmm run\n" + shell_command(argv) + "\n", 0755);
  return w.finish();
}

std::vector<u8> concat_initrd(std::span<const std::vector<u8>> parts) {
  std::vector<u8> out;
  for (const auto& p : parts) {
    while (out.size() % 4 != 0) out.push_back(0);
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

}  // namespace dvmm::machine
