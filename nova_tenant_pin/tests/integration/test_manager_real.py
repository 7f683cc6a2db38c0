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

"""The manager with real libvirt, real cgroups and the real privsep daemon.

The same code paths as the driver (TenantPinManager, CgroupPartitions
through privsep) drive real QEMU guests of several tenants; every check
reads the kernel: each QEMU thread's ``Cpus_allowed_list`` and cgroup from
/proc, and each partition's ``cpuset.effective_cpus``. On this 2-CPU machine
(one thread a core) housekeeping is empty and each tenant gets one core;
on a bigger host the same tests use what is there.

Needs root, libvirtd and QEMU (tools/setup-host.sh); CI runs it.
"""

import json
import os
import subprocess
import sys
import uuid

from nova_tenant_pin import audit
from nova_tenant_pin import cgroups
from nova_tenant_pin import exception
from nova_tenant_pin import manager as manager_mod
from nova_tenant_pin import procfs
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf


class RealHostTestCase(base.TestCase):
    """The same tests run on this machine (a private libvirtd, cgroup
    directories) and inside the test host (tests/testhost: systemd's
    libvirtd, slices under machine.slice), which overrides the hooks
    below."""

    #: Where the audit looks for the guests' QEMU processes.
    CGROUP_PREFIX = '/machine'
    #: CPUs kept for housekeeping (none on this 2-CPU machine).
    HOUSEKEEPING = ()

    def real_host(self):
        return lvf.require_real_host(self, min_cores=2)

    def libvirt_fixture(self):
        return lvf.LibvirtdFixture()

    def setUp(self):
        super().setUp()
        self.host = self.real_host()
        self.libvirt = self.useFixture(self.libvirt_fixture())
        self.useFixture(enforcement_fixtures.PrivsepDaemon(
            self.conf_fixture))
        self.partitions = cgroups.CgroupPartitions(root='/')
        self.tag = uuid.uuid4().hex[:8]
        self.created_tenants = set()
        self.addCleanup(self._remove_partitions)
        self.manager = self.new_manager()

    def new_manager(self, pin_mode='float'):
        return manager_mod.TenantPinManager(
            self.host, self.partitions, lambda: self.libvirt.conn,
            housekeeping_cpus=self.HOUSEKEEPING, pin_mode=pin_mode,
            name='itest')

    def tenant(self, letter):
        name = 'itest-%s-%s' % (letter, self.tag)
        self.created_tenants.add(name)
        return name

    def _remove_partitions(self):
        # The guests are gone (the libvirt fixture cleans up later, so
        # destroy ours first), then the partitions, bottom-up.
        for dom_name in list(self.libvirt.defined):
            try:
                dom = self.libvirt.conn.lookupByName(dom_name)
            except lvf.libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
        for tenant in self.created_tenants:
            if self.partitions.layout.slices():
                # systemd's slices go through systemd.
                lvf.wait_for(lambda: self._removed(tenant),
                             'partition of %s to empty' % tenant,
                             lvf.CGROUP_EMPTY_TIMEOUT)
            for hierarchy in self.partitions.layout.ordered():
                lvf.remove_cgroup_tree(self.partitions.path(tenant,
                                                            hierarchy))

    def _removed(self, tenant):
        try:
            self.partitions.remove_partition(tenant)
        except cgroups.PartitionBusy:
            return False
        return True

    def boot(self, tenant, vcpus=1):
        return lvf.boot_confined(self.libvirt.conn, self.manager, tenant,
                                 vcpus, prefix='itest',
                                 defined=self.libvirt.defined)

    def qemu_threads(self, dom):
        with open('/run/libvirt/qemu/%s.pid' % dom.name()) as f:
            return procfs.threads(int(f.read()))

    def assert_clean(self):
        report = audit.HostAuditor(
            self.host, housekeeping_cpus=self.HOUSEKEEPING,
            cgroup_prefix=self.CGROUP_PREFIX).audit()
        self.assertEqual([], [str(v) for v in report.violations])
        return report

    def effective(self, tenant):
        return self.partitions.list_partitions()[tenant].effective_cpus


