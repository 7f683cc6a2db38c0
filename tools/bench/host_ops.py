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

"""What the manager's host operations cost as guests accumulate on a host.

The host: 4 sockets of 64 cores, 2 threads a core (512 threads), one
housekeeping core; libvirt and the cgroup tree are the test doubles of
``nova_tenant_pin.tests.fakes`` (they refuse what the kernel refuses), so
this times the manager's own work. For each density (``--densities``,
default 10, 50, 100, 200 and 500 guests of 1 or 2 vCPUs of 120 projects,
in-tenant allocation ratio 2, so that 500 fit):

* ``claim + started``: a new 1-vCPU instance of a present project claimed,
  its domain started and ``domain_started`` called (the driver's spawn),
  then released and removed, so the density stays the same;
* ``reconcile (no-op)``: the periodic reconcile on a host where nothing
  changed since the last one (it compares what libvirt and the cgroup tree
  report with what it found then, and returns);
* ``reconcile (after a change)``: a reconcile with nothing to repair right
  after a spawn and a destroy (the manager's state changed since the last
  one: it reads and plans every guest);
* ``release``: the release of such an instance (the driver's destroy);
* each of these again doing the whole work (``full``), as the manager did
  before it kept its readings and planned only what changed: every
  domain's XML read and parsed again, every key planned and every guest
  compared with its target, every reconcile complete; the ratio is
  against it;
* ``10 concurrent``: 10 threads each claiming, starting and reporting a
  new instance at once: wall-clock per spawn (the threads wait for the
  manager's lock in turn), and the burst's CPU time per spawn.

Times are CPU time of the process (the machine's other load does not
count), except the concurrent spawns' wall clock, which on a loaded
machine is mostly waiting for a CPU. Printed: p50 and p99 in milliseconds
over ``--repeats``, the domain XMLs read from libvirt (``XMLDesc``) and
parsed per operation, and the growth from the smallest to the largest
density. The doubles deliver libvirt's domain events, as libvirt does to
a client with an event loop (nova-compute), so the manager reads again
only the domains that changed; ``full`` drops its readings first.

Run ``python tools/bench/host_ops.py`` (``--quick``: 10 and 100 guests,
5 repeats).
"""

import argparse
import concurrent.futures
import logging
import os
import random
import statistics
import sys
import time
import uuid as uuidlib

from nova_tenant_pin import domain_xml
from nova_tenant_pin import exception
from nova_tenant_pin import manager
from nova_tenant_pin.tests import fakes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workload  # noqa: E402,H306 (the scripts' own modules last)

PROJECTS = ['project-%03d' % i for i in range(120)]
# In-tenant CPU allocation ratio: 500 guests of 1-2 vCPUs (about 670
# vCPUs) fit on the 510 usable threads.
RATIO = 2.0


def host_topology():
    return workload.sibling_pair_host()


class Host:
    """A host with ``count`` guests: the manager and its doubles."""

    def __init__(self, topology, count, seed):
        self.partitions = fakes.CheckedPartitions()
        self.conn = fakes.FakeConnection(self.partitions)
        self.partitions.connection = self.conn
        self.mgr = manager.TenantPinManager(
            topology, self.partitions, lambda: self.conn,
            housekeeping_cpus={0, 1}, ratio=RATIO, name='bench')
        self.rng = random.Random(seed)
        self.projects = []
        for _ in range(4 * count):
            if len(self.conn.domains) >= count:
                break
            project = self.rng.choice(PROJECTS)
            try:
                self.spawn(project, self.rng.choice([1, 1, 2]))
            except exception.TenantDoesNotFit:
                continue
            self.projects.append(project)
        self.parses = 0
        parse = self.mgr.guests._parse_domain

        def counted(*args):
            self.parses += 1
            return parse(*args)
        self.mgr.guests._parse_domain = counted

    def uuid(self):
        return str(uuidlib.UUID(int=self.rng.getrandbits(128)))

    def spawn(self, project, vcpus, inst=None):
        inst = inst or self.uuid()
        pins = self.mgr.claim(inst, project, vcpus)
        self.conn.start(fakes.set_metadata_in_xml(
            fakes.domain_xml(inst, vcpus, project=project,
                             partition=pins.partition, cpuset=pins.cpus),
            self.mgr.metadata_of(inst), domain_xml.TP_PREFIX,
            domain_xml.TP_NS))
        self.mgr.domain_started(inst)
        return inst

    def delete(self, inst):
        self.conn.remove(inst)
        self.mgr.release(inst)


