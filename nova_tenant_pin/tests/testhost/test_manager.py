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

"""The manager's real-guest tests on a systemd, cgroup v2, SMT host.

The integration tests of tests/integration/test_manager_real.py, run here
against the test host's own libvirtd (run by systemd, guests registered
with machined): tenant partitions are systemd slices under machine.slice
(``machine-tenant\\x2d<id>.slice``, ``AllowedCPUs=`` and the v2
``cpuset.cpus``), each tenant gets whole cores of two sibling threads, and
core 0 (CPUs 0 and 1) is kept for housekeeping. Every check reads the
kernel (/proc, cgroupfs). Tests only this host can run follow: an odd vCPU
total strands exactly one thread, and strict mode fills a sibling pair with
one instance.
"""

import os

from nova_tenant_pin import audit
from nova_tenant_pin import cgroupfs
from nova_tenant_pin.tests.integration import test_manager_real as real
from nova_tenant_pin.tests.testhost import base
from nova_tenant_pin import topology


class SystemdHostMixin:
    """The hooks of test_manager_real.RealHostTestCase for the test
    host."""

    CGROUP_PREFIX = '/machine.slice'
    HOUSEKEEPING = (0, 1)

    def real_host(self):
        if not base.in_test_host():
            self.skipTest(base.SKIP_REASON)
        host = topology.HostTopology.from_sysfs()
        self.assertEqual(2, host.max_threads_per_core,
                         'the test host shows no SMT siblings')
        return host

    def libvirt_fixture(self):
        return base.SystemLibvirtFixture()

    def assert_in_slice(self, tenant):
        """The tenant's partition is a systemd slice with its CPUs."""
        unit = cgroupfs.partition_slice(tenant)
        cpus = self.manager.tenant_map()[tenant]
        shown = base.systemctl('show', '--value', '-p', 'AllowedCPUs', unit)
        self.assertEqual(cpus, frozenset(topology.parse_cpu_list(shown)),
                         unit)
        path = os.path.join('/sys/fs/cgroup/machine.slice', unit)
        with open(os.path.join(path, 'cpuset.cpus.effective')) as f:
            self.assertEqual(cpus, frozenset(
                topology.parse_cpu_list(f.read())))


class TestTenantsOnTheTestHost(SystemdHostMixin,
                               real.TestTenantsOnRealGuests):

    def test_partitions_are_slices_under_machine_slice(self):
        a, b = self.tenant('a'), self.tenant('b')
        _, dom_a = self.boot(a)
        self.boot(b)
        for tenant in (a, b):
            self.assert_in_slice(tenant)
        for task in self.qemu_threads(dom_a):
            self.assertTrue(task.cpuset_cgroup.startswith(
                '/machine.slice/%s/' % cgroupfs.partition_slice(a)),
                task)

    def test_odd_vcpu_total_strands_exactly_one_thread(self):
        """Three vCPUs of tenant a (two instances) and two of tenant b on
        two-thread cores: a gets two whole cores and b one, so exactly one
        thread of the host is stranded (a's fourth), used by no one."""
        a, b = self.tenant('a'), self.tenant('b')
        self.boot(a, vcpus=2)
        self.boot(a, vcpus=1)
        self.boot(b, vcpus=2)
        report = self.assert_clean()
        cpus_a = report.tenants[a]
        self.assertEqual(2, len(self.host.cores_of(cpus_a)))
        self.assertEqual(self.host.whole_core_cpus(cpus_a), cpus_a)
        self.assertEqual(1, len(self.host.cores_of(report.tenants[b])))
        self.assertFalse(self.host.cores_of(cpus_a) &
                         self.host.cores_of(report.tenants[b]))
        self.assertEqual(1, self.manager.snapshot()['stranded_cpus'])


class TestStrictModeOnTheTestHost(SystemdHostMixin, real.RealHostTestCase):

    def setUp(self):
        super().setUp()
        self.manager = self.new_manager(pin_mode='strict')

    def test_strict_pins_fill_a_sibling_pair_with_one_instance(self):
        a = self.tenant('a')
        _, dom = self.boot(a, vcpus=2)
        report = self.assert_clean()
        pins = {t.vcpu: t.allowed_cpus for t in self.qemu_threads(dom)
                if t.vcpu is not None}
        self.assertEqual({0, 1}, set(pins))
        self.assertTrue(all(len(cpus) == 1 for cpus in pins.values()),
                        pins)
        both = pins[0] | pins[1]
        self.assertEqual(2, len(both))
        self.assertEqual(1, len(self.host.cores_of(both)),
                         'the two vCPUs are not siblings: %s' % pins)
        self.assertEqual(both, report.tenants[a])
        self.assertEqual(a, audit.key_of_cgroup(
            self.qemu_threads(dom)[0].cpuset_cgroup))


class TestStatusOnTheTestHost(SystemdHostMixin, real.TestStatusOnRealHost):
    pass
