#!/usr/bin/env bash
# Build dvmm's default guest image: a RISC-V Linux kernel (Debian's linux-source-6.1 on top of
# tinyconfig + guest/kernel.config), a static busybox (Debian's busybox source package), static
# e2fsck and mke2fs (Debian's e2fsprogs source package), libdvmmipc with ivc-test and ivc-bench
# (guest/libdvmmipc), an initramfs with busybox, e2fsprogs, libdvmmipc and guest/initramfs/*
# (whose /init implements the /dvmm/cmd protocol and booting from a disk), and rootfs.ext4, an
# ext4 disk image holding the same files.
#
# Everything is cached under ${DVMM_CACHE_DIR:-$HOME/.cache/dvmm}/guest/ (see guest/README.md):
#   kernel/<kkey>/     Image, vmlinux, config, gen_init_cpio, kernelrelease, version, build.log
#   busybox/<bkey>/    busybox, busybox.links, config, build.log
#   e2fsprogs/<ekey>/  e2fsck, mke2fs, version, build.log
#   libdvmmipc/<lkey>/ libdvmmipc.a, dvmmipc.h, ivc-test, ivc-bench (a link to ivc-test), build.log
#   initramfs/<ikey>/  initramfs.cpio.gz, initramfs.spec
#   rootfs/<rkey>/     rootfs.ext4, rootfs.spec, build.log
#   <key>/             the image: hard links to Image, vmlinux, config, initramfs.cpio.gz,
#                      busybox, rootfs.ext4, plus manifest (key=value lines)
#   current -> <key>   what dvmm uses by default
#   logs/, build/      build logs, temporary build trees
# Each component is keyed by its own inputs (so editing init does not rebuild the kernel) and
# built in a temporary directory that is renamed into place only when complete.
#
# Usage: guest/build.sh [--print-dir] [--help]
# Environment: DVMM_CACHE_DIR, DVMM_JOBS (default: nproc), DVMM_KEEP_BUILD=1 (keep the build
# trees under build/, e.g. for kernel sources next to vmlinux in gdb).
set -euo pipefail

GUEST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$GUEST_DIR/$(basename "${BASH_SOURCE[0]}")"
CACHE_ROOT=${DVMM_CACHE_DIR:-$HOME/.cache/dvmm}
GCACHE=$CACHE_ROOT/guest
CROSS=riscv64-linux-gnu-
JOBS=${DVMM_JOBS:-$(nproc)}
LINUX_PKG=linux-source-6.1
LINUX_TARBALL=/usr/src/linux-source-6.1.tar.xz
FINISHER_ADDR=0x100000   # documented here; used by guest/initramfs/init
ROOTFS_SIZE=128M         # apparent size of rootfs.ext4 (sparse; grow it with resize2fs)
# ext4 features of rootfs.ext4, pinned (not the host's mke2fs.conf): what Linux 6.1 and the
# guest's e2fsck 1.47 support.
ROOTFS_FEATURES=has_journal,ext_attr,resize_inode,dir_index,filetype,extent,64bit,flex_bg,sparse_super,large_file,huge_file,dir_nlink,extra_isize,metadata_csum
# Busybox applets the guest's /init needs beyond REQUIRED_APPLETS (checked when the initramfs
# is built: adding them to REQUIRED_APPLETS would change the busybox key).
INIT_APPLETS="switch_root"

# Busybox applets the guest relies on (init, tests, benchmarks): the build fails without them.
REQUIRED_APPLETS="ash sh mount mountpoint devmem setsid cttyhack poweroff reboot sync nproc
  sha256sum md5sum wget nc ip ifconfig fsck mkfs.ext2 dd cat echo sleep seq uptime free top ps
  kill grep sed awk head tail wc tr cut sort find xargs mkdir rm cp mv ln ls chmod date time
  hostname"

# ------------------------------------------------------------------------------------------------
# helpers

T0=$(date +%s.%N)
msg() { printf 'guest/build.sh: %s\n' "$*" >&2; }
die() { msg "error: $*"; exit 1; }
since() { # seconds since $1 (date +%s.%N), formatted
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { d = b - a; if (d >= 60) printf "%dm%02ds", d / 60, d % 60; else printf "%.1fs", d }'
}
short_hash() { sha256sum | cut -c1-16; }

LOG=/dev/null
# run_logged CMD...: run CMD with output appended to $LOG; on failure print the log's tail.
run_logged() {
    printf '\n$ %s\n' "$*" >>"$LOG"
    local rc=0
    "$@" >>"$LOG" 2>&1 </dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        msg "FAILED (exit $rc): $*"
        msg "last 30 lines of $LOG:"
        tail -n 30 "$LOG" >&2
        exit "$rc"
    fi
}

