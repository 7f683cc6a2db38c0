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

"""The tenant-pin scheduler filter and weigher against Nova's fake host
states, and the pure fit decision they share."""

import ddt
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from nova import objects
from nova.scheduler import weights as nova_weights
from nova.tests.unit.scheduler import fakes
from oslo_utils.fixture import uuidsentinel

from nova_tenant_pin import allocator
from nova_tenant_pin.scheduler import filters
from nova_tenant_pin.scheduler import fit
from nova_tenant_pin.scheduler import host_state as tenant_host
from nova_tenant_pin.scheduler import weights
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology as topo

objects.register_all()

# One cell, 4 cores of 2 threads: siblings (0, 4), (1, 5), (2, 6), (3, 7).
SIBLINGS = [{0, 4}, {1, 5}, {2, 6}, {3, 7}]


def numa(cpuset=frozenset(range(8)), pcpuset=frozenset(), siblings=None,
         cells=1, pinned=frozenset()):
    """A NUMATopology of ``cells`` copies of the 4-core cell, the copies
    numbered 8 CPUs apart."""
    result = []
    for cell in range(cells):
        shift = 8 * cell
        result.append(objects.NUMACell(
            id=cell, cpuset={c + shift for c in cpuset},
            pcpuset={c + shift for c in pcpuset},
            siblings=[{c + shift for c in s}
                      for s in (SIBLINGS if siblings is None else siblings)],
            memory=4096, cpu_usage=0, memory_usage=0,
            pinned_cpus={c + shift for c in pinned},
            mempages=[], network_metadata=objects.NetworkMetadata(
                physnets=set(), tunneled=False)))
    return objects.NUMATopology(cells=result)


def uuid(name):
    """A real UUID for a readable name (Nova's UUID fields want one)."""
    return getattr(uuidsentinel, name)


def instance(name, project, vcpus, cpu_policy=None, specs=None):
    specs = dict(specs or {})
    if cpu_policy:
        specs['hw:cpu_policy'] = cpu_policy
    return objects.Instance(
        uuid=uuid(name), project_id=project, vcpus=vcpus,
        flavor=objects.Flavor(vcpus=vcpus, extra_specs=specs))


def host(name, tenants=(), numa_topology=None, aggregates=()):
    """A host running, for each ``(project, vcpus)`` in ``tenants``, one
    instance of that size."""
    instances = [instance('%s-%d' % (name, n), project, vcpus)
                 for n, (project, vcpus) in enumerate(tenants)]
    return fakes.FakeHostState(name, name, {
        'numa_topology': numa() if numa_topology is None else numa_topology,
        'aggregates': list(aggregates)}, instances=instances)


def spec(project, vcpus, name='new', cpu_policy=None, group=None,
         specs=None):
    specs = dict(specs or {})
    if cpu_policy:
        specs['hw:cpu_policy'] = cpu_policy
    return objects.RequestSpec(
        instance_group=(None if group is None else objects.InstanceGroup(
            policy='affinity', members=[uuid(m) for m in group])),
        instance_uuid=uuid(name), project_id=project,
        flavor=objects.Flavor(vcpus=vcpus, extra_specs=specs),
        image=objects.ImageMeta.from_dict({}))


