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

"""Tenant-aware placement of instances on whole physical cores.

Given a :class:`~nova_tenant_pin.topology.HostTopology`, the CPUs reserved
for host housekeeping, the instances on the host and the tenants' present
cores, :func:`plan` decides which whole cores each tenant holds, which CPUs
each instance may run on (and, in strict mode, which CPU each vCPU is pinned
to), what does not fit, and the ordered steps from the present map to the new
one.

The guarantees, each covered by property tests:

* **Isolation by construction.** A core is held by at most one tenant, and a
  core that holds a housekeeping CPU, or a CPU of an instance with dedicated
  CPUs, is never given to a tenant. Housekeeping CPUs that split a core are
  rounded up to the whole core, and the plan says so in ``warnings``: taking
  the sibling away from tenants is always safe, handing it out never is.
* **Fewest cores.** Per NUMA cell, a tenant holds the fewest cores whose
  threads times the in-tenant allocation ratio cover its vCPUs there; with
  equal threads per core that is ``ceil(vcpus / (threads * ratio))``. A
  tenant whose instances ask for no particular cell is kept in one cell when
  it fits in one.
* **Sticky.** A tenant keeps the cores it holds while they still serve it;
  arrivals and departures of other tenants move nobody when free cores
  exist. Tenants that already hold cores are served before new ones, and
  instances are placed in the order given, so callers list running
  instances before new arrivals.
* **Safe moves.** ``moves`` go from the present map to the new one without a
  state in which two tenants hold one core: every shrink comes before every
  grow, and a tenant that must relocate first widens over its new cores and
  then lets go of the old ones.
* **Nothing silent.** An instance that cannot be placed is listed in
  ``unplaced`` with a reason; it never overlaps anyone.

This module is pure: it imports neither Nova nor libvirt.
"""

import collections
import dataclasses
import math

from nova_tenant_pin import exception
from nova_tenant_pin import topology as topo

FLOAT = 'float'
STRICT = 'strict'
MODES = (FLOAT, STRICT)

_EPSILON = 1e-9
#: The tolerance of capacity comparisons (vCPUs times ratios).
EPSILON = _EPSILON


class PlanError(exception.TenantPinException, ValueError):
    """The request given to :func:`plan` is malformed or contradictory."""


@dataclasses.dataclass(frozen=True)
class InstanceRequest:
    """One instance as the allocator sees it.

    :param uuid: the instance's id.
    :param key: the isolation key: instances with the same key may
        share cores, others never do. Normally the Nova project id.
    :param vcpus: number of vCPUs (>= 1).
    :param cell: a NUMA cell the instance must stay in, or None.
    :param mode: ``float`` (the instance may run on all of its tenant's CPUs
        in its cells) or ``strict`` (each vCPU pinned to one CPU).
    :param placed_cells: where a running instance is now (from the previous
        plan's ``cell_vcpus``): ``{cell: vcpus}``, or a sequence of cells
        (all vCPUs in one cell, or split as room allows), or None. A hint,
        not a constraint: the instance stays as it is while its tenant has
        room there, which keeps the tenant's cores where they are.
    """

    uuid: str
    key: str
    vcpus: int
    cell: object = None
    mode: str = FLOAT
    placed_cells: tuple = None


@dataclasses.dataclass
class InstancePlacement:
    uuid: str
    key: str
    cpus: frozenset
    cells: tuple
    vcpu_pins: dict = None
    cell_vcpus: dict = None


@dataclasses.dataclass
class TenantPlacement:
    key: str
    cpus: frozenset
    cells: tuple
    vcpus: int
    stranded_cpus: int


@dataclasses.dataclass(frozen=True)
class Move:
    """One step from the present map: set ``key``'s CPUs to ``cpus``.

    ``action`` is ``shrink``, ``release`` (to no CPUs), ``grow``, ``create``
    (a tenant that held nothing) or ``widen`` (the first half of a
    relocation: the union of old and new cores).
    """

    action: str
    key: str
    cpus: frozenset
    added: frozenset
    removed: frozenset

    def to_dict(self):
        return {'action': self.action, 'tenant': self.key,
                'cpus': sorted(self.cpus), 'add': sorted(self.added),
                'remove': sorted(self.removed)}


