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

"""Nova's in-process functional harness with TenantPinLibvirtDriver.

Real API, conductor, scheduler and placement; computes on Nova's fake
libvirt, loaded through ``compute_driver = tenant_pin.TenantPinLibvirtDriver``
exactly as nova.conf would. Several tenants boot through the API with their
own clients. After every action, :meth:`assertInvariants` reads each
compute's domain XMLs and partitions and checks the design's invariants 1-3.

Two things of the fake are extended (``FakeLibvirtPinning``):

* a domain keeps the XML it was defined with (the fake rebuilds its XML and
  drops ``<metadata>`` and ``<resource>``), and ``pinVcpuFlags`` /
  ``pinEmulator`` edit it, as libvirt's live XML would show;
* like libvirt, starting a domain whose partition does not exist, or whose
  CPUs are outside it, fails; so does a live pin outside the partition;
* a domain with ``tp_migration_job`` set (``'in'`` or True: the target
  of an incoming live migration; ``'out'``: its source) has libvirt's
  async migration job: ``jobInfo``/``jobStats`` report the job, and a live
  pin or metadata change fails the way libvirt's does while the job holds
  the domain's state change lock (``touched`` records each attempt);
* ``fault``, when set, is called as ``fault(domain, what)`` before every
  live change (``pin``, ``iothread``, ``metadata``) and may raise
  (:func:`libvirt_error`), to fail a call as libvirt would.

Each host's partitions are a :class:`MemoryPartitions` kept across
compute restarts, as the kernel keeps cgroups.
"""

import os
import sys

import fixtures
from lxml import etree
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client as api_client
from nova.tests.functional.libvirt import base as libvirt_base
from oslo_utils import uuidutils

# Registers the [tenant_pin] options that setUp sets, before Nova loads
# the driver.
from nova_tenant_pin import conf  # noqa: F401
from nova_tenant_pin import domain_xml
from nova_tenant_pin import guests
from nova_tenant_pin.tests import fakes
from nova_tenant_pin.tests import invariants
from nova_tenant_pin import topology as topo

DRIVER = 'tenant_pin.TenantPinLibvirtDriver'


def _partition_violation(conn, xml):
    """Why libvirt would refuse to start this domain, or None."""
    partitions = getattr(conn, 'tp_partitions', None)
    if partitions is None:
        return None
    info = domain_xml.parse_domain_xml(xml)
    if info.partition_key is None:
        return None
    part = partitions.partitions.get(info.partition_key)
    if part is None:
        return 'partition %s does not exist' % info.partition
    used = info.all_cpus(frozenset())
    if not used <= part.cpus:
        return 'CPUs %s are outside partition %s (%s)' % (
            sorted(used - part.cpus), info.partition, sorted(part.cpus))
    return None


def libvirt_error(code, message):
    """A libvirtError as libvirt raises it, e.g. ``VIR_ERR_OPERATION_INVALID``
    with "Requested operation is not valid: domain is not running"."""
    return fakelibvirt.make_libvirtError(
        fakelibvirt.libvirtError, message, error_code=code,
        error_domain=fakelibvirt.VIR_FROM_QEMU)


#: What libvirt says to a live change of a domain whose incoming live
#: migration holds the job (after waiting for the lock about 30 s).
MIGRATION_LOCK = ('Timed out during operation: cannot acquire state change '
                  'lock (held by monitor=remoteDispatchDomainMigratePrepare3'
                  'Params)')

#: The same, on the source of an outgoing live migration.
MIGRATION_OUT_LOCK = MIGRATION_LOCK.replace('Prepare3', 'Perform3')

VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN = 4
VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT = 5


