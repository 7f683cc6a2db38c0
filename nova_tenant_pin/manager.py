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

"""The per-host tenant map: claim, release, migrate in, reconcile.

One :class:`TenantPinManager` runs in each nova-compute. It holds, under one
lock, the instances that hold room on the host (*claims*) and the whole cores
each tenant holds (*the tenant map*). Every change goes through the same
steps:

1. :func:`nova_tenant_pin.allocator.plan` computes the new map from the
   present one (sticky: tenants keep their cores) and the ordered ``moves``.
2. Each move is applied with the design's ordering rule, so that no
   intermediate state lets two tenants share a core: a tenant that shrinks
   first has its running domains re-pinned inside its new CPUs and then its
   partition narrowed (bottom-up); a tenant that grows first has its
   partition widened and then its domains re-pinned (top-down). All shrinks
   come before all grows (the allocator orders them).
3. Domains whose pins still differ from the plan (strict mode re-packs pins
   when an instance leaves) are re-pinned live inside their tenant's cores.

The manager speaks to libvirt through a connection object (the libvirt
module's ``virConnect`` or a test double exposing ``listAllDomains``,
``lookupByUUIDString`` and, on domains, ``XMLDesc``, ``UUIDString``,
``isActive``, ``isPersistent``, ``pinVcpuFlags`` and ``pinEmulator``) and to
the cgroup tree through :class:`~nova_tenant_pin.cgroups.TenantPartitions`.
It imports no Nova, so that the integration suite can drive it with plain
libvirt.

State survives restarts because it is never only here: :meth:`reconcile`
rebuilds the claims from the domains (the Nova project is in the domain's
``<nova:owner><nova:project uuid=...>``, the tenant in its
``<resource><partition>``) and the map from the partitions, and repairs
partitions and pins that drifted.
"""

import collections
import dataclasses
import itertools

from lxml import etree
from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_tenant_pin import allocator
from nova_tenant_pin import cgroups
from nova_tenant_pin import topology as topo

LOG = logging.getLogger(__name__)

NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
PARTITION_PREFIX = '/machine/tenant-'

#: The isolation key shared by all projects exempt from isolation: they may
#: share cores with each other, never with any other tenant. It cannot clash
#: with a Nova project id (those are hex strings).
EXEMPT_TENANT = 'exempt'

# libvirt's constants, copied so that this module needs no libvirt import
# (the values are part of libvirt's stable ABI).
VIR_DOMAIN_AFFECT_LIVE = 1
VIR_DOMAIN_AFFECT_CONFIG = 2
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
VIR_CONNECT_LIST_DOMAINS_INACTIVE = 2


class TenantPinError(Exception):
    """Base of the manager's errors."""


class TenantDoesNotFit(TenantPinError):
    """The host has no whole cores left for this tenant's new instance."""

    def __init__(self, uuid, tenant, reason):
        super().__init__('instance %s of tenant %s does not fit: %s'
                         % (uuid, tenant, reason))
        self.uuid = uuid
        self.tenant = tenant
        self.reason = reason


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
    tenant: str
    vcpus: int
    cell: object = None
    mode: str = allocator.FLOAT
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
    tenant: str
    cpus: frozenset
    vcpu_pins: dict = None

    @property
    def partition(self):
        return cgroups.partition_name(self.tenant)


