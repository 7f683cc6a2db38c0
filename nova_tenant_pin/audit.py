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

"""Check the invariants against the kernel's truth, once or many times a
second.

The audit reads every QEMU thread of a host from ``/proc``: where it may run
(``Cpus_allowed_list``) and its cpuset cgroup. A thread belongs to the
isolation key a caller maps its process to (:class:`DomainKeys` maps QEMU
processes to the keys libvirt's domains record), else to the tenant whose
partition (``.../tenant-<id>.partition/...``) holds it: a guest whose key
changed while it ran still lives in its old key's partition, so the key,
when known, wins. A guest that is in neither counts as a tenant of its own,
so it never hides a violation. It then checks invariant 1 (no physical core
is in the allowed CPUs of two tenants' threads) and invariant 2 (no tenant
thread may run on a housekeeping core).

:class:`Sampler` repeats that check as fast as it can (the target is at
least 1 kHz) while something happens, such as a live migration, and reports
every sample in which the invariants did not hold and the length of each
window of exposure. Two simulated hosts on one machine share its CPUs, so
each host is judged on its own threads: an :class:`HostAuditor` sees only
the QEMU processes whose cgroup lies under its ``cgroup_prefix``.
"""

import dataclasses
import os
import re
import time

from nova_tenant_pin import coresched
from nova_tenant_pin import procfs
from nova_tenant_pin import topology as topo

# A tenant partition: libvirt's directory, or where systemd is PID 1 the
# slice machined puts it in ("-" escaped as \x2d).
_PARTITION_RE = re.compile(r'/(?:tenant-([A-Za-z0-9][A-Za-z0-9_-]{0,63})'
                           r'\.partition|machine-tenant\\x2d'
                           r'([A-Za-z0-9](?:[A-Za-z0-9_]|\\x2d){0,255})'
                           r'\.slice)(?:/|$)')
# Kernel workers that KVM attaches to a guest's process; they run kernel
# code on behalf of the guest and are not the tenant's to schedule.
_KERNEL_WORKERS = ('kvm-nx-lpage-re', 'kvm-pit/')

SHARED_CORE = 'shared-core'
HOUSEKEEPING = 'housekeeping'

#: Seconds a new process is looked at again before it is taken for one
#: that will not exec into QEMU.
EXEC_GRACE = 2.0
# libvirt's processes, the ones that exec into QEMU: looked at every time.
_MAY_EXEC_QEMU = ('libvirtd', 'rpc-', 'prio-rpc', 'virtqemud')


def key_of_cgroup(path):
    """The key whose partition holds a cgroup path, else None."""
    if not path:
        return None
    match = _PARTITION_RE.search(path)
    if not match:
        return None
    if match.group(1):
        return match.group(1)
    return match.group(2).replace('\\x2d', '-')


def qemu_domain_of(pid, proc_root='/proc'):
    """``(name, uuid)`` of the libvirt domain a QEMU process runs, from its
    command line (``-name guest=<name>,...`` or ``-name <name>``, and
    ``-uuid <uuid>``); None for what it does not say or cannot be read."""
    try:
        with open(os.path.join(proc_root, str(pid), 'cmdline'), 'rb') as f:
            args = f.read().decode(errors='replace').split('\0')
    except OSError:
        return None, None
    name = uuid = None
    for flag, value in zip(args, args[1:]):
        if flag == '-name':
            name = _qemu_guest_name(value)
        elif flag == '-uuid':
            uuid = value.strip().lower() or None
    return name, uuid


def _qemu_guest_name(value):
    """The guest name in a QEMU ``-name`` value: comma-separated options
    in which ``,,`` is a comma; ``guest=`` names the guest, or, in the
    old form, the first option is the bare name."""
    options = ['']
    i = 0
    while i < len(value):
        if value[i] == ',':
            if value[i + 1:i + 2] == ',':
                options[-1] += ','
                i += 2
                continue
            options.append('')
        else:
            options[-1] += value[i]
        i += 1
    for option in options:
        if option.startswith('guest='):
            return option[len('guest='):]
    first = options[0]
    return first if first and '=' not in first else None


