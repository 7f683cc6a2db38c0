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

"""A host's CPU topology: NUMA cells, physical cores and their SMT threads.

A *core* here is one physical core as the kernel groups it: the set of online
logical CPUs that share its execution units (``thread_siblings_list``). SMT
side channels leak between the threads of one core, so the core is the unit
that a tenant is given whole. Cores may have 1 to 8 threads and need not all
have the same number (hybrid CPUs, or a sibling taken offline). A *cell* is a
NUMA node; a cell may hold memory only and no cores.

Three sources build the same :class:`HostTopology`:

* :meth:`HostTopology.from_sysfs` reads ``/sys`` (under a root path, so tests
  use a fake tree);
* :meth:`HostTopology.from_capabilities_xml` reads libvirt's capabilities XML;
* :meth:`HostTopology.from_dict` reads the ``host`` object of the ``plan``
  JSON contract.

This module is pure: it imports neither Nova nor libvirt. Contradictory input
(a CPU in two cores or two cells, siblings across cells) raises
:class:`TopologyError` with a message that names the CPUs involved.
"""

import dataclasses
import os
import re
import xml.etree.ElementTree as ElementTree

MAX_THREADS_PER_CORE = 8


class TopologyError(ValueError):
    """The description of a host's CPUs is malformed or contradictory."""


# Linux has at most 8192 CPUs (NR_CPUS); no list names a number above
# this, so no list can make a parser allocate without bound.
MAX_CPU = 65535
_CPU_NUMBER_RE = re.compile(r'[0-9]{1,5}\Z')


def parse_cpu_list(text, limit=MAX_CPU):
    """Parse a kernel CPU list such as ``"0-3,8,10-11"`` into a set of ints.

    This is the format of sysfs ``*list`` files and of cgroup
    ``cpuset.cpus``. An empty string is the empty set. Numbers are ASCII
    digits (``int()`` would also take other scripts' digits) and at most
    ``limit``, checked before a range is expanded.
    """
    cpus = set()
    text = text.strip()
    if not text:
        return cpus
    for part in text.split(','):
        part = part.strip()
        bounds = part.split('-', 1)
        if not all(_CPU_NUMBER_RE.match(n) for n in bounds):
            raise TopologyError('invalid CPU list %r: %r is not a CPU number '
                                'or range' % (text, part))
        low, high = int(bounds[0]), int(bounds[-1])
        if low > high:
            raise TopologyError('invalid CPU list %r: %r is not a CPU number '
                                'or range' % (text, part))
        if high > limit:
            raise TopologyError('invalid CPU list %r: %d is above %d'
                                % (text, high, limit))
        cpus.update(range(low, high + 1))
    return cpus


def format_cpu_list(cpus):
    """Format CPUs as a kernel CPU list (``{0, 1, 2, 5}`` -> ``"0-2,5"``)."""
    ranges = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ','.join(str(lo) if lo == hi else '%d-%d' % (lo, hi)
                    for lo, hi in ranges)


