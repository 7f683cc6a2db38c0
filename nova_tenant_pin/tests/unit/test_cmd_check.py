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

"""``nova-tenant-pin check``: each check on a host tree written in a temp
directory (sysfs, mountinfo, the cgroup mount, libvirt's qemu.conf) and a
nova.conf read through oslo.config as nova-compute reads it. Every check
has a test of its failure (or warning) and of its success."""

import io
import json
import os

import fixtures
import nova.conf
from oslo_config import cfg
from oslo_privsep import priv_context
from oslo_upgradecheck import upgradecheck

from nova_tenant_pin.cmd import check
from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import conf as tp_conf
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests.unit import test_topology

GOOD_CONF = """
[DEFAULT]
compute_driver = tenant_pin.TenantPinLibvirtDriver
cpu_allocation_ratio = 1.0

[compute]
cpu_shared_set = 1-3,5-7

[filter_scheduler]
enabled_filters = ComputeFilter,TenantPinFilter
weight_classes = nova.scheduler.weights.all_weighers,%s

[tenant_pin]
housekeeping_cpus = 0,4

[nova_tenant_pin_privileged]
helper_command = sh -c true
""" % 'nova_tenant_pin.scheduler.weights.TenantPinWeigher'

SUCCESS, WARNING, FAILURE = (upgradecheck.Code.SUCCESS,
                             upgradecheck.Code.WARNING,
                             upgradecheck.Code.FAILURE)


