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

"""Core-scheduling cookies with the prctl layer faked: a fake kernel that
keeps one cookie per task and applies PR_SCHED_CORE's rules (CREATE and
SHARE_TO over a thread group, SHARE_FROM into the calling OS thread), over a
fake /proc. The real kernel is exercised in the test host (see
doc/source/testing.rst); this machine's kernel has no core scheduling, which
the last tests use for real.
"""

import errno
import os
import threading
from unittest import mock

import fixtures

from nova_tenant_pin import audit
from nova_tenant_pin import claims as tp_claims
from nova_tenant_pin import coresched
from nova_tenant_pin import domain_xml
from nova_tenant_pin import privsep
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology


class FakeKernel:
    """PR_SCHED_CORE over a fake /proc, "current" being the OS thread."""

    def __init__(self, proc_root, error=None):
        self.proc = proc_root
        self.cookies = {}
        self.error = error
        self.callers = set()
        self._next = 0x1000
        self.on_share_to = None

    def add_process(self, pid, threads=3, comm='qemu-system-x86',
                    name=None, uuid=None):
        base_dir = os.path.join(self.proc, str(pid))
        for tid in [pid] + [pid + i for i in range(1, threads)]:
            os.makedirs(os.path.join(base_dir, 'task', str(tid)),
                        exist_ok=True)
        with open(os.path.join(base_dir, 'comm'), 'w') as f:
            f.write(comm + '\n')
        args = ['/usr/bin/' + comm]
        if name:
            args += ['-name', 'guest=%s,debug-threads=on' % name]
        if uuid:
            args += ['-uuid', uuid]
        with open(os.path.join(base_dir, 'cmdline'), 'w') as f:
            f.write('\0'.join(args) + '\0')
        return pid

    def add_thread(self, pid, tid, cookie=0):
        os.makedirs(os.path.join(self.proc, str(pid), 'task', str(tid)))
        self.cookies[tid] = cookie

    def tids(self, pid):
        return sorted(int(t) for t in os.listdir(
            os.path.join(self.proc, str(pid), 'task')))

    def _current(self):
        tid = threading.get_native_id()
        self.callers.add(tid)
        return tid

    def _check(self):
        if self.error:
            raise coresched.CoreSchedError('prctl', self.error)

    def _set(self, pid, pidtype, cookie):
        targets = self.tids(pid) if pidtype == coresched.PIDTYPE_TGID \
            else [pid]
        for tid in targets:
            self.cookies[tid] = cookie

    def get(self, tid):
        self._check()
        return self.cookies.get(tid or self._current(), 0)

    def create(self, pid, pidtype):
        self._check()
        self._next += 0x10
        self._set(pid, pidtype, self._next)

    def share_to(self, pid, pidtype):
        self._check()
        self._set(pid, pidtype, self.cookies.get(self._current(), 0))
        if self.on_share_to is not None:
            hook, self.on_share_to = self.on_share_to, None
            hook()

    def share_from(self, tid):
        self._check()
        self.cookies[self._current()] = self.cookies.get(tid, 0)


class _Base(base.TestCase):

    def setUp(self):
        super().setUp()
        self.proc = self.useFixture(fixtures.TempDir()).path
        self.kernel = FakeKernel(self.proc)


class TestSupport(_Base):

    def test_supported(self):
        self.assertEqual((True, None), coresched.support(self.kernel))

    def test_kernel_without_core_scheduling(self):
        self.kernel.error = errno.EINVAL
        ok, why = coresched.support(self.kernel)
        self.assertFalse(ok)
        self.assertIn('CONFIG_SCHED_CORE', why)

    def test_kernel_without_smt(self):
        self.kernel.error = errno.ENODEV
        ok, why = coresched.support(self.kernel)
        self.assertFalse(ok)
        self.assertIn('no SMT', why)


