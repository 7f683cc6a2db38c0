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

"""Incoming live-migration claims and Nova's own timing.

The conductor checks a destination (the target claims and creates the
tenant's partition), runs its other pre-checks, and only then saves the
migration's destination and casts the migration. The target's periodic
tasks run whenever they like in between, and the conductor may give the
host up for another one after the target said yes.
"""

import fixtures
from nova.conductor.tasks import live_migrate
from nova import exception
from oslo_config import cfg

from nova_tenant_pin import domain_xml
from nova_tenant_pin.tests.functional import base

CONF = cfg.CONF


class MigrationFaultsBase(base.TenantPinTestBase):

    HOSTS = ('host_a', 'host_b')

    def setUp(self):
        super().setUp()
        self.stub_live_migration(self._migrate_stub)
        self.dest_xml = {}
        for host in self.HOSTS:
            self.start_compute(host)

    def _migrate_stub(self, domain, destination, params, flags):
        xml = params['destination_xml']
        host = next(h for h in self.HOSTS if h in destination)
        self.dest_xml[host] = xml
        # The target QEMU starts from the destination XML; the fake refuses
        # it if the partition is missing or the CPUs are outside it.
        self.computes[host].driver._host.get_connection().createXML(xml, 0)
        domain.complete_job()

    def after_destination_check(self, hook):
        """Run ``hook(task, host)`` in the conductor right after a
        destination accepted its check, before the conductor's next step."""
        real = live_migrate.LiveMigrationTask._call_livem_checks_on_host

        def checks(task, destination, provider_mapping):
            real(task, destination, provider_mapping)
            hook(task, destination)
        self.useFixture(fixtures.MonkeyPatch(
            'nova.conductor.tasks.live_migrate.LiveMigrationTask.'
            '_call_livem_checks_on_host', checks))


class TestIncomingClaimSurvivesReconcile(MigrationFaultsBase):
    """Scenario 3: the target's reconcile runs between the destination
    check and pre_live_migration, while the migration record does not name
    the target yet."""

    def test_reconcile_between_check_and_pre_live_migration(self):
        server = self.boot('a', 2, host='host_a')
        a = self.project('a')
        seen = []

        def reconcile_target(task, host):
            self.assertEqual('host_b', host)
            # The conductor has not saved the destination yet.
            self.assertIsNone(task.migration.dest_compute)
            self.computes['host_b'].driver._tp_reconcile()
            seen.append((dict(self.manager_of('host_b').claims()),
                         self.partitions_of('host_b').get(a)))
        self.after_destination_check(reconcile_target)
        self._live_migrate(server, 'completed', host='host_b')
        self.assertEqual(1, len(seen))
        claims, part = seen[0]
        # The reconcile kept the incoming claim and its partition...
        self.assertIn(server['id'], claims)
        self.assertIsNotNone(part)
        # ...so the target QEMU started inside it.
        self.assertEqual('host_b', self.host_of(server))
        self.assertEqual('/machine/tenant-%s' % a, domain_xml.parse_domain_xml(
            self.dest_xml['host_b']).partition)
        self.assertEqual([], [s for s in self.pinning.starts if s[2]])
        self.assertFalse(
            self.manager_of('host_b').claims()[server['id']].pending)
        self.assertInvariants()


class TestAbandonedDestinationCheck(MigrationFaultsBase):
    """Scenario 4: the conductor checks host X, a later pre-check (the port
    binding) fails, and the guest goes to host Y. X must let go of its
    claim at its next resource update, without waiting for a reconcile."""

    HOSTS = ('host_a', 'host_b', 'host_c')

    def test_abandoned_check_releases_the_claim(self):
        server = self.boot('a', 2, host='host_a')
        a = self.project('a')
        refused = []

        def port_binding_fails_once(task, host):
            if not refused:
                refused.append(host)
                # Host X accepted and holds the claim; the conductor's port
                # binding for X fails and it tries another host.
                self.assertIn(server['id'], self.manager_of(host).claims())
                raise exception.MigrationPreCheckError(
                    reason='Binding failed for port %s on host %s' % (
                        'fake-port', host))
        self.after_destination_check(port_binding_fails_once)
        self._live_migrate(server, 'completed')
        x = refused[0]
        y = self.host_of(server)
        self.assertNotIn(y, ('host_a', x))
        # X still holds the claim the conductor gave up on...
        self.assertIn(server['id'], self.manager_of(x).claims())
        # ...until its next resource update, well before a reconcile.
        self._run_periodics()
        self.assertNotIn(server['id'], self.manager_of(x).claims())
        self.assertNotIn(a, self.partitions_of(x))
        self.assertIn(a, self.partitions_of(y))
        self.assertInvariants()

    def test_reconcile_releases_an_abandoned_check(self):
        """The backstop: a reconcile sees no migration to X any more."""
        server = self.boot('a', 2, host='host_a')
        refused = []

        def port_binding_fails_once(task, host):
            if not refused:
                refused.append(host)
                raise exception.MigrationPreCheckError(reason='binding')
        self.after_destination_check(port_binding_fails_once)
        self._live_migrate(server, 'completed')
        x = refused[0]
        self.computes[x].driver._tp_reconcile()
        self.assertNotIn(server['id'], self.manager_of(x).claims())
        self.assertNotIn(self.project('a'), self.partitions_of(x))
        self.assertInvariants()


class TestRekeyedGuestMigrates(MigrationFaultsBase):
    """Scenario 5: ``isolation_groups`` changed (SIGHUP) so that a running
    guest's key changed; it still lives in the partition it started in.
    Its live migration lands in the partition of its present key."""

    def test_live_migration_after_isolation_groups_change(self):
        a1 = self.boot('a', 1, host='host_a')
        self.boot('b', 1, host='host_a')
        group = 'acme:%s,%s' % (self.project('a'), self.project('b'))
        self.flags(isolation_groups=[group], group='tenant_pin')
        CONF.mutate_config_files()
        info = self.domains_of('host_a')[a1['id']]
        self.assertEqual('group-acme', info.key)
        self.assertEqual('/machine/tenant-%s' % self.project('a'),
                         info.partition)
        self._live_migrate(a1, 'completed', host='host_b')
        self.assertEqual('host_b', self.host_of(a1))
        self.assertEqual('/machine/tenant-group-acme',
                         domain_xml.parse_domain_xml(
                             self.dest_xml['host_b']).partition)
        info = self.domains_of('host_b')[a1['id']]
        self.assertEqual('partition', info.confinement)
        self.assertEqual('group-acme', info.key)
        self.assertEqual([], [s for s in self.pinning.starts if s[2]])
        self.assertNotIn(a1['id'], self.manager_of('host_a').claims())
        self.assertInvariants()
