#!/usr/bin/env bash
# Execution-control benchmarks (issue 6); see bench/controls.py --help and docs/BENCHMARKS.md.
set -euo pipefail
exec python3 "$(dirname "$0")/controls.py" "$@"
