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

"""The driver's pure parts: option checks and domain XML rewriting."""

import os
from unittest import mock

import ddt
import fixtures
from nova import exception

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import claims as tp_claims
from nova_tenant_pin import domain_xml
from nova_tenant_pin import driver
from nova_tenant_pin import exception as exception_
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import enforcement_fixtures as ef
from nova_tenant_pin.tests import fakes
from nova_tenant_pin.tests.unit import test_manager

UUID = '4f7d1b0e-3c52-4f0e-9d55-1f6c0c8f6a11'


@ddt.ddt
class TestLoadOptions(base.TestCase):

    def setUp(self):
        super().setUp()
        self.topology = test_manager.make_topology()
        self.flags(group='compute', cpu_shared_set='2-15',
                   cpu_dedicated_set=None)

    def test_defaults_take_housekeeping_from_cpu_shared_set(self):
        opts = driver.load_options(self.conf, self.topology)
        self.assertEqual(frozenset({0, 1}), opts['housekeeping_cpus'])
        self.assertEqual({}, opts['static'])

    def test_explicit_options(self):
        self.flags(housekeeping_cpus='0-1',
                   static_tenant_cpuset=['p1:14-15', 'p2:12,13'],
                   exempt_projects=['svc1', 'svc2'])
        opts = driver.load_options(self.conf, self.topology)
        self.assertEqual({'p1': {14, 15}, 'p2': {12, 13}}, opts['static'])
        self.assertEqual(frozenset({'svc1', 'svc2'}),
                         opts['settings'].exempt_projects)

    @ddt.data(
        ({'housekeeping_cpus': '0-1,x'}, 'housekeeping_cpus'),
        ({'housekeeping_cpus': '40-41'}, 'housekeeping_cpus'),
        ({'static_tenant_cpuset': ['p1']}, 'static_tenant_cpuset'),
        ({'static_tenant_cpuset': ['p1:4-5', 'p1:6-7']},
         'static_tenant_cpuset'),
        ({'static_tenant_cpuset': ['../x:4-5']}, 'static_tenant_cpuset'),
        ({'static_tenant_cpuset': ['p1:30-31']}, 'static_tenant_cpuset'),
        ({'exempt_projects': ['a/b']}, 'exempt_projects'),
    )
    @ddt.unpack
    def test_invalid_values_name_the_option(self, flags, option):
        self.flags(**flags)
        err = self.assertRaises(exception.InvalidConfiguration,
                                driver.load_options, self.conf, self.topology)
        self.assertIn('[tenant_pin] %s' % option, str(err))

    def test_isolation_groups_become_project_settings(self):
        self.flags(isolation_groups=['acme:p1,p2'], exempt_projects=['svc'])
        settings = driver.load_options(self.conf, self.topology)['settings']
        self.assertEqual({'p1': 'acme', 'p2': 'acme'}, settings.groups)
        self.assertEqual(frozenset({'svc'}), settings.exempt_projects)

    @ddt.data(['acme'], ['acme:p1', 'other:p1'], ['bad name:p1'])
    def test_bad_isolation_groups_are_refused_with_their_text(self, groups):
        self.flags(isolation_groups=groups)
        err = self.assertRaises(exception.InvalidConfiguration,
                                driver.load_options, self.conf, self.topology)
        self.assertIn('isolation_groups', str(err))

    def test_project_both_exempt_and_grouped_is_refused(self):
        self.flags(isolation_groups=['acme:p1'], exempt_projects=['p1'])
        err = self.assertRaises(exception.InvalidConfiguration,
                                driver.project_settings, self.conf)
        self.assertIn('both exempt and in an isolation group', str(err))

    def test_image_properties_come_from_system_metadata(self):
        inst = mock.Mock(system_metadata={
            'image_tenant_pin_pin_mode': 'strict', 'image_hw_cpu_policy': 'x',
            'owner_project_name': 'demo'})
        self.assertEqual({'tenant_pin_pin_mode': 'strict'},
                         driver.image_properties(inst))

    def test_mutate_hook_tells_every_running_driver(self):
        drv = mock.Mock()
        driver._DRIVERS.add(drv)
        self.addCleanup(driver._DRIVERS.discard, drv)
        driver._options_mutated(self.conf, {})
        drv._tp_settings_changed.assert_called_once_with()
        self.assertIn(driver._options_mutated,
                      driver.CONF._mutate_hooks)

    def test_no_housekeeping_at_all_is_refused(self):
        self.flags(group='compute', cpu_shared_set=None)
        err = self.assertRaises(exception.InvalidConfiguration,
                                driver.load_options, self.conf, self.topology)
        self.assertIn('housekeeping_cpus', str(err))


