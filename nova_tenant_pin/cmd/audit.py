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

from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import conf
from nova_tenant_pin import topology

HELP = """\
Read every QEMU thread on this host from /proc (where it may run and its
cgroup) and check that no physical core is open to two tenants' threads and
that no tenant thread may run on a housekeeping core. A guest's tenant is the
isolation key its libvirt domain records (read-only connection); with
--without-libvirt, the tenant partition its cgroup lies in. The options are
read and checked as nova-compute reads them (housekeeping CPUs must be set
and online). It fails rather than report a host it could not see: libvirt
unreachable, no cpuset cgroup hierarchy, a --cgroup-prefix that does not
exist. The JSON says what was checked ("checked").
Where core scheduling is active ([tenant_pin] core_scheduling not off and
the kernel offers it), it also reads each QEMU thread's core-scheduling cookie
and checks that every key's threads hold one cookie, shared with no other key.
Exit codes: 0 clean (host isolated), 1 a violation was found, 2 error (bad
option, unreadable topology, libvirt or cgroup tree not readable).
"""


class Audit(cli.Report):
    """Check this host's invariants from /proc."""

    _description = __doc__.splitlines()[0] + '\n\n' + HELP

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--housekeeping-cpus', metavar='CPUS',
                            help='CPU list reserved for housekeeping '
                                 '(default: [tenant_pin] housekeeping_cpus, '
                                 'else what [compute] cpu_shared_set leaves '
                                 'out)')
        parser.add_argument('--cgroup-prefix', default='/', metavar='PATH',
                            help='only guests whose cpuset cgroup lies under '
                                 'PATH (default: /, every guest)')
        parser.add_argument('--libvirt-uri', default='qemu:///system',
                            help='libvirt connection the isolation keys are '
                                 'read from (default qemu:///system)')
        parser.add_argument('--without-libvirt', action='store_true',
                            help='do not read libvirt: each guest\'s tenant '
                                 'is the tenant partition its cgroup lies in '
                                 '(for a host whose libvirtd is down)')
        parser.add_argument('--proc-root', default='/proc',
                            help=argparse.SUPPRESS)
        parser.add_argument('--sysfs-root', default='/',
                            help=argparse.SUPPRESS)
        return parser

    def report(self, parsed_args):
        self.audit = run(parsed_args)
        return self.audit.document(), self.audit.exit_code

    def render(self, doc, parsed_args):
        for line in self.audit.lines():
            print(line)


def read_domains(uri):
    """The ``domain_xml.DomainInfo`` of every domain libvirt at ``uri`` has,
    through a read-only connection. Raises what libvirt raises (and
    ImportError without its Python binding)."""
    import libvirt

    from nova_tenant_pin import domain_xml

    # The caller reports a failure once; libvirt need not print it too.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.openReadOnly(uri)
    try:
        return [domain_xml.parse_domain_xml(
            dom.XMLDesc(0), active=bool(dom.isActive()),
            persistent=bool(dom.isPersistent()))
            for dom in conn.listAllDomains()]
    finally:
        conn.close()


def _pid_keys(args):
    """``(pid_keys, source)``: the isolation keys of the host's guests
    from libvirt; with ``--without-libvirt``, (None, 'cgroup'): the
    partition names decide. Raises UsageError when libvirt cannot be
    read: an audit that saw no domain would claim a host it did not see."""
    from nova_tenant_pin import audit

    if args.without_libvirt:
        return None, 'cgroup'
    try:
        domains = read_domains(args.libvirt_uri)
    except Exception as e:
        raise cli.UsageError(
            'cannot read the domains from libvirt at %s (%s); start '
            'libvirtd, or give --without-libvirt to take each guest\'s '
            'tenant from its cgroup partition' % (args.libvirt_uri, e))
    return audit.DomainKeys(domains, args.proc_root), 'libvirt'


