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

"""TenantPinLibvirtDriver: Nova's libvirt driver, with tenant isolation.

Each override is thin: it asks the per-host
:class:`~nova_tenant_pin.manager.TenantPinManager` for room (or gives it
back) and calls the parent. The manager owns the tenant map, the cgroup
partitions and live re-pinning; this module owns what only Nova knows: the
instance's project and flavor, which instances have dedicated CPUs, the
domain XML Nova generates, and the live-migration protocol.

Configure it with
``[DEFAULT] compute_driver = tenant_pin.TenantPinLibvirtDriver`` (Nova
loads drivers as ``nova.virt.<compute_driver>``; this package ships the
tiny module ``nova/virt/tenant_pin.py`` for that, see
``doc/source/admin/driver.rst``).
"""

import threading
import time
import weakref

from nova import context as nova_context
from nova import exception
from nova import objects
from nova.objects import fields
from nova.scheduler.client import report
from nova import utils as nova_utils
from nova.virt import event as virtevent
from nova.virt.libvirt import driver as libvirt_driver
import os_resource_classes as orc
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import excutils

from nova_tenant_pin import cgroups
from nova_tenant_pin import conf as tp_conf
from nova_tenant_pin import coresched
from nova_tenant_pin import domain_xml
from nova_tenant_pin import exception as tp_exception
from nova_tenant_pin import manager as tp_manager
from nova_tenant_pin import options as tp_options
from nova_tenant_pin import policy as tp_policy
from nova_tenant_pin import topology as topo

LOG = logging.getLogger(__name__)
CONF = cfg.CONF
tp_conf.register_opts(CONF)

NOVA_NS = domain_xml.NOVA_NS

#: The placement trait every compute node running this driver reports.
TRAIT = 'CUSTOM_TENANT_PIN'
# How long a live migration's source trusts that a target reports TRAIT.
TRAIT_CACHE_SECONDS = 60.0


#: Migration statuses after which a live migration moves nothing any more.
_MIGRATION_ENDED = frozenset(['completed', 'done', 'failed', 'error',
                              'cancelled', 'confirmed', 'reverted'])


#: The drivers running in this process (one in nova-compute; several in
#: tests), told when mutable options change.
_DRIVERS = weakref.WeakSet()


def _options_mutated(conf, fresh):
    """oslo.config's mutate hook: nova-compute re-read its configuration
    files (SIGHUP); the per-project settings may have changed."""
    for drv in list(_DRIVERS):
        drv._tp_settings_changed()


CONF.register_mutate_hook(_options_mutated)


def project_settings(conf):
    """The per-project settings (``exempt_projects``,
    ``isolation_groups``) as a :class:`policy.ProjectSettings`.

    :raises nova.exception.InvalidConfiguration: naming the option.
    """
    return tp_options.project_settings(conf)


def image_properties(instance):
    """The instance's ``tenant_pin_*`` image properties, which Nova keeps
    in its system metadata (``image_<property>``) at boot."""
    props = nova_utils.get_image_from_system_metadata(
        instance.system_metadata or {})['properties']
    return {k: v for k, v in props.items() if k.startswith('tenant_pin_')}


def _invalid(option, reason):
    return exception.InvalidConfiguration(
        '[tenant_pin] %s: %s' % (option, reason))


def load_options(conf, topology):
    """Read and check the ``[tenant_pin]`` options against the host, with
    the reader every ``nova-tenant-pin`` command uses
    (:func:`nova_tenant_pin.options.load_options`).

    :returns: dict of keyword arguments for the manager.
    :raises nova.exception.InvalidConfiguration: naming the option.
    """
    return tp_options.load_options(conf, topology)


def is_dedicated(instance):
    """Nova pins instances with ``hw:cpu_policy=dedicated`` (or ``mixed``)
    itself; this driver leaves them alone."""
    return _nova_pins(instance.numa_topology)


def _nova_pins(numa):
    """Whether an instance NUMA topology asks Nova for dedicated CPUs."""
    return bool(numa is not None and numa.cells and any(
        cell.cpu_policy in (fields.CPUAllocationPolicy.DEDICATED,
                            fields.CPUAllocationPolicy.MIXED)
        for cell in numa.cells))


def shares_tenant_cores(instance):
    """Why a Nova-pinned instance would run threads on the shared CPUs,
    which are the tenants' cores here, or None.

    ``hw:cpu_policy=mixed`` floats its shared vCPUs there, and
    ``hw:emulator_threads_policy=share`` its emulator threads: both would
    put one project's threads on other tenants' cores.
    """
    numa = instance.numa_topology
    if numa is None:
        return None
    if any(cell.cpu_policy == fields.CPUAllocationPolicy.MIXED
           for cell in numa.cells):
        return 'hw:cpu_policy=mixed floats vCPUs on the shared CPUs'
    if numa.obj_attr_is_set('emulator_threads_policy') and \
            numa.emulator_threads_policy == \
            fields.CPUEmulatorThreadsPolicy.SHARE:
        return ('hw:emulator_threads_policy=share runs emulator threads on '
                'the shared CPUs')
    return None


