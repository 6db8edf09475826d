// SwitchBackend: members of one switch in a temporary runtime directory exchange frames;
// joining with a taken MAC fails, a stale socket is replaced, leaving removes the socket.
#include "devices/net/switch_backend.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace dvmm::devices {
namespace {

using namespace std::chrono_literals;

constexpr MacAddress kMacA{0x52, 0x54, 0x00, 0x00, 0x00, 0x0a};
constexpr MacAddress kMacB{0x52, 0x54, 0x00, 0x00, 0x00, 0x0b};
constexpr MacAddress kMacC{0x52, 0x54, 0x00, 0x00, 0x00, 0x0c};
constexpr MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr MacAddress kNobody{0x52, 0x54, 0x00, 0x00, 0x00, 0xee};

// Frames one member received, from its receive thread.
class Inbox {
 public:
  NetBackend::Receive receiver() {
    return [this](std::span<const u8> frame) {
      std::lock_guard lock(mutex_);
      frames_.emplace_back(frame.begin(), frame.end());
      arrived_.notify_all();
    };
  }
  // Waits until the inbox holds `count` frames; false after 5 s.
  bool wait_for(std::size_t count) {
    std::unique_lock lock(mutex_);
    return arrived_.wait_for(lock, 5s, [&] { return frames_.size() >= count; });
  }
  std::vector<std::vector<u8>> frames() {
    std::lock_guard lock(mutex_);
    return frames_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<std::vector<u8>> frames_;
};

// An Ethernet frame whose payload starts with `tag`.
std::vector<u8> frame(const MacAddress& to, const MacAddress& from, u8 tag) {
  std::vector<u8> bytes(60, 0);
  std::memcpy(bytes.data(), to.data(), 6);
  std::memcpy(bytes.data() + 6, from.data(), 6);
  bytes[12] = 0x88;  // a local experimental EtherType
  bytes[13] = 0xb5;
  bytes[14] = tag;
  return bytes;
}

u8 tag_of(const std::vector<u8>& bytes) {
  return bytes.at(14);
}

class SwitchBackendTest : public ::testing::Test {
 protected:
  SwitchBackendTest() {
    char pattern[] = "/tmp/dvmm-switch-test-XXXXXX";
    runtime_dir_ = ::mkdtemp(pattern);
  }
  ~SwitchBackendTest() override { std::filesystem::remove_all(runtime_dir_); }

  std::unique_ptr<SwitchBackend> join(const MacAddress& mac, Inbox* inbox) {
    auto member = std::make_unique<SwitchBackend>(runtime_dir_, "lan", mac);
    if (inbox != nullptr) member->start(inbox->receiver());
    return member;
  }
  std::string socket_path(const MacAddress& mac) const {
    return runtime_dir_ + "/switch/lan/" + SwitchBackend::socket_name(mac);
  }

