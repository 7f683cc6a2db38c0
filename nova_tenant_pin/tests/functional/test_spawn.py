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

"""Tenants booting and deleting through the real API on one compute."""

import fixtures
from nova.virt import driver as virt_driver

from nova_tenant_pin import driver as tp_driver
from nova_tenant_pin import exception
from nova_tenant_pin.tests.functional import base


class TestComputeDriverLoading(base.TenantPinTestBase):

    def test_nova_loads_the_driver_by_its_configured_name(self):
        """``compute_driver = tenant_pin.TenantPinLibvirtDriver`` loads
        through Nova's own loader (``nova.virt.<name>``); if this fails,
        the ``nova/virt/tenant_pin.py`` module is not installed."""
        self.flags(compute_driver=base.DRIVER)
        drv = virt_driver.load_compute_driver(None)
        self.assertIsInstance(drv, tp_driver.TenantPinLibvirtDriver)
        self.start_compute('host1')
        self.assertIsInstance(self.computes['host1'].driver,
                              tp_driver.TenantPinLibvirtDriver)


class TestSpawnDelete(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        self.start_compute('host1')

    def test_many_tenants_on_one_host(self):
        servers = []
        for label, vcpus in [('a', 2), ('b', 2), ('c', 1), ('a', 2),
                             ('d', 2), ('b', 1), ('e', 1)]:
            servers.append((label, self.boot(label, vcpus)))
        tenants = self.manager_of('host1').tenant_map()
        self.assertEqual(
            {self.project(x): n for x, n in
             [('a', 4), ('b', 4), ('c', 2), ('d', 2), ('e', 2)]},
            {t: len(c) for t, c in tenants.items()})
        # Each domain names its tenant's partition and runs on its CPUs.
        domains = self.domains_of('host1')
        for label, server in servers:
            info = domains[server['id']]
            self.assertEqual('/machine/tenant-%s' % self.project(label),
                             info.partition)
            self.assertEqual(self.project(label), info.project_id)
            # Tenant a grew from one core to two in the other cell: its
            # first domain was re-pinned live (vcpupin and emulatorpin).
            self.assertEqual(tenants[self.project(label)],
                             info.all_cpus(frozenset()))
        # No domain was ever started outside its partition.
        self.assertEqual([], [s for s in self.pinning.starts if s[2]])

    def test_odd_totals_strand_threads_reported_to_placement(self):
        self.boot('a', 3)
        self.boot('b', 1)
        # a: 2 cores for 3 vCPUs, b: 1 core for 1 vCPU: 2 threads stranded.
        self.assertEqual(2, self.manager_of('host1').stranded_cpus())
        self._run_periodics()
        inventory = self.placement.get(
            '/resource_providers/%s/inventories' %
            self.compute_rp_uuids['host1']).body['inventories']
        self.assertEqual(2, inventory['VCPU']['reserved'])
        self.assertEqual(14, inventory['VCPU']['total'])
        self.assertInvariants()

    def test_tenant_that_no_longer_fits_fails_cleanly(self):
        # Seven one-core tenants fill the 7 tenant cores.
        for label in 'abcdefg':
            self.boot(label, 2)
        partitions = self.partitions_of('host1')
        claims = self.manager_of('host1').claims()
        server = self.boot('late', 1, expected_state='ERROR')
        self.assertIn('No valid host', server['fault']['message'])
        self.assertEqual(partitions, self.partitions_of('host1'))
        self.assertEqual(claims, self.manager_of('host1').claims())
        self.assertInvariants()

    def test_delete_and_reuse(self):
        first = self.boot('a', 4)
        cpus = self.manager_of('host1').tenant_map()[self.project('a')]
        self._delete_server(first)
        self.assertEqual({}, self.partitions_of('host1'))
        self.assertEqual({}, self.manager_of('host1').claims())
        self.assertInvariants()
        self.boot('b', 4)
        self.assertEqual(cpus, self.manager_of('host1').tenant_map()[
            self.project('b')])

    def test_delete_shrinks_the_tenant(self):
        a1 = self.boot('a', 2)
        self.boot('a', 2)
        self.assertEqual(4, len(self.partitions_of('host1')[
            self.project('a')].cpus))
        self._delete_server(a1)
        self.assertEqual(2, len(self.partitions_of('host1')[
            self.project('a')].cpus))
        self.assertInvariants()

    def test_hard_reboot_and_stop_start_keep_the_tenant_cores(self):
        server = self.boot('a', 2)
        self.boot('b', 3)
        before = self.manager_of('host1').tenant_map()
        self._reboot_server(server, hard=True)
        self.assertInvariants()
        self._stop_server(server)
        self._start_server(server)
        self.assertEqual(before, self.manager_of('host1').tenant_map())
        self.assertInvariants()

    def test_rebuild_stays_in_the_tenant_partition(self):
        server = self.boot('a', 2)
        self.boot('b', 2)
        cpus = self.manager_of('host1').tenant_map()[self.project('a')]
        image = self.api.get_server(server['id'])['image']['id']
        self.api.post_server_action(server['id'],
                                    {'rebuild': {'imageRef': image}})
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(cpus, self.manager_of('host1').tenant_map()[
            self.project('a')])
        info = self.domains_of('host1')[server['id']]
        self.assertEqual('/machine/tenant-%s' % self.project('a'),
                         info.partition)
        self.assertInvariants()


class TestDriverRefusal(base.TenantPinTestBase):

    def setUp(self):
        # Stack rather than spread, so the scheduler tries the fuller host1
        # first and host2 is the alternate.
        self.flags(weight_classes=['nova.scheduler.weights.ram.RAMWeigher'],
                   ram_weight_multiplier=-1.0, group='filter_scheduler')
        super().setUp()
        self.start_compute('host1')

    def test_refusal_in_the_driver_reschedules_and_leaks_nothing(self):
        # Placement counts threads, the driver counts whole cores. Until
        # placement hears of a stranded thread (two builds racing), it may
        # accept an instance that only that thread's tenant could take.
        # Boot such an instance for another tenant on a host with no free
        # core left: the driver refuses with ComputeResourcesUnavailable,
        # Nova reschedules to the second host.
        mgr1 = self.manager_of('host1')
        self.useFixture(fixtures.MockPatchObject(
            mgr1, 'stranded_cpus', return_value=0))
        for label in 'abcdef':
            self.boot(label, 2)
        self.boot('g', 1)
        self.start_compute('host2')
        refused = []
        real_claim = mgr1.claim

        def claim(uuid, *args, **kwargs):
            try:
                return real_claim(uuid, *args, **kwargs)
            except Exception as e:
                refused.append((uuid, e))
                raise
        self.useFixture(fixtures.MockPatchObject(mgr1, 'claim', claim))
        server = self._create_server(
            flavor_id=self._flavor(1), networks='none',
            api=self.tenant('late'))
        self.assertEqual('host2', self.host_of(server))
        self.assertEqual([server['id']], [u for u, e in refused])
        self.assertIsInstance(refused[0][1], exception.TenantDoesNotFit)
        self.assertNotIn(self.project('late'),
                         self.partitions_of('host1'))
        self.assertNotIn(server['id'], self.manager_of('host1').claims())
        self.assertInvariants()


class TestStrictMode(base.TenantPinTestBase):

    PIN_MODE = 'strict'

    def test_strict_pins_fill_siblings_first(self):
        self.start_compute('host1')
        server = self.boot('a', 2)
        info = self.domains_of('host1')[server['id']]
        pinned = set().union(*info.vcpu_pins.values())
        self.assertEqual(2, len(pinned))
        topology = self.manager_of('host1').topology
        self.assertEqual(1, len(topology.cores_of(pinned)))
        self.assertEqual(info.vcpu_cpuset, info.emulator_pins)
