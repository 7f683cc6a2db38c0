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

"""Faults in the middle of a transition, through the real API.

Each step of a change (partition writes, live pins) fails once; the host
must stay safe (invariants 1 and 2), no guest is destroyed, and the
periodic reconcile then finishes the change (invariant 3 too). The manager
level test in ``unit/test_manager.py`` raises at every step of a
transition; these check that Nova's operations survive it.
"""

from unittest import mock

from nova.tests.fixtures import libvirt as fakelibvirt

from nova_tenant_pin.tests.functional import base


class FaultOnce(object):
    def __init__(self, step):
        self.step = step
        self.fired = None

    def __call__(self, name):
        if self.fired is None and name == self.step:
            self.fired = name
            raise RuntimeError('injected fault in %s' % name)


class FaultAlways(object):
    def __init__(self, step):
        self.step = step
        self.fired = 0

    def __call__(self, name):
        if name == self.step:
            self.fired += 1
            raise RuntimeError('injected fault in %s' % name)


class TestFaults(base.TenantPinTestBase):

    # Real casts: a fault logged inside a delete runs in the compute's own
    # request, not inside the API request's database transaction.
    CAST_AS_CALL = False

    def setUp(self):
        super().setUp()
        self.flags(reconcile_interval=3600, group='tenant_pin')
        self.start_compute('host1')
        self.a1 = self.boot('a', 2)
        self.a2 = self.boot('a', 2)
        self.b = self.boot('b', 3)

    def _reconcile_now(self):
        driver = self.computes['host1'].driver
        with mock.patch('nova_tenant_pin.driver.time.monotonic',
                        return_value=driver._tp_last_reconcile + 3601):
            self._run_periodics()

    def _running(self):
        return set(self.domains_of('host1'))

    def test_delete_survives_a_failed_shrink(self):
        fault = FaultOnce('set_partition_cpus')
        self.tp_partitions['host1'].faults = fault
        self._delete_server(self.a1)
        self.assertEqual('set_partition_cpus', fault.fired)
        # Safe but not yet minimal: a still holds two cores.
        self.assertInvariants(check_fewest_cores=False)
        self.assertEqual({self.a2['id'], self.b['id']}, self._running())
        self._reconcile_now()
        self.assertEqual(2, len(self.partitions_of('host1')[
            self.project('a')].cpus))
        self.assertInvariants()

    def test_boot_with_a_partition_create_failed_once_is_claimed_again(self):
        fault = FaultOnce('ensure_partition')
        self.tp_partitions['host1'].faults = fault
        server = self.boot('c', 1)
        self.assertEqual('ensure_partition', fault.fired)
        self.assertIn(server['id'], self.manager_of('host1').claims())
        self.assertIn(self.project('c'), self.partitions_of('host1'))
        self.assertInvariants()

    def test_boot_with_a_failed_partition_create_leaks_nothing(self):
        fault = FaultAlways('ensure_partition')
        self.tp_partitions['host1'].faults = fault
        server = self.boot('c', 1, expected_state='ERROR')
        self.assertLessEqual(
            self.computes['host1'].driver._TP_CHANGE_ATTEMPTS, fault.fired)
        self.tp_partitions['host1'].faults = None
        self.assertNotIn(server['id'], self.manager_of('host1').claims())
        self.assertNotIn(self.project('c'), self.partitions_of('host1'))
        self.assertEqual({self.a1['id'], self.a2['id'], self.b['id']},
                         self._running())
        self._reconcile_now()
        self.assertInvariants()


class TestStrictFaults(base.TenantPinTestBase):

    PIN_MODE = 'strict'
    CAST_AS_CALL = False

    def test_delete_survives_a_failed_live_repin(self):
        """In strict mode a delete re-packs the tenant's other guests'
        pins live; the first pin fails."""
        self.flags(reconcile_interval=3600, group='tenant_pin')
        self.start_compute('host1')
        c1 = self.boot('c', 1)
        c2 = self.boot('c', 1)
        self.boot('d', 2)
        before = self.domains_of('host1')[c2['id']].vcpu_pins
        fault = FaultOnce('pin')
        real = fakelibvirt.Domain.pinVcpuFlags

        def failing_pin(dom, *args):
            fault('pin')
            return real(dom, *args)
        with mock.patch('nova.tests.fixtures.libvirt.Domain.pinVcpuFlags',
                        failing_pin):
            self._delete_server(c1)
        self.assertEqual('pin', fault.fired)
        self.assertEqual(before, self.domains_of('host1')[c2['id']].vcpu_pins)
        self.assertInvariants()
        self.assertEqual(2, len(self.domains_of('host1')))
        driver = self.computes['host1'].driver
        with mock.patch('nova_tenant_pin.driver.time.monotonic',
                        return_value=driver._tp_last_reconcile + 3601):
            self._run_periodics()
        self.assertNotEqual(before,
                            self.domains_of('host1')[c2['id']].vcpu_pins)
        self.assertEqual(self.manager_of('host1').pins_for(c2['id']).vcpu_pins,
                         self.domains_of('host1')[c2['id']].vcpu_pins)
        self.assertInvariants()
