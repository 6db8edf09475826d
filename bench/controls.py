#!/usr/bin/env python3
"""dvmm execution-control benchmarks (issue 6), each figure against a reference from the same run.

  1. Control latency: the time from a `PUT /api/v1/vm.controls` to the change being applied by
     every vCPU (the API's `applied_us`, which waits for each vCPU's acknowledgement), and the
     whole request as the client sees it; on 1 node x 2 vCPUs and on 2 nodes x 1 vCPU (the
     change then crosses to the other node). Target: under 10 ms.
  2. The cost of the exit machinery: bench/programs/syscalls.c (getppid system calls, then
     integer work without system calls) with every optional control off, against the same
     program with system-call tracing on (exceptions=ecall_from_u, action count and log).
     With --baseline-rev REV, also against dvmm built at REV (a build without the run-time
     control hooks, e.g. fb7b297, session 1's last commit). Target: controls off costs under
     2% of guest CPU throughput against that build.

Usage: bench/controls.sh [--reps N] [--toggles N] [--baseline-rev REV] [--record]
"""
import argparse
import datetime
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import run as benchrun  # noqa: E402
from run import log, die  # noqa: E402

LINE_RE = re.compile(r"syscalls n=(\d+) ns_per_call=([0-9.]+) integer_s=([0-9.]+)")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def control_dir():
    rt = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(rt, "dvmm") if rt else f"/tmp/dvmm-{os.getuid()}"


def api(name, method, path, body=None):
    c = UnixHTTPConnection(os.path.join(control_dir(), name + ".sock"))
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    if r.status != 200:
        die(f"{method} {path}: {data}")
    return data


def wait_socket(name, proc, seconds=60):
    path = os.path.join(control_dir(), name + ".sock")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            die(f"dvmm ended early: {proc.stderr.read()}")
        if os.path.exists(path):
            try:
                api(name, "GET", "/api/v1/vm.info")
                return
            except (OSError, SystemExit):
                pass
        time.sleep(0.1)
    die(f"{name}: no control socket")


