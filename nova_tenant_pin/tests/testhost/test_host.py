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

"""The test host is what the real-kernel suite claims it is.

Every other test of this tree relies on these facts; each is read here
from the kernel or systemd directly, not from the project's own readers
(whose view is compared to them), so a test host that lost its siblings,
its second NUMA node, cgroup v2 or systemd fails here first.
"""

import os

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import procfs
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf
from nova_tenant_pin.tests.testhost import base
from nova_tenant_pin import topology

SYS_CPU = '/sys/devices/system/cpu'
SYS_NODE = '/sys/devices/system/node'


def _read(path):
    with open(path) as f:
        return f.read().strip()


def _cgroup_of(pid):
    """The v2 cgroup path of a process (the ``0::`` line)."""
    for line in _read('/proc/%d/cgroup' % pid).splitlines():
        if line.startswith('0::'):
            return line[3:]
    raise AssertionError('no cgroup v2 line for PID %d' % pid)


class TestTheTestHost(base.TestHostTestCase):

    def test_real_smt_siblings_two_threads_a_core(self):
        """Each of the 8 CPUs has exactly one sibling, pairs 0-1, 2-3, 4-5,
        6-7; the project's topology reader sees the same 4 cores."""
        online = topology.parse_cpu_list(_read(SYS_CPU + '/online'))
        self.assertEqual(set(range(8)), set(online))
        pairs = {frozenset(topology.parse_cpu_list(_read(
            '%s/cpu%d/topology/thread_siblings_list' % (SYS_CPU, cpu))))
            for cpu in online}
        self.assertEqual({frozenset({0, 1}), frozenset({2, 3}),
                          frozenset({4, 5}), frozenset({6, 7})}, pairs,
                         'the test host shows no SMT siblings: QEMU needs '
                         '-cpu max,vendor=GenuineIntel and threads=2')
        host = topology.HostTopology.from_sysfs()
        self.assertEqual(2, host.max_threads_per_core)
        self.assertEqual(pairs, {frozenset(core.cpus)
                                 for core in host.cores})

    def test_two_numa_nodes_of_two_cores(self):
        nodes = sorted(n for n in os.listdir(SYS_NODE)
                       if n.startswith('node') and n[4:].isdigit())
        self.assertEqual(['node0', 'node1'], nodes)
        self.assertEqual('0-3', _read(SYS_NODE + '/node0/cpulist'))
        self.assertEqual('4-7', _read(SYS_NODE + '/node1/cpulist'))
        host = topology.HostTopology.from_sysfs()
        self.assertEqual({0: {0, 1, 2, 3}, 1: {4, 5, 6, 7}},
                         {c.id: set(c.cpus) for c in host.cells})

    def test_unified_cgroup_v2_with_cpuset(self):
        """cgroup2 on /sys/fs/cgroup, no v1 hierarchy; the project's layout
        reader says v2 and finds the cpuset controller there."""
        mounts = [(point, fstype) for point, _root, fstype, _opts in
                  cgroupfs.parse_mountinfo(_read('/proc/self/mountinfo'))]
        self.assertIn(('/sys/fs/cgroup', 'cgroup2'), mounts)
        self.assertEqual([], [m for m in mounts if m[1] == 'cgroup'])
        self.assertIn('cpuset', _read('/sys/fs/cgroup/cgroup.controllers')
                      .split())
        layout = cgroupfs.detect_layout()
        self.assertEqual(cgroupfs.V2, layout.mode)
        self.assertEqual('/sys/fs/cgroup', layout.require_cpuset().mount)

    def test_systemd_is_init_with_machined(self):
        self.assertEqual('systemd', _read('/proc/1/comm'))
        self.assertTrue(os.path.isdir('/run/systemd/system'))
        # AllowedCPUs= is what housekeeping sets on the host's slices.
        self.assertEqual(
            'AllowedCPUs=',
            base.systemctl('show', '-p', 'AllowedCPUs', 'system.slice'))
        base.systemctl('start', 'systemd-machined.service')
        self.assertEqual('active', base.systemctl(
            'is-active', 'systemd-machined.service'))

    def test_libvirtd_under_systemd_puts_guests_in_machine_slice(self):
        """libvirtd runs as a systemd service and registers a TCG guest
        with machined: the guest's QEMU lives in a scope under
        machine.slice, with TCG vCPU threads."""
        libvirt = self.useFixture(base.SystemLibvirtFixture())
        pid = int(base.systemctl('show', '-p', 'MainPID', '--value',
                                 'libvirtd.service'))
        self.assertEqual('/system.slice/libvirtd.service', _cgroup_of(pid))
        dom = libvirt.define(lvf.tiny_domain_xml('testhost-probe', vcpus=2))
        self.assertEqual('qemu', lvf.virt_type())
        qemu = int(_read('/run/libvirt/qemu/testhost-probe.pid'))
        cgroup = _cgroup_of(qemu)
        self.assertTrue(cgroup.startswith('/machine.slice/machine-qemu'),
                        cgroup)
        self.assertIn('.scope', cgroup)
        machines = base.systemctl('list-units', '--type=scope',
                                  '--no-legend', 'machine-qemu*')
        self.assertIn('testhost', machines.replace('\\x2d', '-'))
        vcpus = sorted(t.vcpu for t in procfs.threads(qemu)
                       if t.vcpu is not None)
        self.assertEqual([0, 1], vcpus)
        self.assertTrue(all(t.comm.endswith('/TCG')
                            for t in procfs.threads(qemu)
                            if t.vcpu is not None))
        dom.destroy()
