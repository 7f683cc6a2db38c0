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

"""Housekeeping on a systemd host, for real: apply then release.

Through the real privsep daemon, housekeeping confines the host's services
to one whole core (CPUs 0 and 1, siblings) with ``AllowedCPUs=`` on
``system.slice``, ``user.slice`` and ``init.scope``, and moves IRQs, the
default IRQ mask and the unbound workqueue mask there. Judged by systemd,
the cgroup v2 files and each service thread's allowed CPUs in /proc; then
release must restore every value it changed exactly, also while another
unit keeps cpuset enabled at the cgroup root (as a tenant slice does on a
compute host running guests), where systemd resets only the property.
"""

import os
import subprocess

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import housekeeping
from nova_tenant_pin import privsep
from nova_tenant_pin import procfs
from nova_tenant_pin.tests import enforcement_fixtures as ef
from nova_tenant_pin.tests.testhost import base

CGROUP = '/sys/fs/cgroup'
CORE0 = frozenset({0, 1})


_read = ef.read_or_none


def snapshot():
    """Every value apply may change, read from systemd, cgroupfs, /proc
    and /sys."""
    values = {}
    for irq in housekeeping.irqs():
        path = '/proc/irq/%d/smp_affinity_list' % irq
        values[path] = _read(path)
    for path in (housekeeping.DEFAULT_IRQ_AFFINITY,
                 housekeeping.WORKQUEUE_CPUMASK):
        values[path] = _read(path)
    for unit in privsep.SYSTEMD_UNITS:
        values[unit] = base.systemctl('show', '--value', '-p',
                                      'AllowedCPUs', unit)
        # The CPUs the kernel gives the unit. Not cpuset.cpus: where the
        # kernel refuses to empty it again, release writes the parent's
        # CPUs there (privsep._unconfine_unit_cgroup), the same CPUs.
        path = os.path.join(CGROUP, unit, 'cpuset.cpus.effective')
        values[path] = _read(path)
    return values


def cpuset_at_root():
    """Whether the cgroup root has cpuset enabled for its children."""
    return 'cpuset' in _read(os.path.join(CGROUP,
                                          'cgroup.subtree_control')).split()


class TestSystemdHousekeeping(base.TestHostTestCase):

    def setUp(self):
        super().setUp()
        self.state = os.path.join(
            self.useFixture(ef.fixtures.TempDir()).path, 'hk.json')
        base.systemctl('start', 'libvirtd.service')
        self.before = snapshot()
        self.addCleanup(self._restore_no_matter_what)
        self.useFixture(ef.PrivsepDaemon(self.conf_fixture)).start()
        self.keeper = housekeeping.Housekeeping(self.state, cpus=CORE0)

    def _restore_no_matter_what(self):
        if os.path.exists(self.state):
            try:
                self.keeper.release()
            except Exception:
                pass
        for unit in privsep.SYSTEMD_UNITS:
            if base.systemctl('show', '--value', '-p', 'AllowedCPUs',
                              unit) != self.before[unit]:
                base.systemctl('set-property', '--runtime', unit,
                               'AllowedCPUs=%s' % self.before[unit],
                               check=False)

    def service_threads(self, unit):
        """``{(pid, tid): allowed CPUs}`` of the main process of a
        service."""
        pid = int(base.systemctl('show', '--value', '-p', 'MainPID', unit))
        self.assertGreater(pid, 0, unit)
        return {(t.pid, t.tid): t.allowed_cpus for t in procfs.threads(pid)}

    def cpuset_user(self):
        """A sleeping service of this test with ``AllowedCPUs=`` of every
        CPU: systemd keeps cpuset enabled at the root while it runs."""
        unit = 'ntp-test-cpuset-user-%d.service' % os.getpid()
        subprocess.run(('systemd-run', '--quiet', '--unit', unit,
                        '-p', 'AllowedCPUs=0-7', 'sleep', 'infinity'),
                       check=True, timeout=120)
        self.addCleanup(base.systemctl, 'stop', unit, check=False)
        return unit

    def test_apply_confines_services_and_irqs_release_restores_all(self):
        self.assertTrue(housekeeping.systemd_is_init())
        self.assertEqual(set(range(8)), set().union(
            *self.service_threads('libvirtd.service').values()))

        report = self.keeper.apply()

        self.assertTrue(report['applied'])
        self.assertEqual('0-1', report['housekeeping_cpus'])
        for unit in privsep.SYSTEMD_UNITS:
            self.assertEqual('0-1', base.systemctl(
                'show', '--value', '-p', 'AllowedCPUs', unit), unit)
            # systemd wrote it to the unit's cgroup: the kernel enforces it.
            self.assertEqual('0-1', _read(os.path.join(
                CGROUP, unit, 'cpuset.cpus.effective')), unit)
        # Every thread of a service (libvirtd) and PID 1 may now run on
        # core 0 only.
        for unit in ('libvirtd.service',):
            for task, cpus in self.service_threads(unit).items():
                self.assertEqual(CORE0, cpus, '%s thread %s' % (unit, task))
        for task in procfs.threads(1):
            self.assertEqual(CORE0, task.allowed_cpus, 'PID 1 %s' % (task,))
        # IRQs that may move are on core 0, and new ones will be.
        self.assertTrue(report['irqs']['confined'])
        for irq in report['irqs']['confined']:
            self.assertEqual('0-1', _read('/proc/irq/%d/smp_affinity_list'
                                          % irq), 'IRQ %d' % irq)
        for path in (housekeeping.DEFAULT_IRQ_AFFINITY,
                     housekeeping.WORKQUEUE_CPUMASK):
            self.assertEqual(CORE0, cgroupfs.parse_cpu_mask(_read(path)),
                             path)

        # A second apply changes nothing and keeps the first originals.
        again = self.keeper.apply()
        self.assertEqual(report['irqs'], again['irqs'])

        result = self.keeper.release()

        self.assertEqual({}, result['failed'])
        self.assertFalse(os.path.exists(self.state))
        self.assertEqual(self.before, snapshot())
        self.assertEqual(set(range(8)), set().union(
            *self.service_threads('libvirtd.service').values()))

    def test_release_while_another_unit_keeps_cpuset_enabled(self):
        self.cpuset_user()
        self.before = snapshot()
        self.assertTrue(cpuset_at_root())

        report = self.keeper.apply()
        for unit in privsep.SYSTEMD_UNITS:
            self.assertEqual('0-1', _read(os.path.join(
                CGROUP, unit, 'cpuset.cpus.effective')), unit)
            self.assertEqual({'value': '0-1', 'effective': '0-1',
                              'confined': True}, report['systemd'][unit])
        result = self.keeper.release()

        self.assertEqual({}, result['failed'])
        self.assertTrue(cpuset_at_root())
        self.assertEqual(self.before, snapshot())
        for unit in privsep.SYSTEMD_UNITS:
            self.assertEqual('', base.systemctl(
                'show', '--value', '-p', 'AllowedCPUs', unit), unit)
            self.assertEqual('0-7', _read(os.path.join(
                CGROUP, unit, 'cpuset.cpus.effective')), unit)
        # show reads the kernel too: nothing is left confined.
        for unit, seen in self.keeper.show()['systemd'].items():
            self.assertEqual({'value': '', 'effective': '0-7',
                              'confined': False}, seen, unit)
        # The kernel lets the services run everywhere again.
        self.assertEqual(set(range(8)), set().union(
            *self.service_threads('libvirtd.service').values()))
        for task in procfs.threads(1):
            self.assertEqual(frozenset(range(8)), task.allowed_cpus,
                             'PID 1 %s' % (task,))
