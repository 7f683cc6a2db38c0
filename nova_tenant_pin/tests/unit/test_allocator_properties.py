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

"""Properties of the allocator over random hosts and workloads.

Hosts: 1-4 NUMA cells (some memory-only), 0-6 cores a cell, 1-4 threads a
core, optionally hybrid (threads differ per core) and with offline CPUs.
Workloads: up to 8 tenants, up to 14 instances of 1-8 vCPUs, some bound to a
cell, float or strict, ratios 1.0 / 1.5 / 2.0, random housekeeping CPUs.
Each test's docstring says which guarantee of the allocator it checks; a
failure prints the smallest host and workload that break it.
"""

import itertools
import math
import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from nova_tenant_pin import allocator
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology

RATIOS = [1.0, 1.5, 2.0]

# Profiles, chosen with HYPOTHESIS_PROFILE: "dev" (the default: new random
# examples every run), "ci" (the same examples every run, so that CI is not
# red by chance; tools/test.sh selects it when CI is set) and "stress"
# (ten times as many examples, for hunting bugs after a change).
settings.register_profile('dev', max_examples=300)
settings.register_profile('ci', max_examples=400, derandomize=True,
                          database=None)
settings.register_profile('stress', max_examples=3000)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'dev'))


@st.composite
def hosts(draw, max_cells=4, max_cores=6, max_threads=4):
    n_cells = draw(st.integers(1, max_cells))
    hybrid = draw(st.booleans())
    uniform = draw(st.integers(1, max_threads))
    cells = {}
    offline = set()
    cpu = 0
    for cell in range(n_cells):
        groups = []
        for _ in range(draw(st.integers(0, max_cores))):
            threads = draw(st.integers(1, max_threads)) if hybrid \
                else uniform
            group = list(range(cpu, cpu + threads))
            cpu += threads
            if threads > 1 and draw(st.integers(0, 9)) == 0:
                offline.add(group.pop())
            groups.append(group)
        cells[cell] = groups
    return topology.HostTopology(cells, offline_cpus=offline)


@st.composite
def workloads(draw, host, max_instances=14):
    n = draw(st.integers(0, max_instances))
    tenants = ['t%d' % i for i in range(draw(st.integers(1, 8)))]
    cell_ids = [c.id for c in host.cells]
    instances = []
    for i in range(n):
        cell = draw(st.one_of(st.none(), st.none(),
                              st.sampled_from(cell_ids)))
        instances.append(allocator.InstanceRequest(
            'i%d' % i, draw(st.sampled_from(tenants)),
            draw(st.integers(1, 8)), cell=cell,
            mode=draw(st.sampled_from(allocator.MODES))))
    return instances


@st.composite
def scenarios(draw):
    host = draw(hosts())
    instances = draw(workloads(host))
    online = sorted(host.online_cpus)
    housekeeping = draw(st.sets(st.sampled_from(online), max_size=3)) \
        if online else set()
    ratio = draw(st.sampled_from(RATIOS))
    tenant_ratios = draw(st.dictionaries(
        st.sampled_from(['t%d' % i for i in range(8)]),
        st.sampled_from(RATIOS), max_size=3))
    return host, instances, housekeeping, ratio, tenant_ratios


