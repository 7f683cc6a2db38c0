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

"""Linux core scheduling: one cookie per isolation key.

Core scheduling (``prctl(PR_SCHED_CORE)``, Linux 5.14+ built with
``CONFIG_SCHED_CORE``) tags tasks with a *cookie*; the kernel never runs two
tasks with different cookies on the SMT siblings of one core at the same
moment (a sibling idles instead). nova-tenant-pin already keeps two keys off
one core with cpusets; a cookie per isolation key is a second, independent
line: guests that share cores anyway (keys that do not fit, the unisolated
pool of an adopted host, exempt projects' neighbours during a move) still
never run on two siblings at once, and a cpuset that drifts is not enough to
put two keys on one core at the same instant.

The kernel's rules this module relies on (kernel/sched/core_sched.c):

* ``PR_SCHED_CORE_GET`` of task T returns an opaque number for T's cookie
  (0: none); reading or changing another process's cookie needs ptrace
  read access to it (same uid, or ``CAP_SYS_PTRACE``).
* ``PR_SCHED_CORE_CREATE`` with ``PIDTYPE_TGID`` gives every thread of a
  process one new cookie; ``SHARE_TO`` gives them the caller's cookie;
  ``SHARE_FROM`` gives the caller the cookie of one task.
* A new task inherits the cookie of the thread that creates it, so once
  every thread of a QEMU holds the cookie, threads it creates later (vCPU
  hot-plug, I/O threads, vhost workers on kernels that make them tasks of
  the QEMU) hold it too.
* ``EINVAL`` from ``GET`` on oneself: the kernel has no core scheduling;
  ``ENODEV``: it has, but no SMT is present (nothing to schedule apart).

A key's first running guest gets a new cookie; its other guests get that one
shared from a thread already holding it. Sharing needs the caller to hold the
cookie for a moment: that is done in a short-lived thread, so the process
that sets cookies never keeps one (:func:`assign`).

The ``prctl`` layer (:class:`Prctl`) and :func:`plan` are what the unit tests
exercise with a fake kernel; :class:`CoreCookies` ties them to libvirt's
domains and the privileged daemon.
"""

import collections
import ctypes
import dataclasses
import errno
import os
import re
import threading

from oslo_log import log as logging

from nova_tenant_pin import procfs

LOG = logging.getLogger(__name__)

PR_SCHED_CORE = 62
PR_SCHED_CORE_GET = 0
PR_SCHED_CORE_CREATE = 1
PR_SCHED_CORE_SHARE_TO = 2
PR_SCHED_CORE_SHARE_FROM = 3

PIDTYPE_PID = 0
PIDTYPE_TGID = 1
PIDTYPE_PGID = 2

SPLIT_COOKIE = 'split-cookie'
SHARED_COOKIE = 'shared-cookie'

OFF = 'off'
AUTO = 'auto'
REQUIRED = 'required'
MODES = (OFF, AUTO, REQUIRED)

#: libvirt's QEMU driver configuration, whose ``sched_core`` (libvirt 8.9+)
#: gives QEMU processes cookies of libvirt's own.
LIBVIRT_QEMU_CONF = '/etc/libvirt/qemu.conf'
#: The values under which every thread of a QEMU holds a cookie of its own
#: from the QEMU's first instruction on (libvirt sets it in the process it
#: forks, before it runs QEMU): an incoming live migration's guest then
#: never runs beside another key's thread, before this project's cookie too.
#: "vcpus" tags only the vCPU threads, after QEMU started them.
SCHED_CORE_WHOLE_QEMU = ('emulator', 'full')
_SCHED_CORE_LINE = re.compile(
    r'^[ \t]*sched_core[ \t]*=[ \t]*(?:"([^"\n]*)"|\'([^\'\n]*)\'|(\S*))'
    r'[ \t]*(?:#.*)?$', re.MULTILINE)

# Kernel workers attached to a QEMU's process that run kernel code on the
# guest's behalf (left out of checks, as the audit does for affinity).
KERNEL_WORKERS = ('kvm-nx-lpage-re', 'kvm-pit/')


class CoreSchedError(Exception):
    """A ``prctl(PR_SCHED_CORE)`` call failed; ``errno`` says why."""

    def __init__(self, what, err):
        super().__init__('%s: %s' % (what, os.strerror(err)))
        self.errno = err


