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

import argparse
import io
import json

import fixtures

from nova_tenant_pin import cgroups
from nova_tenant_pin.cmd import status as status_cmd
from nova_tenant_pin import domain_xml
from nova_tenant_pin import status
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology

# Cell 0: cores [0,4] [1,5]; cell 1: [2,6] [3,7].
HOST = topology.HostTopology({0: [[0, 4], [1, 5]], 1: [[2, 6], [3, 7]]})


def part(tenant, cpus):
    cpus = frozenset(cpus)
    return cgroups.PartitionInfo(tenant, cpus, cpus, frozenset([0]),
                                 frozenset())


def dom(name, vcpus, tenant=None, pins=None, active=True, cpuset=None,
        key=None, partition=None):
    """A domain of project ``tenant``, in its partition unless ``pins`` or
    ``partition`` (a tenant, or ``''`` for none) say otherwise; ``key`` is
    the isolation key recorded in its tenant-pin metadata."""
    if partition is None:
        partition = tenant if tenant and not pins else ''
    return domain_xml.DomainInfo(
        uuid='uuid-' + name, name=name, active=active, persistent=True,
        vcpus=vcpus, project_id=tenant,
        partition=domain_xml.PARTITION_PREFIX + partition if partition
        else None,
        vcpu_cpuset=frozenset(cpuset) if cpuset else None,
        vcpu_pins={v: frozenset([c]) for v, c in (pins or {}).items()},
        key=key)


def holders(doc):
    return {t['cpu']: t.get('tenant', t['holder']) for cell in doc['cells']
            for core in cell['cores'] for t in core['threads']}


class TestCollect(base.TestCase):

    def doc(self):
        return status.collect(
            HOST, {'alpha': part('alpha', [1, 5]), 'beta': part('beta',
                                                                [2, 6])},
            [dom('a1', 1, 'alpha'), dom('b1', 2, 'beta'),
             dom('b2', 1, 'beta', active=False),
             dom('pinned', 1, 'gamma', pins={0: 3}),
             dom('loose', 2)],
            housekeeping_cpus=[0])

    def test_holders_per_thread(self):
        doc = self.doc()
        holders = {t['cpu']: t['holder'] for cell in doc['cells']
                   for core in cell['cores'] for t in core['threads']}
        self.assertEqual({0: 'housekeeping', 4: 'housekeeping',
                          1: 'tenant', 5: 'tenant', 2: 'tenant',
                          6: 'tenant', 3: 'dedicated', 7: 'free'}, holders)

    def test_tenants_instances_and_stranded(self):
        doc = self.doc()
        alpha, beta = doc['tenants']['alpha'], doc['tenants']['beta']
        self.assertEqual((1, 1, 1), (alpha['vcpus'], alpha['cores'],
                                     alpha['stranded_threads']))
        # A stopped instance still holds its room.
        self.assertEqual((3, 1, 0), (beta['vcpus'], beta['cores'],
                                     beta['stranded_threads']))
        self.assertEqual(['b1', 'b2'], [i['name'] for i in
                                        beta['instances']])
        self.assertEqual({'uuid-pinned': [3]}, doc['dedicated'])
        self.assertEqual(['loose'], [u['name'] for u in doc['unconfined']])
        self.assertEqual(list(range(8)), doc['unconfined'][0]['cpus'])

    def test_totals(self):
        totals = self.doc()['totals']
        self.assertEqual({'threads': 8, 'threads_housekeeping': 2,
                          'threads_usable': 6, 'threads_used': 5,
                          'threads_stranded': 1, 'threads_free': 1,
                          'conflicts': 0}, totals)

    def test_conflict(self):
        doc = status.collect(HOST, {'a': part('a', [1, 5]),
                                    'b': part('b', [5])}, [])
        self.assertEqual(1, doc['totals']['conflicts'])
        self.assertIn('!', status.render_picture(doc))
        self.assertIn('CONFLICT', status.render_table(doc))

    def test_picture(self):
        picture = status.render_picture(self.doc())
        lines = picture.splitlines()
        self.assertEqual('cell 0: [##][AA]', lines[0])
        self.assertEqual('cell 1: [BB][*.]', lines[1])
        self.assertIn('A=alpha', lines[2])
        self.assertNotIn('\033[', picture)
        colored = status.render_picture(self.doc(), color=True)
        self.assertIn('\033[', colored)

    def test_table(self):
        table = status.render_table(self.doc())
        self.assertIn('alpha', table)
        self.assertIn('b2 (stopped)', table)
        self.assertIn('NOT CONFINED: instance uuid-loose', table)
        self.assertIn('6 usable, 5 used, 1 stranded, 1 free', table)


