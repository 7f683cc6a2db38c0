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

"""Many tenants booting and deleting at once through the API, with real
casts so that the builds run concurrently in the compute service. The
manager-level test with 20 threads is in ``unit/test_manager.py``."""

from nova_tenant_pin.tests.functional import base


class TestConcurrentTenants(base.TenantPinTestBase):

    CAST_AS_CALL = False

    def test_parallel_boots_and_deletes_across_five_tenants(self):
        self.start_compute('host1')
        labels = ['t%d' % (i % 5) for i in range(10)]
        flavor = self._flavor(1)
        posted = []
        for label in labels:
            body = self._build_server(flavor_id=flavor, networks='none')
            posted.append(self.tenant(label).post_server({'server': body}))
        servers = [self._wait_for_state_change(s, 'ACTIVE') for s in posted]
        self.assertInvariants()
        # Five tenants, two 1-vCPU instances each: one whole core each.
        tenants = self.manager_of('host1').tenant_map()
        self.assertEqual({2}, {len(c) for c in tenants.values()})
        self.assertEqual(5, len(tenants))
        for server in servers[::2]:
            self.api.delete_server(server['id'])
        for server in servers[::2]:
            self._wait_until_deleted(server)
        self.assertInvariants()
        self.assertEqual({s['id'] for s in servers[1::2]},
                         set(self.manager_of('host1').claims()))
        self.assertEqual([], self.tp_partitions['host1'].overlaps)