class Unsupported(Exception):
    """Core scheduling was required and the kernel does not offer it."""


def parse_sched_core(text):
    """The value of ``sched_core`` in the text of libvirt's qemu.conf:
    ``"none"`` where it is not set (libvirt's default), else the value as
    written. Several assignments that disagree, or one without quotes, give
    a ``ValueError`` (what libvirt would make of them is not this module's
    guess)."""
    values = set()
    for match in _SCHED_CORE_LINE.finditer(text):
        double, single, bare = match.groups()
        if double is None and single is None:
            raise ValueError('sched_core = %s is not a quoted string'
                             % bare)
        values.add(double if double is not None else single)
    if len(values) > 1:
        raise ValueError('sched_core is set several times (%s)'
                         % ', '.join(sorted(values)))
    return values.pop() if values else 'none'


def read_sched_core(path=LIBVIRT_QEMU_CONF, limit=1 << 20):
    """libvirt's ``sched_core`` from its qemu.conf at ``path``, read
    without following a symlink and at most ``limit`` bytes; ``"none"``
    where the file does not exist. Raises OSError (libvirt keeps the file
    readable by root only) or ValueError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return 'none'
    with os.fdopen(fd, 'rb') as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError('%s is larger than %d bytes' % (path, limit))
    return parse_sched_core(data.decode('utf-8', 'replace'))


def describe_sched_core(value):
    """``(enough, text)``: whether libvirt's ``sched_core`` = ``value``
    gives every thread of an incoming QEMU a cookie before the guest runs,
    and a sentence saying what it does."""
    if value in SCHED_CORE_WHOLE_QEMU:
        return True, ('libvirt\'s sched_core = "%s": every QEMU holds a '
                      'cookie of its own from its start, so a guest arriving '
                      'by live migration never runs beside another key\'s '
                      'thread before it gets its key\'s cookie' % value)
    if value == 'vcpus':
        return False, ('libvirt\'s sched_core = "vcpus" tags only the vCPU '
                       'threads: an incoming QEMU\'s emulator and I/O threads '
                       'hold no cookie until the driver gives it its key\'s')
    return False, ('libvirt\'s sched_core is "%s": a QEMU arriving by live '
                   'migration holds no cookie until the driver gives it its '
                   'key\'s (on libvirt\'s start event, at the latest on '
                   'arrival), and its guest may run before that' % value)


#: What an operator does about it.
SCHED_CORE_FIX = ('set sched_core = "full" in %s and restart libvirtd'
                  % LIBVIRT_QEMU_CONF)


class Prctl:
    """The kernel's ``prctl(PR_SCHED_CORE, ...)``, through ctypes."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = libc.prctl
        self._prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                                ctypes.c_ulong, ctypes.c_ulong]
        self._prctl.restype = ctypes.c_int

    def _call(self, what, cmd, pid, pidtype, addr=0):
        if self._prctl(PR_SCHED_CORE, cmd, pid, pidtype, addr) != 0:
            raise CoreSchedError(what, ctypes.get_errno())

    def get(self, tid):
        """The cookie of task ``tid`` (0: itself), 0 when it has none."""
        value = ctypes.c_uint64(0)
        self._call('read the core-scheduling cookie of task %d' % tid,
                   PR_SCHED_CORE_GET, tid, PIDTYPE_PID,
                   ctypes.addressof(value))
        return value.value

    def create(self, pid, pidtype):
        self._call('create a core-scheduling cookie for %d' % pid,
                   PR_SCHED_CORE_CREATE, pid, pidtype)

    def share_to(self, pid, pidtype):
        self._call('share a core-scheduling cookie to %d' % pid,
                   PR_SCHED_CORE_SHARE_TO, pid, pidtype)

    def share_from(self, tid):
        self._call('take the core-scheduling cookie of task %d' % tid,
                   PR_SCHED_CORE_SHARE_FROM, tid, PIDTYPE_PID)


