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

"""The manager with per-instance policies (isolation keys, pin modes,
ratios), per-project settings that change while guests run, adoption of
guests started without tenant-pin, and release."""

import os
import random

from nova_tenant_pin import allocator
from nova_tenant_pin import domain_xml
from nova_tenant_pin import exception
from nova_tenant_pin import policy
from nova_tenant_pin.tests import fakes
from nova_tenant_pin.tests.unit import test_manager as tm

HOUSEKEEPING = tm.HOUSEKEEPING
ONLINE = frozenset(range(16))


def groups(**members):
    return policy.ProjectSettings.from_options(
        (), ['%s:%s' % (name, ','.join(projects))
             for name, projects in sorted(members.items())])


class PolicyTestCase(tm.ManagerTestCase):

    def spawn_with(self, project, vcpus, mgr=None, **specs):
        """Boot as the driver does, with flavor extra specs."""
        mgr = mgr or self.mgr
        inst = tm.uuid()
        pol = mgr.policy_of(project, {'tenant_pin:%s' % k: v
                                      for k, v in specs.items()})
        pins = mgr.claim(inst, project, vcpus, policy=pol)
        xml = fakes.domain_xml(
            inst, vcpus, project=project, partition=pins.partition,
            cpuset=pins.cpus, vcpu_pins=pins.vcpu_pins,
            emulator=pins.cpus if pins.vcpu_pins else None)
        xml = fakes.set_metadata_in_xml(xml, mgr.metadata_of(inst),
                                        domain_xml.TP_PREFIX, domain_xml.TP_NS)
        self.conn.start(xml)
        mgr.domain_started(inst)
        return inst

    def cores_of(self, inst):
        info = self.conn.domains[inst].info
        return self.topology.cores_of(info.all_cpus(ONLINE))

    def assertApart(self, *groups_of_insts):
        """No core is used by instances of two of the given groups."""
        seen = {}
        for index, insts in enumerate(groups_of_insts):
            for inst in insts:
                for core in self.cores_of(inst):
                    self.assertIn(seen.setdefault(core, index), (index,),
                                  'core %s shared' % (core.cpus,))


class TestPolicyKeys(PolicyTestCase):

    def test_projects_of_one_group_share_cores_with_nobody_else(self):
        self.mgr = self.make_manager(settings=groups(acme=['p1', 'p2']))
        a = self.spawn_with('p1', 1)
        b = self.spawn_with('p2', 1)
        c = self.spawn_with('p3', 1)
        self.assertEqual({'group-acme', 'p3'}, set(self.mgr.tenant_map()))
        # Two vCPUs of two trusting projects: one core.
        self.assertEqual(self.cores_of(a), self.cores_of(b))
        self.assertEqual(1, len(self.cores_of(a)))
        self.assertApart([a, b], [c])
        self.assertEqual('/machine/tenant-group-acme',
                         self.conn.domains[a].info.partition)
        self.assertInvariants()

    def test_flavor_isolation_none_runs_in_the_shared_pool(self):
        a = self.spawn_with('p1', 2, isolation='none')
        b = self.spawn_with('p2', 1, isolation='none')
        c = self.spawn_with('p1', 2)
        self.assertEqual(policy.SHARED_POOL,
                         self.mgr.claims()[a].key)
        self.assertApart([a, b], [c])
        # A restart recovers the shared pool from the metadata alone.
        restarted = self.make_manager()
        restarted.reconcile()
        self.assertEqual(policy.SHARED_POOL, restarted.claims()[b].key)
        self.assertEqual('p1', restarted.claims()[c].key)
        self.assertEqual(self.mgr.tenant_map(), restarted.tenant_map())

    def test_per_instance_pin_mode_and_tenant_ratio(self):
        a = self.spawn_with('p1', 2, pin_mode='strict')
        b = self.spawn_with('p2', 4, cpu_allocation_ratio='2.0')
        pins = self.conn.domains[a].info.vcpu_pins
        self.assertEqual([1, 1], [len(pins[v]) for v in (0, 1)])
        self.assertEqual({}, self.conn.domains[b].info.vcpu_pins.get(
            'none', {}))
        # 4 vCPUs at ratio 2 on 2-thread cores: one core.
        self.assertEqual(1, len(self.cores_of(b)))
        meta = self.conn.domains[b].info
        self.assertEqual(('p2', 'float', 2.0), (meta.key, meta.pin_mode,
                                                meta.ratio))
        # The tenant's ratio is its strictest instance's.
        self.spawn_with('p2', 1)
        self.assertEqual(6, len(self.mgr.tenant_map()['p2']))


