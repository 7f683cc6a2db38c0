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

"""Every privileged entrypoint driven with random arguments over a fake
host tree with symlinks planted in it.

Each example builds a fresh fake hybrid host (a tenant partition ``b``,
the housekeeping cpuset, IRQs, tasks), replaces a random choice of the
files and directories the entrypoints touch with symlinks to files outside
the tree, and calls one entrypoint in-process with random strings, lists
and numbers mixed with known-hostile values. Whatever happens:

* nothing outside the fake tree changes (the symlinks' targets keep their
  content);
* a refusal is one of the project's errors (InvalidArgument, or a
  PartitionError/HousekeepingError naming what is missing), never
  another exception, and changes nothing at all;
* a call that is done changes only the files of its own place (the
  partition under ``<root>/machine``, the housekeeping cpuset, the one IRQ
  file...) and leaves exactly what was asked (the partition's CPUs, the
  IRQ's list).

HYPOTHESIS_PROFILE (dev, ci, stress) sets how many examples run; ci runs
the same examples every time.
"""

import os
from unittest import mock

import fixtures
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import exception
from nova_tenant_pin import privsep
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef
from nova_tenant_pin import topology

PROFILE = os.environ.get('HYPOTHESIS_PROFILE', 'dev')
SETTINGS = settings(
    max_examples={'ci': 80, 'stress': 1000}.get(PROFILE, 40),
    derandomize=PROFILE == 'ci', database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow,
                           HealthCheck.function_scoped_fixture])

CPUSET = 'sys/fs/cgroup/cpuset'
PART_B = CPUSET + '/machine/tenant-b.partition'
# Files and directories a hostile host may have swapped for a symlink.
LEAVES = [
    PART_B + '/cpuset.cpus', PART_B + '/cpuset.mems',
    PART_B + '/cpuset.cpu_exclusive', PART_B + '/cgroup.procs',
    PART_B + '/tasks', PART_B + '/qemu-1-x/cpuset.cpus',
    'sys/fs/cgroup/memory/machine/tenant-b.partition/cgroup.procs',
    CPUSET + '/housekeeping/cpuset.cpus', CPUSET + '/housekeeping/tasks',
    CPUSET + '/tasks', CPUSET + '/cpuset.mems', CPUSET + '/cpuset.cpus',
    CPUSET + '/machine/cpuset.cpus', CPUSET + '/machine/cpuset.cpu_exclusive',
    'proc/irq/24/smp_affinity_list', 'proc/irq/default_smp_affinity',
    'sys/devices/virtual/workqueue/cpumask',
    'proc/10/stat', 'proc/12/stat', 'sys/devices/system/cpu/possible',
]
DIRECTORIES = [PART_B, PART_B + '/qemu-1-x', CPUSET + '/housekeeping',
               CPUSET + '/machine', 'sys/fs/cgroup/memory/machine',
               'proc/irq/25']

HOSTILE_TEXT = [
    '/', '/host', '/../..', '/escape', '/trap', '/system.slice',
    '/machine/tenant-b.partition', '/housekeeping', 'a', 'b', 'a\n',
    '../tenant-b', 'b/../a', '/a\x00b', '', ' 0', '0\n', '0', '1', '0-1',
    '1-0', '0,', '\u0660-\u0661', '\uff10', '0-50000000', '0-65535',
    '9' * 300, 'ffff', 'system.slice', 'init.scope', 'sshd.service',
    'system.slice; reboot',
]
TEXT = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=10))
NUMBER = st.one_of(st.sampled_from([1, 2, 10, 11, 12, 24, 25, 99, 0, -1,
                                    True, 10 ** 9]),
                   st.integers(-3, 70000))
CPU_VALUE = st.one_of(
    TEXT, st.lists(st.one_of(st.integers(-2, 5), st.sampled_from(
        [True, 0.5, 10 ** 9, '0'])), max_size=4),
    st.frozensets(st.integers(0, 3), max_size=3), st.none())


def _often_valid(valid, hostile):
    """Valid values half the time, so that calls get as far as the files
    they write (where the planted symlinks wait)."""
    return st.one_of(st.sampled_from(valid), hostile)


