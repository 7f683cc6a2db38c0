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

"""The libvirt domain XML as this project reads and writes it.

Pure: text in, text or data out; no libvirt, no Nova. A domain's threads
run where its XML says, as libvirt applies it:

- vCPU ``n``: its ``<vcpupin vcpu="n">``, else ``<vcpu cpuset>``, else any
  host CPU;
- the emulator thread: ``<emulatorpin>``, else ``<vcpu cpuset>``, else any;
- I/O thread ``i`` (``<iothreads>``, ``<iothreadids>``): its
  ``<iothreadpin iothread="i">``, else ``<vcpu cpuset>``, else any (libvirt
  gives an unpinned I/O thread the domain's default CPU mask, not the
  emulator's pin);

and all of them inside the CPUs of the cgroup partition named by
``<resource><partition>``. :class:`DomainInfo` is that reading;
:func:`confine_domain_xml` and :func:`migration_source_xml` are the two
rewrites the driver makes of the XML Nova writes.
"""

import dataclasses
import functools

from lxml import etree

from nova_tenant_pin import topology as topo

NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
PARTITION_PREFIX = '/machine/tenant-'

#: The namespace of the element this project keeps in each domain's
#: ``<metadata>``: the instance's isolation key, pin mode and ratio, so that
#: a restart (and the CLI, which has no Nova database) knows them even for
#: a domain that runs outside its key's partition.
TP_NS = 'http://openstack.org/xmlns/nova-tenant-pin/1.0'
TP_PREFIX = 'tenantpin'

#: The pin tags Nova may write for its own CPU sets; the rewrites below
#: replace all of them.
PIN_TAGS = ('vcpupin', 'emulatorpin', 'iothreadpin')


@dataclasses.dataclass
class DomainInfo:
    """What the manager reads from one libvirt domain's XML."""

    uuid: str
    name: str
    active: bool
    persistent: bool
    vcpus: int
    project_id: str = None
    partition: str = None
    vcpu_cpuset: frozenset = None
    vcpu_pins: dict = dataclasses.field(default_factory=dict)
    emulator_pins: frozenset = None
    key: str = None
    pin_mode: str = None
    ratio: float = None
    isolation: str = None
    #: The ids of the domain's I/O threads (``<iothreads>`` numbers them
    #: from 1; ``<iothreadids>`` may name them).
    iothread_ids: tuple = ()
    iothread_pins: dict = dataclasses.field(default_factory=dict)

    @property
    def isolation_key(self):
        """The key the domain is isolated on: what its metadata records,
        else the key whose partition holds it, else None."""
        return self.key or self.partition_key

    @property
    def confinement(self):
        """``partition``: in its own key's partition; ``pins``: confined
        by its pins only (adopted, or its key changed since it started),
        until its next hard reboot; ``none``: not known to tenant-pin."""
        if self.partition_key is not None and \
                self.partition_key == self.isolation_key:
            return 'partition'
        if self.isolation_key is not None:
            return 'pins'
        return 'none'

    @functools.cached_property
    def partition_key(self):
        """The isolation key whose partition holds the domain, or None
        (kept: a domain's partition never changes while it exists)."""
        if self.partition and self.partition.startswith(PARTITION_PREFIX):
            return self.partition[len(PARTITION_PREFIX):]
        return None

    def effective_vcpu_cpus(self, vcpu, all_cpus):
        """The CPUs vCPU ``vcpu`` may run on, as libvirt applies the XML."""
        if vcpu in self.vcpu_pins:
            return self.vcpu_pins[vcpu]
        if self.vcpu_cpuset is not None:
            return self.vcpu_cpuset
        return frozenset(all_cpus)

    def effective_emulator_cpus(self, all_cpus):
        """The CPUs the emulator thread may run on."""
        if self.emulator_pins is not None:
            return self.emulator_pins
        if self.vcpu_cpuset is not None:
            return self.vcpu_cpuset
        return frozenset(all_cpus)

    def effective_iothread_cpus(self, iothread, all_cpus):
        """The CPUs I/O thread ``iothread`` may run on."""
        if iothread in self.iothread_pins:
            return self.iothread_pins[iothread]
        if self.vcpu_cpuset is not None:
            return self.vcpu_cpuset
        return frozenset(all_cpus)

    def thread_cpus(self, all_cpus):
        """``{thread: cpus}`` of every QEMU thread of the domain: ``('vcpu',
        n)``, ``('emulator', None)``, ``('iothread', i)``."""
        threads = {('emulator', None): self.effective_emulator_cpus(all_cpus)}
        for vcpu in range(self.vcpus):
            threads[('vcpu', vcpu)] = self.effective_vcpu_cpus(vcpu, all_cpus)
        for iothread in self.iothread_ids:
            threads[('iothread', iothread)] = self.effective_iothread_cpus(
                iothread, all_cpus)
        return threads

    def all_cpus(self, host_cpus):
        """Every CPU that any thread of the domain (vCPU, emulator, I/O)
        may run on."""
        return frozenset().union(*self.thread_cpus(host_cpus).values())

    @property
    def dedicated(self):
        """Looks like a domain Nova pinned itself (``hw:cpu_policy=
        dedicated``): in no tenant partition, every vCPU pinned to one CPU."""
        return (self.partition_key is None and self.vcpus > 0 and
                len(self.vcpu_pins) == self.vcpus and
                all(len(c) == 1 for c in self.vcpu_pins.values()))