def check_plan(test, host, instances, housekeeping, ratio, plan,
               tenant_ratios=None):
    """The guarantees that hold for every plan."""
    tenant_ratios = tenant_ratios or {}
    owner = {}
    for project, tenant in plan.tenants.items():
        cores = host.cores_of(tenant.cpus)
        # Whole cores only.
        test.assertEqual(tenant.cpus, host.whole_core_cpus(tenant.cpus))
        for core in cores:
            test.assertNotIn(core, owner, 'core %s given to %s and %s'
                             % (core.cpus, owner.get(core), project))
            owner[core] = project
            test.assertFalse(set(core.cpus) & set(housekeeping),
                             'tenant %s got housekeeping core %s'
                             % (project, core.cpus))
    test.assertGreaterEqual(plan.housekeeping_cpus, frozenset(housekeeping))
    test.assertFalse(plan.free_cpus & plan.housekeeping_cpus)
    used = frozenset(c for t in plan.tenants.values() for c in t.cpus)
    test.assertFalse(plan.free_cpus & used)
    test.assertEqual(host.online_cpus,
                     plan.free_cpus | used | plan.housekeeping_cpus)

    by_uuid = {i.uuid: i for i in instances}
    unplaced = {u['uuid'] for u in plan.unplaced}
    test.assertEqual(set(by_uuid), set(plan.instances) | unplaced)
    test.assertFalse(set(plan.instances) & unplaced)
    for u in plan.unplaced:
        test.assertTrue(u['reason'])

    vcpus_in_cell = {}
    for uuid, placed in plan.instances.items():
        req = by_uuid[uuid]
        tenant = plan.tenants[req.key]
        test.assertLessEqual(placed.cpus, tenant.cpus)
        test.assertTrue(placed.cpus)
        if req.cell is not None:
            test.assertEqual((req.cell,), placed.cells)
        if req.mode == allocator.STRICT:
            test.assertEqual(set(range(req.vcpus)), set(placed.vcpu_pins))
            test.assertLessEqual(set(placed.vcpu_pins.values()), placed.cpus)
        else:
            test.assertIsNone(placed.vcpu_pins)
        for cell in placed.cells:
            vcpus_in_cell.setdefault((req.key, cell), 0)
        # Spread the instance's vCPUs over its cells as the pins do.
        share = req.vcpus / len(placed.cells)
        for cell in placed.cells:
            vcpus_in_cell[(req.key, cell)] += share

    # Capacity: a tenant's vCPUs fit its threads times its ratio.
    for project, tenant in plan.tenants.items():
        ratio_t = tenant_ratios.get(project, ratio)
        demand = sum(by_uuid[u].vcpus for u, p in plan.instances.items()
                     if p.key == project)
        test.assertEqual(demand, tenant.vcpus)
        test.assertLessEqual(demand, len(tenant.cpus) * ratio_t + 1e-9)
        test.assertEqual(
            len(tenant.cpus) - math.ceil(demand / ratio_t - 1e-9),
            tenant.stranded_cpus)

    # Strict pins: no thread carries more vCPUs than the ratio allows.
    for project, tenant in plan.tenants.items():
        load = {}
        for u, p in plan.instances.items():
            if p.key == project and p.vcpu_pins:
                for cpu in p.vcpu_pins.values():
                    load[cpu] = load.get(cpu, 0) + 1
        for cpu, n in load.items():
            test.assertLessEqual(n, math.ceil(tenant_ratios.get(project,
                                                                ratio)))


def replay(test, current, moves, target):
    """Apply ``moves`` to ``current``: no CPU is ever in two tenants, and
    the end state is ``target``."""
    state = {p: frozenset(c) for p, c in current.items() if c}
    for move in moves:
        if move.cpus:
            state[move.key] = move.cpus
        else:
            state.pop(move.key, None)
        seen = {}
        for project, cpus in state.items():
            for cpu in cpus:
                test.assertNotIn(cpu, seen, 'after %s, CPU %d is in %s and '
                                 '%s' % (move, cpu, seen.get(cpu), project))
                seen[cpu] = project
    test.assertEqual({p: c for p, c in target.items() if c}, state)