class TestSettingsChange(PolicyTestCase):
    """[tenant_pin] isolation_groups / exempt_projects re-read (SIGHUP)."""

    def _change(self, settings):
        self.mgr.update_settings(settings)
        return self.mgr.reconcile()

    def test_merge_moves_nothing_first_then_compacts(self):
        a = self.spawn_with('p1', 1)
        b = self.spawn_with('p2', 1)
        c = self.spawn_with('p3', 3)
        self.assertEqual(3, len(self.mgr.tenant_map()))
        repairs = self._change(groups(acme=['p1', 'p2']))
        self.assertEqual([], self.partitions.overlaps)
        tenants = self.mgr.tenant_map()
        self.assertEqual({'group-acme', 'p3'}, set(tenants))
        self.assertEqual(2, len(tenants['group-acme']))
        self.assertApart([a, b], [c])
        for inst in (a, b):
            info = self.conn.domains[inst].info
            self.assertEqual('group-acme', info.key)
            self.assertEqual('pins', info.confinement)
            self.assertLessEqual(info.all_cpus(ONLINE),
                                 tenants['group-acme'])
        self.assertTrue(any('changes from p1 to group-acme' in r
                            for r in repairs))
        self.assertInvariants()
        # A restart with the same settings finds the same map and repairs
        # nothing.
        restarted = self.make_manager(settings=groups(acme=['p1', 'p2']))
        self.assertEqual([], restarted.reconcile())
        self.assertEqual(tenants, restarted.tenant_map())

    def test_split_gives_each_project_its_own_cores(self):
        self.mgr = self.make_manager(settings=groups(acme=['p1', 'p2']))
        a = self.spawn_with('p1', 1)
        b = self.spawn_with('p2', 1)
        c = self.spawn_with('p3', 5)
        self.assertEqual(self.cores_of(a), self.cores_of(b))
        self._change(policy.ProjectSettings())
        self.assertEqual([], self.partitions.overlaps)
        self.assertEqual({'p1', 'p2', 'p3'}, set(self.mgr.tenant_map()))
        self.assertApart([a], [b], [c])
        self.assertEqual('p2', self.conn.domains[b].info.key)
        self.assertInvariants()

    def test_exempt_project_joins_and_leaves_the_shared_pool(self):
        a = self.spawn_with('p1', 1)
        b = self.spawn_with('svc', 1)
        self._change(policy.ProjectSettings.from_options(['p1', 'svc']))
        self.assertEqual({policy.SHARED_POOL},
                         set(self.mgr.tenant_map()))
        self.assertEqual(self.cores_of(a), self.cores_of(b))
        self._change(policy.ProjectSettings.from_options(['svc']))
        self.assertApart([a], [b])
        self.assertEqual([], self.partitions.overlaps)
        self.assertInvariants()


class TestStaticReload(PolicyTestCase):

    def test_new_static_cpuset_moves_the_tenant_and_a_bad_one_is_refused(
            self):
        a = self.spawn_with('p1', 2)
        b = self.spawn_with('p2', 2)
        self.mgr.update_settings(policy.ProjectSettings(),
                                 static={'p1': {14, 15}})
        self.mgr.reconcile()
        self.assertEqual(frozenset({14, 15}), self.mgr.tenant_map()['p1'])
        self.assertEqual(frozenset({14, 15}),
                         self.conn.domains[a].info.all_cpus(ONLINE))
        self.assertApart([a], [b])
        self.assertEqual([], self.partitions.overlaps)
        # On housekeeping cores: refused, and nothing changed.
        self.assertRaises(allocator.PlanError, self.mgr.update_settings,
                          policy.ProjectSettings(), static={'p1': {0, 1}})
        self.assertEqual({'p1': frozenset({14, 15})},
                         self.mgr.static_config)
        self.assertEqual([], self.mgr.reconcile())


