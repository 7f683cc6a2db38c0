#!/bin/sh
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
# Inside the test host (run by ntp-testhost-boot from the shared run
# directory /mnt/run): unpack the checkout to /root/nova-tenant-pin,
# install it into the image's venv (development mode, no dependencies: they
# are in the image), run cmd.sh there with the host's environment (env.sh),
# and write its output to /mnt/run/output and its exit status to
# /mnt/run/status, which the host reads back.
RUN=/mnt/run
SRC=/root/nova-tenant-pin
out=$RUN/output
echo "testhost: booted in $(cut -d' ' -f1 /proc/uptime) s" >> "$out"
mkdir -p "$SRC"
tar -xf "$RUN/repo.tar" -C "$SRC"
cd "$SRC" || exit 1
export HOME=/root
export PATH=/opt/ntp-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# pbr takes the version from here: the checkout has no git metadata.
export PBR_VERSION=0.0.0
export NTP_TESTHOST=1
. "$RUN/env.sh"
# setup.py develop: no network here for pip's build isolation, and the
# venv's setuptools needs no wheel package for it.
if ! python setup.py -q develop --no-deps >"$RUN/install.log" 2>&1
then
    cat "$RUN/install.log" >> "$out"
    echo 125 > "$RUN/status"
    exit 0
fi
bash "$RUN/cmd.sh" >> "$out" 2>&1
echo $? > "$RUN/status.tmp"
sync
mv "$RUN/status.tmp" "$RUN/status"
