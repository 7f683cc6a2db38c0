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

"""Fixtures for the enforcement tests: fake hosts, real cgroups, privsep.

* :class:`ClientModeOff` runs privileged functions in-process;
* :class:`FakeHost` builds a fake ``/proc`` and ``/sys`` (cgroup v1 hybrid
  or v2, IRQs, the workqueue mask, tasks) and points ``privsep.HOST_ROOT``
  at it; :class:`FakeKernel` adds the few kernel behaviours the code relies
  on (a new cgroup directory has its files, moving a task removes it from
  its old cgroup, ``effective_cpus`` follows ``cpus``);
* :class:`CgroupSubtree` owns a uniquely named real cgroup root in every
  hierarchy and removes it bottom-up on cleanup, even after a failure;
* :class:`OwnedProcess` starts a ``sleep`` and kills it by PID on cleanup;
* :class:`RenamedProcess` starts a process that names itself with bytes
  that are not UTF-8 (as any local user may), killed by PID on cleanup;
* :class:`PrivsepDaemon` starts the real privsep daemon through the venv's
  ``privsep-helper`` (there is no sudo here) and stops it on cleanup.
"""

import ctypes
import errno
import os
import select
import signal
import subprocess
import sys
import uuid

import fixtures
from oslo_privsep import capabilities

from nova_tenant_pin import cgroupfs
from nova_tenant_pin import hostfs
from nova_tenant_pin import privsep

V1_CONTROLLERS = ('cpuset', 'cpu', 'cpuacct', 'memory', 'devices',
                  'freezer', 'blkio', 'pids')


class ClientModeOff(fixtures.Fixture):
    """Privileged functions run in this process, no daemon."""

    def _setUp(self):
        privsep.tenant_pin_pctxt.set_client_mode(False)
        self.addCleanup(privsep.tenant_pin_pctxt.set_client_mode, True)


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def _v1_files(path, cpus='', mems='', exclusive='0'):
    for name, text in (('cpuset.cpus', cpus), ('cpuset.mems', mems),
                       ('cpuset.effective_cpus', cpus),
                       ('cpuset.cpu_exclusive', exclusive),
                       ('tasks', ''), ('cgroup.procs', '')):
        _write(os.path.join(path, name), text)


def _v2_files(path, cpus='', mems=''):
    for name, text in (('cpuset.cpus', cpus), ('cpuset.mems', mems),
                       ('cpuset.cpus.effective', cpus),
                       ('cpuset.cpus.partition', 'member'),
                       ('cgroup.procs', ''),
                       ('cgroup.controllers', 'cpuset cpu memory pids'),
                       ('cgroup.subtree_control', '')):
        _write(os.path.join(path, name), text)


