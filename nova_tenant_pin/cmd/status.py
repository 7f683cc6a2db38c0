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

"""``nova-tenant-pin status``: the host's map, read from the host.

Reads the tenant partitions from the cgroup tree and the domains from
libvirt (read-only connection); changes nothing.
"""

import os
import sys

from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import conf

HELP = """\
Show who holds each thread of this host: per NUMA cell, each core's threads
and their holder (tenant, housekeeping, dedicated, free); each tenant's
instances, vCPUs, cores and stranded threads; totals; whether the host is
isolated. A guest's tenant is its isolation key; guests marked "(pins only)"
are confined by their pins outside their tenant's partition and move into it
at their next hard reboot. Read-only.
Exit codes: 0 the host is isolated, 1 it is not (two tenants on one core, a
tenant on a housekeeping core, an unconfined guest), 2 error (libvirt or the
cgroup tree cannot be read).
"""


class Status(cli.Report):
    """Show the tenant core map of this host."""

    _description = __doc__.splitlines()[0] + '\n\n' + HELP

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--color', choices=['auto', 'always', 'never'],
                            default='auto', help='colour the picture (auto: '
                            'when stdout is a terminal and NO_COLOR is '
                            'unset)')
        parser.add_argument('--libvirt-uri', default='qemu:///system',
                            help='libvirt connection (default '
                                 'qemu:///system)')
        parser.add_argument('--housekeeping-cpus', metavar='CPUS',
                            help='CPU list reserved for housekeeping '
                                 '(default: [tenant_pin] housekeeping_cpus, '
                                 'else what [compute] cpu_shared_set leaves '
                                 'out)')
        return parser

    def report(self, parsed_args):
        return collect(parsed_args, read_host)

    def render(self, doc, parsed_args):
        from nova_tenant_pin import coresched
        from nova_tenant_pin import status

        print(status.render_picture(doc, color=_use_color(parsed_args.color,
                                                          sys.stdout)))
        print(status.render_table(doc))
        print(coresched.describe(doc['core_scheduling']))


def _use_color(choice, stream):
    if choice != 'auto':
        return choice == 'always'
    return (stream.isatty() and 'NO_COLOR' not in os.environ and
            os.environ.get('TERM', 'dumb') != 'dumb')


def read_host(args):
    """Topology, partitions and domains of this host."""
    import libvirt

    from nova_tenant_pin import cgroups
    from nova_tenant_pin import domain_xml
    from nova_tenant_pin import topology

    try:
        host = topology.HostTopology.from_sysfs()
    except topology.TopologyError as e:
        raise cli.UsageError('this host\'s topology: %s' % e)
    options = cli.host_options(host, args.housekeeping_cpus,
                               '--housekeeping-cpus')
    try:
        partitions = cgroups.get_partitions().list_partitions()
    except Exception as e:
        raise cli.UsageError('cannot read the tenant partitions: %s' % e)
    # The error is reported below, once; libvirt need not print it too.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        conn = libvirt.openReadOnly(args.libvirt_uri)
    except libvirt.libvirtError as e:
        raise cli.UsageError('cannot connect to libvirt at %s: %s'
                             % (args.libvirt_uri, e))
    try:
        domains = [domain_xml.parse_domain_xml(
            dom.XMLDesc(0), active=bool(dom.isActive()),
            persistent=bool(dom.isPersistent()))
            for dom in conn.listAllDomains()]
    finally:
        conn.close()
    return host, partitions, domains, options['housekeeping_cpus'], \
        options['ratio']


def collect(args, reader):
    """``(document, exit code)``: the host's map as ``reader(args)`` reads
    it, 0 when the host is isolated, else 1."""
    from nova_tenant_pin import coresched
    from nova_tenant_pin import status
    from nova_tenant_pin import topology

    host, partitions, domains, housekeeping, ratio = reader(args)
    doc = status.collect(host, partitions, domains, housekeeping, ratio)
    doc['core_scheduling'] = coresched.host_state(
        conf.cfg.CONF.tenant_pin.core_scheduling)
    doc['checked'] = {
        'config_files': cli.config_files(),
        'libvirt_uri': getattr(args, 'libvirt_uri', None),
        'cgroup_root': conf.cfg.CONF.tenant_pin.cgroup_root,
        'housekeeping_cpus': topology.format_cpu_list(housekeeping),
        'partitions': len(partitions),
        'domains': len(domains),
    }
    return doc, cli.EXIT_OK if doc['isolated'] else cli.EXIT_PROBLEM
