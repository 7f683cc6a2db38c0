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

"""A real live migration between two libvirtd inside the test host, with
core-scheduling cookies.

Host A is the test host's own libvirtd, run by systemd: its guests are
registered with machined, its tenant partitions are systemd slices under
``machine.slice``. Host B is a second libvirtd on the same kernel
(:class:`SecondHostFixture`): in a cgroup subtree of its own at the root,
its own mount namespace, no machined, its partitions plain cgroup v2
directories under the subtree, listening on 127.0.0.1 only. Each host has its
own TenantPinManager over the real privsep daemon, and its own
core-scheduling cookies, set through the real entrypoint (run in-process as
root) from each host's libvirt run directory.

The migration is this project's protocol (the functions the driver uses):
the target claims room and creates the tenant's partition, the destination
XML keeps the partition and carries the target's CPUs, libvirt migrates,
the target re-pins and the source releases. The exposure sampler reads
every QEMU thread of both hosts from /proc the whole time and must read no
violating sample.

Cookies on the target: the driver gives the incoming QEMU its key's cookie
when libvirt reports it started (the lifecycle event, while the guest's
memory is copied and the guest is paused), and again after arrival. This
test has no libvirt event loop, so it makes that moment explicit: the
guest arrives paused (``VIR_MIGRATE_PAUSED``), B's cookies are set then,
every thread of the target QEMU is read from the kernel, and only then does
the guest run there.
"""

import os
import uuid

import fixtures
import libvirt

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import coresched
from nova_tenant_pin import domain_xml
from nova_tenant_pin import exception
from nova_tenant_pin import privsep
from nova_tenant_pin.tests import enforcement_fixtures
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf
from nova_tenant_pin.tests.integration import test_live_migration_real as lm
from nova_tenant_pin.tests.testhost import base
from nova_tenant_pin.tests.testhost import test_core_scheduling as tcs
from nova_tenant_pin import topology


