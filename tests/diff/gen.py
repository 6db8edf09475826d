#!/usr/bin/env python3
"""Random user-level RISC-V programs for differential testing (dvmm vs qemu-riscv64).

For a seed, writes an assembly file with: an initial register state (x, f, fcsr) and a 4 KiB
data area derived from the seed, a random straight-line-with-forward-branches body of RV64
I/M/A/F/D/C instructions, and an epilogue that dumps x1..x31, f0..f31 and fcsr next to the
data area and writes [dump | data] (512 + 4096 bytes) to stdout with the Linux write
syscall, then exits. The same ELF runs under qemu-riscv64 and dvmm_difftest.

Reserved registers: sp (x2) = data area start, s0 (x8) = data area + 2048. The body never
writes them; every memory access is based on one of them (or an address computed from s0
for atomics), so it stays inside the data area. Nothing implementation-defined is
generated: no SC without a matching LR just before it, no counters, no invalid frm with
dynamic rounding.

    gen.py SEED [--length N] > prog.S
"""
import argparse
import random
import struct

DATA_SIZE = 4096
DUMP_SIZE = 512

INT_WRITABLE = [1, 3, 4, 5, 6, 7] + list(range(9, 32))
C_WRITABLE = list(range(9, 16))   # rd' for compressed forms, without s0
C_SRC = list(range(8, 16))
ROUNDING = ["rne", "rtz", "rdn", "rup", "rmm", "dyn", None]

INT_SPECIALS = [
    0, 1, 2, 3, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFE, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000,
    0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFF80000000, 0x100000000, 0x8000000000000001,
    0xAAAAAAAAAAAAAAAA, 0x5555555555555555, 0x00000000FFFF0000, 0xFFFFFFFF7FFFFFFF, 63, 64, 31, 32,
]

F64_SPECIALS = [
    0x0000000000000000, 0x8000000000000000,  # +-0
    0x7FF0000000000000, 0xFFF0000000000000,  # +-inf
    0x7FF8000000000000, 0xFFF8000000000000, 0x7FF8000000000123,  # qNaN
    0x7FF4000000000000, 0x7FF0000000000001, 0xFFF4000000000456,  # sNaN
    0x0000000000000001, 0x000FFFFFFFFFFFFF, 0x8000000000000001, 0x0008000000000000,  # subnormal
    0x0010000000000000, 0x8010000000000000, 0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF,  # min/max
    0x3FF0000000000000, 0xBFF0000000000000, 0x3FE0000000000000, 0x3FF8000000000000,  # 1,-1,.5,1.5
    0x4004000000000000, 0xC004000000000000, 0x3FF0000000000001, 0x3CA0000000000000,  # 2.5,-2.5
    0x41E0000000000000, 0x41DFFFFFFFC00000, 0x41DFFFFFFFE00000, 0xC1E0000000000000,  # 2^31 ...
    0xC1E0000000200000, 0x41F0000000000000, 0x41EFFFFFFFFFFFFF, 0x41EFFFFFFFF00000,  # 2^32 ...
    0x43E0000000000000, 0x43DFFFFFFFFFFFFF, 0xC3E0000000000000, 0xC3E0000000000001,  # 2^63 ...
    0x43F0000000000000, 0x43EFFFFFFFFFFFFF, 0xBFEFFFFFFFFFFFFF, 0xBFF0000000000000,  # 2^64 ...
    0x3FEFFFFFFFFFFFFF, 0x4330000000000000, 0x4340000000000000, 0x36A0000000000000,
    0x47EFFFFFE0000000, 0x47EFFFFFF0000000, 0x3810000000000000, 0x380FFFFFFFFFFFFF,  # f32 limits
    0x36A0000000000001, 0x3690000000000000,
]

F32_SPECIALS = [
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000,  # +-0, +-inf
    0x7FC00000, 0xFFC00000, 0x7FC00123,  # qNaN
    0x7FA00000, 0x7F800001, 0xFFA00456,  # sNaN
    0x00000001, 0x007FFFFF, 0x80000001, 0x00400000,  # subnormal
    0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,  # min normal, max
    0x3F800000, 0xBF800000, 0x3F000000, 0x3FC00000, 0x40200000, 0xC0200000,  # 1 -1 .5 1.5 2.5
    0x3F800001, 0x33800000, 0x4F000000, 0x4EFFFFFF, 0xCF000000, 0xCF000001,  # 2^31 ...
    0x4F800000, 0x4F7FFFFF, 0x5F000000, 0x5EFFFFFF, 0xDF000000, 0xDF000001,  # 2^32, 2^63
    0x5F800000, 0x5F7FFFFF, 0xBF7FFFFF, 0x3F7FFFFF, 0x4B000000, 0x4B800000,
]