def copy_info(info):
    """A copy of a :class:`DomainInfo` that can be changed without
    changing ``info`` (its pin maps are copied; their CPU sets are
    frozen)."""
    return dataclasses.replace(info, vcpu_pins=dict(info.vcpu_pins),
                               iothread_pins=dict(info.iothread_pins))


def _root(xml):
    return etree.fromstring(xml.encode() if isinstance(xml, str) else xml)


def _iothread_ids(root):
    ids = [int(e.get('id')) for e in root.findall('./iothreadids/iothread')
           if e.get('id')]
    text = root.findtext('./iothreads')
    count = int(text.strip()) if text and text.strip() else 0
    # <iothreadids> names some (or all) of them; the rest are numbered
    # from 1, skipping the named ids, as libvirt does.
    candidate = 1
    while len(ids) < count:
        if candidate not in ids:
            ids.append(candidate)
        candidate += 1
    return tuple(sorted(ids))


def parse_domain_xml(xml, active=True, persistent=True):
    """Read a libvirt domain XML into a :class:`DomainInfo`."""
    root = _root(xml)
    vcpu = root.find('./vcpu')
    vcpus = int(vcpu.text.strip()) if vcpu is not None and vcpu.text else 0
    cpuset = vcpu.get('cpuset') if vcpu is not None else None
    project = root.find('./metadata/{%s}instance/{%s}owner/{%s}project'
                        % (NOVA_NS, NOVA_NS, NOVA_NS))
    partition = root.findtext('./resource/partition')
    pins = {}
    for pin in root.findall('./cputune/vcpupin'):
        pins[int(pin.get('vcpu'))] = frozenset(
            topo.parse_cpu_list(pin.get('cpuset')))
    iothread_pins = {}
    for pin in root.findall('./cputune/iothreadpin'):
        iothread_pins[int(pin.get('iothread'))] = frozenset(
            topo.parse_cpu_list(pin.get('cpuset')))
    emulator = root.find('./cputune/emulatorpin')
    meta = root.find('./metadata/{%s}instance' % TP_NS)
    ratio = None
    if meta is not None and meta.get('ratio'):
        try:
            ratio = float(meta.get('ratio'))
        except ValueError:
            ratio = None
    return DomainInfo(
        uuid=root.findtext('./uuid').strip(),
        name=root.findtext('./name').strip(),
        active=active, persistent=persistent, vcpus=vcpus,
        project_id=(project.get('uuid') or None) if project is not None
        else None,
        partition=partition.strip() if partition else None,
        vcpu_cpuset=(frozenset(topo.parse_cpu_list(cpuset))
                     if cpuset else None),
        vcpu_pins=pins,
        emulator_pins=(frozenset(topo.parse_cpu_list(emulator.get('cpuset')))
                       if emulator is not None else None),
        key=meta.get('key') or None if meta is not None else None,
        pin_mode=meta.get('pin_mode') or None if meta is not None else None,
        ratio=ratio,
        isolation=meta.get('isolation') or None if meta is not None
        else None,
        iothread_ids=_iothread_ids(root),
        iothread_pins=iothread_pins)


def metadata_xml(key, pin_mode, ratio, isolation=None):
    """The tenant-pin metadata element of a domain (namespace
    :data:`TP_NS`), as ``virDomain.setMetadata`` takes it.

    ``isolation`` is what the flavor or image asked for (``required`` or
    ``none``), None when they left it to the host: with it, the key can be
    worked out again when the per-project settings change.
    """
    elem = etree.Element('instance', key=key, pin_mode=pin_mode,
                         ratio=repr(float(ratio)))
    if isolation:
        elem.set('isolation', isolation)
    return etree.tostring(elem, encoding='unicode')


def read_metadata(metadata):
    """``(key, pin_mode, ratio, isolation)`` of a :func:`metadata_xml`
    element."""
    elem = etree.fromstring(metadata)
    return (elem.get('key'), elem.get('pin_mode'), float(elem.get('ratio')),
            elem.get('isolation'))


def set_metadata_element(root, metadata, key=TP_PREFIX, uri=TP_NS):
    """Set, in a domain XML tree, the ``<metadata>`` element of namespace
    ``uri`` to the element ``metadata`` (an XML string; removed when None),
    as ``virDomain.setMetadata`` does with prefix ``key``."""
    meta = root.find('./metadata')
    if meta is None:
        meta = etree.SubElement(root, 'metadata')
    for old in list(meta):
        if etree.QName(old).namespace == uri:
            meta.remove(old)
    if metadata is not None:
        elem = etree.fromstring(metadata)
        new = etree.SubElement(meta, '{%s}%s' % (uri, elem.tag),
                               nsmap={key: uri})
        for name, value in elem.attrib.items():
            new.set(name, value)