def read_or_none(path):
    """A kernel file's text, stripped; None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def fd_path(fd):
    """The path a descriptor was opened at."""
    return os.readlink('/proc/self/fd/%d' % fd)


class FakeFilesystems(fixtures.Fixture):
    """``hostfs.fs_type`` of a fake tree: what lies under ``root`` is on
    the file system the real host has at that place (cgroup v1 mounts,
    cgroup2, proc, sysfs), anything else on what it really is on.

    :param cgroup2_mounts: host paths that are cgroup2 mounts; other
        directories of ``/sys/fs/cgroup/<name>`` are cgroup v1.
    """

    def __init__(self, root, cgroup2_mounts=('/sys/fs/cgroup/unified',)):
        self.root = root
        self.cgroup2 = tuple(cgroup2_mounts)

    def kind(self, host_path):
        def under(top):
            return host_path == top or host_path.startswith(top + '/')
        if any(under(m) for m in self.cgroup2):
            return hostfs.CGROUP2
        if host_path.startswith('/sys/fs/cgroup/'):
            return hostfs.CGROUP
        if under('/proc'):
            return hostfs.PROC
        if under('/sys'):
            return hostfs.SYSFS
        return None

    def _setUp(self):
        real = hostfs.fs_type
        root = self.root

        def fs_type(fd):
            path = fd_path(fd)
            if path == root or path.startswith(root + '/'):
                kind = self.kind('/' + os.path.relpath(path, root))
                if kind is not None:
                    return kind
            return real(fd)
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.hostfs.fs_type', fs_type))


class FakeHost(fixtures.Fixture):
    """A fake host root with ``privsep.HOST_ROOT`` pointing at it.

    :param cgroup: ``'hybrid'`` (v1 controllers plus cgroup2 at
        ``/sys/fs/cgroup/unified``, like this machine) or ``'v2'``.
    """

    def __init__(self, cgroup='hybrid', cpus=2, irqs=(24, 25, 26),
                 tasks=(1, 2, 10, 11, 12)):
        self.cgroup = cgroup
        self.ncpus = cpus
        self.irq_numbers = irqs
        self.task_ids = tasks

    def _setUp(self):
        self.root = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.privsep.HOST_ROOT', self.root))
        self.useFixture(FakeFilesystems(self.root, (
            '/sys/fs/cgroup',) if self.cgroup == 'v2' else (
            '/sys/fs/cgroup/unified',)))
        allcpus = '0-%d' % (self.ncpus - 1)
        self.write('/sys/devices/system/cpu/online', allcpus)
        self.write('/sys/devices/system/cpu/possible', allcpus)
        self.write('/sys/devices/system/node/online', '0')
        self.write('/proc/sys/kernel/pid_max', '4194304')
        mounts = []
        if self.cgroup == 'v2':
            mounts.append('/sys/fs/cgroup - cgroup2 cgroup2 rw')
            _v2_files(self.path('/sys/fs/cgroup'), allcpus, '0')
            self.write('/proc/cgroups', self._proc_cgroups({}))
        else:
            ids = {}
            for n, name in enumerate(V1_CONTROLLERS, start=1):
                ids[name] = n
                mounts.append('/sys/fs/cgroup/%s - cgroup cgroup rw,%s'
                              % (name, name))
                _v1_files(self.path('/sys/fs/cgroup/' + name),
                          allcpus, '0', '1')
            mounts.append('/sys/fs/cgroup/systemd - cgroup cgroup '
                          'rw,name=systemd')
            os.makedirs(self.path('/sys/fs/cgroup/systemd'))
            mounts.append('/sys/fs/cgroup/unified - cgroup2 cgroup2 rw')
            os.makedirs(self.path('/sys/fs/cgroup/unified'))
            _write(self.path('/sys/fs/cgroup/unified/cgroup.controllers'),
                   'hugetlb')
            _write(self.path('/sys/fs/cgroup/unified/cgroup.procs'), '')
            self.write('/proc/cgroups', self._proc_cgroups(ids))
        self.write('/proc/self/mountinfo', ''.join(
            '%d 23 0:%d / %s\n' % (30 + n, 30 + n, m.replace(' - ', ' rw - '))
            for n, m in enumerate(mounts)))
        for irq in self.irq_numbers:
            self.write('/proc/irq/%d/smp_affinity_list' % irq, allcpus)
        self.write('/proc/irq/default_smp_affinity',
                   cgroupfs.format_cpu_mask(range(self.ncpus)))
        self.write('/sys/devices/virtual/workqueue/cpumask',
                   cgroupfs.format_cpu_mask(range(self.ncpus)))
        self.write('/proc/1/comm', 'init')
        for tid in self.task_ids:
            self.add_task(tid)
        if self.cgroup != 'v2':
            self.write('/sys/fs/cgroup/cpuset/tasks', '\n'.join(
                str(t) for t in self.task_ids))

    @staticmethod
    def _proc_cgroups(ids):
        lines = ['#subsys_name\thierarchy\tnum_cgroups\tenabled']
        for name in V1_CONTROLLERS + ('hugetlb',):
            lines.append('%s\t%d\t1\t1' % (name, ids.get(name, 0)))
        return '\n'.join(lines) + '\n'

    def path(self, path):
        return cgroupfs.host_path(self.root, path)

    def write(self, path, text):
        _write(self.path(path), text)

    def read(self, path):
        with open(self.path(path)) as f:
            return f.read()

    def add_task(self, tid, flags=0, comm='task', affinity=None,
                 starttime=100):
        """A fake /proc/<tid>: ``stat`` with ``comm``, ``flags`` (field 9)
        and ``starttime`` (field 22), and ``status`` with its
        Cpus_allowed_list (default: every CPU)."""
        self.write('/proc/%d/stat' % tid,
                   '%d (%s) S 1 1 1 0 -1 %d 0 0 0 0 0 0 0 0 20 0 1 0 %d'
                   % (tid, comm, flags, starttime))
        self.write('/proc/%d/status' % tid,
                   'Name:\t%s\nCpus_allowed_list:\t%s\n'
                   % (comm, affinity or '0-%d' % (self.ncpus - 1)))

    def snapshot(self):
        """``{relpath: content or symlink target}`` of the whole tree."""
        result = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, self.root)
                if os.path.islink(path):
                    result[rel] = '-> ' + os.readlink(path)
                elif os.path.isfile(path):
                    with open(path, 'rb') as f:
                        result[rel] = f.read().decode(
                            'utf-8', 'backslashreplace')
                else:
                    result[rel] = '<dir>'
        return result


class FakeKernel(fixtures.Fixture):
    """The cgroupfs behaviours a fake tree lacks, for code run in-process:
    ``mkdir`` in a cgroup hierarchy creates its files and ``rmdir`` removes
    them (EBUSY while it holds a task), a task written to a
    ``tasks``/``cgroup.procs`` file leaves its previous cgroup, and
    ``cpuset.cpus`` sets the effective CPUs."""

    def __init__(self, host):
        self.host = host

    def _setUp(self):
        real_mkdir = os.mkdir
        host = self.host
        cgroup_top = host.path('/sys/fs/cgroup')

        def mkdir(path, *args, **kwargs):
            real_mkdir(path, *args, **kwargs)
            path = os.fspath(path)
            if kwargs.get('dir_fd') is not None:
                path = os.path.join(fd_path(kwargs['dir_fd']), path)
            if path.startswith(cgroup_top + os.sep):
                if host.cgroup == 'v2':
                    _v2_files(path)
                else:
                    _v1_files(path)

        def move(self, tid, method):
            # The file the real write would open, opened the same way
            # (so a symlink is refused), then the kernel's bookkeeping.
            target = 'tasks' if (self.version, method) == (1, 'add_task') \
                else 'cgroup.procs'
            hostfs.check_file(os.path.join(self.path, target),
                              cgroupfs.V1_KINDS if self.version == 1
                              else cgroupfs.V2_KINDS)
            mount = next(h.mount for h in cgroupfs.detect_layout(
                host.root).hierarchies if self.path.startswith(h.mount))
            name = 'tasks' if self.version == 1 else 'cgroup.procs'
            for dirpath, _, filenames in os.walk(mount):
                if name in filenames:
                    path = os.path.join(dirpath, name)
                    with open(path) as f:
                        tids = [t for t in f.read().split() if t != str(tid)]
                    if dirpath == self.path:
                        tids.append(str(tid))
                    _write(path, '\n'.join(tids))

        def set_v1_cpus(self, cpus):
            original_v1_set_cpus(self, cpus)
            _write(os.path.join(self.path, 'cpuset.effective_cpus'),
                   ','.join(str(c) for c in sorted(cpus)))

        real_rmdir = os.rmdir

        def rmdir(path, *args, **kwargs):
            path = os.fspath(path)
            if kwargs.get('dir_fd') is not None:
                path = os.path.join(fd_path(kwargs.pop('dir_fd')), path)
            if path.startswith(cgroup_top + os.sep) and os.path.isdir(path):
                # cgroupfs: a directory with only its own files goes away,
                # one that still holds a task is busy.
                for name in ('tasks', 'cgroup.procs'):
                    try:
                        with open(os.path.join(path, name)) as f:
                            if f.read().strip():
                                raise OSError(errno.EBUSY,
                                              os.strerror(errno.EBUSY), path)
                    except FileNotFoundError:
                        pass
                children = [os.path.join(path, n) for n in os.listdir(path)]
                if any(os.path.islink(c) or os.path.isdir(c)
                       for c in children):
                    # A child cgroup (or what no cgroupfs holds): refused
                    # before anything is removed.
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
                for child in children:
                    os.unlink(child)
            real_rmdir(path, *args, **kwargs)

        original_v1_set_cpus = cgroupfs.V1Cgroup.set_cpus
        self.useFixture(fixtures.MonkeyPatch('os.mkdir', mkdir))
        self.useFixture(fixtures.MonkeyPatch('os.rmdir', rmdir))
        for cls in (cgroupfs.V1Cgroup, cgroupfs.V2Cgroup):
            for method in ('add_task', 'add_process'):
                self.useFixture(fixtures.MonkeyPatch(
                    '%s.%s.%s' % (cls.__module__, cls.__name__, method),
                    lambda group, tid, method=method: move(group, tid,
                                                           method)))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cgroupfs.V1Cgroup.set_cpus', set_v1_cpus))


class CgroupSubtree(fixtures.Fixture):
    """A real, test-owned cgroup root ``/ntp-test-<uuid>`` in every
    hierarchy. Cleanup removes every directory under it bottom-up (a
    directory that still holds a task is reported by the failing rmdir, so
    start the tasks with OwnedProcess *after* this fixture: cleanups run
    last-in first-out)."""

    def _setUp(self):
        self.root = '/ntp-test-%s' % uuid.uuid4().hex[:10]
        self.layout = cgroupfs.detect_layout('/')
        self.addCleanup(self._remove)

    def path(self, hierarchy, *parts):
        return hierarchy.path(self.root, *parts)

    def _remove(self):
        errors = []
        for hierarchy in self.layout.hierarchies:
            top = hierarchy.path(self.root)
            if not os.path.isdir(top):
                continue
            for rel in reversed(cgroupfs.subtree(top)):
                try:
                    os.rmdir(os.path.join(top, rel) if rel else top)
                except OSError as e:
                    errors.append('%s/%s: %s' % (top, rel, e))
        if errors:
            raise AssertionError('cgroups left behind: %s' % errors)


class OwnedProcess(fixtures.Fixture):
    """A ``sleep`` started by the test, killed by PID on cleanup."""

    def __init__(self, user=None):
        self.user = user

    def _setUp(self):
        self.process = subprocess.Popen(['sleep', '3600'], user=self.user)
        self.pid = self.process.pid
        self.addCleanup(self.stop)

    def stop(self):
        """Kill (by PID) and reap; safe to call twice."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def cpus_allowed(self):
        with open('/proc/%d/status' % self.pid) as f:
            for line in f:
                if line.startswith('Cpus_allowed_list:'):
                    return line.split()[1]


