#!/usr/bin/env python3
"""Tests of the control API of running VMs (issue 6): `dvmm list/info/pause/resume/stop/kill/
stats/controls/trace` against real guests, one and two nodes.

Run one test:  DVMM=build/dvmm python3 tests/boot/test_control.py ControlTests.test_satp_trace
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_boot import DVMM  # noqa: E402

TIMEOUT = 300
# A guest command: wait for the host to set controls, then start many short processes
# (each a new address space: a satp write per switch to it) and make system calls.
SPAWNER = ("sleep {delay}; i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done; "
           "echo spawned; sleep {tail}")


def ctl(*args, check=True):
    p = subprocess.run([DVMM] + list(args), capture_output=True, text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError(f"dvmm {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def ctl_json(*args):
    return json.loads(ctl(*args, "--json").stdout)


class Vm:
    """A `dvmm run --name NAME ... -- sh -c CMD` in the background."""

    def __init__(self, name, cmd, *flags):
        self.name = name
        self.out = tempfile.TemporaryFile(mode="w+")
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([DVMM, "run", "--name", name, "--timeout", str(TIMEOUT)] +
                                     list(flags) + ["--", "sh", "-c", cmd],
                                     stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dvmm ended early: {self.stderr()}")
            p = ctl("info", name, check=False)
            if p.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"VM {name} never answered on its control socket")

    def wait(self, timeout=TIMEOUT + 30):
        return self.proc.wait(timeout=timeout)

    def stdout(self):
        self.out.seek(0)
        return self.out.read()

    def stderr(self):
        self.err.seek(0)
        return self.err.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def events(name, since=0):
    return [json.loads(line) for line in ctl("trace", name, "--since", str(since)).stdout.splitlines()]


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class ControlTests(unittest.TestCase):
    def test_satp_trace(self):
        """satp write exits on a running guest: one trace event per switch to a new process;
        turned off, the counter stops."""
        vm = Vm("ctl-satp", SPAWNER.format(delay=4, n=30, tail=6))
        try:
            out = ctl("controls", "ctl-satp", "set", "csr_write=satp", "action=log").stdout
            self.assertIn("applied", out)
            wait_for(lambda: "spawned" in vm.stdout(), 120, "the guest's processes")
            evs = [e for e in events("ctl-satp") if e.get("event") == "csr"]
            self.assertGreaterEqual(len(evs), 30, evs[:5])
            self.assertTrue(all(e["csr"] == "satp" and e["write"] for e in evs))
            # Each event is a distinct switch: the satp values change between processes.
            self.assertGreater(len({e["value"] for e in evs}), 10)
            ctl("controls", "ctl-satp", "set", "csr_write=")
            before = sum(v["csr_writes"] for v in ctl_json("stats", "ctl-satp")["vcpus"])
            self.assertGreaterEqual(before, len(evs))
            time.sleep(2)
            after = sum(v["csr_writes"] for v in ctl_json("stats", "ctl-satp")["vcpus"])
            self.assertEqual(before, after)
            self.assertEqual(ctl_json("controls", "ctl-satp", "get")["csr_write"], [])
            self.assertEqual(vm.wait(), 0, vm.stderr())
        finally:
            vm.close()

    def test_two_vms_different_controls(self):
        """One VM traces guest system calls, the other has every control off."""
        traced = Vm("ctl-traced", SPAWNER.format(delay=4, n=10, tail=3))
        plain = Vm("ctl-plain", SPAWNER.format(delay=4, n=10, tail=3))
        try:
            ctl("controls", "ctl-traced", "set", "exceptions=ecall_from_u", "action=log")
            names = {v["name"] for v in ctl_json("list")}
            self.assertTrue({"ctl-traced", "ctl-plain"} <= names, names)
            self.assertEqual(traced.wait(), 0, traced.stderr())
            self.assertEqual(plain.wait(), 0, plain.stderr())
        finally:
            traced.close()
            plain.close()
        # The VMs are gone now; their verdicts are in what they logged meanwhile, so check
        # through a second pair that stays up long enough to query.
        traced = Vm("ctl-traced2", SPAWNER.format(delay=3, n=10, tail=30))
        plain = Vm("ctl-plain2", SPAWNER.format(delay=3, n=10, tail=30))
        try:
            ctl("controls", "ctl-traced2", "set", "exceptions=ecall_from_u", "action=log")
            wait_for(lambda: "spawned" in traced.stdout() and "spawned" in plain.stdout(), 120,
                     "both guests")
            sys_events = [e for e in events("ctl-traced2") if e.get("event") == "exception"]
            self.assertGreater(len(sys_events), 100)
            self.assertTrue(all(e["cause"] == "ecall_from_u" for e in sys_events))
            self.assertEqual(events("ctl-plain2"), [])
            plain_stats = ctl_json("stats", "ctl-plain2")
            self.assertTrue(all(v["exceptions"] == {} for v in plain_stats["vcpus"]))
            traced_stats = ctl_json("stats", "ctl-traced2")
            self.assertGreater(sum(v["exceptions"].get("ecall_from_u", 0)
                                   for v in traced_stats["vcpus"]), 100)
            ctl("stop", "ctl-traced2")
            ctl("stop", "ctl-plain2")
            self.assertEqual(traced.wait(60), 0)
            self.assertEqual(plain.wait(60), 0)
        finally:
            traced.close()
            plain.close()

    def test_pause_resume_stop_kill(self):
        vm = Vm("ctl-life", "sleep 1000")
        try:
            ctl("pause", "ctl-life")
            self.assertEqual(ctl_json("info", "ctl-life")["state"], "paused")
            i1 = [v["instructions"] for v in ctl_json("stats", "ctl-life")["vcpus"]]
            time.sleep(1)
            i2 = [v["instructions"] for v in ctl_json("stats", "ctl-life")["vcpus"]]
            self.assertEqual(i1, i2, "a paused VM executed instructions")
            ctl("resume", "ctl-life")
            self.assertEqual(ctl_json("info", "ctl-life")["state"], "running")
            ctl("stop", "ctl-life")
            self.assertEqual(vm.wait(30), 0)
            self.assertNotEqual(ctl("info", "ctl-life", check=False).returncode, 0)
        finally:
            vm.close()
        vm = Vm("ctl-kill", "sleep 1000")
        try:
            ctl("kill", "ctl-kill")
            self.assertEqual(vm.wait(30), 137)
        finally:
            vm.close()

    def test_stop_graceful_then_hard(self):
        """`dvmm stop` presses the power button: the guest's init ends the command politely
        and powers off; a command that ignores it is stopped hard after --grace; --grace 0
        stops at once."""
        vm = Vm("ctl-grace", "trap 'echo got-TERM; exit 7' TERM; echo ready; "
                 "while :; do sleep 1; done")
        try:
            wait_for(lambda: "ready" in vm.stdout(), 120, "the guest's command")
            out = ctl_json("stop", "ctl-grace")
            self.assertEqual(out, {"stopped": True, "graceful": True})
            self.assertEqual(vm.wait(30), 0)
            self.assertIn("power button pressed", vm.stdout())
            self.assertIn("got-TERM", vm.stdout())
        finally:
            vm.close()
        vm = Vm("ctl-hard", "trap '' TERM HUP; echo ready; while :; do sleep 1; done", "-v")
        try:
            wait_for(lambda: "ready" in vm.stdout(), 120, "the guest's command")
            ctl("stop", "ctl-hard", "--grace", "1")
            self.assertEqual(vm.wait(30), 0)
            self.assertIn("did not shut down within 1 s", vm.stderr())
        finally:
            vm.close()
        vm = Vm("ctl-now", "echo ready; sleep 1000")
        try:
            wait_for(lambda: "ready" in vm.stdout(), 120, "the guest's command")
            self.assertEqual(ctl_json("stop", "ctl-now", "--grace", "0"),
                             {"stopped": True, "graceful": False})
            self.assertEqual(vm.wait(30), 0)
            self.assertNotIn("power button pressed", vm.stdout())
        finally:
            vm.close()
        p = ctl("stop", "ctl-now", "--grace", "-1", check=False)
        self.assertNotEqual(p.returncode, 0)

    def test_bad_requests_change_nothing(self):
        vm = Vm("ctl-bad", "sleep 1000")
        try:
            before = ctl_json("controls", "ctl-bad", "get")
            for args, pattern in [
                (["controls", "ctl-bad", "set", "exceptions=ilegal_instruction"], "unknown exception"),
                (["controls", "ctl-bad", "set", "csr_write=satp", "csr_read=nosuchcsr"], "unknown CSR"),
                (["controls", "ctl-bad", "set", "frobnicate=1"], "unknown control"),
                (["controls", "ctl-bad", "set", "action=explode"], "unknown action"),
                (["controls", "ctl-bad", "set", "--vcpu", "9", "csr_write=satp"], "no vCPU 9"),
                (["info", "ctl-nosuchvm"], "no VM named"),
                (["pause", "bad/name"], "bad VM name"),
            ]:
                p = ctl(*args, check=False)
                self.assertEqual(p.returncode, 1, args)
                self.assertRegex(p.stderr, "^dvmm: error: .*" + pattern, args)
            self.assertEqual(ctl_json("controls", "ctl-bad", "get"), before)
            # A second VM with the same name is refused before it boots.
            p = subprocess.run([DVMM, "run", "--name", "ctl-bad", "--", "true"],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 1)
            self.assertIn("already running", p.stderr)
            ctl("kill", "ctl-bad")
        finally:
            vm.close()

    def test_two_node_controls(self):
        """Controls set through rank 0 apply to the harts of both nodes; their events reach
        rank 0's trace."""
        vm = Vm("ctl-nodes", "sleep 5; (i=0; while [ $i -lt 30 ]; do /bin/true; i=$((i+1)); done) & "
                "(i=0; while [ $i -lt 30 ]; do /bin/true; i=$((i+1)); done); wait; echo spawned; "
                "sleep 30", "--nodes", "2")
        try:
            out = ctl_json("controls", "ctl-nodes", "set", "csr_write=satp")
            self.assertIn("applied_us", out)
            wait_for(lambda: "spawned" in vm.stdout(), 240, "the guest's processes")
            harts = {e["hart"] for e in events("ctl-nodes") if e.get("event") == "csr"}
            self.assertEqual(harts, {0, 1}, "satp exits on both nodes' harts")
            # dvmm stats covers the vCPUs of both nodes, with their own counters.
            stats = ctl_json("stats", "ctl-nodes")
            self.assertEqual([v["id"] for v in stats["vcpus"]], [0, 1])
            for v in stats["vcpus"]:
                self.assertGreater(v["instructions"], 0, v)
                self.assertGreater(v["csr_writes"], 0, v)
            ctl("stop", "ctl-nodes")
            self.assertEqual(vm.wait(60), 0, vm.stderr())
        finally:
            vm.close()


if __name__ == "__main__":
    unittest.main()