class TestAssign(_Base):

    def test_new_cookie_on_every_thread_and_none_left_on_caller(self):
        pid = self.kernel.add_process(100, threads=4)
        result = coresched.assign(pid, self.kernel, proc_root=self.proc)
        cookies = coresched.thread_cookies(pid, self.kernel, self.proc)
        self.assertEqual(4, len(cookies))
        self.assertEqual({result['cookie']}, set(cookies.values()))
        self.assertNotEqual(0, result['cookie'])
        self.assertEqual(0, self.kernel.cookies.get(
            threading.get_native_id(), 0))

    def test_shared_cookie_held_only_by_a_thread_that_exited(self):
        first = self.kernel.add_process(100)
        second = self.kernel.add_process(200)
        coresched.assign(first, self.kernel, proc_root=self.proc)
        result = coresched.assign(second, self.kernel, source_tid=first,
                                  proc_root=self.proc)
        self.assertEqual(self.kernel.cookies[first], result['cookie'])
        self.assertEqual(
            {result['cookie']},
            set(coresched.thread_cookies(second, self.kernel,
                                         self.proc).values()))
        me = threading.get_native_id()
        # SHARE_FROM ran in another OS thread, which took the cookie; the
        # caller never held one.
        helpers = self.kernel.callers - {me}
        self.assertTrue(helpers)
        self.assertEqual(0, self.kernel.cookies.get(me, 0))

    def test_thread_created_while_sharing_is_caught(self):
        first = self.kernel.add_process(100)
        second = self.kernel.add_process(200)
        coresched.assign(first, self.kernel, proc_root=self.proc)
        # A vCPU thread appears after SHARE_TO walked the thread group,
        # with the cookie its creator had before.
        self.kernel.on_share_to = lambda: self.kernel.add_thread(
            second, 250, cookie=0)
        result = coresched.assign(second, self.kernel, source_tid=first,
                                  proc_root=self.proc)
        self.assertEqual(result['cookie'], self.kernel.cookies[250])
        self.assertEqual(4, result['threads'])

    def test_refuses_a_source_without_cookie(self):
        first = self.kernel.add_process(100)
        second = self.kernel.add_process(200)
        e = self.assertRaises(coresched.CoreSchedError, coresched.assign,
                              second, self.kernel, source_tid=first,
                              proc_root=self.proc)
        self.assertEqual(errno.ENODATA, e.errno)
        self.assertEqual(0, self.kernel.cookies.get(200, 0))

    def test_vhost_kernel_worker_gets_the_cookie(self):
        pid = self.kernel.add_process(100)
        self.kernel.add_process(900, threads=1, comm='vhost-100')
        self.kernel.add_process(901, threads=1, comm='vhost-1000')
        result = coresched.assign(pid, self.kernel, proc_root=self.proc)
        self.assertEqual(result['cookie'], self.kernel.cookies[900])
        self.assertEqual(0, self.kernel.cookies.get(901, 0))


def guest(uuid, key, pid, cookies):
    return coresched.Guest(uuid, 'dom-' + uuid, key, pid, cookies)


class TestPlan(base.TestCase):

    def test_first_guest_of_a_key_creates_the_rest_share(self):
        owners, actions = coresched.plan([
            guest('a1', 'A', 10, {10: 0, 11: 0}),
            guest('a2', 'A', 20, {20: 0}),
            guest('b1', 'B', 30, {30: 0})])
        self.assertEqual({'A': None, 'B': None}, owners)
        self.assertEqual([('a1', None), ('a2', 'dom-a1'), ('b1', None)],
                         [(a.guest.uuid, a.source) for a in actions])

    def test_existing_cookie_is_kept_restart_rebuilds_from_threads(self):
        owners, actions = coresched.plan([
            guest('a1', 'A', 10, {10: 7, 11: 7}),
            guest('a2', 'A', 20, {20: 7}),
            guest('a3', 'A', 40, {40: 0, 41: 0})])
        self.assertEqual({'A': 7}, owners)
        self.assertEqual([('a3', 'dom-a1')],
                         [(a.guest.uuid, a.source) for a in actions])

    def test_a_cookie_two_keys_hold_stays_with_the_larger(self):
        # b1 was re-keyed from A to B: it keeps A's cookie until moved.
        owners, actions = coresched.plan([
            guest('a1', 'A', 10, {10: 7, 11: 7, 12: 7}),
            guest('b1', 'B', 20, {20: 7})])
        self.assertEqual({'A': 7, 'B': None}, owners)
        self.assertEqual([('b1', None)],
                         [(a.guest.uuid, a.source) for a in actions])

    def test_a_guest_split_between_cookies_gets_one(self):
        owners, actions = coresched.plan([
            guest('a1', 'A', 10, {10: 7, 11: 9}),
            guest('a2', 'A', 20, {20: 7, 21: 7})])
        self.assertEqual({'A': 7}, owners)
        self.assertEqual([('a1', 'dom-a1')],
                         [(a.guest.uuid, a.source) for a in actions])

    def test_violations(self):
        self.assertEqual([], coresched.violations([
            guest('a1', 'A', 10, {10: 7, 11: 7}),
            guest('b1', 'B', 20, {20: 8})]))
        found = coresched.violations([
            guest('a1', 'A', 10, {10: 7, 11: 7, 12: 5}),
            guest('b1', 'B', 20, {20: 7})])
        self.assertEqual(
            [('split-cookie', ('A',), (12,)),
             ('shared-cookie', ('A', 'B'), (10, 11, 20))],
            [v[:3] for v in found])
        # Threads without any cookie are a split too.
        self.assertEqual(
            [('split-cookie', ('A',), (10,))],
            [v[:3] for v in coresched.violations([
                guest('a1', 'A', 10, {10: 0})])])


