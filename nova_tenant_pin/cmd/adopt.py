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

"""``nova-tenant-pin adopt``: put the guests of a running host under
tenant-pin, live.

Builds the manager nova-compute would build on this host (the ``[tenant_pin]``
options as the driver reads them, the sysfs topology, the real cgroup
partitions, libvirt) and runs its reconcile: guests started without
tenant-pin are pinned to their tenant's whole cores without a restart (they
move into their tenant's partition at their next hard reboot), and drift is
repaired. Every step keeps the host safe, so an interrupted run is finished
by running the command again.

A dry run is the manager's own (its executor built with ``write=False``,
over a read-only libvirt connection, which writes nothing): it prints the
writes adopt would make and, from the same planned transition, whether the
host would be isolated. :func:`read_host`, :class:`Host` and
:func:`make_manager` serve ``release`` as well.
"""

import dataclasses
import socket
import sys

from nova_tenant_pin.cmd import main as cli

HELP = """\
Confine every guest of this host to its tenant's whole cores, live, as
nova-compute with the tenant-pin driver does when it starts: guests started
without tenant-pin are pinned to their tenant's cores (they move into the
tenant's partition at their next hard reboot), partitions are created or
repaired. Reads the [tenant_pin] options from nova.conf. Running it again is
safe: an interrupted run is finished, a finished one does nothing. Run it
while nova-compute is stopped or still runs the stock driver.
Exit codes: 0 done and the host is isolated, 1 the host is not isolated
(tenants that do not fit on whole cores are named) or a write failed, 2 error
(options, libvirt or the cgroup tree), 130 interrupted.
"""

SAFE_STATE = ('the host is in a safe intermediate state (no core is open to '
              'two tenants); run "nova-tenant-pin %s" again to finish')


class Adopt(cli.Command):
    """Confine the guests of this host to their tenants' whole cores, live."""

    _description = __doc__.splitlines()[0] + '\n\n' + HELP

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--dry-run', action='store_true',
                            help='print the writes adopt would make, one a '
                                 'line, and whether the host would be '
                                 'isolated; change nothing')
        add_common_arguments(parser)
        parser.add_argument('--housekeeping-cpus', metavar='CPUS',
                            help='CPU list reserved for housekeeping '
                                 '(default: [tenant_pin] housekeeping_cpus, '
                                 'else what [compute] cpu_shared_set and '
                                 'cpu_dedicated_set leave out)')
        return parser

    def take_action(self, parsed_args):
        parsed_args.progress = show_progress(self.app.options)
        return run(parsed_args)


def show_progress(app_options, stream=None):
    """Whether ``adopt`` and ``release`` show each write on stderr as
    ``[3/7] ...``: when it is a terminal and no log record goes there
    already (``-v``, ``--debug``)."""
    stream = stream or sys.stderr
    return (stream.isatty() and not app_options.debug and
            app_options.verbose_level < 2)


class StepLog:
    """The executor's ``on_step`` for ``adopt`` and ``release``: each write,
    as it is made, logged through oslo.log at INFO with the instance
    (``[instance: UUID]``, as nova-compute logs) and its tenant, and with
    ``progress`` shown on stderr as ``[3/7] pin vCPU 0 of instance X of
    tenant Y to CPUs 8-11``."""

    def __init__(self, command, progress=False, stream=None):
        from oslo_log import log

        self.command = command
        self.progress = progress
        self.stream = stream or sys.stderr
        self.log = log.getLogger('nova_tenant_pin.cmd.%s' % command)

    def __call__(self, step, position, total):
        line = '[%d/%d] %s' % (position, total, step.describe(with_key=True))
        self.log.info('%s: %s', self.command, line,
                      instance_uuid=step.uuid)
        if self.progress:
            self.stream.write(line + '\n')
            self.stream.flush()


def add_common_arguments(parser):
    """The options ``adopt`` and ``release`` share."""
    parser.add_argument('--libvirt-uri', default='qemu:///system',
                        metavar='URI',
                        help='libvirt connection (default qemu:///system)')


@dataclasses.dataclass
class Host:
    """What ``adopt`` and ``release`` work on.

    :param options: the manager's keyword arguments, as the driver reads
        them from ``[tenant_pin]`` (empty when not read).
    :param shared_cpus: ``[compute] cpu_shared_set`` (online CPUs), or None
        when it is unset.
    """

    topology: object
    partitions: object
    connection: object
    options: dict = dataclasses.field(default_factory=dict)
    shared_cpus: frozenset = None

    def close(self):
        close = getattr(self.connection, 'close', None)
        if close is not None:
            close()


def read_host(args, read_only, options=True):
    """This host's topology, partitions and libvirt connection (read-only
    for a dry run) and, with ``options``, the driver's options."""
    from nova_tenant_pin import cgroups
    from nova_tenant_pin import topology as topo

    try:
        host = topo.HostTopology.from_sysfs()
    except topo.TopologyError as e:
        raise cli.UsageError('this host\'s topology: %s' % e)
    opts = driver_options(args, host) if options else {}
    shared = cli.nova_cpu_set('cpu_shared_set', host.online_cpus)
    try:
        partitions = cgroups.get_partitions()
        partitions.list_partitions()
    except Exception as e:
        raise cli.UsageError('cannot read the tenant partitions: %s' % e)
    if not read_only:
        # The partition writes go through the privsep daemon; run as root,
        # start it the way "housekeeping" does.
        from nova_tenant_pin.cmd import housekeeping as housekeeping_cmd
        housekeeping_cmd._default_helper_for_root()
    return Host(host, partitions, connect(args.libvirt_uri, read_only),
                opts, shared)


