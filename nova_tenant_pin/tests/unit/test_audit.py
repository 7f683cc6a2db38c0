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

"""The audit against a fake /proc tree: what it flags and what it does not."""

import json
import os

import ddt
import fixtures

from nova_tenant_pin import audit
from nova_tenant_pin.cmd import main as cli
from nova_tenant_pin import domain_xml
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests.unit import test_topology
from nova_tenant_pin import topology

# Two cores of two threads: [0, 2] and [1, 3].
HOST = topology.HostTopology({0: [[0, 2], [1, 3]]})


class FakeProc:
    def __init__(self, root):
        self.root = root

    def guest(self, pid, tenant=None, cpus='0,2', prefix='/machine',
              extra_tasks=(), cmdline=None):
        """A QEMU process: a main thread, two vCPUs, and ``extra_tasks``
        of (comm, cpus); ``cmdline`` its arguments, as libvirt starts it."""
        part = ('%s/tenant-%s.partition' % (prefix, tenant) if tenant
                else prefix)
        cg = '%s/qemu-%d-guest.libvirt-qemu' % (part, pid)
        self._write('%d/comm' % pid, 'qemu-system-x86')
        if cmdline is not None:
            self._write('%d/cmdline' % pid, '\0'.join(cmdline) + '\0',
                        newline=False)
        tasks = [('qemu-system-x86', cpus, cg + '/emulator'),
                 ('CPU 0/KVM', cpus, cg + '/vcpu0'),
                 ('CPU 1/KVM', cpus, cg + '/vcpu1')]
        tasks += [(comm, c, cg) for comm, c in extra_tasks]
        for n, (comm, allowed, path) in enumerate(tasks):
            tid = pid + n
            base_ = '%d/task/%d/' % (pid, tid)
            self._write(base_ + 'comm', comm)
            self._write(base_ + 'status', 'Name:\t%s\nCpus_allowed_list:\t%s'
                        % (comm, allowed))
            self._write(base_ + 'cgroup', '12:pids:/\n5:cpuset:%s\n0::/'
                        % path)

    def process(self, pid, comm):
        self._write('%d/comm' % pid, comm)

    def _write(self, path, text, newline=True):
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'w') as f:
            f.write(text + ('\n' if newline else ''))


def libvirt_cmdline(name, uuid):
    """The start of the command line libvirt gives QEMU."""
    return ['/usr/bin/qemu-system-x86_64', '-name',
            'guest=%s,debug-threads=on' % name.replace(',', ',,'), '-S',
            '-uuid', uuid, '-smp', '2']


def domain(name, uuid, key=None, partition=None):
    return domain_xml.DomainInfo(
        uuid=uuid, name=name, active=True, persistent=True, vcpus=2,
        partition=domain_xml.PARTITION_PREFIX + partition if partition
        else None, key=key)


UUID_A = '6c1f0d0e-8d4b-4a59-9a8e-0d5f0d7a0a01'
UUID_B = '6c1f0d0e-8d4b-4a59-9a8e-0d5f0d7a0a02'


