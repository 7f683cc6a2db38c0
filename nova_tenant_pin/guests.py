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

"""The libvirt adapter: the one place that reads and changes domains.

It speaks to a connection object (the libvirt module's ``virConnect``, or
a test double exposing ``listAllDomains`` and, on domains, ``XMLDesc``,
``isActive``, ``isPersistent``, ``jobStats``, ``pinVcpuFlags``,
``pinEmulator``, ``pinIOThread`` and ``setMetadata``) and imports neither
libvirt nor Nova: libvirt's constants it needs are copied here (their
values are part of libvirt's stable ABI).

:meth:`Guests.read` is the only way the manager reads domains, so a cache
of domain readings has one place to live.
"""

import dataclasses

from nova_tenant_pin import domain_xml

VIR_DOMAIN_AFFECT_LIVE = 1
VIR_DOMAIN_AFFECT_CONFIG = 2
VIR_CONNECT_LIST_DOMAINS_ACTIVE = 1
VIR_CONNECT_LIST_DOMAINS_INACTIVE = 2
VIR_DOMAIN_METADATA_ELEMENT = 2
#: ``jobStats()['type']``: a job that is running (bounded or not).
VIR_DOMAIN_JOB_BOUNDED = 1
VIR_DOMAIN_JOB_UNBOUNDED = 2
VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN = 4
VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT = 5

#: What :attr:`Guest.job` says about a domain with a job in progress.
JOB_MIGRATION_IN = 'incoming migration'
JOB_MIGRATION_OUT = 'outgoing migration'
JOB_OTHER = 'job'


@dataclasses.dataclass
class Guest:
    """One domain as read now: the libvirt object, its XML reading and
    the job libvirt runs on it (None when none).

    A domain with a job in progress (a live migration, above all) must not
    be pinned or have its metadata set: libvirt waits for the job's state
    change lock (about 30 s) and then fails.
    """

    dom: object
    info: domain_xml.DomainInfo
    job: str = None

    @property
    def busy(self):
        return self.job is not None


def job_of(dom):
    """The job libvirt runs on a running domain, or None."""
    try:
        stats = dom.jobStats(0)
    except Exception:
        # A domain going away, or a libvirt without job statistics: what
        # matters is whether a job holds it, and the job info says that.
        try:
            kind = dom.jobInfo()[0]
        except Exception:
            return None
        stats = {'type': kind}
    if stats.get('type') not in (VIR_DOMAIN_JOB_BOUNDED,
                                 VIR_DOMAIN_JOB_UNBOUNDED):
        return None
    return {VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN: JOB_MIGRATION_IN,
            VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT: JOB_MIGRATION_OUT}.get(
                stats.get('operation'), JOB_OTHER)


class Guests:
    """The host's domains, read from and written to libvirt.

    :param get_connection: callable returning the libvirt connection.
    :param host_cpus: the host's online CPUs (the length of a CPU map).
    """

    def __init__(self, get_connection, host_cpus):
        self._get_connection = get_connection
        self._cpumap_len = max(host_cpus, default=-1) + 1
        # {(domain XML, active, persistent): DomainInfo} of the last read:
        # a domain that has not changed since is not parsed again.
        self._parsed = {}
        #: What the last read with ``jobs`` found: each domain's XML, state
        #: and job. Equal from one read to the next when no domain changed.
        self.state = frozenset()

    def read(self, jobs=True):
        """``{uuid: Guest}`` of every domain on the host, running or not.

        :param jobs: also ask libvirt which running domains have a job in
            progress.

        A domain whose XML and state are what they were at the last read
        is not parsed again: its DomainInfo is the one parsed then, shared
        by every read until the domain changes, so callers must not change
        it (:func:`domain_xml.copy_info` gives a copy that they may).
        """
        conn = self._get_connection()
        result = {}
        parsed = {}
        seen = []
        flags = (VIR_CONNECT_LIST_DOMAINS_ACTIVE |
                 VIR_CONNECT_LIST_DOMAINS_INACTIVE)
        for dom in conn.listAllDomains(flags):
            state = (dom.XMLDesc(0), bool(dom.isActive()),
                     bool(dom.isPersistent()))
            info = self._parsed.get(state)
            if info is None:
                info = self._parse_domain(*state)
            parsed[state] = info
            job = job_of(dom) if jobs and state[1] else None
            result[info.uuid] = Guest(dom, info, job)
            seen.append((state, job))
        self._parsed = parsed
        if jobs:
            self.state = frozenset(seen)
        return result

    @staticmethod
    def _parse_domain(xml, active, persistent):
        return domain_xml.parse_domain_xml(xml, active=active,
                                           persistent=persistent)

    @staticmethod
    def flags(info):
        """The flags of a change to a domain: live when it runs, in its
        persistent definition when it has one."""
        flags = 0
        if info.active:
            flags |= VIR_DOMAIN_AFFECT_LIVE
        if info.persistent:
            flags |= VIR_DOMAIN_AFFECT_CONFIG
        return flags

    def cpumap(self, cpus):
        return tuple(cpu in cpus for cpu in range(self._cpumap_len))

    def pin_vcpu(self, guest, vcpu, cpus):
        guest.dom.pinVcpuFlags(vcpu, self.cpumap(cpus),
                               self.flags(guest.info))

    def pin_emulator(self, guest, cpus):
        guest.dom.pinEmulator(self.cpumap(cpus), self.flags(guest.info))

    def pin_iothread(self, guest, iothread, cpus):
        guest.dom.pinIOThread(iothread, self.cpumap(cpus),
                              self.flags(guest.info))

    def set_metadata(self, guest, metadata):
        """Set (or, with None, drop) the domain's tenant-pin metadata."""
        guest.dom.setMetadata(
            VIR_DOMAIN_METADATA_ELEMENT, metadata,
            domain_xml.TP_PREFIX if metadata is not None else None,
            domain_xml.TP_NS, self.flags(guest.info))
