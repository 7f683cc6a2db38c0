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

"""The ``nova-tenant-pin`` application: its commands (cliff entry points)
and the oslo.log set-up every command that reads the configuration gets."""

import configparser
import io
import logging
import os

import fixtures
from oslo_config import cfg
from oslo_log import handlers as log_handlers

from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import conf
from nova_tenant_pin.tests import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


class TestCommands(base.TestCase):

    def test_setup_cfg_registers_every_command(self):
        """The entry points are how cliff finds the commands (and how a
        plugin would add one): setup.cfg must name each of them."""
        parser = configparser.ConfigParser()
        parser.read(os.path.join(REPO, 'setup.cfg'))
        lines = parser['entry_points'][cli.NAMESPACE].strip().splitlines()
        registered = dict(tuple(p.strip() for p in line.split('='))
                          for line in lines)
        self.assertEqual(cli.COMMANDS, registered)

    def test_every_command_is_a_cliff_command_of_this_package(self):
        app = cli.TenantPinApp()
        names = {name for name, _ in app.command_manager}
        self.assertLessEqual(set(cli.COMMANDS), names)
        for name in cli.COMMANDS:
            factory, found, _ = app.command_manager.find_command([name])
            self.assertEqual(name, found)
            self.assertTrue(issubclass(factory, cli.TenantPinCommand),
                            factory)

    def test_commands_found_without_their_entry_points(self):
        """A development install made before an entry point existed: the
        command is still there."""
        import stevedore

        self.useFixture(fixtures.MonkeyPatch(
            'stevedore.ExtensionManager.__iter__', lambda self: iter(())))
        self.assertEqual([], list(stevedore.ExtensionManager(cli.NAMESPACE)))
        app = cli.TenantPinApp()
        factory, _, _ = app.command_manager.find_command(['status'])
        from nova_tenant_pin.cmd import status
        self.assertIs(status.Status, factory)

    def test_no_command_is_a_usage_error_not_a_shell(self):
        err = self.useFixture(fixtures.MonkeyPatch(
            'sys.stderr', io.StringIO())).new_value
        e = self.assertRaises(SystemExit, cli.main, [])
        self.assertEqual(cli.EXIT_USAGE, e.code)
        self.assertIn('a command is required', err.getvalue())


class TestLogging(base.TestCase):
    """oslo.log as nova-compute sets it up, from the configuration the
    command read and its ``--debug``, ``--log-file``, ``--use-syslog``."""

    def setUp(self):
        super().setUp()
        root = logging.getLogger()
        saved = list(root.handlers), root.level
        self.addCleanup(lambda: (root.handlers.__setitem__(
            slice(None), saved[0]), root.setLevel(saved[1])))
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.conf_file = os.path.join(self.dir, 'nova.conf')
        with open(self.conf_file, 'w') as f:
            f.write('[DEFAULT]\n')
        self.stdout = self.useFixture(fixtures.MonkeyPatch(
            'sys.stdout', io.StringIO())).new_value
        self.stderr = self.useFixture(fixtures.MonkeyPatch(
            'sys.stderr', io.StringIO())).new_value
        # A private ConfigOpts: the global one may already be parsed.
        self.private = cfg.ConfigOpts()
        conf.register_opts(self.private)
        self.log = logging.getLogger('nova_tenant_pin.test')

    def setup(self, *argv):
        args = cli.global_options(['--config-file', self.conf_file] +
                                  list(argv) + ['status'])
        cli.load_config(args, self.private)
        cli.setup_logging(args, self.private)

    def test_log_file_gets_oslo_log_records(self):
        path = os.path.join(self.dir, 'ntp.log')
        self.setup('--log-file', path)
        self.log.info('instance %s of tenant %s: pinned', 'u-1', 'p1')
        self.log.debug('not at INFO')
        with open(path) as f:
            text = f.read()
        # oslo.log's format: pid, level, logger name, request context.
        self.assertRegex(text, r'\d+ INFO nova_tenant_pin.test \[-\] '
                               r'instance u-1 of tenant p1: pinned\n')
        self.assertNotIn('not at INFO', text)
        self.assertNotIn('pinned', self.stderr.getvalue())
        self.assertEqual('', self.stdout.getvalue())

    def test_log_dir_of_the_configuration_names_the_command(self):
        """``log_dir`` set in nova.conf: the records go to
        ``nova-tenant-pin.log`` there, as nova-manage's go to
        ``nova-manage.log``."""
        with open(self.conf_file, 'w') as f:
            f.write('[DEFAULT]\nlog_dir = %s\n' % self.dir)
        self.setup()
        self.log.warning('tenant p1 does not fit')
        with open(os.path.join(self.dir, 'nova-tenant-pin.log')) as f:
            self.assertIn('WARNING nova_tenant_pin.test [-] tenant p1 does '
                          'not fit', f.read())

    def test_debug_logs_debug_records_on_stderr(self):
        self.setup('--debug')
        self.log.debug('a debug record')
        self.assertIn('DEBUG nova_tenant_pin.test [-] a debug record',
                      self.stderr.getvalue())
        self.assertTrue(self.private.debug)
        self.assertEqual('', self.stdout.getvalue())

    def test_verbose_logs_info_records_on_stderr(self):
        self.setup('-v')
        self.log.info('an info record')
        self.log.debug('a debug record')
        self.assertIn('INFO nova_tenant_pin.test [-] an info record',
                      self.stderr.getvalue())
        self.assertNotIn('a debug record', self.stderr.getvalue())

    def test_nothing_on_stdout_or_stderr_by_default(self):
        """No destination configured: oslo.log would fall back to
        stdout, which carries the command's output (JSON for scripts)."""
        self.setup()
        self.log.warning('a warning')
        self.log.error('an error')
        self.assertEqual('', self.stdout.getvalue())
        self.assertNotIn('a warning', self.stderr.getvalue())
        self.assertNotIn('an error', self.stderr.getvalue())

    def test_use_syslog(self):
        self.setup('--use-syslog')
        self.assertTrue(self.private.use_syslog)
        self.assertTrue(any(isinstance(h, log_handlers.OSSysLogHandler)
                            for h in logging.getLogger().handlers))

    def test_options_registered_as_oslo_log_does(self):
        """The command reads the same [DEFAULT] log options as
        nova-compute: oslo.log's own, not a copy."""
        self.setup()
        for name in ('debug', 'log_file', 'log_dir', 'use_syslog',
                     'use_journal', 'use_json', 'default_log_levels',
                     'logging_context_format_string', 'log_rotation_type'):
            self.assertIn(name, self.private)