def support(prctl=None):
    """``(True, None)`` where this kernel schedules cookies apart, else
    ``(False, why)``. Needs no privilege (it reads the caller's own
    cookie)."""
    try:
        (prctl or Prctl()).get(0)
    except CoreSchedError as e:
        if e.errno == errno.EINVAL:
            return False, ('this kernel has no core scheduling (built '
                           'without CONFIG_SCHED_CORE, or older than 5.14)')
        if e.errno == errno.ENODEV:
            return False, ('no SMT siblings are present (SMT off or absent), '
                           'so core scheduling has nothing to keep apart')
        return False, 'prctl(PR_SCHED_CORE) failed: %s' % e
    except (OSError, AttributeError) as e:
        return False, 'prctl is not available: %s' % e
    return True, None


# -- inside the privileged daemon (or a root process) ---------------------

def _tids(pid, proc_root):
    try:
        return sorted(int(t) for t in os.listdir(
            os.path.join(proc_root, str(pid), 'task')))
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def _comm(pid, proc_root):
    # Any process may name itself with bytes that are not UTF-8: read
    # leniently (procfs.read_text), never fail on them.
    try:
        return procfs.read_text(os.path.join(proc_root, str(pid),
                                             'comm')).strip()
    except OSError:
        return None


def thread_cookies(pid, prctl, proc_root='/proc'):
    """``{tid: cookie}`` of every thread of process ``pid`` (threads that
    exit while being read are left out)."""
    result = {}
    for tid in _tids(pid, proc_root):
        try:
            result[tid] = prctl.get(tid)
        except CoreSchedError as e:
            if e.errno != errno.ESRCH:
                raise
    return result


def kernel_workers(pid, proc_root='/proc'):
    """The ``vhost-<pid>`` kernel threads that serve QEMU ``pid`` on kernels
    where vhost workers are kernel threads (before Linux 6.4; from 6.4 they
    are threads of the QEMU itself and :data:`PIDTYPE_TGID` covers them)."""
    name = 'vhost-%d' % pid
    found = []
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return found
    for entry in entries:
        if entry.isdigit() and _comm(entry, proc_root) == name:
            found.append(int(entry))
    return sorted(found)


def _real_threading():
    """The OS ``threading`` module even where eventlet patched it: the
    short-lived thread that holds a cookie must be a thread of its own."""
    try:
        from eventlet import patcher
    except ImportError:
        return threading
    return patcher.original('threading')


def _in_own_thread(func):
    """Run ``func`` in a new OS thread that exits afterwards, and re-raise
    what it raised. A cookie that ``func`` takes dies with the thread."""
    result = {}

    def run():
        try:
            result['value'] = func()
        except BaseException as e:
            result['error'] = e

    thread = _real_threading().Thread(target=run, name='core-cookie')
    thread.start()
    thread.join()
    if 'error' in result:
        raise result['error']
    return result.get('value')


def _share(prctl, source_tid, pid, pidtype):
    def share():
        prctl.share_from(source_tid)
        prctl.share_to(pid, pidtype)
    _in_own_thread(share)


def assign(pid, prctl, source_tid=None, proc_root='/proc', attempts=3):
    """Give every thread of process ``pid`` one cookie: a new one, or the
    cookie task ``source_tid`` holds. Threads created meanwhile are caught by
    checking every thread afterwards and sharing again (a few passes at
    most); the ``vhost-<pid>`` kernel threads get it too.

    :returns: ``{"cookie": cookie, "threads": count}``
    :raises CoreSchedError: the kernel refused, or the threads do not hold
        one cookie after ``attempts`` passes.
    """
    own = prctl.get(0)
    if source_tid is None:
        prctl.create(pid, PIDTYPE_TGID)
    else:
        if not prctl.get(source_tid):
            raise CoreSchedError('share the cookie of task %d'
                                 % source_tid, errno.ENODATA)
        _share(prctl, source_tid, pid, PIDTYPE_TGID)
    for _ in range(attempts):
        cookies = thread_cookies(pid, prctl, proc_root)
        wanted = cookies.get(pid) or prctl.get(pid)
        if wanted and all(c == wanted for c in cookies.values()):
            break
        # A thread created while the cookie was being set: the leader holds
        # the cookie, share it to the whole process again.
        _share(prctl, pid, pid, PIDTYPE_TGID)
    else:
        raise CoreSchedError('give every thread of process %d one cookie'
                             % pid, errno.EAGAIN)
    for worker in kernel_workers(pid, proc_root):
        try:
            _share(prctl, pid, worker, PIDTYPE_PID)
        except CoreSchedError as e:
            LOG.warning('vhost worker %d of QEMU %d keeps its cookie: %s',
                        worker, pid, e)
    if prctl.get(0) != own:
        # Never expected: the sharing ran in a thread of its own.
        raise CoreSchedError('keep this process free of guest cookies',
                             errno.EPERM)
    return {'cookie': wanted, 'threads': len(cookies)}


