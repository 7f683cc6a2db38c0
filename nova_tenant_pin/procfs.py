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

"""The kernel's truth about threads: where each one may run, and its cgroup.

libvirt's own pin report can disagree with the kernel when a parent cgroup
restricts the CPUs, so checks of the invariants read ``/proc`` instead:
``Cpus_allowed_list`` of every task of a process, its ``comm`` (QEMU names
vCPU threads ``CPU n/KVM`` or ``CPU n/TCG``) and its cpuset cgroup.
Reading is unprivileged; nothing here writes.

Any process may name itself with bytes that are not UTF-8
(``prctl(PR_SET_NAME)``, no privilege needed), and that name shows in its
``comm``, ``stat`` and ``status``. Every /proc file is therefore read as
bytes and decoded with :func:`read_text`, which shows such bytes as
``\\xNN`` escapes instead of failing: one hostile process must not blind
the audit or stop housekeeping.
"""

import dataclasses
import os
import re

from nova_tenant_pin import topology

_VCPU_COMM_RE = re.compile(r'^CPU (\d+)/(KVM|TCG)$')


@dataclasses.dataclass(frozen=True)
class ThreadInfo:
    pid: int
    tid: int
    comm: str
    allowed_cpus: frozenset
    cpuset_cgroup: str

    @property
    def vcpu(self):
        """The vCPU index of a QEMU vCPU thread, else None."""
        match = _VCPU_COMM_RE.match(self.comm)
        return int(match.group(1)) if match else None


def decode(data):
    """Text of /proc bytes: UTF-8, other bytes as ``\\xNN`` escapes."""
    return data.decode('utf-8', errors='backslashreplace')


def read_text(path):
    """The text of a /proc (or sysfs) file; never fails on its bytes."""
    with open(path, 'rb') as f:
        return decode(f.read())


_read = read_text


def cpuset_cgroup(cgroup_text):
    """The cpuset cgroup path of a ``/proc/PID/cgroup`` text (v1 line with
    the cpuset controller, else the v2 ``0::`` line)."""
    v2 = None
    for line in cgroup_text.splitlines():
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        if 'cpuset' in parts[1].split(','):
            return parts[2]
        if parts[0] == '0' and parts[1] == '':
            v2 = parts[2]
    return v2


def allowed_cpus(status_text):
    for line in status_text.splitlines():
        if line.startswith('Cpus_allowed_list:'):
            return frozenset(topology.parse_cpu_list(line.split(':', 1)[1]))
    raise ValueError('no Cpus_allowed_list in status')


def threads(pid, proc_root='/proc'):
    """Every task of process ``pid``; tasks that exit while being read are
    skipped. Raises ProcessLookupError when the process is gone."""
    task_dir = os.path.join(proc_root, str(pid), 'task')
    try:
        tids = sorted(int(t) for t in os.listdir(task_dir) if t.isdigit())
    except FileNotFoundError:
        raise ProcessLookupError(pid)
    result = []
    for tid in tids:
        base = os.path.join(task_dir, str(tid))
        try:
            comm = _read(os.path.join(base, 'comm')).strip()
            status = _read(os.path.join(base, 'status'))
            cgroup = _read(os.path.join(base, 'cgroup'))
        except (FileNotFoundError, ProcessLookupError):
            continue
        result.append(ThreadInfo(pid, tid, comm, allowed_cpus(status),
                                 cpuset_cgroup(cgroup)))
    return result


def thread_affinities(pid, comm_cache, proc_root='/proc'):
    """Every task of ``pid`` with its allowed CPUs, the fast way.

    For a sampler that reads the same processes many times a second: the
    comm of a task is read once (``comm_cache``, keyed by PID and TID), and
    on the real /proc the allowed CPUs come from ``sched_getaffinity(2)``
    instead of formatting the whole status file. Returns ThreadInfo without
    cgroup.
    """
    task_dir = os.path.join(proc_root, str(pid), 'task')
    try:
        tids = os.listdir(task_dir)
    except FileNotFoundError:
        raise ProcessLookupError(pid)
    real = proc_root == '/proc'
    result = []
    for entry in tids:
        if not entry.isdigit():
            continue
        tid = int(entry)
        try:
            comm = comm_cache.get((pid, tid))
            if comm is None:
                comm = _read(os.path.join(task_dir, entry, 'comm')).strip()
                comm_cache[(pid, tid)] = comm
            if real:
                allowed = frozenset(os.sched_getaffinity(tid))
            else:
                allowed = allowed_cpus(_read(os.path.join(
                    task_dir, entry, 'status')))
        except (FileNotFoundError, ProcessLookupError):
            continue
        result.append(ThreadInfo(pid, tid, comm, allowed, None))
    return result
