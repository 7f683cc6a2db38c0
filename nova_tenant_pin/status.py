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

"""The host's map as an operator reads it: who holds each thread.

:func:`collect` joins what the kernel and libvirt say (the tenant
partitions' effective CPUs, the domains with their owner project, partition,
pins and isolation key) with the host's topology and housekeeping CPUs, and
returns plain data: per NUMA cell, each core's threads and their holder (an
isolation key, housekeeping, an instance with dedicated CPUs, or free), each
key's instances (in its partition, or confined by their pins only), vCPUs,
cores and stranded threads, the totals, and whether the host is isolated
(no core open to two keys, none of housekeeping open to a key, no guest
unconfined). It reads nothing itself, so it is tested with plain values;
``nova-tenant-pin status`` feeds it from the host and renders it
(:func:`render_table`, :func:`render_picture`).
"""

import collections
import math
import string

from nova_tenant_pin import topology as topo

HOUSEKEEPING = 'housekeeping'
DEDICATED = 'dedicated'
FREE = 'free'
CONFLICT = 'conflict'
TENANT = 'tenant'

#: A domain's confinement (``DomainInfo.confinement``) outside its key's
#: partition.
PINS = 'pins'

_SYMBOLS = {HOUSEKEEPING: '#', DEDICATED: '*', FREE: '.', CONFLICT: '!'}
_LETTERS = string.ascii_uppercase + string.ascii_lowercase + string.digits
# 256-colour foregrounds that stay readable on dark and light terminals.
_PALETTE = (33, 166, 34, 127, 37, 178, 61, 160, 28, 96, 31, 130)


def collect(host_topology, partitions, domains, housekeeping_cpus=(),
            ratio=1.0):
    """Build the status document.

    A domain belongs to its isolation key (``DomainInfo.isolation_key``:
    what tenant-pin recorded in its metadata, else the partition that holds
    it). A domain confined by its pins only (adopted, or its key changed
    while it ran; ``"confinement": "pins"``) holds the CPUs it may run on
    for its key and moves into its key's partition at its next hard
    reboot.

    :param partitions: ``{key: PartitionInfo}`` (cgroups.list_partitions).
    :param domains: ``domain_xml.DomainInfo`` of every domain on the host.
    :param housekeeping_cpus: CPUs reserved for the host; whole cores.
    :param ratio: the in-tenant allocation ratio, for stranded threads.
    """
    online = host_topology.online_cpus
    housekeeping = host_topology.whole_core_cpus(
        c for c in housekeeping_cpus if c in online)
    own = _own_cpus(partitions, domains, online)
    holders = collections.defaultdict(set)
    for key, cpus in own.items():
        for cpu in cpus:
            holders[cpu].add(key)
    tenants = {t: _tenant(info.effective_cpus & online)
               for t, info in partitions.items()}
    held = {t: set(cpus) for t, cpus in own.items()}
    dedicated = {}
    unconfined = []
    for dom in sorted(domains, key=lambda d: d.name):
        entry = {'uuid': dom.uuid, 'name': dom.name, 'vcpus': dom.vcpus,
                 'active': dom.active, 'project_id': dom.project_id}
        key = dom.isolation_key
        if key is not None:
            entry['confinement'] = dom.confinement
            entry['partition'] = dom.partition_key
            tenant = tenants.setdefault(key, _tenant(None))
            tenant['instances'].append(entry)
            tenant['vcpus'] += dom.vcpus
            if dom.partition_key is not None and dom.partition_key != key:
                tenants.setdefault(dom.partition_key, _tenant(None))
                hosts = tenants[dom.partition_key]['hosts']
                if key not in hosts:
                    hosts.append(key)
                    hosts.sort()
            if dom.active:
                used = _used_cpus(dom, partitions, online)
                held.setdefault(key, set()).update(used)
                for cpu in used:
                    holders[cpu].add(key)
        elif dom.dedicated:
            dedicated[dom.uuid] = sorted(
                c for cpus in dom.vcpu_pins.values() for c in cpus)
        else:
            entry['cpus'] = sorted(dom.all_cpus(online))
            unconfined.append(entry)
    dedicated_cpus = {c for cpus in dedicated.values() for c in cpus}

    cells = []
    violations = []
    for cell in host_topology.cells:
        cores = []
        for core in cell.cores:
            threads = []
            for cpu in core.cpus:
                owners = holders.get(cpu, set())
                if len(owners) > 1:
                    thread = {'cpu': cpu, 'holder': CONFLICT,
                              'tenants': sorted(owners)}
                elif owners:
                    thread = {'cpu': cpu, 'holder': TENANT,
                              'tenant': next(iter(owners))}
                elif cpu in housekeeping:
                    thread = {'cpu': cpu, 'holder': HOUSEKEEPING}
                elif cpu in dedicated_cpus:
                    thread = {'cpu': cpu, 'holder': DEDICATED}
                else:
                    thread = {'cpu': cpu, 'holder': FREE}
                threads.append(thread)
            cores.append({'core': core.id, 'threads': threads})
            violations += _core_violations(core, holders, housekeeping,
                                           dedicated)
        cells.append({'id': cell.id, 'cores': cores})
    for entry in unconfined:
        if entry['active']:
            violations.append(
                'instance %s (%s) is not confined: it may run on CPUs %s'
                % (entry['uuid'], entry['name'],
                   topo.format_cpu_list(entry['cpus'])))

    stranded_total = 0
    for key, data in tenants.items():
        data['cpus'] = sorted(held.get(key, ()))
        need = math.ceil(data['vcpus'] / ratio - 1e-9)
        data['cores'] = len(host_topology.cores_of(data['cpus']))
        data['stranded_threads'] = max(0, len(data['cpus']) - need)
        stranded_total += data['stranded_threads']
    holder_count = {}
    for cell in cells:
        for core in cell['cores']:
            for thread in core['threads']:
                holder_count[thread['holder']] = holder_count.get(
                    thread['holder'], 0) + 1
    usable = len(online) - len(housekeeping)
    return {
        'cells': cells,
        'tenants': {t: tenants[t] for t in sorted(tenants)},
        'dedicated': dedicated,
        'unconfined': unconfined,
        'housekeeping_cpus': sorted(housekeeping),
        'isolated': not violations,
        'violations': violations,
        'totals': {
            'threads': len(online),
            'threads_housekeeping': len(housekeeping),
            'threads_usable': usable,
            'threads_used': holder_count.get(TENANT, 0) +
            holder_count.get(DEDICATED, 0) + holder_count.get(CONFLICT, 0),
            'threads_stranded': stranded_total,
            'threads_free': holder_count.get(FREE, 0),
            'conflicts': holder_count.get(CONFLICT, 0),
        },
    }