# Temporary trees are named build/<name>.<pid of this script>.XXXXXX, so that cleanup finds
# them even when they were made in a subshell.
cleanup() {
    local d
    for d in "$GCACHE/build/"*".$$."*; do
        [ -d "$d" ] || continue
        if [ "${DVMM_KEEP_BUILD:-0}" = 1 ]; then msg "kept build tree $d"; continue; fi
        rm -rf -- "$d"
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# new_work_dir NAME: a fresh temporary directory under $GCACHE/build (same file system as the
# cache, so finished results can be renamed into place atomically).
new_work_dir() {
    mkdir -p "$GCACHE/build"
    local d
    d=$(mktemp -d "$GCACHE/build/$1.$$.XXXXXX")
    chmod 755 "$d"
    printf '%s\n' "$d"
}

# publish SRC DEST: atomically move the finished directory SRC to DEST (unless someone else did).
publish() {
    mkdir -p "$(dirname "$2")"
    if ! mv -T -- "$1" "$2" 2>/dev/null; then
        [ -d "$2" ] || die "cannot move $1 to $2"
        rm -rf -- "$1"
    fi
}

# ------------------------------------------------------------------------------------------------
# host prerequisites

apt_updated=0
apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        die "missing packages: $* (install them: sudo apt-get install $*)"
    fi
    msg "installing missing packages: $*"
    if [ "$apt_updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

check_prereqs() {
    local missing=() pair
    for pair in riscv64-linux-gnu-gcc:gcc-riscv64-linux-gnu make:make gcc:gcc flex:flex \
        bison:bison bc:bc xz:xz-utils gzip:gzip perl:perl dpkg-source:dpkg-dev \
        sha256sum:coreutils flock:util-linux; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ -e /usr/riscv64-linux-gnu/lib/libc.a ] || missing+=(libc6-dev-riscv64-cross)
    [ -e "$LINUX_TARBALL" ] || missing+=("$LINUX_PKG")
    [ -e /usr/include/gelf.h ] || missing+=(libelf-dev)
    [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    { host_tool mke2fs && host_tool debugfs && host_tool e2fsck; } >/dev/null || missing+=(e2fsprogs)
    if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# host_tool NAME: the path of an e2fsprogs tool (in /sbin, which a user's PATH may lack)
host_tool() {
    command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } ||
        { [ -x "/sbin/$1" ] && echo "/sbin/$1"; }
}

# The busybox source package needs a deb-src entry for the mirror and suite of the deb entries.
have_deb_src() {
    grep -rqsE '^(Types:.*deb-src|deb-src[[:space:]])' /etc/apt/sources.list /etc/apt/sources.list.d/ \
        --include='*.list' --include='*.sources' --include=sources.list
}

# source_version PKG: the newest version of source package PKG that apt knows. apt-cache is the
# slowest part of a run with nothing to build, so the answer is remembered until apt's lists or
# sources change.
source_version() {
    local memo=$GCACHE/.$1-source-version stamp s v best=""
    stamp=$(stat -c %Y /var/lib/apt/lists /etc/apt/sources.list.d /etc/apt/sources.list 2>/dev/null || true)
    stamp=${stamp//$'\n'/ }
    if [ -f "$memo" ] && { read -r s && read -r v; } <"$memo" && [ "$s" = "$stamp" ] && [ -n "$v" ]; then
        printf '%s\n' "$v"
        return
    fi
    for v in $({ apt-cache showsrc --only-source "$1" 2>/dev/null || true; } |
        awk '/^Version:/ { print $2 }'); do
        if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
    done
    if [ -n "$best" ] && mkdir -p "$GCACHE" 2>/dev/null; then
        printf '%s\n%s\n' "$stamp" "$best" >"$memo.$$" && mv -f "$memo.$$" "$memo" || true
    fi
    printf '%s\n' "$best"
}

# ensure_sources: sets BUSYBOX_VERSION and E2FSPROGS_VERSION (for `apt-get source`), adding a
# deb-src entry first if apt knows neither source package.
ensure_sources() {
    BUSYBOX_VERSION=$(source_version busybox)
    E2FSPROGS_VERSION=$(source_version e2fsprogs)
    [ -n "$BUSYBOX_VERSION" ] && [ -n "$E2FSPROGS_VERSION" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        die "apt knows no busybox or e2fsprogs source package. Add a deb-src entry for the Debian
  mirror and suite of your deb entries (e.g. a copy of /etc/apt/sources.list.d/debian.sources
  with 'Types: deb-src'), run 'sudo apt-get update', and run this script again."
    fi
    if ! have_deb_src; then
        local f=/etc/apt/sources.list.d/dvmm-deb-src.sources
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            msg "adding $f (deb-src twin of debian.sources) for 'apt-get source busybox e2fsprogs'"
            sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$f"
        elif grep -qsE '^deb[[:space:]]' /etc/apt/sources.list; then
            f=/etc/apt/sources.list.d/dvmm-deb-src.list
            msg "adding $f (deb-src twin of sources.list) for 'apt-get source busybox e2fsprogs'"
            sed -nE 's/^deb([[:space:]])/deb-src\1/p' /etc/apt/sources.list >"$f"
        else
            die "no Debian deb entries found to derive a deb-src entry from"
        fi
    fi
    msg "apt-get update (for the busybox and e2fsprogs source packages)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    apt_updated=1
    BUSYBOX_VERSION=$(source_version busybox)
    E2FSPROGS_VERSION=$(source_version e2fsprogs)
    [ -n "$BUSYBOX_VERSION" ] || die "apt-cache showsrc busybox finds nothing even with deb-src"
    [ -n "$E2FSPROGS_VERSION" ] || die "apt-cache showsrc e2fsprogs finds nothing even with deb-src"
}

# ------------------------------------------------------------------------------------------------
# kernel

# fragment_lines FILE: the option lines of a kconfig fragment ("CONFIG_X=v", "# CONFIG_X is not set")
fragment_lines() {
    grep -E '^(CONFIG_[A-Za-z0-9_]+=.*|# CONFIG_[A-Za-z0-9_]+ is not set)[[:space:]]*$' "$1" |
        sed -E 's/[[:space:]]+$//'
}

check_kernel_config() { # check_kernel_config FRAGMENT DOTCONFIG
    local line dropped=()
    while IFS= read -r line; do
        grep -qxF -- "$line" "$2" && continue
        # "is not set" is also satisfied by the symbol being absent (unavailable) altogether
        if [[ $line == "# "* ]]; then
            local sym=${line#\# }; sym=${sym%% *}
            grep -qE "^${sym}=" "$2" || continue
        fi
        dropped+=("$line")
    done < <(fragment_lines "$1")
    if [ "${#dropped[@]}" -gt 0 ]; then
        msg "the final kernel .config lost these options of $1"
        msg "(a missing dependency usually; add it to the fragment):"
        local d
        for d in "${dropped[@]}"; do
            local sym=${d#\# }; sym=${sym%%[= ]*}
            printf '    wanted: %-50s got: %s\n' "$d" \
                "$(grep -E "^(${sym}=|# ${sym} is not set)" "$2" || echo '(absent)')" >&2
        done
        return 1
    fi
}

build_kernel() { # builds and publishes $KERNEL_DIR
    local work src out
    work=$(new_work_dir "kernel-$KERNEL_KEY")
    out=$work/out
    LOG=$GCACHE/logs/kernel-$KERNEL_KEY.log
    : >"$LOG"
    run_logged tar -xJf "$LINUX_TARBALL" -C "$work"
    src=$work/linux-source-6.1
    [ -f "$src/Makefile" ] || die "unexpected layout of $LINUX_TARBALL"
    local mk=(make -C "$src" ARCH=riscv CROSS_COMPILE="$CROSS" KBUILD_BUILD_USER=dvmm
        KBUILD_BUILD_HOST=dvmm)
    run_logged "${mk[@]}" tinyconfig
    run_logged env ARCH=riscv CROSS_COMPILE="$CROSS" "$src/scripts/kconfig/merge_config.sh" \
        -m -O "$src" "$src/.config" "$GUEST_DIR/kernel.config"
    run_logged "${mk[@]}" olddefconfig
    cp "$src/.config" "$GCACHE/logs/kernel-$KERNEL_KEY.config"
    check_kernel_config "$GUEST_DIR/kernel.config" "$src/.config" ||
        die "kernel configuration check failed (final config: $GCACHE/logs/kernel-$KERNEL_KEY.config)"
    run_logged "${mk[@]}" -j"$JOBS" Image
    [ -x "$src/usr/gen_init_cpio" ] || run_logged "${mk[@]}" usr/gen_init_cpio
    mkdir -p "$out"
    cp "$src/arch/riscv/boot/Image" "$src/vmlinux" "$src/usr/gen_init_cpio" "$out/"
    cp "$src/.config" "$out/config"
    "${mk[@]}" -s kernelrelease >"$out/kernelrelease" 2>>"$LOG"
    # the banner printed at boot, e.g. "Linux version 6.1.x (dvmm@dvmm) (riscv64-linux-gnu-gcc ...) #1 SMP ..."
    strings "$out/Image" | grep '^Linux version .* #[0-9]' | tail -n1 >"$out/version" || true
    cp "$LOG" "$out/build.log"
    publish "$out" "$KERNEL_DIR"
}

# ------------------------------------------------------------------------------------------------
# busybox

build_busybox() { # builds and publishes $BUSYBOX_DIR
    local work src out
    work=$(new_work_dir "busybox-$BUSYBOX_KEY")
    out=$work/out
    LOG=$GCACHE/logs/busybox-$BUSYBOX_KEY.log
    : >"$LOG"
    (cd "$work" && run_logged apt-get source -q "busybox=$BUSYBOX_VERSION")
    src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'busybox-*' | head -n1)
    [ -n "$src" ] && [ -f "$src/Makefile" ] || die "apt-get source busybox produced no source tree"
    local mk=(make -C "$src" ARCH=riscv CROSS_COMPILE="$CROSS")
    run_logged "${mk[@]}" defconfig
    # Static binary (no libc in the initramfs). CONFIG_TC does not build against current kernel
    # headers (CBQ was removed from them).
    sed -i -E \
        -e 's/^# CONFIG_STATIC is not set$/CONFIG_STATIC=y/' \
        -e 's/^CONFIG_TC=y$/# CONFIG_TC is not set/' \
        -e 's/^CONFIG_FEATURE_TC_INGRESS=y$/# CONFIG_FEATURE_TC_INGRESS is not set/' \
        "$src/.config"
    run_logged bash -c "yes '' | make -C '$src' ARCH=riscv CROSS_COMPILE='$CROSS' oldconfig"
    grep -qx 'CONFIG_STATIC=y' "$src/.config" || die "busybox: CONFIG_STATIC=y did not stick"
    local a sym missing=()
    for a in $REQUIRED_APPLETS; do
        sym=$(printf '%s' "$a" | tr 'a-z.' 'A-Z_')
        case $a in sh) sym=SH_IS_ASH ;; time) sym=TIME ;; esac
        grep -qx "CONFIG_${sym}=y" "$src/.config" || missing+=("$a (CONFIG_$sym)")
    done
    [ "${#missing[@]}" -eq 0 ] || die "busybox config lacks required applets: ${missing[*]}"
    run_logged "${mk[@]}" -j"$JOBS" busybox
    run_logged "${mk[@]}" busybox.links
    mkdir -p "$out"
    cp "$src/busybox" "$src/busybox.links" "$out/"
    cp "$src/.config" "$out/config"
    for a in $REQUIRED_APPLETS; do
        grep -qE "/$a\$" "$out/busybox.links" || die "busybox.links has no $a"
    done
    if command -v qemu-riscv64 >/dev/null 2>&1; then # smoke test under user-mode emulation
        run_logged qemu-riscv64 "$out/busybox" true
        qemu-riscv64 "$out/busybox" 2>/dev/null | head -n1 >"$out/version" || true
    fi
    cp "$LOG" "$out/build.log"
    publish "$out" "$BUSYBOX_DIR"
}

# ------------------------------------------------------------------------------------------------
# e2fsprogs (busybox has no e2fsck, and its mkfs.ext2 makes no ext4)

build_e2fsprogs() { # builds and publishes $E2FSPROGS_DIR
    local work src bld out b
    work=$(new_work_dir "e2fsprogs-$E2FSPROGS_KEY")
    out=$work/out
    bld=$work/build
    LOG=$GCACHE/logs/e2fsprogs-$E2FSPROGS_KEY.log
    : >"$LOG"
    (cd "$work" && run_logged apt-get source -q "e2fsprogs=$E2FSPROGS_VERSION")
    src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'e2fsprogs-*' | head -n1)
    if [ -z "$src" ] || [ ! -x "$src/configure" ]; then
        die "apt-get source e2fsprogs produced no source tree"
    fi
    mkdir -p "$bld" "$out"
    # Static, no NLS, only what e2fsck and mke2fs need. The bundled libuuid and libblkid are
    # forced (--enable-lib*) and pkg-config is off so that no host (amd64) library is picked up.
    # Linking getpwuid_r statically draws a harmless glibc warning (e2fsck only uses it to
    # expand %U in log file names of e2fsck.conf).
    (cd "$bld" && run_logged "$src/configure" --host=riscv64-linux-gnu CC="${CROSS}gcc" \
        AR="${CROSS}ar" RANLIB="${CROSS}ranlib" STRIP="${CROSS}strip" PKG_CONFIG=false \
        CFLAGS=-Os LDFLAGS=-static \
        --enable-libuuid --enable-libblkid --disable-elf-shlibs --disable-nls --disable-fuse2fs \
        --disable-defrag --disable-imager --disable-debugfs --disable-resizer --disable-uuidd \
        --disable-backtrace --disable-e2initrd-helper --disable-fsck --disable-tdb \
        --disable-bmap-stats --with-udev-rules-dir=no --with-crond-dir=no \
        --with-systemd-unit-dir=no)
    run_logged make -C "$bld" -j"$JOBS" libs
    run_logged make -C "$bld/e2fsck" -j"$JOBS" e2fsck
    run_logged make -C "$bld/misc" -j"$JOBS" mke2fs
    "${CROSS}strip" -o "$out/e2fsck" "$bld/e2fsck/e2fsck"
    "${CROSS}strip" -o "$out/mke2fs" "$bld/misc/mke2fs"
    for b in e2fsck mke2fs; do
        "${CROSS}readelf" -h "$out/$b" | grep -q 'Machine:.*RISC-V' || die "$b is not a RISC-V binary"
        if "${CROSS}readelf" -l "$out/$b" | grep -q 'program interpreter'; then
            die "$b is not statically linked"
        fi
    done
    if command -v qemu-riscv64 >/dev/null 2>&1; then # smoke test under user-mode emulation
        # the guest's e2fsck on a host-made ext4 image, the host's e2fsck on the guest's mke2fs's
        local t=$work/test.img
        truncate -s 32M "$t"
        run_logged "$(host_tool mke2fs)" -q -F -t ext4 "$t"
        run_logged qemu-riscv64 "$out/e2fsck" -fn "$t"
        rm -f "$t"
        truncate -s 32M "$t"
        run_logged qemu-riscv64 "$out/mke2fs" -q -F -t ext4 "$t"
        run_logged "$(host_tool e2fsck)" -fn "$t"
        rm -f "$t"
        qemu-riscv64 "$out/e2fsck" -V 2>&1 | head -n1 >"$out/version" || true
    fi
    cp "$LOG" "$out/build.log"
    publish "$out" "$E2FSPROGS_DIR"
}

# ------------------------------------------------------------------------------------------------
# libdvmmipc (guest/libdvmmipc): the inter-VM communication library and its programs

build_libdvmmipc() { # builds and publishes $LIBDVMMIPC_DIR
    local work out b
    work=$(new_work_dir "libdvmmipc-$LIBDVMMIPC_KEY")
    out=$work/out
    LOG=$GCACHE/logs/libdvmmipc-$LIBDVMMIPC_KEY.log
    : >"$LOG"
    # the Makefile's riscv64 target: static, -Wall -Wextra -Werror, stripped programs
    run_logged make -C "$GUEST_DIR/libdvmmipc" riscv64 O="$work/build" CROSS="$CROSS"
    mkdir -p "$out"
    for b in libdvmmipc.a dvmmipc.h ivc-test; do
        [ -f "$work/build/$b" ] || die "libdvmmipc: make riscv64 made no $b"
        cp "$work/build/$b" "$out/"
    done
    ln -s ivc-test "$out/ivc-bench" # one binary: it runs as ivc-bench by that name
    "${CROSS}readelf" -h "$out/ivc-test" | grep -q 'Machine:.*RISC-V' || die "ivc-test is not a RISC-V binary"
    if "${CROSS}readelf" -l "$out/ivc-test" | grep -q 'program interpreter'; then
        die "ivc-test is not statically linked"
    fi
    if command -v qemu-riscv64 >/dev/null 2>&1; then # smoke test: usage errors exit with 2
        local rc=0
        qemu-riscv64 "$out/ivc-test" >>"$LOG" 2>&1 </dev/null || rc=$?
        [ "$rc" -eq 2 ] || die "libdvmmipc: ivc-test without arguments exited with $rc, not 2 (log: $LOG)"
    fi
    cp "$LOG" "$out/build.log"
    publish "$out" "$LIBDVMMIPC_DIR"
}

# libdvmmipc_digest: the sources of what goes into the guest (the host test's files, whose names
# start with test_ or dvmmipc_fake, and the default output directory out/ are left out)
libdvmmipc_digest() {
    local dir=$GUEST_DIR/libdvmmipc
    [ -d "$dir" ] || die "$dir is missing"
    (cd "$dir" && find . -path ./out -prune -o -type f ! -name 'test_*' ! -name 'dvmmipc_fake*' \
        ! -name .gitignore -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) | sha256sum | cut -c1-64
}

# ------------------------------------------------------------------------------------------------
# the guest's file tree (initramfs and rootfs.ext4)

# Links to the e2fsprogs binaries: busybox's fsck runs fsck.<type>. Busybox's own mkfs.ext2
# (a REQUIRED_APPLETS entry) stays.
E2FS_LINKS="/sbin/fsck.ext2:e2fsck /sbin/fsck.ext3:e2fsck /sbin/fsck.ext4:e2fsck
  /sbin/mkfs.ext3:mke2fs /sbin/mkfs.ext4:mke2fs"
# libdvmmipc in the guest: PATH:FILE-IN-THE-LIBDVMMIPC-DIR:MODE; ivc-bench is a link to ivc-test
# (one binary: 0.26 MB of gzip in the initramfs instead of 0.5).
LIBDVMMIPC_FILES="/usr/lib/libdvmmipc.a:libdvmmipc.a:0644 /usr/include/dvmmipc.h:dvmmipc.h:0644
  /usr/bin/ivc-test:ivc-test:0755"
LIBDVMMIPC_LINKS="/usr/bin/ivc-bench:ivc-test"
# The e2fsprogs binaries of each tree. The initramfs has no mke2fs: every boot inflates the
# initramfs, and mke2fs would add 0.5 MB of gzip to it (about 0.2 s of boot time on a loaded
# 2-core host); /init only needs e2fsck.
E2FS_BINARIES_INITRAMFS="e2fsck"
E2FS_BINARIES_ROOTFS="e2fsck mke2fs"

# guest_tree_spec BINARIES: the guest's files in gen_init_cpio's format, on stdout: busybox and
# its applet links, the e2fsprogs BINARIES (e.g. "e2fsck mke2fs") with their links, libdvmmipc
# (LIBDVMMIPC_FILES), and guest/initramfs/* (which wins over all of them).
guest_tree_spec() {
    local bb=$BUSYBOX_DIR e2=$E2FSPROGS_DIR overlay=$GUEST_DIR/initramfs e2bins=" $1 "
    declare -A dirs=() taken=()
    local d p rel l a
    for a in $INIT_APPLETS; do
        grep -qE "/$a\$" "$bb/busybox.links" || die "busybox.links has no $a (/init needs it)"
    done
    for d in /bin /sbin /usr /usr/bin /usr/sbin /usr/lib /usr/include /dev /proc /sys /tmp /run \
        /root /etc /mnt /var /dvmm /newroot; do
        dirs[$d]=1
    done
    # overlay entries (relative paths, sorted for a reproducible archive)
    local overlay_entries=()
    if [ -d "$overlay" ]; then
        while IFS= read -r rel; do overlay_entries+=("$rel"); done \
            < <(cd "$overlay" && find . -mindepth 1 \( -type f -o -type l -o -type d \) | sed 's|^\.||' | LC_ALL=C sort)
    fi
    for rel in "${overlay_entries[@]+"${overlay_entries[@]}"}"; do
        if [ -d "$overlay$rel" ] && [ ! -L "$overlay$rel" ]; then dirs[$rel]=1; else taken[$rel]=1; fi
        p=${rel%/*}
        while [ -n "$p" ]; do dirs[$p]=1; p=${p%/*}; done
    done
    local ipcfiles=() ipclinks=()
    for l in $LIBDVMMIPC_FILES; do
        p=${l%%:*}
        [ -n "${taken[$p]+x}" ] && continue
        ipcfiles+=("$l"); taken[$p]=1
    done
    for l in $LIBDVMMIPC_LINKS; do
        p=${l%%:*}
        [ -n "${taken[$p]+x}" ] && continue
        ipclinks+=("$l"); taken[$p]=1
    done
    local e2files=() e2links=()
    for p in $1; do
        p=/sbin/$p
        [ -n "${taken[$p]+x}" ] && continue
        e2files+=("$p"); taken[$p]=1
    done
    for l in $E2FS_LINKS; do
        p=${l%%:*}
        [[ $e2bins == *" ${l#*:} "* ]] || continue
        [ -n "${taken[$p]+x}" ] && continue
        e2links+=("$l"); taken[$p]=1
    done
    local links=()
    while IFS= read -r p; do
        [ -n "$p" ] || continue
        case $p in /linuxrc | /bin/busybox) continue ;; esac
        [ -n "${taken[$p]+x}" ] && continue
        links+=("$p")
        d=${p%/*}
        while [ -n "$d" ]; do dirs[$d]=1; d=${d%/*}; done
    done <"$bb/busybox.links"
    printf '# generated by guest/build.sh\n'
    for d in $(printf '%s\n' "${!dirs[@]}" | LC_ALL=C sort); do
        case $d in
        /tmp) printf 'dir %s 1777 0 0\n' "$d" ;;
        /root) printf 'dir %s 0700 0 0\n' "$d" ;;
        *) printf 'dir %s 0755 0 0\n' "$d" ;;
        esac
    done
    printf 'nod /dev/console 0600 0 0 c 5 1\n'
    printf 'nod /dev/null 0666 0 0 c 1 3\n'
    printf 'file /bin/busybox %s 0755 0 0\n' "$bb/busybox"
    for p in "${links[@]}"; do printf 'slink %s /bin/busybox 0777 0 0\n' "$p"; done
    for p in "${e2files[@]+"${e2files[@]}"}"; do printf 'file %s %s 0755 0 0\n' "$p" "$e2/${p##*/}"; done
    for l in "${e2links[@]+"${e2links[@]}"}"; do printf 'slink %s %s 0777 0 0\n' "${l%%:*}" "${l#*:}"; done
    for l in "${ipcfiles[@]+"${ipcfiles[@]}"}"; do
        p=${l#*:}
        printf 'file %s %s %s 0 0\n' "${l%%:*}" "$LIBDVMMIPC_DIR/${p%%:*}" "${l##*:}"
    done
    for l in "${ipclinks[@]+"${ipclinks[@]}"}"; do printf 'slink %s %s 0777 0 0\n' "${l%%:*}" "${l#*:}"; done
    for rel in "${overlay_entries[@]+"${overlay_entries[@]}"}"; do
        p=$overlay$rel
        if [ -L "$p" ]; then
            printf 'slink %s %s 0777 0 0\n' "$rel" "$(readlink "$p")"
        elif [ -f "$p" ]; then
            if [ -x "$p" ]; then printf 'file %s %s 0755 0 0\n' "$rel" "$p"
            else printf 'file %s %s 0644 0 0\n' "$rel" "$p"; fi
        fi
    done
}

# spec_for_humans: the spec on stdin with the cache paths shortened (for initramfs.spec etc.)
spec_for_humans() {
    sed "s|$GUEST_DIR/initramfs|guest/initramfs|g; s|$BUSYBOX_DIR/|busybox/|g; s|$E2FSPROGS_DIR/|e2fsprogs/|g
        s|$LIBDVMMIPC_DIR/|libdvmmipc/|g"
}

# ------------------------------------------------------------------------------------------------
# initramfs

build_initramfs() { # builds and publishes $INITRAMFS_DIR
    local work spec
    work=$(new_work_dir "initramfs-$INITRAMFS_KEY")
    LOG=$GCACHE/logs/initramfs-$INITRAMFS_KEY.log
    : >"$LOG"
    spec=$work/initramfs.spec
    [ -x "$GUEST_DIR/initramfs/init" ] || die "$GUEST_DIR/initramfs/init is missing or not executable"
    guest_tree_spec "$E2FS_BINARIES_INITRAMFS" >"$spec"
    run_logged bash -c "'$KERNEL_DIR/gen_init_cpio' -t 0 '$spec' | gzip -9 -n >'$work/initramfs.cpio.gz'"
    mkdir -p "$work/out"
    mv "$work/initramfs.cpio.gz" "$work/out/"
    spec_for_humans <"$spec" >"$work/out/initramfs.spec"
    publish "$work/out" "$INITRAMFS_DIR"
}

# ------------------------------------------------------------------------------------------------
# rootfs.ext4

# build_rootfs: builds and publishes $ROOTFS_DIR. The tree of guest_tree_spec is made in a
# directory and copied into a fresh ext4 image by the host's mke2fs -d; debugfs then makes the
# device nodes and gives every file to root (-d copies the builder's uid and gid), so no root
# privileges are needed.
build_rootfs() {
    local work spec tree cmds img errs type path a b d e f t
    work=$(new_work_dir "rootfs-$ROOTFS_KEY")
    LOG=$GCACHE/logs/rootfs-$ROOTFS_KEY.log
    : >"$LOG"
    spec=$work/rootfs.spec
    tree=$work/tree
    cmds=$work/debugfs.cmds
    img=$work/out/rootfs.ext4
    [ -x "$GUEST_DIR/initramfs/init" ] || die "$GUEST_DIR/initramfs/init is missing or not executable"
    guest_tree_spec "$E2FS_BINARIES_ROOTFS" >"$spec"
    mkdir -p "$tree" "$work/out"
    : >"$cmds"
    while read -r type path a b _ d e f; do
        case $type in
        dir) mkdir -p "$tree$path"; chmod "$a" "$tree$path" ;;
        file) cp "$a" "$tree$path"; chmod "$b" "$tree$path" ;;
        slink) ln -s "$a" "$tree$path" ;;
        nod) # nod PATH MODE UID GID c|b MAJOR MINOR (debugfs's mknod takes a name in its cwd)
            printf 'cd %s\nmknod %s %s %s %s\ncd /\n' "${path%/*}/" "${path##*/}" "$d" "$e" "$f" >>"$cmds"
            if [ "$d" = b ]; then t=060000; else t=020000; fi
            printf 'sif %s mode 0%o\n' "$path" "$(( t | 8#$a ))" >>"$cmds"
            ;;
        '' | '#'*) continue ;;
        *) die "rootfs: unexpected spec line: $type $path" ;;
        esac
        [ "$path" = / ] || printf 'sif %s uid 0\nsif %s gid 0\n' "$path" "$path" >>"$cmds"
    done <"$spec"
    truncate -s "$ROOTFS_SIZE" "$img"
    # Features and geometry pinned: MKE2FS_CONFIG names no file, so mke2fs uses its built-in
    # defaults, not the host's mke2fs.conf. The sparse file reads as zeros, so the journal need
    # not be written (lazy_journal_init); inode tables are zeroed through discard.
    run_logged env MKE2FS_CONFIG=/nonexistent "$(host_tool mke2fs)" -F -t ext4 \
        -O "none,$ROOTFS_FEATURES" -b 4096 -I 256 -i 16384 -L dvmm-root \
        -E root_owner=0:0,lazy_journal_init=1 -d "$tree" "$img"
    # debugfs exits 0 even when commands fail; it complains on stderr (after its banner)
    printf '\n$ debugfs -w -f %s %s\n' "$cmds" "$img" >>"$LOG"
    errs=$("$(host_tool debugfs)" -w -f "$cmds" "$img" 2>&1 >>"$LOG" </dev/null | grep -v '^debugfs [0-9]' || true)
    if [ -n "$errs" ]; then
        printf '%s\n' "$errs" >>"$LOG"
        die "rootfs: debugfs failed: $errs"
    fi
    run_logged "$(host_tool e2fsck)" -fn "$img"
    if command -v qemu-riscv64 >/dev/null 2>&1; then
        run_logged qemu-riscv64 "$E2FSPROGS_DIR/e2fsck" -fn "$img"
    fi
    spec_for_humans <"$spec" >"$work/out/rootfs.spec"
    cp "$LOG" "$work/out/build.log"
    publish "$work/out" "$ROOTFS_DIR"
}

