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

"""The tenant-pin view of a Nova scheduler ``HostState``.

The filter and the weigher judge a host from what the scheduler already
knows about it, and from nothing else:

* ``host_state.numa_topology``: the cells the compute host reports, each
  with its shared CPUs (``cpuset``, from ``[compute] cpu_shared_set``), its
  dedicated CPUs (``pcpuset``), the CPUs Nova pinned instances to and its
  sibling sets. These become a
  :class:`~nova_tenant_pin.topology.HostTopology`. CPUs that are dedicated
  and not shared, or pinned, are Nova's and never go to a tenant, so they
  are passed as ``dedicated_cpus`` (a host that sets neither option reports
  every CPU in both sets; those are shared). Nova drops the threads it is
  not given (housekeeping) from the sibling sets, so a core that lost a
  thread that way shows up smaller than its neighbours; it is passed as
  housekeeping, as the compute host rounds housekeeping up to whole cores.
* ``host_state.instances``: the instances on the host, each as an
  :class:`~nova_tenant_pin.allocator.InstanceRequest` of its isolation key
  and vCPUs, the key, pin mode and in-tenant ratio resolved by
  :func:`nova_tenant_pin.policy.resolve` from the flavor and the
  ``[tenant_pin]`` per-project settings, as the compute host resolves
  them. Instances with dedicated or mixed CPUs (flavor ``hw:cpu_policy``)
  are Nova's and are left out. Nova fills what it knows of an instance
  lazily from the database (one query each) when the computes do not send
  their instance lists (``[filter_scheduler] track_instance_changes``).

Known limits: image properties (``tenant_pin_isolation``,
``tenant_pin_pin_mode``) are not in the scheduler's view of an image (Nova
keeps only the properties it knows there); the compute host reads them and
refuses a claim that does not fit, and Nova reschedules. The scheduler does
not see a compute host's
``[tenant_pin] housekeeping_cpus`` when they are inside
``cpu_shared_set``, nor the instances it placed earlier in the same
multi-create request unless the request is in a server group; in both
cases the compute host's claim is the last word, and Nova reschedules.
"""

import dataclasses
import functools

from nova import objects
from nova.objects import fields
from nova.virt import hardware
from oslo_config import cfg

from oslo_log import log as logging

from nova_tenant_pin import allocator
# Registers the [tenant_pin] options.
from nova_tenant_pin import conf  # noqa: F401
from nova_tenant_pin import policy
from nova_tenant_pin.scheduler import fit
from nova_tenant_pin import topology as topo

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

# The uuid of a request that has none yet (Nova sets one before it
# schedules; a spec built by hand may not have it).
NEW_INSTANCE = 'new-instance'

# CPU policies whose vCPUs Nova pins itself, on dedicated CPUs.
_NOVA_PINNED = (fields.CPUAllocationPolicy.DEDICATED,
                fields.CPUAllocationPolicy.MIXED)


@dataclasses.dataclass(frozen=True)
class TenantRequest(allocator.InstanceRequest):
    """An :class:`~nova_tenant_pin.allocator.InstanceRequest` whose
    ``key`` is the isolation key, with the instance's in-tenant
    ``ratio`` (a key's ratio is the smallest of its instances', as on the
    compute host)."""

    ratio: float = None


@functools.lru_cache(maxsize=8)
def _settings(exempt, groups):
    return policy.ProjectSettings.from_options(exempt, groups)


def policy_of(project_id, extra_specs=None, image_properties=None):
    """The tenant-pin policy of an instance, by the scheduler's
    ``[tenant_pin]`` options: the same :func:`policy.resolve` the compute
    host calls.

    :raises policy.PolicyError: a bad value or a conflict.
    """
    group = CONF.tenant_pin
    return policy.resolve(
        project_id, extra_specs, image_properties,
        _settings(tuple(group.exempt_projects),
                  tuple(group.isolation_groups)),
        default_pin_mode=group.pin_mode,
        default_ratio=group.tenant_cpu_allocation_ratio)


