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

"""The project's own time inside the driver's calls, against the stock
driver's part of the same calls, in Nova's functional harness.

``TenantPinLibvirtDriver`` runs in Nova's in-process services (API,
conductor, scheduler, placement) on two fake libvirt hosts of 2 NUMA cells
x 128 cores x 2 threads (512 CPUs, CPUs 2-511 shared). The benchmark wraps
the driver's methods, not the API: every call of ``spawn``, ``destroy``,
the live-migration steps (``check_can_live_migrate_destination`` and
``_source``, ``check_source_migrate_data_at_dest``,
``cleanup_live_migration_destination_check``,
``_live_migration_operation``, ``post_live_migration_at_destination`` and
``_source``) and ``update_provider_tree`` is split into the time spent in
this project's code (the ``TenantPinLibvirtDriver`` overrides, outside
their calls of the stock methods) and the time spent in Nova's stock
``LibvirtDriver`` code, the same calls the stock driver makes. The
periodic ``reconcile`` (the manager's whole pass, with the database
query of the host's instances) has no stock counterpart; it is shown
beside the stock ``update_provider_tree`` it runs in.

For each density (``--densities``, default 1, 50, 200 and 500 instances
on the host): host_a is populated with ``density - 1`` running 1-vCPU
guests of 10 projects directly, not through the API (booting hundreds
through Nova's harness takes far too long): each is claimed by host_a's
manager, its domain started in fakelibvirt with its key's partition, CPUs
and tenant-pin metadata, and ``domain_started`` called, as the driver's
spawn leaves a guest; Nova's database does not hold them, and the
reconcile keeps running domains Nova does not know. At 500, host_a holds
499 such guests on its 510 shared CPUs. Then, measured, ``--servers``
1-vCPU servers of 3 projects are booted one by one through the API on
host_a and live-migrated to host_b (deleted there, not counted: host_b
holds nothing else); as many again are booted on host_a and deleted
there; 10 reconciles run on host_a; and 10 servers of one more project
are asked for at once (10 requests, not a multi-create) and built
concurrently on host_a, then deleted. The migration's source steps
(``check_can_live_migrate_source``, ``_live_migration_operation``,
``post_live_migration_at_source``) run on the populated host, its
destination steps on the empty one. The cgroup double's check of every
partition write for overlap (it parses every domain's XML at each write)
is off while measuring; the invariants are checked from the domains and
partitions at the end of each density.

Printed per call: the calls counted, the project's own time and the stock
time, p50 and p99 (milliseconds, wall clock: calls run in green threads,
so time a call spends waiting for another is counted where it waits; with
6 to 30 calls the p99 is the slowest), and the ratio of the p50s. Fake
libvirt makes the hypervisor's own work nearly free, so the ratio shows
the project's share at its largest; ``real_libvirt.py`` measures real
guests. Then, on the populated host: the manager's ``claim`` +
``domain_started`` of each spawn (wall clock), the plans the manager made
and how many keys each planned (every key, or only those a change touched
and those a plan of every key could move), and the keys on the host and
those spanning both NUMA cells. The machine's CPU, its CPU count and
its load average are printed with them.

Run ``python tools/bench/driver_overhead.py`` (about 3 minutes on a 2-CPU
machine; ``--quick``: densities 1 and 50, 3 servers).
"""

import argparse
import collections
import os
import statistics
import sys
import threading
import time
import unittest
import uuid as uuidlib
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import fixtures  # noqa: E402
from nova.virt.libvirt import driver as libvirt_driver  # noqa: E402

from nova_tenant_pin import domain_xml  # noqa: E402
from nova_tenant_pin import driver as tp_driver  # noqa: E402
from nova_tenant_pin import manager as tp_manager  # noqa: E402
from nova_tenant_pin.tests import fakes  # noqa: E402
from nova_tenant_pin.tests.functional import test_live_migration  # noqa

OPERATIONS = (
    'spawn', 'destroy', 'check_can_live_migrate_destination',
    'check_can_live_migrate_source', 'check_source_migrate_data_at_dest',
    'cleanup_live_migration_destination_check', '_live_migration_operation',
    'post_live_migration_at_destination', 'post_live_migration_at_source',
    'update_provider_tree')
# Overrides that run inside an operation (their own time is the project's).
NESTED = ('cleanup', '_get_guest_xml', 'get_available_resource')
HOST_CPUS = 512
ATTEMPTS = 3


