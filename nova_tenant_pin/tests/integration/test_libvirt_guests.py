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

"""Real libvirtd + QEMU guests: what the kernel reports for their threads.

These tests need root and the Debian packages of tools/setup-host.sh; CI
runs them. With no usable /dev/kvm the guests run under TCG, which pins the
same way.
"""

import os
import sys
import threading

import libvirt

from nova_tenant_pin import audit
from nova_tenant_pin import guests as tp_guests
from nova_tenant_pin import procfs
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf
from nova_tenant_pin import topology


def qemu_pid(dom):
    with open('/run/libvirt/qemu/%s.pid' % dom.name()) as f:
        return int(f.read().strip())


class TestRealGuests(base.TestCase):

    def setUp(self):
        super().setUp()
        host = lvf.require_real_host(self)
        self.libvirt = self.useFixture(lvf.LibvirtdFixture())
        self.cpus = sorted(host.online_cpus)

    def test_vcpu_cpuset_confines_every_qemu_thread(self):
        """<vcpu cpuset> confines vCPU, emulator and I/O threads alike."""
        name = 'ntp-itest-%d' % os.getpid()
        dom = self.libvirt.define(lvf.tiny_domain_xml(
            name, vcpus=2, cpuset=str(self.cpus[-1])))
        tasks = procfs.threads(qemu_pid(dom))
        vcpus = [t for t in tasks if t.vcpu is not None]
        self.assertEqual([0, 1], sorted(t.vcpu for t in vcpus))
        for task in tasks:
            if task.comm.startswith('kvm-nx-lpage'):
                continue  # a kernel worker the KVM module adds
            self.assertEqual(frozenset([self.cpus[-1]]), task.allowed_cpus,
                             '%s (%d) may run on %s' % (
                                 task.comm, task.tid,
                                 sorted(task.allowed_cpus)))
        self.assertIn('machine', tasks[0].cpuset_cgroup)

    def test_live_vcpu_pin_is_what_the_kernel_enforces(self):
        name = 'ntp-itest-pin-%d' % os.getpid()
        dom = self.libvirt.define(lvf.tiny_domain_xml(name, vcpus=1))
        cpu = self.cpus[0]
        cpumap = tuple(c == cpu for c in range(max(self.cpus) + 1))
        dom.pinVcpuFlags(0, cpumap, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        vcpu = [t for t in procfs.threads(qemu_pid(dom))
                if t.vcpu == 0][0]
        self.assertEqual(frozenset([cpu]), vcpu.allowed_cpus)


_EVENT_LOOP = []
_EVENT_LOOP_LOCK = threading.Lock()


def event_loop():
    """libvirt's default event loop, run in a daemon thread as
    nova-compute runs it; once per process (it cannot be unregistered,
    and a connection opened after it relies on it for keepalives)."""
    with _EVENT_LOOP_LOCK:
        if not _EVENT_LOOP:
            libvirt.virEventRegisterDefaultImpl()

            def run():
                while True:
                    libvirt.virEventRunDefaultImpl()
            thread = threading.Thread(target=run, name='libvirt-events',
                                      daemon=True)
            thread.start()
            _EVENT_LOOP.append(thread)


class TestGuestReadingsFollowEvents(base.TestCase):
    """The domain readings on real libvirtd: a domain nobody changed is
    not read again; a change someone else makes (``virsh vcpupin``) is
    read once libvirt's event for it arrives."""

    def setUp(self):
        super().setUp()
        host = lvf.require_real_host(self)
        self.libvirt = self.useFixture(lvf.LibvirtdFixture())
        self.cpus = sorted(host.online_cpus)
        event_loop()
        # Opened after the event loop: it can deliver events.
        self.conn = libvirt.open(self.libvirt.uri)
        self.addCleanup(self.conn.close)
        self.guests = tp_guests.Guests(lambda: self.conn, self.cpus)

    def test_a_pin_made_elsewhere_is_read_after_its_event(self):
        name = 'ntp-itest-events-%d' % os.getpid()
        dom = self.libvirt.define(lvf.tiny_domain_xml(name, vcpus=1))
        uuid = dom.UUIDString()
        self.assertIn(uuid, self.guests.read())
        self.assertTrue(self.guests._watching,
                        'the connection registered no events')
        reads = self.guests.xml_reads
        self.guests.read()
        self.guests.read()
        self.assertEqual(reads, self.guests.xml_reads)
        # Someone else pins the vCPU, on another connection.
        cpu = self.cpus[-1]
        other = self.libvirt.conn.lookupByUUIDString(uuid)
        other.pinVcpuFlags(0, tuple(c == cpu for c in range(cpu + 1)),
                           libvirt.VIR_DOMAIN_AFFECT_LIVE)
        lvf.wait_for(
            lambda: self.guests.read()[uuid].info.vcpu_pins.get(0) ==
            frozenset([cpu]), 'the tunable event of the new pin', 30)
        self.assertEqual(reads + 1, self.guests.xml_reads)


class TestSamplerOnRealGuests(base.TestCase):
    """The exposure sampler against real QEMU threads.

    Two guests stand for two tenants, one per core (this machine may have a
    single thread per core, so a core is one CPU here). The sampler must see
    them clean while they stay apart, and must see the window that the
    naive way of migrating (drop the pins, re-pin later) opens.
    """

    def setUp(self):
        super().setUp()
        self.host = lvf.require_real_host(self, min_cores=2)
        self.libvirt = self.useFixture(lvf.LibvirtdFixture())
        self.core_a, self.core_b = self.host.cores[0], self.host.cores[-1]
        suffix = os.getpid()
        self.dom_a = self.libvirt.define(lvf.tiny_domain_xml(
            'ntp-sampler-a-%d' % suffix, vcpus=2,
            cpuset=topology.format_cpu_list(self.core_a.cpus)))
        self.dom_b = self.libvirt.define(lvf.tiny_domain_xml(
            'ntp-sampler-b-%d' % suffix, vcpus=2,
            cpuset=topology.format_cpu_list(self.core_b.cpus)))
        tenants = {qemu_pid(self.dom_a): 'a', qemu_pid(self.dom_b): 'b'}
        self.auditor = audit.HostAuditor(self.host,
                                         pid_keys=tenants.get)

    def cpumap(self, cpus):
        size = max(self.host.online_cpus) + 1
        return tuple(c in cpus for c in range(size))

    def test_apart_is_clean(self):
        report = audit.Sampler([self.auditor]).run(
            _after_samples(500), max_seconds=30)
        sys.stderr.write('sampler: %d samples at %.0f Hz\n'
                         % (report.samples, report.rate_hz))
        self.assertEqual(500, report.samples)
        self.assertEqual(0, report.violating_samples, report.to_dict())

    def test_naive_unpin_then_repin_opens_a_window(self):
        """Dropping a guest's pins, even for a moment, is seen."""
        everything = self.cpumap(self.host.online_cpus)
        home = self.cpumap(self.core_b.cpus)
        done = threading.Event()
        result = {}

        def sample():
            result['report'] = audit.Sampler([self.auditor]).run(
                done.is_set, max_seconds=30)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            for vcpu in range(2):
                self.dom_b.pinVcpuFlags(vcpu, everything,
                                        libvirt.VIR_DOMAIN_AFFECT_LIVE)
            # The window stays open until the sampler has seen it.
            lvf.wait_for(lambda: self.auditor.check(self.auditor.snapshot()),
                         'the sampler to see the window', 10)
            for vcpu in range(2):
                self.dom_b.pinVcpuFlags(vcpu, home,
                                        libvirt.VIR_DOMAIN_AFFECT_LIVE)
            self.assertEqual([], self.auditor.check(
                self.auditor.snapshot()))
        finally:
            done.set()
            sampler.join()
        report = result['report']
        sys.stderr.write('naive window: %s ms over %d samples at %.0f Hz\n'
                         % (['%.2f' % w for w in report.windows_ms],
                            report.samples, report.rate_hz))
        self.assertGreater(report.violating_samples, 0)
        self.assertEqual(1, len(report.windows_ms))
        self.assertEqual(audit.SHARED_CORE, report.first_violations[0].kind)


def _after_samples(n):
    calls = iter(range(n + 1))
    return lambda: next(calls) >= n


class TestSecondHost(base.TestCase):

    def setUp(self):
        super().setUp()
        lvf.require_real_host(self)
        for tool in ('/usr/bin/unshare', '/usr/bin/mount'):
            if not os.path.exists(tool):
                self.skipTest('needs %s' % tool)
        self.host_a = self.useFixture(lvf.LibvirtdFixture())
        self.host_b = self.useFixture(lvf.SecondHostFixture(
            'ntp-hostb-%d' % os.getpid()))

    def test_live_migration_moves_the_guest_into_host_b_cgroups(self):
        name = 'ntp-migrate-%d' % os.getpid()
        dom = self.host_a.define(lvf.tiny_domain_xml(name, vcpus=1))
        before = procfs.threads(qemu_pid(dom))[0].cpuset_cgroup
        self.assertTrue(before.startswith('/machine/'), before)
        lvf.migrate(dom, self.host_b)
        moved = self.host_b.conn.lookupByName(name)
        self.assertTrue(moved.isActive())
        pid = int(open(os.path.join(
            self.host_b.dir, 'run_libvirt', 'qemu', name + '.pid')).read())
        cgroup = procfs.threads(pid)[0].cpuset_cgroup
        self.assertTrue(cgroup.startswith(self.host_b.cgroup_prefix +
                                          '/machine/'), cgroup)
        self.assertRaises(libvirt.libvirtError,
                          self.host_a.conn.lookupByName, name)
