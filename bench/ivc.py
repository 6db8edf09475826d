#!/usr/bin/env python3
"""dvmm inter-VM communication benchmark (issue 7): ivc against TCP and MPICH.

Measures, in one run, the bandwidth of a transfer (--total, 1 GiB by default) from one side to
the other at buffer sizes from 4 KiB to 16 MiB, for
  (a) ivc: two `dvmm run --ivc GROUP,members=2,size=S,rank=R` VMs (1 vCPU each) running
      libdvmmipc's `ivc-bench GROUP bw TOTAL BUF...` (rank 0 sends to rank 1 with
      ivc_send/ivc_recv); the program comes from the guest image when the image has it, else
      guest/libdvmmipc is cross-compiled (`make riscv64 O=DIR`) and added with --initrd-extra;
  (b) TCP between two VMs configured the same way, over virtio-net on dvmm's virtual switch
      (`--net switch=NAME`): bench/programs/tcpstream.c writes the stream in writes of BUF
      bytes, the receiver reads BUF bytes at a time and checks a stamp every 4 KiB; a smaller
      total (--tcp-total, 128 MiB by default: the path runs at ~15 MiB/s);
  (c) MPICH between two processes on the host itself (bench/programs/mpibw.c, `mpiexec -n 2`,
      MPI_Send/MPI_Recv, the same sizes and total, a 1-byte ack at the end).
Bandwidth is bytes / the time until the receiver has the last byte (TCP, MPICH: on the
receiver's clock; ivc: ivc-bench's rank 0 times from its first send to rank 1's ack). Then the
one-way latency of a small message (half the round trip): `ivc-bench GROUP lat N` (1 byte,
through the mailbox registers), a 1-byte TCP ping-pong between the VMs and MPICH's 1-byte
ping-pong.

Prints markdown tables; --record writes them into docs/BENCHMARKS.md between the `bench:ivc`
markers (creating the "Inter-VM communication (issue 7)" section if needed) and draws
docs/ivc-bandwidth.svg (bandwidth against buffer size, both axes logarithmic).

Usage: bench/ivc.sh [--quick] [--total SIZE] [--tcp-total SIZE] [--sizes LIST] [--reps N]
                    [--record] [--no-ivc] [--no-tcp] [--no-mpi] [--no-lat] [--ivc-env VAR=VAL]
                    [--build-ivc] [--dvmm PATH]
"""
import argparse
import datetime
import gzip
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing run.py
import run as benchrun  # noqa: E402  (bench/run.py: guest image, cpio, Run, the doc recorder)
import virtio  # noqa: E402  (bench/virtio.py: console sections, eth0 counters, table cells)
from run import log, die, med  # noqa: E402

DOC = os.path.join(ROOT, "docs", "BENCHMARKS.md")
SVG = os.path.join(ROOT, "docs", "ivc-bandwidth.svg")
LIBDIR = os.path.join(ROOT, "guest", "libdvmmipc")
APPEND = "console=ttyS0 quiet loglevel=1"
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
SIZES = (4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB, 4 * MIB, 16 * MIB)
QUICK_SIZES = (4 * KIB, 64 * KIB, MIB, 16 * MIB)
KINDS = ("ivc", "tcp", "mpi")
NAMES = {"ivc": "ivc", "tcp": "TCP", "mpi": "MPICH"}

# ivc-bench (guest/libdvmmipc/ivc-bench.c): rank 0, the sender, prints the bandwidth (first
# send to rank 1's ack after its last receive) and the latency (half the mean round trip).
IVC_BW_RE = re.compile(r"ivc-bench: (?:(sender|receiver|send|recv)\w* )?buf=(\d+) bytes=(\d+) "
                       r"seconds=([0-9.]+) MiB/s=([0-9.]+)")
IVC_LAT_RE = re.compile(r"ivc-bench: lat size=(\d+) rounds=(\d+) one-way-us=([0-9.]+)")
TCP_RECV_RE = re.compile(r"tcpstream recv bytes=(\d+) seconds=([0-9.]+) mib_s=([0-9.]+) "
                         r"checked=(\d+) bad=(\d+) buf=(\d+)")
TCP_PING_RE = re.compile(r"tcpstream ping n=(\d+) rtt_us=([0-9.]+) oneway_us=([0-9.]+)")
MPI_BW_RE = re.compile(r"mpibw: buf=(\d+) bytes=(\d+) seconds=([0-9.]+) MiB/s=([0-9.]+) "
                       r"checked=(\d+) bad=(\d+)")
MPI_LAT_RE = re.compile(r"mpibw: lat n=(\d+) rtt_us=([0-9.]+) oneway_us=([0-9.]+)")
DVMM_NET_RE = virtio.DVMM_NET_RE

# The guest side, shipped in the programs' cpio (/opt/ivc.sh, /opt/tcp.sh).
IVC_SH = r"""#!/bin/sh
# ivc.sh EXE GROUP TOTAL LAT_N BUF... (bench/ivc.py): the same on both ranks.
exe=$1 group=$2 total=$3 latn=$4
shift 4
echo "@@ bw"
"$exe" "$group" bw "$total" "$@" || exit 31
if [ "$latn" -gt 0 ]; then
	echo "@@ lat"
	"$exe" "$group" lat "$latn" || exit 32
fi
"""