class Probe:
    """Splits each operation's time between the project and Nova."""

    def __init__(self):
        self.local = threading.local()
        self.samples = collections.defaultdict(list)  # (label, op) -> [..]
        self.label = None
        # The manager of the populated host, and what it does there: the
        # wall time of a spawn's claim + domain_started, the keys each
        # plan planned (None: every key), the keys held and those that
        # span both NUMA cells once populated.
        self.watched = None
        self.claimed = {}
        self.claim_started = collections.defaultdict(list)
        self.planned = collections.defaultdict(list)
        self.keys = {}

    def _frame(self):
        if not hasattr(self.local, 'stack'):
            self.local.stack = []
        return self.local.stack

    def _charge(self, now):
        stack = self._frame()
        if stack:
            self.local.spent[stack[-1][1]] += now - self.local.last
        self.local.last = now

    def enter(self, op, mode):
        now = time.perf_counter()
        self._charge(now)
        stack = self._frame()
        if not stack:
            self.local.spent = {'own': 0.0, 'stock': 0.0}
        stack.append((op, mode))

    def leave(self):
        now = time.perf_counter()
        self._charge(now)
        stack = self._frame()
        op, _mode = stack.pop()
        if not stack and self.label is not None:
            self.samples[self.label, op].append(dict(self.local.spent))

    def wrap(self, cls, name, mode, top):
        original = cls.__dict__[name]
        probe = self

        def wrapper(*args, **kwargs):
            if not top and not probe._frame():
                return original(*args, **kwargs)
            probe.enter(name, mode)
            try:
                return original(*args, **kwargs)
            finally:
                probe.leave()
        return fixtures.MonkeyPatch(
            '%s.%s.%s' % (cls.__module__, cls.__name__, name), wrapper)

    def fixtures(self):
        """The wrappers: stock methods charge Nova, overrides the project;
        an operation counts from its outermost call."""
        result = []
        ours = tp_driver.TenantPinLibvirtDriver
        stock = libvirt_driver.LibvirtDriver
        for name in OPERATIONS + NESTED:
            if name in ours.__dict__:
                result.append(self.wrap(ours, name, 'own',
                                        top=name in OPERATIONS))
            if name in stock.__dict__:
                result.append(self.wrap(stock, name, 'stock',
                                        top=name in OPERATIONS))
        result.append(self.wrap(ours, '_tp_reconcile', 'own', top=True))
        result.extend(self.manager_fixtures())
        return result

    def manager_fixtures(self):
        probe = self
        mgr = tp_manager.TenantPinManager
        claim, started, plan = mgr.claim, mgr.domain_started, mgr._plan

        def watching(manager):
            return probe.label is not None and manager is probe.watched

        def timed_claim(manager, uuid, *args, **kwargs):
            begin = time.perf_counter()
            result = claim(manager, uuid, *args, **kwargs)
            if watching(manager) and not kwargs.get('incoming'):
                probe.claimed[uuid] = time.perf_counter() - begin
            return result

        def timed_started(manager, uuid):
            begin = time.perf_counter()
            result = started(manager, uuid)
            if watching(manager) and uuid in probe.claimed:
                probe.claim_started[probe.label].append(
                    probe.claimed.pop(uuid) + time.perf_counter() - begin)
            return result

        def counted_plan(manager, *args, **kwargs):
            result = plan(manager, *args, **kwargs)
            if watching(manager):
                probe.planned[probe.label].append(
                    None if result.planned is None else len(result.planned))
            return result

        name = 'nova_tenant_pin.manager.TenantPinManager.'
        return [fixtures.MonkeyPatch(name + 'claim', timed_claim),
                fixtures.MonkeyPatch(name + 'domain_started', timed_started),
                fixtures.MonkeyPatch(name + '_plan', counted_plan)]

    def count_keys(self, label, manager):
        spanning = 0
        tenants = manager.tenant_map()
        for cpus in tenants.values():
            cells = {manager.topology.core_of(cpu).cell for cpu in cpus}
            spanning += len(cells) > 1
        self.keys[label] = (len(tenants), spanning)


PROBE = Probe()


