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

"""The privileged entrypoints, run in-process (client mode off) against a
fake host tree: hostile input is refused without side effects, and valid
input writes what the kernel expects.

cgroup v2 is tested on a fake tree only: this project's machines are hybrid
and the v2 cpuset controller is not available on them (it is bound to the
v1 hierarchy), so the real-kernel tests cover v1.
"""

import errno
import os
from unittest import mock

import ddt
import fixtures

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import exception
from nova_tenant_pin import hostfs
from nova_tenant_pin import privsep
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef

CPUSET = '/sys/fs/cgroup/cpuset'

# (entrypoint, args): every one must raise InvalidArgument and change
# nothing. '/escape' is a symlink out of the cpuset mount, '/trap' a real
# directory whose 'machine' is a symlink out of it; 'b' is another tenant.
HOSTILE = [
    # Path traversal and odd roots.
    ('ensure_partition', ('/../../etc', 'a', [0], [0])),
    ('ensure_partition', ('/a/../..', 'a', [0], [0])),
    ('ensure_partition', ('relative', 'a', [0], [0])),
    ('ensure_partition', ('/a\x00b', 'a', [0], [0])),
    ('ensure_partition', (None, 'a', [0], [0])),
    # Symlinks out of the hierarchy.
    ('ensure_partition', ('/escape', 'a', [0], [0])),
    ('ensure_partition', ('/trap', 'a', [0], [0])),
    ('set_partition_cpus', ('/escape', 'b', [0])),
    ('remove_partition', ('/trap', 'b')),
    # Tenant names that reach another tenant or out of machine/.
    ('ensure_partition', ('/', '../tenant-b', [0], [0])),
    ('ensure_partition', ('/', 'b.partition/../../x', [0], [0])),
    ('ensure_partition', ('/', 'tenant-b.partition', [0], [0])),
    ('ensure_partition', ('/', 'a/b', [0], [0])),
    ('ensure_partition', ('/', '', [0], [0])),
    ('ensure_partition', ('/', 'x' * 65, [0], [0])),
    ('ensure_partition', ('/', 7, [0], [0])),
    ('set_partition_cpus', ('/', '../../cpuset', [0])),
    ('remove_partition', ('/', '..')),
    ('move_task', ('/', 'b/../a', 1)),
    # Absurd, empty or offline CPU lists.
    ('ensure_partition', ('/', 'a', [], [0])),
    ('ensure_partition', ('/', 'a', '', [0])),
    ('ensure_partition', ('/', 'a', '0-99999999', [0])),
    ('ensure_partition', ('/', 'a', '0-' + '9' * 300, [0])),
    ('ensure_partition', ('/', 'a', '4', [0])),
    ('ensure_partition', ('/', 'a', [0, 9], [0])),
    ('ensure_partition', ('/', 'a', [-1], [0])),
    ('ensure_partition', ('/', 'a', [True], [0])),
    ('ensure_partition', ('/', 'a', [0.5], [0])),
    ('ensure_partition', ('/', 'a', '3-1', [0])),
    ('ensure_partition', ('/', 'a', '0,', [0])),
    ('ensure_partition', ('/', 'a', '0;echo', [0])),
    ('ensure_partition', ('/', 'a', {'0': 1}, [0])),
    ('ensure_partition', ('/', 'a', list(range(5000)), [0])),
    ('ensure_partition', ('/', 'a', [0], [])),
    ('ensure_partition', ('/', 'a', [0], [1])),
    ('set_partition_cpus', ('/', 'a', [])),
    ('set_partition_cpus', ('/', 'a', 'all')),
    # PIDs.
    ('move_task', ('/', 'a', '1')),
    ('move_task', ('/', 'a', 0)),
    ('move_task', ('/', 'a', -1)),
    ('move_task', ('/', 'a', True)),
    ('move_task', ('/', 'a', 1.0)),
    ('move_task', ('/', 'a', 999999)),
    ('confine_task', ('/', '10')),
    ('confine_task', ('/', 424242)),
    ('confine_task', ('/..', 10)),
    ('set_task_affinity', (10, [])),
    ('set_task_affinity', (10, [7])),
    ('set_task_affinity', ('10', [0])),
    # Housekeeping cpuset.
    ('ensure_housekeeping_cpuset', ('/', [])),
    ('ensure_housekeeping_cpuset', ('/', '0-4096')),
    ('ensure_housekeeping_cpuset', ('/escape', [0])),
    ('ensure_housekeeping_cpuset', ('/missing', [0])),
    ('release_housekeeping_cpuset', ('/../..',)),
    # IRQs and masks.
    ('set_irq_affinity', (-1, [0])),
    ('set_irq_affinity', ('24', [0])),
    ('set_irq_affinity', (99, [0])),
    ('set_irq_affinity', (True, [0])),
    ('set_irq_affinity', (24, [])),
    ('set_irq_affinity', (24, '0-2')),
    ('set_default_irq_affinity', ([],)),
    ('set_default_irq_affinity', ('ffff',)),
    ('set_workqueue_cpumask', ([2],)),
    ('set_workqueue_cpumask', (None,)),
    # Names with a newline or a control character.
    ('ensure_partition', ('/', 'a\n', [0], [0])),
    ('ensure_partition', ('/host\n', 'a', [0], [0])),
    ('ensure_partition', ('/host\x01', 'a', [0], [0])),
    ('ensure_housekeeping_cpuset', ('/\n', [0])),
    ('move_task', ('/', 'a\n', 10)),
    # Digits of other scripts, whitespace, numbers beyond the host.
    ('ensure_partition', ('/', 'a', '\u0660-\u0661', [0])),
    ('ensure_partition', ('/', 'a', '\uff10\uff10', [0])),
    ('ensure_partition', ('/', 'a', [0], '\u0660')),
    ('ensure_partition', ('/', 'a', '0\n', [0])),
    ('ensure_partition', ('/', 'a', ' 0', [0])),
    ('ensure_partition', ('/', 'a', [0], '0-50000000')),
    ('set_partition_cpus', ('/', 'a', '0-65535')),
    ('set_irq_affinity', (24, '\u0663')),
    ('set_irq_affinity', (24, '0-50000000')),
    ('set_irq_affinity', (24, [0, 10 ** 9])),
    ('set_workqueue_cpumask', ('0-50000000',)),
    ('set_default_irq_affinity', ('1-2',)),
    ('set_task_affinity', (10, '0-4095')),
    # Each entrypoint kept to its purpose: partitions and housekeeping
    # only under a libvirtd's root, never inside systemd's units or a
    # partition; task moves only for the tasks they are meant for.
    ('ensure_partition', ('/system.slice', 'a', [0], [0])),
    ('ensure_partition', ('/user.slice/user-1000.slice', 'a', [0], [0])),
    # A libvirtd in a delegated unit keeps ``machine`` inside the unit.
    ('ensure_partition', ('/system.slice/libvirtd.service', 'a', [0], [0])),
    ('ensure_partition', ('/machine.slice/libpod-0a1b.scope', 'a', [0],
                          [0])),
    ('ensure_partition', ('/machine/tenant-b.partition', 'a', [0], [0])),
    ('ensure_partition', ('/machine', 'a', [0], [0])),
    ('remove_partition', ('/system.slice', 'b')),
    ('ensure_housekeeping_cpuset', ('/machine/tenant-b.partition', [0])),
    ('ensure_housekeeping_cpuset', ('/housekeeping', [0])),
    ('confine_task', ('/machine/tenant-b.partition', 10)),
    ('release_housekeeping_cpuset', ('/init.scope',)),
    ('confine_task', ('/', 2)),
    ('move_task', ('/', 'b', 1)),
    ('move_task', ('/', 'b', 2)),
    ('move_task', ('/', 'b', 10)),
    ('set_task_affinity', (1, [0])),
    ('set_task_affinity', (10, [0])),
    ('set_task_affinity', (2, [0])),
    ('set_task_affinity', (12, [0])),
    # systemd units.
    ('set_systemd_allowed_cpus', ('sshd.service', [0])),
    ('set_systemd_allowed_cpus', ('../system.slice', [0])),
    ('set_systemd_allowed_cpus', ('system.slice; reboot', [0])),
    ('set_systemd_allowed_cpus', ('system.slice', [])),
    ('set_systemd_allowed_cpus', ('system.slice', '0-3')),
]


