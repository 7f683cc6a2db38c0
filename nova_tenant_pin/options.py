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

"""The compute host's options, read and checked once for the driver and
every command.

nova-compute (``driver.load_options``) and ``nova-tenant-pin`` (``status``,
``audit``, ``adopt``, ``housekeeping``, ``check``) read the ``[tenant_pin]``
options and Nova's ``[compute] cpu_shared_set`` / ``cpu_dedicated_set``
here, with Nova's own CPU-spec parser (``nova.virt.hardware.parse_cpu_spec``,
so ``2-7,^5`` means the same everywhere). Every refusal is a
``nova.exception.InvalidConfiguration`` whose text starts with the option
that is wrong, ``[group] name: ...``, and says why in one line.
"""

import glob
import os

from oslo_config import cfg

from nova_tenant_pin import conf as tp_conf  # noqa: F401  ([tenant_pin])

#: The files nova-compute reads when started by the distributions'
#: packaging (``--config-file /etc/nova/nova.conf --config-file
#: /etc/nova/nova-compute.conf``): oslo.config finds both as project
#: "nova", program "nova-compute".
NOVA_PROJECT = 'nova'
NOVA_COMPUTE_PROG = 'nova-compute'


def default_config_files():
    """nova.conf and nova-compute.conf where oslo.config looks for them
    (``~/.nova``, ``~``, ``/etc/nova``, ``/etc``), those that exist."""
    return cfg.find_config_files(project=NOVA_PROJECT,
                                 prog=NOVA_COMPUTE_PROG)


def default_config_dirs():
    """``nova.conf.d`` and ``nova-compute.conf.d`` where they exist."""
    return cfg.find_config_dirs(project=NOVA_PROJECT, prog=NOVA_COMPUTE_PROG)


def files_read(conf):
    """The configuration files ``conf`` was loaded from, in the order
    oslo.config read them: each ``config_file``, then each
    ``config_dir``'s ``*.conf`` in name order."""
    files = [f for f in (conf.config_file or []) if os.path.exists(f)]
    dirs = conf.config_dir or []
    for directory in [dirs] if isinstance(dirs, str) else dirs:
        files += sorted(glob.glob(os.path.join(directory, '*.conf')))
    return files


def _invalid(group, option, reason):
    from nova import exception

    where = '[%s] %s' % (group, option) if group else option
    return exception.InvalidConfiguration('%s: %s' % (where, reason))


def value(conf, group, option):
    """``[group] option`` from ``conf``; a value oslo.config refuses (a
    ratio below its minimum, a choice not offered) is an
    InvalidConfiguration naming the option and the file, not oslo's
    LocationInfo dump."""
    try:
        return conf[group][option]
    except cfg.ConfigFileValueError as e:
        raw = _raw_value(conf, group, option)
        reason = str(e).split(' is not valid: ', 1)[-1]
        raise _invalid(group, option, '%s is refused: %s' % (
            raw if raw is not None else 'the value', reason.rstrip('.')))


def _raw_value(conf, group, option):
    """The text of ``[group] option`` as written in a config file, or
    None."""
    try:
        found = conf._namespace._get_file_value([(group, option)])
    except Exception:
        return None
    values = found[0] if found else None
    if isinstance(values, list) and values:
        return values[-1]
    return values


def cpu_spec(spec, group, option):
    """A CPU spec (``0-3,^2,8``) as Nova parses it, as a frozenset; an
    empty or unset spec is an empty set.

    :raises nova.exception.InvalidConfiguration: naming ``[group]
        option``.
    """
    from nova import exception
    from nova.virt import hardware

    if not spec or not str(spec).strip():
        return frozenset()
    try:
        return frozenset(hardware.parse_cpu_spec(spec))
    except exception.Invalid as e:
        raise _invalid(group, option, str(e))


def nova_cpu_set(conf, option, online_cpus=None):
    """``[compute] option`` (``cpu_shared_set`` or ``cpu_dedicated_set``)
    as Nova parses it, None when unset. With ``online_cpus``, CPUs that
    are not online are refused, naming the option."""
    import nova.conf

    try:
        conf.compute
    except cfg.NoSuchOptError:
        # A ConfigOpts of its own (not the process's CONF, where importing
        # nova.conf registered them): Nova's own [compute] options.
        nova.conf.compute.register_opts(conf)
    spec = value(conf, 'compute', option)
    if not spec:
        return None
    cpus = cpu_spec(spec, 'compute', option)
    if not cpus:
        raise _invalid('compute', option, '%r leaves no CPU' % spec)
    if online_cpus is not None:
        _must_be_online(cpus, online_cpus, 'compute', option)
    return cpus