ROOT = _often_valid(['/', '/host'], TEXT)
TENANT = _often_valid(['a', 'b'], TEXT)
CPUS = _often_valid([[0], [1], [0, 1], '0', '1', '0-1'], CPU_VALUE)
TASK = _often_valid([1, 2, 10, 11, 12], NUMBER)
IRQ = _often_valid([24, 25, 26], NUMBER)
UNIT = _often_valid(list(privsep.SYSTEMD_UNITS), TEXT)

CALLS = {
    'ensure_partition': st.tuples(ROOT, TENANT, CPUS, _often_valid(
        [[0], '0'], CPU_VALUE)),
    'set_partition_cpus': st.tuples(ROOT, TENANT, CPUS),
    'remove_partition': st.tuples(ROOT, TENANT),
    'move_task': st.tuples(ROOT, TENANT, TASK),
    'ensure_housekeeping_cpuset': st.tuples(ROOT, CPUS),
    'confine_task': st.tuples(ROOT, TASK),
    'release_housekeeping_cpuset': st.tuples(ROOT),
    'set_task_affinity': st.tuples(TASK, CPUS),
    'set_irq_affinity': st.tuples(IRQ, CPUS),
    'set_default_irq_affinity': st.tuples(CPUS),
    'set_workqueue_cpumask': st.tuples(CPUS),
    'set_systemd_allowed_cpus': st.tuples(UNIT, st.one_of(st.none(), CPUS)),
}
REFUSALS = (exception.InvalidArgument, exception.PartitionError,
            exception.HousekeepingError)


def _root_rel(root):
    """The tree-relative directory of a cgroup root in a hierarchy."""
    return cgroupfs.normalize_root(root).strip('/')


def _cgroup_place(root, *parts):
    """Prefixes of ``<every mount>/<root>/<parts>``."""
    rel = '/'.join(p for p in (_root_rel(root),) + parts if p)
    return ['sys/fs/cgroup/%s/%s' % (h, rel) if rel else
            'sys/fs/cgroup/%s/' % h
            for h in ef.V1_CONTROLLERS + ('unified',)]


def allowed_places(name, args):
    """Where a call that was done may have changed something."""
    if name in ('ensure_partition', 'set_partition_cpus', 'remove_partition',
                'move_task'):
        # The root levels and machine/ may be created; moving a task takes
        # it out of its old cgroup in libvirt's machine tree.
        return _cgroup_place(args[0])
    if name in ('ensure_housekeeping_cpuset', 'confine_task',
                'release_housekeeping_cpuset'):
        return [p for p in _cgroup_place(args[0]) if '/cpuset' in p]
    if name == 'set_irq_affinity':
        return ['proc/irq/%d/smp_affinity_list' % args[0]]
    if name == 'set_default_irq_affinity':
        return ['proc/irq/default_smp_affinity']
    if name == 'set_workqueue_cpumask':
        return ['sys/devices/virtual/workqueue/cpumask']
    return []


def _cpus(value):
    if isinstance(value, str):
        return frozenset(topology.parse_cpu_list(value))
    return frozenset(value)


