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

"""``nova-tenant-pin housekeeping apply|release|show``.

Confines host housekeeping (services, IRQs, unbound workqueues, movable
kernel threads) to the reserved CPUs, records what it changed in
``[tenant_pin] housekeeping_state_file``, and restores it on release.
Prints one report, JSON by default (``-f yaml``, ``-f table``, ``-c KEY``
as every report of the command). Needs root (the writes go through the
privsep daemon, started with ``[nova_tenant_pin_privileged]
helper_command`` or sudo).
"""

import os
import sys

from oslo_config import cfg

from nova_tenant_pin.cmd import main as cli

HELP = """\
apply    confine services, IRQs, the unbound workqueue mask and movable
         kernel threads to the housekeeping CPUs (--cpus, else
         [tenant_pin] housekeeping_cpus); idempotent
release  restore exactly what apply changed (from the state file)
show     report what is confined, unconfined and unconfinable
Exit 0 on success, 1 when something could not be done or restored
(details in the JSON), 2 on bad input.
"""


class Housekeeping(cli.Report):
    """Confine or release host housekeeping."""

    _description = __doc__.splitlines()[0] + '\n\n' + HELP

    @property
    def formatter_default(self):
        # A report for scripts and for the operator alike; JSON as before.
        return 'json'

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('action', choices=['apply', 'release', 'show'])
        parser.add_argument('--cpus', metavar='LIST',
                            help='housekeeping CPUs such as "0,64" (default: '
                                 '[tenant_pin] housekeeping_cpus)')
        parser.add_argument('--state-file', metavar='PATH',
                            help='default: [tenant_pin] '
                                 'housekeeping_state_file')
        parser.add_argument('--cgroup-root', metavar='PATH',
                            help='cgroup root of the housekeeping cpuset '
                                 '(default: [tenant_pin] cgroup_root)')
        return parser

    def report(self, parsed_args):
        return run(parsed_args)


def _cpus(args):
    cpus = cli.housekeeping_cpus(args.cpus, _online_cpus(), name='--cpus',
                                 required=args.action == 'apply')
    if cpus is None:
        return None
    return cpus


def _online_cpus():
    from nova_tenant_pin import topology

    try:
        return topology.HostTopology.from_sysfs().online_cpus
    except topology.TopologyError as e:
        raise cli.UsageError('this host\'s topology: %s' % e)


def _default_helper_for_root():
    """Run as root with no helper_command configured, start the privsep
    daemons (the cgroup one and the core-scheduling one) with the
    privsep-helper installed beside this Python rather than through sudo,
    which root does not need (and which may be missing)."""
    from nova_tenant_pin import privsep

    helper = os.path.join(sys.prefix, 'bin', 'privsep-helper')
    if os.geteuid() != 0 or not os.access(helper, os.X_OK):
        return
    for context in (privsep.tenant_pin_pctxt, privsep.core_sched_pctxt):
        if not cfg.CONF[context.cfg_section].helper_command:
            cfg.CONF.set_override('helper_command', helper,
                                  group=context.cfg_section)


def run(args):
    """``(report, exit code)`` of ``args.action``. A failure that leaves no
    report is said on stderr and stops the command (exit 1)."""
    # Imported here, not for --help: oslo.privsep brings in eventlet.
    from oslo_privsep import daemon as privsep_daemon

    from nova_tenant_pin import exception
    from nova_tenant_pin import housekeeping
    from nova_tenant_pin import privsep

    conf = cfg.CONF.tenant_pin
    _default_helper_for_root()
    try:
        keeper = housekeeping.Housekeeping(
            state_file=args.state_file or conf.housekeeping_state_file,
            cpus=_cpus(args), root=args.cgroup_root or conf.cgroup_root)
    except exception.InvalidArgument as e:
        raise cli.UsageError(str(e))
    status = cli.EXIT_OK
    try:
        if args.action == 'apply':
            report = keeper.apply()
        elif args.action == 'release':
            report = keeper.release()
            if report['failed']:
                status = cli.EXIT_PROBLEM
        else:
            report = keeper.show()
    except exception.InvalidArgument as e:
        raise cli.UsageError(str(e))
    except exception.TenantPinException as e:
        sys.stderr.write('nova-tenant-pin housekeeping %s: %s\n'
                         % (args.action, e))
        raise cli.Stop(cli.EXIT_PROBLEM)
    except (OSError, privsep_daemon.FailedToDropPrivileges) as e:
        sys.stderr.write(
            'nova-tenant-pin housekeeping %s: %s (is the privsep daemon '
            'allowed to start? run as root, or set [%s] helper_command)\n'
            % (args.action, e, privsep.tenant_pin_pctxt.cfg_section))
        raise cli.Stop(cli.EXIT_PROBLEM)
    return report, status