class TestDomainXml(base.TestCase):

    def _nova_xml(self, **kw):
        # What Nova writes for a shared-CPU instance: its cpu_shared_set in
        # <vcpu cpuset> and, with a guest NUMA topology, vcpupins on it.
        return fakes.domain_xml(UUID, 2, cpuset={2, 3, 4, 5, 6, 7}, **kw)

    def test_float_mode_sets_partition_and_cpuset_and_drops_nova_pins(self):
        pins = tp_claims.InstancePins(UUID, 'p1', frozenset({8, 9}))
        xml = driver.confine_domain_xml(
            self._nova_xml(vcpu_pins={0: {2, 3}, 1: {2, 3}}, emulator={2}),
            pins, 'p1')
        info = domain_xml.parse_domain_xml(xml)
        self.assertEqual('/machine/tenant-p1', info.partition)
        self.assertEqual(frozenset({8, 9}), info.vcpu_cpuset)
        self.assertEqual({}, info.vcpu_pins)
        self.assertIsNone(info.emulator_pins)
        self.assertEqual(frozenset({8, 9}), info.all_cpus({0, 1, 2, 8, 9}))

    def test_strict_mode_pins_each_vcpu_and_the_emulator(self):
        pins = tp_claims.InstancePins(UUID, 'p1', frozenset({8, 9}),
                                      {0: frozenset({8}), 1: frozenset({9})})
        info = domain_xml.parse_domain_xml(
            driver.confine_domain_xml(self._nova_xml(), pins, 'p1'))
        self.assertEqual({0: {8}, 1: {9}}, info.vcpu_pins)
        self.assertEqual(frozenset({8, 9}), info.emulator_pins)

    def test_owner_project_added_when_nova_left_it_out(self):
        pins = tp_claims.InstancePins(UUID, 'p1', frozenset({8, 9}))
        info = domain_xml.parse_domain_xml(
            driver.confine_domain_xml(self._nova_xml(), pins, 'p1', 'demo'))
        self.assertEqual('p1', info.project_id)

    def test_existing_owner_project_is_kept(self):
        pins = tp_claims.InstancePins(UUID, 'p1', frozenset({8, 9}))
        info = domain_xml.parse_domain_xml(driver.confine_domain_xml(
            self._nova_xml(project='p1'), pins, 'p1'))
        self.assertEqual('p1', info.project_id)

    def test_migration_xml_to_isolated_target_keeps_only_the_partition(self):
        src = fakes.domain_xml(UUID, 2, project='p1',
                               partition='/machine/tenant-p1',
                               cpuset={8, 9}, vcpu_pins={0: {8}, 1: {9}},
                               emulator={8, 9})
        info = domain_xml.parse_domain_xml(
            driver.migration_source_xml(src, to_isolated_target=True))
        self.assertEqual('/machine/tenant-p1', info.partition)
        self.assertEqual({}, info.vcpu_pins)
        self.assertIsNone(info.emulator_pins)

    def test_migration_xml_to_unisolated_target_drops_the_partition(self):
        src = fakes.domain_xml(UUID, 2, project='p1',
                               partition='/machine/tenant-p1', cpuset={8, 9})
        src = fakes.set_metadata_in_xml(
            src, domain_xml.metadata_xml('p1', 'float', 1.0),
            domain_xml.TP_PREFIX, domain_xml.TP_NS)
        info = domain_xml.parse_domain_xml(
            driver.migration_source_xml(src, to_isolated_target=False))
        self.assertIsNone(info.partition)
        # Released on arrival: no tenant-pin key goes with it.
        self.assertIsNone(info.key)
        self.assertEqual('p1', info.project_id)

    def test_metadata_records_key_mode_ratio_and_what_the_flavor_asked(self):
        pins = tp_claims.InstancePins(UUID, 'group-acme', frozenset({8, 9}))
        meta = domain_xml.metadata_xml('group-acme', 'strict', 1.5, 'required')
        info = domain_xml.parse_domain_xml(driver.confine_domain_xml(
            self._nova_xml(project='p1'), pins, 'p1', metadata=meta))
        self.assertEqual(('group-acme', 'strict', 1.5, 'required'),
                         (info.key, info.pin_mode, info.ratio,
                          info.isolation))
        self.assertEqual('/machine/tenant-group-acme', info.partition)
        self.assertEqual('partition', info.confinement)

    def test_migrating_guest_rewrites_only_the_migratable_xml(self):
        src = fakes.domain_xml(UUID, 1, partition='/machine/tenant-p1',
                               vcpu_pins={0: {8}})
        guest = mock.Mock()
        guest.get_xml_desc.return_value = src
        wrapped = driver._MigratingGuest(guest, True)
        self.assertEqual(src, wrapped.get_xml_desc())
        self.assertEqual({}, domain_xml.parse_domain_xml(
            wrapped.get_xml_desc(dump_migratable=True)).vcpu_pins)
        wrapped.migrate('uri')
        guest.migrate.assert_called_once_with('uri')


