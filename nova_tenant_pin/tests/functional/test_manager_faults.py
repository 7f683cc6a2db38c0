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

"""Libvirt failing the way it really fails, inside the manager's changes.

Scenarios 1, 2 and 7 of the fault model: the manager plans from what the
kernel and libvirt hold after a failed step (1), leaves domains with a
migration job alone (2), and confines I/O threads on every path (7).
"""

from nova.tests.fixtures import libvirt as fakelibvirt

from nova_tenant_pin.tests.functional import base
from nova_tenant_pin.tests.functional import test_migration_faults
from nova_tenant_pin.tests.functional import test_rollout
from nova_tenant_pin.tests.functional import truth


def assert_no_shared_core(test):
    """The independent checker: every QEMU thread counted."""
    errors = []
    for host, compute in test.computes.items():
        if getattr(compute.driver, 'tenant_pin', None) is None:
            continue
        errors += truth.core_violations(
            host, compute.driver, test.partitions_of(host))
    test.assertEqual([], errors)


class TestFailedStepThenAnotherTenant(base.TenantPinTestBase):
    """Scenario 1: a transition fails half way (libvirt: "domain is not
    running", for a guest Nova is destroying at that moment); then
    another tenant boots and must not get a core that a thread of the
    first tenant can still run on."""

    CAST_AS_CALL = False

    def test_next_tenant_gets_no_core_the_first_can_still_use(self):
        self.start_compute('host1')
        a1 = self.boot('a', 2)
        a2 = self.boot('a', 2)
        first = []

        def not_running(dom, what):
            # The grow re-pins a's guests one after the other: the second
            # one is being destroyed by Nova.
            uuid = dom.UUIDString()
            if uuid not in (a1['id'], a2['id']):
                return
            if not first:
                first.append(uuid)
            if uuid != first[0]:
                raise base.libvirt_error(
                    fakelibvirt.VIR_ERR_OPERATION_INVALID,
                    'Requested operation is not valid: domain is not '
                    'running')
        self.pinning.fault = not_running
        self.boot('a', 2, expected_state='ERROR')
        self.assertTrue(first)
        self.pinning.fault = None
        self.boot('b', 2)
        assert_no_shared_core(self)
        self.assertInvariants(check_fewest_cores=False)


class TestIncomingMigrationJob(test_migration_faults.MigrationFaultsBase):
    """Scenario 2: while a guest migrates in, libvirt holds its async
    migration job; a live pin waits about 30 s for the state change lock
    and fails. The target's reconcile and other tenants' claims must plan
    around that domain (its room is reserved by the incoming claim) and
    never touch it."""

    PIN_MODE = 'strict'

    def _migrate_stub(self, domain, destination, params, flags):
        xml = params['destination_xml']
        host = next(h for h in self.HOSTS if h in destination)
        self.dest_xml[host] = xml
        conn = self.computes[host].driver._host.get_connection()
        conn.createXML(xml, 0)
        uuid = domain.UUIDString()
        target = conn.lookupByUUIDString(uuid)
        target.tp_migration_job = True
        try:
            # The target's periodic reconcile, and another tenant's claim,
            # while the job runs.
            try:
                self.computes[host].driver._tp_reconcile()
            except Exception as e:
                self.errors.append(e)
            try:
                self.manager_of(host).claim(
                    'c0ffee00-0000-4000-8000-000000000001',
                    self.project('c'), 2)
            except Exception as e:
                self.errors.append(e)
        finally:
            target.tp_migration_job = False
        domain.complete_job()

    def test_migrating_domain_is_not_touched(self):
        self.errors = []
        self.boot('b', 1, host='host_b')
        server = self.boot('a', 2, host='host_a')
        self._live_migrate(server, 'completed', host='host_b')
        self.assertEqual('host_b', self.host_of(server))
        self.assertEqual([], self.pinning.touched)
        self.assertEqual([], self.errors)
        assert_no_shared_core(self)


class TestIOThreadsConfined(test_rollout.RolloutBase):
    """Scenario 7: I/O threads (``<iothreads>``; Nova gives every guest
    one) run on the key's cores like vCPU and emulator threads, after
    adoption too. The independent checker counts them."""

    def test_checker_counts_io_threads(self):
        self.start_compute('host1')
        server = self.boot('a', 2)
        guest = truth.host_guests(self.computes['host1'].driver)[
            server['id']][0]
        self.assertIn('iothread1', guest.threads)

    def test_adopted_guests_io_threads_are_confined(self):
        self.flags(compute_driver=test_rollout.STOCK)
        self.start_compute('host1')
        self.flags(compute_driver=base.DRIVER)
        for label, vcpus in (('a', 3), ('b', 2), ('c', 4)):
            self.boot(label, vcpus)
        self.switch('host1', base.DRIVER)
        self.assertTrue(self.manager_of('host1').isolation()['isolated'])
        assert_no_shared_core(self)
