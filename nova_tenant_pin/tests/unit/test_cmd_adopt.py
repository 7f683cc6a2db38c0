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

"""``nova-tenant-pin adopt`` and ``release`` on the libvirt and cgroup
doubles that refuse what the kernel refuses (``tests/fakes.py``), injected
through the commands' ``reader``."""

import argparse
import errno
import functools
import io
import json
import os
from unittest import mock

import fixtures

from nova_tenant_pin import allocator
from nova_tenant_pin.cmd import adopt
from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin.cmd import release
from nova_tenant_pin import coresched
from nova_tenant_pin import executor
from nova_tenant_pin import housekeeping
from nova_tenant_pin.tests import fakes
from nova_tenant_pin.tests.unit import test_coresched
from nova_tenant_pin.tests.unit import test_manager as tm
from nova_tenant_pin import topology as topo

HOUSEKEEPING = tm.HOUSEKEEPING
ONLINE = frozenset(range(16))
SHARED = ONLINE - HOUSEKEEPING


class CommandTestCase(tm.ManagerTestCase):

    shared_cpus = None

    def setUp(self):
        super().setUp()
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', self.out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.err))
        self.reads = []
        state_dir = self.useFixture(fixtures.TempDir()).path
        self.state_file = os.path.join(state_dir, 'housekeeping.json')
        self.flags(housekeeping_state_file=self.state_file)
        # The kernel's core scheduling is TestAdoptCoreScheduling's.
        self.flags(core_scheduling='off')

    def reader(self, args, read_only, options=True):
        self.reads.append((read_only, options))
        return adopt.Host(
            self.topology, self.partitions, self.conn,
            {'housekeeping_cpus': HOUSEKEEPING, 'pin_mode': self.pin_mode}
            if options else {}, self.shared_cpus)

    def start_unconfined(self, project, vcpus):
        """A guest as the stock driver leaves it: no partition, floating
        on Nova's shared CPUs."""
        inst = tm.uuid()
        self.conn.start(fakes.domain_xml(inst, vcpus, project=project,
                                         cpuset=SHARED))
        return inst

    def output(self):
        out, err = self.out.getvalue(), self.err.getvalue()
        self.out.seek(0)
        self.out.truncate()
        self.err.seek(0)
        self.err.truncate()
        return out, err

    def info(self, inst):
        return self.conn.domains[inst].info