class TestPlanProperties(base.TestCase):

    @settings(deadline=None)
    @given(scenarios())
    def test_every_plan_keeps_the_guarantees(self, scenario):
        """Isolation, whole cores, housekeeping, capacity, pins: any plan."""
        host, instances, housekeeping, ratio, tenant_ratios = scenario
        plan = allocator.plan(host, instances, housekeeping_cpus=housekeeping,
                              ratio=ratio, tenant_ratios=tenant_ratios)
        check_plan(self, host, instances, housekeeping, ratio, plan,
                   tenant_ratios)
        replay(self, {}, plan.moves, plan.tenant_map())

    @settings(deadline=None)
    @given(scenarios())
    def test_each_cell_holds_no_superfluous_core(self, scenario):
        """Fewest cores: dropping any one core of a tenant in a cell leaves
        too few threads for its vCPUs there."""
        host, instances, housekeeping, ratio, tenant_ratios = scenario
        plan = allocator.plan(host, instances, housekeeping_cpus=housekeeping,
                              ratio=ratio, tenant_ratios=tenant_ratios)
        by_uuid = {i.uuid: i for i in instances}
        for project, tenant in plan.tenants.items():
            for cell in tenant.cells:
                cores = [c for c in host.cores_of(tenant.cpus)
                         if c.cell == cell]
                pins = [p for p in plan.instances.values()
                        if p.key == project and cell in p.cells]
                if any(len(p.cells) > 1 for p in pins):
                    continue  # a spanning instance's split is the plan's
                demand = sum(by_uuid[p.uuid].vcpus for p in pins)
                smallest = min(c.threads for c in cores)
                ratio_t = tenant_ratios.get(project, ratio)
                capacity = sum(c.threads for c in cores) * ratio_t
                self.assertLess(capacity - smallest * ratio_t, demand - 1e-9,
                                'tenant %s holds a core it does not need '
                                'in cell %d' % (project, cell))

    @settings(deadline=None)
    @given(hosts(max_cells=2, max_cores=5, max_threads=3),
           st.lists(st.integers(1, 8), min_size=1, max_size=5),
           st.sampled_from(RATIOS))
    def test_fewest_cores_matches_brute_force(self, host, sizes, ratio):
        """One tenant on an empty host holds the fewest cores that any
        choice of cores in one cell could give it, when one cell can hold
        it; brute force over every subset of cores checks it."""
        instances = [allocator.InstanceRequest('i%d' % n, 'p', v)
                     for n, v in enumerate(sizes)]
        plan = allocator.plan(host, instances, ratio=ratio)
        demand = sum(sizes)
        best = None
        for cell in host.cells:
            for k in range(1, len(cell.cores) + 1):
                if best is not None and k >= best:
                    break
                if any(sum(c.threads for c in combo) * ratio + 1e-9 >=
                       demand for combo in itertools.combinations(
                           cell.cores, k)):
                    best = k
                    break
        if best is None:
            return  # needs several cells; covered by the other properties
        self.assertEqual([], plan.unplaced)
        self.assertEqual(1, len(plan.tenants['p'].cells))
        self.assertEqual(best, len(host.cores_of(plan.tenants['p'].cpus)))
        threads = {c.threads for c in host.cores}
        if len(threads) == 1:
            self.assertEqual(best, allocator.cores_needed(
                demand, threads.pop(), ratio))


@st.composite
def sequences(draw):
    host = draw(hosts(max_cells=3))
    online = sorted(host.online_cpus)
    housekeeping = draw(st.sets(st.sampled_from(online), max_size=2)) \
        if online else set()
    ratio = draw(st.sampled_from(RATIOS))
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            steps.append(('arrive', draw(st.sampled_from(
                ['t%d' % i for i in range(6)])), draw(st.integers(1, 6)),
                draw(st.sampled_from(allocator.MODES))))
        else:
            steps.append(('depart', draw(st.integers(0, 50))))
    return host, housekeeping, ratio, steps


class TestSequenceProperties(base.TestCase):

    @settings(deadline=None)
    @given(sequences())
    def test_arrivals_and_departures(self, scenario):
        """Over arrivals and departures: every plan keeps the guarantees,
        its moves never put one CPU in two tenants, a placed instance is
        never dropped by a later plan, and a tenant whose instances did not
        change keeps exactly its cores."""
        host, housekeeping, ratio, steps = scenario
        running = []
        current = {}
        previous = None
        serial = 0
        for step in steps:
            changed = set()
            if step[0] == 'arrive':
                _, project, vcpus, mode = step
                serial += 1
                running.append(allocator.InstanceRequest(
                    'i%d' % serial, project, vcpus, mode=mode))
                changed.add(project)
            elif running:
                gone = running.pop(step[1] % len(running))
                changed.add(gone.key)
            plan = allocator.plan(host, running,
                                  housekeeping_cpus=housekeeping,
                                  current=current, ratio=ratio)
            check_plan(self, host, running, housekeeping, ratio, plan)
            replay(self, current, plan.moves, plan.tenant_map())
            if previous is not None:
                for uuid in previous.instances:
                    if any(i.uuid == uuid for i in running):
                        self.assertIn(uuid, plan.instances,
                                      'running instance %s was dropped'
                                      % uuid)
                for project, tenant in previous.tenants.items():
                    if project in changed or project not in plan.tenants:
                        continue
                    self.assertEqual(tenant.cpus,
                                     plan.tenants[project].cpus,
                                     'unchanged tenant %s was moved'
                                     % project)
            # Only what was placed keeps running; hints keep it in place.
            running = [allocator.InstanceRequest(
                i.uuid, i.key, i.vcpus, cell=i.cell, mode=i.mode,
                placed_cells=plan.instances[i.uuid].cell_vcpus)
                for i in running if i.uuid in plan.instances]
            current = plan.tenant_map()
            previous = plan