@ddt.ddt
class TestHostAuditor(base.TestCase):

    def setUp(self):
        super().setUp()
        self.proc = FakeProc(self.useFixture(fixtures.TempDir()).path)

    def auditor(self, **kw):
        return audit.HostAuditor(HOST, proc_root=self.proc.root, **kw)

    def test_disjoint_tenants_are_clean(self):
        self.proc.guest(100, 'a', '0,2')
        self.proc.guest(200, 'b', '1,3')
        self.proc.process(300, 'bash')
        report = self.auditor().audit()
        self.assertTrue(report.clean, report.violations)
        self.assertEqual(6, report.threads)
        self.assertEqual(2, report.guests)
        self.assertEqual({'a': frozenset({0, 2}), 'b': frozenset({1, 3})},
                         report.tenants)

    def test_siblings_of_one_core_in_two_tenants(self):
        """CPU 0 and CPU 2 are one core: different CPUs, same core."""
        self.proc.guest(100, 'a', '0')
        self.proc.guest(200, 'b', '2')
        report = self.auditor().audit()
        self.assertEqual(1, len(report.violations))
        v = report.violations[0]
        self.assertEqual(audit.SHARED_CORE, v.kind)
        self.assertEqual(('a', 'b'), v.keys)
        self.assertEqual((0, 2), v.cpus)
        self.assertIn('tenants a and b may both run on core 0,2', str(v))

    def test_one_stray_emulator_thread_is_enough(self):
        self.proc.guest(100, 'a', '0,2',
                        extra_tasks=[('IO iothread1', '0-3')])
        self.proc.guest(200, 'b', '1,3')
        report = self.auditor().audit()
        self.assertEqual([audit.SHARED_CORE],
                         [v.kind for v in report.violations])
        self.assertIn(103, report.violations[0].tids)

    def test_kernel_workers_do_not_count(self):
        self.proc.guest(100, 'a', '0,2',
                        extra_tasks=[('kvm-nx-lpage-re', '0-3')])
        self.proc.guest(200, 'b', '1,3')
        self.assertTrue(self.auditor().audit().clean)

    def test_housekeeping_core(self):
        self.proc.guest(100, 'a', '1')
        report = self.auditor(housekeeping_cpus=[3]).audit()
        self.assertEqual([audit.HOUSEKEEPING],
                         [v.kind for v in report.violations])
        self.assertEqual((1,), report.violations[0].cpus)

    def test_unconfined_guests_are_tenants_of_their_own(self):
        self.proc.guest(100, None, '0-3')
        self.proc.guest(200, 'b', '1,3')
        report = self.auditor().audit()
        self.assertEqual(('b', 'unknown-guest-pid-100'),
                         report.violations[0].keys)

    def test_pid_keys_maps_unpartitioned_guests(self):
        self.proc.guest(100, None, '0,2')
        self.proc.guest(200, None, '0,2')
        mapping = {100: 'a', 200: 'a'}
        self.assertTrue(self.auditor(pid_keys=mapping.get).audit().clean)
        mapping[200] = 'b'
        self.assertFalse(self.auditor(pid_keys=mapping.get).audit().clean)

    def test_isolation_key_wins_over_the_partition(self):
        """Two guests of one isolation group, still in their projects' old
        partitions, may share a core; a third key may not."""
        self.proc.guest(100, 'p1', '0', cmdline=libvirt_cmdline(
            'instance-a', UUID_A))
        self.proc.guest(200, 'p2', '2', cmdline=libvirt_cmdline(
            'instance-b', UUID_B))
        self.assertFalse(self.auditor().audit().clean)
        keys = audit.DomainKeys(
            [domain('instance-a', UUID_A, key='grp', partition='p1'),
             domain('instance-b', UUID_B, key='grp', partition='p2')],
            self.proc.root)
        report = self.auditor(pid_keys=keys).audit()
        self.assertTrue(report.clean, report.violations)
        self.assertEqual({'grp': frozenset({0, 2})}, report.tenants)
        self.proc.guest(300, 'p3', '1,3')
        self.assertTrue(self.auditor(pid_keys=keys).audit().clean)

    def test_key_of_a_moved_guest_meets_its_new_neighbours(self):
        """A guest whose key changed counts as its new key: beside a guest
        of its old partition's tenant on one core, it is a violation."""
        self.proc.guest(100, 'p1', '0', cmdline=libvirt_cmdline(
            'instance-a', UUID_A))
        self.proc.guest(200, 'p1', '2', cmdline=libvirt_cmdline(
            'instance-b', UUID_B))
        keys = audit.DomainKeys(
            [domain('instance-a', UUID_A, key='grp', partition='p1'),
             domain('instance-b', UUID_B, partition='p1')],
            self.proc.root)
        report = self.auditor(pid_keys=keys).audit()
        self.assertEqual([('grp', 'p1')],
                         [v.keys for v in report.violations])

    def test_cgroup_prefix_separates_hosts(self):
        self.proc.guest(100, 'a', '0,2', prefix='/machine')
        self.proc.guest(200, 'b', '0,2', prefix='/hostB/machine')
        self.assertTrue(self.auditor(cgroup_prefix='/machine').audit().clean)
        self.assertTrue(self.auditor(
            cgroup_prefix='/hostB').audit().clean)
        self.assertFalse(self.auditor().audit().clean)

    def test_a_process_that_becomes_qemu_later_is_seen(self):
        """libvirtd forks, then execs QEMU: the fork must not be written
        off as "not QEMU" for good."""
        self.proc.process(100, 'rpc-libvirtd')
        self.proc.process(200, 'bash')
        auditor = self.auditor()
        self.assertEqual([], auditor.qemu_pids())
        self.proc.guest(100, 'a', '0,2')  # exec: comm is QEMU now
        self.proc.guest(200, 'b', '1,3')
        self.assertEqual([100, 200], auditor.qemu_pids())

    def test_not_qemu_is_final_after_the_grace(self):
        """Past the grace a process is not read again: what keeps the
        sampler's rate up on a host with hundreds of processes."""
        self.proc.process(200, 'bash')
        auditor = self.auditor()
        self.useFixture(fixtures.MonkeyPatch('time.monotonic', lambda: 0.0))
        self.assertEqual([], auditor.qemu_pids())
        self.useFixture(fixtures.MonkeyPatch(
            'time.monotonic', lambda: audit.EXEC_GRACE + 1))
        self.proc.guest(200, 'b', '1,3')
        self.assertEqual([], auditor.qemu_pids())

    def test_vanished_process_is_skipped(self):
        self.proc.process(100, 'qemu-system-x86')  # no task directory
        self.assertEqual(0, self.auditor().audit().threads)


