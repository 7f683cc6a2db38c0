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

"""End to end through Nova itself, on real KVM guests.

Nova's API, conductor, scheduler and placement in-process; the compute runs
``tenant_pin.TenantPinLibvirtDriver`` against a private libvirtd; each
tenant is its own project booting through the API; partitions are real
cgroups written by the real privsep daemon. The host has two tenant cores
(see :mod:`nova_real_base` for how a two-core machine gets them). After
every step the host is audited from /proc: no core in the allowed CPUs of
two tenants' QEMU threads, every thread of a guest in its tenant's
partition, and the partitions' CPUs equal to the driver's map.

Needs root, libvirtd and QEMU (tools/setup-host.sh); CI runs it.
"""

import os

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import privsep
from nova_tenant_pin.tests.integration import nova_real_base


class TestNovaRealGuests(nova_real_base.NovaRealTestBase):

    def test_two_tenants_fit_a_third_is_refused_then_takes_a_freed_core(self):
        a, b, c = self.tenant_api(), self.tenant_api(), self.tenant_api()
        server_a = self.boot(a)
        server_b = self.boot(b)
        cpus = self.assert_host_clean({a.project_id: [server_a],
                                       b.project_id: [server_b]})
        # One whole core each, and between them every tenant core.
        for project in (a.project_id, b.project_id):
            self.assertEqual(1, len(self.host_topology.cores_of(
                cpus[project])))
        self.assertEqual(self.tenant_cpus,
                         cpus[a.project_id] | cpus[b.project_id])
        # Every hierarchy libvirt uses holds each partition, and they were
        # written by the privsep daemon, which still runs.
        hierarchies = len(cgroupfs.detect_layout().ordered())
        for project in (a.project_id, b.project_id):
            self.assertEqual(hierarchies, len(self.partition_dirs(project)))
        self.assertTrue(privsep.tenant_pin_pctxt.client_mode)
        self.assertTrue(os.path.exists('/proc/%d' % self.privsep_pid))

        # Placement admits tenant c (VCPU is overcommitted 4:1); the
        # driver refuses it on the compute, Nova finds no other host.
        refused = self.boot(c, expected='ERROR')
        self.assertIn('Exhausted all hosts', refused['fault']['message'])
        # Nova's fault only says no host was left; the driver's refusal is
        # what the conductor logged as the compute's error.
        self.assertIn('instance %s of tenant %s does not fit'
                      % (refused['id'], c.project_id),
                      self.stdlog.logger.output)
        self.assert_no_trace(c.project_id, refused['id'])
        self.assertEqual({}, self._get_allocations_by_server_uuid(
            refused['id']))
        self.assertEqual(cpus, self.assert_host_clean(
            {a.project_id: [server_a], b.project_id: [server_b]}))
        self.delete(refused)

        # Tenant a leaves: its guest, its partition and its core go.
        pid_a = self.qemu_pid(server_a)
        self.delete(server_a)
        self.assertFalse(os.path.exists('/proc/%d' % pid_a))
        self.assert_no_trace(a.project_id, server_a['id'])
        self.assertEqual({b.project_id: cpus[b.project_id]},
                         self.assert_host_clean({b.project_id: [server_b]}))

        # Tenant c now gets the core tenant a gave back.
        server_c = self.boot(c)
        after = self.assert_host_clean({b.project_id: [server_b],
                                        c.project_id: [server_c]})
        self.assertEqual(cpus[a.project_id], after[c.project_id])
        self.assertEqual(cpus[b.project_id], after[b.project_id])

        self.delete(server_b)
        self.delete(server_c)
        for project, server in ((b.project_id, server_b),
                                (c.project_id, server_c)):
            self.assert_no_trace(project, server['id'])
        self.assertEqual({}, self.assert_host_clean({}))

    def test_hard_reboot_keeps_the_guest_in_its_partition(self):
        a, b = self.tenant_api(), self.tenant_api()
        server_a = self.boot(a)
        server_b = self.boot(b)
        both = {a.project_id: [server_a], b.project_id: [server_b]}
        before = self.assert_host_clean(both)
        log_mark = len(self.stdlog.logger.output)

        # At no sampled instant, from the old QEMU's end to the new one's
        # start, could two tenants run on one core; a new QEMU (the domain
        # was destroyed and started again) in the same partition on the
        # same core, and tenant b's guest was not touched.
        sampled, new_pid = self.hard_reboot_sampled(server_a, server_b,
                                                    both, before)
        # The sampler judged the new QEMU too, as tenant a's.
        self.assertEqual(a.project_id, sampled['seen'].get(new_pid))
        # The instance kept its room throughout: its claim was never
        # released.
        self.assertNotIn('instance %s of tenant %s released its claim'
                         % (server_a['id'], a.project_id),
                         self.stdlog.logger.output[log_mark:])
        claim = self.tenant_pin.claims()[server_a['id']]
        self.assertEqual((a.project_id, 1, False),
                         (claim.key, claim.vcpus, claim.pending))

        self.delete(server_a)
        self.delete(server_b)
        self.assertEqual({}, self.assert_host_clean({}))
        self.assertEqual({}, self.partitions())

    def test_compute_restart_with_guests_running_rebuilds_the_same_map(self):
        a, b, c = self.tenant_api(), self.tenant_api(), self.tenant_api()
        server_a = self.boot(a)
        server_b = self.boot(b)
        before = self.assert_host_clean({a.project_id: [server_a],
                                         b.project_id: [server_b]})
        kept = self.before_restart([server_a, server_b],
                                   (a.project_id, b.project_id))

        guests = {self.qemu_pid(server_a): a.project_id,
                  self.qemu_pid(server_b): b.project_id}
        with self.sampling() as sampled:
            self.restart_compute()
        # Confined at every sampled instant of the restart, both guests
        # judged.
        self.assertGreater(sampled['report'].samples, 0)
        self.assertEqual([], [str(v) for v in
                              sampled['report'].first_violations])
        self.assertEqual(guests, {p: sampled['seen'].get(p) for p in guests})
        self.assert_restart_kept(kept, [server_a, server_b])
        self.assertEqual(before, self.assert_host_clean(
            {a.project_id: [server_a], b.project_id: [server_b]}))
        for server in (server_a, server_b):
            self.assertEqual('ACTIVE', self.admin_api.get_server(
                server['id'])['status'])

        # The rebuilt map works: tenant b leaves, tenant c takes its core.
        self.delete(server_b)
        self.assert_no_trace(b.project_id, server_b['id'])
        server_c = self.boot(c)
        after = self.assert_host_clean({a.project_id: [server_a],
                                        c.project_id: [server_c]})
        self.assertEqual(before[b.project_id], after[c.project_id])
        self.assertEqual(before[a.project_id], after[a.project_id])

        self.delete(server_a)
        self.delete(server_c)
        self.assertEqual({}, self.assert_host_clean({}))
        self.assertEqual({}, self.partitions())


