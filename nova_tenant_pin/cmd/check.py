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

"""``nova-tenant-pin check``: is this compute node ready to run tenant-pin?

The ``nova-status upgrade check`` pattern (oslo.upgradecheck's results and
codes): a list of checks, each Success, Warning or Failure with a hint, one
row per check (``Check``, ``Result``, ``Details``, printed by cliff's
formatters) and the highest code as the exit code: 0 all succeeded, 1 a
warning, 2 a failure, 255 a check raised. Reads, never writes.
"""

import argparse
import os
import shlex
import shutil
import sys

from oslo_config import cfg

from nova_tenant_pin.cmd import main as cli

HELP = """\
Check that this compute node can run tenant-pin, as "nova-status upgrade
check" does for Nova: the configuration (read as nova-compute reads it), the
housekeeping CPUs (set, online, whole cores), the cgroup layout and its
cpuset controller, libvirt (reachable, and the cgroup controllers it uses),
the privileged helper, the kernel's SMT state and CPU vulnerabilities, the
scheduler filter and weigher and cpu_allocation_ratio. Each check is
Success, Warning or Failure with a hint. Changes nothing.
Exit codes (as nova-status): 0 success, 1 a warning, 2 a failure, 255 a
check could not run (the rows before it are printed).
"""

#: Where libvirt's QEMU driver reads ``cgroup_controllers``.
QEMU_CONF = '/etc/libvirt/qemu.conf'
FILTER = 'TenantPinFilter'
WEIGHER = 'TenantPinWeigher'
COLUMNS = ('Check', 'Result', 'Details')
#: A check could not run (as nova-status).
EXIT_CRASH = 255


class Check(cli.Lister):
    """Check that this compute node can run tenant-pin."""

    _description = __doc__.splitlines()[0] + '\n\n' + HELP

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--libvirt-uri', default='qemu:///system',
                            metavar='URI',
                            help='libvirt connection (default '
                                 'qemu:///system)')
        parser.add_argument('--host-root', default='/',
                            help=argparse.SUPPRESS)
        return parser

    def take_action(self, parsed_args):
        rows, self.exit_code = run(host_checks(parsed_args))
        return COLUMNS, rows


def _upgradecheck():
    from oslo_upgradecheck import upgradecheck
    return upgradecheck


def _result(code, details):
    upgradecheck = _upgradecheck()
    return upgradecheck.Result(getattr(upgradecheck.Code, code), details)


def success(details=None):
    return _result('SUCCESS', details)


def warning(details, hint):
    return _result('WARNING', '%s Hint: %s' % (details, hint))


def failure(details, hint):
    return _result('FAILURE', '%s Hint: %s' % (details, hint))


