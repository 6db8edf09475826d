// Decoder sweep: executes every 16-bit compressed encoding and a structured sample of 2^20
// 32-bit words (every opcode x funct3 x bits 31..20, so every funct7/rs2/CSR number/shift
// amount, with varying rd and rs1) plus random words, each from a fresh S-mode state, with
// every exception exiting. run() must return, and a word raises illegal instruction exactly
// when the reference decoder below (written from the ISA manual, independently of
// src/cpu) says it is not an RV64GC / Zicsr / Zifencei / S-mode instruction. CSR
// instructions are only required not to crash (their legality depends on the CSR).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "cpu/decode.hpp"
#include "unit/cpu/hart_fixture.hpp"

namespace dvmm::test {
namespace {

struct Pattern {
  u32 mask, match;
};

// Valid RV64GC + Zicsr + Zifencei + S-mode encodings (rm fields checked separately).
std::vector<Pattern> legal_patterns() {
  std::vector<Pattern> p;
  auto op = [&](u32 opcode) { p.push_back({0x7f, opcode}); };
  auto f3 = [&](u32 opcode, u32 funct3) { p.push_back({0x707f, opcode | (funct3 << 12)}); };
  auto f7 = [&](u32 opcode, u32 funct3, u32 funct7) {
    p.push_back({0xfe00707f, opcode | (funct3 << 12) | (funct7 << 25)});
  };
  op(0x37);  // lui
  op(0x17);  // auipc
  op(0x6f);  // jal
  f3(0x67, 0);  // jalr
  for (u32 f : {0u, 1u, 4u, 5u, 6u, 7u}) f3(0x63, f);            // branches
  for (u32 f = 0; f < 7; ++f) f3(0x03, f);                        // loads
  for (u32 f = 0; f < 4; ++f) f3(0x23, f);                        // stores
  for (u32 f : {0u, 2u, 3u, 4u, 6u, 7u}) f3(0x13, f);            // OP-IMM
  p.push_back({0xfc00707f, 0x00001013});                          // slli
  p.push_back({0xfc00707f, 0x00005013});                          // srli
  p.push_back({0xfc00707f, 0x40005013});                          // srai
  f3(0x1b, 0);                                                    // addiw
  f7(0x1b, 1, 0x00);                                              // slliw
  f7(0x1b, 5, 0x00);                                              // srliw
  f7(0x1b, 5, 0x20);                                              // sraiw
  for (u32 f = 0; f < 8; ++f) f7(0x33, f, 0x00);                  // OP
  f7(0x33, 0, 0x20);                                              // sub
  f7(0x33, 5, 0x20);                                              // sra
  for (u32 f = 0; f < 8; ++f) f7(0x33, f, 0x01);                  // M
  for (u32 f : {0u, 1u, 5u}) f7(0x3b, f, 0x00);                  // addw sllw srlw
  f7(0x3b, 0, 0x20);                                              // subw
  f7(0x3b, 5, 0x20);                                              // sraw
  for (u32 f : {0u, 4u, 5u, 6u, 7u}) f7(0x3b, f, 0x01);          // mulw divw divuw remw remuw
  f3(0x0f, 0);                                                    // fence (all fields)
  f3(0x0f, 1);                                                    // fence.i (all fields)
  p.push_back({0xffffffff, 0x00000073});                          // ecall
  p.push_back({0xffffffff, 0x00100073});                          // ebreak
  p.push_back({0xffffffff, 0x10200073});                          // sret
  p.push_back({0xffffffff, 0x10500073});                          // wfi
  p.push_back({0xfe007fff, 0x12000073});                          // sfence.vma
  // A
  for (u32 w : {2u, 3u}) {
    p.push_back({0xf9f0707f, 0x1000002f | (w << 12)});            // lr
    p.push_back({0xf800707f, 0x1800002f | (w << 12)});            // sc
    for (u32 f5 : {0x00u, 0x01u, 0x04u, 0x08u, 0x0cu, 0x10u, 0x14u, 0x18u, 0x1cu}) {
      p.push_back({0xf800707f, 0x0000002f | (w << 12) | (f5 << 27)});
    }
  }
  // F / D
  f3(0x07, 2);  // flw
  f3(0x07, 3);  // fld
  f3(0x27, 2);  // fsw
  f3(0x27, 3);  // fsd
  for (u32 fma : {0x43u, 0x47u, 0x4bu, 0x4fu}) {
    p.push_back({0x0600007f, fma});                               // .s
    p.push_back({0x0600007f, fma | (1u << 25)});                  // .d
  }
  for (u32 fmt : {0u, 1u}) {
    for (u32 f7v : {0x00u, 0x04u, 0x08u, 0x0cu}) p.push_back({0xfe00007f, 0x53 | ((f7v | fmt) << 25)});
    p.push_back({0xfff0007f, 0x53 | ((0x2cu | fmt) << 25)});      // fsqrt
    for (u32 f : {0u, 1u, 2u}) f7(0x53, f, 0x10 | fmt);           // fsgnj*
    for (u32 f : {0u, 1u}) f7(0x53, f, 0x14 | fmt);               // fmin fmax
    for (u32 f : {0u, 1u, 2u}) f7(0x53, f, 0x50 | fmt);           // fle flt feq
    for (u32 rs2 = 0; rs2 < 4; ++rs2) {
      p.push_back({0xfff0007f, 0x53 | ((0x60u | fmt) << 25) | (rs2 << 20)});  // fcvt.int.fp
      p.push_back({0xfff0007f, 0x53 | ((0x68u | fmt) << 25) | (rs2 << 20)});  // fcvt.fp.int
    }
    p.push_back({0xfff0707f, 0x53 | ((0x70u | fmt) << 25)});      // fmv.x.w / fmv.x.d
    p.push_back({0xfff0707f, 0x53 | ((0x70u | fmt) << 25) | (1u << 12)});  // fclass
    p.push_back({0xfff0707f, 0x53 | ((0x78u | fmt) << 25)});      // fmv.w.x / fmv.d.x
  }
  p.push_back({0xfff0007f, 0x40100053});                          // fcvt.s.d
  p.push_back({0xfff0007f, 0x42000053});                          // fcvt.d.s
  return p;
}

bool is_csr_insn(u32 w) { return (w & 0x7f) == 0x73 && ((w >> 12) & 3) != 0; }

// True when the instruction has a rounding-mode field.
bool has_rm(u32 w) {
  const u32 opc = w & 0x7f;
  if (opc == 0x43 || opc == 0x47 || opc == 0x4b || opc == 0x4f) return true;
  if (opc != 0x53) return false;
  const u32 f5 = w >> 27;
  return f5 <= 0x03 || f5 == 0x0b || f5 == 0x08 || f5 == 0x18 || f5 == 0x1a;
}

// 0: illegal, 1: legal, 2: depends on the CSR.
int reference_32(const std::vector<Pattern>& pats, u32 w) {
  if (is_csr_insn(w)) return 2;
  for (const Pattern& p : pats) {
    if ((w & p.mask) == p.match) {
      if (has_rm(w)) {
        const u32 rm = (w >> 12) & 7;
        if (rm == 5 || rm == 6) return 0;
      }
      return 1;
    }
  }
  return 0;
}

// RVC legality for RV64 (C extension chapter), independent of expand_compressed().
bool reference_16(u16 h) {
  const u32 q = h & 3, f = h >> 13;
  const u32 rd = (h >> 7) & 31, rs2 = (h >> 2) & 31, b12 = (h >> 12) & 1;
  if (q == 0) {
    if (f == 0) return ((h >> 5) & 0xff) != 0;  // c.addi4spn nzuimm
    return f != 4;
  }
  if (q == 1) {
    switch (f) {
      case 1: return rd != 0;  // c.addiw
      case 3: {
        const bool nz = b12 != 0 || rs2 != 0;
        return nz;  // c.addi16sp (rd = 2) and c.lui need a non-zero immediate
      }
      case 4:
        if (((h >> 10) & 3) == 3 && b12 == 1) return ((h >> 5) & 3) < 2;  // subw addw
        return true;
      default: return true;
    }
  }
  // q == 2
  switch (f) {
    case 2:
    case 3: return rd != 0;  // c.lwsp c.ldsp
    case 4:
      if (b12 == 0 && rs2 == 0) return rd != 0;  // c.jr
      return true;                               // c.mv, c.ebreak, c.jalr, c.add
    default: return true;
  }
}

class DecoderSweep : public HartTest {
 protected:
  static constexpr Gpa kPage = kBase + 0x10000;

