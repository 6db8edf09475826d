// Inter-VM communication groups (devices/ivc/ivc_group.hpp, docs/IVC.md) in a private runtime
// directory: the group's files, ranks, sizes, the shared memory, mailbox sends and pops from
// several threads, the watcher's notifications, and members that die without leaving (forked
// children). First the inbox of the control block on its own.
#include "devices/ivc/ivc_group.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/ivc/ivc_control_block.hpp"
#include "unit/devices/ivc_test_util.hpp"

namespace dvmm::devices::ivc {
namespace {

using test::TempRuntimeDir;
using test::wait_until;
using ::testing::AllOf;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

u64 file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<u64>(st.st_size) : ~u64{0};
}

// ------------------------------------------------------------------ the inbox alone

std::unique_ptr<Inbox> new_inbox() {
  auto inbox = std::make_unique<Inbox>();
  inbox->reset();
  return inbox;
}

TEST(IvcInbox, PopsInOrderAndCountsReadyMessages) {
  auto inbox = new_inbox();
  u32 source = 99;
  u64 value = 99;
  EXPECT_EQ(inbox->ready(), 0u);
  EXPECT_FALSE(inbox->pop(&source, &value));
  EXPECT_EQ(source, 99u);  // untouched when empty
  // The first message into an empty inbox needs a doorbell; the next one does not.
  EXPECT_EQ(inbox->push(3, 100), Inbox::PushResult::kPushedFirst);
  EXPECT_EQ(inbox->ready(), 1u);
  EXPECT_EQ(inbox->push(4, 101), Inbox::PushResult::kPushed);
  EXPECT_EQ(inbox->ready(), 2u);
  ASSERT_TRUE(inbox->pop(&source, &value));
  EXPECT_EQ(source, 3u);
  EXPECT_EQ(value, 100u);
  EXPECT_EQ(inbox->ready(), 1u);
  ASSERT_TRUE(inbox->pop(&source, &value));
  EXPECT_EQ(source, 4u);
  EXPECT_EQ(value, 101u);
  EXPECT_EQ(inbox->ready(), 0u);
  EXPECT_FALSE(inbox->pop(&source, &value));
  // Empty again: the consumer may be asleep, so the next push asks for a doorbell again.
  EXPECT_EQ(inbox->push(5, 102), Inbox::PushResult::kPushedFirst);
}

TEST(IvcInbox, IsFullAtItsCapacityAndWrapsAround) {
  auto inbox = new_inbox();
  for (u64 i = 0; i < kInboxCapacity; ++i) {
    ASSERT_NE(inbox->push(1, i), Inbox::PushResult::kFull) << i;
  }
  EXPECT_EQ(inbox->ready(), kInboxCapacity);
  EXPECT_EQ(inbox->push(1, 9999), Inbox::PushResult::kFull);
  EXPECT_EQ(inbox->ready(), kInboxCapacity);
  u32 source = 0;
  u64 value = 0;
  ASSERT_TRUE(inbox->pop(&source, &value));
  EXPECT_EQ(value, 0u);
  EXPECT_EQ(inbox->push(1, kInboxCapacity), Inbox::PushResult::kPushed);
  EXPECT_EQ(inbox->push(1, 9999), Inbox::PushResult::kFull);
  for (u64 i = 1; i <= kInboxCapacity; ++i) {
    ASSERT_TRUE(inbox->pop(&source, &value));
    ASSERT_EQ(value, i);
  }
  EXPECT_FALSE(inbox->pop(&source, &value));
  // Several more laps of the ring, with up to 3 messages in flight.
  u64 next_in = 0, next_out = 0;
  while (next_out < 5 * kInboxCapacity) {
    while (next_in - next_out < 3) ASSERT_NE(inbox->push(2, next_in++), Inbox::PushResult::kFull);
    ASSERT_TRUE(inbox->pop(&source, &value));
    ASSERT_EQ(value, next_out++);
    ASSERT_EQ(source, 2u);
  }
}

TEST(IvcInbox, AClaimedButUnpublishedCellHoldsBackTheLaterOnes) {
  auto inbox = new_inbox();
  // A sender claimed position 0 and has not written it yet.
  inbox->enqueue_pos.store(1);
  EXPECT_EQ(inbox->push(2, 22), Inbox::PushResult::kPushed);
  EXPECT_EQ(inbox->ready(), 0u);
  u32 source = 0;
  u64 value = 0;
  EXPECT_FALSE(inbox->pop(&source, &value));
  // Now it publishes.
  inbox->cells[0].value = 11;
  inbox->cells[0].source = 1;
  inbox->cells[0].sequence.store(1, std::memory_order_release);
  EXPECT_EQ(inbox->ready(), 2u);
  ASSERT_TRUE(inbox->pop(&source, &value));
  EXPECT_EQ(std::make_pair(source, value), std::make_pair(1u, u64{11}));
  ASSERT_TRUE(inbox->pop(&source, &value));
  EXPECT_EQ(std::make_pair(source, value), std::make_pair(2u, u64{22}));
}

TEST(IvcInbox, ResetEmptiesIt) {
  auto inbox = new_inbox();
  for (u64 i = 0; i < 700; ++i) inbox->push(1, i);
  u32 source = 0;
  u64 value = 0;
  for (int i = 0; i < 500; ++i) inbox->pop(&source, &value);
  inbox->reset();
  EXPECT_EQ(inbox->ready(), 0u);
  EXPECT_FALSE(inbox->pop(&source, &value));
  EXPECT_EQ(inbox->push(1, 5), Inbox::PushResult::kPushedFirst);
  for (u64 i = 1; i < kInboxCapacity; ++i) ASSERT_NE(inbox->push(1, i), Inbox::PushResult::kFull);
  EXPECT_EQ(inbox->push(1, 0), Inbox::PushResult::kFull);  // the whole capacity, not less
  ASSERT_TRUE(inbox->pop(&source, &value));
  EXPECT_EQ(value, 5u);
}

// ------------------------------------------------------------------ the group

constexpr u64 kMiB = u64{1} << 20;

class IvcGroupTest : public ::testing::Test {
 protected:
  JoinOptions options(int rank = -1, u64 size = kMiB, const std::string& name = "g") const {
    return JoinOptions{dir_.path(), name, size, rank};
  }
  std::unique_ptr<IvcGroup> join(int rank = -1, u64 size = kMiB, const std::string& name = "g") {
    return std::make_unique<IvcGroup>(options(rank, size, name));
  }
  // The message of the IvcError that joining with `o` throws.
  static std::string join_error(const JoinOptions& o) {
    try {
      IvcGroup g(o);
      ADD_FAILURE() << "joined " << o.name << " as rank " << g.rank();
    } catch (const IvcError& e) {
      return e.what();
    }
    return {};
  }
  std::string group_dir(const std::string& name = "g") const { return dir_.group_dir(name); }

