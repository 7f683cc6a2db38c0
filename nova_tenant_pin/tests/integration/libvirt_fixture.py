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

"""A private libvirtd (and virtlogd) for the integration suite.

The fixture installs nothing: tools/setup-host.sh installs the Debian
packages. It writes its own libvirtd.conf (its own socket directory, log and
host UUID) under a temporary directory, starts virtlogd and libvirtd as
daemons, connects to ``qemu:///system`` through its own socket, and in
clean-up destroys the domains the test defined, stops both daemons by the
PIDs they wrote, and waits for them to exit.
"""

import errno
import grp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import fixtures
import libvirt

LIBVIRTD = '/usr/sbin/libvirtd'
VIRTLOGD = '/usr/sbin/virtlogd'
KVM = '/dev/kvm'
START_TIMEOUT = 90  # the first start probes QEMU's capabilities


def missing_requirements():
    """A skip reason when this machine cannot run real guests, else None."""
    if os.geteuid() != 0:
        return 'needs root to run libvirtd and QEMU; CI runs it as root'
    for path in (LIBVIRTD, VIRTLOGD, '/usr/bin/qemu-system-x86_64'):
        if not os.path.exists(path):
            return ('needs %s (tools/setup-host.sh installs it; CI runs '
                    'it)' % path)
    return None


def virt_type():
    """``kvm`` when QEMU (group kvm) may open /dev/kvm, else ``qemu`` (TCG).

    tools/setup-host.sh gives /dev/kvm to group kvm where udev does not.
    """
    try:
        st = os.stat(KVM)
        kvm_gid = grp.getgrnam('kvm').gr_gid
    except (OSError, KeyError):
        return 'qemu'
    return 'kvm' if st.st_gid == kvm_gid and st.st_mode & 0o060 == 0o060 \
        else 'qemu'


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours counts as gone.
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


def wait_for(predicate, what, timeout, interval=0.05):
    """Poll ``predicate`` until it returns something true, and return that;
    TimeoutError naming ``what`` after ``timeout`` seconds. For daemons,
    QEMU and Nova's API, which announce nothing else."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError('timed out after %ds waiting for %s'
                               % (timeout, what))
        time.sleep(interval)


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def define_domain(fixture, xml, start=True):
    """Define (and start) a domain on ``fixture.conn`` and record its name
    in ``fixture.defined``, which the fixture's clean-up removes (through
    :func:`remove_domains`). Both libvirt fixtures, this module's private
    libvirtd and the test host's system one, use it as their ``define``."""
    dom = fixture.conn.defineXML(xml)
    fixture.defined.append(dom.name())
    if start:
        dom.create()
    return dom