class TestAdopt(PolicyTestCase):
    """Guests started without tenant-pin, as the stock driver leaves them:
    no partition, floating on Nova's shared CPUs."""

    def start_unconfined(self, project, vcpus):
        inst = tm.uuid()
        self.conn.start(fakes.domain_xml(inst, vcpus, project=project,
                                         cpuset=ONLINE - HOUSEKEEPING))
        return inst

    def test_dry_run_describes_and_changes_nothing(self):
        insts = [self.start_unconfined(p, 2) for p in ('p1', 'p2', 'p3')]
        xml = {u: self.conn.domains[u].xml for u in insts}
        actions = self.mgr.reconcile(dry_run=True)
        self.assertEqual({}, self.partitions.list_partitions())
        self.assertEqual(xml, {u: self.conn.domains[u].xml for u in insts})
        self.assertEqual({}, self.mgr.claims())
        text = '\n'.join(actions)
        for inst in insts:
            self.assertIn('pin vCPU 0 of instance %s' % inst, text)
        self.assertIn('create partition of tenant p2', text)

    def test_a_dry_run_leaves_the_next_reconcile_the_whole_job(self):
        """A dry run records its would-be writes on the domains it read;
        the real reconcile after it must still see the domains as they
        are. If this fails, domains the manager read before are reused
        with changes that were never made."""
        insts = {p: self.start_unconfined(p, 2) for p in ('p1', 'p2', 'p3')}
        self.assertNotEqual([], self.mgr.reconcile(dry_run=True))
        self.mgr.reconcile()
        self.assertApart([insts['p1']], [insts['p2']], [insts['p3']])
        for inst in insts.values():
            self.assertEqual('pins', self.conn.domains[inst].info.confinement)
        self.assertInvariants()
        self.assertEqual([], self.mgr.reconcile(dry_run=True))

    def test_adopt_confines_every_guest_by_pins_and_is_rerunnable(self):
        insts = {p: self.start_unconfined(p, 3) for p in ('p1', 'p2', 'p3')}
        self.mgr.reconcile()
        self.assertApart([insts['p1']], [insts['p2']], [insts['p3']])
        for project, inst in insts.items():
            info = self.conn.domains[inst].info
            self.assertEqual('pins', info.confinement)
            self.assertLessEqual(info.all_cpus(ONLINE),
                                 self.mgr.tenant_map()[project])
        self.assertTrue(self.mgr.isolation()['isolated'])
        self.assertInvariants()
        # Re-running (an interrupted adopt, a restart) changes nothing.
        self.assertEqual([], self.mgr.reconcile(dry_run=True))
        self.assertEqual([], self.make_manager().reconcile(dry_run=True))

    def test_tenants_that_do_not_fit_are_named_and_the_rest_isolated(self):
        # 14 usable threads; 8 + 6 + 4 vCPUs do not fit on whole cores.
        big = self.start_unconfined('p1', 8)
        mid = self.start_unconfined('p2', 6)
        small = self.start_unconfined('p3', 4)
        self.mgr.reconcile()
        report = self.mgr.isolation()
        self.assertFalse(report['isolated'])
        self.assertEqual(1, len(report['unfit']))
        (unfit_key, unfit_insts), = report['unfit'].items()
        by_key = {'p1': big, 'p2': mid, 'p3': small}
        self.assertEqual([by_key[unfit_key]], unfit_insts)
        placed = [u for k, u in by_key.items() if k != unfit_key]
        # The tenants that fit share no core with anyone.
        self.assertApart([placed[0]], [placed[1]], unfit_insts)
        self.assertFalse(self.mgr.snapshot()['isolated'])
        # The periodic reconcile of a host in this state writes nothing.
        self.assertEqual([], self.mgr.reconcile(dry_run=True))