def clear(pid, prctl, own_cookie=False, proc_root='/proc', attempts=3):
    """Take the project's cookie away from every thread of process ``pid``
    (and its ``vhost-<pid>`` kernel threads): back to no cookie, or, with
    ``own_cookie``, to a new cookie of the process's own (what libvirt's
    ``sched_core`` gives each QEMU). Threads created meanwhile are caught
    as :func:`assign` catches them.

    :returns: ``{"cookie": cookie, "threads": count}``
    """
    own = prctl.get(0)
    if own:
        # Sharing "no cookie" needs a caller without one.
        raise CoreSchedError('clear the cookies of process %d from a '
                             'process that holds one' % pid, errno.EPERM)

    def set_all():
        if own_cookie:
            prctl.create(pid, PIDTYPE_TGID)
        else:
            # A new thread of this process holds no cookie: sharing it
            # gives the target none.
            _in_own_thread(lambda: prctl.share_to(pid, PIDTYPE_TGID))

    set_all()
    for _ in range(attempts):
        cookies = thread_cookies(pid, prctl, proc_root)
        wanted = cookies.get(pid, prctl.get(pid))
        if bool(wanted) == own_cookie and \
                all(c == wanted for c in cookies.values()):
            break
        set_all()
    else:
        raise CoreSchedError('take the cookie away from every thread of '
                             'process %d' % pid, errno.EAGAIN)
    for worker in kernel_workers(pid, proc_root):
        try:
            if own_cookie:
                _share(prctl, pid, worker, PIDTYPE_PID)
            else:
                _in_own_thread(
                    lambda w=worker: prctl.share_to(w, PIDTYPE_PID))
        except CoreSchedError as e:
            LOG.warning('vhost worker %d of QEMU %d keeps its cookie: %s',
                        worker, pid, e)
    return {'cookie': wanted, 'threads': len(cookies)}


# -- planning (pure) -------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Guest:
    """One running guest as the kernel shows it: its domain, isolation key,
    QEMU process and each thread's cookie."""

    uuid: str
    name: str
    key: str
    pid: int
    cookies: dict

    @property
    def cookie(self):
        """The cookie all its threads share, else None."""
        values = set(self.cookies.values())
        if len(values) == 1:
            return values.pop() or None
        return None


@dataclasses.dataclass(frozen=True)
class Action:
    """Give ``guest`` its key's cookie: a new one (``source`` None) or the
    one guest ``source`` (a name) holds."""

    guest: Guest
    source: str = None

    def __str__(self):
        if self.source is None:
            return ('instance %s of key %s: new core-scheduling cookie'
                    % (self.guest.uuid, self.guest.key))
        return ('instance %s of key %s: core-scheduling cookie shared from '
                'domain %s' % (self.guest.uuid, self.guest.key, self.source))


def plan(guests):
    """What to change so that every key's guests hold one cookie of their
    own: ``(owners, actions)``, with ``owners`` ``{key: cookie or None}``.

    A key keeps the cookie most of its threads hold, when no other key's
    threads hold more of it (a cookie two keys hold goes to the one with
    more threads there; the other gets a new one). A guest already all on
    its key's cookie is left alone; the others get it shared from a guest
    whose QEMU main thread holds it, or the key's first guest gets a new one
    and the rest share it. Actions are in order: a later one may share from
    a guest an earlier one set.
    """
    by_key = collections.defaultdict(list)
    for guest in guests:
        by_key[guest.key].append(guest)
    counts = collections.defaultdict(collections.Counter)
    for guest in guests:
        for cookie in guest.cookies.values():
            if cookie:
                counts[cookie][guest.key] += 1
    owner_of = {}
    for cookie, keys in counts.items():
        owner_of[cookie] = sorted(keys.items(),
                                  key=lambda kv: (-kv[1], kv[0]))[0][0]
    owners, actions = {}, []
    for key in sorted(by_key):
        mine = sorted(((n[key], cookie) for cookie, n in counts.items()
                       if owner_of[cookie] == key),
                      key=lambda nc: (-nc[0], nc[1]))
        chosen = mine[0][1] if mine else None
        source = None
        if chosen is not None:
            source = next((g for g in by_key[key]
                           if g.cookies.get(g.pid) == chosen), None)
            if source is None:
                chosen = None
        owners[key] = chosen
        for guest in sorted(by_key[key], key=lambda g: g.uuid):
            if chosen is not None and guest.cookie == chosen:
                continue
            if source is None:
                actions.append(Action(guest))
                source = guest
            elif source is guest:
                # It holds the cookie on its main thread, not everywhere.
                actions.append(Action(guest, guest.name))
            else:
                actions.append(Action(guest, source.name))
    return owners, actions


