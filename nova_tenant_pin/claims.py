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

"""The claims: room that instances hold on a host, and how a host finds
them again from its domains (after a restart, an adoption, a change of
per-project settings). No libvirt, no Nova: the domains come as
:class:`~nova_tenant_pin.domain_xml.DomainInfo`, the policies from a
callable.
"""

import collections
import dataclasses
import itertools

from oslo_log import log as logging

from nova_tenant_pin import allocator
from nova_tenant_pin import cgroups
from nova_tenant_pin import domain_xml
from nova_tenant_pin import policy as tp_policy
from nova_tenant_pin import topology as topo

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Claim:
    """Room held on the host by one instance.

    ``pending`` is True until the instance's domain has been seen (a spawn
    in progress, or an incoming live migration); a periodic reconcile keeps
    pending claims, and releases claims whose domain went away.
    ``confirmed`` marks an incoming live migration that the source accepted,
    so the destination check's clean-up does not release it. ``issued`` is
    every CPU handed out for a pending claim's domain XML: until its domain
    exists and is re-pinned, no change takes those CPUs from its tenant.
    """

    uuid: str
    project_id: str
    key: str
    vcpus: int
    cell: object = None
    mode: str = allocator.FLOAT
    ratio: float = None
    isolation: str = None
    pending: bool = True
    incoming: bool = False
    confirmed: bool = False
    issued: frozenset = frozenset()


@dataclasses.dataclass(frozen=True)
class InstancePins:
    """Where one instance may run: what the driver writes into its XML.

    ``cpus`` is ``<vcpu cpuset>`` and the emulator's CPUs; ``vcpu_pins``
    maps each vCPU to the CPUs of its ``<vcpupin>`` (strict mode: one CPU
    each; float mode: None, all vCPUs float on ``cpus``).
    """

    uuid: str
    key: str
    cpus: frozenset
    vcpu_pins: dict = None

    @property
    def partition(self):
        return cgroups.partition_name(self.key)


def claim_of(uuid, project_id, policy, vcpus, cell=None, incoming=False,
             old=None):
    """The :class:`Claim` of an instance of ``project_id`` with ``policy``
    (a :class:`~nova_tenant_pin.policy.Policy`). It replaces ``old``, the
    instance's claim until now (resize, rebuild, hard reboot), if any: it
    keeps that claim's pending state and the CPUs issued for its domain."""
    return Claim(
        uuid=uuid, project_id=project_id, key=policy.isolation_key,
        vcpus=vcpus, cell=cell, mode=policy.pin_mode, ratio=policy.ratio,
        isolation=isolation_request(policy),
        pending=old.pending if old else True, incoming=incoming,
        confirmed=False, issued=old.issued if old else frozenset())


def isolation_request(policy):
    """What the flavor or image of a :class:`policy.Policy` asked for
    (``required``/``none``), or None when the host default decided."""
    if dict(policy.sources).get('isolation') in ('flavor', 'image'):
        return (tp_policy.REQUIRED if policy.isolated
                else tp_policy.NONE)
    return None


def domain_policy(info, policies, policy_of, name='host', log=LOG):
    """The policy of a domain's instance when a host rebuilds its claims:
    the caller's (``policies``: ``{uuid: Policy}``), else what the
    domain's metadata recorded under the present settings
    (``policy_of(project_id, isolation=, pin_mode=, ratio=)``). None when
    the domain names no project, or its policy cannot be worked out (it
    is logged to ``log``, and the domain keeps its key)."""
    if info.uuid in policies:
        return policies[info.uuid]
    if not info.project_id:
        return None
    try:
        return policy_of(info.project_id, isolation=info.isolation,
                         pin_mode=info.pin_mode, ratio=info.ratio)
    except (tp_policy.PolicyError, cgroups.PartitionError) as e:
        log.warning('%s: instance %s: %s; it keeps the key %s', name,
                    info.uuid, e, info.isolation_key)
        return None


