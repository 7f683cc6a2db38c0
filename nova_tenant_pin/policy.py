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

"""Who is isolated, and how: one instance's tenant-pin policy.

An instance's policy comes from four places, in this order of authority:

1. the **operator, per project** (``[tenant_pin] exempt_projects``,
   ``[tenant_pin] isolation_groups``): an exempt project is never isolated;
   the projects of one isolation group trust each other and share cores;
2. the **flavor** (extra specs in the ``tenant_pin:`` namespace, set by
   the operator): ``tenant_pin:isolation`` = ``required`` | ``none``,
   ``tenant_pin:pin_mode`` = ``float`` | ``strict``,
   ``tenant_pin:cpu_allocation_ratio`` = a number >= 1.0;
3. the **image** (properties ``tenant_pin_isolation``,
   ``tenant_pin_pin_mode``, set by the image's owner): they may fill in
   what the flavor leaves unset, never contradict it; an image cannot set
   overcommit;
4. the **host default** (``[tenant_pin] pin_mode``,
   ``tenant_cpu_allocation_ratio``; isolation is required by default).

A flavor and an image that set the same thing to different values are a
conflict, refused with :class:`PolicyConflict` naming both, as Nova does for
``hw:cpu_policy`` and ``hw_cpu_policy``. An instance that is not isolated
runs in the shared pool (:data:`SHARED_POOL`): cores that the isolated
tenants never touch.

:func:`resolve` is the one place this is decided: the driver and the
scheduler filter both call it. It is pure: it imports neither Nova nor
libvirt.
"""

import dataclasses
import math
import re

from nova_tenant_pin import exception
from nova_tenant_pin import topology as topo

ISOLATION_SPEC = 'tenant_pin:isolation'
PIN_MODE_SPEC = 'tenant_pin:pin_mode'
RATIO_SPEC = 'tenant_pin:cpu_allocation_ratio'
ISOLATION_PROP = 'tenant_pin_isolation'
PIN_MODE_PROP = 'tenant_pin_pin_mode'

REQUIRED = 'required'
NONE = 'none'
ISOLATION_VALUES = (REQUIRED, NONE)
PIN_MODES = ('float', 'strict')

#: The isolation key of every instance that is not isolated: they share
#: the shared pool's cores, never an isolated tenant's.
SHARED_POOL = 'exempt'
GROUP_PREFIX = 'group-'
RATIO_RE = re.compile(r'^[0-9]+(\.[0-9]+)?$')
GROUP_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,57}$')


class PolicyError(exception.TenantPinException, ValueError):
    """A tenant-pin setting has a value it cannot have."""


class PolicyConflict(PolicyError):
    """Two sources set one policy field to different values."""


@dataclasses.dataclass(frozen=True)
class ProjectSettings:
    """The operator's per-project settings from ``[tenant_pin]``."""

    exempt_projects: frozenset = frozenset()
    groups: dict = dataclasses.field(default_factory=dict)  # project: name

    @classmethod
    def from_options(cls, exempt_projects=(), isolation_groups=()):
        """Parse ``exempt_projects`` and ``isolation_groups`` entries
        ``NAME:PROJECT[,PROJECT...]``; PolicyError names a bad entry."""
        groups = {}
        for entry in isolation_groups or ():
            name, sep, projects = entry.partition(':')
            name = name.strip()
            members = [p.strip() for p in projects.split(',') if p.strip()]
            if not sep or not GROUP_RE.match(name) or not members:
                raise PolicyError(
                    '[tenant_pin] isolation_groups: %r is not NAME:PROJECT'
                    '[,PROJECT...] with a NAME of letters, digits, "_" and '
                    '"-"' % entry)
            for project in members:
                if project in groups and groups[project] != name:
                    raise PolicyError(
                        '[tenant_pin] isolation_groups: project %s is in '
                        'groups %s and %s' % (project, groups[project],
                                              name))
                groups[project] = name
        exempt = frozenset(exempt_projects or ())
        both = sorted(exempt & set(groups))
        if both:
            raise PolicyError('[tenant_pin] projects %s are both exempt and '
                              'in an isolation group' % ', '.join(both))
        return cls(exempt, groups)


@dataclasses.dataclass(frozen=True)
class Policy:
    """What one instance gets.

    ``isolation_key`` is what the allocator isolates on: the project, its
    isolation group (``group-<name>``) or the shared pool. ``sources`` says
    where each field came from (``project``, ``flavor``, ``image``,
    ``host``), for logs and errors.
    """

    isolated: bool
    isolation_key: str
    pin_mode: str
    ratio: float
    sources: tuple

    def describe(self):
        return ', '.join('%s from %s' % (k, v) for k, v in self.sources)


