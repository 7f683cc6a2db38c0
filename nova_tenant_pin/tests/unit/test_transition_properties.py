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

"""Properties of the transition planner over random hosts, maps and faults.

Hosts: 1-2 NUMA cells of 2-6 cores of 1-2 threads, the first core
housekeeping. A host starts isolated: random instances (1-4 vCPUs, float or
strict, 0-2 I/O threads) of up to 4 isolation keys, each domain in its
key's partition and pinned where the allocator placed it; some guests were
started without tenant-pin (adopted: no partition, running anywhere). The
target: instances added, removed, resized, or moved to another key (the
per-project settings changed). A fault may stop the steps at any point.

Each test's docstring says which guarantee it checks. The checker
(:func:`new_exposures`) reads only the simulated kernel state: partitions and
each thread's CPUs, never the planner's own bookkeeping.
"""

import collections
import dataclasses
import os

from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from nova_tenant_pin import allocator
from nova_tenant_pin import claims as tp_claims
from nova_tenant_pin import domain_xml
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology
from nova_tenant_pin import transition

# The project's profiles (see test_allocator_properties): "ci" replays a
# fixed set of examples.
settings.register_profile('dev', max_examples=300)
settings.register_profile('ci', max_examples=400, derandomize=True,
                          database=None)
settings.register_profile('stress', max_examples=3000)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'dev'))

KEYS = ['k0', 'k1', 'k2', 'k3']
INSTANCES = ['i%d' % i for i in range(6)]


@st.composite
def hosts(draw):
    cells, cpu = {}, 0
    threads = draw(st.integers(1, 2))
    for cell in range(draw(st.integers(1, 2))):
        cores = []
        for _ in range(draw(st.integers(2, 6))):
            cores.append(list(range(cpu, cpu + threads)))
            cpu += threads
        cells[cell] = cores
    return topology.HostTopology(cells)


def _claim(uuid, key, vcpus, mode):
    return tp_claims.Claim(uuid=uuid, project_id=key, key=key,
                           vcpus=vcpus, mode=mode, ratio=1.0,
                           pending=False)


def _plan(host, hk, claims, current, truth=None):
    return tp_claims.target_plan(claims, current, host, hk, 1.0,
                                 frozenset(), {}, truth=truth)


def _domain(uuid, claim, placement, iothreads, adopted):
    """A domain as the driver defines it, placed by ``placement``."""
    pins = {}
    if placement is not None and placement.vcpu_pins is not None:
        pins = {v: frozenset([c]) for v, c in placement.vcpu_pins.items()}
    if adopted:
        return domain_xml.DomainInfo(
            uuid=uuid, name=uuid, active=True, persistent=True,
            vcpus=claim.vcpus, project_id=claim.key,
            iothread_ids=tuple(range(1, iothreads + 1)))
    return domain_xml.DomainInfo(
        uuid=uuid, name=uuid, active=True, persistent=True,
        vcpus=claim.vcpus, project_id=claim.key,
        partition=domain_xml.PARTITION_PREFIX + claim.key,
        vcpu_cpuset=placement.cpus, vcpu_pins=pins,
        emulator_pins=placement.cpus if pins else None,
        key=claim.key, pin_mode=claim.mode, ratio=1.0,
        iothread_ids=tuple(range(1, iothreads + 1)))