def timed(call):
    start = time.process_time()
    result = call()
    return (time.process_time() - start) * 1000.0, result


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(host, repeats, partial):
    """``{operation: ([ms, ...], parses per call)}``."""
    result = {'claim + started': [], 'release': [],
              'reconcile (after a change)': [], 'reconcile (no-op)': []}
    parses = {name: 0 for name in result}
    reads = {name: 0 for name in result}
    host.mgr.reconcile()
    for _ in range(repeats):
        project = host.rng.choice(host.projects)
        inst = host.uuid()
        for name, call in (
                ('claim + started', lambda: host.spawn(project, 1, inst)),
                ('release', lambda: host.delete(inst)),
                ('reconcile (after a change)', host.mgr.reconcile),
                ('reconcile (no-op)', host.mgr.reconcile)):
            if not partial:
                host.mgr.guests.forget()
                host.mgr._quiet = None
            before = host.parses, host.conn.xml_desc_calls
            ms, _ = timed(call)
            result[name].append(ms)
            parses[name] += host.parses - before[0]
            reads[name] += host.conn.xml_desc_calls - before[1]
    return {name: (times, parses[name] / repeats, reads[name] / repeats)
            for name, times in result.items()}


def concurrent_spawns(host, threads=10):
    """Wall-clock ms of each of ``threads`` spawns started at once, and
    the CPU ms of the whole burst per spawn."""
    projects = [host.rng.choice(host.projects) for _ in range(threads)]
    insts = [host.uuid() for _ in range(threads)]

    def one(n):
        start = time.perf_counter()
        host.spawn(projects[n], 1, insts[n])
        return (time.perf_counter() - start) * 1000.0

    cpu = time.process_time()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        times = list(pool.map(one, range(threads)))
    cpu = (time.process_time() - cpu) * 1000.0 / threads
    for inst in insts:
        host.delete(inst)
    return times, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--densities', default='10,50,100,200,500')
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--seed', type=int, default=20261207)
    parser.add_argument('--quick', action='store_true',
                        help='10 and 100 guests, 5 repeats')
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    densities = [10, 100] if args.quick else [
        int(d) for d in args.densities.split(',')]
    repeats = 5 if args.quick else args.repeats
    topology = host_topology()
    print('Host operations: 512 threads (4 sockets x 64 cores x 2), the '
          'project\'s libvirt and cgroup doubles, %d repeats' % repeats)
    print()
    header = '%7s %-26s %17s %7s %7s %19s %8s' % (
        'guests', 'operation', 'p50 / p99 ms', 'reads', 'parses',
        'full p50 / p99', 'ratio')
    print(header)
    print('-' * len(header))
    p50s = {}
    for count in densities:
        host = Host(topology, count, args.seed + count)
        count = len(host.conn.domains)
        partial = measure(host, repeats, partial=True)
        touched = host.mgr._touched
        host.mgr._touched = lambda *args: None
        full = measure(host, repeats, partial=False)
        host.mgr._touched = touched
        for name, (times, parses, reads) in partial.items():
            base_times = full[name][0]
            p50 = statistics.median(times)
            base = statistics.median(base_times)
            p50s.setdefault(name, []).append(p50)
            print('%7d %-26s %8.2f / %6.2f %7.1f %7.1f %9.2f / %7.2f %8.2f'
                  % (count, name, p50, percentile(times, 0.99), reads,
                     parses, base, percentile(base_times, 0.99), p50 / base))
        burst, cpu = concurrent_spawns(host)
        print('%7d %-26s %8.2f / %6.2f %7s %7s %19s %8s   (wall; CPU %.2f '
              'ms a spawn)' % (count, '10 concurrent',
                               statistics.median(burst),
                               percentile(burst, 0.99), '-', '-', '-', '-',
                               cpu))
        if host.partitions.overlaps:
            raise SystemExit('overlap: %s' % host.partitions.overlaps[0])
    print()
    print('ratio: p50 against the same operation doing the whole work (full: '
          'every domain parsed, every key planned, every reconcile '
          'complete), same host, same run. Growth of the p50 from '
          '%d to %d guests:' % (densities[0], densities[-1]))
    for name, values in p50s.items():
        print('  %-26s %.1fx (%.2f -> %.2f ms)' % (
            name, values[-1] / values[0], values[0], values[-1]))


if __name__ == '__main__':
    main()