class TestNovaRealConfiguredHousekeeping(nova_real_base.NovaRealTestBase):
    """One tenant core; every other core is ``[tenant_pin]
    housekeeping_cpus``, as configured (no test seam on any host). The
    audit also checks that no tenant thread may run on a housekeeping CPU.
    """

    TENANT_CORES = 1

    def test_tenants_never_get_the_housekeeping_cores(self):
        self.assertTrue(self.housekeeping)
        a, b = self.tenant_api(), self.tenant_api()
        server_a = self.boot(a)
        cpus = self.assert_host_clean({a.project_id: [server_a]})
        self.assertEqual(self.tenant_cpus, cpus[a.project_id])

        # The host has free CPUs, but only housekeeping ones: b is refused.
        refused = self.boot(b, expected='ERROR')
        self.assertIn('instance %s of tenant %s does not fit'
                      % (refused['id'], b.project_id),
                      self.stdlog.logger.output)
        self.assertEqual([], self.partition_dirs(b.project_id))
        self.assertEqual(cpus, self.assert_host_clean(
            {a.project_id: [server_a]}))
        self.delete(refused)

        self.delete(server_a)
        server_b = self.boot(b)
        self.assertEqual({b.project_id: self.tenant_cpus},
                         self.assert_host_clean({b.project_id: [server_b]}))
        self.delete(server_b)
        self.assertEqual({}, self.partitions())
