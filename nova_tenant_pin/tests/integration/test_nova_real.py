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

"""End to end through Nova itself, on real KVM guests.

Nova's API, conductor, scheduler and placement in-process; the compute runs
``tenant_pin.TenantPinLibvirtDriver`` against a private libvirtd; tenants
are separate projects booting through the API; partitions are real cgroups
written by the real privsep daemon. After every step the host is audited
from /proc (see :class:`NovaRealTestBase`).

Needs root, libvirtd and QEMU (tools/setup-host.sh); CI runs it.
"""

from nova_tenant_pin.tests.integration import nova_real_base


class TestNovaRealGuests(nova_real_base.NovaRealTestBase):

    def test_boot_two_tenants(self):
        a, b = self.tenant_api(), self.tenant_api()
        sa = self.boot(a)
        sb = self.boot(b)
        cpus = self.assert_host_clean({a.project_id: [sa],
                                       b.project_id: [sb]})
        print(cpus)
        self.delete(sa)
        self.delete(sb)
