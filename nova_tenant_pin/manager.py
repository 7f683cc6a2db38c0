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
import copy
import dataclasses
import itertools

from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_tenant_pin import allocator
from nova_tenant_pin import cgroups
from nova_tenant_pin import domain_xml
from nova_tenant_pin import policy as tp_policy
from nova_tenant_pin import topology as topo

LOG = logging.getLogger(__name__)

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
VIR_DOMAIN_METADATA_ELEMENT = 2


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
    tenant: str
    cpus: frozenset
    vcpu_pins: dict = None

    @property
    def partition(self):
        return cgroups.partition_name(self.tenant)


def isolation_request(policy):
    """What the flavor or image of a :class:`policy.Policy` asked for
    (``required``/``none``), or None when the host default decided."""
    if dict(policy.sources).get('isolation') in ('flavor', 'image'):
        return (tp_policy.REQUIRED if policy.isolated
                else tp_policy.NONE)
    return None


class _Ops:
    """The writes of one transition: done, or (dry run) only described.

    Every write is also kept, as a line an operator reads, in ``actions``:
    ``nova-tenant-pin adopt --dry-run`` prints them.
    """

    def __init__(self, mgr, dry_run):
        self.mgr = mgr
        self.dry_run = dry_run
        self.actions = []
        self.parts = {t: info.cpus for t, info in
                      mgr.partitions.list_partitions().items()}

    def _say(self, line):
        self.actions.append(line)

    def set_partition(self, tenant, cpus):
        cpus = frozenset(cpus)
        old = self.parts.get(tenant)
        if old == cpus or not cpus:
            return
        if old is None:
            self._say('create partition of tenant %s with CPUs %s'
                      % (tenant, topo.format_cpu_list(cpus)))
            if not self.dry_run:
                self.mgr.partitions.ensure_partition(tenant, cpus,
                                                     self.mgr._mems)
        else:
            self._say('set partition of tenant %s to CPUs %s (was %s)'
                      % (tenant, topo.format_cpu_list(cpus),
                         topo.format_cpu_list(old)))
            if not self.dry_run:
                self.mgr.partitions.set_partition_cpus(tenant, cpus)
        self.parts[tenant] = cpus

    def remove_partition(self, tenant):
        if tenant not in self.parts:
            return
        self._say('remove partition of tenant %s' % tenant)
        if not self.dry_run:
            try:
                self.mgr.partitions.remove_partition(tenant)
            except cgroups.PartitionBusy as e:
                # A domain we do not know about still runs there; keep it.
                LOG.warning('%s: partition of tenant %s kept: %s',
                            self.mgr.name, tenant, e)
                return
        del self.parts[tenant]

    def pin(self, dom, info, vcpu, cpus, flags):
        if vcpu is None:
            self._say('pin emulator threads of instance %s to CPUs %s'
                      % (info.uuid, topo.format_cpu_list(cpus)))
            if not self.dry_run:
                dom.pinEmulator(self.mgr._cpumap(cpus), flags)
            info.emulator_pins = cpus
        else:
            self._say('pin vCPU %d of instance %s to CPUs %s'
                      % (vcpu, info.uuid, topo.format_cpu_list(cpus)))
            if not self.dry_run:
                dom.pinVcpuFlags(vcpu, self.mgr._cpumap(cpus), flags)
            info.vcpu_pins[vcpu] = cpus

    def set_metadata(self, dom, info, xml, flags):
        self._say('record %s in the metadata of instance %s'
                  % (xml, info.uuid))
        if not self.dry_run:
            try:
                dom.setMetadata(VIR_DOMAIN_METADATA_ELEMENT, xml,
                                domain_xml.TP_PREFIX, domain_xml.TP_NS, flags)
            except Exception as e:
                # Only a hint for restarts; the pins are what confine.
                LOG.warning('%s: cannot record the tenant-pin metadata of '
                            'instance %s: %s', self.mgr.name, info.uuid, e)
                return
        (info.key, info.pin_mode, info.ratio,
         info.isolation) = domain_xml.read_metadata(xml)


