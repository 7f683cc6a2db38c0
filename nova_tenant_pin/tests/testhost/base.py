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

"""What every real-kernel test shares: the test host it must run in.

The real-kernel suite runs inside the test host that tools/testhost/run.sh
boots (a QEMU TCG guest with 2 sockets x 2 cores x 2 threads, two NUMA
nodes, systemd with machined on the unified cgroup v2 hierarchy, libvirtd
under systemd). ``tox -e testhost`` and tools/test.sh (CI) start it there.
Anywhere else the tests skip and say so: this machine kind has no SMT
siblings, one NUMA node and no systemd, so they would prove nothing here.
Inside the test host (``NTP_TESTHOST=1``, set by the runner) they never
skip: a host that lacks what they need fails them.
"""

import os
import subprocess

import fixtures
import libvirt

from nova_tenant_pin.tests import base
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf

SYSTEM_URI = 'qemu:///system'


def in_test_host():
    return os.environ.get('NTP_TESTHOST') == '1'


def systemctl(*args, check=True):
    return subprocess.run(('systemctl',) + args, check=check,
                          capture_output=True, text=True,
                          timeout=120).stdout.strip()


class SystemLibvirtFixture(fixtures.Fixture):
    """The test host's own libvirtd, run by systemd (``libvirtd.service``);
    ``self.conn`` is a connection to it. Clean-up destroys and undefines
    the domains defined through :meth:`define`; libvirtd keeps running, as
    on a compute host."""

    uri = SYSTEM_URI

    def _setUp(self):
        systemctl('start', 'libvirtd.service')
        self.conn = lvf.wait_for(self._connect, 'libvirtd to answer on %s'
                                 % SYSTEM_URI, lvf.START_TIMEOUT)
        self.addCleanup(self._close)
        self.defined = []

    @staticmethod
    def _connect():
        try:
            return libvirt.open(SYSTEM_URI)
        except libvirt.libvirtError:
            return None

    def _close(self):
        lvf.remove_domains(self.conn, self.defined)
        self.conn.close()

    define = lvf.define_domain


SKIP_REASON = ('runs inside the test host (SMT, NUMA, systemd, cgroup v2): '
               'tox -e testhost or tools/testhost/run.sh; CI runs it')


class TestHostTestCase(base.TestCase):
    """A test that runs only inside the test host."""

    def setUp(self):
        super().setUp()
        if not in_test_host():
            self.skipTest(SKIP_REASON)