class TestEntrypointProperties(base.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(ef.ClientModeOff())

    def _build(self, host, leaves, directories):
        host.add_task(2, privsep.PF_KTHREAD, 'kthreadd')
        host.add_task(12, privsep.PF_KTHREAD, 'khugepaged')
        host.add_task(11, privsep.PF_KTHREAD | privsep.PF_NO_SETAFFINITY,
                      'ksoftirqd/1')
        privsep.ensure_partition('/', 'b', [1], [0])
        privsep.ensure_housekeeping_cpuset('/', [0])
        ef._v1_files(host.path('/' + PART_B + '/qemu-1-x'), '1', '0')
        ef.enter_machine(cgroupfs.detect_layout(host.root), '/', 10)
        outside = self.useFixture(fixtures.TempDir()).path
        os.makedirs(os.path.join(outside, 'machine'))
        os.symlink(outside, host.path('/sys/fs/cgroup/cpuset/escape'))
        os.makedirs(host.path('/sys/fs/cgroup/cpuset/trap'))
        os.symlink(os.path.join(outside, 'machine'),
                   host.path('/sys/fs/cgroup/cpuset/trap/machine'))
        victims = {}
        for n, rel in enumerate(leaves):
            victim = os.path.join(outside, 'victim-%d' % n)
            with open(victim, 'w') as f:
                f.write('0-1')
            victims[victim] = '0-1'
            path = host.path('/' + rel)
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink(victim, path)
        for n, rel in enumerate(directories):
            target = os.path.join(outside, 'dir-%d' % n)
            path = host.path('/' + rel)
            if os.path.isdir(path) and not os.path.islink(path):
                os.rename(path, target)
            else:
                os.makedirs(target)
            os.symlink(target, path)
        return outside, victims

    @staticmethod
    def _outside(outside):
        result = {}
        for dirpath, _, filenames in os.walk(outside):
            for name in filenames:
                with open(os.path.join(dirpath, name)) as f:
                    result[os.path.join(dirpath, name)] = f.read()
        return result

    @SETTINGS
    @given(name=st.sampled_from(sorted(CALLS)), data=st.data(),
           leaves=st.lists(st.sampled_from(LEAVES), unique=True,
                           max_size=8),
           directories=st.lists(st.sampled_from(DIRECTORIES), unique=True,
                                max_size=1))
    def test_done_exactly_or_refused_and_nothing_outside_changes(
            self, name, data, leaves, directories):
        self._check_call(name, data.draw(CALLS[name], label='args'), leaves,
                         directories)

    def test_a_symlinked_exclusive_flag_leaves_the_partition_non_exclusive(
            self):
        # Found by the property above: the partition was made, then the
        # parent's cpuset.cpu_exclusive (a symlink) raised out of the call.
        self._check_call('ensure_partition', ('/', 'a', [0], [0]),
                         ['sys/fs/cgroup/cpuset/machine/cpuset.cpu_exclusive'],
                         [])

    def _check_call(self, name, args, leaves, directories):
        with fixtures.MockPatch('oslo_concurrency.processutils.execute',
                                return_value=('', '')) as execute, \
                mock.patch('os.sched_setaffinity') as setaffinity, \
                ef.FakeHost() as host, ef.FakeKernel(host):
            outside, _ = self._build(host, leaves, directories)
            outside_before = self._outside(outside)
            before = host.snapshot()
            try:
                result = getattr(privsep, name)(*args)
            except REFUSALS:
                self.assertEqual(before, host.snapshot())
                execute.mock.assert_not_called()
                setaffinity.assert_not_called()
                done = False
            else:
                done = True
            self.assertEqual(outside_before, self._outside(outside))
            if not done:
                return
            after = host.snapshot()
            changed = {k for k in set(before) | set(after)
                       if before.get(k) != after.get(k)}
            places = allowed_places(name, args)
            for path in changed:
                self.assertTrue(any(path.startswith(p) for p in places),
                                '%s%r changed %s (allowed: %s)'
                                % (name, args, path, places))
            self._check_done(name, args, result, host, execute.mock,
                             setaffinity)

    def _check_done(self, name, args, result, host, execute, setaffinity):
        """What a call that was done must have done."""
        if name in ('ensure_partition', 'set_partition_cpus'):
            path = '/sys/fs/cgroup/cpuset/%s/machine/tenant-%s.partition' % (
                _root_rel(args[0]), args[1])
            self.assertEqual(_cpus(args[2]), frozenset(
                topology.parse_cpu_list(host.read(path + '/cpuset.cpus'))))
        elif name == 'set_irq_affinity':
            if result:
                self.assertEqual(topology.format_cpu_list(_cpus(args[1])),
                                 host.read('/proc/irq/%d/smp_affinity_list'
                                           % args[0]))
        elif name == 'set_task_affinity':
            self.assertEqual(12, args[0])
            if result:
                setaffinity.assert_called_once_with(12, _cpus(args[1]))
        elif name == 'set_systemd_allowed_cpus':
            self.assertIn(args[0], privsep.SYSTEMD_UNITS)
            execute.assert_called_once()
        elif name == 'move_task':
            self.assertNotIn(args[2], (1, 2, 11, 12))
