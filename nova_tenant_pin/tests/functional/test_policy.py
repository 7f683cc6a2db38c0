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

"""The tenant-pin policy through Nova's API: flavors with ``tenant_pin:``
extra specs, images with ``tenant_pin_*`` properties, and per-project
settings re-read while guests run (what nova-compute does on SIGHUP)."""

import copy

from oslo_config import cfg
from oslo_utils import uuidutils

from nova_tenant_pin import policy
from nova_tenant_pin.tests.functional import base

CONF = cfg.CONF


class PolicyBase(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        self.start_compute('host1')

    def flavor_with(self, vcpus, **specs):
        return self._create_flavor(
            memory_mb=256, vcpu=vcpus, disk=1, ephemeral=0,
            extra_spec={'tenant_pin:%s' % k: v for k, v in specs.items()})

    def image_with(self, **props):
        image = copy.deepcopy(self.glance.image1)
        image['id'] = uuidutils.generate_uuid()
        image['properties'].update(
            {'tenant_pin_%s' % k: v for k, v in props.items()})
        self.glance.create(None, image)
        return image['id']

    def boot_with(self, label, flavor, image=None, expected_state='ACTIVE'):
        server = self._create_server(
            flavor_id=flavor, image_uuid=image, networks='none',
            expected_state=expected_state, api=self.tenant(label))
        if expected_state == 'ACTIVE':
            self.assertInvariants()
        return server

    def domain(self, server):
        return self.domains_of('host1')[server['id']]

    def cores(self, server):
        return self.server_cores('host1', server)


class TestFlavorAndImagePolicy(PolicyBase):

    def test_isolation_none_runs_in_the_shared_pool_apart_from_tenants(self):
        shared = self.flavor_with(1, isolation='none')
        a = self.boot_with('a', shared)
        b = self.boot_with('b', shared)
        c = self.boot('c', 2)
        for server in (a, b):
            info = self.domain(server)
            self.assertEqual('/machine/tenant-exempt', info.partition)
            self.assertEqual(policy.SHARED_POOL, info.key)
        # Two projects that opted out share one core; the isolated tenant
        # shares it with nobody.
        self.assertEqual(self.cores(a), self.cores(b))
        self.assertFalse(self.cores(a) & self.cores(c))
        self.assertEqual({policy.SHARED_POOL, self.project('c')},
                         set(self.manager_of('host1').tenant_map()))

    def test_strict_pin_mode_and_overcommit_from_the_flavor(self):
        strict = self.flavor_with(2, pin_mode='strict')
        dense = self.flavor_with(4, cpu_allocation_ratio='2.0')
        s = self.boot_with('a', strict)
        d = self.boot_with('b', dense)
        pins = self.domain(s).vcpu_pins
        self.assertEqual(2, len(pins))
        self.assertTrue(all(len(cpus) == 1 for cpus in pins.values()))
        self.assertEqual(1, len(self.cores(s)))
        # Four vCPUs at an in-tenant ratio of 2 on 2-thread cores: 1 core.
        self.assertEqual(1, len(self.cores(d)))
        info = self.domain(d)
        self.assertEqual((self.project('b'), 'float', 2.0),
                         (info.key, info.pin_mode, info.ratio))
        # A float instance of the same tenant keeps float pins.
        f = self.boot('a', 1)
        self.assertGreater(len(self.domain(f).effective_vcpu_cpus(
            0, frozenset())), 1)

    def test_image_property_sets_what_the_flavor_leaves_unset(self):
        image = self.image_with(pin_mode='strict')
        server = self.boot_with('a', self._flavor(2), image=image)
        info = self.domain(server)
        self.assertEqual('strict', info.pin_mode)
        self.assertTrue(all(len(c) == 1 for c in info.vcpu_pins.values()))

    def test_flavor_and_image_in_conflict_are_refused_naming_both(self):
        flavor = self.flavor_with(1, pin_mode='float')
        image = self.image_with(pin_mode='strict')
        server = self.boot_with('a', flavor, image=image,
                                expected_state='ERROR')
        fault = self.api.get_server(server['id'])['fault']['message']
        self.assertIn('tenant_pin_pin_mode=strict', fault)
        self.assertIn('tenant_pin:pin_mode=float', fault)
        self.assertEqual({}, self.partitions_of('host1'))
        self.assertEqual({}, self.manager_of('host1').claims())


class TestSettingsReload(PolicyBase):
    """``[tenant_pin] isolation_groups`` and ``exempt_projects`` changed
    and re-read the way nova-compute re-reads them on SIGHUP
    (``CONF.mutate_config_files()``)."""

    def setUp(self):
        super().setUp()
        self.a = self.boot('a', 1)
        self.b = self.boot('b', 1)
        self.c = self.boot('c', 3)
        self.starts = len(self.pinning.starts)

    def reload(self, **flags):
        self.flags(group='tenant_pin', **flags)
        CONF.mutate_config_files()

    def assertNoRestart(self):
        self.assertEqual(self.starts, len(self.pinning.starts),
                         'a guest was started again')

    def test_group_merges_then_splits_live(self):
        group = 'acme:%s,%s' % (self.project('a'), self.project('b'))
        self.assertNotEqual(self.cores(self.a), self.cores(self.b))
        self.reload(isolation_groups=[group])
        self.assertEqual(self.cores(self.a), self.cores(self.b))
        self.assertFalse(self.cores(self.a) & self.cores(self.c))
        tenants = self.manager_of('host1').tenant_map()
        self.assertEqual({'group-acme', self.project('c')}, set(tenants))
        for server in (self.a, self.b):
            info = self.domain(server)
            self.assertEqual('group-acme', info.key)
            # It stays in the partition it started in until a hard
            # reboot; its pins confine it to the group's cores.
            self.assertEqual('pins', info.confinement)
        self.assertNoRestart()
        self.assertInvariants()
        # A new instance of a member goes to the group's partition.
        d = self.boot('b', 1)
        self.assertEqual('/machine/tenant-group-acme',
                         self.domain(d).partition)
        self.assertEqual(self.cores(d), self.cores(self.a))
        # A hard reboot moves a guest into its key's partition.
        self._reboot_server(self.a, hard=True)
        self.assertEqual('partition', self.domain(self.a).confinement)
        self.assertInvariants()
        # The group is dissolved: every project gets its own cores again.
        self.starts = len(self.pinning.starts)
        self.reload(isolation_groups=[])
        self.assertFalse(self.cores(self.a) & self.cores(self.b))
        self.assertFalse(self.cores(d) & self.cores(self.a))
        self.assertEqual(self.cores(d), self.cores(self.b))
        self.assertNoRestart()
        self.assertInvariants()

    def test_exempt_projects_reloaded(self):
        self.reload(exempt_projects=[self.project('a'), self.project('b')])
        self.assertEqual(self.cores(self.a), self.cores(self.b))
        self.assertEqual(policy.SHARED_POOL, self.domain(self.a).key)
        self.assertInvariants()
        self.reload(exempt_projects=[])
        self.assertFalse(self.cores(self.a) & self.cores(self.b))
        self.assertNoRestart()
        self.assertInvariants()

    def test_static_cpuset_reloaded_moves_the_tenant_live(self):
        c = self.project('c')
        self.reload(static_tenant_cpuset=['%s:12-15' % c])
        self.assertEqual(frozenset(range(12, 16)),
                         self.manager_of('host1').tenant_map()[c])
        info = self.domain(self.c)
        self.assertLessEqual(info.all_cpus(frozenset()),
                             frozenset(range(12, 16)))
        self.assertNoRestart()
        self.assertInvariants(check_fewest_cores=False)
        # A static cpuset on the housekeeping cores is refused; the
        # previous one stays in force.
        with self.assertLogs('nova_tenant_pin.driver', 'ERROR') as logs:
            self.reload(static_tenant_cpuset=['%s:0-3' % c])
        self.assertIn('static', logs.output[0])
        self.assertEqual(frozenset(range(12, 16)),
                         self.manager_of('host1').tenant_map()[c])

    def test_bad_new_settings_are_refused_and_the_old_ones_kept(self):
        group = 'acme:%s,%s' % (self.project('a'), self.project('b'))
        self.reload(isolation_groups=[group])
        before = self.manager_of('host1').tenant_map()
        # A project both exempt and in a group is refused, with its text.
        with self.assertLogs('nova_tenant_pin.driver', 'ERROR') as logs:
            self.reload(exempt_projects=[self.project('a')])
        self.assertIn('both exempt and in an isolation group',
                      logs.output[0])
        self.assertEqual(before, self.manager_of('host1').tenant_map())
        self.assertInvariants()
