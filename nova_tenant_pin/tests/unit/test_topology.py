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

import os

import ddt
import fixtures
from hypothesis import given
from hypothesis import strategies as st

from nova_tenant_pin.tests import base
from nova_tenant_pin import topology


def write(root, path, text):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w') as f:
        f.write(text + '\n')


def fake_sysfs(root, nodes, siblings, online=None, present=None):
    """Write a sysfs tree: ``nodes`` {node: cpulist}, ``siblings``
    {cpu: sibling list} for online CPUs."""
    cpus = set(siblings)
    write(root, 'sys/devices/system/cpu/online',
          online or topology.format_cpu_list(cpus))
    if present:
        write(root, 'sys/devices/system/cpu/present', present)
    for cpu, sib in siblings.items():
        write(root, 'sys/devices/system/cpu/cpu%d/topology/'
              'thread_siblings_list' % cpu, sib)
    for node, cpulist in nodes.items():
        write(root, 'sys/devices/system/node/node%d/cpulist' % node, cpulist)


CAPS = """<capabilities><host><topology><cells num='2'>
  <cell id='0'><cpus num='4'>
    <cpu id='0' socket_id='0' core_id='0' siblings='0,2'/>
    <cpu id='2' socket_id='0' core_id='0' siblings='0,2'/>
    <cpu id='1' socket_id='0' core_id='1' siblings='1,3'/>
    <cpu id='3' socket_id='0' core_id='1' siblings='1,3'/>
  </cpus></cell>
  <cell id='1'><cpus num='3'>
    <cpu id='4' socket_id='1' core_id='0' siblings='4,6'/>
    <cpu id='6' socket_id='1' core_id='0' siblings='4,6'/>
    <cpu id='5'/>
  </cpus></cell>
</cells></topology></host></capabilities>"""


@ddt.ddt
class TestCpuList(base.TestCase):

    @ddt.unpack
    @ddt.data(('', set()), ('0', {0}), ('0-3', {0, 1, 2, 3}),
              ('0-1,4,6-7\n', {0, 1, 4, 6, 7}), (' 3 , 1 ', {1, 3}))
    def test_parse(self, text, expected):
        self.assertEqual(expected, topology.parse_cpu_list(text))

    @ddt.data('a', '3-1', '1-', '-1', '1,,2', '0-x',
              # Other scripts' digits, which int() takes.
              '\u0660-\u0661', '\uff10\uff10', '\u0663', '1-\u0663',
              # Above any CPU: refused before the range is expanded.
              '0-50000000', '65536', '0-' + '9' * 300)
    def test_parse_rejects(self, text):
        self.assertRaises(topology.TopologyError,
                          topology.parse_cpu_list, text)

    def test_limit(self):
        self.assertEqual({0, 1}, topology.parse_cpu_list('0-1', limit=1))
        self.assertRaises(topology.TopologyError, topology.parse_cpu_list,
                          '0-2', limit=1)

    @given(st.sets(st.integers(min_value=0, max_value=300)))
    def test_round_trip(self, cpus):
        text = topology.format_cpu_list(cpus)
        self.assertEqual(cpus, topology.parse_cpu_list(text))
        self.assertNotIn(' ', text)


@ddt.ddt
class TestFromDict(base.TestCase):

    @ddt.data(1, 2, 4, 8)
    def test_threads_per_core(self, threads):
        siblings = [list(range(c * threads, (c + 1) * threads))
                    for c in range(3)]
        host = topology.HostTopology.from_dict(
            {'cells': [{'id': 0, 'siblings': siblings}]})
        self.assertEqual(3, len(host.cores))
        self.assertEqual(threads, host.max_threads_per_core)
        self.assertEqual({threads}, {c.threads for c in host.cores})
        self.assertEqual(host, topology.HostTopology.from_dict(
            host.to_dict()))

    def test_hybrid_offline_and_memory_only(self):
        host = topology.HostTopology.from_dict({
            'cells': [{'id': 0, 'siblings': [[0, 1], [2], [3, 4, 5, 6]]},
                      {'id': 1, 'siblings': []}],
            'offline': [4]})
        self.assertEqual([(0, 1), (2,), (3, 5, 6)],
                         [c.cpus for c in host.cores])
        self.assertEqual(frozenset({4}), host.offline_cpus)
        self.assertEqual((), host.cell(1).cores)
        self.assertEqual(3, host.core_of(5).id)
        self.assertEqual(frozenset({0, 1, 2}),
                         host.whole_core_cpus([1, 2]))
        self.assertRaises(topology.TopologyError, host.core_of, 4)

    def test_fully_offline_core_disappears(self):
        host = topology.HostTopology.from_dict({
            'cells': [{'id': 0, 'siblings': [[0, 1], [2, 3]]}],
            'offline': [2, 3]})
        self.assertEqual([(0, 1)], [c.cpus for c in host.cores])
        self.assertEqual(frozenset({2, 3}), host.offline_cpus)

    @ddt.unpack
    @ddt.data(
        ({'cells': [{'id': 0, 'siblings': [[0, 1], [1, 2]]}]},
         'CPU 1 is in two cores'),
        ({'cells': [{'id': 0, 'siblings': [[0, 1]]},
                    {'id': 1, 'siblings': [[1, 2]]}]},
         'CPU 1 is in NUMA cells 0 and 1'),
        ({'cells': [{'id': 0, 'siblings': [list(range(9))]}]},
         'at most 8 are supported'),
        ({'cells': [{'id': 0, 'siblings': [[0]]},
                    {'id': 0, 'siblings': [[1]]}]},
         'cell 0 is listed twice'),
        ({'cells': [{'id': 0, 'siblings': [[0, 0]]}]}, 'lists a CPU twice'),
        ({'cells': [{'id': -1, 'siblings': [[0]]}]}, 'integer "id"'),
        ({'cells': [{'id': 0, 'siblings': [[-1]]}]}, 'lists of CPU'),
        ({'cells': [{'id': 0, 'siblings': [['0']]}]}, 'lists of CPU'),
        ({'cells': [{'id': 0, 'siblings': [[True]]}]}, 'lists of CPU'),
        ({'cells': {}}, '"cells" list'),
        ([], '"cells" list'),
        ({'cells': [], 'offline': 'x'}, '"host.offline"'),
    )
    def test_rejects(self, doc, message):
        e = self.assertRaises(topology.TopologyError,
                              topology.HostTopology.from_dict, doc)
        self.assertIn(message, str(e))