IMM_SPECIALS = [0, 1, -1, 2047, -2048, 31, 32, 63, -2, 0x7FF, 0x555, -0x555]


def boxed(v32):
    return 0xFFFFFFFF00000000 | v32


class Gen:
    def __init__(self, seed, length):
        self.r = random.Random(seed)
        self.seed = seed
        self.length = length
        self.out = []
        self.pending = []  # [units_left, label]
        self.nlabels = 0
        self.units = []  # the lines of each generated unit

    # ---------------------------------------------------------------- values
    def rand_int(self):
        r = self.r
        c = r.random()
        if c < 0.35:
            return r.choice(INT_SPECIALS)
        if c < 0.55:
            return r.randrange(-64, 64) & 0xFFFFFFFFFFFFFFFF
        if c < 0.65:
            return (r.getrandbits(32) if r.random() < 0.5 else
                    (r.getrandbits(31) | 0xFFFFFFFF80000000))
        return r.getrandbits(64)

    def rand_f64(self):
        r = self.r
        c = r.random()
        if c < 0.6:
            return r.choice(F64_SPECIALS)
        if c < 0.8:  # random normal-ish with a modest exponent
            return struct.unpack("<Q", struct.pack("<d", r.uniform(-1e6, 1e6)))[0]
        return r.getrandbits(64)

    def rand_f32(self):
        r = self.r
        c = r.random()
        if c < 0.6:
            return r.choice(F32_SPECIALS)
        if c < 0.8:
            return struct.unpack("<I", struct.pack("<f", r.uniform(-1e4, 1e4)))[0]
        return r.getrandbits(32)

    def rand_freg_value(self):
        c = self.r.random()
        if c < 0.45:
            return boxed(self.rand_f32())
        if c < 0.9:
            return self.rand_f64()
        if c < 0.95:  # not NaN-boxed single
            return self.rand_f32() | (self.r.getrandbits(32) << 32)
        return 0xFFFFFFFE00000000 | self.rand_f32()

    def imm12(self):
        if self.r.random() < 0.4:
            return self.r.choice(IMM_SPECIALS)
        return self.r.randrange(-2048, 2048)

    # ---------------------------------------------------------------- helpers
    def xd(self):
        if self.r.random() < 0.03:
            return "x0"
        return "x%d" % self.r.choice(INT_WRITABLE)

    def xd_nz(self):
        return "x%d" % self.r.choice(INT_WRITABLE)

    def xs(self):
        return "x%d" % self.r.randrange(32)

    def fr(self):
        return "f%d" % self.r.randrange(32)

    def rm(self):
        m = self.r.choice(ROUNDING)
        return "" if m is None else ", " + m

    def emit(self, s):
        self.out.append("  " + s)

    def new_label(self, units):
        self.nlabels += 1
        name = ".Ls%d_%d" % (self.seed, self.nlabels)
        self.pending.append([units, name])
        return name

    def end_unit(self):
        keep = []
        for p in self.pending:
            p[0] -= 1
            if p[0] <= 0:
                self.out.append(p[1] + ":")
            else:
                keep.append(p)
        self.pending = keep

    def mem_operand(self, size):
        """(offset, base) of an access of `size` bytes inside the data area."""
        r = self.r
        a = r.randrange(0, DATA_SIZE - size + 1)
        if r.random() < 0.8:
            a -= a % size
        if a < 2048 and r.random() < 0.3:
            return a, "sp"
        return a - 2048, "s0"

    # ---------------------------------------------------------------- instruction groups
    def g_alu(self):
        r = self.r
        ops = ["add", "sub", "sll", "slt", "sltu", "xor", "srl", "sra", "or", "and",
               "addw", "subw", "sllw", "srlw", "sraw"]
        self.emit("%s %s, %s, %s" % (r.choice(ops), self.xd(), self.xs(), self.xs()))

    def g_alu_imm(self):
        r = self.r
        c = r.random()
        if c < 0.5:
            op = r.choice(["addi", "slti", "sltiu", "xori", "ori", "andi", "addiw"])
            self.emit("%s %s, %s, %d" % (op, self.xd(), self.xs(), self.imm12()))
        elif c < 0.75:
            op = r.choice(["slli", "srli", "srai"])
            self.emit("%s %s, %s, %d" % (op, self.xd(), self.xs(), r.randrange(64)))
        elif c < 0.9:
            op = r.choice(["slliw", "srliw", "sraiw"])
            self.emit("%s %s, %s, %d" % (op, self.xd(), self.xs(), r.randrange(32)))
        elif c < 0.95:
            self.emit("lui %s, 0x%x" % (self.xd(), r.getrandbits(20)))
        else:
            self.emit("li %s, 0x%x" % (self.xd(), self.rand_int()))

    def g_muldiv(self):
        ops = ["mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu",
               "mulw", "divw", "divuw", "remw", "remuw"]
        self.emit("%s %s, %s, %s" % (self.r.choice(ops), self.xd(), self.xs(), self.xs()))

    def g_load(self):
        op, size = self.r.choice([("lb", 1), ("lh", 2), ("lw", 4), ("ld", 8), ("lbu", 1),
                                  ("lhu", 2), ("lwu", 4)])
        off, base = self.mem_operand(size)
        self.emit("%s %s, %d(%s)" % (op, self.xd(), off, base))

    def g_store(self):
        op, size = self.r.choice([("sb", 1), ("sh", 2), ("sw", 4), ("sd", 8)])
        off, base = self.mem_operand(size)
        self.emit("%s %s, %d(%s)" % (op, self.xs(), off, base))

    def g_branch(self):
        r = self.r
        op = r.choice(["beq", "bne", "blt", "bge", "bltu", "bgeu"])
        label = self.new_label(r.randrange(1, 5))
        a, b = self.xs(), self.xs()
        if r.random() < 0.2:
            b = a
        self.emit("%s %s, %s, %s" % (op, a, b, label))

    def g_jump(self):
        r = self.r
        c = r.random()
        label = self.new_label(r.randrange(1, 4))
        if c < 0.4:
            self.emit("jal %s, %s" % (self.xd() if r.random() < 0.8 else "x0", label))
        elif c < 0.8:
            t = self.xd_nz()
            self.emit("la %s, %s" % (t, label))
            self.emit("jalr %s, %d(%s)" % (self.xd(), r.choice([0, 1]), t))
        else:
            t = "x%d" % r.choice([i for i in INT_WRITABLE if i != 1])
            self.emit("la %s, %s" % (t, label))
            self.emit(r.choice(["c.jr %s", "c.jalr %s"]) % t)

    def atomic_addr(self, size):
        off = self.r.randrange(-2048, 2048 - size + 1)
        off -= (off + 2048) % size
        t = self.r.choice(INT_WRITABLE)
        self.emit("addi x%d, s0, %d" % (t, off))
        return t

    def g_amo(self):
        r = self.r
        sfx = r.choice([".w", ".d"])
        t = self.atomic_addr(4 if sfx == ".w" else 8)
        op = r.choice(["amoswap", "amoadd", "amoxor", "amoand", "amoor", "amomin", "amomax",
                       "amominu", "amomaxu"])
        order = r.choice(["", ".aq", ".rl", ".aqrl"])
        self.emit("%s%s%s %s, %s, (x%d)" % (op, sfx, order, self.xd(), self.xs(), t))

    def g_lrsc(self):
        r = self.r
        sfx = r.choice([".w", ".d"])
        t = self.atomic_addr(4 if sfx == ".w" else 8)
        others = [i for i in INT_WRITABLE if i != t]
        rd = r.choice(others)
        self.emit("lr%s%s x%d, (x%d)" % (sfx, r.choice(["", ".aq", ".aqrl"]), rd, t))
        for _ in range(r.randrange(0, 3)):
            op = r.choice(["add", "xor", "addw", "sub", "or"])
            self.emit("%s x%d, %s, %s" % (op, r.choice(others), self.xs(), self.xs()))
        self.emit("sc%s%s x%d, %s, (x%d)" % (sfx, r.choice(["", ".rl", ".aqrl"]),
                                             r.choice(INT_WRITABLE), self.xs(), t))

    def g_compressed(self):
        r = self.r
        cw = lambda: "x%d" % r.choice(C_WRITABLE)
        cs = lambda: "x%d" % r.choice(C_SRC)
        nz6 = lambda: r.choice([i for i in range(-32, 32) if i != 0])
        c = r.randrange(22)
        if c == 0:
            self.emit("c.addi %s, %d" % (self.xd_nz(), nz6()))
        elif c == 1:
            self.emit("c.addiw %s, %d" % (self.xd_nz(), r.randrange(-32, 32)))
        elif c == 2:
            self.emit("c.li %s, %d" % (self.xd_nz(), r.randrange(-32, 32)))
        elif c == 3:
            rd = r.choice([i for i in INT_WRITABLE])
            self.emit("c.lui x%d, 0x%x" % (rd, r.choice(list(range(1, 32)) + list(range(0xfffe0, 0x100000)))))
        elif c == 4:
            self.emit("c.slli %s, %d" % (self.xd_nz(), r.randrange(1, 64)))
        elif c == 5:
            self.emit("%s %s, %d" % (r.choice(["c.srli", "c.srai"]), cw(), r.randrange(1, 64)))
        elif c == 6:
            self.emit("c.andi %s, %d" % (cw(), r.randrange(-32, 32)))
        elif c == 7:
            self.emit("c.mv %s, x%d" % (self.xd_nz(), r.randrange(1, 32)))
        elif c == 8:
            self.emit("c.add %s, x%d" % (self.xd_nz(), r.randrange(1, 32)))
        elif c == 9:
            op = r.choice(["c.sub", "c.xor", "c.or", "c.and", "c.subw", "c.addw"])
            self.emit("%s %s, %s" % (op, cw(), cs()))
        elif c == 10:
            self.emit("c.lw %s, %d(s0)" % (cw(), 4 * r.randrange(32)))
        elif c == 11:
            self.emit("c.ld %s, %d(s0)" % (cw(), 8 * r.randrange(32)))
        elif c == 12:
            self.emit("c.sw %s, %d(s0)" % (cs(), 4 * r.randrange(32)))
        elif c == 13:
            self.emit("c.sd %s, %d(s0)" % (cs(), 8 * r.randrange(32)))
        elif c == 14:
            self.emit("c.lwsp %s, %d(sp)" % (self.xd_nz(), 4 * r.randrange(64)))
        elif c == 15:
            self.emit("c.ldsp %s, %d(sp)" % (self.xd_nz(), 8 * r.randrange(64)))
        elif c == 16:
            self.emit("c.swsp x%d, %d(sp)" % (r.randrange(32), 4 * r.randrange(64)))
        elif c == 17:
            self.emit("c.sdsp x%d, %d(sp)" % (r.randrange(32), 8 * r.randrange(64)))
        elif c == 18:
            self.emit("c.addi4spn %s, sp, %d" % (cw(), 4 * r.randrange(1, 256)))
        elif c == 19:
            label = self.new_label(r.randrange(1, 4))
            self.emit("%s %s, %s" % (r.choice(["c.beqz", "c.bnez"]), cs(), label))
        elif c == 20:
            label = self.new_label(r.randrange(1, 4))
            self.emit("c.j %s" % label)
        else:
            c2 = r.randrange(4)
            if c2 == 0:
                self.emit("c.fld f%d, %d(s0)" % (r.randrange(8, 16), 8 * r.randrange(32)))
            elif c2 == 1:
                self.emit("c.fsd f%d, %d(s0)" % (r.randrange(8, 16), 8 * r.randrange(32)))
            elif c2 == 2:
                self.emit("c.fldsp f%d, %d(sp)" % (r.randrange(32), 8 * r.randrange(64)))
            else:
                self.emit("c.fsdsp f%d, %d(sp)" % (r.randrange(32), 8 * r.randrange(64)))

    def g_fp_arith(self):
        r = self.r
        p = r.choice([".s", ".d"])
        c = r.randrange(6)
        if c <= 1:
            op = r.choice(["fadd", "fsub", "fmul", "fdiv"])
            self.emit("%s%s %s, %s, %s%s" % (op, p, self.fr(), self.fr(), self.fr(), self.rm()))
        elif c == 2:
            self.emit("fsqrt%s %s, %s%s" % (p, self.fr(), self.fr(), self.rm()))
        elif c == 3:
            op = r.choice(["fmin", "fmax", "fsgnj", "fsgnjn", "fsgnjx"])
            self.emit("%s%s %s, %s, %s" % (op, p, self.fr(), self.fr(), self.fr()))
        else:
            op = r.choice(["fmadd", "fmsub", "fnmsub", "fnmadd"])
            self.emit("%s%s %s, %s, %s, %s%s" % (op, p, self.fr(), self.fr(), self.fr(), self.fr(),
                                                  self.rm()))

    def g_fp_convert(self):
        r = self.r
        p = r.choice(["s", "d"])
        c = r.randrange(8)
        if c <= 2:
            it = r.choice(["w", "wu", "l", "lu"])
            self.emit("fcvt.%s.%s %s, %s%s" % (it, p, self.xd(), self.fr(), self.rm()))
        elif c <= 4:
            it = r.choice(["w", "wu", "l", "lu"])
            rm = self.rm() if not (p == "d" and it in ("w", "wu")) else ""
            self.emit("fcvt.%s.%s %s, %s%s" % (p, it, self.fr(), self.xs(), rm))
        elif c == 5:
            self.emit("fcvt.s.d %s, %s%s" % (self.fr(), self.fr(), self.rm()))
        elif c == 6:
            self.emit("fcvt.d.s %s, %s" % (self.fr(), self.fr()))
        else:
            op = r.choice(["fmv.x.w %s, %s", "fmv.x.d %s, %s"])
            self.emit(op % (self.xd(), self.fr()))

    def g_fp_misc(self):
        r = self.r
        p = r.choice([".s", ".d"])
        c = r.randrange(5)
        if c == 0:
            op = r.choice(["feq", "flt", "fle"])
            self.emit("%s%s %s, %s, %s" % (op, p, self.xd(), self.fr(), self.fr()))
        elif c == 1:
            self.emit("fclass%s %s, %s" % (p, self.xd(), self.fr()))
        elif c == 2:
            op = r.choice(["fmv.w.x", "fmv.d.x"])
            self.emit("%s %s, %s" % (op, self.fr(), self.xs()))
        elif c == 3:
            op, size = r.choice([("flw", 4), ("fld", 8)])
            off, base = self.mem_operand(size)
            self.emit("%s %s, %d(%s)" % (op, self.fr(), off, base))
        else:
            op, size = r.choice([("fsw", 4), ("fsd", 8)])
            off, base = self.mem_operand(size)
            self.emit("%s %s, %d(%s)" % (op, self.fr(), off, base))

    def g_fp_csr(self):
        r = self.r
        c = r.randrange(7)
        if c == 0:
            self.emit("fsrmi %s, %d" % (self.xd(), r.randrange(5)))
        elif c == 1:
            self.emit("fsflagsi %s, %d" % (self.xd(), r.randrange(32)))
        elif c == 2:
            self.emit(r.choice(["frcsr %s", "frrm %s", "frflags %s"]) % self.xd())
        elif c == 3:
            self.emit("csrrs %s, fflags, %s" % (self.xd(), self.xs()))
        elif c == 4:
            self.emit("csrrc %s, fflags, %s" % (self.xd(), self.xs()))
        elif c == 5:
            self.emit("csrrci %s, fflags, %d" % (self.xd(), r.randrange(32)))
        else:
            t = self.xd()
            self.emit("li %s, %d" % (t, (r.randrange(5) << 5) | r.randrange(32) | (r.getrandbits(8) << 8)))
            self.emit("fscsr %s, %s" % (self.xd(), t))

    def g_misc(self):
        r = self.r
        c = r.randrange(4)
        if c == 0:
            self.emit("auipc %s, 0x%x" % (self.xd(), r.getrandbits(20)))
        elif c == 1:
            self.emit(r.choice(["fence", "fence rw, rw", "fence.i", "fence r, w", "nop", ".word 0x0100000f"]))
        else:
            self.emit("%s %s, %s" % (r.choice(["sext.w", "neg", "not", "seqz", "snez"]),
                                    self.xd(), self.xs()))

    # ---------------------------------------------------------------- program
    def body(self):
        groups = [
            (self.g_alu, 10), (self.g_alu_imm, 10), (self.g_muldiv, 8), (self.g_load, 6),
            (self.g_store, 6), (self.g_branch, 4), (self.g_jump, 2), (self.g_amo, 4),
            (self.g_lrsc, 2), (self.g_compressed, 10), (self.g_fp_arith, 14),
            (self.g_fp_convert, 8), (self.g_fp_misc, 8), (self.g_fp_csr, 3), (self.g_misc, 2),
        ]
        fns = [g for g, _ in groups]
        weights = [w for _, w in groups]
        for _ in range(self.length):
            start = len(self.out)
            self.r.choices(fns, weights)[0]()
            self.units.append(self.out[start:])
            self.end_unit()
        for _, label in self.pending:
            self.out.append(label + ":")
        self.pending = []

    def parts(self):
        """(text lines, data lines) of this seed's program; labels are unique per seed."""
        r = self.r
        p = "s%d_" % self.seed
        xinit = [0] + [self.rand_int() for _ in range(31)]
        finit = [self.rand_freg_value() for _ in range(32)]
        fcsr = (r.randrange(5) << 5) | r.randrange(32)
        data = []
        for _ in range(DATA_SIZE // 8):
            c = r.random()
            if c < 0.3:
                data.append(self.rand_f64())
            elif c < 0.6:
                data.append(self.rand_f32() | (self.rand_f32() << 32))
            else:
                data.append(self.rand_int())
        self.body()
        t = []
        t.append("# seed %d" % self.seed)
        t.append("  la t0, %sinit_f" % p)
        for i in range(32):
            t.append("  fld f%d, %d(t0)" % (i, 8 * i))
        t.append("  la t0, %sinit_fcsr" % p)
        t.append("  ld t1, 0(t0)")
        t.append("  fscsr t1")
        t.append("  la t0, %sinit_x" % p)
        for i in list(range(1, 5)) + list(range(6, 32)):
            if i in (2, 8):
                continue
            t.append("  ld x%d, %d(t0)" % (i, 8 * i))
        t.append("  la sp, %sdata" % p)
        t.append("  addi s0, sp, 2047")
        t.append("  addi s0, s0, 1")
        t.append("  ld x5, 40(t0)")
        t.append("%sbody:" % p)
        t.extend(self.out)
        t.append("%sbody_end:" % p)
        for i in range(1, 32):
            t.append("  sd x%d, %d(sp)" % (i, -DUMP_SIZE + 8 * (i - 1)))
        for i in range(32):
            t.append("  fsd f%d, %d(sp)" % (i, -DUMP_SIZE + 248 + 8 * i))
        t.append("  frcsr t0")
        t.append("  sd t0, %d(sp)" % (-DUMP_SIZE + 504))
        t.append("  li a0, 1")
        t.append("  addi a1, sp, -%d" % DUMP_SIZE)
        t.append("  li a2, %d" % (DUMP_SIZE + DATA_SIZE))
        t.append("  li a7, 64")
        t.append("  ecall")
        d = []
        d.append("  .balign 4096")
        d.append("%sinit_x:" % p)
        d.extend("  .dword 0x%x" % v for v in xinit)
        d.append("%sinit_f:" % p)
        d.extend("  .dword 0x%x" % v for v in finit)
        d.append("%sinit_fcsr:" % p)
        d.append("  .dword 0x%x" % fcsr)
        d.append("  .balign 4096")
        d.append("%sdump:" % p)
        d.append("  .space %d" % DUMP_SIZE)
        d.append("%sdata:" % p)
        d.extend("  .dword 0x%x" % v for v in data)
        return t, d

    def program(self):
        return combine([self])


def combine(gens):
    """One program that runs the seeds' programs one after the other; each writes its dump."""
    text = ["# dvmm differential test, seeds %s" % " ".join(str(g.seed) for g in gens),
            "  .option norelax", "  .text", "  .globl _start", "_start:"]
    data = ["  .data"]
    for g in gens:
        t, d = g.parts()
        text.extend(t)
        data.extend(d)
    text.extend(["  li a0, 0", "  li a7, 93", "  ecall"])
    return "\n".join(text + data) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("seed", type=int)
    ap.add_argument("--length", type=int, default=200)
    a = ap.parse_args()
    print(Gen(a.seed, a.length).program(), end="")


if __name__ == "__main__":
    main()
