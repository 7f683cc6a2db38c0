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

"""The cgroup filesystem layer: layout detection, names, codecs, and the
resize plan. No real cgroup is touched."""

import os

import ddt
import fixtures
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import exception
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef

# /proc/self/mountinfo of the hybrid hosts this project runs on.
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 31 0:31 /hostB /mnt/b\\040x rw - cgroup cgroup rw,cpuset
"""
V2_MOUNTINFO = """\
30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
"""
V1_MOUNTINFO = """\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
"""
PROC_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t3\t1\t1
cpu\t1\t1\t1
cpuacct\t1\t1\t1
memory\t4\t1\t1
hugetlb\t0\t1\t1
"""


@ddt.ddt
class TestLayout(base.TestCase):

    def _root(self, mountinfo, proc_cgroups=PROC_CGROUPS):
        root = self.useFixture(fixtures.TempDir()).path
        for path, text in (('proc/self/mountinfo', mountinfo),
                           ('proc/cgroups', proc_cgroups)):
            os.makedirs(os.path.join(root, os.path.dirname(path)),
                        exist_ok=True)
            with open(os.path.join(root, path), 'w') as f:
                f.write(text)
        return root

    def test_parse_mountinfo_keeps_cgroup_mounts_and_unescapes(self):
        mounts = cgroupfs.parse_mountinfo(HYBRID_MOUNTINFO)
        self.assertEqual(6, len(mounts))
        self.assertEqual(('/mnt/b x', '/hostB', 'cgroup',
                          frozenset({'rw', 'cpuset'})), mounts[-1])
        self.assertEqual('cgroup2', mounts[4][2])

    def test_hybrid(self):
        layout = cgroupfs.detect_layout(self._root(HYBRID_MOUNTINFO))
        self.assertEqual(cgroupfs.HYBRID, layout.mode)
        names = [h.name for h in layout.hierarchies]
        # name=systemd carries no controller libvirt uses; the bind mount
        # of a subtree (/hostB) is not a second cpuset hierarchy.
        self.assertEqual(['cpu', 'cpuset', 'memory', 'unified'], names)
        self.assertEqual('cpuset', layout.ordered()[0].name)
        self.assertEqual(1, layout.cpuset.version)
        self.assertTrue(layout.cpuset.mount.endswith('/sys/fs/cgroup/cpuset'))

    def test_v1_comounted_controllers(self):
        layout = cgroupfs.detect_layout(self._root(V1_MOUNTINFO))
        self.assertEqual(cgroupfs.V1, layout.mode)
        self.assertEqual(['cpu,cpuacct', 'cpuset'],
                         [h.name for h in layout.hierarchies])

    def test_v2_controllers_come_from_cgroup_controllers(self):
        root = self._root(V2_MOUNTINFO)
        os.makedirs(os.path.join(root, 'sys/fs/cgroup'))
        with open(os.path.join(root, 'sys/fs/cgroup/cgroup.controllers'),
                  'w') as f:
            f.write('cpuset cpu io memory pids\n')
        layout = cgroupfs.detect_layout(root)
        self.assertEqual(cgroupfs.V2, layout.mode)
        self.assertEqual(2, layout.cpuset.version)
        self.assertEqual('unified', layout.cpuset.name)

    def test_disabled_controller_is_not_used(self):
        disabled = PROC_CGROUPS.replace('memory\t4\t1\t1', 'memory\t4\t1\t0')
        layout = cgroupfs.detect_layout(self._root(HYBRID_MOUNTINFO,
                                                   disabled))
        self.assertNotIn('memory', [h.name for h in layout.hierarchies])

    def test_no_cgroup_mounted(self):
        self.assertRaises(exception.CgroupLayoutError,
                          cgroupfs.detect_layout,
                          self._root('1 0 0:1 / / rw - ext4 /dev/sda rw\n'))

    def _systemd(self, root):
        os.makedirs(os.path.join(root, 'run/systemd/system'))
        return root

    def _v2_root(self):
        root = self._root(V2_MOUNTINFO)
        os.makedirs(os.path.join(root, 'sys/fs/cgroup'))
        with open(os.path.join(root, 'sys/fs/cgroup/cgroup.controllers'),
                  'w') as f:
            f.write('cpuset cpu io memory pids\n')
        return root

    @ddt.data((HYBRID_MOUNTINFO, 'hybrid cgroup v1 + v2'),
              (V1_MOUNTINFO, 'cgroup v1 (legacy)'))
    @ddt.unpack
    def test_cpuset_on_v1_under_systemd_is_refused(self, mountinfo, name):
        layout = cgroupfs.detect_layout(self._systemd(self._root(mountinfo)))
        self.assertTrue(layout.systemd)
        e = self.assertRaises(exception.CgroupLayoutError,
                              layout.require_supported)
        # The message names the layout, where cpuset is, and the fix.
        self.assertIn('%s with systemd as PID 1 is not supported' % name,
                      str(e))
        self.assertIn(layout.cpuset.mount, str(e))
        self.assertIn('systemd.unified_cgroup_hierarchy=1', str(e))

    @ddt.data(HYBRID_MOUNTINFO, V1_MOUNTINFO)
    def test_cpuset_on_v1_without_systemd_is_supported(self, mountinfo):
        layout = cgroupfs.detect_layout(self._root(mountinfo))
        self.assertFalse(layout.systemd)
        self.assertEqual(layout.cpuset, layout.require_supported())

    def test_v2_is_supported_with_and_without_systemd(self):
        for root in (self._v2_root(), self._systemd(self._v2_root())):
            layout = cgroupfs.detect_layout(root)
            self.assertEqual(2, layout.require_supported().version)

    def test_fake_host_fixture_is_hybrid_like_this_machine(self):
        host = self.useFixture(ef.FakeHost())
        layout = cgroupfs.detect_layout(host.root)
        self.assertEqual(cgroupfs.HYBRID, layout.mode)
        self.assertEqual(9, len(layout.hierarchies))


