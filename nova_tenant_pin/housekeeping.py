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

"""Confine host housekeeping to the reserved CPUs, reversibly.

Design invariant 2: system services, nova-compute, libvirtd, IRQs and
unbound kernel work run on reserved whole cores that no tenant gets.
:class:`Housekeeping` applies that to a host, records every value it
changes in a JSON state file before changing it, and restores those values
on release:

* services: where systemd is PID 1, ``AllowedCPUs=`` on ``system.slice``,
  ``user.slice`` and ``init.scope`` (``systemctl set-property --runtime``;
  release resets the property and, where cpuset stays enabled at the root
  for other units, gives each unit's cgroup its parent's CPUs back, which
  systemd does not);
  elsewhere a cpuset ``<cgroup root>/housekeeping`` that receives every
  task of the root cpuset, user processes and movable kernel threads
  alike. Per-CPU kernel threads (``PF_NO_SETAFFINITY``) stay where they
  are and are counted; ``kthreadd`` (PID 2) stays too, so kernel threads it
  creates meanwhile are not born in a cpuset they could not leave; IRQ
  threads stay, as they follow their IRQ's affinity. Each moved task's
  affinity is recorded, and given back on release where leaving the
  cpuset does not restore it (kernel threads);
* IRQs: ``/proc/irq/<n>/smp_affinity_list`` for each IRQ (one that refuses
  with EIO is counted as unconfinable) and ``/proc/irq/default_smp_affinity``;
* unbound workqueues: ``/sys/devices/virtual/workqueue/cpumask``.

Re-running ``apply`` is idempotent: values already recorded are kept, so
``release`` always restores what the host had before the first ``apply``.
All writes go through :mod:`nova_tenant_pin.privsep`; reads are done here,
under ``privsep.HOST_ROOT`` (tests patch it to a fake /proc and /sys).
"""

import json
import os
import tempfile

import jsonschema
from oslo_concurrency import processutils
from oslo_log import log as logging

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import exception
from nova_tenant_pin import privsep
from nova_tenant_pin import procfs
from nova_tenant_pin import topology

LOG = logging.getLogger(__name__)

STATE_VERSION = 1
KTHREADD_PID = 2
PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000
# Passes over the root cpuset's tasks: a task forked by one not yet moved
# lands in the root and is picked up by the next pass.
MAX_PASSES = 5

DEFAULT_IRQ_AFFINITY = '/proc/irq/default_smp_affinity'
WORKQUEUE_CPUMASK = '/sys/devices/virtual/workqueue/cpumask'

# What apply writes to the state file; release trusts nothing it reads
# from it before this schema passes.
_SHORT_TEXT = {'type': 'string', 'maxLength': 4096}
_CPU_LIST = {'type': 'string', 'pattern': r'^[0-9,-]{0,4096}$'}
STATE_SCHEMA = {
    'type': 'object',
    'required': ['version', 'root', 'cpus', 'values', 'systemd', 'refused',
                 'cpuset'],
    'properties': {
        'version': {'const': STATE_VERSION},
        'root': _SHORT_TEXT,
        'cpus': _CPU_LIST,
        'values': {'type': 'object',
                   'propertyNames': {'pattern': r'^(irq:[0-9]{1,5}|'
                                     r'default_irq_affinity|'
                                     r'workqueue_cpumask)$'},
                   'additionalProperties': {
                       'type': 'string',
                       'pattern': r'^[0-9a-fA-F,-]{0,4096}$'}},
        'systemd': {'type': 'object',
                    'propertyNames': {'enum': list(privsep.SYSTEMD_UNITS)},
                    'additionalProperties': _CPU_LIST},
        'refused': {'type': 'array', 'items': _SHORT_TEXT},
        'cpuset': {'type': 'boolean'},
        'tasks': {'type': 'object',
                  'propertyNames': {'pattern': r'^[1-9][0-9]{0,9}$'},
                  'additionalProperties': {
                      'type': 'array', 'minItems': 2, 'maxItems': 2,
                      'prefixItems': [{'type': 'integer', 'minimum': 0},
                                      _CPU_LIST]}},
    },
}


def _path(path):
    return cgroupfs.host_path(privsep.HOST_ROOT, path)


def _read(path):
    # Bytes decoded leniently: a task's name in stat/status may be any
    # bytes (see procfs.read_text).
    return procfs.read_text(_path(path)).strip()


def new_state(root, cpus):
    """The state of a host apply has not changed yet."""
    return {'version': STATE_VERSION, 'root': root, 'cpus': cpus,
            'values': {}, 'systemd': {}, 'refused': [], 'cpuset': False}


def systemd_is_init():
    """True when PID 1 is systemd (then slices carry AllowedCPUs=)."""
    try:
        return _read('/proc/1/comm') == 'systemd'
    except OSError:
        return False


