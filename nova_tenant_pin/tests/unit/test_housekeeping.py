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

"""Housekeeping against a fake /proc and /sys (privileged code in-process),
and the ``housekeeping`` command. The real apply/release on this machine is
in tests/functional/test_housekeeping.py."""

import io
import json
import os
import subprocess
import sys
from unittest import mock

import ddt
import fixtures

from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import exception
from nova_tenant_pin import housekeeping
from nova_tenant_pin import privsep
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef

KTHREAD = housekeeping.PF_KTHREAD
PER_CPU = housekeeping.PF_KTHREAD | housekeeping.PF_NO_SETAFFINITY
CPUSET = '/sys/fs/cgroup/cpuset'


class HousekeepingTestCase(base.TestCase):
    """A fake 4-CPU host: init (1), kthreadd (2), a user task (10), a
    per-CPU kthread (11), an IRQ thread (12), an unbound kthread (13)."""

    cgroup = 'hybrid'

    def setUp(self):
        super().setUp()
        self.host = self.useFixture(ef.FakeHost(
            cgroup=self.cgroup, cpus=4, tasks=(1, 2, 10, 11, 12, 13)))
        self.host.add_task(2, KTHREAD, 'kthreadd')
        self.host.add_task(11, PER_CPU, 'ksoftirqd/1', affinity='1')
        self.host.add_task(12, KTHREAD, 'irq/24-virtio0')
        self.host.add_task(13, KTHREAD, 'khugepaged')
        self.useFixture(ef.FakeKernel(self.host))
        self.useFixture(ef.ClientModeOff())
        self.execute = self.useFixture(fixtures.MockPatch(
            'oslo_concurrency.processutils.execute',
            return_value=('', ''))).mock
        self.state = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'sub', 'hk.json')

    def keeper(self, cpus=frozenset({0})):
        return housekeeping.Housekeeping(self.state, cpus=cpus)

    def tasks(self, *parts):
        return set(int(t) for t in self.host.read(
            os.path.join(CPUSET, *parts, 'tasks')).split())

    def snapshot(self):
        """The fake tree, with tasks files as sets (their order is the
        kernel's, not ours)."""
        snap = self.host.snapshot()
        return {k: (set(v.split()) if k.endswith('/tasks') else v)
                for k, v in snap.items()}


