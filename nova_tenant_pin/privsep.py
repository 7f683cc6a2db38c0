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

"""The only code of nova-tenant-pin that runs with privileges.

One :class:`~oslo_privsep.priv_context.PrivContext`, ``tenant_pin_pctxt``,
and a handful of narrow entrypoints: each one does one kind of change
(create a tenant partition, resize it, move a task, set an IRQ's affinity
...) and validates every argument itself before it writes anything:

* names match a strict pattern (a tenant id, a cgroup root made of plain
  components, a systemd unit from a fixed list);
* every cgroup path is built here, resolved, and must stay under the mount
  point of its hierarchy, with no symlink on the way;
* CPU lists parse, are non-empty, and are a subset of the online CPUs;
* PIDs and IRQ numbers are integers that exist.

Bad input raises :class:`~nova_tenant_pin.exception.InvalidArgument` and
changes nothing. There is no entrypoint that writes an arbitrary file or
runs an arbitrary command.

``HOST_ROOT`` is the root of the filesystem these functions work in. It is
``/`` in the daemon; unit tests run the functions in-process
(``set_client_mode(False)``) with it patched to a fake tree.
"""

import ctypes
import errno
import os
import re

from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging
from oslo_privsep import capabilities
from oslo_privsep import priv_context

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import exception
from nova_tenant_pin import hostfs
from nova_tenant_pin import topology

LOG = logging.getLogger(__name__)

# The daemon keeps uid 0 and two capabilities, as measured by
# nova_tenant_pin.tests.functional.test_privsep (kernel 6.18, cgroup v1):
# * CAP_DAC_OVERRIDE: the top directory of a cgroup hierarchy is mode 0555,
#   so creating (or removing) ``machine``, ``housekeeping`` or a cgroup
#   root directly under it is refused without it.
# * CAP_SYS_NICE: moving a task into a cpuset changes its affinity; the
#   kernel (cap_safe_nice) refuses with EPERM unless the task's permitted
#   capabilities are a subset of the daemon's, which is false for every
#   root process (QEMU, libvirtd, host services) once the daemon has
#   dropped the rest.
# Files owned by root and owner-writable (cpuset files, tasks, /proc/irq,
# the workqueue mask) need no capability.
tenant_pin_pctxt = priv_context.PrivContext(
    'nova_tenant_pin',
    cfg_section='nova_tenant_pin_privileged',
    pypath=__name__ + '.tenant_pin_pctxt',
    capabilities=[capabilities.CAP_DAC_OVERRIDE,
                  capabilities.CAP_SYS_NICE],
)

HOST_ROOT = '/'

PR_SET_SECUREBITS = 28
PR_GET_SECUREBITS = 27
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1


