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
``show-options`` Sphinx directive; it lists the privileged helper's
``[nova_tenant_pin_privileged]`` section too.
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

enforcement_opts = [
    cfg.StrOpt(
        'cgroup_root',
        default='/',
        help="""
The cgroup path, under the mount point of every hierarchy, that holds
libvirt's ``machine`` group and so the tenant partitions
(``<mount><cgroup_root>/machine/tenant-<project>.partition``). Keep ``/``
unless libvirtd itself runs in a sub-cgroup (a second libvirtd on one
machine, for example ``/hostB``). Components may use letters, digits,
``_``, ``-``, ``.`` and ``@``; a value with ``..`` or a symlink is refused.
If it does not match where libvirtd puts ``machine``, instances fail to
start because their partition is missing.
"""),
    cfg.StrOpt(
        'core_scheduling',
        default='auto',
        choices=[
            ('off', 'Guests carry no core-scheduling cookie.'),
            ('auto', 'Use core scheduling where the kernel offers it '
                     '(Linux 5.14+ built with CONFIG_SCHED_CORE, on a host '
                     'with SMT); elsewhere do nothing and log so once at '
                     'start.'),
            ('required', 'Refuse to start the compute service where the '
                         'kernel does not offer core scheduling, or where '
                         'libvirt\'s sched_core (qemu.conf) does not give '
                         'every QEMU a cookie of its own from its start.'),
        ],
        help="""
Linux core scheduling as a second line of isolation, on top of the tenant
partitions: every thread of every guest of one isolation key carries one
core-scheduling cookie of that key, so the kernel never runs threads of two
keys on the SMT siblings of one core at the same moment, even where their
cpusets overlap (tenants that do not fit on whole cores, the unisolated pool
of an adopted host). A guest gets its key's cookie after its domain starts
paused and before it runs; a guest arriving by live migration gets it when
libvirt reports its QEMU started on this host, or at the latest on arrival.
Until then, what keeps it apart in time is the cookie of its own that
libvirt gives every QEMU at its start with ``sched_core = "full"`` in
/etc/libvirt/qemu.conf: ``auto`` warns at start where that is not set,
``required`` refuses (see the admin guide). Setting cookies needs the
privileged helper to hold CAP_SYS_PTRACE (context
``nova_tenant_pin_core_sched``).
"""),
    cfg.StrOpt(
        'housekeeping_state_file',
        default='/var/lib/nova-tenant-pin/housekeeping.json',
        help="""
JSON file where ``nova-tenant-pin housekeeping apply`` records the values
it changed (IRQ affinities, the default IRQ mask, the workqueue cpumask,
systemd AllowedCPUs=, the housekeeping cpuset), so that ``release``
restores them exactly. Its directory is created if missing; the user
running the command must be able to write there. ``apply`` on a host that
already has the file keeps the values recorded first, so re-running it is
safe. If the file is lost while housekeeping is applied, ``release`` exits
1 and restores nothing: keep it on a persistent disk, not under /run.
"""),
]


driver_opts = [
    cfg.MultiStrOpt(
        'static_tenant_cpuset',
        default=[],
        mutable=True,
        help="""
A fixed set of whole cores for one tenant, as ``PROJECT_ID:CPU_SPEC`` (for
example ``3f1c...:4-7,36-39``); repeat the option for more tenants. The
tenant's instances on this host run there and nowhere else, and no other
tenant gets those cores even while the tenant has no instance here. Each
spec must cover whole cores, outside the housekeeping and dedicated CPUs,
and two tenants' specs must not share a core: the compute service refuses
to start otherwise, naming the option. Changing it (SIGHUP) moves the
tenant live to its new cores, as for ``isolation_groups``; a bad new value
is refused with an error and the old one kept.
"""),
    cfg.ListOpt(
        'exempt_projects',
        default=[],
        mutable=True,
        help="""
Project ids exempt from isolation between themselves (trusted service
projects, for example). Their instances share one partition,
``/machine/tenant-exempt``, and may share cores with each other, but never
with any other tenant. Changing it (SIGHUP) re-plans the host live, as
for ``isolation_groups``.
"""),
    cfg.BoolOpt(
        'allow_migration_to_unisolated_hosts',
        default=False,
        help="""
Allow live migration to a target that does not run the tenant-pin driver
(its check reports no CPUs for the instance). The instance then runs
there without tenant isolation: it leaves its partition and its pins
behind. By default such a migration is refused before it starts.
"""),
    cfg.IntOpt(
        'reconcile_interval',
        default=300,
        min=0,
        help="""
Seconds between two reconciles of the tenant map with the running domains
and the cgroup tree (drifted partitions and pins are repaired and
logged). A reconcile always runs when the compute service starts. 0 turns
the periodic reconcile off.
"""),
]

# Read by the schedulers (nova_tenant_pin.scheduler); the filter and weigher
# also read tenant_cpu_allocation_ratio, which must match the computes'.
scheduler_opts = [
    cfg.FloatOpt(
        'weight_multiplier',
        default=10.0,
        help="""
Multiplier of ``TenantPinWeigher`` (read by nova-scheduler), which prefers
hosts where the new instance fills threads its tenant already holds and
leaves idle over hosts where it opens cores it does not fill. Nova
normalises every weigher's weights to 0..1 before multiplying; the default
10.0 makes this weigher outweigh Nova's default weighers (multipliers of
1.0 each), so they only break its ties. 0.0 turns it off. The aggregate
metadata key ``tenant_pin_weight_multiplier`` overrides it per aggregate.
"""),
]


policy_opts = [
    cfg.MultiStrOpt(
        'isolation_groups',
        default=[],
        mutable=True,
        help="""
Groups of projects that trust each other, as ``NAME:PROJECT[,PROJECT...]``
(repeat the option for more groups). The projects of one group share one
isolation key, ``group-NAME``: their instances may share cores with each
other, never with anyone else. A project may be in one group only, and not
also in ``exempt_projects``; a bad entry is refused with its text. Changing
it (SIGHUP) re-plans the host without a moment of overlap.
"""),
]


def register_opts(conf):
    conf.register_group(tenant_pin_group)
    conf.register_opts(placement_opts, group=tenant_pin_group)
    conf.register_opts(enforcement_opts, group=tenant_pin_group)
    conf.register_opts(driver_opts, group=tenant_pin_group)
    conf.register_opts(scheduler_opts, group=tenant_pin_group)
    conf.register_opts(policy_opts, group=tenant_pin_group)


#: The oslo.privsep context's section (nova_tenant_pin.privsep).
PRIVILEGED_GROUP = 'nova_tenant_pin_privileged'


def list_opts():
    # Imported here: oslo.privsep is not needed to read [tenant_pin].
    from oslo_privsep import priv_context

    return [(tenant_pin_group,
             placement_opts + enforcement_opts + driver_opts +
             scheduler_opts + policy_opts),
            (PRIVILEGED_GROUP, priv_context.OPTS)]


register_opts(cfg.CONF)