TCP_SH = r"""#!/bin/sh
# tcp.sh recv|send MYIP PEERIP PORT MIB LAT_N BUF... (bench/ivc.py): one stream per BUF on
# port PORT+i, then a 1-byte ping-pong on PORT+100 (the sender pings).
role=$1 me=$2 peer=$3 port=$4 mib=$5 latn=$6
shift 6
# No IPv6 (router solicitations, DAD): only ARP and the TCP streams cross the link.
for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6 \
	/proc/sys/net/ipv6/conf/eth0/disable_ipv6; do
	[ -e $f ] && echo 1 > $f
done
ifconfig eth0 $me netmask 255.255.255.0 up || exit 21
i=0
for buf in "$@"; do
	echo "@@ tcp $buf"
	if [ "$role" = recv ]; then
		/opt/tcpstream recv $((port + i)) $buf || exit 22
	else
		/opt/tcpstream send $peer $((port + i)) $mib $buf || exit 22
	fi
	i=$((i + 1))
done
if [ "$latn" -gt 0 ]; then
	echo "@@ lat"
	if [ "$role" = recv ]; then
		/opt/tcpstream pong $((port + 100)) || exit 23
	else
		/opt/tcpstream ping $peer $((port + 100)) $latn || exit 23
	fi
fi
line=ifstats
for f in rx_packets rx_dropped rx_errors tx_packets tx_dropped tx_errors; do
	line="$line $f=$(cat /sys/class/net/eth0/statistics/$f)"
done
echo "$line tcp_retrans=$(awk '/^Tcp:/ { n++; if (n == 1) for (i = 1; i <= NF; i++) h[i] = $i;
	else for (i = 1; i <= NF; i++) if (h[i] == "RetransSegs") print $i }' /proc/net/snmp)"
"""

SECTION_INTRO = """\
## Inter-VM communication (issue 7)

Bandwidth between two VMs on this host through dvmm's inter-VM devices (`--ivc`: mailbox
registers and a shared-memory region, [docs/IVC.md](IVC.md)) with `libdvmmipc`, against TCP
between the same two VMs over virtio-net on dvmm's virtual switch and, as the physical
reference, MPICH between two processes on the host itself; and the one-way latency of a
small message on each path. Targets (issue 7): ivc ≥ 5× TCP at 64 KiB and larger buffers,
mailbox latency < 20 µs.

![Bandwidth against buffer size: ivc, TCP between the VMs, MPICH on the host](ivc-bandwidth.svg)

### How to run

    bench/ivc.sh --quick              # 64 MiB per point, 4 buffer sizes (under a minute)
    bench/ivc.sh                      # 1 GiB per point (TCP: 128 MiB), 7 sizes (2.5 minutes)
    bench/ivc.sh --record             # and writes the results below and docs/ivc-bandwidth.svg
    bench/ivc.sh --help               # --total, --tcp-total, --sizes, --reps, --no-tcp, ...

It needs `build/dvmm`, the guest image (`guest/build.sh`; its kernel has
`CONFIG_UIO_PDRV_GENIRQ`), the packages `gcc-riscv64-linux-gnu libc6-dev-riscv64-cross cpio`
and, for the host reference, `mpich libmpich-dev` (`mpicc`, `mpiexec`). `ivc-bench` is taken
from the guest image when it has one, else `guest/libdvmmipc` is cross-compiled (`make
riscv64 O=build/bench/ivc/libdvmmipc`; `--build-ivc` forces this) and added under `/opt/`
with `--initrd-extra`, as are [`tcpstream.c`](../bench/programs/tcpstream.c) and two scripts
(`/opt/ivc.sh`, `/opt/tcp.sh`, in `bench/ivc.py`); [`mpibw.c`](../bench/programs/mpibw.c) is
built with `mpicc -O2`. Work files go to `build/bench/ivc/`.

### What is measured

Two VMs for each guest path, started together: `dvmm run --vcpus 1 --memory 512M` (so that
two VMs fit the host's 2 CPUs), kernel command line `console=ttyS0 quiet loglevel=1`, the
default guest image. For each buffer size B, one side sends T bytes to the other in
messages (writes) of B bytes; **bandwidth = T / the time until the receiver has the last
byte** (guest clock for the VMs, `MPI_Wtime` on the host), so the three are comparable even
where T differs.

- **ivc**: `--ivc GROUP,members=2,size=S,rank=R` (S = `--ivc-size`, 64M by default),
  `ivc-bench GROUP bw T B...` in both (rank 0 sends with `ivc_send`, rank 1 receives with
  `ivc_recv`; large messages stream through the shared-memory ring, small ones and the
  wake-ups go through the mailbox; rank 0 times from its first send to rank 1's 1-byte ack
  after the last receive, and rank 1 checks the last message's contents), then `ivc-bench
  GROUP lat N`: N round trips of a 1-byte message through the mailbox registers, one way =
  half the mean round trip. `libdvmmipc`'s defaults (a wait spins `IVC_SPIN_US` = 1000 µs,
  then sleeps on the interrupt) unless `--ivc-env` says otherwise.
- **TCP**: `--net switch=NAME,mac=..`, static addresses with `ifconfig`, IPv6 off;
  `tcpstream send IP PORT T B` writes the stream in `write()`s of B bytes, `tcpstream recv
  PORT B` reads B bytes at a time and checks the 8-byte stamp at every 4 KiB of the stream;
  time from the first byte received to EOF; one connection per size. T is `--tcp-total`
  (**128 MiB by default, not 1 GiB**: at ~15 MiB/s 1 GiB takes over a minute per size).
  Latency: `tcpstream ping`/`pong`, 1-byte round trips with `TCP_NODELAY`, one way = half the
  round trip.
- **MPICH** (Debian's `mpich`, device `ch4:ucx`, i.e. UCX shared memory between the two
  processes): `mpiexec -n 2 mpibw bw T B...`: per size 2 untimed messages and a barrier, then
  T bytes in `MPI_Send`/`MPI_Recv` of B bytes (rank 1 checks the stamps as tcpstream does),
  rank 1 timing barrier → last receive, then a 1-byte ack. Latency: `mpibw lat N`, a 1-byte
  `MPI_Send`/`MPI_Recv` ping-pong (one way = half the round trip).

Each figure is the median of the repetitions (min–max in brackets). The machine is small and
shared: the load average is recorded with each result.

"""