def _tenant(partition_cpus):
    return {'cpus': [], 'instances': [], 'vcpus': 0, 'hosts': [],
            'partition': sorted(partition_cpus) if partition_cpus is not None
            else None}


def _own_cpus(partitions, domains, online):
    """``{key: cpus}`` each partition owns.

    A partition keeps the domains that started in it when their isolation
    key changes (isolation groups re-read, an adopted host): their pins
    confine them, and the partition holds their cores for them. Such a
    partition owns only the CPUs its own key's domains use; any other
    partition owns all its CPUs.
    """
    hosting = set()
    own_used = collections.defaultdict(set)
    for dom in domains:
        part = partitions.get(dom.partition_key) if dom.partition_key else None
        if part is None:
            continue
        if dom.isolation_key != dom.partition_key:
            hosting.add(dom.partition_key)
        else:
            own_used[dom.partition_key] |= dom.all_cpus(online) & \
                part.effective_cpus
    return {t: frozenset((own_used[t] if t in hosting
                          else info.effective_cpus) & online)
            for t, info in partitions.items()}


def _used_cpus(dom, partitions, online):
    """The CPUs a domain's threads may run on: its pins, within its
    partition when it is in one."""
    used = dom.all_cpus(online)
    part = partitions.get(dom.partition_key) if dom.partition_key else None
    if part is not None:
        used &= part.effective_cpus
    return used & online


def _core_violations(core, holders, housekeeping, dedicated):
    """What breaks isolation on one core: two keys on it (on one thread
    or on siblings), a key on a housekeeping core, a key beside an
    instance with dedicated CPUs."""
    keys = set()
    for cpu in core.cpus:
        keys |= holders.get(cpu, set())
    cpus = topo.format_cpu_list(core.cpus)
    found = []
    if len(keys) > 1:
        found.append('tenants %s share core %s'
                     % (' and '.join(sorted(keys)), cpus))
    if keys and set(core.cpus) & housekeeping:
        found.append('tenant %s holds housekeeping core %s'
                     % (' and '.join(sorted(keys)), cpus))
    if keys:
        for uuid, pinned in sorted(dedicated.items()):
            if set(core.cpus) & set(pinned):
                found.append('dedicated instance %s shares core %s with '
                             'tenant %s' % (uuid, cpus,
                                            ' and '.join(sorted(keys))))
    return found


