#!/usr/bin/env python3
"""Linux boot tests of the distributed VM (issue 4): one guest across several node processes
on this host (`dvmm run --nodes N`), and nodes meeting through a cluster file (`dvmm node`).

Run one test:  DVMM=build/dvmm python3 tests/boot/test_cluster.py ClusterTests.test_boot_two
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_boot import (DVMM, WORK, build_threads_cpio, guest,  # noqa: E402
                       native_threads_output, run_dvmm)

# Seconds for one distributed guest run: several node processes share 2 cores, so a boot
# takes minutes; this plus the slack below stays under ctest's TIMEOUT (600).
CLUSTER_TIMEOUT = int(os.environ.get("DVMM_CLUSTER_TIMEOUT", "420"))


def build_program_cpio(name):
    """Cross-compiles tests/boot/programs/NAME.c (static) into /opt/NAME in a newc cpio."""
    os.makedirs(WORK, exist_ok=True)
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "programs", name + ".c")
    cpio = os.path.join(WORK, name + ".cpio")
    if os.path.exists(cpio) and os.path.getmtime(cpio) > os.path.getmtime(src):
        return cpio
    stage = tempfile.mkdtemp(dir=WORK)
    os.makedirs(os.path.join(stage, "opt"))
    subprocess.run(["riscv64-linux-gnu-gcc", "-static", "-O2", "-o",
                    os.path.join(stage, "opt", name), src], check=True)
    files = subprocess.run(["find", "."], cwd=stage, capture_output=True, text=True,
                           check=True).stdout
    with open(cpio + ".tmp", "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=stage, input=files.encode(),
                       stdout=out, check=True)
    os.replace(cpio + ".tmp", cpio)
    return cpio


# ---- host processes

def process_table():
    """{pid: (state, ppid, argv)} of the host's processes (those readable now)."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(name)] = (fields[0], int(fields[1]), argv)
    return table


def children_of(pid):
    """{child pid: argv} of the live (non-zombie) children of `pid`."""
    return {p: argv for p, (state, ppid, argv) in process_table().items()
            if ppid == pid and state != "Z"}


def flag_value(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else None


def alive(pids=(), bootstrap_dir=None):
    """The live processes among `pids`, plus any whose command line names `bootstrap_dir`."""
    left = {}
    for p, (state, _, argv) in process_table().items():
        if state == "Z":
            continue
        if p in pids or (bootstrap_dir and any(bootstrap_dir in a for a in argv)):
            left[p] = argv
    return left


def wait_all_gone(pids, bootstrap_dir, seconds=3.0):
    """Gives reparented children a moment to die and be reaped; returns those still alive."""
    deadline = time.monotonic() + seconds
    while True:
        left = alive(pids, bootstrap_dir)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


class Watched:
    """A dvmm started with Popen whose stdout and stderr are collected by threads (so a full
    pipe never blocks it) and whose child processes (the node processes) are recorded."""

    def __init__(self, args):
        self.proc = subprocess.Popen([DVMM] + args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.start = time.monotonic()
        self.out = b""
        self.err = b""
        self.lock = threading.Lock()
        self.children = {}  # pid -> argv, every child seen alive
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, "out")),
                        threading.Thread(target=self._read, args=(self.proc.stderr, "err"))]
        for t in self.readers:
            t.daemon = True
            t.start()

    def _read(self, pipe, name):
        while True:
            chunk = os.read(pipe.fileno(), 4096)
            if not chunk:
                return
            with self.lock:
                setattr(self, name, getattr(self, name) + chunk)

    def stdout(self):
        with self.lock:
            return self.out.decode(errors="replace")

    def stderr(self):
        with self.lock:
            return self.err.decode(errors="replace")

    def record_children(self):
        if self.proc.poll() is None:
            self.children.update(children_of(self.proc.pid))
        return self.children

    def bootstrap_dir(self):
        for argv in self.children.values():
            d = flag_value(argv, "--bootstrap-dir")
            if d:
                return d
        return None

    def wait_for_output(self, pattern, seconds):
        """Waits until stdout matches `pattern` (recording children meanwhile); False if the
        process ended or the time ran out first."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.record_children()
            if re.search(pattern, self.stdout()):
                return True
            if self.proc.poll() is not None:
                return bool(re.search(pattern, self.stdout()))
            time.sleep(0.2)
        return False

    def wait(self, seconds):
        """Waits for the exit, recording children meanwhile; returns the exit status (None if
        it did not end in time)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.record_children()
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        code = self.proc.poll()
        if code is not None:
            for t in self.readers:
                t.join(timeout=5)
        return code

    def cleanup(self):
        """Kills what is left of this run (its own processes only) and closes the pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid, argv in alive(self.children.keys()).items():
            if argv != self.children[pid]:
                continue  # not ours any more (pid reused)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for t in self.readers:
            t.join(timeout=5)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def describe(self):
        return (f"exit {self.proc.poll()}\nstdout:\n{self.stdout()[-3000:]}\n"
                f"stderr:\n{self.stderr()[-3000:]}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def labelled(stdout):
    """{label: value} of the guest's `label=value` lines."""
    return dict(re.findall(r"^(\w+)=(.*?)\s*$", stdout, re.M))