@ddt.ddt
class TestNames(base.TestCase):

    def test_partition_dir_and_back(self):
        self.assertEqual('machine/tenant-p1.partition',
                         cgroupfs.partition_dir('p1'))
        self.assertEqual('/machine/tenant-p1', cgroupfs.partition_name('p1'))
        self.assertEqual('p1', cgroupfs.tenant_of_dir('tenant-p1.partition'))

    def test_partition_slice_and_back(self):
        """libvirt's name for the slice of partition /machine/tenant-a-1:
        each "-" escaped, then the parts joined by "-"."""
        self.assertEqual('machine-tenant\\x2da\\x2d1.slice',
                         cgroupfs.partition_slice('a-1'))
        self.assertEqual('machine.slice/machine-tenant\\x2da_1.slice',
                         cgroupfs.partition_dir('a_1', slices=True))
        self.assertEqual('a-1', cgroupfs.tenant_of_dir(
            'machine-tenant\\x2da\\x2d1.slice'))

    @ddt.data('qemu-1-a.libvirt-qemu', 'tenant-.partition', 'tenant-a',
              'machine-qemu\\x2d1\\x2da.scope', 'machine-tenant\\x2d.slice',
              'tenant-a.b.partition', 'housekeeping')
    def test_tenant_of_other_dirs_is_none(self, name):
        self.assertIsNone(cgroupfs.tenant_of_dir(name))

    @ddt.data(('/', '/'), ('', '/'), ('/hostB', '/hostB'),
              ('/a/b/', '/a/b'), ('//a//b', '/a/b'))
    @ddt.unpack
    def test_normalize_root(self, root, expected):
        self.assertEqual(expected, cgroupfs.normalize_root(root))

    @ddt.data('relative', '/..', '/a/../b', '/.', '/.hidden', '/a b',
              '/a\nb', None, 3, '/' + '/'.join('a' * 9), '/x' * 9)
    def test_normalize_root_refuses(self, root):
        self.assertRaises(exception.InvalidArgument,
                          cgroupfs.normalize_root, root)

    @ddt.data(({0, 1}, '3'), ({32}, '1,00000000'), (set(), '0'),
              (set(range(64)), 'ffffffff,ffffffff'))
    @ddt.unpack
    def test_cpu_mask(self, cpus, text):
        self.assertEqual(text, cgroupfs.format_cpu_mask(cpus))
        self.assertEqual(frozenset(cpus), cgroupfs.parse_cpu_mask(text))

    @settings(deadline=None)
    @given(st.frozensets(st.integers(0, 1023)))
    def test_cpu_mask_round_trip(self, cpus):
        self.assertEqual(cpus, cgroupfs.parse_cpu_mask(
            cgroupfs.format_cpu_mask(cpus)))

    def test_bad_mask(self):
        self.assertRaises(exception.InvalidArgument,
                          cgroupfs.parse_cpu_mask, 'xyz')