class FakeHostTestCase(base.TestCase):
    """In-process entrypoints over a fake hybrid host with 2 CPUs."""

    cgroup = 'hybrid'

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(ef.FakeHost(cgroup=self.cgroup))
        self.host.add_task(2, privsep.PF_KTHREAD, 'kthreadd')
        self.host.add_task(12, privsep.PF_KTHREAD |
                           privsep.PF_NO_SETAFFINITY, 'ksoftirqd/0')
        self.useFixture(ef.FakeKernel(self.host))
        self.useFixture(ef.ClientModeOff())
        self.execute = self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.processutils.execute',
            return_value=('', ''))).mock

    def cpuset(self, *parts):
        return self.host.path(os.path.join(CPUSET, *parts))

    def read(self, *parts):
        with open(self.cpuset(*parts)) as f:
            return f.read().strip()

    def enter_machine(self, tid, root='/'):
        ef.enter_machine(cgroupfs.detect_layout(self.host.root), root, tid)


@ddt.ddt
class TestHostileInput(FakeHostTestCase):

    def setUp(self):
        super().setUp()
        outside = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(outside, 'machine'))
        os.symlink(outside, self.cpuset('escape'))
        os.makedirs(self.cpuset('trap'))
        os.symlink(os.path.join(outside, 'machine'),
                   self.cpuset('trap', 'machine'))
        self.outside = outside

    @ddt.data(*HOSTILE)
    @ddt.unpack
    def test_refused_without_side_effects(self, name, args):
        before = self.host.snapshot()
        outside = os.listdir(os.path.join(self.outside, 'machine'))
        self.assertRaises(exception.InvalidArgument,
                          getattr(privsep, name), *args)
        self.assertEqual(before, self.host.snapshot())
        self.assertEqual(outside, os.listdir(os.path.join(self.outside,
                                                          'machine')))
        self.execute.assert_not_called()

    def test_every_entrypoint_is_in_the_table(self):
        entrypoints = {n for n in dir(privsep) if
                       privsep.tenant_pin_pctxt.is_entrypoint(
                           getattr(privsep, n))}
        self.assertEqual(entrypoints, {name for name, _ in HOSTILE})


