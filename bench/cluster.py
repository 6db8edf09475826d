#!/usr/bin/env python3
"""dvmm distributed-VM benchmarks (issue 4): each figure against a reference from the same run.

Measures, in one run:
  1. DSM page faults: bench/programs/dsm_faults.c on 2 nodes x 1 vCPU (pages homed on node 0,
     touched from CPU 1 on node 1): guest-measured ns per page for read misses, upgrades,
     write misses and the home fetching pages back, and the monitor's fault_remote_home
     histogram (DVMM_STATS_DIR) with the boot's share subtracted (2-node `run -- true` runs of
     step 4 as the baseline). Reference: the UCX round trip of a 4 KiB active message
     (`ucx_perftest -t ucp_am_lat -s 4096`, server + client on this host, the transport and
     settings dvmm uses), and dvmm's own transport (`dvmm_transport_test bench`).
  2. Cross-node IPIs: bench/programs/ipi_pingpong.c (two threads on CPUs of different nodes
     ping-ponging through futexes, i.e. reschedule IPIs to idle CPUs): the monitor's "ipi"
     histogram (one-way, SBI call to sip raised on the other node), boot subtracted, and the
     guest's round trip time, against the UCX 8 B round trip.
  3. CPU-bound parallel work without sharing: bench/programs/parallel.c (cpubench's integer
     part, one pinned thread per vCPU) on 2 nodes x 1 vCPU against 1 thread on 1 vCPU.
  4. Boot: 2 nodes x 1 vCPU against 1 node x 2 vCPUs: wall time to the `init reached` line
     (interactive boot, as bench/run.py), the uptime init prints, and the total wall time of
     `run -- true`.

Prints markdown tables; --record writes them into docs/BENCHMARKS.md between the
`bench:cluster` markers (creating the "Distributed VM (issue 4)" section if needed).

Usage: bench/cluster.sh [--reps N] [--record] [--fault-pages P] [--fault-rounds R]
                        [--ipi-iters N] [--work W] [--no-transport-test] [--dvmm PATH]
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing run.py
import run as benchrun  # noqa: E402  (bench/run.py: guest image, cpio, Run, the doc recorder)
from run import log, die, med, fmt_s  # noqa: E402

DOC = os.path.join(ROOT, "docs", "BENCHMARKS.md")
PERFTEST = "ucx_perftest"
APPEND = "console=ttyS0 quiet loglevel=1 dvmm.verbose"
PROGRAMS = ("dsm_faults", "ipi_pingpong", "parallel")
EP_CFG_RE = re.compile(r"ep_cfg\[\d+\]: (.*)$", re.M)

SECTION_INTRO = """\
## Distributed VM (issue 4)

One guest across several `dvmm` node processes on this host (`dvmm run --nodes N`), each
figure next to a reference measured in the same run: the DSM's page fault service time and
the cross-node IPI latency against the UCX round trip on the same transport (targets
≤ 1.5×), parallel CPU-bound throughput on 2 nodes × 1 vCPU against 1 vCPU (target ≥ 1.6×),
and the boot on 2 nodes × 1 vCPU against 1 node × 2 vCPUs.

### How to run

    bench/cluster.sh                  # everything, prints markdown tables (2.5 minutes when quiet)
    bench/cluster.sh --record         # and writes the results below
    bench/cluster.sh --reps 5         # more repetitions of the boot and parallel runs
    bench/cluster.sh --help           # --fault-pages, --ipi-iters, --work, --no-transport-test, ...

It needs `build/dvmm` (`scripts/build.sh build`), the guest image (`guest/build.sh`), the
packages `gcc-riscv64-linux-gnu libc6-dev-riscv64-cross cpio ucx-utils` (`ucx_perftest`) and,
for the second transport reference, `build/tests/dvmm_transport_test`. The guest programs
(`bench/programs/dsm_faults.c`, `ipi_pingpong.c`, `parallel.c`) are cross-compiled and added
under `/opt/` with `--initrd-extra`; work files and the per-run statistics go to
`build/bench/cluster/`. Run it on a quiet machine: on 2 host CPUs every other process delays
the node processes' vCPU and transport threads, and the latencies grow with the load.

### What is measured

