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

"""From what a host holds to what it should hold: an ordered list of steps.

Pure: no libvirt, no Nova, no cgroup access. The input is

- the *truth* (:class:`Truth`): each key's partition CPUs as the cgroup
  tree holds them, each domain's XML reading
  (:class:`~nova_tenant_pin.domain_xml.DomainInfo`: where every vCPU,
  emulator and I/O thread may run), and the domains libvirt runs a job on
  (a live migration): those are *busy*;
- the target: an :class:`~nova_tenant_pin.allocator.Plan` and the claims
  (each with its isolation ``key``, ``mode``, ``ratio``, ``isolation``,
  ``pending`` and ``issued`` CPUs) it was made from.

The output (:func:`plan_transition`) is a list of :class:`Step` whose
every prefix keeps invariant 1 (no core reachable by two keys, counting
every QEMU thread inside its partition) and invariant 2 (no key on a
housekeeping core) when the steps after it never run: the executor stops
at the first failure, and the next change plans again from the truth it
left. Busy domains get no step: their threads stay where they are, their
partition keeps holding them, and the claim that brought them (an
incoming live migration) holds their key's cores.

The order (design invariant 4):

1. shrinks and releases: a key's domains are re-pinned inside its new
   CPUs, then its partition narrowed (bottom-up);
2. grows: a key's partition widened, then its domains re-pinned
   (top-down);
3. every domain pinned to its final placement and its metadata recorded;
   every partition set to its final CPUs (shrinks before widens) and
   partitions that hold nothing removed.

When guests change key (per-project settings re-read, guests adopted from
outside tenant-pin) or some do not fit, the guests move one by one first
(:meth:`_Planner.move_guests`) and steps 1 and 2 are skipped. A domain
lives in the partition it started in; when that is not its key's, its pins
confine it and the partition is widened to hold them.
"""

import collections
import copy
import dataclasses

from nova_tenant_pin import allocator
from nova_tenant_pin import domain_xml
from nova_tenant_pin import topology as topo

SET_PARTITION = 'set_partition'
REMOVE_PARTITION = 'remove_partition'
PIN = 'pin'
METADATA = 'metadata'

EMULATOR = ('emulator', None)


def vcpu_thread(vcpu):
    return ('vcpu', vcpu)


def iothread_thread(iothread):
    return ('iothread', iothread)


@dataclasses.dataclass(frozen=True)
class Step:
    """One write: a partition's CPUs, a thread's pin, a domain's metadata.

    ``key`` is the isolation key the write is for: the partition's, the
    key of the instance whose thread is pinned, the key its metadata
    records (or, dropped, held). ``old`` is the partition's CPUs before
    (None: the partition is created). ``metadata`` None with kind
    :data:`METADATA` drops it.
    """

    kind: str
    key: str = None
    uuid: str = None
    thread: tuple = None
    cpus: frozenset = None
    old: frozenset = None
    metadata: str = None

    def describe(self, with_key=False):
        """The line an operator reads (``adopt --dry-run`` prints them);
        with ``with_key``, an instance is named with its tenant (``key``)."""
        cpus = topo.format_cpu_list(self.cpus or ())
        if with_key and self.uuid is not None:
            instance = 'instance %s of tenant %s' % (self.uuid, self.key)
            return Step.describe(self).replace(
                'instance %s' % self.uuid, instance, 1)
        if self.kind == SET_PARTITION and self.old is None:
            return 'create partition of tenant %s with CPUs %s' % (
                self.key, cpus)
        if self.kind == SET_PARTITION:
            return 'set partition of tenant %s to CPUs %s (was %s)' % (
                self.key, cpus, topo.format_cpu_list(self.old))
        if self.kind == REMOVE_PARTITION:
            return 'remove partition of tenant %s' % self.key
        if self.kind == METADATA and self.metadata is None:
            return 'drop the tenant-pin metadata of instance %s' % self.uuid
        if self.kind == METADATA:
            return 'record %s in the metadata of instance %s' % (
                self.metadata, self.uuid)
        kind, index = self.thread
        if kind == 'vcpu':
            return 'pin vCPU %d of instance %s to CPUs %s' % (
                index, self.uuid, cpus)
        if kind == 'iothread':
            return 'pin I/O thread %d of instance %s to CPUs %s' % (
                index, self.uuid, cpus)
        return 'pin emulator threads of instance %s to CPUs %s' % (
            self.uuid, cpus)