@ddt.ddt
class TenantPinFilterTest(base.TestCase):

    # (tenants on the 4-core host, new project, new vCPUs, passes)
    @ddt.data(
        ((), 'a', 8, True),
        ((), 'a', 9, False),
        # a holds 2 cores with a spare thread; b, c hold one core each.
        ((('a', 3), ('b', 2), ('c', 2)), 'a', 1, True),
        ((('a', 3), ('b', 2), ('c', 2)), 'd', 1, False),
        # Four tenants of 1 vCPU: Nova sees 4 free VCPUs, but every core is
        # held, and only the four tenants' own spare threads are left.
        ((('a', 1), ('b', 1), ('c', 1), ('d', 1)), 'e', 1, False),
        ((('a', 1), ('b', 1), ('c', 1), ('d', 1)), 'b', 1, True),
        ((('a', 1), ('b', 1), ('c', 1), ('d', 1)), 'b', 2, False),
        ((('a', 2), ('a', 1)), 'b', 4, True),
        ((('a', 2), ('a', 1)), 'b', 5, False),
    )
    @ddt.unpack
    def test_fit(self, tenants, project, vcpus, passes):
        self.assertEqual(passes, filters.TenantPinFilter().host_passes(
            host('h', tenants), spec(project, vcpus)))

    def _host_with(self, entries):
        """A host with one instance per ``(project, vcpus, specs)``."""
        return fakes.FakeHostState('h', 'h', {'numa_topology': numa(),
                                              'aggregates': []},
                                   instances=[
            instance('h-%d' % n, project, vcpus, specs=specs)
            for n, (project, vcpus, specs) in enumerate(entries)])

    def test_flavor_policy_is_resolved_as_on_the_compute(self):
        shared = {'tenant_pin:isolation': 'none'}
        # b and c opted out of isolation: they share one core, so d fits.
        state = self._host_with([('a', 4, {}), ('b', 1, shared),
                                 ('c', 1, shared)])
        self.assertTrue(filters.TenantPinFilter().host_passes(
            state, spec('d', 2)))
        view = tenant_host.host_view(state)
        self.assertEqual(['a', 'exempt', 'exempt'],
                         sorted(r.key for r in view.running))
        # Overcommit from the flavor: 8 vCPUs of one tenant on 2 cores.
        dense = {'tenant_pin:cpu_allocation_ratio': '2.0'}
        self.assertTrue(filters.TenantPinFilter().host_passes(
            self._host_with([('a', 8, dense)]), spec('b', 4)))
        self.assertFalse(filters.TenantPinFilter().host_passes(
            self._host_with([('a', 8, {})]), spec('b', 1)))

    def test_isolation_groups_share_cores_in_the_scheduler_too(self):
        full = host('h', [('a', 1), ('b', 1), ('c', 2), ('d', 2)])
        self.assertFalse(filters.TenantPinFilter().host_passes(
            full, spec('e', 2)))
        self.flags(isolation_groups=['acme:a,b'], group='tenant_pin')
        self.assertTrue(filters.TenantPinFilter().host_passes(
            full, spec('e', 2)))

    def test_bad_flavor_value_refused_with_a_reason(self):
        with self.assertLogs('nova_tenant_pin.scheduler.filters',
                             'WARNING') as logs:
            self.assertFalse(filters.TenantPinFilter().host_passes(
                host('h'), spec('a', 1, specs={
                    'tenant_pin:pin_mode': 'sticky'})))
        self.assertIn('tenant_pin:pin_mode', logs.output[0])
        self.assertEqual(0.0, weights.TenantPinWeigher()._weigh_object(
            host('h'), spec('a', 1, specs={'tenant_pin:pin_mode': 'x'})))

    def test_in_tenant_ratio_lets_a_tenant_share_its_threads(self):
        full = host('h', [('a', 2), ('b', 2), ('c', 2), ('d', 2)])
        self.assertFalse(filters.TenantPinFilter().host_passes(
            full, spec('a', 2)))
        self.flags(tenant_cpu_allocation_ratio=2.0)
        self.assertTrue(filters.TenantPinFilter().host_passes(
            full, spec('a', 2)))
        self.assertFalse(filters.TenantPinFilter().host_passes(
            full, spec('a', 3)))

    def test_instance_already_on_the_host_is_not_counted_twice(self):
        # A resize to the same host: Nova lists the instance on the host
        # and schedules it again.
        state = host('h', [('a', 4), ('b', 2)])
        self.assertTrue(filters.TenantPinFilter().host_passes(
            state, spec('a', 4, name='h-0')))
        self.assertFalse(filters.TenantPinFilter().host_passes(
            state, spec('a', 4, name='other')))

    def test_dedicated_requests_are_novas_business(self):
        full = host('h', [('a', 1), ('b', 1), ('c', 1), ('d', 1)])
        self.assertFalse(filters.TenantPinFilter().host_passes(
            full, spec('e', 1)))
        self.assertTrue(filters.TenantPinFilter().host_passes(
            full, spec('e', 1, cpu_policy='dedicated')))

    def test_earlier_instances_of_a_server_group_request_count(self):
        """Nova adds a bare Instance(uuid=...) to host_state.instances for
        each instance of a multi-create request in a server group that it
        has placed. They cannot be loaded (no context); those in the
        request's group are the request's tenant and flavor. If this fails,
        the filter either crashes on them or lets the request overfill the
        host."""
        members = ('first', 'second', 'third', 'fourth', 'new')
        state = host('h')
        for name in ('first', 'second', 'third'):
            state.instances[uuid(name)] = objects.Instance(uuid=uuid(name))
        # Three 2-vCPU instances of a already hold 3 of the 4 cores.
        self.assertTrue(filters.TenantPinFilter().host_passes(
            state, spec('a', 2, group=members)))
        state.instances[uuid('fourth')] = objects.Instance(
            uuid=uuid('fourth'))
        self.assertFalse(filters.TenantPinFilter().host_passes(
            state, spec('a', 2, group=members)))

    def test_stubs_of_another_request_are_left_out(self):
        # Stubs stay behind after a request that failed, until the compute
        # host sends its instance list again; they are not this tenant's.
        state = host('h')
        for name in ('first', 'second', 'third', 'fourth'):
            state.instances[uuid(name)] = objects.Instance(uuid=uuid(name))
        self.assertTrue(filters.TenantPinFilter().host_passes(
            state, spec('a', 2, group=('other', 'new'))))
        self.assertTrue(filters.TenantPinFilter().host_passes(
            state, spec('a', 2)))
        self.assertEqual((), tenant_host.host_view(state).running)

    def test_host_without_numa_topology_passes(self):
        state = fakes.FakeHostState('h', 'h', {'numa_topology': None})
        self.assertTrue(filters.TenantPinFilter().host_passes(
            state, spec('a', 64)))

    def test_dedicated_cpus_are_never_given_to_tenants(self):
        # Cores (2, 6) and (3, 7) are Nova's dedicated CPUs.
        state = host('h', numa_topology=numa(cpuset={0, 1, 4, 5},
                                             pcpuset={2, 3, 6, 7}))
        self.assertTrue(filters.TenantPinFilter().host_passes(
            state, spec('a', 4)))
        self.assertFalse(filters.TenantPinFilter().host_passes(
            state, spec('a', 5)))

    def test_cpus_in_both_sets_are_shared_unless_pinned(self):
        # A host with neither cpu_shared_set nor cpu_dedicated_set reports
        # every CPU in both sets; Nova's pinned instances show as pinned.
        legacy = numa(cpuset=set(range(8)), pcpuset=set(range(8)))
        self.assertTrue(filters.TenantPinFilter().host_passes(
            host('h', numa_topology=legacy), spec('a', 8)))
        legacy = numa(cpuset=set(range(8)), pcpuset=set(range(8)),
                      pinned={1})
        self.assertFalse(filters.TenantPinFilter().host_passes(
            host('h', numa_topology=legacy), spec('a', 7)))
        self.assertTrue(filters.TenantPinFilter().host_passes(
            host('h', numa_topology=legacy), spec('a', 6)))

    def test_instances_pinned_by_nova_are_left_out(self):
        state = host('h', [('a', 2)], numa_topology=numa(
            cpuset={0, 1, 4, 5}, pcpuset={2, 3, 6, 7}))
        pinned = instance('pinned', 'b', 4, cpu_policy='dedicated')
        state.instances[pinned.uuid] = pinned
        self.assertTrue(filters.TenantPinFilter().host_passes(
            state, spec('c', 2)))