# ------------------------------------------------------------------------------------------------
# keys

overlay_digest() {
    local overlay=$GUEST_DIR/initramfs
    [ -d "$overlay" ] || { echo none; return; }
    (cd "$overlay" && find . -mindepth 1 -printf '%y %m %p %l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum) | sha256sum | cut -c1-64
}

compute_keys() {
    LINUX_VERSION=$(dpkg-query -W -f='${Version}' "$LINUX_PKG" 2>/dev/null) ||
        die "$LINUX_PKG is not installed"
    GCC_VERSION=$("${CROSS}gcc" --version | head -n1)
    BINUTILS_VERSION=$("${CROSS}ld" --version | head -n1)
    ensure_sources
    HOST_E2FSPROGS=$( { dpkg-query -W -f='e2fsprogs ${Version} ' e2fsprogs 2>/dev/null || true
        "$(host_tool mke2fs || echo mke2fs)" -V 2>&1 | head -n1 || true; } | tr '\n' ' ')
    KERNEL_KEY=$( {
        echo "kernel v1"; echo "$LINUX_PKG $LINUX_VERSION"; echo "$GCC_VERSION"; echo "$BINUTILS_VERSION"
        cat "$GUEST_DIR/kernel.config"; declare -f build_kernel check_kernel_config fragment_lines
    } | short_hash)
    BUSYBOX_KEY=$( {
        echo "busybox v1"; echo "busybox $BUSYBOX_VERSION"; echo "$GCC_VERSION"; echo "$BINUTILS_VERSION"
        echo "$REQUIRED_APPLETS"; declare -f build_busybox
    } | short_hash)
    E2FSPROGS_KEY=$( {
        echo "e2fsprogs v1"; echo "e2fsprogs $E2FSPROGS_VERSION"; echo "$GCC_VERSION"; echo "$BINUTILS_VERSION"
        declare -f build_e2fsprogs
    } | short_hash)
    LIBDVMMIPC_KEY=$( {
        echo "libdvmmipc v1"; echo "$GCC_VERSION"; echo "$BINUTILS_VERSION"; libdvmmipc_digest
        declare -f build_libdvmmipc libdvmmipc_digest
    } | short_hash)
    local tree_inputs
    tree_inputs=$( {
        echo "busybox $BUSYBOX_KEY"; echo "e2fsprogs $E2FSPROGS_KEY"; echo "$E2FS_LINKS"
        echo "libdvmmipc $LIBDVMMIPC_KEY"; echo "$LIBDVMMIPC_FILES"; echo "$LIBDVMMIPC_LINKS"
        echo "$INIT_APPLETS"; overlay_digest; declare -f guest_tree_spec spec_for_humans
    } )
    INITRAMFS_KEY=$( {
        echo "initramfs v2"; echo "$tree_inputs"; echo "$E2FS_BINARIES_INITRAMFS"
        echo "$LINUX_PKG $LINUX_VERSION"
        declare -f build_initramfs
    } | short_hash)
    ROOTFS_KEY=$( {
        echo "rootfs v1"; echo "$tree_inputs"; echo "$E2FS_BINARIES_ROOTFS"; echo "$HOST_E2FSPROGS"
        echo "$ROOTFS_SIZE"
        echo "$ROOTFS_FEATURES"; declare -f build_rootfs
    } | short_hash)
    IMAGE_KEY=$( {
        echo "image v2"; echo "$KERNEL_KEY $BUSYBOX_KEY $E2FSPROGS_KEY $LIBDVMMIPC_KEY $INITRAMFS_KEY $ROOTFS_KEY"
        cat "$SELF"
    } | short_hash)
    KERNEL_DIR=$GCACHE/kernel/$KERNEL_KEY
    BUSYBOX_DIR=$GCACHE/busybox/$BUSYBOX_KEY
    E2FSPROGS_DIR=$GCACHE/e2fsprogs/$E2FSPROGS_KEY
    LIBDVMMIPC_DIR=$GCACHE/libdvmmipc/$LIBDVMMIPC_KEY
    INITRAMFS_DIR=$GCACHE/initramfs/$INITRAMFS_KEY
    ROOTFS_DIR=$GCACHE/rootfs/$ROOTFS_KEY
    IMAGE_DIR=$GCACHE/$IMAGE_KEY
}

image_complete() { # image_complete DIR
    [ -f "$1/Image" ] && [ -f "$1/vmlinux" ] && [ -f "$1/initramfs.cpio.gz" ] &&
        [ -f "$1/rootfs.ext4" ] && [ -f "$1/manifest" ]
}

# ------------------------------------------------------------------------------------------------
# main

usage() {
    sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'
}

PRINT_DIR=0
for arg in "$@"; do
    case $arg in
    --print-dir) PRINT_DIR=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

