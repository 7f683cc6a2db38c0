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

"""Core-scheduling cookies on a real kernel, with real QEMU processes.

Needs root, ``qemu-system-x86_64`` and a kernel with core scheduling on an
SMT host: this project's machines have none, so it runs inside the QEMU test
host booted with the ``CONFIG_SCHED_CORE`` kernel: CI runs it there through
tests/testhost/test_core_scheduling.py (``tools/testhost/run.sh``), and
``tools/schedcore-host.sh`` runs it in a lighter host by hand. Each QEMU
looks to the privileged entrypoint as a libvirt domain does (``-name
guest=NAME -uuid UUID``, a PID file and a status XML with the tenant-pin
metadata, in a run directory of the test's own); the
entrypoint, the cookie planning and the audit run as in production, with
the real ``prctl``. Every check reads each thread's cookie from the kernel
itself (``PR_SCHED_CORE_GET`` on every task in ``/proc/PID/task``).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

import fixtures

from nova_tenant_pin import audit
from nova_tenant_pin import coresched
from nova_tenant_pin import domain_xml
from nova_tenant_pin import privsep
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology

QEMU = shutil.which('qemu-system-x86_64')

STATUS_XML = """<domstatus state='running' pid='%(pid)d'>
  <domain type='qemu'><name>%(name)s</name><uuid>%(uuid)s</uuid>
    <metadata><tenantpin:instance xmlns:tenantpin="%(ns)s" key="%(key)s"
      pin_mode="float" ratio="1.0"/></metadata></domain>
</domstatus>"""


def _task_comm(pid, tid):
    try:
        with open('/proc/%d/task/%s/comm' % (pid, tid)) as f:
            return f.read().strip()
    except OSError:
        return None


def _skip_reason():
    reason = base.requires_root(' to read and set other processes\' cookies')
    if reason:
        return reason
    if QEMU is None:
        return 'needs qemu-system-x86_64'
    supported, why = coresched.support()
    if not supported:
        return ('needs a kernel with core scheduling on an SMT host (%s): '
                'CI runs it inside the test host, tools/testhost/run.sh, '
                'as tests/testhost/test_core_scheduling.py' % why)
    return None


def kernel_cookies(pid):
    """Every thread's cookie, read here from the kernel."""
    prctl = coresched.Prctl()
    return {int(t): prctl.get(int(t))
            for t in os.listdir('/proc/%d/task' % pid)}


def wait_for(predicate, what, timeout=60.0):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError('timed out waiting for %s' % what)
        # Polls a real process's state; nothing to be notified by.
        time.sleep(0.05)


class Qmp:
    """A minimal QMP client."""

    def __init__(self, path):
        self.sock = wait_for(lambda: self._connect(path), 'QMP at %s' % path)
        # A QEMU that stops answering fails the test instead of hanging it.
        self.sock.settimeout(120)
        self.file = self.sock.makefile('rw')
        json.loads(self.file.readline())
        self.call('qmp_capabilities')

    @staticmethod
    def _connect(path):
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            return None
        return sock

    def call(self, command, **arguments):
        msg = {'execute': command}
        if arguments:
            msg['arguments'] = arguments
        self.file.write(json.dumps(msg) + '\n')
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if 'error' in reply:
                raise AssertionError('%s: %s' % (command, reply['error']))
            if 'return' in reply:
                return reply['return']

    def close(self):
        self.sock.close()