class FakeCookies:
    """CoreCookies' privileged side, on the fake kernel, by domain name."""

    def __init__(self, kernel, proc, pids):
        self.kernel, self.proc, self.pids = kernel, proc, pids

    def read(self, pid):
        return coresched.thread_cookies(pid, self.kernel, self.proc)

    sched_core = 'none'

    def assign(self, name, key, source=None):
        return coresched.assign(
            self.pids[name], self.kernel,
            None if source is None else self.pids[source],
            proc_root=self.proc)

    def clear(self, name, key, own_cookie=False):
        return coresched.clear(self.pids[name], self.kernel, own_cookie,
                               proc_root=self.proc)

    def libvirt_sched_core(self):
        if isinstance(self.sched_core, Exception):
            raise self.sched_core
        return self.sched_core


class TestCoreCookies(_Base):

    def _domain(self, uuid, key, pid):
        self.kernel.add_process(pid, name='dom-' + uuid, uuid=uuid)
        return domain_xml.DomainInfo(uuid=uuid, name='dom-' + uuid,
                                     active=True, persistent=True, vcpus=2,
                                     key=key)

    def test_sync_gives_each_key_one_cookie_through_rekey(self):
        domains = [self._domain('a1', 'A', 100), self._domain('a2', 'A', 200),
                   self._domain('b1', 'B', 300)]
        pids = {'dom-a1': 100, 'dom-a2': 200, 'dom-b1': 300}
        cookies = coresched.CoreCookies(
            'required', lambda: domains, cookies=FakeCookies(
                self.kernel, self.proc, pids), prctl=self.kernel,
            proc_root=self.proc)
        self.assertTrue(cookies.active)
        self.assertEqual(3, len(cookies.sync()))

        def check():
            found = cookies.guests()
            self.assertEqual([], coresched.violations(found))
            return {g.uuid: g.cookie for g in found}

        first = check()
        self.assertEqual(first['a1'], first['a2'])
        self.assertNotEqual(first['a1'], first['b1'])
        # Nothing to do the second time.
        self.assertEqual([], cookies.sync())
        # a2 moves to B (a group change): it takes B's cookie.
        domains[1].key = 'B'
        self.assertEqual(1, len(cookies.sync()))
        after = check()
        self.assertEqual(first['b1'], after['a2'])
        self.assertEqual(first['a1'], after['a1'])

    def test_audit_catches_a_cookie_changed_by_hand(self):
        domains = [self._domain('a1', 'A', 100), self._domain('b1', 'B', 300)]
        pids = {'dom-a1': 100, 'dom-b1': 300}
        fake = FakeCookies(self.kernel, self.proc, pids)
        coresched.CoreCookies('auto', lambda: domains, cookies=fake,
                              prctl=self.kernel, proc_root=self.proc).sync()
        host = topology.HostTopology.from_dict(
            {'cells': [{'id': 0, 'siblings': [[0, 1], [2, 3]]}]})
        auditor = audit.HostAuditor(host, (), cookie_reader=fake.read)
        by_tenant = {
            'A': [mock.Mock(pid=100, tid=t) for t in (100, 101, 102)],
            'B': [mock.Mock(pid=300, tid=t) for t in (300, 301, 302)]}
        self.assertEqual([], auditor.check_cookies(by_tenant))
        # One of B's threads is given A's cookie by hand.
        self.kernel.cookies[301] = self.kernel.cookies[100]
        found = auditor.check_cookies(by_tenant)
        self.assertEqual(['split-cookie', 'shared-cookie'],
                         [v.kind for v in found])
        self.assertIn(301, found[0].tids)
        self.assertIn('keys A and B hold one cookie', str(found[1]))

    def test_off_does_nothing(self):
        listed = mock.Mock()
        cookies = coresched.CoreCookies('off', listed, prctl=self.kernel)
        self.assertFalse(cookies.active)
        self.assertEqual([], cookies.sync())
        listed.assert_not_called()

    def test_auto_on_a_kernel_without_it_does_nothing_and_says_so(self):
        self.kernel.error = errno.EINVAL
        listed = mock.Mock()
        with self.assertLogs(coresched.LOG.logger, 'WARNING') as logs:
            cookies = coresched.CoreCookies('auto', listed,
                                            prctl=self.kernel)
        self.assertFalse(cookies.active)
        self.assertIn('core scheduling not used', logs.output[0])
        self.assertEqual([], cookies.sync())
        listed.assert_not_called()

    def test_required_on_a_kernel_without_it_refuses(self):
        self.kernel.error = errno.ENODEV
        e = self.assertRaises(coresched.Unsupported, coresched.CoreCookies,
                              'required', mock.Mock(), prctl=self.kernel)
        self.assertIn('core_scheduling = required, but no SMT', str(e))


