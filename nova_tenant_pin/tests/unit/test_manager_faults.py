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

"""The manager under libvirt's real failures: a guest that stops running
in the middle of a change, a guest held by a live migration job, and I/O
threads. The doubles refuse what libvirt and the kernel refuse
(``tests/fakes.py``); the checker reads the domains' XML and the
partitions, never the manager's state."""

from nova_tenant_pin import guests
from nova_tenant_pin.tests import fakes
from nova_tenant_pin.tests.unit import test_manager
from nova_tenant_pin.tests.unit import test_manager_policy

uuid = test_manager.uuid

NOT_RUNNING = ('Requested operation is not valid: domain is not running')
LOCK = ('Timed out during operation: cannot acquire state change lock (held '
        'by monitor=remoteDispatchDomainMigratePrepare3Params)')


class TestFailedStepThenAnotherTenant(test_manager.ManagerTestCase):

    def test_another_tenant_never_gets_a_core_a_failed_change_left(self):
        """Tenant a grows; one of its guests cannot be re-pinned (Nova is
        destroying it: 'domain is not running'). The claim fails. Tenant b
        then boots: it must not get a core a thread of a can still run
        on. If this fails, the manager planned b from the map it meant to
        reach, not from what the host holds."""
        a1 = self.spawn('a', 2)
        dom = self.conn.domains[a1]

        def not_running(*args):
            raise fakes.FakeLibvirtError(NOT_RUNNING)
        dom.pinVcpuFlags = not_running
        self.assertRaises(fakes.FakeLibvirtError, self.mgr.claim, uuid(),
                          'a', 2)
        # a's partition was widened before the pin failed.
        widened = self.partitions.list_partitions()['a'].cpus
        self.assertEqual(4, len(widened))
        for _ in range(3):
            self.spawn('b', 2)
        self.assertFalse(self.partitions.list_partitions()['b'].cpus &
                         self.partitions.list_partitions()['a'].cpus)
        self.assertInvariants(check_fewest_cores=False)
        # The guest is gone now; the next reconcile makes a minimal again.
        del dom.pinVcpuFlags
        self.delete(a1)
        self.mgr.reconcile()
        self.assertNotIn('a', self.partitions.list_partitions())
        self.assertInvariants()

    def test_a_failed_release_leaves_nothing_for_another_tenant(self):
        """A delete shrinks tenant a; the re-pin of a's other guest fails
        once. Tenants that boot next get no core a's guest runs on."""
        a1 = self.spawn('a', 2)
        a2 = self.spawn('a', 2)
        dom = self.conn.domains[a2]
        failed = []

        def not_running_once(*args):
            if not failed:
                failed.append(args)
                raise fakes.FakeLibvirtError(NOT_RUNNING)
            del dom.pinVcpuFlags
            return dom.pinVcpuFlags(*args)
        dom.pinVcpuFlags = not_running_once
        self.conn.remove(a1)
        self.assertRaises(fakes.FakeLibvirtError, self.mgr.release, a1)
        self.assertNotIn(a1, self.mgr.claims())
        for _ in range(4):
            self.spawn('b', 2)
        b_cpus = self.partitions.list_partitions()['b'].cpus
        self.assertFalse(b_cpus & dom.info.all_cpus(self.topology.online_cpus))
        self.assertInvariants()


class TestMigrationJob(test_manager.ManagerTestCase):

    def _incoming(self, project, vcpus):
        """A guest arriving by live migration: claimed, its domain defined
        in its partition, libvirt's migration job holding it."""
        inst = uuid()
        pins = self.mgr.claim_incoming_migration(inst, project, vcpus)
        self.mgr.confirm_incoming_migration(inst)
        dom = self.conn.start(fakes.domain_xml(
            inst, vcpus, project=project, partition=pins.partition,
            cpuset=pins.cpus))
        dom.job = {'type': guests.VIR_DOMAIN_JOB_UNBOUNDED,
                   'operation': guests.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN}
        return inst, dom

    def test_nothing_touches_a_domain_with_a_migration_job(self):
        """While a guest migrates in, claims of other tenants and the
        periodic reconcile neither pin nor re-meta it (libvirt would fail
        after ~30 s: 'cannot acquire state change lock'), and nobody gets
        its cores."""
        self.spawn('a', 2)
        inst, dom = self._incoming('m', 3)
        held = dom.info.all_cpus(self.topology.online_cpus)
        calls = len(self.conn.pin_calls)
        for project in ('b', 'c', 'a'):
            self.spawn(project, 2)
        self.mgr.reconcile()
        self.assertEqual([], [c for c in self.conn.pin_calls[calls:]
                              if c[0] == inst])
        self.assertEqual(held, dom.info.all_cpus(self.topology.online_cpus))
        self.assertTrue(self.mgr.claims()[inst].pending)
        self.assertInvariants(check_fewest_cores=False)
        # The job ends; Nova says the guest arrived: it gets its pins.
        dom.job = None
        self.mgr.domain_started(inst)
        self.assertFalse(self.mgr.claims()[inst].pending)
        self.assertInvariants()

    def test_a_settings_change_waits_for_the_job(self):
        """A guest held by a job (here an outgoing live migration) keeps
        its key until the job ends, even when the per-project settings
        give it another: its metadata cannot be set meanwhile."""
        inst = self.spawn('m', 2)
        dom = self.conn.domains[inst]
        dom.job = {'type': guests.VIR_DOMAIN_JOB_UNBOUNDED,
                   'operation': guests.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT}
        other = self.mgr.policy_of('other')
        repairs = self.mgr.reconcile(policies={inst: other})
        self.assertIn('once its job ends', '\n'.join(repairs))
        self.assertEqual('m', dom.info.isolation_key)
        self.assertInvariants()
        dom.job = None
        self.mgr.reconcile(policies={inst: other})
        self.assertEqual('other', dom.info.isolation_key)
        self.assertInvariants(check_fewest_cores=False)


