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

"""The executor's ``on_step`` hook: called once per write, after it is
made, before the next; never for a step skipped, failed or not made."""

from nova_tenant_pin import cgroups
from nova_tenant_pin import executor
from nova_tenant_pin import guests as tp_guests
from nova_tenant_pin.tests import base
from nova_tenant_pin.tests import fakes
from nova_tenant_pin.tests.unit import test_manager as tm
from nova_tenant_pin import transition


class TestOnStep(base.TestCase):

    def setUp(self):
        super().setUp()
        self.topology = tm.make_topology()
        self.partitions = fakes.CheckedPartitions(self.topology)
        self.conn = fakes.FakeConnection(self.partitions)
        self.partitions.connection = self.conn
        self.guests = tp_guests.Guests(lambda: self.conn,
                                       self.topology.online_cpus)
        self.calls = []

    def on_step(self, step, position, total):
        # What the host holds when the hook runs: the step is made.
        held = {k: p.cpus for k, p in
                self.partitions.list_partitions().items()}
        self.calls.append((step.describe(), position, total, held))

    def run_steps(self, steps, write=True):
        ex = executor.Executor(self.guests, self.partitions, [0, 1], 'h',
                               write=write, on_step=self.on_step)
        return ex.run(steps, self.guests.read())

    def steps(self):
        return [
            transition.Step(transition.SET_PARTITION, key='p1',
                            cpus=frozenset({2, 10})),
            transition.Step(transition.SET_PARTITION, key='p2',
                            cpus=frozenset({3, 11})),
            transition.Step(transition.SET_PARTITION, key='p1',
                            cpus=frozenset({2, 10, 4, 12}),
                            old=frozenset({2, 10})),
        ]

    def test_called_after_each_write_in_order(self):
        outcome = self.run_steps(self.steps())
        self.assertIsNone(outcome.error)
        self.assertEqual(
            [('create partition of tenant p1 with CPUs 2,10', 1, 3,
              {'p1': {2, 10}}),
             ('create partition of tenant p2 with CPUs 3,11', 2, 3,
              {'p1': {2, 10}, 'p2': {3, 11}}),
             ('set partition of tenant p1 to CPUs 2,4,10,12 (was 2,10)', 3,
              3, {'p1': {2, 4, 10, 12}, 'p2': {3, 11}})],
            self.calls)

    def test_not_called_for_the_failed_write_nor_after_it(self):
        def fail(name):
            if name == 'set_partition_cpus':
                raise cgroups.PartitionError('EBUSY')
        self.partitions.faults = fail
        outcome = self.run_steps(self.steps())
        self.assertEqual('EBUSY', str(outcome.error))
        self.assertEqual([1, 2], [position for _, position, _, _ in
                                  self.calls])
        self.assertEqual([s.describe() for s in outcome.done],
                         [line for line, _, _, _ in self.calls])

    def test_not_called_for_a_skipped_step(self):
        """A partition that a domain nobody knows still holds is kept: no
        write, no call."""
        self.run_steps(self.steps()[:1])
        self.partitions.add_task('p1', 'unknown-domain')
        self.calls = []
        outcome = self.run_steps([transition.Step(
            transition.REMOVE_PARTITION, key='p1')])
        self.assertEqual(([], []), (outcome.done, self.calls))

    def test_dry_run_makes_no_write_and_no_call(self):
        outcome = self.run_steps(self.steps(), write=False)
        self.assertEqual(3, len(outcome.done))
        self.assertEqual([], self.calls)
        self.assertEqual({}, self.partitions.list_partitions())


class TestStepKeys(tm.ManagerTestCase):
    """Each pin and metadata step names the tenant of its instance, so the
    commands can log it."""

    def test_release_names_the_tenant_of_each_instance(self):
        a = self.spawn('p1', 2)
        b = self.spawn('p2', 1)
        steps = []
        self.mgr.on_step = lambda step, position, total: steps.append(step)
        self.mgr.release_all()
        keys = {(s.uuid, s.key) for s in steps if s.uuid is not None}
        self.assertEqual({(a, 'p1'), (b, 'p2')}, keys)
        lines = [s.describe(with_key=True) for s in steps]
        self.assertIn('pin vCPU 0 of instance %s of tenant p1 to CPUs 0-15'
                      % a, lines)
        self.assertIn('drop the tenant-pin metadata of instance %s of tenant '
                      'p2' % b, lines)