class TestPartitionsV1(FakeHostTestCase):

    def test_ensure_creates_every_hierarchy_top_down(self):
        result = privsep.ensure_partition('/host', 'a', '1', [0])
        self.assertEqual(sorted(ef.V1_CONTROLLERS + ('unified',)),
                         result['created'])
        for name in ef.V1_CONTROLLERS:
            self.assertTrue(os.path.isdir(self.host.path(
                '/sys/fs/cgroup/%s/host/machine/tenant-a.partition'
                % name)))
        self.assertTrue(os.path.isdir(self.host.path(
            '/sys/fs/cgroup/unified/host/machine/tenant-a.partition')))
        self.assertFalse(os.path.exists(self.host.path(
            '/sys/fs/cgroup/systemd/host')))
        # Intermediate levels copy their parent's CPUs and memory nodes.
        self.assertEqual('0-1', self.read('host', 'cpuset.cpus'))
        self.assertEqual('0', self.read('host/machine', 'cpuset.mems'))
        self.assertEqual('1', self.read('host/machine/tenant-a.partition',
                                        'cpuset.cpus'))
        self.assertEqual('0', self.read('host/machine/tenant-a.partition',
                                        'cpuset.mems'))

    def test_ensure_again_resizes(self):
        privsep.ensure_partition('/', 'a', [0], [0])
        result = privsep.ensure_partition('/', 'a', [0, 1], [0])
        self.assertEqual([], result['created'])
        self.assertEqual('0-1', self.read('machine/tenant-a.partition',
                                          'cpuset.cpus'))

    def test_exclusive_when_parent_exclusive_and_siblings_disjoint(self):
        os.makedirs(self.cpuset('machine'))
        ef._v1_files(self.cpuset('machine'), '0-1', '0', '1')
        self.assertTrue(privsep.ensure_partition('/', 'a', [0], [0])[
            'exclusive'])
        self.assertEqual('1', self.read('machine/tenant-a.partition',
                                        'cpuset.cpu_exclusive'))
        # b overlaps nothing either; c would overlap a.
        self.assertTrue(privsep.ensure_partition('/', 'b', [1], [0])[
            'exclusive'])
        with open(self.cpuset('machine/tenant-b.partition',
                              'cpuset.cpu_exclusive'), 'w') as f:
            f.write('0')
        # Widened over a's CPU, b cannot be exclusive any more.
        self.assertEqual({'cgroups': 1, 'exclusive': False},
                         privsep.set_partition_cpus('/', 'b', [0, 1]))
        self.assertFalse(privsep.ensure_partition('/', 'b', [0, 1], [0])[
            'exclusive'])
        privsep.remove_partition('/', 'a')
        self.assertTrue(privsep.set_partition_cpus('/', 'b', [0, 1])[
            'exclusive'])

    def test_not_exclusive_under_a_plain_parent(self):
        self.assertFalse(privsep.ensure_partition('/', 'a', [0], [0])[
            'exclusive'])
        self.assertEqual('0', self.read('machine/tenant-a.partition',
                                        'cpuset.cpu_exclusive'))

    def test_kernel_error_rolls_back(self):
        real = cgroupfs.V1Cgroup.set_cpus

        def refuse(group, cpus):
            if group.path.endswith('.partition'):
                raise OSError(errno.EINVAL, 'Invalid argument')
            real(group, cpus)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cgroupfs.V1Cgroup.set_cpus', refuse))
        err = self.assertRaises(exception.PartitionError,
                                privsep.ensure_partition, '/', 'a', [1], [0])
        self.assertIn('Invalid argument', str(err))
        self.assertFalse(os.path.exists(self.cpuset('machine')))

    def test_resize_missing_partition(self):
        self.assertRaises(exception.PartitionError,
                          privsep.set_partition_cpus, '/', 'nope', [0])

    def test_move_task_and_busy_remove(self):
        privsep.ensure_partition('/', 'a', [0], [0])
        self.enter_machine(10)
        privsep.move_task('/', 'a', 10)
        self.assertEqual('10', self.read('machine/tenant-a.partition',
                                         'tasks'))
        self.assertNotIn('10', self.read('tasks').split())
        self.assertRaises(exception.PartitionBusy,
                          privsep.remove_partition, '/', 'a')
        self.assertTrue(os.path.isdir(self.cpuset(
            'machine/tenant-a.partition')))

    def test_remove_takes_empty_children_bottom_up(self):
        privsep.ensure_partition('/', 'a', [0], [0])
        os.makedirs(self.cpuset('machine/tenant-a.partition/qemu-1-x/vcpu0'))
        removed = privsep.remove_partition('/', 'a')
        self.assertEqual(9, len(removed))
        self.assertFalse(os.path.exists(self.cpuset(
            'machine/tenant-a.partition')))
        self.assertTrue(os.path.isdir(self.cpuset('machine')))
        self.assertEqual([], privsep.remove_partition('/', 'a'))