def control_latency(dvmm, flags, toggles, label):
    """Toggles csr_write=satp on and off `toggles` times on a busy guest."""
    name = f"bench-ctl-{os.getpid()}-{label}"
    proc = subprocess.Popen([dvmm, "run", "--name", name, "--timeout", "600"] + flags +
                            ["--", "sh", "-c", "while true; do :; done & while true; do :; done"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_socket(name, proc)
        time.sleep(3)  # the guest's loops are running
        applied, client = [], []
        for i in range(toggles):
            t0 = time.monotonic()
            r = api(name, "PUT", "/api/v1/vm.controls", {"csr_write": ["satp"] if i % 2 == 0 else []})
            client.append((time.monotonic() - t0) * 1e6)
            applied.append(r["applied_us"])
        api(name, "PUT", "/api/v1/vm.stop")
        proc.wait(60)
        return applied, client
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def syscall_run(dvmm, cpio, controls, calls, rounds):
    """One boot running /opt/syscalls; controls (dict or None) set through a config file."""
    args = [dvmm, "run", "--vcpus", "1", "--timeout", "600", "--initrd-extra", cpio]
    cfg = None
    if controls:
        cfg = os.path.join(benchrun.ROOT, "build", "bench", "controls", f"c{os.getpid()}.toml")
        with open(cfg, "w") as f:
            f.write("[controls]\n")
            for k, v in controls.items():
                f.write(f"{k} = {json.dumps(v)}\n")
        args += ["--config", cfg]
    args += ["--", "/opt/syscalls", str(calls), str(rounds)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=900)
    m = LINE_RE.search(p.stdout)
    if p.returncode != 0 or not m:
        die(f"{' '.join(args)} failed ({p.returncode}): {p.stderr[-500:]}")
    return float(m.group(2)), float(m.group(3))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each syscall run")
    ap.add_argument("--toggles", type=int, default=100, help="control changes per VM")
    ap.add_argument("--calls", type=int, default=200000, help="system calls per run")
    ap.add_argument("--rounds", type=int, default=3, help="integer rounds per run")
    ap.add_argument("--baseline-rev", help="also measure dvmm built at this revision")
    ap.add_argument("--dvmm", default=os.path.join(ROOT, "build", "dvmm"))
    ap.add_argument("--record", action="store_true", help="write the results into docs/BENCHMARKS.md")
    args = ap.parse_args()
    work = os.path.join(ROOT, "build", "bench", "controls")
    os.makedirs(work, exist_ok=True)
    started = time.monotonic()
    load = os.getloadavg()
    exe = os.path.join(work, "syscalls.riscv64")
    subprocess.run(["riscv64-linux-gnu-gcc", "-static", "-O2", "-Wall", "-I",
                    os.path.join(HERE, "programs"), "-o", exe,
                    os.path.join(HERE, "programs", "syscalls.c")], check=True)
    with open(exe, "rb") as f:
        cpio = benchrun.make_cpio({"opt/syscalls": (f.read(), 0o755)},
                                  os.path.join(work, "syscalls.cpio"))

    log("control latency, 1 node x 2 vCPUs")
    lat1 = control_latency(args.dvmm, ["--vcpus", "2"], args.toggles, "one")
    log("control latency, 2 nodes x 1 vCPU")
    lat2 = control_latency(args.dvmm, ["--nodes", "2"], args.toggles, "two")

    configs = [("every optional control off", None),
               ("system calls intercepted, action=count",
                {"exceptions": ["ecall_from_u"], "action": "count"}),
               ("system calls traced, action=log", {"exceptions": ["ecall_from_u"], "action": "log"})]
    binaries = [("dvmm (work tree)", args.dvmm)]
    if args.baseline_rev:
        base_exe, commit = benchrun.build_revision(args.baseline_rev, work)
        binaries.append((f"dvmm at {commit[:7]} (no run-time control hooks)", base_exe))
    results = {}
    for r in range(args.reps):
        for bname, bexe in binaries:
            for cname, c in configs:
                if bexe != args.dvmm and c:
                    continue  # the old build has no configuration file
                log(f"rep {r + 1}: {bname}, {cname}")
                results.setdefault((bname, cname), []).append(
                    syscall_run(bexe, cpio, c, args.calls, args.rounds))

    L = []
    L.append(f"### Results of {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC\n")
    L.append(f"- Machine: {benchrun.machine_info()}; load average {load[0]:.2f} at start.")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    L.append(f"- dvmm: `{os.path.relpath(args.dvmm, ROOT)}` at commit `{commit}`; command: "
             f"`bench/controls.sh{' --baseline-rev ' + args.baseline_rev if args.baseline_rev else ''}"
             f"{' --record' if args.record else ''}` ({(time.monotonic() - started) / 60:.1f} minutes).\n")
    L.append("**Control latency** (`PUT /api/v1/vm.controls` toggling `csr_write=satp` on a busy "
             f"guest, {args.toggles} changes; target < 10 ms)\n")
    L.append("| VM | applied on every vCPU: p50 / p99 / max | request as the client sees it: p50 / p99 |")
    L.append("|---|---:|---:|")
    for label, (applied, client) in [("1 node x 2 vCPUs", lat1), ("2 nodes x 1 vCPU", lat2)]:
        L.append(f"| {label} | {pct(applied, 50) / 1000:.3f} / {pct(applied, 99) / 1000:.3f} / "
                 f"{max(applied) / 1000:.3f} ms | {pct(client, 50) / 1000:.3f} / "
                 f"{pct(client, 99) / 1000:.3f} ms |")
    L.append("")
    L.append(f"**Exit machinery** (`/opt/syscalls {args.calls} {args.rounds}` on 1 vCPU: "
             f"ns per `getppid` system call, and integer work without system calls; median of "
             f"{args.reps})\n")
    L.append("| dvmm | controls | ns per system call | integer work | vs controls off |")
    L.append("|---|---|---:|---:|---:|")
    ref = results.get((binaries[0][0], configs[0][0]))
    ref_call = statistics.median(x[0] for x in ref)
    ref_int = statistics.median(x[1] for x in ref)
    for (bname, cname), xs in results.items():
        call = statistics.median(x[0] for x in xs)
        integer = statistics.median(x[1] for x in xs)
        L.append(f"| {bname} | {cname} | {call:.0f} | {integer:.3f} s | calls {call / ref_call:.2f}x, "
                 f"integer {integer / ref_int:.3f}x |")
    body = "\n".join(L) + "\n"
    print(body)
    if args.record:
        benchrun.replace_section("controls", body)


if __name__ == "__main__":
    main()
