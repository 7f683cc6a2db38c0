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
# Build the test host's Debian 12 root file system image, once per set of
# inputs, into the cache (default /var/cache/nova-tenant-pin/testhost):
#   debootstrap --variant=minbase from this machine's own apt source, then
#   systemd (with machined), libvirt-daemon-system, qemu-system-x86 and a
#   Python venv (/opt/ntp-venv) holding the project's requirements and test
#   requirements from the same Python registries this machine's pip uses,
#   constrained by upper-constraints.txt. The project itself is not in the
#   image: run.sh copies the checkout in at every run.
# The image is keyed by a hash of everything that goes into it (this
# script, guest/, the requirement files, the apt source, the kernel kind);
# a build with the same inputs is a cache hit and takes no time. Prints the
# image's directory on stdout. Needs root.
#
# Usage: build-image.sh [--kernel shared|debian]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${NTP_TESTHOST_CACHE:-/var/cache/nova-tenant-pin/testhost}
SOURCES=${NTP_TESTHOST_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
SUITE=bookworm
IMAGE_SIZE=8G
KERNEL_KIND=shared
if [ "${1:-}" = --kernel ]; then
    KERNEL_KIND=$2
fi

log() { echo "testhost-build: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mkfs)"
for tool in debootstrap mkfs.ext4 chroot; do
    command -v "$tool" >/dev/null || die "needs $tool (apt-get install debootstrap e2fsprogs)"
done
[ -r "$SOURCES" ] || die "no apt source at $SOURCES"

# The Debian packages inside the test host, on top of minbase.
PACKAGES="systemd systemd-sysv systemd-container dbus udev kmod procps
iproute2 util-linux ca-certificates libvirt-daemon-system libvirt-clients
libvirt-dev qemu-system-x86 qemu-utils pkg-config gcc python3 python3-dev
python3-venv"
if [ "$KERNEL_KIND" = debian ]; then
    PACKAGES="$PACKAGES linux-image-cloud-amd64 initramfs-tools"
fi

key=$( { cat "$0" "$HERE"/guest/*; echo "$PACKAGES $KERNEL_KIND";
         cat "$SOURCES" "$REPO/requirements.txt" \
             "$REPO/test-requirements.txt" "$REPO/upper-constraints.txt"; } |
      sha256sum | cut -c1-16)
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
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -l "${MOUNTS[$i]}" 2>/dev/null || true
    done
    rm -rf "$WORK" "$WORK".*.log
}
trap cleanup EXIT
mkdir -p "$ROOT"
bind() {  # bind SRC (read-only unless $2 = rw) at the same path in ROOT
    mkdir -p "$ROOT$1"
    mount --bind "$1" "$ROOT$1"
    MOUNTS+=("$ROOT$1")
    if [ "${2:-ro}" = ro ]; then
        mount -o remount,bind,ro "$ROOT$1"
    fi
}
in_root() { chroot "$ROOT" /usr/bin/env -u PYTHONPATH HOME=/root \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

start=$(date +%s)
log "debootstrap $SUITE from $MIRROR into $ROOT"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOT" \
    "$MIRROR" >"$WORK.debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK.debootstrap.log" >&2; die "debootstrap failed"; }
rm -f "$WORK.debootstrap.log"

# apt inside the image uses the same sources as this machine; no service
# starts while packages install.
cp "$SOURCES" "$ROOT/etc/apt/sources.list.d/debian.sources"
rm -f "$ROOT/etc/apt/sources.list"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
bind /proc rw
bind /sys
bind /dev rw
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
in_root python3 -m venv /opt/ntp-venv
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
        mount --bind "$cert" "$ROOT$cert"
        MOUNTS+=("$ROOT$cert")
        mount -o remount,bind,ro "$ROOT$cert"
        break
    fi
done
cp "$REPO/requirements.txt" "$REPO/test-requirements.txt" \
   "$REPO/upper-constraints.txt" "$ROOT/tmp/req/"
in_root /opt/ntp-venv/bin/pip install -q --upgrade pip >"$WORK.pip.log" 2>&1 &&
in_root /opt/ntp-venv/bin/pip install -q -c /tmp/req/upper-constraints.txt \
    -r /tmp/req/requirements.txt -r /tmp/req/test-requirements.txt \
    >>"$WORK.pip.log" 2>&1 ||
    { tail -n 30 "$WORK.pip.log" >&2; die "pip install failed"; }
rm -f "$WORK.pip.log"
rm -rf "$ROOT/tmp/req" "$ROOT/root/.cache"

# systemd: the test host's own unit runs the command and powers off; what
# would only slow the boot or print on the console is masked.
install -m 0755 "$HERE/guest/ntp-testhost-boot" "$ROOT/usr/local/sbin/"
install -m 0644 "$HERE/guest/ntp-testhost.service" "$ROOT/etc/systemd/system/"
ln -sf /etc/systemd/system/ntp-testhost.service \
    "$ROOT/etc/systemd/system/multi-user.target.wants/ntp-testhost.service"
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
            e2scrub_reap.service fstrim.timer serial-getty@ttyS0.service \
            getty@tty1.service systemd-timesyncd.service \
            libvirt-guests.service; do
    ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
echo ntp-testhost > "$ROOT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 ntp-testhost\n' > "$ROOT/etc/hosts"
: > "$ROOT/etc/fstab"
# libvirtd stays up (no idle exit) with a fixed host UUID (no SMBIOS one).
echo 'LIBVIRTD_ARGS=""' > "$ROOT/etc/default/libvirtd"
echo 'host_uuid = "5e1f7a7e-0000-4000-8000-0000000000a1"' \
    >> "$ROOT/etc/libvirt/libvirtd.conf"
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/resolv.conf"
in_root apt-get clean

if [ "$KERNEL_KIND" = debian ]; then
    mkdir -p "$WORK/out"
    cp "$ROOT"/boot/vmlinuz-* "$WORK/out/vmlinuz"
    cp "$ROOT"/boot/initrd.img-* "$WORK/out/initrd.img"
fi
for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}"
done
MOUNTS=()

log "mkfs.ext4 ($IMAGE_SIZE, sparse)"
mkdir -p "$WORK/out"
truncate -s "$IMAGE_SIZE" "$WORK/out/root.img"
mkfs.ext4 -q -F -L ntp-testhost -d "$ROOT" "$WORK/out/root.img"
echo "$key" > "$WORK/out/key"
# The cache keeps the two newest older images (other checkouts may use
# them) besides this one.
find "$CACHE/images" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' |
    sort -rn | tail -n +3 | cut -d' ' -f2- | xargs -r rm -rf
mv "$WORK/out" "$OUT"
log "image $key built in $(( $(date +%s) - start )) s ($OUT)"
echo "$OUT"
