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

import grp
import os
import shutil
import signal
import subprocess
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


def _wait(predicate, timeout, what):
    """Poll ``predicate`` until true or raise after ``timeout`` seconds:
    waiting for an external daemon, which announces nothing else."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError('timed out after %ds waiting for %s'
                               % (timeout, what))
        time.sleep(0.05)


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


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
        self.libvirtd_pid = _wait(lambda: _read_pid(pidfile), 30,
                                  'libvirtd to write its PID')
        self.addCleanup(self._stop, self.libvirtd_pid, 'libvirtd')
        self.conn = _wait(self._connect, START_TIMEOUT,
                          'libvirtd to answer on %s' % self.uri)
        self.addCleanup(self._close)
        self.defined = []

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
        pid = _wait(lambda: _read_pid(pidfile), 30,
                    'virtlogd to write its PID')
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
        for dom_name in reversed(self.defined):
            try:
                dom = self.conn.lookupByName(dom_name)
            except libvirt.libvirtError:
                continue
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
        self.conn.close()

    def _stop(self, pid, what):
        if pid is None or not _alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        _wait(lambda: not _alive(pid), 30, '%s (PID %d) to exit'
              % (what, pid))

    def define(self, xml, start=True):
        """Define (and start) a domain; clean-up removes it."""
        dom = self.conn.defineXML(xml)
        self.defined.append(dom.name())
        if start:
            dom.create()
        return dom


def tiny_domain_xml(name, vcpus=1, cpuset=None, partition=None,
                    vcpupins=None, emulator_cpus=None, memory_mib=64,
                    metadata=''):
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
                'resource': resource, 'metadata': metadata}
