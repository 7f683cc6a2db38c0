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

"""Seeded random operation sequences with libvirt faults, through Nova.

Three computes (SMT fake-libvirt hosts), four tenants, and a sequence of
operations drawn from a seed: boot, delete, hard and soft reboot, stop and
start, live migration, cold migration and resize confirmed or reverted,
compute restart, ``isolation_groups`` changes (the SIGHUP path), the
periodic resource update with its reconcile, and libvirt failing the way
it fails (:data:`FAULTS`): a live change of a guest meets "domain is not
running" (Nova is destroying it) or "cannot acquire state change lock"
(a migration's job took the domain after the manager read it), or a live
migration holds libvirt's async job on both of its domains while the
hosts' reconcile runs and another server boots onto the target. After
every operation an independent checker
(:mod:`~nova_tenant_pin.tests.functional.truth`, not the manager's state)
reads every domain's XML and every partition and asserts that

* no core is reachable by two isolation keys (vCPU, emulator and I/O
  threads),
* every ACTIVE server has its running domain on its host,
* no claim or partition is left for an instance that is neither on the
  host nor migrating,
* no live change was tried on a domain while a migration job held it
  (checked in the middle of the migration too).

CI runs :data:`SEEDS` (:data:`OPS` operations each). The stress mode runs
as many seeds as asked::

    TENANT_PIN_OPS_SEEDS=50 [TENANT_PIN_OPS_FIRST_SEED=1000] \\
        [TENANT_PIN_OPS_LENGTH=20] tox -e stress

and prints, for a failing seed, the seed and a shrunk list of operations
that still fails (at most ``TENANT_PIN_OPS_SHRINK_BUDGET`` replays, 40 by
default, 0 to skip; re-run the result with
``TENANT_PIN_OPS_ONLY=seed:i,j,...``).
"""

import os
import random
import subprocess
import sys
import time
from unittest import mock

import ddt
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client as api_client
from oslo_config import cfg

from nova_tenant_pin.tests.functional import base
from nova_tenant_pin.tests.functional import truth

CONF = cfg.CONF

#: The seeds CI runs; with OPS operations each, 300 operations.
SEEDS = (11, 23, 37, 41, 53, 67, 71, 83, 97, 101, 113, 127, 131, 149, 151)
OPS = 20

HOSTS = ('host1', 'host2', 'host3')
TENANTS = 'abcd'
VCPUS = (1, 2, 3)
IN_PROGRESS = ('MIGRATING', 'RESIZE', 'VERIFY_RESIZE', 'REBOOT',
               'HARD_REBOOT', 'BUILD')

#: Operation kinds and their weights.
KINDS = (('boot', 6), ('delete', 2), ('hard_reboot', 2), ('soft_reboot', 1),
         ('stop_start', 2), ('live_migrate', 3), ('cold_migrate', 2),
         ('resize', 2), ('restart', 1), ('groups', 1), ('fault', 2),
         ('periodic', 1))

#: The libvirt faults an operation 'fault' arms (chosen by its number).
FAULTS = ('not running', 'migration lock', 'migration job')


def generate(seed, length):
    """The operations of ``seed``: abstract, resolved against the servers
    that exist when each runs, so that any sub-list still runs."""
    rng = random.Random(seed)
    names = [k for k, w in KINDS for _ in range(w)]
    ops = []
    for _ in range(length):
        kind = rng.choice(names)
        ops.append((kind, rng.randrange(1 << 16), rng.choice(TENANTS),
                    rng.choice(VCPUS), rng.random() < 0.5))
    return ops


class Violation(AssertionError):
    pass


