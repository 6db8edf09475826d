#!/usr/bin/env python3
"""Tests of the gdb remote stub (issue 6, docs/GDB.md): `dvmm run --gdb 127.0.0.1:PORT` with
Debian's gdb-multiarch attached to a running guest (breakpoint on a kernel function, registers,
a kernel variable, one thread per hart, detach with the guest still running), the protocol
by hand (Ctrl-C, single-step, target description, reconnect, kill), and bad --gdb values.

Run one test:  DVMM=build/dvmm python3 tests/boot/test_gdb.py GdbTests.test_break_read_detach
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_boot import DVMM, run_dvmm  # noqa: E402
from test_control import Vm, ctl, ctl_json, wait_for  # noqa: E402

GDB = shutil.which("gdb-multiarch")
VMLINUX = os.path.join(os.environ.get("DVMM_CACHE_DIR") or os.path.expanduser("~/.cache/dvmm"),
                       "guest", "current", "vmlinux")
# Keeps the guest's kernel busy with system calls (ls writes to /dev/null: ksys_write).
BUSY = "echo ready; sleep 3; while true; do ls / >/dev/null; done"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instructions(name):
    return sum(v["instructions"] for v in ctl_json("stats", name)["vcpus"])


class Remote:
    """The gdb remote protocol by hand, in acknowledged mode."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the stub closed the connection")
        self.buf += data

    def packet(self):
        while True:
            start = self.buf.find(b"$")
            end = self.buf.find(b"#", start)
            if start >= 0 and end >= 0 and len(self.buf) >= end + 3:
                body = self.buf[start + 1:end]
                want = int(self.buf[end + 1:end + 3], 16)
                assert sum(body) & 0xff == want, f"bad checksum on {body!r}"
                self.buf = self.buf[end + 3:]
                self.sock.sendall(b"+")
                return body.decode()
            self._fill()

    def send(self, body):
        data = body.encode()
        self.sock.sendall(b"$" + data + b"#%02x" % (sum(data) & 0xff))

    def cmd(self, body):
        self.send(body)
        return self.packet()

    def close(self):
        self.sock.close()


