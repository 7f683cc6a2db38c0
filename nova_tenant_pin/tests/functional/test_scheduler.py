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

"""Tenant-aware scheduling with Nova's real API, conductor, scheduler and
placement, and several fake-libvirt computes.

``TenantPinSchedulingTest`` runs the stock LibvirtDriver on computes of
4 cores x 2 threads: the filter and weigher decide from the scheduler's
host states alone. ``TenantPinSchedulingWithDriverTest`` runs
TenantPinLibvirtDriver (the functional base of the driver's tests), where a
host the compute host refuses would show as a reschedule. Each tenant is a
project with its own API client.
"""

import os
import sys
from unittest import mock

from nova import context as nova_context
from nova.scheduler import manager as scheduler_manager
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client as api_client
from nova.tests.functional.libvirt import base

from nova_tenant_pin import allocator
from nova_tenant_pin.scheduler import host_state as tenant_host
from nova_tenant_pin.tests.functional import base as tp_base

FILTER = 'nova_tenant_pin.scheduler.filters.TenantPinFilter'
WEIGHER = 'nova_tenant_pin.scheduler.weights.TenantPinWeigher'


class TenantPinSchedulingTest(base.ServersTestBase):

    ADDITIONAL_FILTERS = ['TenantPinFilter']
    microversion = '2.74'

    def setUp(self):
        # The wheel installs api-paste.ini under the venv, not beside nova.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        self.flags(available_filters=['nova.scheduler.filters.all_filters',
                                      FILTER], group='filter_scheduler')
        # Placement counts VCPU one to one with threads, so it would take
        # any instance that has free threads: only the filter tells a
        # free core from an idle thread of another tenant.
        self.flags(cpu_allocation_ratio=1.0)
        super().setUp()
        self.flavors = {vcpus: self._create_flavor(
            vcpu=vcpus, memory_mb=512 * vcpus, disk=1, ephemeral=0)
            for vcpus in (1, 2, 6)}
        self.clients = {}

    def start_hosts(self, *names):
        for name in names:
            self.start_compute(name, host_info=fakelibvirt.HostInfo(
                cpu_nodes=1, cpu_sockets=1, cpu_cores=4, cpu_threads=2))

    def client(self, project):
        if project not in self.clients:
            client = api_client.TestOpenStackClient(
                'admin', self.api_fixture.base_url, project_id=project,
                roles=['reader', 'member', 'admin'])
            client.microversion = self.microversion
            self.clients[project] = client
        return self.clients[project]

    def boot(self, project, vcpus, host=None, expected_state='ACTIVE'):
        return self._create_server(
            flavor_id=self.flavors[vcpus], networks='none', host=host,
            api=self.client(project), expected_state=expected_state)

    def host_of(self, server):
        return self.admin_api.get_server(server['id'])[
            'OS-EXT-SRV-ATTR:host']

    def plans(self):
        """``{host: allocator plan}`` of what the scheduler sees now."""
        ctxt = nova_context.get_admin_context()
        result = {}
        for state in self.scheduler.manager.host_manager.\
                get_host_states_by_uuids(ctxt, None, None):
            view = tenant_host.host_view(state)
            result[state.host] = allocator.plan(
                view.topology, view.running,
                housekeeping_cpus=view.housekeeping_cpus,
                dedicated_cpus=view.dedicated_cpus)
        return result

    def stranded_threads(self):
        plans = self.plans()
        for host, plan in plans.items():
            self.assertEqual([], plan.unplaced,
                             '%s holds instances that do not fit' % host)
        return sum(plan.stranded_cpus for plan in plans.values())

    def test_tenants_land_where_they_fit(self):
        self.start_hosts('h1', 'h2')
        # h1: four tenants of one vCPU hold all four cores; Nova still
        # sees 4 free VCPUs there. h2: f holds 3 cores, one core is free.
        for project in 'abcd':
            self.boot(project, 1, host='h1')
        self.boot('f', 6, host='h2')

        passes = []
        schedule = scheduler_manager.SchedulerManager._schedule

        def counted(manager, *args, **kwargs):
            passes.append(args)
            return schedule(manager, *args, **kwargs)

        with mock.patch.object(scheduler_manager.SchedulerManager,
                               '_schedule', counted):
            # Nova's weighers prefer h1 (more free RAM and VCPU); only h2
            # has a free core.
            e = self.boot('e', 1)
            self.assertEqual('h2', self.host_of(e))
            # b has an idle thread on h1; h2 is now full.
            b = self.boot('b', 1)
            self.assertEqual('h1', self.host_of(b))
            # No host has a free core for a new tenant, although placement
            # has 3 free VCPUs on h1.
            g = self.boot('g', 2, expected_state='ERROR')
        self.assertIn('No valid host', g['fault']['message'])
        # One scheduling pass per server: nothing was rescheduled.
        self.assertEqual(3, len(passes))
        plans = self.plans()
        self.assertEqual({'a', 'b', 'c', 'd'}, set(plans['h1'].tenants))
        self.assertEqual({'e', 'f'}, set(plans['h2'].tenants))
        self.assertEqual(4, self.stranded_threads(),
                         'a, c, d and e strand one thread each; b, f none')

    def multi_create(self, project, vcpus, count, host):
        """``count`` servers of ``project`` in one request, in an affinity
        server group, on ``host``; returns them once they settle."""
        client = self.client(project)
        group = client.post_server_groups(
            {'name': 'together', 'policy': 'affinity'})
        body = self._build_server(flavor_id=self.flavors[vcpus],
                                  networks='none', host=host)
        body['min_count'] = body['max_count'] = count
        client.post_server(
            {'server': body, 'os:scheduler_hints': {'group': group['id']}})
        # Nova names them <name>-1, <name>-2, ...
        servers = [s for s in client.get_servers()
                   if s['name'].startswith(body['name'] + '-')]
        self.assertEqual(count, len(servers))
        return servers

    def test_multi_create_in_a_server_group_counts_its_own_instances(self):
        """Nova records the instances of a multi-create request in a server
        group that it has placed as bare stubs in the host states; the
        filter counts them as the request's tenant and flavor."""
        self.start_hosts('h1', 'h2')
        # b and c hold two of h1's four cores; placement sees 6 free VCPUs.
        self.boot('b', 1, host='h1')
        self.boot('c', 1, host='h1')
        # Three 2-vCPU servers of a need three cores: the third does not
        # fit once the first two count, and the request fails as a whole.
        for server in self.multi_create('a', 2, 3, 'h1'):
            server = self._wait_for_state_change(server, 'ERROR')
            self.assertIn('No valid host', server['fault']['message'])
        # Two of them fit in the two free cores.
        for server in self.multi_create('a', 2, 2, 'h1'):
            self._wait_for_state_change(server, 'ACTIVE')
            self.assertEqual('h1', self.host_of(server))
        self.assertEqual(2, self.stranded_threads())

    def boot_pairs(self):
        """Three tenants boot two 1-vCPU servers each, one tenant after
        the other."""
        servers = []
        for project in 'abc':
            servers += [self.boot(project, 1), self.boot(project, 1)]
        return servers

    def test_weigher_fills_tenant_threads_before_opening_cores(self):
        self.start_hosts('h1', 'h2', 'h3')
        # Nova's default weighers spread a tenant's second server away
        # from its first, each alone on a core.
        servers = self.boot_pairs()
        spread_stranded = self.stranded_threads()
        for server in servers:
            # Casts are calls here: the delete is complete when it returns.
            self.client(server['tenant_id']).delete_server(server['id'])
            self.assertRaises(api_client.OpenStackApiNotFoundException,
                              self.admin_api.get_server, server['id'])
        self.assertEqual(0, self.stranded_threads())

        self.scheduler.stop()
        self.flags(weight_classes=['nova.scheduler.weights.all_weighers',
                                   WEIGHER], group='filter_scheduler')
        self.scheduler = self.start_service('scheduler')
        servers = self.boot_pairs()
        self.assertEqual(0, self.stranded_threads())
        self.assertGreaterEqual(spread_stranded, 2)
        for project in 'abc':
            hosts = {self.host_of(s) for s in servers
                     if s['tenant_id'] == project}
            self.assertEqual(1, len(hosts), 'tenant %s is split over %s'
                             % (project, sorted(hosts)))

    def test_weigher_gathers_a_tenant_on_the_host_it_holds_cores_on(self):
        """Two-vCPU servers fill whole cores anywhere, so filling threads
        cannot tell hosts apart: the weigher puts a tenant's second server
        on the host where it already holds a core, which Nova's spreading
        alone does not."""
        self.start_hosts('h1', 'h2', 'h3')
        self.scheduler.stop()
        self.flags(weight_classes=['nova.scheduler.weights.all_weighers',
                                   WEIGHER], group='filter_scheduler')
        self.scheduler = self.start_service('scheduler')
        servers = [self.boot(project, 2) for project in 'abab']
        for project in 'ab':
            hosts = {self.host_of(s) for s in servers
                     if s['tenant_id'] == project}
            self.assertEqual(1, len(hosts), 'tenant %s is split over %s'
                             % (project, sorted(hosts)))
        self.assertEqual(0, self.stranded_threads())


