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
# Run one command inside the test host: a production-like compute host in a
# QEMU TCG guest, with real SMT siblings (2 sockets x 2 cores x 2 threads,
# Intel vendor), two NUMA nodes, systemd (with machined) on the unified
# cgroup v2 hierarchy, and libvirtd under systemd.
#
#   tools/testhost/run.sh [--timeout SECONDS] [--] CMD [ARG...]
#   tools/testhost/run.sh --prepare
#
# CMD runs as root in a copy of this checkout (/root/nova-tenant-pin, the
# project installed in the image's venv, which is first on PATH); its output
# streams here and its exit status is this script's. Examples:
#   tools/testhost/run.sh -- stestr --test-path ./nova_tenant_pin/tests/testhost run
#   tools/testhost/run.sh -- cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list
# Environment passed in: CI, OS_*, HYPOTHESIS_PROFILE, NTP_*.
#
# The image is built once per set of inputs by build-image.sh and cached
# (NTP_TESTHOST_CACHE, default /var/cache/nova-tenant-pin/testhost); every
# run boots a copy-on-write overlay of it, so runs never change the cache.
# The kernel is the test-host kernel in ../shared/testhost-kernel/ next to
# the repository (Linux 6.1 from Debian's source with core scheduling and
# everything built in; NTP_TESTHOST_KERNEL names another), copied into the
# cache; without one there or in the cache, or with
# NTP_TESTHOST_KERNEL=debian, the image carries Debian's cloud kernel and
# its initrd instead (slower to boot, and without core scheduling).
# QEMU is killed by PID when the run ends, fails or times out (default
# 2700 s of command: the whole suite took 1,790 s on a slow host of the
# CI machine kind); exit status 124 on a timeout, 125 when the command never ran. A
# boot that has not reached the command after NTP_TESTHOST_BOOT_TIMEOUT
# seconds (default 300) is killed and tried once more; a run in which the
# guest kernel stalled (RCU stall, see stalled()) or froze, or whose QEMU
# died by a signal (see frozen()), is run once more; so is a boot whose
# QEMU died by a signal (a TCG QEMU segfaulted once in early boot here).
# A command that prints nothing for NTP_TESTHOST_QUIET seconds (default
# 420) gets the guest's watchdog report on the console (guest-run.sh):
# what every task waits on, and the Python stacks.
# NTP_TESTHOST_KERNEL_ARGS adds kernel command-line arguments.
# --prepare only picks the kernel and builds (or finds) the image, and boots
# nothing: tools/test.sh runs it in the background while the other suites
# run, so that a cold image build costs no time of its own.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${NTP_TESTHOST_CACHE:-/var/cache/nova-tenant-pin/testhost}
KERNEL_NAME=bzImage-6.1.192-schedcore
SHARED_KERNEL=${NTP_TESTHOST_KERNEL:-$REPO/../shared/testhost-kernel/$KERNEL_NAME}
MEMORY_MIB=${NTP_TESTHOST_MEMORY_MIB:-6144}
TIMEOUT=2700
PREPARE=
BOOT_TIMEOUT=${NTP_TESTHOST_BOOT_TIMEOUT:-300}
QUIET=${NTP_TESTHOST_QUIET:-420}
# Seconds a guest may take to power off after it wrote the command's status.
POWEROFF_GRACE=${NTP_TESTHOST_POWEROFF_GRACE:-30}
# A guest whose watchdog has not reported this long after the command's
# last output is frozen (see frozen()).
FROZEN_AFTER=$(( QUIET + 180 ))
# Kernel warnings (loglevel 5) reach the console, so that a stall's stack
# trace is on record; systemd's boot chatter does not. A CPU stalled for
# two minutes panics the guest (see stalled() below).
# The guest kernel runs without its CPU-vulnerability mitigations: with
# the Intel vendor it would isolate page tables (PTI: two address-space
# switches a system call, each flushing TCG's whole software TLB), use
# retpolines and clear CPU buffers on every return to user space, all
# emulated. The test host runs nothing but the test suite; without them
# /proc reads and thread hand-offs measured 2.1-2.2 times faster there,
# and the boot 9.4 s instead of 12.7 s.
KERNEL_ARGS="loglevel=5 systemd.show_status=0 sysctl.kernel.panic_on_rcu_stall=1"
KERNEL_ARGS="$KERNEL_ARGS rcupdate.rcu_cpu_stall_timeout=120 mitigations=off"
KERNEL_ARGS="$KERNEL_ARGS ${NTP_TESTHOST_KERNEL_ARGS:-}"