@st.composite
def scenarios(draw):
    """``(host, housekeeping, truth, keymap, claims)``: an isolated host,
    and the claims of the target."""
    host = draw(hosts())
    hk = frozenset(host.cores[0].cpus)
    n = draw(st.integers(0, 6))
    claims = collections.OrderedDict()
    for i in range(n):
        uuid = 'i%d' % i
        claims[uuid] = _claim(uuid, draw(st.sampled_from(KEYS)),
                              draw(st.integers(1, 4)),
                              draw(st.sampled_from(allocator.MODES)))
    first = _plan(host, hk, claims, {})
    assume(not first.unplaced)
    domains = {}
    for uuid, claim in claims.items():
        domains[uuid] = _domain(uuid, claim, first.instances[uuid],
                                draw(st.integers(0, 2)),
                                adopted=draw(st.integers(0, 5)) == 0)
    partitions = {k: c for k, c in first.tenant_map().items()
                  if any(d.partition_key == k for d in domains.values())}
    truth = transition.Truth(partitions, domains)
    target = collections.OrderedDict()
    for uuid, claim in claims.items():
        change = draw(st.sampled_from(['keep', 'keep', 'drop', 'resize',
                                       'rekey']))
        if change == 'drop':
            # The domain is gone too (deleted).
            del domains[uuid]
            continue
        if change == 'resize':
            # A new size needs a new domain (resize, hard reboot): the
            # claim changes, the running domain keeps its vCPUs.
            claim = dataclasses.replace(claim, vcpus=domains[uuid].vcpus)
        if change == 'rekey':
            claim = dataclasses.replace(claim,
                                        key=draw(st.sampled_from(KEYS)))
        target[uuid] = claim
    for i in range(draw(st.integers(0, 2))):
        # New instances: a claim, no domain yet (being defined).
        uuid = 'n%d' % i
        target[uuid] = dataclasses.replace(
            _claim(uuid, draw(st.sampled_from(KEYS)),
                   draw(st.integers(1, 4)),
                   draw(st.sampled_from(allocator.MODES))), pending=True)
    # The map as the reconcile sees it: the partitions, relabelled for the
    # guests whose key changed.
    keymap = transition.relabel(
        transition.truth_map(truth, host.online_cpus, host), target,
        truth.domains, host, {}, [])
    return host, hk, truth, keymap, target


def members(truth, host):
    """``[(name, key, cpus)]``: who may run where, as the kernel enforces
    it. A running domain's threads inside its partition (a guest started
    without tenant-pin counts for its project); a partition for the key
    it holds cores for (a partition that hosts guests of another key, whose
    key changed while they ran, holds for its own key only what its own
    guests use)."""
    found, hosting, own = [], set(), collections.defaultdict(set)
    for info in truth.domains.values():
        if not info.active:
            continue
        cpus = info.all_cpus(host.online_cpus)
        if info.partition_key is not None:
            cpus &= truth.partitions.get(info.partition_key, frozenset())
            if info.isolation_key != info.partition_key:
                hosting.add(info.partition_key)
            else:
                own[info.partition_key] |= cpus
        found.append((info.uuid, info.isolation_key or info.project_id,
                      cpus))
    for key, cpus in truth.partitions.items():
        found.append(('partition ' + key, key,
                      own[key] if key in hosting else cpus))
    return found


def cohabitants(truth, host, hk):
    """``{(core cpus, a, b)}`` of members sharing a core (``b`` is
    ``'housekeeping'`` for a member on a housekeeping core), and the key
    of each member."""
    on_core = collections.defaultdict(set)
    keys = {'housekeeping': 'housekeeping'}
    for name, key, cpus in members(truth, host):
        keys[name] = key
        for core in host.cores_of(cpus):
            on_core[core.cpus].add(name)
    for core in host.cores_of(hk):
        on_core[core.cpus].add('housekeeping')
    pairs = set()
    for core, names in on_core.items():
        names = sorted(names)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                pairs.add((core, a, b))
    return pairs, keys


def exposures(truth, host, hk):
    """Members of two keys (or a key and housekeeping) on one core."""
    pairs, keys = cohabitants(truth, host, hk)
    return {(c, a, b) for c, a, b in pairs if keys[a] != keys[b]}


def new_exposures(before, after, host, hk):
    """Exposures in ``after`` of two keys (or a key and housekeeping) that
    shared no core in ``before`` (invariant 1 is about keys: keys that
    share a core because guests changed key a moment ago may go on sharing
    while their guests are moved apart; no step brings two keys together
    that were apart)."""
    pairs, keys = cohabitants(before, host, hk)
    was = {tuple(sorted((keys[a], keys[b]))) for _c, a, b in pairs}
    _pairs, keys = cohabitants(after, host, hk)
    return {(c, a, b) for c, a, b in exposures(after, host, hk)
            if tuple(sorted((keys[a], keys[b]))) not in was}


