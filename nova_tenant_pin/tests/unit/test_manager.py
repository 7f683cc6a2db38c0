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

"""Unit tests of the per-host manager, with libvirt and cgroup doubles that
refuse what the kernel refuses (see ``tests/fakes.py``)."""

import concurrent.futures
import functools
import random
from unittest import mock
import uuid as uuidlib

import fixtures

from nova_tenant_pin import allocator
from nova_tenant_pin import cgroups
from nova_tenant_pin import domain_xml
from nova_tenant_pin import exception
from nova_tenant_pin import manager
from nova_tenant_pin import policy
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import fakes
from nova_tenant_pin.tests import invariants
from nova_tenant_pin import topology as topo

HOUSEKEEPING = frozenset([0, 1])


def make_topology(cells=2, cores=4, threads=2):
    cpu = 0
    layout = {}
    for cell in range(cells):
        layout[cell] = []
        for _ in range(cores):
            layout[cell].append(list(range(cpu, cpu + threads)))
            cpu += threads
    return topo.HostTopology(layout)


def uuid():
    return str(uuidlib.uuid4())


class InjectedFault(Exception):
    pass


class ManagerTestCase(base.TestCase):

    pin_mode = allocator.FLOAT

    def setUp(self):
        super().setUp()
        self.topology = make_topology()
        self.fresh_host()

    def fresh_host(self):
        self.partitions = fakes.CheckedPartitions(self.topology)
        self.conn = fakes.FakeConnection(self.partitions)
        self.partitions.connection = self.conn
        self.mgr = self.make_manager()

    def make_manager(self, **kw):
        kw.setdefault('pin_mode', self.pin_mode)
        return manager.TenantPinManager(
            self.topology, self.partitions, lambda: self.conn,
            HOUSEKEEPING, name='test-host', **kw)

    def spawn(self, project, vcpus, inst=None, mgr=None):
        mgr = mgr or self.mgr
        inst = inst or uuid()
        pins = mgr.claim(inst, project, vcpus)
        xml = fakes.domain_xml(
            inst, vcpus, project=project, partition=pins.partition,
            cpuset=pins.cpus, vcpu_pins=pins.vcpu_pins,
            emulator=pins.cpus if pins.vcpu_pins else None)
        self.conn.start(xml)
        mgr.domain_started(inst)
        return inst

    def delete(self, inst, mgr=None):
        self.conn.remove(inst)
        (mgr or self.mgr).release(inst)

    def assertInvariants(self, **kw):
        # Never, at any write, did two tenants share a core.
        self.assertEqual([], self.partitions.overlaps)
        errors = invariants.check_host(
            self.topology, HOUSEKEEPING, self.partitions.list_partitions(),
            [d.info for d in list(self.conn.domains.values())], **kw)
        self.assertEqual([], errors)


class TestDomainParsing(ManagerTestCase):
    """The manager parses a domain's XML again only when it changed."""

    def test_a_claim_parses_only_the_domains_it_changes(self):
        """Not a timing: a count. If this fails, a claim costs every guest
        on the host again instead of what changed."""
        for n in range(6):
            self.spawn('p%d' % (n % 3), 1)
        self.mgr.reconcile()

        def snapshot():
            return {u: d.xml for u, d in self.conn.domains.items()}

        def changed(old, new):
            return {u for u, xml in new.items() if old.get(u) != xml}

        read = snapshot()
        with mock.patch.object(self.mgr.guests, '_parse_domain',
                               wraps=self.mgr.guests._parse_domain) as parse:
            new = uuid()
            pins = self.mgr.claim(new, 'p0', 1)
            self.assertEqual(0, parse.call_count)
            self.conn.start(fakes.domain_xml(new, 1, 'p0', pins.partition,
                                             pins.cpus))
            now = snapshot()
            parse.reset_mock()
            self.mgr.domain_started(new)
            # The new domain and those the claim changed; no other.
            self.assertEqual(len(changed(read, now)), parse.call_count)
            self.assertIn(new, changed(read, now))
            read, now = now, snapshot()
            parse.reset_mock()
            self.mgr.reconcile()
            self.assertEqual(len(changed(read, now)), parse.call_count)
            self.assertLess(parse.call_count, len(now))
        self.assertInvariants()

    def test_running_domains_are_the_managers_readings(self):
        """The core-scheduling cookies ask the manager for the running
        guests: nothing is parsed again that did not change, and a domain
        that is not running is not listed."""
        insts = [self.spawn('p%d' % n, 1) for n in range(3)]
        self.conn.domains[insts[0]].active = False
        self.mgr.reconcile()
        with mock.patch.object(self.mgr.guests, '_parse_domain',
                               wraps=self.mgr.guests._parse_domain) as parse:
            infos = self.mgr.running_domains()
            self.assertEqual(0, parse.call_count)
        self.assertEqual(sorted(insts[1:]), sorted(i.uuid for i in infos))
        self.assertEqual({'p1', 'p2'}, {i.isolation_key for i in infos})
        # Reading them does not make the next reconcile plan again.
        with mock.patch.object(allocator, 'plan') as plan:
            self.assertEqual([], self.mgr.reconcile())
            self.assertEqual(0, plan.call_count)