class TestPartitionsV2(FakeHostTestCase):
    """cgroup v2 on a fake tree: the v2 cpuset controller is not available
    on this project's hybrid machines (cpuset is bound to v1 there)."""

    cgroup = 'v2'

    def v2(self, *parts):
        return self.host.path(os.path.join('/sys/fs/cgroup', *parts))

    def read2(self, *parts):
        with open(self.v2(*parts)) as f:
            return f.read().strip()

    def test_ensure_enables_cpuset_and_makes_a_partition_root(self):
        result = privsep.ensure_partition('/', 'a', [1], [0])
        self.assertEqual(['unified'], result['created'])
        self.assertTrue(result['exclusive'])
        self.assertEqual('+cpuset', self.read2('cgroup.subtree_control'))
        self.assertEqual('+cpuset', self.read2('machine',
                                               'cgroup.subtree_control'))
        part = 'machine/tenant-a.partition'
        self.assertEqual('1', self.read2(part, 'cpuset.cpus'))
        self.assertEqual('0', self.read2(part, 'cpuset.mems'))
        self.assertEqual('root', self.read2(part, 'cpuset.cpus.partition'))

    def test_partition_root_refused_by_the_kernel_falls_back(self):
        self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.cgroupfs.V2Cgroup.exclusive',
            return_value=False))
        self.assertFalse(privsep.ensure_partition('/', 'a', [1], [0])[
            'exclusive'])
        self.assertEqual('member', self.read2(
            'machine/tenant-a.partition', 'cpuset.cpus.partition'))

    def test_resize_leaves_inheriting_children_alone(self):
        privsep.ensure_partition('/', 'a', [0], [0])
        part = 'machine/tenant-a.partition'
        os.makedirs(self.v2(part, 'qemu-1-x'))
        ef._v2_files(self.v2(part, 'qemu-1-x'))
        ef._v2_files(self.v2(part, 'qemu-1-x/vcpu0'), '0', '0')
        privsep.set_partition_cpus('/', 'a', [1])
        self.assertEqual('1', self.read2(part, 'cpuset.cpus'))
        self.assertEqual('', self.read2(part, 'qemu-1-x', 'cpuset.cpus'))
        self.assertEqual('1', self.read2(part, 'qemu-1-x/vcpu0',
                                         'cpuset.cpus'))

    def test_move_task_uses_cgroup_procs(self):
        privsep.ensure_partition('/', 'a', [0], [0])
        self.enter_machine(11)
        privsep.move_task('/', 'a', 11)
        self.assertEqual('11', self.read2('machine/tenant-a.partition',
                                          'cgroup.procs'))


