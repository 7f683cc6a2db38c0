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

"""The base test case: oslotest's fixtures plus a private config."""

import faulthandler
import os
import signal
import sys

from oslo_config import fixture as config_fixture
from oslotest import base

from nova_tenant_pin import conf


class TestCase(base.BaseTestCase):
    """Timeout from OS_TEST_TIMEOUT, captured output and logs, and a config
    fixture over the global CONF with the [tenant_pin] options registered."""

    def setUp(self):
        super().setUp()
        self._dump_stacks_if_stuck()
        self.conf_fixture = self.useFixture(config_fixture.Config(
            conf.cfg.CONF))
        self.conf = self.conf_fixture.conf

    def _dump_stacks_if_stuck(self):
        """Every thread's Python stack on stderr when this test is still
        running 60 s after OS_TEST_TIMEOUT (the timeout fixture cannot
        interrupt a thread blocked in C, such as a libvirt call waiting for
        an answer), and at any moment on SIGUSR1 (the test host's watchdog
        sends it when the suite goes quiet)."""
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__,
                              all_threads=True)
        try:
            timeout = int(os.environ.get('OS_TEST_TIMEOUT', 0))
        except ValueError:
            timeout = 0
        if timeout > 0:
            faulthandler.dump_traceback_later(timeout + 60,
                                              file=sys.__stderr__)
            self.addCleanup(faulthandler.cancel_dump_traceback_later)

    def flags(self, group='tenant_pin', **kw):
        for name, value in kw.items():
            self.conf_fixture.config(group=group, **{name: value})


def requires_root(reason_suffix=''):
    """Skip reason for tests that need root, or None when running as root."""
    if os.geteuid() != 0:
        return 'needs root (real cgroups or privsep daemon)%s; CI runs it ' \
               'as root' % reason_suffix
    return None
