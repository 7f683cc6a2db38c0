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

"""The design's invariants 1-3, checked on one host's domains and partitions.

The checker reads what the kernel would enforce: each domain's XML
(partition, ``<vcpu cpuset>``, ``<vcpupin>``, ``<emulatorpin>``) and each
partition's CPUs. It returns a list of violations, each naming the
instance, tenant and CPUs involved, so a failing test says what broke.
"""

import collections
import math

from nova_tenant_pin import manager


def check_host(topology, housekeeping_cpus, partitions, domains,
               ratio=1.0, check_fewest_cores=True, static=()):
    """Violations of invariants 1-3 on one host.

    :param partitions: ``{tenant: PartitionInfo}`` (``list_partitions()``).
    :param domains: :class:`~nova_tenant_pin.manager.DomainInfo` of the
        host's domains. Only running ones are checked for isolation; stopped
        ones (an instance shut off, or the source of a resize waiting for
        confirmation) still hold their room, so they count for invariant 3.
    :param static: tenants with a static cpuset (exempt from invariant 3).
    """
    errors = []
    host_cpus = topology.online_cpus
    hk_cores = topology.cores_of(housekeeping_cpus)
    owner = {}
    # 1 and 2 on the partitions: no core in two tenants, none in
    # housekeeping.
    for tenant, info in sorted(partitions.items()):
        for core in topology.cores_of(info.cpus):
            if core in owner and owner[core] != tenant:
                errors.append('tenants %s and %s share core %s'
                              % (owner[core], tenant, list(core.cpus)))
            owner[core] = tenant
            if core in hk_cores:
                errors.append('tenant %s holds housekeeping core %s'
                              % (tenant, list(core.cpus)))
        if not info.cpus <= info.effective_cpus | info.cpus:
            errors.append('tenant %s partition is inconsistent' % tenant)
    vcpus = collections.Counter()
    for dom in domains:
        if not dom.active:
            if dom.tenant is not None:
                vcpus[dom.tenant] += dom.vcpus
            continue
        used = dom.all_cpus(host_cpus)
        if dom.tenant is None:
            if dom.dedicated:
                for core in topology.cores_of(used):
                    if core in owner:
                        errors.append(
                            'dedicated instance %s shares core %s with '
                            'tenant %s' % (dom.uuid, list(core.cpus),
                                           owner[core]))
                continue
            errors.append('instance %s (project %s) runs in no tenant '
                          'partition on CPUs %s' % (dom.uuid, dom.project_id,
                                                    sorted(used)))
            continue
        part = partitions.get(dom.tenant)
        if part is None:
            errors.append('instance %s runs in partition of tenant %s, which '
                          'does not exist' % (dom.uuid, dom.tenant))
            continue
        if not used <= part.cpus:
            errors.append('instance %s of tenant %s may run on CPUs %s '
                          'outside its partition %s' % (
                              dom.uuid, dom.tenant, sorted(used - part.cpus),
                              sorted(part.cpus)))
        if dom.project_id and dom.project_id != dom.tenant and \
                dom.tenant != manager.EXEMPT_TENANT:
            errors.append('instance %s of project %s is in the partition of '
                          'tenant %s' % (dom.uuid, dom.project_id,
                                         dom.tenant))
        vcpus[dom.tenant] += dom.vcpus
    # 3: fewest whole cores. Per cell the allocator takes
    # ceil(vcpus_in_cell / (threads * ratio)); summed over the cells a tenant
    # spans that is at most one core more per extra cell than the total.
    if check_fewest_cores:
        threads = topology.max_threads_per_core
        for tenant, info in sorted(partitions.items()):
            if tenant in static:
                continue
            cores = topology.cores_of(info.cpus)
            cells = {core.cell for core in cores}
            need = math.ceil(vcpus[tenant] / (threads * ratio) - 1e-9)
            if vcpus[tenant] == 0:
                errors.append('tenant %s holds cores %s with no instance'
                              % (tenant, sorted(info.cpus)))
            elif not need <= len(cores) <= need + len(cells) - 1:
                errors.append('tenant %s has %d vCPUs on %d cores (%s); '
                              'fewest is %d' % (tenant, vcpus[tenant],
                                                len(cores), sorted(info.cpus),
                                                need))
    return errors
