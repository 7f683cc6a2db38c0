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

"""Real libvirtd + QEMU guests: what the kernel reports for their threads.

These tests need root and the Debian packages of tools/setup-host.sh; CI
runs them. With no usable /dev/kvm the guests run under TCG, which pins the
same way.
"""

import os
import sys

from nova_tenant_pin import procfs
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf
from nova_tenant_pin import topology


def qemu_pid(dom):
    with open('/run/libvirt/qemu/%s.pid' % dom.name()) as f:
        return int(f.read().strip())


class TestRealGuests(base.TestCase):

    def setUp(self):
        super().setUp()
        reason = lvf.missing_requirements()
        if reason:
            self.skipTest(reason)
        sys.stderr.write('guests run with virt type %s\n' % lvf.virt_type())
        self.libvirt = self.useFixture(lvf.LibvirtdFixture())
        host = topology.HostTopology.from_sysfs()
        self.cpus = sorted(host.online_cpus)

    def test_vcpu_cpuset_confines_every_qemu_thread(self):
        """<vcpu cpuset> confines vCPU, emulator and I/O threads alike."""
        name = 'ntp-itest-%d' % os.getpid()
        dom = self.libvirt.define(lvf.tiny_domain_xml(
            name, vcpus=2, cpuset=str(self.cpus[-1])))
        tasks = procfs.threads(qemu_pid(dom))
        vcpus = [t for t in tasks if t.vcpu is not None]
        self.assertEqual([0, 1], sorted(t.vcpu for t in vcpus))
        for task in tasks:
            if task.comm.startswith('kvm-nx-lpage'):
                continue  # a kernel worker the KVM module adds
            self.assertEqual(frozenset([self.cpus[-1]]), task.allowed_cpus,
                             '%s (%d) may run on %s' % (
                                 task.comm, task.tid,
                                 sorted(task.allowed_cpus)))
        self.assertIn('machine', tasks[0].cpuset_cgroup)

    def test_live_vcpu_pin_is_what_the_kernel_enforces(self):
        name = 'ntp-itest-pin-%d' % os.getpid()
        dom = self.libvirt.define(lvf.tiny_domain_xml(name, vcpus=1))
        cpu = self.cpus[0]
        cpumap = tuple(c == cpu for c in range(max(self.cpus) + 1))
        dom.pinVcpuFlags(0, cpumap, lvf.libvirt.VIR_DOMAIN_AFFECT_LIVE)
        vcpu = [t for t in procfs.threads(qemu_pid(dom))
                if t.vcpu == 0][0]
        self.assertEqual(frozenset([cpu]), vcpu.allowed_cpus)