@dataclasses.dataclass
class DomainInfo:
    """What the manager reads from one libvirt domain's XML."""

    uuid: str
    name: str
    active: bool
    persistent: bool
    vcpus: int
    project_id: str = None
    partition: str = None
    vcpu_cpuset: frozenset = None
    vcpu_pins: dict = dataclasses.field(default_factory=dict)
    emulator_pins: frozenset = None

    @property
    def tenant(self):
        """The tenant whose partition holds the domain, or None."""
        if self.partition and self.partition.startswith(PARTITION_PREFIX):
            return self.partition[len(PARTITION_PREFIX):]
        return None

    def effective_vcpu_cpus(self, vcpu, all_cpus):
        """The CPUs vCPU ``vcpu`` may run on, as libvirt applies the XML."""
        if vcpu in self.vcpu_pins:
            return self.vcpu_pins[vcpu]
        if self.vcpu_cpuset is not None:
            return self.vcpu_cpuset
        return frozenset(all_cpus)

    def effective_emulator_cpus(self, all_cpus):
        """The CPUs the emulator and I/O threads may run on."""
        if self.emulator_pins is not None:
            return self.emulator_pins
        if self.vcpu_cpuset is not None:
            return self.vcpu_cpuset
        return frozenset(all_cpus)

    def all_cpus(self, host_cpus):
        """Every CPU that any thread of the domain may run on."""
        cpus = set(self.effective_emulator_cpus(host_cpus))
        for vcpu in range(self.vcpus):
            cpus |= self.effective_vcpu_cpus(vcpu, host_cpus)
        return frozenset(cpus)

    @property
    def dedicated(self):
        """Looks like a domain Nova pinned itself (``hw:cpu_policy=
        dedicated``): in no tenant partition, every vCPU pinned to one CPU."""
        return (self.tenant is None and self.vcpus > 0 and
                len(self.vcpu_pins) == self.vcpus and
                all(len(c) == 1 for c in self.vcpu_pins.values()))