class TestFiles(base.TestCase):
    """The v1 codec is cgroupspy's, the v2 one native: both write the
    kernel list format and read it back, through hostfs (a fake tree whose
    cgroup mounts the fake says are cgroup and cgroup2)."""

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.useFixture(ef.FakeFilesystems(root))
        self.v1 = os.path.join(root, 'sys/fs/cgroup/cpuset/g')
        self.v2 = os.path.join(root, 'sys/fs/cgroup/unified/g')
        ef._v1_files(self.v1)
        ef._v2_files(self.v2)
        self.dir = self.v1

    def _read(self, name, directory=None):
        with open(os.path.join(directory or self.dir, name)) as f:
            return f.read()

    def test_v1_through_cgroupspy(self):
        group = cgroupfs.V1Cgroup(self.v1)
        group.set_cpus({0, 1, 2, 5})
        self.assertEqual('0-2,5', self._read('cpuset.cpus'))
        self.assertEqual(frozenset({0, 1, 2, 5}), group.cpus())
        group.set_exclusive(True)
        self.assertEqual('1', self._read('cpuset.cpu_exclusive'))
        self.assertTrue(group.exclusive())
        group.add_task(42)
        self.assertEqual('42', self._read('tasks'))
        with open(os.path.join(self.dir, 'cpuset.effective_cpus'), 'w') as f:
            f.write('1-3\n')
        self.assertEqual(frozenset({1, 2, 3}), group.effective_cpus())

    def test_v2_native(self):
        group = cgroupfs.V2Cgroup(self.v2)
        group.set_cpus({4, 5, 6})
        self.assertEqual('4-6', self._read('cpuset.cpus', self.v2))
        self.assertFalse(group.exclusive())
        group.set_exclusive(True)
        self.assertEqual('root', self._read('cpuset.cpus.partition',
                                            self.v2))
        group.enable_controller('cpuset')
        self.assertEqual('+cpuset', self._read('cgroup.subtree_control',
                                               self.v2))

    def test_each_version_only_on_its_own_file_system(self):
        """A v1 accessor refuses a cgroup2 directory and the other way
        round; neither writes a file of any other file system."""
        self.assertRaises(exception.UnsafePath,
                          cgroupfs.V1Cgroup(self.v2).set_cpus, {0})
        self.assertRaises(exception.UnsafePath,
                          cgroupfs.V2Cgroup(self.v1).set_cpus, {0})
        plain = self.useFixture(fixtures.TempDir()).path
        ef._v1_files(plain, '0')
        err = self.assertRaises(exception.UnsafePath,
                                cgroupfs.V1Cgroup(plain).set_cpus, {1})
        self.assertIn('not cgroup', str(err))
        self.assertEqual('0', self._read('cpuset.cpus', plain))
        self.assertEqual('', self._read('cpuset.cpus', self.v2))

    def test_subtree_skips_symlinks(self):
        os.makedirs(os.path.join(self.dir, 'd/vcpu0'))
        os.symlink('/etc', os.path.join(self.dir, 'd/escape'))
        self.assertEqual(['', 'd', 'd/vcpu0'], cgroupfs.subtree(self.dir))


