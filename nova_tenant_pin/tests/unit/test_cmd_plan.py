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

"""``nova-tenant-pin plan``: the JSON contract, run as a real process."""

import io
import json
import os
import subprocess
import sys

import ddt
import fixtures
from oslo_config import cfg

from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import conf
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
EXAMPLE = os.path.join(REPO, 'etc', 'examples', 'plan-small.json')

DESIGN_EXAMPLE = {
    'host': {'cells': [{'id': 0, 'siblings': [[0, 4], [1, 5], [2, 6],
                                              [3, 7]]}]},
    'housekeeping_cpus': [0, 4],
    'instances': [{'uuid': 'i1', 'project_id': 'p1', 'vcpus': 3,
                   'cell': None, 'mode': 'float'}],
    'current': {'p1': [1, 5, 2, 6]},
    'options': {'tenant_cpu_allocation_ratio': 1.0},
}


def run_plan(doc=None, args=(), text=None):
    if text is None:
        text = json.dumps(doc)
    proc = subprocess.run(
        [sys.executable, '-m', 'nova_tenant_pin', 'plan'] +
        list(args), input=text, capture_output=True, text=True, cwd=REPO,
        timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


@ddt.ddt
class TestPlanCommand(base.TestCase):

    def test_design_example(self):
        rc, out, err = run_plan(DESIGN_EXAMPLE)
        self.assertEqual(0, rc, err)
        result = json.loads(out)
        self.assertEqual({'p1': {'cpus': [1, 2, 5, 6], 'cells': [0],
                                 'vcpus': 3, 'stranded_cpus': 1}},
                         result['tenants'])
        self.assertEqual([1, 2, 5, 6], result['instances']['i1']['cpus'])
        self.assertIsNone(result['instances']['i1']['vcpu_pins'])
        self.assertEqual([], result['unplaced'])
        self.assertEqual(1, result['stranded_cpus'])
        self.assertEqual([3, 7], result['free_cpus'])
        self.assertEqual([], result['moves'])  # already in place

    def test_strict_pins_and_moves(self):
        doc = dict(DESIGN_EXAMPLE, current={'p1': [1, 5, 2, 6, 3, 7]})
        doc['instances'] = [dict(doc['instances'][0], mode='strict')]
        rc, out, err = run_plan(doc)
        self.assertEqual(0, rc, err)
        result = json.loads(out)
        self.assertEqual({'0': 1, '1': 5, '2': 2},
                         result['instances']['i1']['vcpu_pins'])
        self.assertEqual([{'action': 'shrink', 'tenant': 'p1',
                           'cpus': [1, 2, 5, 6], 'add': [],
                           'remove': [3, 7]}], result['moves'])

    def test_tenant_ratios(self):
        doc = dict(DESIGN_EXAMPLE, current={})
        doc['instances'] = [{'uuid': 'a', 'project_id': 'pa', 'vcpus': 4}]
        doc['options'] = {'tenant_ratios': {'pa': 2.0}}
        rc, out, err = run_plan(doc)
        self.assertEqual(0, rc, err)
        self.assertEqual(2, len(json.loads(out)['tenants']['pa']['cpus']))

    def test_unplaced_is_reported_not_an_error(self):
        doc = dict(DESIGN_EXAMPLE, current={})
        doc['instances'] = [
            {'uuid': 'a', 'project_id': 'pa', 'vcpus': 6},
            {'uuid': 'b', 'project_id': 'pb', 'vcpus': 1}]
        rc, out, err = run_plan(doc)
        self.assertEqual(0, rc, err)
        result = json.loads(out)
        self.assertEqual(['b'], [u['uuid'] for u in result['unplaced']])
        self.assertIn('reason', result['unplaced'][0])

    def test_example_works_as_documented_with_housekeeping(self):
        """README's first plan command: the example alone, no flag; the
        housekeeping core is nobody's."""
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_tenant_pin', 'plan', EXAMPLE],
            capture_output=True, text=True, cwd=REPO, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        result = json.loads(proc.stdout)
        self.assertEqual([0, 4], result['housekeeping_cpus'])
        self.assertEqual([], result['unplaced'])
        held = [c for t in result['tenants'].values() for c in t['cpus']]
        self.assertEqual(sorted(held), sorted(set(held)))
        self.assertFalse({0, 4} & set(held))
        with open(os.path.join(REPO, 'README.md')) as f:
            self.assertIn('nova-tenant-pin plan etc/examples/'
                          'plan-small.json\n', f.read())

    def test_file_argument_and_sysfs_host(self):
        proc = subprocess.run(
            [sys.executable, '-m', 'nova_tenant_pin', 'plan',
             '--host-topology', 'sysfs', EXAMPLE],
            capture_output=True, text=True, cwd=REPO, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        result = json.loads(proc.stdout)
        cpus = sum(len(g) for c in result['host']['cells']
                   for g in c['siblings'])
        with open('/sys/devices/system/cpu/online') as f:
            online = topology.parse_cpu_list(f.read())
        self.assertEqual(len(online), cpus)
        placed = len(result['instances']) + len(result['unplaced'])
        self.assertEqual(3, placed)

    def test_plan_imports_neither_nova_nor_libvirt(self):
        code = ('import sys, io\n'
                'from nova_tenant_pin.cmd import main\n'
                'sys.stdin = io.StringIO(%r)\n'
                'rc = main.main(["plan"])\n'
                'bad = [m for m in sys.modules if m.split(".")[0] in '
                '("nova", "libvirt")]\n'
                'sys.exit(3 if bad else rc)\n' % json.dumps(DESIGN_EXAMPLE))
        proc = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode,
                         'plan imported Nova or libvirt: %s' % proc.stderr)

    @ddt.unpack
    @ddt.data(
        ('[', 'input is not JSON'),
        ('[]', 'must be a JSON object'),
        ('{}', '"host" is missing'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0, 1], [1, 2]]}]}}',
         'CPU 1 is in two cores'),
        ('{"host": {"cells": []}, "bogus": 1}', 'unknown top-level key'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"instances": [{"uuid": "a", "project_id": "p"}]}',
         '"vcpus" is missing'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"instances": [{"uuid": "a", "project_id": "p", "vcpus": -1}]}',
         'vcpus must be an integer >= 1'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"instances": [{"uuid": "a", "project_id": "p", "vcpus": 1, '
         '"cell": 3}]}', 'no NUMA cell 3'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"instances": [{"uuid": "a", "project_id": "p", "vcpus": 1, '
         '"mode": "loose"}]}', 'mode must be one of'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"housekeeping_cpus": [5]}', 'not an online CPU'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"current": {"p": "0-1"}}', 'current.p must be a list'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"options": {"tenant_cpu_allocation_ratio": 0.5}}', '>= 1.0'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"options": {"ratio": 2}}', 'unknown key(s) ratio'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"options": {"tenant_ratios": [2]}}', 'must be an object'),
        ('{"host": {"cells": [{"id": 0, "siblings": [[0]]}]}, '
         '"options": {"tenant_ratios": {"p": 0.1}}}',
         'the allocation ratio of tenant p must be a number >= 1.0'),
    )
    def test_bad_input_exits_2_with_one_line(self, text, message):
        rc, out, err = run_plan(text=text)
        self.assertEqual(2, rc)
        self.assertEqual('', out)
        self.assertEqual(1, len(err.strip().splitlines()), err)
        self.assertIn(message, err)
        self.assertNotIn('Traceback', err)
        self.assertTrue(err.startswith('nova-tenant-pin plan: error: '))

    def test_missing_file(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 'x')
        rc, out, err = run_plan(text='', args=[path])
        self.assertEqual(2, rc)
        self.assertIn('cannot read', err)