@ddt.ddt
class HostViewTest(base.TestCase):

    def test_cores_from_siblings_and_cells(self):
        view = tenant_host.host_view(host('h', [('a', 3)],
                                          numa_topology=numa(cells=2)))
        self.assertEqual(
            topo.HostTopology({0: [[0, 4], [1, 5], [2, 6], [3, 7]],
                               1: [[8, 12], [9, 13], [10, 14], [11, 15]]}),
            view.topology)
        self.assertEqual((tenant_host.TenantRequest(uuid('h-0'), 'a', 3,
                                                    ratio=1.0),),
                         view.running)
        self.assertEqual(frozenset(), view.housekeeping_cpus)

    def test_core_that_lost_a_thread_to_housekeeping_is_reserved(self):
        # CPU 0 is outside cpu_shared_set, so Nova reports (4) alone; the
        # compute host reserves the whole core (0, 4) for housekeeping.
        view = tenant_host.host_view(host('h', numa_topology=numa(
            cpuset=set(range(1, 8)))))
        self.assertEqual(frozenset({4}), view.housekeeping_cpus)
        self.assertFalse(view.check_fit(
            allocator.InstanceRequest('n', 'a', 7)).fits)
        self.assertTrue(view.check_fit(
            allocator.InstanceRequest('n', 'a', 6)).fits)

    def test_cpus_without_sibling_sets_are_cores_of_their_own(self):
        view = tenant_host.host_view(host('h', numa_topology=numa(
            siblings=[])))
        self.assertEqual(8, len(view.topology.cores))
        self.assertEqual(1, view.topology.max_threads_per_core)