@dataclasses.dataclass
class Truth:
    """What the kernel and libvirt hold now.

    ``partitions``: ``{key: cpus}``; ``domains``: ``{uuid: DomainInfo}``;
    ``busy``: uuids of the running domains with a job in progress.
    """

    partitions: dict
    domains: dict
    busy: frozenset = frozenset()

    @classmethod
    def of(cls, guests, partitions):
        """The truth of what was read: ``guests`` (``{uuid: Guest}``, see
        :mod:`~nova_tenant_pin.guests`: each with its ``info`` and whether
        a job holds it) and ``partitions`` (``{key: PartitionInfo}``)."""
        return cls({k: p.cpus for k, p in partitions.items()},
                   {u: g.info for u, g in guests.items()},
                   frozenset(u for u, g in guests.items() if g.busy))

    def copy(self):
        return Truth(dict(self.partitions),
                     {u: copy.deepcopy(i) for u, i in self.domains.items()},
                     frozenset(self.busy))


def apply_step(truth, step):
    """``truth`` as it is after ``step`` (in place): what the executor's
    write does, for the planner and the tests."""
    if step.kind == SET_PARTITION:
        truth.partitions[step.key] = frozenset(step.cpus)
    elif step.kind == REMOVE_PARTITION:
        truth.partitions.pop(step.key, None)
    elif step.kind == METADATA:
        info = truth.domains[step.uuid]
        if step.metadata is None:
            info.key = info.pin_mode = info.ratio = info.isolation = None
        else:
            (info.key, info.pin_mode, info.ratio,
             info.isolation) = domain_xml.read_metadata(step.metadata)
    elif step.kind == PIN:
        info = truth.domains[step.uuid]
        kind, index = step.thread
        if kind == 'vcpu':
            info.vcpu_pins[index] = frozenset(step.cpus)
        elif kind == 'iothread':
            info.iothread_pins[index] = frozenset(step.cpus)
        else:
            info.emulator_pins = frozenset(step.cpus)
    return truth


def reachable(truth, host_cpus, topology):
    """``{core: {key, ...}}``: the keys whose threads may run on each core,
    as the kernel enforces it (:func:`reach`, for the guests that have a
    key)."""
    owners = collections.defaultdict(set)
    for key, cpus in reach(truth, host_cpus).items():
        for core in topology.cores_of(cpus):
            owners[core].add(key)
    return owners


def reach(truth, host_cpus, unkeyed=False):
    """``{key: cpus}``: where a thread of each key may run now, as the
    kernel enforces it. A running domain's threads inside its partition
    count for its key (with ``unkeyed``, a guest with no key counts for
    its project); a partition counts whole for its own key, unless it
    hosts guests of another key (their key changed while they ran): then
    only its own key's guests there count, not the CPUs the others use."""
    result = collections.defaultdict(set)
    hosting = set()
    for info in truth.domains.values():
        key = info.isolation_key
        if not info.active or (key is None and not unkeyed):
            continue
        cpus = info.all_cpus(host_cpus)
        if info.partition_key is not None:
            cpus &= truth.partitions.get(info.partition_key, frozenset())
            if key != info.partition_key:
                hosting.add(info.partition_key)
        result[key or info.project_id] |= cpus
    for key, cpus in truth.partitions.items():
        if key not in hosting:
            result[key] |= cpus
    return result


def shared_cores(truth, host_cpus, topology, housekeeping_cpus=()):
    """Violations of invariants 1 and 2 in ``truth``: ``{(core cpus,
    keys)}`` of each core two keys may run on, and of each housekeeping
    core a key may run on (keys ``('housekeeping', key)``)."""
    found = set()
    hk = set(topology.cores_of(housekeeping_cpus))
    for core, keys in reachable(truth, host_cpus, topology).items():
        if len(keys) > 1:
            found.add((core.cpus, tuple(sorted(keys))))
        if core in hk:
            for key in keys:
                found.add((core.cpus, ('housekeeping', key)))
    return found


