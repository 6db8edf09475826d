#!/usr/bin/env bash
# One command on a fresh Debian 12 machine: installs what is missing, builds dvmm and the
# default guest image (cached under ~/.cache/dvmm), then boots the default guest.
#   ./setup.sh            everything, then a demo boot
#   ./setup.sh --no-run   everything but the demo boot
set -euo pipefail
cd "$(dirname "$0")"
run_demo=1
[ "${1:-}" = "--no-run" ] && run_demo=0

step() { printf '\n== %s\n' "$*" >&2; }
step "Debian packages"
scripts/install-deps.sh
step "building dvmm"
scripts/build.sh build
step "building the default guest image (cached; the first build takes about 10 minutes)"
guest/build.sh
if [ "$run_demo" = 1 ]; then
  step "booting the default guest: dvmm run --vcpus 2 -- ..."
  build/dvmm run --vcpus 2 --timeout 300 -- sh -c 'echo "hello from the dvmm guest: $(uname -sr), $(nproc) harts"; cat /proc/cpuinfo | grep -c ^processor'
fi