- **References.** UCX 1.13 with the same `UCX_TLS` as dvmm (default `all`) and the settings
  dvmm's transport makes (`UCX_MM_ERROR_HANDLING=y`, `UCX_KEEPALIVE_INTERVAL=inf`, endpoints
  with peer error handling: `ucx_perftest -e`); UCX picks the same lane for both (logged:
  `am(sysv/memory)` on this host). `ucx_perftest -t ucp_am_lat` (UCP active messages, what
  dvmm sends), server and client on this host, 8 B and 4 KiB: its median one-way latency is
  half the round trip, so **RTT = 2 × p50**, measured at the start and at the end of the run,
  the lower one taken. For scale: the same with `-I -E sleep` (both sides sleep on the
  worker's event fd: a round trip with wake-ups), and `dvmm_transport_test bench
  --no-perftest` (dvmm's own `UcxTransport`: *progress threads only*, a ping-pong run by the
  receive callbacks as DSM messages are; *after idle*, a lone request after 2 ms of silence).
- **Page faults** ([`dsm_faults.c`](../bench/programs/dsm_faults.c), 2 nodes × 1 vCPU). A
  buffer of P pages is bound to NUMA node 0 (`mbind`) and filled from a thread pinned to
  CPU 0, so node 0 is the home of every page; a thread pinned to CPU 1 (node 1) touches one
  word per page, each loop timed with `CLOCK_MONOTONIC`: reads (*read miss*: the page comes
  over), writes to the same pages (*upgrade*: no data, the home drops its copy), reads again
  (*read hit*: no fault, the loop's own cost); then CPU 0 writes (*home fetch*: the home takes
  the pages back), CPU 1 writes (*write miss*), CPU 0 writes again. R rounds; the median round.
  The guest-side *fault cost* is the phase minus the read-hit loop. Monitor side: node 1's
  `fault_remote_home` histogram (node 0's `fault_local_home` for the home fetch) from
  `DVMM_STATS_DIR`. These cover the whole run, boot included, so the boot is
  **subtracted**: count and sum (mean × count) of the run minus the medians of the 2-node
  `run -- true` runs of the boot measurement; the rest's mean is the *workload mean*.
  Percentiles cannot be subtracted and are given for the whole run. The rest also holds the
  guest kernel's own faults while the program runs (timer ticks and the scheduler move pages
  such as the one holding `jiffies` between the nodes; the table gives the count above the
  baseline next to the count the program makes), and the boot's count varies from run to
  run: read the workload mean as ±20%. The same program on 1 node × 2 vCPUs (no DSM) is the
  no-fault reference.
- **IPIs** ([`ipi_pingpong.c`](../bench/programs/ipi_pingpong.c)): two threads pinned to
  CPU 0 and CPU 1 ping-pong N times through two futex words (`FUTEX_WAIT`/`FUTEX_WAKE`, no
  spinning), so every wake-up is an IPI from the guest kernel to an idle CPU. Monitor side:
  the `ipi` histograms of both nodes (one-way, from the sender's SBI call to the target hart's
  `sip` raised on the other node, both processes on this host's `CLOCK_MONOTONIC`), boot
  subtracted as above, and the DSM faults per round trip. Guest side: the ping-pong's round
  trip (two wake-ups, plus the futex words and the scheduler's data moving between the
  nodes), and the same on 1 node × 2 vCPUs.
- **Parallel** ([`parallel.c`](../bench/programs/parallel.c): cpubench's integer part, W
  repetitions per thread, thread *i* pinned to CPU *i*, thread-local data only): 2 threads on
  2 nodes × 1 vCPU against 1 thread on `--vcpus 1`; throughput = threads × W / wall time (guest
  clock). 2 threads on 1 node × 2 vCPUs show what the host's 2 CPUs give without the DSM.
- **Boot**, 2 vCPUs in both: 1 node × 2 vCPUs (`--vcpus 2 --memory 512M`) and 2 nodes ×
  1 vCPU (`--nodes 2 --vcpus-per-node 1 --memory-per-node 256M`), interleaved: the wall time
  to the guest's `dvmm-guest: init reached` line in an interactive boot (no command, stdin a
  pipe, killed once init printed its uptime, as `bench/run.py` does: with a command dvmm hides
  that line), the uptime init prints (guest kernel clock, after init's mounts), and the total
  wall time of `dvmm run -- true` (boot, power-off, every node process gone). Kernel command
  line `console=ttyS0 quiet loglevel=1 dvmm.verbose` everywhere.
- **Where the time goes.** The page-fault and IPI runs use `dvmm run -v`, which prints at the
  end the 3 pages per home node most often taken back from another node and each hart's
  instruction and exit counts; kernel pages are named with the symbols of the guest's
  `vmlinux`. The fault service summed over a 2-node boot is time a node's only vCPU waited.

"""


# ------------------------------------------------------------------------------------------
# inputs

def build_programs(work):
    files = {}
    for p in PROGRAMS:
        src = os.path.join(HERE, "programs", p + ".c")
        exe = os.path.join(work, p + ".riscv64")
        subprocess.run(["nice", "riscv64-linux-gnu-gcc", "-static", "-O2", "-pthread", "-Wall",
                        "-I", os.path.join(HERE, "programs"), "-o", exe, src, "-lm"], check=True)
        with open(exe, "rb") as f:
            files["opt/" + p] = (f.read(), 0o755)
    return benchrun.make_cpio(files, os.path.join(work, "cluster-programs.cpio"))


def git_info():
    g = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    return g, bool(dirty)


def loadavg():
    return " / ".join(open("/proc/loadavg").read().split()[:3])


def load1():
    return float(open("/proc/loadavg").read().split()[0])


# ------------------------------------------------------------------------------------------
# UCX references

def ucx_env():
    """The UCX settings dvmm's transport makes (src/cluster/ucx_transport.cpp), unless set."""
    env = os.environ.copy()
    if not any(k in env for k in ("UCX_POSIX_ERROR_HANDLING", "UCX_MM_ERROR_HANDLING")):
        env["UCX_MM_ERROR_HANDLING"] = "y"
    env.setdefault("UCX_KEEPALIVE_INTERVAL", "inf")
    env.setdefault("UCX_LOG_LEVEL", "info")  # for the ep_cfg line (which transport)
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def perftest(size, iters, sleep=False):
    """ucx_perftest ucp_am_lat server + client on localhost: {p50_us, avg_us, ep_cfg}."""
    env = ucx_env()
    for attempt in range(3):
        port = str(free_port())
        common = ["-t", "ucp_am_lat", "-s", str(size), "-n", str(iters), "-e", "-p", port]
        if sleep:
            common += ["-I", "-E", "sleep"]
        server = subprocess.Popen([PERFTEST] + common, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        time.sleep(0.5)
        try:
            client = subprocess.run([PERFTEST, "127.0.0.1"] + common, env=env, text=True,
                                    capture_output=True, timeout=180)
            out = client.stdout + client.stderr
        except subprocess.TimeoutExpired:
            out = ""
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        server.stdout.close()
        for line in out.splitlines():
            if line.startswith("Final:"):
                f = line.split()
                cfg = EP_CFG_RE.search(out)
                return {"p50_us": float(f[2]), "avg_us": float(f[3]),
                        "ep_cfg": cfg.group(1).strip() if cfg else None}
        log(f"ucx_perftest -s {size} failed (attempt {attempt + 1}): "
            + " | ".join(out.strip().splitlines()[-3:]))
    return None


def perftest_round(args, tag):
    res = {}
    for size in (8, 4096):
        r = perftest(size, args.perftest_iters)
        if r:
            res[size] = r
            log(f"ucx_perftest ({tag}) {size} B: one-way p50 {r['p50_us']:.3f} us "
                f"(avg {r['avg_us']:.3f} us), {r['ep_cfg']}")
        r = perftest(size, max(args.perftest_iters // 20, 1000), sleep=True)
        if r:
            res[f"{size}_sleep"] = r
            log(f"ucx_perftest -E sleep ({tag}) {size} B: one-way p50 {r['p50_us']:.3f} us")
    return res


TT_ROW_RE = re.compile(r"^\s+one-way us, (receivers|poll_until|thread spins|after idle) (\d+) B"
                       r"\s+([-\d.]+)\s+([-\d.]+)")


def transport_test(args):
    """dvmm_transport_test bench: {(kind, size): one-way us (direct send path)}."""
    tls = os.environ.get("UCX_TLS", "all")
    argv = ["timeout", "300", args.transport_test, "bench", "--tls", tls, "--iters",
            str(args.transport_iters), "--no-perftest"]
    log("running", shlex.join(argv[2:]))
    p = subprocess.run(argv, capture_output=True, text=True)
    res = {}
    for line in p.stdout.splitlines():
        m = TT_ROW_RE.match(line)
        if m and float(m.group(3)) > 0:
            res[(m.group(1), int(m.group(2)))] = float(m.group(3))
    if not res:
        log("dvmm_transport_test bench gave no figures: " + (p.stdout + p.stderr)[-500:])
    return res


# ------------------------------------------------------------------------------------------
# guest runs

class Guest:
    def __init__(self, args, gdir, cpio):
        self.args, self.gdir, self.cpio = args, gdir, cpio
        self.kernel = os.path.join(gdir, "Image")
        self.initrd = os.path.join(gdir, "initramfs.cpio.gz")
        self.stats_root = os.path.join(args.work, "stats")
        shutil.rmtree(self.stats_root, ignore_errors=True)
        os.makedirs(self.stats_root)

    def argv(self, nodes, vcpus, cmd, extra=True, verbose=False):
        a = [self.args.dvmm, "run"] + (["-v"] if verbose else [])
        if nodes > 1:
            a += ["--nodes", str(nodes), "--vcpus-per-node", str(vcpus // nodes),
                  "--memory-per-node", self.args.memory_per_node]
        else:
            a += ["--vcpus", str(vcpus), "--memory", self.args.memory]
        a += ["--kernel", self.kernel, "--initrd", self.initrd, "--append", APPEND,
              "--timeout", str(self.args.timeout)]
        if extra:
            a += ["--initrd-extra", self.cpio]
        if cmd is None:  # interactive: killed by the caller
            return a
        return ["timeout", "--kill-after=5", str(self.args.timeout + 30)] + a + ["--"] + cmd

    def boot_to_init(self, label, nodes, vcpus):
        """Interactive boot (no command, stdin a pipe), stopped once init printed its uptime
        (as bench/run.py does: with a command, dvmm hides the `init reached` line)."""
        argv = self.argv(nodes, vcpus, None, extra=False)
        r = benchrun.Run(argv, self.args.timeout, stdin_pipe=True,
                         stop_after=lambda r: r.uptime is not None)
        if r.t_init is None or r.uptime is None:
            raise RuntimeError(r.fail(label))
        return r

    def run(self, label, nodes, vcpus, cmd, extra=True, stats=False, env_extra=None,
            verbose=False):
        """Returns (Run, {rank: stats dict} or None); raises RuntimeError on failure."""
        env = os.environ.copy()
        env.update(env_extra or {})
        sdir = None
        if stats:
            sdir = tempfile.mkdtemp(prefix=label.replace(" ", "_") + "-", dir=self.stats_root)
            env["DVMM_STATS_DIR"] = sdir
        argv = self.argv(nodes, vcpus, cmd, extra, verbose)
        r = benchrun.Run(argv, self.args.timeout + 60, env=env)
        if r.rc != 0 or r.timed_out:
            raise RuntimeError(r.fail(label))
        st = None
        if stats:
            st = {}
            for rank in range(nodes):
                path = os.path.join(sdir, f"node{rank}.json")
                if not os.path.exists(path):
                    raise RuntimeError(f"{label}: no {path}\n{shlex.join(argv)}")
                with open(path) as f:
                    st[rank] = json.load(f)
        return r, st


def hist(st, rank, *path):
    d = st[rank]
    for k in path:
        d = d[k]
    return d


def count_sum(h):
    return h["count"], h["mean_ns"] * h["count"]


class Baseline:
    """Medians of count and sum of every histogram over the 2-node `run -- true` runs."""

    def __init__(self):
        self.runs = []

    def add(self, st):
        self.runs.append(st)

    def get(self, rank, *path):
        if not self.runs:
            return None
        cs = [count_sum(hist(st, rank, *path)) for st in self.runs]
        return med([c for c, _ in cs]), med([s for _, s in cs])

    def faults(self):
        """Median of the DSM faults (both kinds of home, all nodes) and of their total time."""
        if not self.runs:
            return 0, 0
        fs = [dsm_faults(st) for st in self.runs]
        return med([c for c, _ in fs]), med([t for _, t in fs])


def dsm_faults(st):
    """(DSM faults of all nodes, their summed service time in ns) over a whole run."""
    c = t = 0
    for rank in st:
        for k in ("fault_remote_home", "fault_local_home"):
            n, total = count_sum(st[rank]["dsm"][k])
            c += n
            t += total
    return c, t


def workload_only(st, base, ranks, *path):
    """Summed over ranks: {count, mean_ns (workload only), share, whole-run histogram}."""
    c = s = bc = bs = 0
    for rank in ranks:
        c1, s1 = count_sum(hist(st, rank, *path))
        c += c1
        s += s1
        b = base.get(rank, *path)
        if b:
            bc += b[0]
            bs += b[1]
    dc, ds = c - bc, s - bs
    out = {"count": c, "base_count": bc, "delta_count": dc,
           "mean_all_ns": s / c if c else None,
           "mean_ns": ds / dc if dc > 0 and ds > 0 else None,
           "share": dc / c if c else None,
           "hist": [hist(st, rank, *path) for rank in ranks]}
    return out


# ------------------------------------------------------------------------------------------
# parsing guest output

def parse_kv(line):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", line)}


def parse_faults(text):
    head, rounds = None, []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("dsm_faults: "):
            head = parse_kv(line)
        elif line.startswith("dsm_faults round="):
            rounds.append({k: float(v) for k, v in parse_kv(line).items()})
    if head is None or not rounds:
        raise RuntimeError("dsm_faults printed no results:\n" + text[-2000:])
    return head, rounds


def parse_line(text, prefix):
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(prefix):
            return parse_kv(line)
    raise RuntimeError(f"no `{prefix}` line in the output:\n" + text[-2000:])


BOUNCE_RE = re.compile(r"node (\d+): page (0x[0-9a-f]+) bounced (\d+) times")
HART_RE = re.compile(r"hart (\d+): (\d+) instructions; exits: (.*)$", re.M)


def parse_verbose(text):
    """`dvmm run -v` end-of-run lines: most bounced pages per home node, hart counters."""
    bounces = [(int(n), int(p, 16), int(c)) for n, p, c in BOUNCE_RE.findall(text)]
    harts = {int(h): (int(i), dict(re.findall(r"([\w-]+)=(\d+)", e)))
             for h, i, e in HART_RE.findall(text)}
    return {"bounces": bounces, "harts": harts}


class KernelSymbols:
    """Guest-physical address -> symbols of the guest kernel's image (its vmlinux)."""

    def __init__(self, gdir):
        self.syms = []
        self.load = None
        vmlinux, image = os.path.join(gdir, "vmlinux"), os.path.join(gdir, "Image")
        if not (os.path.exists(vmlinux) and shutil.which("nm")):
            return
        with open(image, "rb") as f:
            text_offset = int.from_bytes(f.read(16)[8:16], "little")
        self.load = 0x8000_0000 + text_offset  # machine/memory_map.hpp kRamBase + text_offset
        out = subprocess.run(["nm", "-n", vmlinux], capture_output=True, text=True).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "bBdDrRtT":
                self.syms.append((int(f[0], 16), f[2], f[1].lower()))
        start = [a for a, n, _ in self.syms if n == "_start"]
        self.base = start[0] if start else None
        self.end = max(a for a, _, _ in self.syms) if self.syms else 0

    def describe(self, pa, limit=8):
        if not self.syms or self.base is None:
            return ""
        va = pa - self.load + self.base
        if va < self.base or va > self.end:
            return "outside the kernel image (per-CPU areas, slab, stacks, page tables, user pages)"
        inside = [(n, t) for a, n, t in self.syms if va <= a < va + 4096
                  and not n.startswith("__key") and "." not in n]
        before = [n for a, n, _ in self.syms if a < va]
        kind = {"b": "bss", "d": "data", "r": "rodata", "t": "text"}.get(
            inside[0][1] if inside else "", "?")
        names = [n for n, _ in inside]
        if before:
            names.insert(0, f"(end of {before[-1]})")
        return (f"kernel {kind} `{va:x}`: " + ", ".join(f"`{n}`" for n in names[:limit])
                + (f", … ({len(names)} symbols)" if len(names) > limit else ""))


# ------------------------------------------------------------------------------------------
# formatting

def us(ns, digits=None):
    if ns is None:
        return "—"
    v = ns / 1000
    if digits is None:
        digits = 3 if v < 10 else (1 if v < 1000 else 0)
    return f"{v:,.{digits}f} µs"


def ratio(a, b, bold=True):
    if a is None or b is None or b == 0:
        return "—"
    r = a / b
    s = f"{r:,.2f}×" if r < 100 else f"{r:,.0f}×"
    return f"**{s}**" if bold else s


def verdict(r, target, le=True):
    if r is None:
        return "—"
    return "met" if (r <= target if le else r >= target) else "**not met**"


# ------------------------------------------------------------------------------------------

def measure(args, guest):
    res = {"boot": {"1x2": {}, "2x1": {}}, "par": {}, "errors": [], "base": Baseline()}
    failed = set()

    def attempt(key, fn):
        if key in failed:
            return None
        try:
            return fn()
        except RuntimeError as e:
            log(str(e))
            failed.add(key)
            res["errors"].append(f"{key}: {str(e).splitlines()[0]}")
            return None

    # 4. boot (first: its 2-node `run -- true` runs are the baseline for the counters)
    for rep in range(args.reps):
        for key, nodes, vcpus in (("1x2", 1, 2), ("2x1", 2, 2)):
            b = res["boot"][key]
            r = attempt(f"boot to init {key}", lambda: guest.boot_to_init(f"boot-init-{key}",
                                                                          nodes, vcpus))
            if r:
                b.setdefault("init", []).append(r.t_init)
                b.setdefault("uptime", []).append(r.uptime)
                log(f"boot {rep + 1}/{args.reps} {key}: init at {r.t_init:.2f} s (guest uptime "
                    f"{r.uptime} s)")
            out = attempt(f"run -- true {key}", lambda: guest.run(
                f"boot-true-{key}", nodes, vcpus, ["true"], extra=False, stats=nodes > 1))
            if out:
                r, st = out
                b.setdefault("true", []).append(r.t_exit)
                if st:
                    res["base"].add(st)
                log(f"boot {rep + 1}/{args.reps} {key}: run -- true {r.t_exit:.2f} s")

    # 1. page faults
    out = attempt("faults 2x1", lambda: guest.run(
        "faults-2x1", 2, 2, ["/opt/dsm_faults", str(args.fault_pages), str(args.fault_rounds)],
        stats=True, env_extra={"UCX_LOG_LEVEL": "info"}, verbose=True))
    if out:
        r, st = out
        res["faults_ep_cfg"] = sorted(set(m.strip() for m in EP_CFG_RE.findall(r.text())))
        res["faults"] = {"guest": parse_faults(r.text()), "stats": st, "wall": r.t_exit,
                         "verbose": parse_verbose(r.text())}
        log(f"dsm_faults 2x1: {res['faults']['guest'][0]}, {len(res['faults']['guest'][1])} "
            f"rounds in {r.t_exit:.1f} s")
    out = attempt("faults 1x2", lambda: guest.run(
        "faults-1x2", 1, 2, ["/opt/dsm_faults", str(args.fault_pages), str(args.fault_rounds)]))
    if out:
        res["faults_ref"] = parse_faults(out[0].text())

    # 2. IPIs
    out = attempt("ipi 2x1", lambda: guest.run(
        "ipi-2x1", 2, 2, ["/opt/ipi_pingpong", str(args.ipi_iters)], stats=True, verbose=True))
    if out:
        r, st = out
        res["ipi"] = {"guest": parse_line(r.text(), "ipi_pingpong "), "stats": st,
                      "wall": r.t_exit, "verbose": parse_verbose(r.text())}
        log(f"ipi_pingpong 2x1: {res['ipi']['guest']}")
    out = attempt("ipi 1x2", lambda: guest.run(
        "ipi-1x2", 1, 2, ["/opt/ipi_pingpong", str(args.ipi_iters)]))
    if out:
        res["ipi_ref"] = parse_line(out[0].text(), "ipi_pingpong ")
        log(f"ipi_pingpong 1x2: {res['ipi_ref']}")

    # 3. parallel
    for rep in range(args.reps):
        for key, nodes, vcpus, threads in (("1x1", 1, 1, 1), ("2x1", 2, 2, 2), ("1x2", 1, 2, 2)):
            if key == "1x2" and args.no_parallel_1x2:
                continue
            out = attempt(f"parallel {key}", lambda: guest.run(
                f"parallel-{key}", nodes, vcpus, ["/opt/parallel", str(threads), str(args.par_work)],
                stats=nodes > 1))
            if out:
                kv = parse_line(out[0].text(), "parallel ")
                res["par"].setdefault(key, []).append(float(kv["wall"]))
                if out[1]:
                    res.setdefault("par_faults", []).append(dsm_faults(out[1]) + (out[0].t_exit,))
                log(f"parallel {rep + 1}/{args.reps} {key} ({threads} threads): {kv}")
    return res


def report(args, gdir, res, refs, tt, started, load, elapsed):
    L = []
    commit, dirty = args.commit
    L.append(f"### Results of {started:%Y-%m-%d %H:%M} UTC")
    L.append("")
    L.append(f"- Machine: {benchrun.machine_info()}; load average {load[0]} at start, "
             f"{load[1]} at end.")
    dv = f"`{os.path.relpath(args.dvmm_shown, ROOT)}`" if os.path.commonpath(
        [args.dvmm_shown, ROOT]) == ROOT else f"`{args.dvmm_shown}`"
    L.append(f"- dvmm: {dv} (copied at the start) with the work tree at commit `{commit}`"
             f"{' + uncommitted src/ changes' if dirty else ''} (release build); guest: the "
             f"default image `{os.path.basename(os.path.realpath(gdir))}`, kernel command line "
             f"`{APPEND}`.")
    cfgs = sorted({r["ep_cfg"] for rr in refs for r in rr.values() if r.get("ep_cfg")})
    ucx_ver = subprocess.run(["ucx_info", "-v"], capture_output=True, text=True).stdout
    m = re.search(r"Version ([\d.]+)", ucx_ver)
    L.append(f"- UCX {m.group(1) if m else '?'}, `UCX_TLS={os.environ.get('UCX_TLS', 'all')}`; "
             f"lanes chosen: ucx_perftest {', '.join(f'`{c}`' for c in cfgs) or '?'}, dvmm node "
             f"{', '.join(f'`{c}`' for c in res.get('faults_ep_cfg', [])) or '?'}.")
    L.append(f"- Command: `{args.command_line}` ({elapsed / 60:.1f} minutes)")
    L.append(f"- Repetitions: {args.reps} for the boot and the parallel runs (medians); page "
             f"faults {args.fault_pages} pages × {args.fault_rounds} rounds (median round); "
             f"IPI ping-pong {args.ipi_iters} round trips; ucx_perftest "
             f"{args.perftest_iters} iterations at start and end (the lower median).")
    for e in res["errors"]:
        L.append(f"- **Failed**: {e}")
    L.append("")

    # references
    def ref(size, sleep=False):
        key = f"{size}_sleep" if sleep else size
        vals = [r[key]["p50_us"] for r in refs if key in r]
        return min(vals) * 1000 if vals else None  # one-way ns

    rtt8, rtt4k = (None if ref(s) is None else 2 * ref(s) for s in (8, 4096))
    rtt8s, rtt4ks = (None if ref(s, True) is None else 2 * ref(s, True) for s in (8, 4096))
    tt_rtt = {k: 2 * v * 1000 for k, v in tt.items()}

    # figures
    base = res["base"]
    fault = ipi = None
    if "faults" in res:
        st = res["faults"]["stats"]
        fault = workload_only(st, base, [1], "dsm", "fault_remote_home")
        home = workload_only(st, base, [0], "dsm", "fault_local_home")
        fault["expected"] = 3 * args.fault_pages * args.fault_rounds
        home["expected"] = 2 * args.fault_pages * args.fault_rounds
    if "ipi" in res:
        ipi = workload_only(res["ipi"]["stats"], base, [0, 1], "ipi")
    par = {k: med(v) for k, v in res["par"].items()}
    thr = {k: (2 if k != "1x1" else 1) * args.par_work / v for k, v in par.items() if v}
    par_ratio = thr["2x1"] / thr["1x1"] if "2x1" in thr and "1x1" in thr else None
    boot = {k: {m: med(v) for m, v in d.items()} for k, d in res["boot"].items()}

    L.append("**Issue 4 targets** (dvmm figure / reference from the same run)")
    L.append("")
    L.append("| figure | dvmm | reference | ratio | target | |")
    L.append("|---|---:|---|---:|---:|---|")
    if fault:
        r = fault["mean_ns"] / rtt4k if fault["mean_ns"] and rtt4k else None
        L.append(f"| remote page fault service (node 1 `fault_remote_home`, workload mean) | "
                 f"{us(fault['mean_ns'])} | UCX 4 KiB RTT {us(rtt4k)} | {ratio(fault['mean_ns'], rtt4k)}"
                 f" | ≤ 1.5× | {verdict(r, 1.5)} |")
    if "faults" in res:
        rounds = res["faults"]["guest"][1]
        cost = med([x["read_miss"] - x["read_hit"] for x in rounds])
        r = cost / rtt4k if rtt4k else None
        L.append(f"| remote read fault as the guest sees it (ns per page − loop, median round) | "
                 f"{us(cost)} | UCX 4 KiB RTT {us(rtt4k)} | {ratio(cost, rtt4k)} | ≤ 1.5× | "
                 f"{verdict(r, 1.5)} |")
    if ipi:
        r = ipi["mean_ns"] / rtt8 if ipi["mean_ns"] and rtt8 else None
        L.append(f"| cross-node IPI, one-way (`ipi`, workload mean) | {us(ipi['mean_ns'])} | "
                 f"UCX 8 B RTT {us(rtt8)} | {ratio(ipi['mean_ns'], rtt8)} | ≤ 1.5× | "
                 f"{verdict(r, 1.5)} |")
    if par_ratio:
        L.append(f"| parallel throughput, 2 nodes × 1 vCPU (2 threads) | {thr['2x1']:.3f} /s | "
                 f"1 vCPU, 1 thread: {thr['1x1']:.3f} /s | **{par_ratio:.2f}×** | ≥ 1.6× | "
                 f"{verdict(par_ratio, 1.6, le=False)} |")
    bt = boot["2x1"].get("true"), boot["1x2"].get("true")
    if all(bt):
        L.append(f"| boot, `run -- true`, 2 nodes × 1 vCPU (median) | {fmt_s(bt[0])} | "
                 f"1 node × 2 vCPUs: {fmt_s(bt[1])} | {ratio(*bt)} | — | |")
    L.append("")

    L.append("**References** (round trip = 2 × median one-way latency)")
    L.append("")
    L.append("| transport | 8 B RTT | 4 KiB RTT |")
    L.append("|---|---:|---:|")
    for tag, r in zip(("start", "end"), refs):
        L.append(f"| `ucx_perftest -t ucp_am_lat -e`, polling ({tag} of the run) | "
                 f"{us(2e3 * r[8]['p50_us'] if 8 in r else None)} | "
                 f"{us(2e3 * r[4096]['p50_us'] if 4096 in r else None)} |")
    L.append(f"| `ucx_perftest … -I -E sleep` (wake-ups on both sides; lower of start/end) | "
             f"{us(rtt8s)} | {us(rtt4ks)} |")
    for kind, label in (("receivers", "progress threads only (how DSM messages flow)"),
                        ("poll_until", "the waiting thread polls UCX itself"),
                        ("after idle", "a lone request after 2 ms idle")):
        if (kind, 8) in tt_rtt or (kind, 4096) in tt_rtt:
            L.append(f"| dvmm `UcxTransport` (`dvmm_transport_test bench`), {label} | "
                     f"{us(tt_rtt.get((kind, 8)))} | {us(tt_rtt.get((kind, 4096)))} |")
    L.append("")

    if "faults" in res:
        head, rounds = res["faults"]["guest"]
        ref_rounds = res.get("faults_ref", (None, []))[1]
        ph = {k: med([r[k] for r in rounds]) for k in rounds[0] if k != "round"}
        ph["home_fetch"] = med([r["home_fetch"] for r in rounds] + [r["home_fetch2"] for r in rounds])
        rph = {}
        if ref_rounds:
            rph = {k: med([r[k] for r in ref_rounds]) for k in ref_rounds[0] if k != "round"}
        hit = ph["read_hit"]
        L.append(f"**Page faults** (`/opt/dsm_faults {args.fault_pages} {args.fault_rounds}`, "
                 f"2 nodes × 1 vCPU; {head.get('placed_node0', '?')} pages on node 0, CPU 1 on "
                 f"node {head.get('cpu1_node', '?')}, mbind {head.get('mbind', '?')}; "
                 f"{res['faults']['wall']:.1f} s wall)")
        L.append("")
        L.append("| measure | 2 nodes | 1 node × 2 vCPUs (no DSM) | fault cost (− read hit) | reference | ratio |")
        L.append("|---|---:|---:|---:|---|---:|")
        rows = (("read miss (page comes over, read)", "read_miss", rtt4k, "4 KiB RTT"),
                ("upgrade (write to a shared page, no data)", "upgrade", rtt8, "8 B RTT"),
                ("write miss (page comes over, write)", "write_miss", rtt4k, "4 KiB RTT"),
                ("home fetch (CPU 0 writes pages node 1 holds)", "home_fetch", rtt4k, "4 KiB RTT"),
                ("read hit (no fault: the loop itself)", "read_hit", None, ""))
        for label, k, rref, rname in rows:
            cost = ph[k] - hit if k != "read_hit" else None
            L.append(f"| guest, per page: {label} | {us(ph[k])} | {us(rph.get(k))} | {us(cost)} | "
                     f"{rname} {us(rref) if rref else ''} | {ratio(cost, rref) if rref else ''} |")
        for label, w, rname, rref in (
                ("monitor: node 1 `fault_remote_home` (read miss, upgrade, write miss)", fault,
                 "4 KiB RTT", rtt4k),
                ("monitor: node 0 `fault_local_home` (home fetch)", home, "4 KiB RTT", rtt4k)):
            h = w["hist"][0]
            L.append(f"| {label}, workload mean | {us(w['mean_ns'])} | | | {rname} {us(rref)} | "
                     f"{ratio(w['mean_ns'], rref)} |")
            L.append(f"| … whole run ({w['count']:,} faults, {w['delta_count']:,.0f} above the "
                     f"boot baseline, the program makes {w['expected']:,}): mean / p50 / p90 / p99 | {us(w['mean_all_ns'])} / "
                     f"{us(h['p50_ns'])} / {us(h['p90_ns'])} / {us(h['p99_ns'])} | | | | |")
        L.append("")

    if "ipi" in res:
        g = res["ipi"]["guest"]
        gr = res.get("ipi_ref", {})
        n = args.ipi_iters
        per = ipi["delta_count"] / (n + n // 10) if ipi["delta_count"] else None
        L.append(f"**Cross-node IPIs** (`/opt/ipi_pingpong {n}`, CPUs {g.get('cpus')} on nodes "
                 f"{g.get('nodes')}; {ipi['delta_count']:,.0f} IPIs above the boot baseline, "
                 f"{per:.2f} per round trip)" if per else "**Cross-node IPIs**")
        L.append("")
        L.append("| measure | 2 nodes × 1 vCPU | 1 node × 2 vCPUs | reference | ratio |")
        L.append("|---|---:|---:|---|---:|")
        L.append(f"| monitor `ipi`, one-way, workload mean | {us(ipi['mean_ns'])} | | 8 B RTT "
                 f"{us(rtt8)} | {ratio(ipi['mean_ns'], rtt8)} |")
        h = ipi["hist"]
        L.append(f"| … whole run ({ipi['count']:,} IPIs), p50 / p90 / p99, node 0 ; node 1 | " +
                 " ; ".join(f"{us(x['p50_ns'])} / {us(x['p90_ns'])} / {us(x['p99_ns'])}" for x in h)
                 + " | | | |")
        fc, ft = dsm_faults(res["ipi"]["stats"])
        bc, bt = base.faults()
        rts = n + n // 10
        L.append(f"| DSM faults per round trip (both nodes, above the boot baseline; approximate) "
                 f"and their mean service | {(fc - bc) / rts:,.0f} × "
                 f"{us((ft - bt) / (fc - bc) if fc > bc else None)} | | | |")
        for k, label in (("rtt_p50_ns", "median"), ("rtt_mean_ns", "mean")):
            a = float(g[k]) if k in g else None
            b = float(gr[k]) if k in gr else None
            L.append(f"| guest futex ping-pong round trip, {label} | {us(a)} | {us(b)} | "
                     f"8 B RTT {us(rtt8)} | {ratio(a, rtt8)} |")
        L.append("")

    if par:
        L.append(f"**Parallel, no sharing** (`/opt/parallel THREADS {args.par_work}`: cpubench's "
                 "integer part per thread; guest-clock wall time, median)")
        L.append("")
        L.append("| configuration | threads | wall | throughput (work units/s) | vs 1 vCPU |")
        L.append("|---|---:|---:|---:|---:|")
        for k, label, t in (("1x1", "1 node × 1 vCPU", 1), ("2x1", "2 nodes × 1 vCPU", 2),
                            ("1x2", "1 node × 2 vCPUs", 2)):
            if k in par:
                L.append(f"| {label} | {t} | {fmt_s(par[k])} ({', '.join(f'{x:.2f}' for x in res['par'][k])}) | "
                         f"{thr[k]:.3f} | {ratio(thr[k], thr.get('1x1'))} |")
        L.append("")
        if res.get("par_faults"):
            bc, bt = base.faults()
            c = med([x[0] for x in res["par_faults"]])
            t = med([x[1] for x in res["par_faults"]])
            w = med([x[2] for x in res["par_faults"]])
            bw = med(res["boot"]["2x1"].get("true", [])) if base.runs else None
            line = (f"A 2-node parallel run (median): {w:.1f} s wall, {c:,.0f} DSM faults, "
                    f"{t / 1e9:.1f} s of fault service summed over both nodes")
            if bw is not None:
                line += (f"; against a 2-node `run -- true`: {w - bw:+.1f} s wall, "
                         f"{c - bc:+,.0f} faults, {(t - bt) / 1e9:+.1f} s of fault service")
            L.append(line + ". The program shares nothing: these faults are the guest kernel's "
                     "(timer ticks, scheduler, exec and thread start-up).")
            L.append("")

    ksyms = None
    for key, label in (("faults", "dsm_faults"), ("ipi", "ipi_pingpong")):
        v = res.get(key, {}).get("verbose")
        if not v or not v["bounces"]:
            continue
        if ksyms is None:
            ksyms = KernelSymbols(gdir)
            L.append("**Most bounced pages** (`dvmm run -v`: the 3 pages per home node most often "
                     "taken back from another node, whole run, boot included; kernel symbols "
                     "from the guest's `vmlinux`)")
            L.append("")
            L.append("| run | home | guest-physical page | bounces | what is there |")
            L.append("|---|---:|---|---:|---|")
        for node, page, count in v["bounces"]:
            L.append(f"| {label} | {node} | `{page:#x}` | {count:,} | {ksyms.describe(page)} |")
    if ksyms is not None:
        L.append("")
        for key, label in (("faults", "dsm_faults"), ("ipi", "ipi_pingpong")):
            v = res.get(key, {}).get("verbose")
            if v and v["harts"]:
                L.append(f"- `{label}` run ({res[key]['wall']:.1f} s wall): " + "; ".join(
                    f"hart {h}: {i / 1e6:,.0f} M instructions, {e.get('page', '?')} page exits"
                    for h, (i, e) in sorted(v["harts"].items())) + ".")
        L.append("")

    L.append("**Boot**, `run -- true`, 2 vCPUs in both (wall time from process start; median, "
             "min in parentheses)")
    L.append("")
    L.append("| measure | 1 node × 2 vCPUs | 2 nodes × 1 vCPU | ratio (median) |")
    L.append("|---|---:|---:|---:|")
    for k, label in (("init", "start → `init reached` on the console"),
                     ("uptime", "guest uptime when init reports it (kernel clock, after init's mounts)"),
                     ("true", "`run -- true` total (boot + power-off)")):
        a, b = res["boot"]["1x2"].get(k, []), res["boot"]["2x1"].get(k, [])
        L.append(f"| {label} | {fmt_s(med(a))} ({fmt_s(min(a) if a else None)}) | "
                 f"{fmt_s(med(b))} ({fmt_s(min(b) if b else None)}) | {ratio(med(b), med(a))} |")
    L.append("")
    if base.runs:
        parts = []
        for rank, path, label in ((1, ("dsm", "fault_remote_home"), "node 1 remote-home faults"),
                                  (0, ("dsm", "fault_local_home"), "node 0 local-home faults"),
                                  (0, ("dsm", "fault_remote_home"), "node 0 remote-home faults")):
            c, s = base.get(rank, *path)
            parts.append(f"{label} {c:,.0f} × {us(s / c if c else None)} = {s / 1e9:.1f} s")
        bc0, _ = base.get(0, "ipi")
        bc1, _ = base.get(1, "ipi")
        L.append(f"Where a 2-node boot waits (median of the {len(base.runs)} runs): "
                 + "; ".join(parts) + f" of fault service; {bc0 + bc1:,.0f} cross-node IPIs. "
                 f"With one vCPU per node a node's faults are served one after the other, so "
                 f"their total is time that node's vCPU did not run.")
        L.append("")
    return "\n".join(L)


def record(body, doc):
    begin, end = "<!-- bench:cluster:begin -->", "<!-- bench:cluster:end -->"
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    if begin not in text or end not in text:
        text = text.rstrip() + "\n\n" + SECTION_INTRO + begin + "\n" + end + "\n"
        with open(doc, "w") as f:
            f.write(text)
    benchrun.replace_section("cluster", body, doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3,
                    help="repetitions of the boot and the parallel runs (default 3)")
    ap.add_argument("--record", action="store_true", help="write the results into docs/BENCHMARKS.md")
    ap.add_argument("--doc", default=DOC, help=argparse.SUPPRESS)
    ap.add_argument("--fault-pages", type=int, default=2048,
                    help="pages dsm_faults touches per phase (default 2048 = 8 MiB)")
    ap.add_argument("--fault-rounds", type=int, default=3, help="dsm_faults rounds (default 3)")
    ap.add_argument("--ipi-iters", type=int, default=500,
                    help="ipi_pingpong round trips (default 500, plus 10%% warm-up)")
    ap.add_argument("--work", dest="par_work", type=int, default=4, metavar="W",
                    help="parallel: repetitions of the integer part per thread (default 4)")
    ap.add_argument("--no-parallel-1x2", action="store_true",
                    help="skip the 1 node x 2 vCPUs parallel run (shown for scale only)")
    ap.add_argument("--perftest-iters", type=int, default=100000,
                    help="ucx_perftest iterations (default 100000; /20 in sleep mode)")
    ap.add_argument("--no-transport-test", action="store_true",
                    help="skip dvmm_transport_test bench (dvmm's own transport as a reference)")
    ap.add_argument("--transport-iters", type=int, default=2000)
    ap.add_argument("--transport-test", default=os.path.join(ROOT, "build", "tests",
                                                             "dvmm_transport_test"))
    ap.add_argument("--dvmm", default=os.path.join(ROOT, "build", "dvmm"),
                    help="the dvmm binary (default: build/dvmm, the work tree's build)")
    ap.add_argument("--guest-dir", help="image directory (default: guest/build.sh --print-dir)")
    ap.add_argument("--memory", default="512M", help="guest RAM of the 1-node runs (default 512M)")
    ap.add_argument("--memory-per-node", default="256M",
                    help="guest RAM per node of the 2-node runs (default 256M)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds for one guest run")
    ap.add_argument("--wait-quiet", type=float, metavar="LOAD",
                    help="first wait (up to 30 minutes) until the 1-minute load average is below LOAD")
    ap.add_argument("--work-dir", dest="work", default=os.path.join(ROOT, "build", "bench", "cluster"),
                    help="programs, cpio, dvmm snapshot, statistics (default build/bench/cluster)")
    args = ap.parse_args()
    args.dvmm = os.path.abspath(args.dvmm)
    shown, skip = [], False
    for a in sys.argv[1:]:  # --doc (for testing the recorder) is not part of the recipe
        if not skip and not a.startswith("--doc"):
            shown.append(a)
        skip = a == "--doc"
    args.command_line = ("bench/cluster.sh " + shlex.join(shown)).strip()
    os.makedirs(args.work, exist_ok=True)
    if not os.access(args.dvmm, os.X_OK):
        die(f"{args.dvmm} is not built (scripts/build.sh build)")
    if not shutil.which(PERFTEST):
        die("ucx_perftest is missing (apt-get install ucx-utils)")
    if not args.no_transport_test and not os.access(args.transport_test, os.X_OK):
        log(f"{args.transport_test} is not built; skipping the transport test reference")
        args.no_transport_test = True
    if args.wait_quiet:
        deadline = time.monotonic() + 1800
        while load1() >= args.wait_quiet and time.monotonic() < deadline:
            log(f"waiting for a load average below {args.wait_quiet} (now {loadavg()})")
            time.sleep(20)
    if load1() > 1.5:
        log(f"warning: load average {loadavg()}: the figures will be noisy (every other process "
            "delays the node processes' threads)")

    # Measure a snapshot: build/dvmm may be rebuilt while the benchmark runs (node processes
    # exec the launcher's own file, so a copy is self-contained).
    args.dvmm_shown = args.dvmm
    snap = os.path.join(args.work, "dvmm")
    shutil.copy2(args.dvmm, snap + ".tmp")
    os.replace(snap + ".tmp", snap)
    args.dvmm = snap
    args.commit = git_info()
    gdir = benchrun.guest_dir(args.guest_dir)
    log("guest image:", gdir)
    cpio = build_programs(args.work)
    guest = Guest(args, gdir, cpio)
    started = datetime.datetime.utcnow()
    t0 = time.monotonic()
    load = [loadavg(), None]

    refs = [perftest_round(args, "start")]
    tt = {} if args.no_transport_test else transport_test(args)
    res = measure(args, guest)
    refs.append(perftest_round(args, "end"))
    load[1] = loadavg()
    body = report(args, gdir, res, refs, tt, started, load, time.monotonic() - t0)
    print(body)
    if args.record:
        record(body, args.doc)
    if res["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
