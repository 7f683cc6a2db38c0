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

"""One host under each placement rule the benchmarks compare.

Every host has ``check(request)``, a verdict that is true when the request
fits; ``accept(request, verdict)``; ``remove(request)``; ``full()``;
``free_vcpus()``, what placement sees as free (the spread weighers'
measure); and ``stranded()``, threads idle inside cores given to an
instance or a tenant. ``capacity.py`` fills one host; ``cluster_sim.py``
runs a cloud of them.

The rules (no CPU overcommit; cores with a housekeeping CPU are left out):

* :class:`SharedHost` with ``threads=2``: every thread usable by anyone,
  floating (no isolation: the upper bound); with ``threads=1``: SMT off.
* :class:`PinnedHost`: Nova's pinned instances in one NUMA cell, the host's
  cells tried in order, ``cores_for(vcpus)`` whole cores each: one core a
  vCPU for ``isolate``, ``ceil(vcpus / threads)`` for ``require``.
* :class:`TenantPinHost`: this project's allocator, judged by
  :func:`nova_tenant_pin.scheduler.fit.check_fit` (the filter's code).
"""

from nova_tenant_pin import allocator
from nova_tenant_pin.scheduler import fit


class _Host:
    def __init__(self, topology, housekeeping):
        hk = set(housekeeping)
        self.threads_per_core = topology.max_threads_per_core
        self.cell_cores = {cell.id: sum(1 for core in cell.cores
                                        if not hk & set(core.cpus))
                           for cell in topology.cells}
        self.usable = self.threads_per_core * sum(self.cell_cores.values())
        self.vcpus = 0

    def free_vcpus(self):
        return self.usable - self.vcpus - self.stranded()

    def stranded(self):
        return 0


class SharedHost(_Host):
    """Floating instances on ``threads`` threads of each usable core."""

    def __init__(self, topology, housekeeping, threads):
        super().__init__(topology, housekeeping)
        self.capacity = threads * sum(self.cell_cores.values())

    def check(self, request):
        return self.vcpus + request.vcpus <= self.capacity

    def accept(self, request, verdict):
        self.vcpus += request.vcpus

    def remove(self, request):
        self.vcpus -= request.vcpus

    def full(self):
        return self.vcpus == self.capacity

    def free_vcpus(self):
        return self.capacity - self.vcpus


class PinnedHost(_Host):
    """Nova pinning: ``cores_for(vcpus)`` whole cores in one cell."""

    def __init__(self, topology, housekeeping, cores_for):
        super().__init__(topology, housekeeping)
        self.cores_for = cores_for
        self.free = dict(self.cell_cores)
        self.where = {}

    def check(self, request):
        need = self.cores_for(request.vcpus)
        for cell in sorted(self.free):
            if self.free[cell] >= need:
                return (cell, need)
        return None

    def accept(self, request, verdict):
        cell, need = verdict
        self.free[cell] -= need
        self.where[request.uuid] = verdict
        self.vcpus += request.vcpus

    def remove(self, request):
        cell, need = self.where.pop(request.uuid)
        self.free[cell] += need
        self.vcpus -= request.vcpus

    def full(self):
        return not any(self.free.values())

    def stranded(self):
        used = sum(self.cell_cores.values()) - sum(self.free.values())
        return used * self.threads_per_core - self.vcpus


def isolate(topology, housekeeping):
    """Nova ``hw:cpu_thread_policy=isolate``: a core per vCPU."""
    return PinnedHost(topology, housekeeping, lambda vcpus: vcpus)


def require(topology, housekeeping):
    """Nova ``hw:cpu_thread_policy=require``: whole cores per instance."""
    threads = topology.max_threads_per_core
    return PinnedHost(topology, housekeeping,
                      lambda vcpus: allocator.cores_needed(vcpus, threads))


class TenantPinHost(_Host):
    """The allocator's plan, kept as the compute host keeps it: the present
    map is ``current`` of every new plan.

    With ``reserve_stranded``, placement also holds the stranded threads as
    reserved VCPU (as the compute driver reports them), so a request needs
    that many free threads outside every tenant's cores even when it would
    fill its own tenant's idle threads.
    """

    def __init__(self, topology, housekeeping, reserve_stranded=False):
        super().__init__(topology, housekeeping)
        self.topology = topology
        self.housekeeping = housekeeping
        self.reserve_stranded = reserve_stranded
        self.running = []
        self.plan = allocator.plan(topology, [],
                                   housekeeping_cpus=housekeeping)
        # (tenant, vCPUs) refused since the host last changed: the same
        # request is refused again (the plan is a function of the host's
        # instances and the request's tenant and size).
        self.refused = set()

    def check(self, request):
        if self.reserve_stranded and request.vcpus > self.free_vcpus():
            return None
        if (request.key, request.vcpus) in self.refused:
            return None
        verdict = fit.check_fit(self.topology, self.running, request,
                                housekeeping_cpus=self.housekeeping,
                                current=self.plan.tenant_map(),
                                before=self.plan)
        if not verdict.fits:
            self.refused.add((request.key, request.vcpus))
            return None
        return verdict

    def accept(self, request, verdict):
        self.running.append(request)
        self.plan = verdict.plan
        self.vcpus += request.vcpus
        self.refused.clear()

    def remove(self, request):
        self.refused.clear()
        self.running.remove(request)
        self.vcpus -= request.vcpus
        self.plan = allocator.plan(self.topology, self.running,
                                   housekeeping_cpus=self.housekeeping,
                                   current=self.plan.tenant_map())

    def full(self):
        return not self.plan.free_cpus and not self.plan.stranded_cpus

    def stranded(self):
        return self.plan.stranded_cpus
