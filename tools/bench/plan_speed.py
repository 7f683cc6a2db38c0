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

"""Plan time of the allocator on a big, dense host.

The host: 2 sockets (NUMA cells), 64 cores each, 2 threads a core (256
threads), one housekeeping core per socket, so 126 usable cores. The load:
1,000 instances of 1, 2 or 4 vCPUs (40/40/20 %) of 200 tenants (the case
of issue 3) and then of 100 tenants. Every tenant has at least one
instance; the other instances go to tenants with weight ``1/rank`` (a few
big tenants, a long tail). The in-tenant allocation ratio is 16, so the
vCPUs (about 2,000) are not what runs out: with 200 tenants, cores do (a
tenant needs at least one whole core, and there are 126), and the plan
lists the tenants that do not fit as unplaced; with 100 tenants nearly all
instances fit.

Two measurements, each the median and 95th percentile over ``--repeats``:

* ``full``: :func:`allocator.plan` with no ``current`` map, as the
  scheduler filter runs it for every host, and as a compute host runs it
  when it rebuilds its state at start.
* ``incremental``: ``current`` is the full plan's map, one instance has
  left and one has arrived (a different pair at every repeat): what a
  compute host runs on every spawn or delete.

Each is printed in milliseconds (an absolute figure: it holds for the
machine it was measured on) and as a ratio to a baseline measured in the
same run: a JSON round-trip (``json.loads(json.dumps(doc))``) of the same
host and instances as ``nova-tenant-pin plan`` reads them, a no-op whose
cost grows with the document like the plan's least cost does.

Then the growth: the full plan's median time with one of threads (64 to
512, 2 sockets), tenants (50 to 400) and instances (250 to 2,000) varied
and the others held at 256 threads, 100 tenants and 1,000 instances, and
the exponent ``k`` of ``time ~ size^k`` fitted by least squares on the
logarithms (1.0 is linear).

``--profile`` adds a cProfile of the full plan. Run ``python
tools/bench/plan_speed.py`` (``--quick``: 10 repeats, not 100, and 3
repeats a growth point, not 10).
"""

import argparse
import cProfile
import json
import math
import os
import pstats
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nova_tenant_pin import allocator  # noqa: E402
import workload  # noqa: E402

# The case of issue 3 first; then one where nearly every tenant fits.
TENANT_COUNTS = (200, 100)
INSTANCES = 1000
SIZES = {1: 40, 2: 40, 4: 20}
RATIO = 16.0


GROWTH = {
    # dimension: the values tried, the others held at the middle ones.
    'threads': (64, 128, 256, 512),
    'tenants': (50, 100, 200, 400),
    'instances': (250, 500, 1000, 2000),
}
MIDDLE = {'threads': 256, 'tenants': 100, 'instances': 1000}


def dense_load(rng, tenants, instances=INSTANCES):
    """One instance per tenant, then the rest by weight ``1/rank``."""
    projects = ['p%03d' % i for i in range(tenants)]
    weights = [1.0 / (rank + 1) for rank in range(tenants)]
    owners = projects + rng.choices(projects, weights=weights,
                                    k=instances - tenants)
    return [allocator.InstanceRequest('i%04d' % n, owner,
                                      workload.weighted_choice(rng, SIZES))
            for n, owner in enumerate(owners)]


def document(topology, housekeeping, instances):
    """The ``nova-tenant-pin plan`` input document of the same host."""
    return {
        'host': {'cells': [{'id': cell.id,
                            'siblings': [sorted(core.cpus)
                                         for core in cell.cores]}
                           for cell in topology.cells]},
        'housekeeping_cpus': sorted(housekeeping),
        'instances': [{'uuid': i.uuid, 'project_id': i.key,
                       'vcpus': i.vcpus, 'cell': None, 'mode': 'float'}
                      for i in instances],
        'options': {'tenant_cpu_allocation_ratio': RATIO},
    }


def exponent(points):
    """The least-squares slope of log(time) on log(size)."""
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return (sum((x - mx) * (y - my) for x, y in zip(xs, ys)) /
            sum((x - mx) ** 2 for x in xs))