def tenant_letters(doc):
    """A one-character mark for each tenant, in name order."""
    return {t: _LETTERS[i % len(_LETTERS)]
            for i, t in enumerate(sorted(doc['tenants']))}


def render_picture(doc, color=False):
    """One line a NUMA cell, one character a thread, cores in brackets:
    a tenant's letter, ``#`` housekeeping, ``*`` dedicated, ``.`` free,
    ``!`` a thread two tenants hold. With ``color``, ANSI colours too."""
    letters = tenant_letters(doc)
    colors = {t: _PALETTE[i % len(_PALETTE)]
              for i, t in enumerate(sorted(doc['tenants']))}

    def mark(thread):
        if thread['holder'] == TENANT:
            char = letters[thread['tenant']]
            code = '38;5;%d;1' % colors[thread['tenant']]
        else:
            char = _SYMBOLS[thread['holder']]
            code = '41;97;1' if thread['holder'] == CONFLICT else '2'
        return '\033[%sm%s\033[0m' % (code, char) if color else char

    lines = []
    for cell in doc['cells']:
        cores = ''.join('[%s]' % ''.join(mark(t) for t in core['threads'])
                        for core in cell['cores'])
        lines.append('cell %d: %s' % (cell['id'], cores or '(memory only)'))
    legend = ['%s=%s' % (letters[t], t) for t in sorted(letters)]
    legend += ['#=housekeeping', '*=dedicated', '.=free', '!=conflict']
    lines.append('  ' + '  '.join(legend))
    return '\n'.join(lines)


def _instance_label(entry):
    label = entry['name']
    if not entry['active']:
        label += ' (stopped)'
    if entry.get('confinement') == PINS:
        label += ' (pins only)'
    return label


def render_table(doc):
    """The tenants as a table, then the totals and whether the host is
    isolated, as text."""
    import prettytable
    table = prettytable.PrettyTable(['tenant', 'CPUs', 'cores', 'vCPUs',
                                     'stranded', 'instances'])
    table.align['instances'] = 'l'
    pins_only = False
    for key, data in doc['tenants'].items():
        pins_only = pins_only or any(i.get('confinement') == PINS
                                     for i in data['instances'])
        table.add_row([
            key, topo.format_cpu_list(data['cpus']) or '-',
            data['cores'], data['vcpus'], data['stranded_threads'],
            ', '.join(_instance_label(i) for i in data['instances']) or
            '-'])
    totals = doc['totals']
    lines = [table.get_string()]
    if pins_only:
        lines.append('(pins only): confined by its pins, outside its '
                     'tenant\'s partition; it moves into the partition at '
                     'its next hard reboot')
    for key, data in doc['tenants'].items():
        if data['hosts']:
            lines.append('partition of tenant %s holds instances of %s '
                         '(it keeps their cores for them until they leave)'
                         % (key, ', '.join(data['hosts'])))
    for uuid, cpus in sorted(doc['dedicated'].items()):
        lines.append('dedicated: instance %s on CPUs %s'
                     % (uuid, topo.format_cpu_list(cpus)))
    for entry in doc['unconfined']:
        lines.append('NOT CONFINED: instance %s (%s, project %s) may run '
                     'on CPUs %s' % (entry['uuid'], entry['name'],
                                     entry['project_id'] or 'unknown',
                                     topo.format_cpu_list(entry['cpus'])))
    lines.append('threads: %(threads)d in all, %(threads_housekeeping)d '
                 'housekeeping, %(threads_usable)d usable, %(threads_used)d '
                 'used, %(threads_stranded)d stranded, %(threads_free)d '
                 'free' % totals)
    if totals['conflicts']:
        lines.append('CONFLICT: %d threads are held by two tenants; run '
                     'nova-tenant-pin audit' % totals['conflicts'])
    if doc['isolated']:
        lines.append('host isolated')
    else:
        lines.append('host NOT isolated: %s' % '; '.join(doc['violations']))
    return '\n'.join(lines)
