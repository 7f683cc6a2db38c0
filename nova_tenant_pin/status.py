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
partitions' effective CPUs, the domains with their owner project, partition
and pins) with the host's topology and housekeeping CPUs, and returns plain
data: per NUMA cell, each core's threads and their holder (a tenant,
housekeeping, an instance with dedicated CPUs, or free), each tenant's
instances, vCPUs, cores and stranded threads, and the totals. It reads
nothing itself, so it is tested with plain values; ``nova-tenant-pin
status`` feeds it from the host and renders it (:func:`render_table`,
:func:`render_picture`).
"""

import math
import string

from nova_tenant_pin import topology as topo

HOUSEKEEPING = 'housekeeping'
DEDICATED = 'dedicated'
FREE = 'free'
CONFLICT = 'conflict'
TENANT = 'tenant'

_SYMBOLS = {HOUSEKEEPING: '#', DEDICATED: '*', FREE: '.', CONFLICT: '!'}
_LETTERS = string.ascii_uppercase + string.ascii_lowercase + string.digits
# 256-colour foregrounds that stay readable on dark and light terminals.
_PALETTE = (33, 166, 34, 127, 37, 178, 61, 160, 28, 96, 31, 130)


def collect(host_topology, partitions, domains, housekeeping_cpus=(),
            ratio=1.0):
    """Build the status document.

    :param partitions: ``{tenant: PartitionInfo}`` (cgroups.list_partitions).
    :param domains: ``manager.DomainInfo`` of every domain on the host.
    :param housekeeping_cpus: CPUs reserved for the host; whole cores.
    :param ratio: the in-tenant allocation ratio, for stranded threads.
    """
    online = host_topology.online_cpus
    housekeeping = host_topology.whole_core_cpus(
        c for c in housekeeping_cpus if c in online)
    holders = {}
    for tenant, info in partitions.items():
        for cpu in info.effective_cpus & online:
            holders.setdefault(cpu, set()).add(tenant)
    tenants = {t: {'cpus': sorted(info.effective_cpus & online),
                   'instances': [], 'vcpus': 0}
               for t, info in partitions.items()}
    dedicated = {}
    unconfined = []
    for dom in sorted(domains, key=lambda d: d.name):
        entry = {'uuid': dom.uuid, 'name': dom.name, 'vcpus': dom.vcpus,
                 'active': dom.active, 'project_id': dom.project_id}
        if dom.tenant is not None:
            tenant = tenants.setdefault(dom.tenant, {
                'cpus': [], 'instances': [], 'vcpus': 0})
            tenant['instances'].append(entry)
            tenant['vcpus'] += dom.vcpus
        elif dom.dedicated:
            dedicated[dom.uuid] = sorted(
                c for cpus in dom.vcpu_pins.values() for c in cpus)
        else:
            entry['cpus'] = sorted(dom.all_cpus(online))
            unconfined.append(entry)
    dedicated_cpus = {c for cpus in dedicated.values() for c in cpus}

    cells = []
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
        cells.append({'id': cell.id, 'cores': cores})

    stranded_total = 0
    for tenant, data in tenants.items():
        held = len(data['cpus'])
        need = math.ceil(data['vcpus'] / ratio - 1e-9)
        data['cores'] = len(host_topology.cores_of(data['cpus']))
        data['stranded_threads'] = max(0, held - need)
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


def render_table(doc):
    """The tenants as a table, then the totals, as text."""
    import prettytable
    table = prettytable.PrettyTable(['tenant', 'CPUs', 'cores', 'vCPUs',
                                     'stranded', 'instances'])
    table.align['instances'] = 'l'
    for tenant, data in doc['tenants'].items():
        table.add_row([
            tenant, topo.format_cpu_list(data['cpus']) or '-',
            data['cores'], data['vcpus'], data['stranded_threads'],
            ', '.join('%s%s' % (i['name'], '' if i['active'] else
                                ' (stopped)')
                      for i in data['instances']) or '-'])
    totals = doc['totals']
    lines = [table.get_string()]
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
        lines.append('CONFLICT: %d threads are in two tenants\' partitions; '
                     'run nova-tenant-pin audit' % totals['conflicts'])
    return '\n'.join(lines)
