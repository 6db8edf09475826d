// Trap entry and return: scause/sepc/stval and sstatus on exceptions from S and U, sret,
// vectored stvec, interrupt causes, priority and masking.
#include <gtest/gtest.h>

#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

using namespace enc;

constexpr u64 kStSie = 1u << 1, kStSpie = 1u << 5, kStSpp = 1u << 8;  // sstatus bits
constexpr u64 kIrq = u64{1} << 63;

class TrapsTest : public HartTest {};

TEST_F(TrapsTest, IllegalInstructionFromS) {
  load(Code{nop(), 0xffffffff});
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | kStSie);
  run_to_trap(2);
  EXPECT_EQ(csr(kSepc), kBase + 4);
  EXPECT_EQ(csr(kStval), 0xffffffffu);
  const u64 s = csr(kSstatus);
  EXPECT_EQ(s & (kStSie | kStSpie | kStSpp), kStSpie | kStSpp);
  EXPECT_EQ(hart_.privilege(), cpu::Privilege::kSupervisor);
}

TEST_F(TrapsTest, SieClearGivesSpieClear) {
  load(Code{0x00000000});
  run_to_trap(2);
  EXPECT_EQ(csr(kSstatus) & (kStSie | kStSpie | kStSpp), kStSpp);
  EXPECT_EQ(csr(kSepc), kBase);
}

TEST_F(TrapsTest, Breakpoint) {
  load(Code{nop(), ebreak()});
  run_to_trap(3);
  EXPECT_EQ(csr(kSepc), kBase + 4);
  EXPECT_TRUE(csr(kStval) == 0 || csr(kStval) == kBase + 4) << std::hex << csr(kStval);
}

TEST_F(TrapsTest, EcallFromSIsAnSbiCall) {
  load(Code{addi(a0, 0, 1), addi(a1, 0, 2), addi(a2, 0, 3), addi(a3, 0, 4), addi(a4, 0, 5),
            addi(a5, 0, 6), addi(a6, 0, 7), addi(a7, 0, 8), ecall(), addi(s2, a0, 0),
            addi(s3, a1, 0), ecall()});
  cpu::Exit e = run();
  auto* sbi = std::get_if<cpu::ExitSbiCall>(&e);
  ASSERT_NE(sbi, nullptr);
  EXPECT_EQ(sbi->eid, 8u);
  EXPECT_EQ(sbi->fid, 7u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(sbi->args[i], static_cast<u64>(i + 1));
  EXPECT_EQ(hart_.pc(), kBase + 36);  // past the ecall
  hart_.set_sbi_result(-3, 0x1234);
  run_to_ecall();
  EXPECT_EQ(x(s2), static_cast<u64>(-3));
  EXPECT_EQ(x(s3), 0x1234u);
}

TEST_F(TrapsTest, SretToUserAndEcallFromU) {
  // Sets sepc = 28, SPP = 0; sret. 28 (U): nop; ecall
  load(Code{auipc(t0, 0), addi(t0, t0, 28), csrw(kSepc, t0), addi(t1, 0, 1 << 8),
            csrrc(0, kSstatus, t1), csrrsi(0, kSstatus, 0) /* nop */, sret(), nop(), ecall()});
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | kStSpie);
  run_to_trap(8);
  EXPECT_EQ(csr(kSepc), kBase + 32);
  EXPECT_EQ(csr(kStval), 0u);
  // sret set SIE from SPIE (1) and SPIE to 1; the trap from U then moved SIE to SPIE.
  EXPECT_EQ(csr(kSstatus) & (kStSie | kStSpie | kStSpp), kStSpie);
}

TEST_F(TrapsTest, SretToSupervisor) {
  load(Code{auipc(t0, 0), addi(t0, t0, 24), csrw(kSepc, t0), addi(t1, 0, 1 << 8),
            csrrs(0, kSstatus, t1), sret(), csrr(a0, kSstatus), ecall()});
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | kStSpie);
  hart_.debug_write_csr(kSie, 0);
  run_to_ecall();
  EXPECT_EQ(x(a0) & (kStSie | kStSpie | kStSpp), kStSie | kStSpie);
  EXPECT_EQ(hart_.privilege(), cpu::Privilege::kSupervisor);
}

TEST_F(TrapsTest, SretIsIllegalInUserMode) {
  load(Code{auipc(t0, 0), addi(t0, t0, 24), csrw(kSepc, t0), addi(t1, 0, 1 << 8),
            csrrc(0, kSstatus, t1), sret(), sret()});
  run_to_trap(2);
  EXPECT_EQ(csr(kSepc), kBase + 24);
  EXPECT_EQ(csr(kStval), sret());
}

TEST_F(TrapsTest, WfiAndSfenceAreIllegalInUserMode) {
  for (u32 insn : {wfi(), sfence_vma(0, 0), mret()}) {
    load(Code{auipc(t0, 0), addi(t0, t0, 24), csrw(kSepc, t0), addi(t1, 0, 1 << 8),
              csrrc(0, kSstatus, t1), sret(), insn});
    run_to_trap(2);
    EXPECT_EQ(csr(kSepc), kBase + 24);
  }
}