class LibvirtdFixture(fixtures.Fixture):
    """Start a private libvirtd; ``self.conn`` is a connection to it."""

    def __init__(self, name='nova-tenant-pin'):
        super().__init__()
        self.name = name

    def _setUp(self):
        self.dir = tempfile.mkdtemp(prefix='ntp-libvirt-')
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.sock_dir = os.path.join(self.dir, 'run')
        os.makedirs(self.sock_dir)
        self.host_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, self.dir))
        conf = os.path.join(self.dir, 'libvirtd.conf')
        with open(conf, 'w') as f:
            f.write('unix_sock_dir = "%s"\n' % self.sock_dir)
            f.write('host_uuid = "%s"\n' % self.host_uuid)
            f.write('log_outputs = "3:file:%s"\n'
                    % os.path.join(self.dir, 'libvirtd.log'))
            f.write('auth_unix_rw = "none"\nauth_unix_ro = "none"\n')
        self.uri = 'qemu:///system?socket=%s' % os.path.join(
            self.sock_dir, 'libvirt-sock')

        self.virtlogd_pid = self._start_virtlogd()
        pidfile = os.path.join(self.dir, 'libvirtd.pid')
        subprocess.run([LIBVIRTD, '-d', '-f', conf, '-p', pidfile],
                       check=True, timeout=60)
        try:
            self.libvirtd_pid = wait_for(lambda: _read_pid(pidfile),
                                         'libvirtd to write its PID', 30)
        except TimeoutError as e:
            # Most often another libvirtd holds the QEMU driver's state in
            # /run/libvirt/qemu: only one runs on a machine at a time.
            raise RuntimeError('%s; is another libvirtd running? Last log '
                               'lines: %s' % (e, self._log_tail()))
        self.addCleanup(self._stop, self.libvirtd_pid, 'libvirtd')
        self.conn = wait_for(self._connect,
                             'libvirtd to answer on %s' % self.uri,
                             START_TIMEOUT)
        self.addCleanup(self._close)
        self.defined = []

    def _log_tail(self, lines=5):
        try:
            with open(os.path.join(self.dir, 'libvirtd.log')) as f:
                return ' | '.join(f.read().splitlines()[-lines:])
        except OSError:
            return '(no log)'

    def _start_virtlogd(self):
        """Start virtlogd unless one already serves the system socket.

        QEMU's log handling in libvirtd talks to the virtlogd of the
        system socket; a running one that this fixture did not start is
        used as it is and left alone.
        """
        pidfile = os.path.join(self.dir, 'virtlogd.pid')
        result = subprocess.run([VIRTLOGD, '-d', '-p', pidfile],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            if os.path.exists('/run/libvirt/virtlogd-sock'):
                return None
            raise RuntimeError('virtlogd did not start: %s'
                               % result.stderr.strip())
        pid = wait_for(lambda: _read_pid(pidfile),
                       'virtlogd to write its PID', 30)
        self.addCleanup(self._stop, pid, 'virtlogd')
        return pid

    def _connect(self):
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            if not _alive(self.libvirtd_pid):
                raise RuntimeError('libvirtd exited; see %s' % os.path.join(
                    self.dir, 'libvirtd.log'))
            return None
        return conn

    def _close(self):
        remove_domains(self.conn, self.defined)
        self.conn.close()

    def _stop(self, pid, what):
        if pid is None or not _alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), '%s (PID %d) to exit'
                 % (what, pid), 30)

    define = define_domain


NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'


def nova_owner_metadata(project_id):
    """Nova's instance metadata, as far as the manager reads it."""
    return ('<nova:instance xmlns:nova="%s"><nova:owner>'
            '<nova:project uuid="%s">%s</nova:project>'
            '</nova:owner></nova:instance>' % (NOVA_NS, project_id,
                                               project_id))


def tenant_pin_metadata(key):
    """The driver's tenant-pin metadata element recording isolation key
    ``key`` (float mode, ratio 1), as it appears in a domain's XML."""
    from nova_tenant_pin import domain_xml

    return domain_xml.metadata_xml(key, 'float', 1.0).replace(
        '<instance', '<tenantpin:instance xmlns:tenantpin="%s"'
        % domain_xml.TP_NS, 1).replace('</instance>', '</tenantpin:instance>')


def domain_xml_for(name, uuid_, project_id, vcpus, pins, key=None):
    """The XML the driver would write for a manager's InstancePins; with
    ``key``, the tenant-pin metadata recording it too."""
    return tiny_domain_xml(
        name, vcpus=vcpus, uuid_=uuid_,
        cpuset=format_cpus(pins.cpus), partition=pins.partition,
        vcpupins={v: format_cpus(c) for v, c in
                  (pins.vcpu_pins or {}).items()} or None,
        emulator_cpus=format_cpus(pins.cpus),
        metadata=nova_owner_metadata(project_id) + (
            tenant_pin_metadata(key) if key else ''))


def format_cpus(cpus):
    return ','.join(str(c) for c in sorted(cpus))