@dataclasses.dataclass
class Plan:
    tenants: dict
    instances: dict
    unplaced: list
    stranded_cpus: int
    free_cpus: frozenset
    housekeeping_cpus: frozenset
    moves: list
    warnings: list
    #: Keys that keep their present cores for this change (see
    #: ``claims.target_plan``).
    held_back: frozenset = frozenset()
    #: The keys planned, when only some were (``claims.touched_plan``:
    #: the others keep their placements); None: every key.
    planned: frozenset = None

    def tenant_map(self):
        """``{key: frozenset(cpus)}``: the map to feed back as the
        ``current`` of the next plan."""
        return {p: t.cpus for p, t in self.tenants.items()}

    def to_dict(self):
        """The output object of the ``plan`` JSON contract."""
        return {
            'tenants': {p: {'cpus': sorted(t.cpus), 'cells': list(t.cells),
                            'vcpus': t.vcpus,
                            'stranded_cpus': t.stranded_cpus}
                        for p, t in sorted(self.tenants.items())},
            'instances': {
                u: {'cpus': sorted(i.cpus), 'cells': list(i.cells),
                    'cell_vcpus': {str(c): n for c, n in
                                   sorted(i.cell_vcpus.items())},
                    'project_id': i.key,
                    'vcpu_pins': (None if i.vcpu_pins is None else
                                  {str(v): c for v, c in
                                   sorted(i.vcpu_pins.items())})}
                for u, i in sorted(self.instances.items())},
            'unplaced': list(self.unplaced),
            'stranded_cpus': self.stranded_cpus,
            'free_cpus': sorted(self.free_cpus),
            'housekeeping_cpus': sorted(self.housekeeping_cpus),
            'moves': [m.to_dict() for m in self.moves],
            'warnings': list(self.warnings),
        }


def cores_needed(vcpus, threads_per_core, ratio=1.0):
    """``ceil(vcpus / (threads_per_core * ratio))``: the fewest whole cores
    of equal size that hold ``vcpus``."""
    if vcpus <= 0:
        return 0
    return math.ceil(vcpus / (threads_per_core * ratio) - _EPSILON)


def _capacity(cores, ratio):
    return sum(core.threads for core in cores) * ratio


def _size_key(core):
    # Bigger cores first, then by id: picking the largest cores first gives
    # the fewest cores for any demand, and the id keeps the plan stable.
    return (-core.threads, core.id)


class _CellPool:
    """The free cores of one cell, bigger first, and their threads."""

    def __init__(self, cores):
        self.cores = sorted(cores, key=_size_key)
        self.threads = sum(core.threads for core in self.cores)

    def remove(self, taken):
        if taken:
            self.cores = [c for c in self.cores if c not in taken]
            self.threads = sum(core.threads for core in self.cores)

    def add(self, released):
        if released:
            self.cores = sorted(set(self.cores) | set(released),
                                key=_size_key)
            self.threads = sum(core.threads for core in self.cores)


def _choose_cores(demand, kept, free, ratio):
    """Cores from ``kept`` + ``free`` that hold ``demand`` vCPUs.

    A tenant keeps the cores it holds and grows by the biggest free cores
    (the fewest cores for the growth); then cores it does not need are
    let go, smallest first. For a tenant that holds nothing yet, this is
    the fewest cores there are; on hybrid hosts a tenant keeps a smaller
    core it holds rather than moving to a bigger free one.
    Returns None when even all of them do not hold the demand.
    """
    if demand <= 0:
        return []
    chosen = sorted(kept, key=_size_key)
    capacity = _capacity(chosen, ratio)
    for core in free:
        if capacity + _EPSILON >= demand:
            break
        chosen.append(core)
        capacity += core.threads * ratio
    if capacity + _EPSILON < demand:
        return None
    for core in sorted(chosen, key=lambda c: (c.threads, -c.id)):
        if capacity - core.threads * ratio + _EPSILON >= demand:
            chosen.remove(core)
            capacity -= core.threads * ratio
    return chosen


