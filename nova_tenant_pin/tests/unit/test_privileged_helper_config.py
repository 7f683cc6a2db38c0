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

"""The privileged helper's shipped configuration: the rootwrap filter and
the sudoers rule in etc/ accept exactly the command line oslo.privsep runs
for ``tenant_pin_pctxt`` with the ``helper_command`` they document, and
nothing for another context; the sample config has the section."""

import fnmatch
import os
import re
import sys

import fixtures
from oslo_config import generator
from oslo_rootwrap import filters as rootwrap_filters
from oslo_rootwrap import wrapper

from nova_tenant_pin import privsep
from nova_tenant_pin.tests import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
FILTERS_DIR = os.path.join(REPO, 'etc', 'nova', 'rootwrap.d')
SUDOERS = os.path.join(REPO, 'etc', 'sudoers.d', 'nova-tenant-pin')
SOCK = '/tmp/tmpk2j4x9/privsep.sock'


def documented_helper_command(path):
    """The ``helper_command = ...`` line a shipped file's comment gives."""
    with open(path) as f:
        found = re.findall(r'^#\s+helper_command = (.*)$', f.read(), re.M)
    assert len(found) == 1, found
    return found[0]


class TestPrivilegedHelperConfig(base.TestCase):

    def command(self, helper_command, ctx=privsep.tenant_pin_pctxt):
        """The argv oslo.privsep runs to start the daemon."""
        self.flags(group=ctx.cfg_section, helper_command=helper_command)
        return ctx.helper_command(SOCK)

    def rootwrap_argv(self, helper_command, ctx=privsep.tenant_pin_pctxt):
        """What nova-rootwrap gets to match: after ``sudo nova-rootwrap
        <rootwrap.conf>``."""
        argv = self.command(helper_command, ctx)
        self.assertEqual(['sudo', 'nova-rootwrap', '/etc/nova/rootwrap.conf'],
                         argv[:3])
        return argv[3:]

    def match(self, argv):
        # oslo.rootwrap adds a catch-all "privsep-helper" CommandFilter to
        # every deployment; the shipped file's own filters are checked.
        filters = [f for f in wrapper.load_filters([FILTERS_DIR])
                   if f.name != 'privsep-helper']
        # Two for each context: with nova.conf alone or with
        # nova-compute.conf too.
        self.assertEqual(4, len(filters))
        # privsep-helper is found where nova-compute's environment has it.
        return wrapper.match_filter(filters, argv,
                                    exec_dirs=[os.path.dirname(
                                        sys.executable)])

    def test_rootwrap_filter_accepts_the_documented_command(self):
        path = os.path.join(FILTERS_DIR, 'nova-tenant-pin.filters')
        argv = self.rootwrap_argv(documented_helper_command(path))
        self.assertIn('nova_tenant_pin.privsep.tenant_pin_pctxt', argv)
        self.assertIsInstance(self.match(argv),
                              rootwrap_filters.RegExpFilter)
        # nova.conf alone, as a deployment without nova-compute.conf has.
        one = self.rootwrap_argv('sudo nova-rootwrap /etc/nova/rootwrap.conf '
                                 'privsep-helper --config-file '
                                 '/etc/nova/nova.conf')
        self.assertIsInstance(self.match(one), rootwrap_filters.RegExpFilter)

    def test_rootwrap_filter_refuses_other_contexts_and_paths(self):
        path = os.path.join(FILTERS_DIR, 'nova-tenant-pin.filters')
        argv = self.rootwrap_argv(documented_helper_command(path))
        other = [a.replace('nova_tenant_pin.privsep.tenant_pin_pctxt',
                           'nova.privsep.sys_admin_pctxt') for a in argv]
        self.assertRaises(wrapper.NoFilterMatched, self.match, other)
        escape = [a.replace('/etc/nova/nova.conf', '/etc/../root/x.conf')
                  for a in argv]
        self.assertRaises(wrapper.NoFilterMatched, self.match, escape)
        self.assertRaises(wrapper.NoFilterMatched, self.match,
                          argv + ['--extra'])

    def sudoers_rule(self, context='tenant_pin_pctxt'):
        with open(SUDOERS) as f:
            rules = [line for line in f.read().splitlines()
                     if line and not line.startswith('#')]
        self.assertEqual(2, len(rules), rules)
        rule = [r for r in rules if 'privsep.%s ' % context in r]
        self.assertEqual(1, len(rule), rules)
        user, rest = rule[0].split(None, 1)
        self.assertEqual('nova', user)
        return rest.split('NOPASSWD: ', 1)[1]

    def test_sudoers_rule_accepts_the_documented_command(self):
        argv = self.command(documented_helper_command(SUDOERS))
        self.assertEqual('sudo', argv[0])
        self.assertTrue(fnmatch.fnmatchcase(' '.join(argv[1:]),
                                            self.sudoers_rule()))

    def test_sudoers_rule_refuses_another_context(self):
        argv = self.command(documented_helper_command(SUDOERS))
        other = ' '.join(argv[1:]).replace(
            'nova_tenant_pin.privsep.tenant_pin_pctxt',
            'nova.privsep.sys_admin_pctxt')
        self.assertFalse(fnmatch.fnmatchcase(other, self.sudoers_rule()))

    def test_core_scheduling_context_starts_the_same_way(self):
        """The second context (CAP_SYS_PTRACE only) is accepted by the
        shipped filter and sudoers rule with the same helper_command in
        its own section, and nothing else is."""
        ctx = privsep.core_sched_pctxt
        path = os.path.join(FILTERS_DIR, 'nova-tenant-pin.filters')
        argv = self.rootwrap_argv(documented_helper_command(path), ctx)
        self.assertIn('nova_tenant_pin.privsep.core_sched_pctxt', argv)
        self.assertIsInstance(self.match(argv),
                              rootwrap_filters.RegExpFilter)
        self.assertRaises(wrapper.NoFilterMatched, self.match,
                          argv + ['--extra'])
        argv = self.command(documented_helper_command(SUDOERS), ctx)
        self.assertTrue(fnmatch.fnmatchcase(
            ' '.join(argv[1:]), self.sudoers_rule('core_sched_pctxt')))
        self.assertFalse(fnmatch.fnmatchcase(
            ' '.join(argv[1:]), self.sudoers_rule()))

    def test_docs_give_the_same_helper_commands(self):
        with open(os.path.join(REPO, 'doc', 'source', 'admin',
                               'privileges.rst')) as f:
            doc = f.read()
        for path in (os.path.join(FILTERS_DIR, 'nova-tenant-pin.filters'),
                     SUDOERS):
            line = 'helper_command = %s' % documented_helper_command(path)
            self.assertTrue(doc.count(line), 'privileges.rst lacks %r' % line)
            name = os.path.relpath(path, REPO)
            self.assertTrue(doc.count(name), 'privileges.rst lacks %s' % name)

    def test_sample_config_has_the_privileged_section(self):
        out = os.path.join(self.useFixture(fixtures.TempDir()).path,
                           'sample.conf')
        conf = generator.cfg.ConfigOpts()
        generator.register_cli_opts(conf)
        conf(['--config-file', os.path.join(
            REPO, 'etc', 'nova-tenant-pin-config-generator.conf'),
            '--output-file', out], default_config_files=[])
        generator.generate(conf)
        with open(out) as f:
            sample = f.read()
        self.assertIn('[nova_tenant_pin_privileged]', sample)
        self.assertIn('#helper_command = <None>', sample)
        self.assertIn('[tenant_pin]', sample)
        self.assertNotIn('partition_backend', sample)