def _check_plan(test, current, new, writes):
    """Replay the writes: at every step each child is a subset of its
    parent and nothing is empty (the cgroup v1 rules)."""
    state = {p: frozenset(c) for p, c in current.items()}
    for path, cpus in writes:
        test.assertTrue(cpus, 'empty write to %r' % path)
        state[path] = cpus
        for p, c in state.items():
            if p:
                parent = os.path.dirname(p)
                test.assertLessEqual(c, state[parent],
                                     'after writing %r: %r not within %r'
                                     % (path, p, parent))
    test.assertEqual(frozenset(new), state[''])
    return state


class TestResizePlan(base.TestCase):

    def test_widen_is_top_down_and_floating_children_follow(self):
        current = {'': {0}, 'd': {0}, 'd/vcpu0': {0}, 'd/emulator': {0}}
        writes = cgroupfs.plan_cpuset_resize(current, {0, 1})
        self.assertEqual(['', 'd', 'd/emulator', 'd/vcpu0'],
                         [p for p, _ in writes])
        state = _check_plan(self, current, {0, 1}, writes)
        self.assertEqual(frozenset({0, 1}), state['d/vcpu0'])

    def test_shrink_is_bottom_up(self):
        current = {'': {0, 1}, 'd': {0, 1}, 'd/vcpu0': {0, 1}}
        writes = cgroupfs.plan_cpuset_resize(current, {1})
        self.assertEqual(['d/vcpu0', 'd', ''], [p for p, _ in writes])
        _check_plan(self, current, {1}, writes)

    def test_disjoint_move_goes_through_the_union(self):
        current = {'': {0}, 'd': {0}}
        writes = cgroupfs.plan_cpuset_resize(current, {1})
        self.assertEqual([('', {0, 1}), ('d', {0, 1}), ('d', {1}),
                          ('', {1})], [(p, set(c)) for p, c in writes])

    def test_strict_pin_kept_or_falls_back(self):
        current = {'': {0, 1, 2, 3}, 'd': {0, 1, 2, 3}, 'd/vcpu0': {1},
                   'd/vcpu1': {3}}
        writes = cgroupfs.plan_cpuset_resize(current, {0, 1, 4, 5})
        state = _check_plan(self, current, {0, 1, 4, 5}, writes)
        self.assertEqual(frozenset({1}), state['d/vcpu0'])
        self.assertEqual(frozenset({0, 1, 4, 5}), state['d/vcpu1'])

    def test_no_change_no_write(self):
        self.assertEqual([], cgroupfs.plan_cpuset_resize(
            {'': {0}, 'd': {0}}, {0}))

    def test_empty_refused(self):
        self.assertRaises(exception.PartitionError,
                          cgroupfs.plan_cpuset_resize, {'': {0}}, set())

    @given(st.data())
    def test_any_tree_any_target_keeps_v1_rules(self, data):
        cpu = st.integers(0, 7)
        part = data.draw(st.frozensets(cpu, min_size=1), 'partition')
        current = {'': part}
        for dom in range(data.draw(st.integers(0, 2), 'domains')):
            dcpus = data.draw(st.frozensets(st.sampled_from(sorted(part)),
                                            min_size=1))
            current['d%d' % dom] = dcpus
            for n in range(data.draw(st.integers(0, 3))):
                current['d%d/vcpu%d' % (dom, n)] = data.draw(st.frozensets(
                    st.sampled_from(sorted(dcpus)), min_size=1))
        new = data.draw(st.frozensets(cpu, min_size=1), 'new')
        writes = cgroupfs.plan_cpuset_resize(current, new)
        state = _check_plan(self, current, new, writes)
        for path, cpus in state.items():
            if path:
                self.assertLessEqual(cpus, new)