# ------------------------------------------------------------------------------------------
# sizes

def parse_size(s):
    """'1G', '64M', '4K', '4096' (bytes) -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGkmg]?)(?:i?B)?\s*", s)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r} (a number with K, M or G)")
    v = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    if v <= 0:
        raise argparse.ArgumentTypeError(f"bad size {s!r}")
    return v


def size_list(s):
    return tuple(parse_size(x) for x in s.split(",") if x.strip())


def human(n):
    for unit, div in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


def short(n):  # for the plot's axis
    return human(n).replace(" ", "\u00a0")


# ------------------------------------------------------------------------------------------
# inputs

def on_path(tool):
    return shutil.which(tool) is not None


def dvmm_has_ivc(dvmm):
    p = subprocess.run([dvmm, "run", "--help"], capture_output=True, text=True)
    return "--ivc" in p.stdout


def image_ivc_bench(gdir):
    """The guest path of ivc-bench in the image's initramfs, or None."""
    try:
        with gzip.open(os.path.join(gdir, "initramfs.cpio.gz")) as f:
            data = f.read()
    except OSError:
        return None
    names = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True).stdout
    for name in names.decode(errors="replace").splitlines():
        if os.path.basename(name) == "ivc-bench":
            return "/" + name.lstrip("./").lstrip("/")
    return None


def is_riscv64_elf(path):
    with open(path, "rb") as f:
        h = f.read(20)
    return (len(h) == 20 and h[:4] == b"\x7fELF" and h[4] == 2  # ELFCLASS64
            and int.from_bytes(h[18:20], "little") == 243)  # EM_RISCV


def build_ivc_bench(work):
    """Cross-compiles guest/libdvmmipc (make riscv64 O=DIR); returns the ivc-bench binary."""
    makefile = os.path.join(LIBDIR, "Makefile")
    if not os.path.exists(makefile):
        raise RuntimeError("the guest image has no ivc-bench and "
                           f"{os.path.relpath(makefile, ROOT)} does not exist")
    out = os.path.join(work, "libdvmmipc")
    os.makedirs(out, exist_ok=True)
    argv = ["nice", "make", "-s", "-C", LIBDIR, "riscv64", f"O={out}"]
    log("building ivc-bench:", shlex.join(argv))
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{(p.stdout + p.stderr)[-2000:]}")
    found = []
    for d, _, fs in os.walk(out):
        found += [os.path.join(d, f) for f in fs if f == "ivc-bench"]
    found = [f for f in found if is_riscv64_elf(f)]
    if not found:
        raise RuntimeError(f"{shlex.join(argv)} made no RISC-V ivc-bench under {out}")
    return found[0]


def build_guest_programs(args, work):
    """The cpio for the guests: tcpstream, the scripts and (when needed) ivc-bench."""
    files = {"opt/ivc.sh": (IVC_SH.encode(), 0o755), "opt/tcp.sh": (TCP_SH.encode(), 0o755)}
    src = os.path.join(HERE, "programs", "tcpstream.c")
    exe = os.path.join(work, "tcpstream.riscv64")
    subprocess.run(["nice", "riscv64-linux-gnu-gcc", "-static", "-O2", "-Wall",
                    "-I", os.path.join(HERE, "programs"), "-o", exe, src], check=True)
    with open(exe, "rb") as f:
        files["opt/tcpstream"] = (f.read(), 0o755)
    if args.ivc_exe_host:
        with open(args.ivc_exe_host, "rb") as f:
            files["opt/ivc-bench"] = (f.read(), 0o755)
    return benchrun.make_cpio(files, os.path.join(work, "ivc-programs.cpio"))


def build_mpibw(work):
    exe = os.path.join(work, "mpibw")
    subprocess.run(["nice", "mpicc", "-O2", "-Wall", "-o", exe,
                    os.path.join(HERE, "programs", "mpibw.c")], check=True)
    return exe


# ------------------------------------------------------------------------------------------
# the guest paths

def dvmm_argv(args, cpio, cmd, timeout, ivc=None, net=None):
    """ivc: (group, rank); net: (switch, mac)."""
    a = [args.dvmm, "run", "-v", "--vcpus", "1", "--memory", args.memory,
         "--kernel", os.path.join(args.gdir, "Image"),
         "--initrd", os.path.join(args.gdir, "initramfs.cpio.gz"),
         "--append", APPEND, "--timeout", str(timeout), "--initrd-extra", cpio]
    if ivc:
        a += ["--ivc", f"{ivc[0]},members=2,size={args.ivc_size},rank={ivc[1]}"]
    if net:
        a += ["--net", f"switch={net[0]},mac={net[1]}"]
    return ["timeout", "--kill-after=5", str(timeout + 10)] + a + ["--"] + shlex.split(cmd)


