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

"""The live local demo: real libvirt, real KVM guests, real cgroups.

On this machine, with a private libvirtd (nothing of the system's is
touched): boot one tiny guest for each tenant the host's cores allow
(housekeeping empty), show one more tenant refused with its reason, print
the per-tenant core map and an audit read from /proc, then start a second
libvirt host on this machine and live-migrate one guest to it with this
project's protocol while the exposure sampler watches both hosts, print the
measured exposure, and tear everything down: guests, daemons, cgroups.

Run as root through tools/demo.sh, which prepares the machine first.
"""

import os
import sys
import threading
import uuid
import warnings

# oslo.privsep imports eventlet, which warns that it is deprecated; that
# says nothing about this demo.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import fixtures  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402
import prettytable  # noqa: E402

from nova_tenant_pin import audit  # noqa: E402
from nova_tenant_pin import cgroupfs  # noqa: E402
from nova_tenant_pin import cgroups  # noqa: E402
from nova_tenant_pin import conf  # noqa: F401,E402
from nova_tenant_pin import exception  # noqa: E402
from nova_tenant_pin import manager as manager_mod  # noqa: E402
from nova_tenant_pin.tests import enforcement_fixtures  # noqa: E402
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf  # noqa
from nova_tenant_pin import topology  # noqa: E402

MAX_TENANTS = 8


def say(text=''):
    print(text, flush=True)


class Demo(fixtures.Fixture):

    def _setUp(self):
        self.conf = self.useFixture(config_fixture.Config(cfg.CONF))
        self.topology = topology.HostTopology.from_sysfs()
        self.tag = uuid.uuid4().hex[:6]
        self.tenants = []
        say('== this host: %d cores, %d threads, %d NUMA cell(s); guests '
            'run with %s' % (len(self.topology.cores),
                             len(self.topology.online_cpus),
                             len(self.topology.cells), lvf.virt_type()))
        say('   cores: ' + ' '.join(
            '[%s]' % topology.format_cpu_list(c.cpus)
            for c in self.topology.cores))
        self.host_a = self.useFixture(lvf.LibvirtdFixture())
        self.useFixture(enforcement_fixtures.PrivsepDaemon(self.conf))
        self.addCleanup(self._remove_partitions)
        self.partitions_a = cgroups.CgroupPartitions(root='/')
        self.manager_a = manager_mod.TenantPinManager(
            self.topology, self.partitions_a, lambda: self.host_a.conn,
            housekeeping_cpus=(), name='hostA')

    def _remove_partitions(self):
        for conn in [self.host_a.conn]:
            for dom in conn.listAllDomains():
                if dom.isActive():
                    dom.destroy()
        for tenant in self.tenants:
            for hierarchy in cgroupfs.detect_layout().ordered():
                lvf.remove_cgroup_tree(
                    hierarchy.path('/', cgroupfs.partition_dir(tenant)))

    def tenant(self, n):
        name = 'demo-%d-%s' % (n, self.tag)
        self.tenants.append(name)
        return name

    def boot(self, tenant, vcpus):
        inst, _dom = lvf.boot_confined(
            self.host_a.conn, self.manager_a, tenant, vcpus, prefix='demo',
            defined=self.host_a.defined)
        return inst

    def run(self):
        threads = max(c.threads for c in self.topology.cores)
        count = min(len(self.topology.cores), MAX_TENANTS)
        say('\n== booting %d tenants, one guest of %d vCPU(s) each'
            % (count, threads))
        guests = {}
        for n in range(1, count + 1):
            tenant = self.tenant(n)
            guests[tenant] = self.boot(tenant, threads)
        extra = self.tenant(count + 1)
        try:
            self.boot(extra, 1)
            say('   tenant %s fitted too (unexpected on a full host)'
                % extra)
        except exception.TenantDoesNotFit as e:
            say('   refused, as it must be: %s' % e)

        report = audit.HostAuditor(self.topology,
                                   cgroup_prefix='/machine').audit()
        table = prettytable.PrettyTable(
            ['tenant', 'partition CPUs (kernel)', 'QEMU threads may run on'])
        parts = self.partitions_a.list_partitions()
        for tenant in sorted(self.manager_a.tenant_map()):
            table.add_row([tenant, topology.format_cpu_list(
                parts[tenant].effective_cpus), topology.format_cpu_list(
                report.tenants.get(tenant, ()))])
        say('\n== the per-tenant core map, read back from cgroups and /proc')
        say(table.get_string())
        say('== audit: %d guests, %d threads: %s'
            % (report.guests, report.threads,
               'clean' if report.clean else '; '.join(
                   str(v) for v in report.violations)))

        say('\n== a second libvirt host on this machine, and a live '
            'migration to it')
        host_b = self.useFixture(lvf.SecondHostFixture(
            'ntp-demo-hostb-%s' % self.tag))
        partitions_b = cgroups.CgroupPartitions(root=host_b.cgroup_prefix)
        manager_b = manager_mod.TenantPinManager(
            self.topology, partitions_b, lambda: host_b.conn,
            housekeeping_cpus=(), name='hostB')
        tenant = sorted(guests)[0]
        inst = guests[tenant]
        dom = self.host_a.conn.lookupByUUIDString(inst)
        sampler = audit.Sampler([
            audit.HostAuditor(self.topology, cgroup_prefix='/machine'),
            audit.HostAuditor(self.topology,
                              cgroup_prefix=host_b.cgroup_prefix +
                              '/machine')])
        done = threading.Event()
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            report=sampler.run(done.is_set, max_seconds=120)))
        thread.start()

        def announce(pins):
            say('   host B created partition %s with CPUs %s before the '
                'migration' % (pins.partition,
                               topology.format_cpu_list(pins.cpus)))

        try:
            lvf.migrate_confined(dom, inst, tenant, threads, self.manager_a,
                                 manager_b, host_b.uri, on_claimed=announce)
        finally:
            done.set()
            thread.join()
        sample = result['report']
        say('   %s of tenant %s now runs on host B: %s'
            % (dom.name(), tenant, host_b.conn.lookupByUUIDString(
                inst).isActive() and 'running' or 'NOT running'))
        say('   exposure sampler: %d samples over %.2f s (%.0f Hz) on both '
            'hosts, %d violating samples%s'
            % (sample.samples, sample.seconds, sample.rate_hz,
               sample.violating_samples,
               ', windows %s ms' % ['%.1f' % w for w in sample.windows_ms]
               if sample.windows_ms else ''))
        say('   host A now: %s' % {t: topology.format_cpu_list(c) for t, c in
                                   sorted(self.manager_a.tenant_map()
                                          .items())})
        self.exposed = sample.violating_samples
        say('\n== tearing down: guests, both libvirtd, cgroups')


def main():
    if os.geteuid() != 0:
        sys.exit('demo: run as root (it starts libvirtd and writes cgroups)')
    reason = lvf.missing_requirements()
    if reason:
        sys.exit('demo: %s' % reason)
    lvf.quiet_logging('nova-tenant-pin-demo')
    demo = Demo()
    with demo:
        demo.run()
    leftovers = [t for t in demo.tenants
                 if os.path.exists(cgroupfs.detect_layout().cpuset.path(
                     '/', cgroupfs.partition_dir(t)))]
    say('   left behind: %s' % (leftovers or 'nothing'))
    return 1 if demo.exposed or leftovers else 0


if __name__ == '__main__':
    sys.exit(main())