def _check_ratio(ratio, what):
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or \
            not math.isfinite(ratio) or ratio < 1.0:
        raise PlanError('%s must be a number >= 1.0, got %r' % (what, ratio))


def _validate(topology, instances, ratio, tenant_ratios):
    _check_ratio(ratio, 'tenant_cpu_allocation_ratio')
    for key, value in tenant_ratios.items():
        _check_ratio(value, 'the allocation ratio of tenant %s' % key)
    seen = set()
    for inst in instances:
        if inst.uuid in seen:
            raise PlanError('instance %s is listed twice' % inst.uuid)
        seen.add(inst.uuid)
        if not isinstance(inst.vcpus, int) or isinstance(inst.vcpus, bool) \
                or inst.vcpus < 1:
            raise PlanError('instance %s: vcpus must be an integer >= 1, '
                            'got %r' % (inst.uuid, inst.vcpus))
        if inst.mode not in MODES:
            raise PlanError('instance %s: mode must be one of %s, got %r'
                            % (inst.uuid, ', '.join(MODES), inst.mode))
        if not isinstance(inst.key, str) or not inst.key:
            raise PlanError('instance %s: project_id must be a non-empty '
                            'string' % inst.uuid)
        if inst.cell is not None:
            try:
                topology.cell(inst.cell)
            except topo.TopologyError as e:
                raise PlanError('instance %s: %s' % (inst.uuid, e))


