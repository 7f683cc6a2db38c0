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

"""Per-project settings changed under running guests, with real libvirt,
real cgroups and the real privsep daemon.

Two projects each boot a 1-vCPU guest confined the way the driver does it
(claim, partition in the XML, start, re-pin), so each runs in its own
project's partition on a core of its own. The operator then puts both
projects in one isolation group (``acme``) and the manager re-reads the
settings; later the group is dissolved again. Neither change restarts a
guest: each stays in the partition it started in and is re-pinned live,
vCPU and emulator threads, to its new key's cores. Each step is checked
where it counts: the allowed CPUs and cgroup of every QEMU thread in
``/proc``, the QEMU processes' identity (PID and start time), the key
recorded in the domains' live and persistent XML, the cgroup partitions,
and the HostAuditor's invariant check with each process's recorded key.

Needs root, libvirtd and QEMU (tools/setup-host.sh); CI runs it.
"""

import sys

import libvirt

from nova_tenant_pin import audit
from nova_tenant_pin import cgroupfs
from nova_tenant_pin import cgroups
from nova_tenant_pin import domain_xml
from nova_tenant_pin import policy
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf
from nova_tenant_pin.tests.integration import real_guests
from nova_tenant_pin.tests.integration.real_guests import guest_threads

GROUP = 'acme'
GROUP_KEY = policy.GROUP_PREFIX + GROUP


