// Instruction decoding: 32-bit words (and compressed halfwords, first expanded to their
// 32-bit equivalents) to DecodedInsn. Pure functions, any thread.
#pragma once

#include "base/types.hpp"
#include "cpu/hart.hpp"

namespace dvmm::cpu {

// The 32-bit instruction a compressed (RVC, RV64) halfword stands for, or 0 when the
// halfword is illegal or reserved.
u32 expand_compressed(u16 insn);

// Decodes a 32-bit instruction word; `len` is 2 when it came from a compressed halfword.
// Illegal words decode to a handler that raises an illegal-instruction exception with the
// original bits (`original`) in stval.
DecodedInsn decode(u32 raw, unsigned len, u32 original);

// Per-extension decoders (exec_*.cpp): false when the word is not theirs or is illegal.
bool decode_base(u32 raw, unsigned len, DecodedInsn& out);
bool decode_atomic(u32 raw, unsigned len, DecodedInsn& out);
bool decode_float(u32 raw, unsigned len, DecodedInsn& out);

// Field helpers.
inline constexpr u32 bits(u32 v, unsigned hi, unsigned lo) {
  return (v >> lo) & ((1u << (hi - lo + 1)) - 1);
}
inline constexpr u8 rd_of(u32 raw) { return static_cast<u8>(bits(raw, 11, 7)); }
inline constexpr u8 rs1_of(u32 raw) { return static_cast<u8>(bits(raw, 19, 15)); }
inline constexpr u8 rs2_of(u32 raw) { return static_cast<u8>(bits(raw, 24, 20)); }
inline constexpr u8 rs3_of(u32 raw) { return static_cast<u8>(bits(raw, 31, 27)); }
inline constexpr u32 funct3_of(u32 raw) { return bits(raw, 14, 12); }
inline constexpr u32 funct7_of(u32 raw) { return bits(raw, 31, 25); }
// Integer destination: writes to x0 go to the sink register 32, so handlers never test rd.
inline constexpr u8 xrd_of(u32 raw) { return rd_of(raw) == 0 ? 32 : rd_of(raw); }
inline constexpr i32 imm_i(u32 raw) { return static_cast<i32>(raw) >> 20; }
inline constexpr i32 imm_s(u32 raw) {
  return (static_cast<i32>(raw & 0xfe000000u) >> 20) | static_cast<i32>(bits(raw, 11, 7));
}
inline constexpr i32 imm_b(u32 raw) {
  return (static_cast<i32>(raw & 0x80000000u) >> 19) | static_cast<i32>(bits(raw, 7, 7) << 11) |
         static_cast<i32>(bits(raw, 30, 25) << 5) | static_cast<i32>(bits(raw, 11, 8) << 1);
}
inline constexpr i32 imm_u(u32 raw) { return static_cast<i32>(raw & 0xfffff000u); }
inline constexpr i32 imm_j(u32 raw) {
  return (static_cast<i32>(raw & 0x80000000u) >> 11) | static_cast<i32>(raw & 0xff000u) |
         static_cast<i32>(bits(raw, 20, 20) << 11) | static_cast<i32>(bits(raw, 30, 21) << 1);
}

// Picks the handler instantiation for the instruction length.
#define DVMM_PICK(handler, len) ((len) == 2 ? &handler<2> : &handler<4>)
#define DVMM_HANDLER(name) template <unsigned L> void name(Hart& h, const DecodedInsn& d)

}  // namespace dvmm::cpu