def _prctl(option, arg=0):
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def harden_exec():
    """Make every program this process (and its children) executes start
    with no more capabilities than this process has.

    The daemon keeps uid 0, and execve(2) by uid 0 gives the new program
    the full capability set back (the daemon execs ``systemctl``).
    ``SECBIT_NOROOT`` (locked) turns that rule off; setting it needs
    CAP_SETPCAP, which only the helper has, before the daemon drops it.
    ``no_new_privs`` needs no capability: the kernel then never grants an
    executed program capabilities its parent does not have, nor honours
    set-user-ID bits. Returns the securebits now set."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    bits = _prctl(PR_GET_SECUREBITS)
    wanted = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED
    if bits & wanted != wanted:
        try:
            _prctl(PR_SET_SECUREBITS, bits | wanted)
        except OSError as e:
            # No CAP_SETPCAP: no_new_privs alone still keeps an executed
            # program's capabilities within this process's.
            LOG.warning('cannot set SECBIT_NOROOT: %s', os.strerror(e.errno))
    return _prctl(PR_GET_SECUREBITS)


def _in_privsep_helper():
    """True in ``privsep-helper`` started for a context of this module: it
    imports this module to find the context after parsing its command
    line, as root with every capability, and then forks the daemon."""
    try:
        return cfg.CONF.privsep_context in (tenant_pin_pctxt.pypath,
                                            core_sched_pctxt.pypath)
    except (cfg.NoSuchOptError, cfg.NotInitializedError, AttributeError):
        return False


# systemd units whose AllowedCPUs= housekeeping may change.
SYSTEMD_UNITS = ('system.slice', 'user.slice', 'init.scope')

# ASCII digits only ("\d" and int() also take other scripts' digits) and
# the whole string (\Z: "$" would let a trailing newline through).
_CPU_LIST_RE = re.compile(
    r'[0-9]{1,5}(?:-[0-9]{1,5})?(?:,[0-9]{1,5}(?:-[0-9]{1,5})?)*\Z')
_CPU_NUMBER_RE = re.compile(r'[0-9]+')
_MAX_CPU_LIST_CHARS = 4096
_MAX_IRQ = 1 << 16


_SYSFS = frozenset([hostfs.SYSFS])
_PROC = frozenset([hostfs.PROC])
_CGROUP2 = frozenset([hostfs.CGROUP2])


def _host(path):
    return cgroupfs.host_path(HOST_ROOT, path)


# Directories of any cgroup hierarchy, through hostfs: never through a
# symlink, only on a cgroup or cgroup2 file system.
def _isdir(path):
    return hostfs.isdir(path, hostfs.CGROUPS)


def _mkdir(path):
    hostfs.mkdir(path, hostfs.CGROUPS)


def _rmdir(path):
    hostfs.rmdir(path, hostfs.CGROUPS)


def _refuse(what, value, reason):
    raise exception.InvalidArgument(what=what, value=value, reason=reason)


def _read_list(path, default):
    try:
        text = hostfs.read_text(_host(path), _SYSFS)
        return frozenset(topology.parse_cpu_list(text))
    except FileNotFoundError:
        return frozenset(default)


def _online_cpus():
    return _read_list('/sys/devices/system/cpu/online', ())


def _possible_cpus():
    # The CPUs this kernel could ever bring online: the bound of every
    # list, checked before a range is expanded.
    return _read_list('/sys/devices/system/cpu/possible', _online_cpus())


def _online_mems():
    # A kernel without NUMA has no node directory: node 0 only.
    return _read_list('/sys/devices/system/node/online', (0,))


def _possible_mems():
    return _read_list('/sys/devices/system/node/possible', _online_mems())


def id_set(value, what, allowed, possible):
    """A non-empty set of CPU (or memory node) numbers, a subset of
    ``allowed``, from a kernel list string (ASCII digits, no whitespace)
    or a list of ints. Every number is checked against ``possible`` (the
    host's possible CPUs) before a range is expanded, so no input makes
    the caller allocate more than the host has. Raises InvalidArgument.
    Reusable by every entrypoint that takes a CPU list."""
    bound = max(possible | allowed, default=-1)
    if isinstance(value, str):
        if len(value) > _MAX_CPU_LIST_CHARS or not _CPU_LIST_RE.match(value):
            _refuse(what, value, 'not a list such as "0-3,8" (ASCII '
                                 'digits, "-" and "," only)')
        if any(int(n) > bound for n in _CPU_NUMBER_RE.findall(value)):
            _refuse(what, value, 'names a number above %d, the highest '
                                 'this host has' % bound)
        try:
            ids = frozenset(topology.parse_cpu_list(value, bound))
        except topology.TopologyError as e:
            _refuse(what, value, str(e))
    elif isinstance(value, (list, tuple, set, frozenset)):
        if len(value) > bound + 1 or not all(
                type(n) is int and 0 <= n <= bound for n in value):
            _refuse(what, value, 'not a list of at most %d integers from 0 '
                                 'to %d' % (bound + 1, bound))
        ids = frozenset(value)
    else:
        _refuse(what, value, 'not a list')
    if not ids:
        _refuse(what, value, 'empty')
    if not ids <= allowed:
        _refuse(what, value, 'not online: %s (online: %s)'
                % (topology.format_cpu_list(ids - allowed),
                   topology.format_cpu_list(allowed)))
    return ids


def _cpus(value, what='CPU list'):
    return id_set(value, what, _online_cpus(), _possible_cpus())


def _mems(value):
    return id_set(value, 'memory node list', _online_mems(),
                  _possible_mems())


def _pid(value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        _refuse('PID', value, 'not a positive integer')
    if not os.path.isdir(_host('/proc/%d' % value)):
        _refuse('PID', value, 'no such task')
    return value


INIT_PID = 1
KTHREADD_PID = 2
PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000


def task_flags(tid):
    """The ``flags`` field of ``/proc/<tid>/stat`` (field 9, after the
    comm, which may hold any byte, even ")"). InvalidArgument when the task
    is gone or the file does not parse."""
    try:
        stat = hostfs.read_text(_host('/proc/%d/stat' % tid), _PROC)
        return int(stat.rsplit(')', 1)[1].split()[6])
    except (OSError, ValueError, IndexError):
        _refuse('PID', tid, 'no such task')


def _user_process(value, what):
    """A user-space process (not PID 1, not a kernel thread)."""
    pid = _pid(value)
    if pid == INIT_PID:
        _refuse(what, pid, 'PID 1 is never moved by this entrypoint')
    if task_flags(pid) & PF_KTHREAD:
        _refuse(what, pid, 'a kernel thread')
    return pid


def _movable_kernel_thread(value, what):
    """A kernel thread whose affinity may change: not kthreadd, not a
    per-CPU thread."""
    tid = _pid(value)
    flags = task_flags(tid)
    if not flags & PF_KTHREAD:
        _refuse(what, tid, 'not a kernel thread (the kernel restores the '
                           'affinity of user tasks itself)')
    if tid == KTHREADD_PID or flags & PF_NO_SETAFFINITY:
        _refuse(what, tid, 'a per-CPU kernel thread or kthreadd')
    return tid


def _irq(value):
    if (not isinstance(value, int) or isinstance(value, bool) or
            not 0 <= value < _MAX_IRQ):
        _refuse('IRQ', value, 'not an IRQ number')
    if not os.path.isdir(_host('/proc/irq/%d' % value)):
        _refuse('IRQ', value, 'no such IRQ')
    return value


def _tenant(value):
    try:
        return cgroupfs.validate_tenant_id(value)
    except exception.PartitionError as e:
        _refuse('tenant id', value, str(e))


# Components a cgroup root may not have: the root is where a libvirtd
# keeps its ``machine`` tree, never inside systemd's units, libvirt's own
# groups, a tenant partition or a housekeeping cpuset.
_FOREIGN_COMPONENT_RE = re.compile(
    r'(machine|housekeeping|.*\.(slice|scope|service|socket|mount|swap|'
    r'partition|libvirt-qemu|libvirt-lxc))\Z')


def _root(value):
    root = cgroupfs.normalize_root(value)
    for part in root.split('/'):
        if _FOREIGN_COMPONENT_RE.match(part):
            _refuse('cgroup root', value, '%r belongs to systemd, libvirt '
                    'or a partition; a root holds a libvirtd\'s machine '
                    'tree' % part)
    return root


def _confined(hierarchy, path):
    """``path`` if it stays under the hierarchy's mount point: no symlink
    on the way down and the resolved path below the mount."""
    mount = os.path.realpath(hierarchy.mount)
    rel = os.path.relpath(path, hierarchy.mount)
    if rel.startswith('..') or os.path.isabs(rel):
        _refuse('cgroup path', path, 'outside %s' % hierarchy.mount)
    current = hierarchy.mount
    for part in [] if rel == '.' else rel.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            _refuse('cgroup path', path, '%s is a symlink' % current)
    real = os.path.realpath(path)
    if real != mount and not real.startswith(mount + os.sep):
        _refuse('cgroup path', path, 'resolves outside %s' % mount)
    return path


def _layout():
    return cgroupfs.detect_layout(HOST_ROOT)


def _levels(hierarchy, root, *parts):
    """The directories from the first level under the mount down to
    ``<root>/<parts>``, each checked to stay under the mount."""
    rel = [p for p in root.split('/') if p]
    for part in parts:
        rel += part.split('/')
    return [_confined(hierarchy, os.path.join(hierarchy.mount, *rel[:i]))
            for i in range(1, len(rel) + 1)]


def _kernel_error(name, err, action):
    return exception.PartitionError(name=name, reason='%s: %s' % (
        action, os.strerror(err.errno) if err.errno else err))


def _make_dirs(hierarchy, levels, created):
    """Create missing levels top-down. On a cpuset hierarchy a new
    intermediate level copies its parent's CPUs and memory nodes (v1) or
    gets the cpuset controller enabled from its parent (v2)."""
    for path in levels:
        if _isdir(path):
            continue
        parent = os.path.dirname(path)
        if hierarchy.version == 2 and 'cpuset' in hierarchy.controllers:
            _enable_v2_cpuset(parent)
        _mkdir(path)
        created.append(path)
        if hierarchy.version == 1 and 'cpuset' in hierarchy.controllers \
                and path != levels[-1]:
            up, down = cgroupfs.V1Cgroup(parent), cgroupfs.V1Cgroup(path)
            down.set_mems(up.mems())
            down.set_cpus(up.cpus())


def _enable_v2_cpuset(path):
    group = cgroupfs.V2Cgroup(path)
    if 'cpuset' not in group.subtree_control():
        group.enable_controller('cpuset')


def _try_exclusive(hierarchy, path, cpus):
    """Make the partition's CPUs exclusive where the kernel allows it:
    v1 ``cpuset.cpu_exclusive`` when the parent is exclusive and no sibling
    overlaps; v2 ``cpuset.cpus.partition`` = ``root``, read back. Returns
    whether it is exclusive now."""
    group = cgroupfs.cgroup(hierarchy, path)
    parent = os.path.dirname(path)
    try:
        if hierarchy.version == 1:
            if group.exclusive():
                return True
            try:
                if not cgroupfs.V1Cgroup(parent).exclusive():
                    return False
                for name in hostfs.listdir(parent, cgroupfs.V1_KINDS):
                    sibling = os.path.join(parent, name)
                    if (sibling != path and not os.path.islink(sibling) and
                            os.path.isdir(sibling) and
                            cgroupfs.V1Cgroup(sibling).cpus() & cpus):
                        return False
            except exception.UnsafePath as e:
                # Exclusivity is an addition the kernel may refuse anyway:
                # a file of the parent or a sibling that is not what it
                # should be (a symlink) leaves the partition, already
                # made, non-exclusive.
                LOG.warning('%s: left non-exclusive: %s', path, e)
                return False
            group.set_exclusive(True)
            return True
        if not os.path.exists(os.path.join(path, 'cpuset.cpus.partition')):
            return False
        group.set_exclusive(True)
        if group.exclusive():
            return True
        # "root invalid (...)": the kernel does not allow it here.
        group.set_exclusive(False)
        return False
    except OSError as e:
        if not cgroupfs.is_refused(e):
            raise
        LOG.info('%s: the kernel keeps it non-exclusive: %s', path,
                 os.strerror(e.errno))
        return False


def _resize(hierarchy, path, cpus):
    """Move a partition and its domains to ``cpus``: widen top-down, shrink
    bottom-up (see cgroupfs.plan_cpuset_resize)."""
    current = {}
    for rel in cgroupfs.subtree(path):
        try:
            cpus_now = cgroupfs.cgroup(hierarchy,
                                       os.path.join(path, rel)).cpus()
        except FileNotFoundError:
            continue
        if cpus_now:
            # v2: an empty cpuset.cpus inherits its parent and stays so.
            current[rel] = cpus_now
    if '' not in current:
        current[''] = frozenset(cpus)
    for rel, value in cgroupfs.plan_cpuset_resize(current, cpus):
        target = os.path.join(path, rel) if rel else path
        cgroupfs.cgroup(hierarchy, _confined(hierarchy, target)).set_cpus(
            value)
    return len(current)


def _partition_levels(layout, root, tenant):
    partition = cgroupfs.partition_dir(tenant, layout.slices(root))
    return [(h, _levels(h, root, partition)) for h in layout.ordered()]


def _set_slice(tenant, cpus, mems=None):
    """Record a tenant partition's CPUs (and memory nodes) in its systemd
    slice and start it: ``AllowedCPUs=`` (``AllowedMemoryNodes=``) with
    ``systemctl set-property --runtime``. systemd writes them to the
    slice's cgroup now, and again whenever it applies the slice's settings
    (a value written only to the cgroup would be reset then)."""
    unit = cgroupfs.partition_slice(tenant)
    props = ['AllowedCPUs=%s' % topology.format_cpu_list(cpus)]
    if mems is not None:
        props.append('AllowedMemoryNodes=%s' % topology.format_cpu_list(mems))
    processutils.execute('systemctl', 'set-property', '--runtime', unit,
                         *props)
    processutils.execute('systemctl', 'start', unit)


def _ensure_slice(layout, root, tenant, cpus, mems):
    """ensure_partition where partitions are systemd slices: systemd
    creates the slice's cgroup with the CPUs and memory nodes; a slice that
    exists is resized like any partition (its domains' cgroups too), then
    systemd is told the new CPUs."""
    cpuset = layout.cpuset
    plan = _partition_levels(layout, root, tenant)
    path = plan[0][1][-1]
    existed = {h.name for h, levels in plan if os.path.isdir(levels[-1])}
    name = cgroupfs.partition_name(tenant)
    try:
        if os.path.isdir(path):
            _resize(cpuset, path, cpus)
        _set_slice(tenant, cpus, mems)
    except OSError as e:
        raise _kernel_error(name, e, 'create') from None
    except processutils.ProcessExecutionError as e:
        raise exception.PartitionError(
            name=name, reason='systemd slice %s: %s' % (
                cgroupfs.partition_slice(tenant),
                (e.stderr or e.description).strip())) from None
    return {'created': sorted({h.name for h, levels in plan
                               if os.path.isdir(levels[-1])} - existed),
            'exclusive': False}


@tenant_pin_pctxt.entrypoint
def ensure_partition(root, tenant, cpus, mems):
    """Create ``<root>/machine/tenant-<id>.partition`` in every hierarchy
    libvirt uses, cpuset first with ``cpuset.mems`` then ``cpuset.cpus``
    set, creating missing parents top-down; resize it if it exists.

    :returns: ``{"created": [hierarchy names], "exclusive": bool}``
    """
    root, tenant = _root(root), _tenant(tenant)
    cpus, mems = _cpus(cpus, 'partition CPUs'), _mems(mems)
    layout = _layout()
    cpuset = layout.require_cpuset()
    if layout.slices(root):
        return _ensure_slice(layout, root, tenant, cpus, mems)
    plan = _partition_levels(layout, root, tenant)
    name = cgroupfs.partition_name(tenant)
    created = []
    try:
        for hierarchy, levels in plan:
            existed = _isdir(levels[-1])
            _make_dirs(hierarchy, levels, created)
            if hierarchy is not cpuset:
                continue
            group = cgroupfs.cgroup(hierarchy, levels[-1])
            if existed:
                if group.mems() != mems:
                    group.set_mems(mems)
                _resize(hierarchy, levels[-1], cpus)
            else:
                if hierarchy.version == 1:
                    group.set_mems(mems)
                    group.set_cpus(cpus)
                else:
                    group.set_cpus(cpus)
                    group.set_mems(mems)
                    _enable_v2_cpuset(levels[-1])
    except (OSError, exception.UnsafePath) as e:
        for path in reversed(created):
            try:
                _rmdir(path)
            except (OSError, exception.UnsafePath):
                LOG.warning('could not remove %s after a failed create',
                            path)
        if isinstance(e, exception.UnsafePath):
            raise
        raise _kernel_error(name, e, 'create') from None
    exclusive = _try_exclusive(cpuset, plan[0][1][-1], cpus)
    return {'created': sorted({h.name for h, levels in plan
                               if any(p in created for p in levels)}),
            'exclusive': exclusive}


@tenant_pin_pctxt.entrypoint
def set_partition_cpus(root, tenant, cpus):
    """Resize an existing partition and the domain cgroups inside it:
    widen top-down, shrink bottom-up; then make it exclusive where the
    kernel now allows it.

    :returns: ``{"cgroups": cgroups in the partition's cpuset subtree,
        "exclusive": bool}``
    """
    root, tenant = _root(root), _tenant(tenant)
    cpus = _cpus(cpus, 'partition CPUs')
    layout = _layout()
    cpuset = layout.require_cpuset()
    slices = layout.slices(root)
    path = _levels(cpuset, root, cgroupfs.partition_dir(tenant, slices))[-1]
    name = cgroupfs.partition_name(tenant)
    if not _isdir(path):
        raise exception.PartitionError(name=name, reason='does not exist')
    try:
        count = _resize(cpuset, path, cpus)
        if slices:
            _set_slice(tenant, cpus)
            return {'cgroups': count, 'exclusive': False}
    except OSError as e:
        raise _kernel_error(name, e, 'resize to %s'
                            % topology.format_cpu_list(cpus)) from None
    except processutils.ProcessExecutionError as e:
        raise exception.PartitionError(name=name, reason='systemd: %s' % (
            (e.stderr or e.description).strip())) from None
    return {'cgroups': count, 'exclusive': _try_exclusive(cpuset, path, cpus)}


@tenant_pin_pctxt.entrypoint
def remove_partition(root, tenant):
    """Remove the partition from every hierarchy, its empty children first,
    if no task is left in it anywhere; PartitionBusy otherwise. Kills
    nothing. Returns the names of the hierarchies it was removed from."""
    root, tenant = _root(root), _tenant(tenant)
    layout = _layout()
    plan = _partition_levels(layout, root, tenant)
    name = cgroupfs.partition_name(tenant)
    tasks = set()
    for hierarchy, levels in plan:
        tasks |= cgroupfs.subtree_tasks(hierarchy, levels[-1])
    if tasks:
        raise exception.PartitionBusy(name=name, tasks=sorted(tasks))
    present = [(h, levels) for h, levels in plan
               if os.path.isdir(levels[-1])]
    if layout.slices(root):
        # systemd removes the slice's cgroups when it stops (it holds no
        # task: checked above), and forgets its runtime settings.
        unit = cgroupfs.partition_slice(tenant)
        try:
            processutils.execute('systemctl', 'stop', unit)
            processutils.execute('systemctl', 'revert', unit)
        except processutils.ProcessExecutionError as e:
            raise exception.PartitionError(
                name=name, reason='systemd slice %s: %s' % (
                    unit, (e.stderr or e.description).strip())) from None
    removed = []
    for hierarchy, levels in present:
        path = levels[-1]
        if not _isdir(path):
            removed.append(hierarchy.name)
            continue
        for rel in reversed(cgroupfs.subtree(path)):
            try:
                _rmdir(os.path.join(path, rel) if rel else path)
            except OSError as e:
                if e.errno == errno.EBUSY:
                    raise exception.PartitionBusy(
                        name=name, tasks='(a task entered it)') from None
                raise _kernel_error(name, e, 'remove') from None
        removed.append(hierarchy.name)
    return removed


@tenant_pin_pctxt.entrypoint
def move_task(root, tenant, pid):
    """Move a process (all its threads) into the tenant's partition in
    every hierarchy. The partition must exist.

    Only a guest's process: a user-space process (never PID 1 or a kernel
    thread) that is already in libvirt's machine tree of the cpuset
    hierarchy (``<root>/machine``, or ``machine.slice`` where partitions
    are systemd slices); a host service cannot be pulled into a tenant's
    cores."""
    root, tenant = _root(root), _tenant(tenant)
    pid = _user_process(pid, 'PID')
    layout = _layout()
    cpuset = layout.require_cpuset()
    machine = _levels(cpuset, root, cgroupfs.MACHINE_SLICE
                      if layout.slices(root) else cgroupfs.MACHINE)[-1]
    if pid not in cgroupfs.subtree_tasks(cpuset, machine):
        _refuse('PID', pid, 'not in libvirt\'s machine tree %s' % machine)
    plan = _partition_levels(layout, root, tenant)
    name = cgroupfs.partition_name(tenant)
    for hierarchy, levels in plan:
        if not _isdir(levels[-1]):
            raise exception.PartitionError(
                name=name, reason='does not exist in %s' % hierarchy.name)
    for hierarchy, levels in plan:
        # Every file first: a refused one must not leave the task moved
        # in some hierarchies only.
        hostfs.check_file(os.path.join(levels[-1], 'cgroup.procs'),
                          cgroupfs.kinds(hierarchy))
    try:
        for hierarchy, levels in plan:
            cgroupfs.cgroup(hierarchy, levels[-1]).add_process(pid)
    except OSError as e:
        raise _kernel_error(name, e, 'move task %d' % pid) from None


@tenant_pin_pctxt.entrypoint
def ensure_housekeeping_cpuset(root, cpus):
    """Create or resize the cpuset ``<root>/housekeeping`` (cpuset
    hierarchy only) with ``cpus`` and its parent's memory nodes. Returns
    True if it was created."""
    root, cpus = _root(root), _cpus(cpus, 'housekeeping CPUs')
    cpuset = _layout().require_cpuset()
    path = _levels(cpuset, root, cgroupfs.HOUSEKEEPING)[-1]
    if not _isdir(os.path.dirname(path)):
        _refuse('cgroup root', root, 'does not exist')
    created = not _isdir(path)
    group = cgroupfs.cgroup(cpuset, path)
    try:
        if created:
            if cpuset.version == 2:
                _enable_v2_cpuset(os.path.dirname(path))
            _mkdir(path)
            if cpuset.version == 1:
                group.set_mems(cgroupfs.V1Cgroup(
                    os.path.dirname(path)).mems())
        if group.cpus() != cpus:
            group.set_cpus(cpus)
    except OSError as e:
        if created and _isdir(path):
            _rmdir(path)
        raise exception.HousekeepingError(
            reason='cpuset %s: %s' % (path, os.strerror(e.errno))) from None
    return created


def _housekeeping_paths(root):
    cpuset = _layout().require_cpuset()
    levels = _levels(cpuset, root, cgroupfs.HOUSEKEEPING)
    parent = _confined(cpuset, os.path.dirname(levels[-1]))
    return cpuset, parent, levels[-1]


@tenant_pin_pctxt.entrypoint
def confine_task(root, tid):
    """Move one task from the cgroup root ``<root>`` of the cpuset
    hierarchy into ``<root>/housekeeping``. A task anywhere else (a tenant
    partition, another service's cpuset) is left alone.

    :returns: ``"moved"``, ``"refused"`` (the kernel keeps it: a per-CPU
        kernel thread), ``"gone"`` (it exited) or ``"elsewhere"``.
    """
    root, tid = _root(root), _pid(tid)
    if tid == KTHREADD_PID:
        _refuse('task', tid, 'kthreadd stays: the kernel threads it creates '
                             'would be born in the housekeeping cpuset')
    cpuset, parent, path = _housekeeping_paths(root)
    if not _isdir(path):
        raise exception.HousekeepingError(reason='no cpuset %s' % path)
    if tid not in cgroupfs.cgroup(cpuset, parent).tasks():
        return 'elsewhere'
    try:
        cgroupfs.cgroup(cpuset, path).add_task(tid)
    except OSError as e:
        if e.errno == errno.ESRCH:
            return 'gone'
        if e.errno == errno.EINVAL:
            return 'refused'
        raise exception.HousekeepingError(
            reason='move task %d: %s' % (tid, os.strerror(e.errno))) from None
    return 'moved'


@tenant_pin_pctxt.entrypoint
def release_housekeeping_cpuset(root):
    """Move every task of ``<root>/housekeeping`` back to ``<root>`` and
    remove the cpuset. Tasks forked while this runs are caught by repeating
    until the cpuset is empty (a few passes at most).

    :returns: ``{"moved": count, "stuck": [tids the kernel kept]}``, and
        ``"error"`` when the kernel refused to remove the cpuset; the
        cpuset stays when a task is stuck or it could not be removed.
    """
    root = _root(root)
    cpuset, parent, path = _housekeeping_paths(root)
    if not _isdir(path):
        return {'moved': 0, 'stuck': []}
    back = cgroupfs.cgroup(cpuset, parent)
    group = cgroupfs.cgroup(cpuset, path)
    moved, stuck = 0, set()
    for _ in range(10):
        tasks = group.tasks() - stuck
        if not tasks:
            break
        for tid in sorted(tasks):
            try:
                back.add_task(tid)
                moved += 1
            except OSError as e:
                if e.errno != errno.ESRCH:
                    stuck.add(tid)
    result = {'moved': moved, 'stuck': sorted(stuck)}
    if not group.tasks():
        try:
            _rmdir(path)
        except OSError as e:
            # Tasks are back in <root>; the empty cpuset stays, and the
            # caller reports it as not restored.
            result['error'] = 'remove %s: %s' % (path, os.strerror(e.errno))
    return result


@tenant_pin_pctxt.entrypoint
def set_task_affinity(tid, cpus):
    """``sched_setaffinity`` of one movable kernel thread (never a user
    task, kthreadd or a per-CPU thread), used by housekeeping release to
    give a kernel thread back the affinity it had before it went through
    the housekeeping cpuset (the kernel restores user-set affinity by
    itself, not a kernel thread's). Returns False when the kernel refuses
    (a per-CPU kernel thread) or the task has exited."""
    tid = _movable_kernel_thread(tid, 'task')
    cpus = _cpus(cpus, 'task affinity')
    try:
        os.sched_setaffinity(tid, cpus)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ESRCH):
            return False
        raise
    return True


@tenant_pin_pctxt.entrypoint
def set_irq_affinity(irq, cpus):
    """Write ``/proc/irq/<irq>/smp_affinity_list``. Returns False when the
    kernel refuses to move this IRQ: EIO (the chip cannot set it) or EPERM
    (a managed or per-CPU IRQ: kernel 6.18 refuses those with EPERM even
    to full root, as virtio's ``req`` queues show)."""
    irq, cpus = _irq(irq), _cpus(cpus, 'IRQ affinity')
    try:
        hostfs.write_text(_host('/proc/irq/%d/smp_affinity_list' % irq),
                          topology.format_cpu_list(cpus), _PROC)
    except OSError as e:
        if e.errno in (errno.EIO, errno.EPERM):
            return False
        raise
    return True


@tenant_pin_pctxt.entrypoint
def set_default_irq_affinity(cpus):
    """Write ``/proc/irq/default_smp_affinity`` (the mask new IRQs get)."""
    cpus = _cpus(cpus, 'default IRQ affinity')
    hostfs.write_text(_host('/proc/irq/default_smp_affinity'),
                      cgroupfs.format_cpu_mask(cpus), _PROC)


@tenant_pin_pctxt.entrypoint
def set_workqueue_cpumask(cpus):
    """Write ``/sys/devices/virtual/workqueue/cpumask``, the CPUs unbound
    kernel work items may run on."""
    cpus = _cpus(cpus, 'workqueue cpumask')
    hostfs.write_text(_host('/sys/devices/virtual/workqueue/cpumask'),
                      cgroupfs.format_cpu_mask(cpus), _SYSFS)


@tenant_pin_pctxt.entrypoint
def set_systemd_allowed_cpus(unit, cpus):
    """``systemctl set-property --runtime <unit> AllowedCPUs=<cpus>`` for
    one of :data:`SYSTEMD_UNITS`; ``cpus`` None resets the property (the
    unit may use every CPU again) and undoes in the kernel what systemd
    leaves behind (:func:`_unconfine_unit_cgroup`, whose result it
    returns)."""
    if unit not in SYSTEMD_UNITS:
        _refuse('systemd unit', unit, 'not one of %s'
                % ', '.join(SYSTEMD_UNITS))
    value = '' if cpus is None else topology.format_cpu_list(
        _cpus(cpus, 'AllowedCPUs'))
    processutils.execute('systemctl', 'set-property', '--runtime', unit,
                         'AllowedCPUs=%s' % value)
    if cpus is None:
        return _unconfine_unit_cgroup(unit)
    return None


def _unconfine_unit_cgroup(unit):
    """Give a unit whose ``AllowedCPUs=`` was just reset its parent's CPUs
    back in the kernel. Returns what was written to its ``cpuset.cpus``
    (``''``: emptied), or None when nothing was left to undo.

    systemd writes ``cpuset.cpus`` only for a unit that sets
    ``AllowedCPUs=``: once the property is reset it leaves the file as last
    written. Where nothing else uses cpuset, systemd then disables the
    controller at the root and the file goes with it; but while another
    unit keeps cpuset enabled there (a tenant's slice with ``AllowedCPUs=``,
    on any compute host running guests), the unit would stay confined to
    the housekeeping CPUs. An empty ``cpuset.cpus`` (what the unit had
    before) means "the parent's CPUs" on cgroup v2; a kernel that refuses
    to empty the list of a cgroup with tasks (ENOSPC, cpuset's
    validate_change) gets the parent's ``cpuset.cpus.effective``: the same
    CPUs, fixed at today's online set.
    """
    cpuset = _layout().cpuset
    if cpuset is None or cpuset.version != 2:
        # AllowedCPUs= acts on cgroup v2 only: nothing was written.
        return None
    path = cpuset.path('/', unit, 'cpuset.cpus')
    try:
        if not hostfs.read_text(path, _CGROUP2).strip():
            return None
    except FileNotFoundError:
        # cpuset is disabled above the unit: it has every CPU.
        return None
    try:
        hostfs.write_text(path, '\n', _CGROUP2)
        return ''
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
    parent = topology.format_cpu_list(_cpus(hostfs.read_text(
        cpuset.path('/', 'cpuset.cpus.effective'), _CGROUP2).strip(),
        'cpuset.cpus.effective of the cgroup root'))
    hostfs.write_text(path, parent, _CGROUP2)
    return parent


# -- core scheduling -------------------------------------------------------
#
# Reading or changing another process's core-scheduling cookie needs ptrace
# read access to it (kernel/sched/core_sched.c): QEMU runs as its own user
# (libvirt-qemu, qemu), so only CAP_SYS_PTRACE opens it, and so does
# /proc/PID/exe. That capability lives in a context of its own, so that the
# daemon that writes cgroups never holds it. The daemon's euid 0 reads
# libvirt's root-owned status files. A root process (the CLI, the test host)
# calls the same functions in-process.
core_sched_pctxt = priv_context.PrivContext(
    'nova_tenant_pin',
    cfg_section='nova_tenant_pin_core_sched',
    pypath=__name__ + '.core_sched_pctxt',
    capabilities=[capabilities.CAP_SYS_PTRACE],
)

#: Where libvirt's QEMU driver keeps each running domain's PID file and
#: status XML (the live definition, metadata included).
LIBVIRT_QEMU_RUN = '/run/libvirt/qemu'
# The namespace of the metadata domain_xml.metadata_xml writes (not imported:
# the manager imports this module through cgroups).
_TP_NS = 'http://openstack.org/xmlns/nova-tenant-pin/1.0'
_DOMAIN_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}\Z')
_QEMU_BINARIES = ('qemu-system-', 'qemu-kvm')


def _read_run_file(name, suffix, limit):
    """A file of libvirt's run directory, opened without following a
    symlink, at most ``limit`` bytes."""
    path = _host(os.path.join(LIBVIRT_QEMU_RUN, name + suffix))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        _refuse('domain', name, 'no %s in %s (not running under libvirt?): '
                '%s' % (suffix, LIBVIRT_QEMU_RUN, os.strerror(e.errno)))
    with os.fdopen(fd, 'rb') as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        _refuse('domain', name, '%s%s is too large' % (name, suffix))
    return data


def _qemu_pid(value):
    """``value`` if it is a running QEMU process (by its executable)."""
    pid = _pid(value)
    try:
        exe = os.readlink(_host('/proc/%d/exe' % pid))
    except OSError as e:
        _refuse('PID', pid, 'cannot read its executable: %s'
                % os.strerror(e.errno))
    if not os.path.basename(exe).startswith(_QEMU_BINARIES):
        _refuse('PID', pid, 'not a QEMU process (%s)' % exe)
    return pid


def _libvirt_domain_qemu(name, key):
    """The PID of the QEMU of running libvirt domain ``name``, after
    checking that the PID is libvirt's (its PID file), the process a QEMU
    started for that domain (executable and ``-name``), and that the
    domain's recorded isolation key is ``key``."""
    from lxml import etree

    from nova_tenant_pin import audit

    if not isinstance(name, str) or not _DOMAIN_NAME_RE.match(name):
        _refuse('domain', name, 'not a libvirt domain name')
    key = _tenant(key)
    try:
        pid = int(_read_run_file(name, '.pid', 32).decode().strip())
    except ValueError:
        _refuse('domain', name, 'its PID file holds no PID')
    pid = _qemu_pid(pid)
    running, _uuid = audit.qemu_domain_of(pid, _host('/proc'))
    if running != name:
        _refuse('domain', name, 'QEMU %d runs domain %r' % (pid, running))
    try:
        root = etree.fromstring(_read_run_file(name, '.xml', 1 << 22),
                                etree.XMLParser(resolve_entities=False,
                                                no_network=True))
    except etree.XMLSyntaxError as e:
        _refuse('domain', name, 'unreadable status XML: %s' % e)
    domain = root if root.tag == 'domain' else root.find('./domain')
    meta = None if domain is None else domain.find(
        './metadata/{%s}instance' % _TP_NS)
    recorded = None if meta is None else meta.get('key')
    if recorded != key:
        _refuse('isolation key', key, 'domain %s records key %r' % (
            name, recorded))
    return pid


@core_sched_pctxt.entrypoint
def set_core_cookie(name, key, source=None):
    """Give every thread of the QEMU of libvirt domain ``name`` (and its
    vhost kernel workers) the core-scheduling cookie of isolation key
    ``key``: a new cookie when ``source`` is None, else the cookie the QEMU
    of domain ``source`` holds on its main thread. Both domains must record
    ``key`` in their tenant-pin metadata. The daemon holds the shared
    cookie only in a thread that exits before this returns.

    :returns: ``{"cookie": cookie, "threads": count}``
    """
    from nova_tenant_pin import coresched

    pid = _libvirt_domain_qemu(name, key)
    source_pid = None
    if source is not None:
        source_pid = _libvirt_domain_qemu(source, key)
    return coresched.assign(pid, coresched.Prctl(), source_pid,
                            proc_root=_host('/proc'))


@core_sched_pctxt.entrypoint
def clear_core_cookie(name, key, own_cookie=False):
    """Take the core-scheduling cookie away from every thread of the QEMU
    of libvirt domain ``name`` (and its vhost kernel workers): no cookie,
    or with ``own_cookie`` a new one of that QEMU's own (as libvirt's
    ``sched_core`` gives each QEMU). The domain must record isolation key
    ``key`` (``release`` clears the cookies before it drops the keys).

    :returns: ``{"cookie": cookie, "threads": count}``
    """
    from nova_tenant_pin import coresched

    pid = _libvirt_domain_qemu(name, key)
    if not isinstance(own_cookie, bool):
        _refuse('own_cookie', own_cookie, 'not a bool')
    return coresched.clear(pid, coresched.Prctl(), own_cookie,
                           proc_root=_host('/proc'))


@core_sched_pctxt.entrypoint
def read_libvirt_sched_core():
    """libvirt's ``sched_core`` from its qemu.conf (readable by root
    only), nothing else of the file."""
    from nova_tenant_pin import coresched

    return coresched.read_sched_core(_host(coresched.LIBVIRT_QEMU_CONF))


@core_sched_pctxt.entrypoint
def read_core_cookies(pid):
    """``{tid (str): cookie}`` of every thread of QEMU process ``pid``."""
    from nova_tenant_pin import coresched

    pid = _qemu_pid(pid)
    return {str(t): c for t, c in coresched.thread_cookies(
        pid, coresched.Prctl(), _host('/proc')).items()}


# Last, once both contexts exist: in privsep-helper, before the daemon is
# forked, no program the daemon executes may regain capabilities.
if _in_privsep_helper():
    harden_exec()