def truth_map(truth, host_cpus, topology):
    """The present map as the cgroup tree shows it: each partition's CPUs.
    A partition keeps the domains that started in it when their key
    changes, and holds their cores for them: the whole cores that only
    such domains use are their key's (the one with the most vCPUs there),
    not the partition's."""
    foreign = collections.defaultdict(
        lambda: collections.defaultdict(collections.Counter))
    own = collections.defaultdict(set)
    for info in truth.domains.values():
        if info.partition_key is None or not (info.active or info.persistent):
            continue
        # The key the domain runs under now (its metadata), not the one
        # it is about to get.
        used = info.all_cpus(host_cpus)
        if info.isolation_key == info.partition_key:
            own[info.partition_key] |= used
        else:
            for core in topology.cores_of(used):
                foreign[info.partition_key][core][info.isolation_key] += \
                    max(1, info.vcpus)
    result = collections.defaultdict(frozenset)
    for key, part in truth.partitions.items():
        cpus = set(part)
        for core, keys in sorted(foreign.get(key, {}).items(),
                                 key=lambda kv: kv[0].cpus):
            if set(core.cpus) & own[key] or not set(core.cpus) <= cpus:
                continue
            cpus -= set(core.cpus)
            other = sorted(keys.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            result[other] |= frozenset(core.cpus)
        if foreign.get(key):
            # Only whole cores that the partition alone uses.
            cpus = set(topology.whole_core_cpus(cpus))
        if cpus:
            result[key] |= frozenset(cpus)
    return dict(result)


def map_drift(found, expected):
    """Lines naming each key whose partition holds other CPUs than the map
    says."""
    return ['tenant %s: partition holds CPUs %s, the map said %s' % (
        key, topo.format_cpu_list(found.get(key, ())) or 'none',
        topo.format_cpu_list(expected.get(key, ())) or 'none')
        for key in sorted(set(found) | set(expected))
        if found.get(key) != expected.get(key)]


def rebuilt_map(truth, claims, topology, static, repairs, expected=None):
    """The map the partitions hold (:func:`truth_map`), relabelled for the
    guests whose key changed (:func:`relabel`): what a reconcile starts
    from. With ``expected`` (the map the last change reached), each key
    whose partition drifted from it is noted in ``repairs``."""
    found = truth_map(truth, topology.online_cpus, topology)
    if expected is not None:
        repairs.extend(map_drift(found, expected))
    return relabel(found, claims, truth.domains, topology, static, repairs,
                   truth.busy)


def held_map(truth, claims, topology, static, housekeeping_cpus=(),
             repairs=None):
    """What each key holds now, read from the host alone: after a change
    failed half way this, not the map the manager meant to reach, is what
    the next plan starts from, so that no core a thread of one key can
    still run on goes to another.

    A thread runs inside its partition, so the partitions say most of it
    (:func:`truth_map`, relabelled for guests whose key changed:
    :func:`relabel`). A guest in no partition whose key is recorded
    (adopted, confined by its pins only) holds the whole cores its threads
    may run on too, where no other key holds them (a guest that still
    floats everywhere is not isolated from anyone yet).
    """
    host = topology.online_cpus
    current = rebuilt_map(truth, claims, topology, static,
                          [] if repairs is None else repairs)
    hk = set(topology.whole_core_cpus(housekeeping_cpus))
    for info in truth.domains.values():
        key = info.isolation_key
        if info.partition_key is not None or key is None or not info.active:
            continue
        others = set(hk).union(*(c for k, c in current.items()
                                 if k != key))
        cpus = set(topology.whole_core_cpus(info.all_cpus(host))) - others
        if cpus:
            current[key] = frozenset(current.get(key, frozenset()) | cpus)
    return current


@dataclasses.dataclass
class Transition:
    """What :func:`plan_transition` returns: the steps, the repairs to
    log, and the guests that do not fit (``{key: [uuid]}``) with the CPUs
    they share."""

    steps: list
    repairs: list
    unfit: dict
    overflow: frozenset
    #: The truth as it is once every step ran.
    after: Truth = None
    #: Guests moved where guests of other keys still ran: no safe order
    #: existed (they swap places on a host with no spare core).
    forced: frozenset = frozenset()
    #: The index of the first step of the first forced move, or None.
    forced_from: int = None


class _Planner:
    """Plans on a copy of the truth: each recorded step is applied to it,
    so the next decision sees the state the previous steps leave."""

    def __init__(self, truth, host_cpus, topology, default_ratio, hk=()):
        # Copy on write: the domains are the truth's own until a step
        # changes one (a transition touches few of a host's domains).
        self.state = Truth(dict(truth.partitions), dict(truth.domains),
                           truth.busy)
        self._copied = set()
        self.busy = truth.busy
        self.host = host_cpus
        self.topology = topology
        self.default_ratio = default_ratio
        self.hk = frozenset(hk)
        self.steps = []
        # Guests moved onto cores where guests of other keys still run:
        # no safe order existed (guests that swap places on a full host).
        self.forced = set()
        self.forced_from = None

    @property
    def parts(self):
        return self.state.partitions

    def info(self, uuid):
        return self.state.domains[uuid]

    def _add(self, step):
        self.steps.append(step)
        if step.uuid is not None and step.uuid not in self._copied:
            self._copied.add(step.uuid)
            self.state.domains[step.uuid] = domain_xml.copy_info(
                self.state.domains[step.uuid])
        apply_step(self.state, step)

    def set_partition(self, key, cpus):
        cpus = frozenset(cpus)
        old = self.parts.get(key)
        if old == cpus or not cpus:
            return
        self._add(Step(SET_PARTITION, key=key, cpus=cpus, old=old))

    def remove_partition(self, key):
        if key in self.parts:
            self._add(Step(REMOVE_PARTITION, key=key))

    def _key(self, uuid):
        info = self.info(uuid)
        return info.key or info.project_id

    def pin(self, uuid, thread, cpus):
        if uuid not in self.busy:
            self._add(Step(PIN, key=self._key(uuid), uuid=uuid,
                           thread=thread, cpus=frozenset(cpus)))

    def set_metadata(self, uuid, metadata, key=None):
        """Record ``metadata`` (of ``key``), or drop it (None)."""
        if uuid not in self.busy:
            self._add(Step(METADATA, key=key or self._key(uuid), uuid=uuid,
                           metadata=metadata))

    # -- one domain ----------------------------------------------------------

    def record(self, uuid, claim):
        """Keep the instance's key, pin mode and ratio in its metadata."""
        info = self.info(uuid)
        ratio = claim.ratio or self.default_ratio
        if (info.key, info.pin_mode, info.ratio, info.isolation) != (
                claim.key, claim.mode, ratio, claim.isolation):
            self.set_metadata(uuid, domain_xml.metadata_xml(
                claim.key, claim.mode, ratio, claim.isolation),
                claim.key)

    def place(self, uuid, claim, placement, within, repairs):
        """Pin a domain to ``placement`` inside ``within``: its new key is
        recorded first (from then on its threads are that key's), and the
        partition it lives in widened to hold the pins (a hosted domain's
        new key's cores, or cores its own key got by relabelling)."""
        if uuid in self.busy:
            return
        if self.info(uuid).key != claim.key:
            self.record(uuid, claim)
        part = self.info(uuid).partition_key
        if part is not None:
            wanted = placement.cpus & frozenset(within)
            held = self.parts.get(part, frozenset())
            if wanted and not wanted <= held:
                self.set_partition(part, wanted | held)
        self.pin_domain(uuid, placement, within, repairs)

    def wanted_pins(self, uuid, placement, allowed):
        info = self.info(uuid)
        wanted = {}
        for vcpu in range(info.vcpus):
            cpus = placement.cpus
            if placement.vcpu_pins is not None and \
                    vcpu in placement.vcpu_pins:
                cpus = frozenset([placement.vcpu_pins[vcpu]])
            wanted[vcpu_thread(vcpu)] = cpus if cpus <= allowed else allowed
        wanted[EMULATOR] = allowed
        for iothread in info.iothread_ids:
            wanted[iothread_thread(iothread)] = allowed
        return wanted

    def pin_domain(self, uuid, placement, within, repairs=None):
        """Pin a domain's vCPU, emulator and I/O threads to its placement,
        if they are not already there. ``within`` is the key's CPUs at
        this step: a pin outside them would be refused by the kernel (or
        give the domain another key's cores), so it waits for a later
        step."""
        info = self.info(uuid)
        allowed = placement.cpus & frozenset(within)
        if not allowed or not (info.active or info.persistent):
            return
        now = info.thread_cpus(self.host)
        changed = False
        for thread, cpus in sorted(
                self.wanted_pins(uuid, placement, allowed).items(),
                key=_thread_order):
            if now[thread] != cpus:
                self.pin(uuid, thread, cpus)
                changed = True
        if changed and repairs is not None and uuid not in self.busy:
            repairs.append('instance %s of tenant %s: pins set to CPUs %s'
                           % (uuid, placement.key,
                              topo.format_cpu_list(allowed)))

    def placed(self, uuid, placement):
        info = self.info(uuid)
        now = info.thread_cpus(self.host)
        return all(now[t] == c for t, c in self.wanted_pins(
            uuid, placement, placement.cpus).items())


def _thread_order(item):
    kind, index = item[0]
    return ({'vcpu': 0, 'emulator': 1, 'iothread': 2}[kind], index or 0)


def plan_transition(truth, plan, claims, keymap, topology,
                    housekeeping_cpus, default_ratio, last_map=None,
                    keys=None):
    """The steps from ``truth`` to ``plan``.

    :param truth: a :class:`Truth`.
    :param plan: the target :class:`~nova_tenant_pin.allocator.Plan`.
    :param claims: ``{uuid: claim}``, each with ``key`` (its isolation
        key), ``mode``, ``ratio``, ``isolation``, ``pending``, ``issued``.
    :param keymap: ``{key: cpus}``, the map ``plan`` was made from.
    :param last_map: the map of the previous plan (a key it had whose
        partition is missing lost it from the tree: "recreated").
    :param keys: only these keys' partitions and domains are compared
        with the plan (the others keep their cores in it, and the caller
        knows their domains run inside their own partitions); None: all.
    :returns: a :class:`Transition`.
    """
    if keys is not None:
        truth, plan, keymap, last_map = _only(truth, plan, claims, keymap,
                                              last_map, keys)
    host = topology.online_cpus
    planner = _Planner(truth, host, topology, default_ratio,
                       topology.whole_core_cpus(housekeeping_cpus))
    domains = truth.domains
    repairs = []
    keymap = dict(keymap)
    overflow = plan.free_cpus or frozenset(housekeeping_cpus)
    targets, unfit = {}, collections.defaultdict(list)
    for uuid, info in domains.items():
        claim = claims.get(uuid)
        if claim is None or not (info.active or info.persistent):
            continue
        if uuid in plan.instances:
            targets[uuid] = plan.instances[uuid]
        else:
            targets[uuid] = allocator.InstancePlacement(
                uuid, claim.key, frozenset(overflow), ())
            unfit[claim.key].append(uuid)
    by_key = collections.defaultdict(list)
    for uuid in targets:
        if uuid in plan.instances:
            by_key[claims[uuid].key].append(uuid)

    # The guests living in each partition (a domain stays in the
    # partition it started in while the transition re-pins it), indexed
    # once: a transition asks for many keys.
    living = collections.defaultdict(list)
    for uuid in targets:
        living[domains[uuid].partition_key].append(uuid)

    def need(key):
        # The key's cores, and wherever the guests living in the
        # partition run now (its own guests are inside the key's cores
        # except while they wait to be re-pinned there).
        cpus = set(keymap.get(key, ()))
        for u in living.get(key, ()):
            cpus |= planner.info(u).all_cpus(host)
        return frozenset(cpus) & host

    def narrow(key):
        # A shrink keeps what the key still needs of its partition; when
        # it needs none of it (the held map gave it cores through a guest
        # living in another key's partition), the partition moves to what
        # the key needs now, a part of what it held, before another key
        # is given the CPUs it leaves.
        if key in planner.parts:
            want = need(key)
            cpus = planner.parts[key] & want or want
            if cpus and cpus != planner.parts[key]:
                planner.set_partition(key, cpus)

    def pin(uuid, within):
        planner.place(uuid, claims[uuid], targets[uuid], within, repairs)

    # Partitions that must stay: a domain that holds room lives there.
    # Any other (the source of a finished move) does not keep its
    # partition; the kernel refuses to remove one with tasks in it.
    used = {domains[u].partition_key for u in targets}
    moves = list(plan.moves)
    first_grow = next((i for i, m in enumerate(moves)
                       if m.action in ('create', 'grow', 'widen')),
                      len(moves))
    # Guests whose key changes or that do not fit are moved one by one
    # first; the map's steps then only set the partitions. So are guests
    # outside their key's partition that are not where they should be (a
    # change of key that stopped half way).
    rekeyed = any(domains[u].isolation_key != claims[u].key or
                  (domains[u].partition_key != claims[u].key and
                   u not in planner.busy and
                   not planner.placed(u, targets[u]))
                  for u in targets)
    if rekeyed or unfit:
        _move_guests(planner, plan, targets, claims, used, repairs)
    else:
        for move in moves[:first_grow]:
            key = move.key
            keymap[key] = move.cpus
            for uuid in by_key.get(key, ()):
                pin(uuid, move.cpus)
            if move.cpus:
                narrow(key)
            else:
                if key in planner.parts and key not in used:
                    planner.remove_partition(key)
                keymap.pop(key, None)
            _note_move(move, repairs)

        def reach_now():
            return reach(planner.state, host, unkeyed=True)

        for move in _free_first(moves[first_grow:], planner.parts,
                                reach_now):
            key = move.key
            keymap[key] = move.cpus
            planner.set_partition(key, move.cpus | planner.parts.get(
                key, frozenset()))
            for uuid in by_key.get(key, ()):
                pin(uuid, move.cpus)
            # The CPUs the key's guests left go before another key's
            # move may take them.
            narrow(key)
            _note_move(move, repairs)
    keymap = plan.tenant_map()
    last_map = last_map or {}
    for key, cpus in sorted(keymap.items()):
        if key not in planner.parts:
            planner.set_partition(key, cpus)
            repairs.append('tenant %s: partition %s with CPUs %s' % (
                key, 'recreated' if key in last_map else 'created',
                topo.format_cpu_list(cpus)))
    for uuid in targets:
        pin(uuid, targets[uuid].cpus)
        planner.record(uuid, claims[uuid])
    # Final partition CPUs: shrinks first, then widens.
    for key in sorted(planner.parts):
        want = need(key)
        if not want and key not in used:
            planner.remove_partition(key)
        elif want and not want >= planner.parts[key]:
            planner.set_partition(key, want & planner.parts[key] or want)
    for key in sorted(planner.parts):
        want = need(key)
        if want and want != planner.parts[key]:
            planner.set_partition(key, want)
    return Transition(planner.steps, repairs, dict(unfit),
                      frozenset(overflow), planner.state,
                      frozenset(planner.forced), planner.forced_from)


def _free_first(moves, parts, reach_now):
    """``moves`` (creates, grows and widens), each taken when the cores it
    adds are reachable by no other key, or in the allocator's order when
    none is (a move that frees CPUs another takes comes first: its own
    narrowing leaves them). ``parts`` is the planner's live map,
    ``reach_now()`` what each key reaches now (:func:`reach`)."""
    pending = list(moves)
    while pending:
        held = reach_now()
        for i, move in enumerate(pending):
            adds = move.cpus - parts.get(move.key, frozenset())
            if not any(adds & cpus for key, cpus in held.items()
                       if key != move.key):
                break
        else:
            i = 0
        yield pending.pop(i)


def _only(truth, plan, claims, keymap, last_map, keys):
    """``truth``, ``plan`` and the maps with the partitions and domains of
    ``keys`` only."""
    domains = {u: info for u, info in truth.domains.items()
               if info.partition_key in keys or info.isolation_key in keys or
               (u in claims and claims[u].key in keys)}
    truth = Truth({k: c for k, c in truth.partitions.items() if k in keys},
                  domains, truth.busy & frozenset(domains))
    plan = dataclasses.replace(
        plan, tenants={k: t for k, t in plan.tenants.items() if k in keys},
        instances={u: p for u, p in plan.instances.items()
                   if p.key in keys},
        moves=[m for m in plan.moves if m.key in keys])
    keymap = {k: c for k, c in keymap.items() if k in keys}
    last_map = {k: c for k, c in (last_map or {}).items() if k in keys}
    return truth, plan, keymap, last_map


def _move_guests(planner, plan, targets, claims, used, repairs):
    """Move every guest to its final placement, one at a time, when keys
    change (per-project settings re-read, guests adopted from outside
    tenant-pin) or some guests do not fit.

    A guest moves only when no guest of another key runs on its new cores,
    unless the two share a core already (they trusted each other until a
    moment ago: moving does not expose either to anyone new). When guests
    wait on each other (they swap places), one of them first narrows onto
    the part of its present cores that nobody waits for; only when none
    can does one move anyway.

    Before anything moves, each guest takes its new key (its metadata) and
    each partition keeps only what its guests use (and the CPUs issued to
    instances being defined): a partition never holds a core for nobody
    while another key's guest arrives there. The map's partitions are set
    afterwards, by the caller's final step.
    """
    host = planner.host
    topology = planner.topology
    issued = collections.defaultdict(frozenset)
    for claim in claims.values():
        if claim.pending and claim.issued:
            issued[claim.key] |= claim.issued

    def now(uuid):
        return planner.info(uuid).all_cpus(host)

    final = plan.tenant_map()

    def keep(key):
        # What its guests use, the CPUs issued to its instances being
        # defined, and its key's final cores where no other key's guest
        # runs now (so a partition that changes nothing is not narrowed
        # and widened again).
        cpus = set(issued.get(key, ()))
        others = set()
        for u in targets:
            if planner.info(u).partition_key == key:
                cpus |= now(u)
            elif claims[u].key != key:
                others |= now(u)
        others = topology.whole_core_cpus(others)
        cpus |= set(final.get(key, ())) - set(others)
        return frozenset(cpus)

    def narrow(key):
        if key not in planner.parts:
            return
        cpus = planner.parts[key] & keep(key)
        if cpus:
            if cpus != planner.parts[key]:
                planner.set_partition(key, cpus)
        elif key not in used:
            planner.remove_partition(key)

    for uuid in targets:
        info = planner.info(uuid)
        if info.isolation_key is not None and \
                info.key != claims[uuid].key:
            planner.record(uuid, claims[uuid])
    for key in sorted(planner.parts):
        narrow(key)

    def move(uuid, placement):
        planner.place(uuid, claims[uuid], placement, placement.cpus,
                      repairs)
        if planner.info(uuid).partition_key is not None:
            narrow(planner.info(uuid).partition_key)

    # A busy domain (a live migration in progress) is planned around: it
    # stays where it is, and its partition keeps holding it.
    pending = [u for u in targets if u not in planner.busy and
               not planner.placed(u, targets[u])]
    while pending:
        # Which keys' guests may run on each core now (guests adopted from
        # outside tenant-pin float everywhere and are not counted).
        on_core = collections.defaultdict(set)
        for u in targets:
            if planner.info(u).isolation_key is not None:
                for core in topology.cores_of(now(u)):
                    on_core[core].add(claims[u].key)

        def free_part(uuid):
            """The part of its final cores it may move onto now."""
            key = claims[uuid].key
            shares = set()
            for core in topology.cores_of(now(uuid)):
                shares |= on_core[core]
            return frozenset(
                cpu for core in topology.cores_of(targets[uuid].cpus)
                if not on_core[core] - {key} - shares
                for cpu in core.cpus) & targets[uuid].cpus

        ready = next((u for u in pending
                      if free_part(u) == targets[u].cpus), None)
        if ready is not None:
            move(ready, targets[ready])
            pending.remove(ready)
            continue

        def wanted_by_others(uuid):
            key = claims[uuid].key
            return frozenset(topology.whole_core_cpus(
                frozenset().union(*(targets[v].cpus for v in pending
                                    if claims[v].key != key))))

        # Guests that wait on each other: one moves first onto the part of
        # its final cores that is free for it, leaving cores others wait
        # for; else one narrows onto the part of its present cores that
        # nobody waits for.
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
        if step is None:
            # Guests that swap places: one goes through whole cores that
            # no partition holds and no guest runs on, leaving its cores
            # to the other.
            taken = set(planner.hk).union(*planner.parts.values(),
                                          *(now(u) for u in targets))
            spare = frozenset(c for core in topology.cores
                              if not taken & set(core.cpus)
                              for c in core.cpus)
            if spare:
                step = pending[0], spare
        if step is not None:
            uuid, cpus = step
            move(uuid, dataclasses.replace(targets[uuid], cpus=cpus,
                                           vcpu_pins=None))
            continue
        uuid = pending.pop(0)
        if not planner.forced:
            planner.forced_from = len(planner.steps)
        planner.forced.add(uuid)
        repairs.append('instance %s of tenant %s moves to CPUs %s, where '
                       'guests of other tenants that wait for its present '
                       'cores still run' % (
                           uuid, claims[uuid].key,
                           topo.format_cpu_list(targets[uuid].cpus)))
        move(uuid, targets[uuid])


def _note_move(move, repairs):
    repairs.append('tenant %s: %s to CPUs %s' % (
        move.key, move.action,
        topo.format_cpu_list(move.cpus) or 'none'))


def release_steps(truth, cpus, ours, host_cpus):
    """The steps that turn isolation off: every partition widened to
    ``cpus`` (top-down: partitions first), then every thread of the
    domains in ``ours`` pinned to ``cpus`` and their metadata dropped, then
    the partitions that hold no domain removed."""
    planner = _Planner(truth, host_cpus, None, None)
    cpus = frozenset(cpus)
    for key in sorted(planner.parts):
        planner.set_partition(key, planner.parts[key] | cpus)
    for uuid in ours:
        info = planner.info(uuid)
        if not (info.active or info.persistent):
            continue
        for thread, now in sorted(info.thread_cpus(host_cpus).items(),
                                  key=_thread_order):
            if now != cpus:
                planner.pin(uuid, thread, cpus)
        if info.key is not None:
            planner.set_metadata(uuid, None)
    used = {info.partition_key for info in truth.domains.values()}
    for key in sorted(planner.parts):
        if key not in used:
            planner.remove_partition(key)
    return planner.steps


def relabel(current, claims, domains, topology, static, repairs,
            busy=frozenset()):
    """The present map as the instances' new keys see it, with no core
    moved: the cores of a key whose instances changed key are shared out
    among their new keys. A core that only instances going to one new key
    use goes to that key; the rest go to the heir (the old key itself
    while some of its instances stay, else the new key with the most
    vCPUs); the cores that guests of several new keys use are shared out
    by need. Keys that merge keep their cores and
    nothing moves; a key that splits off keeps the cores only it uses and
    grows elsewhere for the rest.

    :param domains: ``{uuid: DomainInfo}``.
    :param busy: uuids of domains with a job in progress: they cannot
        move, so the cores they run on stay with their key.
    """
    host = topology.online_cpus
    original = dict(current)
    current = dict(current)
    by_old = collections.defaultdict(collections.Counter)
    locked = {}
    users = collections.defaultdict(
        lambda: collections.defaultdict(collections.Counter))
    for uuid, claim in claims.items():
        if uuid not in domains:
            continue
        info = domains[uuid]
        old = info.isolation_key
        if old is None or old not in current:
            continue
        by_old[old][claim.key] += claim.vcpus
        for core in topology.cores_of(info.all_cpus(host) & current[old]):
            users[old][core][claim.key] += claim.vcpus
            if uuid in busy:
                locked[core] = claim.key
    for old, news in sorted(by_old.items()):
        if set(news) == {old} or old in static:
            continue
        heir = old if old in news else sorted(
            news.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        # Only the cores the old key held before this relabelling (it may
        # have been given others as the heir of another key).
        cpus = original[old]
        current[old] = current[old] - cpus
        if not current[old]:
            del current[old]
        # Each new key needs about ceil(vCPUs / threads) of these cores.
        # A core that guests of one new key only use goes to it; a core
        # that guests of several use goes to the one that still needs
        # most (the heir on a tie): guests that float together over a
        # partition share its cores out instead of one key taking all.
        threads = topology.max_threads_per_core
        demand = {k: -(-v // threads) for k, v in news.items()}
        ordered = sorted(users[old].items(), key=lambda kv: (
            len(kv[1]) > 1, kv[0].cpus))
        for core, keys in ordered:
            key = locked.get(core) or sorted(keys.items(), key=lambda kv: (
                -demand.get(kv[0], 0), -kv[1], kv[0] != heir, kv[0]))[0][0]
            demand[key] = demand.get(key, 0) - 1
            if key != heir and key not in static:
                current[key] = current.get(key, frozenset()) | \
                    frozenset(core.cpus)
                cpus -= frozenset(core.cpus)
        if cpus and heir not in static:
            current[heir] = current.get(heir, frozenset()) | cpus
        elif cpus:
            current[old] = cpus
        repairs.append('tenant %s: its instances now belong to %s; its '
                       'cores go with them' % (old, ', '.join(sorted(news))))
    return current