def driver_options(args, host_topology):
    """The manager's keyword arguments from ``[tenant_pin]``, read and
    checked as the driver reads them at start."""
    return cli.host_options(host_topology,
                            getattr(args, 'housekeeping_cpus', None),
                            '--housekeeping-cpus')


def connect(uri, read_only):
    import libvirt

    # The error is reported once, by the caller; libvirt need not print it.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        if read_only:
            return libvirt.openReadOnly(uri)
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise cli.UsageError('cannot connect to libvirt at %s: %s'
                             % (uri, e))


def make_manager(host, **overrides):
    """The manager of this host, as nova-compute builds it."""
    from nova_tenant_pin import manager

    partitions, conn = host.partitions, host.connection
    kwargs = dict(host.options)
    kwargs.setdefault('housekeeping_cpus', ())
    kwargs.update(overrides)
    try:
        return manager.TenantPinManager(
            host.topology, partitions, lambda: conn,
            name=socket.gethostname(), **kwargs)
    except ValueError as e:
        # A static cpuset that breaks a rule (allocator.PlanError).
        raise cli.UsageError('[tenant_pin] static_tenant_cpuset: %s' % e)


def core_cookies(mgr):
    """The core-scheduling cookies of this host under ``[tenant_pin]
    core_scheduling``: :class:`~nova_tenant_pin.coresched.CoreCookies`
    over the manager's reading of the running domains, as the driver
    builds them. Raises UsageError where the option is ``required`` and
    the kernel has no core scheduling (the driver refuses to start
    there)."""
    from oslo_config import cfg

    from nova_tenant_pin import coresched

    try:
        return coresched.CoreCookies(cfg.CONF.tenant_pin.core_scheduling,
                                     mgr.running_domains, name=mgr.name)
    except coresched.Unsupported as e:
        raise cli.UsageError(str(e))


def sync_cookies(cookies):
    """Give every running guest its key's cookie where core scheduling is
    active; print the cookies given. Returns the exit code."""
    if not cookies.active:
        return cli.EXIT_OK
    try:
        lines = cookies.sync()
    except Exception as e:
        sys.stderr.write('nova-tenant-pin adopt: core-scheduling cookies: '
                         '%s; the pins are made, run "nova-tenant-pin adopt" '
                         'again\n' % e)
        return cli.EXIT_PROBLEM
    for line in lines:
        print(line)
    return cli.EXIT_OK


def print_lines(lines):
    for line in lines:
        print(line)
    if not lines:
        print('nothing to do')


def _left_alone(host):
    """Running guests the manager leaves alone because they name no Nova
    project and no tenant (not Nova's, or defined by hand): they may run
    on any CPU they are given."""
    from nova_tenant_pin import domain_xml
    from nova_tenant_pin import guests

    found = []
    for dom in host.connection.listAllDomains(
            guests.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        info = domain_xml.parse_domain_xml(
            dom.XMLDesc(0), active=True, persistent=bool(dom.isPersistent()))
        if info.isolation_key is None and not info.project_id and \
                not info.dedicated:
            found.append(info)
    return found


def report_isolation(isolation, left_alone, would=False):
    """Print whether the host is (``would``: would be) isolated; return
    the exit code."""
    problems = []
    for key, uuids in isolation['unfit'].items():
        problems.append('tenant %s (instances %s) does not fit on whole '
                        'cores and shares the cores no tenant holds'
                        % (key, ', '.join(uuids)))
    for info in left_alone:
        problems.append('instance %s (%s) names no Nova project: it is left '
                        'alone, unconfined' % (info.uuid, info.name))
    subject = 'after adopt the host would be' if would else 'host'
    if not problems:
        print('%s isolated' % subject)
        return cli.EXIT_OK
    print('%s NOT isolated: %s%s' % (
        subject, '; '.join(problems), '; the other tenants are isolated'
        if isolation['unfit'] else ''))
    return cli.EXIT_PROBLEM


def run(args, reader=None):
    reader = reader or read_host
    host = reader(args, read_only=args.dry_run)
    try:
        return _adopt(args, host)
    finally:
        host.close()


def _adopt(args, host):
    if args.dry_run:
        # The executor's dry run: the writes planned, none made, and
        # whether the host would be isolated once they are.
        isolation = {}
        try:
            print_lines(make_manager(host).reconcile(dry_run=True,
                                                     isolation=isolation))
        except Exception as e:
            sys.stderr.write('nova-tenant-pin adopt: dry run failed: %s\n'
                             % e)
            return cli.EXIT_PROBLEM
        return report_isolation(isolation, _left_alone(host), would=True)
    mgr = make_manager(host, on_step=StepLog(
        'adopt', getattr(args, 'progress', False)))
    # Checked before any write: "required" on a kernel without core
    # scheduling is refused, as the driver refuses to start.
    cookies = core_cookies(mgr)
    try:
        lines = mgr.reconcile()
    except KeyboardInterrupt:
        sys.stderr.write('nova-tenant-pin adopt: interrupted: %s\n'
                         % (SAFE_STATE % 'adopt'))
        return cli.EXIT_INTERRUPTED
    except Exception as e:
        sys.stderr.write('nova-tenant-pin adopt: stopped: %s; %s\n'
                         % (e, SAFE_STATE % 'adopt'))
        return cli.EXIT_PROBLEM
    print_lines(lines)
    # The keys are recorded now: each key's guests get one cookie.
    synced = sync_cookies(cookies)
    return max(report_isolation(mgr.isolation(), _left_alone(host)), synced)
