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

import os

from oslo_config import fixture as config_fixture
from oslotest import base

from nova_tenant_pin import conf


class TestCase(base.BaseTestCase):
    """Timeout from OS_TEST_TIMEOUT, captured output and logs, and a config
    fixture over the global CONF with the [tenant_pin] options registered."""

    def setUp(self):
        super().setUp()
        self.conf_fixture = self.useFixture(config_fixture.Config(
            conf.cfg.CONF))
        self.conf = self.conf_fixture.conf

    def flags(self, group='tenant_pin', **kw):
        for name, value in kw.items():
            self.conf_fixture.config(group=group, **{name: value})


def requires_root(reason_suffix=''):
    """Skip reason for tests that need root, or None when running as root."""
    if os.geteuid() != 0:
        return 'needs root (real cgroups or privsep daemon)%s; CI runs it ' \
               'as root' % reason_suffix
    return None