class TestApplyRelease(HousekeepingTestCase):

    def test_apply_confines_and_records_originals_first(self):
        report = self.keeper().apply()
        for irq in (24, 25, 26):
            self.assertEqual('0', self.host.read(
                '/proc/irq/%d/smp_affinity_list' % irq))
        self.assertEqual('1', self.host.read(
            housekeeping.DEFAULT_IRQ_AFFINITY))
        self.assertEqual('1', self.host.read(housekeeping.WORKQUEUE_CPUMASK))
        self.assertEqual({1, 10, 13}, self.tasks('housekeeping'))
        self.assertEqual({2, 11, 12}, self.tasks())
        self.assertEqual('0', self.host.read(CPUSET +
                                             '/housekeeping/cpuset.cpus'))
        self.assertEqual({'confined': [24, 25, 26], 'unconfined': [],
                          'unconfinable': []}, report['irqs'])
        self.assertEqual({'confined': 3, 'unconfined': 0, 'unconfinable': 2,
                          'irq_threads': 1}, report['tasks'])
        self.assertEqual(3, report['moved']['moved'])
        with open(self.state) as f:
            state = json.load(f)
        self.assertEqual('0', state['cpus'])
        self.assertEqual({'irq:24': '0-3', 'irq:25': '0-3', 'irq:26': '0-3',
                          'default_irq_affinity': 'f',
                          'workqueue_cpumask': 'f'}, state['values'])
        self.assertEqual({'1', '10', '13'}, set(state['tasks']))
        self.assertTrue(state['cpuset'])
        self.execute.assert_not_called()

    def test_release_restores_exactly(self):
        before = self.snapshot()
        self.keeper().apply()
        self.assertNotEqual(before, self.snapshot())
        result = housekeeping.Housekeeping(self.state).release()
        self.assertEqual({}, result['failed'])
        self.assertEqual(before, self.snapshot())
        self.assertFalse(os.path.exists(self.state))

    def test_reapply_is_idempotent_and_keeps_the_first_originals(self):
        self.keeper().apply()
        with open(self.state) as f:
            first = json.load(f)
        self.keeper().apply()
        with open(self.state) as f:
            self.assertEqual(first, json.load(f))
        self.keeper({0, 1}).apply()
        self.assertEqual('0-1', self.host.read('/proc/irq/24/'
                                               'smp_affinity_list'))
        with open(self.state) as f:
            self.assertEqual(first['values'], json.load(f)['values'])
        housekeeping.Housekeeping(self.state).release()
        self.assertEqual('0-3', self.host.read('/proc/irq/24/'
                                               'smp_affinity_list'))

    def test_refused_irq_is_unconfinable_and_not_restored(self):
        real = privsep.set_irq_affinity

        def refuse_25(irq, cpus):
            return False if irq == 25 else real(irq, cpus)
        with mock.patch.object(privsep, 'set_irq_affinity',
                               side_effect=refuse_25) as setter:
            report = self.keeper().apply()
            self.assertEqual([25], report['irqs']['unconfinable'])
            setter.reset_mock()
            housekeeping.Housekeeping(self.state).release()
            self.assertEqual({24, 26}, {c.args[0]
                                        for c in setter.call_args_list})

    def test_kernel_thread_gets_its_affinity_back(self):
        self.keeper().apply()
        # What the kernel does to a kthread that leaves a cpuset: it gets
        # the cpuset's CPUs, not the ones it had.
        self.host.add_task(13, KTHREAD, 'khugepaged', affinity='0')
        with mock.patch('os.sched_setaffinity') as setaffinity:
            result = housekeeping.Housekeeping(self.state).release()
        setaffinity.assert_called_once_with(13, frozenset({0, 1, 2, 3}))
        self.assertIn('task affinities', result['restored'])

    def test_a_reused_pid_is_left_alone(self):
        self.keeper().apply()
        self.host.add_task(13, KTHREAD, 'other', affinity='0', starttime=9)
        with mock.patch('os.sched_setaffinity') as setaffinity:
            housekeeping.Housekeeping(self.state).release()
        setaffinity.assert_not_called()

    def test_release_without_state(self):
        self.assertRaises(exception.HousekeepingError,
                          housekeeping.Housekeeping(self.state).release)

    def test_failed_restore_keeps_what_is_left(self):
        self.keeper().apply()
        with mock.patch.object(privsep, 'set_workqueue_cpumask',
                               side_effect=OSError(5, 'EIO')):
            result = housekeeping.Housekeeping(self.state).release()
        self.assertEqual(['workqueue_cpumask'], list(result['failed']))
        with open(self.state) as f:
            state = json.load(f)
        self.assertEqual({'workqueue_cpumask': 'f'}, state['values'])
        self.assertFalse(state['cpuset'])
        result = housekeeping.Housekeeping(self.state).release()
        self.assertEqual({}, result['failed'])
        self.assertEqual('f', self.host.read(housekeeping.WORKQUEUE_CPUMASK))

    def test_bad_state_file(self):
        os.makedirs(os.path.dirname(self.state))
        with open(self.state, 'w') as f:
            f.write('{"version": 99}')
        self.assertRaises(exception.HousekeepingError,
                          housekeeping.Housekeeping(self.state).release)
        with open(self.state, 'w') as f:
            f.write('not json')
        self.assertRaises(exception.HousekeepingError,
                          housekeeping.Housekeeping(self.state).show)

    def test_show_before_apply(self):
        report = self.keeper().show()
        self.assertFalse(report['applied'])
        self.assertEqual([24, 25, 26], report['irqs']['unconfined'])
        self.assertEqual({'value': '0-3', 'confined': False},
                         report['workqueue_cpumask'])
        self.assertEqual(3, report['tasks']['unconfined'])


