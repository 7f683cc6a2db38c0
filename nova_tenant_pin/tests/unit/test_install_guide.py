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

"""The install guide's nova.conf example is the one an operator pastes:
extracted from doc/source/install.rst, read by oslo.config with Nova's own
options, every key known to Nova or tenant-pin, accepted by the driver's
option check on the host the guide describes, and green in ``check``'s
configuration, housekeeping, scheduler and ratio checks. README and the
driver page point to it instead of repeating one."""

import os
import re

import fixtures
from oslo_config import cfg
from oslo_privsep import priv_context
from oslo_upgradecheck import upgradecheck

from nova_tenant_pin.cmd import check
from nova_tenant_pin import conf as tp_conf
from nova_tenant_pin import driver
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
INSTALL = os.path.join(REPO, 'doc', 'source', 'install.rst')
MARKER = '.. The nova.conf example:'


def install_example():
    """The ``code-block:: ini`` that follows the marker comment in
    install.rst, dedented."""
    with open(INSTALL) as f:
        text = f.read()
    after = text[text.index(MARKER):]
    match = re.search(r'\.\. code-block:: ini\n\n((?:[ \t]+.*\n|\n)+)',
                      after)
    lines = match.group(1).split('\n')
    indent = len(lines[0]) - len(lines[0].lstrip())
    block = []
    for line in lines:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return '\n'.join(block).rstrip('\n') + '\n'


def nova_conf(path):
    """``path`` read as nova-compute reads it, with all of Nova's options
    registered (as ``nova.conf`` does for the service) and tenant-pin's."""
    from nova.conf import opts as nova_opts

    conf = cfg.ConfigOpts()
    # Nova's options as oslo-config-generator lists them for nova.conf.
    for group, options in nova_opts.list_opts():
        for opt in options:
            if opt.required:
                # keystoneauth's auth-url of the service clients: not a
                # compute host's business here.
                continue
            try:
                conf.register_opt(opt, group=None if group == 'DEFAULT'
                                  else group)
            except cfg.DuplicateOptError:
                pass
    tp_conf.register_opts(conf)
    conf.register_opts(priv_context.OPTS, group='nova_tenant_pin_privileged')
    conf.register_opts(priv_context.OPTS, group='nova_tenant_pin_core_sched')
    conf(['--config-file', path], project='nova', default_config_files=[],
         default_config_dirs=[])
    return conf


#: The host the example describes: 32 cores, CPU n and n + 32 siblings.
HOST = topology.HostTopology({0: [[n, n + 32] for n in range(16)],
                              1: [[n, n + 32] for n in range(16, 32)]})


class TestInstallGuideExample(base.TestCase):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                 'nova.conf')
        with open(self.path, 'w') as f:
            f.write(install_example())
        self.conf = nova_conf(self.path)

    def test_every_key_is_a_known_option(self):
        """oslo.config ignores unknown keys silently: a typo in the guide
        would pass unnoticed without this."""
        section = None
        for line in install_example().splitlines():
            line = line.strip()
            if line.startswith('['):
                section = line[1:-1]
            elif line and not line.startswith('#'):
                key = line.split('=', 1)[0].strip()
                group = self.conf if section == 'DEFAULT' else \
                    self.conf[section]
                try:
                    group[key]
                except cfg.NoSuchOptError:
                    self.fail('[%s] %s in install.rst is not an option'
                              % (section, key))

    def test_driver_accepts_it(self):
        options = driver.load_options(self.conf, HOST)
        self.assertEqual(frozenset({0, 32}), options['housekeeping_cpus'])
        self.assertEqual('float', options['pin_mode'])
        self.assertEqual(1.0, options['ratio'])
        self.assertEqual('tenant_pin.TenantPinLibvirtDriver',
                         self.conf.compute_driver)
        # Everything cpu_shared_set leaves out is housekeeping, and it is
        # the housekeeping_cpus the guide sets.
        self.assertEqual(
            HOST.online_cpus - set(range(1, 32)) - set(range(33, 64)),
            options['housekeeping_cpus'])

    def test_check_is_green_on_it(self):
        checks = check.TenantPinChecks(conf=self.conf)
        checks._topology, checks._options = HOST, driver.load_options(
            self.conf, HOST)
        for method in ('check_config', 'check_housekeeping',
                       'check_scheduler', 'check_allocation_ratio'):
            result = getattr(checks, method)()
            self.assertEqual(upgradecheck.Code.SUCCESS, result.code,
                             '%s: %s' % (method, result.details))

    def test_privileged_helper_is_the_rootwrap_one(self):
        from nova_tenant_pin.tests.unit import test_privileged_helper_config
        shipped = test_privileged_helper_config.documented_helper_command(
            os.path.join(test_privileged_helper_config.FILTERS_DIR,
                         'nova-tenant-pin.filters'))
        self.assertEqual(
            shipped,
            self.conf.nova_tenant_pin_privileged.helper_command)
        # The core-scheduling context starts the same way.
        self.assertEqual(
            shipped,
            self.conf.nova_tenant_pin_core_sched.helper_command)

    def test_one_example_only(self):
        """README and the driver page point to install.rst instead of
        carrying a nova.conf example of their own."""
        for path in ('README.md',
                     os.path.join('doc', 'source', 'admin', 'driver.rst')):
            with open(os.path.join(REPO, path)) as f:
                text = f.read()
            self.assertNotIn('\n[tenant_pin]\n', text.replace(' ', ''),
                             path)
            self.assertIn('install', text)