if [ "$PRINT_DIR" = 1 ]; then
    # Without building (and without touching apt): the image for the current inputs if built.
    BUSYBOX_VERSION=$(source_version busybox)
    E2FSPROGS_VERSION=$(source_version e2fsprogs)
    if [ -z "$BUSYBOX_VERSION" ] || [ -z "$E2FSPROGS_VERSION" ]; then
        msg "busybox or e2fsprogs source package unknown to apt"; exit 1
    fi
    ensure_sources() { :; }
    compute_keys
    if image_complete "$IMAGE_DIR"; then printf '%s\n' "$IMAGE_DIR"; exit 0; fi
    msg "guest image not built for the current inputs (expected $IMAGE_DIR); run $SELF"
    exit 1
fi

check_prereqs
compute_keys

if ! image_complete "$IMAGE_DIR"; then
    mkdir -p "$GCACHE/logs"
    exec 9>"$GCACHE/.lock"
    if ! flock -n 9; then
        msg "another guest/build.sh holds $GCACHE/.lock; waiting"
        flock 9
    fi
    # holding the lock: whatever is left in build/ is from an interrupted or killed run
    if [ "${DVMM_KEEP_BUILD:-0}" != 1 ] && [ -d "$GCACHE/build" ]; then
        find "$GCACHE/build" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +
    fi