class TestRelease(PolicyTestCase):

    def test_release_all_unpins_and_empties_without_restarting(self):
        a = self.spawn_with('p1', 2)
        b = self.spawn_with('p2', 1, pin_mode='strict')
        shared = ONLINE - HOUSEKEEPING
        preview = self.mgr.release_all(shared, dry_run=True)
        self.assertIn('pin vCPU 0 of instance %s to CPUs 2-15' % b,
                      '\n'.join(preview))
        self.assertNotEqual(shared, self.conn.domains[a].info.all_cpus(
            ONLINE))
        self.mgr.release_all(shared)
        for inst in (a, b):
            info = self.conn.domains[inst].info
            self.assertEqual(shared, info.all_cpus(ONLINE))
            self.assertIsNone(info.key)
        # The partitions that still hold guests are widened, not removed
        # (a running guest cannot leave its cgroup).
        for part in self.partitions.list_partitions().values():
            self.assertEqual(shared, part.cpus)
        self.assertEqual({}, self.mgr.claims())
        self.assertEqual(2, len(self.conn.domains))
        # Enabling again adopts them back.
        self.mgr.reconcile()
        self.assertApart([a], [b])

    def test_release_removes_partitions_that_hold_no_guest(self):
        self.mgr.claim(tm.uuid(), 'p1', 2)   # a build that never started
        self.mgr.release_all()
        self.assertEqual({}, self.partitions.list_partitions())


class TestStrictAdopt(TestAdopt):
    pin_mode = allocator.STRICT


class TestRandomSettingsChanges(PolicyTestCase):
    """Random hosts through random sequences of group and exemption
    changes (fixed seeds; ``TENANT_PIN_SEEDS`` sets how many, 40 by
    default): after every change the invariants hold, every
    guest carries its new key, and no partition write ever made two keys
    share a core that they did not share before."""

    PROJECTS = ['p%d' % i for i in range(6)]

    def _random_settings(self, rng):
        projects = list(self.PROJECTS)
        rng.shuffle(projects)
        groups, exempt = [], []
        while projects:
            take = projects[:rng.choice([1, 1, 2, 3])]
            projects = projects[len(take):]
            roll = rng.random()
            if len(take) > 1 and roll < 0.5:
                groups.append('g%d:%s' % (len(groups), ','.join(take)))
            elif roll < 0.65:
                exempt.extend(take)
        return policy.ProjectSettings.from_options(exempt, groups)

    def test_random_sequences(self):
        for seed in range(int(os.environ.get('TENANT_PIN_SEEDS', 40))):
            rng = random.Random(seed)
            self.fresh_host()
            self.mgr = self.make_manager(settings=self._random_settings(rng))
            insts = {}
            for _ in range(rng.randint(2, 7)):
                project = rng.choice(self.PROJECTS)
                try:
                    inst = self.spawn_with(project, rng.choice([1, 1, 2, 3]))
                except exception.TenantDoesNotFit:
                    continue
                insts[inst] = project
            for step in range(3):
                settings = self._random_settings(rng)
                self.mgr.update_settings(settings)
                self.mgr.reconcile()
                where = 'seed %d step %d' % (seed, step)
                self.assertEqual([], self.partitions.overlaps, where)
                errors = tm.invariants.check_host(
                    self.topology, HOUSEKEEPING,
                    self.partitions.list_partitions(),
                    [d.info for d in self.conn.domains.values()],
                    check_fewest_cores=False)
                if self.mgr.isolation()['isolated']:
                    self.assertEqual([], errors, where)
                for inst, project in insts.items():
                    self.assertEqual(self.mgr.key_of(project),
                                     self.conn.domains[inst].info.key, where)


class TestRandomSettingsChangesStrict(TestRandomSettingsChanges):
    pin_mode = allocator.STRICT