class TestPartitionsAsSystemdSlices(FakeHostTestCase):
    """systemd is PID 1: a partition is the systemd slice libvirt puts the
    tenant's guests in through machined, set up through systemd (the tree
    is fake, systemctl mocked)."""

    cgroup = 'v2'
    SLICE = 'machine-tenant\\x2da\\x2db.slice'

    def v2(self, *parts):
        return self.host.path(os.path.join('/sys/fs/cgroup', *parts))

    def setUp(self):
        super().setUp()
        os.makedirs(self.host.path('/run/systemd/system'))

    def make_slice(self, cpus):
        """What systemd does on ``start``: the slice's cgroup."""
        path = self.v2('machine.slice', self.SLICE)
        ef._v2_files(path, cpus, '0')
        ef._v2_files(os.path.join(path, 'machine-qemu\\x2d1.scope'), cpus,
                     '0')
        return path

    def test_names(self):
        self.assertEqual(self.SLICE, cgroupfs.partition_slice('a-b'))
        self.assertEqual('a-b', cgroupfs.tenant_of_dir(self.SLICE))
        layout = cgroupfs.detect_layout(self.host.root)
        self.assertTrue(layout.slices('/'))
        # A test-owned subtree is not systemd's: plain directories there.
        self.assertFalse(layout.slices('/itest'))

    def test_ensure_sets_and_starts_the_slice(self):
        result = privsep.ensure_partition('/', 'a-b', [1], [0])
        self.assertEqual(
            [mock.call('systemctl', 'set-property', '--runtime', self.SLICE,
                       'AllowedCPUs=1', 'AllowedMemoryNodes=0'),
             mock.call('systemctl', 'start', self.SLICE)],
            self.execute.call_args_list)
        self.assertFalse(result['exclusive'])
        self.assertFalse(os.path.exists(self.v2('machine')))

    def test_resize_writes_the_domains_then_tells_systemd(self):
        path = self.make_slice('0')
        privsep.set_partition_cpus('/', 'a-b', [0, 1])
        with open(os.path.join(path, 'machine-qemu\\x2d1.scope',
                               'cpuset.cpus')) as f:
            self.assertEqual('0-1', f.read().strip())
        self.assertEqual(
            [mock.call('systemctl', 'set-property', '--runtime', self.SLICE,
                       'AllowedCPUs=0-1'),
             mock.call('systemctl', 'start', self.SLICE)],
            self.execute.call_args_list)

    def test_remove_stops_and_reverts_an_empty_slice_only(self):
        path = self.make_slice('1')
        with open(os.path.join(path, 'cgroup.procs'), 'w') as f:
            f.write('11')
        self.assertRaises(exception.PartitionBusy,
                          privsep.remove_partition, '/', 'a-b')
        self.assertEqual([], self.execute.call_args_list)
        with open(os.path.join(path, 'cgroup.procs'), 'w') as f:
            f.write('')
        self.assertEqual(['unified'], privsep.remove_partition('/', 'a-b'))
        self.assertEqual(
            [mock.call('systemctl', 'stop', self.SLICE),
             mock.call('systemctl', 'revert', self.SLICE)],
            self.execute.call_args_list)
        self.assertFalse(os.path.exists(path))