@ddt.ddt
class TenantPinWeigherTest(base.TestCase):

    def weigh(self, hosts, request):
        return nova_weights.HostWeightHandler().get_weighed_objects(
            [weights.TenantPinWeigher()], hosts, request)

    def test_fills_the_tenant_spare_thread_first(self):
        hole = host('hole', [('a', 1)])
        empty = host('empty')
        even = host('even', [('a', 2)])
        weighed = self.weigh([empty, even, hole], spec('a', 1))
        self.assertEqual('hole', weighed[0].obj.host)
        # Normalised to 0..1 and multiplied by the default 10.0.
        self.assertEqual(10.0, weighed[0].weight)
        self.assertEqual(0.0, weighed[-1].weight)

    def test_gathers_a_tenant_where_it_holds_cores(self):
        # Two vCPUs fill a whole core anywhere; the host where tenant a
        # already holds cores wins over an empty one and over b's host.
        empty = host('empty')
        other = host('other', [('b', 2)])
        own = host('own', [('a', 2)])
        weighed = self.weigh([empty, other, own], spec('a', 2))
        self.assertEqual('own', weighed[0].obj.host)
        self.assertEqual(10.0, weighed[0].weight)
        # Where a is new, the host with more free cores comes first.
        self.assertEqual(['empty', 'other'],
                         [w.obj.host for w in weighed[1:]])
        self.assertEqual(0.0, weighed[2].weight)

    def test_newcomer_goes_where_it_has_room_to_grow(self):
        """A tenant new to every host starts on the one with the most
        free cores, whatever Nova's weighers say; if this fails, the
        weigher no longer keeps room for a tenant's later instances."""
        crowded = host('crowded', [('b', 6)])
        roomy = host('roomy', [('c', 2)])
        weighed = self.weigh([crowded, roomy], spec('a', 2))
        self.assertEqual(['roomy', 'crowded'],
                         [w.obj.host for w in weighed])

    def test_tenant_gathers_on_the_fullest_host_it_holds_cores_on(self):
        """Of two hosts where tenant a holds cores and strands nothing,
        the fuller takes its next instance, keeping the emptier host's
        room; if this fails, the weigher no longer packs a tenant's own
        instances."""
        fuller = host('fuller', [('a', 2), ('b', 4)])
        emptier = host('emptier', [('a', 2)])
        weighed = self.weigh([emptier, fuller], spec('a', 2))
        self.assertEqual(['fuller', 'emptier'],
                         [w.obj.host for w in weighed])

    def test_multiplier_from_config_and_aggregate(self):
        hosts = [host('hole', [('a', 1)]), host('empty')]
        self.flags(weight_multiplier=2.0)
        self.assertEqual(2.0, self.weigh(hosts, spec('a', 1))[0].weight)
        aggregate = objects.Aggregate(
            id=1, name='agg', hosts=['hole'],
            metadata={'tenant_pin_weight_multiplier': '5.0'})
        hosts[0].aggregates = [aggregate]
        self.assertEqual(5.0, self.weigh(hosts, spec('a', 1))[0].weight)

    def test_dedicated_request_weighs_nothing(self):
        weigher = weights.TenantPinWeigher()
        self.assertEqual(0.0, weigher._weigh_object(
            host('hole', [('a', 1)]), spec('a', 1, cpu_policy='dedicated')))