class RenamedProcess(fixtures.Fixture):
    """A process of this test that names itself ``name`` (bytes, at most
    15) with ``prctl(PR_SET_NAME)``, as any unprivileged process may.
    ``setUp`` returns once the name is set (the child says so on its
    stdout); cleanup kills it by PID."""

    SCRIPT = (
        'import ctypes, sys\n'
        'name = bytes.fromhex(sys.argv[1])\n'
        'libc = ctypes.CDLL(None, use_errno=True)\n'
        'if libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0) != 0:\n'
        '    sys.exit("prctl: %d" % ctypes.get_errno())\n'
        'sys.stdout.write("ready\\n")\n'
        'sys.stdout.flush()\n'
        'sys.stdin.read()\n')

    def __init__(self, name=b'qemu-system\xff\xfe'):
        self.name = name

    def _setUp(self):
        self.process = subprocess.Popen(
            [sys.executable, '-c', self.SCRIPT, self.name.hex()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.process.pid
        self.addCleanup(self.stop)
        line = self.process.stdout.readline()
        if line != b'ready\n':
            raise AssertionError('the renamed process did not start: %r'
                                 % line)
        with open('/proc/%d/comm' % self.pid, 'rb') as f:
            comm = f.read().rstrip(b'\n')
        if comm != self.name:
            raise AssertionError('comm is %r, not %r' % (comm, self.name))

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process.stdin.close()
        self.process.stdout.close()


def enter_machine(layout, root, pid):
    """Put process ``pid`` into libvirt's machine tree ``<root>/machine``
    of the cpuset hierarchy, as libvirt does with a guest's QEMU (the only
    processes ``privsep.move_task`` moves). The test writes it itself."""
    cpuset = layout.cpuset
    cgroupfs.cgroup(cpuset, cpuset.path(root, cgroupfs.MACHINE)).add_process(
        pid)


def helper_command():
    return '%s/bin/privsep-helper' % sys.prefix


def wait_for_exit(pid, timeout=30):
    """Block until ``pid`` exits, via a pidfd (no polling loop)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


class PrivsepDaemon(fixtures.Fixture):
    """The real privsep daemon of a context of this project
    (``tenant_pin_pctxt`` unless told), started on the first privileged
    call with the venv's privsep-helper as the helper command (no sudo),
    and stopped on cleanup.

    :param conf_fixture: the test's oslo.config fixture.
    :param capabilities: override the context's capability list.
    :param context: the privsep context (``privsep.core_sched_pctxt``).
    """

    def __init__(self, conf_fixture, capabilities=None, context=None):
        self.conf_fixture = conf_fixture
        self.capabilities = capabilities
        self.context = context or privsep.tenant_pin_pctxt

    def _setUp(self):
        group = self.context.cfg_section
        command = helper_command()
        if self.capabilities is not None:
            # The daemon reads its capabilities from its own command line
            # and config files, not from this process's CONF.
            conf = os.path.join(self.useFixture(fixtures.TempDir()).path,
                                'privsep.conf')
            with open(conf, 'w') as f:
                f.write('[%s]\ncapabilities = %s\n' % (group, ','.join(
                    capabilities.CAPS_BYVALUE[c]
                    for c in self.capabilities)))
            command += ' --config-file %s' % conf
        self.conf_fixture.config(group=group, helper_command=command)
        self.context.set_client_mode(True)
        self.pid = None
        self.addCleanup(self._stop)

    def start(self):
        """Start the daemon; returns its PID.

        privsep-helper forks the daemon and exits, so the daemon is this
        process's grandchild. While it starts, this process is a child
        subreaper (prctl), so the orphaned daemon becomes its child: its
        PID is then certain, and cleanup can reap it.
        """
        before = set(_children())
        # NOTE: oslo.privsep reads the helper's stderr in a thread through a
        # file from os.fdopen, bound when oslo_privsep.daemon was imported.
        # In a test worker where Nova's test modules turned on eventlet
        # after that import, that thread is green but its read is not, and
        # the worker blocks forever. The helper's stderr goes to a file.
        stderr = open(os.path.join(self.useFixture(
            fixtures.TempDir()).path, 'privsep-helper.stderr'), 'w')
        self.addCleanup(stderr.close)
        _set_child_subreaper(True)
        try:
            with fixtures.MonkeyPatch('oslo_privsep.daemon._fd_logger',
                                      lambda *a, **kw: stderr):
                self.context.start()
        finally:
            _set_child_subreaper(False)
        started = [pid for pid in set(_children()) - before
                   if b'privsep-helper' in _cmdline(pid)]
        if len(started) != 1:
            raise AssertionError('expected one privsep daemon child, found '
                                 '%s' % started)
        self.pid = started[0]
        return self.pid

    def _stop(self):
        self.context.stop()
        if self.pid is None:
            return
        if not wait_for_exit(self.pid):
            # Ours, by PID: it did not exit when its socket closed.
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


def _set_child_subreaper(on):
    pr_set_child_subreaper = 36
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_child_subreaper, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_CHILD_SUBREAPER)')


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read()
    except OSError:
        return b''


def _children():
    """PIDs whose parent is this process."""
    me = os.getpid()
    result = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            result.append(int(entry))
    return result