def run_pair(what, argv0, argv1, timeout, names=("rank 0", "rank 1")):
    """Starts two VMs (the second 0.2 s later) and waits for both; returns the two Runs, or
    raises RuntimeError naming the one that failed and the other's last lines."""
    runs = [None, None]

    def go(i, argv):
        runs[i] = benchrun.Run(argv, timeout + 20)

    log(f"{what}: starting two VMs")
    t0 = threading.Thread(target=go, args=(0, argv0))
    t0.start()
    time.sleep(0.2)
    t1 = threading.Thread(target=go, args=(1, argv1))
    t1.start()
    t0.join()
    t1.join()
    for i in (0, 1):
        r, other = runs[i], runs[1 - i]
        if r.rc != 0 or r.timed_out:
            raise RuntimeError(r.fail(f"{what} {names[i]}") + f"\n--- the other VM ({names[1 - i]},"
                               f" exit status {other.rc}):\n"
                               + "\n".join(other.text().splitlines()[-8:]))
    return runs


def rmdir_runtime(kind, name):
    """dvmm may leave an (empty) switch/ivc directory behind."""
    for base in (os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "dvmm"),
                 f"/tmp/dvmm-{os.getuid()}"):
        try:
            os.rmdir(os.path.join(base, kind, name))
        except OSError:
            pass


def run_ivc(args, cpio, rep):
    group = f"ivcbench-{os.getpid()}-{rep}"
    sizes = " ".join(str(b) for b in args.sizes)
    cmd = f"sh /opt/ivc.sh {args.ivc_exe} {group} {args.total} {args.lat_iters} {sizes}"
    if args.ivc_env:
        cmd = shlex.join(["env"] + args.ivc_env) + " " + cmd
    t = args.ivc_timeout
    runs = run_pair("ivc", dvmm_argv(args, cpio, cmd, t, ivc=(group, 0)),
                    dvmm_argv(args, cpio, cmd, t, ivc=(group, 1)), t)
    rmdir_runtime("ivc", group)
    texts = [r.text().replace("\r", "") for r in runs]
    res = {"bw": {}, "send_bw": {}}
    for rank, text in enumerate(texts):
        for m in IVC_BW_RE.finditer(text):
            role = m.group(1) or ""
            buf, nbytes, secs = int(m.group(2)), int(m.group(3)), float(m.group(4))
            if nbytes != args.total:
                raise RuntimeError(runs[rank].fail(f"ivc rank {rank}: buf={buf} moved {nbytes} "
                                                   f"bytes, not {args.total}"))
            # The receiver's figure (rank 1, or a line that says so) is the one compared.
            receiver = role.startswith("rec") or (not role and rank == 1)
            res["bw" if receiver else "send_bw"][buf] = nbytes / secs / MIB
    if not res["bw"]:  # only the sender printed: take its figures
        res["bw"], res["send_bw"] = res["send_bw"], {}
        res["sender_only"] = True
    missing = [b for b in args.sizes if b not in res["bw"]]
    if missing:
        raise RuntimeError(runs[0].fail(f"ivc: no result for buf={missing[0]}") + "\n" +
                           runs[1].fail("rank 1"))
    if args.lat_iters:
        for text in texts:
            m = IVC_LAT_RE.search(text)
            if m:
                res["lat"] = float(m.group(3))
                break
        else:
            raise RuntimeError(runs[0].fail("ivc: no latency line (`ivc-bench: lat ...`)"))
    return res


def run_tcp(args, cpio, rep):
    port = 5000
    ip_r, ip_s = "192.168.78.1", "192.168.78.2"
    mac_r, mac_s = "52:54:00:78:00:01", "52:54:00:78:00:02"
    sizes = " ".join(str(b) for b in args.sizes)
    mib = args.tcp_total // MIB
    sw = f"ivcbench-{os.getpid()}-{rep}"
    t = args.tcp_timeout
    cmd_r = f"sh /opt/tcp.sh recv {ip_r} {ip_s} {port} {mib} {args.lat_iters} {sizes}"
    cmd_s = f"sh /opt/tcp.sh send {ip_s} {ip_r} {port} {mib} {args.lat_iters} {sizes}"
    try:
        rr, rs = run_pair("TCP", dvmm_argv(args, cpio, cmd_r, t, net=(sw, mac_r)),
                          dvmm_argv(args, cpio, cmd_s, t, net=(sw, mac_s)), t,
                          names=("receiver", "sender"))
    finally:
        rmdir_runtime("switch", sw)
    tr, ts = rr.text().replace("\r", ""), rs.text().replace("\r", "")
    res = {"bw": {}}
    for m in TCP_RECV_RE.finditer(tr):
        nbytes, secs = int(m.group(1)), float(m.group(2))
        bad, buf = int(m.group(5)), int(m.group(6))
        if nbytes != mib * MIB or bad:
            raise RuntimeError(rr.fail(f"TCP buf={buf}: WRONG DATA: received {nbytes} bytes, "
                                       f"{bad} bad stamps of {m.group(4)}"))
        res["bw"][buf] = nbytes / secs / MIB
    missing = [b for b in args.sizes if b not in res["bw"]]
    if missing:
        raise RuntimeError(rr.fail(f"TCP: no result for buf={missing[0]}"))
    if args.lat_iters:
        m = TCP_PING_RE.search(ts)
        if not m:
            raise RuntimeError(rs.fail("TCP: no ping-pong result"))
        res["lat"] = float(m.group(3))
    sr, ss = virtio.parse_ifstats(tr), virtio.parse_ifstats(ts)
    if sr and ss:
        res["lost"] = (ss["tx_packets"] - sr["rx_packets"]) + (sr["tx_packets"] - ss["rx_packets"])
        res["retrans"] = ss["tcp_retrans"]
    dd = [DVMM_NET_RE.search(x) for x in (tr, ts)]
    if all(dd):
        res["dvmm_rx_dropped"] = sum(int(x.group(3)) for x in dd)
    return res


