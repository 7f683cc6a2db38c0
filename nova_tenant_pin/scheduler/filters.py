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

"""``TenantPinFilter``: pass the hosts where the new instance's tenant can
hold whole cores for it.

Enable it on the schedulers: one more ``[filter_scheduler]
available_filters`` line,
``nova_tenant_pin.scheduler.filters.TenantPinFilter``, and
``TenantPinFilter`` appended to ``enabled_filters`` (a list: keep Nova's
defaults in it). ``doc/source/admin/scheduling.rst`` has lines to copy.

The decision is :func:`nova_tenant_pin.scheduler.fit.check_fit`: the
project's allocator planning the host's instances plus the new one, as the
compute host will when it claims. A host without a NUMA topology (no
tenant-pin there) and a request for dedicated CPUs (Nova pins those) pass.
"""

from nova.scheduler import filters
from oslo_log import log as logging

from nova_tenant_pin import policy
from nova_tenant_pin.scheduler import host_state as tenant_host

LOG = logging.getLogger(__name__)


class TenantPinFilter(filters.BaseHostFilter):
    """Hosts where the tenant can hold whole cores for the new instance."""

    # A rebuild stays on its host and changes no vCPU count.
    RUN_ON_REBUILD = False

    def host_passes(self, host_state, spec_obj):
        try:
            request = tenant_host.request_of_spec(spec_obj)
        except policy.PolicyError as e:
            # Every host would refuse it: say why once per host, loudly.
            LOG.warning('%(host)s: instance %(uuid)s of project '
                        '%(project)s: %(error)s',
                        {'host': host_state, 'uuid': spec_obj.instance_uuid,
                         'project': spec_obj.project_id, 'error': e})
            return False
        if request is None:
            return True
        view = tenant_host.host_view(host_state, request,
                                     tenant_host.group_members(spec_obj))
        if view is None:
            return True
        verdict = view.check_fit(request)
        if not verdict.fits:
            LOG.debug('%(host)s: %(reason)s',
                      {'host': host_state, 'reason': verdict.reason})
        return verdict.fits