@dataclasses.dataclass(frozen=True, order=True)
class Core:
    """One physical core: its online threads, in one NUMA cell.

    ``id`` is the lowest CPU number of the core, which is stable and
    readable in logs.
    """

    id: int
    cell: int
    cpus: tuple

    @property
    def threads(self):
        return len(self.cpus)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One NUMA cell and the cores in it (none for a memory-only cell)."""

    id: int
    cores: tuple

    @property
    def cpus(self):
        return frozenset(cpu for core in self.cores for cpu in core.cpus)


class HostTopology:
    """NUMA cells, physical cores as sibling groups, and online CPUs."""

    def __init__(self, cells, offline_cpus=()):
        """Build a topology from ``{cell_id: [sibling groups]}``.

        :param cells: mapping of cell id to an iterable of sibling groups,
            each an iterable of online CPU numbers forming one core.
        :param offline_cpus: CPUs that exist but are offline; they are in no
            core and are never given to anyone.
        :raises TopologyError: on any contradiction.
        """
        cpu_cell = {}
        cpu_core = {}
        built = []
        for cell_id in sorted(cells):
            if not isinstance(cell_id, int) or cell_id < 0:
                raise TopologyError('invalid NUMA cell id %r' % (cell_id,))
            cores = []
            for group in cells[cell_id]:
                group = tuple(sorted(set(group)))
                if not group:
                    raise TopologyError('cell %d has a core with no CPUs'
                                        % cell_id)
                if len(group) > MAX_THREADS_PER_CORE:
                    raise TopologyError(
                        'core %s has %d threads; at most %d are supported'
                        % (format_cpu_list(group), len(group),
                           MAX_THREADS_PER_CORE))
                for cpu in group:
                    if not isinstance(cpu, int) or cpu < 0:
                        raise TopologyError('invalid CPU number %r' % (cpu,))
                    if cpu in cpu_cell and cpu_cell[cpu] != cell_id:
                        raise TopologyError(
                            'CPU %d is in NUMA cells %d and %d; siblings '
                            'cannot span cells' % (cpu, cpu_cell[cpu],
                                                   cell_id))
                    if cpu in cpu_core:
                        raise TopologyError(
                            'CPU %d is in two cores (%s and %s)'
                            % (cpu, format_cpu_list(cpu_core[cpu].cpus),
                               format_cpu_list(group)))
                    cpu_cell[cpu] = cell_id
                core = Core(id=group[0], cell=cell_id, cpus=group)
                for cpu in group:
                    cpu_core[cpu] = core
                cores.append(core)
            built.append(Cell(id=cell_id, cores=tuple(sorted(cores))))
        offline = frozenset(offline_cpus)
        both = offline & set(cpu_core)
        if both:
            raise TopologyError('CPUs %s are listed both online and offline'
                                % format_cpu_list(both))
        self.cells = tuple(built)
        self.offline_cpus = offline
        self._cpu_core = cpu_core
        self._cells_by_id = {cell.id: cell for cell in built}

    # -- queries -----------------------------------------------------------

    @property
    def cores(self):
        return tuple(core for cell in self.cells for core in cell.cores)

    @property
    def online_cpus(self):
        return frozenset(self._cpu_core)

    @property
    def max_threads_per_core(self):
        return max((core.threads for core in self.cores), default=0)

    def cell(self, cell_id):
        try:
            return self._cells_by_id[cell_id]
        except KeyError:
            raise TopologyError('no NUMA cell %r on this host (cells: %s)'
                                % (cell_id, ', '.join(
                                    str(c) for c in self._cells_by_id)))

    def core_of(self, cpu):
        """The core that holds ``cpu``; TopologyError if it is not online."""
        try:
            return self._cpu_core[cpu]
        except KeyError:
            raise TopologyError('CPU %r is not an online CPU of this host'
                                % (cpu,)) from None

    def cores_of(self, cpus):
        """The set of cores that hold any of ``cpus``."""
        return {self.core_of(cpu) for cpu in cpus}

    def whole_core_cpus(self, cpus):
        """All threads of every core that ``cpus`` touch."""
        return frozenset(c for core in self.cores_of(cpus)
                         for c in core.cpus)

    def __eq__(self, other):
        return (isinstance(other, HostTopology) and
                self.cells == other.cells and
                self.offline_cpus == other.offline_cpus)

    def __repr__(self):
        return '<HostTopology %s>' % self.to_dict()

    # -- serialisation -----------------------------------------------------

    def to_dict(self):
        """The ``host`` object of the ``plan`` JSON contract."""
        doc = {'cells': [{'id': cell.id,
                          'siblings': [list(core.cpus)
                                       for core in cell.cores]}
                         for cell in self.cells]}
        if self.offline_cpus:
            doc['offline'] = sorted(self.offline_cpus)
        return doc

    @classmethod
    def from_dict(cls, doc):
        """Build from ``{"cells": [{"id": 0, "siblings": [[0, 4], ...]}]}``.

        An optional ``"offline"`` list names CPUs that are offline; they are
        removed from any sibling group that lists them.
        """
        if not isinstance(doc, dict) or not isinstance(doc.get('cells'),
                                                       list):
            raise TopologyError('"host" must be an object with a "cells" '
                                'list')
        offline = doc.get('offline', [])
        if not isinstance(offline, list) or not all(
                _is_cpu(c) for c in offline):
            raise TopologyError('"host.offline" must be a list of CPU '
                                'numbers')
        offline = set(offline)
        cells = {}
        for cell in doc['cells']:
            if not isinstance(cell, dict) or not _is_cpu(cell.get('id')):
                raise TopologyError('each cell needs an integer "id" >= 0')
            siblings = cell.get('siblings', [])
            if not isinstance(siblings, list) or not all(
                    isinstance(g, list) and all(_is_cpu(c) for c in g)
                    for g in siblings):
                raise TopologyError(
                    'cell %d: "siblings" must be a list of lists of CPU '
                    'numbers' % cell['id'])
            if cell['id'] in cells:
                raise TopologyError('cell %d is listed twice' % cell['id'])
            groups = []
            for group in siblings:
                if len(set(group)) != len(group):
                    raise TopologyError('cell %d: core %s lists a CPU twice'
                                        % (cell['id'], group))
                online = [c for c in group if c not in offline]
                if online:
                    groups.append(online)
            cells[cell['id']] = groups
        return cls(cells, offline_cpus=offline - {
            c for gs in cells.values() for g in gs for c in g})

    @classmethod
    def from_sysfs(cls, root='/'):
        """Read the topology of the running host from sysfs under ``root``.

        Uses ``devices/system/cpu/online``, each online CPU's
        ``topology/thread_siblings_list``, and
        ``devices/system/node/node*/cpulist``. A host without NUMA nodes in
        sysfs is one cell, 0.
        """
        cpu_dir = os.path.join(root, 'sys/devices/system/cpu')
        node_dir = os.path.join(root, 'sys/devices/system/node')
        online = parse_cpu_list(_read(os.path.join(cpu_dir, 'online')))
        present_path = os.path.join(cpu_dir, 'present')
        present = (parse_cpu_list(_read(present_path))
                   if os.path.exists(present_path) else set(online))
        cell_of = {}
        node_ids = []
        if os.path.isdir(node_dir):
            for name in os.listdir(node_dir):
                if name.startswith('node') and name[4:].isdigit():
                    node_ids.append(int(name[4:]))
        for node in sorted(node_ids):
            cpulist = _read(os.path.join(node_dir, 'node%d' % node,
                                         'cpulist'))
            for cpu in parse_cpu_list(cpulist):
                if cpu in cell_of:
                    raise TopologyError('CPU %d is in NUMA nodes %d and %d'
                                        % (cpu, cell_of[cpu], node))
                cell_of[cpu] = node
        if not node_ids:
            node_ids = [0]
            cell_of = {cpu: 0 for cpu in online}
        groups = {}
        for cpu in sorted(online):
            path = os.path.join(cpu_dir, 'cpu%d' % cpu, 'topology',
                                'thread_siblings_list')
            siblings = frozenset(parse_cpu_list(_read(path)) & online)
            if cpu not in siblings:
                raise TopologyError('%s does not list CPU %d itself'
                                    % (path, cpu))
            groups.setdefault(siblings, None)
        cells = {node: [] for node in node_ids}
        for group in groups:
            nodes = {cell_of.get(cpu) for cpu in group}
            if None in nodes:
                raise TopologyError('CPUs %s are online but in no NUMA node'
                                    % format_cpu_list(
                                        c for c in group if c not in cell_of))
            if len(nodes) > 1:
                raise TopologyError('core %s spans NUMA nodes %s'
                                    % (format_cpu_list(group),
                                       sorted(nodes)))
            cells[nodes.pop()].append(group)
        return cls(cells, offline_cpus=present - online)

    @classmethod
    def from_capabilities_xml(cls, xml):
        """Read ``<host><topology><cells>`` of libvirt's capabilities XML.

        Each ``<cpu id= siblings=>`` names its core; a ``<cpu>`` without a
        ``siblings`` attribute is an offline CPU (libvirt prints only its
        id).
        """
        try:
            root = ElementTree.fromstring(xml)
        except ElementTree.ParseError as e:
            raise TopologyError('capabilities XML does not parse: %s' % e)
        cell_elems = root.findall('./host/topology/cells/cell')
        if not cell_elems and root.tag == 'topology':
            cell_elems = root.findall('./cells/cell')
        if not cell_elems:
            raise TopologyError('capabilities XML has no '
                                '<host><topology><cells>')
        cells = {}
        offline = set()
        for cell in cell_elems:
            try:
                cell_id = int(cell.get('id'))
            except (TypeError, ValueError):
                raise TopologyError('<cell> without a numeric id')
            groups = {}
            for cpu in cell.findall('./cpus/cpu'):
                try:
                    cpu_id = int(cpu.get('id'))
                except (TypeError, ValueError):
                    raise TopologyError('cell %d: <cpu> without a numeric id'
                                        % cell_id)
                siblings = cpu.get('siblings')
                if siblings is None:
                    offline.add(cpu_id)
                    continue
                group = frozenset(parse_cpu_list(siblings))
                if cpu_id not in group:
                    raise TopologyError('cell %d: CPU %d has siblings %r '
                                        'that do not include itself'
                                        % (cell_id, cpu_id, siblings))
                groups.setdefault(group, set()).add(cpu_id)
            if cell_id in cells:
                raise TopologyError('cell %d is listed twice' % cell_id)
            cells[cell_id] = groups
        listed = {c for groups in cells.values() for g in groups.values()
                  for c in g}
        result = {}
        for cell_id, groups in cells.items():
            result[cell_id] = []
            for group, seen in groups.items():
                online_group = group - offline
                missing = online_group - listed
                if missing:
                    raise TopologyError(
                        'CPU %d names siblings %s that no cell lists'
                        % (min(seen), format_cpu_list(missing)))
                outside = online_group - seen
                if outside:
                    raise TopologyError(
                        'CPUs %s are siblings of CPU %d in cell %d but are '
                        'listed in another cell' % (
                            format_cpu_list(outside), min(seen), cell_id))
                result[cell_id].append(online_group)
        return cls(result, offline_cpus=offline)


def _is_cpu(value):
    return isinstance(value, int) and not isinstance(value, bool) and \
        value >= 0


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise TopologyError('cannot read %s: %s' % (path, e.strerror))
