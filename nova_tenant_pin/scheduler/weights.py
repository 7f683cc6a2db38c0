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

"""``TenantPinWeigher``: fill the threads a tenant holds before opening
cores.

Enable it on the schedulers: append
``nova_tenant_pin.scheduler.weights.TenantPinWeigher`` to ``[filter_scheduler]
weight_classes``, after ``nova.scheduler.weights.all_weighers``, on the
same comma-separated line (a second line would replace the first).
``doc/source/admin/scheduling.rst`` has the line to copy.

The weight of a host is :func:`fit.tenant_pin_weight
<nova_tenant_pin.scheduler.fit.tenant_pin_weight>`, from how many threads
the host would leave idle inside tenants' cores with the new instance,
compared with now (:func:`~nova_tenant_pin.scheduler.fit.stranded_change`),
and whether the tenant already holds cores there. Highest: a host where the
tenant has a spare thread (the instance fills it); then a host where the
tenant holds cores and the instance strands nothing more (a tenant's
instances gather on few hosts, so its odd instances later fill each
other's threads); then a host where it strands nothing more; lowest, a
host where the instance opens a core it cannot fill. Hosts equal by those
are ordered by room (:func:`~nova_tenant_pin.scheduler.fit.room_term`,
under one step): the fullest host the tenant holds cores on; where it
holds none, the host with the most free cores, so that it has room to
grow there. ``[tenant_pin] weight_multiplier`` (or the aggregate key
``tenant_pin_weight_multiplier``) scales it. At its default of 10, the
room term decides most of what Nova's CPU weigher would (spreading or
packing); Nova's weighers break the remaining ties (see
``doc/source/admin/scheduling.rst``).
"""

from nova.scheduler import utils
from nova.scheduler import weights
from oslo_config import cfg

# Registers [tenant_pin] weight_multiplier.
from nova_tenant_pin import conf  # noqa: F401
from nova_tenant_pin import policy
from nova_tenant_pin.scheduler import host_state as tenant_host

CONF = cfg.CONF


class TenantPinWeigher(weights.BaseHostWeigher):
    """Prefer hosts where the new instance fills its tenant's idle
    threads."""

    def weight_multiplier(self, host_state):
        return utils.get_weight_multiplier(
            host_state, 'tenant_pin_weight_multiplier',
            CONF.tenant_pin.weight_multiplier)

    def _weigh_object(self, host_state, spec_obj):
        try:
            request = tenant_host.request_of_spec(spec_obj)
        except policy.PolicyError:
            return 0.0  # the filter refused it, saying why
        if request is None:
            return 0.0
        view = tenant_host.host_view(host_state, request,
                                     tenant_host.group_members(spec_obj))
        if view is None:
            return 0.0
        return float(view.weight(request))