def tiny_domain_xml(name, vcpus=1, cpuset=None, partition=None,
                    vcpupins=None, emulator_cpus=None, memory_mib=64,
                    metadata='', uuid_=None):
    """A diskless guest: enough for real vCPU, emulator and I/O threads.

    It sits in its BIOS with nothing to boot, which is all that CPU
    placement needs; it starts in well under a second.
    """
    cpuset_attr = ' cpuset="%s"' % cpuset if cpuset else ''
    resource = ('<resource><partition>%s</partition></resource>' % partition
                if partition else '')
    tune = ''
    if vcpupins or emulator_cpus:
        tune = '<cputune>%s%s</cputune>' % (
            ''.join('<vcpupin vcpu="%d" cpuset="%s"/>' % (v, c)
                    for v, c in sorted((vcpupins or {}).items())),
            '<emulatorpin cpuset="%s"/>' % emulator_cpus
            if emulator_cpus else '')
    return """<domain type="%(type)s">
  <name>%(name)s</name>
  %(uuid)s
  <metadata>%(metadata)s</metadata>
  <memory unit="MiB">%(mem)d</memory>
  <vcpu placement="static"%(cpuset)s>%(vcpus)d</vcpu>
  %(tune)s
  %(resource)s
  <os><type arch="x86_64" machine="pc">hvm</type>
      <bios rebootTimeout="-1"/></os>
  <devices><memballoon model="none"/></devices>
</domain>""" % {'type': virt_type(), 'name': name, 'mem': memory_mib,
                'cpuset': cpuset_attr, 'vcpus': vcpus, 'tune': tune,
                'resource': resource, 'metadata': metadata,
                'uuid': '<uuid>%s</uuid>' % uuid_ if uuid_ else ''}


CGROUP_ROOT = '/sys/fs/cgroup'
HOST_B_DIRS = ('/etc/libvirt', '/run/libvirt', '/var/lib/libvirt',
               '/var/cache/libvirt', '/var/log/libvirt')


def cgroup_mounts():
    """The cgroup hierarchies mounted under /sys/fs/cgroup (v1 and v2)."""
    mounts = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            sep = fields.index('-')
            fstype, point = fields[sep + 1], fields[4]
            if fstype in ('cgroup', 'cgroup2') and \
                    point.startswith(CGROUP_ROOT + '/'):
                mounts.append(point)
    return sorted(mounts)


#: The cgroup v2 controllers libvirt uses for its guests.
V2_LIBVIRT_CONTROLLERS = ('cpuset', 'cpu', 'io', 'memory', 'pids')


def _unified_under_systemd():
    """The unified cgroup v2 hierarchy on /sys/fs/cgroup, systemd PID 1."""
    unified = os.path.exists(os.path.join(CGROUP_ROOT, 'cgroup.controllers'))
    return unified and os.path.isdir('/run/systemd/system')


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


#: How long clean-up waits for a cgroup to empty before it gives up.
CGROUP_EMPTY_TIMEOUT = 30