class FakeLibvirtPinning(fixtures.Fixture):
    """Keep each fake domain's XML, pin live, and check partitions."""

    def __init__(self):
        super().__init__()
        self.starts = []
        self.touched = []
        self.fault = None

    def _setUp(self):
        Domain = fakelibvirt.Domain
        Connection = fakelibvirt.Connection
        orig_init = Domain.__init__
        orig_create = Domain.createWithFlags
        orig_create_xml = Connection.createXML
        fixture = self

        def __init__(dom, connection, xml, running=False, transient=False):
            dom.tp_xml = xml
            orig_init(dom, connection, xml, running=running,
                      transient=transient)

        def XMLDesc(dom, flags):
            return dom.tp_xml

        def refuse(message):
            raise fakelibvirt.make_libvirtError(
                fakelibvirt.libvirtError, message,
                error_code=fakelibvirt.VIR_ERR_INTERNAL_ERROR,
                error_domain=fakelibvirt.VIR_FROM_QEMU)

        def createWithFlags(dom, flags):
            why = _partition_violation(dom._connection, dom.tp_xml)
            fixture.starts.append((dom._connection, dom.tp_xml, why))
            if why:
                refuse('cannot start %s: %s' % (dom.name(), why))
            return orig_create(dom, flags)

        def createXML(conn, xml, flags):
            why = _partition_violation(conn, xml)
            fixture.starts.append((conn, xml, why))
            if why:
                refuse('cannot start domain: %s' % why)
            return orig_create_xml(conn, xml, flags)

        orig_job_info = Domain.jobInfo
        orig_job_stats = Domain.jobStats

        # libvirt delivers an event to every callback registered for it;
        # fakelibvirt keeps one per event (the last), so the manager's
        # would replace Nova's. Keep them all, and send the tunable and
        # metadata events libvirt sends for a pin or a metadata change.
        def domainEventRegisterAny(conn, dom, eventid, callback, opaque):
            if not hasattr(conn, 'tp_callbacks'):
                conn.tp_callbacks = []
            conn.tp_callbacks.append((eventid, callback, opaque))
            conn._event_callbacks.setdefault(eventid, [callback, opaque])
            return len(conn.tp_callbacks)

        def emit(conn, dom, eventid, *args):
            for registered, callback, opaque in list(
                    getattr(conn, 'tp_callbacks', ())):
                if registered == eventid:
                    callback(conn, dom, *args, opaque)

        def _emit_lifecycle(conn, dom, event, detail):
            emit(conn, dom, fakelibvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, event,
                 detail)

        def live_change(dom, what):
            job = getattr(dom, 'tp_migration_job', False)
            if job:
                fixture.touched.append((dom.UUIDString(), what))
                raise libvirt_error(
                    fakelibvirt.VIR_ERR_OPERATION_TIMEOUT,
                    MIGRATION_OUT_LOCK if job == 'out' else MIGRATION_LOCK)
            if fixture.fault is not None:
                fixture.fault(dom, what)

        def jobInfo(dom):
            if getattr(dom, 'tp_migration_job', False):
                return [fakelibvirt.VIR_DOMAIN_JOB_UNBOUNDED] + [0] * 11
            return orig_job_info(dom)

        def jobStats(dom, flags=0):
            job = getattr(dom, 'tp_migration_job', False)
            if job:
                return {'type': fakelibvirt.VIR_DOMAIN_JOB_UNBOUNDED,
                        'operation': VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT
                        if job == 'out' else
                        VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN}
            return orig_job_stats(dom, flags)

        def pin(dom, cpus, vcpu):
            live_change(dom, 'pin')
            # Like the kernel: the new pin alone must be inside the
            # partition's CPUs as they are now.
            partitions = getattr(dom._connection, 'tp_partitions', None)
            tenant = domain_xml.parse_domain_xml(dom.tp_xml).partition_key
            if partitions is not None and tenant and dom.isActive():
                part = partitions.partitions.get(tenant)
                if part is None or not cpus <= part.cpus:
                    refuse('cannot pin %s to CPUs %s: outside partition of '
                           'tenant %s (%s)' % (
                               dom.name(), sorted(cpus), tenant,
                               sorted(part.cpus) if part else 'missing'))
            dom.tp_xml = fakes.set_pin_in_xml(dom.tp_xml, cpus, vcpu)
            emit(dom._connection, dom, guests.VIR_DOMAIN_EVENT_ID_TUNABLE, {})

        def pinVcpuFlags(dom, vcpu, cpumap, flags):
            pin(dom, fakes.cpus_of_cpumap(cpumap), vcpu)

        def pinEmulator(dom, cpumap, flags):
            pin(dom, fakes.cpus_of_cpumap(cpumap), None)

        def pinIOThread(dom, iothread, cpumap, flags):
            live_change(dom, 'iothread')
            dom.tp_xml = set_iothread_pin_in_xml(
                dom.tp_xml, fakes.cpus_of_cpumap(cpumap), iothread)
            emit(dom._connection, dom, guests.VIR_DOMAIN_EVENT_ID_TUNABLE, {})

        def setMetadata(dom, kind, metadata, key, uri, flags=0):
            live_change(dom, 'metadata')
            dom.tp_xml = fakes.set_metadata_in_xml(dom.tp_xml, metadata, key,
                                                   uri)
            emit(dom._connection, dom,
                 guests.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, kind, uri)

        for name, value in [('__init__', __init__), ('XMLDesc', XMLDesc),
                            ('createWithFlags', createWithFlags),
                            ('pinVcpuFlags', pinVcpuFlags),
                            ('pinEmulator', pinEmulator),
                            ('setMetadata', setMetadata),
                            ('pinIOThread', pinIOThread),
                            ('jobInfo', jobInfo), ('jobStats', jobStats)]:
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.Domain.' + name, value))
        for name, value in [('createXML', createXML),
                            ('domainEventRegisterAny',
                             domainEventRegisterAny),
                            ('_emit_lifecycle', _emit_lifecycle)]:
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.libvirt.Connection.' + name, value))