class TestIsolationKeys(base.TestCase):
    """Domains belong to their isolation key, wherever they run."""

    def test_merged_keys_are_held_by_pins_outside_their_partitions(self):
        # p1 and p2 joined group "grp" while their guests ran: each guest
        # stays in its old partition, confined by its pins, until its next
        # hard reboot.
        doc = status.collect(
            HOST, {'p1': part('p1', [1, 5]), 'p2': part('p2', [2, 6]),
                   'p3': part('p3', [3, 7])},
            [dom('a', 1, 'p1', key='grp', cpuset=[1, 5]),
             dom('b', 1, 'p2', key='grp', cpuset=[2, 6]),
             dom('c', 2, 'p3', key='p3')],
            housekeeping_cpus=[0])
        self.assertTrue(doc['isolated'], doc['violations'])
        grp = doc['tenants']['grp']
        self.assertEqual([1, 2, 5, 6], grp['cpus'])
        self.assertEqual((2, 2), (grp['vcpus'], grp['cores']))
        self.assertIsNone(grp['partition'])
        self.assertEqual([('a', 'pins', 'p1'), ('b', 'pins', 'p2')],
                         [(i['name'], i['confinement'], i['partition'])
                          for i in grp['instances']])
        # The old partitions own nothing: they hold grp's cores for it.
        for old in ('p1', 'p2'):
            self.assertEqual(([], ['grp'], 0), (
                doc['tenants'][old]['cpus'], doc['tenants'][old]['hosts'],
                doc['tenants'][old]['vcpus']))
        self.assertEqual('partition',
                         doc['tenants']['p3']['instances'][0]['confinement'])
        self.assertEqual({1: 'grp', 5: 'grp', 2: 'grp', 6: 'grp', 3: 'p3',
                          7: 'p3', 0: 'housekeeping', 4: 'housekeeping'},
                         holders(doc))
        self.assertEqual(0, doc['totals']['conflicts'])
        table = status.render_table(doc)
        self.assertIn('a (pins only), b (pins only)', table)
        self.assertIn('moves into the partition at its next hard reboot',
                      table)
        self.assertIn('partition of tenant p1 holds instances of grp',
                      table)
        self.assertTrue(table.endswith('host isolated'), table)

    def test_partition_owns_only_what_its_own_key_uses(self):
        # p1's partition was widened to hold its former guest's new cores.
        doc = status.collect(
            HOST, {'p1': part('p1', [1, 5, 2, 6])},
            [dom('own', 2, 'p1', cpuset=[1, 5]),
             dom('moved', 2, 'p1', key='p9', cpuset=[2, 6])])
        self.assertTrue(doc['isolated'], doc['violations'])
        self.assertEqual([1, 5], doc['tenants']['p1']['cpus'])
        self.assertEqual([2, 6], doc['tenants']['p9']['cpus'])
        self.assertEqual(['p9'], doc['tenants']['p1']['hosts'])
        self.assertEqual([1, 2, 5, 6], doc['tenants']['p1']['partition'])

    def test_adopted_guest_in_no_partition(self):
        doc = status.collect(
            HOST, {'p1': part('p1', [1, 5])},
            [dom('adopted', 2, 'p1', key='p1', partition='',
                 cpuset=[1, 5])])
        self.assertTrue(doc['isolated'], doc['violations'])
        entry = doc['tenants']['p1']['instances'][0]
        self.assertEqual(('pins', None), (entry['confinement'],
                                          entry['partition']))
        self.assertEqual([], doc['unconfined'])

    def test_two_keys_on_sibling_threads_are_not_isolated(self):
        doc = status.collect(
            HOST, {},
            [dom('x', 1, 'a', key='a', partition='', cpuset=[1]),
             dom('y', 1, 'b', key='b', partition='', cpuset=[5])])
        # No thread has two holders, but the core does.
        self.assertEqual(0, doc['totals']['conflicts'])
        self.assertFalse(doc['isolated'])
        self.assertEqual(['tenants a and b share core 1,5'],
                         doc['violations'])
        self.assertIn('host NOT isolated: tenants a and b share core 1,5',
                      status.render_table(doc))

    def test_running_pins_count_against_another_partition(self):
        doc = status.collect(
            HOST, {'a': part('a', [1, 5])},
            [dom('y', 1, 'b', key='b', partition='', cpuset=[5])])
        self.assertEqual(1, doc['totals']['conflicts'])
        self.assertFalse(doc['isolated'])

    def test_a_stopped_guest_holds_no_core(self):
        doc = status.collect(
            HOST, {'a': part('a', [1, 5])},
            [dom('y', 1, 'b', key='b', partition='', cpuset=[1, 5],
                 active=False)])
        self.assertTrue(doc['isolated'], doc['violations'])
        self.assertEqual(1, doc['tenants']['b']['vcpus'])
        self.assertEqual([], doc['tenants']['b']['cpus'])

    def test_unconfined_and_housekeeping_break_isolation(self):
        doc = status.collect(
            HOST, {'a': part('a', [0, 4])},
            [dom('loose', 1, 'p', partition='', cpuset=[3, 7]),
             dom('off', 1, 'q', partition='', active=False)],
            housekeeping_cpus=[0])
        self.assertFalse(doc['isolated'])
        self.assertEqual(
            ['tenant a holds housekeeping core 0,4',
             'instance uuid-loose (loose) is not confined: it may run on '
             'CPUs 3,7'], doc['violations'])

    def test_dedicated_beside_a_tenant(self):
        doc = status.collect(
            HOST, {'a': part('a', [1])},
            [dom('pinned', 1, 'd', pins={0: 5})])
        self.assertEqual(['dedicated instance uuid-pinned shares core 1,5 '
                          'with tenant a'], doc['violations'])