def plan(topology, instances, housekeeping_cpus=(), current=None,
         ratio=1.0, dedicated_cpus=(), static=None, tenant_ratios=None):
    """Plan which whole cores each tenant holds on one host.

    :param topology: the host's :class:`~topology.HostTopology`.
    :param instances: :class:`InstanceRequest` objects, running ones first.
    :param housekeeping_cpus: CPUs reserved for the host; their whole cores
        are never given to a tenant.
    :param current: ``{key: cpus}``, the tenants' present cores.
    :param tenant_ratios: ``{key: ratio}``: tenants whose in-tenant
        allocation ratio differs from ``ratio``.
    :param ratio: the in-tenant CPU allocation ratio (>= 1.0): how many
        vCPUs of one tenant may share one thread.
    :param dedicated_cpus: CPUs of instances with dedicated CPUs, which Nova
        places itself; no tenant gets a core that holds one of them.
    :param static: ``{key: cpus}``: tenants with fixed whole cores
        set by the operator; their instances go there and nowhere else.
    :returns: a :class:`Plan`.
    :raises PlanError: for malformed or contradictory input.
    """
    instances = list(instances)
    tenant_ratios = dict(tenant_ratios or {})
    _validate(topology, instances, ratio, tenant_ratios)
    current = {p: frozenset(c) for p, c in (current or {}).items()}
    static = {p: frozenset(c) for p, c in (static or {}).items()}
    warnings = []

    def cores_for(cpus, what):
        cores = set()
        for cpu in cpus:
            try:
                cores.add(topology.core_of(cpu))
            except topo.TopologyError as e:
                raise PlanError('%s: %s' % (what, e))
        return cores

    # Reserved cores: housekeeping, rounded up to whole cores.
    hk_cores = cores_for(housekeeping_cpus, 'housekeeping_cpus')
    hk_cpus = frozenset(c for core in hk_cores for c in core.cpus)
    split = hk_cpus - frozenset(housekeeping_cpus)
    if split:
        warnings.append(
            'housekeeping CPUs split a core; CPUs %s are reserved for '
            'housekeeping as well, so that no tenant shares a core with the '
            'host' % topo.format_cpu_list(split))
    blocked = set(hk_cores) | cores_for(dedicated_cpus, 'dedicated_cpus')

    # Static tenants: fixed whole cores that nobody else gets.
    static_cores = {}
    owner = {}
    for key, cpus in sorted(static.items()):
        cores = cores_for(cpus, 'static cpuset of %s' % key)
        whole = frozenset(c for core in cores for c in core.cpus)
        if whole != cpus:
            raise PlanError('static cpuset of %s must be whole cores: add '
                            'CPUs %s or remove the partial cores'
                            % (key, topo.format_cpu_list(whole - cpus)))
        for core in cores:
            if core in blocked:
                raise PlanError('static cpuset of %s includes core %s which '
                                'is reserved for housekeeping or dedicated '
                                'instances' % (key, topo.format_cpu_list(
                                    core.cpus)))
            if core in owner:
                raise PlanError('static cpusets of %s and %s share core %s'
                                % (owner[core], key,
                                   topo.format_cpu_list(core.cpus)))
            owner[core] = key
        static_cores[key] = cores

    # Present holdings that remain valid; the first tenant (by id) wins a
    # core that the present map gives to two.
    held = {}
    online = topology.online_cpus
    for key in sorted(current):
        if key in static:
            continue
        touched = {topology.core_of(c) for c in current[key]
                   if c in online}
        cores = {c for c in touched if c not in blocked and c not in owner}
        lost = touched - cores
        if lost:
            warnings.append('tenant %s loses cores %s that are now '
                            'reserved or held by another tenant' % (
                                key, topo.format_cpu_list(
                                    c for core in lost for c in core.cpus)))
        for core in cores:
            owner[core] = key
        held[key] = cores

    pools = {cell.id: _CellPool(
        [core for core in cell.cores
         if core not in blocked and core not in owner])
        for cell in topology.cells}

    by_tenant = collections.OrderedDict()
    for inst in instances:
        by_tenant.setdefault(inst.key, []).append(inst)
    # Tenants that held cores but have no instance left release them all,
    # before anyone else is placed, so arrivals can use them.
    for key, cores in held.items():
        if key not in by_tenant:
            for core in cores:
                pools[core.cell].add([core])

    def tenant_order(key):
        insts = by_tenant[key]
        if key in static:
            rank = 0
        elif held.get(key):
            rank = 1
        else:
            rank = 2
        return (rank, -sum(i.vcpus for i in insts), key)

    tenants = {}
    placements = {}
    unplaced = []
    for key in sorted(by_tenant, key=tenant_order):
        if key in static:
            _place_tenant(key, by_tenant[key], topology,
                          held_cores=static_cores[key], pools=None,
                          ratio=tenant_ratios.get(key, ratio),
                          fixed=True, tenants=tenants,
                          placements=placements, unplaced=unplaced)
        else:
            _place_tenant(key, by_tenant[key], topology,
                          held_cores=held.get(key, set()), pools=pools,
                          ratio=tenant_ratios.get(key, ratio),
                          fixed=False, tenants=tenants,
                          placements=placements, unplaced=unplaced)
    # Static tenants hold their cores even with no instance here.
    for key, cores in static_cores.items():
        if key not in tenants:
            tenants[key] = TenantPlacement(
                key, frozenset(c for core in cores for c in core.cpus),
                tuple(sorted({core.cell for core in cores})), 0,
                sum(core.threads for core in cores))

    used = frozenset(c for t in tenants.values() for c in t.cpus)
    free = frozenset(c for core in topology.cores if core not in blocked
                     for c in core.cpus) - used
    result = Plan(tenants=tenants, instances=placements, unplaced=unplaced,
                  stranded_cpus=sum(t.stranded_cpus
                                    for t in tenants.values()),
                  free_cpus=free, housekeeping_cpus=hk_cpus, moves=[],
                  warnings=warnings)
    result.moves = order_moves(current, result.tenant_map())
    return result