def set_iothread_pin_in_xml(xml, cpus, iothread):
    """``xml`` with ``<iothreadpin iothread=...>`` set to ``cpus``."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    cputune = root.find('./cputune')
    if cputune is None:
        cputune = etree.SubElement(root, 'cputune')
    elem = cputune.find('./iothreadpin[@iothread="%d"]' % iothread)
    if elem is None:
        elem = etree.SubElement(cputune, 'iothreadpin',
                                iothread=str(iothread))
    elem.set('cpuset', topo.format_cpu_list(cpus))
    return etree.tostring(root, encoding='unicode')


class TenantPinTestBase(libvirt_base.ServersTestBase):
    """Computes with 2 NUMA cells x 4 cores x 2 threads (CPUs 0-15; the
    siblings are 0-1, 2-3, ...). CPUs 0-1 are housekeeping, so tenants
    share 7 cores, 14 threads."""

    microversion = 'latest'
    ADMIN_API = True
    HOST_INFO = dict(cpu_nodes=2, cpu_sockets=1, cpu_cores=4, cpu_threads=2)
    PIN_MODE = 'float'

    def setUp(self):
        # Nova's wheel puts api-paste.ini under <venv>/etc/nova.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc/nova/api-paste.ini'), group='wsgi')
        self.flags(cpu_shared_set='2-15', group='compute')
        self.flags(cpu_allocation_ratio=1.0)
        # Partitions in memory, one set per host (make_partitions below).
        self.flags(pin_mode=self.PIN_MODE, group='tenant_pin')
        self.tp_partitions = {}
        super().setUp()
        self.pinning = self.useFixture(FakeLibvirtPinning())
        test = self

        def make_partitions(driver, host):
            return test._partitions_of(host)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.driver.TenantPinLibvirtDriver.'
            '_tp_make_partitions', make_partitions))
        self.tenants = {}

    def stub_live_migration(self, stub, cleanup=True):
        """Replace fakelibvirt's ``migrateToURI3`` with ``stub`` and, with
        ``cleanup``, make the source clean up (driver.cleanup) as it does
        without shared storage, as in Nova's NUMA live migration tests."""
        if cleanup:
            self.useFixture(fixtures.MonkeyPatch(
                'nova.compute.manager.ComputeManager.'
                '_live_migration_cleanup_flags',
                lambda *args, **kwargs: (True, True)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.tests.fixtures.libvirt.Domain.migrateToURI3', stub))

    def stub_cold_migration(self):
        """As Nova's own libvirt resize tests do: the fake has no disks to
        move (the real ``migrate_disk_and_power_off`` stats the instance's
        disk files and fails), so the source domain is only powered off,
        as the real method does before it copies the disks."""
        self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.driver.LibvirtDriver.'
            'migrate_disk_and_power_off', side_effect=self._power_off_source))

    def _power_off_source(self, context, instance, *args, **kwargs):
        conn = self.computes[instance.host].driver._host.get_connection()
        conn.lookupByUUIDString(instance.uuid).destroy()
        return '{}'

    def _setup_compute_service(self):
        # What an operator writes in nova.conf; Nova's own loader imports it.
        self.flags(compute_driver=DRIVER)

    def _partitions_of(self, host):
        return self.tp_partitions.setdefault(host, fakes.CheckedPartitions())

    def _get_connection(self, host_info=None, pci_info=None, mdev_info=None,
                        vdpa_info=None, libvirt_version=None,
                        qemu_version=None, hostname=None):
        # ServersTestBase's version refuses hosts of 16 CPUs or more (its
        # Host.get_online_cpus mock says 0-15); ours has exactly 0-15.
        return fakelibvirt.Connection(
            'qemu:///system',
            version=libvirt_version or fakelibvirt.FAKE_LIBVIRT_VERSION,
            hv_version=qemu_version or fakelibvirt.FAKE_QEMU_VERSION,
            host_info=host_info or fakelibvirt.HostInfo(**self.HOST_INFO),
            pci_info=pci_info, mdev_info=mdev_info, vdpa_info=vdpa_info,
            hostname=hostname)

    def start_compute(self, hostname='compute1', *args, **kwargs):
        name = super().start_compute(hostname, *args, **kwargs)
        conn = self.computes[name].driver._host.get_connection()
        conn.tp_partitions = self._partitions_of(name)
        mgr = getattr(self.computes[name].driver, 'tenant_pin', None)
        if mgr is not None:
            # From now on every partition write is checked for overlap.
            conn.tp_partitions.topology = mgr.topology
            conn.tp_partitions.domain_source = lambda: [
                (domain_xml.parse_domain_xml(d.tp_xml), bool(d.isActive()))
                for d in list(conn._vms.values())]
        return name

    # -- tenants -----------------------------------------------------------

    def tenant(self, label):
        """An API client for tenant ``label`` (its own project id)."""
        if label not in self.tenants:
            project = uuidutils.generate_uuid(dashed=False)
            client = api_client.TestOpenStackClient(
                'admin', self.api_fixture.base_url, project_id=project,
                roles=['reader', 'member', 'admin'])
            client.microversion = 'latest'
            self.tenants[label] = client
        return self.tenants[label]

    def project(self, label):
        return self.tenant(label).project_id

    def boot(self, label, vcpus, host=None, expected_state='ACTIVE'):
        flavor = self._flavor(vcpus)
        server = self._create_server(
            flavor_id=flavor, networks='none', host=host,
            expected_state=expected_state, api=self.tenant(label))
        if expected_state == 'ACTIVE':
            self.assertInvariants()
        return server

    def _flavor(self, vcpus):
        if not hasattr(self, '_flavors'):
            self._flavors = {}
        if vcpus not in self._flavors:
            self._flavors[vcpus] = self._create_flavor(
                memory_mb=256, vcpu=vcpus, disk=1, ephemeral=0)
        return self._flavors[vcpus]

    def host_of(self, server):
        return self.api.get_server(server['id'])['OS-EXT-SRV-ATTR:host']

    # -- what each compute shows -------------------------------------------

    def manager_of(self, host):
        return self.computes[host].driver.tenant_pin

    def domains_of(self, host, active_only=True):
        conn = self.computes[host].driver._host.get_connection()
        flags = fakelibvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
        if not active_only:
            flags |= fakelibvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE
        return {
            d.UUIDString(): domain_xml.parse_domain_xml(
                d.tp_xml, active=bool(d.isActive()))
            for d in conn.listAllDomains(flags)}

    def server_cores(self, host, server):
        """The cores any thread of the server's domain may run on."""
        topology = self.manager_of(host).topology
        return topology.cores_of(self.domains_of(host)[server['id']].all_cpus(
            topology.online_cpus))

    def partitions_of(self, host):
        return self._partitions_of(host).list_partitions()

    def assertInvariants(self, check_fewest_cores=True):
        for host in self.computes:
            mgr = getattr(self.computes[host].driver, 'tenant_pin', None)
            if mgr is None:
                # A compute running Nova's stock driver: nothing to check.
                continue
            claims = mgr.claims()
            domains = self.domains_of(host, active_only=False)
            # Stopped domains hold room only while they hold a claim (Nova
            # undefines a confirmed resize's source; the fake does not).
            domains = {u: d for u, d in domains.items()
                       if d.active or u in claims}
            errors = invariants.check_host(
                mgr.topology, mgr.housekeeping_cpus, self.partitions_of(host),
                list(domains.values()), ratio=mgr.ratio,
                check_fewest_cores=check_fewest_cores)
            self.assertEqual([], errors, 'invariants broken on %s' % host)
            # And at no write in between did two tenants share a core.
            self.assertEqual([], self.tp_partitions[host].overlaps,
                             'partitions overlapped on %s' % host)
            # Every running domain holds a claim, and no claim is left over
            # without a domain except pending ones.
            self.assertEqual(
                set(domains) - set(mgr.dedicated_instances()),
                {u for u, c in claims.items() if not c.pending},
                'claims and domains differ on %s' % host)
