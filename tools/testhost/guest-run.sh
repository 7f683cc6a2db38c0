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
# Nova loads compute drivers only as nova.virt.<name>: the project's one
# module goes beside Nova's own drivers, where its wheel puts it.
for virt in /opt/ntp-venv/lib/python3*/site-packages/nova/virt; do
    ln -sf "$SRC/nova/virt/tenant_pin.py" "$virt/tenant_pin.py"
done

# Core scheduling stays on for the whole run: a process of its own holds a
# cookie until the guest powers off. The kernel turns core scheduling on when
# the first cookie is made and off when the last goes, each time with
# stop_machine and a static-key patch of the kernel's text on every CPU;
# the core-scheduling tests made and dropped the only cookies many times,
# and under TCG the guest stalled with a CPU in the int3 handler of such a
# text patch (an RCU stall at 333 s in one run). The holder sleeps, so it
# changes no scheduling decision; the tests read the cookies of their own
# processes and of QEMU's, never this one's. It is not stopped after the
# command either: dropping the last cookie turns core scheduling off, and
# once, at the end of a run whose tests had all passed, the guest then
# spun on every CPU and never wrote the exit status (the host's run.sh
# ends QEMU once the status is written, see there).
python3 - > /root/ntp-coresched-holder.log 2>&1 <<'PYEOF' &
import ctypes
import signal
libc = ctypes.CDLL(None, use_errno=True)
# prctl(PR_SCHED_CORE, PR_SCHED_CORE_CREATE, 0 (this process),
#       PIDTYPE_TGID, 0)
if libc.prctl(62, 1, 0, 1, 0) != 0:
    print('no core-scheduling cookie: errno %d' % ctypes.get_errno())
    raise SystemExit(0)
print('holding a core-scheduling cookie', flush=True)
signal.pause()
PYEOF

# cpuset stays enabled at the cgroup root for the whole run, for the same
# reason: the kernel patches its cpusets_enabled() static branch on every CPU
# when the first cgroup with a cpuset appears and when the last goes, and
# systemd enables and disables cpuset at the root as the tests' slices with
# AllowedCPUs= come and go. A stall report had the stuck CPU at that branch
# in the page allocator (get_page_from_freelist). A sleeping service whose
# AllowedCPUs= is every CPU keeps cpuset enabled, as a compute host running
# guests does (its tenant slices); it is not stopped either.
systemd-run --quiet --unit=ntp-cpuset-holder \
    -p "AllowedCPUs=$(cat /sys/devices/system/cpu/online)" sleep infinity \
    > /root/ntp-cpuset-holder.log 2>&1 ||
    echo "testhost: could not start ntp-cpuset-holder (see /root/ntp-cpuset-holder.log)" >> "$out"

# A watchdog for a command that stops making progress (seen once in CI:
# the suite went silent for half an hour with no kernel report). The
# output is also kept on the guest's own disk, so that a stuck 9p share
# shows as silence too; after NTP_TESTHOST_QUIET seconds without output
# the watchdog writes what every task is waiting on (state, wait channel,
# kernel stacks of the command's tasks) to the serial console, which the
# host keeps in its own file, and asks the command's Python processes for
# their stacks (SIGUSR1: the tests register faulthandler for it).
local_out=/root/ntp-output
quiet_limit=${NTP_TESTHOST_QUIET:-420}
: > "$local_out"
diagnose() {
    echo "ntp-testhost-watchdog: no output for $quiet_limit s; tasks:"
    ps -eLo pid,tid,stat,wchan:32,etimes,args --sort=pid | grep -v ' \[' | head -n 150
    # Kernel stacks of the command's Python and QEMU tasks and of every
    # task in uninterruptible sleep (libvirtd's idle workers would crowd
    # the rest out; its threads show in the list above).
    for task in /proc/[0-9]*/task/[0-9]*; do
        comm=$(cat "$task/comm" 2>/dev/null) || continue
        state=$(awk '/^State:/ {print $2}' "$task/status" 2>/dev/null)
        case "$comm:$state" in
            python*|stestr*|qemu*|*:D) ;;
            *) continue ;;
        esac
        echo "ntp-testhost-watchdog: kernel stack of task ${task##*/} ($comm, $state):"
        head -n 12 "$task/stack" 2>/dev/null
    done | head -n 400
    echo "ntp-testhost-watchdog: end"
}
(
    last=-1
    quiet=0
    while sleep 30; do
        size=$(stat -c %s "$local_out" 2>/dev/null || echo 0)
        if [ "$size" = "$last" ]; then
            quiet=$((quiet + 30))
        else
            quiet=0
            last=$size
        fi
        if [ "$quiet" -ge "$quiet_limit" ]; then
            diagnose > /dev/ttyS0 2>&1
            pkill -USR1 -f 'subunit\.run' 2>/dev/null
            quiet=0
        fi
    done
) &
watchdog=$!
{ bash "$RUN/cmd.sh" 2>&1; echo $? > /root/ntp-status; } | tee -a "$local_out" >> "$out"
cat /root/ntp-status > "$RUN/status.tmp"
sync
mv "$RUN/status.tmp" "$RUN/status"
kill "$watchdog" 2>/dev/null
