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

"""Rollout: switching a compute host that runs guests to this driver and
back, and live migration between hosts with and without it."""

from unittest import mock

from nova_tenant_pin import domain_xml
from nova_tenant_pin.tests.functional import base

STOCK = 'libvirt.LibvirtDriver'
SHARED = frozenset(range(2, 16))


class RolloutBase(base.TenantPinTestBase):

    def switch(self, host, driver):
        """Restart ``host``'s nova-compute with ``driver``: what an
        operator does after editing ``compute_driver``."""
        self.flags(compute_driver=driver)
        with mock.patch('nova_tenant_pin.manager.LOG') as log:
            self.restart_compute_service(host)
        self.flags(compute_driver=base.DRIVER)
        return log


class TestEnableOnLiveHost(RolloutBase):
    """Guests started by Nova's stock driver, then the compute restarted
    with this one."""

    def setUp(self):
        super().setUp()
        self.flags(compute_driver=STOCK)
        self.start_compute('host1')
        self.flags(compute_driver=base.DRIVER)

    def boot_stock(self, label, vcpus):
        server = self.boot(label, vcpus)
        info = self.domains_of('host1')[server['id']]
        # The stock driver floats every guest over cpu_shared_set.
        self.assertIsNone(info.partition)
        self.assertEqual(SHARED, info.vcpu_cpuset)
        return server

    def test_adopts_every_guest_live_and_they_move_in_at_hard_reboot(self):
        servers = {label: self.boot_stock(label, vcpus) for label, vcpus in
                   (('a', 3), ('b', 2), ('c', 4))}
        starts = len(self.pinning.starts)
        log = self.switch('host1', base.DRIVER)
        # No guest was started again: they were pinned where they run.
        self.assertEqual(starts, len(self.pinning.starts))
        mgr = self.manager_of('host1')
        self.assertTrue(mgr.isolation()['isolated'])
        tenants = mgr.tenant_map()
        self.assertEqual({self.project(x) for x in servers}, set(tenants))
        for label, server in servers.items():
            info = self.domains_of('host1')[server['id']]
            self.assertEqual('pins', info.confinement)
            self.assertEqual(self.project(label), info.key)
            self.assertLessEqual(info.all_cpus(SHARED),
                                 tenants[self.project(label)])
        logged = ' '.join(str(c) for c in log.warning.call_args_list)
        self.assertIn('started without tenant-pin', logged)
        self.assertInvariants()
        # A hard reboot moves the guest into its tenant's partition.
        self._reboot_server(servers['a'], hard=True)
        info = self.domains_of('host1')[servers['a']['id']]
        self.assertEqual('partition', info.confinement)
        self.assertInvariants()
        # The host goes on as any other: a new tenant, a delete.
        self.boot('d', 2)
        self._delete_server(servers['b'])
        self.assertInvariants()

    def test_host_that_cannot_isolate_everyone_names_them_isolates_the_rest(
            self):
        # 4 tenants x 3 vCPUs: 12 vCPUs fit the 14 shared threads for the
        # stock driver, but each tenant needs 2 whole cores: 8 of 7.
        servers = {label: self.boot_stock(label, 3) for label in 'abcd'}
        log = self.switch('host1', base.DRIVER)
        report = self.manager_of('host1').isolation()
        self.assertFalse(report['isolated'])
        self.assertEqual(1, len(report['unfit']))
        unfit = next(iter(report['unfit']))
        errors = ' '.join(str(c) for c in log.error.call_args_list)
        self.assertIn('host NOT isolated', errors)
        self.assertIn(unfit, errors)
        placed = [s for label, s in servers.items()
                  if self.project(label) != unfit]
        cores = [self.server_cores('host1', s) for s in placed]
        unfit_cores = self.server_cores('host1', next(
            s for label, s in servers.items()
            if self.project(label) == unfit))
        for i, these in enumerate(cores):
            self.assertFalse(these & unfit_cores)
            for other in cores[i + 1:]:
                self.assertFalse(these & other)
        # Once a tenant leaves, everyone fits and the host is isolated.
        self._delete_server(placed[0])
        self.manager_of('host1').reconcile()
        self.assertTrue(self.manager_of('host1').isolation()['isolated'])
        self.assertInvariants()


class TestDisable(RolloutBase):
    """Back to the stock driver: ``nova-tenant-pin release`` unpins every
    guest and empties the partitions; no guest restarts."""

    def setUp(self):
        super().setUp()
        self.start_compute('host1')
        self.servers = [self.boot('a', 3), self.boot('b', 2, ),
                        self.boot('a', 1)]

    def test_release_then_stock_driver(self):
        starts = len(self.pinning.starts)
        mgr = self.manager_of('host1')
        preview = mgr.release_all(SHARED, dry_run=True)
        self.assertTrue(preview)
        self.assertNotEqual({}, self.partitions_of('host1'))
        mgr.release_all(SHARED)
        self.switch('host1', STOCK)
        self.assertEqual(starts, len(self.pinning.starts))
        for server in self.servers:
            info = self.domains_of('host1')[server['id']]
            # Runs where the stock driver lets guests run, with no trace
            # of tenant-pin but the partition it started in.
            self.assertEqual(SHARED, info.all_cpus(SHARED))
            self.assertIsNone(info.key)
        for part in self.partitions_of('host1').values():
            self.assertEqual(SHARED, part.cpus)
        # Its next hard reboot under the stock driver leaves the partition.
        self._reboot_server(self.servers[1], hard=True)
        info = self.domains_of('host1')[self.servers[1]['id']]
        self.assertIsNone(info.partition)


class TestMigrationFromStockHost(RolloutBase):
    """host_a runs Nova's stock driver, host_b this one: a guest live
    migrated in is confined from the moment its QEMU starts."""

    def setUp(self):
        super().setUp()
        self.stub_live_migration(self._migrate_stub)
        self.flags(compute_driver=STOCK)
        self.start_compute('host_a')
        self.flags(compute_driver=base.DRIVER)
        self.start_compute('host_b')
        self.arrived = None

    def _migrate_stub(self, domain, destination, params, flags):
        xml = params['destination_xml']
        self.arrived = domain_xml.parse_domain_xml(xml)
        self.dest_claims = self.manager_of('host_b').claims()
        dest = self.computes['host_b'].driver._host.get_connection()
        dest.createXML(xml, 0)
        domain.complete_job()

    def test_confined_on_arrival(self):
        other = self.boot('b', 2, host='host_b')
        server = self.boot('a', 2, host='host_a')
        self._live_migrate(server, 'completed', host='host_b')
        self.assertEqual('host_b', self.host_of(server))
        tenant_cpus = self.manager_of('host_b').tenant_map()[
            self.project('a')]
        # The stock source wrote the target's CPUs for the tenant into the
        # XML the target QEMU starts from: confined from its first
        # instruction, though outside the partition until a hard reboot.
        self.assertIsNone(self.arrived.partition)
        self.assertLessEqual(self.arrived.vcpu_cpuset, tenant_cpus)
        self.assertIn(server['id'], self.dest_claims)
        info = self.domains_of('host_b')[server['id']]
        self.assertEqual('pins', info.confinement)
        self.assertEqual(self.project('a'), info.key)
        self.assertFalse(self.server_cores('host_b', server) &
                         self.server_cores('host_b', other))
        self.assertInvariants()
