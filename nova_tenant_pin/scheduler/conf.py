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

"""Options of the tenant-pin scheduler weigher, read from the scheduler's
``nova.conf``.

They live in the ``[tenant_pin]`` group beside the compute options
(:mod:`nova_tenant_pin.conf`); importing this module registers them and
needs no running Nova service. The filter and weigher also read
``[tenant_pin] tenant_cpu_allocation_ratio``, which must be set to the same
value on the schedulers as on the computes.
"""

from oslo_config import cfg

from nova_tenant_pin import conf as tenant_pin_conf

scheduler_opts = [
    cfg.FloatOpt(
        'weight_multiplier',
        default=10.0,
        help="""
Multiplier of ``TenantPinWeigher``, which prefers hosts where the new
instance fills threads its tenant already holds and leaves idle over hosts
where it opens cores it does not fill. Nova normalises every weigher's
weights to 0..1 before multiplying; the default 10.0 makes this weigher
outweigh Nova's default weighers (multipliers of 1.0 each), so they only
break its ties. 0.0 turns it off; a negative value does the opposite (not
useful). The aggregate metadata key ``tenant_pin_weight_multiplier``
overrides it per aggregate.
"""),
]


def register_opts(conf):
    conf.register_group(tenant_pin_conf.tenant_pin_group)
    conf.register_opts(scheduler_opts, group=tenant_pin_conf.tenant_pin_group)


def list_opts():
    return [(tenant_pin_conf.tenant_pin_group, scheduler_opts)]


CONF = cfg.CONF
register_opts(CONF)