class RandomOpsBase(base.TenantPinTestBase):

    def setUp(self):
        super().setUp()
        # The periodic reconcile runs when the sequence says so ('periodic'),
        # not when the wall clock does: a seed replays the same way.
        self.flags(reconcile_interval=3600, group='tenant_pin')
        self.stub_live_migration(self._migrate_stub)
        self.stub_cold_migration()
        for host in HOSTS:
            self.start_compute(host)
        self.servers = []
        self.log = []
        self.labels = {}
        # Armed by a 'migration job' fault: (tenant, vcpus, same) of the
        # server that boots onto the target of the next live migration.
        self.job_hold = None
        self.mid_errors = []

    def _migrate_stub(self, domain, destination, params, flags):
        host = next(h for h in HOSTS if h in destination)
        conn = self.computes[host].driver._host.get_connection()
        # Nova migrates with VIR_MIGRATE_PERSIST_DEST: the target domain is
        # defined, not transient, and survives a later stop.
        target = conn.defineXML(params['destination_xml'])
        try:
            target.createWithFlags(0)
        except fakelibvirt.libvirtError:
            target.undefine()
            domain.fail_job()
            return
        if self.job_hold is not None:
            hold, self.job_hold = self.job_hold, None
            self._while_migrating(domain, target, host, *hold)
        domain.complete_job()

    def _while_migrating(self, source, target, host, tenant, vcpus, same):
        """What happens on the hosts while libvirt's async migration job
        holds both domains (a live change of either waits for the state
        change lock and fails): every compute's resource update with its
        reconcile due, and a server booting onto the target, of
        ``tenant`` or, with ``same``, of the migrating server's tenant
        (whose cores on the target grow around the migrating guest). Then
        the checker, in the middle of the migration."""
        if same:
            tenant = self.labels.get(source.UUIDString(), tenant)
        self.log.append(('while migrating %s to %s' % (
            source.UUIDString(), host), tenant, vcpus))
        source.tp_migration_job = 'out'
        target.tp_migration_job = 'in'
        try:
            self.op_periodic(0, tenant, vcpus, False)
            self._boot(tenant, vcpus, host)
            self.check()
        except Exception as e:
            # Raised here it would only fail the migration, quietly.
            self.mid_errors.append('while migrating to %s: %s' % (host, e))
        finally:
            source.tp_migration_job = False
            target.tp_migration_job = False

    # -- waiting on Nova ----------------------------------------------------

    def _settle(self, server, done=('ACTIVE', 'ERROR', 'SHUTOFF',
                                    'VERIFY_RESIZE')):
        """Poll the API until the server's status is one of ``done`` and
        no task runs on it."""
        for _ in range(600):
            try:
                server = self.api.get_server(server['id'])
            except Exception:
                return None
            if server['status'] in done and \
                    server.get('OS-EXT-STS:task_state') is None:
                return server
            time.sleep(0.05)
        raise Violation('server %s stuck in %s/%s' % (
            server['id'], server['status'],
            server.get('OS-EXT-STS:task_state')))

    def _all_servers(self):
        """``{uuid: server}`` of every tenant's servers, in one call."""
        return {s['id']: s for s in self.api.get_servers(
            detail=True, search_opts={'all_tenants': 1})}

    def _action(self, server, body):
        """Post a server action. With casts made calls (the harness), an
        error the compute raises comes back as the API's 500; a real
        client gets 202 and sees the result on the server. Either way the
        checker judges what the hosts hold afterwards."""
        try:
            self.api.post_server_action(server['id'], body)
        except api_client.OpenStackApiException as e:
            self.log.append(('api error', str(e)[:200]))
            return False
        return True

    def _pick(self, r, status=('ACTIVE',)):
        servers = self._all_servers()
        live = [servers[s['id']] for s in self.servers
                if s['id'] in servers and servers[s['id']]['status'] in status]
        if not live:
            return None
        return live[r % len(live)]

    # -- the operations -----------------------------------------------------

    def run_op(self, op):
        kind, r, tenant, vcpus, flag = op
        getattr(self, 'op_' + kind)(r, tenant, vcpus, flag)

    def op_boot(self, r, tenant, vcpus, flag):
        self._boot(tenant, vcpus, HOSTS[r % len(HOSTS)] if flag else None)

    def _boot(self, tenant, vcpus, host):
        server = self.tenant(tenant).post_server({'server': self._build_server(
            flavor_id=self._flavor(vcpus), networks='none', host=host)})
        self.servers.append(server)
        self.labels[server['id']] = tenant
        self._settle(server)

    def op_delete(self, r, tenant, vcpus, flag):
        server = self._pick(r, ('ACTIVE', 'SHUTOFF', 'ERROR'))
        if server is not None:
            self._delete_server(server)
            self.servers = [s for s in self.servers
                            if s['id'] != server['id']]

    def op_hard_reboot(self, r, tenant, vcpus, flag):
        server = self._pick(r)
        if server is not None:
            self._action(server, {'reboot': {'type': 'HARD'}})
            self._settle(server)

    def op_soft_reboot(self, r, tenant, vcpus, flag):
        server = self._pick(r)
        if server is not None:
            self._action(server, {'reboot': {'type': 'SOFT'}})
            self._settle(server)

    def op_stop_start(self, r, tenant, vcpus, flag):
        server = self._pick(r)
        if server is not None:
            self._action(server, {'os-stop': None})
            server = self._settle(server)
            if server is not None and server['status'] == 'SHUTOFF':
                self._action(server, {'os-start': None})
                self._settle(server)

    def op_live_migrate(self, r, tenant, vcpus, flag):
        server = self._pick(r)
        if server is None:
            return
        src = server['OS-EXT-SRV-ATTR:host']
        others = [h for h in HOSTS if h != src]
        host = others[r % len(others)] if flag else None
        # Refused (NoValidHost): nothing moved.
        self._action(server, {'os-migrateLive': {
            'host': host, 'block_migration': 'auto'}})
        self._settle(server)

    def _move(self, r, flag, body):
        server = self._pick(r)
        if server is None:
            return
        if callable(body):
            body = body(server)
        self._action(server, body)
        server = self._settle(server)
        if server is not None and server['status'] == 'VERIFY_RESIZE':
            self._action(server, {
                'confirmResize' if flag else 'revertResize': None})
            self._settle(server)

    def op_cold_migrate(self, r, tenant, vcpus, flag):
        self._move(r, flag, {'migrate': None})

    def op_resize(self, r, tenant, vcpus, flag):
        def body(server):
            # Nova refuses a resize to the flavor the server has.
            new = vcpus
            if new == server['flavor']['vcpus']:
                new = VCPUS[(VCPUS.index(new) + 1) % len(VCPUS)]
            return {'resize': {'flavorRef': self._flavor(new)}}
        self._move(r, flag, body)

    def op_restart(self, r, tenant, vcpus, flag):
        self.restart_compute_service(HOSTS[r % len(HOSTS)])
        self.pinning.fault = None

    def op_periodic(self, r, tenant, vcpus, flag):
        """Every compute's resource update, with its reconcile due."""
        now = time.monotonic() + 3601
        with mock.patch('nova_tenant_pin.driver.time.monotonic',
                        return_value=now):
            self._run_periodics()

    def op_groups(self, r, tenant, vcpus, flag):
        others = [t for t in TENANTS if t != tenant]
        groups = []
        if flag:
            mate = others[r % len(others)]
            groups = ['g%d:%s,%s' % (r % 3, self.project(tenant),
                                     self.project(mate))]
        self.flags(isolation_groups=groups, group='tenant_pin')
        CONF.mutate_config_files()

    def op_fault(self, r, tenant, vcpus, flag):
        """Arm one of :data:`FAULTS`; the next operations run into it.

        * 'not running': the first, second or third live change of a guest
          from now (a pin or a metadata write) fails as for a guest Nova is
          destroying (VIR_ERR_OPERATION_INVALID);
        * 'migration lock': that live change fails as libvirt's does when
          a migration's async job took the domain after the manager read
          its job state: after waiting for the state change lock
          (VIR_ERR_OPERATION_TIMEOUT);
        * 'migration job': the next live migration holds the job on its
          source and target domains (libvirt reports it) while the hosts'
          reconcile runs and a server of ``tenant`` (with ``flag``: of the
          migrating server's tenant) boots onto the target
          (:meth:`_while_migrating`).
        """
        kind = FAULTS[r % len(FAULTS)]
        if kind == 'migration job':
            self.job_hold = (tenant, vcpus, flag)
            return
        left = [1 + (r // len(FAULTS)) % 3]
        if kind == 'not running':
            error = (fakelibvirt.VIR_ERR_OPERATION_INVALID,
                     'Requested operation is not valid: domain is not '
                     'running')
        else:
            error = (fakelibvirt.VIR_ERR_OPERATION_TIMEOUT,
                     base.MIGRATION_LOCK)

        def fail(dom, what):
            left[0] -= 1
            if left[0] == 0:
                self.pinning.fault = None
                raise base.libvirt_error(*error)
        self.pinning.fault = fail

    # -- the independent checker -------------------------------------------

    def check(self):
        errors = list(self.mid_errors)
        self.mid_errors = []
        # Nothing may live-pin or re-meta a domain a migration job holds.
        errors += ['live %s of domain %s while a migration job held it'
                   % (what, uuid) for uuid, what in self.pinning.touched]
        servers = self._all_servers()
        migrations = {m['instance_uuid'] for m in
                      self.api.get_migrations()
                      if m['status'] not in ('completed', 'confirmed',
                                             'reverted', 'error', 'failed',
                                             'cancelled', 'done')}
        for host in HOSTS:
            driver = self.computes[host].driver
            partitions = self.partitions_of(host)
            errors += truth.core_violations(host, driver, partitions)
            guests = truth.host_guests(driver, active_only=False)
            running = {u for u, (g, active) in guests.items() if active}
            for uuid, s in servers.items():
                if s['status'] == 'ACTIVE' and \
                        s['OS-EXT-SRV-ATTR:host'] == host and \
                        uuid not in running:
                    errors.append('%s: ACTIVE server %s has no running '
                                  'domain' % (host, uuid))
            claims = driver.tenant_pin.claims()
            for uuid, claim in claims.items():
                s = servers.get(uuid)
                here = s is not None and s['OS-EXT-SRV-ATTR:host'] == host
                if not here and uuid not in migrations and \
                        uuid not in running:
                    errors.append('%s: claim left for instance %s of %s, '
                                  'which is %s' % (
                                      host, uuid, claim.key,
                                      'on %s' % s['OS-EXT-SRV-ATTR:host']
                                      if s else 'gone'))
            keys = {g.key for g, active in guests.values()} | \
                {g.partition for g, active in guests.values()} | \
                {c.key for c in claims.values()}
            for tenant in partitions:
                if tenant not in keys:
                    errors.append('%s: partition of %s left with no guest '
                                  'and no claim' % (host, tenant))
        if errors:
            raise Violation('\n'.join(errors))

    def run_ops(self, ops):
        for i, op in enumerate(ops):
            self.log.append((i, op))
            self.run_op(op)
            try:
                self.check()
            except Violation as e:
                raise Violation('after operation %d %r:\n%s' % (i, op, e))


def fails(seed, length, index):
    """Whether the operations ``index`` of ``seed`` fail, replayed in a
    fresh process (a fresh cloud)."""
    env = dict(os.environ, TENANT_PIN_OPS_SEEDS='0',
               TENANT_PIN_OPS_LENGTH=str(length),
               TENANT_PIN_OPS_ONLY='%d:%s' % (seed, ','.join(map(str, index))))
    proc = subprocess.run(
        [sys.executable, '-m', 'testtools.run', __name__ + '.TestStress.'
         'test_only'], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, check=False)
    return proc.returncode != 0


def shrink(seed, length, index, budget=40):
    """A shorter list of the operation indexes ``index`` of ``seed`` that
    still fails: drop chunks, halving their size, while the rest fails (at
    most ``budget`` replays)."""
    index = list(index)
    chunk = max(1, len(index) // 2)
    while chunk >= 1 and budget > 0:
        i, removed = 0, False
        while i < len(index) and budget > 0:
            candidate = index[:i] + index[i + chunk:]
            budget -= 1
            if candidate and fails(seed, length, candidate):
                index, removed = candidate, True
            else:
                i += chunk
        if not removed:
            chunk //= 2
    return index


@ddt.ddt
class TestRandomOperations(RandomOpsBase):

    def _run_seed(self, seed, length=OPS, only=None):
        ops = generate(seed, length)
        if only is not None:
            ops = [ops[i] for i in only]
        try:
            self.run_ops(ops)
        except Exception as e:
            budget = int(os.environ.get('TENANT_PIN_OPS_SHRINK_BUDGET', '40'))
            if int(os.environ.get('TENANT_PIN_OPS_SEEDS', '0') or 0) and \
                    only is None and budget:
                index = shrink(seed, length, range(len(ops)), budget)
                all_ops = generate(seed, length)
                sys.stderr.write(
                    'seed %d fails; shrunk to %d operations '
                    '(TENANT_PIN_OPS_ONLY=%d:%s TENANT_PIN_OPS_LENGTH=%d): '
                    '%r\n' % (
                        seed, len(index), seed, ','.join(map(str, index)),
                        length, [all_ops[i] for i in index]))
            raise AssertionError('seed %d, operations %r: %s' % (
                seed, [entry[1] if isinstance(entry[0], int) else entry
                       for entry in self.log], e))

    @ddt.data(*SEEDS)
    def test_seed(self, seed):
        self._run_seed(seed)

    def test_migration_job_fault(self):
        """The 'migration job' fault, as a fixed list: while a's guest
        migrates from host1 to host2 (the job holding both domains), a
        third server of a boots onto host2, where a's cores grow around
        the migrating guest without touching it; the checker runs in the
        middle of the migration and after it."""
        self.run_ops([('boot', 0, 'a', 2, True), ('boot', 1, 'b', 2, True),
                      ('boot', 1, 'a', 1, True),
                      ('fault', FAULTS.index('migration job'), 'd', 3, True),
                      ('live_migrate', 0, 'a', 1, True)])
        migrated, b1, a2, a3 = self.servers
        self.assertIn(('while migrating %s to host2' % migrated['id'], 'a',
                       3), self.log)
        servers = self._all_servers()
        for server in (migrated, a2, a3):
            self.assertEqual(('ACTIVE', 'host2'), (
                servers[server['id']]['status'],
                servers[server['id']]['OS-EXT-SRV-ATTR:host']))
        # 2 + 1 + 3 vCPUs of a on whole cores of host2; nothing of a
        # left on host1.
        self.assertEqual(6, len(self.partitions_of('host2')[
            self.project('a')].cpus))
        self.assertEqual({}, self.partitions_of('host1'))
        self.assertEqual([], self.pinning.touched)


def _stress_seeds():
    count = int(os.environ.get('TENANT_PIN_OPS_SEEDS', '0') or 0)
    first = int(os.environ.get('TENANT_PIN_OPS_FIRST_SEED', '1000'))
    return list(range(first, first + count))


class TestStress(RandomOpsBase):
    """``TENANT_PIN_OPS_SEEDS=N``: N more seeds, one test each."""


def _stress_test(seed):
    def test(self):
        TestRandomOperations._run_seed(
            self, seed, int(os.environ.get('TENANT_PIN_OPS_LENGTH', OPS)))
    return test


for _seed in _stress_seeds():
    setattr(TestStress, 'test_seed_%d' % _seed, _stress_test(_seed))
if os.environ.get('TENANT_PIN_OPS_ONLY'):
    _seed, _, _index = os.environ['TENANT_PIN_OPS_ONLY'].partition(':')

    def _only(self, seed=int(_seed),
              index=[int(i) for i in _index.split(',') if i]):
        TestRandomOperations._run_seed(
            self, seed, int(os.environ.get('TENANT_PIN_OPS_LENGTH', OPS)),
            only=index)
    TestStress.test_only = _only