class TestHostEntrypoints(FakeHostTestCase):

    def test_irq_affinity(self):
        self.assertTrue(privsep.set_irq_affinity(24, [0]))
        self.assertEqual('0', self.host.read('/proc/irq/24/'
                                             'smp_affinity_list'))

    def _irq_write_fails(self, code):
        real_write = hostfs.write_text

        def fake_write(path, text, kinds):
            if path.endswith('smp_affinity_list'):
                raise OSError(code, os.strerror(code), path)
            return real_write(path, text, kinds)
        return mock.patch('nova_tenant_pin.hostfs.write_text',
                          side_effect=fake_write)

    def test_irq_refusals_are_false(self):
        for code in (errno.EIO, errno.EPERM):
            with self._irq_write_fails(code):
                self.assertFalse(privsep.set_irq_affinity(24, [0]))
        with self._irq_write_fails(errno.ENOSPC):
            self.assertRaises(OSError, privsep.set_irq_affinity, 24, [0])
        self.assertEqual('0-1', self.host.read('/proc/irq/24/'
                                               'smp_affinity_list'))

    def test_masks_are_hex(self):
        privsep.set_default_irq_affinity('0')
        privsep.set_workqueue_cpumask([1])
        self.assertEqual('1', self.host.read(
            '/proc/irq/default_smp_affinity'))
        self.assertEqual('2', self.host.read(
            '/sys/devices/virtual/workqueue/cpumask'))

    def test_systemd_runs_systemctl_without_a_shell(self):
        privsep.set_systemd_allowed_cpus('system.slice', [0])
        privsep.set_systemd_allowed_cpus('init.scope', None)
        self.assertEqual(
            [mock.call('systemctl', 'set-property', '--runtime',
                       'system.slice', 'AllowedCPUs=0'),
             mock.call('systemctl', 'set-property', '--runtime',
                       'init.scope', 'AllowedCPUs=')],
            self.execute.call_args_list)

    def test_housekeeping_cpuset_round_trip(self):
        self.assertTrue(privsep.ensure_housekeeping_cpuset('/', [0]))
        self.assertFalse(privsep.ensure_housekeeping_cpuset('/', [0]))
        self.assertEqual('0', self.read('housekeeping', 'cpuset.cpus'))
        self.assertEqual('0', self.read('housekeeping', 'cpuset.mems'))
        self.assertEqual('moved', privsep.confine_task('/', 10))
        self.assertEqual('elsewhere', privsep.confine_task('/', 10))
        self.assertEqual('10', self.read('housekeeping', 'tasks'))
        result = privsep.release_housekeeping_cpuset('/')
        self.assertEqual({'moved': 1, 'stuck': []}, result)
        self.assertIn('10', self.read('tasks').split())
        self.assertFalse(os.path.exists(self.cpuset('housekeeping')))

    def test_confine_refused_and_gone(self):
        privsep.ensure_housekeeping_cpuset('/', [0])
        for code, expected in ((errno.EINVAL, 'refused'),
                               (errno.ESRCH, 'gone')):
            with mock.patch.object(cgroupfs.V1Cgroup, 'add_task',
                                   side_effect=OSError(code, 'x')):
                self.assertEqual(expected, privsep.confine_task('/', 11))

    def test_task_affinity(self):
        self.host.add_task(12, privsep.PF_KTHREAD, 'khugepaged')
        with mock.patch('os.sched_setaffinity') as setaffinity:
            self.assertTrue(privsep.set_task_affinity(12, '0'))
            setaffinity.assert_called_once_with(12, frozenset({0}))
            setaffinity.side_effect = OSError(errno.EINVAL, 'x')
            self.assertFalse(privsep.set_task_affinity(12, '0'))


def _plant(path, target):
    """Replace the file ``path`` with a symlink to ``target``."""
    os.unlink(path)
    os.symlink(target, path)