def _place_tenant(key, insts, topology, held_cores, pools, ratio, fixed,
                  tenants, placements, unplaced):
    """Assign one tenant's instances to cells and choose its cores.

    With ``fixed``, ``held_cores`` is the tenant's whole world (a static
    cpuset); otherwise the tenant may also take free cores from ``pools``.
    """
    held_by_cell = collections.defaultdict(set)
    for core in held_cores:
        held_by_cell[core.cell].add(core)

    def room(cell_id):
        threads = sum(core.threads for core in held_by_cell[cell_id])
        if not fixed:
            threads += pools[cell_id].threads
        return threads * ratio

    demand = collections.Counter()
    assigned = {}

    def try_cells(inst, order):
        for cell_id in order:
            if demand[cell_id] + inst.vcpus <= room(cell_id) + _EPSILON:
                demand[cell_id] += inst.vcpus
                assigned[inst.uuid] = {cell_id: inst.vcpus}
                return True
        return False

    def span(inst, cell_ids):
        """Split an instance over cells, the largest room first."""
        spare = {c: max(0, math.floor(room(c) - demand[c] + _EPSILON))
                 for c in cell_ids}
        if sum(spare.values()) < inst.vcpus:
            return False
        need = inst.vcpus
        parts = {}
        for cell_id in sorted(cell_ids, key=lambda c: (-spare[c], c)):
            take = min(need, spare[cell_id])
            if take:
                parts[cell_id] = take
                demand[cell_id] += take
                need -= take
            if not need:
                break
        assigned[inst.uuid] = parts
        return True

    def keep_parts(inst, cell_ids):
        """Place a running instance as its hint says, if there is room."""
        hint = inst.placed_cells
        if not hint:
            return False
        if isinstance(hint, dict):
            parts = {int(c): n for c, n in hint.items()}
            if sum(parts.values()) != inst.vcpus:
                return False
        else:
            cells = list(hint)
            if len(cells) != 1:
                return span(inst, [c for c in cells if c in cell_ids])
            parts = {cells[0]: inst.vcpus}
        if any(c not in cell_ids or
               demand[c] + n > room(c) + _EPSILON for c, n in parts.items()):
            return False
        for c, n in parts.items():
            demand[c] += n
        assigned[inst.uuid] = parts
        return True

    # Instances bound to a cell first: they have no choice.
    for inst in insts:
        if inst.cell is None:
            continue
        if not try_cells(inst, [inst.cell]):
            unplaced.append(_unplaced(inst, 'tenant %s cannot get %d more '
                                      'vCPUs of whole cores in NUMA cell '
                                      '%d' % (key, inst.vcpus,
                                              inst.cell)))

    floating = [i for i in insts if i.cell is None]
    if floating:
        total = sum(i.vcpus for i in floating)
        cell_ids = [c.id for c in topology.cells if c.cores]

        def preference(cell_id):
            fits = demand[cell_id] + total <= room(cell_id) + _EPSILON
            spare = room(cell_id) - demand[cell_id] - total
            cores = len(_choose_cores(
                demand[cell_id] + total, held_by_cell[cell_id],
                [] if fixed else pools[cell_id].cores, ratio) or ()) \
                if fits else 0
            # Cells the tenant already holds first, then a cell where all
            # of its floating instances fit on the fewest cores, the
            # tightest such first.
            return (-len(held_by_cell[cell_id]), not fits, cores,
                    spare if fits else -spare, cell_id)
        order = sorted(cell_ids, key=preference)
        for inst in floating:
            if keep_parts(inst, cell_ids):
                continue
            if try_cells(inst, order):
                continue
            # No one cell holds it: let it span cells, largest room first.
            if not span(inst, cell_ids):
                spare = sum(max(0, math.floor(room(c) - demand[c] +
                                              _EPSILON)) for c in cell_ids)
                unplaced.append(_unplaced(
                    inst, 'tenant %s cannot get %d more vCPUs of whole '
                    'cores on this host (%d usable on free or own cores)'
                    % (key, inst.vcpus, spare)))

    # Choose the cores, cell by cell, and hand back what is not needed.
    cores_by_cell = {}
    for cell_id in sorted(set(held_by_cell) | set(demand)):
        free = [] if fixed else pools[cell_id].cores
        if fixed:
            chosen = sorted(held_by_cell[cell_id])
        else:
            chosen = _choose_cores(demand[cell_id], held_by_cell[cell_id],
                                   free, ratio)
            assert chosen is not None, 'room() promised %s' % cell_id
            released = held_by_cell[cell_id] - set(chosen)
            pools[cell_id].remove(set(chosen) - held_by_cell[cell_id])
            pools[cell_id].add(released)
        if chosen:
            cores_by_cell[cell_id] = sorted(chosen, key=lambda c: c.id)

    if not cores_by_cell:
        return
    cpus = frozenset(c for cores in cores_by_cell.values()
                     for core in cores for c in core.cpus)
    vcpus = sum(demand.values())
    threads_needed = math.ceil(vcpus / ratio - _EPSILON)
    tenants[key] = TenantPlacement(
        key, cpus, tuple(sorted(cores_by_cell)), vcpus,
        max(0, len(cpus) - threads_needed))

    slots = {cell_id: _strict_slots(cores, ratio)
             for cell_id, cores in cores_by_cell.items()} \
        if any(inst.mode == STRICT for inst in insts) else {}
    for inst in insts:
        parts = assigned.get(inst.uuid)
        if parts is None:
            continue
        cells = tuple(sorted(parts))
        inst_cpus = frozenset(c for cell_id in cells
                              for core in cores_by_cell[cell_id]
                              for c in core.cpus)
        pins = None
        if inst.mode == STRICT:
            pins = {}
            vcpu = 0
            for cell_id in cells:
                for _ in range(parts[cell_id]):
                    pins[vcpu] = slots[cell_id].popleft()
                    vcpu += 1
        placements[inst.uuid] = InstancePlacement(
            inst.uuid, key, inst_cpus, cells, pins, dict(parts))


