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

"""Generated multi-tenant workloads and host shapes shared by the benchmarks.

Every generator takes a :class:`random.Random`, so a run is a pure function
of its seed. The distributions, which ``doc/source/benchmarks.rst`` repeats:

* **Instance sizes** (:data:`HOST_FILL_SIZES`): mostly small instances,
  1-4 vCPUs (82 %), some large ones, 8-16 vCPUs (18 %); 27 % of the
  instances have an odd vCPU count, which is what costs ``require`` and
  tenant-pin a thread.
* **Instances per tenant** (:data:`INSTANCES_PER_TENANT`): 1 to 16, with
  weight ``1/k`` for ``k`` instances: many tenants with one or two
  instances, a few with many.
* **Arrival order**: tenants are drawn in blocks of 50; the instances of a
  block are shuffled together, so a tenant's instances arrive interleaved
  with other tenants' ones, as they do on a shared host.
"""

from nova_tenant_pin import allocator
from nova_tenant_pin import topology as topo

# vCPUs -> relative weight.
HOST_FILL_SIZES = {1: 20, 2: 30, 3: 7, 4: 25, 8: 10, 12: 3, 16: 5}
MAX_INSTANCES_PER_TENANT = 16
INSTANCES_PER_TENANT = {k: 1.0 / k
                        for k in range(1, MAX_INSTANCES_PER_TENANT + 1)}
TENANT_BLOCK = 50


def weighted_choice(rng, weights):
    """One key of ``weights`` (``{value: weight}``), drawn by weight."""
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def host_topology(sockets, cores_per_socket, threads_per_core=2):
    """A host numbered like Linux numbers x86 servers: CPU ``n`` and
    ``n + cores`` are siblings, and each socket is one NUMA cell."""
    cores = sockets * cores_per_socket
    cells = {}
    for socket in range(sockets):
        cells[socket] = [
            [socket * cores_per_socket + i + t * cores
             for t in range(threads_per_core)]
            for i in range(cores_per_socket)]
    return topo.HostTopology(cells)


def sibling_pair_host(cells=4, cores_per_cell=64):
    """A host whose sibling threads are numbered side by side (CPU ``2n``
    and ``2n + 1``), ``cells`` NUMA cells of ``cores_per_cell`` cores: 512
    threads by default, the full host of the host-operation benchmarks."""
    cpu, layout = 0, {}
    for cell in range(cells):
        layout[cell] = []
        for _ in range(cores_per_cell):
            layout[cell].append([cpu, cpu + 1])
            cpu += 2
    return topo.HostTopology(layout)


def housekeeping_cpus(topology):
    """One whole core per NUMA cell (its first), as the design advises."""
    return sorted(cpu for cell in topology.cells if cell.cores
                  for cpu in cell.cores[0].cpus)


def arrivals(rng, sizes=None, block=TENANT_BLOCK, prefix='t'):
    """An endless stream of :class:`allocator.InstanceRequest`.

    Tenants come in blocks of ``block``; each draws its instance count from
    :data:`INSTANCES_PER_TENANT` and each instance its size from ``sizes``
    (default :data:`HOST_FILL_SIZES`); the block's instances are shuffled.
    """
    sizes = sizes or HOST_FILL_SIZES
    tenant = 0
    instance = 0
    while True:
        batch = []
        for _ in range(block):
            project = '%s%d' % (prefix, tenant)
            tenant += 1
            for _ in range(weighted_choice(rng, INSTANCES_PER_TENANT)):
                batch.append(allocator.InstanceRequest(
                    'i%d' % instance, project, weighted_choice(rng, sizes)))
                instance += 1
        rng.shuffle(batch)
        yield from batch