class TestSystemdHost(HousekeepingTestCase):
    """Where systemd is PID 1 (faked: this machine has none), services are
    confined with AllowedCPUs= on the slices and no cpuset is made."""

    def setUp(self):
        super().setUp()
        self.host.write('/proc/1/comm', 'systemd\n')
        self.allowed = {'system.slice': '', 'user.slice': '2-3',
                        'init.scope': ''}

        def systemctl(*args):
            if args[1] == 'show':
                return self.allowed[args[-1]] + '\n', ''
            unit, value = args[3], args[4].split('=', 1)[1]
            self.allowed[unit] = value
            return '', ''
        self.execute.side_effect = systemctl

    def test_apply_and_release(self):
        report = self.keeper().apply()
        self.assertEqual({'system.slice': '0', 'user.slice': '0',
                          'init.scope': '0'}, self.allowed)
        self.assertTrue(all(u['confined']
                            for u in report['systemd'].values()))
        self.assertNotIn('tasks', report)
        self.assertFalse(os.path.exists(self.host.path(
            CPUSET + '/housekeeping')))
        housekeeping.Housekeeping(self.state).release()
        self.assertEqual({'system.slice': '', 'user.slice': '2-3',
                          'init.scope': ''}, self.allowed)
        self.assertIn(mock.call('systemctl', 'set-property', '--runtime',
                                'system.slice', 'AllowedCPUs='),
                      self.execute.call_args_list)


class TestSystemdHostCgroupV2(TestSystemdHost):
    """The same on cgroup v2 while another unit keeps cpuset enabled at
    the root: the fake systemctl writes a unit's cpuset.cpus when
    AllowedCPUs= is set and, like systemd, leaves it on a reset."""

    cgroup = 'v2'

    def setUp(self):
        super().setUp()
        for unit, value in self.allowed.items():
            ef._v2_files(self.host.path(self.unit_dir(unit)), value, '0')
            self.effective(unit, value or '0-3')
        fake_systemctl = self.execute.side_effect

        def systemctl(*args):
            out = fake_systemctl(*args)
            if args[1] == 'set-property' and args[4] != 'AllowedCPUs=':
                value = args[4].split('=', 1)[1]
                self.host.write(os.path.join(self.unit_dir(args[3]),
                                             'cpuset.cpus'), value)
                self.effective(args[3], value)
            return out
        self.execute.side_effect = systemctl

    @staticmethod
    def unit_dir(unit):
        return '/sys/fs/cgroup/' + unit

    def effective(self, unit, cpus):
        self.host.write(os.path.join(self.unit_dir(unit),
                                     'cpuset.cpus.effective'), cpus)

    def unit_cpus(self, unit):
        return self.host.read(os.path.join(self.unit_dir(unit),
                                           'cpuset.cpus')).strip()

    def test_release_unconfines_what_systemd_leaves(self):
        report = self.keeper().apply()
        for unit in ('system.slice', 'init.scope'):
            self.assertEqual({'value': '0', 'effective': '0',
                              'confined': True}, report['systemd'][unit])
        housekeeping.Housekeeping(self.state).release()
        # Emptied where the unit had no AllowedCPUs=; systemd rewrote the
        # one that had (user.slice).
        self.assertEqual({'system.slice': '', 'user.slice': '2-3',
                          'init.scope': ''},
                         {u: self.unit_cpus(u) for u in self.allowed})

    def test_show_reads_the_kernel_as_well_as_systemd(self):
        # A unit systemd left confined: AllowedCPUs= unset, the kernel
        # still at CPU 0.
        self.effective('system.slice', '0')
        report = self.keeper().show()
        self.assertEqual({'value': '', 'effective': '0', 'confined': False},
                         report['systemd']['system.slice'])
        self.assertEqual('0-3',
                         report['systemd']['init.scope']['effective'])