class TestTargetTraitLookup(base.TestCase):
    """A live migration's source asks placement whether the target runs
    tenant-pin; a yes is kept for a while, a no is not."""

    def setUp(self):
        super().setUp()
        # Only the state the lookup uses: no libvirt connection behind it.
        self.driver = driver.TenantPinLibvirtDriver.__new__(
            driver.TenantPinLibvirtDriver)
        self.driver._tp_trait_cache = {}
        self.traits = {'node-a': {driver.TRAIT}, 'node-b': set()}
        client = mock.Mock()
        client.get_provider_traits.side_effect = (
            lambda ctxt, uuid: mock.Mock(traits=self.traits[uuid]))
        self.client = client
        self.useFixture(fixtures.MockPatch(
            'nova.scheduler.client.report.report_client_singleton',
            return_value=client))
        self.useFixture(fixtures.MockPatch(
            'nova.objects.ComputeNodeList.get_all_by_host',
            side_effect=lambda ctxt, host: [
                mock.Mock(uuid='node-%s' % host)]))
        self.now = 1000.0
        self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.driver.time.monotonic',
            side_effect=lambda: self.now))

    def test_a_yes_is_kept_until_it_expires(self):
        self.assertTrue(self.driver._tp_host_runs_tenant_pin(None, 'a'))
        self.now += driver.TRAIT_CACHE_SECONDS - 1
        self.assertTrue(self.driver._tp_host_runs_tenant_pin(None, 'a'))
        self.assertEqual(1, self.client.get_provider_traits.call_count)
        # Expired: asked again, and the host no longer reports the trait.
        self.now += 2
        self.traits['node-a'] = set()
        self.assertFalse(self.driver._tp_host_runs_tenant_pin(None, 'a'))
        self.assertEqual(2, self.client.get_provider_traits.call_count)

    def test_a_no_is_asked_again_every_time(self):
        self.assertFalse(self.driver._tp_host_runs_tenant_pin(None, 'b'))
        self.traits['node-b'] = {driver.TRAIT}
        self.assertTrue(self.driver._tp_host_runs_tenant_pin(None, 'b'))
        self.assertEqual(2, self.client.get_provider_traits.call_count)


class TestReconcileAtStart(base.TestCase):
    """nova-compute's start must survive a guest that is destroyed (or a
    migration job that ends) while the first reconcile runs: libvirt then
    fails one step, and the next attempt plans from what the host holds."""

    def setUp(self):
        super().setUp()
        self.driver = driver.TenantPinLibvirtDriver.__new__(
            driver.TenantPinLibvirtDriver)
        self.not_running = RuntimeError('Requested operation is not '
                                        'valid: domain is not running')

    def test_a_step_failed_once_is_tried_again(self):
        self.driver._tp_reconcile = mock.Mock(
            side_effect=[self.not_running, ['repaired']])
        self.assertEqual(['repaired'],
                         self.driver._tp_reconcile_at_start('host1'))
        self.assertEqual(2, self.driver._tp_reconcile.call_count)

    def test_a_host_that_never_reconciles_does_not_start(self):
        self.driver._tp_reconcile = mock.Mock(side_effect=self.not_running)
        self.assertRaises(RuntimeError, self.driver._tp_reconcile_at_start,
                          'host1')
        self.assertEqual(driver.TenantPinLibvirtDriver._TP_START_ATTEMPTS,
                         self.driver._tp_reconcile.call_count)


class TestCgroupLayoutAtStart(base.TestCase):
    """init_host reads the host's cgroup layout (a fake tree here) and
    refuses one it cannot enforce on, naming the layout and the fix,
    before any guest is touched."""

    def setUp(self):
        super().setUp()
        # Cpuset on v1 beside cgroup2, as on this project's CI machines.
        self.host = self.useFixture(ef.FakeHost())
        self.flags(group='compute', cpu_shared_set='2-15',
                   cpu_dedicated_set=None)
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.init_host'))
        self.driver = driver.TenantPinLibvirtDriver.__new__(
            driver.TenantPinLibvirtDriver)
        self.driver.tenant_pin = None
        self.driver._tp_topology = test_manager.make_topology
        self.driver._tp_reconcile_at_start = mock.Mock(return_value=[])

    def test_hybrid_with_systemd_is_refused(self):
        os.makedirs(self.host.path('/run/systemd/system'))
        e = self.assertRaises(exception_.CgroupLayoutError,
                              self.driver.init_host, 'host1')
        self.assertIn('hybrid cgroup v1 + v2 with systemd as PID 1 is not '
                      'supported', str(e))
        self.assertIn('systemd.unified_cgroup_hierarchy=1', str(e))
        self.assertIsNone(self.driver.tenant_pin)
        self.driver._tp_reconcile_at_start.assert_not_called()

    def test_hybrid_without_systemd_starts(self):
        self.driver.init_host('host1')
        self.assertEqual(cgroupfs.HYBRID,
                         self.driver.tenant_pin.partitions.layout.mode)
        self.driver._tp_reconcile_at_start.assert_called_once_with('host1')


