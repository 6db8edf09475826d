#!/usr/bin/env bash
# Inter-VM communication benchmark (issue 7): bandwidth between two dvmm VMs through `--ivc`
# (libdvmmipc's ivc-bench) against TCP between the same VMs over virtio-net and MPICH between
# two host processes, and the small-message latency of each; see bench/ivc.py --help and
# docs/BENCHMARKS.md.
#   bench/ivc.sh --quick          a short run (64 MiB per point, 4 buffer sizes)
#   bench/ivc.sh --record         measures and records the section and docs/ivc-bandwidth.svg.
set -euo pipefail
exec python3 "$(dirname "$0")/ivc.py" "$@"
