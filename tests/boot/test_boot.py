#!/usr/bin/env python3
"""Linux boot tests: boot the default guest image on dvmm and check what a user sees.

Run one test:  DVMM=build/dvmm python3 tests/boot/test_boot.py BootTests.test_nproc_one
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DVMM = os.environ.get("DVMM", os.path.join(HERE, "..", "..", "build", "dvmm"))
WORK = os.environ.get("DVMM_BOOT_WORK", os.path.join(tempfile.gettempdir(), "dvmm-boot-tests"))
BOOT_TIMEOUT = 240  # seconds for one guest run, generous for a loaded 2-core machine


def run_dvmm(args, timeout=BOOT_TIMEOUT + 30, stdin=None):
    start = time.monotonic()
    proc = subprocess.run([DVMM] + args, capture_output=True, text=True, timeout=timeout,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL)
    return proc, time.monotonic() - start


def guest(cmd, *flags, timeout=BOOT_TIMEOUT):
    """Runs `cmd` (a shell command string) in the default guest; returns the process."""
    proc, _ = run_dvmm(["run"] + list(flags) + ["--timeout", str(timeout), "--", "sh", "-c", cmd],
                       timeout=timeout + 30)
    return proc


def build_program_cpio(name):
    """Cross-compiles tests/boot/programs/NAME.c to /opt/NAME and packs it as a newc cpio."""
    os.makedirs(WORK, exist_ok=True)
    cpio = os.path.join(WORK, f"{name}.cpio")
    src = os.path.join(HERE, "programs", f"{name}.c")
    if os.path.exists(cpio) and os.path.getmtime(cpio) > os.path.getmtime(src):
        return cpio
    stage = os.path.join(WORK, f"{name}-root")
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(os.path.join(stage, "opt"))
    subprocess.run(["riscv64-linux-gnu-gcc", "-static", "-O2", "-pthread", "-o",
                    os.path.join(stage, "opt", name), src], check=True)
    return pack_cpio(stage, cpio)


def build_threads_cpio():
    return build_program_cpio("threads")


def pack_cpio(stage, cpio):
    """Packs the directory `stage` as the newc cpio archive `cpio` (for --initrd-extra)."""
    files = subprocess.run(["find", "."], cwd=stage, capture_output=True, text=True,
                           check=True).stdout
    with open(cpio, "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=stage, input=files.encode(),
                       stdout=out, check=True)
    return cpio


def native_threads_output():
    exe = os.path.join(WORK, "threads-native")
    subprocess.run(["gcc", "-O2", "-pthread", "-o", exe,
                    os.path.join(HERE, "programs", "threads.c")], check=True)
    return subprocess.run([exe], capture_output=True, text=True, check=True).stdout.strip()


class BootTests(unittest.TestCase):
    def assertClean(self, proc, code=0):
        self.assertEqual(proc.returncode, code,
                         f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                         f"stderr:\n{proc.stderr[-3000:]}")

    def assertOneLineError(self, proc, pattern):
        self.assertNotEqual(proc.returncode, 0)
        self.assertLess(proc.returncode, 128, "killed by a signal: " + proc.stderr)
        err = proc.stderr.strip()
        self.assertRegex(err, pattern)
        self.assertNotIn("terminate called", err)
        self.assertNotIn("Sanitizer", err)

    # ---- boots

    def test_nproc_one(self):
        p = guest("nproc", "--vcpus", "1")
        self.assertClean(p)
        self.assertEqual(p.stdout.strip().splitlines()[-1], "1")

    def test_nproc_four(self):
        p = guest("nproc", "--vcpus", "4")
        self.assertClean(p)
        self.assertEqual(p.stdout.strip().splitlines()[-1], "4")

    def test_cpuinfo_lists_harts(self):
        p = guest("cat /proc/cpuinfo", "--vcpus", "3")
        self.assertClean(p)
        harts = re.findall(r"^hart\s*:\s*(\d+)", p.stdout, re.M)
        self.assertEqual(sorted(int(h) for h in harts), [0, 1, 2])
        self.assertRegex(p.stdout, r"isa\s*:\s*rv64imafdc")
        self.assertRegex(p.stdout, r"mmu\s*:\s*sv(39|48)")

    def test_threads_match_native(self):
        cpio = build_threads_cpio()
        expected = native_threads_output()
        p = guest("/opt/threads", "--vcpus", "4", "--initrd-extra", cpio)
        self.assertClean(p)
        self.assertIn(expected, p.stdout)

    def test_clock_real_speed(self):
        # The guest measures 3 s of sleep with its own clock; the host measures the whole run.
        start = time.monotonic()
        p = guest("a=$(cut -d' ' -f1 /proc/uptime); sleep 3; b=$(cut -d' ' -f1 /proc/uptime); "
                  "echo elapsed=$a,$b", "--vcpus", "2")
        host_elapsed = time.monotonic() - start
        self.assertClean(p)
        m = re.search(r"elapsed=([\d.]+),([\d.]+)", p.stdout)
        self.assertIsNotNone(m, p.stdout)
        guest_elapsed = float(m.group(2)) - float(m.group(1))
        self.assertGreaterEqual(guest_elapsed, 2.9)
        self.assertLess(guest_elapsed, 4.0)
        self.assertGreater(host_elapsed, guest_elapsed - 0.2)  # guest time is not faster

    def test_clock_gettime_tight_loop(self):
        # Two threads call clock_gettime() for 5 s: the vDSO must survive reads that retry
        # during timekeeping updates (a 6.1 kernel without CONFIG_JUMP_LABEL segfaults).
        p = guest("/opt/clockloop 5", "--vcpus", "2", "--initrd-extra",
                  build_program_cpio("clockloop"))
        self.assertClean(p)
        m = re.search(r"clockloop: 2 threads, (\d+) calls", p.stdout)
        self.assertIsNotNone(m, p.stdout)
        self.assertGreater(int(m.group(1)), 1000)

    def test_exit_status_propagates(self):
        p = guest("echo before; exit 7")
        self.assertClean(p, 7)
        self.assertIn("before", p.stdout)

    def test_poweroff_and_reboot(self):
        # Interactive console: reboot once, then power off from the shell.
        proc = subprocess.Popen([DVMM, "run", "--vcpus", "2", "--timeout", str(BOOT_TIMEOUT)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        out = b""
        deadline = time.monotonic() + BOOT_TIMEOUT

        def wait_for(pattern, count=1):
            nonlocal out
            while time.monotonic() < deadline:
                if len(re.findall(pattern, out)) >= count:
                    return True
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    return False
                out += chunk
            return False

        try:
            self.assertTrue(wait_for(rb"init reached"), out[-2000:])
            time.sleep(1)
            proc.stdin.write(b"echo marker-$((6*7))\n")
            proc.stdin.flush()
            self.assertTrue(wait_for(rb"marker-42"), out[-2000:])
            proc.stdin.write(b"reboot -f\n")
            proc.stdin.flush()
            self.assertTrue(wait_for(rb"init reached", 2), out[-2000:])
            time.sleep(1)
            proc.stdin.write(b"poweroff -f\n")
            proc.stdin.flush()
            code = proc.wait(timeout=max(1, deadline - time.monotonic()))
            self.assertEqual(code, 0, out[-2000:] + proc.stderr.read())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()

    def test_panic_reported(self):
        p, _ = run_dvmm(["run", "--timeout", "120", "--append", "console=ttyS0 rdinit=/no-such-init "
                         "root=/dev/no-such-disk panic=0", "--", "true"])
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"(?i)panic")

    def test_timeout_reported(self):
        p, elapsed = run_dvmm(["run", "--timeout", "20", "--", "sleep", "1000"])
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"(?i)time")
        self.assertLess(elapsed, 60)

    # ---- bad input: one clear line, non-zero exit, no crash, no hang

    def test_bad_missing_kernel(self):
        p, _ = run_dvmm(["run", "--kernel", "/nonexistent/Image", "--", "true"], timeout=30)
        self.assertOneLineError(p, r"(?i)/nonexistent/Image")

    def test_bad_not_an_image(self):
        p, _ = run_dvmm(["run", "--kernel", "/bin/ls", "--", "true"], timeout=30)
        self.assertOneLineError(p, r"(?i)not a .*Image")

    def test_bad_initrd_too_big(self):
        os.makedirs(WORK, exist_ok=True)
        big = os.path.join(WORK, "big.initrd")
        with open(big, "wb") as f:
            f.truncate(200 << 20)
        p, _ = run_dvmm(["run", "--memory", "128M", "--initrd", big, "--", "true"], timeout=60)
        self.assertOneLineError(p, r"(?i)initrd.*(fit|large|big)")

    def test_bad_memory_too_small(self):
        p, _ = run_dvmm(["run", "--memory", "1M", "--", "true"], timeout=30)
        self.assertOneLineError(p, r"(?i)memory")

    def test_bad_memory_not_a_number(self):
        p, _ = run_dvmm(["run", "--memory", "lots", "--", "true"], timeout=30)
        self.assertOneLineError(p, r"(?i)memory|size")

    def test_bad_unknown_flag(self):
        p, _ = run_dvmm(["run", "--no-such-flag", "--", "true"], timeout=30)
        self.assertOneLineError(p, r"(?i)no-such-flag")


if __name__ == "__main__":
    unittest.main(verbosity=2)
