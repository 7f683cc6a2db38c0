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

"""A resize or cold migration is claimed on its target before the source
powers the guest off (Nova's prep_resize on the target): a target where
the tenant has no room for the new flavor refuses it there, and the guest
keeps running on its source."""

from nova import exception
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional.api import client as api_client

from nova_tenant_pin.tests.functional import base


class TestResizeFit(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        self.notifier = self.useFixture(nova_fixtures.NotificationFixture(
            self))
        self.start_compute('host_a')
        self.start_compute('host_b')
        # The source's power off (migrate_disk_and_power_off) records what
        # host_b holds at that moment, and fails with ``source_error``.
        self.powered_off = []
        self.source_error = None
        self.stub_cold_migration()

    def _power_off_source(self, context, instance, *args, **kwargs):
        claim = self.manager_of('host_b').claims().get(instance.uuid)
        self.powered_off.append((instance.uuid, instance.host, claim and (
            claim.vcpus, claim.pending)))
        if self.source_error is not None:
            raise self.source_error
        return super()._power_off_source(context, instance, *args, **kwargs)

    def _fill_host_b(self):
        """Tenants b, c and d take 3 vCPUs each on host_b: 6 of its 7
        tenant cores (a stranded thread each). Placement still counts 5
        free VCPUs there until the next resource update reports the
        stranded threads."""
        for label in 'bcd':
            self.boot(label, 3, host='host_b')

    def _settled(self, server):
        return self._wait_for_server_parameter(server, {
            'OS-EXT-STS:task_state': None}, api=self.api)

    def test_a_target_without_room_refuses_before_the_source_powers_off(
            self):
        """host_b has one free core; a's 2-vCPU guest on host_a resized to
        3 vCPUs needs two there. host_b refuses in prep_resize: the guest
        is never powered off, stays ACTIVE on host_a with its flavor, and
        host_b holds nothing for it. Without the check there, the source
        powers the guest off, host_b's finish_migration refuses, and the
        instance ends in ERROR on host_b."""
        server = self.boot('a', 2, host='host_a')
        self._fill_host_b()
        a = self.project('a')
        before = self.partitions_of('host_a')[a].cpus
        try:
            self.api.post_server_action(
                server['id'], {'resize': {'flavorRef': self._flavor(3)}})
        except api_client.OpenStackApiException:
            # Casts are calls in the harness: the rescheduled resize's
            # NoValidHost may come back to the API.
            pass
        server = self._settled(server)
        self.assertEqual([], self.powered_off)
        self.assertEqual(('ACTIVE', 'host_a', 2), (
            server['status'], server['OS-EXT-SRV-ATTR:host'],
            server['flavor']['vcpus']))
        self.assertTrue(self.domains_of('host_a')[server['id']].active)
        self.assertEqual(before, self.partitions_of('host_a')[a].cpus)
        self.assertNotIn(server['id'], self.manager_of('host_b').claims())
        self.assertNotIn(a, self.partitions_of('host_b'))
        self.assertNotIn(server['id'], self.domains_of('host_b', False))
        self.assertEqual(['error'], [m['status'] for m in
                                     self.api.get_migrations()])
        self.assertInvariants()

    def test_the_target_claims_before_the_power_off_and_keeps_it(self):
        """The claim on host_b exists (pending, the new flavor's vCPUs)
        when the source powers the guest off; the guest arrives into it,
        and after the confirm it is the guest's only room."""
        server = self.boot('a', 2, host='host_a')
        self.boot('b', 3, host='host_b')
        server = self._resize_server(server, self._flavor(3))
        self.assertEqual([(server['id'], 'host_a',
                           (3, True))], self.powered_off)
        self.assertEqual('host_b', server['OS-EXT-SRV-ATTR:host'])
        self.assertFalse(self.manager_of('host_b').claims()[
            server['id']].pending)
        self._confirm_resize(server)
        self.assertEqual({}, self.manager_of('host_a').claims())
        self.assertEqual(3, self.manager_of('host_b').claims()[
            server['id']].vcpus)
        self.assertInvariants()

    def test_a_resize_failing_on_the_source_releases_the_target_claim(self):
        """The source fails the resize after host_b claimed (its power off
        fails): the guest stays on host_a, and host_b releases the claim
        by its next resource update at the latest (the migration ended in
        error, so no guest will arrive)."""
        server = self.boot('a', 2, host='host_a')
        self.source_error = exception.InstanceFaultRollback(
            inner_exception=exception.ResizeError(reason='disk copy failed'))
        try:
            self.api.post_server_action(
                server['id'], {'resize': {'flavorRef': self._flavor(3)}})
        except api_client.OpenStackApiException:
            pass
        server = self._settled(server)
        self.assertEqual([(server['id'], 'host_a',
                           (3, True))], self.powered_off)
        # The guest runs on host_a. (Its status: in a cloud the source's
        # error ends the resize there, ACTIVE; the harness makes Nova's
        # casts calls, so the error also comes back into host_b's
        # prep_resize, whose reschedule finds no host and sets ERROR.)
        self.assertEqual('host_a', server['OS-EXT-SRV-ATTR:host'])
        self.assertTrue(self.domains_of('host_a')[server['id']].active)
        self._run_periodics()
        self.assertNotIn(server['id'], self.manager_of('host_b').claims())
        self.assertEqual({}, self.partitions_of('host_b'))
        self.assertEqual(2, self.manager_of('host_a').claims()[
            server['id']].vcpus)
        self.assertInvariants()