class TestFromSysfs(base.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path

    def test_two_nodes_two_threads_one_offline(self):
        # CPU 7 is offline: sysfs shows no topology for it and its sibling
        # lists only itself.
        fake_sysfs(self.root, {0: '0-1,4-5', 1: '2-3,6-7'},
                   {0: '0,4', 4: '0,4', 1: '1,5', 5: '1,5', 2: '2,6',
                    6: '2,6', 3: '3'},
                   online='0-6', present='0-7')
        host = topology.HostTopology.from_sysfs(self.root)
        self.assertEqual([0, 1], [c.id for c in host.cells])
        self.assertEqual([(0, 4), (1, 5)],
                         [c.cpus for c in host.cell(0).cores])
        self.assertEqual([(2, 6), (3,)],
                         [c.cpus for c in host.cell(1).cores])
        self.assertEqual(frozenset({7}), host.offline_cpus)

    def test_no_numa_directory_is_one_cell(self):
        fake_sysfs(self.root, {}, {0: '0-1', 1: '0-1'})
        host = topology.HostTopology.from_sysfs(self.root)
        self.assertEqual([(0, 1)], [c.cpus for c in host.cell(0).cores])

    def test_memory_only_node(self):
        fake_sysfs(self.root, {0: '0-1', 1: ''}, {0: '0', 1: '1'})
        host = topology.HostTopology.from_sysfs(self.root)
        self.assertEqual((), host.cell(1).cores)
        self.assertEqual(2, len(host.cell(0).cores))

    def test_siblings_across_nodes_rejected(self):
        fake_sysfs(self.root, {0: '0', 1: '1'}, {0: '0-1', 1: '0-1'})
        e = self.assertRaises(topology.TopologyError,
                              topology.HostTopology.from_sysfs, self.root)
        self.assertIn('spans NUMA nodes', str(e))

    def test_inconsistent_siblings_rejected(self):
        fake_sysfs(self.root, {0: '0-2'}, {0: '0-1', 1: '1-2', 2: '1-2'})
        e = self.assertRaises(topology.TopologyError,
                              topology.HostTopology.from_sysfs, self.root)
        self.assertIn('in two cores', str(e))

    def test_missing_file_named(self):
        write(self.root, 'sys/devices/system/cpu/online', '0')
        e = self.assertRaises(topology.TopologyError,
                              topology.HostTopology.from_sysfs, self.root)
        self.assertIn('thread_siblings_list', str(e))

    def test_this_machine(self):
        host = topology.HostTopology.from_sysfs('/')
        self.assertEqual(len(host.online_cpus),
                         sum(c.threads for c in host.cores))
        self.assertGreaterEqual(len(host.cores), 1)


@ddt.ddt
class TestFromCapabilities(base.TestCase):

    def test_cells_siblings_offline(self):
        host = topology.HostTopology.from_capabilities_xml(CAPS)
        self.assertEqual([(0, 2), (1, 3)],
                         [c.cpus for c in host.cell(0).cores])
        self.assertEqual([(4, 6)], [c.cpus for c in host.cell(1).cores])
        self.assertEqual(frozenset({5}), host.offline_cpus)

    def test_siblings_across_cells_rejected(self):
        xml = CAPS.replace("<cpu id='6' socket_id='1' core_id='0' "
                           "siblings='4,6'/>", '').replace(
            "<cpu id='3' socket_id='0' core_id='1' siblings='1,3'/>",
            "<cpu id='3' socket_id='0' core_id='1' siblings='1,3'/>"
            "<cpu id='6' siblings='4,6'/>")
        e = self.assertRaises(topology.TopologyError,
                              topology.HostTopology.from_capabilities_xml,
                              xml)
        self.assertIn('another cell', str(e))

    @ddt.data('<capabilities', '<capabilities/>',
              "<capabilities><host><topology><cells><cell id='x'/>"
              "</cells></topology></host></capabilities>",
              "<capabilities><host><topology><cells><cell id='0'><cpus>"
              "<cpu id='0' siblings='1'/></cpus></cell></cells></topology>"
              "</host></capabilities>")
    def test_rejects(self, xml):
        self.assertRaises(topology.TopologyError,
                          topology.HostTopology.from_capabilities_xml, xml)

    def test_same_as_json(self):
        host = topology.HostTopology.from_capabilities_xml(CAPS)
        self.assertEqual(host, topology.HostTopology.from_dict(
            host.to_dict()))