  std::string runtime_dir_;
};

TEST_F(SwitchBackendTest, SocketNamedByMacInPrivateDirectory) {
  EXPECT_EQ(SwitchBackend::socket_name(kMacA), "52-54-00-00-00-0a.sock");
  auto a = join(kMacA, nullptr);
  EXPECT_EQ(a->describe(), "switch lan");
  struct stat status {};
  ASSERT_EQ(::stat((runtime_dir_ + "/switch/lan").c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(socket_path(kMacA).c_str(), &status), 0);
  EXPECT_TRUE(S_ISSOCK(status.st_mode));
}

TEST_F(SwitchBackendTest, UnicastReachesOnlyItsTargetAndBroadcastAllOthers) {
  Inbox inbox_a, inbox_b, inbox_c;
  auto a = join(kMacA, &inbox_a);
  auto b = join(kMacB, &inbox_b);
  auto c = join(kMacC, &inbox_c);

  a->send(frame(kMacB, kMacA, 1));
  ASSERT_TRUE(inbox_b.wait_for(1));
  // A broadcast after it: had the unicast also gone to C, C would hold it first.
  a->send(frame(kBroadcast, kMacA, 2));
  ASSERT_TRUE(inbox_b.wait_for(2));
  ASSERT_TRUE(inbox_c.wait_for(1));
  // And A gets neither its own unicast nor its own broadcast.
  c->send(frame(kBroadcast, kMacC, 3));
  ASSERT_TRUE(inbox_a.wait_for(1));
  ASSERT_TRUE(inbox_b.wait_for(3));

  const auto frames_a = inbox_a.frames();
  const auto frames_b = inbox_b.frames();
  const auto frames_c = inbox_c.frames();
  ASSERT_EQ(frames_a.size(), 1u);
  EXPECT_EQ(tag_of(frames_a[0]), 3);
  ASSERT_EQ(frames_b.size(), 3u);
  EXPECT_EQ(tag_of(frames_b[0]), 1);
  EXPECT_EQ(frames_b[0], frame(kMacB, kMacA, 1));  // delivered unchanged
  EXPECT_EQ(tag_of(frames_b[1]), 2);
  EXPECT_EQ(tag_of(frames_b[2]), 3);
  ASSERT_EQ(frames_c.size(), 1u);  // C does not get its own broadcast either
  EXPECT_EQ(tag_of(frames_c[0]), 2);
}

TEST_F(SwitchBackendTest, UnknownUnicastFloods) {
  Inbox inbox_b, inbox_c;
  auto a = join(kMacA, nullptr);
  auto b = join(kMacB, &inbox_b);
  auto c = join(kMacC, &inbox_c);
  a->send(frame(kNobody, kMacA, 7));
  ASSERT_TRUE(inbox_b.wait_for(1));
  ASSERT_TRUE(inbox_c.wait_for(1));
}

TEST_F(SwitchBackendTest, MemberThatJoinsLaterGetsFloods) {
  Inbox inbox_b, inbox_c;
  auto a = join(kMacA, nullptr);
  auto b = join(kMacB, &inbox_b);
  a->send(frame(kBroadcast, kMacA, 1));  // A's member list is now {B}
  ASSERT_TRUE(inbox_b.wait_for(1));
  auto c = join(kMacC, &inbox_c);
  a->send(frame(kBroadcast, kMacA, 2));
  ASSERT_TRUE(inbox_c.wait_for(1));
  a->send(frame(kMacC, kMacA, 3));
  ASSERT_TRUE(inbox_c.wait_for(2));
  EXPECT_EQ(tag_of(inbox_c.frames()[1]), 3);
}

TEST_F(SwitchBackendTest, TakenMacIsRefused) {
  auto a = join(kMacA, nullptr);
  try {
    join(kMacA, nullptr);
    FAIL() << "joined twice with one MAC";
  } catch (const NetError& error) {
    EXPECT_NE(std::string(error.what()).find("MAC 52:54:00:00:00:0a is already on switch lan"),
              std::string::npos)
        << error.what();
  }
  // The first member keeps its socket.
  EXPECT_TRUE(std::filesystem::exists(socket_path(kMacA)));
}

TEST_F(SwitchBackendTest, StaleSocketIsReplaced) {
  // A member that died without cleaning up: its socket file stays, nobody owns it.
  join(kMacA, nullptr).reset();  // makes the directory
  const std::string path = socket_path(kMacB);
  {
    const int dead = ::socket(AF_UNIX, SOCK_DGRAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path.c_str());
    ASSERT_EQ(::bind(dead, reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
    ::close(dead);
  }
  ASSERT_TRUE(std::filesystem::exists(path));

  Inbox inbox_b;
  auto b = join(kMacB, &inbox_b);
  auto a = join(kMacA, nullptr);
  a->send(frame(kMacB, kMacA, 9));
  ASSERT_TRUE(inbox_b.wait_for(1));
}

TEST_F(SwitchBackendTest, FullMemberMakesUnicastWaitThenCountsDrops) {
  auto a = join(kMacA, nullptr);
  auto b = join(kMacB, nullptr);  // joined but never reads: its queue fills up
  EXPECT_EQ(a->dropped(), 0u);
  const auto started = std::chrono::steady_clock::now();
  for (u8 i = 0; i < 40; ++i) a->send(frame(kMacB, kMacA, i));
  // The kernel queues about net.unix.max_dgram_qlen (10 by default) datagrams per socket;
  // each frame beyond waited for room (20 ms) before it was dropped and counted.
  EXPECT_GT(a->dropped(), 0u);
  EXPECT_LT(a->dropped(), 40u);
  EXPECT_GE(std::chrono::steady_clock::now() - started,
            std::chrono::milliseconds(20) * a->dropped());
  EXPECT_EQ(b->dropped(), 0u);
}

TEST_F(SwitchBackendTest, StopJoinsAndLeaves) {
  Inbox inbox_a;
  auto a = join(kMacA, &inbox_a);
  auto b = join(kMacB, nullptr);
  b->send(frame(kMacA, kMacB, 1));
  ASSERT_TRUE(inbox_a.wait_for(1));

  const auto started = std::chrono::steady_clock::now();
  a->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_FALSE(std::filesystem::exists(socket_path(kMacA)));
  a->stop();  // idempotent

  // A's MAC is free again; frames for the departed member go nowhere.
  b->send(frame(kMacA, kMacB, 2));
  b->send(frame(kBroadcast, kMacB, 3));
  auto a_again = join(kMacA, nullptr);
  EXPECT_EQ(inbox_a.frames().size(), 1u);

  b.reset();  // the destructor leaves too
  EXPECT_FALSE(std::filesystem::exists(socket_path(kMacB)));
}

TEST_F(SwitchBackendTest, TooLongSocketPathIsAnError) {
  const std::string deep = runtime_dir_ + "/" + std::string(100, 'd');
  try {
    SwitchBackend member(deep, "lan", kMacA);
    FAIL() << "joined with a socket path longer than sun_path";
  } catch (const NetError& error) {
    EXPECT_NE(std::string(error.what()).find("shorter runtime directory"), std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace dvmm::devices