def parse_domain_xml(xml, active=True, persistent=True):
    """Read a libvirt domain XML into a :class:`DomainInfo`."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    vcpu = root.find('./vcpu')
    vcpus = int(vcpu.text.strip()) if vcpu is not None and vcpu.text else 0
    cpuset = vcpu.get('cpuset') if vcpu is not None else None
    project = root.find('./metadata/{%s}instance/{%s}owner/{%s}project'
                        % (NOVA_NS, NOVA_NS, NOVA_NS))
    partition = root.findtext('./resource/partition')
    pins = {}
    for pin in root.findall('./cputune/vcpupin'):
        pins[int(pin.get('vcpu'))] = frozenset(
            topo.parse_cpu_list(pin.get('cpuset')))
    emulator = root.find('./cputune/emulatorpin')
    return DomainInfo(
        uuid=root.findtext('./uuid').strip(),
        name=root.findtext('./name').strip(),
        active=active, persistent=persistent, vcpus=vcpus,
        project_id=(project.get('uuid') or None) if project is not None
        else None,
        partition=partition.strip() if partition else None,
        vcpu_cpuset=(frozenset(topo.parse_cpu_list(cpuset))
                     if cpuset else None),
        vcpu_pins=pins,
        emulator_pins=(frozenset(topo.parse_cpu_list(emulator.get('cpuset')))
                       if emulator is not None else None))


class TenantPinManager:
    """The tenant map of one host, and every change to it, under one lock.

    :param topology: the host's
        :class:`~nova_tenant_pin.topology.HostTopology`.
    :param partitions: a :class:`~nova_tenant_pin.cgroups.TenantPartitions`.
    :param get_connection: callable returning the libvirt connection.
    :param housekeeping_cpus: CPUs that no tenant ever gets (whole cores).
    :param pin_mode: ``float`` or ``strict``.
    :param ratio: the in-tenant CPU allocation ratio.
    :param static: ``{tenant: cpus}`` fixed per-tenant cpusets.
    :param exempt_projects: projects that share the :data:`EXEMPT_TENANT`
        partition instead of getting one each.
    :param reserved_cpus: CPUs Nova keeps for itself (``[compute]
        cpu_dedicated_set``); no tenant gets a core that holds one.
    :param name: names the lock and the logs (the host name).
    """

    def __init__(self, topology, partitions, get_connection,
                 housekeeping_cpus, pin_mode=allocator.FLOAT, ratio=1.0,
                 static=None, exempt_projects=(), reserved_cpus=(),
                 name='host'):
        if pin_mode not in allocator.MODES:
            raise ValueError('pin_mode must be one of %s, got %r'
                             % (', '.join(allocator.MODES), pin_mode))
        self.topology = topology
        self.partitions = partitions
        self._get_connection = get_connection
        self.housekeeping_cpus = frozenset(housekeeping_cpus)
        self.pin_mode = pin_mode
        self.ratio = ratio
        self.static = {t: frozenset(c) for t, c in (static or {}).items()}
        self.exempt_projects = frozenset(exempt_projects)
        self.reserved_cpus = frozenset(reserved_cpus)
        self.name = name
        self._host_cpus = topology.online_cpus
        self._cpumap_len = max(self._host_cpus, default=-1) + 1
        # Memory nodes: every cell with memory may serve the tenant's
        # guests; the partitions confine CPUs, not memory.
        self._mems = frozenset(cell.id for cell in topology.cells)
        self._lock_name = 'nova-tenant-pin-%s-%d' % (name, id(self))
        self._claims = collections.OrderedDict()
        self._tenants = {}
        self._dedicated = {}
        self._last_plan = None
        # Validate the static configuration against the topology now, so a
        # bad option fails at start and not at the first spawn.
        self._plan(collections.OrderedDict(), {})

    # -- queries -----------------------------------------------------------

    def tenant_of(self, project_id):
        """The isolation key of a Nova project."""
        if project_id in self.exempt_projects:
            return EXEMPT_TENANT
        cgroups.validate_tenant_id(project_id)
        return project_id

    def tenant_map(self):
        """``{tenant: frozenset(cpus)}``: the whole cores each tenant holds."""
        with self._locked():
            return dict(self._tenants)

    def claims(self):
        """``{uuid: Claim}`` (copies)."""
        with self._locked():
            return {u: dataclasses.replace(c)
                    for u, c in self._claims.items()}

    def dedicated_instances(self):
        """``{uuid: cpus}`` of the instances Nova pinned itself, which the
        manager leaves alone but whose cores it gives to no tenant."""
        with self._locked():
            return dict(self._dedicated)

    def pins_for(self, uuid):
        """The :class:`InstancePins` of a claimed instance, or None.

        The driver calls this when it writes the domain XML; the CPUs it
        returns stay the tenant's until :meth:`domain_started`.
        """
        with self._locked():
            claim = self._claims.get(uuid)
            if claim is None or self._last_plan is None or \
                    uuid not in self._last_plan.instances:
                return None
            pins = self._pins_from_plan(self._last_plan, uuid)
            if claim.pending:
                claim.issued |= pins.cpus
            return pins

    def stranded_cpus(self):
        """Threads held by tenants but not needed by their vCPUs: the
        driver reports them to placement as reserved."""
        with self._locked():
            return self._last_plan.stranded_cpus if self._last_plan else 0

    def snapshot(self):
        """The map as plain data, for logs, the CLI and tests."""
        with self._locked():
            plan = self._last_plan
            return {
                'tenants': {t: sorted(c) for t, c in
                            sorted(self._tenants.items())},
                'instances': {
                    u: {'tenant': c.tenant, 'project_id': c.project_id,
                        'vcpus': c.vcpus, 'pending': c.pending,
                        'cpus': sorted(plan.instances[u].cpus)
                        if plan and u in plan.instances else None}
                    for u, c in self._claims.items()},
                'dedicated': {u: sorted(c) for u, c in
                              sorted(self._dedicated.items())},
                'stranded_cpus': plan.stranded_cpus if plan else 0,
            }

    # -- changes -----------------------------------------------------------

    def claim(self, uuid, project_id, vcpus, cell=None, incoming=False):
        """Hold room for an instance and return its :class:`InstancePins`.

        The tenant's partition exists with the returned CPUs when this
        returns, so a domain defined with them starts confined. Claiming an
        instance that already holds room (resize, rebuild, hard reboot)
        updates it in place.

        :raises TenantDoesNotFit: the tenant cannot get the room; nothing
            changed.
        """
        tenant = self.tenant_of(project_id)
        with self._locked():
            old = self._claims.get(uuid)
            claims = collections.OrderedDict(self._claims)
            claims[uuid] = Claim(
                uuid=uuid, project_id=project_id, tenant=tenant, vcpus=vcpus,
                cell=cell, mode=self.pin_mode,
                pending=old.pending if old else True,
                incoming=incoming, confirmed=False,
                issued=old.issued if old else frozenset())
            plan = self._safe_plan(claims, self._tenants)
            for item in plan.unplaced:
                if item['uuid'] == uuid:
                    raise TenantDoesNotFit(uuid, tenant, item['reason'])
            self._transition(plan, claims, 'claim of instance %s' % uuid)
            pins = self._pins_from_plan(plan, uuid)
            if claims[uuid].pending:
                claims[uuid].issued |= pins.cpus
            LOG.info('%s: instance %s of tenant %s (project %s) claimed %d '
                     'vCPUs on CPUs %s%s', self.name, uuid, tenant,
                     project_id, vcpus, topo.format_cpu_list(pins.cpus),
                     ' (incoming live migration)' if incoming else '')
            return pins

    def claim_incoming_migration(self, uuid, project_id, vcpus, cell=None):
        """Claim room for an instance about to arrive by live migration.

        The tenant's partition is created or widened before this returns:
        the target QEMU starts inside it.
        """
        return self.claim(uuid, project_id, vcpus, cell=cell, incoming=True)

    def confirm_incoming_migration(self, uuid):
        """Mark an incoming claim as accepted by the source, so that the
        destination check's clean-up keeps it."""
        with self._locked():
            claim = self._claims.get(uuid)
            if claim is not None:
                claim.confirmed = True

    def release_unconfirmed_migration(self, uuid):
        """Release an incoming claim that the source never accepted."""
        with self._locked():
            claim = self._claims.get(uuid)
            if claim is None or not claim.incoming or claim.confirmed:
                return False
        return self.release(uuid)

    def release(self, uuid):
        """Give back an instance's room; shrink or remove its tenant.

        Idempotent: releasing an unknown instance does nothing. Returns True
        when a claim was released.
        """
        with self._locked():
            self._dedicated.pop(uuid, None)
            claim = self._claims.get(uuid)
            if claim is None:
                return False
            claims = collections.OrderedDict(self._claims)
            del claims[uuid]
            plan = self._safe_plan(claims, self._tenants)
            try:
                self._transition(plan, claims,
                                 'release of instance %s' % uuid)
            except Exception:
                # The instance is gone whatever happened to the rest: forget
                # its claim, so that the reconcile that finishes the change
                # does not count it.
                self._claims = claims
                raise
            LOG.info('%s: instance %s of tenant %s released its claim; '
                     'tenant now holds CPUs %s', self.name, uuid,
                     claim.tenant, topo.format_cpu_list(
                         self._tenants.get(claim.tenant, ())) or 'none')
            return True

    def domain_started(self, uuid):
        """The instance's domain exists now: re-pin it to the plan (strict
        pins after a live migration arrives) and end its pending state."""
        with self._locked():
            claim = self._claims.get(uuid)
            if claim is None:
                return None
            claims = collections.OrderedDict(
                (u, dataclasses.replace(c)) for u, c in self._claims.items())
            claims[uuid].pending = False
            claims[uuid].incoming = False
            claims[uuid].issued = frozenset()
            # Re-plan: a shrink held back while this domain was being
            # defined can happen now, and the new domain gets its pins.
            plan = self._safe_plan(claims, self._tenants)
            self._transition(plan, claims, 'start of instance %s' % uuid)
            if uuid not in plan.instances:
                return None
            return self._pins_from_plan(plan, uuid)

    def add_dedicated(self, uuid, cpus):
        """Record an instance with dedicated CPUs (Nova's own)."""
        with self._locked():
            self._dedicated[uuid] = frozenset(cpus)

    def reconcile(self, dedicated=None, known=None):
        """Rebuild the map from libvirt domains and the cgroup tree, and
        repair what drifted. Returns the repairs made, as log lines.

        :param dedicated: ``{uuid: cpus}`` of the instances with dedicated
            CPUs, when the caller knows them (the driver asks Nova). Without
            it, a domain in no tenant partition whose every vCPU is pinned
            to one CPU is taken for one.
        :param known: uuids of the instances the caller places on this host
            (the driver asks Nova). A stopped domain of any other instance
            (the source of a confirmed resize, an evacuated guest) holds no
            room, nor does a pending claim of one (an incoming live
            migration given up before it started). A running domain is
            always counted: its threads run here.
        """
        with self._locked():
            repairs = []
            domains = self._read_domains()
            truth = {t: info.cpus
                     for t, info in self.partitions.list_partitions().items()}
            if known is not None:
                known = set(known)
                for uuid, (dom, info) in list(domains.items()):
                    if not info.active and uuid not in known and \
                            not (uuid in self._claims and
                                 self._claims[uuid].pending):
                        LOG.info('%s: stopped domain %s of instance %s is '
                                 'not placed here by Nova; it holds no room',
                                 self.name, info.name, uuid)
                        del domains[uuid]
            claims, dedicated = self._claims_from_domains(
                domains, repairs, dedicated, known)
            for tenant in sorted(set(truth) | set(self._tenants)):
                if truth.get(tenant) != self._tenants.get(tenant) and \
                        self._last_plan is not None:
                    repairs.append(
                        'tenant %s: partition holds CPUs %s, the map said %s'
                        % (tenant, topo.format_cpu_list(
                            truth.get(tenant, ())) or 'none',
                           topo.format_cpu_list(
                               self._tenants.get(tenant, ())) or 'none'))
            self._dedicated = dedicated
            self._tenants = dict(truth)
            plan = self._safe_plan(claims, truth)
            for item in plan.unplaced:
                repairs.append('instance %s of tenant %s does not fit any '
                               'more: %s' % (item['uuid'],
                                             item['project_id'],
                                             item['reason']))
            self._transition(plan, claims, 'reconcile', domains=domains,
                             repairs=repairs)
            for line in repairs:
                LOG.warning('%s: reconcile repaired: %s', self.name, line)
            return repairs

    # -- internals -----------------------------------------------------------

    def _locked(self):
        return lockutils.lock(self._lock_name)

    def _plan(self, claims, current, frozen=None):
        requests = [allocator.InstanceRequest(
            uuid=c.uuid, project_id=c.tenant, vcpus=c.vcpus, cell=c.cell,
            mode=c.mode) for c in claims.values()]
        dedicated = set(self.reserved_cpus)
        for cpus in self._dedicated.values():
            dedicated |= cpus
        dedicated &= self._host_cpus
        return allocator.plan(
            self.topology, requests, housekeeping_cpus=self.housekeeping_cpus,
            current=current, ratio=self.ratio,
            dedicated_cpus=dedicated, static={**self.static, **(frozen or {})})

    def _safe_plan(self, claims, current):
        """Plan, but never take from a tenant the CPUs already written into
        the XML of a domain that is being defined (a pending claim): that
        domain would start outside its partition. Such tenants keep their
        present cores for this change; a claim that then does not fit is
        refused and Nova reschedules it."""
        plan = self._plan(claims, current)
        issued = collections.defaultdict(frozenset)
        for claim in claims.values():
            if claim.pending and claim.issued:
                issued[claim.tenant] |= claim.issued
        frozen = {}
        for move in plan.moves:
            if move.removed & issued.get(move.project_id, frozenset()):
                frozen[move.project_id] = frozenset(current[move.project_id])
        if not frozen:
            return plan
        LOG.info('%s: tenants %s keep their cores until their new instances '
                 'have started', self.name, ', '.join(sorted(frozen)))
        try:
            return self._plan(claims, current, frozen)
        except allocator.PlanError as e:
            LOG.warning('%s: cannot hold the cores of tenants %s (%s); '
                        'going on without', self.name,
                        ', '.join(sorted(frozen)), e)
            return plan

    def _pins_from_plan(self, plan, uuid):
        placement = plan.instances[uuid]
        pins = None
        if placement.vcpu_pins is not None:
            pins = {v: frozenset([c]) for v, c in placement.vcpu_pins.items()}
        return InstancePins(uuid=uuid, tenant=placement.project_id,
                            cpus=placement.cpus, vcpu_pins=pins)

    def _read_domains(self):
        """``{uuid: (domain, DomainInfo)}`` of every domain on the host."""
        conn = self._get_connection()
        result = {}
        flags = (VIR_CONNECT_LIST_DOMAINS_ACTIVE |
                 VIR_CONNECT_LIST_DOMAINS_INACTIVE)
        for dom in conn.listAllDomains(flags):
            info = parse_domain_xml(dom.XMLDesc(0),
                                    active=bool(dom.isActive()),
                                    persistent=bool(dom.isPersistent()))
            result[info.uuid] = (dom, info)
        return result

    def _claims_from_domains(self, domains, repairs, known_dedicated,
                             known=None):
        """Claims rebuilt from the domains, plus pending claims in memory."""
        claims = collections.OrderedDict()
        dedicated = {}
        found = []
        for uuid, (dom, info) in domains.items():
            if known_dedicated is not None:
                if uuid in known_dedicated:
                    dedicated[uuid] = frozenset(known_dedicated[uuid])
                    continue
            elif info.dedicated and uuid not in self._claims:
                dedicated[uuid] = frozenset(
                    itertools.chain.from_iterable(info.vcpu_pins.values()))
                continue
            tenant = info.tenant
            if info.project_id:
                expected = self.tenant_of(info.project_id)
                if tenant is None:
                    repairs.append(
                        'instance %s of tenant %s runs outside any tenant '
                        'partition; its threads are pinned to the tenant\'s '
                        'cores now and it is confined to the partition at '
                        'its next hard reboot' % (uuid, expected))
                    tenant = expected
                elif tenant != expected:
                    repairs.append(
                        'instance %s of project %s runs in the partition of '
                        'tenant %s; it stays there until its next hard '
                        'reboot' % (uuid, info.project_id, tenant))
            if tenant is None:
                old = self._claims.get(uuid)
                if old is None:
                    LOG.warning('%s: domain %s (%s) names no project and no '
                                'tenant partition; it is left alone',
                                self.name, info.name, uuid)
                    continue
                tenant = old.tenant
            old = self._claims.get(uuid)
            if old is not None and old.vcpus != info.vcpus and \
                    not old.pending:
                repairs.append('instance %s of tenant %s has %d vCPUs, the '
                               'map said %d' % (uuid, tenant, info.vcpus,
                                                old.vcpus))
            if old is None and self._last_plan is not None:
                repairs.append('instance %s of tenant %s was running without '
                               'a claim; claimed now' % (uuid, tenant))
            found.append(Claim(
                uuid=uuid, project_id=info.project_id or tenant,
                tenant=tenant, vcpus=max(1, info.vcpus),
                cell=old.cell if old else None, mode=self.pin_mode,
                pending=False, incoming=False,
                confirmed=old.confirmed if old else False))
        # Keep the order the instances were claimed in; instances found only
        # now go after them, ordered by the lowest CPU their first vCPU uses,
        # so a host that restarts packs strict pins the same way it did.
        order = {u: i for i, u in enumerate(self._claims)}
        found.sort(key=lambda c: (
            order.get(c.uuid, len(order)),
            min(domains[c.uuid][1].effective_vcpu_cpus(
                0, self._host_cpus) or {0}),
            c.uuid))
        for claim in found:
            claims[claim.uuid] = claim
        for uuid, old in self._claims.items():
            if uuid in claims:
                continue
            if old.pending and known is not None and uuid not in known:
                # Nova no longer sends it here: a live migration that was
                # given up before it started, a build that went elsewhere.
                repairs.append('instance %s of tenant %s was expected but '
                               'Nova no longer places it here; its claim is '
                               'released' % (uuid, old.tenant))
            elif old.pending:
                claims[uuid] = old
            else:
                repairs.append('instance %s of tenant %s has no domain any '
                               'more; its claim is released'
                               % (uuid, old.tenant))
        return claims, dedicated

    def _transition(self, plan, claims, what, domains=None, repairs=None):
        """Apply ``plan`` (its moves, then any pins still off) and commit
        ``claims`` and the new map. On failure the partial state is safe
        (each step keeps the invariants); a reconcile finishes it."""
        if domains is None:
            domains = self._read_domains()
        by_tenant = collections.defaultdict(list)
        for uuid, (dom, info) in domains.items():
            if uuid in plan.instances:
                by_tenant[plan.instances[uuid].project_id].append(uuid)
        existing = set(self.partitions.list_partitions())
        try:
            for move in plan.moves:
                tenant = move.project_id
                if move.removed:
                    # Bottom-up: the domains first, then the partition.
                    for uuid in by_tenant.get(tenant, ()):
                        self._pin_domain(domains[uuid],
                                         plan.instances[uuid], move.cpus,
                                         repairs)
                    if move.cpus:
                        self.partitions.set_partition_cpus(tenant, move.cpus)
                    else:
                        self._remove_partition(tenant)
                        existing.discard(tenant)
                else:
                    # Top-down: the partition first, then the domains.
                    if tenant in existing:
                        self.partitions.set_partition_cpus(tenant, move.cpus)
                    else:
                        self.partitions.ensure_partition(tenant, move.cpus,
                                                         self._mems)
                        existing.add(tenant)
                    for uuid in by_tenant.get(tenant, ()):
                        self._pin_domain(domains[uuid],
                                         plan.instances[uuid], move.cpus,
                                         repairs)
                if move.cpus:
                    self._tenants[tenant] = move.cpus
                else:
                    self._tenants.pop(tenant, None)
                if repairs is not None:
                    repairs.append('tenant %s: %s to CPUs %s' % (
                        tenant, move.action,
                        topo.format_cpu_list(move.cpus) or 'none'))
            # Partitions that exist with the right CPUs but were lost from
            # the tree (reconcile) or tenants with no move: make sure every
            # tenant of the plan has its partition.
            for tenant, cpus in plan.tenant_map().items():
                if tenant not in existing:
                    self.partitions.ensure_partition(tenant, cpus,
                                                     self._mems)
                    existing.add(tenant)
                    if repairs is not None:
                        repairs.append('tenant %s: partition recreated with '
                                       'CPUs %s' % (tenant,
                                                    topo.format_cpu_list(
                                                        cpus)))
            for uuid, (dom, info) in domains.items():
                if uuid in plan.instances:
                    self._pin_domain(domains[uuid], plan.instances[uuid],
                                     plan.instances[uuid].cpus, repairs)
        except Exception:
            LOG.exception('%s: %s stopped half way; the host is in a safe '
                          'intermediate state and the next reconcile '
                          'finishes it', self.name, what)
            raise
        self._tenants = plan.tenant_map()
        self._claims = claims
        self._last_plan = plan

    def _remove_partition(self, tenant):
        try:
            self.partitions.remove_partition(tenant)
        except cgroups.PartitionBusy as e:
            # A domain we do not know about still runs there; keep it.
            LOG.warning('%s: partition of tenant %s kept: %s', self.name,
                        tenant, e)

    def _pin_domain(self, entry, placement, within, repairs=None):
        """Pin a domain's vCPUs and emulator to its placement, if they are
        not already there. ``within`` is the partition's CPUs at this step:
        a pin outside them would be refused by the kernel, so it waits for
        a later step."""
        dom, info = entry
        # At a step where the partition does not hold all of the final
        # placement yet, pin inside what it holds; a later step finishes.
        allowed = placement.cpus & frozenset(within)
        if not allowed or (not info.active and not info.persistent):
            return
        wanted = {}
        for vcpu in range(info.vcpus):
            cpus = placement.cpus
            if placement.vcpu_pins is not None and \
                    vcpu in placement.vcpu_pins:
                cpus = frozenset([placement.vcpu_pins[vcpu]])
            wanted[vcpu] = cpus if cpus <= allowed else allowed
        flags = 0
        if info.active:
            flags |= VIR_DOMAIN_AFFECT_LIVE
        if info.persistent:
            flags |= VIR_DOMAIN_AFFECT_CONFIG
        changed = False
        for vcpu, cpus in sorted(wanted.items()):
            if info.effective_vcpu_cpus(vcpu, self._host_cpus) != cpus:
                dom.pinVcpuFlags(vcpu, self._cpumap(cpus), flags)
                info.vcpu_pins[vcpu] = cpus
                changed = True
        if info.effective_emulator_cpus(self._host_cpus) != allowed:
            dom.pinEmulator(self._cpumap(allowed), flags)
            info.emulator_pins = allowed
            changed = True
        if changed:
            LOG.info('%s: instance %s of tenant %s re-pinned to CPUs %s',
                     self.name, info.uuid, placement.project_id,
                     topo.format_cpu_list(allowed))
            if repairs is not None:
                repairs.append('instance %s of tenant %s: pins set to CPUs '
                               '%s' % (info.uuid, placement.project_id,
                                       topo.format_cpu_list(allowed)))

    def _cpumap(self, cpus):
        return tuple(cpu in cpus for cpu in range(self._cpumap_len))
