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

import collections
import dataclasses
import time

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
VIR_DOMAIN_EVENT_ID_LIFECYCLE = 0
VIR_DOMAIN_EVENT_ID_TUNABLE = 17
VIR_DOMAIN_EVENT_ID_JOB_COMPLETED = 21
VIR_DOMAIN_EVENT_ID_METADATA_CHANGE = 23

# In Guests' marks: every domain changed.
_ALL = object()

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


class _Reading:
    """What the last read of one domain found."""

    __slots__ = ('id', 'xml', 'active', 'persistent', 'info')

    def __init__(self, dom_id, xml, active, persistent, info):
        self.id = dom_id
        self.xml = xml
        self.active = active
        self.persistent = persistent
        self.info = info


class Guests:
    """The host's domains, read from and written to libvirt.

    :param get_connection: callable returning the libvirt connection.
    :param host_cpus: the host's online CPUs (the length of a CPU map).

    It keeps each domain's reading (its XML, state and parse) and reads a
    domain's XML again only when libvirt says the domain changed: an event
    of :data:`EVENTS` (registered on the connection, each event noting its
    domain), a domain ID that differs from the last read (a start or a
    stop), a domain that was not listed before, or a write of this class
    to it. Every other domain costs one entry of the listing.

    Events are asynchronous and may be lost (a connection that drops, a
    libvirt without an event loop), so:

    * a connection that cannot register the events (the CLI's, a test
      double without them) is read whole at every read, each domain's XML
      compared with the last;
    * a new connection (libvirtd restarted) is read whole first;
    * :meth:`invalidate` (a failed write) makes the next read whole;
    * a read more than :attr:`full_read_seconds` after the last whole one
      is whole (the backstop for an event that never came).
    """

    #: The events that mark a domain for a new read: its lifecycle (define,
    #: undefine, start, stop, suspend, resume, migration), its tunables (CPU
    #: pins, from anyone), its metadata, and the end of a job.
    EVENTS = (VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_ID_TUNABLE,
              VIR_DOMAIN_EVENT_ID_JOB_COMPLETED,
              VIR_DOMAIN_EVENT_ID_METADATA_CHANGE)

    #: Seconds after which a read is whole again, events or not.
    full_read_seconds = 300.0

    def __init__(self, get_connection, host_cpus, clock=time.monotonic):
        self._get_connection = get_connection
        self._cpumap_len = max(host_cpus, default=-1) + 1
        self._clock = clock
        # {uuid: _Reading} of the last read.
        self._readings = {}
        # Domains (uuids, or _ALL) that libvirt or a write said changed
        # since the last read. Appended to from libvirt's event thread:
        # a deque's append and popleft are atomic.
        self._marked = collections.deque()
        # The connection of the last read, whether it delivers the events,
        # and when the last whole read was.
        self._conn = None
        self._watching = False
        self._last_full = None
        self._generation = 0
        #: XMLDesc calls made (for tests and benchmarks).
        self.xml_reads = 0
        #: What the last read with ``jobs`` found: the generation of the
        #: readings (it moves when any domain's XML or state changed) and
        #: the jobs. Equal from one read to the next when no domain changed.
        self.state = None

    def changed(self, uuid):
        """Note that the domain ``uuid`` changed (from any thread)."""
        self._marked.append(uuid)

    def invalidate(self):
        """The next read reads every domain again (after a failure, plan
        from what libvirt holds)."""
        self._marked.append(_ALL)

    def forget(self):
        """Drop every reading: the next read reads and parses every
        domain (benchmarks compare with this)."""
        self._readings = {}
        self.invalidate()

    def _event(self, conn, dom, *args):
        # libvirt's event thread: no logging, no locks, no other call.
        try:
            self._marked.append(dom.UUIDString())
        except Exception:
            self._marked.append(_ALL)

    def _watch(self, conn):
        """Register :data:`EVENTS` on a new connection; False when it
        cannot deliver them (every read is then whole)."""
        register = getattr(conn, 'domainEventRegisterAny', None)
        if register is None:
            return False
        try:
            for event in self.EVENTS:
                register(None, event, self._event, None)
        except Exception:
            return False
        return True

    def _marks(self):
        """The domains marked since the last read; None for all."""
        marked = set()
        while True:
            try:
                marked.add(self._marked.popleft())
            except IndexError:
                break
        return None if _ALL in marked else marked

    def read(self, jobs=True):
        """``{uuid: Guest}`` of every domain on the host, running or not.

        :param jobs: also ask libvirt which running domains have a job in
            progress.

        A domain that libvirt did not say changed since the last read is
        not read again (see the class); one whose XML and state are what
        they were is not parsed again. Its DomainInfo is the one parsed
        then, shared by every read until the domain changes, so callers
        must not change it (:func:`domain_xml.copy_info` gives a copy that
        they may).
        """
        conn = self._get_connection()
        marked = self._marks()
        now = self._clock()
        if conn is not self._conn:
            self._conn = conn
            self._watching = self._watch(conn)
            marked = None
        if not self._watching or self._last_full is None or \
                now - self._last_full > self.full_read_seconds:
            marked = None
        if marked is None:
            self._last_full = now
        result = {}
        readings = {}
        busy = []
        changed = False
        flags = (VIR_CONNECT_LIST_DOMAINS_ACTIVE |
                 VIR_CONNECT_LIST_DOMAINS_INACTIVE)
        for dom in conn.listAllDomains(flags):
            uuid = dom.UUIDString()
            dom_id = dom.ID()
            last = self._readings.get(uuid)
            reading = last
            if last is None or marked is None or uuid in marked or \
                    last.id != dom_id:
                reading = self._read_one(dom, dom_id, last)
                changed = changed or reading is not last
            readings[uuid] = reading
            job = job_of(dom) if jobs and reading.active else None
            result[reading.info.uuid] = Guest(dom, reading.info, job)
            if job is not None:
                busy.append((uuid, job))
        if changed or len(readings) != len(self._readings):
            self._generation += 1
        self._readings = readings
        if jobs:
            self.state = (self._generation, frozenset(busy))
        return result

    def _read_one(self, dom, dom_id, last):
        self.xml_reads += 1
        xml = dom.XMLDesc(0)
        active, persistent = bool(dom.isActive()), bool(dom.isPersistent())
        if last is not None and (last.xml, last.active, last.persistent) \
                == (xml, active, persistent):
            if last.id != dom_id:
                last.id = dom_id
            return last
        return _Reading(dom_id, xml, active, persistent,
                        self._parse_domain(xml, active, persistent))

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
        try:
            guest.dom.pinVcpuFlags(vcpu, self.cpumap(cpus),
                                   self.flags(guest.info))
        finally:
            self.changed(guest.info.uuid)

    def pin_emulator(self, guest, cpus):
        try:
            guest.dom.pinEmulator(self.cpumap(cpus), self.flags(guest.info))
        finally:
            self.changed(guest.info.uuid)

    def pin_iothread(self, guest, iothread, cpus):
        try:
            guest.dom.pinIOThread(iothread, self.cpumap(cpus),
                                  self.flags(guest.info))
        finally:
            self.changed(guest.info.uuid)

    def set_metadata(self, guest, metadata):
        """Set (or, with None, drop) the domain's tenant-pin metadata."""
        try:
            guest.dom.setMetadata(
                VIR_DOMAIN_METADATA_ELEMENT, metadata,
                domain_xml.TP_PREFIX if metadata is not None else None,
                domain_xml.TP_NS, self.flags(guest.info))
        finally:
            self.changed(guest.info.uuid)
