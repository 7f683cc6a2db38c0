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

"""What an unprivileged local user can put in front of the readers of
/proc, tried for real: a process of this test names itself with bytes that
are not UTF-8 (``prctl(PR_SET_NAME)`` needs no privilege), and every
reader of task names (procfs, the audit's sampler, housekeeping apply and
show) must go on working and show the name with ``\\xNN`` escapes.
"""

import json
import os
import shutil

import fixtures

from nova_tenant_pin import audit
from nova_tenant_pin import coresched
from nova_tenant_pin import housekeeping
from nova_tenant_pin import procfs
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef
from nova_tenant_pin import topology

# Starts like QEMU's name so that the audit's sampler reads all of it.
HOSTILE_NAME = b'qemu-system\xff\xfe'
ESCAPED = 'qemu-system\\xff\\xfe'


class TestNonUtf8TaskNames(base.TestCase):

    def setUp(self):
        super().setUp()
        self.proc = self.useFixture(ef.RenamedProcess(HOSTILE_NAME))

    def test_procfs_threads_show_the_escaped_name(self):
        tasks = procfs.threads(self.proc.pid)
        self.assertEqual([ESCAPED], [t.comm for t in tasks])
        self.assertEqual(frozenset(os.sched_getaffinity(self.proc.pid)),
                         tasks[0].allowed_cpus)
        self.assertIsNotNone(tasks[0].cpuset_cgroup)

    def test_thread_affinities_show_the_escaped_name(self):
        cache = {}
        tasks = procfs.thread_affinities(self.proc.pid, cache)
        self.assertEqual([ESCAPED], [t.comm for t in tasks])
        self.assertEqual({(self.proc.pid, self.proc.pid): ESCAPED}, cache)

    def test_the_audit_sampler_reads_the_whole_host(self):
        auditor = audit.HostAuditor(topology.HostTopology.from_sysfs())
        self.assertIn(self.proc.pid, auditor.qemu_pids())
        # First snapshot: full read (status, cgroup); second: the fast
        # path (comm cache and sched_getaffinity).
        for _ in range(2):
            snapshot = auditor.snapshot()
            comms = {t.comm for tasks in snapshot.values() for t in tasks
                     if t.pid == self.proc.pid}
            self.assertEqual({ESCAPED}, comms)

    def test_core_scheduling_scans_the_whole_host(self):
        """The scans for QEMU processes and vhost workers read every
        process's name; the renamed one (it has no -uuid) is skipped."""
        self.assertNotIn(self.proc.pid,
                         coresched.qemu_pids_by_uuid().values())
        self.assertEqual([], coresched.kernel_workers(self.proc.pid))

    def test_housekeeping_reads_the_task(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.privsep.HOST_ROOT', '/'))
        comm, flags, _ = housekeeping.task_stat(self.proc.pid)
        self.assertEqual(ESCAPED, comm)
        self.assertFalse(flags & housekeeping.PF_KTHREAD)
        self.assertEqual(topology.format_cpu_list(
            os.sched_getaffinity(self.proc.pid)),
            housekeeping.task_affinity(self.proc.pid))
        self.assertIsNone(housekeeping.stays_put(self.proc.pid))


class TestHousekeepingWithARenamedTask(base.TestCase):
    """apply, show and release on a fake host whose task 10 has the /proc
    files of the real renamed process, byte for byte."""

    def setUp(self):
        super().setUp()
        proc = self.useFixture(ef.RenamedProcess(HOSTILE_NAME))
        self.host = self.useFixture(ef.FakeHost(cpus=2, tasks=(1, 10)))
        for name in ('stat', 'status'):
            shutil.copyfile('/proc/%d/%s' % (proc.pid, name),
                            self.host.path('/proc/10/%s' % name))
        self.useFixture(ef.FakeKernel(self.host))
        self.useFixture(ef.ClientModeOff())
        self.state = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'hk.json')

    def snapshot(self):
        return {k: (set(v.split()) if k.endswith('/tasks') else v)
                for k, v in self.host.snapshot().items()}

    def test_apply_show_release(self):
        before = self.snapshot()
        keeper = housekeeping.Housekeeping(self.state, cpus={0})
        report = keeper.apply()
        self.assertEqual(2, report['moved']['moved'])
        self.assertIn('10', self.host.read(
            '/sys/fs/cgroup/cpuset/housekeeping/tasks').split())
        self.assertEqual({'confined': 2, 'unconfined': 0,
                          'unconfinable': 0, 'irq_threads': 0},
                         keeper.show()['tasks'])
        with open(self.state) as f:
            self.assertIn('10', json.load(f)['tasks'])
        self.assertEqual({}, housekeeping.Housekeeping(
            self.state).release()['failed'])
        self.assertEqual(before, self.snapshot())
