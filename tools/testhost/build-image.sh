#!/usr/bin/env bash
# Copyright 2026 The nova-tenant-pin Authors
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
#
# Build the test host's Debian 12 root file system image, once per recipe,
# into the cache (default /var/cache/nova-tenant-pin/testhost):
#   debootstrap --variant=minbase from this machine's own apt source, then
#   what image.sh (the recipe) says: systemd (with machined),
#   libvirt-daemon-system, qemu-system-x86 and a Python venv (/opt/ntp-venv)
#   holding the project's requirements and test requirements from the same
#   Python registries this machine's pip uses, constrained by
#   upper-constraints.txt. The project itself is not in the image: run.sh
#   copies the checkout in at every run.
# The image is keyed by a hash of what decides its content (image.sh,
# guest/, the apt source, the requirement files, the kernel kind), not of
# this script: a build with the same recipe is a cache hit and takes no
# time. Prints the image's directory on stdout; --key prints only the key
# (no root needed). Needs root.
#
# The chroot never sees this machine's /dev: its /dev is a tmpfs holding
# null, zero, full, random, urandom and tty bound read-only (usable, but
# their owner and mode cannot change) and a private devpts, so no
# package's maintainer script can change a device node of this machine
# (a postinst once re-grouped /dev/kvm through a bound /dev). Everything
# mounted is unmounted when the build ends, fails or is interrupted, and
# the work directory is removed without crossing into a mount.
#
# Usage: build-image.sh [--kernel shared|debian] [--key]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${NTP_TESTHOST_CACHE:-/var/cache/nova-tenant-pin/testhost}
SOURCES=${NTP_TESTHOST_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
KERNEL_KIND=shared
PRINT_KEY=
while [ $# -gt 0 ]; do
    case $1 in
        --kernel) KERNEL_KIND=$2; shift 2 ;;
        --key) PRINT_KEY=1; shift ;;
        *) echo "usage: $0 [--kernel shared|debian] [--key]" >&2; exit 2 ;;
    esac
done
# shellcheck source=image.sh
. "$HERE/image.sh"
PACKAGES=$(image_packages "$KERNEL_KIND")

log() { echo "testhost-build: $*" >&2; }
die() { log "$*"; exit 1; }