class TestRelease(_Base):
    """``release`` takes the project's cookies away: none, or one of each
    QEMU's own where libvirt's sched_core is set."""

    def setUp(self):
        super().setUp()
        self.domains = [
            TestCoreCookies._domain(self, 'a1', 'A', 100),
            TestCoreCookies._domain(self, 'a2', 'A', 200),
            TestCoreCookies._domain(self, 'b1', 'B', 300)]
        self.kernel.add_process(900, threads=1, comm='vhost-100')
        self.fake = FakeCookies(self.kernel, self.proc, {
            'dom-a1': 100, 'dom-a2': 200, 'dom-b1': 300})
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.coresched.qemu_pids_by_uuid',
            lambda proc_root: {'a1': 100, 'a2': 200, 'b1': 300}))
        coresched.CoreCookies('required', lambda: self.domains,
                              cookies=self.fake, prctl=self.kernel,
                              proc_root=self.proc).sync()
        self.assertNotEqual(0, self.kernel.cookies[900])

    def release(self, **kwargs):
        return coresched.release_cookies(self.domains, cookies=self.fake,
                                         prctl=self.kernel,
                                         proc_root=self.proc, **kwargs)

    def cookies(self):
        return {tid: c for tid, c in self.kernel.cookies.items()
                if tid != threading.get_native_id() and
                tid not in self.kernel.callers}

    def test_back_to_no_cookie_on_every_thread_and_worker(self):
        before = self.cookies()
        dry = self.release(dry_run=True)
        self.assertEqual(3, len(dry))
        self.assertIn('would have its core-scheduling cookie cleared',
                      dry[0])
        self.assertEqual(before, self.cookies())
        lines = self.release()
        self.assertEqual(['instance a1 of key A: core-scheduling cookie '
                          'cleared', 'instance a2 of key A: core-scheduling '
                          'cookie cleared', 'instance b1 of key B: '
                          'core-scheduling cookie cleared'], lines)
        self.assertEqual({0}, set(self.cookies().values()))
        # Again: nothing left to do.
        self.assertEqual([], self.release())

    def test_own_cookie_per_qemu_where_libvirt_sets_sched_core(self):
        self.fake.sched_core = 'full'
        lines = self.release()
        # b1 is key B's only guest: its cookie is already its own.
        self.assertEqual(2, len(lines))
        self.assertIn('a core-scheduling cookie of its own (libvirt\'s '
                      'sched_core = "full")', lines[0])
        guests = coresched.running_guests(self.domains, self.fake,
                                          self.proc)
        cookies = [g.cookie for g in guests]
        self.assertNotIn(None, cookies)
        self.assertEqual(3, len(set(cookies)))
        self.assertEqual(self.kernel.cookies[100], self.kernel.cookies[900])
        # Each already alone on a cookie of its own: nothing to do.
        self.assertEqual([], self.release())

    def test_unreadable_qemu_conf_means_no_cookie(self):
        self.fake.sched_core = PermissionError(13, 'Permission denied')
        with self.assertLogs(coresched.LOG.logger, 'WARNING'):
            self.assertEqual(3, len(self.release()))
        self.assertEqual({0}, set(self.cookies().values()))

    def test_nothing_on_a_kernel_without_core_scheduling(self):
        self.kernel.error = errno.EINVAL
        self.assertEqual([], self.release())

    def test_a_failed_clear_is_raised_after_the_others(self):
        real = self.fake.clear

        def clear(name, key, own_cookie=False):
            if name == 'dom-a2':
                raise coresched.CoreSchedError('prctl', errno.ESRCH)
            return real(name, key, own_cookie)
        self.fake.clear = clear
        e = self.assertRaises(RuntimeError, self.release)
        self.assertIn('instance a2', str(e))
        self.assertEqual(0, self.kernel.cookies[100])
        self.assertEqual(0, self.kernel.cookies[300])
        self.assertNotEqual(0, self.kernel.cookies[200])

    def test_clear_refuses_from_a_caller_holding_a_cookie(self):
        self.kernel.cookies[threading.get_native_id()] = 0x99
        e = self.assertRaises(coresched.CoreSchedError, coresched.clear,
                              100, self.kernel, proc_root=self.proc)
        self.assertEqual(errno.EPERM, e.errno)


