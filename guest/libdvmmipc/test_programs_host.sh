#!/usr/bin/env bash
# Runs ivc-test and ivc-bench (their host build, inside test_dvmmipc_host) on fake VMs and
# checks the lines the boot tests and bench/ivc.sh rely on.
# Usage: [QEMU=qemu-riscv64] test_programs_host.sh PATH/TO/test_dvmmipc_host
set -uo pipefail
HT=${1:?usage: $0 PATH/TO/test_dvmmipc_host}
QEMU=${QEMU:-}
failed=0 total=0

# scenario NAME EXPECTED_EXIT 'GREP_PATTERN COUNT'... -- RUN_ARGS...
scenario() {
    local name=$1 want_rc=$2 out rc checks=() c pat n got ok=1
    shift 2
    while [ "$1" != -- ]; do checks+=("$1"); shift; done
    shift
    total=$((total + 1))
    out=$($QEMU "$HT" run "$@" 2>&1)
    rc=$?
    [ "$rc" -eq "$want_rc" ] || { ok=0; echo "  exit status $rc, want $want_rc"; }
    for c in "${checks[@]}"; do
        pat=${c% *} n=${c##* }
        got=$(grep -cE -- "$pat" <<<"$out")
        [ "$got" -eq "$n" ] || { ok=0; echo "  $got lines match '$pat', want $n"; }
    done
    if [ "$ok" = 1 ]; then
        echo "ok   $name"
    else
        echo "FAIL $name: $HT run $*"
        sed 's/^/    | /' <<<"$out" | tail -n 40
        failed=$((failed + 1))
    fi
}

scenario "exchange 2 ranks 1..64M" 0 \
    '^ivc-test: rank [01] of 2 ok bytes=[0-9]+ msgs=[0-9]+$ 2' 'FAIL 0' \
    -- 2 -- ivc-test g exchange 1 64M
scenario "exchange 3 ranks 1..16M" 0 \
    '^ivc-test: rank [012] of 3 ok bytes=[0-9]+ msgs=[0-9]+$ 3' 'FAIL 0' \
    -- 3 -- ivc-test g exchange 1 16M
scenario "exchange 1 rank 3..1M" 0 '^ivc-test: rank 0 of 1 ok bytes=[0-9]+ msgs=[0-9]+$ 1' \
    -- 1 -- ivc-test g exchange 3 1M
scenario "exchange 4 ranks 100..300K, 1 MiB of shared memory" 0 \
    '^ivc-test: rank [0-3] of 4 ok 4' -- 4 shm=1048576 -- ivc-test g exchange 100 300K
scenario "errors 1 rank" 0 '^ivc-test: rank 0 of 1 errors ok$ 1' 'FAIL 0' -- 1 -- ivc-test g errors
scenario "errors 2 ranks" 0 '^ivc-test: rank [01] of 2 errors ok$ 2' 'FAIL 0' \
    '^ivc-test: errors type-mismatch=-3 ok$ 2' '^ivc-test: errors truncation=-4 ok$ 2' \
    '^ivc-test: errors recv-before-init=-7 ok$ 2' '^ivc-test: errors send-bad-rank=-2 ok$ 2' \
    -- 2 -- ivc-test g errors
scenario "errors 3 ranks" 0 '^ivc-test: rank [012] of 3 errors ok$ 3' 'FAIL 0' \
    -- 3 -- ivc-test g errors
scenario "waitpeer: the peer's VM killed" 0 '^ivc-test: waitpeer ready rank 1 of 2$ 1' \
    '^ivc-test: waitpeer src=0 rc=-5 \(peer left the group, finalized or restarted\) 1' \
    '^run: rank 1 exit 0$ 1' '^run: rank 0 signal 9$ 1' \
    -- 2 kill=0@500 -- ivc-test g idle -- ivc-test g waitpeer 0
scenario "waitpeer: the peer finalizes" 0 '^ivc-test: waitpeer src=0 rc=-5 1' \
    -- 2 -- ivc-test g idle 1 -- ivc-test g waitpeer 0
scenario "ping" 0 '^ivc-test: ping rounds=2000 one-way-us=[0-9.]+$ 1' \
    -- 2 -- ivc-test g ping 2000
scenario "ping 3 ranks" 0 '^ivc-test: ping rounds=100 one-way-us=[0-9.]+$ 1' \
    -- 3 -- ivc-test g ping 100
scenario "info without EXPECTED" 0 '^ivc-test: rank [0-2] of 3$ 3' \
    -- 3 expected=0 -- ivc-test g info
scenario "no such group" 1 '^ivc-test: FAIL rank -1: ivc_init: -1 \(no ivc device 1' \
    '^run: rank 0 exit 1$ 1' \
    -- 1 -- ivc-test other-group info
scenario "usage" 1 '^usage: ivc-test GROUP 1' '^run: rank 0 exit 2$ 1' -- 1 -- ivc-test g exchange 5
scenario "bench bw" 0 \
    '^ivc-bench: buf=(4096|65536|1048576|16777216) bytes=[0-9]+ seconds=[0-9.]+ MiB/s=[0-9.]+$ 4' \
    -- 2 -- ivc-bench g bw 256M 4K 64K 1M 16M
scenario "bench lat" 0 '^ivc-bench: lat size=1 rounds=1000 one-way-us=[0-9.]+$ 1' \
    -- 3 -- ivc-bench g lat 1000
scenario "bench lat 8K" 0 '^ivc-bench: lat size=8192 rounds=500 one-way-us=[0-9.]+$ 1' \
    -- 2 -- ivc-bench g lat 500 8K

echo "$failed of $total program scenarios failed"
[ "$failed" -eq 0 ]
