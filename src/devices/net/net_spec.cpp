// The text form of a network device: parse_net_spec (the --net value) and MAC addresses.
// Everything that can be checked without opening the backend is checked here, so a typo
// fails when the command line is read, with a message naming the bad part.
//
// Threads: any (no state).
#include <arpa/inet.h>

#include <charconv>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "devices/net/net_backend.hpp"

namespace dvmm::devices {
namespace {

constexpr std::string_view kHostForwardForm = "tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT";

std::string quoted(std::string_view text) {
  return "'" + std::string(text) + "'";
}

// Collects the spec being parsed so every error names it as well as the bad part.
class SpecParser {
 public:
  explicit SpecParser(std::string_view text) : text_(text) {}

  NetSpec parse();

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw NetError("bad network spec " + quoted(text_) + ": " + why);
  }

  void parse_backend(std::string_view item);
  void parse_option(std::string_view item);
  HostForward parse_host_forward(std::string_view value) const;
  std::string parse_forward_address(std::string_view address, std::string_view side) const;
  u16 parse_port(std::string_view port, std::string_view side) const;
  MacAddress parse_mac(std::string_view value) const;
  int parse_node(std::string_view value) const;
  void check_switch_name(std::string_view name) const;
  void check_tap_name(std::string_view name) const;

  std::string_view text_;
  NetSpec spec_;
  bool node_set_ = false;
};

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    const std::size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

NetSpec SpecParser::parse() {
  if (text_.empty()) fail("empty (expected user, switch=NAME or tap=IFNAME)");
  const std::vector<std::string_view> items = split(text_, ',');
  parse_backend(items.front());
  for (std::size_t i = 1; i < items.size(); ++i) parse_option(items[i]);
  return spec_;
}

void SpecParser::parse_backend(std::string_view item) {
  const std::size_t equals = item.find('=');
  const std::string_view kind = item.substr(0, equals);
  const bool has_value = equals != std::string_view::npos;
  const std::string_view value = has_value ? item.substr(equals + 1) : std::string_view();
  if (kind == "user") {
    if (has_value) fail("the user backend takes no value (" + quoted(item) + ")");
    spec_.kind = NetSpec::Kind::kUser;
  } else if (kind == "switch") {
    if (!has_value) fail("the switch backend needs a name: switch=NAME");
    check_switch_name(value);
    spec_.kind = NetSpec::Kind::kSwitch;
    spec_.name = value;
  } else if (kind == "tap") {
    if (!has_value) fail("the tap backend needs an interface: tap=IFNAME");
    check_tap_name(value);
    spec_.kind = NetSpec::Kind::kTap;
    spec_.name = value;
  } else {
    fail("unknown backend " + quoted(kind) + " (expected user, switch=NAME or tap=IFNAME)");
  }
}

void SpecParser::parse_option(std::string_view item) {
  if (item.empty()) fail("empty option (two commas in a row, or a trailing comma)");
  const std::size_t equals = item.find('=');
  if (equals == std::string_view::npos)
    fail("option " + quoted(item) + " needs a value (KEY=VALUE)");
  const std::string_view key = item.substr(0, equals);
  const std::string_view value = item.substr(equals + 1);
  if (key == "hostfwd") {
    if (spec_.kind != NetSpec::Kind::kUser) {
      fail("hostfwd is only for the user backend (" + quoted(item) + ")");
    }
    spec_.forwards.push_back(parse_host_forward(value));
  } else if (key == "mac") {
    if (spec_.mac_set) fail("duplicate mac (" + quoted(item) + ")");
    spec_.mac = parse_mac(value);
    spec_.mac_set = true;
  } else if (key == "node") {
    if (node_set_) fail("duplicate node (" + quoted(item) + ")");
    spec_.node = parse_node(value);
    node_set_ = true;
  } else {
    fail("unknown option " + quoted(key) + " (expected hostfwd, mac or node)");
  }
}

// [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT, as QEMU's hostfwd.
HostForward SpecParser::parse_host_forward(std::string_view value) const {
  const std::string bad_form =
      "bad hostfwd " + quoted(value) + " (expected " + std::string(kHostForwardForm) + ")";
  const std::size_t protocol_end = value.find(':');
  if (protocol_end == std::string_view::npos) fail(bad_form);
  HostForward forward;
  const std::string_view protocol = value.substr(0, protocol_end);
  if (protocol == "udp") {
    forward.protocol = HostForward::Protocol::kUdp;
  } else if (protocol.empty() || protocol == "tcp") {
    forward.protocol = HostForward::Protocol::kTcp;
  } else {
    fail("bad hostfwd protocol " + quoted(protocol) + " in " + quoted(value) +
         " (expected tcp or udp)");
  }
  const std::vector<std::string_view> sides = split(value.substr(protocol_end + 1), '-');
  if (sides.size() != 2) fail(bad_form);
  const std::size_t host_colon = sides[0].rfind(':');
  const std::size_t guest_colon = sides[1].rfind(':');
  if (host_colon == std::string_view::npos || guest_colon == std::string_view::npos) {
    fail(bad_form);
  }
  forward.host_address = parse_forward_address(sides[0].substr(0, host_colon), "host");
  forward.host_port = parse_port(sides[0].substr(host_colon + 1), "host");
  forward.guest_address = parse_forward_address(sides[1].substr(0, guest_colon), "guest");
  forward.guest_port = parse_port(sides[1].substr(guest_colon + 1), "guest");
  return forward;
}

std::string SpecParser::parse_forward_address(std::string_view address,
                                              std::string_view side) const {
  const std::string text(address);
  in_addr parsed{};
  if (!text.empty() && inet_pton(AF_INET, text.c_str(), &parsed) != 1) {
    fail("bad hostfwd " + std::string(side) + " address " + quoted(address) +
         " (expected an IPv4 address such as 127.0.0.1, or nothing)");
  }
  return text;
}

u16 SpecParser::parse_port(std::string_view port, std::string_view side) const {
  unsigned value = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || error != std::errc() || end != port.data() + port.size() || value == 0 ||
      value > std::numeric_limits<u16>::max()) {
    fail("bad hostfwd " + std::string(side) + " port " + quoted(port) + " (expected 1 to 65535)");
  }
  return static_cast<u16>(value);
}

