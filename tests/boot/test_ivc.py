#!/usr/bin/env python3
"""Linux boot tests of inter-VM communication (issue 7): two and three VMs of one host
exchange messages through libdvmmipc (mailbox registers for small messages, rings in the
group's shared memory for large ones), a peer that dies, bad input, and the bounds of the
shared-memory window.

The guest programs are built from guest/libdvmmipc with the cross compiler and added under
/opt with --initrd-extra, so the tests check the library in the tree, not the one in the
cached guest image.

Run one test:  DVMM=build/dvmm python3 tests/boot/test_ivc.py IvcTests.test_two_vms_exchange
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_boot import BOOT_TIMEOUT, DVMM, HERE, WORK, guest, pack_cpio, run_dvmm  # noqa: E402

LIBDIR = os.path.join(HERE, "..", "..", "guest", "libdvmmipc")


def build_ivc_cpio():
    """Cross-compiles ivc-test (guest/libdvmmipc) and packs it as /opt/ivc-test in a cpio."""
    os.makedirs(WORK, exist_ok=True)
    stage = os.path.join(WORK, "ivc-root")
    cpio = os.path.join(WORK, "ivc.cpio")
    shutil.rmtree(stage, ignore_errors=True)
    out = os.path.join(stage, "opt")
    os.makedirs(out)
    subprocess.run(["make", "-s", "-C", LIBDIR, "riscv64", "O=" + out], check=True,
                   stdout=subprocess.DEVNULL)
    if not os.path.exists(os.path.join(out, "ivc-test")):
        raise RuntimeError("guest/libdvmmipc did not build ivc-test")
    for name in os.listdir(out):  # only the programs go into the guest
        if not name.startswith("ivc-"):
            path = os.path.join(out, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return pack_cpio(stage, cpio)


_CPIO = None


def ivc_cpio():
    global _CPIO
    if _CPIO is None:
        _CPIO = build_ivc_cpio()
    return _CPIO


def runtime_dir():
    base = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(base, "dvmm") if base else f"/tmp/dvmm-{os.getuid()}"


def start_vm(group_spec, cmd, *flags, timeout=BOOT_TIMEOUT, programs=True):
    """Starts `dvmm run --ivc group_spec ... -- sh -c cmd` in the background, with
    /opt/ivc-test unless `programs` is false."""
    args = [DVMM, "run", "--ivc", group_spec, "--timeout", str(timeout)] + list(flags)
    if programs:
        args += ["--initrd-extra", ivc_cpio()]
    args += ["--", "sh", "-c", cmd]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(procs, timeout=BOOT_TIMEOUT + 60):
    """Waits for every process; returns [(returncode, stdout, stderr)]."""
    results = []
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            results.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


class IvcTests(unittest.TestCase):
    def group(self, name):
        g = f"{name}{os.getpid()}"
        self.addCleanup(self.assertGroupGone, g)
        return g

    def assertGroupGone(self, group):
        path = os.path.join(runtime_dir(), "ivc", group)
        self.assertFalse(os.path.exists(path), f"{path} left behind: {os.listdir(path)}"
                         if os.path.exists(path) else "")

    def assertAllOk(self, results, n, pattern):
        for rank, (code, out, err) in enumerate(results):
            self.assertEqual(code, 0, f"VM {rank}: exit {code}\nstdout:\n{out[-3000:]}\n"
                                      f"stderr:\n{err[-3000:]}")
            self.assertNotIn("FAIL", out)
        ranks = set()
        for code, out, err in results:
            m = re.search(pattern, out)
            self.assertIsNotNone(m, out[-3000:])
            ranks.add(int(m.group(1)))
            self.assertEqual(int(m.group(2)), n, out)
        self.assertEqual(ranks, set(range(n)))

    # ---- messages between VMs

    def exchange(self, n, max_size):
        g = self.group("x")
        procs = [start_vm(f"{g},members={n}", f"/opt/ivc-test {g} exchange 1 {max_size}")
                 for _ in range(n)]
        self.assertAllOk(finish(procs), n, r"ivc-test: rank (\d+) of (\d+) ok")

    def test_two_vms_exchange(self):
        # 1 byte to 64 MiB in both directions, mixed tags, checksums (ivc-test checks them).
        self.exchange(2, 64 << 20)

    def test_three_vms_exchange(self):
        self.exchange(3, 4 << 20)

    def test_ping_latency_reported(self):
        g = self.group("p")
        procs = [start_vm(f"{g},members=2,rank={r}", f"/opt/ivc-test {g} ping 200")
                 for r in range(2)]
        results = finish(procs)
        for code, out, err in results:
            self.assertEqual(code, 0, out + err)
        m = re.search(r"ping rounds=200 one-way-us=(\d+(\.\d+)?)", results[0][1])
        self.assertIsNotNone(m, results[0][1])
        self.assertGreater(float(m.group(1)), 0)

    def test_errors_reported(self):
        g = self.group("e")
        code, out, err = finish([start_vm(f"{g},members=1", f"/opt/ivc-test {g} errors")])[0]
        self.assertEqual(code, 0, out + err)
        self.assertNotIn("FAIL", out)
        # Error codes of dvmmipc.h: RANK -2, TYPE -3, SIZE -4, STATE -7.
        for line in ("send-bad-rank=-2 ok", "type-mismatch=-3 ok", "type-mismatch-ring=-3 ok",
                     "truncation=-4 ok", "truncation-ring=-4 ok", "recv-before-init=-7 ok",
                     "rank 0 of 1 errors ok"):
            self.assertIn(line, out)

    def test_dead_peer(self):
        """A VM waiting for a message from a VM that is killed gets an error, not a hang."""
        g = self.group("d")
        a = start_vm(f"{g},members=2,rank=0", f"/opt/ivc-test {g} waitpeer 1; echo DONE")
        b = start_vm(f"{g},members=2,rank=1", f"echo READY; /opt/ivc-test {g} waitpeer 0")
        try:
            # Wait until both joined and B's program runs, then kill B's monitor outright.
            deadline = time.monotonic() + BOOT_TIMEOUT
            members = os.path.join(runtime_dir(), "ivc", g)
            while time.monotonic() < deadline:
                if os.path.exists(os.path.join(members, "rank-1.sock")) and \
                        os.path.exists(os.path.join(members, "rank-0.sock")):
                    break
                time.sleep(0.2)
            time.sleep(8)  # both guests booted and inside ivc_recv
            b.send_signal(signal.SIGKILL)
            b.wait()
            out, err = a.communicate(timeout=120)
        finally:
            for p in (a, b):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.assertRegex(out, r"waitpeer src=1 rc=-5 ", out + err)  # IVC_ERR_PEER_DEAD
        self.assertIn("DONE", out)
        self.assertEqual(a.returncode, 0, err)

    # ---- the shared-memory window and the registers from plain busybox

    def test_window_bounds_and_sharing(self):
        """A store to the last word of the window reaches the other VM; just past the end is
        no memory (reads 0), and the other group's memory is untouched."""
        g1, g2 = self.group("w"), self.group("v")
        base1, base2 = 0x200_0000_0000, 0x210_0000_0000
        size = 4 << 20
        last = base1 + size - 8
        a_cmd = (f"devmem {last:#x} 64 0x1122334455667788; devmem {base1 + size:#x} 64 0x99; "
                 f"echo PAST=$(devmem {base1 + size:#x} 64); echo OTHER=$(devmem {base2:#x} 64); "
                 f"devmem 0x10011028 32 1; devmem 0x10011030 64 0x5a; "  # g2: message to rank 1
                 "sleep 6")
        b_cmd = (f"sleep 4; echo LAST=$(devmem {last:#x} 64); "
                 f"echo COUNT=$(devmem 0x10011038 32); echo DATA=$(devmem 0x10011040 64); "
                 "echo SRC=$(devmem 0x1001103c 32)")
        a = start_vm(f"{g1},size=4M", a_cmd, "--ivc", f"{g2},size=4M", programs=False)
        time.sleep(0.5)
        b = start_vm(f"{g1},size=4M", b_cmd, "--ivc", f"{g2},size=4M", programs=False)
        (ca, oa, ea), (cb, ob, eb) = finish([a, b])
        self.assertEqual(ca, 0, oa + ea)
        self.assertEqual(cb, 0, ob + eb)
        self.assertIn("PAST=0x0000000000000000", oa)
        self.assertIn("OTHER=0x0000000000000000", oa)
        self.assertIn("LAST=0x1122334455667788", ob)
        self.assertIn("COUNT=0x00000001", ob)
        self.assertIn("DATA=0x000000000000005A", ob)
        self.assertIn("SRC=0x00000000", ob)

    def test_members_visible(self):
        """A joining and a leaving member show in MEMBERS and raise the interrupt."""
        g = self.group("m")
        wait_for = ("for i in $(seq 120); do [ $(devmem 0x10010010 64) = {} ] && break; "
                    "sleep 0.5; done; ")
        a_cmd = (wait_for.format("0x0000000000000003") + "echo M2=$(devmem 0x10010010 64); " +
                 wait_for.format("0x0000000000000001") + "echo M3=$(devmem 0x10010010 64); "
                 "echo GEN=$(devmem 0x1001001c 32); grep ivc /proc/interrupts")
        a = start_vm(f"{g},rank=0", a_cmd, programs=False)
        time.sleep(2)
        b = start_vm(f"{g},rank=1", "sleep 5", programs=False)
        (ca, oa, ea), (cb, ob, eb) = finish([a, b])
        self.assertEqual(cb, 0, ob + eb)
        self.assertEqual(ca, 0, oa + ea)
        self.assertIn("M2=0x0000000000000003", oa)
        self.assertIn("M3=0x0000000000000001", oa)
        self.assertRegex(oa, r"GEN=0x0000000[2-9]")
        self.assertRegex(oa, r"\s[1-9]\d*\s.*ivc")  # the interrupt fired at least once

    # ---- bad input

    def assertRefused(self, proc, pattern):
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertLess(proc.returncode, 128, "killed by a signal: " + proc.stderr)
        self.assertRegex(proc.stderr, pattern)
        self.assertNotIn("terminate called", proc.stderr)

    def test_bad_inputs(self):
        cases = [
            (["--ivc", "bad name"], r"group name may hold only"),
            (["--ivc", "g,size=3K"], r"multiple of 4 KiB"),
            (["--ivc", "g,size=32G"], r"16G"),
            (["--ivc", "g,rank=64"], r"rank must be a number from 0 to 63"),
            (["--ivc", "g,members=2,rank=2"], r"not below members=2"),
            (["--ivc", "g,colour=red"], r"unknown option 'colour'"),
            (["--ivc", "g", "--ivc", "g"], r"given twice"),
            (["--ivc", "g", "--nodes", "2"], r"one node"),
        ]
        for flags, pattern in cases:
            proc, _ = run_dvmm(["run"] + flags + ["--", "true"], timeout=60)
            self.assertRefused(proc, pattern)
        # A live group refuses a different size and a taken rank, and is left intact.
        g = self.group("b")
        a = start_vm(f"{g},size=8M,rank=0", "sleep 20", programs=False)
        try:
            sock = os.path.join(runtime_dir(), "ivc", g, "rank-0.sock")
            deadline = time.monotonic() + 60
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.1)
            proc, _ = run_dvmm(["run", "--ivc", f"{g},size=16M", "--", "true"], timeout=60)
            self.assertRefused(proc, r"has 8 MiB of shared memory; this VM asked for 16 MiB")
            proc, _ = run_dvmm(["run", "--ivc", f"{g},rank=0", "--", "true"], timeout=60)
            self.assertRefused(proc, r"rank 0 of inter-VM group \S+ is taken")
            proc = guest("devmem 0x10010008 32", "--ivc", g)  # no size: the group's
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("0x00000001", proc.stdout)  # the lowest free rank
        finally:
            a.terminate()  # dvmm leaves the group on SIGTERM (SIGKILL would leave the files)
            a.communicate()


if __name__ == "__main__":
    unittest.main()
