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

"""``nova-tenant-pin``: the operator's command.

Each subcommand lives in its own module under ``nova_tenant_pin.cmd`` and
exposes ``add_parser(subparsers)``, which registers its argparse parser and
sets ``func(args) -> exit code`` as the default. Like nova-manage, the
command reads nova.conf through oslo.config (``--config-file``,
``--config-dir``), so it sees the same ``[tenant_pin]`` options as the
compute service. Subcommand modules import Nova and libvirt only inside the
functions that need them: ``plan`` runs without either.

Exit codes: 0 success, 1 the check or operation found a problem (for
example ``audit`` saw a violation), 2 bad input or usage, 130 interrupted
(Ctrl-C).
"""

import argparse
import importlib
import sys
import warnings

from oslo_config import cfg

from nova_tenant_pin import conf  # noqa: F401  (registers [tenant_pin])

SUBCOMMANDS = ('plan', 'check', 'housekeeping', 'status', 'audit', 'adopt',
               'release')

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
#: Interrupted by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input: printed as one line on stderr, exit code 2."""


class _VersionAction(argparse.Action):
    """``--version``: the installed package's version, looked up only
    when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0,
                         default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib import metadata

        try:
            version = metadata.version('nova-tenant-pin')
        except metadata.PackageNotFoundError:
            version = 'unknown (not installed)'
        sys.stdout.write('nova-tenant-pin %s\n' % version)
        parser.exit()


def build_parser():
    # oslo.privsep imports eventlet, which warns on import that it is
    # deprecated; that says nothing to an operator running this command.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    parser = argparse.ArgumentParser(
        prog='nova-tenant-pin',
        description='Keep SMT on and never let two tenants share a '
                    'physical core: plan, inspect and enforce tenant '
                    'core isolation on a Nova compute host.')
    parser.add_argument('--version', action=_VersionAction,
                        help='print the version and exit')
    parser.add_argument(
        '--config-file', action='append', default=None, metavar='PATH',
        help='nova.conf to read (may be repeated; default: the files '
             'oslo.config finds for project "nova", such as '
             '/etc/nova/nova.conf)')
    parser.add_argument(
        '--config-dir', action='append', default=None, metavar='DIR',
        help='directory of *.conf files read after --config-file')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    subparsers.required = True
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module('nova_tenant_pin.cmd.%s' % name)
        except ImportError as e:
            if e.name != 'nova_tenant_pin.cmd.%s' % name:
                raise
            continue
        module.add_parser(subparsers)
    return parser


def load_config(args, conf_obj=None):
    """Read the configuration the way nova-compute does: ``--config-file``
    and ``--config-dir`` when given, else nova.conf and nova-compute.conf
    (and their ``.conf.d`` directories) where oslo.config finds them, as
    the distributions' nova-compute service reads both. Says on stderr
    which files it read."""
    from nova_tenant_pin import options

    conf_obj = conf_obj or cfg.CONF
    cli = []
    for path in args.config_file or []:
        cli += ['--config-file', path]
    for path in args.config_dir or []:
        cli += ['--config-dir', path]
    conf_obj(cli, project=options.NOVA_PROJECT, prog='nova-tenant-pin',
             default_config_files=options.default_config_files(),
             default_config_dirs=options.default_config_dirs())
    files = options.files_read(conf_obj)
    if files:
        sys.stderr.write('nova-tenant-pin: configuration read from %s\n'
                         % ', '.join(files))
    else:
        sys.stderr.write('nova-tenant-pin: no configuration file found '
                         '(nova.conf, nova-compute.conf in ~/.nova, ~, '
                         '/etc/nova, /etc); give --config-file\n')
    return conf_obj


def config_files(conf_obj=None):
    """The configuration files read, for a command's JSON document."""
    from nova_tenant_pin import options

    try:
        return options.files_read(conf_obj or cfg.CONF)
    except cfg.Error:
        return []


def host_options(topology, housekeeping=None, housekeeping_name=None,
                 conf_obj=None):
    """The manager's keyword arguments as the driver reads them at start
    (:func:`nova_tenant_pin.options.load_options`): every command checks
    the options as nova-compute does. ``housekeeping`` is a command's
    flag, named ``housekeeping_name`` in errors. Raises UsageError naming
    the option that is wrong."""
    from nova import exception as nova_exception

    from nova_tenant_pin import options

    try:
        return options.load_options(conf_obj or cfg.CONF, topology,
                                    housekeeping, housekeeping_name)
    except nova_exception.NovaException as e:
        raise UsageError(str(e))


def housekeeping_cpus(value, online_cpus, conf_obj=None, name=None,
                      required=True):
    """The housekeeping CPUs a command works with, as the driver has them.

    ``value`` (the command's flag ``name``) when given; else ``[tenant_pin]
    housekeeping_cpus``; else the online CPUs that ``[compute]
    cpu_shared_set`` and ``cpu_dedicated_set`` leave out. Without
    ``required``, None when none of them is set. Raises UsageError naming
    the option that is wrong.
    """
    from nova import exception as nova_exception

    from nova_tenant_pin import options

    conf_obj = conf_obj or cfg.CONF
    name = name or '--housekeeping-cpus'
    try:
        if not required and value is None and not (
                options.value(conf_obj, 'tenant_pin', 'housekeeping_cpus') or
                nova_cpu_set('cpu_shared_set', None, conf_obj) or
                nova_cpu_set('cpu_dedicated_set', None, conf_obj)):
            return None
        return options.housekeeping_cpus(conf_obj, online_cpus, value, name)
    except nova_exception.NovaException as e:
        raise UsageError(str(e))


def nova_cpu_set(name, online_cpus, conf_obj=None):
    """``[compute] <name>`` (``cpu_shared_set`` or ``cpu_dedicated_set``)
    as Nova parses it, or None when it is unset; with ``online_cpus``,
    CPUs that are not online are refused. Raises UsageError naming the
    option."""
    from nova import exception as nova_exception

    from nova_tenant_pin import options

    try:
        return options.nova_cpu_set(conf_obj or cfg.CONF, name, online_cpus)
    except nova_exception.NovaException as e:
        raise UsageError(str(e))


def cpu_list(value, name):
    """A command's CPU-list flag ``name`` as Nova parses it. Raises
    UsageError naming the flag."""
    from nova import exception as nova_exception

    from nova_tenant_pin import options

    try:
        return options.cpu_spec(value, None, name)
    except nova_exception.NovaException as e:
        raise UsageError(str(e))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, 'needs_config', True):
            load_config(args)
        return args.func(args)
    except (UsageError, cfg.Error) as e:
        sys.stderr.write('nova-tenant-pin %s: error: %s\n'
                         % (args.command, e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write('nova-tenant-pin %s: interrupted\n' % args.command)
        return EXIT_INTERRUPTED
