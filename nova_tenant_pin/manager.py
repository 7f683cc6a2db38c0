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

"""The per-host map of isolation keys: claim, release, migrate in, reconcile.

One :class:`TenantPinManager` runs in each nova-compute. Under one lock it
holds the instances that hold room on the host (*claims*) and the whole
cores each isolation key holds (*the map*). A change reads the truth
(:mod:`~nova_tenant_pin.guests`, the partitions), plans the target
(:func:`~nova_tenant_pin.claims.target_plan`), turns both into steps whose
every prefix is safe (:mod:`~nova_tenant_pin.transition`) and writes them
(:mod:`~nova_tenant_pin.executor`), stopping at the first failure; the next
change then plans from what the host holds, read again. It imports no Nova.
:meth:`TenantPinManager.reconcile` rebuilds the state from the domains and
the partitions (restart, adoption, settings changed) and repairs drift.
"""

import collections
import dataclasses

from oslo_concurrency import lockutils
from oslo_log import log as logging

from nova_tenant_pin import allocator
from nova_tenant_pin import cgroups
from nova_tenant_pin import claims as tp_claims
from nova_tenant_pin import exception
from nova_tenant_pin import executor
from nova_tenant_pin import guests as tp_guests
from nova_tenant_pin import policy as tp_policy
from nova_tenant_pin import topology as topo
from nova_tenant_pin import transition

LOG = logging.getLogger(__name__)