def violations(guests):
    """What breaks "one cookie per key, none shared": a list of
    ``(kind, keys, tids, detail)``, kind :data:`SPLIT_COOKIE` (one key's
    threads hold several cookies, or some hold none; ``tids``: the threads
    off the key's most common cookie) or :data:`SHARED_COOKIE` (two keys'
    threads hold one cookie; ``tids``: those threads)."""
    found = []
    by_key = collections.defaultdict(dict)
    for guest in guests:
        for tid, cookie in guest.cookies.items():
            by_key[guest.key][tid] = cookie
    holders = collections.defaultdict(dict)
    for key, cookies in sorted(by_key.items()):
        values = collections.Counter(cookies.values())
        if len(values) > 1 or 0 in values:
            common = sorted(values.items(),
                            key=lambda cn: (not cn[0], -cn[1], cn[0]))[0][0]
            found.append((SPLIT_COOKIE, (key,), tuple(sorted(
                t for t, c in cookies.items() if c != common or not c)),
                'threads of key %s hold %s' % (key, ', '.join(
                    '%s (%d)' % (_cookie_name(c), n)
                    for c, n in sorted(values.items())))))
        for tid, cookie in cookies.items():
            if cookie:
                holders[cookie].setdefault(key, []).append(tid)
    for cookie, keys in sorted(holders.items()):
        if len(keys) > 1:
            found.append((SHARED_COOKIE, tuple(sorted(keys)), tuple(sorted(
                t for tids in keys.values() for t in tids)),
                'keys %s hold one %s' % (' and '.join(sorted(keys)),
                                         _cookie_name(cookie))))
    return found


def _cookie_name(cookie):
    return 'no cookie' if not cookie else 'cookie %#x' % cookie


# -- on a compute host -------------------------------------------------------

def qemu_pids_by_uuid(proc_root='/proc'):
    """``{domain uuid: QEMU pid}`` of the QEMU processes on this host, from
    their command lines (readable by anyone)."""
    from nova_tenant_pin import audit

    found = {}
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        comm = _comm(entry, proc_root) or ''
        if not (comm.startswith('qemu-system') or comm == 'qemu-kvm'):
            continue
        _name, uuid = audit.qemu_domain_of(entry, proc_root)
        if uuid:
            found[uuid] = int(entry)
    return found


def running_guests(domains, cookies, proc_root='/proc', name='host'):
    """The running guests among ``domains`` (``domain_xml.DomainInfo``)
    that have an isolation key, with each thread's cookie read through
    ``cookies`` (guests that exit meanwhile are left out)."""
    pids = qemu_pids_by_uuid(proc_root)
    found = []
    for info in domains:
        key = info.isolation_key
        pid = pids.get(info.uuid.lower())
        if not info.active or key is None or pid is None:
            continue
        try:
            threads = cookies.read(pid)
        except Exception as e:
            LOG.warning('%s: cannot read the core-scheduling cookies of '
                        'instance %s (QEMU %d): %s', name, info.uuid, pid, e)
            continue
        found.append(Guest(info.uuid, info.name, key, pid, threads))
    return found