@unittest.skipUnless(GDB, "gdb-multiarch is not installed")
@unittest.skipUnless(os.path.exists(VMLINUX), "no vmlinux of the default guest")
class GdbTests(unittest.TestCase):
    def test_break_read_detach(self):
        """gdb-multiarch attaches to a running guest, stops at a kernel function, reads
        registers, a kernel variable and the threads, and detaches; the guest runs on."""
        port = free_port()
        vm = Vm("gdb-break", BUSY, "--vcpus", "2", "--gdb", f"127.0.0.1:{port}")
        try:
            wait_for(lambda: "ready" in vm.stdout(), 240, "the guest's command")
            p = subprocess.run(
                [GDB, "-batch", "-nx", VMLINUX,
                 "-ex", "set architecture riscv:rv64",
                 "-ex", f"target remote 127.0.0.1:{port}",
                 "-ex", "break ksys_write",
                 "-ex", "continue",
                 "-ex", "info registers pc",
                 "-ex", "print jiffies",
                 "-ex", "info threads",
                 "-ex", "delete",
                 "-ex", "detach"],
                capture_output=True, text=True, timeout=300)
            out = p.stdout + p.stderr
            self.assertEqual(p.returncode, 0, out)
            bp = re.search(r"Breakpoint 1 at 0x([0-9a-f]+)", out)
            self.assertTrue(bp, out)
            self.assertRegex(out, r"hit Breakpoint 1, ksys_write \(", out)
            pc = re.search(r"^pc\s+0x([0-9a-f]+)\s+0x[0-9a-f]+ <ksys_write(\+\d+)?>", out, re.M)
            self.assertTrue(pc, out)
            # Stopped at the breakpoint: inside ksys_write, where gdb put it.
            self.assertEqual(int(pc.group(1), 16), int(bp.group(1), 16), out)
            self.assertGreater(int(pc.group(1), 16), 0xffffffff80000000)
            jiffies = re.search(r"^\$1 = (\d+)$", out, re.M)
            self.assertTrue(jiffies, out)
            self.assertGreater(int(jiffies.group(1)), 0)
            threads = re.findall(r"^\*?\s+(\d+)\s+Thread \d+ \(hart (\d+)", out, re.M)
            self.assertEqual(sorted(int(h) for _, h in threads), [0, 1], out)
            self.assertIn("detached", out)

            # The guest runs on, with the controls as they were before gdb came.
            self.assertEqual(ctl_json("info", "gdb-break")["state"], "running")
            before = instructions("gdb-break")
            time.sleep(1)
            self.assertGreater(instructions("gdb-break"), before)
            controls = ctl_json("controls", "gdb-break", "get")
            self.assertEqual(controls["breakpoints"], [])
            self.assertFalse(controls["single_step"])
            self.assertEqual(controls["action"], "log")
            ctl("stop", "gdb-break")
            self.assertEqual(vm.wait(60), 0, vm.stderr())
            self.assertIn("gdb attached", vm.stderr())
        finally:
            vm.close()

    def test_protocol_step_interrupt_kill(self):
        """By hand: target description, registers, memory, Ctrl-C, single-step, software
        breakpoints as controls, detach and a second connection that kills the VM."""
        port = free_port()
        vm = Vm("gdb-raw", "echo ready; sleep 1000", "--vcpus", "2", "--gdb", str(port))
        try:
            wait_for(lambda: "ready" in vm.stdout(), 240, "the guest's command")
            r = Remote(port)
            self.assertIn("qXfer:features:read+", r.cmd("qSupported:swbreak+;hwbreak+"))
            self.assertEqual(r.cmd("?"), "T05thread:1;")
            self.assertEqual(ctl_json("info", "gdb-raw")["state"], "paused")
            xml = ""
            while True:
                chunk = r.cmd(f"qXfer:features:read:target.xml:{len(xml):x},200")
                xml += chunk[1:]
                if chunk[0] == "l":
                    break
            target = ET.fromstring(xml)
            self.assertEqual(target.find("architecture").text, "riscv:rv64")
            regs = {reg.get("name"): int(reg.get("regnum")) for reg in target.iter("reg")}
            self.assertEqual(regs["pc"], 32)
            self.assertEqual(regs["ft0"], 33)
            self.assertEqual(regs["fcsr"], 65 + 3)
            self.assertEqual(regs["satp"], 65 + 0x180)
            # One gdb at a time: a second connection is closed at once.
            with socket.create_connection(("127.0.0.1", port), timeout=30) as other:
                self.assertEqual(other.recv(100), b"")
            self.assertEqual(r.cmd("qfThreadInfo"), "m1,2")
            self.assertEqual(r.cmd("qsThreadInfo"), "l")
            self.assertEqual(r.cmd("T2"), "OK")
            self.assertTrue(r.cmd("T3").startswith("E"))
            self.assertEqual(len(r.cmd("g")), 33 * 16)
            satp = int.from_bytes(bytes.fromhex(r.cmd(f"p{65 + 0x180:x}")), "little")
            self.assertIn(satp >> 60, (8, 9), "paging (Sv39 or Sv48) is on")
            self.assertTrue(r.cmd("m0,4").startswith("E"), "nothing is mapped at 0")

            # Ctrl-C stops a running VM.
            r.send("vCont;c")
            time.sleep(1)
            self.assertEqual(ctl_json("info", "gdb-raw")["state"], "running")
            r.sock.sendall(b"\x03")
            self.assertRegex(r.packet(), r"^T02thread:[12];$")
            self.assertEqual(ctl_json("info", "gdb-raw")["state"], "paused")

            # One step of hart 0 (thread 1) moves its pc and stops everything again.
            self.assertEqual(r.cmd("Hg1"), "OK")
            pc0 = r.cmd("p20")
            self.assertEqual(r.cmd("vCont;s:1"), "T05thread:1;")
            self.assertNotEqual(r.cmd("p20"), pc0)
            self.assertEqual(ctl_json("info", "gdb-raw")["state"], "paused")

            # Breakpoints live in the controls only while the VM runs for gdb, and leave no
            # trace in guest memory.
            pc = int.from_bytes(bytes.fromhex(r.cmd("p20")), "little")
            code = r.cmd(f"m{pc:x},4")
            self.assertEqual(r.cmd(f"Z0,{pc:x},4"), "OK")
            self.assertEqual(r.cmd(f"m{pc:x},4"), code)
            self.assertEqual(r.cmd(f"z0,{pc:x},4"), "OK")
            self.assertEqual(r.cmd("D"), "OK")
            r.close()
            wait_for(lambda: ctl_json("info", "gdb-raw")["state"] == "running", 10, "resume")

            # A second gdb may come; its kill ends the VM (exit status 0: the user asked).
            r = Remote(port)
            self.assertEqual(r.cmd("?"), "T05thread:1;")
            r.send("k")
            self.assertEqual(vm.wait(60), 0, vm.stderr())
            r.close()
        finally:
            vm.close()

    def test_bad_gdb_address(self):
        for bad, pattern in [("nonsense", r"--gdb.*not a port number"),
                             ("127.0.0.1:99999", r"--gdb.*out of range"),
                             ("nosuchhost.invalid:1234", r"--gdb.*unknown host")]:
            p, _ = run_dvmm(["run", "--gdb", bad, "--", "true"], timeout=60)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertRegex(p.stderr.splitlines()[0], r"^dvmm: error: " + pattern)
        with socket.socket() as s:  # a port in use
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            p, _ = run_dvmm(["run", "--gdb", f"127.0.0.1:{port}", "--", "true"], timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, rf"^dvmm: error: --gdb 127.0.0.1:{port}: Address already in use")
        p, _ = run_dvmm(["run", "--nodes", "2", "--gdb", "1234", "--", "true"], timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, r"--gdb works with a single-node VM only")


if __name__ == "__main__":
    unittest.main(verbosity=2)