class TestRekeyRealGuests(real_guests.TwoProjectsTestCase):

    MANAGER_NAME = 'rekey-itest'
    EXTRA_TENANTS = (GROUP_KEY,)

    def setUp(self):
        super().setUp()
        self.mgr = self.new_manager()

    def boot(self, project):
        inst, dom = lvf.boot_confined(
            self.libvirt.conn, self.mgr, project, vcpus=1, prefix='rekey',
            defined=self.libvirt.defined)
        guest = real_guests.Guest(project, inst, dom,
                                  real_guests.qemu_pid(dom))
        self.guests.append(guest)
        return guest

    def recorded(self, guest, flags=0):
        """What the domain's XML records (live by default)."""
        return domain_xml.parse_domain_xml(guest.dom.XMLDesc(flags))

    def allowed(self, guest):
        """Every CPU any QEMU thread of the guest may run on, from /proc;
        each thread is checked to still live in the partition the guest
        started in, and a vCPU thread to be among them."""
        threads = guest_threads(guest.pid)
        self.assertTrue(any(t.vcpu is not None for t in threads),
                        'no vCPU thread in %s' % threads)
        self.assertTrue(any(t.vcpu is None for t in threads),
                        'no emulator thread in %s' % threads)
        cpus = set()
        for task in threads:
            self.assertTrue(task.allowed_cpus, task)
            self.assertIn('/tenant-%s.partition/' % guest.project,
                          task.cpuset_cgroup, task)
            cpus |= task.allowed_cpus
        return frozenset(cpus)

    def assert_lives_in(self, guest, partition):
        """Every QEMU thread of the guest lives in the partition: each
        thread's cpuset cgroup, as /proc has it, lies under the partition,
        and the partition's tasks include the guest's vCPU threads. QEMU's
        worker threads come and go on their own, so each thread is judged
        where it is rather than two snapshots of thread ids compared."""
        threads = guest_threads(guest.pid)
        where = '/%s/' % cgroupfs.partition_dir(guest.project)
        for task in threads:
            self.assertIn(where, task.cpuset_cgroup + '/',
                          'instance %s: %s' % (guest.inst, task))
        vcpus = {t.tid for t in threads if t.vcpu is not None}
        self.assertTrue(vcpus, 'no vCPU thread in %s' % threads)
        self.assertLessEqual(vcpus, partition.tasks,
                             'instance %s' % guest.inst)

    def assert_keys(self, keys, confinement):
        """Each guest's key, in its live and persistent XML, and how its
        threads are confined; it never left its first partition."""
        for guest in self.guests:
            for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
                info = self.recorded(guest, flags)
                self.assertEqual(keys[guest.project], info.key,
                                 'instance %s (flags %d)' % (guest.inst,
                                                             flags))
                self.assertEqual(cgroups.partition_name(guest.project),
                                 info.partition)
            self.assertEqual(confinement, self.recorded(guest).confinement)

    def assert_apart(self):
        """A's and B's threads may run on disjoint cores, each inside its
        project's cores; returns the tenant map."""
        tenant_map = self.mgr.tenant_map()
        self.assertEqual(set(self.projects), set(tenant_map))
        a, b = self.guests
        cpus_a, cpus_b = self.allowed(a), self.allowed(b)
        self.assertFalse(self.host.cores_of(cpus_a) &
                         self.host.cores_of(cpus_b),
                         'A may run on %s, B on %s' % (sorted(cpus_a),
                                                       sorted(cpus_b)))
        for guest, cpus in ((a, cpus_a), (b, cpus_b)):
            mine = tenant_map[guest.project]
            self.assertEqual(self.host.whole_core_cpus(mine), mine)
            self.assertLessEqual(cpus, mine, 'project %s' % guest.project)
        return tenant_map

    def assert_audit_clean(self, keys):
        """The HostAuditor, told each QEMU process's recorded key, finds
        no two keys on one core; a new auditor each time, as one keeps a
        process's key once it has read it."""
        pid_keys = {g.pid: self.recorded(g).key for g in self.guests}
        self.assertEqual({g.pid: keys[g.project] for g in self.guests},
                         pid_keys)
        report = audit.HostAuditor(
            self.host, cgroup_prefix='/machine',
            pid_keys=pid_keys.get).audit()
        self.assertEqual([], [str(v) for v in report.violations])
        self.assertEqual(len(self.guests), report.guests)
        return report

    def test_group_merges_and_splits_under_running_guests(self):
        a, b = self.projects
        self.boot(a)
        self.boot(b)
        identities = self.identities()
        own_keys = {a: a, b: b}

        # 0. Each project on cores of its own, in its own partition.
        # boot_confined writes no tenant-pin metadata into the XML: the
        # manager recorded each key (live and persistent) when the domain
        # started.
        before = self.assert_apart()
        self.assert_keys(own_keys, 'partition')
        self.assert_audit_clean(own_keys)
        parts = self.partitions.list_partitions()
        self.assertEqual({a, b}, set(parts) & {a, b, GROUP_KEY})
        for guest in self.guests:
            self.assertEqual(before[guest.project], parts[guest.project].cpus)
            self.assert_lives_in(guest, parts[guest.project])

        # 1. Merge: both projects in group acme; re-pinned live onto the
        # group's cores, each in the partition it started in.
        merged = policy.ProjectSettings.from_options(
            (), ['%s:%s,%s' % (GROUP, a, b)])
        self.mgr.update_settings(merged)
        repairs = self.mgr.reconcile()
        sys.stderr.write('merge:\n  %s\n' % '\n  '.join(repairs))
        for guest in self.guests:
            self.assertTrue([r for r in repairs if guest.inst in r and
                             'to %s' % GROUP_KEY in r],
                            'no repair re-keys instance %s: %s'
                            % (guest.inst, repairs))
        self.assertEqual(identities, self.identities())
        tenant_map = self.mgr.tenant_map()
        self.assertEqual({GROUP_KEY}, set(tenant_map))
        group_cpus = tenant_map[GROUP_KEY]
        self.assertEqual(self.host.whole_core_cpus(group_cpus), group_cpus)
        # Keys that merge keep their cores: no guest moves onto a core
        # that neither project held (here, one thread a core, the group
        # needs and keeps both).
        self.assertLessEqual(group_cpus, before[a] | before[b])
        for guest in self.guests:
            self.assertLessEqual(self.allowed(guest), group_cpus)
        group_keys = {a: GROUP_KEY, b: GROUP_KEY}
        self.assert_keys(group_keys, 'pins')
        report = self.assert_audit_clean(group_keys)
        self.assertEqual({GROUP_KEY}, set(report.tenants))
        self.assertLessEqual(report.tenants[GROUP_KEY], group_cpus)
        # Each project's partition still holds its guest, widened to the
        # group's cores its pins use; the group's own partition was made
        # with the group's cores for the group's next guest (a new or hard
        # rebooted instance starts in it), and holds no task yet.
        parts = self.partitions.list_partitions()
        for guest in self.guests:
            self.assertEqual(group_cpus, parts[guest.project].cpus)
            self.assert_lives_in(guest, parts[guest.project])
        self.assertEqual(group_cpus, parts[GROUP_KEY].cpus)
        self.assertEqual(frozenset(), parts[GROUP_KEY].tasks)
        self.assertEqual([], self.mgr.reconcile(dry_run=True))
        self.assertEqual([], self.new_manager(merged).reconcile(dry_run=True))

        # 2. Split: the group is dissolved; each project on a core of its
        # own again, each guest back under its own partition's key.
        self.mgr.update_settings(policy.ProjectSettings())
        repairs = self.mgr.reconcile()
        sys.stderr.write('split:\n  %s\n' % '\n  '.join(repairs))
        self.assertEqual(identities, self.identities())
        after = self.assert_apart()
        self.assert_keys(own_keys, 'partition')
        self.assert_audit_clean(own_keys)
        # Each project's partition narrowed to its project's cores; the
        # group's, which no guest ever started in, is gone in every
        # hierarchy.
        parts = self.partitions.list_partitions()
        for guest in self.guests:
            self.assertEqual(after[guest.project], parts[guest.project].cpus)
            self.assert_lives_in(guest, parts[guest.project])
        self.assert_no_partition(GROUP_KEY)

        # 3. Nothing is left to do.
        self.assertEqual([], self.mgr.reconcile(dry_run=True))
        self.assertEqual([], self.new_manager().reconcile(dry_run=True))