def refusals(truth, step, host):
    """Why the kernel or libvirt would refuse ``step`` in ``truth``: a
    live pin outside the domain's partition, a partition narrowed below
    what its domains' threads use (cgroup v1: EBUSY)."""
    if step.kind == transition.PIN:
        info = truth.domains[step.uuid]
        part = truth.partitions.get(info.partition_key, frozenset())
        if info.partition_key is not None and not step.cpus <= part:
            return 'pin of %s outside partition %s' % (
                step.uuid, info.partition_key)
    if step.kind == transition.SET_PARTITION and step.old is not None:
        for info in truth.domains.values():
            if info.partition_key == step.key and info.active and \
                    not info.all_cpus(host.online_cpus) <= step.cpus:
                return 'partition %s narrowed below %s' % (step.key,
                                                           info.uuid)
    if step.kind == transition.REMOVE_PARTITION:
        for info in truth.domains.values():
            if info.partition_key == step.key:
                return 'partition %s removed under %s' % (step.key,
                                                          info.uuid)
    return None


def run(testcase, truth, result, host, hk, upto=None):
    """Apply ``result.steps[:upto]`` to a copy of ``truth``, checking that
    each step is one the kernel accepts and that each prefix is safe, up
    to a move the planner says it had to force (guests that swap places on
    a host with no spare core: announced in its repairs)."""
    state = truth.copy()
    steps = result.steps
    for i, step in enumerate(steps[:upto]):
        testcase.assertIsNone(refusals(state, step, host),
                              'step %d of %s' % (i, steps))
        before = state.copy()
        transition.apply_step(state, step)
        if result.forced_from is not None and i >= result.forced_from:
            continue
        if step.kind == transition.METADATA:
            # A guest takes its new key: no thread moves.
            continue
        testcase.assertEqual(
            set(), new_exposures(before, state, host, hk),
            'after step %d (%s) of %s' % (i, step.describe(), steps))
    return state


def at_target(testcase, state, plan, claims, host):
    """Every domain of a placed claim runs where the plan says, under its
    key, in a partition that holds it; every key has its cores; no core is
    reachable by two keys."""
    testcase.assertEqual(set(), exposures(state, host, frozenset(
        plan.housekeeping_cpus)))
    for uuid, placement in plan.instances.items():
        info = state.domains.get(uuid)
        if info is None:
            continue
        testcase.assertEqual(claims[uuid].key, info.isolation_key)
        for (kind, index), cpus in info.thread_cpus(
                host.online_cpus).items():
            want = placement.cpus
            if kind == 'vcpu' and placement.vcpu_pins is not None:
                want = frozenset([placement.vcpu_pins[index]])
            testcase.assertEqual(want, cpus, '%s %s' % (uuid, kind))
        if info.partition_key is not None:
            testcase.assertLessEqual(info.all_cpus(host.online_cpus),
                                     state.partitions[info.partition_key])
    for key, cpus in plan.tenant_map().items():
        testcase.assertLessEqual(cpus, state.partitions.get(key, set()))


