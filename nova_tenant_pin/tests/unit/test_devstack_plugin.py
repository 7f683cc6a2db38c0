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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

STUB = r'''
DEST=/opt/stack
function echo_summary { echo "summary $*" >> "$CALLS"; }
function setup_develop { echo "setup_develop $*" >> "$CALLS"; }
function sudo { echo "sudo $*" >> "$CALLS"; }
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
function iniset {
    echo "iniset $*" >> "$CALLS"
    python3 - "$@" <<'PY'
import configparser, sys
path, section, key, value = sys.argv[1:5]
c = configparser.RawConfigParser()
c.optionxform = str
c.read(path)
if section != 'DEFAULT' and not c.has_section(section):
    c.add_section(section)
c.set(section, key, value)
with open(path, 'w') as f:
    c.write(f)
PY
}
'''


@ddt.ddt
class TestDevstackPlugin(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.calls = os.path.join(self.tmp, 'calls')
        self.conf = os.path.join(self.tmp, 'nova-cpu.conf')
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
                   'NOVA_CPU_CONF': self.conf, 'SERVICES': services}
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

    def test_post_config_leaves_housekeeping_unset_by_default(self):
        self.run_phase('stack', 'post-config')
        self.assertFalse(self.read_conf().has_option('tenant_pin',
                                                     'housekeeping_cpus'))

    def test_extra_confines_housekeeping(self):
        calls = self.run_phase('stack', 'extra', env={
            'NOVA_TENANT_PIN_HOUSEKEEPING_CPUS': '0'})
        self.assertIn('sudo nova-tenant-pin --config-file %s housekeeping '
                      'apply' % self.conf, calls)

    def test_extra_without_housekeeping_cpus_confines_nothing(self):
        calls = self.run_phase('stack', 'extra')
        self.assertFalse([c for c in calls if c.startswith('sudo')])

    def test_extra_can_be_turned_off(self):
        calls = self.run_phase('stack', 'extra', env={
            'NOVA_TENANT_PIN_CONFINE_HOUSEKEEPING': 'False',
            'NOVA_TENANT_PIN_HOUSEKEEPING_CPUS': '0'})
        self.assertFalse([c for c in calls if c.startswith('sudo')])

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
