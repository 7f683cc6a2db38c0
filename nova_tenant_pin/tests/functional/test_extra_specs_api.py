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

"""The ``tenant_pin:`` extra specs through Nova's real API (2.86+).

Nova loads the validators from this package's
``nova.api.extra_spec_validators`` entry point; these tests go through
``POST /flavors/{id}/os-extra_specs`` and ``PUT`` as an operator would.
"""

import os
import sys

import ddt
from nova.tests.functional.api import client as api_client
from nova.tests.functional import integrated_helpers


@ddt.ddt
class TenantPinExtraSpecsTest(integrated_helpers._IntegratedTestBase):
    microversion = '2.86'

    def setUp(self):
        # Nova's wheel puts api-paste.ini under <venv>/etc/nova.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc/nova/api-paste.ini'), group='wsgi')
        super().setUp()
        self.flavor_id = self._create_flavor()

    @ddt.data({'tenant_pin:isolation': 'required'},
              {'tenant_pin:isolation': 'none'},
              {'tenant_pin:pin_mode': 'strict',
               'tenant_pin:cpu_allocation_ratio': '1.5'},
              {'tenant_pin:cpu_allocation_ratio': '2'})
    def test_valid_specs_are_stored(self, specs):
        self.admin_api.post_extra_spec(self.flavor_id,
                                       {'extra_specs': specs})
        self.assertEqual(specs, self.admin_api.get_extra_specs(
            self.flavor_id))

    @ddt.unpack
    @ddt.data(
        ('tenant_pin:isolation', 'bogus', 'one of: required, none'),
        ('tenant_pin:pin_mode', 'loose', 'one of: float, strict'),
        ('tenant_pin:cpu_allocation_ratio', '0.5',
         'a number >= 1.0 such as 1.0 or 1.5'),
        ('tenant_pin:cpu_allocation_ratio', 'two',
         'a number >= 1.0 such as 1.0 or 1.5'))
    def test_bad_values_are_refused_naming_the_key(self, key, value,
                                                   allowed):
        for call in (
                lambda: self.admin_api.post_extra_spec(
                    self.flavor_id, {'extra_specs': {key: value}}),
                lambda: self.admin_api.put_extra_spec(
                    self.flavor_id, key, {key: value})):
            exc = self.assertRaises(api_client.OpenStackApiException, call)
            self.assertEqual(400, exc.response.status_code)
            text = exc.response.text
            self.assertIn("extra spec '%s' must be %s, got '%s'"
                          % (key, allowed, value), text)
        self.assertEqual({}, self.admin_api.get_extra_specs(self.flavor_id))

    def test_unknown_key_in_the_namespace_is_refused(self):
        exc = self.assertRaises(
            api_client.OpenStackApiException, self.admin_api.post_extra_spec,
            self.flavor_id, {'extra_specs': {'tenant_pin:colour': 'red'}})
        self.assertEqual(400, exc.response.status_code)
        self.assertIn('tenant_pin:colour', exc.response.text)
