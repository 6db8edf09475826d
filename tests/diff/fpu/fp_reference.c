// Reads records {u32 op, u32 rm, u64 a, b, c} from stdin, executes the RISC-V FP instruction
// with the given dynamic rounding mode, writes {u64 result, u64 fflags}.
#include <stdint.h>
#include <unistd.h>
typedef uint64_t u64; typedef uint32_t u32;
struct In { u32 op, rm; u64 a, b, c; };
struct Out { u64 r, f; };

#define S2(insn) __asm__ volatile("fmv.w.x ft0,%1\n fmv.w.x ft1,%2\n " insn " ft2,ft0,ft1\n fmv.x.w %0,ft2" : "=r"(r) : "r"(a), "r"(b) : "ft0","ft1","ft2")
#define S1(insn) __asm__ volatile("fmv.w.x ft0,%1\n " insn " ft2,ft0\n fmv.x.w %0,ft2" : "=r"(r) : "r"(a) : "ft0","ft2")
#define S3(insn) __asm__ volatile("fmv.w.x ft0,%1\n fmv.w.x ft1,%2\n fmv.w.x ft3,%3\n " insn " ft2,ft0,ft1,ft3\n fmv.x.w %0,ft2" : "=r"(r) : "r"(a), "r"(b), "r"(c) : "ft0","ft1","ft2","ft3")
#define SC(insn) __asm__ volatile("fmv.w.x ft0,%1\n fmv.w.x ft1,%2\n " insn " %0,ft0,ft1" : "=r"(r) : "r"(a), "r"(b) : "ft0","ft1")
#define SX(insn) __asm__ volatile("fmv.w.x ft0,%1\n " insn " %0,ft0" : "=r"(r) : "r"(a) : "ft0")
#define XS(insn) __asm__ volatile(insn " ft2,%1\n fmv.x.w %0,ft2" : "=r"(r) : "r"(a) : "ft2")
#define D2(insn) __asm__ volatile("fmv.d.x ft0,%1\n fmv.d.x ft1,%2\n " insn " ft2,ft0,ft1\n fmv.x.d %0,ft2" : "=r"(r) : "r"(a), "r"(b) : "ft0","ft1","ft2")
#define D1(insn) __asm__ volatile("fmv.d.x ft0,%1\n " insn " ft2,ft0\n fmv.x.d %0,ft2" : "=r"(r) : "r"(a) : "ft0","ft2")
#define D3(insn) __asm__ volatile("fmv.d.x ft0,%1\n fmv.d.x ft1,%2\n fmv.d.x ft3,%3\n " insn " ft2,ft0,ft1,ft3\n fmv.x.d %0,ft2" : "=r"(r) : "r"(a), "r"(b), "r"(c) : "ft0","ft1","ft2","ft3")
#define DC(insn) __asm__ volatile("fmv.d.x ft0,%1\n fmv.d.x ft1,%2\n " insn " %0,ft0,ft1" : "=r"(r) : "r"(a), "r"(b) : "ft0","ft1")
#define DX(insn) __asm__ volatile("fmv.d.x ft0,%1\n " insn " %0,ft0" : "=r"(r) : "r"(a) : "ft0")
#define XD(insn) __asm__ volatile(insn " ft2,%1\n fmv.x.d %0,ft2" : "=r"(r) : "r"(a) : "ft2")

static struct In ibuf[4096];
static struct Out obuf[4096];

int main(void) {
  for (;;) {
    ssize_t got = 0, n;
    while (got < (ssize_t)sizeof ibuf && (n = read(0, (char*)ibuf + got, sizeof ibuf - got)) > 0) got += n;
    int cnt = got / sizeof(struct In);
    if (cnt == 0) break;
    for (int i = 0; i < cnt; i++) {
      u64 a = ibuf[i].a, b = ibuf[i].b, c = ibuf[i].c, r = 0, f;
      __asm__ volatile("fsrm %0\n fsflags zero" :: "r"((u64)ibuf[i].rm));
      switch (ibuf[i].op) {
        case 0: S2("fadd.s"); break; case 1: S2("fsub.s"); break; case 2: S2("fmul.s"); break;
        case 3: S2("fdiv.s"); break; case 4: S1("fsqrt.s"); break; case 5: S3("fmadd.s"); break;
        case 6: S3("fmsub.s"); break; case 7: S3("fnmsub.s"); break; case 8: S3("fnmadd.s"); break;
        case 9: S2("fmin.s"); break; case 10: S2("fmax.s"); break; case 11: SC("feq.s"); break;
        case 12: SC("flt.s"); break; case 13: SC("fle.s"); break; case 14: SX("fclass.s"); break;
        case 15: SX("fcvt.w.s"); break; case 16: SX("fcvt.wu.s"); break; case 17: SX("fcvt.l.s"); break;
        case 18: SX("fcvt.lu.s"); break; case 19: XS("fcvt.s.w"); break; case 20: XS("fcvt.s.wu"); break;
        case 21: XS("fcvt.s.l"); break; case 22: XS("fcvt.s.lu"); break;
        case 32: D2("fadd.d"); break; case 33: D2("fsub.d"); break; case 34: D2("fmul.d"); break;
        case 35: D2("fdiv.d"); break; case 36: D1("fsqrt.d"); break; case 37: D3("fmadd.d"); break;
        case 38: D3("fmsub.d"); break; case 39: D3("fnmsub.d"); break; case 40: D3("fnmadd.d"); break;
        case 41: D2("fmin.d"); break; case 42: D2("fmax.d"); break; case 43: DC("feq.d"); break;
        case 44: DC("flt.d"); break; case 45: DC("fle.d"); break; case 46: DX("fclass.d"); break;
        case 47: DX("fcvt.w.d"); break; case 48: DX("fcvt.wu.d"); break; case 49: DX("fcvt.l.d"); break;
        case 50: DX("fcvt.lu.d"); break; case 51: XD("fcvt.d.w"); break; case 52: XD("fcvt.d.wu"); break;
        case 53: XD("fcvt.d.l"); break; case 54: XD("fcvt.d.lu"); break;
        case 64: __asm__ volatile("fmv.w.x ft0,%1\n fcvt.d.s ft2,ft0\n fmv.x.d %0,ft2" : "=r"(r) : "r"(a) : "ft0","ft2"); break;
        case 65: __asm__ volatile("fmv.d.x ft0,%1\n fcvt.s.d ft2,ft0\n fmv.x.w %0,ft2" : "=r"(r) : "r"(a) : "ft0","ft2"); break;
        default: r = ~0ull; break;
      }
      __asm__ volatile("frflags %0" : "=r"(f));
      obuf[i].r = r; obuf[i].f = f;
    }
    ssize_t want = cnt * sizeof(struct Out), put = 0;
    while (put < want && (n = write(1, (char*)obuf + put, want - put)) > 0) put += n;
  }
  return 0;
}
