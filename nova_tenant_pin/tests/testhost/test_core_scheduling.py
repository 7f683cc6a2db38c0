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

"""Core-scheduling cookies on libvirt's own guests, in the test host (its
kernel has core scheduling).

The domains are real libvirt domains of the test host's libvirtd, with the
tenant-pin metadata; the privileged entrypoint runs in-process as root and
reads libvirt's real PID files and status XML, and in one test in its own
privsep daemon with only CAP_SYS_PTRACE, as a deployment runs it. Every
check reads each QEMU thread's cookie from the kernel
(``PR_SCHED_CORE_GET`` on every task of ``/proc/PID/task``), not from the
code that set them.
"""

import argparse
import io
import os
import sys
from unittest import mock
import uuid

import libvirt

from nova_tenant_pin import cgroups
from nova_tenant_pin.cmd import adopt
from nova_tenant_pin.cmd import release
from nova_tenant_pin import coresched
from nova_tenant_pin import domain_xml
from nova_tenant_pin import exception
from nova_tenant_pin import privsep
from nova_tenant_pin.tests import enforcement_fixtures
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf
from nova_tenant_pin.tests.integration import test_core_scheduling_real as real
from nova_tenant_pin.tests.testhost import base
from nova_tenant_pin import topology

VIR_DOMAIN_START_PAUSED = 1
VIR_DOMAIN_AFFECT_LIVE = 1
VIR_DOMAIN_AFFECT_CONFIG = 2


def kernel_cookies(pid):
    prctl = coresched.Prctl()
    return {int(t): prctl.get(int(t))
            for t in os.listdir('/proc/%d/task' % pid)}


def capabilities(pid):
    """``(CapEff, CapPrm)`` of ``pid`` from /proc, as integers."""
    caps = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('CapEff', 'CapPrm'):
                caps[key] = int(value.strip(), 16)
    return caps['CapEff'], caps['CapPrm']


def qemu_pid(name):
    with open('/run/libvirt/qemu/%s.pid' % name) as f:
        return int(f.read())


