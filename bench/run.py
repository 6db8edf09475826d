#!/usr/bin/env python3
"""dvmm benchmarks against qemu-system-riscv64 on the same kernel and initramfs.

Measures, in one run and interleaved (QEMU, then dvmm, for each repetition):
  1. boot: wall time from process start to the guest's `dvmm-guest: init reached` line with
     2 harts (interactive mode, stdin a pipe), the guest's own uptime at init (the kernel's
     clock, from `dvmm.verbose`), and the total wall time of `run -- true` (boot + poweroff);
  2. cpubench (bench/programs/cpubench.c, cross-compiled static, packed in a newc cpio under
     /opt/): integer, float and memory parts with 1 and 2 threads on a 2-hart guest, plus the
     same program built for the host as a scale reference;
  3. optionally (--profile) a `perf record -g` profile of dvmm on the boot and on cpubench.

Prints markdown tables; --record writes them into docs/BENCHMARKS.md (the section between
the `bench:results` markers, and the `bench:profile` one with --profile).

Usage: bench/run.sh [--reps N] [--cpu-reps N] [--record] [--profile] [--no-dvmm] [--no-qemu]
                    [--dvmm PATH] [--guest-dir DIR] [--timeout S]
"""
import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(ROOT, "docs", "BENCHMARKS.md")
QEMU = "qemu-system-riscv64"
OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin"
INIT_LINE = b"dvmm-guest: init reached"
UPTIME_RE = re.compile(rb"dvmm-guest: boot time ([0-9.]+)s")
CPUBENCH_RE = re.compile(r"cpubench threads=(\d+) work=\d+ integer=([0-9.]+) float=([0-9.]+) "
                         r"memory=([0-9.]+) total=([0-9.]+)")
PARTS = ("integer", "float", "memory", "total")


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def die(msg):
    log("error:", msg)
    sys.exit(1)


# ------------------------------------------------------------------------------------------
# inputs: guest image, programs, cpio archives

def guest_dir(arg):
    if arg:
        d = arg
    else:
        p = subprocess.run([os.path.join(ROOT, "guest", "build.sh"), "--print-dir"],
                           capture_output=True, text=True)
        d = p.stdout.strip()
        if p.returncode != 0:
            cur = os.path.join(os.environ.get("DVMM_CACHE_DIR",
                                              os.path.expanduser("~/.cache/dvmm")), "guest", "current")
            if not os.path.isdir(cur):
                die("the guest image is not built (run guest/build.sh, or pass --guest-dir)")
            log("warning: no image for the current guest/ inputs; using", os.path.realpath(cur))
            d = os.path.realpath(cur)
    for f in ("Image", "initramfs.cpio.gz"):
        if not os.path.isfile(os.path.join(d, f)):
            die(f"{d}/{f} is missing")
    return d


def make_cpio(files, out):
    """files: {archive path: (bytes, mode)}; writes a newc cpio with the host's cpio tool."""
    stage = out + ".d"
    shutil.rmtree(stage, ignore_errors=True)
    for path, (data, mode) in files.items():
        full = os.path.join(stage, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        os.chmod(full, mode)
    names = subprocess.run(["find", ".", "-mindepth", "1"], cwd=stage, capture_output=True,
                           text=True, check=True).stdout.split()
    with open(out, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "--owner=0:0"], cwd=stage,
                       input="\n".join(sorted(names)).encode() + b"\n", stdout=f, check=True)
    shutil.rmtree(stage)
    return out


def concat_initrd(parts, out):
    """What dvmm does with --initrd-extra: each part starts 4-byte aligned, zero-filled."""
    data = b""
    for p in parts:
        data += b"\0" * (-len(data) % 4)
        with open(p, "rb") as f:
            data += f.read()
    with open(out, "wb") as f:
        f.write(data)
    return out


def build_programs(work):
    src = os.path.join(HERE, "programs", "cpubench.c")
    rv = os.path.join(work, "cpubench.riscv64")
    native = os.path.join(work, "cpubench.native")
    subprocess.run(["riscv64-linux-gnu-gcc", "-static", "-O2", "-pthread", "-o", rv, src, "-lm"],
                   check=True)
    subprocess.run(["gcc", "-O2", "-pthread", "-o", native, src, "-lm"], check=True)
    with open(rv, "rb") as f:
        rv_bytes = f.read()
    # For dvmm: only the program (dvmm adds its own dvmm/cmd archive).
    prog_cpio = make_cpio({"opt/cpubench": (rv_bytes, 0o755)}, os.path.join(work, "cpubench.cpio"))
    return rv_bytes, prog_cpio, native