def tenant_ratios(requests, request=None):
    """``{key: ratio}``: each key's smallest in-tenant ratio."""
    ratios = {}
    for r in list(requests) + ([request] if request is not None else []):
        value = getattr(r, 'ratio', None)
        if value is not None:
            ratios[r.key] = min(ratios.get(r.key, value), value)
    return ratios


@dataclasses.dataclass(frozen=True)
class HostView:
    """What the allocator needs of one host, hashable so plans cache.

    ``cells`` is ``((cell_id, ((cpu, ...), ...)), ...)``, the sibling
    groups the compute host reports.
    """

    cells: tuple
    housekeeping_cpus: frozenset
    dedicated_cpus: frozenset
    running: tuple
    ratio: float

    @property
    def topology(self):
        return _topology(self.cells)

    def check_fit(self, request):
        """:func:`fit.check_fit` of ``request`` on this host.

        The plan of the host's instances alone stands for the compute
        host's present map, as ``current``: like the compute host, the
        check then keeps every tenant on the cores it holds and grows the
        new instance's tenant from its own idle threads and free cores.
        """
        running = self._running_without(request)
        before = self._before(running)
        return fit.check_fit(
            self.topology, running, request,
            housekeeping_cpus=self.housekeeping_cpus, ratio=self.ratio,
            current=before.tenant_map(), dedicated_cpus=self.dedicated_cpus,
            before=before, tenant_ratios=tenant_ratios(running, request))

    def stranded_change(self, request):
        """:func:`fit.stranded_change` of ``request`` on this host."""
        running = self._running_without(request)
        ratio = tenant_ratios(running, request).get(request.key,
                                                    self.ratio)
        return fit.stranded_change(
            self._before(running), request,
            self.topology.max_threads_per_core, ratio)

    def weight(self, request):
        """:func:`fit.tenant_pin_weight` of ``request`` on this host."""
        running = self._running_without(request)
        ratio = tenant_ratios(running, request).get(request.key,
                                                    self.ratio)
        return fit.tenant_pin_weight(
            self._before(running), request,
            self.topology.max_threads_per_core, ratio)

    def _before(self, running):
        return _plan(self.cells, self.housekeeping_cpus, self.dedicated_cpus,
                     running, self.ratio,
                     tuple(sorted(tenant_ratios(running).items())))

    def _running_without(self, request):
        # A resize or migration to the same host lists the instance already.
        return tuple(r for r in self.running if r.uuid != request.uuid)


@functools.lru_cache(maxsize=1024)
def _topology(cells):
    return topo.HostTopology({cell_id: groups for cell_id, groups in cells})


# Hosts whose instances did not change since the last request plan the
# same; the weigher asks this for every host of every request.
@functools.lru_cache(maxsize=4096)
def _plan(cells, housekeeping_cpus, dedicated_cpus, running, ratio,
          ratios=()):
    return allocator.plan(_topology(cells), running,
                          housekeeping_cpus=housekeeping_cpus,
                          ratio=ratio, dedicated_cpus=dedicated_cpus,
                          tenant_ratios=dict(ratios))


