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

"""Test doubles of libvirt and the cgroup tree that enforce the kernel's rules.

:class:`FakeConnection` keeps each domain's XML as defined and edits it on
``pinVcpuFlags``/``pinEmulator``. Like real libvirt, it refuses to start a
domain whose partition does not exist and a pin outside the partition's
CPUs. :class:`CheckedPartitions` is a
:class:`~nova_tenant_pin.cgroups.MemoryPartitions` that, like cgroup v1,
refuses to shrink a partition below the CPUs its domains are pinned to and
to remove one that still holds a domain. So a manager that changes things
in the wrong order fails these tests.
"""

import itertools
import threading

from lxml import etree

from nova_tenant_pin import cgroups
from nova_tenant_pin import domain_xml as dxml
from nova_tenant_pin import guests
from nova_tenant_pin import topology as topo


class FakeLibvirtError(Exception):
    pass


def cpus_of_cpumap(cpumap):
    return frozenset(i for i, on in enumerate(cpumap) if on)


def set_pin_in_xml(xml, cpus, vcpu=None, iothread=None):
    """Return ``xml`` with ``<vcpupin vcpu=...>`` (``<iothreadpin
    iothread=...>`` with ``iothread``, ``<emulatorpin>`` when both are
    None) set to ``cpus``."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    cputune = root.find('./cputune')
    if cputune is None:
        cputune = etree.SubElement(root, 'cputune')
    if iothread is not None:
        elem = cputune.find('./iothreadpin[@iothread="%d"]' % iothread)
        if elem is None:
            elem = etree.SubElement(cputune, 'iothreadpin',
                                    iothread=str(iothread))
    elif vcpu is None:
        elem = cputune.find('./emulatorpin')
        if elem is None:
            elem = etree.SubElement(cputune, 'emulatorpin')
    else:
        elem = cputune.find('./vcpupin[@vcpu="%d"]' % vcpu)
        if elem is None:
            elem = etree.SubElement(cputune, 'vcpupin', vcpu=str(vcpu))
    elem.set('cpuset', topo.format_cpu_list(cpus))
    return etree.tostring(root, encoding='unicode')


def domain_xml(uuid, vcpus, project=None, partition=None, cpuset=None,
               vcpu_pins=None, emulator=None, name=None, iothreads=1,
               iothread_pins=None):
    """A minimal domain XML in the shape Nova writes (one I/O thread, as
    Nova gives every guest)."""
    root = etree.Element('domain', type='kvm')
    etree.SubElement(root, 'uuid').text = uuid
    etree.SubElement(root, 'name').text = name or 'instance-%s' % uuid[:8]
    vcpu = etree.SubElement(root, 'vcpu')
    vcpu.text = str(vcpus)
    if cpuset:
        vcpu.set('cpuset', topo.format_cpu_list(cpuset))
    if iothreads:
        etree.SubElement(root, 'iothreads').text = str(iothreads)
    if project is not None:
        meta = etree.SubElement(root, 'metadata')
        inst = etree.SubElement(meta, '{%s}instance' % dxml.NOVA_NS,
                                nsmap={'nova': dxml.NOVA_NS})
        owner = etree.SubElement(inst, '{%s}owner' % dxml.NOVA_NS)
        etree.SubElement(owner, '{%s}project' % dxml.NOVA_NS,
                         uuid=project).text = 'name-%s' % project
    if partition:
        res = etree.SubElement(root, 'resource')
        etree.SubElement(res, 'partition').text = partition
    if vcpu_pins or emulator or iothread_pins:
        cputune = etree.SubElement(root, 'cputune')
        for v, cpus in sorted((vcpu_pins or {}).items()):
            etree.SubElement(cputune, 'vcpupin', vcpu=str(v),
                             cpuset=topo.format_cpu_list(cpus))
        if emulator:
            etree.SubElement(cputune, 'emulatorpin',
                             cpuset=topo.format_cpu_list(emulator))
        for i, cpus in sorted((iothread_pins or {}).items()):
            etree.SubElement(cputune, 'iothreadpin', iothread=str(i),
                             cpuset=topo.format_cpu_list(cpus))
    return etree.tostring(root, encoding='unicode')


class FakeDomain:
    """A domain; ``job`` is libvirt's ``jobStats()`` while a job (a live
    migration) holds it: then every change fails, as libvirt's does once
    it gives up waiting for the job's state change lock."""

    def __init__(self, conn, xml, active=True, persistent=True):
        self._conn = conn
        self._id = -1
        self._xml = xml
        self._active = False
        self.persistent = persistent
        self.info = dxml.parse_domain_xml(xml)
        self.job = None
        self.active = active

    # Like libvirt, every change of a domain's XML or state is an event
    # (a lifecycle, tunable or metadata event), whoever made it; a start
    # gives the domain a new ID.

    @property
    def xml(self):
        return self._xml

    @xml.setter
    def xml(self, xml):
        self._xml = xml
        self._conn.emit(self, guests.VIR_DOMAIN_EVENT_ID_TUNABLE)

    @property
    def active(self):
        return self._active

    @active.setter
    def active(self, active):
        if active and not self._active:
            self._id = self._conn.next_id()
        elif not active:
            self._id = -1
        self._active = active
        self._conn.emit(self)

    def ID(self):
        return self._id

    def jobStats(self, flags=0):
        if not self.active:
            raise FakeLibvirtError('Requested operation is not valid: '
                                   'domain is not running')
        return dict(self.job or {'type': 0})

    def _change(self, name):
        self._conn.fault_point(name)
        if self.job is not None:
            raise FakeLibvirtError(
                'Timed out during operation: cannot acquire state change '
                'lock (held by monitor=remoteDispatchDomainMigratePrepare3'
                'Params)')

    def XMLDesc(self, flags=0):
        self._conn.xml_desc_calls += 1
        return self.xml

    def UUIDString(self):
        return self.info.uuid

    def name(self):
        return self.info.name

    def isActive(self):
        return int(self.active)

    def isPersistent(self):
        return int(self.persistent)

    def _check_inside(self, cpus):
        tenant = self.info.partition_key
        if tenant is None or not self.active:
            return
        part = self._conn.partitions.partitions.get(tenant)
        if part is None or not cpus <= part.cpus:
            raise FakeLibvirtError(
                'pin of %s to %s outside partition %s (%s)' % (
                    self.info.uuid, sorted(cpus), tenant,
                    sorted(part.cpus) if part else 'missing'))

    def pinVcpuFlags(self, vcpu, cpumap, flags):
        self._change('pinVcpuFlags')
        cpus = cpus_of_cpumap(cpumap)
        self._check_inside(cpus)
        self.xml = set_pin_in_xml(self.xml, cpus, vcpu)
        self.info = dxml.parse_domain_xml(self.xml)
        self._conn.pin_calls.append((self.info.uuid, vcpu, cpus))

    def pinEmulator(self, cpumap, flags):
        self._change('pinEmulator')
        cpus = cpus_of_cpumap(cpumap)
        self._check_inside(cpus)
        self.xml = set_pin_in_xml(self.xml, cpus)
        self.info = dxml.parse_domain_xml(self.xml)
        self._conn.pin_calls.append((self.info.uuid, 'emulator', cpus))

    def pinIOThread(self, iothread, cpumap, flags):
        self._change('pinIOThread')
        if iothread not in self.info.iothread_ids:
            raise FakeLibvirtError('Requested operation is not valid: '
                                   'cannot find IOThread \'%d\' in '
                                   'iothreadpids' % iothread)
        cpus = cpus_of_cpumap(cpumap)
        self._check_inside(cpus)
        self.xml = set_pin_in_xml(self.xml, cpus, iothread=iothread)
        self.info = dxml.parse_domain_xml(self.xml)
        self._conn.pin_calls.append((self.info.uuid, 'iothread%d' % iothread,
                                     cpus))

    def setMetadata(self, kind, metadata, key, uri, flags=0):
        self._change('setMetadata')
        self._xml = set_metadata_in_xml(self.xml, metadata, key, uri)
        self.info = dxml.parse_domain_xml(self.xml)
        self._conn.emit(self, guests.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE)


