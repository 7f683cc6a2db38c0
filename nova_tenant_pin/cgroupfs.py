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

"""The cgroup filesystem as nova-tenant-pin sees it: layout, names, files.

This module knows where the cgroup hierarchies are mounted (read from
``/proc/self/mountinfo`` and ``/proc/cgroups``), how libvirt names a
partition's directory, and how to read and write the cpuset files of one
cgroup directory in cgroup v1 (through cgroupspy's typed files: the only
place in the project that uses cgroupspy) and in cgroup v2 (native).

It decides nothing and checks no privileges: :mod:`nova_tenant_pin.privsep`
validates every request and then writes through these classes, and
:mod:`nova_tenant_pin.cgroups` reads through them. Every cgroup file is
opened through :mod:`nova_tenant_pin.hostfs`: never through a symlink, and
only on a cgroup (v1) or cgroup2 (v2) file system.
"""

import dataclasses
import errno
import os
import re

from cgroupspy import controllers as cgroupspy_controllers
from cgroupspy import interfaces as cgroupspy_interfaces

from nova_tenant_pin import exception
from nova_tenant_pin import hostfs
from nova_tenant_pin import topology

# \Z, not $: "$" also matches before a trailing newline ("a\n").
TENANT_ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z')
# One component of a cgroup root (the subtree under every hierarchy that
# holds ``machine``, such as ``/hostB``): no "." or ".." and no "/".
ROOT_COMPONENT_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}\Z')
MAX_ROOT_DEPTH = 8

MACHINE = 'machine'
PARTITION_PREFIX = 'tenant-'
PARTITION_SUFFIX = '.partition'
HOUSEKEEPING = 'housekeeping'
# Where systemd is PID 1, libvirt registers each guest with machined in the
# systemd slice of its partition, under machine.slice.
MACHINE_SLICE = 'machine.slice'
SLICE_DASH = '\\x2d'
SLICE_SUFFIX = '.slice'
SLICE_PREFIX = MACHINE + '-' + PARTITION_PREFIX.replace('-', SLICE_DASH)

V1 = 'v1'
V2 = 'v2'
HYBRID = 'hybrid'
UNIFIED = 'unified'

# The cgroup v1 controllers libvirt places a domain in. A v1 hierarchy with
# none of them (such as ``name=systemd`` without systemd) is left alone.
LIBVIRT_V1_CONTROLLERS = frozenset([
    'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio',
    'net_cls', 'net_prio', 'perf_event', 'pids'])


def validate_tenant_id(tenant):
    if not isinstance(tenant, str) or not TENANT_ID_RE.match(tenant):
        raise exception.PartitionError(
            'invalid tenant id %r: use 1-64 letters, digits, "_" or "-"'
            % (tenant,))
    return tenant


def partition_name(tenant):
    """The libvirt partition of a tenant: ``/machine/tenant-<id>``."""
    return '/%s/%s%s' % (MACHINE, PARTITION_PREFIX, validate_tenant_id(tenant))


def partition_slice(tenant):
    """The systemd slice of the tenant's partition where libvirt registers
    guests with systemd-machined: libvirt names the slice of partition
    ``/machine/tenant-<id>`` by escaping each "-" as ``\\x2d`` and joining
    the path's parts with "-": ``machine-tenant\\x2d<id>.slice``, a child
    of ``machine.slice``."""
    escaped = (PARTITION_PREFIX + validate_tenant_id(tenant)).replace(
        '-', SLICE_DASH)
    return '%s-%s%s' % (MACHINE, escaped, SLICE_SUFFIX)


def partition_dir(tenant, slices=False):
    """The cgroup directory libvirt uses for the tenant's partition, relative
    to the cgroup root: ``machine/tenant-<id>.partition``, or with
    ``slices`` (systemd is PID 1 and guests go through machined)
    ``machine.slice/machine-tenant\\x2d<id>.slice``."""
    if slices:
        return '%s/%s' % (MACHINE_SLICE, partition_slice(tenant))
    return '%s/%s%s%s' % (MACHINE, PARTITION_PREFIX,
                          validate_tenant_id(tenant), PARTITION_SUFFIX)


