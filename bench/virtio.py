#!/usr/bin/env python3
"""dvmm virtio benchmarks (issue 5) against qemu-system-riscv64, same kernel, initramfs and disk.

Measures, in one run, dvmm and QEMU interleaved (QEMU, then dvmm, for each repetition):
  1. virtio-blk, sequential: on a fresh raw image (2 x --disk-mib MiB of random data, made
     at the start, the same file for both VMMs), busybox dd in the guest, 1 MiB blocks:
     read with O_DIRECT (iflag=direct) from the first half, write /dev/zero with O_DIRECT
     (oflag=direct) and buffered + fsync (conv=fsync) into the second half; dd's own timing
     (the guest clock), so the boot is left out;
  2. virtio-blk, random 4 KiB reads at queue depth 1 with O_DIRECT over the first half
     (bench/programs/randread.c), IOPS; its checksum of the data read is checked against the
     image, as are an md5 of 8 MiB of the first half and, after each run, the second half
     (all zeros once the guest wrote it);
  3. virtio-net: one TCP stream between two VMs of the same VMM (bench/programs/tcpstream.c,
     --net-mib MiB, the data checked on arrival), receiver side first byte to EOF: dvmm with
     two `dvmm run --net switch=NAME` processes, QEMU with two processes joined by
     `-netdev socket,listen=`/`connect=`. Frames lost on the way (sender's tx_packets minus
     the receiver's rx_packets, both ways), the sender's TCP retransmissions and dvmm's own
     rx_dropped counter (`run -v`) are reported.

Prints a markdown table; --record writes it into docs/BENCHMARKS.md between the
`bench:virtio` markers (creating the "Virtio devices (issue 5)" section if needed).

Usage: bench/virtio.sh [--reps N] [--record] [--disk-mib M] [--rand-ops N] [--net-mib M]
                       [--no-disk] [--no-net] [--no-dvmm] [--no-qemu] [--dvmm PATH]
"""
import argparse
import datetime
import hashlib
import mmap
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing run.py
import run as benchrun  # noqa: E402  (bench/run.py: guest image, cpio, Run, the doc recorder)
from run import log, die, med  # noqa: E402

DOC = os.path.join(ROOT, "docs", "BENCHMARKS.md")
QEMU = benchrun.QEMU
OPENSBI = benchrun.OPENSBI
APPEND = "console=ttyS0 quiet loglevel=1"
PROGRAMS = ("randread", "tcpstream")
MIB = 1 << 20
MD5_MIB = 8  # the md5 check of the read half, untimed

DD_RE = re.compile(r"(\d+) bytes \([^)]*\) copied, ([0-9.]+) seconds")
RANDREAD_RE = re.compile(r"randread ops=(\d+) range_mib=(\d+) direct=(\d) seconds=([0-9.]+) "
                         r"iops=([0-9.]+) mean_us=([0-9.]+) check=([0-9a-f]+)")
RECV_RE = re.compile(r"tcpstream recv bytes=(\d+) seconds=([0-9.]+) mib_s=([0-9.]+) "
                     r"checked=(\d+) bad=(\d+)")
SEND_RE = re.compile(r"tcpstream send bytes=(\d+) seconds=([0-9.]+) mib_s=([0-9.]+) "
                     r"connect_tries=(\d+)")
IFSTATS_RE = re.compile(r"ifstats ((?:\w+=\d+ ?)+)")
DVMM_NET_RE = re.compile(r"dvmm: virtio-net0: .*rx (\d+) frames \((\d+) B, (\d+) dropped\), "
                         r"tx (\d+) frames")
DVMM_BLK_RE = re.compile(r"dvmm: virtio-blk0: .*reads (\d+) \((\d+) B\), writes (\d+) \((\d+) B\), "
                         r"flushes (\d+), errors (\d+)")

