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

"""Per-tenant cpuset partitions, as libvirt expects them.

A tenant's libvirt partition is ``/machine/tenant-<id>``; libvirt maps it to
the cgroup directory ``machine/tenant-<id>.partition`` in every hierarchy it
uses. :class:`TenantPartitions` is the interface the manager uses;
:class:`CgroupPartitions` is the real one (cgroup v1, v2 or hybrid, as
:func:`detect_layout` finds them; every write goes through
:mod:`nova_tenant_pin.privsep`), and :class:`MemoryPartitions` keeps the
same state in memory for tests that run without a real cgroup tree.
:func:`get_partitions` gives the cgroup one (the memory one is for tests).
"""

import abc
import dataclasses
import os

from oslo_config import cfg

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import exception
from nova_tenant_pin import privsep

# Re-exported: the names other modules use from here.
TENANT_ID_RE = cgroupfs.TENANT_ID_RE
PartitionError = exception.PartitionError
PartitionBusy = exception.PartitionBusy
CgroupLayoutError = exception.CgroupLayoutError
CgroupLayout = cgroupfs.CgroupLayout
Hierarchy = cgroupfs.Hierarchy
validate_tenant_id = cgroupfs.validate_tenant_id
partition_name = cgroupfs.partition_name
partition_dir = cgroupfs.partition_dir
V1, V2, HYBRID = cgroupfs.V1, cgroupfs.V2, cgroupfs.HYBRID


def detect_layout(host_root='/'):
    """The host's cgroup layout (mode v1, v2 or hybrid, and the hierarchies
    libvirt uses), read from ``/proc/self/mountinfo`` and
    ``/proc/cgroups`` under ``host_root``."""
    return cgroupfs.detect_layout(host_root)


@dataclasses.dataclass
class PartitionInfo:
    tenant: str
    cpus: frozenset
    effective_cpus: frozenset
    mems: frozenset
    tasks: frozenset
    # Whether the kernel holds the CPUs for this partition alone (v1
    # cpuset.cpu_exclusive, v2 cpuset.cpus.partition "root").
    exclusive: bool = False


class TenantPartitions(abc.ABC):
    """The cpuset partitions of the tenants on one host."""

    @abc.abstractmethod
    def ensure_partition(self, tenant, cpus, mems):
        """Create the partition in every hierarchy if missing, and set its
        CPUs and memory nodes before any domain starts in it."""

    @abc.abstractmethod
    def set_partition_cpus(self, tenant, cpus):
        """Resize a partition: widen top-down, shrink bottom-up."""

    @abc.abstractmethod
    def remove_partition(self, tenant):
        """Remove a partition that holds no tasks; PartitionBusy if it
        does. Never kills anything."""

    @abc.abstractmethod
    def list_partitions(self):
        """``{tenant: PartitionInfo}`` read back from the host."""


class MemoryPartitions(TenantPartitions):
    """Partitions held in memory, with the same rules as the real tree."""

    def __init__(self):
        self.partitions = {}
        self.calls = []

    def ensure_partition(self, tenant, cpus, mems):
        validate_tenant_id(tenant)
        cpus, mems = frozenset(cpus), frozenset(mems)
        if not cpus or not mems:
            raise PartitionError('partition tenant-%s needs CPUs and memory '
                                 'nodes' % tenant)
        self.calls.append(('ensure_partition', tenant, cpus, mems))
        info = self.partitions.get(tenant)
        tasks = info.tasks if info else frozenset()
        self.partitions[tenant] = PartitionInfo(tenant, cpus, cpus, mems,
                                                tasks)

    def set_partition_cpus(self, tenant, cpus):
        validate_tenant_id(tenant)
        cpus = frozenset(cpus)
        if tenant not in self.partitions:
            raise PartitionError('no partition for tenant %s' % tenant)
        if not cpus:
            raise PartitionError('partition tenant-%s cannot have no CPUs'
                                 % tenant)
        self.calls.append(('set_partition_cpus', tenant, cpus))
        info = self.partitions[tenant]
        self.partitions[tenant] = dataclasses.replace(
            info, cpus=cpus, effective_cpus=cpus)

    def remove_partition(self, tenant):
        validate_tenant_id(tenant)
        info = self.partitions.get(tenant)
        if info is None:
            return
        if info.tasks:
            raise PartitionBusy('partition tenant-%s still holds tasks %s'
                                % (tenant, sorted(info.tasks)))
        self.calls.append(('remove_partition', tenant))
        del self.partitions[tenant]

    def list_partitions(self):
        return dict(self.partitions)