class TestTransitionProperties(base.TestCase):

    def plan_steps(self, truth, plan, claims, keymap, host, hk):
        return transition.plan_transition(truth, plan, claims, keymap, host,
                                          hk, 1.0)

    @settings(deadline=None)
    @given(scenarios())
    def test_every_prefix_is_safe(self, scenario):
        """Whatever prefix of the steps runs (the rest failing or never
        run), no core is reachable by two keys (vCPU, emulator and I/O
        threads inside their partition) or by a key and housekeeping, and
        every step is one the kernel accepts. If this fails, the steps'
        order is wrong: look at the step named in the message."""
        host, hk, truth, keymap, claims = scenario
        plan = _plan(host, hk, claims, keymap, truth)
        assume(not plan.unplaced)
        steps = self.plan_steps(truth, plan, claims, keymap, host, hk)
        state = run(self, truth, steps, host, hk)
        at_target(self, state, plan, claims, host)

    @settings(deadline=None)
    @given(scenarios(), st.floats(0, 1))
    def test_planning_again_after_a_fault_reaches_the_target(
            self, scenario, where):
        """A fault stops the steps anywhere; planning again from what the
        host then holds (the map of what each key can reach, not the map
        that was meant) gives steps that are safe too and reach the
        target."""
        host, hk, truth, keymap, claims = scenario
        plan = _plan(host, hk, claims, keymap, truth)
        assume(not plan.unplaced)
        steps = self.plan_steps(truth, plan, claims, keymap, host, hk)
        cut = int(where * len(steps.steps))
        state = run(self, truth, steps, host, hk, upto=cut)
        held = transition.held_map(state, claims, host, {}, hk)
        again = _plan(host, hk, claims, held, state)
        assume(not again.unplaced)
        steps = self.plan_steps(state, again, claims, held, host, hk)
        final = run(self, state, steps, host, hk)
        at_target(self, final, again, claims, host)

    def test_a_partition_moved_off_all_its_cpus_leaves_before_a_create(
            self):
        """A key that holds cores through a guest living in another key's
        partition (its key changed while it ran) and a partition of its
        own on other CPUs: its shrink moves that partition off all of its
        CPUs, before a new key's partition is created on them. Found by
        planning again after a fault at the first step of a re-key."""
        host = topology.HostTopology({0: [[0], [1], [2]]})
        hk = frozenset({0})
        guest = domain_xml.DomainInfo(
            uuid='i1', name='i1', active=True, persistent=True, vcpus=1,
            project_id='k1', partition=domain_xml.PARTITION_PREFIX + 'k1',
            vcpu_cpuset=frozenset({1}), key='k3', pin_mode='float',
            ratio=1.0)
        truth = transition.Truth(
            {'k1': frozenset({1}), 'k3': frozenset({2})}, {'i1': guest})
        claims = collections.OrderedDict([
            ('i1', dataclasses.replace(_claim('i1', 'k3', 1, 'float'),
                                       project_id='k1')),
            ('n0', dataclasses.replace(_claim('n0', 'k0', 1, 'float'),
                                       pending=True))])
        held = transition.held_map(truth, claims, host, {}, hk)
        self.assertEqual({'k3': frozenset({1, 2})}, held)
        plan = _plan(host, hk, claims, held, truth)
        self.assertEqual({'k3': frozenset({1}), 'k0': frozenset({2})},
                         plan.tenant_map())
        steps = self.plan_steps(truth, plan, claims, held, host, hk)
        final = run(self, truth, steps, host, hk)
        at_target(self, final, plan, claims, host)

    def test_a_grow_narrows_its_key_before_another_key_takes_the_cpus(
            self):
        """k0 moves a core to the other cell: its shrink cannot narrow
        its partition off CPUs 8-9 while its floating guest i4 still runs
        there, so its grow, which moves i4 to CPUs 12-15, narrows it at
        once, before k2's grow takes CPUs 8-9 (the partition kept them
        until the final narrowing, and k2's partition was widened onto a
        core k0's still held). Reduced from a state a fault left, found
        by a random search of the re-plan-after-a-fault property."""
        host = topology.HostTopology({
            0: [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]],
            1: [[12, 13], [14, 15], [16, 17]]})
        hk = frozenset({0, 1})

        def domain(uuid, key, cpus, vcpus, pins=None):
            return domain_xml.DomainInfo(
                uuid=uuid, name=uuid, active=True, persistent=True,
                vcpus=vcpus, project_id=key,
                partition=domain_xml.PARTITION_PREFIX + key,
                vcpu_cpuset=frozenset(cpus), key=key,
                vcpu_pins={v: frozenset([c]) for v, c in (pins or {}).items()},
                emulator_pins=frozenset(cpus) if pins else None,
                pin_mode='strict' if pins else 'float', ratio=1.0)
        truth = transition.Truth(
            {'k0': frozenset(range(2, 10)), 'k2': frozenset({10, 11})},
            {'i1': domain('i1', 'k0', range(2, 6), 4,
                          {0: 2, 1: 3, 2: 4, 3: 5}),
             'i2': domain('i2', 'k2', {10, 11}, 1, {0: 10}),
             'i4': domain('i4', 'k0', range(2, 10), 4)})
        claims = collections.OrderedDict([
            ('i0', dataclasses.replace(_claim('i0', 'k0', 2, 'float'),
                                       pending=True)),
            ('i1', _claim('i1', 'k0', 4, 'strict')),
            ('i2', _claim('i2', 'k2', 1, 'strict')),
            ('i4', _claim('i4', 'k0', 4, 'float')),
            ('n0', dataclasses.replace(_claim('n0', 'k2', 3, 'float'),
                                       pending=True))])
        held = transition.held_map(truth, claims, host, {}, hk)
        plan = _plan(host, hk, claims, held, truth)
        self.assertEqual({'k0': frozenset({2, 3, 4, 5, 6, 7, 12, 13, 14, 15}),
                          'k2': frozenset({8, 9, 10, 11})},
                         plan.tenant_map())
        steps = self.plan_steps(truth, plan, claims, held, host, hk)
        final = run(self, truth, steps, host, hk)
        at_target(self, final, plan, claims, host)

    def test_a_grow_waits_for_nothing_another_key_only_hosts(self):
        """A re-key stopped by a fault: i0 (now k3's) runs on CPUs 2-3 in
        k0's old partition, which still holds CPUs 6-7 but no guest of
        k0. k3's strict guest i1 must leave core 4-5 for CPUs 6-8 before
        the new key k2 gets core 4-5. k3's grow onto 6-9 goes first:
        k0's partition only hosts a guest of k3 and reaches nothing for
        k0 (ordered by the raw partitions, both grows waited on each
        other, and k2's partition was created on core 4-5 under i1).
        Found by a random search of the re-plan-after-a-fault property."""
        host = topology.HostTopology({0: [[0, 1], [2, 3], [4, 5]],
                                      1: [[6, 7], [8, 9], [10, 11]]})
        hk = frozenset({0, 1})
        i0 = domain_xml.DomainInfo(
            uuid='i0', name='i0', active=True, persistent=True, vcpus=2,
            project_id='k0', partition=domain_xml.PARTITION_PREFIX + 'k0',
            vcpu_cpuset=frozenset({2, 3}), key='k3', pin_mode='float',
            ratio=1.0)
        i1 = domain_xml.DomainInfo(
            uuid='i1', name='i1', active=True, persistent=True, vcpus=3,
            project_id='k3', partition=domain_xml.PARTITION_PREFIX + 'k3',
            vcpu_cpuset=frozenset({2, 3, 4, 5}),
            vcpu_pins={0: frozenset({2}), 1: frozenset({3}),
                       2: frozenset({4})},
            emulator_pins=frozenset({2, 3, 4, 5}), key='k3',
            pin_mode='strict', ratio=1.0)
        truth = transition.Truth(
            {'k3': frozenset({2, 3, 4, 5}), 'k0': frozenset({2, 3, 6, 7})},
            {'i0': i0, 'i1': i1})
        claims = collections.OrderedDict([
            ('i0', dataclasses.replace(_claim('i0', 'k3', 2, 'float'),
                                       project_id='k0')),
            ('i1', _claim('i1', 'k3', 3, 'strict')),
            ('n0', dataclasses.replace(_claim('n0', 'k2', 2, 'float'),
                                       pending=True))])
        held = transition.held_map(truth, claims, host, {}, hk)
        plan = _plan(host, hk, claims, held, truth)
        self.assertEqual({'k3': frozenset({2, 3, 6, 7, 8, 9}),
                          'k2': frozenset({4, 5})}, plan.tenant_map())
        steps = self.plan_steps(truth, plan, claims, held, host, hk)
        final = run(self, truth, steps, host, hk)
        at_target(self, final, plan, claims, host)

    @settings(deadline=None)
    @given(scenarios(), st.sets(st.sampled_from(INSTANCES)))
    def test_busy_domains_get_no_step_and_stay_safe(self, scenario, busy):
        """Domains with a job in progress (a live migration) get no pin
        and no metadata step, and the other steps stay safe around them
        (their key keeps the cores they run on)."""
        host, hk, truth, keymap, claims = scenario
        # A job holds a guest that runs in its partition (a guest started
        # without tenant-pin floats everywhere until it is confined).
        truth.busy = frozenset(u for u in busy & set(truth.domains)
                               if truth.domains[u].partition_key is not None)
        for uuid in truth.busy & set(claims):
            # Its key changes when its job has ended (claims.rebuild).
            claims[uuid] = dataclasses.replace(
                claims[uuid], key=truth.domains[uuid].isolation_key)
        keymap = transition.relabel(
            transition.truth_map(truth, host.online_cpus, host), claims,
            truth.domains, host, {}, [], truth.busy)
        plan = _plan(host, hk, claims, keymap, truth)
        assume(not plan.unplaced)
        steps = self.plan_steps(truth, plan, claims, keymap, host, hk)
        self.assertFalse([s for s in steps.steps if s.uuid in truth.busy])
        run(self, truth, steps, host, hk)
