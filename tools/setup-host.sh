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
# Prepare a fresh Debian host for nova-tenant-pin: the Debian packages that
# libvirt-python, the integration suite and the demo need, and a Python venv
# at $VENV (default: .venv in the repository) with the project installed
# in development mode, constrained by upper-constraints.txt.
# Idempotent: a second run installs nothing that is already there.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
PYTHON=${PYTHON:-python3}
# debootstrap builds the test host's image (tools/testhost/).
APT_PACKAGES="libvirt-daemon-system libvirt-clients libvirt-dev qemu-system-x86
qemu-utils pkg-config gcc debootstrap e2fsprogs"

log() { echo "setup-host: $*" >&2; }

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "need root to install Debian packages:$missing"
        exit 1
    fi
    log "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# QEMU runs as libvirt-qemu (group kvm); without udev, /dev/kvm stays
# root-only and KVM guests fail with "Permission denied".
if [ -c /dev/kvm ] && [ "$(id -u)" = 0 ] && getent group kvm >/dev/null; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

stamp=$VENV/.nova-tenant-pin-installed
want=$(cat "$REPO/requirements.txt" "$REPO/test-requirements.txt" \
       "$REPO/doc/requirements.txt" "$REPO/upper-constraints.txt" \
       "$REPO/setup.cfg" | sha1sum | cut -c1-40)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating venv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
log "installing Python requirements into $VENV (log: $VENV/pip.log)"
pip_install() {
    if ! "$VENV/bin/pip" install -q "$@" >>"$VENV/pip.log" 2>&1; then
        tail -n 30 "$VENV/pip.log" >&2
        log "pip install failed; see $VENV/pip.log"
        exit 1
    fi
}
: > "$VENV/pip.log"
pip_install --upgrade pip
pip_install -c "$REPO/upper-constraints.txt" \
    -r "$REPO/requirements.txt" -r "$REPO/test-requirements.txt" \
    -r "$REPO/doc/requirements.txt"
pip_install -c "$REPO/upper-constraints.txt" --no-deps -e "$REPO"
echo "$want" > "$stamp"
