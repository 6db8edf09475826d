#!/usr/bin/env bash
# Distributed-VM benchmarks (issue 4): DSM fault service and cross-node IPI latency against the
# UCX round trip, parallel throughput on 2 nodes, boot on 2 nodes; see bench/cluster.py --help
# and docs/BENCHMARKS.md.   bench/cluster.sh --record   measures and records everything.
set -euo pipefail
exec python3 "$(dirname "$0")/cluster.py" "$@"
