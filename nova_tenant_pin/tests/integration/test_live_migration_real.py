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

"""Real live migration between two libvirt hosts on this machine, with the
exposure sampler watching both.

Host A is a private libvirtd; host B a second one in its own mount and cgroup
namespaces (its guests live under ``/<hostB>/machine``). Each host has its
own TenantPinManager and CgroupPartitions, with the real privsep daemon.
The protocol is this project's (the same functions the driver uses):

1. the target claims room for the tenant and creates or widens its
   partition before anything starts there;
2. the source's XML loses its per-vCPU pins, keeps the partition, and gets
   the target's CPUs as ``<vcpu cpuset>``;
3. the target QEMU starts inside the tenant's partition;
4. after arrival the target re-pins and the source releases.

The sampler reads every QEMU thread of both hosts from /proc the whole time;
the hosts share this machine's CPUs, so each host is judged on its own
threads. The naive protocol (drop pins, migrate unconfined, re-pin after
arrival) runs under the same sampler and must show a window.

Needs root, libvirtd, QEMU and unshare (tools/setup-host.sh); CI runs it.
"""

import os
import sys
import threading
import uuid

import libvirt
from lxml import etree

from nova_tenant_pin import audit
from nova_tenant_pin import cgroupfs
from nova_tenant_pin import cgroups
from nova_tenant_pin import domain_xml
from nova_tenant_pin import exception
from nova_tenant_pin import manager as manager_mod
from nova_tenant_pin import procfs
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf


class Host:
    """One simulated compute host: libvirt, partitions, manager, audit."""

    def __init__(self, test, name, conn, cgroup_root, run_dir, defined,
                 prefix=None, key_metadata=False):
        self.test = test
        self.key_metadata = key_metadata
        self.name = name
        self.conn = conn
        self.cgroup_root = cgroup_root
        self.run_dir = run_dir
        self.defined = defined
        self.partitions = cgroups.CgroupPartitions(root=cgroup_root)
        self.manager = manager_mod.TenantPinManager(
            test.topology, self.partitions, lambda: self.conn,
            housekeeping_cpus=(), name=name)
        # Where libvirt puts the host's guests (``/machine.slice`` under
        # systemd with machined).
        prefix = prefix or cgroup_root.rstrip('/') + '/machine'
        self.names = {}
        self.auditor = audit.HostAuditor(test.topology, cgroup_prefix=prefix,
                                         pid_keys=self.tenant_of_pid)

    def tenant_of_pid(self, pid):
        """Unpartitioned guests (the naive protocol) by their name."""
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                args = f.read().decode(errors='replace').split('\0')
        except OSError:
            return None
        for arg in args:
            if arg.startswith('guest='):
                return self.names.get(arg[len('guest='):].split(',')[0])
        return None

    def boot(self, tenant, vcpus=1):
        inst, dom = lvf.boot_confined(self.conn, self.manager, tenant, vcpus,
                                      prefix='mig', defined=self.defined,
                                      key_metadata=self.key_metadata)
        self.names[dom.name()] = tenant
        return inst, dom

    def boot_unpartitioned(self, tenant, cpus, vcpus=1):
        """A guest pinned by <vcpu cpuset> only, as the naive way runs."""
        name = 'naive-%s' % uuid.uuid4().hex[:8]
        self.names[name] = tenant
        dom = self.conn.defineXML(lvf.tiny_domain_xml(
            name, vcpus=vcpus, cpuset=lvf.format_cpus(cpus),
            emulator_cpus=lvf.format_cpus(cpus)))
        self.defined.append(name)
        dom.create()
        return dom

    def qemu_threads(self, dom):
        with open(os.path.join(self.run_dir, 'qemu',
                               dom.name() + '.pid')) as f:
            return procfs.threads(int(f.read()))


def sample_during(test, hosts, action, max_seconds=120):
    """Run ``action`` while the exposure sampler reads every QEMU thread
    of ``hosts`` (each judged on its own guests); print and return the
    sampler's report."""
    done = threading.Event()
    result = {}

    def run():
        result['report'] = audit.Sampler(
            [host.auditor for host in hosts]).run(
                done.is_set, max_seconds=max_seconds)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        action()
    finally:
        done.set()
        thread.join()
    report = result['report']
    sys.stderr.write(
        '%s: %d samples at %.0f Hz, %d violating, windows %s ms, %s\n'
        % (test.id().rsplit('.', 1)[-1], report.samples, report.rate_hz,
           report.violating_samples,
           ['%.1f' % w for w in report.windows_ms],
           [str(v) for v in report.first_violations[:2]]))
    return report


