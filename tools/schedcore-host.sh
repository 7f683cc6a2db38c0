#!/bin/bash
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
# Run one command as root inside a small QEMU test host that has SMT
# siblings and a kernel with core scheduling, which this project's machines
# lack: 1 socket x 2 cores x 2 threads (TCG, Intel vendor string so that the
# siblings show), the kernel of ../shared/testhost-kernel (CONFIG_SCHED_CORE,
# everything built in), and this machine's own root file system shared
# read-only over 9p (so the host's python, QEMU and this worktree's .venv
# are there as they are here), with tmpfs on /tmp, /run and /var/{tmp,lib,log,
# cache}. No systemd, no libvirtd: for the core-scheduling tests and
# benchmark. Boots in about 25 s.
#
#   tools/schedcore-host.sh [--smp N,sockets=1,cores=C,threads=2] OUTDIR COMMAND...
#
# COMMAND runs in /bin/sh with the working directory OUTDIR (shared
# read-write); its stdout, stderr and exit code land in OUTDIR/stdout,
# OUTDIR/stderr and OUTDIR/rc, and this script exits with that code.
set -eu
smp=4,sockets=1,cores=2,threads=2
if [ "${1:-}" = --smp ]; then smp=$2; shift 2; fi
out=$(realpath -m "$1"); shift
top=$(cd "$(dirname "$0")/.." && pwd)
kernel=${SCHEDCORE_KERNEL:-$top/../shared/testhost-kernel/bzImage-6.1.192-schedcore}
[ -f "$kernel" ] || kernel=/work/shared/testhost-kernel/bzImage-6.1.192-schedcore
mkdir -p "$out"
rm -f "$out/rc" "$out/stdout" "$out/stderr"
printf '%s\n' "$*" > "$out/cmd"
cat > "$out/init" <<'INIT'
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for d in /tmp /run /var/tmp /var/lib /var/log /var/cache /mnt; do
    mount -t tmpfs tmpfs $d
done
mount -t cgroup2 none /sys/fs/cgroup
mkdir -p /mnt/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /mnt/out
ip link set lo up 2>/dev/null
hostname schedcore-host
cd /mnt/out
echo "schedcore-host: $(uname -r), CPUs $(cat /sys/devices/system/cpu/online)"
sh -c "$(cat /mnt/out/cmd)" > /mnt/out/stdout 2> /mnt/out/stderr
echo $? > /mnt/out/rc
sync
exit 0
INIT
chmod +x "$out/init"
# The init script is read through the shared root: use its path there.
timeout "${SCHEDCORE_TIMEOUT:-1800}" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max,vendor=GenuineIntel -machine q35 \
    -smp "$smp" -m 3072 -kernel "$kernel" \
    -append "root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000 ro init=$out/init console=ttyS0 panic=1 quiet" \
    -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=root,mount_tag=/dev/root \
    -fsdev local,id=out,path="$out",security_model=none,multidevs=remap \
    -device virtio-9p-pci,fsdev=out,mount_tag=out \
    -nographic -no-reboot -nic none > "$out/console" 2>&1 || true
if [ ! -f "$out/rc" ]; then
    echo "schedcore-host: the command did not finish; see $out/console" >&2
    exit 2
fi
exit "$(cat "$out/rc")"
