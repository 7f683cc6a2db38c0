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

from nova_tenant_pin import policy


def check_host(topology, housekeeping_cpus, partitions, domains,
               ratio=1.0, check_fewest_cores=True, static=()):
    """Violations of invariants 1-3 on one host.

    :param partitions: ``{tenant: PartitionInfo}`` (``list_partitions()``).
    :param domains: :class:`~nova_tenant_pin.domain_xml.DomainInfo` of the
        host's domains. Only running ones are checked for isolation; stopped
        ones (an instance shut off, or the source of a resize waiting for
        confirmation) still hold their room, so they count for invariant 3.
    :param static: tenants with a static cpuset (exempt from invariant 3).
    """
    errors = []
    host_cpus = topology.online_cpus
    hk_cores = topology.cores_of(housekeeping_cpus)
    # A partition keeps the domains that started in it when their key
    # changes (isolation groups re-read, an adopted host); their pins
    # confine them, and the partition holds their cores for them. Such a
    # partition owns only the cores its own key's domains use.
    hosting = set()
    own_used = collections.defaultdict(set)
    for dom in domains:
        if dom.partition_key is None or dom.partition_key not in partitions:
            continue
        used = dom.all_cpus(host_cpus) & partitions[dom.partition_key].cpus
        if dom.isolation_key != dom.partition_key:
            hosting.add(dom.partition_key)
        else:
            own_used[dom.partition_key] |= used

    def own_cpus(tenant, info):
        return own_used[tenant] if tenant in hosting else set(info.cpus)

    owners = collections.defaultdict(set)
    for tenant, info in sorted(partitions.items()):
        for core in topology.cores_of(own_cpus(tenant, info)):
            owners[core].add(tenant)
        if not info.cpus <= info.effective_cpus | info.cpus:
            errors.append('tenant %s partition is inconsistent' % tenant)
    vcpus = collections.Counter()
    # A key's in-tenant ratio is its strictest instance's, as recorded in
    # the domains' tenant-pin metadata; ``ratio`` for the others.
    ratios = {}
    for dom in domains:
        if dom.ratio is not None and dom.isolation_key is not None:
            ratios[dom.isolation_key] = min(
                ratios.get(dom.isolation_key, dom.ratio), dom.ratio)
    key_cores = collections.defaultdict(set)
    for tenant, info in partitions.items():
        key_cores[tenant] |= set(topology.cores_of(own_cpus(tenant, info)))
    for dom in domains:
        key = dom.isolation_key
        if not dom.active:
            if key is not None:
                vcpus[key] += dom.vcpus
            continue
        used = dom.all_cpus(host_cpus)
        if dom.partition_key is not None:
            part = partitions.get(dom.partition_key)
            if part is None:
                errors.append('instance %s runs in partition of tenant %s, '
                              'which does not exist'
                              % (dom.uuid, dom.partition_key))
                continue
            if not used <= part.cpus:
                errors.append('instance %s of tenant %s may run on CPUs %s '
                              'outside its partition %s' % (
                                  dom.uuid, dom.partition_key,
                                  sorted(used - part.cpus),
                                  sorted(part.cpus)))
            used = used & part.cpus
        if key is None:
            if dom.dedicated:
                for core in topology.cores_of(used):
                    for owner in owners.get(core, ()):
                        errors.append(
                            'dedicated instance %s shares core %s with '
                            'tenant %s' % (dom.uuid, list(core.cpus), owner))
                continue
            errors.append('instance %s (project %s) runs in no tenant '
                          'partition on CPUs %s' % (dom.uuid, dom.project_id,
                                                    sorted(used)))
            continue
        if dom.key is None and dom.project_id and \
                dom.project_id != dom.partition_key and \
                dom.partition_key != policy.SHARED_POOL:
            errors.append('instance %s of project %s is in the partition of '
                          'tenant %s' % (dom.uuid, dom.project_id,
                                         dom.partition_key))
        for core in topology.cores_of(used):
            owners[core].add(key)
            key_cores[key].add(core)
        vcpus[key] += dom.vcpus
    # 1 and 2: no core in two keys, none in housekeeping.
    for core, keys in sorted(owners.items(), key=lambda kv: kv[0].cpus):
        if len(keys) > 1:
            errors.append('tenants %s share core %s'
                          % (' and '.join(sorted(keys)), list(core.cpus)))
        if core in hk_cores:
            errors.append('tenant %s holds housekeeping core %s'
                          % (', '.join(sorted(keys)), list(core.cpus)))
    # 3: fewest whole cores. Per cell the allocator takes
    # ceil(vcpus_in_cell / (threads * ratio)); summed over the cells a tenant
    # spans that is at most one core more per extra cell than the total.
    if check_fewest_cores:
        threads = topology.max_threads_per_core
        for tenant, cores in sorted(key_cores.items()):
            if tenant in static or not cores:
                continue
            cells = {core.cell for core in cores}
            cpus = sorted(c for core in cores for c in core.cpus)
            need = math.ceil(vcpus[tenant] / (
                threads * ratios.get(tenant, ratio)) - 1e-9)
            if vcpus[tenant] == 0:
                errors.append('tenant %s holds cores %s with no instance'
                              % (tenant, cpus))
            elif not need <= len(cores) <= need + len(cells) - 1:
                errors.append('tenant %s has %d vCPUs on %d cores (%s); '
                              'fewest is %d' % (tenant, vcpus[tenant],
                                                len(cores), cpus, need))
    return errors