# The guest side, shipped in the programs' cpio next to them (/opt/disk.sh, /opt/net.sh).
DISK_SH = r"""#!/bin/sh
# disk.sh MIB OPS SEED MD5_SKIP MD5_MIB (bench/virtio.py): the disk is /dev/vda, 2*MIB MiB;
# the first half is read, the second half written.
mib=$1 ops=$2 seed=$3 skip=$4 cnt=$5
size=$(cat /sys/block/vda/size) || exit 10
[ "$size" -ge $((2 * mib * 2048)) ] || { echo "disk.sh: /dev/vda has $size sectors"; exit 10; }
echo 3 > /proc/sys/vm/drop_caches
echo "@@ seqread"
dd if=/dev/vda of=/dev/null bs=1M count=$mib iflag=direct 2>&1 || exit 11
echo "@@ seqwrite_direct"
dd if=/dev/zero of=/dev/vda bs=1M count=$mib seek=$mib oflag=direct conv=notrunc 2>&1 || exit 12
echo "@@ seqwrite_fsync"
dd if=/dev/zero of=/dev/vda bs=1M count=$mib seek=$mib conv=notrunc,fsync 2>&1 || exit 13
echo "@@ randread"
/opt/randread /dev/vda $ops $mib $seed || exit 14
sum=$(dd if=/dev/vda bs=1M skip=$skip count=$cnt iflag=direct 2>/dev/null | md5sum) || exit 15
echo "@@ md5 ${sum%% *}"
"""

NET_SH = r"""#!/bin/sh
# net.sh recv|send MYIP PEERIP PORT MIB (bench/virtio.py)
role=$1 me=$2 peer=$3 port=$4 mib=$5
# No IPv6 (router solicitations, DAD): only ARP and the TCP stream cross the link.
for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6 \
	/proc/sys/net/ipv6/conf/eth0/disable_ipv6; do
	[ -e $f ] && echo 1 > $f
done
ifconfig eth0 $me netmask 255.255.255.0 up || exit 21
if [ "$role" = recv ]; then
	/opt/tcpstream recv $port
else
	/opt/tcpstream send $peer $port $mib
fi
rc=$?
line=ifstats
for f in rx_packets rx_dropped rx_errors tx_packets tx_dropped tx_errors; do
	line="$line $f=$(cat /sys/class/net/eth0/statistics/$f)"
done
echo "$line tcp_retrans=$(awk '/^Tcp:/ { n++; if (n == 1) for (i = 1; i <= NF; i++) h[i] = $i;
	else for (i = 1; i <= NF; i++) if (h[i] == "RetransSegs") print $i }' /proc/net/snmp)"
exit $rc
"""

