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

"""TenantPinLibvirtDriver inside Nova's in-process services, on a REAL host.

API, conductor, scheduler and placement run in-process as in Nova's
functional tests; the compute service loads
``compute_driver = tenant_pin.TenantPinLibvirtDriver`` exactly as nova.conf
would, against a private libvirtd (:class:`LibvirtdFixture`), so every
server booted through the API is a real QEMU/KVM guest. Tenant partitions
are real cgroups (``cgroups.get_partitions()``), written by
the real privsep daemon (:class:`PrivsepDaemon`, started before the compute
so that its PID is known and cleanup stops it by PID).

What Nova's harness had to be told (see notes/real-nova.md):

* the "poison" fixtures that forbid touching the host (``/sys`` reads,
  ``psutil``, starting a privsep helper, libvirt's event thread) are
  replaced by no-ops: this suite exists to touch the host;
* libvirt's event thread never ends, so ``Host._init_events`` is a no-op:
  the compute gets no lifecycle events (Nova polls the domain state in
  boot, reboot and delete, so nothing here needs them);
* ``cpu_mode = none`` (nested KVM aborts with ``host-model``), VNC off,
  ``networks='none'``, instance and state paths in a per-test directory, a
  per-test ``instance_name_template``, and an image whose data is a small
  raw disk (the guest sits in its BIOS: its vCPU threads are real).

Housekeeping: the driver refuses to start with no housekeeping CPU
(``load_options`` raises "no CPU left for host housekeeping"). The tests
need exactly two tenant cores (two tenants fit, a third does not). On a
host with three cores or more that is plain configuration: every core but
the last two is ``[tenant_pin] housekeeping_cpus``. On a two-core host (CI
and the development machines) no configuration leaves two tenant cores, so
:meth:`NovaRealTestBase._tenant_cores_seam` lets the real
``load_options`` check the configuration (``housekeeping_cpus`` = the
first core) and then hands the manager an empty housekeeping set, as
``test_manager_real`` does by constructing the manager directly. Only that
one value differs from production; the audit then checks invariant 1 only
(no housekeeping core to check invariant 2 against).
"""

import contextlib
import io
import os
import shutil
import sys
import tempfile
import threading
import uuid

import fixtures
import libvirt
from nova import monkey_patch
from oslo_service import backend as service_backend


def _native_threading():
    """Run Nova's services in native threading mode (Nova 34 supports both).

    Importing ``nova.tests.functional`` eventlet-patches the whole process
    by default, and the integration suite runs every module in one worker:
    the other modules' sampler threads would turn green and stop sampling
    while libvirt blocks. ``OS_NOVA_DISABLE_EVENTLET_PATCHING`` asks Nova
    not to patch; its check that eventlet was never imported is skipped,
    because oslo.privsep (imported by the other modules first) imports it
    without patching anything.

    A process that is already patched stays so. One where oslo.service
    already picked its eventlet backend (something imported Nova's code
    before this module, which is not the case in this suite) cannot switch:
    there Nova runs in eventlet mode, as in its own functional tests.
    """
    if monkey_patch.is_patched():
        return
    if service_backend.get_backend_type() == \
            service_backend.BackendType.EVENTLET:
        sys.stderr.write('nova_real_base: oslo.service already runs on '
                         'eventlet; Nova runs in eventlet mode\n')
        monkey_patch.patch()
        return
    os.environ['OS_NOVA_DISABLE_EVENTLET_PATCHING'] = 'true'
    poison = monkey_patch.poison_eventlet
    monkey_patch.poison_eventlet = lambda: None
    try:
        # The packages whose __init__ asks Nova to patch.
        import nova.tests.functional  # noqa: F401
        import nova.tests.unit  # noqa: F401
    finally:
        monkey_patch.poison_eventlet = poison


_native_threading()