  void prepare() {
    cpu::ExecControls c;
    c.exception_bitmap = 0xffffff & ~(u64{1} << 9);
    c.wfi_exiting = true;
    hart_.set_controls(c);
  }

  // Executes the instruction at `pc` from a fresh state; returns the exception cause or -1.
  i64 execute_at(u64 pc, u64* tval) {
    hart_.reset(pc, 0, 0);
    hart_.debug_write_csr(enc::kSstatus, u64{1} << 13);
    cpu::Exit e = hart_.run(1);
    if (auto* x = std::get_if<cpu::ExitException>(&e)) {
      *tval = x->tval;
      return static_cast<i64>(x->cause);
    }
    if (std::holds_alternative<cpu::ExitMmioRead>(e)) hart_.complete_mmio_read(0);
    return -1;
  }
};

TEST_F(DecoderSweep, All16BitEncodings) {
  prepare();
  u32 mismatches = 0;
  for (u32 base = 0; base < 0x10000; base += 2048) {
    // 2048 halfwords per page; skip the 32-bit ones.
    std::vector<u16> page(2048);
    for (u32 i = 0; i < 2048; ++i) page[i] = static_cast<u16>(base + i);
    ASSERT_TRUE(ram_.write(kPage, page.data(), 4096));
    for (u32 i = 0; i < 2048; ++i) {
      const u16 h = page[i];
      if ((h & 3) == 3) continue;
      u64 tval = 0;
      const i64 cause = execute_at(kPage + 2 * i, &tval);
      const bool legal = reference_16(h);
      const bool illegal_seen = cause == 2;
      EXPECT_EQ(cpu::expand_compressed(h) != 0, legal) << "expand_compressed 0x" << std::hex << h;
      if (illegal_seen == legal) {
        if (++mismatches <= 20) {
          ADD_FAILURE() << "halfword 0x" << std::hex << h << ": reference says "
                        << (legal ? "legal" : "illegal") << ", cause " << std::dec << cause;
        }
      } else if (illegal_seen) {
        EXPECT_TRUE(tval == h || tval == 0) << "stval of illegal halfword 0x" << std::hex << h;
      }
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

class DecoderSweep32 : public DecoderSweep {
 protected:
  void sweep(const std::vector<u32>& words) {
    static const std::vector<Pattern> pats = legal_patterns();
    u32 mismatches = 0;
    for (std::size_t at = 0; at < words.size(); at += 1024) {
      const std::size_t n = std::min<std::size_t>(1024, words.size() - at);
      ASSERT_TRUE(ram_.write(kPage, &words[at], n * 4));
      for (std::size_t i = 0; i < n; ++i) {
        const u32 w = words[at + i];
        u64 tval = 0;
        const i64 cause = execute_at(kPage + 4 * i, &tval);
        const int ref = reference_32(pats, w);
        if (ref == 2) continue;
        const bool illegal_seen = cause == 2;
        if (illegal_seen == (ref == 1)) {
          if (++mismatches <= 30) {
            ADD_FAILURE() << "word 0x" << std::hex << w << ": reference says "
                          << (ref ? "legal" : "illegal") << ", cause " << std::dec << cause;
          }
        } else if (illegal_seen) {
          // stval is the instruction bits or 0 (both allowed by the privileged spec; dvmm
          // reports 0 for floating-point words with a reserved rounding mode).
          if (!(tval == w || tval == 0)) {
            if (++mismatches <= 30) {
              ADD_FAILURE() << "stval 0x" << std::hex << tval << " for illegal word 0x" << w;
            }
          }
        }
      }
    }
    EXPECT_EQ(mismatches, 0u) << "words whose legality differs from the reference";
  }
};

TEST_F(DecoderSweep32, StructuredFields) {
  prepare();
  // bits 6..2 (opcode), 14..12 (funct3), 31..20 (funct7 + rs2 / imm / CSR): 2^20 words;
  // rd and rs1 vary with the index (and are 0 a quarter of the time).
  std::vector<u32> words;
  words.reserve(1u << 20);
  for (u32 i = 0; i < (1u << 20); ++i) {
    const u32 opc = (i & 31) << 2 | 3;
    const u32 funct3 = (i >> 5) & 7;
    const u32 hi12 = i >> 8;
    const u32 mix = (i * 2654435761u) >> 22;
    const u32 rd = (mix & 3) == 0 ? 0 : (mix >> 2) & 31;
    const u32 rs1 = ((mix >> 4) & 3) == 0 ? 0 : (mix >> 5) & 31;
    words.push_back(opc | (rd << 7) | (funct3 << 12) | (rs1 << 15) | (hi12 << 20));
  }
  sweep(words);
}

TEST_F(DecoderSweep32, RandomWords) {
  prepare();
  std::mt19937 rng(12345);
  std::vector<u32> words;
  for (u32 i = 0; i < (1u << 18); ++i) words.push_back(rng() | 3);
  // Words with bits 4..2 = 111 are longer-than-32-bit encodings (reserved): also illegal.
  sweep(words);
}

}  // namespace
}  // namespace dvmm::test