SECTION_INTRO = """\
## Virtio devices (issue 5)

Guest I/O through dvmm's virtio-mmio devices against QEMU's, on the same kernel, initramfs
and disk image: virtio-blk throughput and random-read IOPS, and virtio-net TCP throughput
between two VMs on this host. Ratios are **dvmm / QEMU of the throughput** (higher is
better; 1.00× = as fast as QEMU).

### How to run

    bench/virtio.sh                   # everything, prints a markdown table (about 2 minutes)
    bench/virtio.sh --record          # and writes the results below
    bench/virtio.sh --help            # --reps, --disk-mib, --rand-ops, --net-mib, --no-net, ...

It needs `build/dvmm`, the guest image (`guest/build.sh`) and the packages
`qemu-system-misc opensbi gcc-riscv64-linux-gnu libc6-dev-riscv64-cross cpio`. The guest
programs ([`randread.c`](../bench/programs/randread.c),
[`tcpstream.c`](../bench/programs/tcpstream.c)) and two scripts (`/opt/disk.sh`,
`/opt/net.sh`, in `bench/virtio.py`) are added under `/opt/` with `--initrd-extra` for dvmm
and appended to the initrd for QEMU; work files and the disk image go to `build/bench/virtio/`.

### What is measured

Both VMMs: 1 vCPU (`--vcpus 1` / `-smp 1`, so that two network VMs fit the host's 2 CPUs),
512 MiB, kernel command line `console=ttyS0 quiet loglevel=1`. dvmm: `dvmm run -v` (for its
device counters), `--disk IMG,format=raw`, `--net switch=NAME,mac=..`. QEMU: `-M virt -bios
fw_jump.bin`, `-drive file=IMG,format=raw,if=none,id=d0,cache=writeback -device
virtio-blk-device,drive=d0`, `-netdev socket,id=n0,listen=127.0.0.1:PORT` (receiver) /
`connect=127.0.0.1:PORT` (sender) `-device virtio-net-device,netdev=n0,mac=..`.

- **Disk.** A fresh raw image of 2 × M MiB (M = `--disk-mib`, 256 by default) filled with
  random data on the host at the start; both VMMs use the same file, which stays in the
  host's page cache (what is measured is the VMM's I/O path, not the host's disk; the fsync
  write includes writing M MiB back to the host's disk). In one guest per repetition and
  VMM, timed by busybox `dd` itself with the guest clock (boot excluded): *sequential read*
  `dd if=/dev/vda of=/dev/null bs=1M count=M iflag=direct` (first half, after
  `drop_caches`); *sequential write, O_DIRECT* `dd if=/dev/zero of=/dev/vda bs=1M count=M
  seek=M oflag=direct` (second half); *sequential write, buffered + fsync* the same with
  `conv=fsync` instead of `oflag=direct` (the guest's page cache, then a flush); *random
  4 KiB reads* `randread /dev/vda OPS M SEED`: OPS `pread`s of 4 KiB at uniformly random
  4 KiB-aligned offsets of the first half, one at a time (queue depth 1), `O_DIRECT`
  (accepted by the kernel on a block device; otherwise the program drops the page cache and
  says `direct=0`). Checked: randread's checksum of the blocks it read and the md5 of 8 MiB
  of the first half against the image, and the second half all zeros after each run.
- **Network.** Two VMs of the same VMM started together (the receiver first; QEMU's
  sender once the receiver's socket listens), static addresses with `ifconfig`;
  `tcpstream recv` in one, `tcpstream send IP PORT N` (N MiB, 64 KiB writes) in the other;
  throughput = bytes / (first byte received → EOF) on the receiver's clock. Every 4 KiB of
  the stream carries a stamp the receiver checks. After the transfer both print their
  `eth0` counters and the sender its TCP retransmissions; *frames lost* = sent − received
  over both directions (IPv6 is turned off, but ARP and the sender's connection attempts
  while the receiver boots count, so a handful is noise), and dvmm's
  `virtio-net0` line gives the frames its device dropped for want of guest buffers.

Each figure is the median of the repetitions (min–max in brackets); dvmm and QEMU runs are
interleaved. The machine is small and shared: the load average is recorded with each result.

"""


# ------------------------------------------------------------------------------------------
# inputs

def build_programs(work):
    files = {"opt/disk.sh": (DISK_SH.encode(), 0o755), "opt/net.sh": (NET_SH.encode(), 0o755)}
    for p in PROGRAMS:
        src = os.path.join(HERE, "programs", p + ".c")
        exe = os.path.join(work, p + ".riscv64")
        subprocess.run(["nice", "riscv64-linux-gnu-gcc", "-static", "-O2", "-Wall",
                        "-I", os.path.join(HERE, "programs"), "-o", exe, src], check=True)
        with open(exe, "rb") as f:
            files["opt/" + p] = (f.read(), 0o755)
    cpio = benchrun.make_cpio(files, os.path.join(work, "virtio-programs.cpio"))
    return files, cpio


def make_image(path, mib):
    """2*mib MiB of random data (fresh, dense, fsynced); returns the read half's sha1."""
    log(f"making the disk image {os.path.relpath(path, ROOT)} ({2 * mib} MiB of random data)")
    if os.path.exists(path):
        os.unlink(path)
    h = hashlib.sha1()
    with open(path, "wb") as f:
        for i in range(2 * mib):
            block = os.urandom(MIB)
            if i < mib:
                h.update(block)
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    return h.hexdigest()


POISON = b"\xa5" * MIB


