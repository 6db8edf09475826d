// SlirpBackend: real exchanges with libslirp through hand-made frames: ARP and DHCP
// answers from the virtual gateway, a connection from the guest to the host's 127.0.0.1
// through 10.0.2.2, and a host forward that opens a connection towards the guest.
#include "devices/net/slirp_backend.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace dvmm::devices {
namespace {

using namespace std::chrono_literals;
using Frame = std::vector<u8>;

constexpr MacAddress kGuestMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr MacAddress kGatewayMac{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02};  // slirp's for 10.0.2.2
constexpr u32 kGuestIp = 0x0a00020f;                                   // 10.0.2.15
constexpr u32 kGatewayIp = 0x0a000202;                                 // 10.0.2.2
constexpr u16 kEtherArp = 0x0806;
constexpr u16 kEtherIpv4 = 0x0800;
constexpr u8 kProtocolTcp = 6;
constexpr u8 kProtocolUdp = 17;
constexpr u8 kTcpSyn = 0x02;
constexpr u8 kTcpAck = 0x10;

// Frames the backend delivered to the guest side, from its thread.
class Inbox {
 public:
  NetBackend::Receive receiver() {
    return [this](std::span<const u8> frame) {
      std::lock_guard lock(mutex_);
      frames_.emplace_back(frame.begin(), frame.end());
      arrived_.notify_all();
    };
  }
  // The first frame that satisfies `wanted`, waiting up to 5 s; empty if none came.
  Frame wait_for(const std::function<bool(const Frame&)>& wanted) {
    std::unique_lock lock(mutex_);
    Frame found;
    arrived_.wait_for(lock, 5s, [&] {
      for (const Frame& frame : frames_) {
        if (wanted(frame)) {
          found = frame;
          return true;
        }
      }
      return false;
    });
    return found;
  }

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<Frame> frames_;
};

void put16(Frame& bytes, std::size_t at, u16 value) {
  bytes.at(at) = static_cast<u8>(value >> 8);
  bytes.at(at + 1) = static_cast<u8>(value);
}
void put32(Frame& bytes, std::size_t at, u32 value) {
  put16(bytes, at, static_cast<u16>(value >> 16));
  put16(bytes, at + 2, static_cast<u16>(value));
}
void put_mac(Frame& bytes, std::size_t at, const MacAddress& mac) {
  std::memcpy(bytes.data() + at, mac.data(), mac.size());
}
u16 get16(const Frame& bytes, std::size_t at) {
  return static_cast<u16>(bytes.at(at) << 8 | bytes.at(at + 1));
}
u32 get32(const Frame& bytes, std::size_t at) {
  return static_cast<u32>(get16(bytes, at)) << 16 | get16(bytes, at + 2);
}
MacAddress get_mac(const Frame& bytes, std::size_t at) {
  MacAddress mac;
  std::memcpy(mac.data(), bytes.data() + at, mac.size());
  return mac;
}

// The Internet checksum of `bytes` (RFC 1071), starting from `sum`.
u16 checksum(const u8* bytes, std::size_t size, u32 sum = 0) {
  for (std::size_t i = 0; i + 1 < size; i += 2)
    sum += static_cast<u32>(bytes[i] << 8 | bytes[i + 1]);
  if (size & 1) sum += static_cast<u32>(bytes[size - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<u16>(~sum);
}

Frame ethernet(const MacAddress& to, const MacAddress& from, u16 type, std::size_t payload) {
  Frame bytes(14 + payload, 0);
  put_mac(bytes, 0, to);
  put_mac(bytes, 6, from);
  put16(bytes, 12, type);
  return bytes;
}

// An ARP request from the guest (10.0.2.15) for `target`; target == 10.0.2.15 makes it a
// gratuitous ARP, which tells slirp the guest's MAC.
Frame arp_request(u32 target) {
  Frame bytes = ethernet(kBroadcast, kGuestMac, kEtherArp, 46);
  put16(bytes, 14, 1);       // Ethernet
  put16(bytes, 16, 0x0800);  // IPv4
  bytes[18] = 6;
  bytes[19] = 4;
  put16(bytes, 20, 1);  // request
  put_mac(bytes, 22, kGuestMac);
  put32(bytes, 28, kGuestIp);
  put32(bytes, 38, target);
  return bytes;
}

// An IPv4 header at offset 14 with its checksum.
void put_ipv4(Frame& bytes, u8 protocol, u32 source, u32 destination) {
  bytes[14] = 0x45;
  put16(bytes, 16, static_cast<u16>(bytes.size() - 14));
  bytes[22] = 64;  // TTL
  bytes[23] = protocol;
  put32(bytes, 26, source);
  put32(bytes, 30, destination);
  put16(bytes, 24, checksum(bytes.data() + 14, 20));
}

// DHCPDISCOVER from the guest, broadcast (UDP checksum 0: none).
Frame dhcp_discover() {
  constexpr std::size_t kBootp = 236 + 312;  // fixed part + options area
  Frame bytes = ethernet(kBroadcast, kGuestMac, kEtherIpv4, 20 + 8 + kBootp);
  put_ipv4(bytes, kProtocolUdp, 0, 0xffffffff);
  put16(bytes, 34, 68);
  put16(bytes, 36, 67);
  put16(bytes, 38, 8 + kBootp);
  const std::size_t bootp = 42;
  bytes[bootp] = 1;  // BOOTREQUEST
  bytes[bootp + 1] = 1;
  bytes[bootp + 2] = 6;
  put32(bytes, bootp + 4, 0x1234abcd);  // xid
  put16(bytes, bootp + 10, 0x8000);     // broadcast reply
  put_mac(bytes, bootp + 28, kGuestMac);
  put32(bytes, bootp + 236, 0x63825363);  // magic cookie
  bytes[bootp + 240] = 53;                // DHCP message type
  bytes[bootp + 241] = 1;
  bytes[bootp + 242] = 1;  // DISCOVER
  bytes[bootp + 243] = 255;
  return bytes;
}

// A TCP SYN from the guest to 10.0.2.2:port.
Frame tcp_syn_to_gateway(u16 source_port, u16 port) {
  Frame bytes = ethernet(kGatewayMac, kGuestMac, kEtherIpv4, 20 + 20);
  put_ipv4(bytes, kProtocolTcp, kGuestIp, kGatewayIp);
  const std::size_t tcp = 34;
  put16(bytes, tcp, source_port);
  put16(bytes, tcp + 2, port);
  put32(bytes, tcp + 4, 1000);  // sequence
  bytes[tcp + 12] = 5 << 4;     // header length
  bytes[tcp + 13] = kTcpSyn;
  put16(bytes, tcp + 14, 65535);  // window
  Frame pseudo(12, 0);
  put32(pseudo, 0, kGuestIp);
  put32(pseudo, 4, kGatewayIp);
  pseudo[9] = kProtocolTcp;
  put16(pseudo, 10, 20);
  const u16 pseudo_sum = static_cast<u16>(~checksum(pseudo.data(), pseudo.size()));
  put16(bytes, tcp + 16, checksum(bytes.data() + tcp, 20, pseudo_sum));
  return bytes;
}

bool is_ipv4(const Frame& frame, u8 protocol) {
  return frame.size() >= 34 && get16(frame, 12) == kEtherIpv4 && (frame[14] & 0x0f) == 5 &&
         frame[23] == protocol;
}

// A TCP segment to the guest (tcp_flags among `flags`) for destination port `port`.
bool is_tcp_to_guest(const Frame& frame, u16 port, u8 flags) {
  return is_ipv4(frame, kProtocolTcp) && frame.size() >= 54 && get32(frame, 30) == kGuestIp &&
         get16(frame, 36) == port && (frame[47] & flags) == flags;
}

// A TCP port on 127.0.0.1 that nobody listens on right now.
u16 free_loopback_port() {
  const int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(probe);
  return ntohs(address.sin_port);
}

// A listening socket on 127.0.0.1 (an ephemeral port); returns the fd, sets `port`.
int listen_on_loopback(u16& port) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener, 4) != 0) {
    ::close(listener);
    return -1;
  }
  socklen_t length = sizeof(address);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  port = ntohs(address.sin_port);
  return listener;
}

