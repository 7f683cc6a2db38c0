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

"""Resize, cold migration, evacuate and shelve across two computes."""

from unittest import mock

from nova.tests import fixtures as nova_fixtures
from nova.tests.fixtures import libvirt as fakelibvirt

from nova_tenant_pin.tests.functional import base


class TestMove(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        self.notifier = self.useFixture(nova_fixtures.NotificationFixture(
            self))
        self.start_compute('host_a')
        self.start_compute('host_b')
        self.stub_cold_migration()

    def _other(self, host):
        return 'host_b' if host == 'host_a' else 'host_a'

    def test_resize_confirm_moves_the_claim(self):
        server = self.boot('a', 2, host='host_a')
        a = self.project('a')
        server = self._resize_server(server, self._flavor(4))
        dest = self.host_of(server)
        self.assertEqual('host_b', dest)
        # During VERIFY_RESIZE the target holds the new size and the source
        # keeps the old one, for a revert.
        self.assertEqual(4, len(self.partitions_of('host_b')[a].cpus))
        self.assertIn(a, self.partitions_of('host_a'))
        self.assertInvariants()
        self._confirm_resize(server)
        self.assertNotIn(a, self.partitions_of('host_a'))
        self.assertEqual({}, self.manager_of('host_a').claims())
        self.assertEqual(4, self.manager_of('host_b').claims()[
            server['id']].vcpus)
        self.assertInvariants()

    def test_resize_revert_restores_the_source(self):
        server = self.boot('a', 2, host='host_a')
        a = self.project('a')
        before = self.partitions_of('host_a')[a].cpus
        server = self._resize_server(server, self._flavor(4))
        # A periodic reconcile while the resize waits must not take the
        # source's room away: Nova still places the migration there.
        driver = self.computes['host_a'].driver
        self.flags(reconcile_interval=60, group='tenant_pin')
        with mock.patch('nova_tenant_pin.driver.time.monotonic',
                        return_value=driver._tp_last_reconcile + 61):
            self._run_periodics()
        self.assertEqual(before, self.partitions_of('host_a')[a].cpus)
        self._revert_resize(server)
        self.assertEqual('host_a', self.host_of(server))
        self.assertEqual(before, self.partitions_of('host_a')[a].cpus)
        self.assertEqual({}, self.partitions_of('host_b'))
        self.assertEqual({}, self.manager_of('host_b').claims())
        self.assertEqual(2, self.manager_of('host_a').claims()[
            server['id']].vcpus)
        self.assertInvariants()

    def test_cold_migration_confirm(self):
        server = self.boot('a', 3, host='host_a')
        server = self._migrate_server(server)
        self.assertEqual('host_b', self.host_of(server))
        self._confirm_resize(server)
        self.assertEqual({}, self.partitions_of('host_a'))
        self.assertIn(self.project('a'), self.partitions_of('host_b'))
        self.assertInvariants()

    def test_cold_migration_survives_a_guest_that_fails_a_live_pin(self):
        """The target's claim grows a's cores there and re-pins a's guest
        already on it; that live pin fails once ("domain is not running",
        as for a guest Nova is destroying at that moment). The claim is
        planned again from what the host holds and the migration arrives;
        without that the instance ends in ERROR on the target and the
        source keeps its room."""
        here = self.boot('a', 2, host='host_b')
        server = self.boot('a', 2, host='host_a')
        failed = []

        def not_running_once(dom, what):
            if dom.UUIDString() == here['id'] and not failed:
                failed.append(what)
                raise base.libvirt_error(
                    fakelibvirt.VIR_ERR_OPERATION_INVALID,
                    'Requested operation is not valid: domain is not '
                    'running')
        self.pinning.fault = not_running_once
        server = self._migrate_server(server)
        self.assertEqual(['pin'], failed)
        self.assertEqual(('VERIFY_RESIZE', 'host_b'),
                         (server['status'], self.host_of(server)))
        self._confirm_resize(server)
        self.assertEqual({}, self.partitions_of('host_a'))
        self.assertEqual({}, self.manager_of('host_a').claims())
        self.assertEqual(4, len(self.partitions_of('host_b')[
            self.project('a')].cpus))
        self.assertInvariants()

    def test_evacuate_claims_on_the_new_host_and_the_old_one_releases(self):
        server = self.boot('a', 2, host='host_a')
        self.boot('b', 2, host='host_a')
        a = self.project('a')
        self.computes['host_a'].stop()
        self.api.put_service_force_down(
            self.api.get_services(host='host_a',
                                  binary='nova-compute')[0]['id'], True)
        # Since microversion 2.95 an evacuated instance arrives stopped.
        server = self._evacuate_server(server, expected_host='host_b',
                                       expected_state='SHUTOFF')
        self.assertIn(a, self.partitions_of('host_b'))
        self.assertIn(server['id'], self.manager_of('host_b').claims())
        # The old host comes back: Nova destroys the evacuated guest there,
        # and the tenant's cores are released.
        self.restart_compute_service('host_a')
        self.assertNotIn(a, self.partitions_of('host_a'))
        self.assertNotIn(server['id'], self.manager_of('host_a').claims())
        self.assertIn(self.project('b'), self.partitions_of('host_a'))
        self.assertInvariants()

    def test_shelve_offload_releases_and_unshelve_claims_again(self):
        server = self.boot('a', 2)
        host = self.host_of(server)
        a = self.project('a')
        self._shelve_server(server)
        self.assertNotIn(a, self.partitions_of(host))
        self.assertEqual({}, self.manager_of(host).claims())
        server = self._unshelve_server(server)
        self.assertIn(a, self.partitions_of(self.host_of(server)))
        self.assertInvariants()
