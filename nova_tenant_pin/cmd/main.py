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

"""``nova-tenant-pin``: the operator's command, a cliff application as the
``openstack`` client is.

Each command is a cliff command class in its own module under
``nova_tenant_pin.cmd``, registered as an entry point in the
``nova_tenant_pin.cli`` namespace (setup.cfg). Commands that report (``check``,
``status``, ``audit``, ``housekeeping``) are cliff listers or show-ones, so
cliff's formatters print them: ``-f table|json|yaml|value|csv|shell`` and ``-c
COLUMN``. Like nova-manage, the command reads nova.conf through oslo.config
(``--config-file``, ``--config-dir``), so it sees the same ``[tenant_pin]``
options as the compute service, and logs through oslo.log as nova-compute
does (``--debug``, ``--log-file``, ``--use-syslog`` and the log options of
the files it read). Command modules import Nova, libvirt and oslo.privsep
only inside the functions that need them: ``--help`` and ``plan`` run
without them.

Exit codes: 0 success, 1 the check or operation found a problem (for
example ``audit`` saw a violation), 2 bad input or usage, 130 interrupted
(Ctrl-C).
"""

import argparse
import importlib.metadata
import inspect
import logging
import sys
import warnings

from cliff import _argparse as cliff_argparse
from cliff import app as cliff_app
from cliff import command
from cliff import commandmanager
from cliff import lister
from cliff import show
from oslo_config import cfg

from nova_tenant_pin import conf  # noqa: F401  (registers [tenant_pin])

PROG = 'nova-tenant-pin'
#: The entry point namespace of the commands (setup.cfg).
NAMESPACE = 'nova_tenant_pin.cli'
#: The project's own commands, as setup.cfg registers them. A development
#: install made before an entry point existed still finds its command.
COMMANDS = {
    'plan': 'nova_tenant_pin.cmd.plan:Plan',
    'check': 'nova_tenant_pin.cmd.check:Check',
    'housekeeping': 'nova_tenant_pin.cmd.housekeeping:Housekeeping',
    'status': 'nova_tenant_pin.cmd.status:Status',
    'audit': 'nova_tenant_pin.cmd.audit:Audit',
    'adopt': 'nova_tenant_pin.cmd.adopt:Adopt',
    'release': 'nova_tenant_pin.cmd.release:Release',
}
SUBCOMMANDS = tuple(COMMANDS)

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
#: Interrupted by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input: printed as one line on stderr, exit code 2."""


class Stop(Exception):
    """The command stops with ``exit_code`` and prints nothing more (it
    said why on stderr)."""

    def __init__(self, exit_code=EXIT_PROBLEM):
        super().__init__(exit_code)
        self.exit_code = exit_code


def _version():
    try:
        return importlib.metadata.version('nova-tenant-pin')
    except importlib.metadata.PackageNotFoundError:
        return 'unknown (not installed)'


class _HelpFormatter(cliff_argparse.SmartHelpFormatter):
    """cliff's help formatter, keeping the line breaks of a command's
    description (its lists of actions and exit codes)."""

    def _fill_text(self, text, width, indent):
        return ''.join(indent + line for line in text.splitlines(True))


