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

"""``nova-tenant-pin plan``: the allocator as a JSON filter.

Reads one JSON document (the ``plan`` contract of the design), writes one to
stdout. Imports neither Nova nor libvirt.
"""

import json
import sys

from nova_tenant_pin import allocator
from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import topology

HELP = """\
Plan tenant cores for one host. Input (FILE, or - for stdin):
  {"host": {"cells": [{"id": 0, "siblings": [[0, 4], [1, 5]]}]},
   "housekeeping_cpus": [0, 4],
   "instances": [{"uuid": "i1", "project_id": "p1", "vcpus": 3,
                  "cell": null, "mode": "float",
                  "placed_cells": [0]}],
   "current": {"p1": [1, 5]},
   "options": {"tenant_cpu_allocation_ratio": 1.0,
               "tenant_ratios": {"p2": 2.0}}}
Output: {"tenants", "instances", "unplaced", "stranded_cpus", "free_cpus",
"housekeeping_cpus", "moves", "warnings"}. Exit 0 on success (even with
unplaced instances), 2 on malformed or contradictory input.
"""

_TOP_KEYS = {'host', 'housekeeping_cpus', 'instances', 'current', 'options',
             'dedicated_cpus', 'static'}
_INSTANCE_KEYS = {'uuid', 'project_id', 'vcpus', 'cell', 'mode',
                  'placed_cells'}
_OPTION_KEYS = {'tenant_cpu_allocation_ratio', 'tenant_ratios'}


class Plan(cli.Command):
    """Plan tenant cores for a host (JSON in, JSON out)."""

    _description = __doc__.splitlines()[0] + '\n\n' + HELP
    needs_config = False

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('file', nargs='?', default='-', metavar='FILE|-',
                            help='the input document (default: stdin)')
        parser.add_argument('--host-topology', choices=['json', 'sysfs'],
                            default='json',
                            help='"sysfs": plan for this machine\'s CPUs and '
                                 'ignore the document\'s "host" (default: '
                                 'json, the document\'s "host")')
        parser.add_argument('--sysfs-root', default='/', help='root of the '
                            'sysfs tree to read with --host-topology sysfs')
        parser.add_argument('--indent', type=int, default=2,
                            help='JSON indent (default 2; 0 for one line)')
        return parser

    def take_action(self, parsed_args):
        return run(parsed_args)


def _cpu_list(value, what):
    if not isinstance(value, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0
            for c in value):
        raise cli.UsageError('%s must be a list of CPU numbers' % what)
    return value


def parse_request(doc, host=None):
    """Turn a ``plan`` input document into keyword arguments of
    :func:`allocator.plan`. Raises UsageError naming the bad field."""
    if not isinstance(doc, dict):
        raise cli.UsageError('the document must be a JSON object')
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise cli.UsageError('unknown top-level key(s): %s (known: %s)'
                             % (', '.join(sorted(unknown)),
                                ', '.join(sorted(_TOP_KEYS))))
    if host is None:
        if 'host' not in doc:
            raise cli.UsageError('"host" is missing (or use '
                                 '--host-topology sysfs)')
        try:
            host = topology.HostTopology.from_dict(doc['host'])
        except topology.TopologyError as e:
            raise cli.UsageError('host: %s' % e)
    instances = doc.get('instances', [])
    if not isinstance(instances, list):
        raise cli.UsageError('"instances" must be a list')
    requests = []
    for n, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise cli.UsageError('instances[%d] must be an object' % n)
        unknown = set(inst) - _INSTANCE_KEYS
        if unknown:
            raise cli.UsageError('instances[%d]: unknown key(s) %s'
                                 % (n, ', '.join(sorted(unknown))))
        for key in ('uuid', 'project_id', 'vcpus'):
            if key not in inst:
                raise cli.UsageError('instances[%d]: "%s" is missing'
                                     % (n, key))
        if not isinstance(inst['uuid'], str) or not inst['uuid']:
            raise cli.UsageError('instances[%d]: "uuid" must be a '
                                 'non-empty string' % n)
        cell = inst.get('cell')
        if cell is not None and (not isinstance(cell, int) or
                                 isinstance(cell, bool)):
            raise cli.UsageError('instances[%d]: "cell" must be a cell id '
                                 'or null' % n)
        placed = inst.get('placed_cells')
        if isinstance(placed, dict):
            try:
                placed = {int(c): v for c, v in placed.items()}
            except ValueError:
                raise cli.UsageError('instances[%d].placed_cells: keys must '
                                     'be cell ids' % n)
            _cpu_list(list(placed.values()),
                      'instances[%d].placed_cells values' % n)
        elif placed is not None:
            placed = tuple(_cpu_list(placed, 'instances[%d].placed_cells'
                                     % n))
        requests.append(allocator.InstanceRequest(
            uuid=inst['uuid'], key=inst['project_id'],
            vcpus=inst['vcpus'], cell=cell,
            mode=inst.get('mode') or allocator.FLOAT, placed_cells=placed))
    options = doc.get('options', {})
    if not isinstance(options, dict):
        raise cli.UsageError('"options" must be an object')
    unknown = set(options) - _OPTION_KEYS
    if unknown:
        raise cli.UsageError('options: unknown key(s) %s'
                             % ', '.join(sorted(unknown)))
    current = doc.get('current') or {}
    static = doc.get('static') or {}
    for name, value in (('current', current), ('static', static)):
        if not isinstance(value, dict):
            raise cli.UsageError('"%s" must be an object of tenant: '
                                 '[CPUs]' % name)
        for tenant, cpus in value.items():
            _cpu_list(cpus, '%s.%s' % (name, tenant))
    return dict(
        topology=host,
        instances=requests,
        housekeeping_cpus=_cpu_list(doc.get('housekeeping_cpus', []),
                                    '"housekeeping_cpus"'),
        dedicated_cpus=_cpu_list(doc.get('dedicated_cpus', []),
                                 '"dedicated_cpus"'),
        current=current, static=static,
        ratio=options.get('tenant_cpu_allocation_ratio', 1.0),
        tenant_ratios=_tenant_ratios(options.get('tenant_ratios', {})))


def _tenant_ratios(value):
    if not isinstance(value, dict):
        raise cli.UsageError('options.tenant_ratios must be an object of '
                             'tenant: ratio')
    return value


def run(args):
    try:
        if args.file == '-':
            text = sys.stdin.read()
        else:
            with open(args.file) as f:
                text = f.read()
    except OSError as e:
        raise cli.UsageError('cannot read %s: %s' % (args.file, e.strerror))
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise cli.UsageError('input is not JSON: %s' % e)
    host = None
    if args.host_topology == 'sysfs':
        try:
            host = topology.HostTopology.from_sysfs(args.sysfs_root)
        except topology.TopologyError as e:
            raise cli.UsageError('this host\'s topology: %s' % e)
    kwargs = parse_request(doc, host)
    try:
        result = allocator.plan(**kwargs)
    except (allocator.PlanError, topology.TopologyError) as e:
        raise cli.UsageError(str(e))
    out = result.to_dict()
    out['host'] = kwargs['topology'].to_dict()
    json.dump(out, sys.stdout, indent=args.indent or None, sort_keys=True)
    sys.stdout.write('\n')
    return cli.EXIT_OK
