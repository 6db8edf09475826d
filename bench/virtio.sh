#!/usr/bin/env bash
# Virtio benchmarks (issue 5) of dvmm against qemu-system-riscv64 on the same guest and disk
# image; see bench/virtio.py --help and docs/BENCHMARKS.md.
#   bench/virtio.sh --record      measures and records the virtio section.
set -euo pipefail
exec python3 "$(dirname "$0")/virtio.py" "$@"
