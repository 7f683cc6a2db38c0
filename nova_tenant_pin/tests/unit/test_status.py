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
from nova_tenant_pin import manager
from nova_tenant_pin import status
from nova_tenant_pin.tests import base
from nova_tenant_pin import topology

# Cell 0: cores [0,4] [1,5]; cell 1: [2,6] [3,7].
HOST = topology.HostTopology({0: [[0, 4], [1, 5]], 1: [[2, 6], [3, 7]]})


def part(tenant, cpus):
    cpus = frozenset(cpus)
    return cgroups.PartitionInfo(tenant, cpus, cpus, frozenset([0]),
                                 frozenset())


def dom(name, vcpus, tenant=None, pins=None, active=True, cpuset=None):
    return manager.DomainInfo(
        uuid='uuid-' + name, name=name, active=active, persistent=True,
        vcpus=vcpus, project_id=tenant,
        partition=manager.PARTITION_PREFIX + tenant if tenant and
        not pins else None,
        vcpu_cpuset=frozenset(cpuset) if cpuset else None,
        vcpu_pins={v: frozenset([c]) for v, c in (pins or {}).items()})


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


class TestStatusCommand(base.TestCase):

    def run_cmd(self, fmt, partitions):
        out = io.StringIO()
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        args = argparse.Namespace(format=fmt, color='never')
        rc = status_cmd.run(args, reader=lambda a: (
            HOST, partitions, [dom('a1', 2, 'alpha')], [0], 1.0))
        return rc, out.getvalue()

    def test_json(self):
        rc, out = self.run_cmd('json', {'alpha': part('alpha', [1, 5])})
        self.assertEqual(0, rc)
        doc = json.loads(out)
        self.assertEqual([1, 5], doc['tenants']['alpha']['cpus'])
        self.assertEqual(0, doc['totals']['threads_stranded'])

    def test_table_and_conflict_exit_code(self):
        rc, out = self.run_cmd('table', {'alpha': part('alpha', [1, 5]),
                                         'beta': part('beta', [1])})
        self.assertEqual(1, rc)
        self.assertIn('cell 0: [##][!A]', out)
