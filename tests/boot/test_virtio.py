#!/usr/bin/env python3
"""Linux boot tests of the virtio devices (issue 5): disks (raw, qcow2, overlays, read-only),
networking (virtual switch between two VMs, user networking both ways), rng and console,
and the same with the device on another node than the vCPUs.

Run one test:  DVMM=build/dvmm python3 tests/boot/test_virtio.py VirtioTests.test_disk_raw_persists
"""
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_boot import BOOT_TIMEOUT, DVMM, WORK, guest, run_dvmm  # noqa: E402

CLUSTER_TIMEOUT = int(os.environ.get("DVMM_CLUSTER_TIMEOUT", "420"))


def work_dir(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def make_ext4(path, size="64M"):
    subprocess.run(["truncate", "-s", size, path], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "dvmm-test", path], check=True)


def host_fsck(path):
    """e2fsck -fn on a raw ext4 image: (exit status, output)."""
    p = subprocess.run(["e2fsck", "-fn", path], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def qemu_img_check(path):
    p = subprocess.run(["qemu-img", "check", path], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Shell for the guest: the test data is made in the guest from a seed, so host and guest can
# compute the same checksum (busybox has no python): 1 MiB of a repeating counter pattern.
MAKE_DATA = "seq 1 150000 > /tmp/data"
DATA_SUM = hashlib.md5("".join(f"{i}\n" for i in range(1, 150001)).encode()).hexdigest()


class VirtioTests(unittest.TestCase):
    def assertClean(self, proc, code=0):
        self.assertEqual(proc.returncode, code,
                         f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                         f"stderr:\n{proc.stderr[-3000:]}")

    def assertOneLineError(self, proc, pattern):
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertLess(proc.returncode, 128, "killed by a signal: " + proc.stderr)
        self.assertRegex(proc.stderr.strip(), pattern)
        self.assertNotIn("terminate called", proc.stderr)
        self.assertNotIn("Sanitizer", proc.stderr)
        self.assertNotIn("dvmm-guest", proc.stdout)  # refused before boot

    # ---- disks

    def check_disk_persists(self, *flags, node=None, timeout=BOOT_TIMEOUT):
        d = work_dir("disk_remote" if node is not None else "disk_local")
        img = os.path.join(d, "disk.img")
        make_ext4(img)
        spec = img if node is None else f"{img},node={node}"
        p = guest(f"mount /dev/vda /mnt && {MAKE_DATA} && cp /tmp/data /mnt/data && "
                  "echo hello-disk > /mnt/hello && sync && umount /mnt && echo WROTE",
                  "--disk", spec, *flags, timeout=timeout)
        self.assertClean(p)
        self.assertIn("WROTE", p.stdout)
        rc, out = host_fsck(img)
        self.assertEqual(rc, 0, out)
        got = subprocess.run(["debugfs", "-R", "cat /hello", img], capture_output=True,
                             text=True).stdout
        self.assertEqual(got.strip(), "hello-disk")
        # A second boot reads it back (the page cache is gone: it comes from the disk).
        p = guest("mount -o ro /dev/vda /mnt && md5sum /mnt/data && cat /mnt/hello",
                  "--disk", spec, *flags, timeout=timeout)
        self.assertClean(p)
        self.assertIn(DATA_SUM, p.stdout)
        self.assertIn("hello-disk", p.stdout)

    def test_disk_raw_persists(self):
        self.check_disk_persists()

    def test_disk_survives_host_kill(self):
        d = work_dir("disk_kill")
        base = os.path.join(d, "base.img")
        make_ext4(base)
        img = os.path.join(d, "disk.qcow2")
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", base, img], check=True)
        cmd = (f"mount /dev/vda /mnt && {MAKE_DATA} && cp /tmp/data /mnt/data && sync && "
               "echo SYNCED && sleep 600")
        proc = subprocess.Popen([DVMM, "run", "--disk", img, "--timeout", str(BOOT_TIMEOUT),
                                 "--", "sh", "-c", cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        seen = []
        deadline = time.monotonic() + BOOT_TIMEOUT
        try:
            for line in proc.stdout:
                seen.append(line)
                if "SYNCED" in line or time.monotonic() > deadline:
                    break
            self.assertIn("SYNCED\n", seen, "".join(seen))
        finally:
            proc.kill()
            proc.wait()
        rc, out = qemu_img_check(img)
        self.assertEqual(rc, 0, out)
        # The journal is replayed at mount; the synced file is whole; the guest's fsck of the
        # replayed file system is clean.
        p = guest("mount /dev/vda /mnt && md5sum /mnt/data && umount /mnt && "
                  "(e2fsck -fn /dev/vda || fsck -n /dev/vda); echo FSCK=$?", "--disk", img)
        self.assertClean(p)
        self.assertIn(DATA_SUM, p.stdout)
        self.assertIn("FSCK=0", p.stdout)
        rc, out = qemu_img_check(img)
        self.assertEqual(rc, 0, out)

    def test_disk_qcow2_overlay_on_template(self):
        d = work_dir("disk_overlay")
        raw = os.path.join(d, "template.raw")
        make_ext4(raw)
        subprocess.run(["debugfs", "-w", "-R", "mkdir /from-template", raw], check=True,
                       capture_output=True)
        template = os.path.join(d, "template.qcow2")
        subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, template], check=True)
        template_sum = sha256_file(template)
        overlays = []
        for i in range(2):
            ov = os.path.join(d, f"vm{i}.qcow2")
            p, _ = run_dvmm(["image", "create", "-b", template, "-F", "qcow2", ov])
            self.assertClean(p)
            overlays.append(ov)
            p = guest(f"mount /dev/vda /mnt && ls /mnt && echo vm{i} > /mnt/who && sync && "
                      "umount /mnt", "--disk", ov)
            self.assertClean(p)
            self.assertIn("from-template", p.stdout)
        self.assertEqual(sha256_file(template), template_sum, "the template was written")
        for i, ov in enumerate(overlays):
            rc, out = qemu_img_check(ov)
            self.assertEqual(rc, 0, out)
            flat = ov + ".raw"
            subprocess.run(["qemu-img", "convert", "-O", "raw", ov, flat], check=True)
            rc, out = host_fsck(flat)
            self.assertEqual(rc, 0, out)
            got = subprocess.run(["debugfs", "-R", "cat /who", flat], capture_output=True,
                                 text=True).stdout
            self.assertEqual(got.strip(), f"vm{i}")

    def test_boot_from_rootfs_disk(self):
        gdir = subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                            "..", "guest", "build.sh"), "--print-dir"],
                              capture_output=True, text=True).stdout.strip()
        rootfs = os.path.join(gdir, "rootfs.ext4")
        self.assertTrue(os.path.exists(rootfs), "the guest build makes rootfs.ext4")
        d = work_dir("boot_disk")
        img = os.path.join(d, "root.ext4")
        shutil.copyfile(rootfs, img)
        p = guest("grep ' / ' /proc/mounts; echo kept > /persist; sync", "--disk", img,
                  "--root", "vda")
        self.assertClean(p)
        self.assertRegex(p.stdout, r"(?m)^/dev/vda / ext4 rw")
        p = guest("cat /persist; e2fsck -V 2>&1 | head -1", "--disk", img, "--root", "vda")
        self.assertClean(p)
        self.assertIn("kept", p.stdout)
        rc, out = host_fsck(img)
        self.assertEqual(rc, 0, out)

    def test_disk_read_only(self):
        d = work_dir("disk_ro")
        img = os.path.join(d, "ro.img")
        make_ext4(img)
        before = sha256_file(img)
        p = guest("cat /sys/block/vda/ro; mount /dev/vda /mnt 2>&1; echo MOUNT=$?; "
                  "dd if=/dev/zero of=/dev/vda bs=4096 count=1 2>&1; echo DD=$?",
                  "--disk", img + ",readonly=on")
        self.assertClean(p)
        self.assertEqual(p.stdout.strip().splitlines()[0], "1")
        self.assertRegex(p.stdout, r"DD=[1-9]")
        self.assertEqual(sha256_file(img), before)
        # A repeatable option right before `--` takes one value: the command keeps its flags.
        p, _ = run_dvmm(["run", "--disk", img + ",readonly=on", "--", "ls", "-l", "/dev/vda"])
        self.assertClean(p)
        self.assertRegex(p.stdout, r"^brw.*/dev/vda")  # ls colours the name

    def test_disk_bad_inputs(self):
        d = work_dir("disk_bad")
        p, _ = run_dvmm(["run", "--disk", os.path.join(d, "missing.img"), "--", "true"])
        self.assertOneLineError(p, r"missing\.img")
        bad = os.path.join(d, "bad.qcow2")
        with open(bad, "wb") as f:
            f.write(b"QFI\xfb" + b"\xff" * 200)
        p, _ = run_dvmm(["run", "--disk", bad, "--", "true"])
        self.assertOneLineError(p, r"bad\.qcow2")
        p, _ = run_dvmm(["run", "--disk", bad + ",format=vmdk", "--", "true"])
        self.assertOneLineError(p, r"format")
        p, _ = run_dvmm(["run", "--disk", bad + ",node=3", "--", "true"])
        self.assertOneLineError(p, r"node=3")

    # ---- other devices

    def test_rng_and_console(self):
        d = work_dir("rng_console")
        out = os.path.join(d, "hvc.log")
        p = guest("cat /sys/class/misc/hw_random/rng_current; "
                  "dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c; "
                  "echo to-virtio-console > /dev/hvc1; echo done",
                  "--rng", "--vconsole", out)
        self.assertClean(p)
        self.assertIn("virtio_rng", p.stdout)
        self.assertRegex(p.stdout, r"(?m)^64$")
        with open(out) as f:
            self.assertIn("to-virtio-console", f.read())

    # ---- networking

    def test_net_user_reaches_host_loopback(self):
        payload = os.urandom(20000).hex()
        port = free_port()
        got = {}
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen(1)
        srv.settimeout(BOOT_TIMEOUT)

        def serve():
            try:
                c, _ = srv.accept()
                with c:
                    c.sendall(payload.encode())
            except OSError as e:
                got["error"] = str(e)
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        p = guest(f"ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up && "
                  f"route add default gw 10.0.2.2 && nc 10.0.2.2 {port} | md5sum",
                  "--net", "user")
        srv.close()
        self.assertClean(p)
        self.assertIn(hashlib.md5(payload.encode()).hexdigest(), p.stdout)

    def test_net_user_hostfwd_reaches_guest(self):
        port = free_port()
        proc = subprocess.Popen(
            [DVMM, "run", "--net", f"user,hostfwd=tcp:127.0.0.1:{port}-:8080",
             "--timeout", str(BOOT_TIMEOUT), "--", "sh", "-c",
             "ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up && echo READY && "
             "echo from-guest-server | nc -l -p 8080"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for line in proc.stdout:
                if "READY" in line:
                    break
            data = b""
            deadline = time.monotonic() + 60
            while b"from-guest-server" not in data and time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                        data = c.recv(100)
                except OSError:
                    time.sleep(0.5)
            self.assertIn(b"from-guest-server", data)
            out, err = proc.communicate(timeout=BOOT_TIMEOUT)
            self.assertEqual(proc.returncode, 0, err)
        finally:
            proc.kill()
            proc.wait()

    def run_switch_pair(self, *extra_b):
        switch = f"t{os.getpid()}"
        a_cmd = ("ifconfig eth0 10.1.0.1 netmask 255.255.255.0 up && "
                 "nc -l -p 5000 > /tmp/got && md5sum /tmp/got")
        b_cmd = ("ifconfig eth0 10.1.0.2 netmask 255.255.255.0 up && "
                 "ping -c 3 -W 5 10.1.0.1 && " + MAKE_DATA + " && "
                 "for i in $(seq 1 100); do nc -w 3 10.1.0.1 5000 < /tmp/data && break; sleep 1; done; "
                 # busybox nc sends its FIN only when it exits: give it time to reach A.
                 "echo SENT; sleep 2")
        timeout = CLUSTER_TIMEOUT if extra_b else BOOT_TIMEOUT
        a = subprocess.Popen([DVMM, "run", "--net", f"switch={switch}", "--timeout",
                              str(timeout), "--", "sh", "-c", a_cmd],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            b = guest(b_cmd, "--net", f"switch={switch}" + (",node=1" if extra_b else ""),
                      *extra_b, timeout=timeout)
            a_out, a_err = a.communicate(timeout=timeout + 30)
        finally:
            a.kill()
            a.wait()
        self.assertClean(b)
        self.assertRegex(b.stdout, r"3 packets transmitted, 3 packets received")
        self.assertIn("SENT", b.stdout)
        self.assertEqual(a.returncode, 0, a_err)
        self.assertIn(DATA_SUM, a_out)

    def test_net_switch_two_vms(self):
        self.run_switch_pair()

    # ---- devices on another node than the vCPUs

    def test_remote_node_disk(self):
        self.check_disk_persists("--nodes", "2", "--vcpus-per-node", "1", node=1,
                                 timeout=CLUSTER_TIMEOUT)

    def test_remote_node_net_switch(self):
        self.run_switch_pair("--nodes", "2", "--vcpus-per-node", "1")


if __name__ == "__main__":
    unittest.main()