class DomainKeys:
    """``pid -> isolation key`` of QEMU processes: a ``pid_keys`` for
    :class:`HostAuditor`.

    Built from the host's domains (``domain_xml.DomainInfo``), it reads a
    process's domain from its command line (the UUID, else the name) and
    returns the domain's isolation key; None for a process of no known
    domain, or of a domain tenant-pin does not know.
    """

    def __init__(self, domains, proc_root='/proc'):
        self.proc_root = proc_root
        self.by_uuid = {}
        self.by_name = {}
        for dom in domains:
            self.by_uuid[dom.uuid.lower()] = dom.isolation_key
            self.by_name[dom.name] = dom.isolation_key

    def __call__(self, pid):
        name, uuid = qemu_domain_of(pid, self.proc_root)
        if uuid is not None and uuid in self.by_uuid:
            return self.by_uuid[uuid]
        if name is not None:
            return self.by_name.get(name)
        return None


@dataclasses.dataclass(frozen=True)
class Violation:
    kind: str
    keys: tuple
    cpus: tuple
    tids: tuple
    detail: str = None

    def __str__(self):
        if self.detail:
            return '%s (threads %s)' % (self.detail,
                                        ', '.join(map(str, self.tids)))
        if self.kind == SHARED_CORE:
            return ('tenants %s may both run on core %s (threads %s)'
                    % (' and '.join(self.keys),
                       topo.format_cpu_list(self.cpus),
                       ', '.join(map(str, self.tids))))
        return ('tenant %s may run on housekeeping CPUs %s (threads %s)'
                % (self.keys[0], topo.format_cpu_list(self.cpus),
                   ', '.join(map(str, self.tids))))

    def to_dict(self):
        doc = {'kind': self.kind, 'tenants': list(self.keys),
               'cpus': list(self.cpus), 'tids': list(self.tids)}
        if self.detail:
            doc['detail'] = self.detail
        return doc


@dataclasses.dataclass
class AuditReport:
    threads: int
    guests: int
    tenants: dict
    violations: list
    seconds: float

    @property
    def clean(self):
        return not self.violations

    def to_dict(self):
        return {'clean': self.clean, 'threads': self.threads,
                'guests': self.guests,
                'tenants': {t: sorted(c) for t, c in
                            sorted(self.tenants.items())},
                'violations': [v.to_dict() for v in self.violations],
                'seconds': self.seconds}