class TestCookiesOnLibvirtGuests(base.TestHostTestCase):

    def setUp(self):
        super().setUp()
        self.libvirt = self.useFixture(base.SystemLibvirtFixture())
        privsep.core_sched_pctxt.set_client_mode(False)
        self.addCleanup(privsep.core_sched_pctxt.set_client_mode, True)

    def start(self, name, key):
        dom = self.libvirt.define(lvf.tiny_domain_xml(
            name, vcpus=2, metadata=lvf.tenant_pin_metadata(key)),
            start=False)
        # As the driver starts every guest: paused until it has its cookie.
        dom.createWithFlags(VIR_DOMAIN_START_PAUSED)
        return dom

    def cookies(self):
        conn = self.libvirt.conn
        return coresched.CoreCookies(
            coresched.REQUIRED, lambda: [domain_xml.parse_domain_xml(
                d.XMLDesc(0), active=bool(d.isActive()))
                for d in conn.listAllDomains() if d.isActive()])

    def by_key(self, doms):
        """``{key: cookie}`` after asserting that every thread of every
        QEMU of a key holds one non-zero cookie, distinct across keys."""
        found = {}
        for dom, key in doms:
            values = set(kernel_cookies(qemu_pid(dom.name())).values())
            self.assertEqual(1, len(values), '%s: %s' % (dom.name(), values))
            found.setdefault(key, set()).update(values)
        for key, values in found.items():
            self.assertEqual(1, len(values), 'key %s: %s' % (key, values))
            self.assertNotIn(0, values)
        result = {k: v.pop() for k, v in found.items()}
        self.assertEqual(len(result), len(set(result.values())), result)
        for tid in os.listdir('/proc/self/task'):
            self.assertEqual(0, coresched.Prctl().get(int(tid)))
        return result

    def test_spawn_reboot_rekey_restart(self):
        a1 = self.start('cookie-a1', 'tenant-a')
        a2 = self.start('cookie-a2', 'tenant-a')
        b1 = self.start('cookie-b1', 'tenant-b')
        self.assertEqual(3, len(self.cookies().sync()))
        doms = [(a1, 'tenant-a'), (a2, 'tenant-a'), (b1, 'tenant-b')]
        first = self.by_key(doms)
        for dom in (a1, a2, b1):
            dom.resume()
        self.assertEqual(first, self.by_key(doms))

        # Hard reboot: a new QEMU for a2 takes key a's cookie.
        a2.destroy()
        a2.createWithFlags(VIR_DOMAIN_START_PAUSED)
        self.assertEqual(1, len(self.cookies().sync()))
        a2.resume()
        self.assertEqual(first, self.by_key(doms))

        # Re-key: the manager records a2's new key in its live metadata
        # (libvirt's status XML), then the cookies follow.
        a2.setMetadata(2, domain_xml.metadata_xml('tenant-b', 'float', 1.0),
                       domain_xml.TP_PREFIX, domain_xml.TP_NS,
                       VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CONFIG)
        self.cookies().sync()
        doms[1] = (a2, 'tenant-b')
        self.assertEqual(first, self.by_key(doms))

        # Restart: rebuilt from the threads' cookies, nothing changes.
        self.assertEqual([], self.cookies().sync())
        self.assertEqual(first, self.by_key(doms))

    def test_entrypoint_refuses_a_key_libvirt_does_not_record(self):
        dom = self.start('cookie-x', 'tenant-a')
        self.assertRaises(privsep.exception.InvalidArgument,
                          privsep.set_core_cookie, 'cookie-x', 'tenant-b')
        self.assertEqual({0}, set(kernel_cookies(
            qemu_pid(dom.name())).values()))
        privsep.set_core_cookie('cookie-x', 'tenant-a')
        self.assertNotIn(0, set(kernel_cookies(
            qemu_pid(dom.name())).values()))

    def test_through_the_real_daemon_with_only_cap_sys_ptrace(self):
        """The cookie context as a deployment runs it: its own privsep
        daemon (privsep-helper, started on the first call), holding
        CAP_SYS_PTRACE and nothing else, sets the cookies of libvirt's
        guests, refuses a key libvirt does not record, and keeps no
        cookie itself."""
        daemon = self.useFixture(enforcement_fixtures.PrivsepDaemon(
            self.conf_fixture, context=privsep.core_sched_pctxt))
        pid = daemon.start()
        cap_sys_ptrace = 1 << 19
        self.assertEqual((cap_sys_ptrace, cap_sys_ptrace),
                         capabilities(pid))
        a = self.start('cookie-d-a', 'tenant-a')
        b = self.start('cookie-d-b', 'tenant-b')
        self.assertEqual(2, len(self.cookies().sync()))
        first = self.by_key([(a, 'tenant-a'), (b, 'tenant-b')])
        self.assertRaises(privsep.exception.InvalidArgument,
                          privsep.set_core_cookie, 'cookie-d-a', 'tenant-b')
        self.assertEqual(first, self.by_key([(a, 'tenant-a'),
                                             (b, 'tenant-b')]))
        prctl = coresched.Prctl()
        for tid in os.listdir('/proc/%d/task' % pid):
            self.assertEqual(0, prctl.get(int(tid)), 'daemon thread %s'
                             % tid)


