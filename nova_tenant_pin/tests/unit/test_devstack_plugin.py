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

"""devstack/plugin.sh run by bash against a stub devstack, phase by phase.

The stub defines the devstack functions the plugin calls (``iniset``,
``setup_develop``, ``is_service_enabled``, ``trueorfalse``, ``sudo``,
``echo_summary``); each records its call in a log instead of acting, and
``iniset`` writes a real ini file, which the test then reads.
"""

import configparser
import os
import subprocess

import ddt
import fixtures

from nova_tenant_pin.tests import base
from nova_tenant_pin.tests.unit import test_topology

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

STUB = r'''
DEST=/opt/stack
function echo_summary { echo "summary $*" >> "$CALLS"; }
function setup_develop { echo "setup_develop $*" >> "$CALLS"; }
function sudo {
    echo "sudo $*" >> "$CALLS"
    # The file edits run for real, on the test's own copy of qemu.conf.
    case $1 in sed|tee) "$@" ;; esac
}
function restart_service { echo "restart_service $*" >> "$CALLS"; }
function is_service_enabled {
    for s in $SERVICES; do [[ "$s" == "$1" ]] && return 0; done
    return 1
}
function trueorfalse {
    local default=$1 name=$2 value=${!2:-$1}
    case "$value" in
        1|yes|Yes|YES|true|True|TRUE|on|On|ON) echo True ;;
        0|no|No|NO|false|False|FALSE|off|Off|OFF) echo False ;;
        *) echo $default ;;
    esac
}
function _ini {
    python3 - "$@" <<'PY'
import sys
# devstack's ini functions on a real file: one line per value, repeated
# keys for a multi-valued option, sections kept in order.
action, path, section, key = sys.argv[1:5]
values = sys.argv[5:]
sections, order = {}, []
try:
    current = None
    for line in open(path).read().splitlines():
        line = line.strip()
        if line.startswith('[') and line.endswith(']'):
            current = line[1:-1]
            if current not in sections:
                sections[current] = []
                order.append(current)
        elif '=' in line and current is not None:
            k, v = line.split('=', 1)
            sections[current].append((k.strip(), v.strip()))
except FileNotFoundError:
    pass
if action == 'get':
    found = [v for k, v in sections.get(section, []) if k == key]
    print(found[0] if found else '')
    sys.exit(0)
if section not in sections:
    sections[section] = []
    order.append(section)
entries = sections[section]
at = next((n for n, (k, _) in enumerate(entries) if k == key), len(entries))
entries[:] = [e for e in entries if e[0] != key]
entries[at:at] = [(key, v) for v in values]
with open(path, 'w') as f:
    for name in order:
        f.write('[%s]\n' % name)
        for k, v in sections[name]:
            f.write('%s = %s\n' % (k, v))
        f.write('\n')
PY
}
function iniset { echo "iniset $*" >> "$CALLS"; _ini set "$@"; }
function iniset_multiline {
    echo "iniset_multiline $*" >> "$CALLS"; _ini set "$@"
}
function iniget { _ini get "$@"; }
'''