from nova.tests import fixtures as nova_fixtures  # noqa: E402
from nova.tests.functional.api import client as api_client  # noqa: E402
from nova.tests.functional import integrated_helpers  # noqa: E402
from oslo_config import cfg  # noqa: E402
from oslo_config import fixture as config_fixture  # noqa: E402

from nova_tenant_pin import audit  # noqa: E402
from nova_tenant_pin import cgroupfs  # noqa: E402
from nova_tenant_pin import cgroups  # noqa: E402
from nova_tenant_pin import driver as tp_driver  # noqa: E402
from nova_tenant_pin import procfs  # noqa: E402
from nova_tenant_pin.tests import enforcement_fixtures  # noqa: E402
from nova_tenant_pin.tests.integration import libvirt_fixture as lvf  # noqa
from nova_tenant_pin import topology  # noqa: E402

DRIVER = 'tenant_pin.TenantPinLibvirtDriver'
# Every API wait in this suite ends well within this; a real boot or delete
# takes 1-3 s here.
API_TIMEOUT = 60
# A raw disk of zeros: what ``qemu-img create -f raw`` makes.
IMAGE_BYTES = 1024 * 1024


class _Harmless(fixtures.Fixture):
    """Stands in for a Nova poison fixture: this suite touches the host."""

    def __init__(self, *args, **kwargs):
        super().__init__()


def _no_libvirt_events(host):
    """``Host._init_events`` without its never-ending native thread."""


def wait_for(predicate, what, timeout=API_TIMEOUT, interval=0.1):
    """:func:`libvirt_fixture.wait_for` with the API's timeout."""
    return lvf.wait_for(predicate, what, timeout, interval)


class _FreshAuditor:
    """What :class:`~nova_tenant_pin.audit.Sampler` needs, with a new
    HostAuditor for every sample.

    A HostAuditor remembers, by PID, which processes are QEMU and where
    they belong. libvirtd forks a guest's process before it execs QEMU, so
    a long-lived auditor that first sees that PID before the exec keeps it
    as "not QEMU" and never audits the new guest (reported with issue 9; a
    hard reboot hits it every time). A fresh auditor reads everything
    again: fewer samples a second, none of them blind. ``seen`` records
    every QEMU PID audited and its tenant, so a test can check that the
    guest it cares about was judged at all.
    """

    def __init__(self, factory):
        self._factory = factory
        self._auditor = None
        self.seen = {}

    def snapshot(self):
        self._auditor = self._factory()
        by_tenant = self._auditor.snapshot()
        for tenant, tasks in by_tenant.items():
            for task in tasks:
                self.seen.setdefault(task.pid, tenant)
        return by_tenant

    def check(self, by_tenant):
        return self._auditor.check(by_tenant)


