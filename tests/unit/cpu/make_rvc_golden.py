#!/usr/bin/env python3
"""Regenerates rvc_golden.inc: compressed instructions and their 32-bit expansions, both
assembled by GNU as (riscv64-linux-gnu-as -march=rv64gc), for rvc_test.cpp.

    python3 make_rvc_golden.py > rvc_golden.inc
"""
import random
import subprocess
import tempfile

r = random.Random(2024)
X = ["x%d" % i for i in range(32)]
XP = ["x%d" % i for i in range(8, 16)]
FP = ["f%d" % i for i in range(8, 16)]


def nz(lo, hi):
    while True:
        v = r.randrange(lo, hi)
        if v:
            return v


def cases():
    out = []
    for _ in range(6):
        rd = r.choice(X[1:]); i = nz(-32, 32)
        out.append(("c.addi %s, %d" % (rd, i), "addi %s, %s, %d" % (rd, rd, i)))
        rd = r.choice(X[1:]); i = r.randrange(-32, 32)
        out.append(("c.addiw %s, %d" % (rd, i), "addiw %s, %s, %d" % (rd, rd, i)))
        rd = r.choice(X[1:]); i = r.randrange(-32, 32)
        out.append(("c.li %s, %d" % (rd, i), "addi %s, x0, %d" % (rd, i)))
        rd = r.choice([x for x in X[1:] if x != "x2"]); i = r.choice(list(range(1, 32)) + list(range(0xfffe0, 0x100000)))
        out.append(("c.lui %s, 0x%x" % (rd, i), "lui %s, 0x%x" % (rd, i)))
        i = 16 * nz(-32, 32)
        out.append(("c.addi16sp sp, %d" % i, "addi sp, sp, %d" % i))
        rd = r.choice(XP); i = 4 * r.randrange(1, 256)
        out.append(("c.addi4spn %s, sp, %d" % (rd, i), "addi %s, sp, %d" % (rd, i)))
        rd = r.choice(X[1:]); sh = r.randrange(1, 64)
        out.append(("c.slli %s, %d" % (rd, sh), "slli %s, %s, %d" % (rd, rd, sh)))
        for op in ("srli", "srai"):
            rd = r.choice(XP); sh = r.randrange(1, 64)
            out.append(("c.%s %s, %d" % (op, rd, sh), "%s %s, %s, %d" % (op, rd, rd, sh)))
        rd = r.choice(XP); i = r.randrange(-32, 32)
        out.append(("c.andi %s, %d" % (rd, i), "andi %s, %s, %d" % (rd, rd, i)))
        rd = r.choice(X[1:]); rs = r.choice(X[1:])
        out.append(("c.mv %s, %s" % (rd, rs), "add %s, x0, %s" % (rd, rs)))
        rd = r.choice(X[1:]); rs = r.choice(X[1:])
        out.append(("c.add %s, %s" % (rd, rs), "add %s, %s, %s" % (rd, rd, rs)))
        for op in ("sub", "xor", "or", "and", "subw", "addw"):
            rd = r.choice(XP); rs = r.choice(XP)
            out.append(("c.%s %s, %s" % (op, rd, rs), "%s %s, %s, %s" % (op, rd, rd, rs)))
        for op, scale, lim, regs in (("lw", 4, 32, XP), ("ld", 8, 32, XP), ("sw", 4, 32, XP),
                                     ("sd", 8, 32, XP), ("fld", 8, 32, FP), ("fsd", 8, 32, FP)):
            rd = r.choice(regs); rs = r.choice(XP); o = scale * r.randrange(lim)
            out.append(("c.%s %s, %d(%s)" % (op, rd, o, rs), "%s %s, %d(%s)" % (op, rd, o, rs)))
        for op, scale, regs in (("lwsp", 4, X[1:]), ("ldsp", 8, X[1:]), ("swsp", 4, X),
                                ("sdsp", 8, X), ("fldsp", 8, ["f%d" % i for i in range(32)]),
                                ("fsdsp", 8, ["f%d" % i for i in range(32)])):
            rd = r.choice(regs); o = scale * r.randrange(64)
            out.append(("c.%s %s, %d(sp)" % (op, rd, o), "%s %s, %d(sp)" % (op[:-2], rd, o)))
        o = 2 * r.randrange(-1024, 1024)
        out.append(("c.j .%+d" % o, "jal x0, .%+d" % o))
        for op, full in (("beqz", "beq"), ("bnez", "bne")):
            rs = r.choice(XP); o = 2 * r.randrange(-128, 128)
            out.append(("c.%s %s, .%+d" % (op, rs, o), "%s %s, x0, .%+d" % (full, rs, o)))
        rs = r.choice(X[1:])
        out.append(("c.jr %s" % rs, "jalr x0, 0(%s)" % rs))
        rs = r.choice(X[1:])
        out.append(("c.jalr %s" % rs, "jalr x1, 0(%s)" % rs))
    out.append(("c.ebreak", "ebreak"))
    out.append(("c.nop", "addi x0, x0, 0"))
    return out


def assemble(lines, rvc):
    with tempfile.TemporaryDirectory() as d:
        src = d + "/t.S"
        with open(src, "w") as f:
            f.write(".option norelax\n.option %s\n" % ("rvc" if rvc else "norvc"))
            f.write("\n".join(lines) + "\n")
        subprocess.run(["riscv64-linux-gnu-as", "-march=rv64gc", "-o", d + "/t.o", src], check=True)
        dump = subprocess.run(["riscv64-linux-gnu-objdump", "-d", d + "/t.o"], capture_output=True,
                              text=True, check=True).stdout
    words = []
    for l in dump.splitlines():
        p = l.split("\t")
        if len(p) >= 3 and p[0].strip().endswith(":"):
            words.append(int(p[1].strip(), 16))
    assert len(words) == len(lines), (len(words), len(lines))
    return words


cs = cases()
half = assemble([c for c, _ in cs], True)
full = assemble([e for _, e in cs], False)
for (c, e), h, w in zip(cs, half, full):
    assert h < 0x10000, c
    print('    {0x%04x, 0x%08x, "%s"},' % (h, w, c))