def check_cgroup_prefix(prefix, host_root='/'):
    """The directory of ``prefix`` in the host's cpuset hierarchy. Raises
    UsageError when no hierarchy has the cpuset controller or the prefix
    does not exist there: an audit under a path that is not there checks
    nothing."""
    import os

    from nova_tenant_pin import cgroupfs
    from nova_tenant_pin import exception

    try:
        cpuset = cgroupfs.detect_layout(host_root).require_cpuset(
            'the guests\' cgroups cannot be read')
    except (exception.TenantPinException, OSError) as e:
        raise cli.UsageError('cgroup tree: %s' % e)
    path = os.path.join(cpuset.mount, prefix.strip('/'))
    if not os.path.isdir(path):
        raise cli.UsageError('--cgroup-prefix %s: no such cgroup in the '
                             'cpuset hierarchy (%s)' % (prefix, path))
    return path


class HostAudit:
    """One audit's outcome: the report, where the tenants came from
    (``'libvirt'`` or ``'cgroup'``), the core-scheduling state and what was
    checked."""

    def __init__(self, report, source, cookies, checked):
        self.report = report
        self.source = source
        self.cookies = cookies
        self.checked = checked

    @property
    def exit_code(self):
        return cli.EXIT_OK if self.report.clean else cli.EXIT_PROBLEM

    def document(self):
        doc = self.report.to_dict()
        doc['isolated'] = self.report.clean
        doc['tenants_from'] = self.source
        doc['core_scheduling'] = self.cookies
        doc['checked'] = self.checked
        return doc

    def lines(self):
        """The report an operator reads."""
        import prettytable

        from nova_tenant_pin import coresched

        report = self.report
        table = prettytable.PrettyTable(['tenant', 'may run on CPUs'])
        for key, cpus in sorted(report.tenants.items()):
            table.add_row([key, topology.format_cpu_list(cpus)])
        lines = [str(table)]
        lines.append('%d guests, %d threads checked in %.1f ms (tenants from '
                     '%s)' % (report.guests, report.threads,
                              report.seconds * 1000,
                              'libvirt\'s isolation keys'
                              if self.source == 'libvirt' else
                              'cgroup partitions'))
        lines.append(coresched.describe(self.cookies))
        lines.extend('VIOLATION: %s' % v for v in report.violations)
        lines.append('host isolated' if report.clean else
                     'host NOT isolated: %d violation(s)'
                     % len(report.violations))
        return lines


def run(args):
    """Audit this host as ``args`` say: a :class:`HostAudit`."""
    from nova_tenant_pin import audit
    from nova_tenant_pin import coresched

    try:
        host = topology.HostTopology.from_sysfs(args.sysfs_root)
    except topology.TopologyError as e:
        raise cli.UsageError(str(e))
    housekeeping = cli.host_options(
        host, args.housekeeping_cpus,
        '--housekeeping-cpus')['housekeeping_cpus']
    cgroup_dir = check_cgroup_prefix(args.cgroup_prefix, args.sysfs_root)
    pid_keys, source = _pid_keys(args)
    cookies = coresched.host_state(conf.cfg.CONF.tenant_pin.core_scheduling)
    auditor = audit.HostAuditor(
        host, housekeeping, cgroup_prefix=args.cgroup_prefix,
        proc_root=args.proc_root, pid_keys=pid_keys,
        cookie_reader=coresched.direct_reader(args.proc_root)
        if cookies['active'] else None)
    report = auditor.audit()
    checked = {
        'config_files': cli.config_files(),
        'online_cpus': topology.format_cpu_list(host.online_cpus),
        'housekeeping_cpus': topology.format_cpu_list(housekeeping),
        'cgroup_prefix': args.cgroup_prefix,
        'cgroup_dir': cgroup_dir,
        'libvirt_uri': None if args.without_libvirt else args.libvirt_uri,
        'guests': report.guests,
        'threads': report.threads,
    }
    return HostAudit(report, source, cookies, checked)