def set_metadata_in_xml(xml, metadata, key, uri):
    """Return ``xml`` with the metadata element of namespace ``uri`` set
    to ``metadata`` (removed when None), as libvirt's setMetadata does."""
    root = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    dxml.set_metadata_element(root, metadata, key, uri)
    return etree.tostring(root, encoding='unicode')


class FakeConnection:
    """Enough of virConnect for the manager, with the kernel's checks."""

    def __init__(self, partitions):
        self.partitions = partitions
        self.domains = {}
        self.pin_calls = []
        self.faults = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        #: ``domainEventRegisterAny`` callbacks; None: this connection
        #: does not deliver events (as without an event loop).
        self.callbacks = []
        #: XMLDesc calls, on every domain.
        self.xml_desc_calls = 0

    def next_id(self):
        return next(self._ids)

    def domainEventRegisterAny(self, dom, event, callback, opaque):
        if self.callbacks is None:
            raise FakeLibvirtError('no event loop')
        self.callbacks.append((event, callback, opaque))
        return len(self.callbacks)

    def emit(self, dom, event=guests.VIR_DOMAIN_EVENT_ID_LIFECYCLE):
        """Deliver a domain event (a lifecycle event, by default)."""
        for registered, callback, opaque in self.callbacks or ():
            if registered == event:
                callback(self, dom, 0, 0, opaque)

    def fault_point(self, name):
        if self.faults is not None:
            self.faults(name)

    def start(self, xml):
        """Define and start a domain, checking what libvirt checks."""
        info = dxml.parse_domain_xml(xml)
        if info.partition_key is not None:
            part = self.partitions.partitions.get(info.partition_key)
            if part is None:
                raise FakeLibvirtError('partition %s does not exist'
                                       % info.partition)
            if not info.all_cpus(frozenset()) <= part.cpus:
                raise FakeLibvirtError('domain %s pinned outside partition'
                                       % info.uuid)
        dom = FakeDomain(self, xml)
        with self._lock:
            self.domains[info.uuid] = dom
        self.partitions.add_task(info.partition_key, info.uuid)
        return dom

    def remove(self, uuid):
        with self._lock:
            dom = self.domains.pop(uuid)
        self.partitions.remove_task(dom.info.partition_key, uuid)
        self.emit(dom)

    def listAllDomains(self, flags=0):
        with self._lock:
            doms = list(self.domains.values())
        result = []
        for dom in doms:
            if dom.active and flags & guests.VIR_CONNECT_LIST_DOMAINS_ACTIVE:
                result.append(dom)
            elif not dom.active and \
                    flags & guests.VIR_CONNECT_LIST_DOMAINS_INACTIVE:
                result.append(dom)
        return result

    def lookupByUUIDString(self, uuid):
        return self.domains[uuid]


