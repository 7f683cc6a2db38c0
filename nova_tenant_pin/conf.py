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

"""The ``[tenant_pin]`` options, read from the compute node's nova.conf.

``list_opts`` is published through the ``oslo.config.opts`` entry point
(namespace ``nova_tenant_pin``) for ``oslo-config-generator`` and the
``show-options`` Sphinx directive.
"""

from oslo_config import cfg

GROUP = 'tenant_pin'

tenant_pin_group = cfg.OptGroup(
    GROUP,
    title='Tenant CPU isolation',
    help="""
Options of nova-tenant-pin, which keeps SMT on and still never lets two
tenants (Nova projects) share a physical core. Each tenant present on a
compute host gets whole cores, in a cpuset cgroup of its own; host
housekeeping runs on cores that no tenant gets.
""")

placement_opts = [
    cfg.StrOpt(
        'pin_mode',
        default='float',
        choices=[
            ('float', 'Each instance may run on all of its tenant\'s CPUs '
                      'in its NUMA cells; the kernel balances load inside '
                      'the tenant\'s cores.'),
            ('strict', 'Each vCPU is pinned to one CPU of its tenant\'s '
                       'cores, filling sibling threads with one instance '
                       'first.'),
        ],
        help="""
How instances are pinned inside their tenant's cores. Isolation between
tenants is the same in both modes: it comes from the tenant's whole cores.
"""),
    cfg.FloatOpt(
        'tenant_cpu_allocation_ratio',
        default=1.0,
        min=1.0,
        help="""
In-tenant CPU overcommit: how many vCPUs of ONE tenant may share one host
thread (a ratio, >= 1.0). Overcommit never crosses tenants: a tenant with
6 vCPUs on 2-thread cores holds ceil(6 / (2 * ratio)) cores. A value below
1.0 is refused at start.
"""),
    cfg.StrOpt(
        'housekeeping_cpus',
        help="""
Host CPUs reserved for host housekeeping (system services, nova-compute,
libvirtd, IRQs, kernel work), as a CPU spec such as ``0,64`` or ``0-1``.
No tenant is ever given a core that holds one of them; a spec that covers
only some threads of a core reserves the whole core and logs a warning.
When unset, the housekeeping CPUs are the host's online CPUs that
``[compute] cpu_shared_set`` and ``[compute] cpu_dedicated_set`` leave out.
"""),
]


def register_opts(conf):
    conf.register_group(tenant_pin_group)
    conf.register_opts(placement_opts, group=tenant_pin_group)


def list_opts():
    return [(tenant_pin_group, placement_opts)]


register_opts(cfg.CONF)
