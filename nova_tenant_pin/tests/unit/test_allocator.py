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

"""Examples of the allocator's behaviour; the properties that must hold for
every input are in test_allocator_properties."""

import ddt

from nova_tenant_pin import allocator
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology


def host(cells=1, cores=4, threads=2):
    """``cells`` x ``cores`` cores of ``threads`` threads, numbered like
    Linux numbers them: first thread of every core, then the second."""
    per_cell = cores * cells
    return topology.HostTopology({
        cell: [[cell * cores + core + t * per_cell for t in range(threads)]
               for core in range(cores)]
        for cell in range(cells)})


def inst(uuid, project, vcpus, **kw):
    return allocator.InstanceRequest(uuid, project, vcpus, **kw)


def overlap(plan):
    seen = {}
    for project, t in plan.tenants.items():
        for cpu in t.cpus:
            if cpu in seen:
                return (cpu, seen[cpu], project)
            seen[cpu] = project
    return None


@ddt.ddt
class TestPlanExamples(base.TestCase):

    def test_design_example(self):
        """The example of the plan contract in design.md."""
        h = host(cores=4)  # siblings [0,4] [1,5] [2,6] [3,7]
        plan = allocator.plan(h, [inst('i1', 'p1', 3)],
                              housekeeping_cpus=[0, 4])
        self.assertEqual(frozenset({1, 2, 5, 6}), plan.tenants['p1'].cpus)
        self.assertEqual(frozenset({1, 2, 5, 6}), plan.instances['i1'].cpus)
        self.assertIsNone(plan.instances['i1'].vcpu_pins)
        self.assertEqual(1, plan.stranded_cpus)
        self.assertEqual(frozenset({3, 7}), plan.free_cpus)
        self.assertEqual([], plan.unplaced)

    @ddt.unpack
    @ddt.data((1, 1.0, 1, 1), (2, 1.0, 1, 1), (2, 1.0, 2, 1),
              (2, 1.0, 3, 2), (2, 1.0, 6, 3), (4, 1.0, 5, 2),
              (2, 2.0, 4, 1), (2, 2.0, 5, 2), (2, 1.5, 3, 1),
              (2, 1.5, 4, 2), (8, 1.0, 9, 2), (3, 1.0, 7, 3))
    def test_fewest_cores(self, threads, ratio, vcpus, cores):
        h = host(cores=8, threads=threads)
        plan = allocator.plan(h, [inst('i', 'p', vcpus)], ratio=ratio)
        self.assertEqual(cores * threads, len(plan.tenants['p'].cpus))
        self.assertEqual(cores, allocator.cores_needed(vcpus, threads,
                                                       ratio))

    def test_per_tenant_ratio(self):
        h = host(cores=4)
        plan = allocator.plan(h, [inst('a', 'dense', 4), inst('b', 'plain',
                                                              4)],
                              tenant_ratios={'dense': 2.0})
        self.assertEqual(2, len(plan.tenants['dense'].cpus))
        self.assertEqual(4, len(plan.tenants['plain'].cpus))
        e = self.assertRaises(allocator.PlanError, allocator.plan, h, [],
                              tenant_ratios={'x': 0.5})
        self.assertIn('the allocation ratio of tenant x', str(e))

    def test_two_tenants_never_share_a_core(self):
        h = host(cores=4)
        plan = allocator.plan(h, [inst('a1', 'a', 1), inst('b1', 'b', 1),
                                  inst('a2', 'a', 1)])
        self.assertIsNone(overlap(plan))
        a = {h.core_of(c) for c in plan.tenants['a'].cpus}
        b = {h.core_of(c) for c in plan.tenants['b'].cpus}
        self.assertEqual(1, len(a))
        self.assertEqual(1, len(b))
        self.assertFalse(a & b)

    def test_housekeeping_split_core_is_rounded_up(self):
        h = host(cores=2)  # [0,2] [1,3]
        plan = allocator.plan(h, [inst('i', 'p', 2)], housekeeping_cpus=[0])
        self.assertEqual(frozenset({0, 2}), plan.housekeeping_cpus)
        self.assertEqual(frozenset({1, 3}), plan.tenants['p'].cpus)
        self.assertIn('CPUs 2 are reserved for housekeeping',
                      plan.warnings[0])

    def test_full_host_reports_unplaced_not_overlap(self):
        h = host(cores=2)
        plan = allocator.plan(h, [inst('a', 'pa', 2), inst('b', 'pb', 2),
                                  inst('c', 'pc', 1)])
        self.assertEqual(['c'], [u['uuid'] for u in plan.unplaced])
        self.assertIn('tenant pc cannot get 1 more vCPUs',
                      plan.unplaced[0]['reason'])
        self.assertNotIn('pc', plan.tenants)
        self.assertIsNone(overlap(plan))

    def test_strict_pins_fill_siblings_of_one_instance_first(self):
        h = host(cores=4)  # [0,4] [1,5] [2,6] [3,7]
        plan = allocator.plan(h, [inst('x', 'p', 3, mode='strict'),
                                  inst('y', 'p', 3, mode='strict')])
        self.assertEqual({0: 0, 1: 4, 2: 1},
                         plan.instances['x'].vcpu_pins)
        self.assertEqual({0: 5, 1: 2, 2: 6},
                         plan.instances['y'].vcpu_pins)
        self.assertEqual(frozenset({0, 1, 2, 4, 5, 6}),
                         plan.tenants['p'].cpus)

    def test_strict_with_overcommit_spreads_before_stacking(self):
        h = host(cores=2)  # [0,2] [1,3]
        plan = allocator.plan(h, [inst('x', 'p', 2, mode='strict'),
                                  inst('y', 'p', 2, mode='strict')],
                              ratio=2.0)
        self.assertEqual(frozenset({0, 2}), plan.tenants['p'].cpus)
        self.assertEqual({0: 0, 1: 2}, plan.instances['x'].vcpu_pins)
        self.assertEqual({0: 0, 1: 2}, plan.instances['y'].vcpu_pins)

    def test_cell_bound_instance(self):
        h = host(cells=2, cores=2)  # cell0 [0,4] [1,5]; cell1 [2,6] [3,7]
        plan = allocator.plan(h, [inst('i', 'p', 2, cell=1)])
        self.assertEqual(frozenset({2, 6}), plan.tenants['p'].cpus)
        self.assertEqual((1,), plan.instances['i'].cells)

    def test_unconstrained_tenant_kept_in_one_cell(self):
        h = host(cells=2, cores=2)
        plan = allocator.plan(h, [inst('a', 'p', 2), inst('b', 'p', 2)])
        self.assertEqual((0,), plan.tenants['p'].cells)
        self.assertEqual(frozenset({0, 1, 4, 5}), plan.tenants['p'].cpus)

    def test_instance_bigger_than_a_cell_spans_cells(self):
        h = host(cells=2, cores=2)
        plan = allocator.plan(h, [inst('big', 'p', 6)])
        self.assertEqual((0, 1), plan.instances['big'].cells)
        self.assertEqual(6, len(plan.tenants['p'].cpus))
        self.assertEqual([], plan.unplaced)

    def test_dedicated_cores_blocked(self):
        h = host(cores=2)
        plan = allocator.plan(h, [inst('a', 'p', 2), inst('b', 'q', 2)],
                              dedicated_cpus=[2])
        self.assertEqual(frozenset({1, 3}), plan.tenants['p'].cpus)
        self.assertEqual(['b'], [u['uuid'] for u in plan.unplaced])
        self.assertNotIn(0, plan.free_cpus)

    def test_static_tenant(self):
        h = host(cores=4)
        plan = allocator.plan(h, [inst('s', 'gold', 2), inst('o', 'p', 2)],
                              static={'gold': [3, 7], 'idle': [2, 6]})
        self.assertEqual(frozenset({3, 7}), plan.tenants['gold'].cpus)
        self.assertEqual(frozenset({2, 6}), plan.tenants['idle'].cpus)
        self.assertEqual(frozenset({0, 4}), plan.tenants['p'].cpus)

    @ddt.unpack
    @ddt.data(({'a': [3]}, 'must be whole cores'),
              ({'a': [3, 7], 'b': [7, 3]}, 'share core'),
              ({'a': [0, 4]}, 'reserved for housekeeping'),
              ({'a': [99]}, 'not an online CPU'))
    def test_static_errors(self, static, message):
        e = self.assertRaises(allocator.PlanError, allocator.plan, host(),
                              [], housekeeping_cpus=[0, 4], static=static)
        self.assertIn(message, str(e))

    @ddt.unpack
    @ddt.data(([inst('i', 'p', 0)], 1.0, 'vcpus must be an integer >= 1'),
              ([inst('i', 'p', True)], 1.0, 'vcpus must be an integer'),
              ([inst('i', 'p', 1, mode='x')], 1.0, 'mode must be one of'),
              ([inst('i', 'p', 1, cell=7)], 1.0, 'no NUMA cell 7'),
              ([inst('i', '', 1)], 1.0, 'project_id must be'),
              ([inst('i', 'p', 1), inst('i', 'q', 1)], 1.0, 'listed twice'),
              ([], 0.5, 'must be a number >= 1.0'),
              ([], float('nan'), 'must be a number >= 1.0'))
    def test_validation(self, instances, ratio, message):
        e = self.assertRaises(allocator.PlanError, allocator.plan, host(),
                              instances, ratio=ratio)
        self.assertIn(message, str(e))

    def test_arrival_moves_nobody(self):
        h = host(cores=4)
        first = allocator.plan(h, [inst('a', 'pa', 2), inst('b', 'pb', 3)])
        second = allocator.plan(
            h, [inst('a', 'pa', 2), inst('b', 'pb', 3), inst('c', 'pc', 1)],
            current=first.tenant_map())
        self.assertEqual(first.tenants['pa'].cpus, second.tenants['pa'].cpus)
        self.assertEqual(first.tenants['pb'].cpus, second.tenants['pb'].cpus)
        self.assertEqual([('create', 'pc')],
                         [(m.action, m.key) for m in second.moves])

    def test_departure_frees_cores_for_an_arrival(self):
        h = host(cores=2)
        first = allocator.plan(h, [inst('a', 'pa', 2), inst('b', 'pb', 2)])
        second = allocator.plan(h, [inst('b', 'pb', 2), inst('c', 'pc', 2)],
                                current=first.tenant_map())
        self.assertEqual(first.tenants['pa'].cpus, second.tenants['pc'].cpus)
        self.assertEqual([('release', 'pa'), ('create', 'pc')],
                         [(m.action, m.key) for m in second.moves])

    def test_shrink_before_grow(self):
        h = host(cores=4)
        current = {'pa': [0, 4, 1, 5], 'pb': [2, 6]}
        plan = allocator.plan(h, [inst('a', 'pa', 1), inst('b', 'pb', 4)],
                              current=current)
        self.assertEqual(frozenset({0, 4}), plan.tenants['pa'].cpus)
        self.assertEqual(['shrink', 'grow'],
                         [m.action for m in plan.moves])
        self.assertEqual(frozenset({1, 5}), plan.moves[0].removed)

    def test_housekeeping_change_relocates_with_widen_then_shrink(self):
        h = host(cores=2)  # [0,2] [1,3]
        plan = allocator.plan(h, [inst('a', 'pa', 2)], current={'pa': [0, 2]},
                              housekeeping_cpus=[0, 2])
        self.assertEqual(frozenset({1, 3}), plan.tenants['pa'].cpus)
        self.assertEqual(
            [('widen', {0, 1, 2, 3}), ('shrink', {1, 3})],
            [(m.action, set(m.cpus)) for m in plan.moves])
        self.assertIn('tenant pa loses cores 0,2', plan.warnings[0])

    def test_overlapping_current_is_repaired(self):
        h = host(cores=2)
        plan = allocator.plan(h, [inst('a', 'pa', 1), inst('b', 'pb', 1)],
                              current={'pa': [0, 2], 'pb': [0, 2]})
        self.assertIsNone(overlap(plan))
        self.assertEqual(frozenset({0, 2}), plan.tenants['pa'].cpus)
        self.assertEqual(frozenset({1, 3}), plan.tenants['pb'].cpus)

    def test_hybrid_host_fresh_tenant_takes_big_cores(self):
        h = topology.HostTopology({0: [[0], [1], [2, 3, 4, 5]]})
        plan = allocator.plan(h, [inst('i', 'p', 4)])
        self.assertEqual(frozenset({2, 3, 4, 5}), plan.tenants['p'].cpus)


class TestOrderMoves(base.TestCase):

    def test_swap_is_refused(self):
        e = self.assertRaises(allocator.PlanError, allocator.order_moves,
                              {'a': [1], 'b': [2]}, {'a': [2], 'b': [1]})
        self.assertIn('wait on each other', str(e))

    def test_noop(self):
        self.assertEqual([], allocator.order_moves({'a': [1]}, {'a': [1]}))