[ -r "$SOURCES" ] || die "no apt source at $SOURCES"
key=$( { cat "$HERE/image.sh" "$HERE"/guest/*; echo "$KERNEL_KIND";
         cat "$SOURCES" "$REPO/requirements.txt" \
             "$REPO/test-requirements.txt" "$REPO/upper-constraints.txt"; } |
      sha256sum | cut -c1-16)
if [ -n "$PRINT_KEY" ]; then
    echo "$key"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mkfs)"
for tool in debootstrap mkfs.ext4 chroot findmnt; do
    command -v "$tool" >/dev/null || die "needs $tool (apt-get install debootstrap e2fsprogs)"
done

OUT=$CACHE/images/$key
mkdir -p "$CACHE/images"
exec 9>"$CACHE/build.lock"
flock 9
if [ -f "$OUT/root.img" ]; then
    log "image $key is cached ($OUT)"
    echo "$OUT"
    exit 0
fi

# The first deb URI of the apt source that serves the suite.
MIRROR=$(awk -v suite="$SUITE" '
    /^URIs:/ {uri = $2}
    /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == suite) {print uri; exit}}
    /^$/ {uri = ""}' "$SOURCES")
[ -n "$MIRROR" ] || die "no URI for $SUITE in $SOURCES"

WORK=$CACHE/build.$$
ROOT=$WORK/root
MOUNTS=()
# Unmount everything mounted under the work directory, innermost first
# (what this script recorded, then anything the chroot's scripts mounted
# under it), and remove the work directory only when nothing is mounted
# there any more; --one-file-system keeps rm out of any mount regardless.
unmount_all() {
    local i path
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" ||
            true
    done
    MOUNTS=()
    for path in $(findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r); do
        umount -l "$path" || true
    done
}
# The PIDs of the processes running in the image's root: what this build
# started there (apt runs dpkg in a session of its own, so an interrupt
# does not reach it).
chroot_pids() {
    local proc real
    real=$(realpath "$ROOT")
    for proc in /proc/[0-9]*; do
        [ "$(readlink "$proc/root" 2>/dev/null)" = "$real" ] &&
            echo "${proc#/proc/}"
    done
    return 0
}
# Stop them, by PID: TERM, then KILL after 10 s.
stop_chroot() {
    local pids i
    for i in $(seq 1 20); do
        pids=$(chroot_pids)
        [ -n "$pids" ] || return 0
        if [ "$i" = 1 ]; then
            log "stopping the processes left in the image's root: $pids"
        fi
        # shellcheck disable=SC2086
        if [ "$i" -le 10 ]; then
            kill -TERM $pids 2>/dev/null || true
        else
            kill -KILL $pids 2>/dev/null || true
        fi
        sleep 1
    done
}
cleanup() {
    stop_chroot
    unmount_all
    if findmnt -rn -o TARGET | grep -qF "$WORK/"; then
        log "still mounted under $WORK, not removed:"
        findmnt -rn -o TARGET | grep -F "$WORK/" >&2
        return
    fi
    # The image is in the cache (or was not made): other builds need not
    # wait while the work directory goes.
    exec 9>&-
    rm -rf --one-file-system "$WORK" "$WORK".*.log
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
mkdir -p "$ROOT"
mount_at() {  # mount_at TARGET MOUNT-ARGS...: mount and record it
    local target=$1
    shift
    mount "$@" "$target"
    MOUNTS+=("$target")
}
bind() {  # bind SRC [rw]: SRC at the same path in ROOT, read-only unless rw
    if [ -d "$1" ]; then
        mkdir -p "$ROOT$1"
    else
        mkdir -p "$(dirname "$ROOT$1")"
        [ -e "$ROOT$1" ] || touch "$ROOT$1"
    fi
    mount_at "$ROOT$1" --bind "$1"
    if [ "${2:-ro}" = ro ]; then
        mount -o remount,bind,ro "$ROOT$1"
    fi
}
# The chroot's /dev: a tmpfs with the few character devices package scripts
# use, bound read-only (reads and writes work, chown and chmod do not), and
# a devpts of its own; nothing else of this machine's /dev.
mount_dev() {
    local node
    mount_at "$ROOT/dev" -t tmpfs -o mode=0755,nosuid,noexec,size=16m \
        ntp-testhost-dev
    for node in null zero full random urandom tty; do
        bind "/dev/$node"
    done
    mkdir -p "$ROOT/dev/pts" "$ROOT/dev/shm"
    mount_at "$ROOT/dev/pts" -t devpts \
        -o newinstance,ptmxmode=0666,mode=0620,nosuid,noexec devpts
    ln -s pts/ptmx "$ROOT/dev/ptmx"
    ln -s /proc/self/fd "$ROOT/dev/fd"
    ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
    ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
    ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
}
in_root() { chroot "$ROOT" /usr/bin/env -u PYTHONPATH HOME=/root \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

start=$(date +%s)
log "debootstrap $SUITE from $MIRROR into $ROOT"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" \
    "$MIRROR" >"$WORK.debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK.debootstrap.log" >&2; die "debootstrap failed"; }
rm -f "$WORK.debootstrap.log"
# debootstrap mounts /proc and /sys in the root while it runs and unmounts
# them at its end; whatever it left is unmounted now.
unmount_all

# apt inside the image uses the same sources as this machine; no service
# starts while packages install.
cp "$SOURCES" "$ROOT/etc/apt/sources.list.d/debian.sources"
rm -f "$ROOT/etc/apt/sources.list"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
bind /proc rw
bind /sys
mount_dev
log "apt-get install (inside the image)"
# shellcheck disable=SC2086
in_root env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends $(echo $PACKAGES)" \
    >"$WORK.apt.log" 2>&1 ||
    { tail -n 30 "$WORK.apt.log" >&2; die "apt-get install failed"; }
rm -f "$WORK.apt.log"

# The project's Python requirements, from the registries this machine's pip
# is configured with (its pip.conf files, PIP_* variables and any local
# wheel directories they name, mounted read-only).
log "Python requirements into /opt/ntp-venv (inside the image)"
mkdir -p "$ROOT/root/.config/pip" "$ROOT/tmp/req"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
for conf in "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf"; do
    [ -f "$conf" ] && cp "$conf" "$ROOT/root/.config/pip/pip.conf" && break
done
for dir in $(cat /etc/pip.conf "$HOME/.config/pip/pip.conf" \
                 "$HOME/.pip/pip.conf" 2>/dev/null |
             grep -oE '(file://)?/[^ ]+' | sed 's|^file://||' |
             sed -E 's|/simple/?$||' | sort -u) ${PIP_FIND_LINKS:-}; do
    [ -d "$dir" ] && [ ! -d "$ROOT$dir" ] && bind "$dir"
done
# The CA bundle this machine's pip trusts (PIP_CERT or pip.conf's cert=),
# which may hold a local proxy's certificate, at the same path inside.
for cert in ${PIP_CERT:-} $(grep -hoE '^cert *= *[^ ]+' /etc/pip.conf \
        "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" 2>/dev/null |
        sed -E 's/^cert *= *//'); do
    if [ -f "$cert" ] && [ -f "$ROOT$cert" ]; then
        bind "$cert"
        break
    fi
done
cp "$REPO/requirements.txt" "$REPO/test-requirements.txt" \
   "$REPO/upper-constraints.txt" "$ROOT/tmp/req/"
image_python >"$WORK.pip.log" 2>&1 ||
    { tail -n 30 "$WORK.pip.log" >&2; die "pip install failed"; }
rm -f "$WORK.pip.log"
rm -rf "$ROOT/tmp/req" "$ROOT/root/.cache"

image_configure "$HERE/guest"
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/resolv.conf"
in_root apt-get clean

if [ "$KERNEL_KIND" = debian ]; then
    mkdir -p "$WORK/out"
    cp "$ROOT"/boot/vmlinuz-* "$WORK/out/vmlinuz"
    cp "$ROOT"/boot/initrd.img-* "$WORK/out/initrd.img"
fi
unmount_all
if findmnt -rn -o TARGET | grep -qF "$ROOT/"; then
    die "still mounted under $ROOT after the build"
fi

log "mkfs.ext4 ($IMAGE_SIZE, sparse)"
mkdir -p "$WORK/out"
truncate -s "$IMAGE_SIZE" "$WORK/out/root.img"
mkfs.ext4 -q -F -L "$IMAGE_LABEL" -d "$ROOT" "$WORK/out/root.img"
echo "$key" > "$WORK/out/key"
# The cache keeps the two newest older images (other checkouts may use
# them) besides this one.
find "$CACHE/images" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
    sort -rn | tail -n +3 | cut -d' ' -f2- | xargs -r rm -rf
mv "$WORK/out" "$OUT"
log "image $key built in $(( $(date +%s) - start )) s ($OUT)"
echo "$OUT"