@ddt.ddt
class FitTest(base.TestCase):

    TOPOLOGY = topo.HostTopology({0: [[0, 4], [1, 5], [2, 6], [3, 7]]})

    # (running (project, vcpus), new (project, vcpus), stranded change)
    @ddt.data(
        ((), ('a', 1), 1),            # opens a core, uses one thread
        ((), ('a', 2), 0),
        ((), ('a', 3), 1),
        ((('a', 1),), ('a', 1), -1),  # fills a's spare thread
        ((('a', 1),), ('a', 2), 0),   # fills it and opens a core: 1 -> 1
        ((('a', 1),), ('a', 3), -1),  # 1 + 3 = 4: two full cores
        ((('a', 1),), ('b', 1), 1),
        ((('a', 2),), ('a', 1), 1),
    )
    @ddt.unpack
    def test_stranded_change(self, running, new, change):
        requests = [allocator.InstanceRequest('r%d' % n, p, v)
                    for n, (p, v) in enumerate(running)]
        before = allocator.plan(self.TOPOLOGY, requests)
        arriving = allocator.InstanceRequest('new', *new)
        self.assertEqual(change, fit.stranded_change(before, arriving, 2))
        # The estimate is exact on one cell: the plan with the newcomer
        # strands exactly that many more threads.
        after = fit.check_fit(self.TOPOLOGY, requests, arriving).plan
        self.assertEqual(change, after.stranded_cpus - before.stranded_cpus)

    # (running (project, vcpus), new (project, vcpus), weight)
    @ddt.data(
        ((('a', 1),), ('a', 1), 3),   # fills a's spare thread
        ((('a', 2),), ('a', 2), 1),   # a holds cores here, strands nothing
        ((('b', 2),), ('a', 2), 0),   # strands nothing, a not here
        ((('a', 2),), ('a', 1), -1),  # a here, but opens a half-used core
        ((), ('a', 1), -2),           # opens a half-used core for a newcomer
    )
    @ddt.unpack
    def test_tenant_pin_weight(self, running, new, weight):
        requests = [allocator.InstanceRequest('r%d' % n, p, v)
                    for n, (p, v) in enumerate(running)]
        before = allocator.plan(self.TOPOLOGY, requests)
        new = allocator.InstanceRequest('new', *new)
        self.assertEqual(weight, fit.tenant_pin_weight(
            before, new, 2, room=False))
        # The room term orders hosts inside a step, never across one.
        with_room = fit.tenant_pin_weight(before, new, 2)
        self.assertGreaterEqual(with_room, weight)
        self.assertLessEqual(with_room, weight + fit.ROOM_WEIGHT)

    # (running (project, vcpus), new project, room term in quarters of
    # ROOM_WEIGHT): the topology has 4 cores.
    @ddt.data(
        ((), 'a', 4),                       # new to an empty host
        ((('b', 2),), 'a', 3),              # new, one core of four taken
        ((('b', 2), ('c', 4)), 'a', 1),
        ((('a', 2),), 'a', 1),              # a holds one core of four
        ((('a', 2), ('b', 4)), 'a', 3),     # the fuller, the higher
    )
    @ddt.unpack
    def test_room_term(self, running, project, quarters):
        requests = [allocator.InstanceRequest('r%d' % n, p, v)
                    for n, (p, v) in enumerate(running)]
        before = allocator.plan(self.TOPOLOGY, requests)
        tenant = before.tenants.get(project)
        self.assertAlmostEqual(
            fit.ROOM_WEIGHT * quarters / 4,
            fit.room_term(before, tenant is not None))

    def test_weight_orders_fill_then_gather_then_even_then_stranding(self):
        """The weigher's order of preference; if this fails, it no longer
        fills idle threads first or no longer gathers a tenant's
        instances."""
        def weight(running, new):
            requests = [allocator.InstanceRequest('r%d' % n, p, v)
                        for n, (p, v) in enumerate(running)]
            return fit.tenant_pin_weight(
                allocator.plan(self.TOPOLOGY, requests),
                allocator.InstanceRequest('new', *new), 2)
        fill = weight([('a', 3)], ('a', 1))
        gather = weight([('a', 4)], ('a', 2))
        even = weight([('b', 4)], ('a', 2))
        strand_here = weight([('a', 4)], ('a', 1))
        strand_new = weight([('b', 4)], ('a', 1))
        self.assertGreater(fill, gather)
        self.assertGreater(gather, even)
        self.assertGreater(even, strand_here)
        self.assertGreater(strand_here, strand_new)

    def test_refuses_a_newcomer_that_pushes_out_a_running_instance(self):
        """The allocator serves bigger tenants first; a newcomer that makes
        its tenant the biggest may take the cores another tenant holds. If
        this fails, check_fit lets the scheduler pick a host where the
        compute claim will fail."""
        topology = topo.HostTopology({0: [[0, 4], [1, 5]]})
        running = [allocator.InstanceRequest('b1', 'b', 2),
                   allocator.InstanceRequest('a1', 'a', 1)]
        verdict = fit.check_fit(topology, running,
                                allocator.InstanceRequest('new', 'a', 2))
        self.assertFalse(verdict.fits)
        self.assertIn('b1', verdict.reason)
        self.assertEqual(['b1'], [i['uuid'] for i in verdict.plan.unplaced])

    def test_capacity_bound_refuses_a_full_host_without_planning(self):
        running = [allocator.InstanceRequest('r%d' % n, p, 2)
                   for n, p in enumerate('abcd')]
        before = allocator.plan(self.TOPOLOGY, running)
        verdict = fit.check_fit(self.TOPOLOGY, running,
                                allocator.InstanceRequest('new', 'e', 1),
                                before=before)
        self.assertFalse(verdict.fits)
        self.assertIsNone(verdict.plan)
        self.assertIn('room for 0 vCPUs', verdict.reason)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from('abcde'),
                              st.integers(1, 6)), max_size=8),
           st.sampled_from('abcdef'), st.integers(1, 8))
    def test_capacity_bound_never_refuses_what_the_plan_places(
            self, running, project, vcpus):
        """The bound is a shortcut: with and without it, check_fit must
        agree, on two cells where tenants may be split. If this fails,
        the filter refuses hosts where the compute would accept."""
        topology = topo.HostTopology({0: [[0, 4], [1, 5]],
                                      1: [[2, 6], [3, 7]]})
        requests = [allocator.InstanceRequest('r%d' % n, p, v)
                    for n, (p, v) in enumerate(running)]
        new = allocator.InstanceRequest('new', project, vcpus)
        before = allocator.plan(topology, requests)
        self.assertEqual(
            fit.check_fit(topology, requests, new).fits,
            fit.check_fit(topology, requests, new, before=before).fits)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from('abcde'),
                              st.integers(1, 6)), max_size=10),
           st.sampled_from('abcdef'), st.integers(1, 8),
           st.sampled_from([1.0, 1.5, 2.0]))
    def test_stranded_change_is_exact_on_one_cell(
            self, running, project, vcpus, ratio):
        """The weigher's estimate, from the plan without the newcomer,
        equals the change the allocator makes when the newcomer fits (one
        NUMA cell, any in-tenant ratio). If this fails, the weigher ranks
        hosts by a number the compute host will not produce."""
        topology = topo.HostTopology({0: [[i, i + 8] for i in range(8)]})
        requests = [allocator.InstanceRequest('r%d' % n, p, v)
                    for n, (p, v) in enumerate(running)]
        before = allocator.plan(topology, requests, ratio=ratio)
        new = allocator.InstanceRequest('new', project, vcpus)
        verdict = fit.check_fit(topology, requests, new, ratio=ratio,
                                current=before.tenant_map(), before=before)
        if before.unplaced or not verdict.fits:
            return
        self.assertEqual(
            verdict.plan.stranded_cpus - before.stranded_cpus,
            fit.stranded_change(before, new, 2, ratio))
