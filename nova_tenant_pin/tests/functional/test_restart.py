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

"""Compute restarts with running guests, and the periodic reconcile."""

import dataclasses
from unittest import mock

from nova_tenant_pin.tests import fakes
from nova_tenant_pin.tests.functional import base


class TestRestart(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        self.start_compute('host1')
        self.servers = [self.boot('a', 3), self.boot('b', 2),
                        self.boot('a', 1), self.boot('c', 5)]

    def _instance_cpus(self, host):
        return {u: i['cpus'] for u, i in
                self.manager_of(host).snapshot()['instances'].items()}

    def test_restart_rebuilds_the_map_identically(self):
        before = self.manager_of('host1').snapshot()
        xmls = {u: d for u, d in self.domains_of('host1').items()}
        self.restart_compute_service('host1')
        after = self.manager_of('host1').snapshot()
        self.assertEqual(before['tenants'], after['tenants'])
        self.assertEqual(
            {u: i['cpus'] for u, i in before['instances'].items()},
            {u: i['cpus'] for u, i in after['instances'].items()})
        # Nothing was re-pinned or moved: the domains are as they were.
        self.assertEqual(xmls, self.domains_of('host1'))
        self.assertInvariants()
        # And the host keeps working: a delete shrinks as before.
        self._delete_server(self.servers[2])
        self.assertInvariants()

    def test_restart_repairs_drift_and_names_what_it_repaired(self):
        parts = self.tp_partitions['host1']
        a, b = self.project('a'), self.project('b')
        # Drift while nova-compute was down: b's partition widened over one
        # of a's cores, and a guest of a was re-pinned onto it.
        stolen = sorted(parts.partitions[a].cpus)[:2]
        parts.partitions[b] = dataclasses.replace(
            parts.partitions[b], cpus=parts.partitions[b].cpus | set(stolen))
        conn = self.computes['host1'].driver._host.get_connection()
        dom = conn.lookupByUUIDString(self.servers[1]['id'])
        dom.tp_xml = fakes.set_pin_in_xml(dom.tp_xml, frozenset(stolen), 0)
        self.assertRaises(AssertionError, self.assertInvariants)
        with mock.patch('nova_tenant_pin.manager.LOG') as log:
            self.restart_compute_service('host1')
        self.assertInvariants()
        logged = ' '.join(str(c) for c in log.warning.call_args_list)
        self.assertIn('tenant %s' % b, logged)
        self.assertIn('instance %s of tenant %s' % (self.servers[1]['id'], b),
                      logged)

    def test_periodic_reconcile_repairs_a_lost_partition(self):
        self.flags(reconcile_interval=60, group='tenant_pin')
        a = self.project('a')
        cpus = self.tp_partitions['host1'].partitions[a].cpus
        del self.tp_partitions['host1'].partitions[a]
        driver = self.computes['host1'].driver
        # Not yet due: nothing happens (however long the test ran so far).
        with mock.patch('nova_tenant_pin.driver.time.monotonic',
                        return_value=driver._tp_last_reconcile + 59):
            self._run_periodics()
        self.assertNotIn(a, self.partitions_of('host1'))
        with mock.patch('nova_tenant_pin.driver.time.monotonic',
                        return_value=driver._tp_last_reconcile + 61):
            self._run_periodics()
        self.assertEqual(cpus, self.partitions_of('host1')[a].cpus)
        self.assertInvariants()
