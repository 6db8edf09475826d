#!/usr/bin/env python3
"""Differential test: random user-level programs (gen.py) on dvmm_difftest vs qemu-riscv64.

    run_diff.py --difftest PATH [--seeds N] [--first S] [--length L] [--jobs J] [--workdir D]

N defaults to $DVMM_DIFF_SEEDS or 3000. For every seed the program is assembled and linked
once (riscv64-linux-gnu-as/ld, text at 0x80000000) and run on both; the 4608-byte outputs
(x1..x31, f0..f31, fcsr, then the 4 KiB data area) and exit statuses must be equal. For a
failing seed the script finds the shortest failing prefix of the body, prints the
instruction that makes the difference with its input registers, the differing registers
and the disassembly around it, and keeps the files in the work directory.
Ends with the line "N passed, M failed".
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

AS = "riscv64-linux-gnu-as"
LD = "riscv64-linux-gnu-ld"
OBJDUMP = "riscv64-linux-gnu-objdump"
QEMU = "qemu-riscv64"
LINK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "link.ld")
XNAMES = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3",
          "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
          "t3", "t4", "t5", "t6"]


def build(workdir, name, text):
    src = os.path.join(workdir, name + ".S")
    obj = os.path.join(workdir, name + ".o")
    elf = os.path.join(workdir, name + ".elf")
    with open(src, "w") as f:
        f.write(text)
    r = subprocess.run([AS, "-march=rv64gc", "-o", obj, src], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("assembler failed for %s:\n%s" % (src, r.stderr))
    r = subprocess.run([LD, "-static", "-T", LINK_SCRIPT, "-o", elf, obj],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("linker failed for %s:\n%s" % (src, r.stderr))
    os.unlink(obj)
    return src, elf


def run(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=30)
        return r.returncode, r.stdout, r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return -999, b"", "timeout"


def run_both(difftest, elf):
    q = run([QEMU, elf])
    d = run([difftest, elf])
    return q, d


def same(q, d):
    return q[0] == d[0] and q[1] == d[1]


def decode(out):
    if len(out) != gen.DUMP_SIZE + gen.DATA_SIZE:
        return None
    x = [0] + list(struct.unpack_from("<31Q", out, 0))
    f = list(struct.unpack_from("<32Q", out, 248))
    fcsr = struct.unpack_from("<Q", out, 504)[0]
    return x, f, fcsr, out[gen.DUMP_SIZE:]


def fmt_f(v):
    d = struct.unpack("<d", struct.pack("<Q", v))[0]
    s = ""
    if (v >> 32) == 0xFFFFFFFF:
        s = " (single %r)" % struct.unpack("<f", struct.pack("<I", v & 0xFFFFFFFF))[0]
    return "0x%016x = %r%s" % (v, d, s)


def differences(q, d):
    lines = []
    if q[0] != d[0]:
        lines.append("exit status: qemu %d, dvmm %d" % (q[0], d[0]))
    if q[2].strip():
        lines.append("qemu stderr: " + q[2].strip())
    if d[2].strip():
        lines.append("dvmm stderr: " + d[2].strip())
    a, b = decode(q[1]), decode(d[1])
    if a is None or b is None:
        lines.append("output sizes: qemu %d, dvmm %d bytes" % (len(q[1]), len(d[1])))
        return lines
    for i in range(1, 32):
        if a[0][i] != b[0][i]:
            lines.append("x%d (%s): qemu 0x%016x, dvmm 0x%016x" % (i, XNAMES[i], a[0][i], b[0][i]))
    for i in range(32):
        if a[1][i] != b[1][i]:
            lines.append("f%d: qemu %s" % (i, fmt_f(a[1][i])))
            lines.append("     dvmm %s" % fmt_f(b[1][i]))
    if a[2] != b[2]:
        lines.append("fcsr: qemu 0x%x (frm %d fflags %s), dvmm 0x%x (frm %d fflags %s)" % (
            a[2], a[2] >> 5 & 7, flags(a[2]), b[2], b[2] >> 5 & 7, flags(b[2])))
    for off in range(0, gen.DATA_SIZE, 8):
        if a[3][off:off + 8] != b[3][off:off + 8]:
            lines.append("data[+0x%03x] (s0%+d): qemu %s, dvmm %s" % (
                off, off - 2048, a[3][off:off + 8][::-1].hex(), b[3][off:off + 8][::-1].hex()))
    return lines


def flags(v):
    names = [(16, "NV"), (8, "DZ"), (4, "OF"), (2, "UF"), (1, "NX")]
    s = "|".join(n for bit, n in names if v & bit)
    return s or "-"


def analyse(args, seed, workdir):
    """Shortest failing prefix, the culprit instruction and its inputs."""
    lo, hi = 0, args.length  # prefix lo passes, prefix hi fails
    cache = {}

    def fails(n):
        if n not in cache:
            _, elf = build(workdir, "seed%d_len%d" % (seed, n), gen.Gen(seed, n).program())
            q, d = run_both(args.difftest, elf)
            cache[n] = (not same(q, d), q, d, elf)
        return cache[n][0]

    if not fails(hi):
        return ["(does not reproduce)"]
    if fails(0):
        lo = hi = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid
    report = []
    g = gen.Gen(seed, hi)
    g.program()
    tail = g.units[hi - 1] if hi > 0 else ["(the prologue)"]
    report.append("shortest failing prefix: %d units; the last unit:" % hi)
    for l in tail:
        report.append("    " + l.strip())
    if hi > 0 and lo in cache:
        before = decode(cache[lo][1][1])
        if before is not None:
            regs = set()
            for l in tail:
                regs.update(re.findall(r"\b([xf]\d+|sp|s0)\b", l))
            for r in sorted(regs):
                if r.startswith("x"):
                    report.append("    input %s = 0x%016x" % (r, before[0][int(r[1:])]))
                elif r.startswith("f"):
                    report.append("    input %s = %s" % (r, fmt_f(before[1][int(r[1:])])))
            report.append("    input fcsr = 0x%x (frm %d)" % (before[2], before[2] >> 5 & 7))
    _, q, d, elf = cache[hi]
    report.append("differences after the prefix:")
    report.extend("    " + l for l in differences(q, d))
    dis = subprocess.run([OBJDUMP, "-d", "-M", "no-aliases", elf], capture_output=True, text=True).stdout
    dlines = [l for l in dis.splitlines() if re.match(r"\s+8000[0-9a-f]+:", l)]
    # Show the end of the body (just before the register dump).
    end = next((i for i, l in enumerate(dlines) if "sd\tra,-512(sp)" in l or "sd\tx1,-512(x2)" in l), len(dlines))
    report.append("disassembly (end of the failing prefix, %s):" % elf)
    report.extend(dlines[max(0, end - 8):end])
    return report


def check_seed(args, seed, workdir):
    text = gen.Gen(seed, args.length).program()
    src, elf = build(workdir, "seed%d" % seed, text)
    q, d = run_both(args.difftest, elf)
    if same(q, d) and q[0] == 0:
        os.unlink(src)
        os.unlink(elf)
        return seed, True, []
    report = ["seed %d: MISMATCH (%s)" % (seed, src)]
    report.extend("  " + l for l in differences(q, d))
    return seed, False, report


def check_batch(args, seeds, workdir):
    """Runs the seeds as one program; falls back to one program per seed on a difference."""
    if len(seeds) > 1:
        text = gen.combine([gen.Gen(s, args.length) for s in seeds])
        src, elf = build(workdir, "batch%d" % seeds[0], text)
        q, d = run_both(args.difftest, elf)
        if same(q, d) and q[0] == 0 and len(q[1]) == len(seeds) * (gen.DUMP_SIZE + gen.DATA_SIZE):
            os.unlink(src)
            os.unlink(elf)
            return [(s, True, []) for s in seeds]
        os.unlink(src)
        os.unlink(elf)
    return [check_seed(args, s, workdir) for s in seeds]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--difftest", required=True)
    ap.add_argument("--seeds", type=int, default=int(os.environ.get("DVMM_DIFF_SEEDS", "3000")))
    ap.add_argument("--first", type=int, default=int(os.environ.get("DVMM_DIFF_FIRST", "1")))
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=10, help="seeds per program run")
    ap.add_argument("--workdir", default="diff-work")
    ap.add_argument("--max-reports", type=int, default=5)
    args = ap.parse_args()
    for tool in (AS, LD, QEMU):
        if shutil.which(tool) is None:
            print("%s not found" % tool)
            return 1
    os.makedirs(args.workdir, exist_ok=True)
    start = time.time()
    passed, failed = 0, []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        seeds = list(range(args.first, args.first + args.seeds))
        batches = [seeds[i:i + args.batch] for i in range(0, len(seeds), args.batch)]
        futures = [pool.submit(check_batch, args, b, args.workdir) for b in batches]
        for fut in concurrent.futures.as_completed(futures):
            for seed, ok, report in fut.result():
                if ok:
                    passed += 1
                else:
                    failed.append((seed, report))
    failed.sort()
    for seed, report in failed[:args.max_reports]:
        print("\n".join(report))
        try:
            print("\n".join("  " + l for l in analyse(args, seed, args.workdir)))
        except Exception as e:  # keep reporting the other seeds
            print("  analysis failed: %s" % e)
        print()
    if failed:
        print("failing seeds: %s" % " ".join(str(s) for s, _ in failed))
        print("rerun one: %s %s --difftest %s --first SEED --seeds 1" % (
            sys.executable, os.path.abspath(__file__), args.difftest))
    print("seeds %d..%d in %.1f s" % (args.first, args.first + args.seeds - 1, time.time() - start))
    print("%d passed, %d failed" % (passed, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