@ddt.ddt
class TestDevstackPlugin(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.calls = os.path.join(self.tmp, 'calls')
        self.conf = os.path.join(self.tmp, 'nova-cpu.conf')
        self.nova_conf = os.path.join(self.tmp, 'nova.conf')
        # A host of 4 cores with 2 threads each: (0,4) (1,5) (2,6) (3,7).
        self.host_root = os.path.join(self.tmp, 'host')
        test_topology.fake_sysfs(
            self.host_root, {0: '0-7'},
            {c: '%d,%d' % (c % 4, c % 4 + 4) for c in range(8)})
        open(self.calls, 'w').close()
        with open(os.path.join(self.tmp, 'stub.sh'), 'w') as f:
            f.write(STUB)

    def run_phase(self, *phase, services='n-cpu', env=None):
        script = ('set +o xtrace\n'
                  'source %(tmp)s/stub.sh\n'
                  'source %(repo)s/devstack/settings\n'
                  'source %(repo)s/devstack/plugin.sh %(phase)s\n'
                  'set +o | grep -q "set +o xtrace" || '
                  '{ echo "xtrace left on" >&2; exit 9; }\n'
                  % {'tmp': self.tmp, 'repo': REPO,
                     'phase': ' '.join(phase)})
        environ = {'PATH': os.environ['PATH'], 'CALLS': self.calls,
                   'NOVA_CPU_CONF': self.conf, 'NOVA_CONF': self.nova_conf,
                   'NOVA_TENANT_PIN_SYSFS': os.path.join(self.host_root,
                                                         'sys'),
                   'SERVICES': services}
        environ.update(env or {})
        proc = subprocess.run(['bash', '-c', script], env=environ,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(0, proc.returncode, proc.stderr)
        with open(self.calls) as f:
            return [line.rstrip('\n') for line in f]

    def read_conf(self):
        c = configparser.RawConfigParser()
        c.read(self.conf)
        return c

    def test_install(self):
        calls = self.run_phase('stack', 'install')
        self.assertIn('setup_develop /opt/stack/nova-tenant-pin', calls)

    def test_post_config_sets_driver_and_options(self):
        self.run_phase('stack', 'post-config', env={
            'NOVA_TENANT_PIN_PIN_MODE': 'strict',
            'NOVA_TENANT_PIN_HOUSEKEEPING_CPUS': '0,8'})
        conf = self.read_conf()
        self.assertEqual('tenant_pin.TenantPinLibvirtDriver',
                         conf.get('DEFAULT', 'compute_driver'))
        self.assertEqual('strict', conf.get('tenant_pin', 'pin_mode'))
        self.assertEqual('1.0', conf.get('tenant_pin',
                                         'tenant_cpu_allocation_ratio'))
        self.assertEqual('0,8', conf.get('tenant_pin', 'housekeeping_cpus'))

    def test_post_config_housekeeping_defaults_to_the_first_core(self):
        """Unset, housekeeping is the first core and its SMT siblings,
        so the driver starts on any host."""
        self.run_phase('stack', 'post-config')
        conf = self.read_conf()
        self.assertEqual('0,4', conf.get('tenant_pin', 'housekeeping_cpus'))
        self.assertEqual('1.0', conf.get('DEFAULT', 'cpu_allocation_ratio'))

    def load(self, path, extra_opts=()):
        """``path`` read by oslo.config with Nova's and tenant-pin's
        options, as nova-compute reads it."""
        import nova.conf
        from oslo_config import cfg
        from oslo_privsep import priv_context

        from nova_tenant_pin import conf as tp_conf

        conf = cfg.ConfigOpts()
        nova.conf.compute.register_opts(conf)
        nova.conf.scheduler.register_opts(conf)
        tp_conf.register_opts(conf)
        conf.register_opts(priv_context.OPTS,
                           group='nova_tenant_pin_privileged')
        conf(['--config-file', path], default_config_files=[],
             default_config_dirs=[])
        return conf

    def test_resulting_nova_cpu_conf_passes_the_driver_option_check(self):
        """The plugin's phases on a stub devstack, then nova-cpu.conf
        through the driver's own option check (``driver.load_options``) on
        the stub host's topology."""
        from nova_tenant_pin import driver
        from nova_tenant_pin import topology

        self.run_phase('stack', 'install', services='n-cpu n-sch')
        self.run_phase('stack', 'post-config', services='n-cpu n-sch')
        host = topology.HostTopology.from_sysfs(self.host_root)
        conf = self.load(self.conf)
        options = driver.load_options(conf, host)
        self.assertEqual(frozenset({0, 4}), options['housekeeping_cpus'])
        self.assertEqual(1.0, options['ratio'])
        self.assertEqual('tenant_pin.TenantPinLibvirtDriver',
                         conf.compute_driver)

    def test_resulting_config_passes_check(self):
        """``nova-tenant-pin check``'s configuration, housekeeping,
        scheduler and ratio checks are green on what the plugin wrote."""
        from oslo_upgradecheck import upgradecheck

        from nova_tenant_pin.cmd import check

        self.run_phase('stack', 'post-config', services='n-cpu n-sch',
                       env={'NOVA_CONF': self.conf})
        checks = check.TenantPinChecks(conf=self.load(self.conf),
                                       host_root=self.host_root)
        for method in ('check_config', 'check_housekeeping',
                       'check_scheduler', 'check_allocation_ratio'):
            result = getattr(checks, method)()
            self.assertEqual(upgradecheck.Code.SUCCESS, result.code,
                             '%s: %s' % (method, result.details))

    def test_scheduler_gets_the_filter_and_weigher(self):
        with open(self.nova_conf, 'w') as f:
            f.write('[filter_scheduler]\nenabled_filters = ComputeFilter,'
                    'PciPassthroughFilter\n')
        self.run_phase('stack', 'post-config', services='n-sch')
        conf = self.load(self.nova_conf)
        group = conf.filter_scheduler
        self.assertEqual(['ComputeFilter', 'PciPassthroughFilter',
                          'TenantPinFilter'], group.enabled_filters)
        self.assertEqual(['nova.scheduler.filters.all_filters',
                          'nova_tenant_pin.scheduler.filters.'
                          'TenantPinFilter'], group.available_filters)
        self.assertIn('nova_tenant_pin.scheduler.weights.TenantPinWeigher',
                      group.weight_classes)
        self.assertEqual(1.0,
                         conf.tenant_pin.tenant_cpu_allocation_ratio)
        # Running the phase again does not add the filter twice.
        self.run_phase('stack', 'post-config', services='n-sch')
        self.assertEqual(1, self.load(
            self.nova_conf).filter_scheduler.enabled_filters.count(
                'TenantPinFilter'))
        self.assertFalse(os.path.exists(self.conf))

    def test_scheduler_can_be_left_alone(self):
        self.run_phase('stack', 'post-config', services='n-sch',
                       env={'NOVA_TENANT_PIN_SCHEDULER': 'False'})
        self.assertFalse(os.path.exists(self.nova_conf))

    def test_extra_confines_housekeeping(self):
        calls = self.run_phase('stack', 'extra', env={
            'NOVA_TENANT_PIN_HOUSEKEEPING_CPUS': '0'})
        self.assertIn('sudo nova-tenant-pin --config-file %s housekeeping '
                      'apply' % self.conf, calls)

    def test_extra_confines_the_default_housekeeping_too(self):
        calls = self.run_phase('stack', 'extra')
        self.assertIn('sudo nova-tenant-pin --config-file %s housekeeping '
                      'apply' % self.conf, calls)

    def test_extra_can_be_turned_off(self):
        calls = self.run_phase('stack', 'extra', env={
            'NOVA_TENANT_PIN_CONFINE_HOUSEKEEPING': 'False',
            'NOVA_TENANT_PIN_HOUSEKEEPING_CPUS': '0'})
        self.assertFalse([c for c in calls if c.startswith('sudo')])

    def qemu_conf(self, text):
        path = os.path.join(self.tmp, 'qemu.conf')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_post_config_sets_libvirts_sched_core_where_the_kernel_has_it(
            self):
        from nova_tenant_pin import coresched

        path = self.qemu_conf('#sched_core = "none"\nsched_core = "vcpus"\n'
                              'stdio_handler = "file"\n')
        calls = self.run_phase('stack', 'post-config', env={
            'NOVA_TENANT_PIN_QEMU_CONF': path,
            'NOVA_TENANT_PIN_PYTHON': 'true'})
        self.assertIn('restart_service libvirtd', calls)
        with open(path) as f:
            text = f.read()
        self.assertEqual('#sched_core = "none"\nstdio_handler = "file"\n'
                         'sched_core = "full"\n', text)
        self.assertEqual('full', coresched.read_sched_core(path))
        # Again: still one setting.
        self.run_phase('stack', 'post-config', env={
            'NOVA_TENANT_PIN_QEMU_CONF': path,
            'NOVA_TENANT_PIN_PYTHON': 'true'})
        with open(path) as f:
            self.assertEqual(text, f.read())

    @ddt.data({'NOVA_TENANT_PIN_PYTHON': 'false'},
              {'NOVA_TENANT_PIN_PYTHON': 'true',
               'NOVA_TENANT_PIN_LIBVIRT_SCHED_CORE': 'none'})
    def test_sched_core_left_alone_without_kernel_support_or_when_off(
            self, env):
        path = self.qemu_conf('#sched_core = "none"\n')
        env = dict(env, NOVA_TENANT_PIN_QEMU_CONF=path)
        calls = self.run_phase('stack', 'post-config', env=env)
        self.assertFalse([c for c in calls if c.startswith(
            ('sudo', 'restart_service'))], calls)
        with open(path) as f:
            self.assertEqual('#sched_core = "none"\n', f.read())

    @ddt.data('unstack', 'clean')
    def test_unstack_and_clean_release(self, phase):
        calls = self.run_phase(phase)
        self.assertIn('sudo nova-tenant-pin --config-file %s housekeeping '
                      'release' % self.conf, calls)

    @ddt.data(('stack', 'install'), ('stack', 'post-config'),
              ('stack', 'extra'), ('unstack',), ('clean',))
    def test_nothing_without_nova_compute(self, phase):
        self.assertEqual([], self.run_phase(
            *phase, services='n-api',
            env={'NOVA_TENANT_PIN_HOUSEKEEPING_CPUS': '0'}))
        self.assertFalse(os.path.exists(self.conf))
        self.assertFalse(os.path.exists(self.nova_conf))
        self.assertFalse(os.path.exists(self.nova_conf))