class CheckedPartitions(cgroups.MemoryPartitions):
    """MemoryPartitions with cgroup v1's refusals, and fault injection.

    With ``topology`` set, every write is followed by a check that no two
    tenants' partitions share a physical core (invariant 1 at every
    instant, not only between operations); breaches are kept in
    ``overlaps`` for the test to assert on.
    """

    def __init__(self, topology=None):
        super().__init__()
        self.connection = None
        self.faults = None
        self.topology = topology
        self.overlaps = []
        # A callable returning ``[(DomainInfo, active)]`` of the host's
        # domains, when they are not in ``connection`` (Nova's fake
        # libvirt in the functional tests).
        self.domain_source = None

    def _domains(self):
        if self.domain_source is not None:
            return self.domain_source()
        if self.connection is None:
            return []
        return [(dom.info, dom.active)
                for dom in list(self.connection.domains.values())]

    def _shared_cores(self):
        if self.topology is None:
            return set()
        # A partition that holds domains of another key (their key changed
        # while they ran) holds their cores for them; its own are only those
        # its own key's domains use (see invariants.check_host).
        hosting, own, keyed = set(), {}, []
        for info, active in self._domains():
            part = self.partitions.get(info.partition_key)
            if part is None:
                continue
            cpus = info.all_cpus(self.topology.online_cpus) & part.cpus
            if info.isolation_key != info.partition_key:
                hosting.add(info.partition_key)
                if active:
                    keyed.append((info.isolation_key, cpus))
            else:
                own.setdefault(info.partition_key, set()).update(cpus)
        owners = {}
        for tenant, info in self.partitions.items():
            cpus = own.get(tenant, set()) if tenant in hosting else info.cpus
            for core in self.topology.cores_of(cpus):
                owners.setdefault(core, set()).add(tenant)
        for key, cpus in keyed:
            for core in self.topology.cores_of(cpus):
                owners.setdefault(core, set()).add(key)
        # Each pair of keys on one core, so that a sharing already there
        # before a write is not blamed on it when a third key leaves.
        return {(core.cpus, pair) for core, tenants in owners.items()
                for pair in itertools.combinations(sorted(tenants), 2)}

    def _write(self, what, write):
        """Do ``write``; record any two keys it made share a core that
        shared none before (keys that already shared, because a test set it
        up or because they trusted each other until a settings change, may
        go on sharing while they are moved apart)."""
        before = {pair for _cpus, pair in self._shared_cores()}
        write()
        for cpus, tenants in sorted(self._shared_cores()):
            if tenants not in before:
                self.overlaps.append('after %s: tenants %s share core %s'
                                     % (what, ' and '.join(tenants),
                                        list(cpus)))

    def _fault(self, name):
        if self.faults is not None:
            self.faults(name)

    def add_task(self, tenant, uuid):
        if tenant is None:
            return
        info = self.partitions[tenant]
        self.partitions[tenant] = cgroups.dataclasses.replace(
            info, tasks=info.tasks | {uuid})

    def remove_task(self, tenant, uuid):
        if tenant is None or tenant not in self.partitions:
            return
        info = self.partitions[tenant]
        self.partitions[tenant] = cgroups.dataclasses.replace(
            info, tasks=info.tasks - {uuid})

    def ensure_partition(self, tenant, cpus, mems):
        self._fault('ensure_partition')
        self._write('ensure_partition(%s)' % tenant,
                    lambda: super(CheckedPartitions, self).ensure_partition(
                        tenant, cpus, mems))

    def set_partition_cpus(self, tenant, cpus):
        self._fault('set_partition_cpus')
        cpus = frozenset(cpus)
        if self.connection is not None:
            for dom in self.connection.domains.values():
                if dom.info.partition_key == tenant and dom.active:
                    used = dom.info.all_cpus(frozenset())
                    if not used <= cpus:
                        raise cgroups.PartitionError(
                            'EBUSY: domain %s uses CPUs %s outside the new '
                            'cpuset %s of tenant %s' % (
                                dom.info.uuid, sorted(used), sorted(cpus),
                                tenant))
        self._write('set_partition_cpus(%s)' % tenant,
                    lambda: super(CheckedPartitions, self).set_partition_cpus(
                        tenant, cpus))

    def remove_partition(self, tenant):
        self._fault('remove_partition')
        super().remove_partition(tenant)
