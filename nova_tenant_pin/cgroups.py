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
:class:`MemoryPartitions` keeps the same state in memory for tests that run
without a real cgroup tree.
"""

import abc
import dataclasses
import re

TENANT_ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$')


class PartitionError(Exception):
    """A tenant partition could not be changed as asked."""


class PartitionBusy(PartitionError):
    """The partition still holds tasks, so it is not removed."""


def validate_tenant_id(tenant):
    if not isinstance(tenant, str) or not TENANT_ID_RE.match(tenant):
        raise PartitionError('invalid tenant id %r: use 1-64 letters, '
                             'digits, "_" or "-"' % (tenant,))
    return tenant


def partition_name(tenant):
    """The libvirt partition of a tenant: ``/machine/tenant-<id>``."""
    return '/machine/tenant-%s' % validate_tenant_id(tenant)


@dataclasses.dataclass
class PartitionInfo:
    tenant: str
    cpus: frozenset
    effective_cpus: frozenset
    mems: frozenset
    tasks: frozenset


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
