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

"""One real ``apply`` then ``release`` of housekeeping on this machine.

Runs as root (CI does), through the real privsep daemon. The machine has
2 CPUs, so housekeeping is confined to CPU 0 only for the few hundred
milliseconds between apply and release. The test snapshots every file
apply may touch (each IRQ's ``smp_affinity_list``, the default IRQ mask,
the workqueue cpumask, each task's cpuset and allowed CPUs) and proves that
release restores all of it. Its cleanup releases again and, as a last
resort, restores the snapshot directly, so nothing stays confined even if
an assertion fails half-way.
"""

import os

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import housekeeping
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef

CPUSET = '/sys/fs/cgroup/cpuset'
HOUSEKEEPING = os.path.join(CPUSET, cgroupfs.HOUSEKEEPING)


_read = ef.read_or_none


def _task_status(tid):
    """(cpuset path, Cpus_allowed_list) of a task, or None if gone."""
    cpuset = _read('/proc/%d/cpuset' % tid)
    status = _read('/proc/%d/status' % tid)
    if cpuset is None or status is None:
        return None
    allowed = [line.split()[1] for line in status.splitlines()
               if line.startswith('Cpus_allowed_list:')]
    return cpuset, allowed[0]


def snapshot():
    files = {}
    for irq in housekeeping.irqs():
        path = '/proc/irq/%d/smp_affinity_list' % irq
        files[path] = _read(path)
    for path in (housekeeping.DEFAULT_IRQ_AFFINITY,
                 housekeeping.WORKQUEUE_CPUMASK,
                 os.path.join(CPUSET, 'cpuset.cpus')):
        files[path] = _read(path)
    tasks = {}
    for tid in cgroupfs.V1Cgroup(CPUSET).tasks():
        status = _task_status(tid)
        if status is not None:
            tasks[tid] = status
    return files, tasks


class TestRealHousekeeping(base.TestCase):

    def setUp(self):
        super().setUp()
        reason = base.requires_root()
        if reason:
            self.skipTest(reason)
        if housekeeping.systemd_is_init():
            self.skipTest('systemd is PID 1: this test covers the cpuset '
                          'path of hosts without systemd')
        layout = cgroupfs.detect_layout('/')
        if layout.cpuset is None or layout.cpuset.mount != CPUSET:
            self.skipTest('needs the cgroup v1 cpuset at %s' % CPUSET)
        if os.path.exists(HOUSEKEEPING):
            self.skipTest('%s exists: housekeeping is applied on this '
                          'host, not by this test' % HOUSEKEEPING)
        if len(os.sched_getaffinity(0)) < 2:
            self.skipTest('needs 2 CPUs')
        self.state = os.path.join(
            self.useFixture(ef.fixtures.TempDir()).path, 'hk.json')
        self.before = snapshot()
        self.addCleanup(self._restore_no_matter_what)
        self.useFixture(ef.PrivsepDaemon(self.conf_fixture)).start()
        self.keeper = housekeeping.Housekeeping(self.state, cpus={0})

    def _restore_no_matter_what(self):
        """Safety net: release if the test did not, then put back any file
        that still differs and any task left in the housekeeping cpuset."""
        if os.path.exists(self.state):
            try:
                self.keeper.release()
            except Exception:
                pass
        files, _ = self.before
        for path, value in files.items():
            if value is not None and _read(path) != value:
                try:
                    with open(path, 'w') as f:
                        f.write(value)
                except OSError:
                    pass
        if os.path.isdir(HOUSEKEEPING):
            for tid in cgroupfs.V1Cgroup(HOUSEKEEPING).tasks():
                try:
                    cgroupfs.V1Cgroup(CPUSET).add_task(tid)
                except OSError:
                    pass
            os.rmdir(HOUSEKEEPING)

    def test_apply_confines_and_release_restores_everything(self):
        files_before, tasks_before = self.before
        sleeper = self.useFixture(ef.OwnedProcess())
        self.assertEqual('0-1', sleeper.cpus_allowed())

        report = self.keeper.apply()

        # Confined while applied.
        self.assertTrue(report['applied'])
        self.assertEqual('0', report['housekeeping_cpus'])
        self.assertEqual([], report['irqs']['unconfined'])
        for irq in report['irqs']['confined']:
            self.assertEqual('0', _read('/proc/irq/%d/smp_affinity_list'
                                        % irq))
        self.assertEqual({'value': '0', 'confined': True},
                         report['default_irq_affinity'])
        self.assertEqual('1', _read(housekeeping.WORKQUEUE_CPUMASK))
        self.assertEqual('0', _read(os.path.join(HOUSEKEEPING,
                                                 'cpuset.cpus')))
        self.assertIn(sleeper.pid, cgroupfs.V1Cgroup(HOUSEKEEPING).tasks())
        self.assertEqual('0', sleeper.cpus_allowed())
        self.assertGreater(report['moved']['moved'], 0)
        self.assertGreater(report['tasks']['unconfinable'], 0)

        again = self.keeper.apply()
        self.assertEqual(report['irqs'], again['irqs'])

        result = self.keeper.release()

        self.assertEqual({}, result['failed'])
        self.assertFalse(os.path.exists(self.state))
        self.assertFalse(os.path.exists(HOUSEKEEPING))
        files_after, tasks_after = snapshot()
        self.assertEqual(files_before, files_after)
        for tid, status in tasks_before.items():
            if tid in tasks_after:
                self.assertEqual(status, tasks_after[tid], 'task %d' % tid)
        self.assertEqual('0-1', sleeper.cpus_allowed())