TEST_F(TrapsTest, DeliverExceptionEntersTheTrapHandler) {
  load(Code{nop(), nop()});
  hart_.deliver_exception(13, 0xdead000);
  EXPECT_EQ(hart_.pc(), kTrapVector);
  EXPECT_EQ(csr(kScause), 13u);
  EXPECT_EQ(csr(kStval), 0xdead000u);
  EXPECT_EQ(csr(kSepc), kBase);
}

TEST_F(TrapsTest, TimerInterrupt) {
  load(Code{nop(), nop(), nop(), nop()});
  hart_.debug_write_csr(kSie, 1u << 5);
  hart_.debug_write_csr(kStimecmp, 0);
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | kStSie);
  run_to_trap(kIrq | 5);
  EXPECT_EQ(csr(kSepc), kBase);  // taken before the first instruction
  EXPECT_EQ(csr(kSstatus) & (kStSie | kStSpie | kStSpp), kStSpie | kStSpp);
}

TEST_F(TrapsTest, InterruptMaskedBySieOrSstatus) {
  load(Code{nop(), nop(), ecall()});
  hart_.debug_write_csr(kStimecmp, 0);
  hart_.debug_write_csr(kSie, 1u << 5);
  run_to_ecall();  // SIE = 0
  load(Code{nop(), nop(), ecall()});
  hart_.debug_write_csr(kStimecmp, 0);
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | kStSie);
  hart_.debug_write_csr(kSie, 1u << 1);  // only SSIE
  run_to_ecall();
  EXPECT_TRUE(csr(kSip) & (1u << 5));  // pending, not enabled
}

TEST_F(TrapsTest, InterruptPriority) {
  // SEI > SSI > STI.
  load(Code{nop(), nop()});
  hart_.debug_write_csr(kStimecmp, 0);
  hart_.raise_software_interrupt();
  hart_.set_external_interrupt(true);
  hart_.debug_write_csr(kSie, 0x222);
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | kStSie);
  run_to_trap(kIrq | 9);
  hart_.set_external_interrupt(false);
  load(Code{nop(), nop()});
  hart_.debug_write_csr(kStimecmp, 0);
  hart_.debug_write_csr(kSie, 0x222);
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | kStSie);
  hart_.debug_write_csr(kSip, 2);
  run_to_trap(kIrq | 1);
}

TEST_F(TrapsTest, InterruptsInUserModeIgnoreSie) {
  load(Code{auipc(t0, 0), addi(t0, t0, 24), csrw(kSepc, t0), addi(t1, 0, 1 << 8),
            csrrc(0, kSstatus, t1), sret(), nop(), nop()});
  hart_.debug_write_csr(kSstatus, u64{1} << 13);  // SIE = SPIE = 0
  hart_.debug_write_csr(kSie, 1u << 1);
  hart_.debug_write_csr(kSip, 2);
  run_to_trap(kIrq | 1);
  EXPECT_EQ(csr(kSepc), kBase + 24);
  EXPECT_EQ(csr(kSstatus) & kStSpp, 0u);
}

TEST_F(TrapsTest, VectoredMode) {
  load(Code{nop(), nop()});
  // Interrupt cause 5 goes to base + 20: put an ecall with a marker there.
  Code vec;
  vec.i(addi(a7, 0, 0x55)).i(ecall());
  ram_.write(kData + 20, vec.bytes().data(), vec.size());
  Code exc;
  exc.i(addi(a7, 0, 0x66)).i(ecall());
  ram_.write(kData, exc.bytes().data(), exc.size());
  hart_.debug_write_csr(kStvec, kData | 1);
  hart_.debug_write_csr(kStimecmp, 0);
  hart_.debug_write_csr(kSie, 1u << 5);
  hart_.debug_write_csr(kSstatus, (u64{1} << 13) | kStSie);
  cpu::Exit e = run();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitSbiCall>(e));
  EXPECT_EQ(std::get<cpu::ExitSbiCall>(e).eid, 0x55u);
  // Exceptions go to the base.
  load(Code{0});
  hart_.debug_write_csr(kStvec, kData | 1);
  e = run();
  ASSERT_TRUE(std::holds_alternative<cpu::ExitSbiCall>(e));
  EXPECT_EQ(std::get<cpu::ExitSbiCall>(e).eid, 0x66u);
}

TEST_F(TrapsTest, InterruptPendingIsTheWfiCondition) {
  load(Code{nop()});
  EXPECT_FALSE(hart_.interrupt_pending());
  hart_.raise_software_interrupt();
  EXPECT_FALSE(hart_.interrupt_pending());  // not enabled in sie
  hart_.debug_write_csr(kSie, 2);
  EXPECT_TRUE(hart_.interrupt_pending());  // regardless of sstatus.SIE
  hart_.debug_write_csr(kSip, 0);
  EXPECT_FALSE(hart_.interrupt_pending());
  hart_.debug_write_csr(kSie, 1u << 5);
  hart_.debug_write_csr(kStimecmp, 0);
  EXPECT_TRUE(hart_.interrupt_pending());
}

}  // namespace
}  // namespace dvmm::test