class TestLibvirtSchedCore(_Base):
    """libvirt's own sched_core in qemu.conf: read safely, and what the
    driver makes of it."""

    def write(self, text):
        path = os.path.join(self.proc, 'qemu.conf')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_parse(self):
        for text, value in [
                ('', 'none'),
                ('#sched_core = "full"\n', 'none'),
                ('sched_core = "full"\n', 'full'),
                ('  sched_core="vcpus"  # only vCPUs\n', 'vcpus'),
                ("sched_core = 'emulator'\n", 'emulator'),
                ('x = 1\nsched_core = "full"\nsched_core = "full"\n',
                 'full'),
                ('my_sched_core = "full"\n', 'none')]:
            self.assertEqual(value, coresched.parse_sched_core(text), text)
        for text in ('sched_core = full\n',
                     'sched_core = "full"\nsched_core = "none"\n'):
            self.assertRaises(ValueError, coresched.parse_sched_core, text)

    def test_read_refuses_a_symlink_and_a_huge_file(self):
        path = self.write('sched_core = "full"\n')
        self.assertEqual('full', coresched.read_sched_core(path))
        link = os.path.join(self.proc, 'link.conf')
        os.symlink(path, link)
        self.assertRaises(OSError, coresched.read_sched_core, link)
        self.assertRaises(ValueError, coresched.read_sched_core, path,
                          limit=4)
        self.assertEqual('none', coresched.read_sched_core(
            os.path.join(self.proc, 'missing.conf')))

    def cookies(self, mode, sched_core):
        fake = FakeCookies(self.kernel, self.proc, {})
        fake.sched_core = sched_core
        return coresched.CoreCookies(mode, mock.Mock(), cookies=fake,
                                     prctl=self.kernel, proc_root=self.proc)

    def test_full_or_emulator_is_enough(self):
        for value in ('full', 'emulator'):
            with self.assertLogs(coresched.LOG.logger, 'INFO') as logs:
                self.assertEqual(value, self.cookies(
                    'required', value).check_libvirt())
            self.assertIn('never runs beside another key', logs.output[-1])

    def test_auto_warns_without_it(self):
        for value in ('none', 'vcpus', OSError(13, 'Permission denied')):
            with self.assertLogs(coresched.LOG.logger, 'WARNING') as logs:
                self.cookies('auto', value).check_libvirt()
            self.assertIn('set sched_core = "full" in '
                          '/etc/libvirt/qemu.conf', logs.output[-1])

    def test_required_refuses_without_it(self):
        for value in ('none', 'vcpus'):
            e = self.assertRaises(coresched.Unsupported,
                                  self.cookies('required',
                                               value).check_libvirt)
            self.assertIn('core_scheduling = required, but libvirt\'s '
                          'sched_core', str(e))

    def test_not_active_reads_nothing(self):
        self.kernel.error = errno.EINVAL
        fake = mock.Mock()
        cookies = coresched.CoreCookies('auto', mock.Mock(), cookies=fake,
                                        prctl=self.kernel)
        self.assertIsNone(cookies.check_libvirt())
        fake.libvirt_sched_core.assert_not_called()