class TestLiveMigration(base.TestCase):

    def setUp(self):
        super().setUp()
        self.topology = lvf.require_real_host(self, min_cores=2)
        a = self.useFixture(lvf.LibvirtdFixture())
        b = self.useFixture(lvf.SecondHostFixture(
            'ntp-hostb-%s' % uuid.uuid4().hex[:8]))
        self.b_fixture = b
        self.useFixture(enforcement_fixtures.PrivsepDaemon(
            self.conf_fixture))
        self.host_a = Host(self, 'hostA', a.conn, '/', '/run/libvirt',
                           a.defined)
        self.host_b = Host(self, 'hostB', b.conn, b.cgroup_prefix,
                           os.path.join(b.dir, 'run_libvirt'), [])
        self.tag = uuid.uuid4().hex[:6]
        self.tenants = set()
        self.addCleanup(self._cleanup)

    def tenant(self, letter):
        name = 'mig-%s-%s' % (letter, self.tag)
        self.tenants.add(name)
        return name

    def _cleanup(self):
        for host in (self.host_a, self.host_b):
            for dom in host.conn.listAllDomains():
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
        # Host B's whole subtree goes with its fixture; host A's
        # partitions go here, bottom-up.
        for tenant in self.tenants:
            for hierarchy in cgroupfs.detect_layout().ordered():
                lvf.remove_cgroup_tree(
                    hierarchy.path('/', cgroupfs.partition_dir(tenant)))

    def sample_during(self, action):
        return sample_during(self, [self.host_a, self.host_b], action)

    def test_migration_with_no_exposure_window(self):
        a, b, c = self.tenant('a'), self.tenant('b'), self.tenant('c')
        inst, dom = self.host_a.boot(a)
        qemu_pid_a = self.host_a.qemu_threads(dom)[0].pid
        self.host_a.boot(b)
        self.host_b.boot(c)
        seen = {}

        def partition_before_migration(pins):
            seen['partition'] = self.host_b.partitions.list_partitions(
            ).get(a)

        def migrate():
            seen['pins'], seen['xml'] = lvf.migrate_confined(
                dom, inst, a, 1, self.host_a.manager, self.host_b.manager,
                self.b_fixture.uri, on_claimed=partition_before_migration)

        report = self.sample_during(migrate)
        self.assertEqual(0, report.violating_samples,
                         [str(v) for v in report.first_violations])
        self.assertGreater(report.samples, 10)
        # The target partition existed, with the tenant's CPUs, before the
        # migration started; the target XML named it, with no source pins.
        self.assertIsNotNone(seen['partition'])
        self.assertEqual(seen['pins'].cpus, seen['partition'].cpus)
        root = etree.fromstring(seen['xml'].encode())
        self.assertEqual(domain_xml.PARTITION_PREFIX + a,
                         root.findtext('./resource/partition'))
        self.assertEqual([], root.findall('./cputune/vcpupin'))
        # On B the guest runs in its partition, apart from tenant c, and
        # the sampler watched it there (not only on A).
        moved = self.host_b.conn.lookupByUUIDString(inst)
        threads_b = self.host_b.qemu_threads(moved)
        for task in threads_b:
            self.assertIn('/tenant-%s.partition/' % a, task.cpuset_cgroup)
        self.assertIn(threads_b[0].pid, report.guests_seen[1])
        self.assertIn(qemu_pid_a, report.guests_seen[0])
        b_map = self.host_b.manager.tenant_map()
        self.assertFalse(self.topology.cores_of(b_map[a]) &
                         self.topology.cores_of(b_map[c]))
        # A let go of the tenant: no partition, no claim.
        self.assertNotIn(a, self.host_a.manager.tenant_map())
        self.assertNotIn(a, self.host_a.partitions.list_partitions())
        self.assertTrue(self.host_b.auditor.audit().clean)

    def test_naive_protocol_opens_a_window(self):
        """Drop the pins, migrate unconfined, re-pin after arrival: the
        way first proposed. The same sampler sees the exposure."""
        a, b, c = self.tenant('a'), self.tenant('b'), self.tenant('c')
        core_0, core_1 = (set(core.cpus) for core in
                          (self.topology.cores[0], self.topology.cores[-1]))
        dom = self.host_a.boot_unpartitioned(a, core_0)
        self.host_a.boot_unpartitioned(b, core_1)
        self.host_b.boot_unpartitioned(c, core_1)
        everything = set(self.topology.online_cpus)
        size = max(everything) + 1

        def cpumap(cpus):
            return tuple(cpu in cpus for cpu in range(size))

        def migrate():
            dom.pinVcpuFlags(0, cpumap(everything),
                             libvirt.VIR_DOMAIN_AFFECT_LIVE)
            dom.pinEmulator(cpumap(everything),
                            libvirt.VIR_DOMAIN_AFFECT_LIVE)
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
            root = etree.fromstring(xml.encode())
            root.find('./vcpu').attrib.pop('cpuset', None)
            for tune in root.findall('./cputune'):
                root.remove(tune)
            lvf.migrate(dom, self.b_fixture,
                        etree.tostring(root, encoding='unicode'))
            moved = self.host_b.conn.lookupByName(dom.name())
            moved.pinVcpuFlags(0, cpumap(core_0),
                               libvirt.VIR_DOMAIN_AFFECT_LIVE)
            moved.pinEmulator(cpumap(core_0), libvirt.VIR_DOMAIN_AFFECT_LIVE)

        report = self.sample_during(migrate)
        self.assertGreater(report.violating_samples, 0)
        self.assertGreater(report.longest_window_ms, 0.0)
        self.assertEqual(audit.SHARED_CORE, report.first_violations[0].kind)

    def test_refusing_target_leaves_the_guest_on_the_source(self):
        a, b, c, d = (self.tenant(x) for x in 'abcd')
        inst, dom = self.host_a.boot(a)
        self.host_a.boot(b)
        self.host_b.boot(c)
        self.host_b.boot(d)  # host B is full
        self.assertRaises(exception.TenantDoesNotFit,
                          self.host_b.manager.claim_incoming_migration,
                          inst, a, 1)
        self.assertNotIn(a, self.host_b.partitions.list_partitions())
        self.assertNotIn(inst, self.host_b.manager.claims())
        self.assertTrue(dom.isActive())
        self.assertTrue(self.host_a.auditor.audit().clean)

    def test_failed_migration_rolls_back_the_target_claim(self):
        a, b, c = self.tenant('a'), self.tenant('b'), self.tenant('c')
        inst, dom = self.host_a.boot(a)
        self.host_a.boot(b)
        self.host_b.boot(c)
        pins = self.host_b.manager.claim_incoming_migration(inst, a, 1)
        self.host_b.manager.confirm_incoming_migration(inst)
        self.assertIn(a, self.host_b.partitions.list_partitions())
        # A pin outside the target partition makes the target QEMU fail
        # to start: the migration fails after the claim.
        outside = set(self.topology.online_cpus) - set(pins.cpus)
        root = etree.fromstring(lvf.confined_target_xml(dom, pins).encode())
        tune = root.find('./cputune')
        if tune is None:
            tune = etree.SubElement(root, 'cputune')
        etree.SubElement(tune, 'vcpupin', vcpu='0',
                         cpuset=lvf.format_cpus(outside))
        self.assertRaises(libvirt.libvirtError, lvf.migrate, dom,
                          self.b_fixture,
                          etree.tostring(root, encoding='unicode'))
        # What rollback_live_migration_at_destination does:
        self.host_b.manager.release(inst)
        self.assertNotIn(a, self.host_b.partitions.list_partitions())
        self.assertNotIn(a, self.host_b.manager.tenant_map())
        self.assertTrue(dom.isActive())
        for task in self.host_a.qemu_threads(dom):
            self.assertIn('/tenant-%s.partition/' % a, task.cpuset_cgroup)
        self.assertTrue(self.host_a.auditor.audit().clean)
        self.assertTrue(self.host_b.auditor.audit().clean)