  TempRuntimeDir dir_;
};

TEST_F(IvcGroupTest, JoiningCreatesTheGroupFilesAndTheLastLeaveRemovesThem) {
  const std::string d = group_dir();
  EXPECT_FALSE(exists(d));
  auto a = join();
  EXPECT_EQ(a->name(), "g");
  EXPECT_EQ(a->rank(), 0u);
  EXPECT_EQ(a->shm_size(), kMiB);
  EXPECT_EQ(a->members(), 1u);
  EXPECT_TRUE(exists(d + "/lock"));
  EXPECT_EQ(file_size(d + "/control"), kControlBlockSize);
  EXPECT_EQ(file_size(d + "/shm"), kMiB);
  EXPECT_TRUE(exists(d + "/rank-0.sock"));
  struct stat st {};
  ASSERT_EQ(::stat(d.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u) << "the group directory is private";

  auto b = join();
  EXPECT_EQ(b->rank(), 1u);
  EXPECT_TRUE(exists(d + "/rank-1.sock"));
  EXPECT_EQ(a->members(), 3u);
  EXPECT_EQ(b->members(), 3u);

  b.reset();  // not the last: the group stays, without b's socket
  EXPECT_FALSE(exists(d + "/rank-1.sock"));
  EXPECT_TRUE(exists(d + "/control"));
  EXPECT_EQ(a->members(), 1u);

  a.reset();
  EXPECT_FALSE(exists(d));
  EXPECT_TRUE(exists(dir_.path() + "/ivc"));  // the parent stays for other groups
}

TEST_F(IvcGroupTest, RanksFollowTheOrderOfJoining) {
  auto a = join();
  auto b = join();
  auto c = join();
  EXPECT_EQ(a->rank(), 0u);
  EXPECT_EQ(b->rank(), 1u);
  EXPECT_EQ(c->rank(), 2u);
  b.reset();
  EXPECT_EQ(a->members(), 0b101u);
  auto d = join();  // the lowest free rank
  EXPECT_EQ(d->rank(), 1u);
  auto e = join();
  EXPECT_EQ(e->rank(), 3u);
  EXPECT_EQ(a->members(), 0b1111u);
}

TEST_F(IvcGroupTest, ExplicitRanks) {
  auto five = join(5);
  EXPECT_EQ(five->rank(), 5u);
  EXPECT_EQ(five->members(), u64{1} << 5);
  auto first = join();
  EXPECT_EQ(first->rank(), 0u);
  auto last = join(63);
  EXPECT_EQ(last->rank(), 63u);
  EXPECT_EQ(five->members(), (u64{1} << 63) | (u64{1} << 5) | 1);

  EXPECT_THAT(join_error(options(5)),
              AllOf(HasSubstr("rank 5 "), HasSubstr("group g"), HasSubstr("taken"),
                    HasSubstr(std::to_string(::getpid()))));
  EXPECT_THAT(join_error(options(64)), AllOf(HasSubstr("rank 64"), HasSubstr("out of range")));
  EXPECT_THAT(join_error(options(1000)), HasSubstr("rank 1000"));
  // Refused joiners leave no trace, and leave the holder's socket alone.
  EXPECT_EQ(five->members(), (u64{1} << 63) | (u64{1} << 5) | 1);
  EXPECT_TRUE(exists(group_dir() + "/rank-5.sock"));
  EXPECT_FALSE(exists(group_dir() + "/rank-1.sock"));
}

TEST_F(IvcGroupTest, BadGroupNames) {
  for (const std::string& bad :
       {std::string(""), std::string("a/b"), std::string("../x"), std::string("."),
        std::string(".."), std::string("a b"), std::string("caf\xc3\xa9"), std::string("g\n"),
        std::string(kMaxGroupNameLength + 1, 'x')}) {
    EXPECT_FALSE(group_name_problem(bad).empty()) << bad;
    EXPECT_THAT(join_error(options(-1, kMiB, bad)), HasSubstr("bad inter-VM group")) << bad;
  }
  EXPECT_FALSE(exists(dir_.path() + "/ivc")) << "nothing created for a bad name";
  for (const std::string& good : {std::string("a"), std::string("A-b_c.9"), std::string("..."),
                                  std::string(kMaxGroupNameLength, 'x')}) {
    EXPECT_EQ(group_name_problem(good), "") << good;
    auto g = join(-1, kMiB, good);
    EXPECT_EQ(g->name(), good);
  }
}

TEST_F(IvcGroupTest, BadSizes) {
  EXPECT_THAT(join_error(options(-1, kMiB + 1)), HasSubstr("multiple of 4 KiB"));
  EXPECT_THAT(join_error(options(-1, 6000)), HasSubstr("multiple of 4 KiB"));
  EXPECT_THAT(join_error(options(-1, kMaxShmSize + kPageSize)), HasSubstr("at most 16384 MiB"));
  EXPECT_FALSE(exists(group_dir()));
}

TEST_F(IvcGroupTest, ASizeThatDiffersFromTheLiveGroupsIsRefusedNamingBoth) {
  auto a = join(-1, kMiB);
  EXPECT_THAT(join_error(options(-1, 2 * kMiB)),
              AllOf(HasSubstr("group g"), HasSubstr("has 1 MiB"), HasSubstr("asked for 2 MiB")));
  EXPECT_THAT(join_error(options(-1, kMiB + kPageSize)), HasSubstr("1052672 bytes"));
  EXPECT_EQ(a->members(), 1u);
  auto b = join(-1, 0);  // no size: the group's
  EXPECT_EQ(b->shm_size(), kMiB);
  auto c = join(-1, kMiB);  // the same size
  EXPECT_EQ(c->shm_size(), kMiB);
  EXPECT_EQ(c->rank(), 2u);
}

TEST_F(IvcGroupTest, TheSizeIsTheGroupsUntilEveryoneLeft) {
  auto a = join(-1, 2 * kMiB);
  auto b = join(-1, 0);
  EXPECT_EQ(b->shm_size(), 2 * kMiB);
  a.reset();
  auto c = join(-1, 0);  // a left, b is still there: still 2 MiB
  EXPECT_EQ(c->shm_size(), 2 * kMiB);
  EXPECT_THAT(join_error(options(-1, kMiB)), HasSubstr("has 2 MiB"));
  b.reset();
  c.reset();
  // Everyone left: the next member creates the group again with its own size...
  auto d = join(-1, kMiB);
  EXPECT_EQ(d->shm_size(), kMiB);
  EXPECT_EQ(d->rank(), 0u);
  d.reset();
  // ...or the default.
  auto e = join(-1, 0);
  EXPECT_EQ(e->shm_size(), kDefaultShmSize);
  EXPECT_EQ(file_size(group_dir() + "/shm"), kDefaultShmSize);
}

TEST_F(IvcGroupTest, TheSharedMemoryIsShared) {
  auto a = join();
  auto b = join();
  ASSERT_NE(a->shm(), nullptr);
  ASSERT_NE(b->shm(), nullptr);
  EXPECT_NE(a->shm(), b->shm());  // two mappings of one file
  for (u64 i = 0; i < kMiB; i += 4093) a->shm()[i] = static_cast<u8>(i * 7 + 1);
  a->shm()[kMiB - 1] = 0x5a;
  for (u64 i = 0; i < kMiB; i += 4093) ASSERT_EQ(b->shm()[i], static_cast<u8>(i * 7 + 1)) << i;
  EXPECT_EQ(b->shm()[kMiB - 1], 0x5a);
  b->shm()[12345] = 0xc3;
  EXPECT_EQ(a->shm()[12345], 0xc3);
  // A member that joins later sees it too.
  auto c = join();
  EXPECT_EQ(c->shm()[12345], 0xc3);
  EXPECT_EQ(c->shm()[kMiB - 1], 0x5a);
}

TEST_F(IvcGroupTest, TheSharedMemoryIsZeroWhenTheGroupIsCreatedAgain) {
  auto a = join();
  std::memset(a->shm(), 0xab, a->shm_size());
  a.reset();
  auto b = join();
  EXPECT_TRUE(std::all_of(b->shm(), b->shm() + b->shm_size(), [](u8 v) { return v == 0; }));
}

TEST_F(IvcGroupTest, SendAndPop) {
  auto a = join();
  auto b = join();
  EXPECT_EQ(a->send(1, 42), IvcGroup::SendStatus::kOk);
  EXPECT_EQ(b->ready(), 1u);
  EXPECT_EQ(a->ready(), 0u);
  u32 source = 0;
  u64 value = 0;
  ASSERT_TRUE(b->pop(&source, &value));
  EXPECT_EQ(source, 0u);
  EXPECT_EQ(value, 42u);
  EXPECT_FALSE(b->pop(&source, &value));
  // To oneself.
  EXPECT_EQ(a->send(0, 7), IvcGroup::SendStatus::kOk);
  ASSERT_TRUE(a->pop(&source, &value));
  EXPECT_EQ(source, 0u);
  EXPECT_EQ(value, 7u);
  // Nobody there, or no such rank.
  EXPECT_EQ(a->send(5, 1), IvcGroup::SendStatus::kNotMember);
  EXPECT_EQ(a->send(kMaxRanks, 1), IvcGroup::SendStatus::kBadRank);
  EXPECT_EQ(a->send(~0u, 1), IvcGroup::SendStatus::kBadRank);
  b.reset();
  EXPECT_EQ(a->send(1, 1), IvcGroup::SendStatus::kNotMember);
  // A new member of rank 1 starts with an empty inbox.
  EXPECT_EQ(a->send(0, 1), IvcGroup::SendStatus::kOk);  // (a's own, kept)
  auto c = join();
  EXPECT_EQ(c->rank(), 1u);
  EXPECT_EQ(c->ready(), 0u);
  EXPECT_EQ(a->ready(), 1u);
}

TEST_F(IvcGroupTest, AFullInboxRefusesUntilAPop) {
  auto a = join();
  auto b = join();
  for (u64 i = 0; i < kInboxCapacity; ++i) {
    ASSERT_EQ(a->send(1, i), IvcGroup::SendStatus::kOk) << i;
  }
  EXPECT_EQ(b->ready(), kInboxCapacity);
  EXPECT_EQ(a->send(1, 5000), IvcGroup::SendStatus::kFull);
  EXPECT_EQ(a->send(0, 5000), IvcGroup::SendStatus::kOk);  // other inboxes are not affected
  u32 source = 0;
  u64 value = 0;
  ASSERT_TRUE(b->pop(&source, &value));
  EXPECT_EQ(value, 0u);
  EXPECT_EQ(a->send(1, 5001), IvcGroup::SendStatus::kOk);
  EXPECT_EQ(b->ready(), kInboxCapacity);
  for (u64 i = 1; i < kInboxCapacity; ++i) {
    ASSERT_TRUE(b->pop(&source, &value));
    ASSERT_EQ(value, i);
  }
  ASSERT_TRUE(b->pop(&source, &value));
  EXPECT_EQ(value, 5001u);
}

// 4 members send 10000 messages each from their own threads to rank 0, which pops while
// they send (so the inbox fills and empties many times): nothing lost or duplicated, and
// each sender's messages arrive in the order it sent them.
TEST_F(IvcGroupTest, ManySendersLoseNothingAndKeepTheirOrder) {
  constexpr unsigned kSenders = 4;
  constexpr u64 kPerSender = 10000;
  auto receiver = join();
  std::vector<std::unique_ptr<IvcGroup>> senders;
  for (unsigned s = 0; s < kSenders; ++s) senders.push_back(join());
  std::atomic<u64> full_seen{0};
  std::atomic<bool> give_up{false};
  std::vector<std::thread> threads;
  for (unsigned s = 0; s < kSenders; ++s) {
    threads.emplace_back([&, s] {
      IvcGroup& g = *senders[s];
      for (u64 i = 0; i < kPerSender; ++i) {
        const u64 value = (u64{g.rank()} << 32) | i;
        IvcGroup::SendStatus status;
        while ((status = g.send(0, value)) == IvcGroup::SendStatus::kFull) {
          if (give_up.load()) return;
          full_seen.fetch_add(1, std::memory_order_relaxed);
          std::this_thread::yield();
        }
        if (status != IvcGroup::SendStatus::kOk) {
          ADD_FAILURE() << "send status " << static_cast<u32>(status);
          return;
        }
      }
    });
  }
  std::array<u64, kSenders + 1> next{};  // by source rank
  u64 received = 0;
  // Returns at the first wrong message (then the senders give up).
  const auto receive = [&] {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (received < kSenders * kPerSender && std::chrono::steady_clock::now() < deadline) {
      u32 source = 0;
      u64 value = 0;
      const u32 ready = receiver->ready();
      ASSERT_LE(ready, kInboxCapacity);
      if (!receiver->pop(&source, &value)) {
        std::this_thread::yield();
        continue;
      }
      ASSERT_GE(source, 1u);
      ASSERT_LE(source, kSenders);
      ASSERT_EQ(value >> 32, source) << "the source is the sender's rank";
      ASSERT_EQ(value & 0xffffffff, next[source]) << "from rank " << source;
      ++next[source];
      ++received;
    }
  };
  receive();
  give_up.store(true);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(received, kSenders * kPerSender);
  for (unsigned s = 1; s <= kSenders; ++s) EXPECT_EQ(next[s], kPerSender) << s;
  u32 source = 0;
  u64 value = 0;
  EXPECT_FALSE(receiver->pop(&source, &value));
  RecordProperty("sends_refused_full", std::to_string(full_seen.load()));
}

class Counter {
 public:
  IvcGroup::Notify callback() {
    return [this] { count_.fetch_add(1); };
  }
  int count() const { return count_.load(); }
  // Waits until the count passes `before`.
  bool fires_after(int before) const {
    return wait_until([&] { return count_.load() > before; });
  }

 private:
  std::atomic<int> count_{0};
};

TEST_F(IvcGroupTest, TheWatcherNotifiesOnADoorbell) {
  Counter notified;  // outlives the watcher
  auto a = join();
  auto b = join();
  a->start(notified.callback());
  // First the news of b's joining, sent before the watcher started.
  ASSERT_TRUE(notified.fires_after(0));
  int before = notified.count();
  EXPECT_EQ(b->send(0, 1), IvcGroup::SendStatus::kOk);
  EXPECT_TRUE(notified.fires_after(before));
  EXPECT_EQ(a->ready(), 1u);
  u32 source = 0;
  u64 value = 0;
  ASSERT_TRUE(a->pop(&source, &value));
  EXPECT_EQ(source, 1u);
  // Empty again: the next message rings again.
  before = notified.count();
  EXPECT_EQ(b->send(0, 2), IvcGroup::SendStatus::kOk);
  EXPECT_TRUE(notified.fires_after(before));
  a->stop();
  a->stop();  // twice is harmless
}

TEST_F(IvcGroupTest, TheWatcherNotifiesOnMembershipChanges) {
  Counter notified;
  auto a = join();
  a->start(notified.callback());
  int before = notified.count();
  auto b = join();
  EXPECT_TRUE(notified.fires_after(before));
  EXPECT_EQ(a->members(), 3u);
  before = notified.count();
  b.reset();
  EXPECT_TRUE(notified.fires_after(before));
  EXPECT_EQ(a->members(), 1u);
}

TEST_F(IvcGroupTest, TheWatcherCanBeStartedAgain) {
  Counter first;
  Counter second;
  auto a = join();
  auto b = join();
  a->start(first.callback());
  ASSERT_TRUE(first.fires_after(0));  // b's joining
  a->stop();
  a->start(second.callback());
  EXPECT_EQ(b->send(0, 1), IvcGroup::SendStatus::kOk);
  EXPECT_TRUE(second.fires_after(0));
  a.reset();  // the destructor stops it
}

// ------------------------------------------------------------------ members that die

// A forked process that joins the group and then waits, holding its membership, until it
// is told to _exit() (without leaving: no destructor runs) or is killed.
class ChildMember {
 public:
  // `fill`: a byte the child writes over the whole shared memory after joining (0: none).
  ChildMember(const JoinOptions& options, u8 fill = 0) {
    int ready[2], go[2];
    if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe";
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      u8 status = 0xff;
      try {
        IvcGroup g(options);
        if (fill != 0) std::memset(g.shm(), fill, g.shm_size());
        status = static_cast<u8>(g.rank());
        (void)!::write(ready[1], &status, 1);
        char c;
        (void)!::read(go[0], &c, 1);  // until the parent says so (or closes its end)
        ::_exit(0);
      } catch (...) {
        (void)!::write(ready[1], &status, 1);
        ::_exit(1);
      }
    }
    ::close(ready[1]);
    ::close(go[0]);
    go_fd_ = go[1];
    if (pid_ < 0) {
      ADD_FAILURE() << "fork";
      ::close(ready[0]);
      return;
    }
    // The child's answer, or give up after a while (the destructor kills it).
    u8 status = 0xff;
    pollfd answer{ready[0], POLLIN, 0};
    if (::poll(&answer, 1, 20000) != 1 || ::read(ready[0], &status, 1) != 1) status = 0xff;
    ::close(ready[0]);
    joined_ = status != 0xff;
    rank_ = status;
  }
  ~ChildMember() {
    if (go_fd_ >= 0) ::close(go_fd_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      reap();
    }
  }
  ChildMember(const ChildMember&) = delete;
  ChildMember& operator=(const ChildMember&) = delete;

  bool joined() const { return joined_; }
  unsigned rank() const { return rank_; }
  // _exit() without leaving the group.
  void exit() {
    (void)!::write(go_fd_, "x", 1);  // (a byte, not EOF: a later child may hold the pipe too)
    ::close(go_fd_);
    go_fd_ = -1;
  }
  void kill() { ::kill(pid_, SIGKILL); }
  void reap() {
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }

 private:
  pid_t pid_ = -1;
  int go_fd_ = -1;
  bool joined_ = false;
  bool reaped_ = false;
  unsigned rank_ = 0;
};

enum class Death { kExit, kKill };

class IvcDeadMemberTest : public IvcGroupTest, public ::testing::WithParamInterface<Death> {
 protected:
  void die(ChildMember& child) {
    if (GetParam() == Death::kExit) {
      child.exit();
    } else {
      child.kill();
    }
  }
};

// The survivor's watcher sees the pidfd of the dead member fire, frees its rank and calls
// Notify (the device's cue). The parent reaps the child, as a shell reaps a crashed dvmm.
TEST_P(IvcDeadMemberTest, TheWatcherRemovesADeadMember) {
  Counter notified;
  auto a = join();
  ChildMember child(options());
  ASSERT_TRUE(child.joined());
  EXPECT_EQ(child.rank(), 1u);
  EXPECT_EQ(a->members(), 3u);
  a->start(notified.callback());
  ASSERT_TRUE(notified.fires_after(0));  // the child's joining
  const int before = notified.count();
  const auto t0 = std::chrono::steady_clock::now();
  die(child);
  child.reap();
  ASSERT_TRUE(wait_until([&] { return a->members() == 1u; })) << std::hex << a->members();
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  // The pidfd makes this immediate (the periodic check would take 200 ms); 2 s of margin
  // for a loaded machine.
  EXPECT_LT(elapsed, 2s) << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                         << " ms";
  EXPECT_TRUE(notified.fires_after(before));
  EXPECT_EQ(a->send(1, 1), IvcGroup::SendStatus::kNotMember);
  // The rank is free again.
  auto b = join();
  EXPECT_EQ(b->rank(), 1u);
  b.reset();
  a.reset();
  EXPECT_FALSE(exists(group_dir())) << "the last member cleans up the dead one's files too";
}

// The same, while the dead member is still a zombie (its parent has not waited for it yet):
// it is dead all the same and must not keep its rank.
TEST_P(IvcDeadMemberTest, AZombieIsADeadMember) {
  Counter notified;
  auto a = join();
  ChildMember child(options());
  ASSERT_TRUE(child.joined());
  a->start(notified.callback());
  ASSERT_TRUE(notified.fires_after(0));  // the child's joining
  const int before = notified.count();
  die(child);
  EXPECT_TRUE(wait_until([&] { return a->members() == 1u; })) << std::hex << a->members();
  EXPECT_TRUE(notified.fires_after(before));
  child.reap();
}

// Without a watcher, the next joiner frees the dead member's rank.
TEST_P(IvcDeadMemberTest, AJoinerFreesADeadMembersRank) {
  auto a = join();
  ChildMember child(options());
  ASSERT_TRUE(child.joined());
  ASSERT_EQ(child.rank(), 1u);
  die(child);
  child.reap();
  EXPECT_EQ(a->members(), 3u) << "nobody has noticed yet";
  auto b = join(1);  // the dead member's rank, explicitly
  EXPECT_EQ(b->rank(), 1u);
  EXPECT_EQ(a->members(), 3u);
  EXPECT_EQ(a->send(1, 9), IvcGroup::SendStatus::kOk);
  EXPECT_EQ(b->ready(), 1u);
}

TEST_P(IvcDeadMemberTest, AJoinerFindsTheLowestRankOfADeadMember) {
  auto a = join();
  ChildMember child(options());
  ASSERT_TRUE(child.joined());
  auto c = join();
  EXPECT_EQ(c->rank(), 2u);
  die(child);
  child.reap();
  auto d = join();
  EXPECT_EQ(d->rank(), 1u);
}

// The dead member was the only one: the group is created again, with a new size and zeroed
// shared memory, though its files were left behind.
TEST_P(IvcDeadMemberTest, AGroupWhoseOnlyMemberDiedIsCreatedAgain) {
  {
    ChildMember child(options(-1, 2 * kMiB), 0xcd);
    ASSERT_TRUE(child.joined());
    ASSERT_EQ(child.rank(), 0u);
    die(child);
    child.reap();
  }
  ASSERT_TRUE(exists(group_dir() + "/control"));
  auto a = join(0, kMiB);
  EXPECT_EQ(a->rank(), 0u);
  EXPECT_EQ(a->members(), 1u);
  EXPECT_EQ(a->shm_size(), kMiB);
  EXPECT_TRUE(std::all_of(a->shm(), a->shm() + a->shm_size(), [](u8 v) { return v == 0; }));
  a.reset();
  EXPECT_FALSE(exists(group_dir()));
}

INSTANTIATE_TEST_SUITE_P(Deaths, IvcDeadMemberTest, ::testing::Values(Death::kExit, Death::kKill),
                         [](const ::testing::TestParamInfo<Death>& info) {
                           return info.param == Death::kExit ? std::string("Exit")
                                                             : std::string("Kill");
                         });

// A slot whose pid belongs to a live process that is not the member (a reused pid: its start
// time differs) is free; one whose pid and start time match is taken. Written directly into
// the control file, as a crashed member would have left it.
TEST_F(IvcGroupTest, AReusedPidDoesNotHoldARank) {
  auto a = join();
  const std::string path = group_dir() + "/control";
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  void* p = ::mmap(nullptr, kControlBlockSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  ASSERT_NE(p, MAP_FAILED);
  auto* control = static_cast<ControlBlock*>(p);
  EXPECT_EQ(control->magic, kControlMagic);
  EXPECT_EQ(control->shm_size, kMiB);
  EXPECT_EQ(control->slots[0].pid.load(), ::getpid());
  const u64 own_start = control->slots[0].start_time.load();
  EXPECT_NE(own_start, 0u);

  control->slots[7].start_time.store(own_start + 1);
  control->slots[7].pid.store(::getpid());
  control->slots[8].start_time.store(own_start);
  control->slots[8].pid.store(::getpid());
  EXPECT_EQ(a->members(), 0b110000001u);
  auto b = join(7);
  EXPECT_EQ(b->rank(), 7u);
  EXPECT_THAT(join_error(options(8)), HasSubstr("taken"));
  control->slots[8].pid.store(0);
  ::munmap(p, kControlBlockSize);
}

TEST_F(IvcGroupTest, AForeignControlFileIsRefused) {
  ASSERT_EQ(::mkdir((dir_.path() + "/ivc").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(group_dir().c_str(), 0700), 0);
  std::ofstream(group_dir() + "/control") << "not a control block";
  EXPECT_THAT(join_error(options()),
              AllOf(HasSubstr(group_dir() + "/control"), HasSubstr("not the control block")));
}

TEST_F(IvcGroupTest, ASocketPathTooLongForUnixSocketsIsExplained) {
  std::string deep = dir_.path();
  while (deep.size() < 90) deep += "/dddddddddd";
  JoinOptions o = options();
  o.runtime_dir = deep;
  EXPECT_THAT(join_error(o), HasSubstr("too long for AF_UNIX"));
}

}  // namespace
}  // namespace dvmm::devices::ivc
