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

"""CgroupPartitions over a fake host tree (privileged code in-process),
get_partitions, and the interface both implementations share."""

import os

import ddt
from oslo_config import cfg

from nova_tenant_pin import cgroups
from nova_tenant_pin import conf
from nova_tenant_pin import exception
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef


class TestCgroupPartitions(base.TestCase):

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(ef.FakeHost(tasks=(1, 2, 10, 11)))
        self.useFixture(ef.FakeKernel(self.host))
        self.useFixture(ef.ClientModeOff())
        self.parts = cgroups.CgroupPartitions(root='/hostB')

    def test_layout_and_paths(self):
        self.assertEqual(cgroups.HYBRID, self.parts.layout.mode)
        self.assertEqual(self.host.path(
            '/sys/fs/cgroup/cpuset/hostB/machine/tenant-p.partition'),
            self.parts.path('p'))

    def test_life_cycle_reads_back_the_tree(self):
        self.assertEqual({}, self.parts.list_partitions())
        self.parts.ensure_partition('p1', {0}, {0})
        self.parts.ensure_partition('p2', {1}, {0})
        ef.enter_machine(self.parts.layout, '/hostB', 10)
        self.parts.move_task('p1', 10)
        infos = self.parts.list_partitions()
        self.assertEqual({'p1', 'p2'}, set(infos))
        self.assertEqual(frozenset({0}), infos['p1'].effective_cpus)
        self.assertEqual(frozenset({10}), infos['p1'].tasks)
        self.assertEqual(frozenset(), infos['p2'].tasks)
        self.assertRaises(cgroups.PartitionBusy,
                          self.parts.remove_partition, 'p1')
        self.parts.set_partition_cpus('p2', {0, 1})
        self.assertEqual(frozenset({0, 1}),
                         self.parts.list_partitions()['p2'].cpus)
        self.parts.remove_partition('p2')
        self.assertEqual({'p1'}, set(self.parts.list_partitions()))

    def test_other_directories_are_not_partitions(self):
        self.parts.ensure_partition('p1', {0}, {0})
        machine = os.path.dirname(self.parts.path('p1'))
        os.mkdir(os.path.join(machine, 'qemu-3-x.libvirt-qemu'))
        os.symlink(self.parts.path('p1'),
                   os.path.join(machine, 'tenant-evil.partition'))
        self.assertEqual({'p1'}, set(self.parts.list_partitions()))

    def test_empty_sets_refused_before_privsep(self):
        self.assertRaises(cgroups.PartitionError,
                          self.parts.ensure_partition, 'p', set(), {0})
        self.assertRaises(cgroups.PartitionError,
                          self.parts.ensure_partition, 'p', {0}, ())
        self.assertRaises(cgroups.PartitionError,
                          self.parts.ensure_partition, '../x', {0}, {0})

    def test_host_root_must_be_where_privsep_writes(self):
        self.assertRaises(ValueError, cgroups.CgroupPartitions,
                          host_root='/')
        cgroups.CgroupPartitions(host_root=self.host.root)

    def test_bad_root_refused(self):
        self.assertRaises(exception.InvalidArgument,
                          cgroups.CgroupPartitions, root='/a/../b')


@ddt.ddt
class TestGetPartitions(base.TestCase):

    def test_memory(self):
        self.assertIsInstance(cgroups.get_partitions('memory'),
                              cgroups.MemoryPartitions)

    def test_auto_uses_the_configured_root(self):
        self.useFixture(ef.FakeHost())
        self.flags(cgroup_root='/hostB')
        parts = cgroups.get_partitions()
        self.assertIsInstance(parts, cgroups.CgroupPartitions)
        self.assertEqual('/hostB', parts.root)
        self.assertEqual('/x', cgroups.get_partitions(root='/x').root)

    def test_auto_without_cpuset_refuses_to_run_unconfined(self):
        host = self.useFixture(ef.FakeHost(cgroup='v2'))
        host.write('/sys/fs/cgroup/cgroup.controllers', 'memory pids')
        self.assertRaises(cgroups.CgroupLayoutError, cgroups.get_partitions)

    def test_unknown_backend(self):
        self.assertRaises(ValueError, cgroups.get_partitions, 'v3')

    def test_no_operator_option_turns_enforcement_off(self):
        """The in-memory backend enforces nothing: it is for tests, which
        ask for it themselves, never an option in nova.conf."""
        self.assertRaises(cfg.NoSuchOptError, getattr, self.conf.tenant_pin,
                          'partition_backend')
        opts = [o.name for _, group in conf.list_opts() for o in group]
        self.assertNotIn('partition_backend', opts)


class TestMemoryPartitionsKeepsTheContract(base.TestCase):
    """The in-memory double still follows the same rules."""

    def test_rules(self):
        parts = cgroups.MemoryPartitions()
        parts.ensure_partition('a', {0, 1}, {0})
        self.assertEqual(frozenset({0, 1}),
                         parts.list_partitions()['a'].effective_cpus)
        self.assertFalse(parts.list_partitions()['a'].exclusive)
        self.assertRaises(cgroups.PartitionError, parts.set_partition_cpus,
                          'a', set())
        self.assertRaises(cgroups.PartitionError, parts.ensure_partition,
                          'a/b', {0}, {0})
        parts.partitions['a'].tasks = frozenset({5})
        self.assertRaises(cgroups.PartitionBusy, parts.remove_partition, 'a')