class TestStatusCommand(base.TestCase):

    def run_cmd(self, fmt, partitions, domains=None, *argv):
        """``nova-tenant-pin status -f FMT --color never ARGV`` through the
        application, on a host read as ``partitions`` and ``domains``."""
        from nova_tenant_pin.cmd import main as cli

        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', io.StringIO()))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.main.load_config', lambda args: None))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cmd.status.read_host', lambda a: (
                HOST, partitions, domains or [dom('a1', 2, 'alpha')], [0],
                1.0)))
        rc = cli.main(['status', '-f', fmt, '--color', 'never'] +
                      list(argv))
        return rc, out.getvalue()

    def test_json(self):
        rc, out = self.run_cmd('json', {'alpha': part('alpha', [1, 5])})
        self.assertEqual(0, rc)
        doc = json.loads(out)
        self.assertEqual([1, 5], doc['tenants']['alpha']['cpus'])
        self.assertEqual(0, doc['totals']['threads_stranded'])
        self.assertTrue(doc['isolated'])
        self.assertEqual('partition', doc['tenants']['alpha']['instances'][0][
            'confinement'])
        self.assertEqual({'housekeeping_cpus': '0', 'partitions': 1,
                          'domains': 1}, {k: doc['checked'][k] for k in (
                              'housekeeping_cpus', 'partitions', 'domains')})

    def test_reads_options_as_the_driver_does(self):
        """status reads the options through the driver's reader: a ratio
        below 1.0 or unset housekeeping is one line and exit 2, and Nova's
        ``^`` syntax works."""
        from nova_tenant_pin.cmd import main as cli

        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.topology.HostTopology.from_sysfs',
            classmethod(lambda cls, root='/': HOST)))
        args = argparse.Namespace(housekeeping_cpus='0-4,^1,^2,^3',
                                  libvirt_uri='test:///default')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cgroups.get_partitions',
            lambda: mock_partitions({})))
        host, partitions, domains, housekeeping, ratio = \
            status_cmd.read_host(args)
        self.assertEqual(frozenset({0, 4}), housekeeping)
        self.assertEqual(1.0, ratio)
        self.flags(housekeeping_cpus=None)
        args.housekeeping_cpus = None
        e = self.assertRaises(cli.UsageError, status_cmd.read_host, args)
        self.assertIn('[tenant_pin] housekeeping_cpus: unset', str(e))

    def test_table_and_conflict_exit_code(self):
        rc, out = self.run_cmd('table', {'alpha': part('alpha', [1, 5]),
                                         'beta': part('beta', [1])})
        self.assertEqual(1, rc)
        self.assertIn('cell 0: [##][!A]', out)

    def test_not_isolated_exits_1(self):
        rc, out = self.run_cmd('table', {'alpha': part('alpha', [1, 5])},
                               [dom('a1', 1, 'alpha'),
                                dom('b1', 1, 'beta', key='beta',
                                    partition='', cpuset=[2, 6]),
                                dom('c1', 1, 'gamma', key='gamma',
                                    partition='', cpuset=[6])])
        self.assertEqual(1, rc)
        self.assertIn('b1 (pins only)', out)
        self.assertIn('host NOT isolated: tenants beta and gamma share core '
                      '2,6', out)

    def test_columns_and_other_formats(self):
        """cliff's formatters: ``-c`` picks keys of the document, ``-f
        value`` prints them for a shell, ``-f yaml`` the whole document."""
        partitions = {'alpha': part('alpha', [1, 5])}
        rc, out = self.run_cmd('value', partitions, None, '-c', 'isolated')
        self.assertEqual((0, 'True\n'), (rc, out))
        rc, out = self.run_cmd('json', partitions, None, '-c', 'totals',
                               '-c', 'isolated')
        self.assertEqual(['isolated', 'totals'], sorted(json.loads(out)))
        rc, out = self.run_cmd('yaml', partitions)
        self.assertIn('isolated: true\n', out)
        self.assertIn('tenants:\n  alpha:\n', out)
        # With -c, the table is cliff's field/value table; the value of a
        # nested key is JSON.
        rc, out = self.run_cmd('table', partitions, None, '-c', 'checked')
        self.assertIn('| checked | {"cgroup_root": ', out)

    def test_isolated_table(self):
        rc, out = self.run_cmd('table', {'alpha': part('alpha', [1, 5])})
        self.assertEqual(0, rc)
        self.assertIn('host isolated', out)

    def test_fails_when_it_cannot_see_the_host(self):
        """No cgroup tree, or no libvirt: exit 2 with one line naming
        what could not be read, never a map of a host it did not see."""
        from nova_tenant_pin.cmd import main as cli

        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.topology.HostTopology.from_sysfs',
            classmethod(lambda cls, root='/': HOST)))
        args = argparse.Namespace(housekeeping_cpus='0,4',
                                  libvirt_uri='test:///default')

        def no_tree():
            raise cgroups.CgroupLayoutError(
                reason='no cgroup hierarchy is mounted under /')
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cgroups.get_partitions', no_tree))
        e = self.assertRaises(cli.UsageError, status_cmd.read_host, args)
        self.assertIn('cannot read the tenant partitions', str(e))
        self.useFixture(fixtures.MonkeyPatch(
            'nova_tenant_pin.cgroups.get_partitions',
            lambda: mock_partitions({})))
        args.libvirt_uri = 'qemu+unix:///system?socket=/nonexistent/sock'
        e = self.assertRaises(cli.UsageError, status_cmd.read_host, args)
        self.assertIn('cannot connect to libvirt at qemu+unix', str(e))


class mock_partitions:
    def __init__(self, parts):
        self.parts = parts

    def list_partitions(self):
        return self.parts