class _CountSchedulingPasses(object):
    """Count the scheduler's passes (one per request, one more for every
    reschedule)."""

    def __init__(self):
        self.passes = 0
        self._patch = None

    def __enter__(self):
        schedule = scheduler_manager.SchedulerManager._schedule

        def counted(manager, *args, **kwargs):
            self.passes += 1
            return schedule(manager, *args, **kwargs)

        self._patch = mock.patch.object(scheduler_manager.SchedulerManager,
                                        '_schedule', counted)
        self._patch.start()
        return self

    def __exit__(self, *exc):
        self._patch.stop()


class TenantPinSchedulingWithDriverTest(tp_base.TenantPinTestBase):
    """Computes of 2 cells x 4 cores x 2 threads, 7 tenant cores each."""

    ADDITIONAL_FILTERS = ['TenantPinFilter']

    def setUp(self):
        self.flags(available_filters=['nova.scheduler.filters.all_filters',
                                      FILTER], group='filter_scheduler')
        self.flags(weight_classes=['nova.scheduler.weights.all_weighers',
                                   WEIGHER], group='filter_scheduler')
        super().setUp()

    def test_tenants_pair_up_on_one_host_and_nothing_reschedules(self):
        self.start_compute('host1')
        self.start_compute('host2')
        with _CountSchedulingPasses() as counter:
            servers = []
            for label in 'abc':
                servers += [(label, self.boot(label, 1)),
                            (label, self.boot(label, 1))]
        self.assertEqual(6, counter.passes, 'a server was rescheduled')
        for label in 'abc':
            hosts = {self.host_of(s) for owner, s in servers
                     if owner == label}
            self.assertEqual(1, len(hosts), 'tenant %s is split over %s'
                             % (label, sorted(hosts)))
        # Each tenant fills both threads of one core: nothing stranded,
        # and the driver's own accounting agrees.
        self.assertEqual(0, sum(self.manager_of(h).stranded_cpus()
                                for h in self.computes))
        self.assertInvariants()
