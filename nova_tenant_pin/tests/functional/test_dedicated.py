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

"""Instances with dedicated CPUs are Nova's; exempt projects share one
partition."""

from unittest import mock

from nova.tests.functional.api import client as api_client

from nova_tenant_pin import driver as tp_driver
from nova_tenant_pin import policy
from nova_tenant_pin.tests.functional import base


class TestDedicated(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        self.flags(cpu_shared_set='2-11', cpu_dedicated_set='12-15',
                   group='compute')
        self.start_compute('host1')

    def test_dedicated_instance_is_left_to_nova_and_its_cores_to_nobody(self):
        flavor = self._create_flavor(
            memory_mb=256, vcpu=2, disk=1, ephemeral=0,
            extra_spec={'hw:cpu_policy': 'dedicated'})
        ded = self._create_server(flavor_id=flavor, networks='none',
                                  api=self.tenant('d'))
        info = self.domains_of('host1')[ded['id']]
        # Nova's own pins, no tenant partition.
        self.assertIsNone(info.partition)
        pinned = set().union(*info.vcpu_pins.values())
        self.assertLessEqual(pinned, set(range(12, 16)))
        mgr = self.manager_of('host1')
        self.assertEqual({ded['id']: frozenset(pinned)},
                         mgr.dedicated_instances())
        self.assertNotIn(ded['id'], mgr.claims())
        for label in 'abcde':
            self.boot(label, 2)
        used = set().union(*mgr.tenant_map().values())
        self.assertFalse(used & set(range(12, 16)))
        # After a restart the map still knows it, from Nova's database.
        self.restart_compute_service('host1')
        self.assertEqual({ded['id']: frozenset(pinned)},
                         self.manager_of('host1').dedicated_instances())
        self.assertInvariants()

    def test_emulator_threads_on_shared_cpus_are_refused(self):
        # They would run on the tenants' cores.
        flavor = self._create_flavor(
            memory_mb=256, vcpu=2, disk=1, ephemeral=0,
            extra_spec={'hw:cpu_policy': 'dedicated',
                        'hw:emulator_threads_policy': 'share'})
        reasons = []

        def record(instance):
            reasons.append(real(instance))
            return reasons[-1]
        real = tp_driver.shares_tenant_cores
        with mock.patch.object(tp_driver, 'shares_tenant_cores', record):
            server = self._create_server(flavor_id=flavor, networks='none',
                                         api=self.tenant('d'),
                                         expected_state='ERROR')
        # The driver refused it, for that reason.
        self.assertEqual(1, len(reasons))
        self.assertIn('emulator_threads_policy=share', reasons[0])
        self.assertEqual({}, self.domains_of('host1', active_only=False))
        self.assertEqual({}, self.manager_of('host1').dedicated_instances())
        self.assertNotIn(server['id'], self.manager_of('host1').claims())


class TestExempt(base.TenantPinTestBase):

    def test_exempt_projects_share_one_partition_and_nobody_else(self):
        self.flags(exempt_projects=[self.project('svc1'),
                                    self.project('svc2')],
                   group='tenant_pin')
        self.start_compute('host1')
        s1 = self.boot('svc1', 1)
        s2 = self.boot('svc2', 1)
        self.boot('a', 1)
        domains = self.domains_of('host1')
        part = '/machine/tenant-%s' % policy.SHARED_POOL
        self.assertEqual(part, domains[s1['id']].partition)
        self.assertEqual(part, domains[s2['id']].partition)
        # Two exempt vCPUs share one core; tenant a has its own.
        tenants = self.manager_of('host1').tenant_map()
        self.assertEqual(2, len(tenants[policy.SHARED_POOL]))
        self.assertFalse(tenants[policy.SHARED_POOL] &
                         tenants[self.project('a')])


class TestNovaPinnedFromStockHost(base.TenantPinTestBase):
    """host_a runs Nova's stock driver; host_b this one. An instance whose
    emulator threads Nova runs on the shared CPUs is refused by host_b's
    live-migration check, as it is at spawn, and stays where it is."""

    def setUp(self):
        super().setUp()
        self.flags(cpu_shared_set='2-11', cpu_dedicated_set='12-15',
                   group='compute')
        self.flags(compute_driver='libvirt.LibvirtDriver')
        self.start_compute('host_a')
        self.flags(compute_driver=base.DRIVER)
        self.start_compute('host_b')

    def test_live_migration_in_is_refused(self):
        flavor = self._create_flavor(
            memory_mb=256, vcpu=2, disk=1, ephemeral=0,
            extra_spec={'hw:cpu_policy': 'dedicated',
                        'hw:emulator_threads_policy': 'share'})
        server = self._create_server(flavor_id=flavor, networks='none',
                                     api=self.tenant('d'), host='host_a')
        self.assertEqual('host_a', self.host_of(server))
        err = self.assertRaises(
            api_client.OpenStackApiException, self.api.post_server_action,
            server['id'], {'os-migrateLive': {'host': 'host_b',
                                              'block_migration': 'auto'}})
        self.assertIn('NoValidHost', str(err))
        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('host_a', self.host_of(server))
        # host_b's check is what refused, and said why.
        self.assertIn('tenant-pin: instance %s of project %s: '
                      'hw:emulator_threads_policy=share runs emulator '
                      'threads on the shared CPUs' % (server['id'],
                                                      self.project('d')),
                      self.stdlog.logger.output)
        self.assertEqual({}, self.domains_of('host_b', active_only=False))
        self.assertEqual({}, self.manager_of('host_b').claims())