def rebuild(truth, old_claims, policy_of, default_mode, host_cpus,
            repairs, known_dedicated=None, known=None, seen_before=True):
    """The claims as the domains show them, plus the pending claims of
    instances whose domain does not exist yet.

    :param truth: a :class:`~nova_tenant_pin.transition.Truth`.
    :param old_claims: ``{uuid: Claim}`` the host held until now, in the
        order they were claimed.
    :param policy_of: callable ``(DomainInfo) -> Policy or None``.
    :param default_mode: the host's pin mode.
    :param repairs: a list the differences found are appended to.
    :param known_dedicated: ``{uuid: cpus}`` of the instances with
        dedicated CPUs, when known; else a domain in no partition with
        every vCPU pinned to one CPU is taken for one.
    :param known: uuids Nova places on this host, when known: a stopped
        domain of any other instance holds no room (it is dropped from
        ``truth``), nor does a pending claim of one (an incoming live
        migration given up before it started). A running domain is always
        counted: its threads run here.
    :param seen_before: the host was planned before (so a domain found
        without a claim is news).
    :returns: ``(claims, dedicated)``.
    """
    domains = truth.domains
    claims = collections.OrderedDict()
    dedicated = {}
    found = []
    for uuid, info in list(domains.items()):
        if known is not None and not info.active and uuid not in known and \
                not (uuid in old_claims and old_claims[uuid].pending):
            # The source of a confirmed resize, an evacuated guest.
            LOG.info('stopped domain %s of instance %s is not placed here '
                     'by Nova; it holds no room', info.name, uuid)
            del domains[uuid]
    for uuid, info in domains.items():
        old = old_claims.get(uuid)
        if known_dedicated is not None:
            if uuid in known_dedicated:
                dedicated[uuid] = frozenset(known_dedicated[uuid])
                continue
        elif info.dedicated and info.key is None and old is None:
            dedicated[uuid] = frozenset(
                itertools.chain.from_iterable(info.vcpu_pins.values()))
            continue
        if uuid in truth.busy and old is not None and old.pending:
            # Arriving by live migration: its claim holds until Nova
            # says the migration ended.
            found.append(old)
            continue
        pol = policy_of(info)
        if pol is not None:
            key, mode, ratio = (pol.isolation_key, pol.pin_mode,
                                pol.ratio)
            isolation = isolation_request(pol)
        elif info.isolation_key is not None:
            key = info.isolation_key
            mode = info.pin_mode or default_mode
            ratio, isolation = info.ratio, info.isolation
        elif old is not None:
            key, mode, ratio = old.key, old.mode, old.ratio
            isolation = old.isolation
        else:
            LOG.warning('domain %s (%s) names no project and no tenant '
                        'partition; it is left alone', info.name, uuid)
            continue
        if uuid in truth.busy and info.isolation_key not in (None, key):
            # A job (a live migration) holds it: nothing may change it,
            # its metadata included, until the job ends.
            repairs.append('instance %s: its key changes from %s to %s '
                           'once its %s ends' % (uuid, info.isolation_key,
                                                 key, 'job'))
            key = info.isolation_key
        if info.isolation_key is None:
            repairs.append(
                'instance %s of tenant %s was started without '
                'tenant-pin: adopted, its threads are pinned to the '
                'tenant\'s cores live and it moves into the partition '
                'at its next hard reboot' % (uuid, key))
        elif info.isolation_key != key:
            repairs.append(
                'instance %s of project %s: its key changes from %s to '
                '%s; it is re-pinned live to the cores of %s' % (
                    uuid, info.project_id, info.isolation_key, key, key))
        if old is not None and old.vcpus != info.vcpus and \
                not old.pending:
            repairs.append('instance %s of tenant %s has %d vCPUs, the '
                           'map said %d' % (uuid, key, info.vcpus,
                                            old.vcpus))
        if old is None and seen_before and \
                info.isolation_key is not None:
            repairs.append('instance %s of tenant %s was running without '
                           'a claim; claimed now' % (uuid, key))
        found.append(Claim(
            uuid=uuid, project_id=info.project_id or key,
            key=key, vcpus=max(1, info.vcpus),
            cell=old.cell if old else None, mode=mode, ratio=ratio,
            isolation=isolation, pending=False, incoming=False,
            confirmed=old.confirmed if old else False))
    # Keep the order the instances were claimed in; instances found only
    # now go after them, ordered by the lowest CPU their first vCPU uses,
    # so a host that restarts packs strict pins the same way it did.
    order = {u: i for i, u in enumerate(old_claims)}
    found.sort(key=lambda c: (
        order.get(c.uuid, len(order)),
        min(domains[c.uuid].effective_vcpu_cpus(
            0, host_cpus) or {0}),
        c.uuid))
    for claim in found:
        claims[claim.uuid] = claim
    for uuid, old in old_claims.items():
        if uuid in claims:
            continue
        if old.pending and known is not None and uuid not in known:
            # Nova no longer sends it here: a live migration that was
            # given up before it started, a build that went elsewhere.
            repairs.append('instance %s of tenant %s was expected but '
                           'Nova no longer places it here; its claim is '
                           'released' % (uuid, old.key))
        elif old.pending:
            claims[uuid] = old
        else:
            repairs.append('instance %s of tenant %s has no domain any '
                           'more; its claim is released'
                           % (uuid, old.key))
    return claims, dedicated


