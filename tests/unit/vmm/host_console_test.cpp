#include "vmm/host_console.hpp"

#include <gtest/gtest.h>

namespace dvmm::vmm {
namespace {

std::string feed_all(LineFilter& f, const std::string& s, bool bytewise) {
  if (!bytewise) return f.feed(s);
  std::string out;
  for (char c : s) out += f.feed(std::string_view(&c, 1));
  return out;
}

TEST(LineFilter, DropsTheBannerOnly) {
  for (bool bytewise : {false, true}) {
    LineFilter f({"dvmm-guest: init reached"});
    EXPECT_EQ(feed_all(f, "dvmm-guest: init reached\r\nhi\r\n", bytewise), "hi\r\n");
    EXPECT_EQ(feed_all(f, "dvmm-guest: init reached again\n", bytewise),
              "dvmm-guest: init reached again\n");
    EXPECT_EQ(feed_all(f, "dvmm-guest: other\n", bytewise), "dvmm-guest: other\n");
  }
}

TEST(LineFilter, DoesNotHoldBackPrompts) {
  LineFilter f({"dvmm-guest: init reached"});
  EXPECT_EQ(f.feed("/ # "), "/ # ");
  EXPECT_EQ(f.feed("x"), "x");
  // A prefix of the banner is held until it is decided...
  EXPECT_EQ(f.feed("\ndvmm"), "\n");
  EXPECT_EQ(f.feed("!"), "dvmm!");
}

TEST(LineFilter, EmptyListPassesEverything) {
  LineFilter f({});
  EXPECT_EQ(f.feed("abc\ndef"), "abc\ndef");
}

TEST(CrlfFilter, LineEnds) {
  CrlfFilter f;
  EXPECT_EQ(f.feed("1\r\n"), "1\n");
  EXPECT_EQ(f.feed("50%\r"), "50%");  // the \r waits for the next byte
  EXPECT_EQ(f.feed("60%\r\r\n"), "\r60%\r\n");
  EXPECT_EQ(f.feed("a\r"), "a");
  EXPECT_EQ(f.feed("\n"), "\n");
  EXPECT_EQ(f.feed("\n\n"), "\n\n");
}

TEST(EscapeParser, Keys) {
  EscapeParser e;
  const u8 in[] = {'a', 0x01, 0x01, 'b'};
  auto r = e.feed(in, sizeof in);
  EXPECT_EQ(r.to_guest, (std::vector<u8>{'a', 0x01, 'b'}));
  EXPECT_EQ(r.command, EscapeParser::Command::kNone);

  const u8 help[] = {0x01, 'h', 'c'};
  r = e.feed(help, sizeof help);
  EXPECT_EQ(r.command, EscapeParser::Command::kHelp);
  EXPECT_EQ(r.to_guest, (std::vector<u8>{'c'}));

  // Escape split across two reads.
  const u8 first[] = {'z', 0x01};
  r = e.feed(first, sizeof first);
  EXPECT_EQ(r.to_guest, (std::vector<u8>{'z'}));
  const u8 second[] = {'x', 'y'};
  r = e.feed(second, sizeof second);
  EXPECT_EQ(r.command, EscapeParser::Command::kQuit);
  EXPECT_TRUE(r.to_guest.empty());

  // Unknown command keys are swallowed.
  const u8 other[] = {0x01, 'q', 'w'};
  r = e.feed(other, sizeof other);
  EXPECT_EQ(r.to_guest, (std::vector<u8>{'w'}));
}

}  // namespace
}  // namespace dvmm::vmm