class TestSystemdResetOnCgroupV2(FakeHostTestCase):
    """Resetting AllowedCPUs= of a unit also undoes what systemd leaves in
    the unit's cgroup while cpuset stays enabled at the root (a tenant
    slice keeps it): systemd reset only the property."""

    cgroup = 'v2'

    def unit_cpus(self, cpus):
        """The unit's cgroup as systemd leaves it: cpuset.cpus as last
        written."""
        path = self.host.path('/sys/fs/cgroup/system.slice')
        ef._v2_files(path, cpus, '')
        return os.path.join(path, 'cpuset.cpus')

    def test_the_left_list_is_emptied(self):
        path = self.unit_cpus('0')
        self.assertEqual('', privsep.set_systemd_allowed_cpus(
            'system.slice', None))
        with open(path) as f:
            self.assertEqual('', f.read().strip())
        self.assertEqual(
            [mock.call('systemctl', 'set-property', '--runtime',
                       'system.slice', 'AllowedCPUs=')],
            self.execute.call_args_list)

    def _empty_write_fails(self, code):
        real_write = hostfs.write_text

        def fake_write(path, text, kinds):
            if path.endswith('/system.slice/cpuset.cpus') and \
                    not text.strip():
                raise OSError(code, os.strerror(code), path)
            return real_write(path, text, kinds)
        return mock.patch('nova_tenant_pin.hostfs.write_text',
                          side_effect=fake_write)

    def test_a_kernel_that_refuses_empty_gets_the_parents_cpus(self):
        # Linux refuses to empty the list of a cgroup with tasks (ENOSPC).
        path = self.unit_cpus('0')
        with self._empty_write_fails(errno.ENOSPC):
            self.assertEqual('0-1', privsep.set_systemd_allowed_cpus(
                'system.slice', None))
        with open(path) as f:
            self.assertEqual('0-1', f.read().strip())

    def test_other_write_errors_are_raised(self):
        path = self.unit_cpus('0')
        with self._empty_write_fails(errno.EACCES):
            self.assertRaises(OSError, privsep.set_systemd_allowed_cpus,
                              'system.slice', None)
        with open(path) as f:
            self.assertEqual('0', f.read().strip())

    def test_nothing_to_undo(self):
        # cpuset disabled above the unit (no file), or never confined.
        self.assertIsNone(privsep.set_systemd_allowed_cpus(
            'system.slice', None))
        path = self.unit_cpus('')
        self.assertIsNone(privsep.set_systemd_allowed_cpus(
            'system.slice', None))
        with open(path) as f:
            self.assertEqual('', f.read())

    def test_setting_a_list_leaves_the_file_to_systemd(self):
        path = self.unit_cpus('1')
        self.assertIsNone(privsep.set_systemd_allowed_cpus(
            'system.slice', [0]))
        with open(path) as f:
            self.assertEqual('1', f.read())

    def test_a_symlinked_unit_cgroup_is_refused(self):
        target = self.useFixture(fixtures.TempDir()).path
        with open(os.path.join(target, 'cpuset.cpus'), 'w') as f:
            f.write('0')
        os.symlink(target, self.host.path('/sys/fs/cgroup/init.scope'))
        self.assertRaises(exception.UnsafePath,
                          privsep.set_systemd_allowed_cpus,
                          'init.scope', None)
        with open(os.path.join(target, 'cpuset.cpus')) as f:
            self.assertEqual('0', f.read())


