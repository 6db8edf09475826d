// The execution controls by name (vmm/vm_controls.hpp): names to engine bits and back, "all",
// and bad names refused without changing anything.
#include "vmm/vm_controls.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "cpu/csr.hpp"

namespace dvmm::vmm {
namespace {

using Names = std::vector<std::string>;

TEST(VmControls, ExceptionNamesMatchTheirCauses) {
  EXPECT_EQ(exception_by_name("illegal_instruction"), 2u);
  EXPECT_EQ(exception_by_name("breakpoint"), 3u);
  EXPECT_EQ(exception_by_name("ecall_from_u"), 8u);
  EXPECT_EQ(exception_by_name("store_page_fault"), 15u);
  EXPECT_FALSE(exception_by_name("ilegal_instruction"));
  EXPECT_EQ(exception_name(10), nullptr);  // reserved
  EXPECT_EQ(exception_name(16), nullptr);
  for (const std::string& name : exception_names()) {
    const auto cause = exception_by_name(name);
    ASSERT_TRUE(cause) << name;
    EXPECT_EQ(exception_name(*cause), name);
  }
}

TEST(VmControls, ExceptionsToBitsAndBack) {
  VmControls c;
  set_exceptions(c, {"ecall_from_u", "illegal_instruction", "load_page_fault"});
  EXPECT_EQ(c.exec.exception_bitmap, (u64{1} << 2) | (u64{1} << 8) | (u64{1} << 13));
  // Back in cause order, whatever order they were given in.
  EXPECT_EQ(exception_list(c), (Names{"illegal_instruction", "ecall_from_u", "load_page_fault"}));
  set_exceptions(c, {});
  EXPECT_EQ(c.exec.exception_bitmap, 0u);
  EXPECT_TRUE(exception_list(c).empty());
}

TEST(VmControls, AllExceptionsLeaveOutTheSbiCall) {
  VmControls c;
  set_exceptions(c, {"all"});
  EXPECT_EQ(c.exec.exception_bitmap & (u64{1} << 9), 0u);
  Names expected;
  for (const std::string& n : exception_names()) {
    if (n != "ecall_from_s") expected.push_back(n);
  }
  EXPECT_EQ(exception_list(c), expected);
}

TEST(VmControls, EcallFromSIsRefused) {
  VmControls c;
  set_exceptions(c, {"breakpoint"});
  const VmControls before = c;
  EXPECT_THROW(set_exceptions(c, {"illegal_instruction", "ecall_from_s"}), ControlError);
  EXPECT_EQ(c, before);
}

TEST(VmControls, UnknownExceptionIsRefusedAndNamed) {
  VmControls c;
  set_exceptions(c, {"breakpoint"});
  const VmControls before = c;
  try {
    set_exceptions(c, {"illegal_instruction", "ilegal"});
    FAIL() << "no error";
  } catch (const ControlError& e) {
    EXPECT_NE(std::string(e.what()).find("'ilegal'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("illegal_instruction"), std::string::npos) << e.what();
  }
  EXPECT_EQ(c, before);
}

TEST(VmControls, CsrsToBitsAndBack) {
  VmControls c;
  set_csr_writes(c, {"satp", "sstatus"});
  set_csr_reads(c, {"stimecmp"});
  const u16 satp = *cpu::csr_by_name("satp");
  EXPECT_EQ(satp, 0x180);
  EXPECT_TRUE(c.exec.csr_write_intercept.test(satp));
  EXPECT_TRUE(c.exec.csr_write_intercept.test(*cpu::csr_by_name("sstatus")));
  EXPECT_EQ(c.exec.csr_write_intercept.count(), 2u);
  EXPECT_EQ(c.exec.csr_read_intercept.count(), 1u);
  Names writes = csr_write_list(c);
  std::sort(writes.begin(), writes.end());
  EXPECT_EQ(writes, (Names{"satp", "sstatus"}));
  EXPECT_EQ(csr_read_list(c), (Names{"stimecmp"}));
}

TEST(VmControls, AllCsrs) {
  VmControls c;
  set_csr_reads(c, {"all"});
  for (const cpu::CsrInfo& info : cpu::csr_table()) {
    EXPECT_TRUE(c.exec.csr_read_intercept.test(info.number)) << info.name;
  }
  EXPECT_EQ(csr_read_list(c).size(), cpu::csr_table().size());
  EXPECT_TRUE(c.exec.csr_write_intercept.none());
}

TEST(VmControls, UnknownCsrIsRefusedWithoutChange) {
  VmControls c;
  set_csr_reads(c, {"satp"});
  set_csr_writes(c, {"sepc"});
  const VmControls before = c;
  EXPECT_THROW(set_csr_reads(c, {"sstatus", "satpp"}), ControlError);
  EXPECT_THROW(set_csr_writes(c, {"nosuchcsr"}), ControlError);
  EXPECT_EQ(c, before);
}

TEST(VmControls, TraceNames) {
  VmControls c;
  set_sbi_trace(c, {"hsm", "ipi"});
  EXPECT_EQ(c.sbi_trace, (std::set<std::string>{"hsm", "ipi"}));
  set_mmio_trace(c, {"all"});
  EXPECT_EQ(c.mmio_trace, std::set<std::string>(device_names().begin(), device_names().end()));
  set_sbi_trace(c, {"all"});
  EXPECT_EQ(c.sbi_trace.size(), sbi_extension_names().size());

  const VmControls before = c;
  EXPECT_THROW(set_sbi_trace(c, {"time", "timer"}), ControlError);
  EXPECT_THROW(set_mmio_trace(c, {"uart1"}), ControlError);
  EXPECT_EQ(c, before);
}

TEST(VmControls, ActionNames) {
  for (ExitAction a :
       {ExitAction::kCount, ExitAction::kLog, ExitAction::kPause, ExitAction::kDeliver}) {
    EXPECT_EQ(action_by_name(action_name(a)), a);
  }
  EXPECT_EQ(action_by_name("pause"), ExitAction::kPause);
  EXPECT_FALSE(action_by_name("stop"));
  EXPECT_FALSE(action_by_name(""));
}

}  // namespace
}  // namespace dvmm::vmm