def run_mpi(args, exe):
    res = {"bw": {}}
    argv = ["timeout", str(args.mpi_timeout), "mpiexec", "-n", "2", exe, "bw", str(args.total)] \
        + [str(b) for b in args.sizes]
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"MPICH bandwidth run failed (exit status {p.returncode})\n"
                           f"{shlex.join(argv)}\n{(p.stdout + p.stderr)[-1500:]}")
    for m in MPI_BW_RE.finditer(p.stdout):
        buf, nbytes, secs = int(m.group(1)), int(m.group(2)), float(m.group(3))
        bad = int(m.group(6))
        if nbytes != args.total or bad:
            raise RuntimeError(f"MPICH buf={buf}: WRONG DATA ({bad} bad stamps)\n{p.stdout}")
        res["bw"][buf] = nbytes / secs / MIB
    missing = [b for b in args.sizes if b not in res["bw"]]
    if missing:
        raise RuntimeError(f"MPICH: no result for buf={missing[0]}\n{p.stdout}{p.stderr}")
    if args.mpi_lat_iters:
        argv = ["timeout", str(args.mpi_timeout), "mpiexec", "-n", "2", exe, "lat",
                str(args.mpi_lat_iters)]
        p = subprocess.run(argv, capture_output=True, text=True)
        m = MPI_LAT_RE.search(p.stdout)
        if p.returncode != 0 or not m:
            raise RuntimeError(f"MPICH latency run failed (exit status {p.returncode})\n"
                               f"{shlex.join(argv)}\n{(p.stdout + p.stderr)[-1500:]}")
        res["lat"] = float(m.group(3))
    return res


# ------------------------------------------------------------------------------------------
# report

def mpich_version():
    p = subprocess.run(["mpichversion"], capture_output=True, text=True)
    v = re.search(r"MPICH Version:\s*(\S+)", p.stdout)
    d = re.search(r"MPICH Device:\s*(\S+)", p.stdout)
    return f"MPICH {v.group(1) if v else '?'} (device {d.group(1) if d else '?'})"


def dvmm_version(args):
    g = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "src"],
                           capture_output=True, text=True).stdout.strip()
    if os.path.commonpath([args.dvmm, ROOT]) == ROOT:
        d = (f"`{os.path.relpath(args.dvmm, ROOT)}` with the work tree at commit `{g}`"
             f"{' + uncommitted src/ changes' if dirty else ''}")
    else:
        d = f"`{args.dvmm}`"
    if os.path.exists(args.dvmm):
        built = datetime.datetime.utcfromtimestamp(os.path.getmtime(args.dvmm))
        d += f", binary of {built:%Y-%m-%d %H:%M} UTC"
    return d


def values(res, kind, key, buf=None):
    out = []
    for r in res[kind]:
        if buf is None:
            if key in r:
                out.append(r[key])
        elif buf in r.get(key, {}):
            out.append(r[key][buf])
    return out


def ratio(a, b):
    return f"{med(a) / med(b):.2f}×" if a and b else "—"