class TestAdopt(CommandTestCase):

    def adopt(self, dry_run=False):
        args = argparse.Namespace(dry_run=dry_run, libvirt_uri='test:///',
                                  housekeeping_cpus=None)
        return adopt.run(args, reader=self.reader)

    def test_dry_run_prints_the_moves_and_changes_nothing(self):
        insts = [self.start_unconfined(p, 2) for p in ('p1', 'p2', 'p3')]
        xml = {u: self.conn.domains[u].xml for u in insts}
        self.assertEqual(0, self.adopt(dry_run=True))
        out, _ = self.output()
        self.assertEqual([(True, True)], self.reads)
        for inst in insts:
            self.assertIn('pin vCPU 0 of instance %s to CPUs' % inst, out)
        self.assertIn('create partition of tenant p2 with CPUs', out)
        self.assertTrue(out.endswith('after adopt the host would be '
                                     'isolated\n'), out)
        self.assertEqual({}, self.partitions.list_partitions())
        self.assertEqual(xml, {u: self.conn.domains[u].xml for u in insts})
        self.assertEqual([], self.conn.pin_calls)

    def test_dry_run_is_the_executors_and_previews_the_writes_made(self):
        """The dry run is the manager's executor with write=False on the
        host's own partitions and connection (no copy of either): it
        prints, in order, exactly the writes the real run then makes."""
        insts = [self.start_unconfined(p, 2) for p in ('p1', 'p2')]
        runs = []
        real_run = executor.Executor.run

        def spy(ex, steps, domains):
            runs.append((ex.write, ex.partitions,
                         ex.guests._get_connection()))
            return real_run(ex, steps, domains)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.executor.Executor.run', spy))
        self.assertEqual(0, self.adopt(dry_run=True))
        preview = self.output()[0].splitlines()
        self.assertEqual([(False, self.partitions, self.conn)], runs)
        self.assertEqual('after adopt the host would be isolated',
                         preview.pop())
        made = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.adopt.StepLog.__call__',
            lambda log, step, position, total: made.append(step.describe())))
        self.assertEqual(0, self.adopt())
        self.assertEqual(preview, made)
        self.assertTrue(all(self.info(u).key for u in insts))

    def test_adopt_pins_every_guest_and_a_second_run_does_nothing(self):
        insts = {p: self.start_unconfined(p, 3) for p in ('p1', 'p2', 'p3')}
        self.assertEqual(0, self.adopt())
        out, _ = self.output()
        self.assertEqual([(False, True)], self.reads)
        for project, inst in insts.items():
            self.assertIn('instance %s of tenant %s was started without '
                          'tenant-pin' % (inst, project), out)
            self.assertEqual('pins', self.info(inst).confinement)
            self.assertEqual(project, self.info(inst).key)
        self.assertTrue(out.endswith('host isolated\n'), out)
        self.assertInvariants()
        self.assertEqual(0, self.adopt(dry_run=True))
        self.assertEqual('nothing to do\nafter adopt the host would be '
                         'isolated\n', self.output()[0])
        self.assertEqual(0, self.adopt())
        self.assertEqual('nothing to do\nhost isolated\n', self.output()[0])

    def test_tenants_that_do_not_fit_are_named_and_exit_1(self):
        # 14 usable threads: 8 + 6 + 4 vCPUs do not fit on whole cores.
        insts = {p: self.start_unconfined(p, n)
                 for p, n in (('p1', 8), ('p2', 6), ('p3', 4))}
        self.assertEqual(1, self.adopt(dry_run=True))
        out, _ = self.output()
        self.assertIn('after adopt the host would be NOT isolated: tenant ',
                      out)
        would = out.splitlines()[-1].split(' would be NOT isolated: ')[1]
        self.assertEqual({}, self.partitions.list_partitions())
        self.assertEqual(1, self.adopt())
        out, _ = self.output()
        line = out.splitlines()[-1]
        self.assertTrue(line.startswith('host NOT isolated: tenant '), line)
        # The dry run said which tenant would not fit: the one that did not.
        self.assertEqual('host NOT isolated: ' + would, line)
        unfit = [p for p, u in insts.items() if u in line]
        self.assertEqual(1, len(unfit), line)
        self.assertIn('tenant %s (instances %s) does not fit on whole cores'
                      % (unfit[0], insts[unfit[0]]), line)
        self.assertIn('the other tenants are isolated', line)

    def test_guest_naming_no_project_is_left_alone_and_named(self):
        self.start_unconfined('p1', 2)
        loose = tm.uuid()
        self.conn.start(fakes.domain_xml(loose, 2, cpuset=SHARED,
                                         name='by-hand'))
        self.assertEqual(1, self.adopt())
        out, _ = self.output()
        self.assertIn('host NOT isolated: instance %s (by-hand) names no '
                      'Nova project' % loose, out)
        self.assertNotIn('other tenants', out)

    def test_interrupted_adopt_is_safe_and_finished_by_running_it_again(
            self):
        insts = [self.start_unconfined(p, 3) for p in ('p1', 'p2', 'p3')]
        calls = []

        def interrupt(name):
            calls.append(name)
            if len(calls) == 4:
                raise KeyboardInterrupt()
        self.conn.faults = interrupt
        self.assertEqual(cli.EXIT_INTERRUPTED, self.adopt())
        out, err = self.output()
        self.assertIn('interrupted: the host is in a safe intermediate '
                      'state', err)
        self.assertIn('run "nova-tenant-pin adopt" again to finish', err)
        self.assertNotIn('host isolated', out)
        # Some guests are pinned, some not yet; no write let two tenants
        # share a core.
        self.assertEqual([], self.partitions.overlaps)
        self.conn.faults = None
        self.assertEqual(0, self.adopt())
        self.assertIn('host isolated', self.output()[0])
        for inst in insts:
            self.assertEqual('pins', self.info(inst).confinement)
        self.assertInvariants()

    def test_failed_write_exits_1_and_says_how_to_finish(self):
        self.start_unconfined('p1', 2)

        def fail(name):
            raise fakes.FakeLibvirtError('connection lost')
        self.conn.faults = fail
        self.assertEqual(1, self.adopt())
        _, err = self.output()
        self.assertIn('stopped: connection lost; the host is in a safe '
                      'intermediate state', err)

    def test_bad_static_cpuset_is_a_usage_error(self):
        def reader(args, read_only, options=True):
            host = self.reader(args, read_only, options)
            host.options['static'] = {'p1': frozenset([0, 1])}
            return host
        args = argparse.Namespace(dry_run=False, housekeeping_cpus=None)
        self.assertRaises(cli.UsageError, adopt.run, args, reader=reader)

    def test_usage_errors_exit_2_through_main(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.main.load_config', lambda args: None))

        def unreachable(args, read_only, options=True):
            raise cli.UsageError('cannot connect to libvirt at %s: refused'
                                 % args.libvirt_uri)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.adopt.read_host', unreachable))
        self.assertEqual(2, cli.main(['adopt', '--libvirt-uri', 'qemu:///x']))
        self.assertIn('nova-tenant-pin adopt: error: cannot connect to '
                      'libvirt at qemu:///x', self.output()[1])

    def adopt_through_main(self, *global_options):
        """``nova-tenant-pin GLOBAL_OPTIONS adopt`` on this host's doubles,
        with oslo.log set up as the command sets it up."""
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.main.load_config', lambda args: None))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.adopt.read_host', self.reader))
        return cli.main(list(global_options) + ['adopt'])

    def test_verbose_logs_the_manager_on_stderr(self):
        self.start_unconfined('p1', 2)
        self.assertEqual(0, self.adopt_through_main('--verbose'))
        out, err = self.output()
        self.assertIn('reconcile repaired', err)
        self.assertIn('host isolated', out)
        self.assertNotIn('reconcile repaired', out)

    def test_without_verbose_stderr_has_no_log_record(self):
        """The command prints its outcome itself: without ``-v`` or
        ``--debug`` no log record reaches stderr (nor stdout)."""
        self.start_unconfined('p1', 2)
        self.assertEqual(0, self.adopt_through_main())
        out, err = self.output()
        self.assertNotIn('reconcile repaired', err)
        self.assertIn('was started without tenant-pin', out)
        self.assertNotIn('reconcile repaired', out)