class TenantPinChecks:
    """The checks, each returning an oslo.upgradecheck ``Result``;
    :func:`run` runs them in the order of :data:`CHECKS`."""

    def __init__(self, conf=None, host_root='/', libvirt_uri='qemu:///system',
                 connect=None):
        self.conf = conf or cfg.CONF
        self.host_root = host_root
        self.libvirt_uri = libvirt_uri
        self._connect = connect or _connect_read_only
        self._topology = self._options = self._options_error = None

    def _path(self, path):
        return os.path.join(self.host_root, path.lstrip('/'))

    # -- configuration -----------------------------------------------------

    def _load(self):
        """The topology and the driver's options, read once."""
        if self._options is None and self._options_error is None:
            from nova import exception as nova_exception

            from nova_tenant_pin import options
            from nova_tenant_pin import topology

            try:
                self._topology = topology.HostTopology.from_sysfs(
                    self.host_root)
                self._options = options.load_options(self.conf,
                                                     self._topology)
            except (topology.TopologyError,
                    nova_exception.NovaException) as e:
                self._options_error = str(e)
        return self._options

    def check_config(self):
        from nova_tenant_pin import options

        files = options.files_read(self.conf)
        if not files:
            return failure('No configuration file was read.',
                           'give --config-file /etc/nova/nova.conf (and '
                           'nova-compute.conf) as nova-compute has them.')
        if self._load() is None:
            return failure(self._options_error,
                           'fix the option named, as nova-compute would '
                           'refuse to start with it; see "Configuration '
                           'options" in the documentation.')
        driver = self.conf.compute_driver or ''
        if not driver.endswith('TenantPinLibvirtDriver'):
            return warning(
                '[DEFAULT] compute_driver is %r: nova-compute does not run '
                'tenant-pin.' % driver,
                'set compute_driver = tenant_pin.TenantPinLibvirtDriver '
                'once check and audit are green.')
        return success('Read %s.' % ', '.join(files))

    def check_housekeeping(self):
        from nova_tenant_pin import topology as topo

        if self._load() is None:
            if 'housekeeping' not in self._options_error or \
                    self._topology is None:
                return failure(self._options_error,
                               'fix the "Configuration" check first.')
            first = self._topology.cores[0].cpus
            return failure(self._options_error,
                           'set [tenant_pin] housekeeping_cpus = %s (the '
                           'first core and its siblings).'
                           % topo.format_cpu_list(first))
        cpus = self._options['housekeeping_cpus']
        host = self._topology
        partial = sorted(core.cpus for core in host.cores_of(cpus)
                         if not set(core.cpus) <= cpus)
        left = host.online_cpus - host.whole_core_cpus(cpus) - \
            self._options['reserved_cpus']
        if not left:
            return failure(
                'Housekeeping CPUs %s (whole cores) leave no core for the '
                'tenants.' % topo.format_cpu_list(cpus),
                'keep one core and its siblings for housekeeping, such as '
                'the first core.')
        if partial:
            return warning(
                'Housekeeping CPUs %s cover only some threads of cores %s; '
                'the driver reserves those cores whole.' % (
                    topo.format_cpu_list(cpus), ', '.join(
                        topo.format_cpu_list(c) for c in partial)),
                'list every sibling thread: housekeeping_cpus = %s.'
                % topo.format_cpu_list(host.whole_core_cpus(cpus)))
        return success('Housekeeping CPUs %s (whole cores); tenants get '
                       '%s.' % (topo.format_cpu_list(cpus),
                                topo.format_cpu_list(left)))

    # -- cgroups, libvirt, privileges -----------------------------------------

    def check_cgroups(self):
        from nova_tenant_pin import cgroupfs
        from nova_tenant_pin import exception

        try:
            layout = cgroupfs.detect_layout(self.host_root)
            cpuset = layout.require_cpuset()
        except (exception.TenantPinException, OSError) as e:
            return failure(str(e), 'mount the cpuset controller (cgroup v2: '
                           'the unified hierarchy; v1: a cpuset hierarchy) '
                           'before libvirtd starts.')
        try:
            layout.require_supported()
        except exception.CgroupLayoutError as e:
            return failure(str(e), 'add systemd.unified_cgroup_hierarchy=1 '
                           'to the kernel command line (and remove any '
                           'systemd.unified_cgroup_hierarchy=0 or '
                           'systemd.legacy_systemd_cgroup_controller), then '
                           'reboot; see the host layouts page of the admin '
                           'guide.')
        try:
            root = self.conf.tenant_pin.cgroup_root
            path = cpuset.path(root)
        except Exception as e:
            return failure('[tenant_pin] cgroup_root: %s' % e,
                           'keep the default "/" unless libvirtd runs in '
                           'a sub-cgroup.')
        if not os.path.isdir(path):
            return failure('[tenant_pin] cgroup_root %s is not a cgroup in '
                           'the cpuset hierarchy (%s).' % (root, path),
                           'set cgroup_root to where libvirtd puts its '
                           '"machine" group, usually "/".')
        if cpuset.version == 2:
            enabled = _read(os.path.join(path, 'cgroup.subtree_control'))
            if enabled is not None and 'cpuset' not in enabled.split():
                return warning(
                    'cgroup v2: cpuset is not enabled for the children of '
                    '%s (cgroup.subtree_control: %r).' % (path,
                                                          enabled.strip()),
                    'systemd enables it for machine.slice when libvirtd '
                    'starts a guest; "echo +cpuset > %s/cgroup.'
                    'subtree_control" does it now.' % path)
        return success('cgroup %s; cpuset controller at %s.'
                       % (layout.mode, path))

    def check_libvirt(self):
        try:
            version = self._connect(self.libvirt_uri)
        except Exception as e:
            return failure('Cannot connect to libvirt at %s: %s.'
                           % (self.libvirt_uri, str(e).rstrip('.')),
                           'start libvirtd (systemctl start libvirtd), or '
                           'give --libvirt-uri.')
        controllers = qemu_cgroup_controllers(self._path(QEMU_CONF))
        if controllers is not None and 'cpuset' not in controllers:
            return failure(
                'libvirt at %s does not use the cpuset controller: %s sets '
                'cgroup_controllers = %s.' % (self.libvirt_uri, QEMU_CONF,
                                              controllers),
                'add "cpuset" to cgroup_controllers (or remove the line) '
                'and restart libvirtd.')
        return success('libvirt %s at %s; cgroup controllers: %s.' % (
            version, self.libvirt_uri, 'libvirt\'s default (all)'
            if controllers is None else ', '.join(controllers)))

    def check_privsep(self):
        from nova_tenant_pin import privsep

        section = privsep.tenant_pin_pctxt.cfg_section
        command = self.conf[section].helper_command
        if not command:
            if os.geteuid() == 0:
                return success('Unset: run as root, the commands start the '
                               'privsep-helper beside this Python; '
                               'nova-compute starts it with "sudo '
                               'privsep-helper".')
            words = ['sudo', 'privsep-helper']
        else:
            words = shlex.split(command)
        missing = [w for w in _programs(words) if shutil.which(w) is None]
        if missing:
            return failure(
                '[%s] helper_command %r: %s not found on PATH.' % (
                    section, command or 'sudo privsep-helper ...',
                    ', '.join(missing)),
                'install oslo.privsep in nova-compute\'s environment and '
                'set helper_command as etc/nova/rootwrap.d/'
                'nova-tenant-pin.filters or etc/sudoers.d/nova-tenant-pin '
                'show (see "Privileges").')
        if not command:
            return warning(
                '[%s] helper_command is unset: the helper starts through '
                '"sudo privsep-helper", which needs a sudoers rule.'
                % section,
                'install etc/sudoers.d/nova-tenant-pin, or set '
                'helper_command to the rootwrap line in "Privileges".')
        return success('[%s] helper_command: %s' % (section, command))

    # -- kernel ------------------------------------------------------------

    def check_kernel(self):
        cpu = self._path('/sys/devices/system/cpu')
        control = _read(os.path.join(cpu, 'smt', 'control'))
        active = _read(os.path.join(cpu, 'smt', 'active'))
        vuln_dir = os.path.join(cpu, 'vulnerabilities')
        try:
            names = sorted(os.listdir(vuln_dir))
        except OSError:
            return warning('Cannot read %s: the kernel\'s view of CPU '
                           'vulnerabilities is unknown.'
                           % '/sys/devices/system/cpu/vulnerabilities',
                           'run on the compute node itself, with sysfs '
                           'mounted.')
        vulnerable = [n for n in names
                      if (_read(os.path.join(vuln_dir, n)) or '').startswith(
                          'Vulnerable')]
        smt = (control or 'unknown').strip()
        if smt in ('off', 'forceoff', 'notsupported', 'notimplemented') or \
                (active or '').strip() == '0':
            return warning('SMT is %s: every core has one thread, so '
                           'tenant-pin isolates nothing SMT would share.'
                           % smt, 'turn SMT on (nosmt off, smt/control '
                           '= on) to use the sibling threads.')
        if vulnerable:
            return warning(
                'SMT is %s; the kernel reports %s as Vulnerable.' % (
                    smt, ', '.join(vulnerable)),
                'tenant-pin keeps tenants off each other\'s sibling threads; '
                'update the kernel and microcode for the rest.')
        return success('SMT is %s; no CPU vulnerability reported as '
                       'Vulnerable (%d checked).' % (smt, len(names)))

    def check_core_scheduling(self):
        from oslo_privsep import priv_context

        from nova_tenant_pin import coresched
        from nova_tenant_pin import privsep

        mode = self.conf.tenant_pin.core_scheduling
        state = coresched.host_state(mode)
        if mode == coresched.OFF:
            return success('[tenant_pin] core_scheduling = off: guests carry '
                           'no core-scheduling cookie.')
        if not state['active']:
            if mode == coresched.REQUIRED:
                return failure(
                    '[tenant_pin] core_scheduling = required, but %s: '
                    'nova-compute will refuse to start.' % state['reason'],
                    'run a kernel built with CONFIG_SCHED_CORE on an SMT '
                    'host, or set core_scheduling = auto or off.')
            return success('Not active ([tenant_pin] core_scheduling = '
                           'auto): %s; tenants stay apart by their cores '
                           'only.' % state['reason'])
        section = privsep.core_sched_pctxt.cfg_section
        first = privsep.tenant_pin_pctxt.cfg_section
        for group in (section, first):
            self.conf.register_opts(priv_context.OPTS, group=group)
        command = self.conf[section].helper_command
        other = self.conf[first].helper_command
        if not command and other and os.geteuid() != 0:
            return warning(
                'Active, but [%s] helper_command is unset while [%s] sets '
                'one: the core-scheduling helper would start through "sudo '
                'privsep-helper".' % (section, first),
                'set helper_command = %s in [%s] too.' % (other, section))
        active = ('Active ([tenant_pin] core_scheduling = %s): one '
                  'core-scheduling cookie per isolation key; [%s] '
                  'helper_command: %s.' % (
                      mode, section, command or 'unset (root or sudo)'))
        try:
            enough, text = coresched.describe_sched_core(
                coresched.read_sched_core())
        except (OSError, ValueError) as e:
            return warning(
                '%s libvirt\'s sched_core could not be read from %s: %s.'
                % (active, coresched.LIBVIRT_QEMU_CONF, e),
                'run check as root (libvirt keeps qemu.conf readable by '
                'root only); nova-compute reads it through its privileged '
                'helper at start.')
        if enough:
            return success('%s %s.' % (active, text[0].upper() + text[1:]))
        if mode == coresched.REQUIRED:
            return failure('%s But %s: nova-compute will refuse to start.'
                           % (active, text),
                           '%s, then nova-compute.' % coresched.SCHED_CORE_FIX)
        return warning('%s But %s.' % (active, text),
                       '%s.' % coresched.SCHED_CORE_FIX)

    # -- scheduler ---------------------------------------------------------

    def check_scheduler(self):
        group = self.conf.filter_scheduler
        filters = [f.strip() for f in group.enabled_filters]
        weighers = ' '.join(group.weight_classes)
        missing = []
        if FILTER not in filters:
            missing.append('%s in [filter_scheduler] enabled_filters'
                           % FILTER)
        if WEIGHER not in weighers:
            missing.append('nova_tenant_pin.scheduler.weights.%s in '
                           '[filter_scheduler] weight_classes' % WEIGHER)
        if missing:
            return warning(
                'This nova.conf does not enable %s.' % ' nor '.join(missing),
                'enable them in the nova.conf of every nova-scheduler (see '
                '"Installation"); a host the scheduler does not plan for '
                'rejects what does not fit on whole cores, and Nova '
                'reschedules.')
        return success('%s and %s enabled.' % (FILTER, WEIGHER))

    def check_allocation_ratio(self):
        ratio = self.conf.cpu_allocation_ratio
        source = '[DEFAULT] cpu_allocation_ratio'
        if ratio is None:
            ratio = self.conf.initial_cpu_allocation_ratio
            source = '[DEFAULT] initial_cpu_allocation_ratio (the default)'
        try:
            tenant = self.conf.tenant_pin.tenant_cpu_allocation_ratio
        except cfg.Error:
            return failure('Not checked: [tenant_pin] '
                           'tenant_cpu_allocation_ratio is refused.',
                           'fix the "Configuration" check first.')
        if ratio > tenant:
            return warning(
                '%s is %s but a tenant may put only %s vCPUs on one thread '
                '([tenant_pin] tenant_cpu_allocation_ratio): placement '
                'would offer vCPUs the host cannot give.' % (
                    source, ratio, tenant),
                'set [DEFAULT] cpu_allocation_ratio = %s.' % tenant)
        return success('%s is %s, [tenant_pin] tenant_cpu_allocation_ratio '
                       'is %s.' % (source, ratio, tenant))


