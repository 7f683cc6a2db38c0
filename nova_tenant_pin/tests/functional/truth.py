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

"""An independent reader of what the kernel would enforce.

It reads each compute's domain XMLs (as libvirt returns them) and each
partition's CPUs (the host's cgroup tree), with its own XML parsing, and
none of the manager's state: where may every thread of every running
guest run (vCPU, emulator and I/O threads, each confined by its pin, else
by ``<vcpu cpuset>``, and by its partition), and does any core serve two
isolation keys? It also checks what Nova says against what the hosts
hold: every ACTIVE server runs on its host, and no claim or partition is
left for an instance that is neither there nor migrating.
"""

import collections

from lxml import etree
from nova.tests.fixtures import libvirt as fakelibvirt

# The XML vocabulary only; nothing of the manager's state.
from nova_tenant_pin.domain_xml import NOVA_NS
from nova_tenant_pin.domain_xml import PARTITION_PREFIX as PREFIX
from nova_tenant_pin.domain_xml import TP_NS


def _cpus(spec, host_cpus):
    if spec is None:
        return frozenset(host_cpus)
    cpus = set()
    for part in spec.split(','):
        part = part.strip()
        if not part:
            continue
        if part.startswith('^'):
            cpus.discard(int(part[1:]))
        elif '-' in part:
            lo, hi = part.split('-')
            cpus.update(range(int(lo), int(hi) + 1))
        else:
            cpus.add(int(part))
    return frozenset(cpus)


class Guest:
    """One domain's threads and where each may run, from its XML."""

    def __init__(self, xml, host_cpus):
        root = etree.fromstring(xml.encode() if isinstance(xml, str)
                                else xml)
        self.uuid = root.findtext('./uuid').strip()
        vcpu = root.find('./vcpu')
        self.vcpus = int(vcpu.text.strip())
        default = _cpus(vcpu.get('cpuset'), host_cpus)
        partition = (root.findtext('./resource/partition') or '').strip()
        self.partition = partition[len(PREFIX):] \
            if partition.startswith(PREFIX) else None
        meta = root.find('./metadata/{%s}instance' % TP_NS)
        owner = root.find('./metadata/{%s}instance/{%s}owner/{%s}project'
                          % (NOVA_NS, NOVA_NS, NOVA_NS))
        # A guest nothing names a key for shares with nobody.
        self.key = (meta.get('key') if meta is not None else None) or \
            self.partition or (owner.get('uuid') if owner is not None
                               else None) or 'unknown-%s' % self.uuid
        pins = {int(p.get('vcpu')): _cpus(p.get('cpuset'), host_cpus)
                for p in root.findall('./cputune/vcpupin')}
        emulator = root.find('./cputune/emulatorpin')
        iothreads = int(root.findtext('./iothreads') or 0)
        iopins = {int(p.get('iothread')): _cpus(p.get('cpuset'), host_cpus)
                  for p in root.findall('./cputune/iothreadpin')}
        self.threads = {}
        for v in range(self.vcpus):
            self.threads['vcpu%d' % v] = pins.get(v, default)
        self.threads['emulator'] = _cpus(emulator.get('cpuset'), host_cpus) \
            if emulator is not None else default
        for i in range(1, iothreads + 1):
            self.threads['iothread%d' % i] = iopins.get(i, default)

    def reach(self, partitions):
        """``{thread: cpus}`` each thread may run on, its partition's
        CPUs applied."""
        part = partitions.get(self.partition) if self.partition else None
        if part is None:
            return dict(self.threads)
        return {t: c & part for t, c in self.threads.items()}


def host_guests(driver, active_only=True):
    conn = driver._host.get_connection()
    flags = fakelibvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
    if not active_only:
        flags |= fakelibvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE
    host_cpus = driver.tenant_pin.topology.online_cpus
    return {d.UUIDString(): (Guest(d.XMLDesc(0), host_cpus),
                             bool(d.isActive()))
            for d in conn.listAllDomains(flags)}


def core_violations(host, driver, partitions):
    """Cores any thread of two isolation keys may run on, as messages."""
    topology = driver.tenant_pin.topology
    cpus = {t: frozenset(p.cpus) for t, p in partitions.items()}
    owners = collections.defaultdict(set)
    for uuid, (guest, active) in host_guests(driver).items():
        for thread, reach in guest.reach(cpus).items():
            for core in topology.cores_of(reach):
                owners[core].add((guest.key, uuid, thread))
    errors = []
    for core, who in sorted(owners.items()):
        keys = {k for k, u, t in who}
        if len(keys) > 1:
            errors.append('%s: core %s reachable by keys %s (%s)' % (
                host, getattr(core, 'id', core), sorted(keys), sorted(
                    '%s/%s' % (u[:8], t) for k, u, t in who)))
    return errors
