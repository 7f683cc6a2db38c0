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

SUBCOMMANDS = ('plan', 'housekeeping', 'status', 'audit', 'adopt',
               'release')

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
#: Interrupted by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input: printed as one line on stderr, exit code 2."""


def build_parser():
    # oslo.privsep imports eventlet, which warns on import that it is
    # deprecated; that says nothing to an operator running this command.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    parser = argparse.ArgumentParser(
        prog='nova-tenant-pin',
        description='Keep SMT on and never let two tenants share a '
                    'physical core: plan, inspect and enforce tenant '
                    'core isolation on a Nova compute host.')
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
    """Read nova.conf the way nova-compute does."""
    conf_obj = conf_obj or cfg.CONF
    cli = []
    for path in args.config_file or []:
        cli += ['--config-file', path]
    for path in args.config_dir or []:
        cli += ['--config-dir', path]
    conf_obj(cli, project='nova', prog='nova-tenant-pin',
             default_config_files=None if cli else
             cfg.find_config_files(project='nova'))
    return conf_obj


_NOVA_CPU_SETS = ('cpu_shared_set', 'cpu_dedicated_set')


def housekeeping_cpus(value, online_cpus, conf_obj=None):
    """The housekeeping CPUs a command works with, as the driver has them.

    ``value`` (the command's flag) when given; else ``[tenant_pin]
    housekeeping_cpus``; else the online CPUs that ``[compute]
    cpu_shared_set`` and ``cpu_dedicated_set`` leave out. None when none of
    them is set. Raises UsageError for a CPU list that does not parse.
    """
    from nova_tenant_pin import topology

    conf_obj = conf_obj or cfg.CONF
    try:
        if value is None:
            value = conf_obj.tenant_pin.housekeeping_cpus
        if value is not None:
            return frozenset(topology.parse_cpu_list(value))
        used = set()
        for spec in _nova_cpu_sets(conf_obj):
            if spec:
                used |= topology.parse_cpu_list(spec)
    except topology.TopologyError as e:
        raise UsageError('housekeeping CPUs: %s' % e)
    if not used:
        return None
    return frozenset(online_cpus) - used


def nova_cpu_set(name, online_cpus, conf_obj=None):
    """``[compute] <name>`` (``cpu_shared_set`` or ``cpu_dedicated_set``)
    as a set of online CPUs, or None when it is unset. Raises UsageError
    for a CPU list that does not parse."""
    from nova_tenant_pin import topology

    spec = dict(zip(_NOVA_CPU_SETS, _nova_cpu_sets(conf_obj or cfg.CONF)))[
        name]
    if not spec:
        return None
    try:
        return frozenset(topology.parse_cpu_list(spec)) & frozenset(
            online_cpus)
    except topology.TopologyError as e:
        raise UsageError('[compute] %s: %s' % (name, e))


def _nova_cpu_sets(conf_obj):
    """``[compute] cpu_shared_set`` and ``cpu_dedicated_set`` from the same
    files. Where Nova is imported its options are there already; elsewhere
    they are read through a private ConfigOpts, so that this command never
    registers Nova's options itself (Nova would refuse them later)."""
    try:
        return [conf_obj.compute[name] for name in _NOVA_CPU_SETS]
    except (cfg.NoSuchOptError, AttributeError):
        pass
    private = cfg.ConfigOpts()
    private.register_opts([cfg.StrOpt(name) for name in _NOVA_CPU_SETS],
                          group='compute')
    files = list(getattr(conf_obj, 'config_file', None) or [])
    dirs = list(getattr(conf_obj, 'config_dir', None) or [])
    args = [a for f in files for a in ('--config-file', f)]
    args += [a for d in dirs for a in ('--config-dir', d)]
    private(args, default_config_files=[], default_config_dirs=[])
    return [private.compute[name] for name in _NOVA_CPU_SETS]


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
