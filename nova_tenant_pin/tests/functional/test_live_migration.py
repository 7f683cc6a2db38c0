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

"""Live migration between two computes with no exposure window.

Modelled on Nova's ``test_numa_live_migration.py``: fakelibvirt's
``migrateToURI3`` is replaced by a stub that checks what the target sees at
the moment its QEMU would start, then starts the target domain from the
destination XML (through the fake's ``createXML``, which refuses a domain
whose partition is missing or too narrow) and completes or fails the job.
"""

import fixtures
from nova.tests.functional.api import client as api_client

from nova_tenant_pin import domain_xml
from nova_tenant_pin import driver as tp_driver
from nova_tenant_pin import exception
from nova_tenant_pin.tests.functional import base


class LiveMigrationBase(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        self.stub_live_migration(self._migrate_stub)
        self.seen = None
        self.fail_migration = False
        self.start_compute('host_a')
        self.start_compute('host_b')

    def _migrate_stub(self, domain, destination, params, flags):
        xml = params['destination_xml']
        info = domain_xml.parse_domain_xml(xml)
        project = info.partition_key
        self.seen = {
            'xml': info,
            'dest_partition': self.partitions_of('host_b').get(project),
            'dest_claim': self.manager_of('host_b').claims().get(info.uuid),
        }
        if self.fail_migration:
            domain.fail_job()
            return
        # The target QEMU starts from the destination XML; the fake refuses
        # it if the partition is missing or the CPUs are outside it.
        dest = self.computes['host_b'].driver._host.get_connection()
        dest.createXML(xml, 0)
        domain.complete_job()

    def _server_on_a(self, label, vcpus):
        return self.boot(label, vcpus, host='host_a')


def live_migrate_refused(test, server, host):
    """Ask for a live migration to ``host`` that its checks refuse: the
    conductor finds no other host and the API says NoValidHost."""
    err = test.assertRaises(
        api_client.OpenStackApiException, test.api.post_server_action,
        server['id'], {'os-migrateLive': {'host': host,
                                          'block_migration': 'auto'}})
    test.assertIn('NoValidHost', str(err))
    return test._wait_for_state_change(server, 'ACTIVE')


class TestLiveMigration(LiveMigrationBase):

    def test_target_partition_exists_before_the_target_domain(self):
        self._server_on_a('b', 2)
        server = self._server_on_a('a', 3)
        self.boot('c', 2, host='host_b')
        a = self.project('a')
        self._live_migrate(server, 'completed', host='host_b')
        self.assertEqual('host_b', self.host_of(server))
        # At the moment the target QEMU started, the tenant's partition
        # existed on the target, with the CPUs the XML names.
        part = self.seen['dest_partition']
        self.assertIsNotNone(part)
        xml = self.seen['xml']
        self.assertEqual('/machine/tenant-%s' % a, xml.partition)
        self.assertEqual(part.cpus, xml.vcpu_cpuset)
        self.assertEqual({}, xml.vcpu_pins)
        self.assertIsNone(xml.emulator_pins)
        self.assertTrue(self.seen['dest_claim'].confirmed)
        # No start anywhere was refused for lack of a partition.
        self.assertEqual([], [s for s in self.pinning.starts if s[2]])
        # The source let go of the tenant's cores; the target holds them.
        self.assertNotIn(a, self.partitions_of('host_a'))
        self.assertNotIn(server['id'], self.manager_of('host_a').claims())
        self.assertIn(a, self.partitions_of('host_b'))
        self.assertFalse(
            self.manager_of('host_b').claims()[server['id']].pending)
        self.assertInvariants()

    def test_source_shrinks_when_the_tenant_stays(self):
        stays = self._server_on_a('a', 2)
        moves = self._server_on_a('a', 2)
        a = self.project('a')
        self.assertEqual(4, len(self.partitions_of('host_a')[a].cpus))
        self._live_migrate(moves, 'completed', host='host_b')
        self.assertEqual(2, len(self.partitions_of('host_a')[a].cpus))
        self.assertIn(stays['id'], self.manager_of('host_a').claims())
        self.assertInvariants()

    def test_rollback_releases_the_target_claim(self):
        server = self._server_on_a('a', 2)
        before_a = self.partitions_of('host_a')
        self.fail_migration = True
        self._live_migrate(server, 'failed', server_expected_state='ACTIVE')
        self.assertEqual('host_a', self.host_of(server))
        # The target had claimed and created the partition...
        self.assertIsNotNone(self.seen['dest_partition'])
        # ...and the rollback gave it all back.
        self.assertEqual({}, self.partitions_of('host_b'))
        self.assertEqual({}, self.manager_of('host_b').claims())
        self.assertEqual(before_a, self.partitions_of('host_a'))
        self.assertInvariants()

    def test_target_without_room_refuses_in_its_check(self):
        server = self._server_on_a('x', 1)
        # Placement is told no stranded threads on host_b, so it lets the
        # request through; the target's own check must refuse.
        self.useFixture(fixtures.MockPatchObject(
            self.manager_of('host_b'), 'stranded_cpus', return_value=0))
        for label in 'abcdef':
            self.boot(label, 2, host='host_b')
        self.boot('g', 1, host='host_b')
        partitions_b = self.partitions_of('host_b')
        mgr_b = self.manager_of('host_b')
        refused = []
        real_claim = mgr_b.claim_incoming_migration

        def claim(uuid, *args, **kwargs):
            try:
                return real_claim(uuid, *args, **kwargs)
            except exception.TenantDoesNotFit as e:
                refused.append(e)
                raise
        self.useFixture(fixtures.MockPatchObject(
            mgr_b, 'claim_incoming_migration', claim))
        live_migrate_refused(self, server, 'host_b')
        self.assertEqual(1, len(refused))
        self.assertEqual('host_a', self.host_of(server))
        self.assertEqual(partitions_b, self.partitions_of('host_b'))
        self.assertNotIn(server['id'], self.manager_of('host_b').claims())
        self.assertIsNone(self.seen)
        self.assertInvariants()

    def test_check_cleanup_keeps_an_accepted_claim(self):
        """Nova calls cleanup_live_migration_destination_check after every
        destination check, also a successful one: the claim must survive
        it, or the target would lose the tenant's partition mid-flight."""
        server = self._server_on_a('a', 2)
        self._live_migrate(server, 'completed', host='host_b')
        self.assertIsNotNone(self.seen['dest_claim'])
        self.assertIn(self.project('a'), self.partitions_of('host_b'))


class TestStrictLiveMigration(LiveMigrationBase):

    PIN_MODE = 'strict'

    def test_source_pins_dropped_and_target_pins_applied_on_arrival(self):
        self.boot('b', 1, host='host_b')
        server = self._server_on_a('a', 2)
        src = self.domains_of('host_a')[server['id']]
        self.assertEqual(2, len(src.vcpu_pins))
        self._live_migrate(server, 'completed', host='host_b')
        # The destination XML carried no pin of the source...
        self.assertEqual({}, self.seen['xml'].vcpu_pins)
        # ...and post_live_migration_at_destination pinned each vCPU live
        # to one CPU of the tenant's cores on the target.
        dst = self.domains_of('host_b')[server['id']]
        pins = self.manager_of('host_b').pins_for(server['id'])
        self.assertEqual(pins.vcpu_pins, dst.vcpu_pins)
        self.assertTrue(all(len(c) == 1 for c in dst.vcpu_pins.values()))
        self.assertInvariants()


class _StockTarget(base.TenantPinTestBase):
    """host_a runs this driver, host_b Nova's stock LibvirtDriver; the
    migration stub records the destination XML."""

    #: Whether the source cleans up as it does without shared storage.
    SOURCE_CLEANS_UP = False

    def setUp(self):
        super().setUp()
        self._configure()
        self.stub_live_migration(self._migrate_stub,
                                 cleanup=self.SOURCE_CLEANS_UP)
        self.start_compute('host_a')
        self.flags(compute_driver='libvirt.LibvirtDriver')
        self.start_compute('host_b')
        self.flags(compute_driver=base.DRIVER)
        self.dest_xml = None

    def _configure(self):
        """Flags and patches before the computes start."""


class TestUnisolatedTarget(_StockTarget):
    """host_b runs Nova's stock LibvirtDriver without cpu_shared_set."""

    SOURCE_CLEANS_UP = True

    def _configure(self):
        self.flags(cpu_shared_set=None, group='compute')
        self.flags(housekeeping_cpus='0-1', group='tenant_pin')

    def _migrate_stub(self, domain, destination, params, flags):
        self.dest_xml = params['destination_xml']
        dest = self.computes['host_b'].driver._host.get_connection()
        dest.createXML(self.dest_xml, 0)
        domain.complete_job()

    def test_refused_by_default(self):
        server = self.boot('a', 2, host='host_a')
        check = self.useFixture(fixtures.MockPatchObject(
            tp_driver.TenantPinLibvirtDriver,
            'check_can_live_migrate_source', autospec=True,
            side_effect=tp_driver.TenantPinLibvirtDriver.
            check_can_live_migrate_source)).mock
        live_migrate_refused(self, server, 'host_b')
        self.assertEqual('host_a', self.host_of(server))
        self.assertIsNone(self.dest_xml)
        # The source's check is what refused, naming the option.
        self.assertEqual(1, check.call_count)
        self.assertIn(self.project('a'), self.partitions_of('host_a'))

    def test_allowed_by_option_leaves_partition_and_pins_behind(self):
        self.flags(allow_migration_to_unisolated_hosts=True,
                   group='tenant_pin')
        server = self.boot('a', 2, host='host_a')
        self._live_migrate(server, 'completed', host='host_b')
        info = domain_xml.parse_domain_xml(self.dest_xml)
        self.assertIsNone(info.partition)
        self.assertIsNone(info.vcpu_cpuset)
        self.assertEqual({}, info.vcpu_pins)
        self.assertEqual({}, self.partitions_of('host_a'))


class TestStockTargetWithSharedSet(_StockTarget):
    """host_b runs Nova's stock LibvirtDriver with a cpu_shared_set: its
    destination check reports CPUs like ours, so only the placement trait
    tells the source it keeps no tenant apart."""

    def _migrate_stub(self, domain, destination, params, flags):
        self.dest_xml = params['destination_xml']
        domain.complete_job()

    def test_trait_reported_by_tenant_pin_hosts_only(self):
        def traits(host):
            return self.placement.get(
                '/resource_providers/%s/traits' %
                self.compute_rp_uuids[host], version='1.6').body['traits']
        self.assertIn(tp_driver.TRAIT, traits('host_a'))
        self.assertNotIn(tp_driver.TRAIT, traits('host_b'))

    def test_refused_before_the_guest_moves(self):
        server = self.boot('a', 2, host='host_a')
        self._live_migrate(server, 'failed', host='host_b',
                           server_expected_state='ACTIVE')
        self.assertEqual('host_a', self.host_of(server))
        self.assertIsNone(self.dest_xml)
        self.assertIn(self.project('a'), self.partitions_of('host_a'))
        self.assertInvariants()
