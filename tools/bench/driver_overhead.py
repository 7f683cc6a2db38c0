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

"""Spawn and live-migration time of TenantPinLibvirtDriver against Nova's
stock LibvirtDriver, in the same Nova harness run.

Both drivers run in Nova's in-process services (API, conductor, scheduler,
placement) on the same fake libvirt hosts (2 NUMA cells x 4 cores x 2
threads, CPUs 2-15 shared), with the same flavors and tenants, one driver
after the other, several rounds each, alternating which goes first. Timed:
``POST /servers`` to ACTIVE, and a live migration from the API call to the
migration's ``completed``. The fake libvirt makes the hypervisor's own work
nearly free, so the ratio shows this project's share of the control path
at its largest; tools/bench/real_libvirt.py measures it on real guests.

A benchmark, not a test: it prints medians and ratios. Target: at most 5 %
of overhead.
"""

import argparse
import statistics
import sys
import time
import unittest
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

from nova_tenant_pin.tests.functional import base  # noqa: E402
from nova_tenant_pin.tests.functional import test_live_migration  # noqa

RESULTS = {}
SERVERS = 6
TENANTS = 3


class _Bench(test_live_migration.LiveMigrationBase):
    """One round: boot SERVERS servers of TENANTS tenants on host_a, then
    live-migrate each to host_b."""

    KIND = None

    def _migrate_stub(self, domain, destination, params, flags):
        # The target starts from the destination XML, as in the tests,
        # for both drivers.
        dest = self.computes['host_b'].driver._host.get_connection()
        dest.createXML(params['destination_xml'], 0)
        domain.complete_job()

    def test_round(self):
        spawn, migrate = [], []
        flavor = self._flavor(2)
        servers = []
        for n in range(SERVERS):
            client = self.tenant('t%d' % (n % TENANTS))
            start = time.perf_counter()
            servers.append(self._create_server(
                flavor_id=flavor, networks='none', host='host_a',
                api=client))
            spawn.append(time.perf_counter() - start)
        for server in servers:
            start = time.perf_counter()
            self._live_migrate(server, host='host_b')
            migrate.append(time.perf_counter() - start)
        self.assertEqual({'host_b'}, {self.host_of(s) for s in servers})
        results = RESULTS.setdefault(self.KIND, {'spawn': [], 'migrate': []})
        results['spawn'] += spawn
        results['migrate'] += migrate


class StockRound(_Bench):
    KIND = 'stock LibvirtDriver'

    def _setup_compute_service(self):
        self.flags(compute_driver='libvirt.LibvirtDriver')

    def start_compute(self, hostname='compute1', *args, **kwargs):
        # The stock driver has no tenant map; skip the base's hook-up.
        return super(base.TenantPinTestBase, self).start_compute(
            hostname, *args, **kwargs)


class TenantPinRound(_Bench):
    KIND = 'TenantPinLibvirtDriver'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=4,
                        help='rounds per driver (default 4)')
    parser.add_argument('--quick', action='store_true', help='2 rounds')
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    loader = unittest.TestLoader()
    for n in range(rounds):
        order = [StockRound, TenantPinRound]
        if n % 2:
            order.reverse()
        for case in order:
            result = unittest.TextTestRunner(
                stream=open('/dev/null', 'w'), verbosity=0).run(
                    loader.loadTestsFromTestCase(case))
            if not result.wasSuccessful():
                for _test, trace in result.errors + result.failures:
                    sys.stderr.write(trace)
                sys.exit('driver_overhead: a round of %s failed' % case.KIND)
    stock, ours = RESULTS[StockRound.KIND], RESULTS[TenantPinRound.KIND]
    print('%d rounds x %d servers of %d tenants, per driver'
          % (rounds, SERVERS, TENANTS))
    for what, label in (('spawn', 'spawn (POST to ACTIVE)'),
                        ('migrate', 'live migration (API to completed)')):
        a = statistics.median(stock[what]) * 1000
        b = statistics.median(ours[what]) * 1000
        print('%-34s stock %7.1f ms   tenant-pin %7.1f ms   ratio %.3f '
              '(target <= 1.05)' % (label, a, b, b / a))


if __name__ == '__main__':
    main()