def pins_from_plan(plan, uuid):
    """The :class:`InstancePins` of ``uuid`` in ``plan``."""
    placement = plan.instances[uuid]
    pins = None
    if placement.vcpu_pins is not None:
        pins = {v: frozenset([c]) for v, c in placement.vcpu_pins.items()}
    return InstancePins(uuid=uuid, key=placement.key,
                        cpus=placement.cpus, vcpu_pins=pins)


def refusal(plan, previous, uuid):
    """Why the claim of ``uuid`` that led to ``plan`` is refused, or None:
    the instance does not fit, or giving it room would push out instances
    that fit in ``previous`` (the plan the host holds, or None)."""
    for item in plan.unplaced:
        if item['uuid'] == uuid:
            return item['reason']
    before = {i['uuid'] for i in previous.unplaced} if previous else set()
    pushed = sorted(i['uuid'] for i in plan.unplaced
                    if i['uuid'] not in before)
    if pushed:
        return ('the instances %s already on the host would no longer fit'
                % ', '.join(pushed))
    return None


def touched_keys(truth, claims, keys, keymap):
    """``keys`` when a change of their claims may plan and write only
    them (:func:`target_plan`, :func:`transition.plan_transition`), else
    None: every key is planned and every domain compared with its target.
    ``keymap`` is the map the last change reached (the host holds it).

    Only them: no domain is busy with a job, every other key's partition
    holds what the map says, and every domain with a claim runs in its own
    key's partition and records that key (the kernel confines it there:
    nothing of it reaches another key's cores).
    """
    if truth.busy:
        return None
    for key, cpus in keymap.items():
        if key not in keys and truth.partitions.get(key) != cpus:
            return None
    for key in truth.partitions:
        if key not in keys and key not in keymap:
            return None
    for uuid, info in truth.domains.items():
        claim = claims.get(uuid)
        if claim is None:
            if info.key is not None or info.partition_key is not None:
                return None
        elif claim.key in keys or info.partition_key in keys or \
                info.key in keys:
            # Changed with the keys: it lives in one of their partitions,
            # which the change may narrow around it.
            if info.partition_key not in keys or claim.key not in keys:
                return None
        elif info.key != claim.key or info.partition_key != claim.key:
            return None
    return frozenset(keys)


def unfit_lines(plan):
    """A line for each instance ``plan`` could not place on whole cores."""
    return ['instance %s of tenant %s does not fit on whole cores: %s'
            % (item['uuid'], item['project_id'], item['reason'])
            for item in plan.unplaced]


def unfit_pins(claim, unfit, plan, housekeeping_cpus):
    """Where the instance of ``claim`` runs when its key did not fit on
    whole cores (``unfit``: ``{key: [uuid]}``): the CPUs no key holds in
    ``plan``, else the housekeeping CPUs (see
    :func:`transition.plan_transition`), as :class:`InstancePins`. None
    for an instance whose key fits (or no claim)."""
    if claim is None or claim.uuid not in unfit.get(claim.key, ()):
        return None
    cpus = (plan.free_cpus if plan is not None else None) or \
        housekeeping_cpus
    return InstancePins(uuid=claim.uuid, key=claim.key, cpus=frozenset(cpus))


def metadata_of(claim, ratio):
    """The tenant-pin metadata element (:func:`domain_xml.metadata_xml`)
    of the domain of ``claim`` (``ratio``: the host's, for a claim that
    names none), or None without a claim."""
    if claim is None:
        return None
    return domain_xml.metadata_xml(claim.key, claim.mode,
                                   claim.ratio or ratio, claim.isolation)