def qemu_initrd(work, gdir, name, cmd, extra_files=None):
    """The initrd QEMU gets: the default initramfs + a newc cpio with dvmm/cmd (+ files)."""
    files = {"dvmm/cmd": (("# written by bench/run.py\n" + cmd + "\n").encode(), 0o755)}
    files.update(extra_files or {})
    cpio = make_cpio(files, os.path.join(work, f"qemu-{name}.cpio"))
    return concat_initrd([os.path.join(gdir, "initramfs.cpio.gz"), cpio],
                         os.path.join(work, f"qemu-{name}.initrd"))


# ------------------------------------------------------------------------------------------
# running a guest

class Run:
    """One guest process: wall times of the init line and of the exit, console output."""

    def __init__(self, argv, timeout, stop_after=None, stdin_pipe=False, env=None):
        self.argv = argv
        self.out = b""
        self.t_init = None
        self.uptime = None
        self.t_exit = None
        self.rc = None
        self.timed_out = False
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        done = threading.Event()

        def reader():
            while True:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                now = time.monotonic()
                self.out += chunk
                if self.t_init is None and INIT_LINE in self.out:
                    self.t_init = now - start
                if self.uptime is None:
                    m = UPTIME_RE.search(self.out)
                    if m:
                        self.uptime = float(m.group(1))
                if stop_after and stop_after(self):
                    done.set()
            done.set()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        if not done.wait(timeout):
            self.timed_out = True
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        else:
            proc.wait()
        self.t_exit = time.monotonic() - start
        self.rc = proc.returncode
        th.join(5)
        if proc.stdin:
            proc.stdin.close()
        proc.stdout.close()

    def text(self):
        return self.out.decode(errors="replace")

    def fail(self, what):
        """An error message: a one-line summary, then the command and the console's tail."""
        lines = [l.strip() for l in self.text().splitlines() if l.strip()]
        last = [l for l in lines if not l.startswith(("dvmm-guest: command exited", "dvmm:"))]
        why = "timed out" if self.timed_out else f"exit status {self.rc}"
        if last:
            why += f", console: `{last[-1][:100]}`"
        tail = "\n".join(lines[-15:])
        return f"{what} failed ({why})\n{shlex.join(self.argv)}\n{tail}"


class Machine:
    """How to boot the guest on one VMM; argv builders for the three kinds of run."""

    def __init__(self, name, args, gdir, work):
        self.name, self.args, self.gdir, self.work = name, args, gdir, work
        self.kernel = os.path.join(gdir, "Image")
        self.initrd = os.path.join(gdir, "initramfs.cpio.gz")

    def argv(self, cmd_name=None, cmd=None, extra_cpio=None, extra_files=None, vcpus=2):
        raise NotImplementedError


class Qemu(Machine):
    def argv(self, cmd_name=None, cmd=None, extra_cpio=None, extra_files=None, vcpus=2):
        initrd = self.initrd
        if cmd is not None:
            initrd = qemu_initrd(self.work, self.gdir, cmd_name, cmd, extra_files)
        t = self.args.timeout
        return ["timeout", "--kill-after=5", str(t), QEMU, "-M", "virt", "-smp", str(vcpus),
                "-m", self.args.memory, "-nographic", "-bios", OPENSBI, "-kernel", self.kernel,
                "-initrd", initrd, "-append", self.args.append]


class Dvmm(Machine):
    def argv(self, cmd_name=None, cmd=None, extra_cpio=None, extra_files=None, vcpus=2):
        t = self.args.timeout
        a = [self.args.dvmm, "run", "--vcpus", str(vcpus), "--memory", self.args.memory,
             "--kernel", self.kernel, "--initrd", self.initrd, "--append", self.args.append]
        if cmd is None:
            return a
        a += ["--timeout", str(t)]
        if extra_cpio:
            a += ["--initrd-extra", extra_cpio]
        return ["timeout", "--kill-after=5", str(t + 10)] + a + ["--"] + shlex.split(cmd)


