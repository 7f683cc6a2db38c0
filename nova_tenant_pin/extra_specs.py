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

"""Validators of the ``tenant_pin:`` flavor extra specs, for Nova's API.

Published through Nova's own ``nova.api.extra_spec_validators`` entry
point, so that from API microversion 2.86 on
``openstack flavor set --property tenant_pin:...=bogus`` is refused with a
message that names the key and the values it takes. The values are the
ones :mod:`nova_tenant_pin.policy` reads.
"""

from nova.api.validation.extra_specs import base
from nova import exception

from nova_tenant_pin import policy


class _Validator(base.ExtraSpecValidator):
    """Nova's validator, with errors that name the key and what it takes."""

    def validate(self, name, value):
        try:
            super().validate(name, value)
        except exception.ValidationError:
            raise exception.ValidationError(
                "Validation failed; extra spec '%s' must be %s, got '%s'."
                % (name, self.value['allowed'], value))


EXTRA_SPEC_VALIDATORS = [
    _Validator(
        name=policy.ISOLATION_SPEC,
        description=(
            'Whether instances of this flavor get cores that no other '
            'tenant shares (``required``, the default) or run in the shared '
            'pool whose cores no isolated tenant ever gets (``none``).'),
        value={'type': str, 'enum': policy.ISOLATION_VALUES,
               'allowed': 'one of: %s' % ', '.join(policy.ISOLATION_VALUES)},
    ),
    _Validator(
        name=policy.PIN_MODE_SPEC,
        description=(
            'How vCPUs are placed inside the tenant\'s cores: ``float`` over '
            'all of them, or ``strict``, one host thread a vCPU.'),
        value={'type': str, 'enum': policy.PIN_MODES,
               'allowed': 'one of: %s' % ', '.join(policy.PIN_MODES)},
    ),
    _Validator(
        name=policy.RATIO_SPEC,
        description=(
            'In-tenant CPU overcommit for instances of this flavor: vCPUs '
            'of one tenant per host thread, a number >= 1.0. Overcommit '
            'never crosses tenants.'),
        value={'type': str, 'pattern': r'[1-9][0-9]*(\.[0-9]+)?',
               'allowed': 'a number >= 1.0 such as 1.0 or 1.5'},
    ),
]


def register():
    return EXTRA_SPEC_VALIDATORS
