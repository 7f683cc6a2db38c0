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

"""How long the manager takes to adopt a host and to apply per-project
settings changes, against a reconcile that changes nothing.

The host: 4 sockets of 64 cores, 2 threads a core (512 threads), one
housekeeping core. The guests: instances of 1 or 2 vCPUs of 120 projects,
claimed one by one until the host is full (about 380 guests). libvirt and
the cgroup tree are the test doubles of ``nova_tenant_pin.tests.fakes``
(they refuse what the kernel refuses), so this times the manager's own
work: planning, ordering and the number of writes.

Measured, each the median over ``--repeats`` on a fresh copy of the host:

* ``baseline``: a reconcile with nothing to change (what the periodic task
  does every ``reconcile_interval``);
* ``adopt``: the same guests started without tenant-pin (no partition,
  floating over every CPU) and adopted by one reconcile;
* ``merge``: 20 isolation groups of 4 projects each formed (SIGHUP);
* ``split``: the groups dissolved again.

Printed: seconds, writes (partition and pin calls) and the ratio to the
baseline measured in the same run.

Run ``python tools/bench/rekey_speed.py`` (3 repeats, about 2 minutes, most
of it building the hosts; ``--quick``: 1 repeat).
"""

import argparse
import logging
import os
import random
import statistics
import sys
import time
import uuid

from nova_tenant_pin import domain_xml
from nova_tenant_pin import exception
from nova_tenant_pin import manager
from nova_tenant_pin import policy
from nova_tenant_pin.tests import fakes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workload  # noqa: E402,H306 (the scripts' own modules last)

PROJECTS = ['project-%03d' % i for i in range(120)]
GROUPS = ['g%d:%s' % (i, ','.join(PROJECTS[i * 4:(i + 1) * 4]))
          for i in range(20)]


def host_topology():
    return workload.sibling_pair_host()


class Host:
    """A full host: the manager and its doubles."""

    def __init__(self, topology, seed, adopted=False):
        self.topology = topology
        self.partitions = fakes.CheckedPartitions()
        self.conn = fakes.FakeConnection(self.partitions)
        self.partitions.connection = self.conn
        self.mgr = self.manager()
        rng = random.Random(seed)
        self.guests = []
        for _ in range(1000):
            project, vcpus = rng.choice(PROJECTS), rng.choice([1, 1, 2])
            inst = str(uuid.UUID(int=rng.getrandbits(128)))
            try:
                pins = self.mgr.claim(inst, project, vcpus)
            except exception.TenantDoesNotFit:
                continue
            self.guests.append((inst, project, vcpus, pins))
            self._start(inst, project, vcpus, pins)
        if adopted:
            # The same guests as the stock driver leaves them.
            for inst, project, vcpus, _pins in self.guests:
                self.conn.remove(inst)
            self.partitions.partitions.clear()
            for inst, project, vcpus, _pins in self.guests:
                self.conn.start(fakes.domain_xml(
                    inst, vcpus, project=project,
                    cpuset=topology.online_cpus - {0, 1}))
            self.mgr = self.manager()

    def manager(self):
        return manager.TenantPinManager(
            self.topology, self.partitions, lambda: self.conn,
            housekeeping_cpus={0, 1}, name='bench')

    def _start(self, inst, project, vcpus, pins):
        xml = fakes.domain_xml(inst, vcpus, project=project,
                               partition=pins.partition, cpuset=pins.cpus)
        xml = fakes.set_metadata_in_xml(xml, self.mgr.metadata_of(inst),
                                        domain_xml.TP_PREFIX, domain_xml.TP_NS)
        self.conn.start(xml)
        self.mgr.domain_started(inst)

    def writes(self):
        return len(self.conn.pin_calls) + len(self.partitions.calls)


def timed(host, action):
    before = host.writes()
    start = time.perf_counter()
    action()
    return time.perf_counter() - start, host.writes() - before


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--seed', type=int, default=20261126)
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    logging.disable(logging.CRITICAL)
    topology = host_topology()
    results = {name: [] for name in ('baseline', 'adopt', 'merge', 'split')}
    writes = {}
    guests = 0
    for repeat in range(repeats):
        host = Host(topology, args.seed + repeat)
        guests = len(host.guests)
        sec, n = timed(host, host.mgr.reconcile)
        results['baseline'].append(sec)
        writes['baseline'] = n

        def change(settings, host=host):
            host.mgr.update_settings(settings)
            host.mgr.reconcile()
        sec, n = timed(host, lambda: change(
            policy.ProjectSettings.from_options((), GROUPS)))
        results['merge'].append(sec)
        writes['merge'] = n
        sec, n = timed(host, lambda: change(policy.ProjectSettings()))
        results['split'].append(sec)
        writes['split'] = n
        if host.partitions.overlaps:
            raise SystemExit('overlap: %s' % host.partitions.overlaps[0])
        adopted = Host(topology, args.seed + repeat, adopted=True)
        sec, n = timed(adopted, adopted.mgr.reconcile)
        results['adopt'].append(sec)
        writes['adopt'] = n
        if not adopted.mgr.isolation()['isolated']:
            raise SystemExit('the adopted host is not isolated')
    base = statistics.median(results['baseline'])
    print('host: 512 threads, %d guests of %d projects, %d repeat(s)'
          % (guests, len(PROJECTS), repeats))
    print('%-9s %10s %8s %12s'
          % ('step', 'median s', 'writes', '/ baseline'))
    for name in ('baseline', 'adopt', 'merge', 'split'):
        median = statistics.median(results[name])
        print('%-9s %10.3f %8d %12.1f'
              % (name, median, writes[name], median / base))


if __name__ == '__main__':
    main()