class TestCommand(HousekeepingTestCase):

    def run_cmd(self, *argv):
        """``nova-tenant-pin housekeeping ARGV`` through the application:
        ``(exit code, stdout)``; stderr in ``self.err``."""
        out = self.useFixture(fixtures.MonkeyPatch('sys.stdout',
                                                   io.StringIO())).new_value
        self.err = self.useFixture(fixtures.MonkeyPatch(
            'sys.stderr', io.StringIO())).new_value
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.main.load_config', lambda args: None))
        status = cli.main(['housekeeping'] + list(argv))
        return status, out.getvalue()

    def test_apply_show_release(self):
        self.flags(housekeeping_state_file=self.state)
        status, out = self.run_cmd('apply', '--cpus', '0')
        self.assertEqual(cli.EXIT_OK, status)
        self.assertTrue(json.loads(out)['applied'])
        status, out = self.run_cmd('show')
        self.assertEqual('0', json.loads(out)['housekeeping_cpus'])
        status, out = self.run_cmd('release')
        self.assertEqual(cli.EXIT_OK, status)
        self.assertEqual({}, json.loads(out)['failed'])
        self.assertFalse(os.path.exists(self.state))

    def test_cpus_from_the_option(self):
        self.flags(housekeeping_cpus='0-1')
        status, out = self.run_cmd('apply', '--state-file', self.state)
        self.assertEqual('0-1', json.loads(out)['housekeeping_cpus'])

    def test_usage_errors(self):
        for argv, message in (
                (('apply', '--state-file', self.state),
                 '[tenant_pin] housekeeping_cpus: unset'),
                (('apply', '--cpus', '1-x', '--state-file', self.state),
                 "--cpus: Invalid range expression '1-x'"),
                (('apply', '--cpus', '9', '--state-file', self.state),
                 '--cpus: CPUs 9 are not online'),
                (('show', '--cgroup-root', '/..'), '/..')):
            status, out = self.run_cmd(*argv)
            self.assertEqual((cli.EXIT_USAGE, ''), (status, out), argv)
            self.assertIn('nova-tenant-pin housekeeping: error: ',
                          self.err.getvalue())
            self.assertIn(message, self.err.getvalue())
        self.assertFalse(os.path.exists(self.state))

    def test_other_formats(self):
        self.flags(housekeeping_state_file=self.state)
        status, out = self.run_cmd('show', '--cpus', '0', '-f', 'value',
                                   '-c', 'housekeeping_cpus')
        self.assertEqual((cli.EXIT_OK, '0\n'), (status, out))
        status, out = self.run_cmd('show', '--cpus', '0', '-f', 'yaml')
        self.assertIn("housekeeping_cpus: '0'\n", out)

    def test_daemon_that_cannot_start_is_a_clear_problem(self):
        self.flags(housekeeping_state_file=self.state)
        with mock.patch.object(privsep, 'set_irq_affinity',
                               side_effect=FileNotFoundError(2, 'sudo')):
            status, out = self.run_cmd('apply', '--cpus', '0')
        self.assertEqual(cli.EXIT_PROBLEM, status)
        self.assertEqual('', out)
        self.assertIn('helper_command', self.err.getvalue())

    def test_root_gets_the_installed_helper_not_sudo(self):
        section = privsep.tenant_pin_pctxt.cfg_section
        with mock.patch('os.geteuid', return_value=0):
            self.run_cmd('show', '--state-file', self.state)
        self.assertEqual(os.path.join(sys.prefix, 'bin', 'privsep-helper'),
                         self.conf[section].helper_command)
        self.flags(group=section, helper_command='sudo privsep-helper')
        with mock.patch('os.geteuid', return_value=0):
            self.run_cmd('show', '--state-file', self.state)
        self.assertEqual('sudo privsep-helper',
                         self.conf[section].helper_command)

    def test_root_gets_the_installed_helper_for_core_scheduling_too(self):
        # adopt gives cookies through the core-scheduling daemon.
        section = privsep.core_sched_pctxt.cfg_section
        with mock.patch('os.geteuid', return_value=0):
            self.run_cmd('show', '--state-file', self.state)
        self.assertEqual(os.path.join(sys.prefix, 'bin', 'privsep-helper'),
                         self.conf[section].helper_command)

    def test_release_with_nothing_applied_is_a_problem(self):
        status, _ = self.run_cmd('release', '--state-file', self.state)
        self.assertEqual(cli.EXIT_PROBLEM, status)

    def test_bad_cpus_exit_2_as_a_process(self):
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_tenant_pin', '--config-file',
             os.devnull, 'housekeeping', 'apply', '--cpus', '0-x',
             '--state-file', self.state], capture_output=True, text=True,
            timeout=60)
        self.assertEqual(2, proc.returncode)
        self.assertIn("housekeeping: error: --cpus: Invalid range "
                      "expression '0-x'", proc.stderr)
        self.assertNotIn('Traceback', proc.stderr)
        self.assertEqual('', proc.stdout)


