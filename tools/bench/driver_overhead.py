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
x 32 cores x 2 threads (CPUs 2-127 shared). The benchmark wraps the
driver's methods, not the API: every call of ``spawn``, ``destroy``, the
live-migration steps (``check_can_live_migrate_destination`` and
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

For each density (``--densities``, default 1 and 50 instances on the
host): the host is filled to ``density - 1`` instances of 10 tenants
(multi-create requests); then ``--servers`` 1-vCPU servers of 3 tenants
are booted one by one on it, live-migrated to the other host and deleted;
then 10 reconciles run. Concurrent spawns are measured on the manager by
``host_ops.py``: in this harness, on this machine, a multi-create of 10
servers on one host did not complete (builds failed in the resource
tracker's placement update).

Printed per call: the calls counted, the project's own time and the stock
time, p50 and p99 (milliseconds, wall clock: calls run in green threads,
so time a call spends waiting for another is counted where it waits),
and the ratio of the p50s. Fake libvirt makes the hypervisor's own work
nearly free, so the ratio shows the project's share at its largest;
``real_libvirt.py`` measures real guests.

Run ``python tools/bench/driver_overhead.py`` (``--quick``: density 1
only, 3 servers).
"""

import argparse
import collections
import statistics
import sys
import threading
import time
import unittest
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import fixtures  # noqa: E402
from nova.virt.libvirt import driver as libvirt_driver  # noqa: E402

from nova_tenant_pin import driver as tp_driver  # noqa: E402
from nova_tenant_pin.tests.functional import test_live_migration  # noqa

OPERATIONS = (
    'spawn', 'destroy', 'check_can_live_migrate_destination',
    'check_can_live_migrate_source', 'check_source_migrate_data_at_dest',
    'cleanup_live_migration_destination_check', '_live_migration_operation',
    'post_live_migration_at_destination', 'post_live_migration_at_source',
    'update_provider_tree')
# Overrides that run inside an operation (their own time is the project's).
NESTED = ('cleanup', '_get_guest_xml', 'get_available_resource')
HOST_CPUS = 128


class Probe:
    """Splits each operation's time between the project and Nova."""

    def __init__(self):
        self.local = threading.local()
        self.samples = collections.defaultdict(list)  # (label, op) -> [..]
        self.label = None

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
        return result


PROBE = Probe()


class _Bench(test_live_migration.LiveMigrationBase):
    """One density: fill host_a, then spawn, migrate and delete servers."""

    HOST_INFO = dict(cpu_nodes=2, cpu_sockets=1, cpu_cores=HOST_CPUS // 4,
                     cpu_threads=2, kB_mem=512 * 1024 * 1024)
    DENSITY = 1
    SERVERS = 6
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
        return super().start_compute(hostname, *args, **kwargs)

    def _flavor(self, vcpus):
        if not hasattr(self, '_flavors'):
            self._flavors = {}
        if vcpus not in self._flavors:
            self._flavors[vcpus] = self._create_flavor(
                memory_mb=64, vcpu=vcpus, disk=1, ephemeral=0)
        return self._flavors[vcpus]

    def multi_create(self, label, count):
        server = self._build_server(flavor_id=self._flavor(1),
                                    networks='none', az='nova:host_a')
        server['min_count'] = server['max_count'] = count
        server['return_reservation_id'] = True
        api = self.tenant(label)
        reservation = api.post_server({'server': server})[
            'reservation_id']
        servers = api.get_servers(
            detail=True, search_opts={'reservation_id': reservation})
        return [self._wait_for_state_change(s, 'ACTIVE') for s in servers]

    def test_density(self):
        PROBE.label = None
        background = self.DENSITY - 1
        for n in range(10):
            count = background // 10 + (n < background % 10)
            if count:
                self.multi_create('bg%d' % n, count)
        label = 'density %d' % self.DENSITY
        PROBE.label = label
        servers = [self.boot('t%d' % (n % 3), 1, host='host_a')
                   for n in range(self.SERVERS)]
        for server in servers:
            self._live_migrate(server, host='host_b')
        for server in servers:
            self._delete_server(server)
        driver = self.computes['host_a'].driver
        for _ in range(self.RECONCILES):
            driver._tp_reconcile()
        PROBE.label = None
        self.assertEqual(self.DENSITY - 1,
                         len(self.manager_of('host_a').claims()))


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--densities', default='1,50',
                        help='instances on the host, comma-separated '
                        '(default 1,50)')
    parser.add_argument('--servers', type=int, default=6)
    parser.add_argument('--quick', action='store_true',
                        help='density 1, 3 servers')
    args = parser.parse_args()
    densities = [1] if args.quick else [
        int(d) for d in args.densities.split(',')]
    loader = unittest.TestLoader()
    for density in densities:
        case = type('Density%d' % density, (_Bench,), {
            'DENSITY': density,
            'SERVERS': 3 if args.quick else args.servers})
        result = unittest.TextTestRunner(
            stream=open('/dev/null', 'w'), verbosity=0).run(
                loader.loadTestsFromTestCase(case))
        if not result.wasSuccessful():
            for _test, trace in result.errors + result.failures:
                sys.stderr.write(trace)
            sys.exit('driver_overhead: density %d failed' % density)
    print('Driver calls in Nova\'s harness: hosts of %d CPUs (2 cells x %d '
          'cores x 2 threads), fake libvirt' % (HOST_CPUS, HOST_CPUS // 4))
    print()
    header = '%-36s %-42s %5s %17s %17s %6s' % (
        'where', 'call', 'n', 'own p50 / p99 ms', 'stock p50 / p99 ms',
        'ratio')
    print(header)
    print('-' * len(header))
    for (label, op), samples in sorted(
            PROBE.samples.items(),
            key=lambda item: (item[0][0], OPERATIONS.index(item[0][1])
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
    print('own: time in this project\'s overrides, outside their calls of '
          'the stock methods; stock: time in Nova\'s LibvirtDriver code of '
          'the same call; ratio: own p50 / stock p50. _tp_reconcile is the '
          'periodic reconcile (no stock counterpart).')


if __name__ == '__main__':
    main()