class TenantPinManager:
    """The tenant map of one host, and every change to it, under one lock.

    :param topology: the host's
        :class:`~nova_tenant_pin.topology.HostTopology`.
    :param partitions: a :class:`~nova_tenant_pin.cgroups.TenantPartitions`.
    :param get_connection: callable returning the libvirt connection.
    :param housekeeping_cpus: CPUs that no tenant ever gets (whole cores).
    :param pin_mode: the default pin mode, ``float`` or ``strict``.
    :param ratio: the default in-tenant CPU allocation ratio.
    :param static: ``{project or isolation key: cpus}`` fixed cpusets.
    :param exempt_projects: projects that share the :data:`EXEMPT_TENANT`
        partition instead of getting one each (when ``settings`` is not
        given).
    :param settings: the operator's per-project
        :class:`~nova_tenant_pin.policy.ProjectSettings`.
    :param reserved_cpus: CPUs Nova keeps for itself (``[compute]
        cpu_dedicated_set``); no tenant gets a core that holds one.
    :param name: names the lock and the logs (the host name).

    Each instance's isolation key, pin mode and ratio come from its
    :class:`~nova_tenant_pin.policy.Policy` (the driver resolves it from
    the flavor, the image and ``settings``; without one, the project and
    the defaults decide). Instances with one key share that key's whole
    cores; a key's in-tenant ratio is the smallest of its instances'.
    """

    def __init__(self, topology, partitions, get_connection,
                 housekeeping_cpus, pin_mode=allocator.FLOAT, ratio=1.0,
                 static=None, exempt_projects=(), reserved_cpus=(),
                 name='host', settings=None):
        if pin_mode not in allocator.MODES:
            raise ValueError('pin_mode must be one of %s, got %r'
                             % (', '.join(allocator.MODES), pin_mode))
        self.topology = topology
        self.partitions = partitions
        self._get_connection = get_connection
        self.housekeeping_cpus = frozenset(housekeeping_cpus)
        self.pin_mode = pin_mode
        self.ratio = ratio
        self.settings = (settings if settings is not None else
                         tp_policy.ProjectSettings.from_options(
                             exempt_projects))
        self._static_cfg = {t: frozenset(c)
                            for t, c in (static or {}).items()}
        self.reserved_cpus = frozenset(reserved_cpus)
        self.name = name
        self._host_cpus = topology.online_cpus
        self._cpumap_len = max(self._host_cpus, default=-1) + 1
        # Memory nodes: every cell with memory may serve the tenant's
        # guests; the partitions confine CPUs, not memory.
        self._mems = frozenset(cell.id for cell in topology.cells)
        self._lock_name = 'nova-tenant-pin-%s-%d' % (name, id(self))
        self._claims = collections.OrderedDict()
        # {(domain XML, active, persistent): DomainInfo} of the last read:
        # a domain that has not changed since is not parsed again.
        self._parsed = {}
        self._tenants = {}
        self._dedicated = {}
        self._last_plan = None
        self._unfit = {}
        self._pins_only_seen = set()
        self.static = self._static_keys()
        # Validate the static configuration against the topology now, so a
        # bad option fails at start and not at the first spawn.
        self._plan(collections.OrderedDict(), {})

    @property
    def exempt_projects(self):
        return self.settings.exempt_projects

    def _static_keys(self):
        """The static cpusets by isolation key (a project in a group gives
        its cpuset to the group)."""
        static = {}
        for name, cpus in self._static_cfg.items():
            key = name
            if not (name == EXEMPT_TENANT or
                    name.startswith(tp_policy.GROUP_PREFIX)):
                key = self.tenant_of(name)
            static[key] = static.get(key, frozenset()) | cpus
        return static

    # -- queries -----------------------------------------------------------

    def policy_of(self, project_id, extra_specs=None, image_properties=None,
                  isolation=None, pin_mode=None, ratio=None):
        """The :class:`~nova_tenant_pin.policy.Policy` of an instance of
        ``project_id`` on this host.

        :param isolation, pin_mode, ratio: what a domain's metadata
            recorded (used when the flavor is not at hand).
        :raises policy.PolicyError: a bad or conflicting setting.
        """
        specs = dict(extra_specs or {})
        if isolation and tp_policy.ISOLATION_SPEC not in specs:
            specs[tp_policy.ISOLATION_SPEC] = isolation
        pol = tp_policy.resolve(
            project_id, specs, image_properties, self.settings,
            default_pin_mode=pin_mode or self.pin_mode,
            default_ratio=ratio or self.ratio)
        cgroups.validate_tenant_id(pol.isolation_key)
        return pol

    def tenant_of(self, project_id):
        """The isolation key of a Nova project, by default."""
        cgroups.validate_tenant_id(project_id)
        return self.policy_of(project_id).isolation_key

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

    def isolation(self):
        """Whether every instance on the host runs on its key's cores:
        ``{'isolated': bool, 'unfit': {key: [uuid, ...]}}``. Tenants in
        ``unfit`` did not fit on whole cores (a host adopted with more
        load than it holds); their instances share the cores no tenant
        holds, the other tenants stay isolated."""
        with self._locked():
            return {'isolated': not self._unfit,
                    'unfit': {k: sorted(v) for k, v in
                              sorted(self._unfit.items())}}

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

    def unfit_pins(self, uuid):
        """Where a claimed instance whose tenant did not fit on whole
        cores runs (the CPUs no key holds, else the housekeeping CPUs: see
        :meth:`_transition`), as :class:`InstancePins`; None for any other
        instance."""
        with self._locked():
            claim = self._claims.get(uuid)
            if claim is None or uuid not in self._unfit.get(claim.tenant, ()):
                return None
            plan = self._last_plan
            cpus = (plan.free_cpus if plan is not None else None) or \
                self.housekeeping_cpus
            return InstancePins(uuid=uuid, tenant=claim.tenant,
                                cpus=frozenset(cpus))

    def metadata_of(self, uuid):
        """The metadata element (:func:`metadata_xml`) of a claimed
        instance, for its domain XML, or None."""
        with self._locked():
            claim = self._claims.get(uuid)
            if claim is None:
                return None
            return domain_xml.metadata_xml(
                claim.tenant, claim.mode, claim.ratio or self.ratio,
                claim.isolation)

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
                        'pin_mode': c.mode, 'ratio': c.ratio or self.ratio,
                        'cpus': sorted(plan.instances[u].cpus)
                        if plan and u in plan.instances else None}
                    for u, c in self._claims.items()},
                'dedicated': {u: sorted(c) for u, c in
                              sorted(self._dedicated.items())},
                'stranded_cpus': plan.stranded_cpus if plan else 0,
                'isolated': not self._unfit,
                'unfit': {k: sorted(v) for k, v in
                          sorted(self._unfit.items())},
            }

    # -- changes -----------------------------------------------------------

    def claim(self, uuid, project_id, vcpus, cell=None, incoming=False,
              policy=None):
        """Hold room for an instance and return its :class:`InstancePins`.

        The tenant's partition exists with the returned CPUs when this
        returns, so a domain defined with them starts confined. Claiming an
        instance that already holds room (resize, rebuild, hard reboot)
        updates it in place.

        :param policy: the instance's
            :class:`~nova_tenant_pin.policy.Policy`; by default the
            project's (:meth:`policy_of`).
        :raises TenantDoesNotFit: the tenant cannot get the room, or giving
            it would push out an instance that has room now; nothing
            changed.
        """
        if policy is None:
            cgroups.validate_tenant_id(project_id)
            policy = self.policy_of(project_id)
        else:
            cgroups.validate_tenant_id(policy.isolation_key)
        tenant = policy.isolation_key
        with self._locked():
            old = self._claims.get(uuid)
            claims = collections.OrderedDict(self._claims)
            claims[uuid] = Claim(
                uuid=uuid, project_id=project_id, tenant=tenant, vcpus=vcpus,
                cell=cell, mode=policy.pin_mode, ratio=policy.ratio,
                isolation=isolation_request(policy),
                pending=old.pending if old else True,
                incoming=incoming, confirmed=False,
                issued=old.issued if old else frozenset())
            plan = self._safe_plan(claims, self._tenants)
            before = {i['uuid'] for i in self._last_plan.unplaced} \
                if self._last_plan else set()
            for item in plan.unplaced:
                if item['uuid'] == uuid:
                    raise TenantDoesNotFit(uuid, tenant, item['reason'])
            pushed = sorted(i['uuid'] for i in plan.unplaced
                            if i['uuid'] not in before)
            if pushed:
                raise TenantDoesNotFit(
                    uuid, tenant, 'the instances %s already on the host '
                    'would no longer fit' % ', '.join(pushed))
            self._transition(plan, claims, 'claim of instance %s' % uuid)
            pins = self._pins_from_plan(plan, uuid)
            if claims[uuid].pending:
                claims[uuid].issued |= pins.cpus
            LOG.info('%s: instance %s of tenant %s (project %s) claimed %d '
                     'vCPUs on CPUs %s (%s)%s', self.name, uuid, tenant,
                     project_id, vcpus, topo.format_cpu_list(pins.cpus),
                     policy.describe(),
                     ' (incoming live migration)' if incoming else '')
            return pins

    def claim_incoming_migration(self, uuid, project_id, vcpus, cell=None,
                                 policy=None):
        """Claim room for an instance about to arrive by live migration.

        The tenant's partition is created or widened before this returns:
        the target QEMU starts inside it.
        """
        return self.claim(uuid, project_id, vcpus, cell=cell, incoming=True,
                          policy=policy)

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

    @property
    def static_config(self):
        """The static cpusets as configured (``{project or key: cpus}``)."""
        return dict(self._static_cfg)

    def update_settings(self, settings, static=None):
        """Take new per-project settings (``exempt_projects``,
        ``isolation_groups``, and ``static_tenant_cpuset`` when ``static``
        is given) re-read on SIGHUP. The keys and cores of running
        instances change at the next :meth:`reconcile`, which the caller
        runs (the driver, with each instance's policy).

        :raises allocator.PlanError: a static cpuset that breaks a rule;
            nothing changed.
        """
        with self._locked():
            old = (self.settings, self._static_cfg, self.static)
            self.settings = settings
            if static is not None:
                self._static_cfg = {t: frozenset(c)
                                    for t, c in static.items()}
            try:
                self.static = self._static_keys()
                # The same check as at start: whole cores, off housekeeping
                # and dedicated CPUs, no two keys on one core.
                self._plan(collections.OrderedDict(), {})
            except Exception:
                self.settings, self._static_cfg, self.static = old
                raise
        LOG.info('%s: per-project settings changed: exempt projects %s, '
                 'isolation groups %s, static cpusets %s', self.name,
                 ', '.join(sorted(settings.exempt_projects)) or 'none',
                 ', '.join('%s=%s' % (p, g) for p, g in
                           sorted(settings.groups.items())) or 'none',
                 ', '.join('%s:%s' % (t, topo.format_cpu_list(c)) for t, c in
                           sorted(self._static_cfg.items())) or 'none')

    def reconcile(self, dedicated=None, known=None, policies=None,
                  dry_run=False):
        """Rebuild the map from libvirt domains and the cgroup tree, and
        repair what drifted. Returns the repairs made, as log lines (with
        ``dry_run``: the writes it would make, and it makes none).

        This is also how a host is adopted (guests started without
        tenant-pin are pinned live to their tenant's cores) and how a
        change of per-project settings takes effect (instances whose key
        changed move to their new key's cores live; keys that merge keep
        their cores; a key that splits off gets cores of its own before
        anyone else may take the ones it leaves).

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
        :param policies: ``{uuid: Policy}`` of the instances, when the
            caller knows them (the driver resolves them from the flavors).
            Without it, each domain's tenant-pin metadata and the present
            settings decide.
        """
        with self._locked():
            repairs = []
            domains = self._read_domains()
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
                domains, repairs, dedicated, known, policies or {})
            truth = self._truth(domains, claims)
            for tenant in sorted(set(truth) | set(self._tenants)):
                if truth.get(tenant) != self._tenants.get(tenant) and \
                        self._last_plan is not None:
                    repairs.append(
                        'tenant %s: partition holds CPUs %s, the map said %s'
                        % (tenant, topo.format_cpu_list(
                            truth.get(tenant, ())) or 'none',
                           topo.format_cpu_list(
                               self._tenants.get(tenant, ())) or 'none'))
            current = self._relabel(truth, claims, domains, repairs)
            saved = (self._dedicated, self._tenants)
            self._dedicated = dedicated
            self._tenants = dict(current)
            try:
                plan = self._safe_plan(claims, current)
                for item in plan.unplaced:
                    repairs.append('instance %s of tenant %s does not fit '
                                   'on whole cores: %s'
                                   % (item['uuid'], item['project_id'],
                                      item['reason']))
                actions = self._transition(
                    plan, claims, 'reconcile', domains=domains,
                    repairs=repairs, dry_run=dry_run)
            finally:
                if dry_run:
                    self._dedicated, self._tenants = saved
            if dry_run:
                return actions
            for line in repairs:
                LOG.warning('%s: reconcile repaired: %s', self.name, line)
            return repairs

    def release_all(self, cpus=None, dry_run=False):
        """Turn tenant isolation off on this host without restarting any
        guest: every guest tenant-pin placed may run on ``cpus`` again
        (default: the host's online CPUs; pass Nova's ``cpu_shared_set``),
        partitions are widened to them and removed when empty, and the
        tenant-pin metadata is dropped. Returns the writes, as lines (with
        ``dry_run``: the writes it would make)."""
        cpus = frozenset(cpus if cpus is not None else self._host_cpus)
        with self._locked():
            ops = _Ops(self, dry_run)
            domains = self._read_domains()
            if dry_run:
                domains = {u: (d, copy.deepcopy(i))
                           for u, (d, i) in domains.items()}
            ours = [(dom, info) for dom, info in domains.values()
                    if info.tenant is not None or info.key is not None or
                    info.uuid in self._claims]
            # Top-down: the partitions first, then the threads in them.
            for tenant in sorted(ops.parts):
                ops.set_partition(tenant, ops.parts[tenant] | cpus)
            for dom, info in ours:
                flags = self._flags(info)
                if not flags:
                    continue
                for vcpu in range(info.vcpus):
                    if info.effective_vcpu_cpus(vcpu, self._host_cpus) != \
                            cpus:
                        ops.pin(dom, info, vcpu, cpus, flags)
                if info.effective_emulator_cpus(self._host_cpus) != cpus:
                    ops.pin(dom, info, None, cpus, flags)
                if info.key is not None:
                    ops._say('drop the tenant-pin metadata of instance %s'
                             % info.uuid)
                    if not dry_run:
                        try:
                            dom.setMetadata(VIR_DOMAIN_METADATA_ELEMENT,
                                            None, None, domain_xml.TP_NS,
                                            flags)
                        except Exception as e:
                            LOG.warning('%s: cannot drop the metadata of '
                                        'instance %s: %s', self.name,
                                        info.uuid, e)
            # Partitions that hold no domain go; the others stay (a running
            # domain cannot leave its cgroup) until their guests restart.
            used = {info.tenant for _dom, info in domains.values()}
            for tenant in sorted(ops.parts):
                if tenant not in used:
                    ops.remove_partition(tenant)
            if not dry_run:
                self._claims = collections.OrderedDict()
                self._tenants = {}
                self._last_plan = None
                self._unfit = {}
                LOG.warning('%s: tenant isolation released: %d guests may '
                            'run on CPUs %s', self.name, len(ours),
                            topo.format_cpu_list(cpus))
            return ops.actions

    # -- internals -----------------------------------------------------------

    def _locked(self):
        return lockutils.lock(self._lock_name)

    def _flags(self, info):
        flags = 0
        if info.active:
            flags |= VIR_DOMAIN_AFFECT_LIVE
        if info.persistent:
            flags |= VIR_DOMAIN_AFFECT_CONFIG
        return flags

    def _plan(self, claims, current, frozen=None):
        requests = [allocator.InstanceRequest(
            uuid=c.uuid, project_id=c.tenant, vcpus=c.vcpus, cell=c.cell,
            mode=c.mode) for c in claims.values()]
        ratios = {}
        for c in claims.values():
            if c.ratio is not None:
                ratios[c.tenant] = min(ratios.get(c.tenant, c.ratio),
                                       c.ratio)
        # A key whose instances do not all say otherwise keeps the default.
        for c in claims.values():
            if c.ratio is None:
                ratios[c.tenant] = min(ratios.get(c.tenant, self.ratio),
                                       self.ratio)
        dedicated = set(self.reserved_cpus)
        for cpus in self._dedicated.values():
            dedicated |= cpus
        dedicated &= self._host_cpus
        return allocator.plan(
            self.topology, requests, housekeeping_cpus=self.housekeeping_cpus,
            current=current, ratio=self.ratio,
            dedicated_cpus=dedicated, static={**self.static, **(frozen or {})},
            tenant_ratios=ratios)

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
        """``{uuid: (domain, DomainInfo)}`` of every domain on the host.

        A domain whose XML and state are what they were at the last read is
        not parsed again: its DomainInfo is a copy of the one parsed then
        (callers update their copy as they write to the domain)."""
        conn = self._get_connection()
        result = {}
        parsed = {}
        flags = (VIR_CONNECT_LIST_DOMAINS_ACTIVE |
                 VIR_CONNECT_LIST_DOMAINS_INACTIVE)
        for dom in conn.listAllDomains(flags):
            state = (dom.XMLDesc(0), bool(dom.isActive()),
                     bool(dom.isPersistent()))
            info = self._parsed.get(state)
            if info is None:
                info = self._parse_domain(*state)
            parsed[state] = info
            result[info.uuid] = (dom, dataclasses.replace(
                info, vcpu_pins=dict(info.vcpu_pins)))
        self._parsed = parsed
        return result

    @staticmethod
    def _parse_domain(xml, active, persistent):
        return domain_xml.parse_domain_xml(xml, active=active,
                                           persistent=persistent)

    def _domain_policy(self, info, policies):
        """The policy of a domain's instance: the caller's, else what its
        metadata recorded under the present settings, else the project's
        default. None when the domain names no project."""
        if info.uuid in policies:
            return policies[info.uuid]
        if not info.project_id:
            return None
        try:
            return self.policy_of(info.project_id, isolation=info.isolation,
                                  pin_mode=info.pin_mode, ratio=info.ratio)
        except (tp_policy.PolicyError, cgroups.PartitionError) as e:
            LOG.warning('%s: instance %s: %s; it keeps the key %s', self.name,
                        info.uuid, e, info.isolation_key)
            return None

    def _claims_from_domains(self, domains, repairs, known_dedicated,
                             known=None, policies=None):
        """Claims rebuilt from the domains, plus pending claims in memory."""
        claims = collections.OrderedDict()
        dedicated = {}
        found = []
        policies = policies or {}
        for uuid, (dom, info) in domains.items():
            if known_dedicated is not None:
                if uuid in known_dedicated:
                    dedicated[uuid] = frozenset(known_dedicated[uuid])
                    continue
            elif info.dedicated and info.key is None and \
                    uuid not in self._claims:
                dedicated[uuid] = frozenset(
                    itertools.chain.from_iterable(info.vcpu_pins.values()))
                continue
            old = self._claims.get(uuid)
            pol = self._domain_policy(info, policies)
            if pol is not None:
                tenant, mode, ratio = (pol.isolation_key, pol.pin_mode,
                                       pol.ratio)
                isolation = isolation_request(pol)
            elif info.isolation_key is not None:
                tenant = info.isolation_key
                mode = info.pin_mode or self.pin_mode
                ratio, isolation = info.ratio, info.isolation
            elif old is not None:
                tenant, mode, ratio = old.tenant, old.mode, old.ratio
                isolation = old.isolation
            else:
                LOG.warning('%s: domain %s (%s) names no project and no '
                            'tenant partition; it is left alone',
                            self.name, info.name, uuid)
                continue
            if info.isolation_key is None:
                repairs.append(
                    'instance %s of tenant %s was started without '
                    'tenant-pin: adopted, its threads are pinned to the '
                    'tenant\'s cores live and it moves into the partition '
                    'at its next hard reboot' % (uuid, tenant))
            elif info.isolation_key != tenant:
                repairs.append(
                    'instance %s of project %s: its key changes from %s to '
                    '%s; it is re-pinned live to the cores of %s' % (
                        uuid, info.project_id, info.isolation_key, tenant,
                        tenant))
            if old is not None and old.vcpus != info.vcpus and \
                    not old.pending:
                repairs.append('instance %s of tenant %s has %d vCPUs, the '
                               'map said %d' % (uuid, tenant, info.vcpus,
                                                old.vcpus))
            if old is None and self._last_plan is not None and \
                    info.isolation_key is not None:
                repairs.append('instance %s of tenant %s was running without '
                               'a claim; claimed now' % (uuid, tenant))
            found.append(Claim(
                uuid=uuid, project_id=info.project_id or tenant,
                tenant=tenant, vcpus=max(1, info.vcpus),
                cell=old.cell if old else None, mode=mode, ratio=ratio,
                isolation=isolation, pending=False, incoming=False,
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

    def _truth(self, domains, claims):
        """The present map as the cgroup tree shows it: each partition's
        CPUs, less those that only domains of other keys living in it use
        (a partition keeps the domains that started in it when their key
        changes, and holds their new cores for them)."""
        parts = self.partitions.list_partitions()
        foreign = collections.defaultdict(set)
        own = collections.defaultdict(set)
        for uuid, (dom, info) in domains.items():
            if info.tenant is None or not (info.active or info.persistent):
                continue
            # The key the domain runs under now (its metadata), not the one
            # it is about to get.
            key = info.isolation_key
            used = info.all_cpus(self._host_cpus)
            if key == info.tenant:
                own[info.tenant] |= used
            else:
                foreign[info.tenant] |= used
        truth = {}
        for tenant, info in parts.items():
            cpus = set(info.cpus)
            if foreign.get(tenant):
                cpus -= foreign[tenant] - own.get(tenant, set())
                # Only whole cores that the partition alone uses.
                cpus = frozenset(c for c in cpus if
                                 set(self.topology.core_of(c).cpus) <= cpus)
            if cpus:
                truth[tenant] = frozenset(cpus)
        return truth

    def _relabel(self, current, claims, domains, repairs):
        """The present map as the instances' new keys see it, with no core
        moved: the cores of a key whose instances changed key are shared
        out among their new keys. A core that only instances going to one
        new key use goes to that key; the rest go to the heir (the old key
        itself while some of its instances stay, else the new key with the
        most vCPUs); a core that guests of several new keys use goes to the
        one with the most vCPUs there.
        Keys that merge keep their cores and nothing moves; a key that
        splits off keeps the cores only it uses and grows elsewhere for the
        rest."""
        original = dict(current)
        current = dict(current)
        by_old = collections.defaultdict(collections.Counter)
        users = collections.defaultdict(
            lambda: collections.defaultdict(collections.Counter))
        for uuid, claim in claims.items():
            if uuid not in domains:
                continue
            info = domains[uuid][1]
            old = info.isolation_key
            if old is None or old not in current:
                continue
            by_old[old][claim.tenant] += claim.vcpus
            for core in self.topology.cores_of(
                    info.all_cpus(self._host_cpus) & current[old]):
                users[old][core][claim.tenant] += claim.vcpus
        for old, news in sorted(by_old.items()):
            if set(news) == {old} or old in self.static:
                continue
            heir = old if old in news else sorted(
                news.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            # Only the cores the old key held before this relabelling (it
            # may have been given others as the heir of another key).
            cpus = original[old]
            current[old] = current[old] - cpus
            if not current[old]:
                del current[old]
            for core, keys in sorted(users[old].items(),
                                     key=lambda kv: kv[0].cpus):
                # A core that guests of several new keys use goes to the
                # key with the most vCPUs there; the others' guests leave
                # it before that key's other guests come.
                key = sorted(keys.items(), key=lambda kv: (-kv[1], kv[0]))[
                    0][0]
                if key != heir and key not in self.static:
                    current[key] = current.get(key, frozenset()) | \
                        frozenset(core.cpus)
                    cpus -= frozenset(core.cpus)
            if cpus and heir not in self.static:
                current[heir] = current.get(heir, frozenset()) | cpus
            elif cpus:
                current[old] = cpus
            repairs.append('tenant %s: its instances now belong to %s; its '
                           'cores go with them' % (
                               old, ', '.join(sorted(news))))
        return current

    def _transition(self, plan, claims, what, domains=None, repairs=None,
                    dry_run=False):
        """Apply ``plan`` and commit ``claims`` and the new map; return the
        writes made (with ``dry_run``: described, not made, nothing
        committed).

        Order, so that no intermediate state lets two keys share a core
        that they did not share before:

        1. shrinks and releases: a key's domains are re-pinned inside its
           new CPUs, then its partition narrowed (bottom-up);
        2. grows: a key's partition widened, then its domains re-pinned
           (top-down);
        3. every domain re-pinned to its final placement and its metadata
           recorded; every partition set to its final CPUs (shrinks before
           widens) and partitions that hold nothing removed.

        When guests change key (per-project settings re-read, guests
        adopted from outside tenant-pin) or some do not fit,
        :meth:`_move_guests` moves the guests one by one first and steps 1
        and 2 are skipped: step 3 then sets the partitions. Guests that do
        not fit (an adopted host with too much load) go to the cores no key
        holds, or to the housekeeping cores when none is left: the others
        stay isolated.

        A domain lives in the partition it started in. When that is not
        its key's (adopted, or its key changed), its pins confine it and
        the partition is widened to hold them. On failure the partial state
        is safe (each step keeps the invariants); a reconcile finishes it.
        """
        if domains is None:
            domains = self._read_domains()
        if dry_run:
            domains = {u: (d, copy.deepcopy(i))
                       for u, (d, i) in domains.items()}
        ops = _Ops(self, dry_run)
        keymap = dict(self._tenants)
        overflow = plan.free_cpus or self.housekeeping_cpus
        targets, unfit = {}, collections.defaultdict(list)
        for uuid, (dom, info) in domains.items():
            claim = claims.get(uuid)
            if claim is None or not (info.active or info.persistent):
                continue
            if uuid in plan.instances:
                targets[uuid] = plan.instances[uuid]
            else:
                targets[uuid] = allocator.InstancePlacement(
                    uuid, claim.tenant, frozenset(overflow), ())
                unfit[claim.tenant].append(uuid)
        by_key = collections.defaultdict(list)
        for uuid in targets:
            if uuid in plan.instances:
                by_key[claims[uuid].tenant].append(uuid)

        # The guests living in each partition (a domain stays in the
        # partition it started in: this does not change while the
        # transition re-pins them).
        living = collections.defaultdict(list)
        for uuid in targets:
            living[domains[uuid][1].tenant].append(uuid)

        def need(tenant):
            # The key's cores, and wherever the guests living in the
            # partition run now (its own guests are inside the key's cores
            # except while they wait to be re-pinned there).
            cpus = set(keymap.get(tenant, ()))
            for u in living.get(tenant, ()):
                cpus |= domains[u][1].all_cpus(self._host_cpus)
            return frozenset(cpus) & self._host_cpus

        def narrow(tenant):
            if tenant in ops.parts:
                cpus = ops.parts[tenant] & need(tenant)
                if cpus and cpus != ops.parts[tenant]:
                    ops.set_partition(tenant, cpus)

        def pin(uuid, within):
            self._place(ops, domains[uuid], claims[uuid], targets[uuid],
                        within, repairs)

        # Partitions that must stay: a domain that holds room lives there.
        # Any other (the source of a finished move) does not keep its
        # partition; the kernel refuses to remove one with tasks in it.
        used = {domains[u][1].tenant for u in targets}
        moves = list(plan.moves)
        first_grow = next((i for i, m in enumerate(moves)
                           if m.action in ('create', 'grow', 'widen')),
                          len(moves))
        # Guests whose key changes (per-project settings re-read, guests
        # adopted from outside tenant-pin) or that do not fit are moved one
        # by one first (_move_guests); the map's steps then only set the
        # partitions.
        rekeyed = any(domains[u][1].isolation_key != claims[u].tenant
                      for u in targets)
        try:
            if rekeyed or unfit:
                self._move_guests(ops, plan, targets, claims, domains,
                                  used, repairs)
            else:
                for move in moves[:first_grow]:
                    tenant = move.project_id
                    keymap[tenant] = move.cpus
                    for uuid in by_key.get(tenant, ()):
                        pin(uuid, move.cpus)
                    if move.cpus:
                        narrow(tenant)
                    else:
                        if tenant in ops.parts and tenant not in used:
                            ops.remove_partition(tenant)
                        keymap.pop(tenant, None)
                    self._note_move(move, repairs)
                for move in moves[first_grow:]:
                    tenant = move.project_id
                    keymap[tenant] = move.cpus
                    ops.set_partition(tenant, move.cpus | ops.parts.get(
                        tenant, frozenset()))
                    for uuid in by_key.get(tenant, ()):
                        pin(uuid, move.cpus)
                    if move.removed:
                        narrow(tenant)
                    self._note_move(move, repairs)
            keymap = plan.tenant_map()
            # A key the previous plan had and whose partition is missing
            # lost it from the tree; any other is new.
            last_map = (self._last_plan.tenant_map()
                        if self._last_plan is not None else {})
            for tenant, cpus in sorted(keymap.items()):
                if tenant not in ops.parts:
                    ops.set_partition(tenant, cpus)
                    if repairs is not None:
                        repairs.append('tenant %s: partition %s with CPUs '
                                       '%s' % (tenant, 'recreated'
                                               if tenant in last_map
                                               else 'created',
                                               topo.format_cpu_list(cpus)))
            for uuid in targets:
                pin(uuid, targets[uuid].cpus)
                self._record(ops, domains[uuid], claims[uuid])
            # Final partition CPUs: shrinks first, then widens.
            for tenant in sorted(ops.parts):
                want = need(tenant)
                if not want and tenant not in used:
                    ops.remove_partition(tenant)
                elif want and not want >= ops.parts[tenant]:
                    ops.set_partition(tenant, want & ops.parts[tenant] or
                                      want)
            for tenant in sorted(ops.parts):
                want = need(tenant)
                if want and want != ops.parts[tenant]:
                    ops.set_partition(tenant, want)
        except Exception:
            LOG.exception('%s: %s stopped half way; the host is in a safe '
                          'intermediate state and the next reconcile '
                          'finishes it', self.name, what)
            raise
        if dry_run:
            return ops.actions
        self._tenants = plan.tenant_map()
        self._claims = claims
        self._last_plan = plan
        self._report(domains, claims, dict(unfit), overflow)
        return ops.actions

    def _move_guests(self, ops, plan, targets, claims, domains, used,
                     repairs):
        """Move every guest to its final placement, one at a time, when
        keys change (per-project settings re-read, guests adopted from
        outside tenant-pin) or some guests do not fit.

        A guest moves only when no guest of another key runs on its new
        cores, unless the two share a core already (they trusted each other
        until a moment ago: moving does not expose either to anyone new).
        When guests wait on each other (they swap places), one of them
        first narrows onto the part of its present cores that nobody waits
        for; only when none can does one move anyway, with a warning.

        Before anything moves, each guest takes its new key (its metadata)
        and each partition keeps only what its guests use (and the CPUs
        issued to instances being defined): a partition never holds a core
        for nobody while another key's guest arrives there. The map's
        partitions are set afterwards, by the caller's final step.
        """
        host = self._host_cpus
        issued = collections.defaultdict(frozenset)
        for claim in claims.values():
            if claim.pending and claim.issued:
                issued[claim.tenant] |= claim.issued

        def now(uuid):
            return domains[uuid][1].all_cpus(host)

        final = plan.tenant_map()

        def keep(tenant):
            # What its guests use, the CPUs issued to its instances being
            # defined, and its key's final cores where no other key's guest
            # runs now (so a partition that changes nothing is not
            # narrowed and widened again).
            cpus = set(issued.get(tenant, ()))
            others = set()
            for u in targets:
                if domains[u][1].tenant == tenant:
                    cpus |= now(u)
                elif claims[u].tenant != tenant:
                    others |= now(u)
            others = self.topology.whole_core_cpus(others)
            cpus |= set(final.get(tenant, ())) - set(others)
            return frozenset(cpus)

        def narrow(tenant):
            if tenant not in ops.parts:
                return
            cpus = ops.parts[tenant] & keep(tenant)
            if cpus:
                if cpus != ops.parts[tenant]:
                    ops.set_partition(tenant, cpus)
            elif tenant not in used:
                ops.remove_partition(tenant)

        for uuid in targets:
            info = domains[uuid][1]
            if info.isolation_key is not None and \
                    info.key != claims[uuid].tenant:
                self._record(ops, domains[uuid], claims[uuid])
        for tenant in sorted(ops.parts):
            narrow(tenant)

        def placed(uuid):
            placement = targets[uuid]
            info = domains[uuid][1]
            if info.effective_emulator_cpus(host) != placement.cpus:
                return False
            for vcpu in range(info.vcpus):
                want = placement.cpus
                if placement.vcpu_pins and vcpu in placement.vcpu_pins:
                    want = frozenset([placement.vcpu_pins[vcpu]])
                if info.effective_vcpu_cpus(vcpu, host) != want:
                    return False
            return True

        def move(uuid, placement):
            self._place(ops, domains[uuid], claims[uuid], placement,
                        placement.cpus, repairs)
            if domains[uuid][1].tenant is not None:
                narrow(domains[uuid][1].tenant)

        pending = [u for u in targets if not placed(u)]
        while pending:
            # Which keys' guests may run on each core now (guests adopted
            # from outside tenant-pin float everywhere and are not counted).
            on_core = collections.defaultdict(set)
            for u in targets:
                if domains[u][1].isolation_key is not None:
                    for core in self.topology.cores_of(now(u)):
                        on_core[core].add(claims[u].tenant)

            def free_part(uuid):
                """The part of its final cores it may move onto now."""
                key = claims[uuid].tenant
                shares = set()
                for core in self.topology.cores_of(now(uuid)):
                    shares |= on_core[core]
                return frozenset(
                    cpu for core in self.topology.cores_of(
                        targets[uuid].cpus)
                    if not on_core[core] - {key} - shares
                    for cpu in core.cpus) & targets[uuid].cpus

            ready = next((u for u in pending
                          if free_part(u) == targets[u].cpus), None)
            if ready is not None:
                move(ready, targets[ready])
                pending.remove(ready)
                continue

            def wanted_by_others(uuid):
                key = claims[uuid].tenant
                return frozenset(self.topology.whole_core_cpus(
                    frozenset().union(*(targets[v].cpus for v in pending
                                        if claims[v].tenant != key))))

            # Guests that wait on each other: one moves first onto the part
            # of its final cores that is free for it, leaving cores others
            # wait for; else one narrows onto the part of its present cores
            # that nobody waits for.
            step = None
            for uuid in pending:
                part = free_part(uuid)
                if part and part != now(uuid) and \
                        (now(uuid) - part) & wanted_by_others(uuid):
                    step = uuid, part
                    break
            else:
                for uuid in pending:
                    rest = now(uuid) - wanted_by_others(uuid)
                    if rest and rest != now(uuid):
                        step = uuid, rest
                        break
            if step is not None:
                uuid, cpus = step
                move(uuid, dataclasses.replace(targets[uuid], cpus=cpus,
                                               vcpu_pins=None))
                continue
            uuid = pending.pop(0)
            LOG.warning('%s: instance %s of tenant %s moves to CPUs %s, '
                        'where guests of other tenants that wait for its '
                        'present cores still run', self.name, uuid,
                        claims[uuid].tenant,
                        topo.format_cpu_list(targets[uuid].cpus))
            move(uuid, targets[uuid])

    def _note_move(self, move, repairs):
        if repairs is not None:
            repairs.append('tenant %s: %s to CPUs %s' % (
                move.project_id, move.action,
                topo.format_cpu_list(move.cpus) or 'none'))

    def _report(self, domains, claims, unfit, overflow):
        """Log, once per change, what is not confined by its partition and
        whether the host is isolated."""
        for uuid, (dom, info) in domains.items():
            if uuid not in claims or info.confinement == 'partition' or \
                    not info.active:
                continue
            if uuid not in self._pins_only_seen:
                self._pins_only_seen.add(uuid)
                LOG.info('%s: instance %s of tenant %s is confined by its '
                         'pins (it runs in %s) until its next hard reboot',
                         self.name, uuid, claims[uuid].tenant,
                         info.partition and 'partition ' + info.partition or
                         'no tenant partition')
        if unfit and unfit != self._unfit:
            LOG.error('%s: host NOT isolated: tenants %s do not fit on whole '
                      'cores; their instances %s share CPUs %s, which no '
                      'other tenant uses; the other tenants are isolated',
                      self.name, ', '.join(sorted(unfit)),
                      ', '.join(sorted(u for us in unfit.values()
                                       for u in us)),
                      topo.format_cpu_list(overflow))
        elif self._unfit and not unfit:
            LOG.info('%s: every tenant fits on whole cores again; the host '
                     'is isolated', self.name)
        self._unfit = unfit

    def _place(self, ops, entry, claim, placement, within, repairs):
        """Pin a domain to ``placement`` inside ``within``: its new key is
        recorded first (from then on its threads are that key's), and the
        partition it lives in widened to hold the pins (a hosted domain's
        new key's cores, or cores its own key got by relabelling)."""
        if entry[1].key != claim.tenant:
            self._record(ops, entry, claim)
        part = entry[1].tenant
        if part is not None:
            wanted = placement.cpus & frozenset(within)
            held = ops.parts.get(part, frozenset())
            if wanted and not wanted <= held:
                ops.set_partition(part, wanted | held)
        self._pin_domain(ops, entry, placement, within, repairs)

    def _record(self, ops, entry, claim):
        """Keep the instance's key, pin mode and ratio in its metadata."""
        dom, info = entry
        ratio = claim.ratio or self.ratio
        if (info.key, info.pin_mode, info.ratio, info.isolation) == (
                claim.tenant, claim.mode, ratio, claim.isolation):
            return
        flags = self._flags(info)
        if flags:
            ops.set_metadata(dom, info, domain_xml.metadata_xml(
                claim.tenant, claim.mode, ratio, claim.isolation), flags)

    def _pin_domain(self, ops, entry, placement, within, repairs=None):
        """Pin a domain's vCPUs and emulator to its placement, if they are
        not already there. ``within`` is the key's CPUs at this step: a
        pin outside them would be refused by the kernel (or give the
        domain another key's cores), so it waits for a later step."""
        dom, info = entry
        allowed = placement.cpus & frozenset(within)
        flags = self._flags(info)
        if not allowed or not flags:
            return
        wanted = {}
        for vcpu in range(info.vcpus):
            cpus = placement.cpus
            if placement.vcpu_pins is not None and \
                    vcpu in placement.vcpu_pins:
                cpus = frozenset([placement.vcpu_pins[vcpu]])
            wanted[vcpu] = cpus if cpus <= allowed else allowed
        changed = False
        for vcpu, cpus in sorted(wanted.items()):
            if info.effective_vcpu_cpus(vcpu, self._host_cpus) != cpus:
                ops.pin(dom, info, vcpu, cpus, flags)
                changed = True
        if info.effective_emulator_cpus(self._host_cpus) != allowed:
            ops.pin(dom, info, None, allowed, flags)
            changed = True
        if changed and not ops.dry_run:
            LOG.info('%s: instance %s of tenant %s re-pinned to CPUs %s',
                     self.name, info.uuid, placement.project_id,
                     topo.format_cpu_list(allowed))
            if repairs is not None:
                repairs.append('instance %s of tenant %s: pins set to CPUs '
                               '%s' % (info.uuid, placement.project_id,
                                       topo.format_cpu_list(allowed)))

    def _cpumap(self, cpus):
        return tuple(cpu in cpus for cpu in range(self._cpumap_len))