class TestOnThisKernel(base.TestCase):
    """The real prctl of the machine running the tests."""

    def setUp(self):
        super().setUp()
        supported, _why = coresched.support()
        if supported:
            self.skipTest('this kernel has core scheduling: the test host '
                          'suite (tools/testhost) covers that case')

    def test_auto_does_nothing_and_says_so(self):
        listed = mock.Mock()
        with self.assertLogs(coresched.LOG.logger, 'WARNING') as logs:
            cookies = coresched.CoreCookies('auto', listed)
        self.assertFalse(cookies.active)
        self.assertIn('core_scheduling = auto', logs.output[0])
        self.assertIn('Tenants stay apart by their cores only',
                      logs.output[0])
        self.assertEqual([], cookies.sync())
        listed.assert_not_called()
        self.assertEqual({'mode': 'auto', 'active': False,
                          'reason': cookies.reason},
                         coresched.host_state('auto'))

    def test_required_refuses_clearly(self):
        e = self.assertRaises(coresched.Unsupported, coresched.CoreCookies,
                              'required', mock.Mock())
        self.assertIn('[tenant_pin] core_scheduling = required, but this '
                      'kernel has no core scheduling', str(e))
        self.assertIn('set it to auto or off', str(e))


STATUS_XML = """<domstatus state='running' pid='%(pid)d'>
  <domain type='qemu'><name>%(name)s</name><uuid>%(uuid)s</uuid>
    <metadata>%(meta)s</metadata></domain>
</domstatus>"""


class TestPrivsepEntrypoints(_Base):
    """set_core_cookie and read_core_cookies refuse anything that is not
    the QEMU of a libvirt domain recording the key."""

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.proc = os.path.join(self.root, 'proc')
        self.kernel = FakeKernel(self.proc)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.privsep.HOST_ROOT', self.root))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.coresched.Prctl', lambda: self.kernel))
        privsep.core_sched_pctxt.set_client_mode(False)
        self.addCleanup(privsep.core_sched_pctxt.set_client_mode, True)
        self.run_dir = os.path.join(self.root, 'run/libvirt/qemu')
        os.makedirs(self.run_dir)

    def _domain(self, name, pid, key, exe='/usr/bin/qemu-system-x86_64'):
        self.kernel.add_process(pid, name=name, uuid='u-' + name)
        os.symlink(exe, os.path.join(self.proc, str(pid), 'exe'))
        with open(os.path.join(self.run_dir, name + '.pid'), 'w') as f:
            f.write('%d\n' % pid)
        meta = domain_xml.metadata_xml(key, 'float', 1.0) if key else ''
        meta = meta.replace('<instance', '<tenantpin:instance xmlns:'
                            'tenantpin="%s"' % domain_xml.TP_NS).replace(
            '/>', '/>')
        with open(os.path.join(self.run_dir, name + '.xml'), 'w') as f:
            f.write(STATUS_XML % {'pid': pid, 'name': name,
                                  'uuid': 'u-' + name, 'meta': meta})

    def test_namespace_matches_the_manager(self):
        self.assertEqual(domain_xml.TP_NS, privsep._TP_NS)

    def test_sets_and_shares_one_cookie(self):
        self._domain('instance-1', 100, 'A')
        self._domain('instance-2', 200, 'A')
        first = privsep.set_core_cookie('instance-1', 'A')
        second = privsep.set_core_cookie('instance-2', 'A', 'instance-1')
        self.assertEqual(first['cookie'], second['cookie'])
        self.assertEqual(
            {'200': first['cookie'], '201': first['cookie'],
             '202': first['cookie']}, privsep.read_core_cookies(200))

    def _refused(self, *args):
        self.assertRaises(privsep.exception.InvalidArgument,
                          privsep.set_core_cookie, *args)
        self.assertEqual({}, {t: c for t, c in self.kernel.cookies.items()
                              if c})

    def test_refuses_a_key_the_domain_does_not_record(self):
        self._domain('instance-1', 100, 'A')
        self._refused('instance-1', 'B')

    def test_refuses_a_domain_without_tenant_pin_metadata(self):
        self._domain('instance-1', 100, None)
        self._refused('instance-1', 'A')

    def test_refuses_a_source_of_another_key(self):
        self._domain('instance-1', 100, 'A')
        self._domain('instance-2', 200, 'B')
        privsep.set_core_cookie('instance-2', 'B')
        self.assertRaises(privsep.exception.InvalidArgument,
                          privsep.set_core_cookie, 'instance-1', 'A',
                          'instance-2')
        self.assertEqual(0, self.kernel.cookies.get(100, 0))

    def test_refuses_a_process_that_is_not_qemu(self):
        self._domain('instance-1', 100, 'A', exe='/usr/sbin/sshd')
        self._refused('instance-1', 'A')
        self.assertRaises(privsep.exception.InvalidArgument,
                          privsep.read_core_cookies, 100)

    def test_refuses_a_pid_file_naming_another_domains_qemu(self):
        self._domain('instance-1', 100, 'A')
        self._domain('instance-2', 200, 'A')
        with open(os.path.join(self.run_dir, 'instance-2.pid'), 'w') as f:
            f.write('100\n')
        self._refused('instance-2', 'A')

    def test_refuses_bad_names_and_missing_domains(self):
        self._domain('instance-1', 100, 'A')
        for name in ('../instance-1', 'instance-1/..', '', None, 7,
                     'instance-9'):
            self._refused(name, 'A')
        self._refused('instance-1', '../A')

    def test_clear_back_to_none_or_to_an_own_cookie(self):
        self._domain('instance-1', 100, 'A')
        self._domain('instance-2', 200, 'A')
        first = privsep.set_core_cookie('instance-1', 'A')
        privsep.set_core_cookie('instance-2', 'A', 'instance-1')
        self.assertRaises(privsep.exception.InvalidArgument,
                          privsep.clear_core_cookie, 'instance-1', 'B')
        self.assertRaises(privsep.exception.InvalidArgument,
                          privsep.clear_core_cookie, 'instance-1', 'A',
                          'yes')
        self.assertEqual({first['cookie']}, set(
            privsep.read_core_cookies(100).values()))
        privsep.clear_core_cookie('instance-1', 'A')
        self.assertEqual({0}, set(privsep.read_core_cookies(100).values()))
        own = privsep.clear_core_cookie('instance-2', 'A', True)
        self.assertNotIn(own['cookie'], (0, first['cookie']))
        self.assertEqual({own['cookie']}, set(
            privsep.read_core_cookies(200).values()))

    def test_reads_libvirts_sched_core_and_nothing_else(self):
        os.makedirs(os.path.join(self.root, 'etc/libvirt'))
        with open(os.path.join(self.root, 'etc/libvirt/qemu.conf'),
                  'w') as f:
            f.write('vnc_password = "secret"\nsched_core = "full"\n')
        self.assertEqual('full', privsep.read_libvirt_sched_core())

    def test_refuses_a_symlinked_pid_file(self):
        self._domain('instance-1', 100, 'A')
        os.rename(os.path.join(self.run_dir, 'instance-1.pid'),
                  os.path.join(self.root, 'elsewhere.pid'))
        os.symlink(os.path.join(self.root, 'elsewhere.pid'),
                   os.path.join(self.run_dir, 'instance-1.pid'))
        self._refused('instance-1', 'A')