class TestAdoptCoreScheduling(CommandTestCase):
    """With [tenant_pin] core_scheduling on, adopt gives each isolation
    key's guests one core-scheduling cookie, through the driver's own
    coresched.CoreCookies, on a fake kernel (PR_SCHED_CORE over a fake
    /proc)."""

    def setUp(self):
        super().setUp()
        proc = self.useFixture(fixtures.TempDir()).path
        self.kernel = test_coresched.FakeKernel(proc)
        self.pids = {}
        self.fake = test_coresched.FakeCookies(self.kernel, proc, self.pids)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.coresched.CoreCookies', functools.partial(
                coresched.CoreCookies, cookies=self.fake,
                prctl=self.kernel, proc_root=proc)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.coresched.release_cookies', functools.partial(
                coresched.release_cookies, cookies=self.fake,
                prctl=self.kernel, proc_root=proc)))

    def adopt(self, dry_run=False):
        args = argparse.Namespace(dry_run=dry_run, libvirt_uri='test:///',
                                  housekeeping_cpus=None)
        return adopt.run(args, reader=self.reader)

    def start_qemu(self, project, vcpus):
        """An unconfined guest and its QEMU process (three threads)."""
        inst = self.start_unconfined(project, vcpus)
        name = self.info(inst).name
        self.pids[name] = self.kernel.add_process(
            1000 * (len(self.pids) + 1), name=name, uuid=inst)
        return self.pids[name]

    def cookies(self, pid):
        return {self.kernel.cookies.get(t, 0) for t in self.kernel.tids(pid)}

    def test_each_key_gets_one_cookie(self):
        self.flags(core_scheduling='required')
        a1, a2 = self.start_qemu('p1', 2), self.start_qemu('p1', 2)
        b1 = self.start_qemu('p2', 2)
        self.assertEqual(0, self.adopt())
        out, _ = self.output()
        a, b = self.cookies(a1) | self.cookies(a2), self.cookies(b1)
        self.assertEqual(1, len(a))
        self.assertEqual(1, len(b))
        self.assertNotIn(0, a | b)
        self.assertNotEqual(a, b)
        self.assertEqual(3, out.count('cookie'), out)
        self.assertTrue(out.endswith('host isolated\n'), out)
        # A second run changes nothing and says nothing of cookies.
        self.assertEqual(0, self.adopt())
        self.assertEqual('nothing to do\nhost isolated\n', self.output()[0])
        self.assertEqual(a, self.cookies(a1))

    def release(self, dry_run=False):
        return release.run(argparse.Namespace(
            dry_run=dry_run, libvirt_uri='test:///', cpus=None,
            keep_housekeeping=True), reader=self.reader)

    def test_release_takes_the_cookies_away(self):
        """Released guests hold no cookie (libvirt's sched_core unset), or
        each QEMU one of its own (set); release reads no [tenant_pin]
        option for it, and a second run has nothing to do."""
        self.flags(core_scheduling='required')
        a1, a2 = self.start_qemu('p1', 2), self.start_qemu('p1', 2)
        b1 = self.start_qemu('p2', 2)
        self.assertEqual(0, self.adopt())
        self.output()
        before = self.cookies(a1) | self.cookies(b1)
        self.flags(core_scheduling='off')
        self.assertEqual(0, self.release(dry_run=True))
        out, _ = self.output()
        self.assertEqual(3, out.count('would have its core-scheduling '
                                      'cookie cleared'), out)
        self.assertEqual(before, self.cookies(a1) | self.cookies(b1))
        self.assertEqual(0, self.release())
        out, _ = self.output()
        self.assertEqual(3, out.count('core-scheduling cookie cleared'), out)
        for pid in (a1, a2, b1):
            self.assertEqual({0}, self.cookies(pid))
        self.assertEqual(0, self.release())
        self.assertNotIn('cookie', self.output()[0])

    def test_release_leaves_each_qemu_a_cookie_of_its_own_under_sched_core(
            self):
        self.flags(core_scheduling='auto')
        a1, a2 = self.start_qemu('p1', 2), self.start_qemu('p1', 2)
        self.assertEqual(0, self.adopt())
        self.output()
        self.assertEqual(self.cookies(a1), self.cookies(a2))
        self.fake.sched_core = 'full'
        self.assertEqual(0, self.release())
        self.assertEqual(2, self.output()[0].count(
            'a core-scheduling cookie of its own'))
        a, b = self.cookies(a1), self.cookies(a2)
        self.assertEqual(1, len(a))
        self.assertEqual(1, len(b))
        self.assertNotIn(0, a | b)
        self.assertNotEqual(a, b)

    def test_release_stops_before_any_write_when_a_cookie_fails(self):
        self.flags(core_scheduling='auto')
        a1 = self.start_qemu('p1', 2)
        self.assertEqual(0, self.adopt())
        self.output()
        self.pids.clear()     # the privileged side cannot find the QEMU
        calls = len(self.conn.pin_calls)
        self.assertEqual(cli.EXIT_PROBLEM, self.release())
        _, err = self.output()
        self.assertIn('stopped: core scheduling: instance', err)
        self.assertEqual(calls, len(self.conn.pin_calls))
        self.assertNotEqual({0}, self.cookies(a1))

    def test_off_gives_no_cookie(self):
        pid = self.start_qemu('p1', 2)
        self.assertEqual(0, self.adopt())
        self.assertEqual({0}, self.cookies(pid))
        self.assertNotIn('cookie', self.output()[0])

    def test_dry_run_gives_no_cookie(self):
        self.flags(core_scheduling='auto')
        pid = self.start_qemu('p1', 2)
        self.assertEqual(0, self.adopt(dry_run=True))
        self.assertEqual({0}, self.cookies(pid))

    def test_required_without_kernel_support_is_refused_before_any_write(
            self):
        self.flags(core_scheduling='required')
        self.kernel.error = errno.EINVAL
        pid = self.start_qemu('p1', 2)
        e = self.assertRaises(cli.UsageError, self.adopt)
        self.assertIn('core_scheduling = required, but', str(e))
        self.assertEqual({}, self.partitions.list_partitions())
        self.assertEqual([], self.conn.pin_calls)
        self.assertEqual({0}, self.cookies(pid))

    def test_a_failed_cookie_exits_1_after_the_pins(self):
        self.flags(core_scheduling='auto')
        self.start_qemu('p1', 2)
        self.pids.clear()     # the privileged side cannot find the QEMU
        self.assertEqual(cli.EXIT_PROBLEM, self.adopt())
        out, err = self.output()
        self.assertIn('core-scheduling cookies: ', err)
        self.assertTrue(out.endswith('host isolated\n'), out)
        self.assertNotEqual([], self.conn.pin_calls)