class TestHousekeepingCpus(base.TestCase):
    """Which CPUs the commands treat as housekeeping, as the driver does.

    Each test reads a private ConfigOpts: the command registers Nova's two
    [compute] options where Nova is not imported, which must not happen to
    the global CONF of a test process that imports Nova.
    """

    def setUp(self):
        super().setUp()
        self.private = cfg.ConfigOpts()
        conf.register_opts(self.private)
        self.private([], default_config_files=[])

    def set(self, group='tenant_pin', **kw):
        for name, value in kw.items():
            self.private.set_override(name, value, group=group)

    def test_flag_first(self):
        self.set(housekeeping_cpus='0')
        self.assertEqual(frozenset({3}),
                         cli.housekeeping_cpus('3', range(4), self.private))

    def test_option_next(self):
        self.set(housekeeping_cpus='0,2')
        self.assertEqual(frozenset({0, 2}),
                         cli.housekeeping_cpus(None, range(4), self.private))

    def test_what_the_shared_and_dedicated_sets_leave_out(self):
        self.assertIsNone(cli.housekeeping_cpus(None, range(4),
                                                self.private, required=False))
        self.assertRaises(cli.UsageError, cli.housekeeping_cpus, None,
                          range(4), self.private)
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'nova.conf')
        with open(path, 'w') as f:
            f.write('[compute]\ncpu_shared_set = 1-2\n'
                    'cpu_dedicated_set = 3\n')
        self.private(['--config-file', path], default_config_files=[])
        self.assertEqual(frozenset({0}),
                         cli.housekeeping_cpus(None, range(4), self.private))

    def test_bad_list(self):
        e = self.assertRaises(cli.UsageError, cli.housekeeping_cpus, '0-x',
                              range(4), self.private)
        self.assertIn('--housekeeping-cpus: Invalid range expression', str(e))

    def test_nova_exclusion_syntax_everywhere(self):
        """``2-7,^5`` is Nova's CPU-spec syntax (nova.virt.hardware
        parse_cpu_spec); the commands read it as the driver does."""
        self.set(housekeeping_cpus='0-3,^2')
        self.assertEqual(frozenset({0, 1, 3}),
                         cli.housekeeping_cpus(None, range(8), self.private))
        self.assertEqual(frozenset({2, 3, 4, 6, 7}),
                         cli.housekeeping_cpus('2-7,^5', range(8),
                                               self.private))

    def test_error_in_shared_set_names_it(self):
        """A bad ``[compute] cpu_shared_set`` is reported against that
        option, not against the housekeeping CPUs derived from it."""
        self.private.register_opts([cfg.StrOpt('cpu_shared_set'),
                                    cfg.StrOpt('cpu_dedicated_set')],
                                   group='compute')
        self.set(group='compute', cpu_shared_set='1-x')
        e = self.assertRaises(cli.UsageError, cli.housekeeping_cpus, None,
                              range(4), self.private)
        self.assertTrue(str(e).startswith('[compute] cpu_shared_set: '),
                        str(e))

    def test_ratio_below_one_is_one_clear_line(self):
        """A ratio oslo.config refuses is one line naming the option and
        the value, from the reader every command and the driver use."""
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'nova.conf')
        with open(path, 'w') as f:
            f.write('[tenant_pin]\nhousekeeping_cpus = 0\n'
                    'tenant_cpu_allocation_ratio = 0.5\n')
        self.private(['--config-file', path], default_config_files=[])
        from nova_tenant_pin import topology
        host = topology.HostTopology.from_dict(
            {'cells': [{'id': 0, 'siblings': [[0, 2], [1, 3]]}]})
        e = self.assertRaises(cli.UsageError, cli.host_options, host,
                              conf_obj=self.private)
        self.assertEqual('[tenant_pin] tenant_cpu_allocation_ratio: 0.5 is '
                         'refused: Should be greater than or equal to 1',
                         str(e))
        self.assertNotIn('LocationInfo', str(e))