class TestTenantsOnRealGuests(RealHostTestCase):

    def test_tenants_one_core_each_until_full_then_refused(self):
        """One 1-vCPU tenant a core until no core is left for tenants
        (two on this machine, three on the test host), then a refusal."""
        free = [c for c in self.host.cores
                if not set(c.cpus) & set(self.HOUSEKEEPING)]
        tenants = [self.tenant(chr(ord('a') + i)) for i in range(len(free))]
        doms = [self.boot(t)[1] for t in tenants]
        report = self.assert_clean()
        self.assertEqual(set(tenants), set(report.tenants) & set(tenants))
        seen = set()
        for tenant, dom in zip(tenants, doms):
            cores = self.host.cores_of(report.tenants[tenant])
            # A whole core each (both threads where there are two), and
            # no core, thus no sibling pair, shared with another tenant.
            self.assertEqual(1, len(cores))
            self.assertEqual(self.host.whole_core_cpus(
                report.tenants[tenant]), report.tenants[tenant])
            self.assertFalse(cores & seen)
            seen |= cores
            # Every QEMU thread sits in its tenant's partition.
            for task in self.qemu_threads(dom):
                self.assertEqual(tenant,
                                 audit.key_of_cgroup(task.cpuset_cgroup),
                                 task)
            self.assertEqual(self.manager.tenant_map()[tenant],
                             self.effective(tenant))
        c = self.tenant('refused')
        e = self.assertRaises(exception.TenantDoesNotFit,
                              self.manager.claim, str(uuid.uuid4()), c, 1)
        sys.stderr.write('refused as expected: %s\n' % e)
        self.assertIn(c, str(e))
        self.assertNotIn(c, self.partitions.list_partitions())

    def test_grow_and_shrink_a_tenant_live(self):
        a = self.tenant('a')
        first, dom1 = self.boot(a)
        one_core = self.manager.tenant_map()[a]
        # Enough vCPUs that one core (all its threads) no longer holds
        # the tenant.
        second, dom2 = self.boot(a, vcpus=self.host.max_threads_per_core)
        grown = self.manager.tenant_map()[a]
        # More whole cores; on a NUMA host the tenant may move to another
        # cell where they are free together, so not necessarily a superset.
        self.assertGreater(len(self.host.cores_of(grown)),
                           len(self.host.cores_of(one_core)))
        self.assertEqual(grown, self.effective(a))
        report = self.assert_clean()
        self.assertEqual(grown, report.tenants[a])
        # Deleting an instance: its domain goes, then its claim.
        dom2.destroy()
        dom2.undefine()
        self.manager.release(second)
        shrunk = self.manager.tenant_map()[a]
        self.assertEqual(len(one_core), len(shrunk))
        self.assertEqual(shrunk, self.effective(a))
        for task in self.qemu_threads(dom1):
            if not task.comm.startswith('kvm-'):
                self.assertLessEqual(task.allowed_cpus, shrunk)

    def test_restart_rebuilds_the_same_map(self):
        a, b = self.tenant('a'), self.tenant('b')
        self.boot(a)
        self.boot(b)
        before = self.manager.snapshot()
        restarted = self.new_manager()
        restarted.reconcile()
        after = restarted.snapshot()
        self.assertEqual(before['tenants'], after['tenants'])
        self.assertEqual(
            {u: (i['tenant'], i['vcpus'], i['cpus'])
             for u, i in before['instances'].items()},
            {u: (i['tenant'], i['vcpus'], i['cpus'])
             for u, i in after['instances'].items()})
        self.assert_clean()

    def test_tampered_pins_are_repaired_by_reconcile(self):
        a, b = self.tenant('a'), self.tenant('b')
        _, dom_a = self.boot(a)
        self.boot(b)
        everything = set(self.host.online_cpus)
        # Someone widens tenant a's cgroups and pins its vCPU everywhere.
        part = self.partitions.path(a)
        self.assertTrue(os.path.isdir(part), part)
        text = lvf.format_cpus(everything)
        for root, _dirs, _files in os.walk(part):
            with open(os.path.join(root, 'cpuset.cpus'), 'w') as f:
                f.write(text)
        cpumap = tuple(c in everything for c in range(max(everything) + 1))
        dom_a.pinVcpuFlags(0, cpumap, lvf.libvirt.VIR_DOMAIN_AFFECT_LIVE)
        report = audit.HostAuditor(
            self.host, housekeeping_cpus=self.HOUSEKEEPING,
            cgroup_prefix=self.CGROUP_PREFIX).audit()
        self.assertTrue(report.violations, 'the tampering did not show')
        repairs = self.manager.reconcile()
        sys.stderr.write('repairs: %s\n' % repairs)
        self.assertTrue(repairs)
        self.assert_clean()
        self.assertEqual(self.manager.tenant_map()[a], self.effective(a))


class TestStatusOnRealHost(RealHostTestCase):

    def setUp(self):
        super().setUp()
        if not self.HOUSEKEEPING:
            # status checks the options as nova-compute does, and the
            # driver keeps at least one housekeeping core: keep the first
            # (on a 2-core host one tenant is left room).
            self.HOUSEKEEPING = tuple(sorted(self.host.cores[0].cpus))
            self.manager = self.new_manager()

    def test_status_shows_the_tenants_as_the_kernel_has_them(self):
        free_cores = len(self.host.cores) - len(
            self.host.cores_of(self.HOUSEKEEPING))
        tenants = [self.tenant(letter) for letter in 'ab'[:free_cores]]
        a = tenants[0]
        inst_a, _ = self.boot(a)
        for tenant in tenants[1:]:
            self.boot(tenant)
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_tenant_pin', 'status', '-f', 'json',
             '--libvirt-uri', self.libvirt.uri,
             '--housekeeping-cpus',
             lvf.format_cpus(self.HOUSEKEEPING)],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        doc = json.loads(proc.stdout)
        for tenant in tenants:
            self.assertEqual(sorted(self.manager.tenant_map()[tenant]),
                             doc['tenants'][tenant]['cpus'])
            self.assertEqual(1, doc['tenants'][tenant]['vcpus'])
        self.assertEqual([inst_a], [i['uuid'] for i in
                                    doc['tenants'][a]['instances']])
        self.assertEqual([], doc['unconfined'])
        self.assertEqual(0, doc['totals']['conflicts'])