def boot_to_init(m):
    """Interactive boot (no /dvmm/cmd), stdin a pipe; stop once init printed its uptime."""
    verbose = "dvmm.verbose" in m.args.append.split()
    r = Run(m.argv(), m.args.timeout, stdin_pipe=True,
            stop_after=lambda r: r.uptime is not None if verbose else r.t_init is not None)
    if r.t_init is None:
        raise RuntimeError(r.fail(f"{m.name} boot to init"))
    return r


def run_true(m):
    r = Run(m.argv("true", "true"), m.args.timeout + 15)
    if r.rc != 0 or r.timed_out:
        raise RuntimeError(r.fail(f"{m.name} run -- true"))
    return r


def run_cpubench(m, threads, prog_bytes, prog_cpio):
    cmd = f"/opt/cpubench {threads} {m.args.work_factor}"
    r = Run(m.argv(f"cpubench{threads}", cmd, extra_cpio=prog_cpio,
                   extra_files={"opt/cpubench": (prog_bytes, 0o755)}), m.args.timeout + 15)
    mm = CPUBENCH_RE.search(r.text())
    if r.rc != 0 or not mm:
        raise RuntimeError(r.fail(f"{m.name} cpubench {threads}"))
    return dict(zip(PARTS, map(float, mm.groups()[1:]))), r


def run_native(exe, threads, work):
    out = subprocess.run([exe, str(threads), str(work)], capture_output=True, text=True, check=True,
                         timeout=600).stdout
    mm = CPUBENCH_RE.search(out)
    return dict(zip(PARTS, map(float, mm.groups()[1:])))


# ------------------------------------------------------------------------------------------
# report

def fmt_s(x):
    return "—" if x is None else (f"{x:.3f} s" if x < 10 else f"{x:.2f} s")


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"**{a / b:.2f}×**"


def med(xs):
    return statistics.median(xs) if xs else None


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024 // 1024 + 1} GiB RAM"
                break
    return f"{os.cpu_count()} CPUs (nproc), {model}, {mem}, {platform.system()} {platform.release()}"


def build_revision(rev, work):
    """Builds dvmm at git revision `rev` (a clean export, not the work tree) in work/; returns
    (path of the binary, full commit id)."""
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", rev + "^{commit}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        die(f"--dvmm-rev {rev}: not a commit")
    commit = commit.stdout.strip()
    tree = os.path.join(work, f"dvmm-{commit[:12]}")
    exe = os.path.join(tree, "build", "dvmm")
    if not os.path.exists(exe):
        log(f"building dvmm at {commit[:12]} in {tree}")
        shutil.rmtree(tree, ignore_errors=True)
        os.makedirs(tree)
        archive = subprocess.Popen(["git", "-C", ROOT, "archive", commit], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tree], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            die("git archive failed")
        subprocess.run(["cmake", "-S", tree, "-B", os.path.join(tree, "build"), "-G", "Ninja",
                        "-DDVMM_TESTS=OFF"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["ninja", "-C", os.path.join(tree, "build"), "dvmm"], check=True,
                       stdout=subprocess.DEVNULL)
    return exe, commit


def versions(args):
    q = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    dv = "—"
    if os.path.exists(args.dvmm):
        g = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "src"],
                               capture_output=True, text=True).stdout.strip()
        dv = f"dvmm at {g}{' + uncommitted src/ changes' if dirty else ''}"
        if args.dvmm_commit:
            dv = f"dvmm at commit {args.dvmm_commit[:12]} (built from `git archive`)"
        elif os.path.commonpath([args.dvmm, ROOT]) != ROOT:
            dv = f"dvmm binary `{args.dvmm}`"
    return q, dv


def read_manifest(gdir):
    """The guest image's manifest (guest/build.sh): {key: value}."""
    manifest = {}
    mf = os.path.join(gdir, "manifest")
    if os.path.exists(mf):
        with open(mf) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    manifest[k] = v
    return manifest