def poison_write_half(path, mib):
    """Marks the first, middle and last MiB of the write half, so that a write that never
    reached the image shows."""
    with open(path, "r+b") as f:
        for m in (mib, mib + mib // 2, 2 * mib - 1):
            f.seek(m * MIB)
            f.write(POISON)
        f.flush()
        os.fsync(f.fileno())


def check_image(path, mib, read_sha1):
    """None if the read half is intact and the write half all zeros, else what is wrong."""
    zero = bytes(MIB)
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for i in range(2 * mib):
            block = f.read(MIB)
            if i < mib:
                h.update(block)
            elif block != zero:
                return f"the write half is not all zeros at MiB {i} (the guest's writes were lost)"
    if h.hexdigest() != read_sha1:
        return "the read half of the image changed"
    return None


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return state, z ^ (z >> 31)


def randread_check(path, ops, mib, seed):
    """What randread prints as check= for these arguments, from the image file."""
    blocks = mib * (MIB // 4096)
    check, state = 0, seed
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        for _ in range(ops):
            state, r = splitmix64(state)
            off = (r % blocks) * 4096
            word = int.from_bytes(m[off:off + 8], "little")
            check = ((check ^ word) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{check:016x}"


def md5_of(path, skip_mib, cnt_mib):
    with open(path, "rb") as f:
        f.seek(skip_mib * MIB)
        return hashlib.md5(f.read(cnt_mib * MIB)).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    """True if a TCP socket of this host listens on port (IPv4 or IPv6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


# ------------------------------------------------------------------------------------------
# the two VMMs

class Vmm:
    def __init__(self, key, args, gdir, files, cpio):
        self.key, self.args, self.gdir, self.files, self.cpio = key, args, gdir, files, cpio
        self.name = "dvmm" if key == "dvmm" else "QEMU"
        self.kernel = os.path.join(gdir, "Image")
        self.initrd = os.path.join(gdir, "initramfs.cpio.gz")


class Qemu(Vmm):
    def argv(self, tag, cmd, disk=None, net=None):
        """net: (role, port, mac) with role "listen" or "connect"."""
        files = {"dvmm/cmd": (("# written by bench/virtio.py\n" + cmd + "\n").encode(), 0o755)}
        files.update(self.files)
        cpio = benchrun.make_cpio(files, os.path.join(self.args.work, f"qemu-{tag}.cpio"))
        initrd = benchrun.concat_initrd([self.initrd, cpio],
                                        os.path.join(self.args.work, f"qemu-{tag}.initrd"))
        a = ["timeout", "--kill-after=5", str(self.args.timeout), QEMU, "-M", "virt",
             "-smp", str(self.args.vcpus), "-m", self.args.memory, "-nographic",
             "-bios", OPENSBI, "-kernel", self.kernel, "-initrd", initrd, "-append", APPEND]
        if disk:
            a += ["-drive", f"file={disk},format=raw,if=none,id=d0,cache=writeback",
                  "-device", "virtio-blk-device,drive=d0"]
        if net:
            role, port, mac = net
            a += ["-netdev", f"socket,id=n0,{role}=127.0.0.1:{port}",
                  "-device", f"virtio-net-device,netdev=n0,mac={mac}"]
        else:
            a += ["-nic", "none"]
        return a


class Dvmm(Vmm):
    def argv(self, tag, cmd, disk=None, net=None):
        """net: (switch name, mac)."""
        t = self.args.timeout
        a = [self.args.dvmm, "run", "-v", "--vcpus", str(self.args.vcpus),
             "--memory", self.args.memory, "--kernel", self.kernel, "--initrd", self.initrd,
             "--append", APPEND, "--timeout", str(t), "--initrd-extra", self.cpio]
        if disk:
            a += ["--disk", f"{disk},format=raw"]
        if net:
            a += ["--net", f"switch={net[0]},mac={net[1]}"]
        return ["timeout", "--kill-after=5", str(t + 10)] + a + ["--"] + shlex.split(cmd)


def sections(text):
    """{name: text after its `@@ name` line, up to the next one}."""
    out = {}
    parts = re.split(r"^@@ (\w+)[^\n]*$", text, flags=re.M)
    for i in range(1, len(parts) - 1, 2):
        out[parts[i]] = parts[i + 1]
    return out


def run_disk(m, rep, image, read_sha1):
    args = m.args
    mib = args.disk_mib
    seed = 1000 + rep
    skip = (rep * 37) % (mib - MD5_MIB)
    poison_write_half(image, mib)
    cmd = f"sh /opt/disk.sh {mib} {args.rand_ops} {seed} {skip} {MD5_MIB}"
    r = benchrun.Run(m.argv(f"disk{rep}", cmd, disk=image), args.timeout + 20)
    text = r.text().replace("\r", "")
    if r.rc != 0 or r.timed_out:
        raise RuntimeError(r.fail(f"{m.name} disk run"))
    sec = sections(text)
    res = {}
    for key in ("seqread", "seqwrite_direct", "seqwrite_fsync"):
        mm = DD_RE.search(sec.get(key, ""))
        if not mm:
            raise RuntimeError(r.fail(f"{m.name} disk run: no dd result for {key}"))
        nbytes, secs = int(mm.group(1)), float(mm.group(2))
        if nbytes != mib * MIB:
            raise RuntimeError(r.fail(f"{m.name} disk run: {key} moved {nbytes} bytes"))
        res[key] = nbytes / secs / MIB
    mm = RANDREAD_RE.search(text)
    if not mm:
        raise RuntimeError(r.fail(f"{m.name} disk run: no randread result"))
    res["randread"] = float(mm.group(5))
    res["randread_us"] = float(mm.group(6))
    res["direct"] = mm.group(3) == "1"
    want = randread_check(image, args.rand_ops, mib, seed)
    problems = []
    if mm.group(7) != want:
        problems.append(f"randread read wrong data (check {mm.group(7)}, expected {want})")
    md5 = re.search(r"^@@ md5 ([0-9a-f]{32})", text, re.M)
    if not md5 or md5.group(1) != md5_of(image, skip, MD5_MIB):
        problems.append(f"md5 of {MD5_MIB} MiB at MiB {skip}: "
                        f"{md5.group(1) if md5 else 'missing'}, expected {md5_of(image, skip, MD5_MIB)}")
    bad = check_image(image, mib, read_sha1)
    if bad:
        problems.append(bad)
    if problems:
        raise RuntimeError(r.fail(f"{m.name} disk run: WRONG DATA: " + "; ".join(problems)))
    b = DVMM_BLK_RE.search(text)
    if b:
        res["blk"] = tuple(int(x) for x in b.groups())
    return res


def parse_ifstats(text):
    mm = IFSTATS_RE.search(text)
    if not mm:
        return None
    return {k: int(v) for k, v in (kv.split("=") for kv in mm.group(1).split())}


def run_net(m, rep):
    """Two VMs of the same VMM: receiver and sender started together."""
    args = m.args
    port = 5000
    ip_r, ip_s = "192.168.77.1", "192.168.77.2"
    mac_r, mac_s = "52:54:00:77:00:01", "52:54:00:77:00:02"
    cmd_r = f"sh /opt/net.sh recv {ip_r} {ip_s} {port} {args.net_mib}"
    cmd_s = f"sh /opt/net.sh send {ip_s} {ip_r} {port} {args.net_mib}"
    if m.key == "dvmm":
        sw = f"vbench-{os.getpid()}-{rep}"
        argv_r = m.argv(f"netr{rep}", cmd_r, net=(sw, mac_r))
        argv_s = m.argv(f"nets{rep}", cmd_s, net=(sw, mac_s))
    else:
        hport = free_port()
        argv_r = m.argv(f"netr{rep}", cmd_r, net=("listen", hport, mac_r))
        argv_s = m.argv(f"nets{rep}", cmd_s, net=("connect", hport, mac_s))
    runs = {}

    def go(role, argv):
        runs[role] = benchrun.Run(argv, args.timeout + 20)

    tr = threading.Thread(target=go, args=("recv", argv_r))
    tr.start()
    if m.key == "qemu":  # the connecting QEMU fails if nothing listens yet
        deadline = time.monotonic() + 20
        while not listening(hport) and time.monotonic() < deadline and tr.is_alive():
            time.sleep(0.05)
    else:
        time.sleep(0.2)
    ts = threading.Thread(target=go, args=("send", argv_s))
    ts.start()
    tr.join()
    ts.join()
    if m.key == "dvmm":  # dvmm leaves the (empty) switch directory behind
        for base in (os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "dvmm"),
                     f"/tmp/dvmm-{os.getuid()}"):
            try:
                os.rmdir(os.path.join(base, "switch", sw))
            except OSError:
                pass
    rr, rs = runs["recv"], runs["send"]
    for role, r in (("receiver", rr), ("sender", rs)):
        if r.rc != 0 or r.timed_out:
            other = rs if r is rr else rr
            raise RuntimeError(r.fail(f"{m.name} network {role}") + "\n--- the other VM ("
                               + ("sender" if r is rr else "receiver") + f", exit status "
                               f"{other.rc}):\n" + "\n".join(other.text().splitlines()[-8:]))
    tr_ = rr.text().replace("\r", "")
    ts_ = rs.text().replace("\r", "")
    mr, ms = RECV_RE.search(tr_), SEND_RE.search(ts_)
    if not mr or not ms:
        raise RuntimeError(rr.fail(f"{m.name} network: no tcpstream result") + "\n" +
                           rs.fail("sender"))
    if int(mr.group(1)) != args.net_mib * MIB or int(mr.group(5)) != 0:
        raise RuntimeError(rr.fail(f"{m.name} network: WRONG DATA: received {mr.group(1)} bytes, "
                                   f"{mr.group(5)} bad stamps of {mr.group(4)}"))
    res = {"net": float(mr.group(3)), "net_send": float(ms.group(3)),
           "tries": int(ms.group(4))}
    sr, ss = parse_ifstats(tr_), parse_ifstats(ts_)
    if sr and ss:
        res["lost"] = (ss["tx_packets"] - sr["rx_packets"]) + (sr["tx_packets"] - ss["rx_packets"])
        res["frames"] = ss["tx_packets"] + sr["tx_packets"]
        res["retrans"] = ss["tcp_retrans"]
        res["guest_drop"] = sr["rx_dropped"] + ss["rx_dropped"]
    dd = [DVMM_NET_RE.search(t) for t in (tr_, ts_)]
    if all(dd):
        res["dvmm_rx_dropped"] = sum(int(x.group(3)) for x in dd)
    return res


# ------------------------------------------------------------------------------------------
# report

ROWS = [  # key, label, unit, format
    ("seqread", "virtio-blk sequential read, 1 MiB `O_DIRECT`", "MiB/s", "{:.1f}"),
    ("seqwrite_direct", "virtio-blk sequential write, 1 MiB `O_DIRECT`", "MiB/s", "{:.1f}"),
    ("seqwrite_fsync", "virtio-blk sequential write, buffered + `fsync`", "MiB/s", "{:.1f}"),
    ("randread", "virtio-blk random 4 KiB reads, QD 1, `O_DIRECT`", "IOPS", "{:.0f}"),
    ("net", "virtio-net TCP stream between two VMs", "MiB/s", "{:.1f}"),
]


def cell(xs, fmt):
    if not xs:
        return "—"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def versions(args):
    q = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
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
    return q, d


def report(args, gdir, res, failed, started, load, minutes):
    L = []
    q_ver, d_ver = versions(args)
    manifest = benchrun.read_manifest(gdir)
    L.append(f"### Results of {started:%Y-%m-%d %H:%M} UTC")
    L.append("")
    L.append(f"- Machine: {benchrun.machine_info()}; load average {load[0]} at start, "
             f"{load[1]} at end.")
    L.append(f"- QEMU: `{q_ver}` (TCG); dvmm: {d_ver} (release build).")
    L.append(f"- Guest: the default image `{os.path.basename(os.path.realpath(gdir))}` "
             f"(Linux {manifest.get('kernel_release', '?')}, busybox), {args.vcpus} vCPU, "
             f"{args.memory}"
             + ("" if args.no_disk else f"; disk: a fresh {2 * args.disk_mib} MiB raw image "
                f"(`{os.path.relpath(args.image, ROOT)}`), {args.disk_mib} MiB read and written "
                f"sequentially, {args.rand_ops} random reads")
             + ("" if args.no_net else f"; {args.net_mib} MiB per TCP stream") + ".")
    L.append(f"- Command: `{args.command_line}` ({minutes:.1f} minutes); {args.reps} "
             "repetitions, median (min–max).")
    for note in args.note:
        L.append(f"- Note: {note}")
    for (key, bench), why in failed.items():
        L.append(f"- **{'dvmm' if key == 'dvmm' else 'QEMU'} {bench} failed**: {why}")
    L.append("")
    L.append("| measure | unit | QEMU | dvmm | **dvmm / QEMU** |")
    L.append("|---|---|---:|---:|---:|")
    for key, label, unit, fmt in ROWS:
        q = [r[key] for r in res["qemu"] if key in r]
        d = [r[key] for r in res["dvmm"] if key in r]
        if (key == "net" and args.no_net) or (key != "net" and args.no_disk):
            continue
        ratio = f"**{med(d) / med(q):.2f}×**" if q and d else "—"
        L.append(f"| {label} | {unit} | {cell(q, fmt)} | {cell(d, fmt)} | {ratio} |")
    L.append("")
    notes = []
    for k in ("qemu", "dvmm"):
        rr = [r for r in res[k] if "randread_us" in r]
        if rr:
            direct = "O_DIRECT" if all(r["direct"] for r in rr) else "**not O_DIRECT** (drop_caches)"
            notes.append(f"{'QEMU' if k == 'qemu' else 'dvmm'} random read latency "
                         f"{med([r['randread_us'] for r in rr]):.0f} µs per 4 KiB read ({direct})")
    for k in ("qemu", "dvmm"):
        nr = [r for r in res[k] if "lost" in r]
        if nr:
            s = (f"{'QEMU' if k == 'qemu' else 'dvmm'} network: frames lost "
                 + ", ".join(str(r["lost"]) for r in nr)
                 + f" of ~{med([r['frames'] for r in nr]):,.0f} per run, sender TCP retransmissions "
                 + ", ".join(str(r["retrans"]) for r in nr)
                 + ", guest rx_dropped " + ", ".join(str(r["guest_drop"]) for r in nr))
            if any("dvmm_rx_dropped" in r for r in nr):
                s += (", device rx_dropped (`run -v`) "
                      + ", ".join(str(r.get("dvmm_rx_dropped", "?")) for r in nr))
            s += "; sender-side throughput " + ", ".join(f"{r['net_send']:.1f}" for r in nr) + " MiB/s"
            notes.append(s)
    if notes:
        L.append("Details (per run, in order): " + "; ".join(notes) + ".")
        L.append("")
    L.append("Data checked in every run: randread's checksum and an md5 of 8 MiB against the "
             "image, the written half all zeros afterwards, every 4 KiB stamp of the TCP stream"
             + (" (no mismatch)." if not any("WRONG DATA" in v for v in failed.values()) else "."))
    L.append("")
    return "\n".join(L)


def record(body, doc):
    begin, end = "<!-- bench:virtio:begin -->", "<!-- bench:virtio:end -->"
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n"
    if begin not in text or end not in text:
        text = text.rstrip() + "\n\n" + SECTION_INTRO + begin + "\n" + end + "\n"
        with open(doc, "w") as f:
            f.write(text)
    benchrun.replace_section("virtio", body, doc)


# ------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each run (default 3)")
    ap.add_argument("--record", action="store_true", help="write the results into docs/BENCHMARKS.md")
    ap.add_argument("--doc", default=DOC, help=argparse.SUPPRESS)
    ap.add_argument("--disk-mib", type=int, default=256,
                    help="MiB read and MiB written sequentially (the image is twice this; default 256)")
    ap.add_argument("--rand-ops", type=int, default=5000, help="random 4 KiB reads (default 5000)")
    ap.add_argument("--net-mib", type=int, default=64, help="MiB per TCP stream (default 64)")
    ap.add_argument("--vcpus", type=int, default=1)
    ap.add_argument("--memory", default="512M")
    ap.add_argument("--no-disk", action="store_true")
    ap.add_argument("--no-net", action="store_true")
    ap.add_argument("--no-dvmm", action="store_true")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--keep-image", action="store_true", help="leave the disk image in the work dir")
    ap.add_argument("--dvmm", default=os.path.join(ROOT, "build", "dvmm"))
    ap.add_argument("--guest-dir", help="image directory (default: guest/build.sh --print-dir)")
    ap.add_argument("--note", action="append", default=[],
                    help="a line to add to the recorded results (repeatable)")
    ap.add_argument("--timeout", type=int, default=180, help="seconds for one guest run")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench", "virtio"))
    args = ap.parse_args()
    if args.disk_mib < 2 * MD5_MIB:
        die(f"--disk-mib must be at least {2 * MD5_MIB}")
    args.dvmm = os.path.abspath(args.dvmm)
    shown, skip = [], False
    for a in sys.argv[1:]:
        if not skip and not a.startswith("--doc"):
            shown.append(a)
        skip = a == "--doc"
    args.command_line = "bench/virtio.sh " + shlex.join(shown)
    os.makedirs(args.work, exist_ok=True)
    for tool in (QEMU, "riscv64-linux-gnu-gcc", "cpio"):
        if not any(os.access(os.path.join(p, tool), os.X_OK)
                   for p in os.environ.get("PATH", "").split(os.pathsep)):
            die(f"{tool} is missing")
    if not args.no_dvmm and not os.access(args.dvmm, os.X_OK):
        die(f"{args.dvmm} is not built (or pass --no-dvmm)")

    gdir = benchrun.guest_dir(args.guest_dir)
    log("guest image:", gdir)
    files, cpio = build_programs(args.work)
    machines = []
    if not args.no_qemu:
        machines.append(Qemu("qemu", args, gdir, files, cpio))
    if not args.no_dvmm:
        machines.append(Dvmm("dvmm", args, gdir, files, cpio))

    started = datetime.datetime.utcnow()
    t0 = time.monotonic()
    load = [" / ".join(open("/proc/loadavg").read().split()[:3]), None]
    log("load average at start:", load[0])
    args.image = os.path.join(args.work, "disk.img")
    read_sha1 = None if args.no_disk else make_image(args.image, args.disk_mib)
    res = {"qemu": [], "dvmm": []}
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

    for rep in range(args.reps):
        row = {m.key: {} for m in machines}
        if not args.no_disk:
            for m in machines:
                r = attempt(m.key, "disk", lambda: run_disk(m, rep, args.image, read_sha1))
                if r:
                    row[m.key].update(r)
                    log(f"disk {rep + 1}/{args.reps} {m.name}: read {r['seqread']:.1f} MiB/s, "
                        f"write direct {r['seqwrite_direct']:.1f} MiB/s, write+fsync "
                        f"{r['seqwrite_fsync']:.1f} MiB/s, random 4K {r['randread']:.0f} IOPS")
        if not args.no_net:
            for m in machines:
                r = attempt(m.key, "network", lambda: run_net(m, rep))
                if r:
                    row[m.key].update(r)
                    log(f"net {rep + 1}/{args.reps} {m.name}: {r['net']:.1f} MiB/s (receiver), "
                        f"{r['net_send']:.1f} MiB/s (sender), frames lost {r.get('lost')}, "
                        f"retransmissions {r.get('retrans')}, dvmm rx_dropped "
                        f"{r.get('dvmm_rx_dropped', '-')}")
        for k, v in row.items():
            if v:
                res[k].append(v)

    if not args.keep_image and os.path.exists(args.image):
        os.unlink(args.image)
    load[1] = " / ".join(open("/proc/loadavg").read().split()[:3])
    minutes = (time.monotonic() - t0) / 60
    body = report(args, gdir, res, failed, started, load, minutes)
    print(body)
    if args.record:
        record(body, args.doc)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