def report(args, res, skipped, failed, started, load, minutes):
    L = []
    manifest = benchrun.read_manifest(args.gdir) if args.gdir else {}
    L.append(f"### Results of {started:%Y-%m-%d %H:%M} UTC")
    L.append("")
    L.append(f"- Machine: {benchrun.machine_info()}; load average {load[0]} at start, "
             f"{load[1]} at end.")
    L.append(f"- dvmm: {dvmm_version(args)} (release build); host reference: "
             f"{mpich_version()}.")
    src = ("from the guest image" if args.ivc_from_image else
           "cross-compiled from `guest/libdvmmipc` and added with `--initrd-extra`")
    if args.gdir:
        L.append(f"- Guest: the default image `{os.path.basename(os.path.realpath(args.gdir))}` "
                 f"(Linux {manifest.get('kernel_release', '?')}, busybox), 2 VMs of 1 vCPU and "
                 f"{args.memory} per path; ivc shared memory {args.ivc_size}"
                 + (f"; `ivc-bench` {src} (`{args.ivc_exe}`)" if args.ivc_exe else "")
                 + (f", environment `{' '.join(args.ivc_env)}`" if args.ivc_env else "") + ".")
    L.append(f"- Transfer per point: **{human(args.total)}** for ivc and MPICH, "
             f"**{human(args.tcp_total)}** for TCP" +
             (" (smaller: the TCP path is ~15 MiB/s)" if args.tcp_total < args.total else "")
             + "; bandwidth = bytes / time until the last byte is received. Latency: "
             f"{args.lat_iters} round trips in the VMs, {args.mpi_lat_iters} with MPICH.")
    L.append(f"- Command: `{args.command_line}` ({minutes:.1f} minutes); {args.reps} "
             f"repetition{'s, median (min–max)' if args.reps > 1 else ''}.")
    for note in args.note:
        L.append(f"- Note: {note}")
    for kind, why in skipped.items():
        L.append(f"- {NAMES[kind]}: **not measured** ({why}).")
    for kind, why in failed.items():
        L.append(f"- **{NAMES[kind]} failed**: {why}")
    if any(r.get("sender_only") for r in res["ivc"]):
        L.append("- ivc: timed by rank 0, the sender, from its first `ivc_send` to rank 1's ack "
                 "after its last `ivc_recv` (the receive side's completion plus one mailbox "
                 "message).")
    L.append("")
    L.append("**Bandwidth** (MiB/s; higher is better)")
    L.append("")
    L.append("| buffer | ivc | TCP | MPICH (host) | **ivc / TCP** | ivc / MPICH |")
    L.append("|---:|---:|---:|---:|---:|---:|")
    for b in args.sizes:
        v = {k: values(res, k, "bw", b) for k in KINDS}
        L.append(f"| {human(b)} | {virtio.cell(v['ivc'], '{:.1f}')} | "
                 f"{virtio.cell(v['tcp'], '{:.1f}')} | {virtio.cell(v['mpi'], '{:.0f}')} | "
                 f"**{ratio(v['ivc'], v['tcp'])}** | {ratio(v['ivc'], v['mpi'])} |")
    L.append("")
    if args.lat_iters or args.mpi_lat_iters:
        L.append("**Small-message latency** (one way, µs; lower is better)")
        L.append("")
        L.append("| path | µs |")
        L.append("|---|---:|")
        for k, label in (("ivc", "ivc mailbox (`ivc-bench lat`)"),
                         ("tcp", "TCP between the VMs, 1-byte ping-pong / 2"),
                         ("mpi", "MPICH on the host, 1-byte ping-pong / 2")):
            fmt = "{:.2f}" if k == "mpi" else "{:.1f}"
            L.append(f"| {label} | {virtio.cell(values(res, k, 'lat'), fmt)} |")
        L.append("")
    tr = [r for r in res["tcp"] if "lost" in r]
    if tr:
        L.append("TCP: frames lost " + ", ".join(str(r["lost"]) for r in tr)
                 + ", sender retransmissions " + ", ".join(str(r["retrans"]) for r in tr)
                 + (", device rx_dropped "
                    + ", ".join(str(r.get("dvmm_rx_dropped", "?")) for r in tr)
                    if any("dvmm_rx_dropped" in r for r in tr) else "")
                 + " (per run, over all sizes).")
        L.append("")
    checked = [NAMES[k] for k in ("tcp", "mpi") if res[k]]
    if checked:
        wrong = any("WRONG DATA" in v for v in failed.values())
        L.append("Data checked: the " + " and ".join(checked) + " streams' stamp every 4 KiB"
                 + ("." if wrong else " (no mismatch).")
                 + (" ivc: rank 1 checks the contents of the last message of each size."
                    if res["ivc"] else ""))
        L.append("")
    return "\n".join(L)


def record(body, doc):
    begin, end = "<!-- bench:ivc:begin -->", "<!-- bench:ivc:end -->"
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    if begin not in text or end not in text:
        text = text.rstrip() + "\n\n" + SECTION_INTRO + begin + "\n" + end + "\n"
        with open(doc, "w") as f:
            f.write(text)
    benchrun.replace_section("ivc", body, doc)


# ------------------------------------------------------------------------------------------
# the plot (hand-written SVG: no plotting library needed)

COLORS = {"ivc": "#d62728", "tcp": "#1f77b4", "mpi": "#2ca02c"}
LABELS = {"ivc": "ivc (libdvmmipc, 2 VMs)", "tcp": "TCP over virtio-net (2 VMs)",
          "mpi": "MPICH (2 host processes)"}