def _must_be_online(cpus, online_cpus, group, option):
    from nova.virt import hardware

    outside = set(cpus) - set(online_cpus)
    if outside:
        raise _invalid(group, option, 'CPUs %s are not online CPUs of this '
                       'host' % hardware.format_cpu_spec(outside))


def housekeeping_cpus(conf, online_cpus, override=None, override_name=None):
    """The housekeeping CPUs as the driver has them: ``[tenant_pin]
    housekeeping_cpus`` (or ``override``, a command's flag, reported as
    ``override_name``), else the online CPUs ``[compute] cpu_shared_set``
    and ``cpu_dedicated_set`` leave out. Never empty, all online.

    :raises nova.exception.InvalidConfiguration: naming the option.
    """
    group, option = tp_conf.GROUP, 'housekeeping_cpus'
    spec = override if override is not None else value(conf, group, option)
    if override is not None and override_name:
        group, option = None, override_name
    if spec is not None and str(spec).strip():
        cpus = cpu_spec(spec, group, option)
    else:
        shared = nova_cpu_set(conf, 'cpu_shared_set', online_cpus) or set()
        dedicated = nova_cpu_set(conf, 'cpu_dedicated_set',
                                 online_cpus) or set()
        if not shared and not dedicated:
            raise _invalid(
                group, option, 'unset, and [compute] cpu_shared_set and '
                'cpu_dedicated_set are unset too, so no CPU would be left '
                'for host housekeeping; set one of them')
        cpus = frozenset(online_cpus) - shared - dedicated
    if not cpus:
        raise _invalid(group, option, 'no CPU left for host housekeeping')
    _must_be_online(cpus, online_cpus, group, option)
    return frozenset(cpus)


def project_settings(conf):
    """The per-project settings (``exempt_projects``,
    ``isolation_groups``) as a :class:`policy.ProjectSettings`.

    :raises nova.exception.InvalidConfiguration: naming the option.
    """
    from nova import exception

    from nova_tenant_pin import cgroups
    from nova_tenant_pin import policy

    group = tp_conf.GROUP
    exempt = value(conf, group, 'exempt_projects')
    for project in exempt:
        try:
            cgroups.validate_tenant_id(project)
        except cgroups.PartitionError as e:
            raise _invalid(group, 'exempt_projects', e)
    try:
        return policy.ProjectSettings.from_options(
            exempt, value(conf, group, 'isolation_groups'))
    except policy.PolicyError as e:
        raise exception.InvalidConfiguration(str(e))


def static_cpusets(conf, online_cpus):
    """``[tenant_pin] static_tenant_cpuset`` as ``{project: CPUs}``."""
    from nova_tenant_pin import cgroups

    group, option = tp_conf.GROUP, 'static_tenant_cpuset'
    static = {}
    for entry in value(conf, group, option):
        project, sep, spec = entry.partition(':')
        project = project.strip()
        if not sep or not project or not spec.strip():
            raise _invalid(group, option, '%r is not PROJECT_ID:CPU_SPEC'
                           % entry)
        try:
            cgroups.validate_tenant_id(project)
        except cgroups.PartitionError as e:
            raise _invalid(group, option, '%r: %s' % (entry, e))
        try:
            cpus = cpu_spec(spec, group, option)
        except Exception as e:
            raise _invalid(group, option, '%r: %s' % (
                entry, str(e).split(': ', 1)[-1]))
        if project in static:
            raise _invalid(group, option, 'project %s is listed twice'
                           % project)
        outside = set(cpus) - set(online_cpus)
        if outside:
            from nova.virt import hardware
            raise _invalid(group, option, '%r: CPUs %s are not online'
                           % (entry, hardware.format_cpu_spec(outside)))
        static[project] = set(cpus)
    return static


def load_options(conf, topology, housekeeping=None,
                 housekeeping_name=None):
    """Read and check the ``[tenant_pin]`` options against the host, as
    nova-compute does at start.

    :param housekeeping: a command's ``--housekeeping-cpus``, used instead
        of the option (errors name ``housekeeping_name``).
    :returns: dict of keyword arguments for the manager.
    :raises nova.exception.InvalidConfiguration: naming the option.
    """
    online = topology.online_cpus
    group = tp_conf.GROUP
    return {
        'housekeeping_cpus': housekeeping_cpus(conf, online, housekeeping,
                                               housekeeping_name),
        'pin_mode': value(conf, group, 'pin_mode'),
        'ratio': value(conf, group, 'tenant_cpu_allocation_ratio'),
        'static': static_cpusets(conf, online),
        'settings': project_settings(conf),
        'reserved_cpus': frozenset(
            nova_cpu_set(conf, 'cpu_dedicated_set') or ()),
    }
