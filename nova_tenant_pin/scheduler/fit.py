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

"""Does one more instance fit on a host, and how well does it fill its
tenant's cores there?

The one per-host decision of tenant-aware scheduling, shared by the Nova
filter and weigher (:mod:`nova_tenant_pin.scheduler.filters`), the capacity
benchmark and the cluster simulation, so that all of them judge a host the
same way:

* :func:`check_fit` runs :func:`allocator.plan` on the host's instances
  plus the new one, as the compute host will, and says whether every
  instance is still placed. Given the plan of the host without the new
  instance, it first refuses, with no plan, a host where the tenant's idle
  threads and the free cores together hold fewer vCPUs than the instance
  has: most hosts of a full cloud, at a fraction of a plan's cost.
* :func:`stranded_change` is the weigher's estimate, cheap enough for every
  host of a large cloud: from the plan of the host *without* the new
  instance, how many threads the host strands after the tenant grows by the
  new instance, minus how many it strands now. Negative means the instance
  fills threads its tenant already holds and leaves idle; positive means it
  opens cores that it does not fill.

This module is pure like the allocator: it imports neither Nova nor libvirt.
"""

import dataclasses
import math

from nova_tenant_pin import allocator

_EPSILON = 1e-9


@dataclasses.dataclass(frozen=True)
class Fit:
    """The verdict on one host: ``fits``, the ``reason`` when it does not,
    and the ``plan`` of the host with the new instance (None when the
    capacity bound alone refused it)."""

    fits: bool
    reason: str
    plan: allocator.Plan


def check_fit(topology, running, new, housekeeping_cpus=(), ratio=1.0,
              current=None, dedicated_cpus=(), before=None,
              tenant_ratios=None):
    """Plan ``running`` + ``new`` on the host; does everything stay placed?

    :param topology: the host's :class:`topology.HostTopology`.
    :param running: :class:`allocator.InstanceRequest` of the instances the
        host already runs, oldest first (the allocator serves them first).
    :param new: the arriving :class:`allocator.InstanceRequest`.
    :param current: the host's present tenant map: the simulation keeps
        the real one; the Nova filter, which cannot see it, passes the map
        of a fresh plan of ``running``.
    :param before: the plan of ``running`` alone, when the caller has it.
    :param tenant_ratios: ``{key: ratio}`` for tenants whose in-tenant
        ratio is not ``ratio`` (flavors with
        ``tenant_pin:cpu_allocation_ratio``).
    :returns: a :class:`Fit`.

    A host whose present instances no longer all fit with the newcomer is
    refused too: the allocator serves tenants in its own order, so a new
    instance may push out an older one of another tenant rather than be
    left out itself, and the compute host would then refuse the claim.
    """
    tenant_ratios = dict(tenant_ratios or {})
    if before is not None:
        room = room_for(before, new.key,
                        tenant_ratios.get(new.key, ratio), ratio)
        if room + _EPSILON < new.vcpus:
            return Fit(False, 'tenant %s has room for %d vCPUs on this host '
                       '(its idle threads and the free cores), not %d'
                       % (new.key, math.floor(room + _EPSILON),
                          new.vcpus), None)
    result = allocator.plan(topology, list(running) + [new],
                            housekeeping_cpus=housekeeping_cpus,
                            current=current, ratio=ratio,
                            dedicated_cpus=dedicated_cpus,
                            tenant_ratios=tenant_ratios)
    for item in result.unplaced:
        if item['uuid'] == new.uuid:
            return Fit(False, item['reason'], result)
    if result.unplaced:
        return Fit(False, 'instances already on the host would no longer '
                   'fit: %s' % ', '.join(sorted(
                       i['uuid'] for i in result.unplaced)), result)
    return Fit(True, None, result)


