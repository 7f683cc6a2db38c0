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

"""CgroupPartitions on this machine's real cgroup v1 cpuset tree.

Runs as root (CI does), through the real privsep daemon, inside a
test-owned cgroup root ``/ntp-test-<uuid>`` of every hierarchy that is
removed bottom-up on cleanup, even after a failure. The machine has 2 CPUs
with 1 thread a core, so single CPUs 0 and 1 stand for whole cores. The
tasks inside partitions are ``sleep`` processes the test starts and kills
by PID.
"""

import errno
import os

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import cgroups
from nova_tenant_pin import exception
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef

DOMAIN = 'qemu-1-instance-00000001.libvirt-qemu'


def _read(path, name):
    with open(os.path.join(path, name)) as f:
        return f.read().strip()


class TestRealCgroupPartitions(base.TestCase):

    def setUp(self):
        super().setUp()
        reason = base.requires_root()
        if reason:
            self.skipTest(reason)
        layout = cgroupfs.detect_layout('/')
        if layout.cpuset is None or layout.cpuset.version != 1:
            self.skipTest('needs the cgroup v1 cpuset controller (this '
                          'project\'s CI hosts are hybrid)')
        if len(os.sched_getaffinity(0)) < 2:
            self.skipTest('needs 2 CPUs')
        self.subtree = self.useFixture(ef.CgroupSubtree())
        self.useFixture(ef.PrivsepDaemon(self.conf_fixture)).start()
        self.parts = cgroups.CgroupPartitions(root=self.subtree.root)
        self.cpuset = self.parts.layout.cpuset

    def _sleeper(self):
        return self.useFixture(ef.OwnedProcess())

    def _fake_domain(self, tenant, vcpu_cpus):
        """Create what libvirt creates for a running domain inside the
        partition (cpuset hierarchy): the domain cgroup with emulator and
        vCPU children, each holding a sleep of ours. Returns the domain
        directory and the processes by child name."""
        domain = os.path.join(self.parts.path(tenant), DOMAIN)
        cpus = _read(self.parts.path(tenant), 'cpuset.cpus')
        procs = {}
        os.mkdir(domain)
        for name, value in [('', cpus), ('emulator', cpus)] + [
                ('vcpu%d' % n, c) for n, c in enumerate(vcpu_cpus)]:
            path = os.path.join(domain, name) if name else domain
            if name:
                os.mkdir(path)
            with open(os.path.join(path, 'cpuset.mems'), 'w') as f:
                f.write('0')
            with open(os.path.join(path, 'cpuset.cpus'), 'w') as f:
                f.write(value)
            if name:
                procs[name] = self._sleeper()
                with open(os.path.join(path, 'tasks'), 'w') as f:
                    f.write(str(procs[name].pid))
        return domain, procs

    def test_layout_matches_mountinfo(self):
        """Every hierarchy libvirt uses here is found, the cpuset one in
        v1, and the unified cgroup2 mount: the host is hybrid."""
        layout = self.parts.layout
        self.assertEqual(cgroups.HYBRID, layout.mode)
        names = {h.name for h in layout.hierarchies}
        self.assertLessEqual({'cpuset', 'memory', 'unified'}, names)
        self.assertNotIn('name=systemd', names)
        for h in layout.hierarchies:
            self.assertTrue(os.path.ismount(h.mount), h.mount)

    def test_partition_created_in_every_hierarchy_top_down(self):
        result = self.parts.ensure_partition('t1', {0}, {0})
        self.assertEqual(sorted(h.name for h in self.parts.layout.hierarchies),
                         sorted(result['created']))
        for h in self.parts.layout.hierarchies:
            self.assertTrue(os.path.isdir(self.parts.path('t1', h)), h.name)
        path = self.parts.path('t1')
        self.assertEqual('0', _read(path, 'cpuset.cpus'))
        self.assertEqual('0', _read(path, 'cpuset.mems'))
        machine = os.path.dirname(path)
        # /machine was created by us with the parent's CPUs before it.
        self.assertEqual(_read(self.cpuset.mount, 'cpuset.cpus'),
                         _read(machine, 'cpuset.cpus'))
        info = self.parts.list_partitions()['t1']
        self.assertEqual(frozenset({0}), info.effective_cpus)
        self.assertEqual(frozenset(), info.tasks)
        # machine is not exclusive, so neither can the partition be.
        self.assertFalse(info.exclusive)
        self.assertEqual('0', _read(path, 'cpuset.cpu_exclusive'))

    def test_two_tenants_read_back_disjoint(self):
        self.parts.ensure_partition('a', {0}, {0})
        self.parts.ensure_partition('b', {1}, {0})
        infos = self.parts.list_partitions()
        self.assertEqual({'a', 'b'}, set(infos))
        self.assertEqual(frozenset({0}), infos['a'].effective_cpus)
        self.assertEqual(frozenset({1}), infos['b'].effective_cpus)

    def test_resize_both_ways_with_live_tasks(self):
        """Widen {0} -> {0,1}: partition, domain and floating vCPUs follow
        top-down; shrink to {1}: bottom-up, the task's affinity follows."""
        self.parts.ensure_partition('r', {0}, {0})
        domain, procs = self._fake_domain('r', ['0'])
        self.parts.set_partition_cpus('r', {0, 1})
        for path in (self.parts.path('r'), domain,
                     os.path.join(domain, 'vcpu0'),
                     os.path.join(domain, 'emulator')):
            self.assertEqual('0-1', _read(path, 'cpuset.cpus'), path)
        self.assertEqual('0-1', procs['vcpu0'].cpus_allowed())
        self.parts.set_partition_cpus('r', {1})
        for path in (self.parts.path('r'), domain,
                     os.path.join(domain, 'vcpu0')):
            self.assertEqual('1', _read(path, 'cpuset.cpus'), path)
            self.assertEqual('1', _read(path, 'cpuset.effective_cpus'))
        self.assertEqual('1', procs['vcpu0'].cpus_allowed())
        self.assertEqual('1', procs['emulator'].cpus_allowed())
        info = self.parts.list_partitions()['r']
        self.assertEqual(frozenset({1}), info.effective_cpus)
        self.assertEqual({p.pid for p in procs.values()}, set(info.tasks))

    def test_shrink_moves_a_pin_off_the_leaving_cpu(self):
        """A vCPU pinned to the CPU that leaves the partition follows its
        parent onto the CPUs that remain; the one pinned to a remaining
        CPU keeps it. Bottom-up order: no EBUSY from the kernel."""
        self.parts.ensure_partition('s', {0, 1}, {0})
        domain, procs = self._fake_domain('s', ['0', '1'])
        self.parts.set_partition_cpus('s', {1})
        for name in ('vcpu0', 'vcpu1', 'emulator'):
            self.assertEqual('1', _read(os.path.join(domain, name),
                                        'cpuset.cpus'), name)
            self.assertEqual('1', procs[name].cpus_allowed(), name)

    def test_task_pinned_outside_is_refused(self):
        self.parts.ensure_partition('p', {0}, {0})
        proc = self._sleeper()
        ef.enter_machine(self.parts.layout, self.subtree.root, proc.pid)
        self.parts.move_task('p', proc.pid)
        self.assertEqual('0', proc.cpus_allowed())
        err = self.assertRaises(OSError, os.sched_setaffinity, proc.pid, {1})
        self.assertEqual(errno.EINVAL, err.errno)
        self.assertEqual('0', proc.cpus_allowed())
        self.assertIn(proc.pid, self.parts.list_partitions()['p'].tasks)

    def test_remove_refused_while_busy_then_removed_everywhere(self):
        self.parts.ensure_partition('busy', {1}, {0})
        proc = self._sleeper()
        ef.enter_machine(self.parts.layout, self.subtree.root, proc.pid)
        self.parts.move_task('busy', proc.pid)
        self.assertRaises(cgroups.PartitionBusy,
                          self.parts.remove_partition, 'busy')
        for h in self.parts.layout.hierarchies:
            self.assertTrue(os.path.isdir(self.parts.path('busy', h)))
        # The process is still alive: nothing was killed.
        self.assertIsNone(proc.process.poll())
        proc.stop()
        self.parts.remove_partition('busy')
        for h in self.parts.layout.hierarchies:
            self.assertFalse(os.path.exists(self.parts.path('busy', h)))
        self.assertEqual({}, self.parts.list_partitions())

    def test_cpus_not_online_refused_and_nothing_created(self):
        for cpus in ({0, 4096}, {2}):
            self.assertRaises(exception.InvalidArgument,
                              self.parts.ensure_partition, 'x', cpus, {0})
        for h in self.parts.layout.hierarchies:
            self.assertFalse(os.path.exists(self.subtree.path(h)))

    def test_kernel_refusal_rolls_back_what_it_created(self):
        """A partition wider than its parent is refused by the kernel; the
        directories created by the failed call are removed again."""
        self.parts.ensure_partition('a', {0}, {0})
        machine = os.path.dirname(self.parts.path('a'))
        with open(os.path.join(machine, 'cpuset.cpus'), 'w') as f:
            f.write('0')
        self.assertRaises(cgroups.PartitionError,
                          self.parts.ensure_partition, 'wide', {1}, {0})
        for h in self.parts.layout.hierarchies:
            self.assertFalse(os.path.exists(self.parts.path('wide', h)))
            self.assertTrue(os.path.isdir(self.parts.path('a', h)))
