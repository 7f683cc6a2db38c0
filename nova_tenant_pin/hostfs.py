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

"""The one way privileged code opens host files: no symlink, right kind.

Every file the privsep daemon reads or writes (cgroup files, ``/proc/irq``,
the workqueue mask) and every directory it creates or removes is reached
by walking from ``/`` one component at a time with ``openat(2)``:
directories with ``O_DIRECTORY|O_NOFOLLOW``, the file itself with
``O_NOFOLLOW`` (and ``O_NONBLOCK``, so a planted FIFO cannot hang the
daemon). A symlink anywhere on the way is refused, not followed, so a
file or directory swapped for a symlink between a check and the write
cannot redirect the write. The file system of what was opened is then
checked with ``fstatfs(2)``: a cgroup file must be on ``cgroup`` or
``cgroup2``, an IRQ file on ``proc``, the workqueue mask on ``sysfs``, so
a bind mount of some other file over a cgroup file is refused as well.

A refusal raises :class:`~nova_tenant_pin.exception.UnsafePath` (an
InvalidArgument) and changes nothing. Reading and writing is otherwise
plain: one ``read`` to the end, one ``write`` of the whole value (cgroup
files take a value per write).
"""

import ctypes
import errno
import os

from nova_tenant_pin import exception

CGROUP = 'cgroup'
CGROUP2 = 'cgroup2'
PROC = 'proc'
SYSFS = 'sysfs'
# The kinds a cgroup file or directory may be on (v1 or v2).
CGROUPS = frozenset([CGROUP, CGROUP2])

# f_type of statfs(2), from linux/magic.h.
MAGIC = {
    0x27e0eb: CGROUP,
    0x63677270: CGROUP2,
    0x9fa0: PROC,
    0x62656572: SYSFS,
}

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_READ = 1 << 20


class _StatFs(ctypes.Structure):
    # struct statfs: f_type (a long) first; the rest is not read. 256
    # bytes is more than the kernel's struct on any 64-bit ABI.
    _fields_ = [('f_type', ctypes.c_long), ('_rest', ctypes.c_char * 248)]


_libc = ctypes.CDLL(None, use_errno=True)


def fs_type(fd):
    """The kind of file system ``fd`` is on: one of CGROUP, CGROUP2, PROC,
    SYSFS, else its magic number in hex."""
    buf = _StatFs()
    if _libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    magic = buf.f_type & 0xffffffff
    return MAGIC.get(magic, '0x%x' % magic)


def _refuse(path, reason):
    raise exception.UnsafePath(what='path', value=path, reason=reason)


def _components(path):
    if not isinstance(path, str) or not path.startswith('/') or \
            '\0' in path:
        _refuse(path, 'not an absolute path')
    parts = [p for p in path.split('/') if p]
    if any(p in ('.', '..') for p in parts):
        _refuse(path, 'has a "." or ".." component')
    return parts


def _check_kind(fd, path, kinds):
    kind = fs_type(fd)
    if kind not in kinds:
        _refuse(path, 'is on %s, not %s' % (kind, ' or '.join(sorted(kinds))))


def _open_step(name, flags, dir_fd, path):
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            _refuse(path, '%s is a symlink (not followed)' % name)
        if e.errno == errno.ENOTDIR:
            _refuse(path, '%s is not a directory' % name)
        if e.errno == errno.ENXIO:
            _refuse(path, 'is not a regular or kernel file')
        raise


def open_dir(path, kinds=None):
    """A descriptor of directory ``path``, every component opened without
    following a symlink; on one of ``kinds`` when given. The caller
    closes it."""
    parts = _components(path)
    fd = os.open('/', _DIR_FLAGS)
    try:
        for part in parts:
            new = _open_step(part, _DIR_FLAGS, fd, path)
            os.close(fd)
            fd = new
        if kinds is not None:
            _check_kind(fd, path, kinds)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parent(path, kinds):
    parent, name = os.path.split(path.rstrip('/'))
    if not name:
        _refuse(path, 'has no name')
    return open_dir(parent or '/', kinds), name


def open_file(path, flags, kinds):
    """A descriptor of file ``path`` opened with ``flags``, never through a
    symlink, on one of ``kinds``. The caller closes it."""
    dir_fd, name = _parent(path, None)
    try:
        fd = _open_step(name, flags | _FILE_FLAGS, dir_fd, path)
    finally:
        os.close(dir_fd)
    try:
        _check_kind(fd, path, kinds)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_file(path, kinds):
    """Refuse ``path`` as :func:`open_file` would, without reading or
    writing it: for a change of several files that should fail before the
    first write, not after."""
    os.close(open_file(path, os.O_RDONLY, kinds))


def read_text(path, kinds):
    """The text of ``path`` (UTF-8, other bytes as ``\\xNN`` escapes)."""
    fd = open_file(path, os.O_RDONLY, kinds)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            if sum(len(c) for c in chunks) > _MAX_READ:
                _refuse(path, 'is longer than %d bytes' % _MAX_READ)
        return b''.join(chunks).decode('utf-8', 'backslashreplace')
    finally:
        os.close(fd)


def write_text(path, text, kinds):
    """Write ``text`` to ``path`` in one ``write(2)``."""
    data = text.encode('ascii')
    fd = open_file(path, os.O_WRONLY, kinds)
    try:
        # Truncated as open(path, "w") would, but only once the file
        # system is known (O_TRUNC would truncate before the check);
        # kernel files accept it and ignore it.
        os.ftruncate(fd, 0)
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.EIO, 'short write to %s (%d of %d bytes)'
                          % (path, written, len(data)))
    finally:
        os.close(fd)


def mkdir(path, kinds):
    """Create directory ``path`` in a parent on one of ``kinds``."""
    dir_fd, name = _parent(path, kinds)
    try:
        os.mkdir(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def rmdir(path, kinds):
    """Remove directory ``path`` from a parent on one of ``kinds``."""
    dir_fd, name = _parent(path, kinds)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def isdir(path, kinds):
    """True when ``path`` is a directory on one of ``kinds`` reached
    without a symlink; False when it does not exist; UnsafePath when a
    symlink or another file system is in the way."""
    try:
        fd = open_dir(path, kinds)
    except FileNotFoundError:
        return False
    os.close(fd)
    return True


def listdir(path, kinds):
    """The names in directory ``path`` (on one of ``kinds``)."""
    fd = open_dir(path, kinds)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)