#: (name, method) in the order they run and print.
CHECKS = (
    ('Configuration', 'check_config'),
    ('Housekeeping CPUs', 'check_housekeeping'),
    ('Cgroup layout', 'check_cgroups'),
    ('Libvirt', 'check_libvirt'),
    ('Privileged helper', 'check_privsep'),
    ('Kernel SMT and CPU vulnerabilities', 'check_kernel'),
    ('Core scheduling', 'check_core_scheduling'),
    ('Scheduler filter and weigher', 'check_scheduler'),
    ('CPU allocation ratio', 'check_allocation_ratio'),
)


def _programs(words):
    """The programs a helper command line runs: the first word and, after
    sudo or a rootwrap, the next program word."""
    programs = []
    for word in words:
        if word.startswith('-') or '=' in word or word.endswith('.conf'):
            continue
        programs.append(word)
        if os.path.basename(word) not in ('sudo', 'nova-rootwrap',
                                          'oslo-rootwrap'):
            break
    return programs


def qemu_cgroup_controllers(path):
    """``cgroup_controllers`` set in libvirt's qemu.conf, as a list, or
    None when the file or the setting is absent (libvirt then uses every
    controller it finds)."""
    import re

    text = _read(path)
    if text is None:
        return None
    lines = [line for line in text.splitlines()
             if not line.lstrip().startswith('#')]
    match = re.search(r'^\s*cgroup_controllers\s*=\s*\[(.*?)\]',
                      '\n'.join(lines), re.M | re.S)
    if not match:
        return None
    return re.findall(r'"([^"]+)"', match.group(1))


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _connect_read_only(uri):
    """libvirt's version, from a read-only connection to ``uri``."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.openReadOnly(uri)
    try:
        v = conn.getLibVersion()
        return '%d.%d.%d' % (v // 1000000, v // 1000 % 1000, v % 1000)
    finally:
        conn.close()


def host_checks(args):
    """The checks of this host, as the command's options say."""
    return TenantPinChecks(host_root=args.host_root,
                           libvirt_uri=args.libvirt_uri)


def run(checks):
    """Run every check in order: ``(rows, exit code)``, one row
    ``(check, result, details)`` per check and the highest code, as
    nova-status exits. A check that raises stops the run: exit 255, as
    nova-status, with one line on stderr naming the check."""
    import nova.conf  # noqa: F401  (Nova's options: compute_driver, ...)

    upgradecheck = _upgradecheck()
    rows, code = [], upgradecheck.Code.SUCCESS
    for name, method in CHECKS:
        try:
            result = getattr(checks, method)()
        except Exception as e:
            sys.stderr.write('nova-tenant-pin check: the check "%s" could '
                             'not run: %s\n' % (name, e))
            return rows, EXIT_CRASH
        rows.append((name, upgradecheck.UPGRADE_CHECK_MSG_MAP[result.code],
                     result.details))
        code = max(code, result.code)
    return rows, int(code)