class TestDomainReads(ManagerTestCase):
    """The manager reads a domain's XML from libvirt again only when
    libvirt said it changed (an event, a new domain ID) or a write of its
    own changed it. Counts of XMLDesc calls, not timings: if these fail,
    every operation reads every domain on the host again."""

    def setUp(self):
        super().setUp()
        self.insts = [self.spawn('p%d' % (n % 3), 1) for n in range(8)]
        self.mgr.reconcile()
        self.xml = self.snapshot()
        self.conn.xml_desc_calls = 0

    def snapshot(self):
        return {u: d.xml for u, d in self.conn.domains.items()}

    def changed_since(self, old):
        return {u for u, xml in self.snapshot().items() if old.get(u) != xml}

    def reads(self):
        count, self.conn.xml_desc_calls = self.conn.xml_desc_calls, 0
        return count

    def test_a_spawn_reads_only_the_domains_it_changes(self):
        new = uuid()
        pins = self.mgr.claim(new, 'p0', 1)
        # The claim wrote to some domains (its key's partition changed):
        # nothing needed reading before it.
        self.assertEqual(0, self.reads())
        self.conn.start(fakes.domain_xml(new, 1, 'p0', pins.partition,
                                         pins.cpus))
        self.mgr.domain_started(new)
        # The new domain and those the claim wrote to; no other.
        changed = self.changed_since(self.xml)
        self.assertIn(new, changed)
        self.assertEqual(len(changed), self.reads())
        self.assertLess(len(changed), len(self.conn.domains))
        # The reconcile after it reads what domain_started wrote, if
        # anything; no other.
        self.mgr.reconcile()
        self.assertLessEqual(self.reads(), 1)
        self.assertInvariants()

    def test_a_no_op_reconcile_reads_no_domain(self):
        self.assertEqual([], self.mgr.reconcile())
        self.assertEqual(0, self.reads())
        with mock.patch.object(allocator, 'plan') as plan:
            self.assertEqual([], self.mgr.reconcile())
            self.assertEqual(0, plan.call_count)
        self.assertEqual(0, self.reads())

    def test_a_change_made_by_someone_else_is_read(self):
        """A pin written outside the manager (``virsh vcpupin``): libvirt's
        tunable event marks the domain, the reconcile reads it and puts
        the guest back on its key's cores."""
        victim = self.conn.domains[self.insts[0]]
        other = self.partitions.partitions['p1'].cpus
        victim.xml = fakes.set_pin_in_xml(victim.xml, other, 0)
        repairs = self.mgr.reconcile()
        self.assertTrue(repairs)
        self.assertGreaterEqual(self.reads(), 1)
        self.assertLess(self.reads(), len(self.conn.domains))
        self.assertInvariants()

    def test_a_restart_changes_the_id_and_is_read(self):
        """An event that never came: a domain started again has a new ID,
        and the next read reads it."""
        callbacks, self.conn.callbacks = self.conn.callbacks, []
        dom = self.conn.domains[self.insts[1]]
        dom.active = False
        dom.active = True
        self.conn.callbacks = callbacks
        self.mgr.reconcile()
        self.assertEqual(1, self.reads())

    def test_a_failed_write_reads_every_domain_again(self):
        """After a failure the manager plans from what libvirt holds: the
        next change reads every domain."""
        def fail(name):
            raise InjectedFault(name)
        self.conn.faults = fail
        victim = self.insts[0]
        self.conn.domains[victim].xml = fakes.set_pin_in_xml(
            self.conn.domains[victim].xml,
            self.partitions.partitions['p1'].cpus, 0)
        self.assertRaises(InjectedFault, self.mgr.reconcile)
        self.conn.faults = None
        self.reads()
        self.mgr.reconcile()
        self.assertEqual(len(self.conn.domains), self.reads())
        self.assertInvariants()

    def test_without_events_every_read_is_whole(self):
        """A connection that cannot deliver events (no event loop) has
        every domain read at every read, as the only truth there is."""
        with mock.patch.object(
                self.conn, 'domainEventRegisterAny',
                side_effect=fakes.FakeLibvirtError('no event loop')) as reg:
            self.fresh_host_keeping_domains()
            self.mgr.reconcile()
            self.reads()
            self.mgr.reconcile()
            self.assertEqual(len(self.conn.domains), self.reads())
            # Tried once on the connection, not at every read.
            self.assertEqual(1, reg.call_count)

    def test_the_backstop_reads_everything_after_a_while(self):
        """Events can be lost: a read long after the last whole one is
        whole."""
        now = [1000.0]
        self.mgr.guests._clock = lambda: now[0]
        self.mgr.guests.invalidate()
        self.mgr.running_domains()
        self.reads()
        now[0] += self.mgr.guests.full_read_seconds / 2
        self.mgr.running_domains()
        self.assertEqual(0, self.reads())
        now[0] += self.mgr.guests.full_read_seconds
        self.mgr.running_domains()
        self.assertEqual(len(self.conn.domains), self.reads())

    def fresh_host_keeping_domains(self):
        self.mgr = self.make_manager()