def _strict_slots(cores, ratio):
    """Thread slots for strict pins, in the order they are handed out.

    Each thread holds ``floor(threads * ratio)`` slots between them, the
    first threads one more where it does not divide. Slots go core by core,
    so an instance fills a core's siblings before it starts another core,
    and round by round, so overcommit spreads before it stacks.
    """
    threads = [c for core in cores for c in core.cpus]
    total = math.floor(len(threads) * ratio + _EPSILON)
    base, extra = divmod(total, len(threads))
    capacity = {cpu: base + (1 if i < extra else 0)
                for i, cpu in enumerate(threads)}
    slots = collections.deque()
    for round_ in range(base + (1 if extra else 0)):
        slots.extend(cpu for cpu in threads if capacity[cpu] > round_)
    return slots


def _unplaced(inst, reason):
    return {'uuid': inst.uuid, 'project_id': inst.key,
            'vcpus': inst.vcpus, 'reason': reason}


def order_moves(current, target):
    """Ordered steps from ``current`` to ``target`` (``{tenant: cpus}``).

    Shrinks and releases come first; a tenant whose old and new CPUs are
    disjoint first widens over both, then shrinks. Every grow comes after
    every shrink that frees its CPUs, so no intermediate map has a CPU in
    two tenants that the end map or the start map did not already share.
    """
    current = {p: frozenset(c) for p, c in current.items() if c}
    target = {p: frozenset(c) for p, c in target.items() if c}
    state = dict(current)
    moves = []
    holders = collections.defaultdict(set)
    for key, cpus in state.items():
        for cpu in cpus:
            holders[cpu].add(key)

    def step(action, key, cpus):
        old = state.get(key, frozenset())
        cpus = frozenset(cpus)
        moves.append(Move(action, key, cpus, cpus - old, old - cpus))
        for cpu in old - cpus:
            holders[cpu].discard(key)
        for cpu in cpus - old:
            holders[cpu].add(key)
        if cpus:
            state[key] = cpus
        else:
            state.pop(key, None)

    for key in sorted(current):
        new = target.get(key, frozenset())
        if not new:
            step('release', key, frozenset())
        elif current[key] - new and current[key] & new:
            step('shrink', key, current[key] & new)

    def held_by_others(key, cpus):
        return any(holders[cpu] - {key} for cpu in cpus)

    pending = sorted(p for p in target if state.get(p) != target[p])
    while pending:
        progressed = False
        for key in list(pending):
            new = target[key]
            old = state.get(key, frozenset())
            if held_by_others(key, new - old):
                continue
            if not old:
                step('create', key, new)
            elif old & new:
                step('grow', key, new)
            else:
                step('widen', key, old | new)
                step('shrink', key, new)
            pending.remove(key)
            progressed = True
        if not progressed:
            # Two tenants that want each other's cores: only a caller that
            # gave an inconsistent current map can get here.
            raise PlanError('no safe order of moves: tenants %s wait on '
                            'each other\'s CPUs' % ', '.join(pending))
    return moves
