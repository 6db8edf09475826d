#include "devices/test_finisher.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace dvmm::devices {
namespace {

TEST(TestFinisher, Protocol) {
  std::vector<FinisherEvent> events;
  TestFinisher f([&](const FinisherEvent& e) { events.push_back(e); });
  f.write(0, 4, 0x5555);
  f.write(0, 4, (42u << 16) | 0x3333);
  f.write(0, 4, 0x7777);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kind, FinisherEvent::Kind::kPowerOff);
  EXPECT_EQ(events[0].status, 0u);
  EXPECT_EQ(events[1].kind, FinisherEvent::Kind::kPowerOff);
  EXPECT_EQ(events[1].status, 42u);
  EXPECT_EQ(events[2].kind, FinisherEvent::Kind::kReboot);
}

TEST(TestFinisher, IgnoresOtherWrites) {
  int calls = 0;
  TestFinisher f([&](const FinisherEvent&) { ++calls; });
  f.write(0, 4, 0x1234);
  f.write(4, 4, 0x5555);  // wrong offset
  f.write(0, 1, 0x55);    // a byte store
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(f.read(0, 4), 0u);
  EXPECT_EQ(f.size(), 0x1000u);
}

}  // namespace
}  // namespace dvmm::devices
