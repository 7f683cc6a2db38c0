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

"""The truth as read, and the map a reconcile starts from (the property
tests in test_transition_properties cover the steps)."""

import types

from nova_tenant_pin import claims as tp_claims
from nova_tenant_pin import domain_xml
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology as topo
from nova_tenant_pin import transition

HOST = topo.HostTopology({0: [[0, 1], [2, 3], [4, 5], [6, 7]]})


def domain(uuid, key):
    return domain_xml.DomainInfo(
        uuid=uuid, name=uuid, active=True, persistent=True, vcpus=2,
        key=key, partition=domain_xml.PARTITION_PREFIX + key,
        vcpu_cpuset=frozenset({2, 3}))


def claim(uuid, key):
    return tp_claims.Claim(uuid=uuid, project_id=key, key=key, vcpus=2)


class TestTruthOf(base.TestCase):

    def test_partitions_domains_and_the_busy_ones(self):
        a, b = domain('a', 'k'), domain('b', 'k')
        truth = transition.Truth.of(
            {'a': types.SimpleNamespace(info=a, busy=False),
             'b': types.SimpleNamespace(info=b, busy=True)},
            {'k': types.SimpleNamespace(cpus=frozenset({2, 3}))})
        self.assertEqual({'k': frozenset({2, 3})}, truth.partitions)
        self.assertEqual({'a': a, 'b': b}, truth.domains)
        self.assertEqual(frozenset({'b'}), truth.busy)


class TestRebuiltMap(base.TestCase):

    def truth(self):
        return transition.Truth({'k': frozenset({2, 3})},
                                {'a': domain('a', 'k')})

    def test_the_partitions_as_they_are(self):
        repairs = []
        self.assertEqual({'k': frozenset({2, 3})}, transition.rebuilt_map(
            self.truth(), {'a': claim('a', 'k')}, HOST, {}, repairs))
        self.assertEqual([], repairs)

    def test_drift_from_the_expected_map_is_a_repair(self):
        repairs = []
        transition.rebuilt_map(self.truth(), {'a': claim('a', 'k')}, HOST,
                               {}, repairs, {'k': frozenset({2, 3, 4, 5})})
        self.assertEqual(['tenant k: partition holds CPUs 2-3, the map said '
                          '2-5'], repairs)

    def test_a_guest_whose_key_changed_takes_its_cores_to_the_new_key(self):
        """Relabelled: the only guest of k now has key n; its cores go to
        n without moving."""
        self.assertEqual({'n': frozenset({2, 3})}, transition.rebuilt_map(
            self.truth(), {'a': claim('a', 'n')}, HOST, {}, []))