class TestLiveMigrationOnTheTestHost(base.TestHostTestCase):

    def setUp(self):
        super().setUp()
        self.topology = topology.HostTopology.from_sysfs()
        self.assertEqual(2, self.topology.max_threads_per_core,
                         'the test host shows no SMT siblings')
        a = self.useFixture(base.SystemLibvirtFixture())
        b = self.useFixture(lvf.SecondHostFixture(
            'ntp-hostb-%s' % uuid.uuid4().hex[:8]))
        self.b_fixture = b
        self.useFixture(enforcement_fixtures.PrivsepDaemon(
            self.conf_fixture))
        privsep.core_sched_pctxt.set_client_mode(False)
        self.addCleanup(privsep.core_sched_pctxt.set_client_mode, True)
        self.host_a = lm.Host(self, 'hostA', a.conn, '/', '/run/libvirt',
                              a.defined, prefix='/' + cgroupfs.MACHINE_SLICE,
                              key_metadata=True)
        self.host_b = lm.Host(self, 'hostB', b.conn, b.cgroup_prefix,
                              os.path.join(b.dir, 'run_libvirt'), [],
                              key_metadata=True)
        self.tag = uuid.uuid4().hex[:6]
        self.tenants = []
        self.addCleanup(self._cleanup)

    def tenant(self, letter):
        name = 'mig-%s-%s' % (letter, self.tag)
        self.tenants.append(name)
        return name

    def _cleanup(self):
        """Before the fixtures stop: the test's guests on both hosts, then
        host A's slices through the privsep daemon (host B's subtree goes
        with its fixture)."""
        for host in (self.host_a, self.host_b):
            for dom in host.conn.listAllDomains():
                if dom.name() not in host.names:
                    continue
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
        for tenant in self.tenants:
            lvf.wait_for(lambda: self._removed(tenant),
                         'partition of %s to empty' % tenant,
                         lvf.CGROUP_EMPTY_TIMEOUT)

    def _removed(self, tenant):
        try:
            self.host_a.partitions.remove_partition(tenant)
        except exception.PartitionBusy:
            return False
        return True

    def sample_during(self, action):
        return lm.sample_during(self, [self.host_a, self.host_b], action)

    def cookies(self, host):
        """The host's CoreCookies: its running domains from its libvirtd;
        the privileged entrypoint reads its libvirt run directory."""
        conn = host.conn
        run = os.path.join(host.run_dir, 'qemu')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.privsep.LIBVIRT_QEMU_RUN', run))
        return coresched.CoreCookies(
            coresched.REQUIRED, lambda: [domain_xml.parse_domain_xml(
                d.XMLDesc(0), active=bool(d.isActive()))
                for d in conn.listAllDomains() if d.isActive()],
            name=host.name)

    def cookie_of(self, host, dom):
        """The one non-zero cookie every thread of the domain's QEMU holds,
        read from the kernel."""
        pid = host.qemu_threads(dom)[0].pid
        values = set(tcs.kernel_cookies(pid).values())
        self.assertEqual(1, len(values), '%s: %s' % (dom.name(), values))
        self.assertNotIn(0, values, dom.name())
        return values.pop()

    def test_migration_with_no_window_and_the_cookie_before_it_runs(self):
        a, c = self.tenant('a'), self.tenant('c')
        inst, dom = self.host_a.boot(a)
        qemu_pid_a = self.host_a.qemu_threads(dom)[0].pid
        _, dom_c = self.host_b.boot(c)
        self.cookies(self.host_a).sync()
        self.cookies(self.host_b).sync()
        cookie_a_on_a = self.cookie_of(self.host_a, dom)
        cookie_c = self.cookie_of(self.host_b, dom_c)
        seen = {}

        def partition_before_migration(pins):
            seen['partition'] = self.host_b.partitions.list_partitions(
            ).get(a)

        def migrate():
            seen['pins'], seen['xml'] = lvf.migrate_confined(
                dom, inst, a, 1, self.host_a.manager, self.host_b.manager,
                self.b_fixture.uri, on_claimed=partition_before_migration,
                flags=libvirt.VIR_MIGRATE_PAUSED)

        report = self.sample_during(migrate)
        self.assertEqual(0, report.violating_samples,
                         [str(v) for v in report.first_violations])
        self.assertGreater(report.samples, 0)
        # The target partition existed, with the tenant's CPUs, before the
        # migration started, as a directory of host B's own subtree.
        self.assertIsNotNone(seen['partition'])
        self.assertEqual(seen['pins'].cpus, seen['partition'].cpus)
        moved = self.host_b.conn.lookupByUUIDString(inst)
        threads_b = self.host_b.qemu_threads(moved)
        inside = '%s/%s/' % (self.b_fixture.cgroup_prefix,
                             cgroupfs.partition_dir(a))
        for task in threads_b:
            self.assertTrue(task.cpuset_cgroup.startswith(inside),
                            '%s not in %s' % (task.cpuset_cgroup, inside))
            self.assertLessEqual(task.allowed_cpus, seen['pins'].cpus)
        # The sampler watched the guest on both hosts.
        self.assertIn(qemu_pid_a, report.guests_seen[0])
        self.assertIn(threads_b[0].pid, report.guests_seen[1])

        # Arrived, not yet run: the target QEMU gets key a's cookie now.
        self.assertEqual(libvirt.VIR_DOMAIN_PAUSED, moved.state()[0])
        self.cookies(self.host_b).sync()
        cookie_a = self.cookie_of(self.host_b, moved)
        self.assertNotEqual(cookie_c, cookie_a)
        self.assertEqual(libvirt.VIR_DOMAIN_PAUSED, moved.state()[0])
        moved.resume()
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, moved.state()[0])
        self.assertEqual(cookie_a, self.cookie_of(self.host_b, moved))
        self.assertEqual(cookie_c, self.cookie_of(self.host_b, dom_c))
        self.assertNotEqual(cookie_a_on_a, 0)
        guests_b = self.cookies(self.host_b).guests()
        self.assertEqual({a, c}, {g.key for g in guests_b})
        self.assertEqual([], coresched.violations(guests_b))

        # B keeps the tenants on separate cores; A let go of tenant a (no
        # claim, no slice).
        b_map = self.host_b.manager.tenant_map()
        self.assertFalse(self.topology.cores_of(b_map[a]) &
                         self.topology.cores_of(b_map[c]))
        self.assertTrue(self.host_b.auditor.audit().clean)
        self.assertNotIn(a, self.host_a.manager.tenant_map())
        self.assertNotIn(a, self.host_a.partitions.list_partitions())
        self.assertNotEqual('active', base.systemctl(
            'is-active', cgroupfs.partition_slice(a), check=False))

    def test_naive_protocol_opens_a_window(self):
        """Drop the pins, migrate unconfined, re-pin after arrival, between
        the same two hosts: the same sampler sees the exposure (the
        integration suite's test, run here on systemd and cgroup v2)."""
        lm.TestLiveMigration.test_naive_protocol_opens_a_window(self)