class TestDomainKeys(base.TestCase):
    """QEMU processes to libvirt domains, through /proc/<pid>/cmdline."""

    def setUp(self):
        super().setUp()
        self.proc = FakeProc(self.useFixture(fixtures.TempDir()).path)

    def test_name_and_uuid_from_the_command_line(self):
        self.proc.guest(100, cmdline=libvirt_cmdline('web,1', UUID_A))
        self.assertEqual(('web,1', UUID_A),
                         audit.qemu_domain_of(100, self.proc.root))

    def test_old_bare_name_and_no_uuid(self):
        self.proc.guest(100, cmdline=['qemu-kvm', '-name', 'web,process=x',
                                      '-m', '512'])
        self.assertEqual(('web', None),
                         audit.qemu_domain_of(100, self.proc.root))

    def test_gone_process(self):
        self.assertEqual((None, None),
                         audit.qemu_domain_of(999, self.proc.root))

    def test_uuid_first_then_name(self):
        keys = audit.DomainKeys(
            [domain('a', UUID_A, key='k1'),
             domain('b', UUID_B.upper(), key='k2'),
             domain('loose', '6c1f0d0e-8d4b-4a59-9a8e-0d5f0d7a0a03')],
            self.proc.root)
        self.proc.guest(100, cmdline=libvirt_cmdline('renamed', UUID_A))
        self.proc.guest(200, cmdline=['qemu-kvm', '-name', 'guest=b'])
        self.proc.guest(300, cmdline=libvirt_cmdline(
            'loose', '6c1f0d0e-8d4b-4a59-9a8e-0d5f0d7a0a03'))
        self.proc.guest(400, cmdline=libvirt_cmdline(
            'stranger', '6c1f0d0e-8d4b-4a59-9a8e-0d5f0d7a0a04'))
        self.proc.guest(500)
        self.assertEqual(['k1', 'k2', None, None, None],
                         [keys(pid) for pid in (100, 200, 300, 400, 500)])
        # Unknown to libvirt or to tenant-pin: the partition decides.
        self.proc.guest(600, 'p6', '1,3', cmdline=libvirt_cmdline(
            'stranger', '6c1f0d0e-8d4b-4a59-9a8e-0d5f0d7a0a04'))
        report = audit.HostAuditor(HOST, proc_root=self.proc.root,
                                   pid_keys=keys).audit()
        self.assertIn('p6', report.tenants)
        self.assertIn('k1', report.tenants)


class FakeAuditor:
    def __init__(self, results):
        self.results = list(results)

    def snapshot(self):
        return {}

    def check(self, snapshot):
        return self.results.pop(0) if self.results else []


class TestSampler(base.TestCase):

    def test_counts_windows_and_samples(self):
        bad = [audit.Violation(audit.SHARED_CORE, ('a', 'b'), (0,), (1,))]
        auditor = FakeAuditor([[], bad, bad, [], bad, []])
        calls = iter(range(100))
        report = audit.Sampler([auditor]).run(lambda: next(calls) >= 6)
        self.assertEqual(6, report.samples)
        self.assertEqual(3, report.violating_samples)
        self.assertEqual(2, len(report.windows_ms))
        self.assertEqual(bad, report.first_violations[:1])
        self.assertGreater(report.rate_hz, 0)
        self.assertEqual([frozenset()], report.guests_seen)

    def test_clean_run(self):
        calls = iter(range(100))
        report = audit.Sampler([FakeAuditor([])]).run(
            lambda: next(calls) >= 50)
        self.assertEqual(50, report.samples)
        self.assertEqual(0, report.violating_samples)
        self.assertEqual([], report.windows_ms)


