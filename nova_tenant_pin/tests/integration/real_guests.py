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

"""Two projects' real KVM guests under a TenantPinManager: the base of the
tests that change what confines running guests (adoption, settings
changes) and check it in ``/proc``.

A private libvirtd, the real privsep daemon and the real cgroup tree; two
Nova-like project ids; each guest's QEMU process by PID and start time, so
a test can tell that no guest was restarted. Clean-up runs before the
libvirt fixture's (which undefines the domains and stops libvirtd by PID):
the guests stop first, then the partitions go bottom-up, as only empty
cgroups can.
"""

import os
import uuid

import libvirt

from nova_tenant_pin import audit
from nova_tenant_pin import cgroupfs
from nova_tenant_pin import cgroups
from nova_tenant_pin import manager as manager_mod
from nova_tenant_pin import procfs
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf

# The cgroup root of the private libvirtd's guests (``/machine/...`` in
# every hierarchy), and so of the tenant partitions made for them.
CGROUP_ROOT = '/'
QEMU_RUN_DIR = '/run/libvirt/qemu'


class Guest:
    """One guest: its project, instance uuid, domain and QEMU pid."""

    def __init__(self, project, inst, dom, pid):
        self.project = project
        self.inst = inst
        self.dom = dom
        self.pid = pid


def qemu_pid(dom):
    """The PID of a running domain's QEMU, from libvirt's pidfile."""
    with open(os.path.join(QEMU_RUN_DIR, dom.name() + '.pid')) as f:
        return int(f.read())


def process_identity(pid):
    """``(pid, start time in clock ticks since boot)``: a PID that a new
    process reused after the guest restarted gives another pair."""
    with open('/proc/%d/stat' % pid) as f:
        return pid, int(f.read().rsplit(')', 1)[1].split()[19])


def guest_threads(pid):
    """The guest's QEMU threads (vCPU, emulator and I/O threads) as /proc
    has them, without the kernel workers KVM attaches to the process,
    which the audit ignores too: they are not the tenant's to place."""
    return [t for t in procfs.threads(pid)
            if not t.comm.startswith(audit._KERNEL_WORKERS)]


class TwoProjectsTestCase(base.TestCase):
    """``self.projects``: two project ids; ``self.guests``: the
    :class:`Guest` a test started (it appends them)."""

    #: Names the manager's lock and logs.
    MANAGER_NAME = 'itest'
    #: Partitions other than the projects' that a test may leave behind.
    EXTRA_TENANTS = ()

    def setUp(self):
        super().setUp()
        self.host = lvf.require_real_host(self, min_cores=2)
        self.libvirt = self.useFixture(lvf.LibvirtdFixture())
        self.useFixture(enforcement_fixtures.PrivsepDaemon(
            self.conf_fixture))
        self.partitions = cgroups.CgroupPartitions(root=CGROUP_ROOT)
        # Nova project ids: each instance's isolation key by default.
        self.projects = [uuid.uuid4().hex for _ in range(2)]
        self.guests = []
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        for guest in self.guests:
            try:
                if guest.dom.isActive():
                    guest.dom.destroy()
            except libvirt.libvirtError:
                continue
        for tenant in list(self.projects) + list(self.EXTRA_TENANTS):
            for hierarchy in cgroupfs.detect_layout().ordered():
                lvf.remove_cgroup_tree(self.partition_path(hierarchy,
                                                           tenant))

    @staticmethod
    def partition_path(hierarchy, tenant):
        return hierarchy.path(CGROUP_ROOT, cgroupfs.partition_dir(tenant))

    def new_manager(self, settings=None):
        # A real host keeps housekeeping cores for its own daemons; this
        # 2-core machine has none to spare, so each project gets a core.
        return manager_mod.TenantPinManager(
            self.host, self.partitions, lambda: self.libvirt.conn,
            housekeeping_cpus=(), name=self.MANAGER_NAME, settings=settings)

    def identities(self):
        """Each guest's QEMU process as libvirt names it (its pidfile)
        and as the kernel knows it (PID and start time)."""
        return [(qemu_pid(g.dom), process_identity(g.pid))
                for g in self.guests]

    def assert_no_partition(self, tenant):
        """The tenant's partition is gone, from the map and from every
        hierarchy."""
        self.assertNotIn(tenant, self.partitions.list_partitions())
        for hierarchy in self.partitions.layout.ordered():
            path = self.partition_path(hierarchy, tenant)
            self.assertFalse(os.path.exists(path), path)