class TestFailedMetadata(test_manager_policy.PolicyTestCase):

    def test_a_guest_takes_new_cores_only_once_its_new_key_is_recorded(self):
        """p1 and p2 join one isolation group (SIGHUP): their guests take
        the group's key (their metadata) and then its cores. When the
        metadata of p2's guest cannot be written (a migration's job took
        it after the read: 'cannot acquire state change lock'), the change
        stops there: the guest must not move onto the group's cores while
        the host still records it under p2, or the host (as any reader of
        it sees it) has a core reachable by two keys. The next reconcile
        finishes the change."""
        a = self.spawn_with('p1', 1)
        b = self.spawn_with('p2', 1)
        self.spawn_with('p3', 3)
        dom = self.conn.domains[b]
        before = dom.info.all_cpus(test_manager_policy.ONLINE)

        def locked(*args, **kwargs):
            raise fakes.FakeLibvirtError(LOCK)
        dom.setMetadata = locked
        self.mgr.update_settings(test_manager_policy.groups(
            acme=['p1', 'p2']))
        self.assertRaises(fakes.FakeLibvirtError, self.mgr.reconcile)
        self.assertEqual('p2', dom.info.key)
        self.assertEqual(before, dom.info.all_cpus(
            test_manager_policy.ONLINE))
        self.assertInvariants(check_fewest_cores=False)
        del dom.setMetadata
        self.mgr.reconcile()
        for inst in (a, b):
            self.assertEqual('group-acme', self.conn.domains[inst].info.key)
        self.assertEqual(self.cores_of(a), self.cores_of(b))
        self.assertInvariants()


class TestIOThreads(test_manager.ManagerTestCase):

    def test_adoption_pins_io_threads(self):
        """A guest started without tenant-pin has an I/O thread that may
        run on any CPU; adopting it confines the I/O thread too."""
        inst = uuid()
        self.conn.start(fakes.domain_xml(inst, 2, project='p1', iothreads=2))
        self.spawn('p2', 2)
        self.mgr.reconcile()
        info = self.conn.domains[inst].info
        key_cpus = self.mgr.tenant_map()['p1']
        for iothread in (1, 2):
            self.assertEqual(key_cpus,
                             info.effective_iothread_cpus(iothread, ()))
        self.assertInvariants()

    def test_the_checker_counts_io_threads(self):
        """An I/O thread left on another tenant's core is a violation."""
        a = self.spawn('a', 2)
        self.spawn('b', 2)
        b_cpus = self.mgr.tenant_map()['b']
        dom = self.conn.domains[a]
        dom.xml = fakes.set_pin_in_xml(dom.xml, b_cpus, iothread=1)
        dom.info = fakes.dxml.parse_domain_xml(dom.xml)
        errors = test_manager.invariants.check_host(
            self.topology, test_manager.HOUSEKEEPING,
            self.partitions.list_partitions(),
            [d.info for d in self.conn.domains.values()])
        self.assertTrue([e for e in errors if a in e], errors)

    def test_strict_xml_and_live_repins_move_io_threads(self):
        """In strict mode the I/O threads get the key's CPUs in the XML and
        follow them when the key's cores change live."""
        mgr = self.make_manager(pin_mode='strict')
        self.mgr = mgr
        a1 = self.spawn('a', 2)
        self.spawn('a', 2)
        before = self.conn.domains[a1].info.iothread_pins[1]
        self.spawn('b', 2)
        self.delete(a1)
        a3 = self.spawn('a', 3)
        info = self.conn.domains[a3].info
        self.assertEqual(self.mgr.tenant_map()['a'],
                         info.effective_iothread_cpus(1, ()))
        self.assertTrue(before)
        self.assertInvariants()