# The two rewrites of Nova's domain XML live with the rest of the XML model.
confine_domain_xml = domain_xml.confine_domain_xml
migration_source_xml = domain_xml.migration_source_xml


class _MigratingGuest:
    """A Guest whose migratable XML is :func:`migration_source_xml`'s, so
    that Nova's own ``get_updated_guest_xml`` builds the target XML from it;
    everything else goes to the real Guest."""

    def __init__(self, guest, to_isolated_target, partition=None):
        self._guest = guest
        self._to_isolated_target = to_isolated_target
        self._partition = partition

    def get_xml_desc(self, dump_inactive=False, dump_sensitive=False,
                     dump_migratable=False):
        xml = self._guest.get_xml_desc(dump_inactive=dump_inactive,
                                       dump_sensitive=dump_sensitive,
                                       dump_migratable=dump_migratable)
        if dump_migratable:
            xml = migration_source_xml(xml, self._to_isolated_target,
                                       self._partition)
        return xml

    def __getattr__(self, name):
        return getattr(self._guest, name)


class TenantPinLibvirtDriver(libvirt_driver.LibvirtDriver):
    """The libvirt driver with whole cores per tenant."""

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self.tenant_pin = None
        self._tp_host = None
        self._tp_last_reconcile = None
        self._tp_stranded_reported = 0
        # Instances whose domain is re-created in place (hard reboot, power
        # on): the destroy inside must not give their room away.
        self._tp_keep = set()
        self._tp_keep_lock = threading.Lock()
        # Destination checks of incoming live migrations, by the check's
        # file name (the only key cleanup_live_migration_destination_check
        # gets).
        self._tp_checks = {}
        self._tp_cookies = None
        # {host: monotonic time until which it is known to report TRAIT}.
        self._tp_trait_cache = {}
        # Incoming live migrations the source accepted, ``{instance uuid:
        # migration uuid}``: their claims stay until Nova says the guest
        # arrived or was rolled back here, or the migration record shows it
        # ended or went to another host (a later pre-check failed here and
        # the conductor chose another host).
        self._tp_incoming = {}
        _DRIVERS.add(self)

    # -- start and periodic --------------------------------------------------

    def _tp_make_partitions(self, host):
        """The host's partitions; a seam for tests, which keep one
        MemoryPartitions per host across service restarts."""
        return cgroups.get_partitions()

    def _tp_topology(self):
        caps = self._host.get_capabilities()
        return topo.HostTopology.from_capabilities_xml(caps.to_xml())

    def init_host(self, host):
        super().init_host(host)
        self._tp_host = host
        topology = self._tp_topology()
        options = load_options(CONF, topology)
        try:
            self._tp_cookies = coresched.CoreCookies(
                CONF.tenant_pin.core_scheduling, self._tp_running_domains,
                name=host)
            # An incoming live migration's QEMU holds a cookie before its
            # guest runs only where libvirt gives it one at its start.
            self._tp_cookies.check_libvirt()
        except coresched.Unsupported as e:
            raise _invalid('core_scheduling', e)
        try:
            self.tenant_pin = tp_manager.TenantPinManager(
                topology, self._tp_make_partitions(host),
                lambda: self._host.get_connection(), name=host, **options)
        except ValueError as e:
            # PlanError: a static cpuset that breaks a rule.
            raise _invalid('static_tenant_cpuset', e)
        self._tp_reconcile_at_start(host)
        self._tp_hook_resize_claim()
        LOG.info('tenant-pin on %s: housekeeping CPUs %s, tenants %s',
                 host, topo.format_cpu_list(options['housekeeping_cpus']),
                 {t: topo.format_cpu_list(c) for t, c in
                  self.tenant_pin.tenant_map().items()})

    def cleanup_host(self, host):
        _DRIVERS.discard(self)
        super().cleanup_host(host)

    def _tp_settings_changed(self):
        """Re-read ``exempt_projects``, ``isolation_groups`` and
        ``static_tenant_cpuset`` and re-plan the host: instances whose key
        or cores changed move live, without overlap. A bad new value is
        refused with an error and the old ones kept."""
        if self.tenant_pin is None:
            return
        try:
            options = load_options(CONF, self.tenant_pin.topology)
            settings, static = options['settings'], options['static']
            if settings == self.tenant_pin.settings and \
                    static == self.tenant_pin.static_config:
                return
            self.tenant_pin.update_settings(settings, static=static)
        except (exception.InvalidConfiguration, ValueError) as e:
            LOG.error('tenant-pin: new per-project settings refused, the '
                      'previous ones stay in force: %s', e)
            return
        try:
            repairs = self._tp_reconcile_retried(
                self._tp_host, 'the re-plan for the new per-project settings')
        except Exception as e:
            # The host stays in the safe state the last attempt left; the
            # periodic reconcile finishes the change.
            LOG.error('tenant-pin on %s: the re-plan for the new per-project '
                      'settings failed %d times (%s); the next periodic '
                      'reconcile finishes it', self._tp_host,
                      self._TP_START_ATTEMPTS, e)
            return
        LOG.info('tenant-pin on %s: re-planned for the new per-project '
                 'settings (%d changes)', self._tp_host, len(repairs))

    def _tp_policy(self, instance, flavor=None):
        """The instance's tenant-pin policy, from its flavor's extra specs,
        its image properties and the per-project settings.

        :raises nova.exception.BuildAbortException: the flavor and the
            image conflict (another host would refuse it too).
        """
        flavor = flavor or instance.flavor
        try:
            return self.tenant_pin.policy_of(
                instance.project_id, flavor.extra_specs or {},
                image_properties(instance))
        except (tp_policy.PolicyError, cgroups.PartitionError) as e:
            LOG.error('tenant-pin: instance %s of project %s: %s',
                      instance.uuid, instance.project_id, e,
                      instance=instance)
            raise exception.BuildAbortException(
                instance_uuid=instance.uuid, reason='tenant-pin: %s' % e)

    def _tp_host_instances(self):
        """The instances Nova places on this host: their uuids, with those
        of migrations in progress from or to it (a resize source keeps its
        room until confirmed), ``{uuid: cpus}`` of those with dedicated
        CPUs and ``{uuid: Policy}`` of the others."""
        ctxt = nova_context.get_admin_context()
        known, dedicated, policies = set(), {}, {}
        for inst in objects.InstanceList.get_by_host(
                ctxt, self._tp_host, expected_attrs=[
                    'numa_topology', 'flavor', 'system_metadata']):
            known.add(inst.uuid)
            if is_dedicated(inst):
                dedicated[inst.uuid] = frozenset(
                    inst.numa_topology.cpu_pinning)
                continue
            try:
                policies[inst.uuid] = self._tp_policy(inst)
            except exception.BuildAbortException:
                pass  # logged; its domain's metadata decides
        migrations = objects.MigrationList.get_in_progress_by_host_and_node(
            ctxt, self._tp_host, self._host.get_hostname())
        known.update(migration.instance_uuid for migration in migrations)
        # Until the conductor saves the migration's destination (after all
        # its pre-checks), the record does not name this host yet.
        known.update(self._tp_incoming_coming(ctxt))
        return known, dedicated, policies

    def _tp_incoming_coming(self, ctxt):
        """The instances Nova may still live-migrate here: a destination
        check in progress, or one the source accepted whose migration has
        neither ended nor been sent to another host. Forgets the others."""
        coming = set(self._tp_checks.values())
        for uuid, migration_uuid in list(self._tp_incoming.items()):
            try:
                migration = objects.Migration.get_by_uuid(ctxt,
                                                          migration_uuid)
            except exception.MigrationNotFound:
                migration = None
            dest = migration.dest_compute if migration is not None and \
                migration.obj_attr_is_set('dest_compute') else None
            if migration is not None and \
                    migration.status not in _MIGRATION_ENDED and \
                    dest in (None, self._tp_host):
                coming.add(uuid)
                continue
            LOG.info('tenant-pin: the live migration %s of instance %s to %s '
                     'ended or went to host %s (status %s)', migration_uuid,
                     uuid, self._tp_host, dest,
                     migration.status if migration is not None else 'gone')
            self._tp_incoming.pop(uuid, None)
        return coming

    def _tp_release_abandoned_incoming(self):
        """Release, now, the incoming claims of live migrations that will
        not come here (the reconcile would too, at its next interval): a
        claim whose guest never arrived holds room nobody uses."""
        if not self._tp_incoming:
            return
        coming = self._tp_incoming_coming(nova_context.get_admin_context())
        for uuid, claim in self.tenant_pin.claims().items():
            if claim.incoming and claim.pending and uuid not in coming:
                LOG.warning('tenant-pin: instance %s of tenant %s will not '
                            'arrive on %s by live migration; its claim is '
                            'released', uuid, claim.key, self._tp_host)
                try:
                    self.tenant_pin.release(uuid)
                except Exception:
                    LOG.exception('tenant-pin: releasing the abandoned '
                                  'incoming claim of instance %s failed half '
                                  'way; the next reconcile finishes it', uuid)

    #: How many times init_host (and a re-read of the per-project
    #: settings) reconciles before it gives up: a reconcile that stops half
    #: way (a guest destroyed, a migration job taking or leaving a domain
    #: at that moment) is tried again, each time from what the host holds.
    _TP_START_ATTEMPTS = 3

    def _tp_reconcile_retried(self, host, what):
        for attempt in range(1, self._TP_START_ATTEMPTS + 1):
            try:
                return self._tp_reconcile()
            except Exception as e:
                if attempt == self._TP_START_ATTEMPTS:
                    raise
                LOG.warning('tenant-pin on %s: %s stopped half way (%s); '
                            'reading the host again (attempt %d of %d)',
                            host, what, e, attempt + 1,
                            self._TP_START_ATTEMPTS)

    def _tp_reconcile_at_start(self, host):
        try:
            return self._tp_reconcile_retried(host, 'the start-up reconcile')
        except Exception as e:
            LOG.error('tenant-pin on %s: the start-up reconcile failed %d '
                      'times; nova-compute cannot start until the host can '
                      'be read and confined: %s', host,
                      self._TP_START_ATTEMPTS, e)
            raise

    def _tp_reconcile(self):
        self._tp_last_reconcile = time.monotonic()
        known, dedicated, policies = self._tp_host_instances()
        repairs = self.tenant_pin.reconcile(dedicated=dedicated, known=known,
                                            policies=policies)
        # Restart, adoption and key changes: cookies follow the keys.
        self._tp_sync_cookies('reconcile')
        return repairs

    # -- core scheduling -----------------------------------------------------

    def _tp_running_domains(self):
        # The manager's reading of the domains (under its lock, parsed
        # again only when changed), not a parse of every domain's XML.
        if self.tenant_pin is None:
            return []
        return self.tenant_pin.running_domains()

    def _tp_sync_cookies(self, why, instance=None):
        """Give every running guest its isolation key's core-scheduling
        cookie. Returns False when that failed (logged)."""
        if self._tp_cookies is None or not self._tp_cookies.active:
            return True
        try:
            self._tp_cookies.sync()
        except Exception as e:
            LOG.error('tenant-pin: core-scheduling cookies at %s: %s', why,
                      e, instance=instance)
            return False
        return True

    def _create_guest(self, context, xml, instance, power_on=True,
                      pause=False, post_xml_callback=None):
        # Every start of a domain (spawn, hard reboot, power on, rescue,
        # resize) ends here: the domain starts paused, its QEMU gets its
        # key's cookie, and only then do its vCPUs run.
        if self._tp_cookies is None or not self._tp_cookies.active or \
                not (power_on or pause) or is_dedicated(instance):
            return super()._create_guest(
                context, xml, instance, power_on=power_on, pause=pause,
                post_xml_callback=post_xml_callback)
        guest = super()._create_guest(
            context, xml, instance, power_on=power_on, pause=True,
            post_xml_callback=post_xml_callback)
        if not self._tp_sync_cookies('start of instance %s' % instance.uuid,
                                     instance) and \
                self._tp_cookies.mode == coresched.REQUIRED:
            raise exception.InternalError(
                'tenant-pin: instance %s was not given its isolation key\'s '
                'core-scheduling cookie and [tenant_pin] core_scheduling = '
                'required: it is left paused' % instance.uuid)
        if not pause:
            guest.resume()
        return guest

    def emit_event(self, event):
        # An incoming live migration's QEMU on this host: libvirt started it
        # (paused, waiting for the guest's memory); give it its key's cookie
        # while the memory is copied. The event is delivered on its own
        # schedule and a small guest may be resumed here first: what keeps
        # the guest from running beside another key until then is the
        # cookie libvirt's sched_core gave its QEMU when it forked it
        # (CoreCookies.check_libvirt, doc/source/security.rst).
        if isinstance(event, virtevent.LifecycleEvent) and \
                event.transition == virtevent.EVENT_LIFECYCLE_STARTED and \
                self.tenant_pin is not None and self._tp_cookies is not None \
                and self._tp_cookies.active:
            claim = self.tenant_pin.claims().get(event.uuid)
            if claim is not None and claim.incoming:
                self._tp_sync_cookies('arrival of instance %s' % event.uuid)
        super().emit_event(event)

    def get_available_resource(self, nodename):
        # NOTE: the stranded threads reported to placement are refreshed
        # here, in the periodic resource update, and not at every claim:
        # an inventory that changed with every claim would race the
        # scheduler's allocations on the provider's generation, and
        # concurrent builds would fail with generation conflicts. The
        # compute's own claim stays the last word in between.
        resources = super().get_available_resource(nodename)
        if self.tenant_pin is not None:
            self._tp_stranded_reported = self.tenant_pin.stranded_cpus()
        return resources

    def update_provider_tree(self, provider_tree, nodename, allocations=None):
        super().update_provider_tree(provider_tree, nodename,
                                     allocations=allocations)
        if self.tenant_pin is None:
            return
        interval = CONF.tenant_pin.reconcile_interval
        try:
            if interval and time.monotonic() - self._tp_last_reconcile >= \
                    interval:
                self._tp_reconcile()
            else:
                self._tp_release_abandoned_incoming()
        except Exception:
            # The host stays as safe as it was; the resource update must go
            # on. The next interval tries again.
            LOG.exception('tenant-pin: periodic reconcile on %s failed',
                          self._tp_host)
        # Threads a tenant holds but its vCPUs do not need are nobody
        # else's: report them as reserved so placement's view is true.
        inventory = provider_tree.data(nodename).inventory
        vcpu = inventory.get(orc.VCPU)
        if vcpu:
            vcpu['reserved'] = min(vcpu['total'], CONF.reserved_host_cpus +
                                   self._tp_stranded_reported)
            provider_tree.update_inventory(nodename, inventory)
        # Tells a live migration's source (and the scheduler, if asked to
        # require it) that this host keeps tenants apart.
        provider_tree.add_traits(nodename, TRAIT)

    # -- domain XML --------------------------------------------------------

    def _get_guest_xml(self, context, instance, *args, **kwargs):
        xml = super()._get_guest_xml(context, instance, *args, **kwargs)
        if self.tenant_pin is None or is_dedicated(instance):
            return xml
        pins = self.tenant_pin.pins_for(instance.uuid)
        in_partition = True
        if pins is None and self._tp_recreated_in_place(instance.uuid):
            # A hard reboot or power on of an instance whose tenant does
            # not fit on whole cores here: it comes back where it ran.
            pins = self.tenant_pin.unfit_pins(instance.uuid)
            if pins is not None:
                in_partition = False
                LOG.warning('tenant-pin: host %s NOT isolated: tenant %s does '
                            'not fit on whole cores; instance %s starts again '
                            'on the CPUs no tenant holds (%s), where it ran '
                            'before', self._tp_host, pins.key,
                            instance.uuid, topo.format_cpu_list(pins.cpus),
                            instance=instance)
        if pins is None:
            pins = self._tp_claim(instance)
        return confine_domain_xml(
            xml, pins, instance.project_id,
            getattr(context, 'project_name', None),
            metadata=self.tenant_pin.metadata_of(instance.uuid),
            in_partition=in_partition)

    def _tp_recreated_in_place(self, uuid):
        with self._tp_keep_lock:
            return uuid in self._tp_keep

    #: How many times a change made for one instance (its claim, the
    #: re-plan when its domain starts) is planned before it fails: a
    #: change that stops half way because a live change of some guest
    #: failed (Nova destroying that guest, a migration's job that took it
    #: after the read) is planned again from what the host then holds,
    #: where that guest is gone, stopped or busy and is planned around.
    _TP_CHANGE_ATTEMPTS = 3

    def _tp_again(self, what, change, instance):
        for attempt in range(1, self._TP_CHANGE_ATTEMPTS + 1):
            try:
                return change()
            except tp_exception.TenantDoesNotFit:
                raise
            except Exception as e:
                if attempt == self._TP_CHANGE_ATTEMPTS:
                    raise
                LOG.warning('tenant-pin: %s of instance %s of project %s '
                            'stopped half way (%s); planning it again from '
                            'what the host holds (attempt %d of %d)', what,
                            instance.uuid, instance.project_id, e,
                            attempt + 1, self._TP_CHANGE_ATTEMPTS,
                            instance=instance)

    def _tp_claim(self, instance, vcpus=None):
        policy = self._tp_policy(instance)
        try:
            return self._tp_again('the claim', lambda: self.tenant_pin.claim(
                instance.uuid, instance.project_id,
                vcpus or instance.flavor.vcpus, policy=policy), instance)
        except tp_exception.TenantDoesNotFit as e:
            raise exception.ComputeResourcesUnavailable(reason=e.reason)

    def _tp_release(self, instance):
        """Give back an instance's room. A failure half way leaves a safe
        state (shrinks come before grows) and must not fail Nova's delete,
        migration or rollback: it is logged, and the next reconcile
        finishes the change."""
        if self.tenant_pin is None:
            return
        try:
            self.tenant_pin.release(instance.uuid)
        except Exception:
            LOG.exception('tenant-pin: releasing the room of instance %s of '
                          'tenant %s failed half way; the next reconcile '
                          'finishes it', instance.uuid, instance.project_id,
                          instance=instance)

    def _tp_started(self, instance):
        if is_dedicated(instance):
            self.tenant_pin.add_dedicated(
                instance.uuid, instance.numa_topology.cpu_pinning)
            return
        # The domain runs confined (its partition, its XML's CPUs); the
        # re-plan that follows only tightens pins and shrinks what waited
        # for it. A failure must not fail the start of a running guest
        # (Nova would put it in ERROR, or destroy it and reschedule): it
        # is logged, and the next reconcile finishes the change.
        try:
            self._tp_again('the start',
                           lambda: self.tenant_pin.domain_started(
                               instance.uuid), instance)
        except Exception:
            LOG.exception('tenant-pin: re-planning the host for the start '
                          'of instance %s of project %s failed half way; '
                          'the next reconcile finishes it', instance.uuid,
                          instance.project_id, instance=instance)

    # -- spawn, delete, reboot ---------------------------------------------

    def spawn(self, context, instance, image_meta, injected_files,
              admin_password, allocations, network_info=None,
              block_device_info=None, power_on=True, accel_info=None):
        if not is_dedicated(instance):
            # Raises ComputeResourcesUnavailable: Nova reschedules.
            self._tp_claim(instance)
        else:
            why = shares_tenant_cores(instance)
            if why:
                LOG.warning('tenant-pin: refusing instance %s of project %s: '
                            '%s, which are other tenants\' cores on this '
                            'host', instance.uuid, instance.project_id, why,
                            instance=instance)
                raise exception.ComputeResourcesUnavailable(
                    reason='tenant-pin: %s' % why)
        try:
            super().spawn(context, instance, image_meta, injected_files,
                          admin_password, allocations,
                          network_info=network_info,
                          block_device_info=block_device_info,
                          power_on=power_on, accel_info=accel_info)
        except Exception:
            self._tp_release(instance)
            raise
        self._tp_started(instance)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True):
        # destroy() ends here too, and so does the source of a finished
        # live migration and a rolled back destination.
        super().cleanup(context, instance, network_info,
                        block_device_info=block_device_info,
                        destroy_disks=destroy_disks,
                        migrate_data=migrate_data, destroy_vifs=destroy_vifs,
                        destroy_secrets=destroy_secrets)
        with self._tp_keep_lock:
            keep = instance.uuid in self._tp_keep
        if not keep:
            self._tp_release(instance)

    def _hard_reboot(self, context, instance, *args, **kwargs):
        # The domain is destroyed and defined again with the same room.
        with self._tp_keep_lock:
            self._tp_keep.add(instance.uuid)
        try:
            return super()._hard_reboot(context, instance, *args, **kwargs)
        finally:
            with self._tp_keep_lock:
                self._tp_keep.discard(instance.uuid)
            if not is_dedicated(instance) and self.tenant_pin is not None:
                self._tp_started(instance)

    # -- resize and cold migration -------------------------------------------

    def _tp_hook_resize_claim(self):
        """Make the resize claim of this host's resource tracker hold the
        tenant's whole cores too.

        On the destination of a resize or cold migration Nova asks nothing
        of the driver before the source powers the guest off: its
        prep_resize only takes the resource tracker's claim and then casts
        to the source, and finish_migration, the driver's first word, comes
        after the power off, too late to refuse without an instance in
        ERROR. The tracker's claim is where Nova itself refuses a host
        (its NUMA and PCI tests), so the tenant's claim is taken with it:
        refused there, Nova reschedules the resize, or fails it with the
        guest still running on its source.
        """
        compute = getattr(getattr(self, 'virtapi', None), '_compute', None)
        tracker = getattr(compute, 'rt', None)
        if tracker is None or getattr(tracker.resize_claim, 'tp_hooked',
                                      False):
            return
        nova_claim = tracker.resize_claim

        def resize_claim(context, instance, flavor, nodename, migration,
                         allocations, image_meta=None, limits=None):
            claim = nova_claim(context, instance, flavor, nodename,
                               migration, allocations, image_meta=image_meta,
                               limits=limits)
            try:
                self._tp_claim_resize(instance, flavor, migration)
            except Exception:
                with excutils.save_and_reraise_exception():
                    claim.abort()
            return claim
        resize_claim.tp_hooked = True
        tracker.resize_claim = resize_claim

    def _tp_claim_resize(self, instance, flavor, migration):
        """Hold room for the new flavor on this host, the destination of a
        resize or cold migration, before the source powers the guest off.
        The claim is pending, as for an incoming live migration: it holds
        until the guest arrives (finish_migration), the migration ends or
        fails without it (released at the next resource update), or the
        resize is reverted (the destination's domain is destroyed).

        :raises nova.exception.InstanceFaultRollback: the tenant does not
            fit (Nova reschedules, or fails the resize and leaves the
            instance as it was), or its policy cannot be resolved.
        """
        numa = instance.migration_context.new_numa_topology \
            if instance.migration_context else instance.numa_topology
        if self.tenant_pin is None or migration is None or \
                migration.source_compute == self._tp_host or \
                _nova_pins(numa):
            # A resize on its own host keeps its claim until
            # finish_migration updates it.
            return
        try:
            policy = self._tp_policy(instance, flavor)
            self._tp_again('the resize claim', lambda: self.tenant_pin.claim(
                instance.uuid, instance.project_id, flavor.vcpus,
                incoming=True, policy=policy), instance)
        except Exception as e:
            LOG.warning('tenant-pin: %s refuses the %s of instance %s of '
                        'project %s: %s', self._tp_host,
                        migration.migration_type, instance.uuid,
                        instance.project_id, e, instance=instance)
            if isinstance(e, tp_exception.TenantDoesNotFit):
                e = exception.ComputeResourcesUnavailable(
                    reason='tenant-pin: %s' % e)
            raise exception.InstanceFaultRollback(inner_exception=e)
        self._tp_incoming[instance.uuid] = migration.uuid

    def finish_migration(self, context, migration, instance, disk_info,
                         network_info, image_meta, resize_instance,
                         allocations, block_device_info=None, power_on=True,
                         share_info=None):
        # Target side: room for the new flavor before the domain exists.
        same_host = migration.source_compute == migration.dest_compute
        self._tp_incoming.pop(instance.uuid, None)
        if not is_dedicated(instance):
            self._tp_claim(instance, instance.flavor.vcpus)
        try:
            super().finish_migration(
                context, migration, instance, disk_info, network_info,
                image_meta, resize_instance, allocations,
                block_device_info=block_device_info, power_on=power_on,
                share_info=share_info)
        except Exception:
            if not same_host:
                self._tp_release(instance)
            raise
        self._tp_started(instance)

    def confirm_migration(self, context, migration, instance, network_info):
        # Source side: the instance now lives on the target.
        super().confirm_migration(context, migration, instance, network_info)
        if migration.source_compute != migration.dest_compute:
            self._tp_release(instance)

    def finish_revert_migration(self, context, instance, network_info,
                                migration, block_device_info=None,
                                power_on=True, share_info=None):
        # Source side: the source claim was kept; it takes the old flavor
        # back (Nova restored instance.flavor before calling us).
        if not is_dedicated(instance):
            self._tp_claim(instance, instance.flavor.vcpus)
        super().finish_revert_migration(
            context, instance, network_info, migration,
            block_device_info=block_device_info, power_on=power_on,
            share_info=share_info)
        self._tp_started(instance)

    # -- live migration ----------------------------------------------------

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info, dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        data = super().check_can_live_migrate_destination(
            context, instance, src_compute_info, dst_compute_info,
            block_migration=block_migration,
            disk_over_commit=disk_over_commit)
        if is_dedicated(instance):
            why = shares_tenant_cores(instance)
            if why:
                # As at spawn: Nova would run some of its threads on the
                # shared CPUs, which are the tenants' cores here.
                super().cleanup_live_migration_destination_check(context,
                                                                 data)
                raise exception.MigrationPreCheckError(
                    reason='tenant-pin: instance %s of project %s: %s, '
                           'which are other tenants\' cores on this host'
                           % (instance.uuid, instance.project_id, why))
            return data
        try:
            policy = self._tp_policy(instance)
        except exception.BuildAbortException as e:
            super().cleanup_live_migration_destination_check(context, data)
            raise exception.MigrationPreCheckError(reason=e.kwargs['reason'])
        try:
            # Creates or widens the tenant's partition now: the target QEMU
            # starts inside it, confined from its first instruction.
            pins = self.tenant_pin.claim_incoming_migration(
                instance.uuid, instance.project_id, instance.flavor.vcpus,
                policy=policy)
        except tp_exception.TenantDoesNotFit as e:
            super().cleanup_live_migration_destination_check(context, data)
            raise exception.MigrationPreCheckError(
                reason='tenant-pin: %s' % e)
        data.dst_cpu_shared_set_info = set(pins.cpus)
        self._tp_checks[data.filename] = instance.uuid
        return data

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data,
                                      block_device_info=None):
        if not is_dedicated(instance) and not (
                'dst_cpu_shared_set_info' in dest_check_data and
                dest_check_data.dst_cpu_shared_set_info) and \
                not CONF.tenant_pin.allow_migration_to_unisolated_hosts:
            raise exception.MigrationPreCheckError(
                reason='tenant-pin: the target host reports no CPUs for '
                       'instance %s of tenant %s, so it does not run the '
                       'tenant-pin driver; set [tenant_pin] '
                       'allow_migration_to_unisolated_hosts to allow it'
                       % (instance.uuid, instance.project_id))
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data,
            block_device_info=block_device_info)

    def check_source_migrate_data_at_dest(self, ctxt, instance, migrate_data,
                                          migration, limits, allocs):
        migrate_data = super().check_source_migrate_data_at_dest(
            ctxt, instance, migrate_data, migration, limits, allocs)
        # The source accepted: the check's clean-up must keep the claim,
        # until the migration arrives, is rolled back, or goes elsewhere.
        self.tenant_pin.confirm_incoming_migration(instance.uuid)
        if not is_dedicated(instance) and migration is not None:
            self._tp_incoming[instance.uuid] = migration.uuid
        return migrate_data

    def cleanup_live_migration_destination_check(self, context,
                                                 dest_check_data):
        # Nova calls this after every destination check, successful or not;
        # only a claim the source never accepted is released.
        super().cleanup_live_migration_destination_check(context,
                                                         dest_check_data)
        uuid = self._tp_checks.pop(dest_check_data.filename, None)
        if uuid is not None and self.tenant_pin is not None:
            try:
                self.tenant_pin.release_unconfirmed_migration(uuid)
            except Exception:
                LOG.exception('tenant-pin: releasing the refused incoming '
                              'claim of instance %s failed half way; the '
                              'next reconcile finishes it', uuid)

    def _tp_host_runs_tenant_pin(self, context, host):
        """Whether ``host``'s compute node reports :data:`TRAIT`.

        A yes is kept for :data:`TRAIT_CACHE_SECONDS` (the lookup is two
        round trips, most of what the source adds to a live migration); a
        no is asked again every time, so that a host that starts running
        tenant-pin is trusted at once. The target's own destination check,
        which runs on every live migration, is the first guard; this is
        the second.
        """
        now = time.monotonic()
        expires = self._tp_trait_cache.get(host)
        if expires is not None and now < expires:
            return True
        reportclient = report.report_client_singleton()
        for node in objects.ComputeNodeList.get_all_by_host(context, host):
            traits = reportclient.get_provider_traits(context, node.uuid)
            if TRAIT in traits.traits:
                self._tp_trait_cache[host] = now + TRAIT_CACHE_SECONDS
                return True
        self._tp_trait_cache.pop(host, None)
        return False

    def _live_migration_operation(self, context, instance, dest,
                                  block_migration, migrate_data, guest,
                                  device_names):
        # Runs in Nova's migration thread on the source. Returning before
        # the guest moves leaves it running here with no migration job:
        # Nova's monitor takes that for a failed migration and rolls back
        # (instance ACTIVE here, destination cleaned up).
        if not is_dedicated(instance):
            to_isolated = self._tp_host_runs_tenant_pin(context, dest)
            if not to_isolated and \
                    not CONF.tenant_pin.allow_migration_to_unisolated_hosts:
                LOG.error('tenant-pin: live migration of instance %s of '
                          'tenant %s to host %s refused: the host does not '
                          'report trait %s, so it does not run the '
                          'tenant-pin driver (set [tenant_pin] '
                          'allow_migration_to_unisolated_hosts to allow it)',
                          instance.uuid, instance.project_id, dest, TRAIT,
                          instance=instance)
                return
            guest = _MigratingGuest(guest, to_isolated,
                                    self._tp_partition_of(instance))
        return super()._live_migration_operation(
            context, instance, dest, block_migration, migrate_data, guest,
            device_names)

    def _tp_partition_of(self, instance):
        """The partition of the instance's present isolation key, which
        a target running this driver claims for it; None if its policy
        cannot be resolved (logged)."""
        try:
            key = self._tp_policy(instance).isolation_key
        except exception.BuildAbortException:
            return None
        return domain_xml.PARTITION_PREFIX + key

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        super().post_live_migration_at_destination(
            context, instance, network_info, block_migration=block_migration,
            block_device_info=block_device_info)
        # The instance arrived with <vcpu cpuset> = its tenant's CPUs: now
        # compute and apply the optimal pins live.
        self._tp_incoming.pop(instance.uuid, None)
        self._tp_started(instance)
        # Its cookie was set when its QEMU started here (emit_event); this
        # catches a start event that came late or not at all.
        self._tp_sync_cookies('arrival of instance %s' % instance.uuid,
                              instance)

    def post_live_migration_at_source(self, context, instance, network_info):
        super().post_live_migration_at_source(context, instance, network_info)
        # The tenant shrinks, or lets go of its cores if this was its last
        # instance here (cleanup may already have done it: idempotent).
        self._tp_release(instance)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        try:
            super().rollback_live_migration_at_destination(
                context, instance, network_info, block_device_info,
                destroy_disks=destroy_disks, migrate_data=migrate_data)
        finally:
            self._tp_incoming.pop(instance.uuid, None)
            self._tp_release(instance)
