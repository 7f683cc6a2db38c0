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

"""Rescue and unrescue keep the instance in its tenant's partition.

Nova's rescue defines a rescue domain from ``_get_guest_xml`` (which this
driver confines) and keeps the original XML in ``unrescue.xml`` (confined
when it was written); neither gives the instance's room away. As in Nova's
own rescue tests, the instance directory is the test's instances_path, so
that ``unrescue.xml`` can be written.
"""

import fixtures
from nova import conf as nova_conf

from nova_tenant_pin import domain_xml
from nova_tenant_pin.tests.functional import base

CONF = nova_conf.CONF


class TestRescue(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.imagebackend._update_utime_ignore_eacces'))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.utils.get_instance_path',
            lambda *args, **kwargs: CONF.instances_path))
        self.start_compute('host1')

    def domain_of(self, server):
        return self.domains_of('host1')[server['id']]

    def test_rescue_and_unrescue_stay_in_the_partition(self):
        server = self.boot('a', 2)
        self.boot('b', 2)
        before = self.manager_of('host1').tenant_map()
        claim = self.manager_of('host1').claims()[server['id']]
        self.api.post_server_action(server['id'], {'rescue': {}})
        server = self._wait_for_state_change(server, 'RESCUE')
        rescued = self.domain_of(server)
        self.assertEqual(domain_xml.PARTITION_PREFIX + self.project('a'),
                         rescued.partition)
        self.assertEqual(before[self.project('a')], rescued.vcpu_cpuset)
        self.assertInvariants()
        self.assertEqual(before, self.manager_of('host1').tenant_map())
        self.assertEqual(claim.vcpus, self.manager_of('host1').claims()[
            server['id']].vcpus)

        self.api.post_server_action(server['id'], {'unrescue': None})
        server = self._wait_for_state_change(server, 'ACTIVE')
        restored = self.domain_of(server)
        self.assertEqual(domain_xml.PARTITION_PREFIX + self.project('a'),
                         restored.partition)
        self.assertEqual(before, self.manager_of('host1').tenant_map())
        self.assertInvariants()
        # No domain was ever started outside its partition.
        self.assertEqual([], [s for s in self.pinning.starts if s[2]])