def report(args, gdir, res, missing, started, load):
    """missing: {"init"|"true"|"cpu": why dvmm was not measured}."""
    L = []
    q_ver, d_ver = versions(args)
    manifest = read_manifest(gdir)
    L.append(f"### Results of {started:%Y-%m-%d %H:%M} UTC")
    L.append("")
    L.append(f"- Machine: {machine_info()}; load average {load[0]} at start, {load[1]} at end.")
    L.append(f"- QEMU: `{q_ver}`, `-M virt -bios {OPENSBI} -nographic -m {args.memory}` "
             f"(TCG, multi-threaded by default: a host thread per hart); dvmm: {d_ver}, `{os.path.basename(args.dvmm)} run` (release build).")
    kv = manifest.get("kernel_release") or manifest.get("kernelrelease") or "6.1"
    L.append(f"- Guest: the default image `{os.path.basename(os.path.realpath(gdir))}` "
             f"(Linux {kv}, busybox initramfs), the same `Image` and `initramfs.cpio.gz` on both; "
             f"kernel command line `{args.append}`.")
    L.append(f"- Command: `{args.command_line}`")
    L.append(f"- Repetitions: {args.reps} for the boot, {args.cpu_reps} for cpubench; "
             "each figure is the median (min in the boot table); dvmm and QEMU runs are "
             "interleaved.")
    for note in args.note:
        L.append(f"- Note: {note}")
    for why in dict.fromkeys(missing.values()):
        what = [k for k, v in missing.items() if v == why]
        names = {"init": "boot to init", "true": "`run -- true`", "cpu": "cpubench"}
        L.append(f"- dvmm {', '.join(names[k] for k in what)}: **not yet measured** ({why}).")
    L.append("")
    L.append("**Boot, 2 harts** (wall time from process start; ratio = dvmm / QEMU)")
    L.append("")
    L.append("| measure | QEMU median | QEMU min | dvmm median | dvmm min | ratio (median) | ratio (min) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for key, label in (("init", "start → `init reached` on the console"),
                       ("uptime", "guest uptime at init (kernel clock)"),
                       ("true", "`run -- true` total (boot + poweroff)")):
        q = res["boot"]["qemu"].get(key, [])
        d = res["boot"]["dvmm"].get(key, [])
        dm = lambda xs, f: f(xs) if xs else None
        if key in ("init", "uptime", "true") and missing.get("init" if key == "uptime" else key) and not d:
            dcols = ["not yet measured", "not yet measured", "—", "—"]
        else:
            dcols = [fmt_s(dm(d, med)), fmt_s(dm(d, min)), fmt_ratio(dm(d, med), dm(q, med)),
                     fmt_ratio(dm(d, min), dm(q, min))]
        L.append(f"| {label} | {fmt_s(dm(q, med))} | {fmt_s(dm(q, min))} | "
                 + " | ".join(dcols) + " |")
    L.append("")
    L.append(f"**cpubench** (`/opt/cpubench THREADS {args.work_factor}`; guest-clock seconds per "
             "part, median; 2-hart guest; native = the same source built for the host with "
             "`gcc -O2`)")
    L.append("")
    L.append("| threads | part | native | QEMU | dvmm | **dvmm / QEMU** | QEMU / native | dvmm / native |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for t in (1, 2):
        for p in PARTS:
            n = med([r[p] for r in res["cpu"]["native"].get(t, [])])
            q = med([r[p] for r in res["cpu"]["qemu"].get(t, [])])
            d = med([r[p] for r in res["cpu"]["dvmm"].get(t, [])])
            if missing.get("cpu") and d is None:
                dcols = ["not yet measured", "—", "—"]
            else:
                dcols = [fmt_s(d), fmt_ratio(d, q), fmt_ratio(d, n).replace("**", "")]
            L.append(f"| {t} | {p} | {fmt_s(n)} | {fmt_s(q)} | {dcols[0]} | {dcols[1]} | "
                     f"{fmt_ratio(q, n).replace('**', '')} | {dcols[2]} |")
    L.append("")
    return "\n".join(L)


def replace_section(marker, body, doc=DOC):
    begin, end = f"<!-- bench:{marker}:begin -->", f"<!-- bench:{marker}:end -->"
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(doc, "w") as f:
        f.write(text)
    log(f"recorded the {marker} section in {os.path.relpath(doc, ROOT)}")


# ------------------------------------------------------------------------------------------
# profile

def short_symbol(sym, width=90):
    sym = sym.strip()
    for ns in ("dvmm::cpu::fpu::(anonymous namespace)::", "dvmm::cpu::(anonymous namespace)::",
               "(anonymous namespace)::"):
        sym = sym.replace(ns, "fpu::" if "fpu" in ns else "")
    sym = sym.replace("dvmm::", "")
    return sym if len(sym) <= width else sym[:width - 3] + "..."


def perf_rows(data, children):
    """(children %, self %, object, symbol) rows of `perf report`."""
    argv = ["perf", "report", "-i", data, "--stdio", "-t", "\t", "--sort", "dso,symbol",
            "-g", "none", "--percent-limit", "0.3"]
    argv.append("--children" if children else "--no-children")
    p = subprocess.run(argv, capture_output=True, text=True)
    rows = []
    for line in p.stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        f = [x.strip() for x in line.split("\t")]
        try:
            pcts = [float(x.rstrip("%")) for x in f[:2 if children else 1]]
        except ValueError:
            continue
        dso, sym = f[len(pcts)], f[len(pcts) + 1]
        sym = re.sub(r"^\[[.k]\]\s*", "", sym)
        rows.append((pcts[0], pcts[-1], dso, sym))
    return rows


# Self time grouped by what the host CPU was doing.
CATEGORIES = [
    ("instruction handlers (`op_*`)", lambda d, s: re.search(r"\bop_\w+<", s)),
    ("soft-float FPU (`fpu::*`)", lambda d, s: "fpu::" in s),
    ("dispatch loop (`Hart::execute_slice`, `Hart::run`)",
     lambda d, s: re.search(r"Hart::(execute_slice|run)\b", s)),
    ("fetch and decode (`fetch_slow`, `decode*`)", lambda d, s: re.search(r"fetch|decode", s)),
    ("loads/stores off the fast path, address translation",
     lambda d, s: re.search(r"load_slow|store_slow|translate|tlb|Mmu|walk|amo", s, re.I)),
    ("libc `memcpy`/`memmove`/`memset` (guest memory accessed on the slow path, image loading)",
     lambda d, s: d.startswith("libc") and re.search(r"mem(cpy|move|set)", s)),
    ("host kernel", lambda d, s: d.startswith("[kernel")),
]


def categorize(rows):
    sums = {name: 0.0 for name, _ in CATEGORIES}
    sums["other"] = 0.0
    for _, self_pct, dso, sym in rows:
        for name, pred in CATEGORIES:
            if pred(dso, short_symbol(sym, 10**6)):
                sums[name] += self_pct
                break
        else:
            sums["other"] += self_pct
    return sums


def instruction_rate(argv, timeout):
    """Runs argv with `run -v` (without perf): guest instructions per second, as a phrase."""
    i = argv.index("run") + 1
    r = Run(argv[:i] + ["-v"] + argv[i:], timeout)
    counts = [int(x) for x in re.findall(r"dvmm: hart \d+: (\d+) instructions", r.text())]
    m = re.search(r"dvmm: ran for ([0-9.]+) s", r.text())
    if r.rc != 0 or not counts or not m:
        return ""
    secs = float(m.group(1))
    return (f"; without perf, `run -v` counts {sum(counts) / 1e6:.0f} M guest instructions "
            f"in {secs:.2f} s, {sum(counts) / secs / 1e6:.0f} M instructions/s over all harts, "
            f"{max(counts) / secs / 1e6:.0f} M/s on the busiest")


def profile(args, dv, prog_cpio):
    if not shutil.which("perf"):
        die("perf is missing (apt-get install linux-perf)")
    out = []
    out.append(f"### Profile of dvmm ({datetime.datetime.utcnow():%Y-%m-%d})")
    out.append("")
    out.append(f"`perf record -e cpu-clock -F {args.perf_freq} --call-graph dwarf` of "
               f"`{os.path.basename(args.dvmm)} run` (release build, `-O2 -g`), all threads; "
               "host-side time only (which guest code runs is not visible here). Reproduce with "
               "`bench/run.sh --profile-only`; the data stays in "
               f"`{os.path.relpath(args.work, ROOT)}/perf-*.data` for `perf report -i`. "
               "*Self* is time in the function itself, *incl.* includes its callees and inlined "
               "code.")
    out.append("")
    w = args.work_factor
    cases = [("boot", "`run --vcpus 2 -- true` (boot + poweroff)", dv.argv("true", "true")),
             ("cpubench1", f"`run --vcpus 2 -- /opt/cpubench 1 {w}`",
              dv.argv("cpubench1", f"/opt/cpubench 1 {w}", extra_cpio=prog_cpio)),
             ("cpubench2", f"`run --vcpus 2 -- /opt/cpubench 2 {w}`",
              dv.argv("cpubench2", f"/opt/cpubench 2 {w}", extra_cpio=prog_cpio))]
    boring = re.compile(r"^(clone3?|start_thread|0x[0-9a-f]+|_start|__libc_start\w*|main|"
                        r"vmm::Vcpu::(loop|thread_main)|cpu::Hart::(run|execute_slice))$")
    for name, label, argv in cases:
        data = os.path.join(args.work, f"perf-{name}.data")
        if argv[0] == "timeout":  # perf must see dvmm itself
            argv = argv[3:]
        rate = instruction_rate(argv, args.timeout + 30)
        pargv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(args.perf_freq),
                 "--call-graph", "dwarf,16384", "-o", data, "--"] + argv
        log("profiling:", shlex.join(pargv))
        r = Run(pargv, args.timeout + 60)
        if r.rc != 0:
            log(r.fail(f"perf {name}"))
            out.append(f"**{label}**: the run failed (rc={r.rc}); no profile.")
            out.append("")
            continue
        self_rows = perf_rows(data, children=False)
        incl_rows = perf_rows(data, children=True)
        out.append(f"**{label}** ({r.t_exit:.1f} s wall under perf{rate})")
        out.append("")
        out.append("| where | self |")
        out.append("|---|---:|")
        for cat, pct in sorted(categorize(self_rows).items(), key=lambda kv: -kv[1]):
            if pct >= 0.5:
                out.append(f"| {cat} | {pct:.1f}% |")
        out.append("")
        out.append("| self | incl. | object | function |")
        out.append("|---:|---:|---|---|")
        incl = {(d, s): c for c, _, d, s in incl_rows}
        for _, pct, dso, sym in self_rows[:args.perf_top]:
            c = incl.get((dso, sym))
            out.append(f"| {pct:.1f}% | {'' if c is None else f'{c:.1f}%'} | {dso} | "
                       f"`{short_symbol(sym)}` |")
        out.append("")
        top_self = {(d, s) for _, _, d, s in self_rows[:args.perf_top]}
        extra = [(c, d, s) for c, sp, d, s in incl_rows
                 if d == os.path.basename(args.dvmm) and c >= 3 and (d, s) not in top_self
                 and not boring.match(short_symbol(s, 10**6))][:8]
        if extra:
            out.append("Inclusive time of other dvmm functions (≥ 3%): " + ", ".join(
                f"`{short_symbol(s, 60)}` {c:.1f}%" for c, d, s in extra) + ".")
            out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="boot repetitions (default 5)")
    ap.add_argument("--cpu-reps", type=int, default=3, help="cpubench repetitions (default 3)")
    ap.add_argument("--record", action="store_true", help="write the results into docs/BENCHMARKS.md")
    ap.add_argument("--doc", default=DOC, help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help="also profile dvmm with perf")
    ap.add_argument("--profile-only", action="store_true", help="only the dvmm profile")
    ap.add_argument("--no-dvmm", action="store_true", help="QEMU and native only")
    ap.add_argument("--no-qemu", action="store_true", help="dvmm and native only")
    ap.add_argument("--no-boot", action="store_true", help="skip the boot benchmarks")
    ap.add_argument("--no-cpu", action="store_true", help="skip cpubench")
    ap.add_argument("--dvmm", default=os.path.join(ROOT, "build", "dvmm"),
                    help="the dvmm binary (default: build/dvmm, the work tree's build)")
    ap.add_argument("--dvmm-rev", help="build and measure dvmm at this git revision instead "
                    "(a clean export under build/bench/, without the work tree's changes)")
    ap.add_argument("--guest-dir", help="image directory (default: guest/build.sh --print-dir)")
    ap.add_argument("--memory", default="512M")
    ap.add_argument("--note", action="append", default=[],
                    help="a line to add to the recorded results (repeatable)")
    ap.add_argument("--append", default="console=ttyS0 quiet dvmm.verbose",
                    help="kernel command line for both VMMs")
    ap.add_argument("--work-factor", type=int, default=10,
                    help="cpubench's argv[2]: repetitions of the integer and float work (default 10)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds for one guest run")
    ap.add_argument("--perf-freq", type=int, default=499)
    ap.add_argument("--perf-top", type=int, default=15)
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench"))
    args = ap.parse_args()
    args.dvmm = os.path.abspath(args.dvmm)
    args.dvmm_commit = None
    shown, skip = [], False
    for a in sys.argv[1:]:  # --doc (for testing the recorder) is not part of the recipe
        if not skip and not a.startswith("--doc"):
            shown.append(a)
        skip = a == "--doc"
    args.command_line = "bench/run.sh " + shlex.join(shown)
    os.makedirs(args.work, exist_ok=True)

    if args.dvmm_rev:
        args.dvmm, args.dvmm_commit = build_revision(args.dvmm_rev, args.work)
    gdir = guest_dir(args.guest_dir)
    log("guest image:", gdir)
    prog_bytes, prog_cpio, native = build_programs(args.work)
    qemu = Qemu("QEMU", args, gdir, args.work)
    dv = Dvmm("dvmm", args, gdir, args.work)

    if args.profile_only:
        body = profile(args, dv, prog_cpio)
        print(body)
        if args.record:
            replace_section("profile", body, args.doc)
        return

    dvmm_reason = None  # why dvmm is not measured at all
    if args.no_dvmm:
        dvmm_reason = "run with --no-dvmm"
    elif not os.access(args.dvmm, os.X_OK):
        dvmm_reason = f"{os.path.relpath(args.dvmm, ROOT)} is not built"
    machines = []
    if not args.no_qemu:
        machines.append(("qemu", qemu))
    if dvmm_reason is None:
        machines.append(("dvmm", dv))

    started = datetime.datetime.utcnow()
    load = [" / ".join(open("/proc/loadavg").read().split()[:3]), None]
    res = {"boot": {"qemu": {}, "dvmm": {}},
           "cpu": {"qemu": {}, "dvmm": {}, "native": {}}}
    failed = {}

    def attempt(key, bench, fn):
        if (key, bench) in failed:  # one failure is enough: no more of the same
            return None
        try:
            return fn()
        except RuntimeError as e:
            log(str(e))
            failed[(key, bench)] = str(e).splitlines()[0]
            return None

    if not args.no_boot:
        for rep in range(args.reps):
            for key, m in machines:
                r = attempt(key, "init", lambda: boot_to_init(m))
                if r:
                    res["boot"][key].setdefault("init", []).append(r.t_init)
                    if r.uptime is not None:
                        res["boot"][key].setdefault("uptime", []).append(r.uptime)
                    log(f"boot {rep + 1}/{args.reps} {m.name}: init at {r.t_init:.3f} s "
                        f"(guest uptime {r.uptime})")
                r = attempt(key, "true", lambda: run_true(m))
                if r:
                    res["boot"][key].setdefault("true", []).append(r.t_exit)
                    log(f"boot {rep + 1}/{args.reps} {m.name}: run -- true {r.t_exit:.3f} s")

    if not args.no_cpu:
        for t in (1, 2):
            for rep in range(args.cpu_reps):
                res["cpu"]["native"].setdefault(t, []).append(run_native(native, t, args.work_factor))
                for key, m in machines:
                    out = attempt(key, "cpu", lambda: run_cpubench(m, t, prog_bytes, prog_cpio))
                    if out:
                        res["cpu"][key].setdefault(t, []).append(out[0])
                        log(f"cpubench threads={t} {rep + 1}/{args.cpu_reps} {m.name}: {out[0]}")
                log(f"cpubench threads={t} {rep + 1}/{args.cpu_reps} native: "
                    f"{res['cpu']['native'][t][-1]}")

    missing = {}
    for bench in ("init", "true", "cpu"):
        if dvmm_reason:
            missing[bench] = dvmm_reason
        elif ("dvmm", bench) in failed:
            missing[bench] = failed[("dvmm", bench)]
    load[1] = " / ".join(open("/proc/loadavg").read().split()[:3])
    body = report(args, gdir, res, missing, started, load)
    print(body)
    if args.record:
        replace_section("results", body, args.doc)
    if args.profile and dvmm_reason is None:
        pbody = profile(args, dv, prog_cpio)
        print(pbody)
        if args.record:
            replace_section("profile", pbody, args.doc)
    if any(k == "qemu" for k, _ in failed):
        sys.exit(1)


if __name__ == "__main__":
    main()
