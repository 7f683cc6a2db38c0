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

"""Adopting a host whose guests Nova's stock driver started, with real
libvirt, real cgroups and the real privsep daemon.

The guests run as the stock driver leaves them: in libvirt's default
``/machine`` partition, with no ``<vcpupin>``, floating on every host CPU,
and with Nova's owner-project metadata. A TenantPinManager is then pointed
at the host: a dry run describes the adoption and changes nothing; the
adoption pins every guest live to its project's whole cores without
restarting it; a second dry run finds nothing left to do; ``release_all``
lets every guest run anywhere again. Each step is checked where it counts:
the allowed CPUs of every QEMU thread in ``/proc``, the QEMU processes'
identity (PID and start time), the domains' live and persistent XML, the
cgroup tree, and the HostAuditor's invariant check.

Needs root, libvirtd and QEMU (tools/setup-host.sh); CI runs it.
"""

import sys
import uuid

import libvirt

from nova_tenant_pin import audit
from nova_tenant_pin import domain_xml
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf
from nova_tenant_pin.tests.integration import real_guests
from nova_tenant_pin.tests.integration.real_guests import guest_threads


class TestAdoptStockGuests(real_guests.TwoProjectsTestCase):

    MANAGER_NAME = 'adopt-itest'

    def setUp(self):
        super().setUp()
        self.everything = frozenset(self.host.online_cpus)

    def start_stock_guest(self, project):
        """Start a 1-vCPU guest as Nova's stock driver writes it: no
        tenant partition, no vCPU or emulator pins, ``<vcpu cpuset>``
        over every host CPU, and the owner-project metadata."""
        inst = str(uuid.uuid4())
        dom = self.libvirt.define(lvf.tiny_domain_xml(
            'instance-%s' % inst[:8], vcpus=1, uuid_=inst,
            cpuset=lvf.format_cpus(self.everything),
            metadata=lvf.nova_owner_metadata(project)))
        guest = real_guests.Guest(project, inst, dom,
                                  real_guests.qemu_pid(dom))
        self.guests.append(guest)
        info = domain_xml.parse_domain_xml(dom.XMLDesc(0))
        self.assertEqual(project, info.project_id)
        self.assertIsNone(info.partition_key)
        self.assertEqual({}, info.vcpu_pins)
        self.assertIsNone(info.emulator_pins)
        self.assertEqual('none', info.confinement)
        return guest

    def affinities(self):
        """``{tid: allowed CPUs}`` of every QEMU thread of every guest."""
        return {t.tid: t.allowed_cpus for g in self.guests
                for t in guest_threads(g.pid)}

    def assert_all_may_run_everywhere(self):
        for guest in self.guests:
            threads = guest_threads(guest.pid)
            self.assertTrue(any(t.vcpu is not None for t in threads),
                            'no vCPU thread in %s' % threads)
            for task in threads:
                self.assertEqual(self.everything, task.allowed_cpus,
                                 '%s of instance %s' % (task, guest.inst))

    def assert_no_partitions_left(self):
        for project in self.projects:
            self.assert_no_partition(project)

    def test_adopt_pins_running_guests_live_and_release_frees_them(self):
        a, b = self.projects
        self.start_stock_guest(a)
        self.start_stock_guest(b)
        identities = self.identities()
        self.assert_all_may_run_everywhere()
        before = self.affinities()
        xml_before = [g.dom.XMLDesc(0) for g in self.guests]
        mgr = self.new_manager()

        # 1. A dry run names both instances and writes nothing.
        actions = mgr.reconcile(dry_run=True)
        sys.stderr.write('dry run:\n  %s\n' % '\n  '.join(actions))
        for guest in self.guests:
            self.assertTrue([line for line in actions if guest.inst in line],
                            'no action names instance %s: %s'
                            % (guest.inst, actions))
        after = self.affinities()
        self.assertEqual({t: before[t] for t in set(before) & set(after)},
                         {t: after[t] for t in set(before) & set(after)})
        self.assert_all_may_run_everywhere()
        self.assertEqual(xml_before, [g.dom.XMLDesc(0) for g in self.guests])
        self.assert_no_partitions_left()
        self.assertEqual({}, mgr.tenant_map())

        # 2. The adoption pins every thread live to its project's cores.
        repairs = mgr.reconcile()
        sys.stderr.write('adopted:\n  %s\n' % '\n  '.join(repairs))
        self.assertEqual(identities, self.identities())
        tenant_map = mgr.tenant_map()
        cores = {g.project: tenant_map[g.project] for g in self.guests}
        self.assertFalse(cores[a] & cores[b])
        self.assertFalse(self.host.cores_of(cores[a]) &
                         self.host.cores_of(cores[b]))
        for guest in self.guests:
            mine = cores[guest.project]
            self.assertEqual(self.host.whole_core_cpus(mine), mine)
            threads = guest_threads(guest.pid)
            self.assertTrue(any(t.vcpu is not None for t in threads))
            self.assertTrue(any(t.vcpu is None for t in threads))
            for task in threads:
                self.assertTrue(task.allowed_cpus, task)
                self.assertLessEqual(task.allowed_cpus, mine,
                                     '%s of project %s' % (task,
                                                           guest.project))
            # Recorded live and in the persistent definition (LIVE|CONFIG),
            # so the pins and the key survive a restart of the manager.
            for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
                info = domain_xml.parse_domain_xml(guest.dom.XMLDesc(flags))
                self.assertEqual(guest.project, info.key)
                self.assertLessEqual(info.all_cpus(self.everything), mine)
            live = domain_xml.parse_domain_xml(guest.dom.XMLDesc(0))
            self.assertEqual('pins', live.confinement)
        self.assertTrue(mgr.isolation()['isolated'], mgr.isolation())
        pid_keys = {g.pid: g.project for g in self.guests}
        report = audit.HostAuditor(
            self.host, cgroup_prefix='/machine',
            pid_keys=pid_keys.get).audit()
        self.assertEqual([], report.violations,
                         [str(v) for v in report.violations])
        self.assertLessEqual({a, b}, set(report.tenants))
        for project in (a, b):
            self.assertLessEqual(report.tenants[project], cores[project])

        # 3. Nothing is left to do, for this manager or a restarted one.
        self.assertEqual([], mgr.reconcile(dry_run=True))
        self.assertEqual([], self.new_manager().reconcile(dry_run=True))

        # 4. Release: every thread may run anywhere again, no restart.
        released = mgr.release_all()
        sys.stderr.write('released:\n  %s\n' % '\n  '.join(released))
        self.assertEqual(identities, self.identities())
        self.assert_all_may_run_everywhere()
        self.assert_no_partitions_left()
        for guest in self.guests:
            info = domain_xml.parse_domain_xml(guest.dom.XMLDesc(0))
            self.assertIsNone(info.key)
            self.assertEqual(self.everything,
                             info.all_cpus(self.everything))
        self.assertEqual({}, mgr.tenant_map())
