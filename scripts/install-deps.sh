#!/usr/bin/env bash
# Installs the Debian 12 packages dvmm needs to build, test and benchmark, if missing.
# Idempotent: when everything is present it only checks (about a second).
set -euo pipefail

PACKAGES=(
  # build
  cmake ninja-build g++ pkg-config git python3
  libfdt-dev libcli11-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev
  # VM configuration files (TOML), the control API (JSON over HTTP on a UNIX socket)
  libtomlplusplus-dev nlohmann-json3-dev libcpp-httplib-dev
  # sanitizer and fuzz builds
  clang-14 libclang-rt-14-dev
  # guest kernel, busybox and bare-metal test programs
  gcc-riscv64-linux-gnu libc6-dev-riscv64-cross gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf
  linux-source-6.1 flex bison bc cpio libssl-dev libelf-dev dpkg-dev device-tree-compiler e2fsprogs
  # references for differential tests and benchmarks
  qemu-user qemu-system-misc opensbi
  # virtio-blk images (qcow2 checks) and virtio-net user networking
  qemu-utils libslirp-dev libglib2.0-dev
  # the gdb stub test
  gdb-multiarch
  # model checking of the DSM protocol
  spin
  # cluster transport (UCX: shared memory, TCP, RDMA verbs) and its reference benchmark
  libucx-dev ucx-utils
  # the inter-VM communication benchmark's host reference (bench/ivc.sh: mpicc, mpiexec)
  mpich libmpich-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "dvmm: installing Debian packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "dvmm: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