class TestAdoptAndReleaseCookies(base.TestHostTestCase):
    """``nova-tenant-pin adopt`` and ``release`` (their own code, run here
    as an operator runs them: root, the partitions through the real
    privsep daemon) on guests the stock driver started: adopt gives every
    QEMU thread its key's cookie, one per key, distinct across keys, and a
    second run changes nothing; release takes them away again."""

    def setUp(self):
        super().setUp()
        self.libvirt = self.useFixture(base.SystemLibvirtFixture())
        self.useFixture(enforcement_fixtures.PrivsepDaemon(
            self.conf_fixture))
        privsep.core_sched_pctxt.set_client_mode(False)
        self.addCleanup(privsep.core_sched_pctxt.set_client_mode, True)
        self.flags(core_scheduling='required')
        self.tag = uuid.uuid4().hex[:6]
        self.partitions = cgroups.get_partitions()
        self.projects = ['adopt-a-' + self.tag, 'adopt-b-' + self.tag]
        # After the domains are gone (cleanups run last first).
        self.addCleanup(self._remove_partitions)

    def _remove_partitions(self):
        lvf.remove_domains(self.libvirt.conn, self.libvirt.defined)
        for project in self.projects:
            lvf.wait_for(lambda: self._removed(project),
                         'partition of %s to empty' % project,
                         lvf.CGROUP_EMPTY_TIMEOUT)

    def _removed(self, project):
        try:
            self.partitions.remove_partition(project)
        except exception.PartitionBusy:
            return False
        return True

    def stock_guest(self, name, project):
        """A running guest as Nova's stock driver starts it: no partition,
        no pins, the owner-project metadata only."""
        return self.libvirt.define(lvf.tiny_domain_xml(
            '%s-%s' % (name, self.tag), vcpus=2,
            metadata=lvf.nova_owner_metadata(project)))

    def reader(self, args, read_only, options=True):
        return adopt.Host(
            topology.HostTopology.from_sysfs(), self.partitions,
            libvirt.open(base.SYSTEM_URI),
            {'housekeeping_cpus': (0, 1)} if options else {}, None)

    def run_command(self, command, **kwargs):
        out = io.StringIO()
        with mock.patch('sys.stdout', out):
            status = command.run(argparse.Namespace(
                dry_run=False, libvirt_uri=base.SYSTEM_URI, **kwargs),
                reader=self.reader)
        sys.stderr.write(out.getvalue())
        return status, out.getvalue()

    def test_adopt_gives_one_cookie_per_key_and_release_takes_them(self):
        a, b = self.projects
        doms = [(self.stock_guest('adopt-a1', a), a),
                (self.stock_guest('adopt-a2', a), a),
                (self.stock_guest('adopt-b1', b), b)]
        for dom, _key in doms:
            self.assertEqual({0}, set(kernel_cookies(
                qemu_pid(dom.name())).values()))
        status, out = self.run_command(adopt, housekeeping_cpus=None)
        self.assertEqual(0, status, out)
        self.assertEqual(3, out.count('core-scheduling cookie'), out)
        first = TestCookiesOnLibvirtGuests.by_key(self, doms)
        pids = {dom.name(): qemu_pid(dom.name()) for dom, _key in doms}
        threads = {name: set(kernel_cookies(pid)) for name, pid in
                   pids.items()}

        # A second run: nothing to do, the same cookies on the same
        # threads.
        status, out = self.run_command(adopt, housekeeping_cpus=None)
        self.assertEqual(0, status, out)
        self.assertNotIn('cookie', out)
        self.assertEqual(first, TestCookiesOnLibvirtGuests.by_key(
            self, doms))
        self.assertEqual(threads, {name: set(kernel_cookies(pid)) for
                                   name, pid in pids.items()})

        # release: libvirt's sched_core is unset here, so every thread of
        # every QEMU is back to no cookie, and the keys are dropped.
        status, out = self.run_command(release, cpus=None,
                                       keep_housekeeping=True)
        self.assertEqual(0, status, out)
        self.assertEqual(3, out.count('core-scheduling cookie cleared'), out)
        for dom, _key in doms:
            self.assertEqual({0}, set(kernel_cookies(
                qemu_pid(dom.name())).values()), dom.name())
            self.assertIsNone(domain_xml.parse_domain_xml(
                dom.XMLDesc(0)).isolation_key)


class TestCookiesOnQemuProcesses(real.TestCookiesOnARealKernel):
    """The real-kernel tests of plain QEMU processes (vCPU hot-plug, a
    QEMU-to-QEMU live migration, the audit catching a cookie changed by
    hand, CAP_SYS_PTRACE), run here so that CI runs them."""

    def setUp(self):
        if not base.in_test_host():
            self.skipTest(base.SKIP_REASON)
        super().setUp()
