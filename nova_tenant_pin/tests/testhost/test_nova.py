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

"""The driver inside Nova's in-process services on the test host.

Nova's API, conductor, scheduler and placement run in-process (Nova's own
functional harness, as in tests/integration/test_nova_real.py); the compute
loads ``compute_driver = tenant_pin.TenantPinLibvirtDriver`` against the
test host's own libvirtd (run by systemd, guests registered with machined,
TCG), so every server booted through the API is a real guest under
``machine.slice``. Tenant partitions are systemd slices written through the
real privsep daemon. Housekeeping is configured, not a test seam: the first
two cores (CPUs 0-3) are ``[tenant_pin] housekeeping_cpus``, so the tenants
get the two cores of NUMA node 1, each two sibling threads (4-5, 6-7).

One scenario, to keep the test host's CI stage short (each TCG guest takes
tens of seconds to start there): two tenants boot, a third is refused, a
hard reboot and a compute restart keep the same map, each deletion takes
the tenant's guest, slice and core away. After every step the host is
judged by the project's independent checker from /proc and cgroupfs
(every thread of every QEMU, the slices' ``AllowedCPUs=`` from systemd and
their ``cpuset.cpus.effective`` from the kernel), and every QEMU thread's
core-scheduling cookie is read from the kernel: the driver runs with the
default ``core_scheduling = auto`` and its cookie daemon, so each tenant's
guests hold one cookie of their own, through the hard reboot and the
restart.
"""

import os

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import coresched
from nova_tenant_pin import privsep
from nova_tenant_pin.tests.integration import nova_real_base
from nova_tenant_pin.tests.testhost import base
from nova_tenant_pin import topology


