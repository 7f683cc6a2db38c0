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

"""What per-key core-scheduling cookies cost guests that share cores.

Two tenants, A and B, whose guests share cores (the unisolated pool): each
guest is a real QEMU whose one vCPU spins (a boot sector that is ``jmp $``),
so its vCPU thread wants 100 % of a CPU. The figure is the CPU time the
guests' vCPU threads get (``utime + stime`` of each ``CPU 0/TCG`` thread in
``/proc``), per tenant, in alternating intervals without and with one cookie
per tenant (the project's ``coresched.assign``), in one run:

``pool``
    2 guests of A and 2 of B floating on every CPU of the host (2 cores x 2
    threads): the scheduler may pair each tenant on a core of its own.
``sibling``
    1 guest of A and 1 of B pinned to the two siblings of one core: with
    cookies they must take turns on that core.

Run it as root on a kernel with core scheduling on an SMT host, which this
project's machines lack; ``tools/schedcore-host.sh`` boots one in QEMU::

    tools/schedcore-host.sh OUT "cd $PWD && .venv/bin/python \\
        tools/bench/coresched_cost.py"

It prints one JSON document: for each scenario, each tenant's CPU share (CPU
seconds per second) per interval, and the with/without ratio (the mean of
the "with" intervals over the mean of the "without" ones, and the range of
the per-pair ratios).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))

from nova_tenant_pin import coresched  # noqa: E402

QEMU = shutil.which('qemu-system-x86_64')
TICKS = os.sysconf('SC_CLK_TCK')


def spin_image(path):
    """A bootable disk whose boot sector loops forever (``jmp $``)."""
    sector = bytearray(512)
    sector[0:2] = b'\xeb\xfe'
    sector[510:512] = b'\x55\xaa'
    with open(path, 'wb') as f:
        f.write(bytes(sector) * 2)


def start_guest(image, name):
    own = '%s-%s.img' % (image, name)
    shutil.copyfile(image, own)
    proc = subprocess.Popen(
        [QEMU, '-accel', 'tcg,thread=multi', '-machine', 'pc',
         '-cpu', 'qemu64',
         '-m', '16', '-smp', '1', '-name', 'guest=%s,debug-threads=on' % name,
         '-nodefaults', '-display', 'none', '-boot', 'c',
         '-drive', 'file=%s,format=raw,if=ide' % own],
        stdin=subprocess.DEVNULL)
    return proc


def vcpu_tid(pid, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            tids = os.listdir('/proc/%d/task' % pid)
        except FileNotFoundError:
            raise RuntimeError('QEMU %d exited' % pid) from None
        for tid in tids:
            try:
                with open('/proc/%d/task/%s/comm' % (pid, tid)) as f:
                    if f.read().startswith('CPU 0/'):
                        return int(tid)
            except FileNotFoundError:
                continue
        # Polls a real process that is starting; nothing to wait on.
        time.sleep(0.05)
    raise RuntimeError('no vCPU thread in QEMU %d' % pid)


def cpu_seconds(pid, tid):
    with open('/proc/%d/task/%d/stat' % (pid, tid)) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pin(pid, cpus):
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass


def clear_cookies(prctl, pids):
    """Back to no cookie: share the cookie of a task that has none (this
    process's own) to each QEMU's thread group."""
    for pid in pids:
        prctl.share_to(pid, coresched.PIDTYPE_TGID)


def set_cookies(prctl, guests):
    first = {}
    for key, pid in guests:
        coresched.assign(pid, prctl, first.get(key))
        first.setdefault(key, pid)


def measure(guests, seconds):
    """CPU share (CPU seconds per second) of each tenant's vCPU threads."""
    tids = {pid: vcpu_tid(pid) for _key, pid in guests}
    before = {pid: cpu_seconds(pid, tid) for pid, tid in tids.items()}
    start = time.monotonic()
    # The interval being measured: the guests run meanwhile.
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    share = {}
    for key, pid in guests:
        used = cpu_seconds(pid, tids[pid]) - before[pid]
        share[key] = share.get(key, 0.0) + used / elapsed
    return share


def scenario(name, layout, image, pairs, seconds, prctl):
    procs, guests = [], []
    try:
        for i, (key, cpus) in enumerate(layout):
            proc = start_guest(image, '%s-%s%d' % (name, key, i))
            procs.append(proc)
            guests.append((key, proc.pid))
            vcpu_tid(proc.pid)
            if cpus is not None:
                pin(proc.pid, cpus)
        # Let every guest reach its loop before measuring.
        measure(guests, 2.0)
        off, on = [], []
        for _ in range(pairs):
            clear_cookies(prctl, [pid for _k, pid in guests])
            off.append(measure(guests, seconds))
            set_cookies(prctl, guests)
            on.append(measure(guests, seconds))
        keys = sorted({k for k, _p in guests})
        result = {'guests': {k: sum(1 for g in guests if g[0] == k)
                             for k in keys},
                  'pinned': layout[0][1] is not None}
        for key in keys:
            without = [m[key] for m in off]
            with_ = [m[key] for m in on]
            ratios = [w / o for w, o in zip(with_, without) if o]
            result[key] = {
                'cpu_share_without': [round(x, 3) for x in without],
                'cpu_share_with': [round(x, 3) for x in with_],
                'ratio': round(statistics.mean(with_) /
                               statistics.mean(without), 3),
                'ratio_range': [round(min(ratios), 3), round(max(ratios), 3)],
            }
        total_off = [sum(m.values()) for m in off]
        total_on = [sum(m.values()) for m in on]
        result['total'] = {
            'cpu_share_without': [round(x, 3) for x in total_off],
            'cpu_share_with': [round(x, 3) for x in total_on],
            'ratio': round(statistics.mean(total_on) /
                           statistics.mean(total_off), 3)}
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


def siblings_of_first_core():
    with open('/sys/devices/system/cpu/cpu0/topology/'
              'thread_siblings_list') as f:
        from nova_tenant_pin import topology
        return sorted(topology.parse_cpu_list(f.read()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seconds', type=float, default=8.0,
                        help='length of each measured interval')
    parser.add_argument('--pairs', type=int, default=3,
                        help='without/with interval pairs per scenario')
    parser.add_argument('--quick', action='store_true',
                        help='2 pairs of 4 s intervals')
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.pairs = 4.0, 2
    supported, why = coresched.support()
    if not supported or os.geteuid() != 0 or QEMU is None:
        sys.exit('needs root, qemu-system-x86_64 and a kernel with core '
                 'scheduling on an SMT host (%s): run it in '
                 'tools/schedcore-host.sh' % (why or 'ok'))
    prctl = coresched.Prctl()
    siblings = siblings_of_first_core()
    if len(siblings) < 2:
        sys.exit('CPU 0 has no SMT sibling')
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, 'spin.img')
        spin_image(image)
        doc = {
            'host': {'cpus': os.cpu_count(), 'kernel': os.uname().release,
                     'siblings_of_cpu0': siblings},
            'seconds': args.seconds, 'pairs': args.pairs,
            'pool': scenario('pool', [('A', None), ('A', None),
                                      ('B', None), ('B', None)],
                             image, args.pairs, args.seconds, prctl),
            'sibling': scenario('sibling', [('A', {siblings[0]}),
                                            ('B', {siblings[1]})],
                                image, args.pairs, args.seconds, prctl),
        }
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
