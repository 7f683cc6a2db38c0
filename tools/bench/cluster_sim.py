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

"""Cluster simulation: arrivals and departures of multi-tenant instances.

One generated trace is replayed against a cloud of ``--hosts`` identical
hosts (2 sockets x 32 cores x 2 threads, one housekeeping core a socket:
124 usable threads) under each policy. A policy is a scheduler (filter,
then the best-weighed host) and the hosts' placement rule; a request that
no host passes is rejected and does not come back.

The trace (:func:`trace`), from a fixed seed:

* **Tenants**: ``10 x hosts`` tenants; each request belongs to a tenant
  drawn with weight ``1/rank`` (Zipf, s=1): a few tenants submit much, most
  submit a few requests.
* **Instance sizes**: 1 vCPU 20 %, 2 vCPUs 28 %, 3 vCPUs 5 %, 4 vCPUs 22 %,
  8 vCPUs 13 %, 16 vCPUs 8 %, 32 vCPUs 4 %.
* **Lifetimes**: exponential, mean 1 day for 60 % of the instances
  (short-lived) and 5 days for the others.
* **Arrivals**: a Poisson process whose rate offers ``--load`` (default
  1.1) times the cloud's usable threads in vCPUs at steady state, so
  capacity runs out and every policy rejects some requests. The first
  third of the trace warms the cloud up and is not measured.

Policies (each with no CPU overcommit):

* ``no isolation``: every thread usable; the upper bound.
* ``SMT off``: one thread a core.
* ``nova isolate`` / ``nova require``: pinned instances in one NUMA cell,
  one core per vCPU / whole cores per instance.
* ``tenant-pin spread``: this project's filter
  (:func:`nova_tenant_pin.scheduler.fit.check_fit`, with the host's plan
  as the compute host keeps it) and Nova's default weighing, which
  spreads: the host with the most free vCPUs as placement sees them
  (stranded threads are reported reserved).
* ``tenant-pin weigher``: the same filter, and ``TenantPinWeigher``'s
  score (:func:`~nova_tenant_pin.scheduler.fit.stranded_change`) before
  spreading, as with its default multiplier of 10 over Nova's weighers of
  1: spreading only breaks its ties.

The baselines spread the same way. Hosts are tried best-weighed first and
the first that passes the filter is taken, which is what filtering every
host and taking the best does, in a fraction of the time.

``--reserve-stranded`` adds placement's view to the tenant-pin policies:
stranded threads are reserved VCPU there, so a host must have as many
free threads outside all tenants' cores as the request has vCPUs, even
when the request would fill its tenant's idle threads.

Printed: the time-averaged vCPUs running, the rejected requests and the
time-averaged stranded threads after warm-up, with ratios against ``no
isolation``. Run ``python tools/bench/cluster_sim.py`` (``--quick``: 50
hosts; default 200 hosts; ``--hosts`` up to 1,000).
"""

import argparse
import heapq
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from nova_tenant_pin import allocator  # noqa: E402
from nova_tenant_pin.scheduler import fit  # noqa: E402
import hosts as rules  # noqa: E402,H306 (the scripts' own modules last)
import workload  # noqa: E402

SOCKETS = 2
CORES_PER_SOCKET = 32
THREADS_PER_CORE = 2
SIZES = {1: 20, 2: 28, 3: 5, 4: 22, 8: 13, 16: 8, 32: 4}
LIFETIMES = ((0.6, 1.0), (0.4, 5.0))  # (share, mean days)
TENANTS_PER_HOST = 10
ARRIVALS_PER_HOST = 150


class Request:
    __slots__ = ('time', 'lifetime', 'request')

    def __init__(self, time, lifetime, request):
        self.time = time
        self.lifetime = lifetime
        self.request = request


def trace(rng, hosts, usable_threads, load, arrivals_per_host):
    """The list of :class:`Request`, in arrival order."""
    tenants = ['t%d' % i for i in range(TENANTS_PER_HOST * hosts)]
    weights = [1.0 / (rank + 1) for rank in range(len(tenants))]
    mean_vcpus = sum(v * w for v, w in SIZES.items()) / sum(SIZES.values())
    mean_life = sum(share * days for share, days in LIFETIMES)
    # Offered load = rate * mean lifetime * mean vCPUs.
    rate = load * hosts * usable_threads / (mean_life * mean_vcpus)
    count = arrivals_per_host * hosts
    owners = rng.choices(tenants, weights=weights, k=count)
    now = 0.0
    result = []
    for n, owner in enumerate(owners):
        now += rng.expovariate(rate)
        share = rng.random()
        for fraction, days in LIFETIMES:
            if share < fraction:
                break
            share -= fraction
        result.append(Request(now, rng.expovariate(1.0 / days),
                              allocator.InstanceRequest(
                                  'i%d' % n, owner,
                                  workload.weighted_choice(rng, SIZES))))
    return result


# -- the scheduler ------------------------------------------------------------

def spread(host, request):
    """Nova's default weighing: the most free vCPUs first."""
    return -host.free_vcpus()


