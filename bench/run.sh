#!/usr/bin/env bash
# Benchmarks of dvmm against qemu-system-riscv64 on the same guest; see bench/run.py --help
# and docs/BENCHMARKS.md.   bench/run.sh --record --profile   measures and records everything.
set -euo pipefail
exec python3 "$(dirname "$0")/run.py" "$@"