class TenantPinApp(cliff_app.App):
    """The ``nova-tenant-pin`` application: global options, the commands
    found in :data:`NAMESPACE`."""

    NAME = PROG
    LOG = logging.getLogger(PROG)

    def __init__(self, stdout=None, stderr=None):
        manager = commandmanager.CommandManager(NAMESPACE)
        for name, target in COMMANDS.items():
            if name not in manager.commands:
                manager.commands[name] = importlib.metadata.EntryPoint(
                    name, target, NAMESPACE)
        super().__init__(
            description='Keep SMT on and never let two tenants share a '
                        'physical core: plan, inspect and enforce tenant '
                        'core isolation on a Nova compute host.',
            version=_version(), command_manager=manager, stdout=stdout,
            stderr=stderr, deferred_help=True)

    def build_option_parser(self, description, version,
                            argparse_kwargs=None):
        parser = super().build_option_parser(description, version,
                                             argparse_kwargs)
        for action in parser._actions:
            if isinstance(action, argparse._VersionAction):
                action.version = '%s %s' % (PROG, version)
            elif action.dest == 'verbose_level' and action.const == 0:
                action.help = ('no log record on stderr (the default)')
            elif action.dest == 'verbose_level':
                action.help = ('log INFO records on stderr as well (the '
                               'commands print their outcome themselves)')
            elif action.dest == 'debug':
                action.help = ('oslo.log: log DEBUG records (on stderr as '
                               'well); show tracebacks on errors')
            elif action.dest == 'log_file':
                action.metavar = 'PATH'
                action.help = ('oslo.log: write the log records to PATH '
                               '(default: [DEFAULT] log_file or log_dir of '
                               'the configuration, as nova-compute)')
        parser.add_argument(
            '--use-syslog', action='store_true', default=False,
            help='oslo.log: send the log records to syslog as well')
        parser.add_argument(
            '--config-file', action='append', default=None, metavar='PATH',
            help='nova.conf to read (may be repeated; default: nova.conf '
                 'and nova-compute.conf where oslo.config finds them, such '
                 'as /etc/nova/nova.conf)')
        parser.add_argument(
            '--config-dir', action='append', default=None, metavar='DIR',
            help='directory of *.conf files read after --config-file')
        return parser

    def print_help_if_requested(self):
        """``--help``: the options and each command's one line. cliff's
        own listing also looks up which distribution provides each
        command, reading the metadata of every installed package (a
        quarter of a second with Nova installed); every command here is
        this package's."""
        if not (self.deferred_help and self.options.deferred_help):
            return
        self.parser.print_help(self.stdout)
        self.stdout.write('\nCommands:\n')
        for name, entry_point in sorted(self.command_manager):
            # The class's description, without building the command (a
            # lister's loads its formatters).
            factory = entry_point.load()
            text = factory._description or inspect.getdoc(factory) or ''
            line = text.split('\n')[0].rstrip('.')
            self.stdout.write('  %-13s  %s\n' % (name, line))
        raise SystemExit(EXIT_OK)

    def configure_logging(self):
        """Nothing yet: a command sets up oslo.log once it has read the
        configuration (:func:`setup_logging`)."""

    def interact(self):
        """No interactive shell: a command is required."""
        self.stderr.write('%s: error: a command is required (see %s '
                          '--help)\n' % (PROG, PROG))
        raise SystemExit(EXIT_USAGE)


class TenantPinCommand:
    """What every command adds to cliff's: it reads the configuration (a
    class with ``needs_config = False`` does not) and sets up oslo.log
    before it runs, and turns a :class:`UsageError` (or a configuration
    error) into one line on stderr and exit code 2, Ctrl-C into 130. A
    command whose output cliff's formatters print sets ``exit_code`` in
    ``take_action``."""

    needs_config = True
    exit_code = EXIT_OK

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.formatter_class = _HelpFormatter
        return parser

    def get_epilog(self):
        # cliff looks up which distribution provides the command, reading
        # the metadata of every installed package: too slow for --help,
        # and every command here is this package's.
        return self._epilog or ''

    def run(self, parsed_args):
        name = self.cmd_name or self.__class__.__name__.lower()
        try:
            if self.needs_config:
                load_config(self.app.options)
                setup_logging(self.app.options)
            result = super().run(parsed_args)
        except (UsageError, cfg.Error) as e:
            sys.stderr.write('%s %s: error: %s\n' % (PROG, name, e))
            return EXIT_USAGE
        except Stop as e:
            return e.exit_code
        except KeyboardInterrupt:
            sys.stderr.write('%s %s: interrupted\n' % (PROG, name))
            return EXIT_INTERRUPTED
        if isinstance(self, (lister.Lister, show.ShowOne)):
            return self.exit_code
        return result


class Command(TenantPinCommand, command.Command):
    """A command that prints its own output; ``take_action`` returns the
    exit code."""


class Lister(TenantPinCommand, lister.Lister):
    """A command whose output is rows, printed by cliff's formatters."""