def _rmdir_if_empty(path):
    """rmdir a cgroup; False while it is still busy (EBUSY)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        return False
    return True


def _cgroup_tasks(path):
    for name in ('cgroup.procs', 'tasks'):
        try:
            with open(os.path.join(path, name)) as f:
                return f.read().split()
        except FileNotFoundError:
            continue
    return []


def remove_cgroup_tree(path, timeout=CGROUP_EMPTY_TIMEOUT):
    """Remove a cgroup directory and its children, bottom-up. Only empty
    cgroups can go: a process that was just killed leaves its cgroup (in
    every hierarchy, blkio included) a moment later under load, so each
    directory is waited for, up to ``timeout`` seconds, then TimeoutError
    names the tasks still inside (never killed here)."""
    if not os.path.isdir(path):
        return
    for root, dirs, _files in os.walk(path, topdown=False):
        for name in dirs:
            _remove_when_empty(os.path.join(root, name), timeout)
    _remove_when_empty(path, timeout)


def _remove_when_empty(path, timeout):
    try:
        wait_for(lambda: _rmdir_if_empty(path),
                 'cgroup %s to empty' % path, timeout)
    except TimeoutError as e:
        raise TimeoutError('%s; tasks still inside: %s'
                           % (e, ' '.join(_cgroup_tasks(path))))


class SecondHostFixture(fixtures.Fixture):
    """A second libvirt host on this machine, for live migration.

    Its libvirtd runs in its own mount and cgroup namespaces
    (``unshare -m -C``) with its own copies of libvirt's configuration,
    state, cache and log directories bind-mounted over the system ones, and
    its own cgroup subtree ``/<name>`` in every hierarchy, bind-mounted over
    the hierarchy's root inside the namespace: its guests live in
    ``/<name>/machine/...`` as seen from outside, so each host's threads are
    told apart by their cgroup. It listens for migrations on 127.0.0.1 only,
    on a free port. Clean-up destroys its guests, stops its libvirtd by PID,
    and removes its cgroup subtree bottom-up.

    On the unified cgroup v2 hierarchy under systemd (the test host), the
    subtree ``/<name>`` is one cgroup at the root with every controller
    handed down: libvirtd runs in its leaf ``daemon`` (a v2 cgroup with
    processes cannot hand controllers to children), the subtree is
    bind-mounted over ``/sys/fs/cgroup`` in its mount namespace, and the
    system D-Bus is hidden there, so libvirt places its guests in plain
    directories (``/<name>/machine/tenant-<id>.partition/...``) and never
    registers them with machined, whose machine names the first host
    already holds.
    """

    def __init__(self, name='ntp-hostb'):
        super().__init__()
        self.name = name

    def _setUp(self):
        self.dir = tempfile.mkdtemp(prefix='ntp-hostb-')
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        copies = {}
        for path in HOST_B_DIRS:
            copy = os.path.join(self.dir, path.strip('/').replace('/', '_'))
            if path in ('/etc/libvirt', '/var/cache/libvirt') and \
                    os.path.isdir(path):
                # The configuration, and QEMU's probed capabilities, which
                # spare the first start a probe of several seconds.
                shutil.copytree(path, copy, symlinks=True)
            else:
                os.makedirs(copy)
            copies[path] = copy
        self.port = _free_port()
        self.host_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, self.dir))
        etc = copies['/etc/libvirt']
        with open(os.path.join(etc, 'libvirtd.conf'), 'w') as f:
            f.write('listen_tls = 0\nlisten_tcp = 1\n'
                    'listen_addr = "127.0.0.1"\ntcp_port = "%d"\n'
                    'auth_tcp = "none"\nauth_unix_rw = "none"\n'
                    'host_uuid = "%s"\n'
                    'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n'
                    % (self.port, self.host_uuid))
        with open(os.path.join(etc, 'qemu.conf'), 'a') as f:
            f.write('\nstdio_handler = "file"\n')

        pidfile = '/run/libvirt/ntp-libvirtd.pid'
        host_pidfile = os.path.join(copies['/run/libvirt'],
                                    'ntp-libvirtd.pid')
        if _unified_under_systemd():
            self._start_in_v2_subtree(copies, pidfile)
        else:
            self._start_in_namespaces(copies, pidfile)
        self.libvirtd_pid = wait_for(lambda: _read_pid(host_pidfile),
                                     'host B libvirtd to write its PID', 30)
        self.addCleanup(self._stop)
        self.uri = 'qemu+tcp://127.0.0.1:%d/system' % self.port
        self.conn = wait_for(self._connect,
                             'host B libvirtd on %s' % self.uri,
                             START_TIMEOUT)
        self.addCleanup(self._close)

    def _start_in_namespaces(self, copies, pidfile):
        """cgroup v1 (or v2 without systemd): a subtree in every hierarchy,
        entered, then a cgroup namespace rooted there."""
        self.cgroups = []
        for mount in cgroup_mounts():
            path = os.path.join(mount, self.name)
            os.makedirs(path, exist_ok=True)
            self.cgroups.append(path)
            if os.path.basename(mount) == 'cpuset':
                for name in ('cpuset.cpus', 'cpuset.mems'):
                    with open(os.path.join(mount, name)) as f:
                        value = f.read().strip()
                    with open(os.path.join(path, name), 'w') as f:
                        f.write(value)
        self.addCleanup(self._remove_cgroups)

        binds = ' && '.join(
            'mount --bind %s %s' % (copy, path)
            for path, copy in copies.items())
        binds += ''.join(' && mount --bind %s %s' % (cg, os.path.dirname(cg))
                         for cg in self.cgroups)
        # The launching shell enters the subtree in every hierarchy first,
        # so that unshare -C makes the subtree the namespace's root.
        enter = ' && '.join(
            'echo $$ > %s' % os.path.join(
                cg, 'cgroup.procs') for cg in self.cgroups)
        inner = ('mount --make-rprivate / && %s && exec %s -d --listen '
                 '-f /etc/libvirt/libvirtd.conf -p %s' % (
                     binds, LIBVIRTD, pidfile))
        script = '%s && exec unshare -m -C sh -c %s' % (
            enter, _shell_quote(inner))
        subprocess.run(['sh', '-c', script], check=True, timeout=60)
        self.cgroup_prefix = '/' + self.name

    def _start_in_v2_subtree(self, copies, pidfile):
        """The unified cgroup v2 hierarchy under systemd: the subtree
        ``/<name>`` at the root (not under a systemd slice or scope: the
        privileged entrypoints refuse a cgroup root inside systemd's
        units), libvirtd in its leaf ``daemon``, the subtree over
        /sys/fs/cgroup in a mount namespace, no system bus there (so no
        machined)."""
        top = os.path.join(CGROUP_ROOT, self.name)
        os.makedirs(os.path.join(top, 'daemon'), exist_ok=True)
        self.cgroups = [os.path.join(top, 'machine'),
                        os.path.join(top, 'daemon'), top]
        self.addCleanup(self._remove_cgroups)
        # The controllers libvirt uses, handed down to the subtree's
        # children; the subtree itself then holds no process (a v2 cgroup
        # with processes cannot enable controllers for its children).
        with open(os.path.join(CGROUP_ROOT, 'cgroup.controllers')) as f:
            controllers = [c for c in f.read().split()
                           if c in V2_LIBVIRT_CONTROLLERS]
        for group in (CGROUP_ROOT, top):
            with open(os.path.join(group, 'cgroup.subtree_control')) as f:
                enabled = set(f.read().split())
            for name in controllers:
                if name not in enabled:
                    with open(os.path.join(
                            group, 'cgroup.subtree_control'), 'w') as f:
                        f.write('+%s' % name)
        binds = ''.join(' && mount --bind %s %s' % (copy, path)
                        for path, copy in copies.items())
        inner = ('mount --make-rprivate /%s && mount --bind %s %s && '
                 'mount -t tmpfs -o mode=0755 ntp-hostb-nodbus /run/dbus && '
                 'exec %s -d --listen -f /etc/libvirt/libvirtd.conf -p %s'
                 % (binds, top, CGROUP_ROOT, LIBVIRTD, pidfile))
        script = 'echo $$ > %s && exec unshare -m sh -c %s' % (
            os.path.join(top, 'daemon', 'cgroup.procs'), _shell_quote(inner))
        subprocess.run(['sh', '-c', script], check=True, timeout=60)
        self.cgroup_prefix = '/' + self.name

    def _connect(self):
        try:
            return libvirt.open(self.uri)
        except libvirt.libvirtError:
            if not _alive(self.libvirtd_pid):
                raise RuntimeError('host B libvirtd exited; see %s'
                                   % self.dir)
            return None

    def _close(self):
        for dom in self.conn.listAllDomains():
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        self.conn.close()

    def _stop(self):
        if _alive(self.libvirtd_pid):
            os.kill(self.libvirtd_pid, signal.SIGTERM)
            wait_for(lambda: not _alive(self.libvirtd_pid),
                     'host B libvirtd (PID %d) to exit' % self.libvirtd_pid,
                     30)

    def _remove_cgroups(self):
        for path in self.cgroups:
            remove_cgroup_tree(path)


def _shell_quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


MIGRATE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
                 libvirt.VIR_MIGRATE_PERSIST_DEST |
                 libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)


def migrate(dom, target, dest_xml=None, flags=0):
    """Live-migrate ``dom`` peer to peer to a SecondHostFixture (or its
    URI), over 127.0.0.1 only; returns when the guest runs there (is
    paused there, with ``flags`` = ``VIR_MIGRATE_PAUSED``)."""
    params = {libvirt.VIR_MIGRATE_PARAM_URI: 'tcp:127.0.0.1'}
    if dest_xml is not None:
        params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = dest_xml
    dom.migrateToURI3(getattr(target, 'uri', target), params,
                      MIGRATE_FLAGS | flags)


def quiet_logging(name):
    """Logging for a tool that drives real hosts (the demo, a benchmark):
    warnings and errors only, and libvirt's expected errors (a lookup of a
    guest that moved) left to the caller instead of printed."""
    from oslo_config import cfg
    from oslo_log import log as logging

    logging.register_options(cfg.CONF)
    cfg.CONF([], project=name, default_config_files=[])
    logging.set_defaults(default_log_levels=[
        'nova_tenant_pin=WARN', 'oslo.privsep.daemon=ERROR',
        'oslo_concurrency=WARN', 'oslo_service=WARN', 'nova=WARN'])
    logging.setup(cfg.CONF, name)
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def remove_domains(conn, names):
    """Destroy and undefine the domains ``names`` (a test's own), newest
    first; those already gone are skipped."""
    for name in reversed(names):
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefine()


def require_real_host(test, min_cores=1):
    """Skip ``test``, with the reason, where real guests cannot run or the
    host has fewer than ``min_cores`` physical cores; else say which virt
    type the guests use. Returns the host's topology."""
    from nova_tenant_pin import topology

    reason = missing_requirements()
    if reason:
        test.skipTest(reason)
    host = topology.HostTopology.from_sysfs()
    if len(host.cores) < min_cores:
        test.skipTest('needs %d physical cores' % min_cores)
    sys.stderr.write('guests run with virt type %s\n' % virt_type())
    return host


def boot_confined(conn, manager, tenant, vcpus=1, prefix='guest',
                  defined=None, key_metadata=False):
    """Boot a guest the way the driver does: claim, confined XML (with
    ``key_metadata``, the tenant-pin metadata recording the tenant as its
    isolation key), start, re-pin. Returns ``(instance uuid, domain)``."""
    inst = str(uuid.uuid4())
    pins = manager.claim(inst, tenant, vcpus)
    name = '%s-%s' % (prefix, inst[:8])
    dom = conn.defineXML(domain_xml_for(
        name, inst, tenant, vcpus, pins,
        key=tenant if key_metadata else None))
    if defined is not None:
        defined.append(name)
    dom.create()
    manager.domain_started(inst)
    return inst, dom


def confined_target_xml(dom, pins):
    """The destination XML of this project's protocol: the source's
    migratable XML without its pins (the driver's migration_source_xml),
    and with the target's CPUs as ``<vcpu cpuset>``, as Nova writes them
    from ``dst_cpu_shared_set_info``."""
    from lxml import etree

    from nova_tenant_pin import driver

    xml = driver.migration_source_xml(
        dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE),
        to_isolated_target=True)
    root = etree.fromstring(xml.encode())
    root.find('./vcpu').set('cpuset', format_cpus(pins.cpus))
    return etree.tostring(root, encoding='unicode')


def migrate_confined(dom, inst, tenant, vcpus, source, target, target_uri,
                     on_claimed=None, timings=None, flags=0):
    """Live-migrate with no exposure window, as the driver does it.

    1. the target manager claims room and creates or widens the tenant's
       partition (``on_claimed(pins)`` is called here, before anything
       moves);
    2. the destination XML keeps the partition, drops the source's pins
       and carries the target's CPUs;
    3. libvirt migrates; the target QEMU starts inside the partition;
    4. the target re-pins, the source releases.

    Returns ``(pins, dest_xml)``; ``timings['migrate']`` gets the seconds
    spent in libvirt's migration alone.
    """
    pins = target.claim_incoming_migration(inst, tenant, vcpus)
    if on_claimed is not None:
        on_claimed(pins)
    target.confirm_incoming_migration(inst)
    dest_xml = confined_target_xml(dom, pins)
    start = time.perf_counter()
    migrate(dom, target_uri, dest_xml, flags)
    if timings is not None:
        timings['migrate'] = time.perf_counter() - start
    target.domain_started(inst)
    source.release(inst)
    return pins, dest_xml