std::string error_of(const std::vector<HostForward>& forwards) {
  try {
    SlirpBackend backend(forwards);
  } catch (const NetError& error) {
    return error.what();
  }
  return "";
}

HostForward tcp_forward(u16 host_port, const std::string& guest_address, u16 guest_port) {
  HostForward forward;
  forward.protocol = HostForward::Protocol::kTcp;
  forward.host_address = "127.0.0.1";
  forward.host_port = host_port;
  forward.guest_address = guest_address;
  forward.guest_port = guest_port;
  return forward;
}

TEST(SlirpBackendTest, GatewayAnswersArp) {
  SlirpBackend backend({});
  EXPECT_EQ(backend.describe(), "user");
  Inbox inbox;
  backend.start(inbox.receiver());
  backend.send(arp_request(kGatewayIp));
  const Frame reply = inbox.wait_for([](const Frame& frame) {
    return frame.size() >= 42 && get16(frame, 12) == kEtherArp && get16(frame, 20) == 2;
  });
  ASSERT_FALSE(reply.empty()) << "no ARP reply";
  EXPECT_EQ(get_mac(reply, 0), kGuestMac);
  EXPECT_EQ(get_mac(reply, 22), kGatewayMac);
  EXPECT_EQ(get32(reply, 28), kGatewayIp);
  EXPECT_EQ(get_mac(reply, 32), kGuestMac);
  EXPECT_EQ(get32(reply, 38), kGuestIp);
  backend.stop();
}