def release_plan(guests, own_cookie):
    """The guests whose cookies ``release`` changes: every guest holding a
    cookie (``own_cookie`` False: back to none), or (``own_cookie`` True:
    a cookie of each QEMU's own, as libvirt's ``sched_core`` gives) every
    guest whose cookie another guest's threads hold too, or whose threads
    hold several or none."""
    holders = collections.defaultdict(set)
    for guest in guests:
        for cookie in guest.cookies.values():
            holders[cookie].add(guest.uuid)
    changes = []
    for guest in sorted(guests, key=lambda g: g.uuid):
        values = set(guest.cookies.values())
        if own_cookie:
            alone = guest.cookie is not None and \
                holders[guest.cookie] == {guest.uuid}
            if not alone:
                changes.append(guest)
        elif values != {0}:
            changes.append(guest)
    return changes


def release_cookies(domains, cookies=None, prctl=None, proc_root='/proc',
                    dry_run=False, name='host'):
    """Take this project's cookies away from the running guests among
    ``domains`` that record an isolation key (``release`` calls it before
    it drops the keys): where libvirt's ``sched_core`` is set, each QEMU
    gets a cookie of its own, as libvirt gives it at start; else no cookie,
    as the QEMU started. Nothing where the kernel has no core scheduling
    (no cookie can exist). Reads no ``[tenant_pin]`` option.

    :returns: the changes, one line each (``dry_run``: the changes it
        would make)
    :raises RuntimeError: a change failed (the others are made)
    """
    supported, _why = support(prctl)
    if not supported:
        return []
    cookies = cookies or PrivilegedCookies()
    try:
        sched_core = cookies.libvirt_sched_core()
    except Exception as e:
        # libvirtd would not start its QEMU driver with a value it cannot
        # read either; no cookie is the kernel's default.
        LOG.warning('%s: libvirt\'s sched_core could not be read (%s): '
                    'released guests hold no cookie', name, e)
        sched_core = 'none'
    own_cookie = sched_core not in ('none', None)
    if own_cookie:
        done = ('given a core-scheduling cookie of its own (libvirt\'s '
                'sched_core = "%s")' % sched_core)
        would = 'would get' + done[len('given'):]
    else:
        done = 'core-scheduling cookie cleared'
        would = 'would have its core-scheduling cookie cleared'
    lines, failed = [], []
    for guest in release_plan(running_guests(domains, cookies, proc_root,
                                             name), own_cookie):
        line = 'instance %s of key %s: %s' % (guest.uuid, guest.key,
                                              would if dry_run else done)
        if dry_run:
            lines.append(line)
            continue
        try:
            cookies.clear(guest.name, guest.key, own_cookie)
        except Exception as e:
            LOG.error('%s: %s failed: %s', name, line, e)
            failed.append('%s: %s' % (line, e))
            continue
        LOG.info('%s: %s', name, line)
        lines.append(line)
    if failed:
        raise RuntimeError('core scheduling: ' + '; '.join(failed))
    return lines


class PrivilegedCookies:
    """Reads and sets cookies through the privileged daemon (reading or
    changing a QEMU that runs as another user needs ``CAP_SYS_PTRACE``)."""

    def read(self, pid):
        from nova_tenant_pin import privsep
        return {int(t): c for t, c in
                privsep.read_core_cookies(pid).items()}

    def assign(self, name, key, source=None):
        from nova_tenant_pin import privsep
        return privsep.set_core_cookie(name, key, source)

    def clear(self, name, key, own_cookie=False):
        from nova_tenant_pin import privsep
        return privsep.clear_core_cookie(name, key, own_cookie)

    def libvirt_sched_core(self):
        from nova_tenant_pin import privsep
        return privsep.read_libvirt_sched_core()