def svg_plot(args, res, started, path):
    W, H = 760, 460
    left, right, top, bottom = 80, 230, 58, 60
    pw, ph = W - left - right, H - top - bottom
    curves = {k: [(b, med(values(res, k, "bw", b))) for b in args.sizes if values(res, k, "bw", b)]
              for k in KINDS}
    ys = [y for pts in curves.values() for _, y in pts if y > 0]
    if not ys:
        return None
    ylo = 10 ** math.floor(math.log10(min(ys)))
    yhi = 10 ** math.ceil(math.log10(max(ys)))
    if yhi <= ylo:
        yhi = ylo * 10
    xlo, xhi = math.log2(min(args.sizes)), math.log2(max(args.sizes))
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1

    def X(b):
        return left + (math.log2(b) - xlo) / (xhi - xlo) * pw

    def Y(v):
        frac = (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo))
        return top + ph - frac * ph

    def esc(s):
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{left + pw / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">'
         f'Bandwidth between two VMs / processes (bench/ivc.sh)</text>',
         f'<text x="{left + pw / 2}" y="39" text-anchor="middle" fill="#555">'
         f'{esc(human(args.total))} per point (TCP {esc(human(args.tcp_total))}), '
         f'bytes / time to the last receive, '
         + (f'median of {args.reps} runs, ' if args.reps > 1 else '')
         + f'{started:%Y-%m-%d}</text>']
    # grid and y labels: decades, with 2 and 5 as faint lines
    d = ylo
    while d <= yhi * 1.0001:
        y = Y(d)
        o.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ccc"/>')
        o.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{d:g}</text>')
        for f in (2, 5):
            if d * f < yhi:
                y2 = Y(d * f)
                o.append(f'<line x1="{left}" y1="{y2:.1f}" x2="{left + pw}" y2="{y2:.1f}" '
                         f'stroke="#eee"/>')
        d *= 10
    for b in args.sizes:
        x = X(b)
        o.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#eee"/>')
        o.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">'
                 f'{esc(short(b))}</text>')
    o.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{left + pw / 2}" y="{H - 15}" text-anchor="middle">buffer (message) size, '
             'log scale</text>')
    o.append(f'<text transform="translate(22 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
             'MiB/s, log scale</text>')
    for k in KINDS:
        pts = curves[k]
        if not pts:
            continue
        c = COLORS[k]
        if len(pts) > 1:
            o.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="'
                     + " ".join(f"{X(b):.1f},{Y(v):.1f}" for b, v in pts) + '"/>')
        for b, v in pts:
            o.append(f'<circle cx="{X(b):.1f}" cy="{Y(v):.1f}" r="3.5" fill="{c}">'
                     f'<title>{esc(NAMES[k])} {esc(human(b))}: {v:.1f} MiB/s</title></circle>')
    ly = top + 10
    for k in KINDS:
        c = COLORS[k]
        lab = LABELS[k] + ("" if curves[k] else " — not measured")
        o.append(f'<line x1="{left + pw + 15}" y1="{ly}" x2="{left + pw + 40}" y2="{ly}" '
                 f'stroke="{c}" stroke-width="2"/>')
        o.append(f'<circle cx="{left + pw + 27.5}" cy="{ly}" r="3.5" fill="{c}"/>')
        o.append(f'<text x="{left + pw + 46}" y="{ly + 4}" font-size="11">{esc(lab)}</text>')
        ly += 22
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
    log(f"wrote {os.path.relpath(path, ROOT)}")
    return path


# ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Sizes take K, M or G (powers of 2), e.g. 64M, 1G.")
    ap.add_argument("--quick", action="store_true",
                    help="a short run: 64 MiB per point (TCP 32 MiB), buffers of 4K,64K,1M,16M, "
                    "1000 round trips (explicit options still win)")
    ap.add_argument("--total", type=parse_size,
                    help="bytes per point for ivc and MPICH (default 1G)")
    ap.add_argument("--tcp-total", type=parse_size,
                    help="bytes per point for TCP, a multiple of 1M (default 128M: ~15 MiB/s)")
    ap.add_argument("--sizes", type=size_list,
                    help="buffer sizes, comma-separated (default 4K,16K,64K,256K,1M,4M,16M)")
    ap.add_argument("--reps", type=int, default=1, help="repetitions of everything (default 1)")
    ap.add_argument("--lat-iters", type=int,
                    help="round trips of the latency tests in the VMs, 0 for none (default 2000)")
    ap.add_argument("--mpi-lat-iters", type=int, default=100000,
                    help="round trips of MPICH's latency test (default 100000)")
    ap.add_argument("--no-lat", action="store_true", help="no latency tests")
    ap.add_argument("--ivc-size", default="64M",
                    help="shared memory of the ivc group (default 64M)")
    ap.add_argument("--ivc-env", action="append", default=[], metavar="VAR=VALUE",
                    help="environment for ivc-bench in the guests, e.g. IVC_SPIN_US=1000 "
                    "(repeatable)")
    ap.add_argument("--build-ivc", action="store_true",
                    help="cross-compile guest/libdvmmipc even if the image has ivc-bench")
    ap.add_argument("--no-ivc", action="store_true")
    ap.add_argument("--no-tcp", action="store_true")
    ap.add_argument("--no-mpi", action="store_true")
    ap.add_argument("--record", action="store_true",
                    help="write the results into docs/BENCHMARKS.md and docs/ivc-bandwidth.svg")
    ap.add_argument("--doc", default=DOC, help=argparse.SUPPRESS)
    ap.add_argument("--svg", default=SVG, help=argparse.SUPPRESS)
    ap.add_argument("--memory", default="512M", help="guest RAM of each VM (default 512M)")
    ap.add_argument("--dvmm", default=os.path.join(ROOT, "build", "dvmm"))
    ap.add_argument("--guest-dir", help="image directory (default: guest/build.sh --print-dir)")
    ap.add_argument("--note", action="append", default=[],
                    help="a line to add to the recorded results (repeatable)")
    ap.add_argument("--timeout", type=int,
                    help="seconds for one pair of VMs (default: from the sizes and totals)")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench", "ivc"))
    args = ap.parse_args()
    if args.quick:
        args.total = args.total or 64 * MIB
        args.tcp_total = args.tcp_total or 32 * MIB
        args.sizes = args.sizes or QUICK_SIZES
        args.lat_iters = 1000 if args.lat_iters is None else args.lat_iters
        args.mpi_lat_iters = min(args.mpi_lat_iters, 20000)
    args.total = args.total or GIB
    args.tcp_total = args.tcp_total or min(128 * MIB, args.total)
    args.sizes = tuple(sorted(set(args.sizes or SIZES)))
    args.lat_iters = 2000 if args.lat_iters is None else args.lat_iters
    if args.no_lat:
        args.lat_iters = args.mpi_lat_iters = 0
    for b in args.sizes:
        if b % 4096 or args.total % b or args.tcp_total % b:
            die(f"buffer size {b} must be a multiple of 4 KiB dividing --total ({args.total}) "
                f"and --tcp-total ({args.tcp_total})")
    if args.tcp_total % MIB:
        die("--tcp-total must be a multiple of 1 MiB")
    for e in args.ivc_env:
        if not re.fullmatch(r"[A-Za-z_]\w*=[\w.,:/-]*", e):
            die(f"--ivc-env {e!r}: not VAR=VALUE")
    try:
        parse_size(args.ivc_size)
    except argparse.ArgumentTypeError as e:
        die(f"--ivc-size: {e}")
    args.dvmm = os.path.abspath(args.dvmm)
    shown, skip = [], False
    for a in sys.argv[1:]:  # --doc/--svg (for testing the recorder) are not part of the recipe
        if not skip and not a.startswith(("--doc", "--svg")):
            shown.append(a)
        skip = a in ("--doc", "--svg")
    args.command_line = "bench/ivc.sh " + shlex.join(shown)
    os.makedirs(args.work, exist_ok=True)
    n = len(args.sizes)
    # Generous: boot + the transfers at 8 MiB/s (ivc) and 2 MiB/s (TCP) + the latency runs.
    args.ivc_timeout = args.timeout or int(240 + n * args.total / (8 * MIB) + args.lat_iters / 20)
    args.tcp_timeout = args.timeout or int(240 + n * args.tcp_total / (2 * MIB)
                                           + args.lat_iters / 20)
    args.mpi_timeout = max(120, int(n * args.total / (100 * MIB)) + 60)

    # Tools, up front.
    skipped = {}
    need_guest = not (args.no_ivc and args.no_tcp)
    if need_guest:
        for tool in ("riscv64-linux-gnu-gcc", "cpio"):
            if not on_path(tool):
                die(f"{tool} is missing (apt-get install gcc-riscv64-linux-gnu "
                    "libc6-dev-riscv64-cross cpio)")
        if not os.access(args.dvmm, os.X_OK):
            die(f"{args.dvmm} is not built (scripts/build.sh build), or pass --no-ivc --no-tcp")
    if not args.no_mpi:
        for tool in ("mpicc", "mpiexec", "mpichversion"):
            if not on_path(tool):
                die(f"{tool} is missing (apt-get install mpich libmpich-dev), or pass --no-mpi")
    args.gdir = benchrun.guest_dir(args.guest_dir) if need_guest else None
    if args.gdir:
        log("guest image:", args.gdir)
    args.ivc_exe = args.ivc_exe_host = None
    args.ivc_from_image = False
    if args.no_ivc:
        skipped["ivc"] = "run with --no-ivc"
    elif not dvmm_has_ivc(args.dvmm):
        skipped["ivc"] = f"`{os.path.relpath(args.dvmm, ROOT)} run` has no `--ivc` option yet"
    else:
        config = os.path.join(args.gdir, "config")
        if os.path.exists(config) and "CONFIG_UIO_PDRV_GENIRQ=y" not in open(config).read():
            die(f"the guest kernel ({config}) lacks CONFIG_UIO_PDRV_GENIRQ: rebuild the image "
                "(guest/build.sh), or pass --no-ivc")
        in_image = None if args.build_ivc else image_ivc_bench(args.gdir)
        if in_image:
            args.ivc_exe, args.ivc_from_image = in_image, True
            log("ivc-bench from the guest image:", in_image)
        else:
            try:
                args.ivc_exe_host = build_ivc_bench(args.work)
                args.ivc_exe = "/opt/ivc-bench"
            except RuntimeError as e:
                die(f"ivc-bench: {e} (or pass --no-ivc)")
    if args.no_tcp:
        skipped["tcp"] = "run with --no-tcp"
    if args.no_mpi:
        skipped["mpi"] = "run with --no-mpi"
    cpio = build_guest_programs(args, args.work) if need_guest else None
    mpi_exe = None if args.no_mpi else build_mpibw(args.work)

    started = datetime.datetime.utcnow()
    t0 = time.monotonic()
    load = [" / ".join(open("/proc/loadavg").read().split()[:3]), None]
    log("load average at start:", load[0])
    log(f"sizes {', '.join(human(b) for b in args.sizes)}; {human(args.total)} per point "
        f"(TCP {human(args.tcp_total)})")
    res = {k: [] for k in KINDS}
    failed = {}
    runners = {"ivc": lambda rep: run_ivc(args, cpio, rep),
               "tcp": lambda rep: run_tcp(args, cpio, rep),
               "mpi": lambda rep: run_mpi(args, mpi_exe)}
    for rep in range(args.reps):
        for k in KINDS:
            if k in skipped or k in failed:
                continue
            try:
                r = runners[k](rep)
            except RuntimeError as e:
                log(str(e))
                failed[k] = str(e).splitlines()[0]
                continue
            res[k].append(r)
            log(f"{NAMES[k]} {rep + 1}/{args.reps}: "
                + ", ".join(f"{human(b)} {v:.1f}" for b, v in sorted(r["bw"].items()))
                + " MiB/s" + (f"; latency {r['lat']:.2f} µs one way" if "lat" in r else ""))

    load[1] = " / ".join(open("/proc/loadavg").read().split()[:3])
    minutes = (time.monotonic() - t0) / 60
    body = report(args, res, skipped, failed, started, load, minutes)
    print(body)
    svg_plot(args, res, started, os.path.join(args.work, "ivc-bandwidth.svg"))
    if args.record:
        svg_plot(args, res, started, args.svg)
        record(body, args.doc)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