class ClusterTests(unittest.TestCase):
    def assertClean(self, proc, code=0):
        self.assertEqual(proc.returncode, code,
                         f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                         f"stderr:\n{proc.stderr[-3000:]}")

    def assertMonitorError(self, proc, pattern):
        """Exit 1 (a monitor error), an error on stderr matching `pattern`, no crash."""
        self.assertEqual(proc.returncode, 1,
                         f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        err = proc.stderr.strip()
        self.assertRegex(err, r"(?m)^dvmm: ")
        self.assertRegex(err, pattern)
        self.assertNotIn("terminate called", err)
        self.assertNotIn("Sanitizer", err)

    def cluster_guest(self, cmd, *flags):
        return guest(cmd, *flags, timeout=CLUSTER_TIMEOUT)

    # ---- boots

    def test_boot_two(self):
        p = self.cluster_guest('nproc; ls /sys/devices/system/node | grep -c "^node"',
                               "--nodes", "2")
        self.assertClean(p)
        self.assertEqual(p.stdout.strip().splitlines()[-2:], ["2", "2"], p.stdout)

    def test_boot_three(self):
        p = self.cluster_guest(
            'echo nproc=$(nproc); echo numa=$(ls /sys/devices/system/node | grep -c "^node"); '
            'echo nodes=$(ls /sys/devices/system/node | grep "^node" | sort | tr "\\n" " "); '
            "echo cpulist1=$(cat /sys/devices/system/node/node1/cpulist)",
            "--nodes", "3", "--vcpus-per-node", "1")
        self.assertClean(p)
        v = labelled(p.stdout)
        self.assertEqual(v.get("nproc"), "3", p.stdout)
        self.assertEqual(v.get("numa"), "3", p.stdout)
        self.assertEqual(v.get("nodes"), "node0 node1 node2", p.stdout)
        self.assertEqual(v.get("cpulist1"), "1", p.stdout)

    def test_threads_match_native(self):
        cpio = build_threads_cpio()
        expected = native_threads_output()
        p = self.cluster_guest("/opt/threads", "--nodes", "2", "--vcpus-per-node", "2",
                               "--initrd-extra", cpio)
        self.assertClean(p)
        self.assertIn(expected, p.stdout)

    def test_clock_agrees_across_nodes(self):
        cpio = build_program_cpio("clock_nodes")
        p = self.cluster_guest("/opt/clock_nodes 300", "--nodes", "2", "--vcpus-per-node", "1",
                               "--initrd-extra", cpio)
        self.assertClean(p)
        m = re.search(r"clock cpus=(\d+) hops=(\d+) on_target=(\d+) backwards=(\d+) "
                      r"advanced=(\d+)", p.stdout)
        self.assertIsNotNone(m, p.stdout)
        cpus, hops, on_target, backwards, advanced = map(int, m.groups())
        self.assertEqual(cpus, 2)
        self.assertEqual(backwards, 0, p.stdout)
        self.assertEqual(advanced, 1)
        self.assertGreater(on_target, hops // 2, "the thread did not hop between the nodes")

    def test_exit_status(self):
        p = self.cluster_guest("echo before; exit 7", "--nodes", "2")
        self.assertClean(p, 7)
        self.assertIn("before", p.stdout)

    # ---- failures

    def test_dead_node(self):
        run = Watched(["run", "--nodes", "3", "--timeout", "300", "--",
                       "sh", "-c", "echo ready; sleep 1000"])
        try:
            self.assertTrue(run.wait_for_output(r"(?m)^ready\s*$", CLUSTER_TIMEOUT),
                            "the guest never printed 'ready'\n" + run.describe())
            nodes = {int(flag_value(argv, "--rank")): pid
                     for pid, argv in children_of(run.proc.pid).items()
                     if flag_value(argv, "--rank") is not None}
            self.assertEqual(sorted(nodes), [1, 2],
                             f"node processes of the run: {run.children}")
            run.record_children()
            bootstrap_dir = run.bootstrap_dir()
            victim = max(nodes)  # not rank 1, the obvious one
            os.kill(nodes[victim], signal.SIGKILL)
            killed = time.monotonic()
            code = run.wait(60)
            elapsed = time.monotonic() - killed
            print(f"\ndvmm exited {elapsed:.2f} s after node {victim} was killed (status {code})",
                  file=sys.stderr)
            self.assertIsNotNone(code, "dvmm still running 60 s after a node died\n" +
                                 run.describe())
            self.assertLess(elapsed, 6.0, run.describe())
            self.assertNotEqual(code, 0, run.describe())
            self.assertGreater(code, 0, "dvmm killed by a signal\n" + run.describe())
            self.assertRegex(run.stderr(), rf"(?m)^dvmm: .*\bnode {victim}\b", run.describe())
            self.assertNotIn("terminate called", run.stderr())
            left = wait_all_gone(set(run.children), bootstrap_dir)
            self.assertEqual(left, {}, "processes of the run left behind")
        finally:
            run.cleanup()

    def test_refuses_mismatch(self):
        # Each case: (rank 0's flags, rank 1's flags). Both must fail, and one of them must say
        # that the node was refused and why.
        cases = [(["--vcpus-per-node", "1"], ["--vcpus-per-node", "2"]),
                 (["--memory-per-node", "128M"], ["--memory-per-node", "256M"])]
        os.makedirs(WORK, exist_ok=True)
        for rank0_flags, rank1_flags in cases:
            with self.subTest(rank0=rank0_flags, rank1=rank1_flags):
                cluster = os.path.join(WORK, "mismatch.cluster")
                port = free_port()
                with open(cluster, "w") as f:
                    f.write(f"127.0.0.1:{port}\n127.0.0.1:{port}\n")
                common = ["node", "--cluster", cluster, "--join-timeout", "20"]
                rank0 = Watched(common + ["--rank", "0"] + rank0_flags + ["--", "true"])
                rank1 = Watched(common + ["--rank", "1"] + rank1_flags)
                try:
                    codes = [rank0.wait(60), rank1.wait(60)]
                    elapsed = time.monotonic() - rank0.start
                    both = f"rank 0: {rank0.describe()}\nrank 1: {rank1.describe()}"
                    self.assertNotIn(None, codes, "still running after 60 s\n" + both)
                    self.assertLess(elapsed, 30, both)  # the join timeout (20 s) and slack
                    for c in codes:
                        self.assertNotEqual(c, 0, both)
                        self.assertGreater(c, 0, "killed by a signal\n" + both)
                    errors = rank0.stderr() + rank1.stderr()
                    self.assertRegex(errors, r"(?i)refused", both)
                    self.assertRegex(errors, r"(?i)description|vcpus|memory", both)
                    self.assertNotIn("terminate called", errors)
                    self.assertNotIn("init reached", rank0.stdout())  # nothing booted
                finally:
                    rank0.cleanup()
                    rank1.cleanup()

    def test_bad_flags(self):
        p, _ = run_dvmm(["run", "--nodes", "2", "--vcpus", "3", "--", "true"], timeout=30)
        self.assertMonitorError(p, r"--vcpus\b")
        p, _ = run_dvmm(["run", "--nodes", "2", "--vcpus", "2", "--vcpus-per-node", "1", "--",
                         "true"], timeout=30)
        self.assertMonitorError(p, r"--vcpus")
        p, _ = run_dvmm(["run", "--nodes", "0", "--", "true"], timeout=30)
        self.assertMonitorError(p, r"--nodes")
        p, _ = run_dvmm(["run", "--vcpus-per-node", "2", "--", "true"], timeout=30)
        self.assertMonitorError(p, r"--vcpus-per-node|--nodes")
        p, _ = run_dvmm(["node", "--rank", "0"], timeout=30)
        self.assertMonitorError(p, r"--cluster")

    def test_timeout(self):
        run = Watched(["run", "--nodes", "2", "--timeout", "20", "--", "sleep", "1000"])
        try:
            code = run.wait(CLUSTER_TIMEOUT)
            elapsed = time.monotonic() - run.start
            self.assertEqual(code, 124, run.describe())
            self.assertRegex(run.stderr(), r"(?i)time", run.describe())
            self.assertLess(elapsed, 90, run.describe())
            self.assertTrue(run.children, "never saw a node process of the run")
            left = wait_all_gone(set(run.children), run.bootstrap_dir())
            self.assertEqual(left, {}, "node processes left behind")
        finally:
            run.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