class CoreCookies:
    """One cookie per isolation key on this host's running guests.

    :param mode: ``off``, ``auto`` (where the kernel supports it) or
        ``required`` (:class:`Unsupported` where it does not).
    :param list_domains: callable returning the host's domains as
        ``domain_xml.DomainInfo``.
    :param cookies: reads and sets cookies (:class:`PrivilegedCookies`).
    """

    def __init__(self, mode, list_domains, name='host', cookies=None,
                 prctl=None, proc_root='/proc'):
        if mode not in MODES:
            raise ValueError('core_scheduling must be one of %s, got %r'
                             % (', '.join(MODES), mode))
        self.mode = mode
        self.name = name
        self.list_domains = list_domains
        self.cookies = cookies or PrivilegedCookies()
        self.proc_root = proc_root
        self.active = False
        self.reason = 'core_scheduling = off'
        if mode == OFF:
            LOG.info('%s: core scheduling off ([tenant_pin] core_scheduling '
                     '= off): guests carry no core-scheduling cookie', name)
            return
        supported, why = support(prctl)
        if not supported:
            if mode == REQUIRED:
                raise Unsupported(
                    '[tenant_pin] core_scheduling = required, but %s; set it '
                    'to auto or off, or run a kernel with CONFIG_SCHED_CORE '
                    'on an SMT host' % why)
            self.reason = why
            LOG.warning('%s: core scheduling not used ([tenant_pin] '
                        'core_scheduling = auto): %s. Tenants stay apart by '
                        'their cores only', name, why)
            return
        self.active = True
        self.reason = None
        LOG.info('%s: core scheduling on ([tenant_pin] core_scheduling = %s):'
                 ' each isolation key\'s guests share one core-scheduling '
                 'cookie, so guests of two keys never run on the siblings of '
                 'one core at the same moment', name, mode)

    def check_libvirt(self):
        """Whether libvirt's ``sched_core`` gives an incoming live
        migration's QEMU a cookie before its guest runs (see
        :func:`describe_sched_core`): said in the log where core scheduling
        is active; :class:`Unsupported` where it does not and the mode is
        ``required``. Returns libvirt's value (None: not active)."""
        if not self.active:
            return None
        try:
            value = self.cookies.libvirt_sched_core()
        except Exception as e:
            value = None
            enough, text = False, (
                'libvirt\'s sched_core could not be read from %s: %s'
                % (LIBVIRT_QEMU_CONF, e))
        else:
            enough, text = describe_sched_core(value)
        if enough:
            LOG.info('%s: %s', self.name, text)
        elif self.mode == REQUIRED:
            raise Unsupported('[tenant_pin] core_scheduling = required, but '
                              '%s; %s' % (text, SCHED_CORE_FIX))
        else:
            LOG.warning('%s: core scheduling on, but %s; %s', self.name,
                        text, SCHED_CORE_FIX)
        return value

    def status(self):
        """``{"mode", "active", "reason"}`` for ``status`` and ``check``."""
        return {'mode': self.mode, 'active': self.active,
                'reason': self.reason}

    def guests(self):
        """The running guests that have an isolation key, with each
        thread's cookie (guests that exit meanwhile are left out)."""
        return running_guests(self.list_domains(), self.cookies,
                              self.proc_root, self.name)

    def sync(self):
        """Give every running guest its key's cookie. Returns the changes
        made, as log lines; failures are logged and raised at the end
        (:class:`CoreSchedError`-like ``Exception``) so a caller that must
        not run a guest without its cookie can refuse."""
        if not self.active:
            return []
        _owners, actions = plan(self.guests())
        done, failed = [], []
        for action in actions:
            guest = action.guest
            try:
                result = self.cookies.assign(guest.name, guest.key,
                                             action.source)
            except Exception as e:
                LOG.error('%s: %s failed: %s', self.name, action, e)
                failed.append('%s: %s' % (action, e))
                continue
            LOG.info('%s: %s (%d threads)', self.name, action,
                     result.get('threads', 0))
            done.append(str(action))
        if failed:
            raise RuntimeError('core scheduling: ' + '; '.join(failed))
        return done


def host_state(mode, prctl=None):
    """``{"mode", "active", "reason"}``: whether core scheduling is in use
    on this host under option value ``mode``, as the commands show it."""
    if mode == OFF:
        return {'mode': mode, 'active': False,
                'reason': 'core_scheduling = off'}
    supported, why = support(prctl)
    return {'mode': mode, 'active': supported, 'reason': why}


def describe(state):
    """One line for an operator."""
    if state['active']:
        return ('core scheduling: active (core_scheduling = %s): one '
                'cookie per isolation key' % state['mode'])
    return 'core scheduling: not active (core_scheduling = %s): %s' % (
        state['mode'], state['reason'])


def direct_reader(proc_root='/proc', prctl=None):
    """``pid -> {tid: cookie}`` read in this process (root, or the QEMU's
    own user)."""
    prctl = prctl or Prctl()
    return lambda pid: thread_cookies(pid, prctl, proc_root)