log() { echo "testhost: $*" >&2; }
die() { log "$*"; exit 125; }

while [ $# -gt 0 ]; do
    case $1 in
        --timeout) TIMEOUT=$2; shift 2 ;;
        --prepare) PREPARE=1; shift ;;
        --) shift; break ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || [ -n "$PREPARE" ] ||
    die "usage: $0 [--timeout SECONDS] [--] CMD [ARG...] | --prepare"
[ "$(id -u)" = 0 ] || die "needs root (image build, 9p share as root)"
command -v qemu-system-x86_64 >/dev/null || die "needs qemu-system-x86"

# The kernel: the shared test-host kernel, kept in the cache so that a
# later run without ../shared still has it; else Debian's. Once the cache
# holds the shared kernel, only NTP_TESTHOST_KERNEL=debian picks Debian's.
mkdir -p "$CACHE/kernel"
if [ "${NTP_TESTHOST_KERNEL:-}" = debian ]; then
    kernel_kind=debian
    log "NTP_TESTHOST_KERNEL=debian: booting Debian's cloud kernel (slower)"
else
    if [ -f "$SHARED_KERNEL" ] &&
            ! cmp -s "$SHARED_KERNEL" "$CACHE/kernel/$KERNEL_NAME"; then
        cp "$SHARED_KERNEL" "$CACHE/kernel/$KERNEL_NAME.tmp"
        mv "$CACHE/kernel/$KERNEL_NAME.tmp" "$CACHE/kernel/$KERNEL_NAME"
    fi
    if [ -f "$CACHE/kernel/$KERNEL_NAME" ]; then
        kernel_kind=shared
    else
        kernel_kind=debian
        log "no $SHARED_KERNEL: booting Debian's cloud kernel (slower)"
    fi
fi

t0=$(date +%s)
IMAGE=$(bash "$HERE/build-image.sh" --kernel "$kernel_kind") ||
    die "the image build failed"
t_image=$(( $(date +%s) - t0 ))
if [ -n "$PREPARE" ]; then
    log "image $(basename "$IMAGE") ready in ${t_image} s (kernel $kernel_kind)"
    exit 0
fi
if [ "$kernel_kind" = shared ]; then
    boot=(-kernel "$CACHE/kernel/$KERNEL_NAME")
else
    boot=(-kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img")
fi

RUN=$(mktemp -d /tmp/ntp-testhost.XXXXXX)
qemu_pid=
cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    if [ -n "${NTP_TESTHOST_KEEP:-}" ]; then
        log "run directory kept: $RUN"
    else
        rm -rf "$RUN"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The checkout as it is (uncommitted changes included), without what is
# built or installed on this machine.
tar -C "$REPO" -cf "$RUN/repo.tar" --exclude-vcs --exclude=./.venv \
    --exclude=./.tox --exclude=./.stestr --exclude=./doc/build \
    --exclude=./releasenotes/build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude='*.pyc' .
cp "$HERE/guest-run.sh" "$RUN/guest-run.sh"
{
    printf 'cd /root/nova-tenant-pin &&'
    printf ' %q' "$@"
    printf '\n'
} > "$RUN/cmd.sh"
for name in $(compgen -e); do
    case $name in
        NTP_TESTHOST_*) ;;
        CI|OS_*|HYPOTHESIS_PROFILE|NTP_*)
            printf 'export %s=%q\n' "$name" "${!name}" ;;
    esac
