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

"""``nova-tenant-pin release``: turn tenant isolation off on this host
without restarting a guest.

Every guest tenant-pin placed may run on the given CPUs again (default
Nova's ``[compute] cpu_shared_set``, else every online CPU), the partitions
are widened to them and removed once they hold no guest, and the tenant-pin
metadata is dropped (``TenantPinManager.release_all``). Then the host
housekeeping is restored exactly as ``nova-tenant-pin housekeeping release``
restores it. It reads none of the isolation options (housekeeping CPUs, pin
mode, ratio, static cpusets, groups), so it also works once they are gone
from nova.conf.
"""

import argparse
import json
import sys

from oslo_config import cfg

from nova_tenant_pin.cmd import adopt
from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import topology as topo

HELP = """\
Turn tenant isolation off on this host without restarting any guest: every
guest tenant-pin placed may run on CPUS again (--cpus, default [compute]
cpu_shared_set, else every online CPU), partitions are widened and removed
once they hold no guest, tenant-pin's domain metadata is dropped, and
the guests' core-scheduling cookies are taken away (each QEMU keeps a cookie
of its own where libvirt's sched_core is set); then the
housekeeping confinement is restored as "housekeeping release" does (unless
--keep-housekeeping). Guests still in a partition leave it at their next
hard reboot. Running it again is safe.
Exit codes: 0 done, 1 a write or the housekeeping restore failed, 2 error
(bad option, libvirt or the cgroup tree), 130 interrupted.
"""

SAFE_STATE = ('every guest still runs and each partition still holds the '
              'CPUs its guests may use; housekeeping was left as it is; run '
              '"nova-tenant-pin release" again to finish')


class Release(cli.Command):
    """Turn tenant isolation off on this host, live."""

    _description = __doc__.splitlines()[0] + '\n\n' + HELP

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--dry-run', action='store_true',
                            help='print the writes release would make, one '
                                 'a line; change nothing')
        adopt.add_common_arguments(parser)
        parser.add_argument('--cpus', metavar='CPUS',
                            help='the CPUs every guest may run on afterwards '
                                 '(default: [compute] cpu_shared_set, else '
                                 'every online CPU)')
        parser.add_argument('--keep-housekeeping', action='store_true',
                            help='leave the housekeeping confinement in '
                                 'place')
        return parser

    def take_action(self, parsed_args):
        parsed_args.progress = adopt.show_progress(self.app.options)
        return run(parsed_args)


def release_cpus(args, host):
    """The CPUs the guests may run on once released."""
    online = host.topology.online_cpus
    if args.cpus is not None:
        cpus = cli.cpu_list(args.cpus, '--cpus')
        if not cpus <= online:
            raise cli.UsageError('--cpus: CPUs %s are not online CPUs of '
                                 'this host' % topo.format_cpu_list(
                                     cpus - online))
    else:
        cpus = host.shared_cpus or online
    if not cpus:
        raise cli.UsageError('no CPU to release the guests to')
    return frozenset(cpus)


def housekeeping_state():
    """``(state file, applied)``: whether ``housekeeping apply`` left a
    state to restore. Raises UsageError for a state file it cannot read."""
    from nova_tenant_pin import exception
    from nova_tenant_pin import housekeeping

    state_file = cfg.CONF.tenant_pin.housekeeping_state_file
    try:
        state = housekeeping.Housekeeping(state_file).load_state()
    except exception.HousekeepingError as e:
        raise cli.UsageError('housekeeping: %s' % e)
    return state_file, state is not None


def restore_housekeeping():
    """Restore the housekeeping confinement through the code path of
    ``nova-tenant-pin housekeeping release`` (which prints its JSON
    report); return its exit code. A host where housekeeping was never
    applied has nothing to restore: said, and not an error."""
    from nova_tenant_pin.cmd import housekeeping as housekeeping_cmd

    state_file, applied = housekeeping_state()
    if not applied:
        print('housekeeping was not applied (no state file %s): nothing to '
              'restore' % state_file)
        return cli.EXIT_OK
    print('restoring housekeeping from %s' % state_file)
    try:
        report, status = housekeeping_cmd.run(argparse.Namespace(
            command='housekeeping', action='release', cpus=None,
            state_file=state_file, cgroup_root=None))
    except cli.Stop as e:
        return e.exit_code
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write('\n')
    return status


def run(args, reader=None, restore=None):
    reader = reader or adopt.read_host
    restore = restore or restore_housekeeping
    host = reader(args, read_only=args.dry_run, options=False)
    try:
        status = _release(args, host)
    finally:
        host.close()
    if status != cli.EXIT_OK:
        # Guests not all released: the housekeeping confinement stays.
        return status
    if args.keep_housekeeping:
        print('housekeeping kept (--keep-housekeeping)')
        return status
    if args.dry_run:
        state_file, applied = housekeeping_state()
        print('would restore housekeeping from %s' % state_file if applied
              else 'housekeeping was not applied (no state file %s): '
              'nothing to restore' % state_file)
        return status
    return restore()


def release_cookies(mgr, dry_run):
    """Take the project's core-scheduling cookies away from the guests
    (see :func:`nova_tenant_pin.coresched.release_cookies`): back to no
    cookie, or to a cookie of each QEMU's own where libvirt's
    ``sched_core`` is set."""
    from nova_tenant_pin import coresched

    return coresched.release_cookies(mgr.running_domains(), dry_run=dry_run,
                                     name=mgr.name)


def _release(args, host):
    cpus = release_cpus(args, host)
    # Each write logged as it is made (a dry run makes none).
    mgr = adopt.make_manager(host, housekeeping_cpus=(), static=None,
                             on_step=adopt.StepLog(
                                 'release', getattr(args, 'progress', False)))
    try:
        # While the keys are still recorded (the privileged entrypoint
        # checks them): the project's core-scheduling cookies go first.
        lines = release_cookies(mgr, args.dry_run)
        lines += mgr.release_all(cpus, dry_run=args.dry_run)
    except KeyboardInterrupt:
        sys.stderr.write('nova-tenant-pin release: interrupted: %s\n'
                         % SAFE_STATE)
        return cli.EXIT_INTERRUPTED
    except Exception as e:
        sys.stderr.write('nova-tenant-pin release: stopped: %s; %s\n'
                         % (e, SAFE_STATE))
        return cli.EXIT_PROBLEM
    adopt.print_lines(lines)
    if args.dry_run:
        print('after release every guest could run on CPUs %s'
              % topo.format_cpu_list(cpus))
        return cli.EXIT_OK
    print('tenant isolation released: every guest may run on CPUs %s'
          % topo.format_cpu_list(cpus))
    left = sorted(host.partitions.list_partitions())
    if left:
        print('partitions of tenants %s still hold running guests (a '
              'running guest cannot leave its cgroup); run release again '
              'after their next hard reboot to remove them'
              % ', '.join(left))
    return cli.EXIT_OK
