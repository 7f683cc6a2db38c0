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

"""The claims' rules, each alone: planning only the keys a change touches
gives the plan of every key, when a change may plan only them, when a claim
is refused, how a claim and its domain's metadata are made, where a guest
that does not fit runs, and a domain's policy when claims are rebuilt."""

import collections
import random
import types
from unittest import mock

import ddt

from nova_tenant_pin import allocator
from nova_tenant_pin import claims as tp_claims
from nova_tenant_pin import domain_xml
from nova_tenant_pin import policy as tp_policy
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology as topo
from nova_tenant_pin import transition

HOUSEKEEPING = frozenset([0, 1])


def topology(cells, cores, threads=2):
    layout, cpu = {}, 0
    for cell in range(cells):
        layout[cell] = []
        for _ in range(cores):
            layout[cell].append(list(range(cpu, cpu + threads)))
            cpu += threads
    return topo.HostTopology(layout)


@ddt.ddt
class TestTouchedPlan(base.TestCase):

    @ddt.data((1, 1.0, 20261207), (2, 1.0, 20261208), (2, 2.0, 20261209),
              (2, 1.0, 20261210), (4, 1.5, 20261211))
    @ddt.unpack
    def test_the_touched_keys_plan_is_the_plan_of_every_key(
            self, cells, ratio, seed):
        """Random arrivals and departures of one key at a time, each
        planned both ways from the same map: whenever the plan of the
        touched key alone is made, it must equal the plan of every key
        (placements, pins, free CPUs, moves). If this fails, a claim or a
        release on a host moves cores differently from a reconcile."""
        rng = random.Random(seed)
        host = topology(cells, 16 // cells)
        static = {'s0': frozenset([2, 3])} if seed % 2 else {}
        keys = ['k%d' % i for i in range(6)] + sorted(static)
        claims = collections.OrderedDict()
        plan = tp_claims.target_plan(claims, {}, host, HOUSEKEEPING, ratio,
                                     frozenset(), static)
        partial = 0
        for step in range(300):
            new = collections.OrderedDict(claims)
            if claims and rng.random() < 0.45:
                gone = rng.choice(sorted(claims))
                key = claims[gone].key
                del new[gone]
            else:
                key = rng.choice(keys)
                uuid = 'i%d' % step
                new[uuid] = tp_claims.Claim(
                    uuid=uuid, project_id=key, key=key,
                    vcpus=rng.choice([1, 1, 2, 3, 4, 6]),
                    cell=rng.choice([None] * 6 + list(range(cells))),
                    mode=rng.choice([allocator.FLOAT, allocator.STRICT]),
                    ratio=rng.choice([None, None, 2.0]))
            current = plan.tenant_map()
            full = tp_claims.target_plan(new, current, host, HOUSEKEEPING,
                                         ratio, frozenset(), static)
            touched = tp_claims.target_plan(
                new, current, host, HOUSEKEEPING, ratio, frozenset(), static,
                touched={key}, previous=plan)
            if touched.planned is not None:
                partial += 1
                self.assertLessEqual({key}, touched.planned)
                for name in ('tenants', 'instances', 'unplaced',
                             'stranded_cpus', 'free_cpus',
                             'housekeeping_cpus', 'moves', 'warnings'):
                    self.assertEqual(getattr(full, name),
                                     getattr(touched, name),
                                     '%s differs at step %d' % (name, step))
            if full.unplaced:
                continue  # refused: the host keeps the previous plan
            claims, plan = new, full
        # The test means something only if the partial plan was made.
        self.assertGreater(partial, 100)


def claim(uuid, key, vcpus=1, **kw):
    return tp_claims.Claim(uuid=uuid, project_id='project-' + key, key=key,
                           vcpus=vcpus, **kw)


def domain(uuid, key=None, partition_key=None):
    """A running domain that records ``key`` and lives in the partition of
    ``partition_key``."""
    return domain_xml.DomainInfo(
        uuid=uuid, name=uuid, active=True, persistent=True, vcpus=1,
        key=key, partition=(domain_xml.PARTITION_PREFIX + partition_key
                            if partition_key else None))


class TestTouchedKeys(base.TestCase):
    """When a change of some keys' claims may plan and write those keys
    only: if one of these fails, a claim could leave another key's drift
    (or a guest outside its partition) unrepaired, or never use the
    shortcut at all."""

    KEYMAP = {'a': frozenset({2, 3}), 'b': frozenset({4, 5})}

    def truth(self, domains, partitions=None, busy=()):
        return transition.Truth(
            dict(self.KEYMAP if partitions is None else partitions),
            {d.uuid: d for d in domains}, frozenset(busy))

    def settled(self):
        """One guest of each key, in its own partition, recording it."""
        return ([domain('a1', 'a', 'a'), domain('b1', 'b', 'b')],
                {'a1': claim('a1', 'a'), 'b1': claim('b1', 'b')})

    def test_the_keys_when_the_host_is_as_the_map_says(self):
        domains, claims = self.settled()
        self.assertEqual(frozenset({'a'}), tp_claims.touched_keys(
            self.truth(domains), claims, {'a'}, self.KEYMAP))

    def test_a_new_instance_without_a_domain_yet(self):
        domains, claims = self.settled()
        claims['a2'] = claim('a2', 'a')
        self.assertEqual(frozenset({'a'}), tp_claims.touched_keys(
            self.truth(domains), claims, {'a'}, self.KEYMAP))

    def test_every_key_while_a_domain_is_busy(self):
        domains, claims = self.settled()
        self.assertIsNone(tp_claims.touched_keys(
            self.truth(domains, busy={'b1'}), claims, {'a'}, self.KEYMAP))

    def test_every_key_when_another_keys_partition_drifted(self):
        domains, claims = self.settled()
        drifted = dict(self.KEYMAP, b=frozenset({4}))
        self.assertIsNone(tp_claims.touched_keys(
            self.truth(domains, drifted), claims, {'a'}, self.KEYMAP))

    def test_every_key_when_a_partition_is_not_in_the_map(self):
        domains, claims = self.settled()
        stray = dict(self.KEYMAP, c=frozenset({6, 7}))
        self.assertIsNone(tp_claims.touched_keys(
            self.truth(domains, stray), claims, {'a'}, self.KEYMAP))

    def test_every_key_for_a_domain_with_a_key_but_no_claim(self):
        domains, claims = self.settled()
        domains.append(domain('x', 'b', 'b'))
        self.assertIsNone(tp_claims.touched_keys(
            self.truth(domains), claims, {'a'}, self.KEYMAP))

    def test_every_key_for_a_guest_of_another_key_in_a_touched_partition(
            self):
        domains, claims = self.settled()
        # Re-keyed from a to b: it still runs in a's partition, which the
        # change of a may narrow around it.
        domains.append(domain('m', 'b', 'a'))
        claims['m'] = claim('m', 'b')
        self.assertIsNone(tp_claims.touched_keys(
            self.truth(domains), claims, {'a'}, self.KEYMAP))

    def test_every_key_for_an_untouched_guest_that_records_another_key(self):
        domains, claims = self.settled()
        domains.append(domain('p', None, 'b'))  # adopted, no metadata yet
        claims['p'] = claim('p', 'b')
        self.assertIsNone(tp_claims.touched_keys(
            self.truth(domains), claims, {'a'}, self.KEYMAP))


class TestRefusal(base.TestCase):

    @staticmethod
    def plan(*unplaced):
        return types.SimpleNamespace(unplaced=[
            {'uuid': u, 'project_id': 'p', 'vcpus': 1, 'reason': 'no room'}
            for u in unplaced])

    def test_the_instance_that_does_not_fit_gets_the_allocators_reason(self):
        self.assertEqual('no room', tp_claims.refusal(
            self.plan('x', 'new'), self.plan(), 'new'))

    def test_instances_pushed_out_are_named(self):
        self.assertEqual(
            'the instances x, y already on the host would no longer fit',
            tp_claims.refusal(self.plan('y', 'x', 'z'), self.plan('z'),
                              'new'))

    def test_instances_that_did_not_fit_before_refuse_nothing(self):
        self.assertIsNone(tp_claims.refusal(self.plan('z'), self.plan('z'),
                                            'new'))
        self.assertIsNone(tp_claims.refusal(self.plan(), None, 'new'))


class TestClaimOf(base.TestCase):

    POLICY = tp_policy.resolve('p1', {'tenant_pin:pin_mode': 'strict',
                                      'tenant_pin:isolation': 'required'})

    def test_a_new_claim_is_pending_with_the_policys_key_and_mode(self):
        new = tp_claims.claim_of('u', 'p1', self.POLICY, 3, cell=1,
                                 incoming=True)
        self.assertEqual(('p1', 'p1', 3, 1, 'strict', 'required'),
                         (new.project_id, new.key, new.vcpus, new.cell,
                          new.mode, new.isolation))
        self.assertTrue(new.pending)
        self.assertTrue(new.incoming)
        self.assertEqual(frozenset(), new.issued)

    def test_a_claim_made_again_keeps_its_state_and_issued_cpus(self):
        old = claim('u', 'p1', pending=False, confirmed=True,
                    issued=frozenset({4}))
        new = tp_claims.claim_of('u', 'p1', self.POLICY, 4, old=old)
        self.assertFalse(new.pending)
        self.assertFalse(new.confirmed)
        self.assertEqual(frozenset({4}), new.issued)
        self.assertEqual(4, new.vcpus)


class TestMetadataOf(base.TestCase):

    def test_the_claims_key_mode_ratio_and_isolation(self):
        self.assertEqual(('k', 'strict', 2.0, 'required'),
                         domain_xml.read_metadata(tp_claims.metadata_of(
                             claim('u', 'k', mode='strict',
                                   isolation='required'), 2.0)))
        self.assertEqual(('k', 'float', 1.5, None),
                         domain_xml.read_metadata(tp_claims.metadata_of(
                             claim('u', 'k', ratio=1.5), 2.0)))

    def test_no_claim_no_metadata(self):
        self.assertIsNone(tp_claims.metadata_of(None, 1.0))


class TestUnfitPins(base.TestCase):

    HOUSEKEEPING = frozenset({0, 1})

    def test_a_guest_that_does_not_fit_runs_on_the_cpus_no_key_holds(self):
        plan = types.SimpleNamespace(free_cpus=frozenset({6, 7}))
        pins = tp_claims.unfit_pins(claim('u', 'a'), {'a': ['u']}, plan,
                                    self.HOUSEKEEPING)
        self.assertEqual(('u', 'a', frozenset({6, 7}), None),
                         (pins.uuid, pins.key, pins.cpus, pins.vcpu_pins))

    def test_on_the_housekeeping_cpus_when_no_cpu_is_free(self):
        for plan in (None, types.SimpleNamespace(free_cpus=frozenset())):
            pins = tp_claims.unfit_pins(claim('u', 'a'), {'a': ['u']}, plan,
                                        self.HOUSEKEEPING)
            self.assertEqual(self.HOUSEKEEPING, pins.cpus)

    def test_none_for_a_guest_that_fits(self):
        plan = types.SimpleNamespace(free_cpus=frozenset({6, 7}))
        self.assertIsNone(tp_claims.unfit_pins(
            claim('u', 'a'), {'a': ['v']}, plan, self.HOUSEKEEPING))
        self.assertIsNone(tp_claims.unfit_pins(
            None, {'a': ['u']}, plan, self.HOUSEKEEPING))


class TestDomainPolicy(base.TestCase):

    def info(self, project_id='p1'):
        return domain_xml.DomainInfo(
            uuid='u', name='u', active=True, persistent=True, vcpus=1,
            project_id=project_id, key='p1', pin_mode='strict', ratio=2.0,
            isolation='required')

    def test_the_callers_policy_first(self):
        given = object()
        policy_of = mock.Mock()
        self.assertIs(given, tp_claims.domain_policy(
            self.info(), {'u': given}, policy_of))
        policy_of.assert_not_called()

    def test_what_the_metadata_recorded_under_the_present_settings(self):
        policy_of = mock.Mock(return_value='policy')
        self.assertEqual('policy', tp_claims.domain_policy(
            self.info(), {}, policy_of))
        policy_of.assert_called_once_with(
            'p1', isolation='required', pin_mode='strict', ratio=2.0)

    def test_none_for_a_domain_that_names_no_project(self):
        self.assertIsNone(tp_claims.domain_policy(
            self.info(project_id=None), {}, mock.Mock()))

    def test_a_bad_setting_leaves_the_domain_its_key_and_is_logged(self):
        log = mock.Mock()
        policy_of = mock.Mock(side_effect=tp_policy.PolicyError('bad'))
        self.assertIsNone(tp_claims.domain_policy(
            self.info(), {}, policy_of, 'h1', log))
        log.warning.assert_called_once_with(
            '%s: instance %s: %s; it keeps the key %s', 'h1', 'u',
            policy_of.side_effect, 'p1')


class TestUnfitLines(base.TestCase):

    def test_one_line_per_instance_not_placed(self):
        plan = types.SimpleNamespace(unplaced=[
            {'uuid': 'u', 'project_id': 'k', 'vcpus': 2, 'reason': 'full'}])
        self.assertEqual(['instance u of tenant k does not fit on whole '
                          'cores: full'], tp_claims.unfit_lines(plan))