MacAddress SpecParser::parse_mac(std::string_view value) const {
  const std::string bad = "bad MAC " + quoted(value);
  const std::vector<std::string_view> bytes = split(value, ':');
  if (bytes.size() != 6) fail(bad + " (expected six hex bytes such as 52:54:00:12:34:56)");
  MacAddress mac{};
  for (std::size_t i = 0; i < 6; ++i) {
    const std::string_view digits = bytes[i];
    unsigned byte = 0;
    const auto [end, error] =
        std::from_chars(digits.data(), digits.data() + digits.size(), byte, 16);
    if (digits.size() != 2 || error != std::errc() || end != digits.data() + digits.size()) {
      fail(bad + " (expected six hex bytes such as 52:54:00:12:34:56)");
    }
    mac[i] = static_cast<u8>(byte);
  }
  if (mac[0] & 1) fail(bad + " (a multicast address; the first byte must be even)");
  if (mac == MacAddress{}) fail(bad + " (all zero)");
  return mac;
}

int SpecParser::parse_node(std::string_view value) const {
  int node = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), node);
  if (value.empty() || error != std::errc() || end != value.data() + value.size() || node < 0) {
    fail("bad node " + quoted(value) + " (expected a node number: 0, 1, ...)");
  }
  return node;
}

// [A-Za-z0-9_.-]{1,64}, but not "." or "..": the name is a directory under switch/.
void SpecParser::check_switch_name(std::string_view name) const {
  if (name.empty()) fail("empty switch name (switch=NAME)");
  const auto allowed = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  };
  for (const char c : name) {
    if (!allowed(c)) {
      fail("bad switch name " + quoted(name) + " (letters, digits, '_', '.' and '-' only)");
    }
  }
  if (name.size() > 64) fail("switch name " + quoted(name) + " is longer than 64 characters");
  if (name == "." || name == "..") fail("bad switch name " + quoted(name));
}

// Linux's rule for interface names (dev_valid_name): 1 to 15 bytes, not "." or "..", no '/',
// ':' or white space.
void SpecParser::check_tap_name(std::string_view name) const {
  const std::string bad = "bad TAP interface name " + quoted(name) +
                          " (1 to 15 characters, without '/', ':' or spaces)";
  if (name.empty() || name.size() > 15 || name == "." || name == "..") fail(bad);
  for (const char c : name) {
    if (c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
        c == '\f') {
      fail(bad);
    }
  }
}

}  // namespace

NetSpec parse_net_spec(std::string_view text) {
  return SpecParser(text).parse();
}

std::string mac_to_string(const MacAddress& mac) {
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return text;
}

}  // namespace dvmm::devices