fi

if ! image_complete "$IMAGE_DIR"; then
    if [ ! -f "$KERNEL_DIR/Image" ]; then
        t=$(date +%s.%N)
        msg "building kernel $LINUX_PKG $LINUX_VERSION (10 to 15 minutes on 2 cores; log: $GCACHE/logs/kernel-$KERNEL_KEY.log)..."
        build_kernel
        cleanup
        msg "kernel built in $(since "$t"): $KERNEL_DIR"
    fi
    if [ ! -f "$BUSYBOX_DIR/busybox" ]; then
        t=$(date +%s.%N)
        msg "building busybox $BUSYBOX_VERSION (2 to 4 minutes on 2 cores; log: $GCACHE/logs/busybox-$BUSYBOX_KEY.log)..."
        build_busybox
        cleanup
        msg "busybox built in $(since "$t"): $BUSYBOX_DIR"
    fi
    if [ ! -f "$E2FSPROGS_DIR/e2fsck" ]; then
        t=$(date +%s.%N)
        msg "building e2fsck and mke2fs from e2fsprogs $E2FSPROGS_VERSION (1 to 2 minutes on 2 cores; log: $GCACHE/logs/e2fsprogs-$E2FSPROGS_KEY.log)..."
        build_e2fsprogs
        cleanup
        msg "e2fsprogs built in $(since "$t"): $E2FSPROGS_DIR"
    fi
    if [ ! -f "$LIBDVMMIPC_DIR/ivc-test" ]; then
        t=$(date +%s.%N)
        msg "building libdvmmipc, ivc-test and ivc-bench (seconds; log: $GCACHE/logs/libdvmmipc-$LIBDVMMIPC_KEY.log)..."
        build_libdvmmipc
        cleanup
        msg "libdvmmipc built in $(since "$t"): $LIBDVMMIPC_DIR"
    fi
    if [ ! -f "$INITRAMFS_DIR/initramfs.cpio.gz" ]; then
        t=$(date +%s.%N)
        msg "building initramfs..."
        build_initramfs
        cleanup
        msg "initramfs built in $(since "$t"): $INITRAMFS_DIR"
    fi
    if [ ! -f "$ROOTFS_DIR/rootfs.ext4" ]; then
        t=$(date +%s.%N)
        msg "building rootfs.ext4..."
        build_rootfs
        cleanup
        msg "rootfs.ext4 built in $(since "$t"): $ROOTFS_DIR"
    fi
    # assemble the image directory: hard links (copies across file systems) to the components
    img=$(new_work_dir "image-$IMAGE_KEY")
    for f in "$KERNEL_DIR/Image" "$KERNEL_DIR/vmlinux" "$KERNEL_DIR/config" \
        "$INITRAMFS_DIR/initramfs.cpio.gz" "$BUSYBOX_DIR/busybox" "$ROOTFS_DIR/rootfs.ext4"; do
        ln "$f" "$img/" 2>/dev/null || cp "$f" "$img/"
    done
    {
        echo "image_key=$IMAGE_KEY"
        echo "kernel_key=$KERNEL_KEY"
        echo "busybox_key=$BUSYBOX_KEY"
        echo "e2fsprogs_key=$E2FSPROGS_KEY"
        echo "libdvmmipc_key=$LIBDVMMIPC_KEY"
        echo "initramfs_key=$INITRAMFS_KEY"
        echo "rootfs_key=$ROOTFS_KEY"
        echo "linux_source=$LINUX_PKG $LINUX_VERSION"
        echo "kernel_release=$(cat "$KERNEL_DIR/kernelrelease")"
        echo "kernel_version=$(cat "$KERNEL_DIR/version")"
        echo "busybox_source=$BUSYBOX_VERSION"
        echo "e2fsprogs_source=$E2FSPROGS_VERSION"
        echo "rootfs=ext4 $ROOTFS_SIZE sparse, label dvmm-root, made by $HOST_E2FSPROGS"
        echo "cross_gcc=$GCC_VERSION"
        echo "finisher=$FINISHER_ADDR"
    } >"$img/manifest"
    publish "$img" "$IMAGE_DIR"
    cleanup
fi

# point current at this image (atomic rename of a fresh symlink)
ln -sfn "$IMAGE_KEY" "$GCACHE/.current.$$"
mv -T "$GCACHE/.current.$$" "$GCACHE/current"

msg "guest image ready in $(since "$T0")"
printf 'Image:     %s\n' "$IMAGE_DIR/Image"
printf 'vmlinux:   %s\n' "$IMAGE_DIR/vmlinux"
printf 'initramfs: %s\n' "$IMAGE_DIR/initramfs.cpio.gz"
printf 'rootfs:    %s\n' "$IMAGE_DIR/rootfs.ext4"
printf 'current:   %s -> %s\n' "$GCACHE/current" "$IMAGE_KEY"