class TestNovaOnTheTestHost(nova_real_base.NovaRealTestBase):

    CGROUP_PREFIX = '/machine.slice'
    # The test host's kernel has core scheduling and the driver runs with
    # the default core_scheduling = auto: its cookie context gets its own
    # real daemon, as in a deployment.
    PRIVSEP_CONTEXTS = (privsep.core_sched_pctxt,)
    # Inside the test host (Python 13-20 times slower, the guests TCG in
    # TCG) a boot through the API took 23-27 s on an idle machine and a
    # refused boot 40 s; without the guest kernel's mitigations off, 1-5
    # minutes. The bound leaves room for a loaded CI machine.
    API_TIMEOUT = 600
    # The whole scenario is one test: 186-228 s on the machine kind's
    # faster hosts, 844 s on a slower one (a Python loop in the test host
    # 2-3 times slower); OS_TEST_TIMEOUT (600 s in tools/test.sh) times 3.
    TIMEOUT_SCALING_FACTOR = 3
    # Polls start once the operation's notification came (see notified());
    # each is a request served by this process's interpreter.
    POLL_INTERVAL = 0.5
    # Heartbeats every 5 minutes instead of every 10 s: each is a database
    # write by this process's interpreter, which the services share.
    REPORT_INTERVAL = 300

    def setUp(self):
        if not base.in_test_host():
            self.skipTest(base.SKIP_REASON)
        super().setUp()
        self.assertTrue(self.layout.slices('/'),
                        'the test host runs systemd on cgroup v2')
        self.assertEqual(2, self.host_topology.max_threads_per_core,
                         'the test host shows no SMT siblings')
        self.assertEqual(frozenset(range(4)), self.housekeeping)

    def libvirt_fixture(self):
        return base.SystemLibvirtFixture()

    def assert_slices(self, cpus):
        """Each tenant's partition is its systemd slice, with its CPUs as
        systemd and the kernel have them; ``cpus`` is ``{tenant: CPUs}``
        as :meth:`assert_host_clean` returned it."""
        for project, expected in cpus.items():
            unit = cgroupfs.partition_slice(project)
            self.assertEqual('active', base.systemctl(
                'is-active', unit, check=False), unit)
            shown = base.systemctl('show', '--value', '-p', 'AllowedCPUs',
                                   unit)
            self.assertEqual(expected,
                             frozenset(topology.parse_cpu_list(shown)), unit)
            # One whole core of two sibling threads.
            self.assertEqual(1, len(self.host_topology.cores_of(expected)))
            self.assertEqual(2, len(expected))

    def assert_cookies(self, servers):
        """``{tenant: cookie}`` after asserting, from the kernel, that every
        thread of each tenant's QEMUs holds one non-zero core-scheduling
        cookie, distinct across tenants; ``servers`` is ``{tenant:
        [server]}``."""
        prctl = coresched.Prctl()
        found = {}
        for project, project_servers in servers.items():
            values = set()
            for server in project_servers:
                values.update(coresched.thread_cookies(
                    self.qemu_pid(server), prctl).values())
            self.assertEqual(1, len(values), '%s: %s' % (project, values))
            self.assertNotIn(0, values, project)
            found[project] = values.pop()
        self.assertEqual(len(found), len(set(found.values())), found)
        return found

    def assert_slice_gone(self, project):
        unit = cgroupfs.partition_slice(project)
        self.assertNotEqual('active', base.systemctl(
            'is-active', unit, check=False), unit)
        self.assertFalse(os.path.isdir(os.path.join(
            '/sys/fs/cgroup', cgroupfs.MACHINE_SLICE, unit)), unit)

    def test_boot_refuse_reboot_restart_delete_through_nova(self):
        a, b, c = self.tenant_api(), self.tenant_api(), self.tenant_api()
        server_a = self.boot(a)
        server_b = self.boot(b)
        both = {a.project_id: [server_a], b.project_id: [server_b]}
        cpus = self.assert_host_clean(both)
        self.assert_slices(cpus)
        self.assertEqual(self.tenant_cpus,
                         cpus[a.project_id] | cpus[b.project_id])
        cookies = self.assert_cookies(both)

        # No core left: Placement admits tenant c, the driver refuses it.
        refused = self.boot(c, expected='ERROR')
        self.assertIn('instance %s of tenant %s does not fit'
                      % (refused['id'], c.project_id),
                      self.stdlog.logger.output)
        self.assert_no_trace(c.project_id, refused['id'])
        self.assert_slice_gone(c.project_id)
        self.assertEqual(cpus, self.assert_host_clean(both))
        self.delete(refused)

        # Hard reboot: a new QEMU in the same slice on the same core,
        # confined at every sampled instant; tenant b untouched.
        _, new_pid = self.hard_reboot_sampled(server_a, server_b, both,
                                              cpus)
        # The new QEMU ran only once it held tenant a's cookie (the driver
        # starts it paused), which it shares with nothing of tenant b.
        rebooted = self.assert_cookies(both)
        self.assertEqual(cookies[b.project_id], rebooted[b.project_id])
        cookies = rebooted

        # Compute restart with both guests running: a new driver rebuilds
        # the same map from libvirt and the slices, re-pins nothing.
        kept = self.before_restart([server_a, server_b], both)
        self.restart_compute()
        self.assert_restart_kept(kept, [server_a, server_b])
        self.assertEqual(cpus, self.assert_host_clean(both))
        self.assert_slices(cpus)
        # The restarted driver rebuilt the cookies from the threads.
        self.assertEqual(cookies, self.assert_cookies(both))

        # Delete: tenant a's guest, slice and core go; then tenant b's.
        self.delete(server_a)
        self.assertFalse(os.path.exists('/proc/%d' % new_pid))
        self.assert_no_trace(a.project_id, server_a['id'])
        self.assert_slice_gone(a.project_id)
        only_b = {b.project_id: [server_b]}
        self.assertEqual({b.project_id: cpus[b.project_id]},
                         self.assert_host_clean(only_b))
        self.assertEqual(cookies[b.project_id],
                         self.assert_cookies(only_b)[b.project_id])
        self.delete(server_b)
        self.assert_no_trace(b.project_id, server_b['id'])
        self.assert_slice_gone(b.project_id)
        self.assertEqual({}, self.assert_host_clean({}))
        self.assertEqual({}, self.partitions())