class TestLoadConfig(base.TestCase):
    """The command reads the files nova-compute reads and says which."""

    def setUp(self):
        super().setUp()
        self.home = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.EnvironmentVariable('HOME', self.home))
        os.mkdir(os.path.join(self.home, '.nova'))
        self.stderr = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', self.stderr))
        self.private = cfg.ConfigOpts()
        conf.register_opts(self.private)

    def write(self, name, text):
        path = os.path.join(self.home, '.nova', name)
        with open(path, 'w') as f:
            f.write(text)
        return path

    def args(self, *argv):
        return cli.global_options(list(argv) + ['status'])

    def test_nova_conf_and_nova_compute_conf_by_default(self):
        nova = self.write('nova.conf', '[tenant_pin]\npin_mode = strict\n'
                          'housekeeping_cpus = 0\n')
        compute = self.write('nova-compute.conf',
                             '[tenant_pin]\nhousekeeping_cpus = 0,4\n')
        cli.load_config(self.args(), self.private)
        self.assertEqual('strict', self.private.tenant_pin.pin_mode)
        self.assertEqual('0,4', self.private.tenant_pin.housekeeping_cpus)
        self.assertEqual('nova-tenant-pin: configuration read from %s, %s\n'
                         % (nova, compute), self.stderr.getvalue())

    def test_config_file_and_dir_as_given(self):
        self.write('nova.conf', '[tenant_pin]\npin_mode = strict\n')
        given = os.path.join(self.home, 'given.conf')
        with open(given, 'w') as f:
            f.write('[tenant_pin]\nhousekeeping_cpus = 1\n')
        conf_d = os.path.join(self.home, 'conf.d')
        os.mkdir(conf_d)
        with open(os.path.join(conf_d, '50-cpus.conf'), 'w') as f:
            f.write('[tenant_pin]\nhousekeeping_cpus = 2\n')
        cli.load_config(self.args('--config-file', given, '--config-dir',
                                  conf_d), self.private)
        self.assertEqual('float', self.private.tenant_pin.pin_mode)
        self.assertEqual('2', self.private.tenant_pin.housekeeping_cpus)
        self.assertIn('read from %s, %s' % (
            given, os.path.join(conf_d, '50-cpus.conf')),
            self.stderr.getvalue())

    def test_says_when_it_found_none(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.options.default_config_files', lambda: []))
        cli.load_config(self.args(), self.private)
        self.assertIn('no configuration file found', self.stderr.getvalue())


class TestFastHelp(base.TestCase):
    """``--help`` lists every command without importing what only running
    a command needs: oslo.privsep (and with it eventlet), Nova, libvirt,
    oslo.upgradecheck, lxml. Measured on the 2-core CI machine under load
    (median of 10 runs): see doc/source/reference/cli.rst."""

    def test_help_imports_no_privsep_eventlet_nova_or_libvirt(self):
        code = ('import sys\n'
                'from nova_tenant_pin.cmd import main\n'
                'for argv in (["--help"], ["help", "adopt"], '
                '["status", "--help"]):\n'
                '    try:\n'
                '        main.main(argv)\n'
                '    except SystemExit:\n'
                '        pass\n'
                'heavy = sorted(m for m in sys.modules if m.split(".")[0] '
                'in ("eventlet", "oslo_privsep", "nova", "libvirt", '
                '"oslo_upgradecheck", "lxml"))\n'
                'sys.stderr.write(",".join(heavy))\n')
        proc = subprocess.run([sys.executable, '-c', code],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertIn('usage: nova-tenant-pin adopt', proc.stdout)
        self.assertIn('usage: nova-tenant-pin status', proc.stdout)
        self.assertEqual('', proc.stderr.strip())

    def test_help_lists_every_command(self):
        proc = subprocess.run([sys.executable, '-m', 'nova_tenant_pin',
                               '--help'], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        for name in cli.SUBCOMMANDS:
            self.assertIn(name, proc.stdout)

    def test_version(self):
        from importlib import metadata

        proc = subprocess.run([sys.executable, '-m', 'nova_tenant_pin',
                               '--version'], capture_output=True, text=True,
                              timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.assertEqual('nova-tenant-pin %s\n'
                         % metadata.version('nova-tenant-pin'), proc.stdout)