def host_view(host_state, request=None, group_members=()):
    """The :class:`HostView` of a ``HostState``, or None for a host that
    reports no NUMA topology (not a libvirt host: tenant-pin is not there).

    ``request``, the instance being scheduled, stands for the stubs Nova
    adds to ``host_state.instances`` for the earlier instances of the same
    multi-create request in a server group, when they are among
    ``group_members`` (see :func:`_request_of_instance`).
    """
    numa = host_state.numa_topology
    if not numa or not numa.cells:
        return None
    cells = []
    dedicated = set()
    for cell in numa.cells:
        shared = set(cell.cpuset)
        pinned = set(cell.pcpuset) if 'pcpuset' in cell else set()
        cpus = shared | pinned
        # With neither cpu_shared_set nor cpu_dedicated_set set, Nova
        # reports every CPU in both sets: only CPUs that are dedicated and
        # not shared, or that Nova has pinned an instance to, are Nova's.
        pinned = (pinned - shared) | set(cell.pinned_cpus or ())
        groups = [frozenset(s) & cpus for s in (cell.siblings or ())]
        grouped = set().union(*groups) if groups else set()
        # A CPU with no sibling set reported is a core of its own.
        groups += [frozenset([cpu]) for cpu in cpus - grouped]
        cells.append((cell.id, tuple(sorted(
            tuple(sorted(g)) for g in set(groups) if g))))
        dedicated |= pinned
    cells = tuple(sorted(cells))
    topology = _topology(cells)
    width = topology.max_threads_per_core
    partial = frozenset(cpu for core in topology.cores
                        if core.threads < width for cpu in core.cpus)
    running = tuple(sorted(
        (r for r in (_request_of_instance(i, request, group_members)
                     for i in host_state.instances.values()) if r),
        key=lambda r: r.uuid))
    return HostView(cells, partial, frozenset(dedicated), running,
                    CONF.tenant_pin.tenant_cpu_allocation_ratio)


def _request_of_instance(instance, request, group_members):
    """An instance on the host as the allocator sees it, or None when Nova
    pins it on dedicated CPUs or when it is a stub of unknown size."""
    # NOTE: for a multi-create request in a server group, Nova's scheduler
    # records each instance it has placed as a stub Instance(uuid=...), with
    # no context to load anything from, so that the group filters see it.
    # A stub in the request's own group is an earlier instance of the
    # request being scheduled: same project, same flavor. Stubs also stay
    # behind after a request that failed, until the compute host next sends
    # its instance list; those of another group are left out rather than
    # counted as this tenant's.
    if not instance.obj_attr_is_set('project_id') and \
            instance._context is None:
        if request is None or instance.uuid not in group_members:
            return None
        return dataclasses.replace(request, uuid=instance.uuid)
    specs = {}
    if instance.obj_attr_is_set('flavor') and instance.flavor:
        specs = instance.flavor.extra_specs or {}
        if specs.get('hw:cpu_policy') in _NOVA_PINNED:
            return None
        vcpus = instance.flavor.vcpus
    else:
        vcpus = instance.vcpus
    try:
        pol = policy_of(instance.project_id, specs)
    except policy.PolicyError as e:
        # The compute host refused or kept it by its own reading; count it
        # as its project's.
        LOG.debug('instance %s: %s', instance.uuid, e)
        pol = policy_of(instance.project_id)
    return TenantRequest(instance.uuid, pol.isolation_key, vcpus,
                         mode=pol.pin_mode, ratio=pol.ratio)


def group_members(spec_obj):
    """The instance uuids of the request's server group, if it has one."""
    group = (spec_obj.instance_group
             if spec_obj.obj_attr_is_set('instance_group') else None)
    if not group or not group.obj_attr_is_set('members'):
        return frozenset()
    return frozenset(group.members or ())


def request_of_spec(spec_obj):
    """The instance being scheduled as the allocator sees it, or None when
    it asks for dedicated or mixed CPUs (Nova pins those; the tenant-pin
    rules do not apply).

    :raises policy.PolicyError: its flavor sets a bad tenant-pin value.
    """
    image = spec_obj.image if spec_obj.obj_attr_is_set('image') else None
    if hardware.get_cpu_policy_constraint(
            spec_obj.flavor,
            image or objects.ImageMeta.from_dict({})) in _NOVA_PINNED:
        return None
    pol = policy_of(spec_obj.project_id, spec_obj.flavor.extra_specs or {})
    return TenantRequest(
        spec_obj.instance_uuid or NEW_INSTANCE, pol.isolation_key,
        spec_obj.vcpus, mode=pol.pin_mode, ratio=pol.ratio)