class CgroupPartitions(TenantPartitions):
    """Tenant partitions in the host's cgroup tree.

    :param root: the cgroup path under every hierarchy's mount that holds
        ``machine`` (``/`` on a compute host; ``/hostB`` for a second
        simulated host; a test-owned subtree in tests).
    :param host_root: the filesystem root to read the tree from; must be
        :data:`nova_tenant_pin.privsep.HOST_ROOT`, where the privileged
        writes go (tests patch both to a fake tree). None means that.
    """

    def __init__(self, root='/', host_root=None):
        if host_root is not None and os.path.realpath(host_root) != \
                os.path.realpath(privsep.HOST_ROOT):
            raise ValueError('host_root %s is not privsep.HOST_ROOT %s: '
                             'reads and writes would see different trees'
                             % (host_root, privsep.HOST_ROOT))
        self.root = cgroupfs.normalize_root(root)
        self.layout = cgroupfs.detect_layout(privsep.HOST_ROOT)
        self.layout.require_supported()

    def path(self, tenant, hierarchy=None):
        """The partition's directory in ``hierarchy`` (default: cpuset)."""
        hierarchy = hierarchy or self.layout.cpuset
        return hierarchy.path(self.root, partition_dir(
            tenant, self.layout.slices(self.root)))

    @staticmethod
    def _ids(values, tenant, what):
        values = sorted(values)
        if not values:
            raise PartitionError(name=partition_name(tenant),
                                 reason='needs %s' % what)
        return values

    def ensure_partition(self, tenant, cpus, mems):
        validate_tenant_id(tenant)
        return privsep.ensure_partition(
            self.root, tenant, self._ids(cpus, tenant, 'CPUs'),
            self._ids(mems, tenant, 'memory nodes'))

    def set_partition_cpus(self, tenant, cpus):
        validate_tenant_id(tenant)
        return privsep.set_partition_cpus(self.root, tenant,
                                          self._ids(cpus, tenant, 'CPUs'))

    def remove_partition(self, tenant):
        validate_tenant_id(tenant)
        return privsep.remove_partition(self.root, tenant)

    def move_task(self, tenant, pid):
        """Move a process into the partition (every hierarchy)."""
        validate_tenant_id(tenant)
        return privsep.move_task(self.root, tenant, pid)

    def list_partitions(self):
        cpuset = self.layout.cpuset
        machine = cpuset.path(self.root, cgroupfs.MACHINE_SLICE
                              if self.layout.slices(self.root)
                              else cgroupfs.MACHINE)
        try:
            names = sorted(os.listdir(machine))
        except FileNotFoundError:
            return {}
        result = {}
        for name in names:
            tenant = cgroupfs.tenant_of_dir(name)
            path = os.path.join(machine, name)
            if tenant is None or os.path.islink(path) or \
                    not os.path.isdir(path):
                continue
            group = cgroupfs.cgroup(cpuset, path)
            try:
                result[tenant] = PartitionInfo(
                    tenant, group.cpus(), group.effective_cpus(),
                    group.mems(), cgroupfs.subtree_tasks(cpuset, path),
                    group.exclusive())
            except FileNotFoundError:
                # Removed while we read it.
                continue
        return result


def get_partitions(backend='auto', root=None, conf=None):
    """The TenantPartitions the manager uses.

    :param backend: ``auto`` (the host's cgroup tree, v1, v2 or hybrid) or
        ``memory`` (no enforcement: for tests, which pass it themselves; it
        is not an operator's option).
    :param root: the cgroup root; default ``[tenant_pin] cgroup_root``.
    """
    conf = conf or cfg.CONF
    if backend == 'memory':
        return MemoryPartitions()
    if backend != 'auto':
        raise ValueError('unknown partition backend %r (auto, memory)'
                         % (backend,))
    return CgroupPartitions(root=root or conf.tenant_pin.cgroup_root)