class TestChangeCost(ManagerTestCase):
    """A change plans the keys it changes; a reconcile that would find what
    the last one found does nothing. Counts, not timings: if these fail,
    every operation costs every guest on the host again."""

    def setUp(self):
        super().setUp()
        self.topology = make_topology(cells=2, cores=8)
        self.fresh_host()
        self.insts = [self.spawn('p%d' % (n % 6), 1 + n % 2)
                      for n in range(12)]
        self.mgr.reconcile()

    def planned(self):
        """Patches allocator.plan; returns the list of the instance
        requests of each plan made."""
        calls = []
        plan = allocator.plan

        def counted(topology, instances, *args, **kwargs):
            instances = list(instances)
            calls.append(instances)
            return plan(topology, instances, *args, **kwargs)
        self.useFixture(fixtures.MockPatchObject(allocator, 'plan', counted))
        return calls

    def test_a_spawn_and_a_delete_plan_only_their_key(self):
        calls = self.planned()
        inst = self.spawn('p0', 1)
        self.delete(self.insts[2])
        self.assertEqual(3, len(calls))
        for requests in calls:
            self.assertEqual({'p0'} if requests is not calls[-1] else
                             {'p2'}, {r.key for r in requests})
        self.assertIn(inst, self.mgr.claims())
        self.assertInvariants()

    def test_a_change_plans_every_key_when_the_host_drifted(self):
        # Someone widened p3's partition: the map is not what the host
        # holds, so a claim of p0 plans (and repairs) every key.
        p3 = self.partitions.partitions['p3']
        spare = sorted(self.mgr.snapshot()['tenants']['p5'])[-1:]
        self.partitions.partitions['p3'] = cgroups.dataclasses.replace(
            p3, cpus=p3.cpus | set(spare))
        calls = self.planned()
        self.mgr.claim(uuid(), 'p0', 1)
        self.assertEqual(len(self.insts) + 1, len(calls[0]))
        self.assertEqual(p3.cpus, self.partitions.list_partitions()['p3'].cpus)
        self.assertInvariants()

    def test_a_change_plans_every_key_when_its_guest_lives_elsewhere(self):
        # A guest of p0 recorded in p3's partition (a change of key that
        # stopped half way): narrowing p0 alone could not be checked
        # against p3's guests, so a claim of p0 plans every key.
        dom = self.conn.domains[self.insts[0]]
        dom.xml = dom.xml.replace(domain_xml.PARTITION_PREFIX + 'p0',
                                  domain_xml.PARTITION_PREFIX + 'p3')
        dom.info = domain_xml.parse_domain_xml(dom.xml)
        self.assertEqual('p3', dom.info.partition_key)
        calls = self.planned()
        with mock.patch.object(self.mgr, '_transition'):
            self.mgr.claim(uuid(), 'p0', 1)
        self.assertEqual(len(self.insts) + 1, len(calls[0]))

    def test_changes_of_the_touched_keys_leave_the_host_as_full_changes(self):
        """The same random spawns and deletes on two hosts, one planning
        only the touched keys, the other every key: after every operation
        both hold the same partitions and the same domain XML, and a
        reconcile finds nothing to repair. If this fails, planning only
        what changed places guests differently from planning the host."""
        rng = random.Random(20261207)
        hosts = []
        for full in (False, True):
            self.fresh_host()
            if full:
                self.mgr._touched = lambda *args: None
            hosts.append((self.partitions, self.conn, self.mgr))
        touched = hosts[0][2]._touched
        partial = []

        def counted(*args):
            keys = touched(*args)
            partial.append(keys is not None)
            return keys
        hosts[0][2]._touched = counted
        live = []
        for step in range(150):
            if live and rng.random() < 0.4:
                inst = live.pop(rng.randrange(len(live)))
                op = functools.partial(self.delete, inst)
            else:
                inst = uuid()
                op = functools.partial(self.spawn, 'p%d' % rng.randrange(8),
                                       rng.choice([1, 1, 2, 3, 4]), inst)
            outcomes = []
            for self.partitions, self.conn, self.mgr in hosts:
                try:
                    op()
                    outcomes.append(True)
                except exception.TenantDoesNotFit:
                    outcomes.append(False)
                self.assertInvariants()
            self.assertEqual(outcomes[0], outcomes[1], 'step %d' % step)
            if outcomes[0] and inst not in live and \
                    inst in hosts[0][1].domains:
                live.append(inst)
            (parts, conn, mgr), (full_parts, full_conn, full_mgr) = hosts
            self.assertEqual(full_parts.list_partitions(),
                             parts.list_partitions(), 'step %d' % step)
            self.assertEqual({u: d.xml for u, d in full_conn.domains.items()},
                             {u: d.xml for u, d in conn.domains.items()},
                             'step %d' % step)
            if step % 25 == 24:
                self.assertEqual([], mgr.reconcile())
        # The test means something only if the touched keys were planned
        # alone in most changes.
        self.assertGreater(sum(partial), len(partial) // 2)

    def test_a_reconcile_that_finds_what_the_last_found_plans_nothing(self):
        calls = self.planned()
        self.assertEqual([], self.mgr.reconcile())
        self.assertEqual([], calls)
        # A guest re-pinned behind the manager's back: the next reconcile
        # sees the host changed and repairs it.
        a = self.insts[0]
        stolen = sorted(self.partitions.partitions['p3'].cpus)[:1]
        dom = self.conn.domains[a]
        dom.xml = fakes.set_pin_in_xml(dom.xml, frozenset(stolen), 0)
        dom.info = domain_xml.parse_domain_xml(dom.xml)
        repairs = self.mgr.reconcile()
        self.assertEqual(1, len(calls))
        self.assertTrue(any(a in line for line in repairs), repairs)
        self.assertInvariants()
        self.assertEqual([], self.mgr.reconcile())
        self.assertEqual(2, len(calls))
        self.assertEqual([], self.mgr.reconcile())
        self.assertEqual(2, len(calls))
        # What Nova says changed: a full reconcile again.
        self.mgr.reconcile(known=set(self.insts[1:]))
        self.assertEqual(3, len(calls))
        # So did the manager's own state.
        self.spawn('p1', 1)
        del calls[:]
        self.mgr.reconcile()
        self.assertEqual(1, len(calls))


class TestChangeCostStrict(TestChangeCost):
    """The same, with per-vCPU pins."""

    pin_mode = allocator.STRICT


class TestClaimRelease(ManagerTestCase):

    def test_claim_creates_partition_before_the_domain_exists(self):
        inst = uuid()
        pins = self.mgr.claim(inst, 'p1', 4)
        part = self.partitions.list_partitions()['p1']
        self.assertEqual(pins.cpus, part.cpus)
        self.assertEqual('/machine/tenant-p1', pins.partition)
        self.assertEqual(4, len(pins.cpus))
        self.assertFalse(pins.cpus & HOUSEKEEPING)
        self.assertTrue(self.mgr.claims()[inst].pending)
        self.conn.start(fakes.domain_xml(inst, 4, 'p1', pins.partition,
                                         pins.cpus))
        self.mgr.domain_started(inst)
        self.assertFalse(self.mgr.claims()[inst].pending)
        self.assertInvariants()

    def test_many_tenants_never_share_a_core(self):
        sizes = [('p1', 2), ('p2', 3), ('p3', 1), ('p4', 2), ('p1', 1),
                 ('p5', 2), ('p2', 1)]
        for project, vcpus in sizes:
            self.spawn(project, vcpus)
            self.assertInvariants()
        tenants = self.mgr.tenant_map()
        self.assertEqual({'p1', 'p2', 'p3', 'p4', 'p5'}, set(tenants))
        # p1: 3 vCPUs -> 2 cores; p2: 4 -> 2; p3: 1 -> 1; p4: 2 -> 1; p5: 1
        self.assertEqual({'p1': 4, 'p2': 4, 'p3': 2, 'p4': 2, 'p5': 2},
                         {t: len(c) for t, c in tenants.items()})

    def test_odd_total_strands_one_thread_reported(self):
        self.spawn('p1', 3)
        self.assertEqual(4, len(self.mgr.tenant_map()['p1']))
        self.assertEqual(1, self.mgr.stranded_cpus())
        self.spawn('p1', 1)
        self.assertEqual(4, len(self.mgr.tenant_map()['p1']))
        self.assertEqual(0, self.mgr.stranded_cpus())

    def test_tenant_that_does_not_fit_changes_nothing(self):
        # 14 tenant threads: 7 tenants of one core each fill the host.
        for i in range(7):
            self.spawn('p%d' % i, 2)
        before = self.partitions.list_partitions()
        claims = self.mgr.claims()
        err = self.assertRaises(exception.TenantDoesNotFit, self.mgr.claim,
                                uuid(), 'late', 1)
        self.assertIn('late', str(err))
        self.assertEqual(before, self.partitions.list_partitions())
        self.assertEqual(claims, self.mgr.claims())
        self.assertInvariants()

    def test_own_spare_thread_is_used_before_new_cores(self):
        a = self.spawn('p1', 1)
        cpus = self.mgr.tenant_map()['p1']
        self.spawn('p1', 1)
        self.assertEqual(cpus, self.mgr.tenant_map()['p1'])
        self.delete(a)
        self.assertEqual(cpus, self.mgr.tenant_map()['p1'])
        self.assertInvariants()

    def test_release_shrinks_then_removes_the_partition(self):
        a = self.spawn('p1', 4)
        b = self.spawn('p1', 2)
        self.assertEqual(6, len(self.mgr.tenant_map()['p1']))
        self.delete(a)
        # The partition shrank only after b was re-pinned inside it (the
        # checked partitions refuse the other order).
        self.assertEqual(2, len(self.partitions.list_partitions()['p1'].cpus))
        self.assertInvariants()
        self.delete(b)
        self.assertNotIn('p1', self.partitions.list_partitions())
        self.assertEqual({}, self.mgr.tenant_map())
        self.assertEqual({}, self.mgr.claims())

    def test_delete_and_reuse_of_cores_by_another_tenant(self):
        a = self.spawn('p1', 2)
        cpus = self.mgr.tenant_map()['p1']
        self.delete(a)
        self.spawn('p2', 2)
        self.assertEqual(cpus, self.mgr.tenant_map()['p2'])
        self.assertInvariants()

    def test_release_is_idempotent(self):
        self.assertFalse(self.mgr.release(uuid()))
        a = self.spawn('p1', 2)
        self.delete(a)
        self.assertFalse(self.mgr.release(a))

    def test_resize_claim_updates_in_place(self):
        a = self.spawn('p1', 2)
        pins = self.mgr.claim(a, 'p1', 6)
        self.assertEqual(6, len(pins.cpus))
        self.assertEqual(1, len(self.mgr.claims()))
        self.assertEqual(6, self.mgr.claims()[a].vcpus)

    def test_exempt_projects_share_one_partition(self):
        mgr = self.make_manager(exempt_projects=['admin1', 'admin2'])
        self.spawn('admin1', 1, mgr=mgr)
        self.spawn('admin2', 1, mgr=mgr)
        self.assertEqual({policy.SHARED_POOL},
                         set(mgr.tenant_map()))
        self.assertEqual(2, len(mgr.tenant_map()[policy.SHARED_POOL]))

    def test_static_tenant_gets_exactly_its_cpus(self):
        mgr = self.make_manager(static={'p9': {14, 15}})
        self.spawn('p1', 2, mgr=mgr)
        self.spawn('p9', 2, mgr=mgr)
        self.assertEqual(frozenset({14, 15}), mgr.tenant_map()['p9'])
        self.assertNotIn(14, mgr.tenant_map()['p1'])

    def test_static_cpuset_on_housekeeping_fails_at_start(self):
        err = self.assertRaises(allocator.PlanError, self.make_manager,
                                static={'p9': {0, 1}})
        self.assertIn('p9', str(err))

    def test_invalid_project_id_is_refused(self):
        self.assertRaises(cgroups.PartitionError, self.mgr.claim, uuid(),
                          '../etc', 1)


class TestStrictMode(ManagerTestCase):

    pin_mode = allocator.STRICT

    def test_pins_fill_siblings_and_repack_live_after_a_delete(self):
        a = self.spawn('p1', 1)
        b = self.spawn('p1', 2)
        pins_b = self.mgr.pins_for(b).vcpu_pins
        self.assertEqual(2, len(pins_b))
        self.delete(a)
        new_b = self.mgr.pins_for(b).vcpu_pins
        self.assertNotEqual(pins_b, new_b)
        # The live domain was re-pinned to the new plan.
        info = self.conn.domains[b].info
        self.assertEqual(new_b, info.vcpu_pins)
        # b's two vCPUs now fill the siblings of one core.
        cores = self.topology.cores_of(set().union(*new_b.values()))
        self.assertEqual(1, len(cores))
        self.assertInvariants()


class TestLiveMigrationClaims(ManagerTestCase):

    def test_incoming_claim_creates_partition_and_unconfirmed_is_released(
            self):
        inst = uuid()
        pins = self.mgr.claim_incoming_migration(inst, 'p1', 2)
        self.assertEqual(pins.cpus,
                         self.partitions.list_partitions()['p1'].cpus)
        self.assertTrue(self.mgr.release_unconfirmed_migration(inst))
        self.assertNotIn('p1', self.partitions.list_partitions())

    def test_confirmed_incoming_claim_survives_the_check_cleanup(self):
        inst = uuid()
        self.mgr.claim_incoming_migration(inst, 'p1', 2)
        self.mgr.confirm_incoming_migration(inst)
        self.assertFalse(self.mgr.release_unconfirmed_migration(inst))
        self.assertIn(inst, self.mgr.claims())
        # A periodic reconcile keeps the pending claim of the arriving
        # instance, which has no domain yet.
        self.mgr.reconcile()
        self.assertIn(inst, self.mgr.claims())

    def test_abandoned_incoming_claim_is_released_by_reconcile(self):
        inst = uuid()
        self.mgr.claim_incoming_migration(inst, 'p1', 2)
        self.mgr.confirm_incoming_migration(inst)
        # Still expected here: kept.
        self.mgr.reconcile(known={inst})
        self.assertIn(inst, self.mgr.claims())
        # The migration was given up: Nova no longer places it here.
        repairs = self.mgr.reconcile(known=set())
        self.assertNotIn(inst, self.mgr.claims())
        self.assertEqual({}, self.partitions.list_partitions())
        self.assertTrue(any(inst in r for r in repairs))

    def test_claim_of_running_instance_is_not_released_as_migration(self):
        inst = self.spawn('p1', 2)
        self.assertFalse(self.mgr.release_unconfirmed_migration(inst))


class TestReconcile(ManagerTestCase):

    def _populate(self):
        insts = [self.spawn('p1', 3), self.spawn('p2', 2),
                 self.spawn('p1', 1), self.spawn('p3', 5)]
        return insts

    def test_restart_rebuilds_the_same_map(self):
        self._populate()
        before = self.mgr.snapshot()
        restarted = self.make_manager()
        repairs = restarted.reconcile()
        self.assertEqual([], repairs)
        after = restarted.snapshot()
        self.assertEqual(before['tenants'], after['tenants'])
        self.assertEqual(
            {u: i['cpus'] for u, i in before['instances'].items()},
            {u: i['cpus'] for u, i in after['instances'].items()})
        self.assertInvariants()

    def test_restart_in_strict_mode_keeps_pins(self):
        self.mgr = self.make_manager(pin_mode=allocator.STRICT)
        insts = self._populate()
        pins = {u: self.mgr.pins_for(u) for u in insts}
        restarted = self.make_manager(pin_mode=allocator.STRICT)
        self.assertEqual([], restarted.reconcile())
        self.assertEqual(pins, {u: restarted.pins_for(u) for u in insts})

    def test_repairs_drifted_partition_and_pins_and_names_them(self):
        a, b, c, d = self._populate()
        # Someone widened p2's partition over a core of p3, and re-pinned
        # one vCPU of instance a outside its tenant's cores.
        p3 = self.partitions.partitions['p3']
        p2 = self.partitions.partitions['p2']
        stolen = sorted(p3.cpus)[:2]
        self.partitions.partitions['p2'] = cgroups.dataclasses.replace(
            p2, cpus=p2.cpus | set(stolen))
        dom = self.conn.domains[a]
        dom.xml = fakes.set_pin_in_xml(dom.xml, frozenset(stolen), 0)
        dom.info = domain_xml.parse_domain_xml(dom.xml)
        self.assertNotEqual([], invariants.check_host(
            self.topology, HOUSEKEEPING, self.partitions.list_partitions(),
            [x.info for x in self.conn.domains.values()]))
        repairs = self.mgr.reconcile()
        self.assertInvariants()
        text = '\n'.join(repairs)
        self.assertIn('tenant p2', text)
        self.assertIn('instance %s of tenant p1' % a, text)

    def test_repairs_a_partition_widened_over_a_lower_tenant(self):
        # The other order: the thief (p3) sorts after the victim (p2), so
        # p2 keeps the core and p3's guests are moved off it first.
        a, b, c, d = self._populate()
        p2 = self.partitions.partitions['p2']
        p3 = self.partitions.partitions['p3']
        stolen = sorted(p2.cpus)[:2]
        self.partitions.partitions['p3'] = cgroups.dataclasses.replace(
            p3, cpus=p3.cpus | set(stolen))
        dom = self.conn.domains[d]
        dom.xml = fakes.set_pin_in_xml(dom.xml, frozenset(stolen), 0)
        dom.info = domain_xml.parse_domain_xml(dom.xml)
        repairs = self.mgr.reconcile()
        self.assertInvariants()
        self.assertTrue(any('instance %s of tenant p3' % d in r
                            for r in repairs))

    def test_stale_partition_and_lost_claim_are_cleaned(self):
        a = self.spawn('p1', 2)
        self.partitions.ensure_partition('ghost', {14, 15}, {0, 1})
        # The domain disappeared behind our back.
        self.conn.remove(a)
        repairs = self.mgr.reconcile()
        self.assertEqual({}, self.partitions.list_partitions())
        self.assertEqual({}, self.mgr.claims())
        self.assertTrue(any(a in r for r in repairs))

    def test_stopped_domain_of_an_instance_placed_elsewhere_holds_nothing(
            self):
        a = self.spawn('p1', 2)
        self.conn.domains[a].active = False
        self.partitions.remove_task('p1', a)
        # Nova no longer places it here (a confirmed resize's source).
        self.mgr.reconcile(known=set())
        self.assertEqual({}, self.mgr.claims())
        self.assertEqual({}, self.partitions.list_partitions())
        # A running one always counts, known or not.
        b = self.spawn('p2', 2)
        self.mgr.reconcile(known=set())
        self.assertIn(b, self.mgr.claims())

    def test_recreates_a_partition_lost_from_the_tree(self):
        self.spawn('p1', 2)
        cpus = self.mgr.tenant_map()['p1']
        del self.partitions.partitions['p1']
        self.mgr.reconcile()
        self.assertEqual(cpus, self.partitions.list_partitions()['p1'].cpus)

    def test_adopts_a_domain_outside_any_partition(self):
        inst = uuid()
        self.conn.start(fakes.domain_xml(inst, 2, project='p1'))
        repairs = self.mgr.reconcile()
        self.assertIn(inst, self.mgr.claims())
        info = self.conn.domains[inst].info
        cpus = self.mgr.tenant_map()['p1']
        self.assertEqual(cpus, info.all_cpus(self.topology.online_cpus))
        self.assertTrue(any('started without tenant-pin' in r and inst in r
                            for r in repairs))

    def test_dedicated_instance_cores_are_never_given_to_a_tenant(self):
        ded = uuid()
        # Nova pinned this one itself, on CPUs 2 and 10 (two half cores).
        self.conn.start(fakes.domain_xml(ded, 2, project='pd',
                                         vcpu_pins={0: {2}, 1: {10}},
                                         emulator={2, 10},
                                         iothread_pins={1: {2, 10}}))
        self.mgr.reconcile()
        self.assertEqual({ded: frozenset({2, 10})},
                         self.mgr.dedicated_instances())
        for i in range(5):
            self.spawn('p%d' % i, 2)
        used = set().union(*self.mgr.tenant_map().values())
        self.assertFalse(used & {2, 3, 10, 11})
        self.assertInvariants()
        # Known dedicated instances given by the caller win over the guess.
        self.mgr.reconcile(dedicated={ded: {2, 10}})
        self.assertIn(ded, self.mgr.dedicated_instances())


class TestFaultInjection(ManagerTestCase):
    """Raise at each step of a transition; a reconcile then restores the
    invariants and no guest is destroyed."""

    def _count_steps(self, action):
        steps = []
        self.conn.faults = steps.append
        self.partitions.faults = steps.append
        action()
        self.conn.faults = self.partitions.faults = None
        return len(steps)

    def _scenario(self):
        """A host with three tenants, then an arrival that relocates
        nothing but grows p1 and an instance delete that shrinks p2."""
        self.mgr = self.make_manager(pin_mode=allocator.STRICT)
        self.a = self.spawn('p1', 3)
        self.b = self.spawn('p2', 4)
        self.c = self.spawn('p2', 2)
        self.d = self.spawn('p3', 1)

    def _transition(self):
        self.conn.remove(self.b)
        self.mgr.release(self.b)
        self.mgr.claim(self.e, 'p1', 3)

    def test_fault_at_every_step_then_reconcile(self):
        self._scenario()
        self.e = uuid()
        steps = self._count_steps(self._transition)
        self.assertGreater(steps, 4)
        for step in range(steps):
            self.fresh_host()
            self._scenario()
            self.e = uuid()
            calls = []

            def fault(name, step=step, calls=calls):
                calls.append(name)
                if len(calls) == step + 1:
                    raise InjectedFault('%s at step %d' % (name, step))
            self.conn.faults = fault
            self.partitions.faults = fault
            try:
                self._transition()
            except (InjectedFault, cgroups.PartitionError):
                pass
            self.conn.faults = self.partitions.faults = None
            self.assertInvariants(check_fewest_cores=False)
            self.mgr.reconcile()
            self.assertInvariants(check_fewest_cores=False)
            # No guest was destroyed: the three others still run.
            self.assertEqual({self.a, self.c, self.d},
                             set(self.conn.domains))


class TestConcurrency(ManagerTestCase):

    def test_parallel_spawns_and_deletes_across_tenants(self):
        # A host with room for everyone (15 tenant cores), so refusals are
        # rare; the point is the interleaving.
        self.topology = make_topology(cells=2, cores=8)
        self.fresh_host()
        rng = random.Random(42)
        tenants = ['t%d' % i for i in range(5)]
        errors = []

        def worker(n):
            project = tenants[n % 5]
            inst = uuid()
            try:
                pins = self.mgr.claim(inst, project, rng.choice([1, 1, 2]))
            except exception.TenantDoesNotFit:
                # A full host refuses; that must leave no claim behind.
                if inst in self.mgr.claims():
                    errors.append('refused %s left a claim' % inst)
                return 'nofit'
            part = self.partitions.list_partitions()[
                self.mgr.key_of(project)]
            if not pins.cpus <= part.cpus:
                errors.append('%s outside partition' % inst)
            self.conn.start(fakes.domain_xml(
                inst, self.mgr.claims()[inst].vcpus, project,
                pins.partition, pins.cpus))
            self.mgr.domain_started(inst)
            if n % 2:
                self.conn.remove(inst)
                self.mgr.release(inst)
                return 'deleted'
            return inst

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(worker, range(20)))
        self.assertEqual([], errors)
        kept = {r for r in results if r not in ('deleted', 'nofit')}
        # Refusals are legitimate (a tenant with an instance still being
        # defined keeps its cores, see TenantPinManager._safe_plan), but
        # most of the twenty must have gone through.
        self.assertGreaterEqual(len(kept) + results.count('deleted'), 10)
        # No leaked claim: exactly the kept domains hold claims.
        self.assertEqual(kept, set(self.conn.domains))
        self.assertEqual(kept, set(self.mgr.claims()))
        self.assertInvariants()
        for inst in list(self.conn.domains):
            self.delete(inst)
        self.assertEqual({}, self.partitions.list_partitions())
        self.assertEqual({}, self.mgr.claims())