def systemd_allowed_cpus(unit):
    """The unit's AllowedCPUs= as a CPU list ('' when unset)."""
    out, _ = processutils.execute('systemctl', 'show', '--value',
                                  '--property', 'AllowedCPUs', unit)
    return out.strip()


def unit_effective_cpus(unit, cpuset):
    """The CPUs the kernel lets a unit's tasks run on: its cgroup v2
    ``cpuset.cpus.effective``, as a frozenset; None where cpuset is not
    enabled for the unit (``cpuset``, the host's cpuset hierarchy, is not
    cgroup v2, or cpuset is disabled above the unit: every CPU)."""
    if cpuset is None or cpuset.version != 2:
        return None
    try:
        return frozenset(topology.parse_cpu_list(procfs.read_text(
            cpuset.path('/', unit, 'cpuset.cpus.effective')).strip()))
    except (OSError, topology.TopologyError):
        return None


def task_stat(tid):
    """``(comm, flags, starttime)`` of a task from ``/proc/<tid>/stat``
    (fields 2, 9 and 22), or None if the task is gone."""
    try:
        stat = _read('/proc/%d/stat' % tid)
        head, tail = stat.rsplit(')', 1)
        fields = tail.split()
        return head.split('(', 1)[1], int(fields[6]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def task_affinity(tid):
    """``Cpus_allowed_list`` of a task as a CPU list, or None if it is
    gone."""
    try:
        status = _read('/proc/%d/status' % tid)
        return topology.format_cpu_list(procfs.allowed_cpus(status))
    except (OSError, ValueError):
        return None


def stays_put(tid):
    """Why a task of the root cpuset is not moved, or None to move it.

    ``per-cpu``: a per-CPU kernel thread (PF_NO_SETAFFINITY) or kthreadd,
    whose children would be born in the housekeeping cpuset; ``irq``: an
    IRQ thread (``irq/<n>-...``), which follows its IRQ's affinity;
    ``gone``: it exited.
    """
    stat = task_stat(tid)
    if stat is None:
        return 'gone'
    comm, flags, _ = stat
    if tid == KTHREADD_PID or (flags & PF_KTHREAD and
                               flags & PF_NO_SETAFFINITY):
        return 'per-cpu'
    if flags & PF_KTHREAD and comm.startswith('irq/'):
        return 'irq'
    return None


def irqs():
    """The IRQ numbers in /proc/irq, sorted."""
    return sorted(int(n) for n in os.listdir(_path('/proc/irq'))
                  if n.isdigit())


def irq_affinity(irq):
    return _read('/proc/irq/%d/smp_affinity_list' % irq)


class Housekeeping:
    """Housekeeping confinement of one host.

    :param cpus: the housekeeping CPUs (a set of ints); needed by apply,
        taken from the state file by release.
    :param state_file: where apply records what it changed.
    :param root: the cgroup root holding the housekeeping cpuset.
    """

    def __init__(self, state_file, cpus=None, root='/'):
        self.state_file = state_file
        self.cpus = frozenset(cpus) if cpus is not None else None
        self.root = cgroupfs.normalize_root(root)

    # State file -----------------------------------------------------------
    def load_state(self):
        try:
            with open(self.state_file) as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise exception.HousekeepingError(
                reason='state file %s is not JSON: %s%s'
                       % (self.state_file, e, self._RECOVER)) from None
        if isinstance(state, dict) and 'version' in state and \
                state['version'] != STATE_VERSION:
            raise exception.HousekeepingError(
                reason='state file %s has version %r, expected %d'
                       % (self.state_file, state.get('version'),
                          STATE_VERSION))
        error = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(STATE_SCHEMA).iter_errors(state))
        if error is None:
            try:
                cgroupfs.normalize_root(state['root'])
            except exception.InvalidArgument as e:
                error = jsonschema.ValidationError(str(e), path=['root'])
        if error is not None:
            where = '/'.join(str(p) for p in error.absolute_path) or 'the top'
            raise exception.HousekeepingError(
                reason='state file %s is not a housekeeping state: at %s: '
                       '%s%s' % (self.state_file, where, error.message,
                                 self._RECOVER))
        return state

    _RECOVER = (
        '. It records the values apply changed: fix it by hand from a '
        'backup, or, once the host\'s IRQ affinities, workqueue mask and '
        'services are as they should be, remove it (apply then records '
        'afresh)')

    def _save_state(self, state):
        directory = os.path.dirname(os.path.abspath(self.state_file))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.housekeeping')
        with os.fdopen(fd, 'w') as f:
            json.dump(state, f, indent=1, sort_keys=True)
        os.replace(tmp, self.state_file)

    # Reading --------------------------------------------------------------
    def _cpuset(self):
        return cgroupfs.detect_layout(privsep.HOST_ROOT).require_cpuset(
            'services cannot be confined in a cpuset')

    def _root_tasks(self, cpuset):
        return cgroupfs.cgroup(cpuset, cpuset.path(self.root)).tasks()

    def _housekeeping_tasks(self, cpuset):
        path = cpuset.path(self.root, cgroupfs.HOUSEKEEPING)
        try:
            return cgroupfs.cgroup(cpuset, path).tasks()
        except FileNotFoundError:
            return frozenset()

    def _targets(self):
        """The values apply writes: ``[(key, current, writer)]``."""
        targets = []
        for irq in irqs():
            try:
                current = irq_affinity(irq)
            except OSError:
                continue
            targets.append(('irq:%d' % irq, current,
                            lambda cpus, irq=irq: privsep.set_irq_affinity(
                                irq, cpus)))
        for key, path, writer in (
                ('default_irq_affinity', DEFAULT_IRQ_AFFINITY,
                 privsep.set_default_irq_affinity),
                ('workqueue_cpumask', WORKQUEUE_CPUMASK,
                 privsep.set_workqueue_cpumask)):
            if os.path.exists(_path(path)):
                targets.append((key, _read(path), writer))
        return targets

    @staticmethod
    def _cpus_of(key, text):
        """The CPUs of a recorded value: masks for the two mask files,
        CPU lists for everything else."""
        if key in ('default_irq_affinity', 'workqueue_cpumask'):
            return cgroupfs.parse_cpu_mask(text)
        return frozenset(topology.parse_cpu_list(text))

    # Apply / release / show ----------------------------------------------
    def apply(self):
        """Confine housekeeping to ``cpus``; returns the report of show()."""
        if not self.cpus:
            raise exception.HousekeepingError(reason='no housekeeping CPUs')
        online = frozenset(topology.parse_cpu_list(
            _read('/sys/devices/system/cpu/online')))
        if not self.cpus <= online:
            # Checked before the state file is written: nothing changes.
            raise exception.InvalidArgument(
                what='housekeeping CPUs',
                value=topology.format_cpu_list(self.cpus),
                reason='not all online (online: %s)'
                       % topology.format_cpu_list(online))
        cpus = topology.format_cpu_list(self.cpus)
        state = self.load_state() or new_state(self.root, cpus)
        state['cpus'] = cpus
        use_systemd = systemd_is_init()
        targets = self._targets()
        # Record every original before the first write, so that a crash
        # part-way leaves a state file release can restore from.
        for key, current, _ in targets:
            if (key not in state['refused'] and
                    self._cpus_of(key, current) != self.cpus):
                state['values'].setdefault(key, current)
        if use_systemd:
            for unit in privsep.SYSTEMD_UNITS:
                state['systemd'].setdefault(unit, systemd_allowed_cpus(unit))
        else:
            state['cpuset'] = True
        self._save_state(state)

        for key, current, writer in targets:
            if (key not in state['values'] or
                    self._cpus_of(key, current) == self.cpus):
                continue
            if writer(cpus) is False:
                # EIO: the kernel does not let this IRQ move.
                state['refused'].append(key)
                del state['values'][key]
        if use_systemd:
            for unit in privsep.SYSTEMD_UNITS:
                privsep.set_systemd_allowed_cpus(unit, cpus)
            moved = {}
        else:
            privsep.ensure_housekeeping_cpuset(self.root, cpus)
            moved = self._confine_tasks(state)
        self._save_state(state)
        report = self.show()
        report['moved'] = moved
        return report

    def _confine_tasks(self, state):
        """Move the root cpuset's movable tasks into the housekeeping
        cpuset, recording each one's affinity (and start time, against PID
        reuse) in the state first."""
        cpuset = self._cpuset()
        counts = {'moved': 0, 'refused': 0, 'gone': 0, 'elsewhere': 0}
        skipped = set()
        recorded = state.setdefault('tasks', {})
        for _ in range(MAX_PASSES):
            todo = []
            for tid in sorted(self._root_tasks(cpuset) - skipped):
                if stays_put(tid):
                    skipped.add(tid)
                else:
                    todo.append(tid)
            if not todo:
                break
            for tid in todo:
                stat, affinity = task_stat(tid), task_affinity(tid)
                if stat and affinity:
                    recorded.setdefault(str(tid), [stat[2], affinity])
            self._save_state(state)
            for tid in todo:
                try:
                    result = privsep.confine_task(self.root, tid)
                except exception.InvalidArgument:
                    result = 'gone'
                counts[result] += 1
                if result != 'moved':
                    skipped.add(tid)
        return counts

    def _restore_affinities(self, state):
        """Give each moved task that is still the same task its recorded
        affinity back, where leaving the cpuset did not. Returns the
        number of tasks changed."""
        changed = 0
        for tid, (starttime, affinity) in sorted(
                state.get('tasks', {}).items()):
            tid = int(tid)
            stat = task_stat(tid)
            if stat is None or stat[2] != starttime:
                continue
            if task_affinity(tid) == affinity:
                continue
            try:
                if privsep.set_task_affinity(tid, affinity):
                    changed += 1
            except exception.InvalidArgument:
                continue
        return changed

    def release(self):
        """Restore everything apply recorded; remove the state file when
        all of it is restored. Returns ``{"restored": [...],
        "failed": {key: reason}}``."""
        state = self.load_state()
        if state is None:
            raise exception.HousekeepingError(
                reason='nothing to release: no state file %s'
                       % self.state_file)
        restored, failed = [], {}
        for unit, value in sorted(state['systemd'].items()):
            written = privsep.set_systemd_allowed_cpus(unit, value or None)
            if written is not None:
                LOG.info('Housekeeping release: %(unit)s had no '
                         'AllowedCPUs= before; systemd left its cgroup '
                         'confined while cpuset stays enabled at the root, '
                         'so its cpuset.cpus is now %(cpus)s',
                         {'unit': unit,
                          'cpus': written or "empty (the parent's CPUs)"})
            restored.append('systemd:%s' % unit)
        if state.get('cpuset'):
            result = privsep.release_housekeeping_cpuset(state['root'])
            if result['stuck']:
                failed['cpuset'] = 'tasks the kernel kept: %s' % (
                    result['stuck'],)
            elif result.get('error'):
                failed['cpuset'] = result['error']
            else:
                restored.append('cpuset')
            if self._restore_affinities(state):
                restored.append('task affinities')
        writers = {key: writer for key, _, writer in self._targets()}
        for key, value in sorted(state['values'].items()):
            writer = writers.get(key)
            if writer is None:
                failed[key] = 'gone from this host'
                continue
            try:
                ok = writer(topology.format_cpu_list(
                    self._cpus_of(key, value)))
            except (exception.InvalidArgument, topology.TopologyError,
                    OSError) as e:
                failed[key] = str(e)
                continue
            if ok is False:
                failed[key] = 'the kernel refused (EIO)'
            else:
                restored.append(key)
        if failed:
            # Keep only what is left to restore, for a later release.
            state['values'] = {k: v for k, v in state['values'].items()
                               if k in failed}
            state['systemd'] = {}
            state['cpuset'] = 'cpuset' in failed
            if not state['cpuset']:
                state['tasks'] = {}
            self._save_state(state)
        else:
            os.unlink(self.state_file)
        return {'restored': restored, 'failed': failed}

    def show(self):
        """What is confined and what is not, as a JSON-ready dict."""
        state = self.load_state()
        cpus = self.cpus
        if cpus is None and state:
            cpus = frozenset(topology.parse_cpu_list(state['cpus']))
        refused = set(state['refused']) if state else set()

        def judge(key, text):
            value = self._cpus_of(key, text)
            return {'value': topology.format_cpu_list(value),
                    'confined': cpus is not None and value <= cpus}

        report = {
            'applied': state is not None,
            'housekeeping_cpus': (topology.format_cpu_list(cpus)
                                  if cpus is not None else None),
            'irqs': {'confined': [], 'unconfined': [], 'unconfinable': []},
        }
        for key, current, _ in self._targets():
            if key.startswith('irq:'):
                irq = int(key[4:])
                if key in refused:
                    bucket = 'unconfinable'
                elif judge(key, current)['confined']:
                    bucket = 'confined'
                else:
                    bucket = 'unconfined'
                report['irqs'][bucket].append(irq)
            else:
                report[key] = judge(key, current)
        if systemd_is_init():
            report['systemd'] = {}
            cpuset = cgroupfs.detect_layout(privsep.HOST_ROOT).cpuset
            for unit in privsep.SYSTEMD_UNITS:
                # systemd's property and, independently, what the kernel
                # enforces: they differ where systemd left a reset unit's
                # cgroup confined (see privsep._unconfine_unit_cgroup).
                value = systemd_allowed_cpus(unit)
                effective = unit_effective_cpus(unit, cpuset)
                report['systemd'][unit] = {
                    'value': value,
                    'effective': (topology.format_cpu_list(effective)
                                  if effective is not None else None),
                    'confined': bool(value) and cpus is not None and
                    topology.parse_cpu_list(value) <= cpus and
                    (effective is None or effective <= cpus)}
        else:
            report['tasks'] = self._task_report()
        return report

    def _task_report(self):
        cpuset = self._cpuset()
        counts = {'per-cpu': 0, 'irq': 0, None: 0, 'gone': 0}
        for tid in self._root_tasks(cpuset):
            counts[stays_put(tid)] += 1
        return {'confined': len(self._housekeeping_tasks(cpuset)),
                'unconfined': counts[None],
                'unconfinable': counts['per-cpu'],
                'irq_threads': counts['irq']}