@ddt.ddt
class TestSymlinkedLeaves(FakeHostTestCase):
    """A file the entrypoints write (or read to decide a write) replaced by
    a symlink to a file outside the tree: the call is refused with
    UnsafePath, the outside file and the tree stay as they were."""

    def setUp(self):
        super().setUp()
        self.outside = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'victim')
        with open(self.outside, 'w') as f:
            f.write('precious')
        privsep.ensure_partition('/', 'a', [0], [0])
        privsep.ensure_housekeeping_cpuset('/', [0])
        part = self.cpuset('machine', 'tenant-a.partition')
        os.makedirs(os.path.join(part, 'qemu-1-x'))
        ef._v1_files(os.path.join(part, 'qemu-1-x'), '0', '0')
        self.enter_machine(11)

    @ddt.unpack
    @ddt.data(
        ('/sys/fs/cgroup/cpuset/machine/tenant-a.partition/cpuset.cpus',
         'set_partition_cpus', ('/', 'a', [1])),
        ('/sys/fs/cgroup/cpuset/machine/tenant-a.partition/cpuset.cpus',
         'ensure_partition', ('/', 'a', [0, 1], [0])),
        ('/sys/fs/cgroup/cpuset/machine/tenant-a.partition/cpuset.mems',
         'ensure_partition', ('/', 'a', [0], [0])),
        ('/sys/fs/cgroup/cpuset/machine/tenant-a.partition/'
         'cpuset.cpu_exclusive', 'set_partition_cpus', ('/', 'a', [0])),
        ('/sys/fs/cgroup/cpuset/machine/tenant-a.partition/qemu-1-x/'
         'cpuset.cpus', 'set_partition_cpus', ('/', 'a', [1])),
        ('/sys/fs/cgroup/cpuset/machine/tenant-a.partition/cgroup.procs',
         'move_task', ('/', 'a', 11)),
        ('/sys/fs/cgroup/memory/machine/tenant-a.partition/cgroup.procs',
         'move_task', ('/', 'a', 11)),
        ('/sys/fs/cgroup/cpuset/housekeeping/tasks', 'confine_task',
         ('/', 10)),
        ('/sys/fs/cgroup/cpuset/housekeeping/cpuset.cpus',
         'ensure_housekeeping_cpuset', ('/', [0, 1])),
        ('/sys/fs/cgroup/cpuset/tasks', 'release_housekeeping_cpuset',
         ('/',)),
        ('/proc/irq/24/smp_affinity_list', 'set_irq_affinity', (24, [0])),
        ('/proc/irq/default_smp_affinity', 'set_default_irq_affinity',
         ([0],)),
        ('/sys/devices/virtual/workqueue/cpumask', 'set_workqueue_cpumask',
         ([0],)),
    )
    def test_refused_not_followed(self, leaf, name, args):
        if name == 'release_housekeeping_cpuset':
            privsep.confine_task('/', 10)
        _plant(self.host.path(leaf), self.outside)
        before = self.host.snapshot()
        err = self.assertRaises(exception.UnsafePath,
                                getattr(privsep, name), *args)
        self.assertIn('is a symlink (not followed)', str(err))
        self.assertIsInstance(err, exception.InvalidArgument)
        with open(self.outside) as f:
            self.assertEqual('precious', f.read())
        self.assertEqual(before, self.host.snapshot())

    def test_a_partition_directory_swapped_for_a_symlink(self):
        """The check that the partition exists and the write both walk
        the path without following a symlink."""
        outside = os.path.dirname(self.outside)
        part = self.cpuset('machine', 'tenant-a.partition')
        os.rename(part, os.path.join(outside, 'moved'))
        os.symlink(os.path.join(outside, 'moved'), part)
        self.assertRaises(exception.InvalidArgument,
                          privsep.set_partition_cpus, '/', 'a', [1])
        self.assertRaises(exception.InvalidArgument,
                          privsep.move_task, '/', 'a', 11)
        with open(os.path.join(outside, 'moved', 'cpuset.cpus')) as f:
            self.assertEqual('0', f.read())


class TestFilesystemKind(FakeHostTestCase):
    """A directory of the fake tree that the fake says is not a cgroup
    file system (as a tmpfs mounted over a cgroup directory would be) is
    refused for every cgroup write."""

    def test_partition_on_the_wrong_file_system(self):
        privsep.ensure_partition('/', 'a', [0], [0])
        self.enter_machine(11)
        fake = ef.FakeFilesystems(self.host.root)
        real_kind = fake.kind

        def kind(path):
            if 'tenant-a.partition' in path:
                return hostfs.SYSFS
            return real_kind(path)
        fake.kind = kind
        self.useFixture(fake)
        before = self.host.snapshot()
        err = self.assertRaises(exception.UnsafePath,
                                privsep.set_partition_cpus, '/', 'a', [1])
        self.assertIn('is on sysfs, not cgroup', str(err))
        self.assertRaises(exception.UnsafePath, privsep.move_task, '/',
                          'a', 11)
        self.assertEqual(before, self.host.snapshot())