def target_plan(claims, current, topology, housekeeping_cpus, ratio,
                dedicated_cpus, static, truth=None, name='host',
                touched=None, previous=None):
    """The :func:`allocator.plan` of ``claims`` from the map ``current``.

    A key's in-tenant ratio is the smallest of its instances' (``ratio``
    for those that say nothing). With ``truth`` (a
    :class:`~nova_tenant_pin.transition.Truth`), a key never loses the
    CPUs already written into the XML of a domain being defined (a
    pending claim's ``issued``: that domain would start outside its
    partition), nor those a domain busy with a job (a live migration)
    runs on: it cannot be re-pinned until the job ends. Such keys keep
    their present cores for this change; a claim that then does not fit
    is refused and Nova reschedules it.

    :param touched: the keys whose claims changed since ``previous``, the
        plan ``current`` came from: only they are planned again
        (:func:`touched_plan`), when the result is the same as planning
        every key. The plan's ``held_back`` names the keys that kept
        their present cores for this change.
    """
    ratios = {}
    for c in claims.values():
        own = c.ratio if c.ratio is not None else ratio
        ratios[c.key] = min(ratios.get(c.key, own), own)

    def plan(frozen=None):
        requests = [allocator.InstanceRequest(
            uuid=c.uuid, key=c.key, vcpus=c.vcpus, cell=c.cell,
            mode=c.mode) for c in claims.values()]
        return allocator.plan(
            topology, requests, housekeeping_cpus=housekeeping_cpus,
            current=current, ratio=ratio, dedicated_cpus=dedicated_cpus,
            static={**static, **(frozen or {})}, tenant_ratios=ratios)

    result = None
    if touched is not None and previous is not None:
        result = touched_plan(
            claims, current, previous, touched, topology, housekeeping_cpus,
            ratio, ratios, dedicated_cpus, static)
    partial = result is not None
    if result is None:
        result = plan()
    if truth is None:
        return result
    held = collections.defaultdict(frozenset)
    for claim in claims.values():
        if claim.pending and claim.issued:
            held[claim.key] |= claim.issued
    for uuid in truth.busy:
        info = truth.domains[uuid]
        if info.isolation_key is not None:
            held[info.isolation_key] |= info.all_cpus(topology.online_cpus)

    def must_hold(result):
        return {move.key: frozenset(current[move.key])
                for move in result.moves
                if move.removed & held.get(move.key, frozenset())}

    frozen = must_hold(result)
    if frozen and partial:
        result = plan()
        frozen = must_hold(result)
    if not frozen:
        return result
    LOG.info('%s: tenants %s keep their cores until their new or migrating '
             'instances have started', name, ', '.join(sorted(frozen)))
    try:
        result = plan(frozen)
    except allocator.PlanError as e:
        LOG.warning('%s: cannot hold the cores of tenants %s (%s); going on '
                    'without', name, ', '.join(sorted(frozen)), e)
        return result
    result.held_back = frozenset(frozen)
    return result


def _settled(placement, vcpus, ratio, topology):
    """Whether a key that keeps its instances keeps its cores when the
    whole host is planned again: one cell, whole cores, none of which it
    could give back (:func:`allocator.plan` keeps what a key holds in the
    cell it holds most of, and lets go of the cores it does not need)."""
    if len(placement.cells) != 1 or placement.vcpus != vcpus or not vcpus:
        return False
    cores = topology.cores_of(placement.cpus)
    if frozenset(c for core in cores for c in core.cpus) != placement.cpus:
        return False
    capacity = sum(core.threads for core in cores) * ratio
    smallest = min(core.threads for core in cores)
    return capacity - smallest * ratio + allocator.EPSILON < vcpus