def parse_ratio(value, where):
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = None
    if ratio is None or not RATIO_RE.match(str(value).strip()) or \
            not math.isfinite(ratio) or ratio < 1.0:
        raise PolicyError('%s must be a number >= 1.0 such as 1.0 or 1.5, '
                          'got %r' % (where, value))
    return ratio


def _choose(flavor_key, flavor, image_key, image, allowed):
    """The flavor's value, else the image's; both set must agree."""
    f = flavor.get(flavor_key)
    i = image.get(image_key)
    for key, value in ((flavor_key, f), (image_key, i)):
        if value is not None and value not in allowed:
            raise PolicyError('%s must be one of %s, got %r'
                              % (key, ', '.join(allowed), value))
    if f is not None and i is not None and f != i:
        raise PolicyConflict(
            'image property %s=%s conflicts with flavor extra spec %s=%s; '
            'use an image without it or a flavor that allows it'
            % (image_key, i, flavor_key, f))
    if f is not None:
        return f, 'flavor'
    if i is not None:
        return i, 'image'
    return None, None


def describe_settings(settings, static):
    """One line for the log: the exempt projects, the isolation groups and
    the static cpusets (``{project or key: cpus}``) in force."""
    return 'exempt projects %s, isolation groups %s, static cpusets %s' % (
        ', '.join(sorted(settings.exempt_projects)) or 'none',
        ', '.join('%s=%s' % (p, g) for p, g in
                  sorted(settings.groups.items())) or 'none',
        ', '.join('%s:%s' % (t, topo.format_cpu_list(c)) for t, c in
                  sorted(static.items())) or 'none')


def static_keys(static, key_of):
    """The static cpusets (``{project or isolation key: cpus}``, as
    ``static_tenant_cpuset`` names them) by isolation key: a project in an
    isolation group gives its cpuset to the group's key, an exempt project
    to the shared pool. ``key_of`` is a project's isolation key."""
    result = {}
    for name, cpus in static.items():
        key = name
        if not (name == SHARED_POOL or name.startswith(GROUP_PREFIX)):
            key = key_of(name)
        result[key] = result.get(key, frozenset()) | cpus
    return result


def resolve(project_id, extra_specs=None, image_properties=None,
            settings=None, default_pin_mode='float', default_ratio=1.0):
    """The policy of an instance of ``project_id``.

    :param extra_specs: the flavor's extra specs (a dict).
    :param image_properties: the image's properties (a dict; the
        ``tenant_pin_*`` ones are read).
    :param settings: the operator's :class:`ProjectSettings`.
    :raises PolicyConflict: the flavor and the image disagree.
    :raises PolicyError: a value that cannot be.
    """
    flavor = {k: str(v).strip() for k, v in (extra_specs or {}).items()
              if k.startswith('tenant_pin:')}
    # Image properties are taken as they are: any user who may upload an
    # image sets them, and no API validator checks them, so a value with
    # whitespace ("strict\n", " required ") is refused as Nova's flavor
    # extra-spec validator refuses it, not cleaned up.
    image = {k: str(v) for k, v in (image_properties or {}).items()
             if k.startswith('tenant_pin_')}
    settings = settings or ProjectSettings()
    sources = []

    isolation, source = _choose(ISOLATION_SPEC, flavor, ISOLATION_PROP,
                                image, ISOLATION_VALUES)
    if project_id in settings.exempt_projects:
        isolated, source = False, 'project'
    elif isolation is None:
        isolated, source = True, 'host'
    else:
        isolated = isolation == REQUIRED
    sources.append(('isolation', source))

    pin_mode, source = _choose(PIN_MODE_SPEC, flavor, PIN_MODE_PROP, image,
                               PIN_MODES)
    if pin_mode is None:
        pin_mode, source = default_pin_mode, 'host'
    sources.append(('pin_mode', source))

    if RATIO_SPEC in flavor:
        ratio = parse_ratio(flavor[RATIO_SPEC], RATIO_SPEC)
        sources.append(('ratio', 'flavor'))
    else:
        ratio = default_ratio
        sources.append(('ratio', 'host'))
    if 'tenant_pin_cpu_allocation_ratio' in image:
        raise PolicyError('images cannot set overcommit: remove the image '
                          'property tenant_pin_cpu_allocation_ratio (the '
                          'flavor extra spec %s sets it)' % RATIO_SPEC)

    if not isolated:
        key = SHARED_POOL
    elif project_id in settings.groups:
        key = GROUP_PREFIX + settings.groups[project_id]
    else:
        key = project_id
    return Policy(isolated, key, pin_mode, ratio, tuple(sources))
