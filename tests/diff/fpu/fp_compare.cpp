#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include "cpu/fpu.hpp"
using namespace dvmm; using namespace dvmm::cpu::fpu;
struct In { u32 op, rm; u64 a, b, c; };
struct Out { u64 r, f; };
static std::mt19937_64 rng(12345);

static u32 r32() {
  static const u32 sp[] = {0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7fa00000, 0xffc00001, 0x7f800001,
    0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf800000, 0x3f000000,
    0x4f000000, 0xcf000000, 0x4f800000, 0x5f000000, 0xdf000000, 0x5f800000, 0x3effffff, 0x3fc00000, 0x40200000};
  u64 k = rng() % 16;
  if (k < 3) return sp[rng() % (sizeof sp / 4)];
  if (k < 5) { u32 e = (rng() % 40) + (rng()%2 ? 0 : 230) - 0; u32 v = (u32)rng() & 0x807fffff; return v | ((e % 255) << 23); }
  if (k < 7) return ((u32)rng() & 0x807fffff) | (((u32)(rng() % 3)) << 23);
  if (k < 9) { u32 e = 127 + (rng() % 70) - 5; return ((u32)rng() & 0x807fffff) | (e << 23); }
  if (k < 10) { return ((u32)rng() & 0x80000000) | (((u32)rng() % 255) << 23) | ((rng()%2)? 0x7fff00 | (u32)(rng()&0xff) : (u32)(rng()&0xff)); }
  return (u32)rng();
}
static u64 r64() {
  static const u64 sp[] = {0, 1ull<<63, 0x7ff0000000000000ull, 0xfff0000000000000ull, 0x7ff8000000000000ull,
    0x7ff4000000000000ull, 0xfff8000000000001ull, 0x7ff0000000000001ull, 1, 0x8000000000000001ull,
    0x000fffffffffffffull, 0x0010000000000000ull, 0x7fefffffffffffffull, 0xffefffffffffffffull,
    0x3ff0000000000000ull, 0xbff0000000000000ull, 0x3fe0000000000000ull, 0x41e0000000000000ull, 0xc1e0000000000000ull,
    0x41f0000000000000ull, 0x43e0000000000000ull, 0xc3e0000000000000ull, 0x43f0000000000000ull, 0x3fdfffffffffffffull, 0x3ff8000000000000ull,
    0x47efffffe0000000ull, 0x36a0000000000000ull, 0x3690000000000000ull, 0x380fffffffffffffull, 0x3810000000000000ull};
  u64 k = rng() % 16;
  const u64 fm = 0x800fffffffffffffull;
  if (k < 3) return sp[rng() % (sizeof sp / 8)];
  if (k < 5) { u64 e = (rng() % 60) + (rng()%2 ? 0 : 1990); return (rng() & fm) | ((e % 2047) << 52); }
  if (k < 7) return (rng() & fm) | ((rng() % 3) << 52);
  if (k < 9) { u64 e = 1023 + (rng() % 140) - 10; return (rng() & fm) | (e << 52); }
  if (k < 10) { u64 e = 1023 - 126 - 30 + (rng() % 60); return (rng() & fm) | (e << 52); }  // near f32 subnormal range
  if (k < 11) { return (rng() & (1ull<<63)) | ((rng() % 2047) << 52) | ((rng()%2)? 0xfffffffffff00ull | (rng()&0xff) : (rng()&0xff)); }
  if (k < 12) { u64 e = 1023 + 127 - 3 + (rng() % 6); return (rng() & fm) | (e << 52); }  // near f32 overflow
  return rng();
}
static u64 rint_() {
  u64 k = rng() % 6;
  if (k == 0) return rng() >> (rng() % 64);
  if (k == 1) return -(rng() >> (rng() % 64));
  if (k == 2) { u64 v = (rng() | 1) << (rng() % 64); return v; }
  return rng();
}
static u64 eval(const In& in, u64& fl) {
  u32 f = 0; u64 r = 0; u32 rm = in.rm; u32 a = (u32)in.a, b = (u32)in.b, c = (u32)in.c;
  switch (in.op) {
    case 0: r = f32_add(a,b,rm,f); break; case 1: r = f32_sub(a,b,rm,f); break; case 2: r = f32_mul(a,b,rm,f); break;
    case 3: r = f32_div(a,b,rm,f); break; case 4: r = f32_sqrt(a,rm,f); break; case 5: r = f32_fmadd(a,b,c,rm,f); break;
    case 6: r = f32_fmsub(a,b,c,rm,f); break; case 7: r = f32_fnmsub(a,b,c,rm,f); break; case 8: r = f32_fnmadd(a,b,c,rm,f); break;
    case 9: r = f32_min(a,b,f); break; case 10: r = f32_max(a,b,f); break; case 11: r = f32_eq(a,b,f); break;
    case 12: r = f32_lt(a,b,f); break; case 13: r = f32_le(a,b,f); break; case 14: r = f32_classify(a); break;
    case 15: r = f32_to_i32(a,rm,f); break; case 16: r = f32_to_u32(a,rm,f); break; case 17: r = f32_to_i64(a,rm,f); break;
    case 18: r = f32_to_u64(a,rm,f); break; case 19: r = i32_to_f32((i32)a,rm,f); break; case 20: r = u32_to_f32(a,rm,f); break;
    case 21: r = i64_to_f32((i64)in.a,rm,f); break; case 22: r = u64_to_f32(in.a,rm,f); break;
    case 32: r = f64_add(in.a,in.b,rm,f); break; case 33: r = f64_sub(in.a,in.b,rm,f); break; case 34: r = f64_mul(in.a,in.b,rm,f); break;
    case 35: r = f64_div(in.a,in.b,rm,f); break; case 36: r = f64_sqrt(in.a,rm,f); break; case 37: r = f64_fmadd(in.a,in.b,in.c,rm,f); break;
    case 38: r = f64_fmsub(in.a,in.b,in.c,rm,f); break; case 39: r = f64_fnmsub(in.a,in.b,in.c,rm,f); break; case 40: r = f64_fnmadd(in.a,in.b,in.c,rm,f); break;
    case 41: r = f64_min(in.a,in.b,f); break; case 42: r = f64_max(in.a,in.b,f); break; case 43: r = f64_eq(in.a,in.b,f); break;
    case 44: r = f64_lt(in.a,in.b,f); break; case 45: r = f64_le(in.a,in.b,f); break; case 46: r = f64_classify(in.a); break;
    case 47: r = f64_to_i32(in.a,rm,f); break; case 48: r = f64_to_u32(in.a,rm,f); break; case 49: r = f64_to_i64(in.a,rm,f); break;
    case 50: r = f64_to_u64(in.a,rm,f); break; case 51: r = i32_to_f64((i32)a,rm,f); break; case 52: r = u32_to_f64(a,rm,f); break;
    case 53: r = i64_to_f64((i64)in.a,rm,f); break; case 54: r = u64_to_f64(in.a,rm,f); break;
    case 64: r = f32_to_f64(a,f); break; case 65: r = f64_to_f32(in.a,rm,f); break;
  }
  fl = f; return r;
}
static bool is32res(u32 op) { return op <= 10 || (op >= 19 && op <= 22) || op == 65; }
int main(int argc, char** argv) {
  size_t n = argc > 1 ? strtoull(argv[1], 0, 0) : 100000;
  if (argc > 2) rng.seed(strtoull(argv[2], 0, 0));
  static const u32 ops[] = {0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,64,65};
  std::vector<In> in(n);
  if (argc > 3) {  // exhaustive special-value combinations
    static const u32 s32[] = {0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7fa00000, 0xffc00001, 0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x3f800000, 0xbf800000, 0x3f000000, 0xbf000000, 0x3f7fffff, 0x3f800001, 0x33800000, 0x4f000000, 0xcf000000, 0x40400000, 0xbe99999a};
    static const u64 s64[] = {0, 1ull<<63, 0x7ff0000000000000ull, 0xfff0000000000000ull, 0x7ff8000000000000ull, 0x7ff4000000000000ull, 0xfff8000000000001ull, 1, 0x8000000000000001ull, 0x000fffffffffffffull, 0x0010000000000000ull, 0x7fefffffffffffffull, 0xffefffffffffffffull, 0x3ff0000000000000ull, 0xbff0000000000000ull, 0x3fe0000000000000ull, 0xbfe0000000000000ull, 0x3fefffffffffffffull, 0x3ff0000000000001ull, 0x3ca0000000000000ull, 0x41e0000000000000ull, 0xc1e0000000100000ull, 0x41dfffffffe00000ull, 0x380ffffff0000000ull, 0x47effffff0000000ull};
    in.clear();
    const size_t N32 = sizeof s32 / 4, N64 = sizeof s64 / 8;
    for (u32 op : ops) for (u32 rm = 0; rm < 5; rm++) {
      bool d = (op >= 32 && op < 64) || op == 65;
      bool three = (op >= 5 && op <= 8) || (op >= 37 && op <= 40);
      size_t N = d ? N64 : N32;
      for (size_t i = 0; i < N; i++) for (size_t j = 0; j < N; j++) for (size_t k = 0; k < (three ? N : 1); k++) {
        In x{op, rm, d ? s64[i] : s32[i], d ? s64[j] : s32[j], three ? (d ? s64[k] : s32[k]) : 0};
        in.push_back(x);
      }
    }
    n = in.size();
  } else
  for (auto& x : in) {
    x.op = ops[rng() % (sizeof ops / 4)]; x.rm = rng() % 5;
    bool d = (x.op >= 32 && x.op < 64) || x.op == 65;
    bool intsrc = (x.op >= 19 && x.op <= 22) || (x.op >= 51 && x.op <= 54);
    if (intsrc) { x.a = rint_(); x.b = x.c = 0; }
    else if (d) { x.a = r64(); x.b = r64(); x.c = r64(); }
    else { x.a = r32(); x.b = r32(); x.c = r32();
      if (rng() % 4 == 0) x.b = x.a ^ (rng() % 2 ? 0x80000000u : 0);  // cancellations
      if (x.op >= 5 && x.op <= 8 && rng() % 3 == 0) { u32 fl; x.c = f32_mul((u32)x.a, (u32)x.b, rng()%5, fl) ^ (u32)(rng() % 2 ? 0x80000000u : 0) ^ (u32)(rng()%4); }
    }
    if (d && x.op >= 37 && x.op <= 40 && rng() % 3 == 0) { u32 fl; x.c = f64_mul(x.a, x.b, rng()%5, fl) ^ (rng() % 2 ? 1ull<<63 : 0) ^ (rng()%4); }
    if (d && rng() % 8 == 0) x.b = x.a ^ (rng() % 2 ? 1ull << 63 : 0);
  }
  // DVMM_FP_REF: the riscv64 reference program (fp_reference.c); DVMM_FP_WORK: a work dir.
  const char* ref = getenv("DVMM_FP_REF");
  const char* work = getenv("DVMM_FP_WORK");
  if (!ref || !work) { puts("set DVMM_FP_REF and DVMM_FP_WORK"); return 2; }
  const std::string in_path = std::string(work) + "/in.bin", out_path = std::string(work) + "/out.bin";
  FILE* f = fopen(in_path.c_str(), "wb"); fwrite(in.data(), sizeof(In), n, f); fclose(f);
  const std::string cmd = std::string("qemu-riscv64 ") + ref + " < " + in_path + " > " + out_path;
  if (system(cmd.c_str()) != 0) { puts("qemu failed"); return 2; }
  std::vector<Out> out(n);
  f = fopen(out_path.c_str(), "rb"); size_t got = fread(out.data(), sizeof(Out), n, f); fclose(f);
  if (got != n) { printf("short read %zu\n", got); return 2; }
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    u64 fl; u64 r = eval(in[i], fl); u64 qr = out[i].r;
    if (is32res(in[i].op)) { qr &= 0xffffffffu; r &= 0xffffffffu; }
    if (r != qr || fl != out[i].f) {
      if (bad++ < 30) printf("op %u rm %u a %016llx b %016llx c %016llx: mine %016llx/%02llx qemu %016llx/%02llx\n", in[i].op, in[i].rm,
        (unsigned long long)in[i].a, (unsigned long long)in[i].b, (unsigned long long)in[i].c, (unsigned long long)r, (unsigned long long)fl, (unsigned long long)qr, (unsigned long long)out[i].f);
    }
  }
  size_t rmmdiff = 0, uf = 0, minnorm_noUf = 0, of = 0;
  for (size_t i = 0; i < n; i++) {
    u64 fl; u64 r = eval(in[i], fl);
    if (fl & kUf) uf++;
    if (fl & kOf) of++;
    u64 mag = is32res(in[i].op) ? (r & 0x7fffffff) : (r & 0x7fffffffffffffffull);
    u64 mn = is32res(in[i].op) ? 0x00800000 : 0x0010000000000000ull;
    if (mag == mn && (fl & kNx) && !(fl & kUf)) minnorm_noUf++;
    if (in[i].rm == kRmm) { In t = in[i]; t.rm = kRne; u64 f2; if (eval(t, f2) != r) rmmdiff++; }
  }
  printf("stats: rmm!=rne %zu, uf %zu, of %zu, minnormal-inexact-noUF %zu\n", rmmdiff, uf, of, minnorm_noUf);
  printf("%zu cases, %zu mismatches\n", n, bad);
  return bad != 0;
}
