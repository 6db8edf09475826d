// The VM configuration file (cli/vm_config.hpp): a full file into RunOptions and VmControls,
// errors that name the file, line and key, and flags that override the file.
#include "cli/vm_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "cli/vm_name.hpp"
#include "cpu/csr.hpp"

namespace dvmm::cli {
namespace {

namespace fs = std::filesystem;

class VmConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "vm_config_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes `text` to DIR/name and returns its path.
  std::string write(const std::string& text, const std::string& name = "vm.toml") {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // The error apply_vm_config() throws for `text`, checking it left the options alone.
  std::string error_for(const std::string& text) {
    const std::string path = write(text);
    RunOptions o;
    o.vcpus = 3;
    o.controls.exec.single_step = true;
    try {
      apply_vm_config(path, o);
    } catch (const ConfigError& e) {
      EXPECT_EQ(o.vcpus, 3u);
      EXPECT_TRUE(o.controls.exec.single_step);
      EXPECT_TRUE(o.controls.exec.breakpoints.empty());
      EXPECT_TRUE(o.config_keys.empty());
      EXPECT_TRUE(o.config_file.empty());
      return e.what();
    }
    ADD_FAILURE() << "no error for:\n" << text;
    return {};
  }

  fs::path dir_;
};

constexpr const char* kFullFile = R"(# every key
name = "web1"
vcpus = 4
memory = "1G"
kernel = "images/Image"
initrd = "/abs/initramfs.cpio.gz"
initrd_extra = ["a.cpio", "/b.cpio"]
append = "console=ttyS0"
timeout = 2.5
verbose = true
command = ["sh", "-c", "echo hi"]

[cluster]
nodes = 2

[controls]
exceptions = ["illegal_instruction", "ecall_from_u"]
csr_read = ["stimecmp"]
csr_write = ["satp", "sstatus"]
wfi_exiting = false
halt_poll_us = 50
single_step = true
breakpoints = [0x80200000, "0xffffffff80001234"]
action = "pause"
sbi_trace = ["hsm", "ipi"]
mmio_trace = ["all"]
)";

TEST_F(VmConfig, FullFileFillsRunOptionsAndControls) {
  const std::string path = write(kFullFile);
  RunOptions o;
  apply_vm_config(path, o);
  EXPECT_EQ(o.config_file, path);
  EXPECT_EQ(o.name, "web1");
  EXPECT_EQ(o.vcpus, 4u);
  EXPECT_EQ(o.memory, "1G");
  EXPECT_EQ(o.nodes, 2u);
  EXPECT_EQ(o.vcpus_per_node, 0u);
  EXPECT_TRUE(o.memory_per_node.empty());
  // Relative paths are relative to the file's directory.
  EXPECT_EQ(o.kernel, (dir_ / "images/Image").string());
  EXPECT_EQ(o.initrd, "/abs/initramfs.cpio.gz");
  EXPECT_EQ(o.initrd_extra, (std::vector<std::string>{(dir_ / "a.cpio").string(), "/b.cpio"}));
  EXPECT_EQ(o.append, "console=ttyS0");
  EXPECT_DOUBLE_EQ(o.timeout_s, 2.5);
  EXPECT_TRUE(o.verbose);
  EXPECT_EQ(o.command, (std::vector<std::string>{"sh", "-c", "echo hi"}));

  const vmm::VmControls& c = o.controls;
  EXPECT_EQ(c.exec.exception_bitmap, (u64{1} << 2) | (u64{1} << 8));
  EXPECT_TRUE(c.exec.csr_read_intercept.test(*cpu::csr_by_name("stimecmp")));
  EXPECT_EQ(c.exec.csr_read_intercept.count(), 1u);
  EXPECT_TRUE(c.exec.csr_write_intercept.test(0x180));
  EXPECT_TRUE(c.exec.csr_write_intercept.test(0x100));
  EXPECT_EQ(c.exec.csr_write_intercept.count(), 2u);
  EXPECT_FALSE(c.exec.wfi_exiting);
  EXPECT_EQ(c.halt_poll_ns, 50'000u);
  EXPECT_TRUE(c.exec.single_step);
  EXPECT_EQ(c.exec.breakpoints, (std::vector<u64>{0x80200000, 0xffffffff80001234}));
  EXPECT_EQ(c.action, vmm::ExitAction::kPause);
  EXPECT_EQ(c.sbi_trace, (std::set<std::string>{"hsm", "ipi"}));
  EXPECT_EQ(c.mmio_trace,
            std::set<std::string>(vmm::device_names().begin(), vmm::device_names().end()));

  EXPECT_EQ(o.config_keys, (std::set<std::string>{"name",
                                                  "vcpus",
                                                  "memory",
                                                  "kernel",
                                                  "initrd",
                                                  "initrd_extra",
                                                  "append",
                                                  "timeout",
                                                  "verbose",
                                                  "command",
                                                  "cluster.nodes",
                                                  "controls.exceptions",
                                                  "controls.csr_read",
                                                  "controls.csr_write",
                                                  "controls.wfi_exiting",
                                                  "controls.halt_poll_us",
                                                  "controls.single_step",
                                                  "controls.breakpoints",
                                                  "controls.action",
                                                  "controls.sbi_trace",
                                                  "controls.mmio_trace"}));
}

TEST_F(VmConfig, AnEmptyFileChangesNothing) {
  const std::string path = write("# nothing\n");
  RunOptions o;
  o.vcpus = 3;
  apply_vm_config(path, o);
  EXPECT_EQ(o.vcpus, 3u);
  EXPECT_TRUE(o.memory.empty());
  EXPECT_TRUE(o.command.empty());
  EXPECT_EQ(o.controls, vmm::VmControls{});
  EXPECT_TRUE(o.config_keys.empty());
}

TEST_F(VmConfig, PerNodeSizesAndIntegerMemory) {
  const std::string path = write(
      "memory = 1024\n"
      "[cluster]\nnodes = 3\nvcpus_per_node = 2\nmemory_per_node = \"128M\"\n");
  RunOptions o;
  EXPECT_THROW(apply_vm_config(path, o), ConfigError);  // memory and memory_per_node

  const std::string ok = write("[cluster]\nnodes = 3\nvcpus_per_node = 2\nmemory_per_node = 128\n");
  apply_vm_config(ok, o);
  EXPECT_EQ(o.nodes, 3u);
  EXPECT_EQ(o.vcpus_per_node, 2u);
  EXPECT_EQ(o.memory_per_node, "128");  // a bare number is MiB, as for the flag

  apply_vm_config(write("memory = 1024\n"), o);
  EXPECT_EQ(o.memory, "1024");
}

TEST_F(VmConfig, DottedKeysAreTheSameTables) {
  RunOptions o;
  apply_vm_config(write("cluster.nodes = 2\ncontrols.action = \"count\"\n"), o);
  EXPECT_EQ(o.nodes, 2u);
  EXPECT_EQ(o.controls.action, vmm::ExitAction::kCount);
}

// Each kind of error: the message starts with FILE:LINE: KEY.
TEST_F(VmConfig, ErrorsNameFileLineAndKey) {
  const std::string file = (dir_ / "vm.toml").string();
  const struct {
    const char* text;
    const char* where;  // after "FILE:"
    const char* what;   // somewhere after it
  } cases[] = {
      // unknown keys, in each table
      {"vcpus = 2\nvcpu = 2\n", "2: vcpu: ", "unknown key (known: name, vcpus"},
      {"[cluster]\nnodes = 2\nnode = 2\n", "3: cluster.node: ", "known in [cluster]: nodes"},
      {"\n[controls]\nexception = []\n", "3: controls.exception: ", "unknown key"},
      {"[volumes]\n", "1: volumes: ", "unknown key"},
      // wrong types
      {"vcpus = \"2\"\n", "1: vcpus: ", "expected an integer, not a string"},
      {"name = 7\n", "1: name: ", "expected a string, not an integer"},
      {"verbose = \"yes\"\n", "1: verbose: ", "expected a boolean"},
      {"command = \"ls\"\n", "1: command: ", "expected an array, not a string"},
      {"command = [\"ls\",\n  3]\n", "2: command[1]: ", "expected a string, not an integer"},
      {"controls = 1\n", "1: controls: ", "expected a table, not an integer"},
      {"timeout = \"1s\"\n", "1: timeout: ", "expected a number of seconds"},
      {"memory = true\n", "1: memory: ", "expected a size"},
      {"[controls]\nwfi_exiting = 1\n", "2: controls.wfi_exiting: ", "expected a boolean"},
      {"[controls]\nbreakpoints = [1.5]\n", "2: controls.breakpoints[0]: ", "expected an address"},
      // bad values
      {"vcpus = -1\n", "1: vcpus: ", "between 1 and 64, not -1"},
      {"vcpus = 0\n", "1: vcpus: ", "between 1 and 64, not 0"},
      {"[cluster]\nnodes = 65\n", "2: cluster.nodes: ", "between 1 and 64"},
      {"memory = \"12Q\"\n", "1: memory: ", "invalid memory size '12Q'"},
      {"memory = \"16M\"\n", "1: memory: ", "too small"},
      {"memory = -5\n", "1: memory: ", "positive size"},
      {"timeout = 0\n", "1: timeout: ", "positive number of seconds"},
      {"name = \"web 1\"\n", "1: name: ", "letters, digits"},
      {"name = \"\"\n", "1: name: ", "must not be empty"},
      {"kernel = \"\"\n", "1: kernel: ", "empty"},
      {"vcpus = 2\n[cluster]\nvcpus_per_node = 1\n", "3: cluster.vcpus_per_node: ", "not both"},
      {"[controls]\nexceptions = [\"illegal_instruction\",\n  \"ilegal\"]\n",
       "3: controls.exceptions: ", "unknown exception 'ilegal' (known: "},
      {"[controls]\nexceptions = [\"ecall_from_s\"]\n", "2: controls.exceptions: ", "the SBI"},
      {"[controls]\ncsr_write = [\"satpp\"]\n", "2: controls.csr_write: ", "unknown CSR 'satpp'"},
      {"[controls]\ncsr_read = [\"satp\", 1]\n", "2: controls.csr_read[1]: ", "expected a string"},
      {"[controls]\nsbi_trace = [\"timer\"]\n",
       "2: controls.sbi_trace: ", "unknown SBI extension 'timer'"},
      {"[controls]\nmmio_trace = [\"uart1\"]\n", "2: controls.mmio_trace: ", "unknown device"},
      {"[controls]\naction = \"stop\"\n", "2: controls.action: ", "unknown action 'stop'"},
      {"[controls]\nhalt_poll_us = -1\n", "2: controls.halt_poll_us: ", "between 0 and"},
      {"[controls]\nbreakpoints = [-4]\n", "2: controls.breakpoints[0]: ", "negative"},
      {"[controls]\nbreakpoints = [\"0xfffffffff0000000000\"]\n",
       "2: controls.breakpoints[0]: ", "not an address"},
      // the first error in the file is the one shown, whatever the keys' order
      {"[controls]\nsingle_step = 1\naction = \"stop\"\n", "2: controls.single_step: ", ""},
      // syntax
      {"vcpus = 2\nvcpus = = 2\n", "2: syntax error: ", ""},
      {"vcpus = 2\nvcpus = 3\n", "2: syntax error: ", ""},
  };
  for (const auto& c : cases) {
    const std::string e = error_for(c.text);
    const std::string prefix = file + ":" + c.where;
    EXPECT_EQ(e.substr(0, prefix.size()), prefix) << c.text;
    EXPECT_NE(e.find(c.what, prefix.size()), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;  // one line
  }
}

TEST_F(VmConfig, UnreadableFiles) {
  RunOptions o;
  const std::string missing = (dir_ / "missing.toml").string();
  try {
    apply_vm_config(missing, o);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              missing + ": cannot read the configuration file: " + std::strerror(ENOENT));
  }
  try {
    apply_vm_config(dir_.string(), o);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

// The real `run` and `node` subcommands, as main() parses them.
class VmConfigFlags : public VmConfig {
 protected:
  // Parses `args` (after "dvmm") and applies the file `--config` names under the flags.
  RunOptions parse(std::vector<const char*> args) {
    RunOptions o;
    CLI::App app;
    CLI::App* run = add_run_command(app, o);
    CLI::App* node = add_node_command(app, o);
    args.insert(args.begin(), "dvmm");
    app.parse(static_cast<int>(args.size()), args.data());
    apply_vm_config(o.config_file, o, flags_given_to(run->parsed() ? *run : *node));
    return o;
  }
};

TEST_F(VmConfigFlags, FlagsOverrideTheFile) {
  const std::string path = write(
      "name = \"file\"\nvcpus = 2\nmemory = \"1G\"\nkernel = \"Image\"\nverbose = true\n"
      "command = [\"true\"]\n[cluster]\nnodes = 2\n[controls]\naction = \"count\"\n");
  const RunOptions o = parse({"run", "--config", path.c_str(), "--vcpus", "4", "--name", "flag",
                              "--kernel", "/k/Image", "--", "echo", "hi"});
  EXPECT_EQ(o.name, "flag");
  EXPECT_EQ(o.vcpus, 4u);
  EXPECT_EQ(o.kernel, "/k/Image");
  EXPECT_EQ(o.command, (std::vector<std::string>{"echo", "hi"}));
  // What the flags did not say comes from the file.
  EXPECT_EQ(o.memory, "1G");
  EXPECT_TRUE(o.verbose);
  EXPECT_EQ(o.nodes, 2u);
  EXPECT_EQ(o.controls.action, vmm::ExitAction::kCount);
  EXPECT_EQ(o.config_keys,
            (std::set<std::string>{"memory", "verbose", "cluster.nodes", "controls.action"}));

  // Without flags, the file.
  const RunOptions f = parse({"run", "--config", path.c_str()});
  EXPECT_EQ(f.name, "file");
  EXPECT_EQ(f.vcpus, 2u);
  EXPECT_EQ(f.kernel, (dir_ / "Image").string());
  EXPECT_EQ(f.command, (std::vector<std::string>{"true"}));
}

TEST_F(VmConfigFlags, ASizeFlagOverridesBothKeysOfItsPair) {
  const std::string per_node =
      write("[cluster]\nnodes = 2\nvcpus_per_node = 2\nmemory_per_node = \"256M\"\n");
  RunOptions o = parse({"run", "--config", per_node.c_str(), "--vcpus", "6", "--memory", "1G"});
  EXPECT_EQ(o.vcpus, 6u);
  EXPECT_EQ(o.vcpus_per_node, 0u);  // the file's per-node count would contradict --vcpus
  EXPECT_EQ(o.memory, "1G");
  EXPECT_TRUE(o.memory_per_node.empty());
  EXPECT_EQ(o.nodes, 2u);

  const std::string total = write("vcpus = 4\nmemory = \"1G\"\n[cluster]\nnodes = 2\n", "t.toml");
  o = parse({"run", "--config", total.c_str(), "--vcpus-per-node", "3"});
  EXPECT_EQ(o.vcpus, 0u);
  EXPECT_EQ(o.vcpus_per_node, 3u);
  EXPECT_EQ(o.memory, "1G");  // the memory pair was not overridden
}

TEST_F(VmConfigFlags, OverriddenValuesAreStillChecked) {
  const std::string path = write("vcpus = 0\n");
  EXPECT_THROW(parse({"run", "--config", path.c_str(), "--vcpus", "2"}), ConfigError);
}

TEST_F(VmConfigFlags, NodeTakesTheFileToo) {
  // `node` has no --vcpus or --memory flags: the file's totals apply.
  const std::string path = write(
      "vcpus = 4\nmemory = \"1G\"\ncommand = [\"true\"]\n[cluster]\nnodes = 2\n"
      "[controls]\ncsr_write = [\"satp\"]\n");
  const RunOptions o =
      parse({"node", "--config", path.c_str(), "--bootstrap-dir", "/tmp/x", "--rank", "1"});
  EXPECT_TRUE(o.node_mode);
  EXPECT_EQ(o.vcpus, 4u);
  EXPECT_EQ(o.memory, "1G");
  EXPECT_EQ(o.nodes, 2u);
  EXPECT_TRUE(o.controls.exec.csr_write_intercept.test(0x180));
  // Marked as the file's, so rank 1 ignores the command instead of refusing it.
  EXPECT_TRUE(o.config_keys.count("command"));
}

TEST(VmConfigName, Rules) {
  EXPECT_EQ(vm_name_problem("web1"), "");
  EXPECT_EQ(vm_name_problem("a.b_c-D9"), "");
  EXPECT_EQ(vm_name_problem(std::string(64, 'x')), "");
  EXPECT_NE(vm_name_problem(std::string(65, 'x')), "");
  EXPECT_NE(vm_name_problem(""), "");
  EXPECT_NE(vm_name_problem("a/b"), "");
  EXPECT_NE(vm_name_problem("a b"), "");
  EXPECT_NE(vm_name_problem(".."), "");
  EXPECT_NE(vm_name_problem("caf\xc3\xa9"), "");
  EXPECT_EQ(default_vm_name(), "dvmm-" + std::to_string(::getpid()));
  EXPECT_EQ(vm_name_problem(default_vm_name()), "");
}

TEST(VmConfigName, FlagIsChecked) {
  RunOptions o;
  CLI::App app;
  add_run_command(app, o);
  const char* bad[] = {"dvmm", "run", "--name", "a/b"};
  EXPECT_THROW(app.parse(4, bad), CLI::ValidationError);
  const char* good[] = {"dvmm", "run", "--name", "web-1"};
  RunOptions p;
  CLI::App app2;
  add_run_command(app2, p);
  app2.parse(4, good);
  EXPECT_EQ(p.name, "web-1");
}

}  // namespace
}  // namespace dvmm::cli

namespace dvmm::cli {
namespace {

TEST_F(VmConfig, PageFaultFilter) {
  RunOptions o;
  apply_vm_config(write("[controls]\nexceptions = [\"load_page_fault\"]\n"
                        "page_fault_filter = [0x1000, \"0xffffffff80000000\"]\n"),
                  o);
  EXPECT_EQ(o.controls.exec.page_fault_filter_lo, 0x1000u);
  EXPECT_EQ(o.controls.exec.page_fault_filter_hi, 0xffffffff80000000u);
  const std::string reversed = error_for("[controls]\npage_fault_filter = [5, 1]\n");
  EXPECT_NE(reversed.find(":2: controls.page_fault_filter: expected [low, high]"),
            std::string::npos)
      << reversed;
  const std::string single = error_for("[controls]\npage_fault_filter = [5]\n");
  EXPECT_NE(single.find("controls.page_fault_filter"), std::string::npos) << single;
}

TEST_F(VmConfig, DevicesAreReadAndChecked) {
  const std::string path = write(R"(
disks = ["images/a.qcow2,readonly=on", "/abs/b.img,node=1"]
nets = ["user,hostfwd=tcp::2222-:22", "switch=lab"]
rng = true
vconsole = "hvc.log"
root = "vda"
)");
  RunOptions o;
  apply_vm_config(path, o);
  ASSERT_EQ(o.disks.size(), 2u);
  EXPECT_EQ(o.disks[0], (dir_ / "images/a.qcow2").string() + ",readonly=on");
  EXPECT_EQ(o.disks[1], "/abs/b.img,node=1");
  EXPECT_EQ(o.nets, (std::vector<std::string>{"user,hostfwd=tcp::2222-:22", "switch=lab"}));
  EXPECT_TRUE(o.rng);
  EXPECT_EQ(o.vconsole, (dir_ / "hvc.log").string());
  EXPECT_EQ(o.root, "vda");
}

TEST_F(VmConfig, BadDevicesNameTheKeyAndLine) {
  EXPECT_THAT(error_for("vcpus = 1\ndisks = [\"a.img,format=vmdk\"]\n"),
              ::testing::AllOf(::testing::HasSubstr(":2: disks[0]"), ::testing::HasSubstr("vmdk")));
  EXPECT_THAT(error_for("nets = [\"user\", \"bogus=1\"]\n"),
              ::testing::AllOf(::testing::HasSubstr("nets[1]"), ::testing::HasSubstr("bogus")));
  EXPECT_THAT(error_for("disks = \"a.img\"\n"), ::testing::HasSubstr("disks"));
}

TEST_F(VmConfig, IvcGroupsAreRead) {
  RunOptions o;
  apply_vm_config(write("ivc = [\"lab\", \"bulk,size=256M,rank=1,members=4\"]\n"), o);
  EXPECT_EQ(o.ivcs, (std::vector<std::string>{"lab", "bulk,size=256M,rank=1,members=4"}));
  RunOptions empty;
  apply_vm_config(write("ivc = []\n", "empty.toml"), empty);
  EXPECT_TRUE(empty.ivcs.empty());
}

TEST_F(VmConfig, ABadIvcGroupNamesTheElementAndItsLine) {
  const std::string file = (dir_ / "vm.toml").string();
  EXPECT_THAT(error_for("vcpus = 1\nivc = [\"good\",\n  \"bad/name,size=1M\"]\n"),
              ::testing::AllOf(::testing::StartsWith(file + ":3: ivc[1]: "),
                               ::testing::HasSubstr("bad inter-VM group 'bad/name,size=1M'"),
                               ::testing::HasSubstr("letters, digits")));
  EXPECT_THAT(
      error_for("ivc = [\"g,rank=64\"]\n"),
      ::testing::AllOf(::testing::StartsWith(file + ":1: ivc[0]: "), ::testing::HasSubstr("rank")));
  EXPECT_THAT(error_for("ivc = [\"g,colour=red\"]\n"), ::testing::HasSubstr("colour"));
  EXPECT_THAT(error_for("ivc = \"g\"\n"),
              ::testing::AllOf(::testing::StartsWith(file + ":1: ivc: "),
                               ::testing::HasSubstr("expected an array")));
  EXPECT_THAT(error_for("ivc = [\"g\",\n  7]\n"),
              ::testing::AllOf(::testing::StartsWith(file + ":2: ivc[1]: "),
                               ::testing::HasSubstr("expected a string")));
}

TEST_F(VmConfigFlags, IvcFlagsOverrideTheFile) {
  const std::string path = write("ivc = [\"from-file\"]\n");
  EXPECT_EQ(parse({"run", "--config", path.c_str()}).ivcs, (std::vector<std::string>{"from-file"}));
  const RunOptions o = parse(
      {"run", "--config", path.c_str(), "--ivc", "a,size=1M", "--ivc", "b", "--", "echo", "-x"});
  EXPECT_EQ(o.ivcs, (std::vector<std::string>{"a,size=1M", "b"}));
  EXPECT_EQ(o.command, (std::vector<std::string>{"echo", "-x"}));
}

}  // namespace
}  // namespace dvmm::cli
