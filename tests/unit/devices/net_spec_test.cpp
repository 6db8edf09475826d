// parse_net_spec: the accepted forms, and errors that name the bad part.
#include <gtest/gtest.h>

#include <string>

#include "devices/net/net_backend.hpp"

namespace dvmm::devices {
namespace {

// The NetError message parse_net_spec(text) throws, or "" if it accepts the text.
std::string error_of(const std::string& text) {
  try {
    parse_net_spec(text);
  } catch (const NetError& error) {
    return error.what();
  }
  return "";
}

TEST(NetSpecTest, User) {
  const NetSpec spec = parse_net_spec("user");
  EXPECT_EQ(spec.kind, NetSpec::Kind::kUser);
  EXPECT_TRUE(spec.forwards.empty());
  EXPECT_FALSE(spec.mac_set);
  EXPECT_EQ(spec.node, -1);
}

TEST(NetSpecTest, UserWithForwards) {
  const NetSpec spec = parse_net_spec(
      "user,hostfwd=tcp::2222-:22,hostfwd=udp:0.0.0.0:5353-10.0.2.15:53,"
      "hostfwd=:127.0.0.1:8080-:80");
  ASSERT_EQ(spec.forwards.size(), 3u);
  EXPECT_EQ(spec.forwards[0].protocol, HostForward::Protocol::kTcp);
  EXPECT_EQ(spec.forwards[0].host_address, "");
  EXPECT_EQ(spec.forwards[0].host_port, 2222);
  EXPECT_EQ(spec.forwards[0].guest_address, "");
  EXPECT_EQ(spec.forwards[0].guest_port, 22);
  EXPECT_EQ(spec.forwards[1].protocol, HostForward::Protocol::kUdp);
  EXPECT_EQ(spec.forwards[1].host_address, "0.0.0.0");
  EXPECT_EQ(spec.forwards[1].host_port, 5353);
  EXPECT_EQ(spec.forwards[1].guest_address, "10.0.2.15");
  EXPECT_EQ(spec.forwards[1].guest_port, 53);
  EXPECT_EQ(spec.forwards[2].protocol, HostForward::Protocol::kTcp);  // empty protocol: tcp
  EXPECT_EQ(spec.forwards[2].host_address, "127.0.0.1");
  EXPECT_EQ(spec.forwards[2].host_port, 8080);
}

TEST(NetSpecTest, SwitchWithMacAndNode) {
  const NetSpec spec = parse_net_spec("switch=lab-net_1.a,mac=52:54:00:AB:cd:0f,node=2");
  EXPECT_EQ(spec.kind, NetSpec::Kind::kSwitch);
  EXPECT_EQ(spec.name, "lab-net_1.a");
  EXPECT_TRUE(spec.mac_set);
  EXPECT_EQ(spec.mac, (MacAddress{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f}));
  EXPECT_EQ(spec.node, 2);
  EXPECT_EQ(mac_to_string(spec.mac), "52:54:00:ab:cd:0f");
}

TEST(NetSpecTest, SwitchNameOf64Characters) {
  EXPECT_EQ(parse_net_spec("switch=" + std::string(64, 'x')).name, std::string(64, 'x'));
}

TEST(NetSpecTest, Tap) {
  const NetSpec spec = parse_net_spec("tap=tap0,node=0");
  EXPECT_EQ(spec.kind, NetSpec::Kind::kTap);
  EXPECT_EQ(spec.name, "tap0");
  EXPECT_EQ(spec.node, 0);
}

TEST(NetSpecTest, ErrorsNameTheBadPart) {
  struct Case {
    std::string text;
    std::string expected;  // a part of the message
  };
  const Case cases[] = {
      {"", "empty"},
      {"bogus", "unknown backend 'bogus'"},
      {"user=1", "takes no value"},
      {"switch", "switch=NAME"},
      {"switch=", "empty switch name"},
      {"switch=a/b", "bad switch name 'a/b'"},
      {"switch=a b", "bad switch name 'a b'"},
      {"switch=" + std::string(65, 'x'), "longer than 64"},
      {"switch=..", "bad switch name '..'"},
      {"tap", "tap=IFNAME"},
      {"tap=", "bad TAP interface name ''"},
      {"tap=averyverylongname", "bad TAP interface name 'averyverylongname'"},
      {"tap=a:b", "bad TAP interface name 'a:b'"},
      {"user,mac=52:54:00:12:34", "bad MAC '52:54:00:12:34'"},
      {"user,mac=52:54:00:12:34:zz", "bad MAC '52:54:00:12:34:zz'"},
      {"user,mac=52:54:00:12:34:567", "bad MAC '52:54:00:12:34:567'"},
      {"user,mac=01:00:5e:00:00:01", "multicast"},
      {"user,mac=00:00:00:00:00:00", "all zero"},
      {"user,mac=52:54:00:12:34:56,mac=52:54:00:12:34:57", "duplicate mac"},
      {"user,node=abc", "bad node 'abc'"},
      {"user,node=-1", "bad node '-1'"},
      {"user,node=1,node=2", "duplicate node"},
      {"user,hostfwd=tcp::99999-:22", "bad hostfwd host port '99999'"},
      {"user,hostfwd=tcp::0-:22", "bad hostfwd host port '0'"},
      {"user,hostfwd=tcp::22-:x", "bad hostfwd guest port 'x'"},
      {"user,hostfwd=tcp::2222", "bad hostfwd 'tcp::2222'"},
      {"user,hostfwd=2222-22", "bad hostfwd '2222-22'"},
      {"user,hostfwd=sctp::1-:2", "bad hostfwd protocol 'sctp'"},
      {"user,hostfwd=tcp:1.2.3:22-:22", "bad hostfwd host address '1.2.3'"},
      {"user,hostfwd=tcp::22-10.0.2:22", "bad hostfwd guest address '10.0.2'"},
      {"switch=lan,hostfwd=tcp::2222-:22", "hostfwd is only for the user backend"},
      {"tap=tap0,hostfwd=tcp::2222-:22", "hostfwd is only for the user backend"},
      {"user,colour=blue", "unknown option 'colour'"},
      {"user,mac", "option 'mac' needs a value"},
      {"user,,node=1", "empty option"},
      {"user,", "empty option"},
  };
  for (const Case& c : cases) {
    const std::string error = error_of(c.text);
    EXPECT_NE(error.find(c.expected), std::string::npos)
        << "spec '" << c.text << "' gave '" << error << "', expected '" << c.expected << "'";
    if (!error.empty()) {
      EXPECT_NE(error.find("'" + c.text + "'"), std::string::npos) << error;  // names the spec
    }
  }
}

}  // namespace
}  // namespace dvmm::devices