class HostAuditor:
    """Reads one host's QEMU threads and checks the invariants."""

    def __init__(self, host_topology, housekeeping_cpus=(),
                 cgroup_prefix='/', proc_root='/proc', pid_keys=None,
                 cookie_reader=None):
        """Prepare to audit one host.

        :param host_topology: the host's HostTopology (for cores).
        :param housekeeping_cpus: CPUs no tenant thread may run on; whole
            cores are taken, as the allocator does.
        :param cgroup_prefix: only QEMU processes whose cpuset cgroup path
            starts with this prefix belong to this host.
        :param pid_keys: a callable ``pid -> isolation key or None``
            (for example a :class:`DomainKeys`); a key it returns wins over
            the partition the process lives in, None leaves the partition
            to decide.
        :param cookie_reader: a callable ``pid -> {tid: cookie}`` (core
            scheduling is on: :meth:`audit` then also checks that each
            key's threads hold one core-scheduling cookie of their own).
        """
        self.topology = host_topology
        self.housekeeping = host_topology.whole_core_cpus(
            c for c in housekeeping_cpus if c in host_topology.online_cpus)
        self.cgroup_prefix = cgroup_prefix.rstrip('/') + '/'
        self.proc_root = proc_root
        self.pid_keys = pid_keys
        self.cookie_reader = cookie_reader
        self._is_qemu = {}
        self._pid_key = {}
        # The boot on the monotonic clock, to date processes from the
        # start time in their stat (clock ticks since boot).
        try:
            with open(os.path.join(proc_root, 'uptime')) as f:
                uptime = float(f.read().split()[0])
            self._boot = time.monotonic() - uptime
            self._ticks = os.sysconf('SC_CLK_TCK')
        except (OSError, ValueError, IndexError):
            self._boot = None
        self._comms = {}
        self._core_of = {cpu: host_topology.core_of(cpu)
                         for cpu in host_topology.online_cpus}

    def qemu_pids(self):
        """PIDs of this host's QEMU processes.

        libvirtd forks a guest's process and execs QEMU in it only after
        placing it in its cgroups, so a process that is not QEMU yet may
        become one: a PID is taken for "not QEMU" only once it has been
        seen as something else for :data:`EXEC_GRACE` seconds, and never
        while it is one of libvirt's own (which are what exec into QEMU).
        A QEMU process stays QEMU until it exits.
        """
        pids = []
        try:
            entries = os.listdir(self.proc_root)
        except OSError:
            return pids
        now = time.monotonic()
        seen = set()
        for entry in entries:
            if not entry.isdigit():
                continue
            pid = int(entry)
            seen.add(pid)
            known = self._is_qemu.get(pid)
            if known is None or (known is not True and known > now):
                try:
                    comm = procfs.read_text(os.path.join(
                        self.proc_root, entry, 'comm')).strip()
                except OSError:
                    continue
                if comm.startswith('qemu-system') or comm == 'qemu-kvm':
                    known = True
                elif comm.startswith(_MAY_EXEC_QEMU):
                    known = now + EXEC_GRACE  # look again next time
                elif known is None:
                    known = self._started(entry, now) + EXEC_GRACE
                self._is_qemu[pid] = known
            if known is True:
                pids.append(pid)
        for pid in set(self._is_qemu) - seen:
            del self._is_qemu[pid]
        return sorted(pids)

    def _started(self, entry, now):
        """When a process started, on the monotonic clock (``now`` when
        that cannot be read): a process long past its exec is not looked
        at again."""
        if self._boot is None:
            return now
        try:
            ticks = int(procfs.read_text(os.path.join(
                self.proc_root, entry, 'stat')).rsplit(')', 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            return now
        return self._boot + ticks / self._ticks

    def snapshot(self):
        """``{key: [ThreadInfo]}`` of this host's QEMU threads now.

        A process's key (``pid_keys``, else its partition) and host
        (its cgroup) are read once the key is known (a process never
        leaves its partition); after that each sample reads only each
        thread's allowed CPUs.
        """
        by_key = {}
        for pid in self.qemu_pids():
            known = self._pid_key.get(pid)
            if known is None:
                try:
                    tasks = procfs.threads(pid, self.proc_root)
                except ProcessLookupError:
                    continue
                if not tasks:
                    continue
                leader = tasks[0].cpuset_cgroup or ''
                if not (leader + '/').startswith(self.cgroup_prefix):
                    self._pid_key[pid] = (False, None)
                    continue
                key = None
                if self.pid_keys is not None:
                    key = self.pid_keys(pid)
                if key is None:
                    for task in tasks:
                        key = key_of_cgroup(task.cpuset_cgroup)
                        if key:
                            break
                if key is not None:
                    self._pid_key[pid] = (True, key)
                else:
                    key = 'unknown-guest-pid-%d' % pid
            else:
                included, key = known
                if not included:
                    continue
                try:
                    tasks = procfs.thread_affinities(pid, self._comms,
                                                     self.proc_root)
                except ProcessLookupError:
                    continue
            by_key.setdefault(key, []).extend(
                t for t in tasks if not t.comm.startswith(_KERNEL_WORKERS))
        for pid in set(self._pid_key) - set(self._is_qemu):
            del self._pid_key[pid]
        if len(self._comms) > 100000:
            # Threads come and go; start the cache afresh now and then.
            self._comms.clear()
        return by_key

    def check(self, by_key):
        """The violations of invariants 1 and 2 in a snapshot."""
        core_users = {}
        violations = []
        for key, tasks in sorted(by_key.items()):
            hk_cpus = set()
            hk_tids = []
            for task in tasks:
                for cpu in task.allowed_cpus:
                    core = self._core_of.get(cpu)
                    if core is None:
                        continue
                    core_users.setdefault(core, {}).setdefault(
                        key, set()).add(task.tid)
                bad = task.allowed_cpus & self.housekeeping
                if bad:
                    hk_cpus |= bad
                    hk_tids.append(task.tid)
            if hk_cpus:
                violations.append(Violation(HOUSEKEEPING, (key,),
                                            tuple(sorted(hk_cpus)),
                                            tuple(sorted(hk_tids))))
        for core, users in sorted(core_users.items()):
            if len(users) > 1:
                violations.append(Violation(
                    SHARED_CORE, tuple(sorted(users)), core.cpus,
                    tuple(sorted(t for tids in users.values()
                                 for t in tids))))
        return violations

    def check_cookies(self, by_key):
        """The core-scheduling violations of a snapshot: a key whose
        threads hold several cookies (or none), two keys holding one. Each
        thread's cookie is read now (``PR_SCHED_CORE_GET``)."""
        guests = []
        for key, tasks in sorted(by_key.items()):
            by_pid = {}
            for task in tasks:
                by_pid.setdefault(task.pid, set()).add(task.tid)
            for pid, tids in sorted(by_pid.items()):
                try:
                    cookies = self.cookie_reader(pid)
                except (ProcessLookupError, FileNotFoundError):
                    continue
                guests.append(coresched.Guest(
                    None, None, key, pid,
                    {t: c for t, c in cookies.items() if t in tids}))
        return [Violation(kind, keys, (), tids, detail)
                for kind, keys, tids, detail in
                coresched.violations(guests)]

    def audit(self):
        start = time.perf_counter()
        by_key = self.snapshot()
        violations = self.check(by_key)
        if self.cookie_reader is not None:
            violations += self.check_cookies(by_key)
        tenants = {t: frozenset(c for task in tasks
                                for c in task.allowed_cpus)
                   for t, tasks in by_key.items()}
        return AuditReport(
            threads=sum(len(t) for t in by_key.values()),
            guests=len({task.pid for tasks in by_key.values()
                        for task in tasks}),
            tenants=tenants, violations=violations,
            seconds=time.perf_counter() - start)


@dataclasses.dataclass
class SampleReport:
    samples: int
    seconds: float
    violating_samples: int
    windows_ms: list
    first_violations: list
    #: per auditor, the PIDs of every guest process it saw: a check that
    #: a guest was watched at all, not only that nothing was wrong.
    guests_seen: list = dataclasses.field(default_factory=list)

    @property
    def rate_hz(self):
        return self.samples / self.seconds if self.seconds else 0.0

    @property
    def longest_window_ms(self):
        return max(self.windows_ms, default=0.0)

    def to_dict(self):
        return {'samples': self.samples, 'seconds': self.seconds,
                'rate_hz': self.rate_hz,
                'violating_samples': self.violating_samples,
                'windows_ms': self.windows_ms,
                'longest_window_ms': self.longest_window_ms,
                'first_violations': [str(v) for v in self.first_violations]}


class Sampler:
    """Checks one or more hosts over and over until told to stop.

    Each sample checks every host; a sample violates when any host does.
    A window of exposure runs from the first violating sample to the first
    clean one after it.
    """

    def __init__(self, auditors):
        self.auditors = list(auditors)

    def run(self, should_stop, max_seconds=120.0):
        """Sample until ``should_stop()`` is true (checked between samples)
        or ``max_seconds`` pass."""
        samples = 0
        violating = 0
        windows = []
        first = []
        window_start = None
        start = time.perf_counter()
        now = start
        guests = [set() for _ in self.auditors]
        while not should_stop() and now - start < max_seconds:
            found = []
            for auditor, pids in zip(self.auditors, guests):
                snapshot = auditor.snapshot()
                pids.update(task.pid for tasks in snapshot.values()
                            for task in tasks)
                found.extend(auditor.check(snapshot))
            now = time.perf_counter()
            samples += 1
            if found:
                violating += 1
                if window_start is None:
                    window_start = now
                    if len(first) < 10:
                        first.extend(found[:10 - len(first)])
            elif window_start is not None:
                windows.append((now - window_start) * 1000.0)
                window_start = None
        end = time.perf_counter()
        if window_start is not None:
            windows.append((end - window_start) * 1000.0)
        return SampleReport(samples, end - start, violating, windows, first,
                            [frozenset(p) for p in guests])