def _drop_pins(root):
    cputune = root.find('./cputune')
    if cputune is not None:
        for tag in PIN_TAGS:
            for old in cputune.findall('./' + tag):
                cputune.remove(old)
    return cputune


def confine_domain_xml(xml, pins, project_id, project_name=None,
                       metadata=None, in_partition=True):
    """Rewrite Nova's domain XML to run in the key's partition.

    ``pins`` is the instance's :class:`~nova_tenant_pin.manager.
    InstancePins`. Sets ``<resource><partition>``, ``<vcpu cpuset>`` (which
    unpinned vCPU, emulator and I/O threads follow), and replaces any
    ``<vcpupin>``/``<emulatorpin>``/``<iothreadpin>`` Nova wrote for its
    shared CPU set with the key's: per-vCPU pins, the emulator and the I/O
    threads in strict mode, nothing more in float mode. Makes sure the
    owner project is in the metadata, which the manager reads back after a
    restart, and with it ``metadata`` (:func:`metadata_xml`: the
    instance's isolation key, pin mode and ratio). Without
    ``in_partition`` the domain names no tenant partition: its CPUs
    confine it (an instance whose tenant does not fit on whole cores).
    """
    root = _root(xml)
    vcpu = root.find('./vcpu')
    vcpu.set('cpuset', topo.format_cpu_list(pins.cpus))
    resource = root.find('./resource')
    if resource is None:
        resource = etree.Element('resource')
        # libvirt's schema puts <resource> after <vcpu>/<cputune>; any
        # position parses, so keep it near <vcpu> for readers.
        vcpu.addnext(resource)
    for old in resource.findall('./partition'):
        resource.remove(old)
    if in_partition:
        etree.SubElement(resource, 'partition').text = pins.partition
    elif len(resource) == 0:
        root.remove(resource)
        resource = vcpu  # <cputune> goes right after <vcpu>
    cputune = _drop_pins(root)
    if pins.vcpu_pins:
        if cputune is None:
            cputune = etree.Element('cputune')
            resource.addnext(cputune)
        for vcpu_id, cpus in sorted(pins.vcpu_pins.items()):
            etree.SubElement(cputune, 'vcpupin', vcpu=str(vcpu_id),
                             cpuset=topo.format_cpu_list(cpus))
        etree.SubElement(cputune, 'emulatorpin',
                         cpuset=topo.format_cpu_list(pins.cpus))
        for iothread in _iothread_ids(root):
            etree.SubElement(cputune, 'iothreadpin', iothread=str(iothread),
                             cpuset=topo.format_cpu_list(pins.cpus))
    elif cputune is not None and len(cputune) == 0:
        root.remove(cputune)
    _ensure_owner_project(root, project_id, project_name)
    if metadata is not None:
        set_metadata_element(root, metadata)
    return etree.tostring(root, encoding='unicode')


def _ensure_owner_project(root, project_id, project_name):
    nova_instance = root.find('./metadata/{%s}instance' % NOVA_NS)
    if nova_instance is None:
        metadata = root.find('./metadata')
        if metadata is None:
            metadata = etree.SubElement(root, 'metadata')
        nova_instance = etree.SubElement(
            metadata, '{%s}instance' % NOVA_NS, nsmap={'nova': NOVA_NS})
    owner = nova_instance.find('./{%s}owner' % NOVA_NS)
    if owner is None:
        owner = etree.SubElement(nova_instance, '{%s}owner' % NOVA_NS)
    project = owner.find('./{%s}project' % NOVA_NS)
    if project is None:
        project = etree.SubElement(owner, '{%s}project' % NOVA_NS)
        project.text = project_name or project_id
    project.set('uuid', project_id)


def migration_source_xml(xml, to_isolated_target, partition=None):
    """The source domain XML that Nova turns into the target's XML.

    The source's per-vCPU, emulator and I/O thread pins mean nothing on the
    target (and a pin outside the target partition would make the target
    QEMU fail to start), so they go; Nova then sets ``<vcpu cpuset>`` from
    the target's ``dst_cpu_shared_set_info``, which every thread follows
    until the target re-pins it. When the target runs this driver the
    domain goes to ``partition``, the partition of the instance's present
    isolation key, which the target created in its check (the domain may
    still live in the partition of a key it had before the per-project
    settings changed); the partition goes when an unisolated target was
    allowed.
    """
    root = _root(xml)
    _drop_pins(root)
    if to_isolated_target and partition is not None:
        resource = root.find('./resource')
        if resource is None:
            resource = etree.SubElement(root, 'resource')
        for part in resource.findall('./partition'):
            resource.remove(part)
        etree.SubElement(resource, 'partition').text = partition
    if not to_isolated_target:
        # Released on arrival: nothing of tenant-pin goes with it.
        set_metadata_element(root, None)
        resource = root.find('./resource')
        if resource is not None:
            for part in resource.findall('./partition'):
                if (part.text or '').startswith(PARTITION_PREFIX):
                    resource.remove(part)
            if len(resource) == 0:
                root.remove(resource)
    return etree.tostring(root, encoding='unicode')