class TenantPinManager:
    """The tenant map of one host, and every change to it, under one lock.

    :param topology: the host's :class:`~.topology.HostTopology`.
    :param partitions: a :class:`~.cgroups.TenantPartitions`.
    :param get_connection: callable returning the libvirt connection.
    :param housekeeping_cpus: CPUs that no tenant ever gets (whole cores).
    :param pin_mode: the default pin mode, ``float`` or ``strict``.
    :param ratio: the default in-tenant CPU allocation ratio.
    :param static: ``{project or isolation key: cpus}`` fixed cpusets.
    :param exempt_projects: projects that share the
        :data:`~.policy.SHARED_POOL` partition (when ``settings`` is not
        given).
    :param settings: the per-project :class:`~.policy.ProjectSettings`.
    :param reserved_cpus: CPUs Nova keeps for itself (``[compute]
        cpu_dedicated_set``); no tenant gets a core that holds one.
    :param name: names the lock and the logs (the host name).

    Each instance's isolation key, pin mode and ratio come from its
    :class:`~.policy.Policy` (from the flavor, the image and ``settings``;
    without one, the project and the defaults decide). Instances with one
    key share that key's whole cores.
    """

    def __init__(self, topology, partitions, get_connection,
                 housekeeping_cpus, pin_mode=allocator.FLOAT, ratio=1.0,
                 static=None, exempt_projects=(), reserved_cpus=(),
                 name='host', settings=None, on_step=None):
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
        self.on_step = on_step  # called after each write (executor.py)
        self._host_cpus = topology.online_cpus
        self.guests = tp_guests.Guests(get_connection, self._host_cpus)
        # Memory nodes: every cell with memory may serve the tenant's
        # guests; the partitions confine CPUs, not memory.
        self._mems = frozenset(cell.id for cell in topology.cells)
        self._lock_name = 'nova-tenant-pin-%s-%d' % (name, id(self))
        self._claims = collections.OrderedDict()
        self._tenants = {}
        self._dedicated = {}
        self._last_plan = None
        self._unfit = {}
        self._pins_only_seen = set()
        # True when a change stopped half way: the map is not what the
        # host holds until a change completes.
        self._stale = False
        # Counts the changes to the manager's own state (claims, map,
        # settings); with what the host held, it marks a reconcile that
        # found nothing to do (``_quiet``), so that the next one with the
        # same host and the same state returns at once.
        self._generation = 0
        self._quiet = None
        self.static = tp_policy.static_keys(self._static_cfg, self.key_of)
        # Validate the static configuration against the topology now, so a
        # bad option fails at start and not at the first spawn.
        self._plan(collections.OrderedDict(), {})

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

    def key_of(self, project_id):
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
            return tp_claims.isolation_doc(self._unfit)

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
            pins = tp_claims.pins_from_plan(self._last_plan, uuid)
            if claim.pending and not pins.cpus <= claim.issued:
                claim.issued |= pins.cpus
                self._changed()
            return pins

    def unfit_pins(self, uuid):
        """Where a claimed instance whose tenant did not fit on whole
        cores runs (the CPUs no key holds, else the housekeeping CPUs: see
        :meth:`_transition`), as :class:`InstancePins`; None for any other
        instance."""
        with self._locked():
            return tp_claims.unfit_pins(self._claims.get(uuid), self._unfit,
                                        self._last_plan,
                                        self.housekeeping_cpus)

    def metadata_of(self, uuid):
        """The metadata element (:func:`metadata_xml`) of a claimed
        instance, for its domain XML, or None."""
        with self._locked():
            return tp_claims.metadata_of(self._claims.get(uuid), self.ratio)

    def running_domains(self):
        """The :class:`~.domain_xml.DomainInfo` of every running domain on
        the host, as the manager reads them (a domain is parsed again only
        when its XML changed). Shared: callers must not change them."""
        with self._locked():
            return [guest.info for guest in
                    self.guests.read(jobs=False).values()
                    if guest.info.active]

    def stranded_cpus(self):
        """Threads held by tenants but not needed by their vCPUs: the
        driver reports them to placement as reserved."""
        with self._locked():
            return self._last_plan.stranded_cpus if self._last_plan else 0

    def snapshot(self):
        """The map as plain data, for logs, the CLI and tests."""
        with self._locked():
            return tp_claims.snapshot(self._tenants, self._claims,
                                      self._last_plan, self._dedicated,
                                      self._unfit, self.ratio)

    # -- changes -----------------------------------------------------------

    def claim(self, uuid, project_id, vcpus, cell=None, incoming=False,
              policy=None):
        """Hold room for an instance and return its :class:`InstancePins`.

        The key's partition exists with the returned CPUs when this
        returns, so a domain defined with them starts confined. Claiming an
        instance that already holds room (resize, rebuild, hard reboot)
        updates it in place.

        :param policy: the instance's
            :class:`~nova_tenant_pin.policy.Policy`; by default the
            project's (:meth:`policy_of`).
        :raises TenantDoesNotFit: the key cannot get the room, or giving
            it would push out an instance that has room now; nothing
            changed.
        """
        if policy is None:
            cgroups.validate_tenant_id(project_id)
            policy = self.policy_of(project_id)
        else:
            cgroups.validate_tenant_id(policy.isolation_key)
        key = policy.isolation_key
        with self._locked():
            self._changed()
            old = self._claims.get(uuid)
            claims = collections.OrderedDict(self._claims)
            claims[uuid] = tp_claims.claim_of(uuid, project_id, policy, vcpus,
                                              cell, incoming, old)
            guests, truth = self._read()
            touched = self._touched(truth, claims, {key} | (
                {old.key} if old is not None else set()))
            plan = self._plan(claims, self._current(truth, claims), truth,
                              touched)
            reason = tp_claims.refusal(plan, self._last_plan, uuid)
            if reason is not None:
                raise exception.TenantDoesNotFit(uuid, key, reason)
            self._transition(plan, claims, 'claim of instance %s' % uuid,
                             guests, truth)
            pins = tp_claims.pins_from_plan(plan, uuid)
            if claims[uuid].pending:
                claims[uuid].issued |= pins.cpus
            LOG.info('%s: instance %s of tenant %s (project %s) claimed %d '
                     'vCPUs on CPUs %s (%s)%s', self.name, uuid, key,
                     project_id, vcpus, topo.format_cpu_list(pins.cpus),
                     policy.describe(),
                     ' (incoming live migration)' if incoming else '')
            return pins

    def claim_incoming_migration(self, uuid, project_id, vcpus, cell=None,
                                 policy=None):
        """Claim room for an instance about to arrive by live migration.

        The key's partition is created or widened before this returns:
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
                self._changed()

    def release_unconfirmed_migration(self, uuid):
        """Release an incoming claim that the source never accepted."""
        with self._locked():
            claim = self._claims.get(uuid)
            if claim is None or not claim.incoming or claim.confirmed:
                return False
        return self.release(uuid)

    def release(self, uuid):
        """Give back an instance's room; shrink or remove its key.

        Idempotent: releasing an unknown instance does nothing. Returns True
        when a claim was released.
        """
        with self._locked():
            self._changed()
            self._dedicated.pop(uuid, None)
            claim = self._claims.get(uuid)
            if claim is None:
                return False
            claims = collections.OrderedDict(self._claims)
            del claims[uuid]
            # The instance is gone whatever happens to the rest: forget its
            # claim even if the change stops half way, so that the change
            # that finishes it does not count it.
            self._claims = claims
            self._change(claims, 'release of instance %s' % uuid,
                         {claim.key})
            LOG.info('%s: instance %s of tenant %s released its claim; '
                     'tenant now holds CPUs %s', self.name, uuid,
                     claim.key, topo.format_cpu_list(
                         self._tenants.get(claim.key, ())) or 'none')
            return True

    def domain_started(self, uuid):
        """The instance's domain exists now: re-pin it to the plan (strict
        pins after a live migration arrives) and end its pending state."""
        with self._locked():
            if uuid not in self._claims:
                return None
            self._changed()
            # Only this claim changes: the others are shared with the map
            # the manager keeps if the change stops half way.
            claims = collections.OrderedDict(self._claims)
            claims[uuid] = dataclasses.replace(claims[uuid])
            claims[uuid].pending = False
            claims[uuid].incoming = False
            claims[uuid].issued = frozenset()
            # Re-plan: a shrink held back while this domain was being
            # defined can happen now, and the new domain gets its pins.
            plan = self._change(claims, 'start of instance %s' % uuid,
                                {claims[uuid].key})
            if uuid not in plan.instances:
                return None
            return tp_claims.pins_from_plan(plan, uuid)

    def add_dedicated(self, uuid, cpus):
        """Record an instance with dedicated CPUs (Nova's own)."""
        with self._locked():
            self._changed()
            self._dedicated[uuid] = frozenset(cpus)

    @property
    def static_config(self):
        """The static cpusets as configured (``{project or key: cpus}``)."""
        return dict(self._static_cfg)

    def update_settings(self, settings, static=None):
        """Take new per-project settings (and ``static_tenant_cpuset`` when
        ``static`` is given) re-read on SIGHUP. Running instances change key
        and cores at the next :meth:`reconcile`, which the caller runs.

        :raises allocator.PlanError: a static cpuset that breaks a rule;
            nothing changed.
        """
        with self._locked():
            self._changed()
            old = (self.settings, self._static_cfg, self.static)
            self.settings = settings
            if static is not None:
                self._static_cfg = {t: frozenset(c)
                                    for t, c in static.items()}
            try:
                self.static = tp_policy.static_keys(self._static_cfg,
                                                    self.key_of)
                # The same check as at start: whole cores, off housekeeping
                # and dedicated CPUs, no two keys on one core.
                self._plan(collections.OrderedDict(), {})
            except Exception:
                self.settings, self._static_cfg, self.static = old
                raise
        LOG.info('%s: per-project settings changed: %s', self.name,
                 tp_policy.describe_settings(settings, self._static_cfg))

    def reconcile(self, dedicated=None, known=None, policies=None,
                  dry_run=False, isolation=None):
        """Rebuild the map from libvirt domains and the cgroup tree, and
        repair what drifted. Returns the repairs made, as log lines (with
        ``dry_run``: the writes it would make, and it makes none). A dict
        ``isolation`` gets what :meth:`isolation` says (would say) after.

        This is also how a host is adopted (guests started without
        tenant-pin are pinned live to their key's cores) and how a change
        of per-project settings takes effect (instances whose key changed
        move to their new key's cores live; keys that merge keep their
        cores; a key that splits off gets cores of its own before anyone
        else may take the ones it leaves).

        :param dedicated, known: what Nova says of the host's instances
            (:func:`claims.rebuild`).
        :param policies: ``{uuid: Policy}`` of the instances, when the
            caller knows them (the driver resolves them from the flavors).
            Without it, each domain's tenant-pin metadata and the present
            settings decide.
        """
        with self._locked():
            repairs = []
            guests, truth = self._read()
            quiet = (self.guests.state, truth.partitions,
                     None if dedicated is None else dict(dedicated),
                     None if known is None else frozenset(known),
                     dict(policies or {}))
            if not dry_run and self._quiet == (self._generation, quiet):
                return []
            steady = (self._claims, self._dedicated, self._tenants) \
                if self._last_plan is not None else None
            claims, dedicated = tp_claims.rebuild(
                truth, self._claims,
                lambda info: tp_claims.domain_policy(
                    info, policies or {}, self.policy_of, self.name, LOG),
                self.pin_mode, self._host_cpus, repairs, dedicated, known,
                seen_before=self._last_plan is not None)
            current = transition.rebuilt_map(
                truth, claims, self.topology, self.static, repairs,
                self._tenants if self._last_plan is not None else None)
            saved = (self._dedicated, self._tenants, self._stale)
            self._dedicated, self._tenants = dedicated, dict(current)
            self._stale = False
            try:
                plan = self._plan(claims, current, truth)
                repairs.extend(tp_claims.unfit_lines(plan))
                actions = self._transition(
                    plan, claims, 'reconcile', guests, truth,
                    repairs=repairs, dry_run=dry_run, isolation=isolation)
            finally:
                if dry_run:
                    self._dedicated, self._tenants, self._stale = saved
            if dry_run:
                return actions
            for line in repairs:
                LOG.warning('%s: reconcile repaired: %s', self.name, line)
            if not repairs and not actions and steady == (
                    self._claims, self._dedicated, self._tenants):
                # Nothing to do and nothing rebuilt differently: until the
                # host or the manager's state changes, the next reconcile
                # would find the same.
                self._quiet = (self._generation, quiet)
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
            self._changed()
            guests, truth = self._read()
            ours = [u for u, info in truth.domains.items()
                    if info.partition_key is not None or
                    info.key is not None or u in self._claims]
            steps = transition.release_steps(truth, cpus, ours,
                                             self._host_cpus)
            outcome = self._executor(dry_run).run(steps, guests)
            if outcome.error is not None:
                self._stale = True
                raise outcome.error
            if not dry_run:
                self._claims = collections.OrderedDict()
                self._tenants = {}
                self._last_plan = None
                self._unfit = {}
                LOG.warning('%s: tenant isolation released: %d guests may '
                            'run on CPUs %s', self.name, len(ours),
                            topo.format_cpu_list(cpus))
            return outcome.actions

    # -- internals -----------------------------------------------------------

    def _locked(self):
        return lockutils.lock(self._lock_name)

    def _changed(self):
        """The manager's state changes (under the lock): the next reconcile
        plans whatever the host holds."""
        self._generation += 1
        self._quiet = None

    def _read(self):
        """``({uuid: Guest}, Truth)``: what libvirt and the cgroup tree
        hold now."""
        guests = self.guests.read()
        return guests, transition.Truth.of(
            guests, self.partitions.list_partitions())

    def _current(self, truth, claims):
        """The map the next plan starts from: the one the last change
        reached, or, when a change stopped half way, what the host holds
        (:func:`transition.held_map`)."""
        if not self._stale:
            return self._tenants
        self._changed()
        held = transition.held_map(truth, claims, self.topology, self.static,
                                   self.housekeeping_cpus)
        LOG.warning('%s: the last change stopped half way; planning from '
                    'what the host holds: %s', self.name, held)
        self._tenants = held
        return held

    def _change(self, claims, what, keys):
        """Plan ``claims`` from the truth and apply it; returns the plan.
        ``keys``: the keys whose claims changed."""
        guests, truth = self._read()
        touched = self._touched(truth, claims, keys)
        plan = self._plan(claims, self._current(truth, claims), truth,
                          touched)
        self._transition(plan, claims, what, guests, truth)
        return plan

    def _touched(self, truth, claims, keys):
        """:func:`claims.touched_keys`: ``keys`` when a change of their
        claims may plan and write only them, else None. Never after a
        change stopped half way (the map is not what the host holds) nor
        while a key does not fit; a periodic reconcile plans every key
        and repairs drift."""
        if self._stale or self._last_plan is None or self._unfit:
            return None
        return tp_claims.touched_keys(truth, claims, keys, self._tenants)

    def _executor(self, dry_run):
        return executor.Executor(self.guests, self.partitions, self._mems,
                                 self.name, not dry_run, self.on_step)

    def _plan(self, claims, current, truth=None, touched=None):
        """:func:`claims.target_plan` of ``claims`` from ``current``;
        ``touched``: only these keys' claims changed since the last plan
        (:meth:`_touched`)."""
        dedicated = set(self.reserved_cpus).union(*self._dedicated.values())
        return tp_claims.target_plan(
            claims, current, self.topology, self.housekeeping_cpus,
            self.ratio, frozenset(dedicated) & self._host_cpus, self.static,
            truth=truth, name=self.name, touched=touched,
            previous=self._last_plan if touched is not None else None)

    def _transition(self, plan, claims, what, guests, truth, repairs=None,
                    dry_run=False, isolation=None):
        """Apply ``plan`` from ``truth`` and commit ``claims`` and the new
        map; return the writes made (with ``dry_run``: described, not
        made, nothing committed). A plan of some keys only
        (``plan.planned``, see :meth:`_touched`) changes only their
        partitions and domains. After a failed write nothing is committed
        and the next change plans from what the host holds."""
        last_map = (self._last_plan.tenant_map()
                    if self._last_plan is not None else {})
        keys = plan.planned if not plan.unplaced else None
        result = transition.plan_transition(
            truth, plan, claims, self._tenants, self.topology,
            self.housekeeping_cpus, self.ratio, last_map=last_map,
            keys=keys)
        outcome = self._executor(dry_run).run(result.steps, guests)
        if not dry_run:
            self._changed()
        if outcome.error is not None:
            self._stale = True
            LOG.error('%s: %s stopped half way (%s: %s); the host is in a '
                      'safe intermediate state and the next change plans '
                      'from what it holds', self.name, what,
                      outcome.failed.describe(), outcome.error)
            raise outcome.error
        if isolation is not None:
            isolation.update(tp_claims.isolation_doc(result.unfit))
        if dry_run:
            return outcome.actions
        if repairs is not None:
            repairs.extend(result.repairs)
        elif result.repairs:
            LOG.info('%s: %s: %s', self.name, what,
                     '; '.join(result.repairs))
        self._tenants = plan.tenant_map()
        self._claims = claims
        self._last_plan = plan
        self._stale = False
        self._unfit = tp_claims.report(
            self.name, result.after.domains, claims, result.unfit,
            result.overflow, self._unfit, self._pins_only_seen, LOG)
        return outcome.actions
