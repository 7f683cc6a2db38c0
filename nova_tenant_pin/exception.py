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

"""The exceptions of nova-tenant-pin: one root, :class:`TenantPinException`.

Every exception the privsep daemon may raise takes one message argument,
so that oslo.privsep can re-raise it in the unprivileged caller exactly as
the daemon raised it (the daemon sends the class path and ``args``). The
pure modules' errors (``allocator.PlanError``, ``policy.PolicyError``)
derive from the root too.
"""


class TenantPinException(Exception):
    """Base of this package's errors; ``msg_fmt`` formats keyword args."""

    msg_fmt = 'an unknown nova-tenant-pin error occurred'

    def __init__(self, message=None, **kwargs):
        super().__init__(message or self.msg_fmt % kwargs)


class PartitionError(TenantPinException):
    msg_fmt = 'tenant partition %(name)s: %(reason)s'


class PartitionBusy(PartitionError):
    msg_fmt = 'tenant partition %(name)s still holds tasks %(tasks)s'


class InvalidArgument(TenantPinException, ValueError):
    msg_fmt = 'refused %(what)s %(value)r: %(reason)s'


class CgroupLayoutError(TenantPinException):
    msg_fmt = 'cgroup layout: %(reason)s'


class HousekeepingError(TenantPinException):
    msg_fmt = '%(reason)s'


class UnsafePath(InvalidArgument):
    """A path privileged code refuses to open: a symlink on the way, a
    "." or "..", or a file on the wrong kind of file system."""


class TenantDoesNotFit(TenantPinException):
    """The host has no whole cores left for this key's new instance."""

    msg_fmt = 'instance %(uuid)s of tenant %(key)s does not fit: %(reason)s'

    def __init__(self, uuid, key, reason):
        super().__init__(uuid=uuid, key=key, reason=reason)
        self.uuid = uuid
        self.key = key
        self.reason = reason