def tenant_of_dir(name):
    """The tenant id of a ``tenant-<id>.partition`` directory name or a
    ``machine-tenant\\x2d<id>.slice`` one, or None for any other name."""
    if name.startswith(SLICE_PREFIX) and name.endswith(SLICE_SUFFIX):
        tenant = name[len(SLICE_PREFIX):-len(SLICE_SUFFIX)].replace(
            SLICE_DASH, '-')
    elif (name.startswith(PARTITION_PREFIX) and
            name.endswith(PARTITION_SUFFIX)):
        tenant = name[len(PARTITION_PREFIX):-len(PARTITION_SUFFIX)]
    else:
        return None
    return tenant if TENANT_ID_RE.match(tenant) else None


def normalize_root(root):
    """Check a cgroup root such as ``/`` or ``/hostB/test-1`` and return it
    in canonical form (leading ``/``, no trailing ``/``)."""
    if not isinstance(root, str):
        raise exception.InvalidArgument(what='cgroup root', value=root,
                                        reason='not a string')
    parts = [p for p in root.split('/') if p]
    if len(parts) > MAX_ROOT_DEPTH or not all(
            ROOT_COMPONENT_RE.match(p) for p in parts) or (
            root and not root.startswith('/')):
        raise exception.InvalidArgument(
            what='cgroup root', value=root,
            reason='use "/" or an absolute path of at most %d components '
                   'of letters, digits, "_", "-", "." or "@" (no "." or '
                   '"..")' % MAX_ROOT_DEPTH)
    return '/' + '/'.join(parts)


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy.

    ``name`` is the controllers of a v1 hierarchy joined by commas (such as
    ``cpu,cpuacct``) or ``unified`` for cgroup2; ``mount`` is the absolute
    mount point, already under the host root that the layout was read from.
    """

    name: str
    mount: str
    version: int
    controllers: frozenset

    def path(self, root='/', *parts):
        """The absolute path of ``<mount>/<root>/<parts...>``."""
        root = normalize_root(root)
        return os.path.join(self.mount, root.lstrip('/'), *parts).rstrip('/')


@dataclasses.dataclass(frozen=True)
class CgroupLayout:
    """The cgroup hierarchies libvirt uses on a host, and the mode."""

    mode: str
    hierarchies: tuple
    #: systemd is PID 1: libvirt places guests through machined, in slices.
    systemd: bool = False

    def slices(self, root='/'):
        """Whether tenant partitions are systemd slices: systemd is PID 1
        and the partitions live at the cgroup root, where machined puts
        them (a test-owned subtree below it is not systemd's)."""
        return self.systemd and normalize_root(root) == '/'

    @property
    def cpuset(self):
        """The hierarchy with the cpuset controller, or None."""
        for h in self.hierarchies:
            if 'cpuset' in h.controllers:
                return h
        return None

    def require_cpuset(self, why='tenant CPUs cannot be enforced'):
        """The cpuset hierarchy; CgroupLayoutError if none is mounted."""
        if self.cpuset is None:
            raise exception.CgroupLayoutError(
                reason='no mounted hierarchy has the cpuset controller, so '
                       '%s' % why)
        return self.cpuset

    def describe(self):
        """The layout's name as an operator knows it."""
        return {V1: 'cgroup v1 (legacy)', V2: 'cgroup v2 (unified)',
                HYBRID: 'hybrid cgroup v1 + v2'}.get(self.mode, self.mode)

    def require_supported(self):
        """The cpuset hierarchy of a layout the project can enforce on;
        CgroupLayoutError naming the layout and the fix otherwise.

        Refused: the cpuset controller on cgroup v1 while systemd is PID 1
        (a hybrid or legacy layout). libvirt then registers guests with
        machined in systemd slices, systemd does not manage the v1 cpuset
        controller, and the project writes v1 cpuset directories only where
        no systemd places guests: tenant CPUs would not be enforced.
        """
        cpuset = self.require_cpuset()
        if self.systemd and cpuset.version == 1:
            raise exception.CgroupLayoutError(
                reason='%s with systemd as PID 1 is not supported: the '
                       'cpuset controller is on cgroup v1 (%s), where '
                       'systemd does not manage it and libvirt places '
                       'guests in systemd slices, so tenant CPUs cannot be '
                       'enforced. Boot the host with '
                       'systemd.unified_cgroup_hierarchy=1 on the kernel '
                       'command line (cgroup v2 only), then start libvirtd '
                       'and nova-compute again.'
                       % (self.describe(), cpuset.mount))
        return cpuset

    def ordered(self):
        """The hierarchies with the cpuset one first: a partition gets its
        CPUs before it exists anywhere else."""
        return sorted(self.hierarchies,
                      key=lambda h: ('cpuset' not in h.controllers, h.name))


def _unescape_mountinfo(field):
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """``[(mount_point, fs_root, fstype, super_options)]`` of cgroup mounts
    in ``/proc/self/mountinfo`` text."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if ' - ' not in line or len(fields) < 7:
            continue
        sep = fields.index('-')
        if sep + 3 > len(fields):
            continue
        fstype = fields[sep + 1]
        if fstype not in ('cgroup', 'cgroup2'):
            continue
        super_opts = fields[sep + 3] if sep + 3 < len(fields) else ''
        mounts.append((_unescape_mountinfo(fields[4]),
                       _unescape_mountinfo(fields[3]), fstype,
                       frozenset(super_opts.split(','))))
    return mounts


def parse_proc_cgroups(text):
    """``{controller: (hierarchy_id, enabled)}`` from ``/proc/cgroups``."""
    result = {}
    for line in text.splitlines():
        if line.startswith('#') or not line.strip():
            continue
        fields = line.split()
        if len(fields) >= 4:
            result[fields[0]] = (int(fields[1]), fields[3] == '1')
    return result


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        if default is None:
            raise
        return default


def host_path(host_root, path):
    """``path`` (absolute on the host) under ``host_root``."""
    return os.path.join(host_root, path.lstrip('/'))


def detect_layout(host_root='/'):
    """Read the host's cgroup layout: v1, v2 (unified only) or hybrid.

    Only hierarchies libvirt uses are kept: v1 ones with a controller of
    :data:`LIBVIRT_V1_CONTROLLERS` that ``/proc/cgroups`` shows enabled, and
    the cgroup2 mount. A hierarchy mounted twice (a bind mount of a subtree)
    is kept once, at its mount of the filesystem root.
    """
    mountinfo = _read(host_path(host_root, '/proc/self/mountinfo'))
    enabled = {name for name, (_, on) in parse_proc_cgroups(
        _read(host_path(host_root, '/proc/cgroups'), '')).items() if on}
    hierarchies = []
    seen = set()
    has_v1 = has_v2 = False
    for mount, fs_root, fstype, opts in parse_mountinfo(mountinfo):
        if fs_root != '/':
            continue
        if fstype == 'cgroup2':
            if UNIFIED in seen:
                continue
            seen.add(UNIFIED)
            has_v2 = True
            path = host_path(host_root, mount)
            controllers = frozenset(_read(os.path.join(
                path, 'cgroup.controllers'), '').split())
            hierarchies.append(Hierarchy(UNIFIED, path, 2, controllers))
            continue
        controllers = frozenset(o for o in opts if o in enabled or (
            not enabled and o in LIBVIRT_V1_CONTROLLERS))
        if not controllers & LIBVIRT_V1_CONTROLLERS:
            continue
        has_v1 = True
        name = ','.join(sorted(controllers))
        if name in seen:
            continue
        seen.add(name)
        hierarchies.append(Hierarchy(name, host_path(host_root, mount), 1,
                                     controllers))
    if not hierarchies:
        raise exception.CgroupLayoutError(
            reason='no cgroup hierarchy is mounted under %s' % host_root)
    if has_v1 and has_v2:
        mode = HYBRID
    elif has_v1:
        mode = V1
    else:
        mode = V2
    systemd = os.path.isdir(host_path(host_root, '/run/systemd/system'))
    return CgroupLayout(mode, tuple(hierarchies), systemd)


class _CgroupspyNode:
    """The part of a cgroupspy ``Node`` that its controllers use."""

    def __init__(self, path):
        self.full_path = os.fsencode(path)


class _CpusetController(cgroupspy_controllers.CpuSetController):
    # cgroupspy predates cpuset.effective_cpus; same codec as cpuset.cpus.
    effective_cpus = cgroupspy_interfaces.CommaDashSetFile(
        'cpuset.effective_cpus', readonly=True)

    # cgroupspy's codecs, hostfs's way of opening the file.
    def get_property(self, filename):
        return hostfs.read_text(os.fsdecode(self.filepath(filename)),
                                V1_KINDS).strip()

    def set_property(self, filename, value):
        hostfs.write_text(os.fsdecode(self.filepath(filename)), str(value),
                          V1_KINDS)


V1_KINDS = frozenset([hostfs.CGROUP])
V2_KINDS = frozenset([hostfs.CGROUP2])


class V1Cgroup:
    """The files of one cgroup v1 directory, read and written through
    cgroupspy's typed file descriptors (the one wrapper of cgroupspy)."""

    version = 1

    def __init__(self, path):
        self.path = path
        self._ctl = _CpusetController(_CgroupspyNode(path))

    def cpus(self):
        return frozenset(self._ctl.cpus)

    def set_cpus(self, cpus):
        self._ctl.cpus = set(cpus)

    def mems(self):
        return frozenset(self._ctl.mems)

    def set_mems(self, mems):
        self._ctl.mems = set(mems)

    def effective_cpus(self):
        return frozenset(self._ctl.effective_cpus)

    def exclusive(self):
        return self._ctl.cpu_exclusive

    def set_exclusive(self, on):
        """``cpuset.cpu_exclusive``; the kernel refuses (EINVAL) unless the
        parent is exclusive and no sibling overlaps."""
        self._ctl.cpu_exclusive = bool(on)

    def tasks(self):
        """Thread ids (v1 ``tasks``)."""
        return frozenset(self._ctl.tasks)

    def add_task(self, tid):
        """Move one thread (v1 ``tasks`` takes one id a write)."""
        self._ctl.tasks = [tid]

    def add_process(self, pid):
        """Move all threads of a process (``cgroup.procs``)."""
        self._ctl.procs = [pid]


class V2Cgroup:
    """The files of one cgroup v2 directory, written natively."""

    version = 2

    def __init__(self, path):
        self.path = path

    def _get(self, name):
        return hostfs.read_text(os.path.join(self.path, name),
                                V2_KINDS).strip()

    def _set(self, name, value):
        hostfs.write_text(os.path.join(self.path, name), value, V2_KINDS)

    def cpus(self):
        return frozenset(topology.parse_cpu_list(self._get('cpuset.cpus')))

    def set_cpus(self, cpus):
        self._set('cpuset.cpus', topology.format_cpu_list(cpus))

    def mems(self):
        return frozenset(topology.parse_cpu_list(self._get('cpuset.mems')))

    def set_mems(self, mems):
        self._set('cpuset.mems', topology.format_cpu_list(mems))

    def effective_cpus(self):
        return frozenset(topology.parse_cpu_list(
            self._get('cpuset.cpus.effective')))

    def exclusive(self):
        """True when ``cpuset.cpus.partition`` reads ``root`` (a valid
        partition root: its CPUs belong to no sibling)."""
        try:
            return self._get('cpuset.cpus.partition') == 'root'
        except FileNotFoundError:
            return False

    def set_exclusive(self, on):
        self._set('cpuset.cpus.partition', 'root' if on else 'member')

    def tasks(self):
        """Thread ids in a threaded cgroup, else process ids."""
        try:
            text = self._get('cgroup.threads')
        except (FileNotFoundError, OSError):
            text = self._get('cgroup.procs')
        return frozenset(int(t) for t in text.split())

    def add_task(self, tid):
        self._set('cgroup.procs', str(int(tid)))

    add_process = add_task

    def controllers(self):
        return frozenset(self._get('cgroup.controllers').split())

    def subtree_control(self):
        return frozenset(self._get('cgroup.subtree_control').split())

    def enable_controller(self, name):
        self._set('cgroup.subtree_control', '+' + name)


def kinds(hierarchy):
    """The file system kinds a directory of ``hierarchy`` may be on."""
    return V1_KINDS if hierarchy.version == 1 else V2_KINDS


def cgroup(hierarchy, path):
    """The file accessor of one directory of ``hierarchy``."""
    return V1Cgroup(path) if hierarchy.version == 1 else V2Cgroup(path)


def subtree(path):
    """``[relpath]`` of ``path`` and its descendant directories, parents
    before children (``''`` is ``path`` itself). Symlinks are not
    followed."""
    result = []
    for dirpath, dirnames, _ in os.walk(path, followlinks=False):
        # os.walk lists a symlink to a directory among dirnames without
        # entering it; cgroupfs has no symlinks, so one is skipped outright.
        dirnames[:] = sorted(d for d in dirnames
                             if not os.path.islink(os.path.join(dirpath, d)))
        rel = os.path.relpath(dirpath, path)
        result.append('' if rel == '.' else rel)
    return result


def subtree_tasks(hierarchy, path):
    """All task ids in ``path`` and its descendants (empty if missing)."""
    tasks = set()
    for rel in subtree(path):
        try:
            tasks |= cgroup(hierarchy, os.path.join(path, rel)).tasks()
        except FileNotFoundError:
            continue
    return frozenset(tasks)


def plan_cpuset_resize(current, new_cpus):
    """The ordered cpuset writes that move a partition to ``new_cpus``.

    ``current`` maps each directory of the partition's subtree (``''`` is the
    partition, ``'qemu-1-a.libvirt-qemu'`` a domain, ``'.../vcpu0'`` a
    vCPU) to its ``cpuset.cpus``. A directory whose CPUs equal its parent's
    *follows* its parent (a floating domain or vCPU); a narrower one (a
    strict pin) keeps the CPUs it has that remain, or follows its parent if
    none remain.

    The writes keep the cgroup v1 rule that a child's CPUs are a subset of
    its parent's at every step, and never write an empty set: first widen
    top-down to old | final, then shrink bottom-up to final. Returns
    ``[(relpath, frozenset)]``; an unchanged directory gets no write.
    """
    new_cpus = frozenset(new_cpus)
    if not new_cpus:
        raise exception.PartitionError('a partition cannot have no CPUs')
    paths = sorted(current, key=lambda p: (p.count('/') if p else -1, p))
    final = {}
    for path in paths:
        if path == '':
            final[path] = new_cpus
            continue
        parent = os.path.dirname(path)
        while parent not in current:
            # A v2 directory with an empty cpuset.cpus inherits: it is not
            # in the plan, and its children follow its nearest ancestor.
            parent = os.path.dirname(parent)
        cpus = frozenset(current[path])
        if cpus == frozenset(current[parent]):
            final[path] = final[parent]
        else:
            final[path] = (cpus & final[parent]) or final[parent]
    widened = {p: frozenset(current[p]) | final[p] for p in paths}
    writes = [(p, widened[p]) for p in paths
              if widened[p] != frozenset(current[p])]
    writes += [(p, final[p]) for p in reversed(paths)
               if final[p] != widened[p]]
    return writes


def format_cpu_mask(cpus):
    """The kernel's hex CPU mask (``/proc/irq/default_smp_affinity``,
    the workqueue ``cpumask``): 32-bit groups, most significant first,
    joined by commas (``{0, 1}`` -> ``"3"``, ``{32}`` -> ``"1,00000000"``).
    """
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    groups = []
    while True:
        groups.append(value & 0xffffffff)
        value >>= 32
        if not value:
            break
    groups.reverse()
    return ','.join(['%x' % groups[0]] + ['%08x' % g for g in groups[1:]])


def parse_cpu_mask(text):
    """The CPUs of a kernel hex CPU mask (inverse of format_cpu_mask)."""
    digits = text.strip().replace(',', '')
    try:
        value = int(digits, 16) if digits else 0
    except ValueError:
        raise exception.InvalidArgument(what='CPU mask', value=text,
                                        reason='not a hex mask') from None
    return frozenset(bit for bit in range(value.bit_length())
                     if value >> bit & 1)


def is_refused(err):
    """True for the errors by which the kernel refuses a write it
    understood (as opposed to a missing file)."""
    return err.errno in (errno.EINVAL, errno.EBUSY, errno.ENOSPC,
                         errno.EACCES, errno.EPERM, errno.EIO)
