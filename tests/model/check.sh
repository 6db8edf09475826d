#!/bin/sh
# Model-checks the DSM coherence protocol (tests/model/dsm.pml) exhaustively with spin.
#
# Usage: check.sh [N:P:B ...]   nodes:pages:local operations per node (N is 3 or 4).
# Without arguments it checks the CI set below. Fails on any assertion violation,
# invalid end state (deadlock), incomplete search (depth or memory limit) or tool error.
# Exits 77 (CTest: skipped) when spin is not installed (Debian: apt-get install spin).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
model="$here/dsm.pml"
configs=${*:-"3:1:3 3:2:2"}
cc=${CC:-cc}

if ! command -v spin >/dev/null 2>&1; then
  echo "check.sh: spin not found; install it (Debian: apt-get install spin)" >&2
  exit 77
fi

work=$(mktemp -d)
keep=0
trap '[ "$keep" = 1 ] || rm -rf "$work"' EXIT INT TERM

status=0
for cfg in $configs; do
  n=${cfg%%:*}
  rest=${cfg#*:}
  p=${rest%%:*}
  b=${rest#*:}
  case "$n" in 3|4) ;; *) echo "check.sh: N must be 3 or 4 (got $cfg)" >&2; exit 2 ;; esac
  dir="$work/$n-$p-$b"
  mkdir -p "$dir"
  (
    cd "$dir"
    spin -a -DN="$n" -DP="$p" -DB="$b" "$model" > spin.log 2>&1 || { cat spin.log; exit 1; }
    # SAFETY: assertions and invalid end states (no never claim). COLLAPSE: exact
    # (lossless) state compression, so the search stays exhaustive.
    $cc -O2 -w -DSAFETY -DCOLLAPSE -DMEMLIM=4096 -o pan pan.c > cc.log 2>&1 || { cat cc.log; exit 1; }
    ./pan -m4000000 -w24 > pan.log 2>&1 || true
  ) || { echo "dsm model N=$n P=$p B=$b: FAILED to build"; status=1; continue; }
  log="$dir/pan.log"
  states=$(sed -n 's/^ *\([0-9][0-9]*\) states, stored.*/\1/p' "$log")
  depth=$(sed -n 's/.*depth reached \([0-9][0-9]*\).*/\1/p' "$log")
  secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\).*/\1/p' "$log")
  if grep -q "errors: 0" "$log" && ! grep -qE "too small|out of memory|memory limit|pan: error" "$log"; then
    echo "dsm model N=$n P=$p B=$b: ok, ${states:-?} states, depth ${depth:-?}, ${secs:-?} s"
  else
    echo "dsm model N=$n P=$p B=$b: FAILED"
    grep -E "pan:|assertion|errors:|invalid|too small|memory" "$log" | head -20
    if [ -f "$dir/dsm.pml.trail" ]; then
      keep=1
      echo "counterexample kept: cd $dir && spin -t -p -DN=$n -DP=$p -DB=$b dsm.pml"
      cp "$model" "$dir/dsm.pml"
    fi
    status=1
  fi
done
exit $status