def tenant_pin_weigher(host, request):
    """TenantPinWeigher's score first (fewest threads stranded), then
    spread."""
    return (fit.stranded_change(host.plan, request, THREADS_PER_CORE),
            -host.free_vcpus())


class Cloud:
    """Hosts under one placement rule and a scheduler that picks one: the
    hosts in weighed order, the first whose ``check`` passes."""

    def __init__(self, name, make_host, hosts, weigh=spread):
        self.name = name
        self.hosts = [make_host() for _ in range(hosts)]
        self.weigh = weigh
        self.where = {}

    def place(self, request):
        for _, index in sorted((self.weigh(host, request), index)
                               for index, host in enumerate(self.hosts)):
            host = self.hosts[index]
            verdict = host.check(request)
            if verdict:
                host.accept(request, verdict)
                self.where[request.uuid] = host
                return True
        return False

    def depart(self, request):
        self.where.pop(request.uuid).remove(request)

    def stranded(self):
        return sum(host.stranded() for host in self.hosts)


def clouds(hosts, reserve_stranded=False):
    topology = workload.host_topology(SOCKETS, CORES_PER_SOCKET,
                                      THREADS_PER_CORE)
    hk = workload.housekeeping_cpus(topology)
    return [
        Cloud('no isolation', lambda: rules.SharedHost(
            topology, hk, THREADS_PER_CORE), hosts),
        Cloud('SMT off', lambda: rules.SharedHost(topology, hk, 1), hosts),
        Cloud('nova isolate', lambda: rules.isolate(topology, hk), hosts),
        Cloud('nova require', lambda: rules.require(topology, hk), hosts),
        Cloud('tenant-pin spread', lambda: rules.TenantPinHost(
            topology, hk, reserve_stranded), hosts),
        Cloud('tenant-pin weigher', lambda: rules.TenantPinHost(
            topology, hk, reserve_stranded), hosts,
            weigh=tenant_pin_weigher),
    ]


def replay(cloud, requests):
    """Run the trace; measured from the end of the first third."""
    warm_up = requests[len(requests) // 3].time
    end = requests[-1].time
    departures = []
    area_vcpus = area_stranded = 0.0
    rejected = offered = 0
    last = warm_up
    running_vcpus = 0
    stranded = 0

    def advance(now):
        nonlocal area_vcpus, area_stranded, last
        if now > warm_up:
            area_vcpus += running_vcpus * (now - last)
            area_stranded += stranded * (now - last)
            last = now

    for item in requests:
        while departures and departures[0][0] <= item.time:
            when, _, request = heapq.heappop(departures)
            advance(when)
            cloud.depart(request)
            running_vcpus -= request.vcpus
            stranded = cloud.stranded()
        advance(item.time)
        measured = item.time >= warm_up
        offered += measured
        if cloud.place(item.request):
            heapq.heappush(departures, (item.time + item.lifetime,
                                        item.request.uuid, item.request))
            running_vcpus += item.request.vcpus
            stranded = cloud.stranded()
        else:
            rejected += measured
    span = end - warm_up
    return area_vcpus / span, rejected, offered, area_stranded / span


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='50 hosts')
    parser.add_argument('--hosts', type=int, default=200)
    parser.add_argument('--load', type=float, default=1.1)
    parser.add_argument('--arrivals-per-host', type=int,
                        default=ARRIVALS_PER_HOST)
    parser.add_argument('--seed', type=int, default=20261125)
    parser.add_argument('--reserve-stranded', action='store_true',
                        help='placement holds stranded threads as reserved '
                        'VCPU, as the compute driver reports them')
    args = parser.parse_args(argv)
    hosts = 50 if args.quick else args.hosts
    all_clouds = clouds(hosts, args.reserve_stranded)
    usable = all_clouds[0].hosts[0].usable
    requests = trace(random.Random(args.seed), hosts, usable, args.load,
                     args.arrivals_per_host)
    print('Cluster simulation: %d hosts of %d usable threads, %d arrivals, '
          'offered load %.2f, seed %d%s' % (
              hosts, usable, len(requests), args.load, args.seed,
              ', stranded threads reserved in placement'
              if args.reserve_stranded else ''))
    print()
    header = '%-20s %12s %7s %9s %8s %10s %6s' % (
        'policy', 'vCPUs run', 'ratio', 'rejected', 'ratio', 'stranded',
        'time')
    print(header)
    print('-' * len(header))
    bound = None
    for cloud in all_clouds:
        start = time.perf_counter()
        vcpus, rejected, offered, stranded = replay(cloud, requests)
        if bound is None:
            bound = (vcpus, rejected)
        print('%-20s %12.0f %7.3f %9s %8s %10.1f %5.0fs' % (
            cloud.name, vcpus, vcpus / bound[0],
            '%d/%d' % (rejected, offered),
            '%.2f' % (rejected / bound[1]) if bound[1] else '-',
            stranded, time.perf_counter() - start))
    print()
    print('vCPUs run: time-averaged after warm-up; ratios against "no '
          'isolation"; stranded: time-averaged threads idle inside cores '
          'given to an instance or a tenant.')


if __name__ == '__main__':
    main()