def touched_plan(claims, current, previous, touched, topology,
                 housekeeping_cpus, ratio, ratios, dedicated_cpus, static):
    """The plan of ``claims`` when only the keys in ``touched`` changed
    their claims since ``previous`` (the plan ``current`` came from):
    those keys are planned on the cores no other key holds, the others
    keep their placements. Returns None when that would not be the plan
    of every key (:func:`allocator.plan`), and the caller plans them
    all: ``previous`` left instances unplaced or held keys back, or
    ``current`` is not its map.

    A key not touched is planned again as well when a plan of every key
    could move it: it spans NUMA cells (it gathers into one when room
    frees), holds a core it does not need, or holds a core that is now
    dedicated.
    """
    if previous.unplaced or previous.held_back or \
            previous.tenant_map() != current:
        return None
    keys = set(touched)
    vcpus = collections.Counter()
    count = collections.Counter()
    for claim in claims.values():
        vcpus[claim.key] += claim.vcpus
        count[claim.key] += 1
    placed = collections.Counter(p.key
                                 for p in previous.instances.values())
    blocked = topology.whole_core_cpus(dedicated_cpus)
    for key, placement in previous.tenants.items():
        if key in keys or key in static:
            continue
        if placed[key] != count[key] or placement.cpus & blocked or \
                not _settled(placement, vcpus[key],
                             ratios.get(key, ratio), topology):
            keys.add(key)
    if any(key not in previous.tenants and key not in static
           for key in count if key not in keys):
        return None
    static_cpus = frozenset().union(*static.values())
    others = frozenset().union(*(
        cpus for key, cpus in current.items()
        if key not in keys and key not in static)) - static_cpus
    requests = [allocator.InstanceRequest(
        uuid=c.uuid, key=c.key, vcpus=c.vcpus, cell=c.cell,
        mode=c.mode) for c in claims.values() if c.key in keys]
    part = allocator.plan(
        topology, requests, housekeeping_cpus=housekeeping_cpus,
        current={k: current[k] for k in keys if k in current},
        ratio=ratio, dedicated_cpus=frozenset(dedicated_cpus) | others,
        static=static,
        tenant_ratios={k: r for k, r in ratios.items() if k in keys})
    tenants = {k: t for k, t in previous.tenants.items() if k not in keys}
    for key, placement in part.tenants.items():
        if key in keys or key not in tenants:
            tenants[key] = placement
    instances = {u: p for u, p in previous.instances.items()
                 if p.key not in keys}
    instances.update(part.instances)
    used = frozenset().union(*(t.cpus for t in tenants.values()))
    usable = frozenset(
        c for core in topology.cores
        if not set(core.cpus) & (part.housekeeping_cpus | blocked)
        for c in core.cpus)
    target = {p: t.cpus for p, t in tenants.items()}
    return allocator.Plan(
        tenants=tenants, instances=instances, unplaced=part.unplaced,
        stranded_cpus=sum(t.stranded_cpus for t in tenants.values()),
        free_cpus=usable - used, housekeeping_cpus=part.housekeeping_cpus,
        moves=allocator.order_moves(current, target),
        warnings=part.warnings, planned=frozenset(keys))


def report(name, domains, claims, unfit, overflow, previous_unfit, seen,
           log=LOG):
    """Log (to ``log``: the manager's logger, where operators look for
    it), once per change, what is not confined by its partition and
    whether the host is isolated; returns ``unfit`` (``{key: [uuid]}`` of
    the guests that do not fit on whole cores). ``seen`` keeps the guests
    already logged as confined by their pins."""
    for uuid, info in domains.items():
        if uuid not in claims or info.confinement == 'partition' or \
                not info.active or uuid in seen:
            continue
        seen.add(uuid)
        log.info('%s: instance %s of tenant %s is confined by its pins (it '
                 'runs in %s) until its next hard reboot', name, uuid,
                 claims[uuid].key, info.partition and 'partition ' +
                 info.partition or 'no tenant partition')
    if unfit and unfit != previous_unfit:
        log.error('%s: host NOT isolated: tenants %s do not fit on whole '
                  'cores; their instances %s share CPUs %s, which no other '
                  'tenant uses; the other tenants are isolated', name,
                  ', '.join(sorted(unfit)),
                  ', '.join(sorted(u for us in unfit.values() for u in us)),
                  topo.format_cpu_list(overflow))
    elif previous_unfit and not unfit:
        log.info('%s: every tenant fits on whole cores again; the host is '
                 'isolated', name)
    return unfit


def unfit_doc(unfit):
    """``{key: [instance uuid, ...]}`` of the keys that did not fit."""
    return {k: sorted(v) for k, v in sorted(unfit.items())}


def isolation_doc(unfit):
    """:meth:`TenantPinManager.isolation` of ``unfit``: ``{'isolated':
    bool, 'unfit': {key: [uuid, ...]}}``."""
    return {'isolated': not unfit, 'unfit': unfit_doc(unfit)}


def snapshot(tenants, claims, plan, dedicated, unfit, ratio):
    """A manager's map as plain data, for logs, the CLI and tests."""
    return {
        'tenants': {t: sorted(c) for t, c in sorted(tenants.items())},
        'instances': {
            u: {'tenant': c.key, 'project_id': c.project_id,
                'vcpus': c.vcpus, 'pending': c.pending,
                'pin_mode': c.mode, 'ratio': c.ratio or ratio,
                'cpus': sorted(plan.instances[u].cpus)
                if plan and u in plan.instances else None}
            for u, c in claims.items()},
        'dedicated': {u: sorted(c) for u, c in sorted(dedicated.items())},
        'stranded_cpus': plan.stranded_cpus if plan else 0,
        'isolated': not unfit,
        'unfit': unfit_doc(unfit),
    }
