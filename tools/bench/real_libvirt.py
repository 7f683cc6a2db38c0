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

"""What this project adds to real operations, on real libvirt and KVM.

Measured in one run, on this machine, against baselines taken in the same
run (interleaved, so that drift in the machine's load hits both alike):

* spawn: claim + partition + define + start + re-pin through the manager,
  against define + start of the same tiny guest pinned to the same CPUs
  with ``<vcpu cpuset>`` but in no partition and with no claim;
* live migration: the no-exposure protocol (target claim and partition
  first, target XML, re-pin on arrival, source release) against a plain
  peer-to-peer live migration of the same guest, pinned the same way,
  between the same two local libvirt hosts; and the time of this
  project's own steps alone (claim, XML, re-pin, release);
* the exposure sampler's rate on two hosts with guests running;
* the audit's cost per 1,000 QEMU threads, on a generated /proc tree of
  1,000 threads and on the real guests.

Needs root, libvirtd, QEMU and unshare (tools/setup-host.sh). Prints ratios;
it is a benchmark, not a test.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import fixtures  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from nova_tenant_pin import audit  # noqa: E402
from nova_tenant_pin import cgroupfs  # noqa: E402
from nova_tenant_pin import cgroups  # noqa: E402
from nova_tenant_pin import conf  # noqa: E402,F401
from nova_tenant_pin import manager as manager_mod  # noqa: E402
from nova_tenant_pin.tests import enforcement_fixtures  # noqa: E402
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf  # noqa
from nova_tenant_pin import topology  # noqa: E402


def median_ms(values):
    return statistics.median(values) * 1000.0


class Bench(fixtures.Fixture):

    def _setUp(self):
        self.conf = self.useFixture(config_fixture.Config(cfg.CONF))
        self.topology = topology.HostTopology.from_sysfs()
        self.tag = uuid.uuid4().hex[:6]
        self.tenant = 'bench-%s' % self.tag
        self.host_a = self.useFixture(lvf.LibvirtdFixture())
        self.host_b = self.useFixture(lvf.SecondHostFixture(
            'ntp-bench-hostb-%s' % self.tag))
        self.useFixture(enforcement_fixtures.PrivsepDaemon(self.conf))
        self.addCleanup(self._cleanup)
        self.manager_a = manager_mod.TenantPinManager(
            self.topology, cgroups.CgroupPartitions(root='/'),
            lambda: self.host_a.conn, housekeeping_cpus=(), name='hostA')
        self.own_steps = []
        self.manager_b = manager_mod.TenantPinManager(
            self.topology,
            cgroups.CgroupPartitions(root=self.host_b.cgroup_prefix),
            lambda: self.host_b.conn, housekeeping_cpus=(), name='hostB')

    def _cleanup(self):
        for conn in (self.host_a.conn, self.host_b.conn):
            for dom in conn.listAllDomains():
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
        for hierarchy in cgroupfs.detect_layout().ordered():
            lvf.remove_cgroup_tree(hierarchy.path(
                '/', cgroupfs.partition_dir(self.tenant)))

    # -- spawn ---------------------------------------------------------------

    def plain_xml(self, name):
        """The baseline guest: pinned to one core like a tenant's guest,
        with no partition and no claim."""
        return lvf.tiny_domain_xml(name, cpuset=lvf.format_cpus(
            self.topology.cores[0].cpus))

    def spawn_plain(self):
        name = 'bench-plain-%s' % uuid.uuid4().hex[:8]
        start = time.perf_counter()
        dom = self.host_a.conn.defineXML(self.plain_xml(name))
        dom.create()
        elapsed = time.perf_counter() - start
        dom.destroy()
        dom.undefine()
        return elapsed

    def spawn_tenant_pin(self):
        start = time.perf_counter()
        inst, dom = lvf.boot_confined(self.host_a.conn, self.manager_a,
                                      self.tenant, 1, prefix='bench-tp')
        elapsed = time.perf_counter() - start
        dom.destroy()
        dom.undefine()
        self.manager_a.release(inst)
        return elapsed

    # -- live migration ------------------------------------------------------

    def migrate_plain(self):
        name = 'bench-mplain-%s' % uuid.uuid4().hex[:8]
        dom = self.host_a.conn.defineXML(self.plain_xml(name))
        dom.create()
        start = time.perf_counter()
        lvf.migrate(dom, self.host_b)
        elapsed = time.perf_counter() - start
        moved = self.host_b.conn.lookupByName(name)
        moved.destroy()
        moved.undefine()
        return elapsed

    def migrate_tenant_pin(self):
        inst, dom = lvf.boot_confined(self.host_a.conn, self.manager_a,
                                      self.tenant, 1, prefix='bench-mtp')
        timings = {}
        start = time.perf_counter()
        lvf.migrate_confined(dom, inst, self.tenant, 1, self.manager_a,
                             self.manager_b, self.host_b.uri,
                             timings=timings)
        elapsed = time.perf_counter() - start
        self.own_steps.append(elapsed - timings['migrate'])
        moved = self.host_b.conn.lookupByUUIDString(inst)
        moved.destroy()
        moved.undefine()
        self.manager_b.release(inst)
        return elapsed


def fake_proc(root, threads, per_guest=10, tenants=20):
    """A /proc tree of ``threads`` QEMU threads in tenant partitions."""
    guests = threads // per_guest
    for g in range(guests):
        pid = 100000 + g * 100
        tenant = 't%d' % (g % tenants)
        cg = '/machine/tenant-%s.partition/qemu-%d-g.libvirt-qemu' % (
            tenant, g)
        os.makedirs(os.path.join(root, str(pid)))
        with open(os.path.join(root, str(pid), 'comm'), 'w') as f:
            f.write('qemu-system-x86\n')
        for t in range(per_guest):
            base = os.path.join(root, str(pid), 'task', str(pid + t))
            os.makedirs(base)
            with open(os.path.join(base, 'comm'), 'w') as f:
                f.write('CPU %d/KVM\n' % t)
            with open(os.path.join(base, 'status'), 'w') as f:
                f.write('Name:\tx\nCpus_allowed_list:\t%d\n' % (g % tenants))
            with open(os.path.join(base, 'cgroup'), 'w') as f:
                f.write('5:cpuset:%s/vcpu%d\n' % (cg, t))
    return guests * per_guest


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='fewer repeats (5 instead of 15)')
    args = parser.parse_args()
    repeats = 5 if args.quick else 15
    if os.geteuid() != 0 or lvf.missing_requirements():
        sys.exit('real_libvirt: %s' % (lvf.missing_requirements() or
                                       'needs root'))
    lvf.quiet_logging('nova-tenant-pin-bench')

    print('machine: %d CPUs, virt type %s, %d repeats'
          % (len(os.sched_getaffinity(0)), lvf.virt_type(), repeats))
    with Bench() as bench:
        bench.spawn_plain()  # warm-up: QEMU's first start pays for caches
        plain, first, more = [], [], []
        for _ in range(repeats):
            plain.append(bench.spawn_plain())
            first.append(bench.spawn_tenant_pin())
        # The tenant is present already: its partition exists.
        resident, _dom = lvf.boot_confined(
            bench.host_a.conn, bench.manager_a, bench.tenant, 1,
            prefix='bench-resident')
        for _ in range(repeats):
            plain.append(bench.spawn_plain())
            more.append(bench.spawn_tenant_pin())
        print('spawn:          plain %7.1f ms   tenant-pin, first instance '
              'of its tenant %7.1f ms   ratio %.3f'
              % (median_ms(plain), median_ms(first),
                 median_ms(first) / median_ms(plain)))
        print('                tenant-pin, tenant already present %7.1f ms'
              '   ratio %.3f' % (median_ms(more),
                                 median_ms(more) / median_ms(plain)))
        bench.host_a.conn.lookupByUUIDString(resident).destroy()
        bench.host_a.conn.lookupByUUIDString(resident).undefine()
        bench.manager_a.release(resident)
        plain, ours = [], []
        for _ in range(max(3, repeats // 3)):
            plain.append(bench.migrate_plain())
            ours.append(bench.migrate_tenant_pin())
        print('live migration: plain %7.1f ms   tenant-pin %7.1f ms   '
              'ratio %.3f' % (median_ms(plain), median_ms(ours),
                              median_ms(ours) / median_ms(plain)))
        print('                of which this project\'s own steps (claim, '
              'XML, re-pin, release): %.1f ms = %.3f of the plain migration'
              % (median_ms(bench.own_steps),
                 median_ms(bench.own_steps) / median_ms(plain)))

        # Sampler on both hosts with one guest each, then the audit.
        for host, mgr in ((bench.host_a, bench.manager_a),
                          (bench.host_b, bench.manager_b)):
            lvf.boot_confined(host.conn, mgr, bench.tenant, 1,
                              prefix='bench-s')
        prefix_b = bench.host_b.cgroup_prefix + '/machine'
        auditors = [audit.HostAuditor(bench.topology,
                                      cgroup_prefix='/machine'),
                    audit.HostAuditor(bench.topology,
                                      cgroup_prefix=prefix_b)]
        calls = iter(range(10 ** 9))
        report = audit.Sampler(auditors).run(lambda: next(calls) >= 3000)
        print('sampler:        %.0f Hz over %d samples on 2 hosts '
              '(target >= 1000 Hz), %d violating'
              % (report.rate_hz, report.samples, report.violating_samples))
        real = audit.HostAuditor(bench.topology).audit()
        print('audit (real):   %d threads of %d guests in %.2f ms'
              % (real.threads, real.guests, real.seconds * 1000))
    with tempfile.TemporaryDirectory() as root:
        threads = fake_proc(root, 1000)
        auditor = audit.HostAuditor(
            topology.HostTopology({0: [[c] for c in range(20)]}),
            proc_root=root)
        times = []
        for _ in range(20):
            # A new auditor each time: a full check reads every file.
            times.append(audit.HostAuditor(auditor.topology,
                                           proc_root=root).audit().seconds)
        print('audit (%d generated threads): %.1f ms median per full check'
              % (threads, median_ms(times)))


if __name__ == '__main__':
    main()