class TestStepLog(CommandTestCase):
    """adopt and release log each write as it is made (oslo.log, with the
    instance and its tenant) and show it on a terminal."""

    def run_main(self, *argv, log_file=None):
        """``nova-tenant-pin --config-file EMPTY --log-file LOG ARGV`` on
        this host's doubles, reading the configuration for real."""
        conf_dir = self.useFixture(fixtures.TempDir()).path
        conf_file = os.path.join(conf_dir, 'nova.conf')
        with open(conf_file, 'w') as f:
            f.write('[DEFAULT]\n')
        self.log_file = os.path.join(conf_dir, 'ntp.log')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.adopt.read_host', self.reader))
        return cli.main(['--config-file', conf_file, '--log-file',
                         self.log_file] + list(argv))

    def records(self):
        with open(self.log_file) as f:
            return f.read().splitlines()

    def test_steps_made_before_a_failure_are_logged_before_it(self):
        insts = {p: self.start_unconfined(p, 2) for p in ('p1', 'p2', 'p3')}
        calls = []

        def fail_the_fifth_libvirt_write(name):
            calls.append(name)
            if len(calls) == 5:
                raise fakes.FakeLibvirtError('connection lost')
        self.conn.faults = fail_the_fifth_libvirt_write
        self.assertEqual(cli.EXIT_PROBLEM, self.run_main('adopt'))
        records = self.records()
        steps = [r for r in records if ' adopt: [' in r]
        failed = [n for n, r in enumerate(records) if 'failed: connection '
                  'lost' in r]
        self.assertEqual(1, len(failed), records)
        # Every write made, in order, each logged before the failure, at
        # INFO, with the instance (as nova-compute logs it) and its tenant.
        self.assertGreaterEqual(len(steps), 4)
        self.assertTrue(all(records.index(r) < failed[0] for r in steps))
        positions = [int(r.split(' adopt: [')[1].split('/')[0])
                     for r in steps]
        self.assertEqual(sorted(positions), positions)
        libvirt = [r for r in steps if 'of instance' in r]
        self.assertEqual(4, len(libvirt), steps)
        for record in libvirt:
            self.assertIn(' INFO nova_tenant_pin.cmd.adopt ', record)
            uuid = record.split('[instance: ')[1].split(']')[0]
            tenant = [p for p, u in insts.items() if u == uuid][0]
            self.assertIn('of instance %s of tenant %s' % (uuid, tenant),
                          record)
        # What the records say was made, the host holds: the pins logged
        # are in the domains' XML.
        pinned = [r for r in libvirt if ' pin vCPU ' in r]
        for record in pinned:
            uuid = record.split('[instance: ')[1].split(']')[0]
            vcpu = int(record.split(' pin vCPU ')[1].split(' ')[0])
            cpus = record.rsplit(' to CPUs ', 1)[1]
            self.assertEqual(
                cpus, topo.format_cpu_list(
                    self.info(uuid).thread_cpus(ONLINE)[('vcpu', vcpu)]))
        # Not on stderr without a terminal or -v.
        self.assertNotIn(' adopt: [', self.output()[1])

    def test_release_logs_each_write(self):
        a = self.spawn('p1', 1)
        self.assertEqual(0, self.run_main('release', '--keep-housekeeping'))
        records = [r for r in self.records() if ' release: [' in r]
        self.assertIn('pin vCPU 0 of instance %s of tenant p1 to CPUs 0-15'
                      % a, '\n'.join(records))
        self.assertIn('[instance: %s]' % a, records[-1])

    def test_dry_run_logs_no_write(self):
        self.start_unconfined('p1', 2)
        self.assertEqual(0, self.run_main('adopt', '--dry-run'))
        self.assertEqual([], [r for r in self.records() if ' adopt: [' in r])

    def test_progress_on_a_terminal(self):
        stream = io.StringIO()
        log = adopt.StepLog('adopt', progress=True, stream=stream)
        inst = self.start_unconfined('p1', 2)
        mgr = adopt.make_manager(self.reader(None, False),
                                 on_step=log)
        mgr.reconcile()
        lines = stream.getvalue().splitlines()
        total = len(lines)
        self.assertEqual(['[%d/%d]' % (n, total) for n in
                          range(1, total + 1)],
                         [line.split()[0] for line in lines])
        self.assertIn('pin emulator threads of instance %s of tenant p1 to '
                      'CPUs 2-3' % inst, '\n'.join(lines))
        self.assertEqual('[%d/%d] create partition of tenant p1 with CPUs '
                         '2-3' % (total, total), lines[-1])

    def test_progress_only_on_a_terminal_without_log_records(self):
        tty = mock.Mock(isatty=lambda: True)
        pipe = mock.Mock(isatty=lambda: False)
        quiet = cli.global_options([])
        self.assertTrue(adopt.show_progress(quiet, tty))
        self.assertFalse(adopt.show_progress(quiet, pipe))
        self.assertFalse(adopt.show_progress(cli.global_options(['-v']),
                                             tty))
        self.assertFalse(adopt.show_progress(
            cli.global_options(['--debug']), tty))