def room_for(before, key, ratio=1.0, free_ratio=None):
    """vCPUs that ``key`` could add on the host at most: the spare
    room in the cores it holds plus every free core, by ``before``.
    ``ratio`` is the tenant's in-tenant ratio (``free_ratio``, when given,
    the larger of it and the host's, is used for free cores: a cautious
    bound must not refuse what the allocator may place).

    The allocator cannot do better than that, except by moving another
    tenant that is split over NUMA cells into fewer cores, which it does
    not do to a tenant that keeps its cores; so refusing below this bound
    is at worst cautious.
    """
    tenant = before.tenants.get(key)
    own = 0.0 if tenant is None else len(tenant.cpus) * ratio - tenant.vcpus
    return own + len(before.free_cpus) * max(ratio, free_ratio or ratio)


def stranded_change(before, new, threads_per_core, ratio=1.0):
    """Threads the host would strand with ``new``, minus those it strands.

    :param before: the host's :class:`allocator.Plan` without ``new``.
    :param new: the arriving :class:`allocator.InstanceRequest`.
    :param threads_per_core: threads of the host's cores (the largest).
    :param ratio: the in-tenant CPU allocation ratio.

    Only the new instance's tenant changes, and it keeps the cores it holds
    (the allocator is sticky): it grows to the fewest cores for its new
    total, or stays where it is when its cores already hold the total.
    NUMA cells are ignored, which can make the estimate optimistic for a
    tenant split over cells; :func:`check_fit` decides, this only ranks.
    """
    tenant = before.tenants.get(new.key)
    held, vcpus, stranded = ((len(tenant.cpus), tenant.vcpus,
                              tenant.stranded_cpus)
                             if tenant is not None else (0, 0, 0))
    total = vcpus + new.vcpus
    threads = max(held, threads_per_core * allocator.cores_needed(
        total, threads_per_core, ratio))
    # Threads the tenant's vCPUs need, as the allocator counts them.
    busy = math.ceil(total / ratio - _EPSILON)
    return max(0, threads - busy) - stranded


#: How much of one step of :func:`tenant_pin_weight` the room term may
#: take: less than one step, so that it only orders hosts the stranded
#: change and the tenant's presence leave equal.
ROOM_WEIGHT = 0.5


def room_term(before, present):
    """The part of :func:`tenant_pin_weight` that keeps room, in
    ``[0, ROOM_WEIGHT]``.

    :param before: the host's :class:`allocator.Plan` without the new
        instance.
    :param present: whether the new instance's tenant holds cores there.

    A tenant that holds cores on the host goes to the fullest such host
    (the share of the host's tenant cores held): its instances gather
    where it already is and emptier hosts keep their room. A tenant new to
    the host goes to the host with the most free cores: it has room to
    grow there, so its later instances can gather beside it rather than
    open cores on another host, and a host crowded with tenants keeps its
    last cores for the tenants already on it.
    """
    used = sum(len(t.cpus) for t in before.tenants.values())
    total = used + len(before.free_cpus)
    if not total:
        return 0.0
    fill = used / total
    return ROOM_WEIGHT * (fill if present else 1.0 - fill)


def tenant_pin_weight(before, new, threads_per_core, ratio=1.0, room=True):
    """TenantPinWeigher's score of a host (higher is better).

    :param before: the host's :class:`allocator.Plan` without ``new``.
    :param room: add :func:`room_term`; False gives the score as it was
        before that term (the cluster simulation compares both).

    In order: an instance that fills threads its tenant holds idle on the
    host (:func:`stranded_change` negative) first; then a host where the
    tenant already holds cores, so that a tenant's instances gather on few
    hosts (each host a tenant is on can strand a thread; gathered, its odd
    instances fill each other's threads); last, a host where the instance
    opens cores it leaves partly idle. Hosts equal by those are ordered by
    :func:`room_term`: the fullest host the tenant is on; among hosts new
    to the tenant, the emptiest.
    """
    change = stranded_change(before, new, threads_per_core, ratio)
    tenant = before.tenants.get(new.key)
    present = tenant is not None and bool(tenant.cpus)
    weight = -2 * change + (1 if present else 0)
    if room:
        weight += room_term(before, present)
    return weight