def _valid_state(**changes):
    state = {'version': 1, 'root': '/', 'cpus': '0',
             'values': {'irq:24': '0-3', 'workqueue_cpumask': 'f'},
             'systemd': {}, 'refused': [], 'cpuset': True,
             'tasks': {'10': [100, '0-3']}}
    state.update(changes)
    return state


def _without(key):
    state = _valid_state()
    del state[key]
    return state


@ddt.ddt
class TestStateFileSchema(HousekeepingTestCase):
    """A state file that is JSON but not what apply writes is refused
    with what is wrong and how to recover, before anything is
    restored."""

    def write_state(self, document):
        os.makedirs(os.path.dirname(self.state), exist_ok=True)
        with open(self.state, 'w') as f:
            json.dump(document, f)

    @ddt.unpack
    @ddt.data(
        ([], 'at the top: [] is not of type \'object\''),
        (None, 'at the top: None is not of type \'object\''),
        ('text', 'is not of type \'object\''),
        ({}, '\'version\' is a required property'),
        (_without('values'), '\'values\' is a required property'),
        (_without('root'), '\'root\' is a required property'),
        (_without('systemd'), '\'systemd\' is a required property'),
        (_valid_state(values=[]), 'at values: [] is not of type'),
        (_valid_state(values={'irq:24': 24}), 'at values/irq:24: 24 is '
         'not of type \'string\''),
        (_valid_state(values={'/etc/passwd': 'f'}), 'at values: '),
        (_valid_state(values={'irq:24': '0-1\nx'}), 'at values/irq:24'),
        (_valid_state(systemd={'sshd.service': ''}), 'at systemd: '),
        (_valid_state(systemd=None), 'at systemd: None is not of type'),
        (_valid_state(refused='irq:24'), 'at refused: \'irq:24\' is not '
         'of type \'array\''),
        (_valid_state(cpuset='yes'), 'at cpuset: \'yes\' is not of type '
         '\'boolean\''),
        (_valid_state(tasks={'10': [100]}), 'at tasks/10: [100] is too '
         'short'),
        (_valid_state(tasks={'10': ['x', '0']}), 'at tasks/10/0'),
        (_valid_state(tasks={'x': [1, '0']}), 'at tasks: '),
        (_valid_state(root='/a\n'), 'at root: refused cgroup root'),
        (_valid_state(root=7), 'at root: 7 is not of type \'string\''),
        (_valid_state(cpus='٠'), 'at cpus: '),
    )
    def test_refused_with_a_way_out(self, document, message):
        self.write_state(document)
        before = self.snapshot()
        for action in ('release', 'show'):
            err = self.assertRaises(
                exception.HousekeepingError,
                getattr(housekeeping.Housekeeping(self.state), action))
            self.assertIn('is not a housekeeping state', str(err))
            self.assertIn(message, str(err))
            self.assertIn('remove it (apply then records afresh)', str(err))
        err = self.assertRaises(exception.HousekeepingError,
                                self.keeper().apply)
        self.assertIn(message, str(err))
        self.assertEqual(before, self.snapshot())

    def test_state_apply_writes_passes(self):
        self.keeper().apply()
        self.assertIsNotNone(housekeeping.Housekeeping(
            self.state).load_state())
        self.write_state(_valid_state())
        self.assertEqual(_valid_state(), housekeeping.Housekeeping(
            self.state).load_state())