class Report(TenantPinCommand, show.ShowOne):
    """A command whose output is one document (``{key: value}``).

    With ``-f json`` or ``-f yaml`` the whole document is printed (``-c
    KEY`` picks keys), ``-f value``, ``csv`` or ``shell`` print the keys'
    values, nested ones as JSON. The default ``-f table`` is the report an
    operator reads (:meth:`render`, when the command has one); with ``-c``
    it is cliff's field/value table. ``take_action`` calls :meth:`report`.
    """

    #: ``render(doc, parsed_args)`` prints ``doc`` for an operator (``-f
    #: table`` without ``-c``); None: cliff's field/value table.
    render = None

    def report(self, parsed_args):
        """``(document, exit code)``."""
        raise NotImplementedError()

    def take_action(self, parsed_args):
        self.document, self.exit_code = self.report(parsed_args)
        keys = sorted(self.document)
        return keys, [_nested(self.document[k]) for k in keys]

    def produce_output(self, parsed_args, column_names, data):
        if (self.render is not None and parsed_args.formatter == 'table' and
                not parsed_args.columns):
            self.render(self.document, parsed_args)
            return 0
        return super().produce_output(parsed_args, column_names, data)


def _nested(value):
    """A nested value as a cliff column: the value itself for JSON and
    YAML, JSON text for the table, value, csv and shell formatters."""
    if not isinstance(value, (dict, list, tuple)):
        return value
    from cliff import columns
    import json

    class JSONColumn(columns.FormattableColumn):
        def human_readable(self):
            return json.dumps(self._value, sort_keys=True)

        def machine_readable(self):
            return self._value

    return JSONColumn(value)


def global_options(argv=()):
    """The application's options (``--config-file``, ``--debug``, ...)
    parsed from ``argv``, as a command sees them in ``app.options``."""
    return TenantPinApp().parser.parse_known_args(list(argv))[0]


def load_config(args, conf_obj=None):
    """Read the configuration the way nova-compute does: ``--config-file``
    and ``--config-dir`` when given, else nova.conf and nova-compute.conf
    (and their ``.conf.d`` directories) where oslo.config finds them, as
    the distributions' nova-compute service reads both. oslo.log's options
    are read with it, the command's ``--debug``, ``--log-file`` and
    ``--use-syslog`` over the files'. Says on stderr which files it
    read."""
    from oslo_log import log

    from nova_tenant_pin import options

    conf_obj = conf_obj or cfg.CONF
    log.register_options(conf_obj)
    cli = []
    for path in args.config_file or []:
        cli += ['--config-file', path]
    for path in args.config_dir or []:
        cli += ['--config-dir', path]
    if getattr(args, 'debug', False):
        cli.append('--debug')
    if getattr(args, 'log_file', None):
        cli += ['--log-file', args.log_file]
    if getattr(args, 'use_syslog', False):
        cli.append('--use-syslog')
    conf_obj(cli, project=options.NOVA_PROJECT, prog=PROG,
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


def setup_logging(args, conf_obj=None):
    """oslo.log as nova-compute sets it up, from the configuration read:
    the same records, format and destinations (``log_file`` or
    ``log_dir``, syslog, the journal). Standard output carries the
    command's output only, never a log record. On stderr records show
    with ``-v`` (INFO) or ``--debug`` (DEBUG): otherwise the command's own
    lines say what happened."""
    from oslo_log import log

    conf_obj = conf_obj or cfg.CONF
    try:
        log.register_options(conf_obj)
    except cfg.ArgsAlreadyParsedError:
        pass  # registered by load_config, before the files were read
    debug = getattr(args, 'debug', False) or conf_obj.debug
    verbose = getattr(args, 'verbose_level', 1) >= 2
    if debug or verbose:
        conf_obj.set_override('use_stderr', True)
    if conf_obj.log_dir and not conf_obj.log_file:
        # oslo.log would name the file after the running script (runpy.py
        # for "python -m nova_tenant_pin"): nova-tenant-pin.log, as
        # nova-manage writes nova-manage.log.
        conf_obj.set_override('log_file', PROG + '.log')
    log.setup(conf_obj, PROG, version=_version())
    root = logging.getLogger()
    for handler in list(root.handlers):
        stream = getattr(handler, 'stream', None)
        if stream is sys.stdout:
            # oslo.log's fallback when no destination is configured.
            root.removeHandler(handler)
        elif stream is sys.stderr:
            if debug or verbose:
                handler.setLevel(logging.DEBUG if debug else logging.INFO)
            else:
                root.removeHandler(handler)
    # No destination left: drop the records rather than let Python print
    # warnings on stderr on its own.
    root.addHandler(logging.NullHandler())


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
    # oslo.privsep imports eventlet, which warns on import that it is
    # deprecated; that says nothing to an operator running this command.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        return TenantPinApp().run(sys.argv[1:] if argv is None else argv)
    finally:
        # Run in-process (tests, tools), leave the logging as it was.
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