class TestChangeOfOneInstance(base.TestCase):
    """A claim, or the re-plan when a domain starts, that stops half way
    because a live change of another guest failed (Nova destroying it, a
    migration's job taking it after the read) is planned again from what
    the host holds; it must not fail a cold migration's arrival, a
    revert, or the start of a running guest."""

    def setUp(self):
        super().setUp()
        self.driver = driver.TenantPinLibvirtDriver.__new__(
            driver.TenantPinLibvirtDriver)
        self.driver.tenant_pin = mock.Mock()
        self.driver._tp_policy = mock.Mock()
        self.instance = mock.Mock(uuid=UUID, project_id='p1',
                                  numa_topology=None)
        self.instance.flavor.vcpus = 2
        self.instance.flavor.extra_specs = {}
        self.not_running = RuntimeError('Requested operation is not '
                                        'valid: domain is not running')

    def test_a_claim_stopped_half_way_is_planned_again(self):
        pins = mock.sentinel.pins
        self.driver.tenant_pin.claim.side_effect = [self.not_running, pins]
        self.assertIs(pins, self.driver._tp_claim(self.instance))
        self.assertEqual(2, self.driver.tenant_pin.claim.call_count)

    def test_a_claim_that_never_succeeds_fails(self):
        self.driver.tenant_pin.claim.side_effect = self.not_running
        self.assertRaises(RuntimeError, self.driver._tp_claim, self.instance)
        self.assertEqual(driver.TenantPinLibvirtDriver._TP_CHANGE_ATTEMPTS,
                         self.driver.tenant_pin.claim.call_count)

    def test_a_tenant_that_does_not_fit_is_not_tried_again(self):
        self.driver.tenant_pin.claim.side_effect = exception_.TenantDoesNotFit(
            UUID, 'p1', 'no room')
        self.assertRaises(exception.ComputeResourcesUnavailable,
                          self.driver._tp_claim, self.instance)
        self.assertEqual(1, self.driver.tenant_pin.claim.call_count)

    def test_a_failed_replan_at_start_does_not_fail_the_guest(self):
        started = self.driver.tenant_pin.domain_started
        started.side_effect = self.not_running
        self.driver._tp_started(self.instance)
        self.assertEqual(driver.TenantPinLibvirtDriver._TP_CHANGE_ATTEMPTS,
                         started.call_count)
        started.reset_mock(side_effect=True)
        started.side_effect = [self.not_running, None]
        self.driver._tp_started(self.instance)
        self.assertEqual(2, started.call_count)


class TestSettingsChangedReplan(base.TestCase):
    """The re-plan after a re-read of the per-project settings (SIGHUP)
    that stops half way (a migration's job took a guest whose key changes
    after the read) reads the host again; failing for good it is logged
    and must not break the configuration reload."""

    def setUp(self):
        super().setUp()
        self.driver = driver.TenantPinLibvirtDriver.__new__(
            driver.TenantPinLibvirtDriver)
        self.driver._tp_host = 'host1'
        self.driver.tenant_pin = mock.Mock(settings='old', static_config={})
        self.useFixture(fixtures.MockPatch(
            'nova_tenant_pin.driver.load_options',
            return_value={'settings': 'new', 'static': {}}))
        self.locked = RuntimeError('Timed out during operation: cannot '
                                   'acquire state change lock')

    def test_a_replan_stopped_half_way_reads_the_host_again(self):
        self.driver._tp_reconcile = mock.Mock(
            side_effect=[self.locked, ['repaired']])
        self.driver._tp_settings_changed()
        self.driver.tenant_pin.update_settings.assert_called_once_with(
            'new', static={})
        self.assertEqual(2, self.driver._tp_reconcile.call_count)

    def test_a_replan_that_never_succeeds_is_left_to_the_periodic(self):
        self.driver._tp_reconcile = mock.Mock(side_effect=self.locked)
        self.driver._tp_settings_changed()
        self.assertEqual(driver.TenantPinLibvirtDriver._TP_START_ATTEMPTS,
                         self.driver._tp_reconcile.call_count)