class TestCheck(base.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        # 2 cores of 2 threads per cell, 2 cells: (0,4) (1,5) | (2,6) (3,7)
        test_topology.fake_sysfs(
            self.root, {0: '0-1,4-5', 1: '2-3,6-7'},
            {0: '0,4', 4: '0,4', 1: '1,5', 5: '1,5', 2: '2,6', 6: '2,6',
             3: '3,7', 7: '3,7'})
        test_topology.write(self.root, 'sys/devices/system/cpu/smt/control',
                            'on\n')
        test_topology.write(self.root, 'sys/devices/system/cpu/smt/active',
                            '1\n')
        vuln = 'sys/devices/system/cpu/vulnerabilities/'
        test_topology.write(self.root, vuln + 'l1tf', 'Not affected\n')
        test_topology.write(self.root, vuln + 'mds', 'Mitigation: Clear CPU '
                            'buffers; SMT vulnerable\n')
        test_topology.write(self.root, 'proc/self/mountinfo',
                            '30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 '
                            '- cgroup2 cgroup2 rw\n')
        test_topology.write(self.root, 'sys/fs/cgroup/cgroup.controllers',
                            'cpuset cpu io memory pids\n')
        test_topology.write(self.root, 'sys/fs/cgroup/cgroup.subtree_control',
                            'cpuset cpu io memory pids\n')
        self.connect_error = None
        self.write_conf(GOOD_CONF)

    def write_conf(self, text):
        self.conf_path = os.path.join(self.root, 'nova.conf')
        with open(self.conf_path, 'w') as f:
            f.write(text)

    def make_conf(self):
        conf = cfg.ConfigOpts()
        nova.conf.compute.register_opts(conf)
        nova.conf.scheduler.register_opts(conf)
        tp_conf.register_opts(conf)
        conf.register_opts(priv_context.OPTS,
                           group='nova_tenant_pin_privileged')
        conf(['--config-file', self.conf_path], default_config_files=[],
             default_config_dirs=[])
        return conf

    def connect(self, uri):
        if self.connect_error:
            raise self.connect_error
        return '10.0.0'

    def checks(self):
        return check.TenantPinChecks(conf=self.make_conf(),
                                     host_root=self.root,
                                     libvirt_uri='qemu:///x',
                                     connect=self.connect)

    def result(self, method):
        return getattr(self.checks(), method)()

    def assertCode(self, code, result, *texts):
        self.assertEqual(code, result.code, result.details)
        for text in texts:
            self.assertIn(text, result.details)

    def test_all_green_on_a_good_host(self):
        checks = self.checks()
        for name, method in check.CHECKS:
            result = getattr(checks, method)()
            if method == 'check_kernel':
                continue
            self.assertEqual(SUCCESS, result.code, '%s: %s'
                             % (name, result.details))

    # -- configuration -----------------------------------------------------

    def test_config_refused(self):
        self.write_conf(GOOD_CONF.replace('housekeeping_cpus = 0,4',
                                          'housekeeping_cpus = 0,4,64'))
        self.assertCode(FAILURE, self.result('check_config'),
                        '[tenant_pin] housekeeping_cpus: CPUs 64 are not '
                        'online', 'Hint: ')

    def test_config_ratio_below_one(self):
        self.write_conf(GOOD_CONF + '[tenant_pin]\n'
                        'tenant_cpu_allocation_ratio = 0.5\n')
        self.assertCode(FAILURE, self.result('check_config'),
                        '[tenant_pin] tenant_cpu_allocation_ratio: 0.5 is '
                        'refused')

    def test_config_other_driver_warns(self):
        self.write_conf(GOOD_CONF.replace(
            'tenant_pin.TenantPinLibvirtDriver', 'libvirt.LibvirtDriver'))
        self.assertCode(WARNING, self.result('check_config'),
                        "compute_driver is 'libvirt.LibvirtDriver'")

    def test_config_success_names_the_files(self):
        self.assertCode(SUCCESS, self.result('check_config'),
                        'Read %s.' % self.conf_path)

    # -- housekeeping ------------------------------------------------------

    def test_housekeeping_unset(self):
        self.write_conf(GOOD_CONF.replace('housekeeping_cpus = 0,4', '')
                        .replace('cpu_shared_set = 1-3,5-7', ''))
        self.assertCode(FAILURE, self.result('check_housekeeping'),
                        '[tenant_pin] housekeeping_cpus: unset',
                        'housekeeping_cpus = 0,4 (the first core')

    def test_housekeeping_part_of_a_core(self):
        self.write_conf(GOOD_CONF.replace('housekeeping_cpus = 0,4',
                                          'housekeeping_cpus = 0'))
        self.assertCode(WARNING, self.result('check_housekeeping'),
                        'cover only some threads of cores 0,4',
                        'housekeeping_cpus = 0,4.')

    def test_housekeeping_everything(self):
        self.write_conf(GOOD_CONF.replace('housekeeping_cpus = 0,4',
                                          'housekeeping_cpus = 0-7'))
        self.assertCode(FAILURE, self.result('check_housekeeping'),
                        'leave no core for the tenants')

    # -- cgroups -----------------------------------------------------------

    def test_no_cpuset_hierarchy(self):
        test_topology.write(self.root, 'sys/fs/cgroup/cgroup.controllers',
                            'cpu io memory\n')
        self.assertCode(FAILURE, self.result('check_cgroups'),
                        'cpuset controller', 'Hint: mount the cpuset')

    def hybrid_host(self, systemd):
        """This machine kind's layout: cpuset on v1 beside cgroup2."""
        test_topology.write(
            self.root, 'proc/self/mountinfo',
            '34 31 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n'
            '35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n'
            '41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n')
        test_topology.write(self.root, 'sys/fs/cgroup/cpuset/cpuset.cpus',
                            '0-7\n')
        if systemd:
            os.makedirs(os.path.join(self.root, 'run/systemd/system'))

    def test_hybrid_with_systemd_is_refused(self):
        self.hybrid_host(systemd=True)
        self.assertCode(FAILURE, self.result('check_cgroups'),
                        'hybrid cgroup v1 + v2 with systemd as PID 1 is not '
                        'supported', '/sys/fs/cgroup/cpuset',
                        'Hint: add systemd.unified_cgroup_hierarchy=1 to the '
                        'kernel command line')

    def test_hybrid_without_systemd_passes(self):
        self.hybrid_host(systemd=False)
        self.assertCode(SUCCESS, self.result('check_cgroups'),
                        'cgroup hybrid; cpuset controller at')

    def test_cgroup_root_missing(self):
        self.write_conf(GOOD_CONF + '[tenant_pin]\ncgroup_root = /hostB\n')
        self.assertCode(FAILURE, self.result('check_cgroups'),
                        'cgroup_root /hostB is not a cgroup')

    def test_cpuset_not_delegated_warns(self):
        test_topology.write(self.root, 'sys/fs/cgroup/cgroup.subtree_control',
                            'cpu memory\n')
        self.assertCode(WARNING, self.result('check_cgroups'),
                        'cpuset is not enabled for the children')

    # -- libvirt -----------------------------------------------------------

    def test_libvirt_unreachable(self):
        self.connect_error = OSError('Failed to connect socket')
        self.assertCode(FAILURE, self.result('check_libvirt'),
                        'Cannot connect to libvirt at qemu:///x: Failed to '
                        'connect socket', 'start libvirtd')

    def test_libvirt_without_cpuset_controller(self):
        test_topology.write(self.root, 'etc/libvirt/qemu.conf',
                            '# cgroup_controllers = [ "cpuset" ]\n'
                            'cgroup_controllers = [ "cpu", "devices",\n'
                            '                       "memory" ]\n')
        self.assertCode(FAILURE, self.result('check_libvirt'),
                        "cgroup_controllers = ['cpu', 'devices', 'memory']")

    def test_libvirt_with_cpuset_controller(self):
        test_topology.write(self.root, 'etc/libvirt/qemu.conf',
                            'cgroup_controllers = [ "cpu", "cpuset" ]\n')
        self.assertCode(SUCCESS, self.result('check_libvirt'),
                        'libvirt 10.0.0 at qemu:///x', 'cpu, cpuset')

    # -- privileged helper -------------------------------------------------

    def test_helper_not_found(self):
        self.write_conf(GOOD_CONF.replace(
            'helper_command = sh -c true',
            'helper_command = sudo /nonexistent/nova-rootwrap '
            '/etc/nova/rootwrap.conf privsep-helper'))
        self.assertCode(FAILURE, self.result('check_privsep'),
                        '/nonexistent/nova-rootwrap not found on PATH')

    def test_helper_unset_without_root_warns(self):
        self.write_conf(GOOD_CONF.replace('helper_command = sh -c true',
                                          ''))
        self.useFixture(fixtures.MonkeyPatch('os.geteuid', lambda: 1000))
        self.useFixture(fixtures.MonkeyPatch(
            'shutil.which', lambda name: '/usr/bin/' + name))
        self.assertCode(WARNING, self.result('check_privsep'),
                        'needs a sudoers rule')

    # -- kernel ------------------------------------------------------------

    def test_smt_off_warns(self):
        test_topology.write(self.root, 'sys/devices/system/cpu/smt/control',
                            'off\n')
        self.assertCode(WARNING, self.result('check_kernel'), 'SMT is off')

    def test_vulnerable_warns(self):
        test_topology.write(self.root, 'sys/devices/system/cpu/'
                            'vulnerabilities/l1tf', 'Vulnerable\n')
        self.assertCode(WARNING, self.result('check_kernel'),
                        'l1tf as Vulnerable')

    def test_no_vulnerabilities_dir_warns(self):
        import shutil
        shutil.rmtree(os.path.join(self.root, 'sys/devices/system/cpu/'
                                   'vulnerabilities'))
        self.assertCode(WARNING, self.result('check_kernel'), 'Cannot read')

    def test_kernel_success(self):
        self.assertCode(SUCCESS, self.result('check_kernel'), 'SMT is on',
                        '2 checked')

    # -- scheduler and ratio -----------------------------------------------

    def test_filter_missing_warns(self):
        self.write_conf(GOOD_CONF.replace(',TenantPinFilter', ''))
        self.assertCode(WARNING, self.result('check_scheduler'),
                        'TenantPinFilter in [filter_scheduler] '
                        'enabled_filters')

    def test_weigher_missing_warns(self):
        self.write_conf(GOOD_CONF.replace(
            ',nova_tenant_pin.scheduler.weights.TenantPinWeigher', ''))
        self.assertCode(WARNING, self.result('check_scheduler'),
                        'TenantPinWeigher in [filter_scheduler] '
                        'weight_classes')

    def test_default_allocation_ratio_warns(self):
        self.write_conf(GOOD_CONF.replace('cpu_allocation_ratio = 1.0\n',
                                          ''))
        self.assertCode(WARNING, self.result('check_allocation_ratio'),
                        'initial_cpu_allocation_ratio (the default) is 4.0',
                        'cpu_allocation_ratio = 1.0.')

    # -- the command -------------------------------------------------------

    def run_cmd(self, *argv, checks=None):
        """``nova-tenant-pin check ARGV`` through the application, on
        the temp host's checks; ``(exit code, stdout, stderr)``."""
        out, err = io.StringIO(), io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.main.load_config', lambda args: None))
        checks = checks or self.checks()
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.check.host_checks', lambda args: checks))
        rc = cli.main(['check'] + list(argv))
        return rc, out.getvalue(), err.getvalue()

    def test_exit_codes_as_nova_status(self):
        rc, out, _ = self.run_cmd('-f', 'json')
        rows = json.loads(out)
        self.assertEqual([name for name, _ in check.CHECKS],
                         [row['Check'] for row in rows])
        # The temp host reports mds "SMT vulnerable" as a mitigation, not
        # as Vulnerable: all green.
        self.assertEqual(0, rc, rows)
        self.assertEqual({'Success'}, {row['Result'] for row in rows})
        self.connect_error = OSError('down')
        rc, out, _ = self.run_cmd()
        self.assertEqual(2, rc)
        libvirt = [line for line in out.splitlines()
                   if line.startswith('| Libvirt ')]
        self.assertEqual(1, len(libvirt), out)
        self.assertIn('| Failure |', libvirt[0])

    def test_warning_exits_1(self):
        self.write_conf(GOOD_CONF.replace(',TenantPinFilter', ''))
        rc, out, _ = self.run_cmd('-f', 'value', '-c', 'Check', '-c',
                                  'Result')
        self.assertEqual(1, rc)
        self.assertIn('Scheduler filter and weigher Warning\n', out)
        self.assertIn('Configuration Success\n', out)

    def test_a_check_that_raises_exits_255(self):
        checks = self.checks()
        checks.check_kernel = lambda: 1 / 0
        rc, out, err = self.run_cmd('-f', 'json', checks=checks)
        self.assertEqual(255, rc)
        self.assertIn('the check "Kernel SMT and CPU vulnerabilities" could '
                      'not run: division by zero', err)
        # The checks before it are reported.
        self.assertEqual('Privileged helper', json.loads(out)[-1]['Check'])
