// The encoders in encode.hpp against GNU as (riscv64-linux-gnu-as -march=rv64gc): the
// expected words were produced by the assembler from the text in the third column.
#include <gtest/gtest.h>

#include "unit/cpu/encode.hpp"

namespace dvmm::test {
namespace {

using namespace enc;

struct Golden {
  u32 encoded;
  u32 expected;
  const char* text;
};

const Golden kGolden[] = {
    {enc::lui(a0, 0x12345), 0x12345537, "lui a0, 0x12345"},
    {enc::auipc(t0, 0xfffff), 0xfffff297, "auipc t0, 0xfffff"},
    {enc::jal(ra, 2048), 0x001000ef, "jal ra, .+2048"},
    {enc::jal(zero, -4), 0xffdff06f, "jal zero, .-4"},
    {enc::jal(ra, 0xffffe), 0x7ffff0ef, "jal ra, .+0xffffe"},
    {enc::jalr(ra, t0, -8), 0xff8280e7, "jalr ra, -8(t0)"},
    {enc::beq(a0, a1, 16), 0x00b50863, "beq a0, a1, .+16"},
    {enc::bne(a0, zero, -4096), 0x80051063, "bne a0, zero, .-4096"},
    {enc::blt(t0, t1, 4094), 0x7e62cfe3, "blt t0, t1, .+4094"},
    {enc::bge(a2, a3, -2), 0xfed65fe3, "bge a2, a3, .-2"},
    {enc::bltu(s0, s1, 8), 0x00946463, "bltu s0, s1, .+8"},
    {enc::bgeu(t6, t5, 12), 0x01eff663, "bgeu t6, t5, .+12"},
    {enc::lb(a0, sp, -1), 0xfff10503, "lb a0, -1(sp)"},
    {enc::lh(a0, a1, 2047), 0x7ff59503, "lh a0, 2047(a1)"},
    {enc::lw(t0, t1, -2048), 0x80032283, "lw t0, -2048(t1)"},
    {enc::ld(s1, s0, 8), 0x00843483, "ld s1, 8(s0)"},
    {enc::lbu(a0, a1, 1), 0x0015c503, "lbu a0, 1(a1)"},
    {enc::lhu(a0, a1, 2), 0x0025d503, "lhu a0, 2(a1)"},
    {enc::lwu(a0, a1, 4), 0x0045e503, "lwu a0, 4(a1)"},
    {enc::sb(a0, sp, -1), 0xfea10fa3, "sb a0, -1(sp)"},
    {enc::sh(a1, a2, 2047), 0x7eb61fa3, "sh a1, 2047(a2)"},
    {enc::sw(t0, t1, -2048), 0x80532023, "sw t0, -2048(t1)"},
    {enc::sd(s1, s0, 24), 0x00943c23, "sd s1, 24(s0)"},
    {enc::addi(a0, a0, -1), 0xfff50513, "addi a0, a0, -1"},
    {enc::slti(a0, a1, 5), 0x0055a513, "slti a0, a1, 5"},
    {enc::sltiu(a0, a1, -5), 0xffb5b513, "sltiu a0, a1, -5"},
    {enc::xori(a0, a1, 0x7ff), 0x7ff5c513, "xori a0, a1, 0x7ff"},
    {enc::ori(a0, a1, -2048), 0x8005e513, "ori a0, a1, -2048"},
    {enc::andi(a0, a1, 255), 0x0ff5f513, "andi a0, a1, 255"},
    {enc::slli(a0, a1, 63), 0x03f59513, "slli a0, a1, 63"},
    {enc::srli(a0, a1, 32), 0x0205d513, "srli a0, a1, 32"},
    {enc::srai(a0, a1, 63), 0x43f5d513, "srai a0, a1, 63"},
    {enc::addiw(a0, a1, -1), 0xfff5851b, "addiw a0, a1, -1"},
    {enc::slliw(a0, a1, 31), 0x01f5951b, "slliw a0, a1, 31"},
    {enc::srliw(a0, a1, 1), 0x0015d51b, "srliw a0, a1, 1"},
    {enc::sraiw(a0, a1, 31), 0x41f5d51b, "sraiw a0, a1, 31"},
    {enc::add(a0, a1, a2), 0x00c58533, "add a0, a1, a2"},
    {enc::sub(a0, a1, a2), 0x40c58533, "sub a0, a1, a2"},
    {enc::sll(a0, a1, a2), 0x00c59533, "sll a0, a1, a2"},
    {enc::slt(a0, a1, a2), 0x00c5a533, "slt a0, a1, a2"},
    {enc::sltu(a0, a1, a2), 0x00c5b533, "sltu a0, a1, a2"},
    {enc::xor_(a0, a1, a2), 0x00c5c533, "xor a0, a1, a2"},
    {enc::srl(a0, a1, a2), 0x00c5d533, "srl a0, a1, a2"},
    {enc::sra(a0, a1, a2), 0x40c5d533, "sra a0, a1, a2"},
    {enc::or_(a0, a1, a2), 0x00c5e533, "or a0, a1, a2"},
    {enc::and_(a0, a1, a2), 0x00c5f533, "and a0, a1, a2"},
    {enc::addw(a0, a1, a2), 0x00c5853b, "addw a0, a1, a2"},
    {enc::subw(a0, a1, a2), 0x40c5853b, "subw a0, a1, a2"},
    {enc::sllw(a0, a1, a2), 0x00c5953b, "sllw a0, a1, a2"},
    {enc::srlw(a0, a1, a2), 0x00c5d53b, "srlw a0, a1, a2"},
    {enc::sraw(a0, a1, a2), 0x40c5d53b, "sraw a0, a1, a2"},
    {enc::fence(), 0x0ff0000f, "fence"},
    {enc::fence_i(), 0x0000100f, "fence.i"},
    {enc::ecall(), 0x00000073, "ecall"},
    {enc::ebreak(), 0x00100073, "ebreak"},
    {enc::sret(), 0x10200073, "sret"},
    {enc::mret(), 0x30200073, "mret"},
    {enc::wfi(), 0x10500073, "wfi"},
    {enc::sfence_vma(a0, a1), 0x12b50073, "sfence.vma a0, a1"},
    {enc::csrrw(a0, kSscratch, a1), 0x14059573, "csrrw a0, sscratch, a1"},
    {enc::csrrs(a0, kSstatus, zero), 0x10002573, "csrrs a0, sstatus, zero"},
    {enc::csrrc(zero, kSie, t0), 0x1042b073, "csrrc zero, sie, t0"},
    {enc::csrrwi(a0, kFrm, 3), 0x0021d573, "csrrwi a0, frm, 3"},
    {enc::csrrsi(a0, kFflags, 31), 0x001fe573, "csrrsi a0, fflags, 31"},
    {enc::csrrci(a0, kSstatus, 2), 0x10017573, "csrrci a0, sstatus, 2"},
    {enc::mul(a0, a1, a2), 0x02c58533, "mul a0, a1, a2"},
    {enc::mulh(a0, a1, a2), 0x02c59533, "mulh a0, a1, a2"},
    {enc::mulhsu(a0, a1, a2), 0x02c5a533, "mulhsu a0, a1, a2"},
    {enc::mulhu(a0, a1, a2), 0x02c5b533, "mulhu a0, a1, a2"},
    {enc::div(a0, a1, a2), 0x02c5c533, "div a0, a1, a2"},
    {enc::divu(a0, a1, a2), 0x02c5d533, "divu a0, a1, a2"},
    {enc::rem(a0, a1, a2), 0x02c5e533, "rem a0, a1, a2"},
    {enc::remu(a0, a1, a2), 0x02c5f533, "remu a0, a1, a2"},
    {enc::mulw(a0, a1, a2), 0x02c5853b, "mulw a0, a1, a2"},
    {enc::divw(a0, a1, a2), 0x02c5c53b, "divw a0, a1, a2"},
    {enc::divuw(a0, a1, a2), 0x02c5d53b, "divuw a0, a1, a2"},
    {enc::remw(a0, a1, a2), 0x02c5e53b, "remw a0, a1, a2"},
    {enc::remuw(a0, a1, a2), 0x02c5f53b, "remuw a0, a1, a2"},
    {enc::amo(kAmoAdd, false, a0, a1, a2), 0x00c5a52f, "amoadd.w a0, a2, (a1)"},
    {enc::amo(kAmoSwap, true, a0, a1, a2, true, true), 0x0ec5b52f, "amoswap.d.aqrl a0, a2, (a1)"},
    {enc::amo(kAmoMaxu, true, a0, a1, a2, false, true), 0xe2c5b52f, "amomaxu.d.rl a0, a2, (a1)"},
    {enc::amo(kAmoMin, false, a0, a1, a2, true, false), 0x84c5a52f, "amomin.w.aq a0, a2, (a1)"},
    {enc::lr_w(a0, a1), 0x1005a52f, "lr.w a0, (a1)"},
    {enc::lr_d(a0, a1), 0x1005b52f, "lr.d a0, (a1)"},
    {enc::sc_w(a0, a1, a2), 0x18c5a52f, "sc.w a0, a2, (a1)"},
    {enc::sc_d(a0, a1, a2), 0x18c5b52f, "sc.d a0, a2, (a1)"},
    {enc::flw(1, a0, 4), 0x00452087, "flw f1, 4(a0)"},
    {enc::fld(2, a0, -8), 0xff853107, "fld f2, -8(a0)"},
    {enc::fsw(3, a0, 12), 0x00352627, "fsw f3, 12(a0)"},
    {enc::fsd(4, a0, 16), 0x00453827, "fsd f4, 16(a0)"},
    {enc::fadd_d(1, 2, 3), 0x023170d3, "fadd.d f1, f2, f3, dyn"},
    {enc::fadd_s(1, 2, 3, 1), 0x003110d3, "fadd.s f1, f2, f3, rtz"},
    {enc::fmv_x_d(a0, 5), 0xe2028553, "fmv.x.d a0, f5"},
    {enc::fmv_d_x(5, a0), 0xf20502d3, "fmv.d.x f5, a0"},
    {enc::fmv_x_w(a0, 5), 0xe0028553, "fmv.x.w a0, f5"},
    {enc::fmv_w_x(5, a0), 0xf00502d3, "fmv.w.x f5, a0"},
    {enc::c_addi(a0, -3), 0x1575, "c.addi a0, -3"},
    {enc::c_li(a5, 31), 0x47fd, "c.li a5, 31"},
    {enc::c_mv(a0, a1), 0x852e, "c.mv a0, a1"},
    {enc::c_add(a0, a1), 0x952e, "c.add a0, a1"},
    {enc::c_jr(ra), 0x8082, "c.jr ra"},
    {enc::c_ebreak(), 0x9002, "c.ebreak"},
    {enc::c_j(-2048), 0xb001, "c.j .-2048"},
    {enc::c_j(2046), 0xaffd, "c.j .+2046"},
    {enc::c_beqz(s1, -256), 0xd081, "c.beqz s1, .-256"},
    {enc::c_beqz(a5, 254), 0xcffd, "c.beqz a5, .+254"},
    {enc::c_lw(a0, a1, 124), 0x5de8, "c.lw a0, 124(a1)"},
    {enc::c_sd(s0, a5, 248), 0xffe0, "c.sd s0, 248(a5)"},
};

TEST(Encode, MatchesGnuAssembler) {
  for (const Golden& g : kGolden) {
    EXPECT_EQ(g.encoded, g.expected) << g.text;
  }
}

}  // namespace
}  // namespace dvmm::test