class TestStrictAdopt(TestAdopt):
    pin_mode = allocator.STRICT


class TestDriverOptions(CommandTestCase):
    """adopt reads [tenant_pin] with the driver's own code."""

    def setUp(self):
        super().setUp()
        # Registers Nova's options, as the command's import does.
        from nova_tenant_pin import driver  # noqa: F401
        self.flags(group='compute', cpu_shared_set='2-15',
                   cpu_dedicated_set=None)

    def options(self, flag=None):
        return adopt.driver_options(
            argparse.Namespace(housekeeping_cpus=flag), self.topology)

    def test_housekeeping_as_the_driver_reads_it(self):
        self.flags(pin_mode='strict', tenant_cpu_allocation_ratio=2.0)
        opts = self.options()
        self.assertEqual(frozenset({0, 1}), opts['housekeeping_cpus'])
        self.assertEqual(('strict', 2.0), (opts['pin_mode'], opts['ratio']))

    def test_flag_overrides_the_housekeeping_cpus(self):
        self.assertEqual(frozenset({0, 1, 2, 3}),
                         self.options('0-3')['housekeeping_cpus'])

    def test_bad_option_is_a_usage_error(self):
        self.assertRaises(cli.UsageError, self.options, '99')


class TestRelease(CommandTestCase):

    def setUp(self):
        super().setUp()
        self.restored = []

    def restore(self):
        self.restored.append(True)
        return 0

    def release(self, dry_run=False, cpus=None, keep=False):
        args = argparse.Namespace(dry_run=dry_run, libvirt_uri='test:///',
                                  cpus=cpus,
                                  keep_housekeeping=keep)
        return release.run(args, reader=self.reader, restore=self.restore)

    def test_dry_run_prints_the_writes_and_changes_nothing(self):
        self.shared_cpus = SHARED
        a = self.spawn('p1', 2)
        xml = self.conn.domains[a].xml
        self.assertEqual(0, self.release(dry_run=True))
        out, _ = self.output()
        self.assertEqual([(True, False)], self.reads)
        self.assertIn('pin vCPU 0 of instance %s to CPUs 2-15' % a, out)
        self.assertIn('drop the tenant-pin metadata of instance %s' % a,
                      out)
        self.assertIn('housekeeping was not applied', out)
        self.assertEqual(xml, self.conn.domains[a].xml)
        self.assertEqual([], self.restored)

    def test_dry_run_says_housekeeping_would_be_restored(self):
        with open(self.state_file, 'w') as f:
            json.dump(housekeeping.new_state('/', '0'), f)
        self.assertEqual(0, self.release(dry_run=True))
        out, _ = self.output()
        self.assertIn('nothing to do\n', out)
        self.assertIn('would restore housekeeping from %s' % self.state_file,
                      out)
        self.assertEqual([], self.restored)

    def test_release_frees_every_guest_and_restores_housekeeping(self):
        self.shared_cpus = SHARED
        a = self.spawn('p1', 2)
        b = self.start_unconfined('p2', 1)
        self.assertEqual(0, adopt.run(argparse.Namespace(
            dry_run=False, housekeeping_cpus=None),
            reader=self.reader))
        self.output()
        self.assertEqual(0, self.release())
        out, _ = self.output()
        for inst in (a, b):
            self.assertEqual(SHARED, self.info(inst).all_cpus(ONLINE))
            self.assertIsNone(self.info(inst).key)
        self.assertIn('tenant isolation released: every guest may run on '
                      'CPUs 2-15', out)
        # p1's guest still runs in its partition: it stays, widened.
        self.assertEqual(['p1'], sorted(self.partitions.list_partitions()))
        self.assertIn('partitions of tenants p1 still hold running guests',
                      out)
        self.assertEqual([True], self.restored)
        # Running it again changes nothing.
        self.assertEqual(0, self.release(keep=True))
        self.assertEqual('nothing to do', self.output()[0].splitlines()[0])

    def test_keep_housekeeping_skips_the_restore(self):
        self.spawn('p1', 1)
        self.assertEqual(0, self.release(keep=True))
        self.assertIn('housekeeping kept', self.output()[0])
        self.assertEqual([], self.restored)

    def test_default_cpus_are_every_online_cpu_without_a_shared_set(self):
        a = self.spawn('p1', 1)
        self.assertEqual(0, self.release())
        self.assertEqual(ONLINE, self.info(a).all_cpus(ONLINE))

    def test_cpus_flag(self):
        a = self.spawn('p1', 1)
        self.assertEqual(0, self.release(cpus='4-7'))
        self.assertEqual(frozenset(range(4, 8)),
                         self.info(a).all_cpus(ONLINE))
        self.assertRaises(cli.UsageError, self.release, cpus='99')
        self.assertRaises(cli.UsageError, self.release, cpus='x')

    def test_failed_release_leaves_housekeeping_alone(self):
        self.spawn('p1', 1)

        def fail(name):
            raise fakes.FakeLibvirtError('connection lost')
        self.conn.faults = fail
        self.assertEqual(1, self.release())
        _, err = self.output()
        self.assertIn('stopped: connection lost', err)
        self.assertIn('housekeeping was left as it is', err)
        self.assertEqual([], self.restored)

    def test_interrupted_release(self):
        self.spawn('p1', 1)

        def interrupt(name):
            raise KeyboardInterrupt()
        self.conn.faults = interrupt
        self.assertEqual(cli.EXIT_INTERRUPTED, self.release())
        self.assertIn('run "nova-tenant-pin release" again to finish',
                      self.output()[1])
        self.assertEqual([], self.restored)