class _Bench(test_live_migration.LiveMigrationBase):
    """One density: populate host_a, then spawn, migrate and delete
    servers, then 10 spawns at once, then reconciles."""

    HOST_INFO = dict(cpu_nodes=2, cpu_sockets=1, cpu_cores=HOST_CPUS // 4,
                     cpu_threads=2, kB_mem=512 * 1024 * 1024)
    DENSITY = 1
    SERVERS = 6
    CONCURRENT = 10
    RECONCILES = 10

    def setUp(self):
        self.flags(disk_allocation_ratio=1000.0, ram_allocation_ratio=10.0)
        for fixture in PROBE.fixtures():
            self.useFixture(fixture)
        super().setUp()

    def start_compute(self, hostname='compute1', *args, **kwargs):
        self.flags(cpu_shared_set='2-%d' % (HOST_CPUS - 1), group='compute')
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host.get_online_cpus',
            lambda host: set(range(HOST_CPUS))))
        name = super().start_compute(hostname, *args, **kwargs)
        # The cgroup double checks every write for overlap by parsing
        # every domain's XML: its cost, not the project's (a cgroup write
        # takes microseconds). Off while measuring; the invariants are
        # checked from the domains and partitions at the end.
        self.computes[name].driver._host.get_connection(
        ).tp_partitions.topology = None
        return name

    def assertInvariants(self, *args, **kwargs):
        # Checked once per density, at the end (a full read of every
        # domain after each boot would make the run minutes longer).
        pass

    def _flavor(self, vcpus):
        if not hasattr(self, '_flavors'):
            self._flavors = {}
        if vcpus not in self._flavors:
            self._flavors[vcpus] = self._create_flavor(
                memory_mb=64, vcpu=vcpus, disk=1, ephemeral=0)
        return self._flavors[vcpus]

    def populate(self, host, count):
        """``count`` running 1-vCPU guests of 10 projects on ``host``, as
        the driver's spawn leaves them: claimed, the domain started in its
        key's partition with its CPUs and metadata, domain_started. Not
        through the API (Nova's database does not hold them; the
        reconcile keeps running domains Nova does not know)."""
        mgr = self.manager_of(host)
        conn = self.computes[host].driver._host.get_connection()
        for n in range(count):
            uuid = str(uuidlib.UUID(int=n + 1))
            project = 'background%02d' % (n % 10)
            pins = mgr.claim(uuid, project, 1)
            xml = fakes.set_metadata_in_xml(
                fakes.domain_xml(uuid, 1, project=project,
                                 partition=pins.partition, cpuset=pins.cpus,
                                 name='background-%05d' % n),
                mgr.metadata_of(uuid), domain_xml.TP_PREFIX,
                domain_xml.TP_NS)
            conn.createXML(xml.replace('</vcpu>', '</vcpu><memory>65536'
                                       '</memory>', 1), 0)
            mgr.domain_started(uuid)

    def concurrent_spawns(self, label, count):
        """``count`` servers asked for at once (separate requests), all
        to host_a; the compute builds them concurrently."""
        api = self.tenant(label)
        posted = []
        for _ in range(count):
            server = self._build_server(
                flavor_id=self._flavor(1), networks='none',
                az='nova:host_a')
            posted.append(api.post_server({'server': server}))
        return [self._wait_for_state_change(s, 'ACTIVE') for s in posted]

    def test_density(self):
        PROBE.label = None
        self.populate('host_a', self.DENSITY - 1)
        label = 'density %d' % self.DENSITY
        PROBE.watched = self.manager_of('host_a')
        PROBE.count_keys(label, PROBE.watched)
        PROBE.label = label
        servers = [self.boot('t%d' % (n % 3), 1, host='host_a')
                   for n in range(self.SERVERS)]
        for server in servers:
            self._live_migrate(server, host='host_b')
        # Deleted on host_b, the migration target, which holds nothing
        # else: not counted.
        PROBE.label = None
        for server in servers:
            self._delete_server(server)
        # Booted and deleted on host_a: the destroys at the density.
        PROBE.label = label
        servers = [self.boot('t%d' % (n % 3), 1, host='host_a')
                   for n in range(self.SERVERS)]
        for server in servers:
            self._delete_server(server)
        driver = self.computes['host_a'].driver
        for _ in range(self.RECONCILES):
            driver._tp_reconcile()
        if self.CONCURRENT:
            PROBE.label = '%s, %d concurrent spawns' % (label,
                                                        self.CONCURRENT)
            burst = self.concurrent_spawns('c0', self.CONCURRENT)
            PROBE.label = None
            for server in burst:
                self._delete_server(server)
        PROBE.label = None
        self.assertEqual(self.DENSITY - 1,
                         len(self.manager_of('host_a').claims()))
        super().assertInvariants()


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_model():
    with open('/proc/cpuinfo') as cpuinfo:
        for line in cpuinfo:
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return 'unknown CPU'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--densities', default='1,50,200,500',
                        help='instances on the host, comma-separated '
                        '(default 1,50,200,500)')
    parser.add_argument('--servers', type=int, default=6,
                        help='servers booted, live-migrated and deleted one '
                        'by one at each density (default 6)')
    parser.add_argument('--quick', action='store_true',
                        help='densities 1 and 50, 3 servers')
    parser.add_argument('--seed', type=int, default=None,
                        help='accepted as the other benchmarks take it '
                        '(tox -e bench passes its arguments to each): this '
                        'workload is not random')
    args = parser.parse_args()
    densities = [1, 50] if args.quick else [
        int(d) for d in args.densities.split(',')]
    loader = unittest.TestLoader()
    load_before = os.getloadavg()
    elapsed = {}
    for density in densities:
        started = time.monotonic()
        case = type('Density%d' % density, (_Bench,), {
            'DENSITY': density,
            'SERVERS': 3 if args.quick else args.servers})
        for attempt in range(1, ATTEMPTS + 1):
            result = unittest.TextTestRunner(
                stream=open('/dev/null', 'w'), verbosity=0).run(
                    loader.loadTestsFromTestCase(case))
            if result.wasSuccessful():
                break
            # A run the harness broke (on a loaded machine: a delete whose
            # resource update met the state report's transaction) keeps
            # none of its samples, and is said.
            for key in [k for k in PROBE.samples
                        if k[0].startswith('density %d' % density)]:
                del PROBE.samples[key]
            for kept in (PROBE.claim_started, PROBE.planned, PROBE.keys):
                for key in [k for k in kept
                            if k.startswith('density %d' % density)]:
                    del kept[key]
            for _test, trace in result.errors + result.failures:
                sys.stderr.write(trace.splitlines()[-1] + '\n')
            sys.stderr.write('driver_overhead: density %d, attempt %d of %d '
                             'failed\n' % (density, attempt, ATTEMPTS))
        else:
            sys.exit('driver_overhead: density %d failed' % density)
        elapsed[density] = (time.monotonic() - started, os.getloadavg()[0])
    print('Driver calls in Nova\'s harness: hosts of %d CPUs (2 cells x %d '
          'cores x 2 threads), fake libvirt' % (HOST_CPUS, HOST_CPUS // 4))
    print('Measured on: %s, %d CPUs; 1-minute load average %.2f at the '
          'start; per density, wall time and load at its end: %s' % (
              cpu_model(), os.cpu_count(), load_before[0],
              ', '.join('%d: %.0f s, %.2f' % (d, *e)
                        for d, e in elapsed.items())))
    print()
    header = '%-36s %-42s %5s %17s %17s %6s' % (
        'where', 'call', 'n', 'own p50 / p99 ms', 'stock p50 / p99 ms',
        'ratio')
    print(header)
    print('-' * len(header))
    for (label, op), samples in sorted(
            PROBE.samples.items(),
            key=lambda item: (int(item[0][0].split()[1].rstrip(',')),
                              item[0][0], OPERATIONS.index(item[0][1])
                              if item[0][1] in OPERATIONS else 99)):
        own = [1000.0 * s['own'] for s in samples]
        stock = [1000.0 * s['stock'] for s in samples]
        stock_p50 = statistics.median(stock)
        print('%-36s %-42s %5d %8.2f / %6.2f %8.2f / %6.2f %6s' % (
            label, op, len(samples), statistics.median(own),
            percentile(own, 0.99), stock_p50, percentile(stock, 0.99),
            '%.3f' % (statistics.median(own) / stock_p50)
            if stock_p50 else '-'))
    print()
    header = '%-36s %5s %22s %5s %9s %17s %14s' % (
        'where (the populated host)', 'n', 'claim+started p50/p99',
        'plans', 'all keys', 'keys a plan p50/max', 'keys/spanning')
    print(header)
    print('-' * len(header))
    for label in sorted(PROBE.claim_started, key=lambda label: (
            int(label.split()[1].rstrip(',')), label)):
        times = [1000.0 * t for t in PROBE.claim_started[label]]
        planned = PROBE.planned[label]
        some = [n for n in planned if n is not None] or [0]
        keys, spanning = PROBE.keys[label.split(',')[0]]
        print('%-36s %5d %11.2f / %7.2f %5d %9d %10d / %4d %8d / %3d' % (
            label, len(times), statistics.median(times),
            percentile(times, 0.99), len(planned),
            planned.count(None), statistics.median(some), max(some),
            keys, spanning))
    print()
    print('own: time in this project\'s overrides, outside their calls of '
          'the stock methods; stock: time in Nova\'s LibvirtDriver code of '
          'the same call; ratio: own p50 / stock p50. _tp_reconcile is the '
          'periodic reconcile (no stock counterpart). '
          'claim+started: the manager\'s claim and domain_started of a '
          'spawn on the populated host, wall ms; plans: the manager\'s '
          'plans there (spawns, destroys, migrations, reconciles), of '
          'which "all keys" planned every key, the others only the keys '
          'a change touched and those a plan of every key could move; '
          'keys/spanning: keys on the populated host before the measured '
          'calls, and those of them spanning both NUMA cells.')


if __name__ == '__main__':
    main()