class NovaRealTestBase(integrated_helpers._IntegratedTestBase):
    """Nova's services with TenantPinLibvirtDriver on a real libvirtd."""

    microversion = 'latest'
    ADMIN_API = True
    #: How many cores (the last ones) the tenants get; the others are
    #: ``[tenant_pin] housekeeping_cpus``.
    TENANT_CORES = 2
    #: Where the audit looks for the guests' QEMU processes (the test
    #: host's systemd puts them under ``/machine.slice``).
    CGROUP_PREFIX = '/machine'
    #: How long an API wait may take (a TCG guest inside the test host
    #: takes far longer to start than a KVM one here).
    API_TIMEOUT = API_TIMEOUT
    #: Seconds between two polls of the API or the compute manager: each
    #: poll is an API request served in this process, whose interpreter
    #: the services share (inside the test host Python runs 13-20 times
    #: slower).
    POLL_INTERVAL = 0.1
    #: The privsep contexts, besides ``tenant_pin``'s, whose real daemon
    #: the driver uses (``privsep.core_sched_pctxt`` where the kernel has
    #: core scheduling).
    PRIVSEP_CONTEXTS = ()
    #: Seconds between two heartbeats of each service (Nova's
    #: ``report_interval``), or None for Nova's default (10 s). Each
    #: heartbeat is a database write under the harness's database lock in
    #: this one process.
    REPORT_INTERVAL = None

    def libvirt_fixture(self):
        """The libvirtd the compute uses: a private one, stopped by PID
        (the test host uses its own, run by systemd)."""
        return lvf.LibvirtdFixture()

    def setUp(self):
        reason = lvf.missing_requirements()
        if reason:
            self.skipTest(reason)
        self.host_topology = topology.HostTopology.from_sysfs()
        cores = sorted(self.host_topology.cores, key=lambda c: min(c.cpus))
        if len(cores) < max(2, self.TENANT_CORES):
            self.skipTest('needs %d physical cores' % max(2,
                                                          self.TENANT_CORES))
        tenant_cores = cores[-self.TENANT_CORES:]
        self.tenant_cpus = frozenset().union(*(c.cpus for c in tenant_cores))
        self.housekeeping = self.host_topology.online_cpus - self.tenant_cpus
        # What [tenant_pin] housekeeping_cpus says: the housekeeping cores,
        # or on a host with no core to spare the first one (see
        # _tenant_cores_seam).
        self.housekeeping_option = self.housekeeping or frozenset(
            cores[0].cpus)
        self.layout = cgroupfs.detect_layout()
        self.tag = uuid.uuid4().hex[:8]
        self.name_prefix = 'ntpnova-%s-' % self.tag
        self.projects = []

        for name in ('GenericPoisonFixture', 'SysFsPoisonFixture',
                     'PoisonFunctions', 'PrivsepNoHelperFixture'):
            self.useFixture(fixtures.MonkeyPatch(
                'nova.tests.fixtures.' + name, _Harmless))
        self.useFixture(fixtures.MonkeyPatch(
            'nova.virt.libvirt.host.Host._init_events', _no_libvirt_events))
        if not self.housekeeping:
            self._tenant_cores_seam()

        self.work_dir = tempfile.mkdtemp(prefix='ntp-nova-real-')
        # QEMU runs as libvirt-qemu and must reach the disks under it.
        os.chmod(self.work_dir, 0o755)
        os.makedirs(os.path.join(self.work_dir, 'instances'))
        self.addCleanup(shutil.rmtree, self.work_dir, ignore_errors=True)
        # Cleanups run last-in first-out: libvirtd stops last, after the
        # privsep daemon, after the leftovers (guests, then partitions),
        # after Nova's services (registered by super().setUp()).
        self.libvirt = self.useFixture(self.libvirt_fixture())
        self.tp_conf = self.useFixture(config_fixture.Config(cfg.CONF))
        self.privsep_daemon = self.useFixture(
            enforcement_fixtures.PrivsepDaemon(self.tp_conf))
        self.privsep_pid = self.privsep_daemon.start()
        for context in self.PRIVSEP_CONTEXTS:
            self.useFixture(enforcement_fixtures.PrivsepDaemon(
                self.tp_conf, context=context)).start()
        # Nova's TestCase deletes the test's attributes in its own cleanup,
        # which runs before this one: pass what it needs.
        self.addCleanup(_remove_leftovers, self.libvirt.conn,
                        self.name_prefix, self.projects, self.layout)
        # Nova's own privileged calls (utime on the image cache) run
        # in-process; only this project's context uses the daemon.
        self.useFixture(nova_fixtures.PrivsepFixture())
        super().setUp()
        self.assertEqual(self.housekeeping,
                         self.tenant_pin.housekeeping_cpus)
        self.image_id = self._create_image()
        self.flavor_id = self._create_flavor(
            name='ntp-1vcpu', memory_mb=64, vcpu=1, disk=1, ephemeral=0)

    def _tenant_cores_seam(self):
        """Two-core host: see the module docstring. The real
        ``load_options`` checks the configuration (housekeeping = the
        first core, as the option allows); the manager gets none."""
        real = tp_driver.load_options

        def load_options(conf, host_topology):
            options = real(conf, host_topology)
            options['housekeeping_cpus'] = frozenset()
            return options
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.driver.load_options', load_options))

    def _setup_services(self):
        # Here and not before super().setUp(): Nova's ConfFixture is in
        # place now, and the services have not started yet.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc/nova/api-paste.ini'), group='wsgi')
        self.flags(compute_driver=DRIVER,
                   instances_path=os.path.join(self.work_dir, 'instances'),
                   state_path=os.path.join(self.work_dir, 'state'),
                   instance_name_template=self.name_prefix + '%08x',
                   # Placement admits more than the host's cores: refusing
                   # a tenant that does not fit is the driver's job here.
                   cpu_allocation_ratio=4.0)
        self.flags(connection_uri=self.libvirt.uri,
                   virt_type=lvf.virt_type(), cpu_mode='none',
                   group='libvirt')
        self.flags(enabled=False, group='vnc')
        if self.REPORT_INTERVAL:
            # A service is up for service_down_time after its last
            # heartbeat: longer than any test, so the scheduler never
            # finds the compute down between two heartbeats.
            self.flags(report_interval=self.REPORT_INTERVAL,
                       service_down_time=max(3600,
                                             4 * self.REPORT_INTERVAL))
        self.flags(cpu_shared_set=topology.format_cpu_list(
            self.host_topology.online_cpus), group='compute')
        self.flags(cgroup_root='/',
                   housekeeping_cpus=topology.format_cpu_list(
                       self.housekeeping_option),
                   group='tenant_pin')
        super()._setup_services()
        # Nova's harness turns every cast into a call that waits for the
        # service's reply (rpc_response_timeout, 60 s): a loaded test host
        # schedules a boot more slowly than that. Read at each call, so
        # set here, once the RPC clients registered it.
        self.flags(rpc_response_timeout=self.API_TIMEOUT)

    def _create_image(self):
        image = {
            'name': 'ntp-tiny-raw', 'disk_format': 'raw',
            'container_format': 'bare', 'visibility': 'public',
            'status': 'active', 'size': IMAGE_BYTES, 'min_disk': 0,
            'min_ram': 0, 'properties': {},
        }
        return self.glance.create(None, image,
                                  data=io.BytesIO(bytes(IMAGE_BYTES)))['id']

    # -- tenants and servers ---------------------------------------------

    def tenant_api(self):
        """An API client of a new project (a new tenant)."""
        project = uuid.uuid4().hex
        self.projects.append(project)
        client = api_client.TestOpenStackClient(
            'admin', self.api_fixture.base_url, project_id=project,
            roles=['reader', 'member', 'admin'])
        client.microversion = 'latest'
        return client

    #: The versioned notification that ends each operation the tests wait
    #: for.
    BOOT_EVENTS = {'ACTIVE': 'instance.create.end',
                   'ERROR': 'compute_task.build_instances.error'}

    def notified(self, event_type, action):
        """Run ``action()`` and wait until Nova sent one more versioned
        notification ``event_type`` than before it; return what ``action``
        returned.

        The test's thread sleeps on the notifier's condition meanwhile
        instead of polling the API: every poll is a request served in this
        process, whose threads (API, conductor, scheduler, compute) share
        one interpreter, and inside the test host (Python 13-20 times
        slower) polls took the interpreter from the operation they
        waited for."""
        before = sum(1 for n in self.notifier.versioned_notifications
                     if n['event_type'] == event_type)
        result = action()
        self.notifier.wait_for_versioned_notifications(
            event_type, n_events=before + 1, timeout=self.API_TIMEOUT)
        return result

    def boot(self, api, expected='ACTIVE'):
        body = self._build_server(image_uuid=self.image_id,
                                  flavor_id=self.flavor_id, networks='none')
        server = self.notified(self.BOOT_EVENTS[expected],
                               lambda: api.post_server({'server': body}))
        return self.wait_status(server, expected)

    def wait_status(self, server, expected):
        """Poll the server until ``expected``; fail at once on an
        unexpected ERROR, with its fault."""
        def done():
            found = self.admin_api.get_server(server['id'])
            if found['status'] == 'ERROR' and expected != 'ERROR':
                self.fail('server %s went to ERROR: %s'
                          % (server['id'], found.get('fault')))
            if found['status'] == expected and found['OS-EXT-STS:task_state'] \
                    is None and (expected != 'ERROR' or 'fault' in found):
                return found
            return None
        found = wait_for(done, 'server %s to be %s' % (server['id'],
                                                       expected),
                         self.API_TIMEOUT, self.POLL_INTERVAL)
        self.wait_compute_idle()
        return found

    def wait_compute_idle(self):
        """Wait until the compute manager has no task in progress: a
        server is ACTIVE before its build task ends (notifications, the
        resource tracker), and the next step must not race with it."""
        manager = self.compute.manager
        wait_for(lambda: not manager._in_progress_tasks,
                 'the compute manager to finish its tasks', self.API_TIMEOUT,
                 self.POLL_INTERVAL)

    def delete(self, server):
        self.notified('instance.delete.end',
                      lambda: self.admin_api.delete_server(server['id']))

        def gone():
            try:
                self.admin_api.get_server(server['id'])
            except api_client.OpenStackApiNotFoundException:
                return True
            return False
        wait_for(gone, 'server %s to be deleted' % server['id'],
                 self.API_TIMEOUT, self.POLL_INTERVAL)
        self.wait_compute_idle()

    def hard_reboot(self, server):
        self.notified('instance.reboot.end',
                      lambda: self.admin_api.post_server_action(
                          server['id'], {'reboot': {'type': 'HARD'}}))
        return self.wait_status(server, 'ACTIVE')

    def restart_compute(self):
        """Stop the compute service and start a new one, with a new
        driver (its own libvirt connection and manager): libvirtd, the
        guests and the cgroups live on, as on a real host."""
        self.compute = self.restart_compute_service(
            self.compute, keep_hypervisor_state=False)
        self.computes[self.compute.host] = self.compute
        return self.compute

    def hard_reboot_sampled(self, server, other, servers, cpus):
        """Hard-reboot ``server`` while the host is audited from /proc
        over and over, and check what a hard reboot must keep: no sampled
        instant with two tenants on one core, a new QEMU (the old one
        gone), every tenant on the same CPUs, the ``other`` server's
        threads untouched and no partition removed and created again.

        :param servers: ``{project: [server, ...]}`` that must be running.
        :param cpus: ``{project: frozenset(cpus)}`` as
            :meth:`assert_host_clean` returned it before.
        :returns: ``(sampled, new QEMU PID)``, ``sampled`` as
            :meth:`sampling` yields it.
        """
        pid = self.qemu_pid(server)
        threads = self.thread_cpus([other])
        inodes = {p: self.partition_inode(p) for p in servers}
        with self.sampling() as sampled:
            self.hard_reboot(server)
        self.assertGreater(sampled['report'].samples, 0)
        self.assertEqual([], [str(v) for v in
                              sampled['report'].first_violations])
        new_pid = self.qemu_pid(server)
        self.assertNotEqual(pid, new_pid)
        self.assertFalse(os.path.exists('/proc/%d' % pid))
        self.assertEqual(cpus, self.assert_host_clean(servers))
        self.assertEqual(threads, self.thread_cpus([other]))
        self.assertEqual(inodes, {p: self.partition_inode(p)
                                  for p in servers})
        return sampled, new_pid

    def before_restart(self, servers, projects):
        """What a compute restart must keep, read before it: the driver
        (to tell it from the new one), the tenant map and claims, the
        servers' threads (:meth:`thread_cpus`), the projects' partition
        inodes, and where the log stood."""
        return {
            'driver': self.compute.manager.driver,
            'map': self.tenant_pin.tenant_map(),
            'claims': self._claims(),
            'threads': self.thread_cpus(servers),
            'inodes': {p: self.partition_inode(p) for p in projects},
            'log_mark': len(self.stdlog.logger.output),
        }

    def assert_restart_kept(self, before, servers):
        """After :meth:`restart_compute`: a new driver rebuilt the same map
        and claims from libvirt and the cgroups, the guests kept running in
        the same partitions, and no thread was re-pinned or repaired."""
        self.assertIsNot(before['driver'], self.compute.manager.driver)
        self.assertEqual(before['map'], self.tenant_pin.tenant_map())
        self.assertEqual(before['claims'], self._claims())
        self.assertEqual(before['threads'], self.thread_cpus(servers))
        self.assertEqual(before['inodes'], {
            p: self.partition_inode(p) for p in before['inodes']})
        since = self.stdlog.logger.output[before['log_mark']:]
        self.assertIn('tenant-pin on compute', since)
        for word in ('reconcile repaired', 're-pinned'):
            self.assertNotIn(word, since)

    def _claims(self):
        return {u: (c.key, c.vcpus, c.pending)
                for u, c in self.tenant_pin.claims().items()}

    @property
    def tenant_pin(self):
        return self.compute.manager.driver.tenant_pin

    # -- the kernel's view -----------------------------------------------

    def domain(self, server):
        return self.libvirt.conn.lookupByUUIDString(server['id'])

    def qemu_pid(self, server):
        name = self.domain(server).name()
        with open('/run/libvirt/qemu/%s.pid' % name) as f:
            return int(f.read().strip())

    def guest_threads(self, server):
        """Every task of the server's QEMU but KVM's kernel workers."""
        return [t for t in procfs.threads(self.qemu_pid(server))
                if not t.comm.startswith(audit._KERNEL_WORKERS)]

    def partition_dir(self, project):
        """The partition's directory under each hierarchy's root: a
        directory libvirt uses, or the systemd slice it registers the
        guests in with machined."""
        return cgroupfs.partition_dir(project, self.layout.slices('/'))

    def partitions(self):
        """``{tenant: effective CPUs}`` of this test's partitions, read
        from the cpuset hierarchy."""
        cpuset = self.layout.cpuset
        result = {}
        for project in self.projects:
            path = cpuset.path('/', self.partition_dir(project))
            if os.path.isdir(path):
                result[project] = frozenset(
                    cgroupfs.cgroup(cpuset, path).effective_cpus())
        return result

    @contextlib.contextmanager
    def sampling(self):
        """Audit the host from /proc over and over, in a thread, while the
        block runs; yields a dict whose ``report`` is the
        :class:`~nova_tenant_pin.audit.SampleReport` once the block ends and
        whose ``seen`` maps every audited QEMU PID to its tenant."""
        auditor = _FreshAuditor(lambda: audit.HostAuditor(
            self.host_topology, housekeeping_cpus=self.housekeeping,
            cgroup_prefix=self.CGROUP_PREFIX))
        done = threading.Event()
        result = {'seen': auditor.seen}

        def run():
            result['report'] = audit.Sampler([auditor]).run(
                done.is_set, max_seconds=self.API_TIMEOUT)
        thread = threading.Thread(target=run, name='ntp-sampler')
        thread.start()
        try:
            yield result
        finally:
            done.set()
            thread.join()
        sys.stderr.write('sampler: %s\n' % {
            k: v for k, v in result['report'].to_dict().items()
            if k in ('samples', 'rate_hz', 'violating_samples',
                     'longest_window_ms')})

    def assert_no_trace(self, project, server_id):
        """Nothing of the project or the server is left on the host."""
        self.assertEqual([], self.partition_dirs(project))
        self.assertRaises(libvirt.libvirtError,
                          self.libvirt.conn.lookupByUUIDString, server_id)
        self.assertNotIn(server_id, self.tenant_pin.claims())
        self.assertNotIn(project, self.tenant_pin.tenant_map())

    def thread_cpus(self, servers):
        """``{server id: (QEMU PID, {vCPU index: allowed CPUs}, allowed
        CPUs of the other threads)}``, from /proc.

        What a comparison of two readings is about: the same QEMU process,
        each vCPU thread where it was, and every other thread (emulator,
        I/O, QEMU's worker threads) on the same CPUs. Worker threads come
        and go on their own, so their ids are not compared, only where
        each one may run.
        """
        result = {}
        for server in servers:
            vcpus, others = {}, set()
            for task in self.guest_threads(server):
                if task.vcpu is None:
                    others.add(task.allowed_cpus)
                else:
                    vcpus[task.vcpu] = task.allowed_cpus
            result[server['id']] = (self.qemu_pid(server), vcpus,
                                    frozenset(others))
        return result

    def partition_inode(self, project):
        """The inode of the partition's cpuset cgroup: a partition removed
        and created again has a new one."""
        return os.stat(self.layout.cpuset.path(
            '/', self.partition_dir(project))).st_ino

    def partition_dirs(self, project):
        """The partition's directories that exist, in every hierarchy."""
        return [h.path('/', self.partition_dir(project))
                for h in self.layout.ordered()
                if os.path.isdir(h.path('/', self.partition_dir(project)))]

    def assert_host_clean(self, servers):
        """Audit the host from /proc, and check each server's guest.

        :param servers: ``{project: [server, ...]}`` that must be running.
        :returns: ``{project: frozenset(cpus)}`` each tenant may run on.
        """
        report = audit.HostAuditor(
            self.host_topology, housekeeping_cpus=self.housekeeping,
            cgroup_prefix=self.CGROUP_PREFIX).audit()
        self.assertEqual([], [str(v) for v in report.violations],
                         'invariants broken, as the kernel has it: %s'
                         % report.to_dict())
        expected = {p for p, s in servers.items() if s}
        self.assertEqual(expected, set(report.tenants) & set(self.projects),
                         'tenants with running guests: %s' % report.to_dict())
        tenant_map = self.tenant_pin.tenant_map()
        partitions = self.partitions()
        for project, project_servers in servers.items():
            if not project_servers:
                continue
            cpus = report.tenants[project]
            self.assertEqual(tenant_map[project], cpus)
            self.assertEqual(partitions[project], cpus)
            self.assertLessEqual(cpus, self.tenant_cpus)
            self.assertEqual(
                cpus, self.host_topology.whole_core_cpus(cpus),
                'tenant %s holds part of a core' % project)
            for server in project_servers:
                for task in self.guest_threads(server):
                    self.assertIn(
                        '/%s/' % self.partition_dir(project),
                        task.cpuset_cgroup + '/',
                        'thread %d (%s) of server %s' % (
                            task.tid, task.comm, server['id']))
                    self.assertLessEqual(task.allowed_cpus, cpus)
        cores = {}
        for project in expected:
            for core in self.host_topology.cores_of(report.tenants[project]):
                self.assertNotIn(core, cores, 'tenants %s and %s share core '
                                 '%s' % (cores.get(core), project, core))
                cores[core] = project
        return {p: report.tenants[p] for p in expected}


def _remove_leftovers(conn, name_prefix, projects, layout):
    """After Nova's services stopped: destroy the test's guests that are
    left (by name), then its tenants' partitions, bottom-up (systemd's
    slices through systemd, by the privsep daemon, which still runs)."""
    for dom in conn.listAllDomains():
        if not dom.name().startswith(name_prefix):
            continue
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()
    partitions = cgroups.CgroupPartitions(root='/')

    def removed(project):
        try:
            partitions.remove_partition(project)
        except cgroups.PartitionBusy:
            return False
        return True
    for project in projects:
        if layout.slices('/'):
            lvf.wait_for(lambda: removed(project),
                         'partition of %s to empty' % project,
                         lvf.CGROUP_EMPTY_TIMEOUT)
        for hierarchy in layout.ordered():
            lvf.remove_cgroup_tree(hierarchy.path(
                '/', cgroupfs.partition_dir(project, layout.slices('/'))))