def growth(seed, repeats):
    """``{dimension: [(size, median ms), ...]}`` of the full plan."""
    result = {}
    for dimension, values in GROWTH.items():
        for value in values:
            shape = dict(MIDDLE, **{dimension: value})
            topology = workload.host_topology(2, shape['threads'] // 4, 2)
            housekeeping = workload.housekeeping_cpus(topology)
            instances = dense_load(random.Random(seed), shape['tenants'],
                                   shape['instances'])
            times = timed(lambda _: allocator.plan(
                topology, instances, housekeeping_cpus=housekeeping,
                ratio=RATIO), repeats)
            result.setdefault(dimension, []).append(
                (value, statistics.median(times)))
    return result


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(call, repeats):
    """Milliseconds of each of ``repeats`` calls of ``call(i)``, in CPU
    time of this process: the machine's other load does not count."""
    times = []
    for i in range(repeats):
        start = time.process_time()
        call(i)
        times.append((time.process_time() - start) * 1000.0)
    return times


def scenario(rng, topology, housekeeping, tenants, repeats):
    """``(full, incremental)``: calls of ``plan`` taking a repeat index."""
    instances = dense_load(rng, tenants)

    def full(_):
        return allocator.plan(topology, instances,
                              housekeeping_cpus=housekeeping, ratio=RATIO)

    current = full(0).tenant_map()
    projects = sorted({i.key for i in instances})
    # One departure and one arrival of a present tenant per repeat.
    changes = []
    for n in range(repeats):
        gone = rng.randrange(len(instances))
        arrival = allocator.InstanceRequest(
            'new%d' % n, rng.choice(projects),
            workload.weighted_choice(rng, SIZES))
        changes.append(instances[:gone] + instances[gone + 1:] + [arrival])

    def incremental(i):
        return allocator.plan(topology, changes[i],
                              housekeeping_cpus=housekeeping,
                              current=current, ratio=RATIO)

    return full, incremental


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='10 repeats instead of 100')
    parser.add_argument('--repeats', type=int, default=100)
    parser.add_argument('--seed', type=int, default=20261125)
    parser.add_argument('--profile', action='store_true',
                        help='print a cProfile of one full plan')
    args = parser.parse_args(argv)
    repeats = 10 if args.quick else args.repeats

    topology = workload.host_topology(2, 64, 2)
    housekeeping = workload.housekeeping_cpus(topology)
    print('Plan time: 2 sockets x 64 cores x 2 threads (%d threads, %d '
          'usable cores), %d instances of 1-4 vCPUs, ratio %.0f, %d repeats'
          % (len(topology.online_cpus),
             len(topology.cores) - len(topology.cells), INSTANCES, RATIO,
             repeats))
    print()
    header = '%-8s %-14s %7s %10s %8s %10s' % (
        'tenants', 'plan', 'placed', 'median ms', 'p95 ms', '/ baseline')
    print(header)
    print('-' * len(header))
    for tenants in TENANT_COUNTS:
        rng = random.Random(args.seed)
        full, incremental = scenario(rng, topology, housekeeping, tenants,
                                     repeats)
        doc = document(topology, housekeeping,
                       dense_load(random.Random(args.seed), tenants))
        baseline = timed(lambda _: json.loads(json.dumps(doc)), repeats)
        base = statistics.median(baseline)
        print('%-8d %-14s %7s %10.2f %8.2f %10.1f' % (
            tenants, 'JSON baseline', '-', base,
            percentile(baseline, 0.95), 1.0))
        for name, call in (('full', full), ('incremental', incremental)):
            placed = min(len(call(i).instances) for i in range(repeats))
            times = timed(call, repeats)
            median = statistics.median(times)
            print('%-8d %-14s %7d %10.2f %8.2f %10.1f' % (
                tenants, name, placed, median, percentile(times, 0.95),
                median / base))
    print()
    print('/ baseline: median against a JSON round-trip of the same host '
          'and instances, in the same run. 200 tenants cannot all hold a '
          'core of the 126: the plan places what fits and lists the rest '
          'as unplaced.')
    print()
    points = growth(args.seed, 3 if args.quick else 10)
    print('Growth of the full plan (others held at %d threads, %d tenants, '
          '%d instances):' % (MIDDLE['threads'], MIDDLE['tenants'],
                              MIDDLE['instances']))
    for dimension, values in points.items():
        print('  %-10s %s  exponent %.2f' % (
            dimension, '  '.join('%d: %.2f ms' % (size, ms)
                                 for size, ms in values),
            exponent(values)))

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        rng = random.Random(args.seed)
        full, _ = scenario(rng, topology, housekeeping, TENANT_COUNTS[0],
                           repeats)
        for i in range(repeats):
            full(i)
        profiler.disable()
        print()
        pstats.Stats(profiler).sort_stats('tottime').print_stats(12)


if __name__ == '__main__':
    main()
