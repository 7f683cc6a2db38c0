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

"""Capacity: vCPUs placed per usable thread, tenant-pin against baselines.

Each trial fills one host from one generated arrival stream
(:mod:`workload`: 1-4 vCPU instances mostly, some of 8-16; tenants with 1
to 16 instances, interleaved) under five policies, all fed the same stream
in the same order. A request that does not fit is rejected and the next
one is tried (first fit); a policy stops after ``--max-rejects`` rejections
or when its host has no free thread left.

Policies, all with no CPU overcommit and the same housekeeping core per
NUMA cell taken out:

* ``no isolation``: every thread usable by anyone (SMT on, shared CPUs,
  floating): the upper bound, and the cross-tenant exposure this project
  removes.
* ``SMT off``: one thread a core usable (``nosmt``), floating.
* ``nova isolate``: ``hw:cpu_thread_policy=isolate``, one vCPU per core,
  the sibling left idle; an instance fits in one NUMA cell (Nova's default
  of one guest NUMA node for pinned instances).
* ``nova require``: ``hw:cpu_thread_policy=require``, whole cores per
  instance in one NUMA cell; an odd-vCPU instance strands a thread.
* ``tenant-pin``: this project's allocator (whole cores per *tenant*,
  ``float`` mode, instances may span cells when no one cell holds them),
  judged by :func:`nova_tenant_pin.scheduler.fit.check_fit`, the same
  per-host decision as the scheduler filter, with the host's present tenant
  map as ``current`` as the compute host keeps it.

The host models are in :mod:`hosts`, shared with ``cluster_sim.py``.

The figure of merit is vCPUs placed per usable thread (threads of the
non-housekeeping cores); the ratio against ``no isolation`` is printed.
It counts vCPUs, not throughput: a core with SMT off runs more than half of
what its two threads do, so the vCPU ratio of ``SMT off`` understates its
throughput, not its capacity in vCPUs.

Run ``python tools/bench/capacity.py`` (``--quick``: 3 trials, not 50).
"""

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hosts  # noqa: E402
import workload  # noqa: E402

# (sockets, cores per socket): 2-socket hosts, 2 threads a core.
HOST_SHAPES = ((2, 16), (2, 32), (2, 64))
THREADS_PER_CORE = 2


# (name, host factory(topology, housekeeping)), the upper bound first.
POLICIES = (
    ('no isolation', lambda topology, hk: hosts.SharedHost(
        topology, hk, THREADS_PER_CORE)),
    ('SMT off', lambda topology, hk: hosts.SharedHost(topology, hk, 1)),
    ('nova isolate', hosts.isolate),
    ('nova require', hosts.require),
    ('tenant-pin', hosts.TenantPinHost),
)


def fill(host, stream, max_rejects):
    """Offer ``stream`` to ``host`` until ``max_rejects`` rejections or a
    full host. ``stream`` replays one generated arrival stream, so every
    policy sees the same requests in the same order."""
    rejects = 0
    index = 0
    while rejects < max_rejects and not host.full():
        request = stream.get(index)
        index += 1
        verdict = host.check(request)
        if verdict:
            host.accept(request, verdict)
        else:
            rejects += 1
    return host


class SharedStream:
    """The arrival stream of one trial, drawn once and replayed."""

    def __init__(self, seed):
        self._source = workload.arrivals(random.Random(seed))
        self._seen = []

    def get(self, index):
        while len(self._seen) <= index:
            self._seen.append(next(self._source))
        return self._seen[index]


def run(shapes, trials, seed, max_rejects):
    """``{shape: {policy name: [(vcpus per usable thread, stranded)]}}``."""
    results = {}
    for shape in shapes:
        topology = workload.host_topology(*shape, THREADS_PER_CORE)
        housekeeping = workload.housekeeping_cpus(topology)
        per_policy = {name: [] for name, _ in POLICIES}
        for trial in range(trials):
            stream = SharedStream(seed + trial)
            for name, make_host in POLICIES:
                host = fill(make_host(topology, housekeeping), stream,
                            max_rejects)
                per_policy[name].append(
                    (host.vcpus / host.usable, host.stranded()))
        results[shape] = per_policy
    return results


def print_table(results, trials, seed, max_rejects, elapsed):
    print('Capacity: vCPUs placed per usable thread, mean of %d trial(s), '
          'seed %d, stop after %d rejections' % (trials, seed, max_rejects))
    print('(ratio: against "no isolation" in the same trials; stranded: '
          'threads idle inside cores given to an instance or tenant)')
    print()
    header = '%-16s %-14s %10s %8s %9s' % ('host', 'policy',
                                           'vCPU/thr', 'ratio', 'stranded')
    print(header)
    print('-' * len(header))
    for (sockets, cores), per_policy in results.items():
        label = '%dx%dc %dthr' % (sockets, cores,
                                  sockets * cores * THREADS_PER_CORE)
        bound = statistics.mean(v for v, _ in per_policy['no isolation'])
        for name, values in per_policy.items():
            density = statistics.mean(v for v, _ in values)
            stranded = statistics.mean(s for _, s in values)
            print('%-16s %-14s %10.3f %8.3f %9.1f' % (
                label, name, density, density / bound, stranded))
            label = ''
    print()
    print('%.1f s' % elapsed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='3 trials per host shape')
    parser.add_argument('--trials', type=int, default=50)
    parser.add_argument('--seed', type=int, default=20261125)
    parser.add_argument('--max-rejects', type=int, default=10,
                        help='rejections after which a host counts as full')
    args = parser.parse_args(argv)
    trials = 3 if args.quick else args.trials
    start = time.perf_counter()
    results = run(HOST_SHAPES, trials, args.seed, args.max_rejects)
    print_table(results, trials, args.seed, args.max_rejects,
                time.perf_counter() - start)


if __name__ == '__main__':
    main()
