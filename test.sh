#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the ASan/UBSan build of the unit tests, bare-metal
# CPU tests, differential tests against qemu-riscv64, the DSM model check, multi-process
# cluster tests, and the Linux boot tests (one and several nodes, control socket, gdb stub).
# Installs and builds what is missing first (as ./setup.sh --no-run does).
#   ./test.sh                  everything
#   ./test.sh -L unit          only one CTest label (unit, baremetal, baremetal-qemu, diff,
#                              model, cluster, boot)
set -euo pipefail
cd "$(dirname "$0")"
step() { printf '\n== %s\n' "$*" >&2; }
step "Debian packages"
scripts/install-deps.sh
step "building dvmm"
scripts/build.sh build
step "building the sanitizer build of the unit tests"
scripts/build.sh build-asan -DDVMM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1
step "building the fuzz targets (clang, libFuzzer)"
if [ ! -f build-fuzz/build.ninja ]; then
  CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DDVMM_FUZZ=ON -DDVMM_WERROR=OFF >/dev/null
fi
ninja -C build-fuzz -j "${DVMM_JOBS:-$(nproc)}" decoder_fuzz virtio_fuzz
step "guest image"
guest/build.sh
step "unit tests under ASan/UBSan"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -L unit --output-on-failure -j "$(nproc)" --timeout 600
step "fuzzing the decoder for 60 s"
mkdir -p build-fuzz/corpus
build-fuzz/tests/fuzz/decoder_fuzz -max_total_time=60 -max_len=512 -print_final_stats=1 \
  build-fuzz/corpus 2>&1 | tail -3
step "fuzzing the virtio devices for 60 s"
mkdir -p build-fuzz/corpus-virtio
build-fuzz/tests/fuzz/virtio_fuzz -max_total_time=60 -print_final_stats=1 \
  build-fuzz/corpus-virtio 2>&1 | tail -3
step "all tests"
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900 "$@"
