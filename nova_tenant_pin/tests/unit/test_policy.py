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

"""The precedence of flavor, image, project and host settings."""

import ddt

from nova_tenant_pin import policy
from nova_tenant_pin.tests import base

SETTINGS = policy.ProjectSettings.from_options(
    exempt_projects=['svc'], isolation_groups=['ops:p1,p2'])


@ddt.ddt
class TestResolve(base.TestCase):

    @ddt.unpack
    @ddt.data(
        # project, flavor, image -> isolated, key, pin mode, ratio
        ('p9', {}, {}, True, 'p9', 'float', 1.0),
        ('p9', {'tenant_pin:isolation': 'none'}, {}, False, 'exempt',
         'float', 1.0),
        ('p9', {}, {'tenant_pin_isolation': 'none'}, False, 'exempt',
         'float', 1.0),
        ('p9', {'tenant_pin:isolation': 'required'},
         {'tenant_pin_isolation': 'required'}, True, 'p9', 'float', 1.0),
        ('svc', {'tenant_pin:isolation': 'required'}, {}, False, 'exempt',
         'float', 1.0),
        ('p1', {}, {}, True, 'group-ops', 'float', 1.0),
        ('p2', {'tenant_pin:pin_mode': 'strict'}, {}, True, 'group-ops',
         'strict', 1.0),
        ('p9', {}, {'tenant_pin_pin_mode': 'strict'}, True, 'p9', 'strict',
         1.0),
        ('p9', {'tenant_pin:cpu_allocation_ratio': '1.5'}, {}, True, 'p9',
         'float', 1.5),
        ('p9', {'hw:cpu_policy': 'shared'}, {'hw_rng_model': 'virtio'},
         True, 'p9', 'float', 1.0),
    )
    def test_precedence(self, project, flavor, image, isolated, key, mode,
                        ratio):
        result = policy.resolve(project, flavor, image, SETTINGS)
        self.assertEqual((isolated, key, mode, ratio),
                         (result.isolated, result.isolation_key,
                          result.pin_mode, result.ratio))

    def test_host_defaults(self):
        result = policy.resolve('p9', {}, {}, SETTINGS,
                                default_pin_mode='strict',
                                default_ratio=2.0)
        self.assertEqual(('strict', 2.0), (result.pin_mode, result.ratio))
        self.assertEqual('isolation from host, pin_mode from host, ratio '
                         'from host', result.describe())

    def test_sources_name_the_flavor_and_image(self):
        result = policy.resolve('p9', {'tenant_pin:pin_mode': 'strict'},
                                {'tenant_pin_isolation': 'none'}, SETTINGS)
        self.assertEqual((('isolation', 'image'), ('pin_mode', 'flavor'),
                          ('ratio', 'host')), result.sources)

    @ddt.unpack
    @ddt.data(
        ({'tenant_pin:isolation': 'required'},
         {'tenant_pin_isolation': 'none'}, policy.PolicyConflict,
         'image property tenant_pin_isolation=none conflicts with flavor '
         'extra spec tenant_pin:isolation=required'),
        ({'tenant_pin:pin_mode': 'float'}, {'tenant_pin_pin_mode': 'strict'},
         policy.PolicyConflict, 'tenant_pin_pin_mode=strict conflicts'),
        ({'tenant_pin:isolation': 'maybe'}, {}, policy.PolicyError,
         'tenant_pin:isolation must be one of required, none'),
        ({}, {'tenant_pin_pin_mode': 'loose'}, policy.PolicyError,
         'tenant_pin_pin_mode must be one of float, strict'),
        ({'tenant_pin:cpu_allocation_ratio': '0.5'}, {}, policy.PolicyError,
         'must be a number >= 1.0'),
        ({'tenant_pin:cpu_allocation_ratio': 'inf'}, {}, policy.PolicyError,
         'must be a number >= 1.0'),
        ({}, {'tenant_pin_cpu_allocation_ratio': '2'}, policy.PolicyError,
         'images cannot set overcommit'),
        # Image properties are not cleaned up: whitespace is refused, as
        # Nova's flavor extra-spec validator refuses it.
        ({}, {'tenant_pin_pin_mode': 'strict\n'}, policy.PolicyError,
         "tenant_pin_pin_mode must be one of float, strict, got 'strict\\n'"),
        ({}, {'tenant_pin_isolation': ' required '}, policy.PolicyError,
         "must be one of required, none, got ' required '"),
        ({}, {'tenant_pin_isolation': 'none\t'}, policy.PolicyError,
         'tenant_pin_isolation must be one of required, none'),
        ({}, {'tenant_pin_pin_mode': '\u00a0float'}, policy.PolicyError,
         'tenant_pin_pin_mode must be one of float, strict'),
        ({'tenant_pin:pin_mode': 'strict'},
         {'tenant_pin_pin_mode': 'strict\n'}, policy.PolicyError,
         'tenant_pin_pin_mode must be one of float, strict'),
    )
    def test_refused(self, flavor, image, error, message):
        e = self.assertRaises(error, policy.resolve, 'p9', flavor, image,
                              SETTINGS)
        self.assertIn(message, str(e))


@ddt.ddt
class TestProjectSettings(base.TestCase):

    def test_groups(self):
        settings = policy.ProjectSettings.from_options(
            ['svc'], ['ops:p1, p2', 'lab:p3'])
        self.assertEqual({'p1': 'ops', 'p2': 'ops', 'p3': 'lab'},
                         settings.groups)
        self.assertEqual(frozenset({'svc'}), settings.exempt_projects)

    @ddt.unpack
    @ddt.data(([], ['ops'], 'is not NAME:PROJECT'),
              ([], ['ops:'], 'is not NAME:PROJECT'),
              ([], ['../x:p1'], 'is not NAME:PROJECT'),
              ([], ['a:p1', 'b:p1'], 'project p1 is in groups a and b'),
              (['p1'], ['a:p1'], 'both exempt and in an isolation group'))
    def test_refused(self, exempt, groups, message):
        e = self.assertRaises(policy.PolicyError,
                              policy.ProjectSettings.from_options, exempt,
                              groups)
        self.assertIn(message, str(e))


class TestStaticKeys(base.TestCase):

    def test_static_cpusets_go_to_the_keys_of_their_projects(self):
        """A project in a group gives its cpuset to the group, two such
        projects add up; group and shared-pool keys stay as they are."""
        keys = {'p1': 'group-ops', 'p2': 'group-ops', 'p3': 'p3'}
        static = policy.static_keys(
            {'p1': frozenset({2, 3}), 'p2': frozenset({4, 5}),
             'p3': frozenset({6, 7}), 'group-db': frozenset({8, 9}),
             policy.SHARED_POOL: frozenset({10, 11})}, keys.__getitem__)
        self.assertEqual({'group-ops': frozenset({2, 3, 4, 5}),
                          'p3': frozenset({6, 7}),
                          'group-db': frozenset({8, 9}),
                          policy.SHARED_POOL: frozenset({10, 11})}, static)

    def test_describe_settings(self):
        self.assertEqual(
            'exempt projects svc, isolation groups p1=ops, p2=ops, static '
            'cpusets p3:6-7', policy.describe_settings(
                SETTINGS, {'p3': frozenset({6, 7})}))
        self.assertEqual(
            'exempt projects none, isolation groups none, static cpusets '
            'none', policy.describe_settings(policy.ProjectSettings(), {}))