class TestRestoreHousekeeping(CommandTestCase):

    def test_not_applied_is_said_and_not_an_error(self):
        with mock.patch('nova_tenant_pin.cmd.housekeeping.run') as run:
            self.assertEqual(0, release.restore_housekeeping())
        run.assert_not_called()
        self.assertIn('housekeeping was not applied (no state file %s)'
                      % self.state_file, self.output()[0])

    def test_restores_through_housekeeping_release(self):
        with open(self.state_file, 'w') as f:
            json.dump(housekeeping.new_state('/', '0'), f)
        with mock.patch('nova_tenant_pin.cmd.housekeeping.run',
                        return_value=({'failed': {'irq:24': 'EIO'}}, 1)
                        ) as run:
            self.assertEqual(1, release.restore_housekeeping())
        (args,), _ = run.call_args
        self.assertEqual(('release', self.state_file),
                         (args.action, args.state_file))
        out = self.output()[0]
        self.assertIn('restoring housekeeping from', out)
        # housekeeping release's report, as that command prints it.
        self.assertEqual({'failed': {'irq:24': 'EIO'}},
                         json.loads(out.split('\n', 1)[1]))

    def test_unreadable_state_file_is_a_usage_error(self):
        with open(self.state_file, 'w') as f:
            f.write('not json')
        self.assertRaises(cli.UsageError, release.restore_housekeeping)