class Guest:
    """A real QEMU process of a pretend libvirt domain."""

    def __init__(self, test, run_dir, name, key, incoming=None, user=None,
                 extra=()):
        self.name, self.key = name, key
        self.uuid = str(uuidlib.uuid4())
        self.run_dir = run_dir
        self.qmp_path = os.path.join(test.qmp_dir, '%s-%s.qmp' % (
            os.path.basename(run_dir), name))
        cmd = [QEMU, '-accel', 'tcg,thread=multi', '-machine', 'pc',
               '-cpu', 'qemu64', '-m', '32', '-smp', '1,maxcpus=2',
               '-name', 'guest=%s,debug-threads=on' % name,
               '-uuid', self.uuid, '-nodefaults', '-display', 'none',
               '-object', 'iothread,id=io0', '-S',
               '-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path]
        if incoming:
            cmd += ['-incoming', incoming]
        cmd += list(extra)
        if user is not None:
            cmd = ['setpriv', '--reuid', str(user), '--regid', str(user),
                   '--clear-groups'] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        test.addCleanup(self.stop)
        self.pid = self.proc.pid
        self.qmp = Qmp(self.qmp_path)
        test.addCleanup(self.qmp.close)
        self.write_run_files(key)

    def write_run_files(self, key):
        self.key = key
        with open(os.path.join(self.run_dir, self.name + '.pid'), 'w') as f:
            f.write('%d\n' % self.pid)
        with open(os.path.join(self.run_dir, self.name + '.xml'), 'w') as f:
            f.write(STATUS_XML % {'pid': self.pid, 'name': self.name,
                                  'uuid': self.uuid, 'key': key,
                                  'ns': domain_xml.TP_NS})

    def info(self):
        return domain_xml.DomainInfo(uuid=self.uuid, name=self.name,
                                     active=self.proc.poll() is None,
                                     persistent=True, vcpus=1, key=self.key)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def cookie(self):
        """The one cookie all its threads hold (asserts they do)."""
        values = set(kernel_cookies(self.pid).values())
        assert len(values) == 1, 'threads of %s hold %s' % (self.name,
                                                            values)
        return values.pop()


class TestCookiesOnARealKernel(base.TestCase):

    def setUp(self):
        super().setUp()
        reason = _skip_reason()
        if reason:
            self.skipTest(reason)
        self.tmp = self.useFixture(fixtures.TempDir()).path
        # QMP sockets where a QEMU running as another user can make them.
        self.qmp_dir = tempfile.mkdtemp(prefix='cookie-qmp-', dir='/tmp')
        os.chmod(self.qmp_dir, 0o777)
        self.addCleanup(shutil.rmtree, self.qmp_dir, True)
        self.run_a = os.path.join(self.tmp, 'host-a')
        os.makedirs(self.run_a)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.privsep.LIBVIRT_QEMU_RUN', self.run_a))
        privsep.core_sched_pctxt.set_client_mode(False)
        self.addCleanup(privsep.core_sched_pctxt.set_client_mode, True)
        self.guests = []

    def guest(self, name, key, **kwargs):
        g = Guest(self, kwargs.pop('run_dir', self.run_a), name, key,
                  **kwargs)
        self.guests.append(g)
        return g

    def cookies(self, guests=None, mode=coresched.REQUIRED):
        guests = self.guests if guests is None else guests
        return coresched.CoreCookies(
            mode, lambda: [g.info() for g in guests if g.proc.poll() is None])

    def assert_one_cookie_per_key(self, guests=None):
        by_key = {}
        for g in (self.guests if guests is None else guests):
            if g.proc.poll() is not None:
                continue
            cookie = g.cookie()
            self.assertNotEqual(0, cookie, g.name)
            by_key.setdefault(g.key, set()).add(cookie)
        for key, cookies in by_key.items():
            self.assertEqual(1, len(cookies), 'key %s holds %s'
                             % (key, cookies))
        owners = [c for cs in by_key.values() for c in cs]
        self.assertEqual(len(owners), len(set(owners)), by_key)
        # The process that set them holds none.
        for tid in os.listdir('/proc/self/task'):
            self.assertEqual(0, coresched.Prctl().get(int(tid)))
        return {k: cs.pop() for k, cs in by_key.items()}

    def test_spawn_cont_hotplug_reboot_rekey_restart(self):
        a1 = self.guest('instance-a1', 'A')
        a2 = self.guest('instance-a2', 'A')
        b1 = self.guest('instance-b1', 'B')
        self.assertEqual(3, len(self.cookies().sync()))
        # Paused (-S): every thread holds its key's cookie before the
        # guest's first instruction.
        first = self.assert_one_cookie_per_key()
        for g in self.guests:
            g.qmp.call('cont')
        # A vCPU plugged now is a thread QEMU creates after the cookie was
        # set: it inherits it.
        before = set(kernel_cookies(a1.pid))
        slot = next(c for c in a1.qmp.call('query-hotpluggable-cpus')
                    if 'qom-path' not in c)
        a1.qmp.call('device_add', driver=slot['type'], id='cpu1',
                    **slot['props'])
        new = wait_for(lambda: set(kernel_cookies(a1.pid)) - before,
                       'a new vCPU thread')
        for tid in new:
            self.assertEqual(first['A'], coresched.Prctl().get(tid))
        self.assertEqual(first, self.assert_one_cookie_per_key())

        # Hard reboot: a2's QEMU is replaced; the new one takes A's cookie.
        a2.stop()
        self.guests.remove(a2)
        a2 = self.guest('instance-a2', 'A')
        self.assertEqual(['instance %s of key A: core-scheduling cookie '
                          'shared from domain instance-a1' % a2.uuid],
                         self.cookies().sync())
        self.assertEqual(first, self.assert_one_cookie_per_key())

        # Re-key: a2 joins B (its metadata first, as the manager records
        # it); its threads move to B's cookie.
        a2.write_run_files('B')
        self.cookies().sync()
        self.assertEqual(first, self.assert_one_cookie_per_key())
        self.assertEqual(first['B'], a2.cookie())

        # Restart: a new CoreCookies rebuilds from the threads' cookies and
        # changes nothing.
        self.assertEqual([], self.cookies().sync())
        self.assertEqual(first, self.assert_one_cookie_per_key())
        self.assertEqual(first['A'], a1.cookie())
        self.assertEqual(first['B'], b1.cookie())

    def test_vhost_net_worker_holds_its_guests_cookie(self):
        """A vhost-net device (a tap of the test's own, never up, no
        traffic): Linux before 6.4 serves it with a kernel thread
        ``vhost-<QEMU pid>``, a child of kthreadd that inherits no cookie
        from QEMU, and the cookie is shared to it by hand; from 6.4 the
        worker is a task of the QEMU and is covered with the QEMU's
        threads. Either way it ends on its guest's key's cookie."""
        tap = 'ntpvh%d' % (os.getpid() % 100000)
        a1 = self.guest('instance-a1', 'A', extra=[
            '-netdev', 'tap,id=n0,ifname=%s,script=no,downscript=no,'
            'vhost=on' % tap, '-device', 'virtio-net-pci,netdev=n0'])
        b1 = self.guest('instance-b1', 'B')

        def workers():
            kthreads = coresched.kernel_workers(a1.pid)
            own = [int(t) for t in os.listdir('/proc/%d/task' % a1.pid)
                   if _task_comm(a1.pid, t) == 'vhost-%d' % a1.pid]
            return (kthreads, own) if kthreads or own else None
        kthreads, own = wait_for(workers, 'the vhost worker of QEMU %d'
                                 % a1.pid)
        release = os.uname().release
        sys.stderr.write('kernel %s: vhost workers of QEMU %d: kernel '
                         'threads %s (cookies %s), QEMU tasks %s\n' % (
                             release, a1.pid, kthreads,
                             [coresched.Prctl().get(w) for w in kthreads],
                             own))
        for worker in kthreads:
            self.assertEqual(0, coresched.Prctl().get(worker))
        self.cookies().sync()
        first = self.assert_one_cookie_per_key()
        self.assertNotEqual(first['A'], b1.cookie())
        for worker in kthreads + own:
            self.assertEqual(first['A'], coresched.Prctl().get(worker),
                             'vhost worker %d' % worker)

    def test_audit_catches_a_cookie_changed_by_hand(self):
        a1 = self.guest('instance-a1', 'A')
        b1 = self.guest('instance-b1', 'B')
        self.cookies().sync()
        host = topology.HostTopology.from_sysfs()
        keys = {a1.pid: 'A', b1.pid: 'B'}
        auditor = audit.HostAuditor(
            host, (), pid_keys=keys.get,
            cookie_reader=coresched.direct_reader())

        def cookie_violations():
            snapshot = {k: [t for t in tasks if t.pid in keys]
                        for k, tasks in auditor.snapshot().items()}
            return auditor.check_cookies(snapshot)

        self.assertEqual([], cookie_violations())
        victim = next(t for t in kernel_cookies(b1.pid) if open(
            '/proc/%d/task/%d/comm' % (b1.pid, t)).read().strip() ==
            'IO io0')

        def give_a_cookie_to_victim():
            prctl = coresched.Prctl()
            prctl.share_from(a1.pid)
            prctl.share_to(victim, coresched.PIDTYPE_PID)
        coresched._in_own_thread(give_a_cookie_to_victim)
        found = cookie_violations()
        self.assertEqual([coresched.SPLIT_COOKIE, coresched.SHARED_COOKIE],
                         [v.kind for v in found])
        self.assertEqual((victim,), found[0].tids)
        self.assertIn(victim, found[1].tids)
        # The next sync repairs it.
        self.cookies().sync()
        self.assertEqual([], cookie_violations())

    def test_live_migration_target_holds_the_cookie_before_it_runs(self):
        src = self.guest('instance-m', 'A')
        other = self.guest('instance-o', 'B')
        self.cookies().sync()
        self.assertEqual(2, len(self.assert_one_cookie_per_key()))
        src.qmp.call('cont')
        # The target host: its own run directory, the same domain name,
        # QEMU waiting for the guest's memory.
        run_b = os.path.join(self.tmp, 'host-b')
        os.makedirs(run_b)
        sock = socket.socket()
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
        sock.close()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.privsep.LIBVIRT_QEMU_RUN', run_b))
        dst = Guest(self, run_b, 'instance-m', 'A', incoming='defer')
        host_b = [dst, other]
        # What the driver does on the target's lifecycle event: the
        # incoming QEMU gets its key's cookie while it waits.
        self.cookies(guests=[dst]).sync()
        self.assertEqual('inmigrate', dst.qmp.call('query-status')['status'])
        cookie = dst.cookie()
        self.assertNotEqual(0, cookie)
        dst.qmp.call('migrate-incoming', uri='tcp:127.0.0.1:%d' % port)
        src.qmp.call('migrate', uri='tcp:127.0.0.1:%d' % port)
        # As libvirt does: the target QEMU (started with -S) stays paused
        # when the memory has arrived, until it is told to run.
        wait_for(lambda: dst.qmp.call('query-status')['status'] == 'paused',
                 'the guest\'s memory on the target')
        self.assertEqual(cookie, dst.cookie())
        dst.qmp.call('cont')
        wait_for(lambda: dst.qmp.call('query-status')['status'] == 'running',
                 'the guest to run on the target')
        self.assertEqual(cookie, dst.cookie())
        self.assertNotEqual(other.cookie(), dst.cookie())
        self.assert_one_cookie_per_key(host_b)

    def test_reading_another_users_qemu_needs_cap_sys_ptrace_only(self):
        g = self.guest('instance-u', 'A', user=65534)
        self.cookies().sync()
        cookie = g.cookie()
        read = ('import sys; from nova_tenant_pin import coresched; '
                'print(coresched.thread_cookies(int(sys.argv[1]), '
                'coresched.Prctl()))')

        def run(caps):
            return subprocess.run(
                ['setpriv', '--bounding-set', caps, '--inh-caps', '-all',
                 sys.executable, '-c', read,
                 str(g.pid)], capture_output=True, text=True)

        allowed = run('-all,+sys_ptrace')
        self.assertEqual(0, allowed.returncode, allowed.stderr)
        self.assertIn(str(cookie), allowed.stdout)
        refused = run('-all')
        self.assertNotEqual(0, refused.returncode)
        self.assertIn('Operation not permitted', refused.stderr)