class TestDriverHooks(base.TestCase):
    """The driver's live-migration hook: an incoming QEMU gets its key's
    cookie on libvirt's STARTED event, before the migration completes."""

    def _driver(self, incoming):
        from nova_tenant_pin import driver

        drv = driver.TenantPinLibvirtDriver.__new__(
            driver.TenantPinLibvirtDriver)
        drv.tenant_pin = mock.Mock()
        drv.tenant_pin.claims.return_value = {
            'u1': tp_claims.Claim(uuid='u1', project_id='p', key='p',
                                  vcpus=1, incoming=incoming)}
        drv._tp_cookies = mock.Mock(active=True, mode='auto')
        return drv

    def _event(self, transition):
        from nova.virt import event as virtevent
        return virtevent.LifecycleEvent('u1', transition)

    def test_incoming_qemu_gets_its_cookie_on_start(self):
        from nova.virt import event as virtevent
        from nova.virt.libvirt import driver as libvirt_driver

        drv = self._driver(incoming=True)
        with mock.patch.object(libvirt_driver.LibvirtDriver,
                               'emit_event') as parent:
            drv.emit_event(self._event(virtevent.EVENT_LIFECYCLE_STARTED))
        drv._tp_cookies.sync.assert_called_once_with()
        parent.assert_called_once()

    def test_other_events_and_guests_set_nothing(self):
        from nova.virt import event as virtevent
        from nova.virt.libvirt import driver as libvirt_driver

        with mock.patch.object(libvirt_driver.LibvirtDriver, 'emit_event'):
            drv = self._driver(incoming=False)
            drv.emit_event(self._event(virtevent.EVENT_LIFECYCLE_STARTED))
            drv._tp_cookies.sync.assert_not_called()
            drv = self._driver(incoming=True)
            drv.emit_event(self._event(virtevent.EVENT_LIFECYCLE_RESUMED))
            drv._tp_cookies.sync.assert_not_called()

    def test_a_failed_sync_is_logged_not_raised(self):
        from nova.virt import event as virtevent
        from nova.virt.libvirt import driver as libvirt_driver

        drv = self._driver(incoming=True)
        drv._tp_cookies.sync.side_effect = RuntimeError('kernel said no')
        with mock.patch.object(libvirt_driver.LibvirtDriver,
                               'emit_event') as parent, \
                self.assertLogs('nova_tenant_pin.driver', 'ERROR') as logs:
            drv.emit_event(self._event(virtevent.EVENT_LIFECYCLE_STARTED))
        parent.assert_called_once()
        self.assertIn('kernel said no', logs.output[0])