done > "$RUN/env.sh"
printf 'export NTP_TESTHOST_QUIET=%q\n' "$QUIET" >> "$RUN/env.sh"
half=$((MEMORY_MIB / 2))
boot_qemu() {
    : > "$RUN/output"
    : > "$RUN/console.log"
    rm -f "$RUN/disk.qcow2"
    qemu-img create -q -f qcow2 -F raw -b "$IMAGE/root.img" "$RUN/disk.qcow2"
    qemu-system-x86_64 -name ntp-testhost -nodefaults -no-user-config \
        -accel tcg,thread=multi -machine q35 \
        -cpu max,vendor=GenuineIntel -smp 8,sockets=2,cores=2,threads=2 \
        -m "$MEMORY_MIB" \
        -object memory-backend-ram,id=m0,size=${half}M \
        -object memory-backend-ram,id=m1,size=$((MEMORY_MIB - half))M \
        -numa node,cpus=0-3,nodeid=0,memdev=m0 \
        -numa node,cpus=4-7,nodeid=1,memdev=m1 \
        "${boot[@]}" \
        -append "root=/dev/vda rw console=ttyS0 panic=1 $KERNEL_ARGS" \
        -drive file="$RUN/disk.qcow2",format=qcow2,if=virtio,cache=unsafe \
        -fsdev local,id=ntprun,path="$RUN",security_model=none \
        -device virtio-9p-pci,fsdev=ntprun,mount_tag=ntprun \
        -nic none -display none -serial file:"$RUN/console.log" \
        -no-reboot </dev/null &
    qemu_pid=$!
}

# A guest kernel that stalls (an RCU stall: a CPU spinning in the kernel
# for minutes; seen under TCG on a loaded 2-core machine, once during
# boot and once during a test) panics instead of hanging until the
# timeout (panic_on_rcu_stall), and QEMU exits (-no-reboot). Its first
# report, with the stuck CPU's stack, is printed here.
stalled() {
    grep -q -E 'rcu: INFO: rcu_(preempt|sched) (self-)?detected stall' \
        "$RUN/console.log" 2>/dev/null
}
# A guest that stops running altogether (no kernel report, no output,
# and its watchdog, which reports on the console after QUIET silent
# seconds, silent too; seen once in CI after the first test) or whose 9p
# share stops answering (the watchdog's report shows the tee that copies
# the output waiting in the 9p client) says nothing about the command
# either: its run is ended and the command run once more, like a stall.
# A QEMU that dies by a signal of its own (not ours: a segfault, seen
# once under TCG) is the same. A guest whose watchdog reports anything
# else ran a command that hung: that fails as it is, with the report.
frozen() {
    [ -f "$RUN/frozen" ]
}
stuck_9p() {
    awk '/^ntp-testhost-watchdog: no output/ {on = 1}
         on && / tee / && /p9_/ {found = 1}
         END {exit !found}' "$RUN/console.log" 2>/dev/null
}
print_watchdog() {
    if grep -q '^ntp-testhost-watchdog: no output' "$RUN/console.log"; then
        log "the guest's watchdog saw the command stuck (guest-run.sh); its first report:"
        awk '/^ntp-testhost-watchdog: no output/ {on = 1}
             on && n < 600 {print; n++}
             /^ntp-testhost-watchdog: end/ {if (on) exit}' \
            "$RUN/console.log" >&2 || true
    fi
}
print_stall() {
    log "the test host's kernel stalled; its first report:"
    awk '/rcu: INFO: rcu_/ {on = 1} on && n < 80 {print; n++}' \
        "$RUN/console.log" >&2 || true
}

