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

"""``nova-tenant-pin audit``: one full check of this host from /proc."""

import argparse
import json
import sys

from nova_tenant_pin import audit
from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import conf
from nova_tenant_pin import coresched
from nova_tenant_pin import topology

HELP = """\
Read every QEMU thread on this host from /proc (where it may run and its
cgroup) and check that no physical core is open to two tenants' threads and
that no tenant thread may run on a housekeeping core. A guest's tenant is the
isolation key its libvirt domain records (read-only connection), else the
tenant partition its cgroup lies in; without libvirt, the partition alone.
Where core scheduling is active ([tenant_pin] core_scheduling not off and
the kernel offers it), it also reads each QEMU thread's core-scheduling cookie
and checks that every key's threads hold one cookie, shared with no other key.
Exit codes: 0 clean (host isolated), 1 a violation was found, 2 error (bad
option, unreadable topology).
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        'audit', help='check this host\'s invariants from /proc',
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--format', choices=['table', 'json'],
                        default='table', help='output format (default: '
                        'table; json for monitoring)')
    parser.add_argument('--housekeeping-cpus', metavar='CPUS',
                        help='CPU list reserved for housekeeping (default: '
                             '[tenant_pin] housekeeping_cpus, else what '
                             '[compute] cpu_shared_set leaves out)')
    parser.add_argument('--cgroup-prefix', default='/', metavar='PATH',
                        help='only guests whose cpuset cgroup lies under '
                             'PATH (default: /, every guest)')
    parser.add_argument('--libvirt-uri', default='qemu:///system',
                        help='libvirt connection the isolation keys are read '
                             'from (default qemu:///system)')
    parser.add_argument('--proc-root', default='/proc',
                        help=argparse.SUPPRESS)
    parser.add_argument('--sysfs-root', default='/',
                        help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def read_domains(uri):
    """The ``manager.DomainInfo`` of every domain libvirt at ``uri`` has,
    through a read-only connection. Raises what libvirt raises (and
    ImportError without its Python binding)."""
    import libvirt

    from nova_tenant_pin import manager

    # The caller reports a failure once; libvirt need not print it too.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.openReadOnly(uri)
    try:
        return [manager.parse_domain_xml(
            dom.XMLDesc(0), active=bool(dom.isActive()),
            persistent=bool(dom.isPersistent()))
            for dom in conn.listAllDomains()]
    finally:
        conn.close()


def _pid_tenants(args):
    """``(pid_tenants, source)``: the isolation keys of the host's guests
    from libvirt, or (None, 'cgroup') with a warning when libvirt cannot be
    read, so that the audit still runs on the partition names."""
    try:
        domains = read_domains(args.libvirt_uri)
    except Exception as e:
        sys.stderr.write('nova-tenant-pin audit: warning: cannot read the '
                         'domains from libvirt at %s (%s); each guest is '
                         'taken for the tenant of its cgroup partition\n'
                         % (args.libvirt_uri, e))
        return None, 'cgroup'
    return audit.DomainKeys(domains, args.proc_root), 'libvirt'


def run(args):
    try:
        host = topology.HostTopology.from_sysfs(args.sysfs_root)
    except topology.TopologyError as e:
        raise cli.UsageError(str(e))
    housekeeping = cli.housekeeping_cpus(args.housekeeping_cpus,
                                         host.online_cpus) or ()
    pid_tenants, source = _pid_tenants(args)
    cookies = coresched.host_state(conf.cfg.CONF.tenant_pin.core_scheduling)
    auditor = audit.HostAuditor(
        host, housekeeping, cgroup_prefix=args.cgroup_prefix,
        proc_root=args.proc_root, pid_tenants=pid_tenants,
        cookie_reader=coresched.direct_reader(args.proc_root)
        if cookies['active'] else None)
    report = auditor.audit()
    if args.format == 'json':
        doc = report.to_dict()
        doc['isolated'] = report.clean
        doc['tenants_from'] = source
        doc['core_scheduling'] = cookies
        json.dump(doc, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write('\n')
    else:
        import prettytable
        table = prettytable.PrettyTable(['tenant', 'may run on CPUs'])
        for tenant, cpus in sorted(report.tenants.items()):
            table.add_row([tenant, topology.format_cpu_list(cpus)])
        print(table)
        print('%d guests, %d threads checked in %.1f ms (tenants from %s)'
              % (report.guests, report.threads, report.seconds * 1000,
                 'libvirt\'s isolation keys' if source == 'libvirt' else
                 'cgroup partitions'))
        print(coresched.describe(cookies))
        for violation in report.violations:
            print('VIOLATION: %s' % violation)
        print('host isolated' if report.clean else
              'host NOT isolated: %d violation(s)' % len(report.violations))
    return cli.EXIT_OK if report.clean else cli.EXIT_PROBLEM