class TestCheckCommand(base.TestCase):
    """``nova-tenant-pin check`` says whether core scheduling is active."""

    def result(self, mode, supported, sched_core='full', **helpers):
        from oslo_config import cfg
        from oslo_privsep import priv_context
        from oslo_upgradecheck import upgradecheck

        from nova_tenant_pin.cmd import check
        from nova_tenant_pin import conf as tp_conf

        conf = cfg.ConfigOpts()
        tp_conf.register_opts(conf)
        for group in ('nova_tenant_pin_privileged',
                      'nova_tenant_pin_core_sched'):
            conf.register_opts(priv_context.OPTS, group=group)
        conf([], default_config_files=[], default_config_dirs=[])
        conf.set_override('core_scheduling', mode, group='tenant_pin')
        for group, command in helpers.items():
            conf.set_override('helper_command', command, group=group)
        why = None if supported else 'this kernel has no core scheduling'
        with mock.patch.object(coresched, 'support',
                               return_value=(supported, why)), \
                mock.patch.object(coresched, 'read_sched_core',
                                  side_effect=[sched_core]), \
                mock.patch('os.geteuid', return_value=1000):
            result = check.TenantPinChecks(conf=conf).check_core_scheduling()
        return result, upgradecheck.Code

    def test_auto_without_kernel_support_is_green_and_says_why(self):
        result, code = self.result('auto', False)
        self.assertEqual(code.SUCCESS, result.code)
        self.assertIn('Not active', result.details)
        self.assertIn('no core scheduling', result.details)

    def test_required_without_kernel_support_fails(self):
        result, code = self.result('required', False)
        self.assertEqual(code.FAILURE, result.code)
        self.assertIn('nova-compute will refuse to start', result.details)

    def test_active_wants_the_second_helper_command(self):
        line = 'sudo nova-rootwrap /etc/nova/rootwrap.conf privsep-helper'
        result, code = self.result(
            'auto', True, nova_tenant_pin_privileged=line)
        self.assertEqual(code.WARNING, result.code)
        self.assertIn('[nova_tenant_pin_core_sched]', result.details)
        result, code = self.result(
            'auto', True, nova_tenant_pin_privileged=line,
            nova_tenant_pin_core_sched=line)
        self.assertEqual(code.SUCCESS, result.code)
        self.assertIn('Active', result.details)

    def test_active_says_what_libvirts_sched_core_adds(self):
        cases = [('auto', 'full', 'SUCCESS', 'sched_core = "full": every '
                  'QEMU holds a cookie of its own'),
                 ('auto', 'none', 'WARNING', 'its guest may run before that'),
                 ('auto', 'vcpus', 'WARNING', 'tags only the vCPU threads'),
                 ('required', 'none', 'FAILURE',
                  'nova-compute will refuse to start'),
                 ('auto', PermissionError(13, 'Permission denied'),
                  'WARNING', 'run check as root')]
        for mode, value, expected, text in cases:
            result, code = self.result(mode, True, sched_core=value)
            self.assertEqual(getattr(code, expected), result.code, value)
            self.assertIn(text, result.details)

    def test_off(self):
        result, code = self.result('off', True)
        self.assertEqual(code.SUCCESS, result.code)
        self.assertIn('core_scheduling = off', result.details)
