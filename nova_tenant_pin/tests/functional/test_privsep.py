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

"""The real privsep daemon: its privileges and its round trip.

Runs as root (CI does): the daemon is started with the venv's
``privsep-helper`` as the helper command, since these machines have no
sudo. These tests decide the context's capability list: the daemon works with
CAP_DAC_OVERRIDE and CAP_SYS_NICE, and each test named ``without_*`` shows
what fails when one of them is missing.
"""

import os

import fixtures
from oslo_privsep import capabilities

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import exception
from nova_tenant_pin import hostfs
from nova_tenant_pin import privsep
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef

NOBODY = 65534
CAPS = [capabilities.CAP_DAC_OVERRIDE, capabilities.CAP_SYS_NICE]


# A stand-in for systemctl, found first on the daemon's PATH: it records
# the capabilities the kernel gave it at exec.
FAKE_SYSTEMCTL = """#!/bin/sh
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Uid):' /proc/$$/status > %s
"""


def _status(pid, field):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return line.split()[1:]


class TestRealDaemon(base.TestCase):

    def setUp(self):
        super().setUp()
        reason = base.requires_root()
        if reason:
            self.skipTest(reason)
        self.subtree = self.useFixture(ef.CgroupSubtree())

    def _daemon(self, caps=None):
        daemon = self.useFixture(ef.PrivsepDaemon(self.conf_fixture, caps))
        daemon.start()
        return daemon

    def test_daemon_keeps_only_the_declared_capabilities(self):
        """A separate root process whose effective capabilities are
        CAP_DAC_OVERRIDE (bit 1) and CAP_SYS_NICE (bit 23), nothing else."""
        ctx = privsep.tenant_pin_pctxt
        self.assertEqual('nova_tenant_pin', ctx.prefix)
        self.assertEqual('nova_tenant_pin_privileged', ctx.cfg_section)
        daemon = self._daemon()
        self.assertNotEqual(os.getpid(), daemon.pid)
        self.assertEqual(['0'] * 4, _status(daemon.pid, 'Uid'))
        self.assertEqual(sum(1 << c for c in CAPS),
                         int(_status(daemon.pid, 'CapEff')[0], 16))

    def test_without_cap_dac_override_a_top_level_cgroup_is_refused(self):
        """Why CAP_DAC_OVERRIDE is on the list: a hierarchy's top directory
        is mode 0555, so without it not even root may create ``machine``
        (or a cgroup root) there; nothing is left behind."""
        self._daemon(caps=[])
        self.assertRaises(exception.PartitionError,
                          privsep.ensure_partition, self.subtree.root, 'd',
                          [0], [0])
        for h in self.subtree.layout.hierarchies:
            self.assertFalse(os.path.exists(self.subtree.path(h)))

    def test_round_trip_moves_a_root_task(self):
        """Create a partition, move a root-owned task into it, and remove
        the partition, all through the daemon."""
        self._daemon()
        proc = self.useFixture(ef.OwnedProcess())
        result = privsep.ensure_partition(self.subtree.root, 'rt', [0], [0])
        self.assertFalse(result['exclusive'])
        self.assertIn('cpuset', result['created'])
        ef.enter_machine(self.subtree.layout, self.subtree.root, proc.pid)
        privsep.move_task(self.subtree.root, 'rt', proc.pid)
        self.assertEqual('0', proc.cpus_allowed())
        cpuset = self.subtree.layout.cpuset
        path = self.subtree.path(cpuset, cgroupfs.partition_dir('rt'))
        self.assertIn(proc.pid, cgroupfs.V1Cgroup(path).tasks())
        self.assertRaises(exception.PartitionBusy, privsep.remove_partition,
                          self.subtree.root, 'rt')
        # Back to the test root, so the partition can go.
        with open(os.path.join(self.subtree.path(cpuset), 'cgroup.procs'),
                  'w') as f:
            f.write(str(proc.pid))
        for h in self.subtree.layout.hierarchies:
            top = self.subtree.path(h)
            with open(os.path.join(top, 'cgroup.procs'), 'w') as f:
                f.write(str(proc.pid))
        removed = privsep.remove_partition(self.subtree.root, 'rt')
        self.assertEqual(sorted(h.name for h in
                                self.subtree.layout.hierarchies),
                         sorted(removed))
        self.assertFalse(os.path.exists(path))

    def test_without_cap_sys_nice_a_root_task_is_refused(self):
        """Why CAP_SYS_NICE is on the list: without it the kernel refuses
        to move a task with more capabilities than the daemon (any root
        process) into a cpuset; a capability-less task of nobody moves."""
        self._daemon(caps=[capabilities.CAP_DAC_OVERRIDE])
        root_task = self.useFixture(ef.OwnedProcess())
        nobody_task = self.useFixture(ef.OwnedProcess(user=NOBODY))
        privsep.ensure_partition(self.subtree.root, 'nocap', [0], [0])
        for task in (root_task, nobody_task):
            ef.enter_machine(self.subtree.layout, self.subtree.root,
                             task.pid)
        err = self.assertRaises(exception.PartitionError, privsep.move_task,
                                self.subtree.root, 'nocap', root_task.pid)
        self.assertIn('Operation not permitted', str(err))
        cpuset = self.subtree.layout.cpuset
        path = self.subtree.path(cpuset, cgroupfs.partition_dir('nocap'))
        self.assertNotIn(root_task.pid, cgroupfs.V1Cgroup(path).tasks())
        privsep.move_task(self.subtree.root, 'nocap', nobody_task.pid)
        self.assertIn(nobody_task.pid, cgroupfs.V1Cgroup(path).tasks())

    def test_proc_and_sys_writes_need_no_capability(self):
        """IRQ affinity and the workqueue mask are written with no
        capability at all (euid 0 owns the files). Each is rewritten with
        its current value, so the host is not changed."""
        self._daemon(caps=[])
        irqs = sorted(int(n) for n in os.listdir('/proc/irq') if n.isdigit())
        for irq in irqs:
            with open('/proc/irq/%d/smp_affinity_list' % irq) as f:
                current = f.read().strip()
            result = privsep.set_irq_affinity(irq, current)
            self.assertIn(result, (True, False))
            if result:
                break
        with open('/sys/devices/virtual/workqueue/cpumask') as f:
            mask = f.read().strip()
        cpus = sorted(cgroupfs.parse_cpu_mask(mask))
        privsep.set_workqueue_cpumask(cpus)
        with open('/sys/devices/virtual/workqueue/cpumask') as f:
            self.assertEqual(mask, f.read().strip())

    def test_hostile_input_is_refused_through_the_daemon(self):
        """The daemon validates by itself; the client gets the same
        exception class back, and nothing is created."""
        self._daemon()
        for args in (('/../..', 'a', [0], [0]),
                     (self.subtree.root, '../tenant-b', [0], [0]),
                     (self.subtree.root, 'a', '0-99999999', [0])):
            self.assertRaises(exception.InvalidArgument,
                              privsep.ensure_partition, *args)
        for h in self.subtree.layout.hierarchies:
            self.assertFalse(os.path.exists(self.subtree.path(h)))

    def test_a_child_of_the_daemon_has_no_more_capabilities(self):
        """execve by uid 0 would give the program every capability back;
        the helper sets SECBIT_NOROOT (locked) and no_new_privs before it
        forks the daemon, so what the daemon executes (systemctl) gets no
        more than the daemon has: here, nothing at all."""
        bindir = self.useFixture(fixtures.TempDir()).path
        record = os.path.join(bindir, 'caps')
        systemctl = os.path.join(bindir, 'systemctl')
        with open(systemctl, 'w') as f:
            f.write(FAKE_SYSTEMCTL % record)
        os.chmod(systemctl, 0o755)
        self.useFixture(fixtures.EnvironmentVariable(
            'PATH', bindir + ':' + os.environ.get('PATH', '/usr/bin:/bin')))
        daemon = self._daemon()
        self.assertEqual(['1'], _status(daemon.pid, 'NoNewPrivs'))
        privsep.set_systemd_allowed_cpus('system.slice', None)
        with open(record) as f:
            child = {line.split(':')[0]: line.split()[1:] for line in f}
        self.assertEqual(['0'] * 4, child['Uid'])
        self.assertEqual(['1'], child['NoNewPrivs'])
        daemon_caps = int(_status(daemon.pid, 'CapPrm')[0], 16)
        for field in ('CapEff', 'CapPrm', 'CapAmb', 'CapInh'):
            caps = int(child[field][0], 16)
            self.assertEqual(0, caps & ~daemon_caps,
                             '%s of the child: %x, the daemon: %x'
                             % (field, caps, daemon_caps))
        # SECBIT_NOROOT: uid 0 gains nothing at exec, not even what the
        # daemon has.
        self.assertEqual(0, int(child['CapEff'][0], 16))

    def _irq(self):
        """An IRQ of this host and its current affinity list."""
        for name in sorted(os.listdir('/proc/irq')):
            if name.isdigit():
                with open('/proc/irq/%s/smp_affinity_list' % name) as f:
                    return int(name), f.read()
        self.skipTest('no IRQ in /proc/irq')

    def test_hostile_table_through_the_daemon_on_the_real_tree(self):
        """Names, digits, bounds and purposes, refused by the daemon on the
        real cgroup tree: each raises InvalidArgument in the caller, no
        cgroup is created anywhere, and the /proc and /sys files stay as
        they were. PID 1, kthreadd and this test's own process are real
        tasks of this host."""
        self._daemon()
        proc = self.useFixture(ef.OwnedProcess())
        root = self.subtree.root
        irq, irq_affinity = self._irq()
        affinity = os.sched_getaffinity(proc.pid)
        with open('/sys/devices/virtual/workqueue/cpumask') as f:
            workqueue = f.read()
        table = [
            ('ensure_partition', ('/system.slice', 'a', [0], [0])),
            ('ensure_partition', (root + '/machine', 'a', [0], [0])),
            ('ensure_partition', (root, 'a\n', [0], [0])),
            ('ensure_partition', (root + '\n', 'a', [0], [0])),
            ('ensure_partition', (root, 'a', '\u0660-\u0661', [0])),
            ('ensure_partition', (root, 'a', '\uff10', [0])),
            ('ensure_partition', (root, 'a', '0-50000000', [0])),
            ('ensure_partition', (root, 'a', [0], '0-50000000')),
            ('ensure_partition', (root, 'a', ' 0', [0])),
            ('ensure_housekeeping_cpuset',
             (root + '/machine/tenant-b.partition', [0])),
            ('ensure_housekeeping_cpuset', ('/user.slice', [0])),
            ('confine_task', (root, 2)),
            ('move_task', (root, 'a', 1)),
            ('move_task', (root, 'a', 2)),
            ('move_task', (root, 'a', proc.pid)),
            ('set_task_affinity', (1, [0])),
            ('set_task_affinity', (2, [0])),
            ('set_task_affinity', (proc.pid, [0])),
            ('set_irq_affinity', (irq, '\u0663')),
            ('set_irq_affinity', (irq, '0-50000000')),
            ('set_irq_affinity', (irq, '0\n')),
            ('set_default_irq_affinity', ('0-50000000',)),
            ('set_workqueue_cpumask', ('0-50000000',)),
            ('set_workqueue_cpumask', ('\u0660',)),
            ('set_systemd_allowed_cpus', ('sshd.service', [0])),
        ]
        for name, args in table:
            self.assertRaises(exception.InvalidArgument,
                              getattr(privsep, name), *args)
        for h in self.subtree.layout.hierarchies:
            self.assertFalse(os.path.exists(self.subtree.path(h)), h.name)
            self.assertFalse(os.path.exists(os.path.join(
                h.mount, 'system.slice', 'machine')))
        with open('/proc/irq/%d/smp_affinity_list' % irq) as f:
            self.assertEqual(irq_affinity, f.read())
        with open('/sys/devices/virtual/workqueue/cpumask') as f:
            self.assertEqual(workqueue, f.read())
        self.assertEqual(affinity, os.sched_getaffinity(proc.pid))

    def test_files_off_their_file_system_are_refused_for_real(self):
        """hostfs on this machine: /sys/fs/cgroup itself is a tmpfs, so a
        cgroup directory there is refused; the real mounts pass."""
        cpuset = self.subtree.layout.cpuset
        self.assertTrue(hostfs.isdir(cpuset.mount, cgroupfs.V1_KINDS))
        err = self.assertRaises(exception.UnsafePath, hostfs.isdir,
                                os.path.dirname(cpuset.mount),
                                hostfs.CGROUPS)
        self.assertIn('not cgroup', str(err))
        self.assertRaises(exception.UnsafePath, hostfs.read_text,
                          '/proc/irq/default_smp_affinity', hostfs.CGROUPS)
        fd = hostfs.open_dir('/proc/irq', frozenset([hostfs.PROC]))
        try:
            self.assertEqual(hostfs.PROC, hostfs.fs_type(fd))
        finally:
            os.close(fd)
