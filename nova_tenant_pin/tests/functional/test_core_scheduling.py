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

"""[tenant_pin] core_scheduling through Nova's compute service.

On this project's machines the kernel has no core scheduling, so ``auto``
and ``required`` are tested for real here; where cookies are set, the
kernel side is faked (the order of the domain start, the cookie and the
resume is what is checked) and the test host suite checks real cookies.
"""

import fixtures
from nova import exception as nova_exception
from nova.tests.fixtures import libvirt as fakelibvirt

from nova_tenant_pin import coresched
from nova_tenant_pin.tests.functional import base


def _kernel_supports():
    return coresched.support()[0]


class TestCoreSchedulingOnThisKernel(base.TenantPinTestBase):

    def setUp(self):
        if _kernel_supports():
            self.skipTest('this kernel has core scheduling: the test host '
                          'suite covers it')
        super().setUp()

    def test_required_refuses_to_start(self):
        self.flags(core_scheduling='required', group='tenant_pin')
        e = self.assertRaises(nova_exception.InvalidConfiguration,
                              self.start_compute, 'compute1')
        self.assertIn('[tenant_pin] core_scheduling: [tenant_pin] '
                      'core_scheduling = required, but this kernel has no '
                      'core scheduling', str(e))

    def test_auto_does_nothing_and_says_so(self):
        self.flags(core_scheduling='auto', group='tenant_pin')
        self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.coresched.PrivilegedCookies.assign',
            side_effect=AssertionError('no cookie may be set')))
        launched = []
        real = fakelibvirt.Domain.createWithFlags

        def create(dom, flags):
            launched.append(flags)
            return real(dom, flags)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.createWithFlags', create))
        with self.assertLogs(coresched.LOG.logger, 'WARNING') as logs:
            self.start_compute('compute1')
        self.assertIn('core scheduling not used ([tenant_pin] '
                      'core_scheduling = auto)', logs.output[0])
        self.boot('a', 2)
        # Started as the stock driver starts it: not paused.
        self.assertEqual([0], launched)


class FakeCookieKernel:
    """The privileged side, by domain name, and a log of what happened in
    which order."""

    def __init__(self, test):
        self.test = test
        self.events = []
        self.cookies = {}
        self.next = 1

    def pids(self, proc_root='/proc'):
        found = {}
        for name, compute in self.test.computes.items():
            conn = compute.driver._host.get_connection()
            for dom in conn._vms.values():
                if dom.isActive():
                    found[dom.UUIDString()] = dom._id
        return found

    def read(self, pid):
        return {pid: self.cookies.get(pid, 0)}

    def assign(self, name, key, source=None):
        pid = self._pid_of(name)
        if source is None:
            self.next += 1
            self.cookies[pid] = self.next
        else:
            self.cookies[pid] = self.cookies[self._pid_of(source)]
        self.events.append(('cookie', name, key, source))
        return {'cookie': self.cookies[pid], 'threads': 1}

    def _pid_of(self, name):
        for compute in self.test.computes.values():
            conn = compute.driver._host.get_connection()
            for dom in conn._vms.values():
                if dom.name() == name:
                    return dom._id
        raise KeyError(name)


class TestCookiesThroughNova(base.TenantPinTestBase):
    """A kernel that has core scheduling, faked: every start of a domain
    is paused, given its key's cookie, then resumed."""

    def setUp(self):
        super().setUp()
        self.flags(core_scheduling='required', group='tenant_pin')
        self.fake = FakeCookieKernel(self)
        self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.coresched.support',
            return_value=(True, None)))
        self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.coresched.qemu_pids_by_uuid',
            side_effect=self.fake.pids))
        self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.coresched.PrivilegedCookies.read',
            side_effect=lambda pid: self.fake.read(pid)))
        self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.coresched.PrivilegedCookies.assign',
            side_effect=self.fake.assign))
        self.sched_core = self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.coresched.PrivilegedCookies.libvirt_sched_core',
            return_value='full')).mock
        create = fakelibvirt.Domain.createWithFlags
        resume = fakelibvirt.Domain.resume
        fake = self.fake

        def created(dom, flags):
            fake.events.append(('create', dom.name(), flags))
            return create(dom, flags)

        def resumed(dom):
            fake.events.append(('resume', dom.name()))
            return resume(dom)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.createWithFlags', created))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.resume', resumed))
        self.start_compute('compute1')

    def _name(self, server):
        server = self.api.get_server(server['id'])
        return server['OS-EXT-SRV-ATTR:instance_name']

    def test_spawn_and_hard_reboot_run_only_after_the_cookie(self):
        a1 = self.boot('a', 2)
        a2 = self.boot('a', 2)
        b1 = self.boot('b', 2)
        n1, n2, n3 = self._name(a1), self._name(a2), self._name(b1)
        paused = fakelibvirt.VIR_DOMAIN_START_PAUSED
        ka, kb = self.project('a'), self.project('b')
        self.assertEqual([
            ('create', n1, paused), ('cookie', n1, ka, None),
            ('resume', n1),
            ('create', n2, paused), ('cookie', n2, ka, n1), ('resume', n2),
            ('create', n3, paused), ('cookie', n3, kb, None),
            ('resume', n3)], self.fake.events)
        del self.fake.events[:]
        self._reboot_server(a1, hard=True)
        # The new QEMU of a1 takes key a's cookie from a2.
        self.assertEqual([('create', n1, paused), ('cookie', n1, ka, n2),
                          ('resume', n1)], self.fake.events)
        pids = self.fake.pids()
        self.assertEqual(self.fake.cookies[pids[a1['id']]],
                         self.fake.cookies[pids[a2['id']]])
        self.assertNotEqual(self.fake.cookies[pids[a1['id']]],
                            self.fake.cookies[pids[b1['id']]])

    def test_required_refuses_without_libvirts_sched_core(self):
        """Where libvirt gives an incoming QEMU no cookie of its own at its
        start, a live-migrated guest may run before the driver's cookie:
        ``required`` refuses to start, ``auto`` says so and starts."""
        self.sched_core.return_value = 'none'
        e = self.assertRaises(nova_exception.InvalidConfiguration,
                              self.start_compute, 'compute2')
        self.assertIn('core_scheduling = required, but libvirt\'s sched_core '
                      'is "none"', str(e))
        self.assertIn('set sched_core = "full" in /etc/libvirt/qemu.conf',
                      str(e))
        self.flags(core_scheduling='auto', group='tenant_pin')
        with self.assertLogs(coresched.LOG.logger, 'WARNING') as logs:
            self.start_compute('compute3')
        self.assertIn('its guest may run before that', logs.output[-1])