# Boot, wait for the guest to start the command (its first output line),
# then stream the command's output while QEMU runs; stop at its exit or
# the timeout, whichever comes first. A boot that hangs is killed and
# tried once more. Sets status and t_run.
run_once() {
    local booted= attempt
    rm -f "$RUN/status" "$RUN/status.tmp"
    for attempt in 1 2; do
        log "booting (image $(basename "$IMAGE"), kernel $kernel_kind, image ready in ${t_image} s)"
        t1=$(date +%s)
        boot_qemu
        boot_deadline=$(( t1 + BOOT_TIMEOUT ))
        while kill -0 "$qemu_pid" 2>/dev/null && [ ! -s "$RUN/output" ] &&
                [ "$(date +%s)" -lt "$boot_deadline" ]; do
            sleep 1
        done
        if [ -s "$RUN/output" ]; then
            booted=1
            break
        fi
        if ! kill -0 "$qemu_pid" 2>/dev/null && ! stalled; then
            local qemu_rc=0
            wait "$qemu_pid" 2>/dev/null || qemu_rc=$?
            if [ "$qemu_rc" -lt 128 ]; then
                # The guest powered off before the command: status 125.
                booted=1
                break
            fi
            log "QEMU died during the boot (status $qemu_rc: signal $(( qemu_rc - 128 )); attempt $attempt); last console lines:"
            tail -n 10 "$RUN/console.log" >&2 || true
            continue
        fi
        if stalled; then
            print_stall
        else
            log "no boot after $BOOT_TIMEOUT s (attempt $attempt); killing QEMU (PID $qemu_pid); last console lines:"
            tail -n 20 "$RUN/console.log" >&2 || true
        fi
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    done
    [ -n "$booted" ] || die "the test host did not boot"

    tail -n +1 -f --pid="$qemu_pid" "$RUN/output" &
    local tail_pid=$!
    deadline=$(( $(date +%s) + TIMEOUT ))
    local seen= size now last_change reason status_at=
    last_change=$(date +%s)
    rm -f "$RUN/frozen"
    while kill -0 "$qemu_pid" 2>/dev/null; do
        now=$(date +%s)
        if [ "$now" -ge "$deadline" ]; then
            log "timed out after $TIMEOUT s; killing QEMU (PID $qemu_pid)"
            kill "$qemu_pid"
            break
        fi
        # The command's status is all the run needs: a guest that does not
        # power off soon after writing it is ended (once, the guest spun on
        # every CPU after the last core-scheduling cookie went away).
        if [ -f "$RUN/status" ]; then
            status_at=${status_at:-$now}
            if [ $(( now - status_at )) -ge "$POWEROFF_GRACE" ]; then
                log "the command's status is in, the guest did not power off in $POWEROFF_GRACE s; killing QEMU (PID $qemu_pid)"
                kill "$qemu_pid"
                break
            fi
        fi
        size="$(stat -c %s "$RUN/output" "$RUN/console.log" | tr '\n' ' ')"
        reason=
        if [ "$size" != "$seen" ]; then
            # A new watchdog report comes with a console change.
            seen=$size
            last_change=$now
            if stuck_9p; then
                reason="the guest's watchdog found the output's 9p share stuck"
            fi
        elif [ $(( now - last_change )) -ge "$FROZEN_AFTER" ]; then
            reason="no output and no console line for $(( now - last_change )) s, not even the guest's watchdog: the guest froze"
        fi
        if [ -n "$reason" ]; then
            log "$reason; killing QEMU (PID $qemu_pid)"
            touch "$RUN/frozen"
            kill "$qemu_pid"
            break
        fi
        sleep 1
    done
    local qemu_rc=0
    wait "$qemu_pid" 2>/dev/null || qemu_rc=$?
    wait "$tail_pid" 2>/dev/null || true
    t_run=$(( $(date +%s) - t1 ))
    if [ ! -f "$RUN/status" ] && [ ! -f "$RUN/frozen" ] &&
            [ "$(date +%s)" -lt "$deadline" ] && [ "$qemu_rc" -ge 128 ]; then
        log "QEMU died while the command ran (status $qemu_rc: signal $(( qemu_rc - 128 )))"
        touch "$RUN/frozen"
    fi

    if [ -f "$RUN/status" ]; then
        status=$(cat "$RUN/status")
    elif frozen || [ "$(date +%s)" -ge "$deadline" ]; then
        status=124
    else
        status=125
    fi
}

# A run whose guest kernel stalled says nothing about the command: it is
# run once more from a fresh overlay, and both runs are on record here.
for run in 1 2; do
    run_once
    if [ "$status" -ge 124 ] && { stalled || frozen; }; then
        if stalled; then
            print_stall
        else
            print_watchdog
            log "last console lines:"
            tail -n 20 "$RUN/console.log" >&2 || true
        fi
        if [ "$run" = 1 ]; then
            log "exit status $status after ${t_run} s: the guest kernel stalled or froze or QEMU died, not the command; running the command once more"
            continue
        fi
    elif [ "$status" -ge 124 ]; then
        print_watchdog
        log "the command did not finish; last console lines:"
        tail -n 40 "$RUN/console.log" >&2 || true
    fi
    break
done
log "exit status $status; image ${t_image} s, boot and command ${t_run} s"
exit "$status"
