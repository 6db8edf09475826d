#include "machine/cpio_writer.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <string>

#include "machine/guest_command.hpp"

namespace dvmm::machine {
namespace {

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "<popen failed>";
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  pclose(p);
  return out;
}

class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/dvmm-cpio-XXXXXX";
    path_ = mkdtemp(name);
  }
  ~TempDir() { run("rm -rf '" + path_ + "'"); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::vector<u8>& data) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

bool have_cpio() {
  return run("command -v cpio").find("cpio") != std::string::npos;
}

TEST(CpioWriter, FormatBasics) {
  CpioWriter w;
  w.add_file("a", std::string_view("xyz"));
  const std::vector<u8> a = w.finish();
  ASSERT_GE(a.size(), 110u);
  EXPECT_EQ(std::string(a.begin(), a.begin() + 6), "070701");
  EXPECT_EQ(a.size() % 4, 0u);
  const std::string text(a.begin(), a.end());
  EXPECT_NE(text.find("TRAILER!!!"), std::string::npos);
}

TEST(CpioWriter, HostCpioListsAndExtracts) {
  if (!have_cpio()) GTEST_SKIP() << "host cpio not installed";
  TempDir dir;
  CpioWriter w;
  w.add_directory("dvmm");
  w.add_file("dvmm/cmd", std::string_view("echo hi\n"), 0755);
  w.add_file("dvmm/odd name", std::string_view("12345"));  // length not a multiple of 4
  w.add_file("empty", std::string_view(""));
  write_file(dir.path() + "/a.cpio", w.finish());
  EXPECT_EQ(run("cpio -it --quiet < " + dir.path() + "/a.cpio"),
            "dvmm\ndvmm/cmd\ndvmm/odd name\nempty\n");
  run("cd " + dir.path() + " && mkdir x && cd x && cpio -id --quiet < ../a.cpio");
  EXPECT_EQ(run("cat " + dir.path() + "/x/dvmm/cmd"), "echo hi\n");
  EXPECT_EQ(run("cat '" + dir.path() + "/x/dvmm/odd name'"), "12345");
  EXPECT_EQ(run("stat -c %a " + dir.path() + "/x/dvmm/cmd"), "755\n");
}

TEST(GuestCommand, ShellQuoting) {
  EXPECT_EQ(shell_quote("echo"), "echo");
  EXPECT_EQ(shell_quote("/bin/ls"), "/bin/ls");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote("$HOME"), "'$HOME'");
  const std::vector<std::string> argv = {"sh", "-c", "echo \"$1\" | wc -c", "x"};
  EXPECT_EQ(shell_command(argv), "sh -c 'echo \"$1\" | wc -c' x");
}

TEST(GuestCommand, ArchiveRunsTheCommandUnderHostSh) {
  if (!have_cpio()) GTEST_SKIP() << "host cpio not installed";
  TempDir dir;
  const std::vector<std::string> argv = {"printf", "%s|", "a b", "it's", "$x", "*"};
  write_file(dir.path() + "/cmd.cpio", make_command_archive(argv));
  run("cd " + dir.path() + " && cpio -id --quiet < cmd.cpio");
  EXPECT_EQ(run("cd " + dir.path() + " && sh dvmm/cmd"), "a b|it's|$x|*|");
}

TEST(GuestCommand, ConcatAlignsParts) {
  const std::vector<std::vector<u8>> parts = {{1, 2, 3, 4, 5}, {6}, {}, {7}};
  EXPECT_EQ(concat_initrd(parts), (std::vector<u8>{1, 2, 3, 4, 5, 0, 0, 0, 6, 0, 0, 0, 7}));
}

}  // namespace
}  // namespace dvmm::machine