TEST(SlirpBackendTest, DhcpOffersTheGuestAddress) {
  SlirpBackend backend({});
  Inbox inbox;
  backend.start(inbox.receiver());
  backend.send(dhcp_discover());
  const Frame offer = inbox.wait_for([](const Frame& frame) {
    return is_ipv4(frame, kProtocolUdp) && frame.size() >= 42 + 240 && get16(frame, 34) == 67 &&
           get16(frame, 36) == 68;
  });
  ASSERT_FALSE(offer.empty()) << "no DHCP answer";
  const std::size_t bootp = 42;
  EXPECT_EQ(offer[bootp], 2);                         // BOOTREPLY
  EXPECT_EQ(get32(offer, bootp + 4), 0x1234abcdu);    // xid
  EXPECT_EQ(get32(offer, bootp + 16), kGuestIp);      // yiaddr: 10.0.2.15
  EXPECT_EQ(get32(offer, 26), kGatewayIp);            // from 10.0.2.2
  EXPECT_EQ(get32(offer, bootp + 236), 0x63825363u);  // a DHCP answer
}

TEST(SlirpBackendTest, GuestReachesHostLoopbackThroughGateway) {
  u16 port = 0;
  const int listener = listen_on_loopback(port);
  ASSERT_GE(listener, 0);
  SlirpBackend backend({});
  Inbox inbox;
  backend.start(inbox.receiver());
  backend.send(arp_request(kGuestIp));  // gratuitous: slirp learns the guest's MAC
  backend.send(tcp_syn_to_gateway(40000, port));

  pollfd ready{.fd = listener, .events = POLLIN, .revents = 0};
  ASSERT_EQ(::poll(&ready, 1, 5000), 1) << "slirp did not connect to 127.0.0.1:" << port;
  const int accepted = ::accept(listener, nullptr, nullptr);
  EXPECT_GE(accepted, 0);
  // slirp completes the guest's handshake once its host connection is up.
  const Frame syn_ack = inbox.wait_for(
      [](const Frame& frame) { return is_tcp_to_guest(frame, 40000, kTcpSyn | kTcpAck); });
  EXPECT_FALSE(syn_ack.empty()) << "no SYN-ACK for the guest";
  backend.stop();
  ::close(accepted);
  ::close(listener);
}

TEST(SlirpBackendTest, HostForwardOpensConnectionToGuest) {
  const u16 port = free_loopback_port();
  SlirpBackend backend({tcp_forward(port, "", 80)});
  Inbox inbox;
  backend.start(inbox.receiver());
  backend.send(arp_request(kGuestIp));  // gratuitous: slirp learns the guest's MAC

  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  ASSERT_EQ(::connect(client, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0)
      << "connect to the forward on 127.0.0.1:" << port << ": " << std::strerror(errno);

  const Frame syn = inbox.wait_for([](const Frame& frame) {
    return is_tcp_to_guest(frame, 80, kTcpSyn) && (frame[47] & kTcpAck) == 0;
  });
  ASSERT_FALSE(syn.empty()) << "no SYN for 10.0.2.15:80";
  EXPECT_EQ(get_mac(syn, 0), kGuestMac);
  EXPECT_EQ(get32(syn, 26), kGatewayIp);  // the connection seems to come from the gateway
  backend.stop();
  ::close(client);
}

TEST(SlirpBackendTest, ForwardOnBusyPortIsAnError) {
  u16 port = 0;
  const int listener = listen_on_loopback(port);
  ASSERT_GE(listener, 0);
  const std::string error = error_of({tcp_forward(port, "", 80)});
  const std::string where = "127.0.0.1:" + std::to_string(port);
  EXPECT_NE(error.find("cannot listen on " + where), std::string::npos) << error;
  EXPECT_NE(error.find("in use"), std::string::npos) << error;
  ::close(listener);
}

TEST(SlirpBackendTest, ForwardOutsideUserNetworkIsAnError) {
  const std::string error = error_of({tcp_forward(free_loopback_port(), "10.0.3.15", 80)});
  EXPECT_NE(error.find("outside the user network"), std::string::npos) << error;
}

TEST(SlirpBackendTest, StopWithoutStartAndTwice) {
  SlirpBackend backend({});
  backend.stop();
  backend.stop();
  backend.send(arp_request(kGatewayIp));  // dropped
}

}  // namespace
}  // namespace dvmm::devices