class TestAuditCommand(base.TestCase):

    def setUp(self):
        super().setUp()
        root = self.useFixture(fixtures.TempDir()).path
        self.proc = FakeProc(os.path.join(root, 'proc'))
        self.sys_root = os.path.join(root, 'sysroot')
        test_topology.fake_sysfs(self.sys_root, {0: '0-3'},
                                 {0: '0,2', 2: '0,2', 1: '1,3', 3: '1,3'})
        # A cgroup2 tree with the cpuset controller, as mountinfo shows it.
        os.makedirs(os.path.join(self.sys_root, 'proc', 'self'))
        with open(os.path.join(self.sys_root, 'proc', 'self',
                               'mountinfo'), 'w') as f:
            f.write('30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - '
                    'cgroup2 cgroup2 rw\n')
        self.cgroup_mount = os.path.join(self.sys_root, 'sys', 'fs',
                                         'cgroup')
        os.makedirs(os.path.join(self.cgroup_mount, 'machine'))
        with open(os.path.join(self.cgroup_mount,
                               'cgroup.controllers'), 'w') as f:
            f.write('cpuset cpu io memory pids\n')
        # Housekeeping on core 1,3, as a host's nova.conf would set it.
        self.flags(housekeeping_cpus='1,3')
        self.stdout = self.useFixture(fixtures.StringStream('stdout'))
        self.useFixture(fixtures.MonkeyPatch('sys.stdout',
                                             self.stdout.stream))
        self.stderr = self.useFixture(fixtures.StringStream('stderr'))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr',
                                             self.stderr.stream))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.main.load_config', lambda args: None))
        self.domains = []
        self.uris = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.audit.read_domains', self.read_domains))

    def read_domains(self, uri):
        self.uris.append(uri)
        if isinstance(self.domains, Exception):
            raise self.domains
        return self.domains

    def err(self):
        self.stderr.stream.flush()
        return self.stderr.getDetails()['stderr'].as_text()

    def run_audit(self, *args):
        rc = cli.main(['audit', '--proc-root', self.proc.root,
                       '--sysfs-root', self.sys_root] + list(args))
        self.stdout.stream.flush()
        return rc, self.stdout.getDetails()['stdout'].as_text()

    def test_clean_exits_0(self):
        self.proc.guest(100, 'a', '0,2')
        rc, out = self.run_audit('--format', 'json')
        self.assertEqual(0, rc)
        self.assertTrue(json.loads(out)['clean'])

    def test_violation_exits_1(self):
        self.proc.guest(100, 'a', '0')
        self.proc.guest(200, 'b', '2')
        rc, out = self.run_audit()
        self.assertEqual(1, rc)
        self.assertIn('tenants a and b may both run on core 0,2', out)

    def test_housekeeping_from_flag(self):
        self.proc.guest(100, 'a', '1,3')
        rc, out = self.run_audit('--housekeeping-cpus', '1', '--format',
                                 'json')
        self.assertEqual(1, rc)
        self.assertEqual('housekeeping',
                         json.loads(out)['violations'][0]['kind'])

    def test_keys_from_libvirt(self):
        self.proc.guest(100, 'p1', '0', cmdline=libvirt_cmdline(
            'instance-a', UUID_A))
        self.proc.guest(200, 'p2', '2', cmdline=libvirt_cmdline(
            'instance-b', UUID_B))
        self.domains = [domain('instance-a', UUID_A, key='grp'),
                        domain('instance-b', UUID_B, key='grp')]
        rc, out = self.run_audit('--format', 'json', '--libvirt-uri',
                                 'qemu:///x')
        self.assertEqual(0, rc)
        doc = json.loads(out)
        self.assertEqual((True, 'libvirt', ['grp']), (
            doc['isolated'], doc['tenants_from'], list(doc['tenants'])))
        self.assertEqual(['qemu:///x'], self.uris)
        self.assertEqual('', self.err())

    def test_without_libvirt_the_partitions_decide(self):
        self.proc.guest(100, 'p1', '0', cmdline=libvirt_cmdline(
            'instance-a', UUID_A))
        self.proc.guest(200, 'p2', '2', cmdline=libvirt_cmdline(
            'instance-b', UUID_B))
        self.domains = OSError('Failed to connect socket')
        rc, out = self.run_audit('--without-libvirt')
        self.assertEqual(1, rc)
        self.assertEqual([], self.uris)
        self.assertIn('tenants p1 and p2 may both run on core 0,2', out)
        self.assertIn('(tenants from cgroup partitions)', out)
        self.assertIn('host NOT isolated: 1 violation(s)', out)

    def test_isolated_table(self):
        self.proc.guest(100, 'a', '0,2')
        rc, out = self.run_audit()
        self.assertEqual(0, rc)
        self.assertTrue(out.endswith('host isolated\n'), out)

    def test_bad_cpu_spec_exits_2(self):
        rc = cli.main(['audit', '--proc-root', self.proc.root,
                       '--sysfs-root', self.sys_root,
                       '--housekeeping-cpus', 'x'])
        self.assertEqual(2, rc)

    def test_libvirt_unreachable_fails(self):
        """An audit that could not read libvirt saw no guest's isolation
        key: it exits 2 with one line, never "host isolated"."""
        self.proc.guest(100, 'a', '0,2')
        self.domains = OSError('Failed to connect socket')
        rc, out = self.run_audit()
        self.assertEqual(2, rc)
        self.assertNotIn('host isolated', out)
        err = self.err().strip().splitlines()
        self.assertEqual(1, len(err), err)
        self.assertIn('cannot read the domains from libvirt at '
                      'qemu:///system (Failed to connect socket)', err[0])

    def test_no_housekeeping_configured_fails_as_the_driver_does(self):
        self.flags(housekeeping_cpus=None)
        rc, out = self.run_audit()
        self.assertEqual(2, rc)
        self.assertIn('[tenant_pin] housekeeping_cpus: unset', self.err())

    def test_housekeeping_not_online_fails(self):
        self.flags(housekeeping_cpus='1,3,64')
        rc, out = self.run_audit()
        self.assertEqual(2, rc)
        self.assertIn('[tenant_pin] housekeeping_cpus: CPUs 64 are not '
                      'online', self.err())

    def test_nonexistent_cgroup_prefix_fails(self):
        rc, out = self.run_audit('--cgroup-prefix', '/machine.slice')
        self.assertEqual(2, rc)
        self.assertIn('--cgroup-prefix /machine.slice: no such cgroup',
                      self.err())

    def test_no_cgroup_tree_fails(self):
        os.unlink(os.path.join(self.sys_root, 'proc', 'self', 'mountinfo'))
        with open(os.path.join(self.sys_root, 'proc', 'self', 'mountinfo'),
                  'w') as f:
            f.write('22 1 8:1 / / rw - ext4 /dev/sda1 rw\n')
        rc, out = self.run_audit()
        self.assertEqual(2, rc)
        self.assertIn('cgroup tree: ', self.err())

    def test_json_says_what_was_checked(self):
        self.proc.guest(100, 'a', '0,2')
        rc, out = self.run_audit('--format', 'json', '--cgroup-prefix',
                                 '/machine')
        self.assertEqual(0, rc)
        checked = json.loads(out)['checked']
        self.assertEqual('1,3', checked['housekeeping_cpus'])
        self.assertEqual('0-3', checked['online_cpus'])
        self.assertEqual('qemu:///system', checked['libvirt_uri'])
        self.assertEqual(os.path.join(self.cgroup_mount, 'machine'),
                         checked['cgroup_dir'])
        self.assertEqual(1, checked['guests'])

    def test_nova_cpu_spec_syntax(self):
        """``0-3,^0,^2`` (Nova's exclusion syntax) works as in the
        driver."""
        self.proc.guest(100, 'a', '0,2')
        rc, out = self.run_audit('--housekeeping-cpus', '0-3,^0,^2',
                                 '--format', 'json')
        self.assertEqual(0, rc, self.err())
        self.assertEqual('1,3', json.loads(out)['checked'][
            'housekeeping_cpus'])
