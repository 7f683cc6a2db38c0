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
124 usable threads) under each policy and each scheduler. A request that
no host passes is rejected and does not come back.

The trace (:func:`trace`), from a seed:

* **Tenants** (``--trace``): ``zipf`` (default), ``10 x hosts`` tenants,
  each request's tenant drawn with weight ``1/rank`` (a few tenants submit
  much, most a few requests); ``uniform``, the same tenants equally
  likely; ``few``, ``2 x hosts`` tenants drawn Zipf (tenants with many
  instances).
* **Instance sizes** (``--mix``, see :data:`MIXES`): ``default`` 1 vCPU
  20 %, 2 vCPUs 28 %, 3 vCPUs 5 %, 4 vCPUs 22 %, 8 vCPUs 13 %, 16 vCPUs
  8 %, 32 vCPUs 4 % (mean 5.4 vCPUs); ``small``, mostly 1-vCPU instances
  ("1 x8, 2, 4": 1 vCPU 80 %, 2 and 4 vCPUs 10 % each); ``host-fill``,
  the capacity benchmark's mix (mostly 1-4 vCPUs, some 8-16); ``odd``,
  odd vCPU counts only (1, 3, 5, 7), the worst case for whole cores. A
  mix may also be written out: ``"1x8,2,4"`` (size x weight, weight 1 when
  left out).
* **Lifetimes**: exponential, mean 1 day for 60 % of the instances
  (short-lived) and 5 days for the others.
* **Arrivals**: a Poisson process whose rate offers ``--load`` (default
  1.1) times the cloud's usable threads in vCPUs at steady state, so
  capacity runs out and every policy rejects some requests, for
  ``--days`` (default 15) whatever the mix. The first third of the trace
  warms the cloud up and is not measured.

Placement rules (each with no CPU overcommit): ``no isolation`` (every
thread usable by anyone), ``SMT off`` (one thread a core), ``nova
isolate`` / ``nova require`` (pinned instances in one NUMA cell, one core
per vCPU / whole cores per instance) and ``tenant-pin`` (this project's
filter, :func:`nova_tenant_pin.scheduler.fit.check_fit`, with the host's
plan as the compute host keeps it).

Schedulers, the same for every rule: ``spread``, Nova's default weighing
(the most free vCPUs as placement sees them first; stranded threads are
reported reserved), and ``pack``, the same weigher with a negative
multiplier (the fewest free vCPUs first). ``tenant-pin + weigher`` puts
``TenantPinWeigher``'s score
(:func:`~nova_tenant_pin.scheduler.fit.tenant_pin_weight`) before either:
with its default multiplier of 10 over Nova's weighers of 1, spreading or
packing only breaks its ties. The score's room term
(:func:`~nova_tenant_pin.scheduler.fit.room_term`: a tenant's instances
go to the fullest host it holds cores on, a tenant new to a host to the
emptiest) orders the hosts its other terms leave equal, so it decides
most of what spreading or packing would. ``tenant-pin + weigher before``
is the score without the room term, shown for comparison in the same
run. Hosts are tried best-weighed first and the
first that passes the filter is taken, which is what filtering every host
and taking the best does, in a fraction of the time.

**The bound** is the better of ``no isolation`` spread and ``no
isolation`` pack, per seed: every ratio is against it.

``--reserve-stranded`` adds placement's view to the tenant-pin policies:
stranded threads are reserved VCPU there, so a host must have as many
free threads outside all tenants' cores as the request has vCPUs, even
when the request would fill its tenant's idle threads.

Printed, per mix: the time-averaged vCPUs running after warm-up as a ratio
to the bound (mean over ``--seeds`` seeds, with the lowest and highest),
the rejected requests as a share of those offered, and the time-averaged
stranded threads. Run ``python tools/bench/cluster_sim.py`` (10 hosts,
every mix, 3 seeds; ``--quick``: 5 hosts, 1 seed; ``--policy`` to run
fewer policies, the bound's always among them).
"""

import argparse
import heapq
import os
import random
import statistics
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
# vCPUs -> relative weight.
MIXES = {
    'default': {1: 20, 2: 28, 3: 5, 4: 22, 8: 13, 16: 8, 32: 4},
    'small': {1: 8, 2: 1, 4: 1},
    'host-fill': workload.HOST_FILL_SIZES,
    'odd': {1: 4, 3: 3, 5: 2, 7: 1},
}
TRACES = {
    # name: (tenants per host, tenant weights by rank)
    'zipf': (10, lambda rank: 1.0 / (rank + 1)),
    'uniform': (10, lambda rank: 1.0),
    'few': (2, lambda rank: 1.0 / (rank + 1)),
}
LIFETIMES = ((0.6, 1.0), (0.4, 5.0))  # (share, mean days)
DAYS = 15


def parse_mix(text):
    """A mix by name, or written out: ``"1x8,2,4"``."""
    if text in MIXES:
        return dict(MIXES[text])
    mix = {}
    for part in text.split(','):
        size, _, weight = part.strip().partition('x')
        mix[int(size)] = mix.get(int(size), 0) + float(weight or 1)
    return mix


class Request:
    __slots__ = ('time', 'lifetime', 'request')

    def __init__(self, time, lifetime, request):
        self.time = time
        self.lifetime = lifetime
        self.request = request


def trace(rng, hosts, usable_threads, load, days, sizes, kind='zipf'):
    """The list of :class:`Request`, in arrival order."""
    per_host, weight = TRACES[kind]
    tenants = ['t%d' % i for i in range(per_host * hosts)]
    weights = [weight(rank) for rank in range(len(tenants))]
    mean_vcpus = sum(v * w for v, w in sizes.items()) / sum(sizes.values())
    mean_life = sum(share * days for share, days in LIFETIMES)
    # Offered load = rate * mean lifetime * mean vCPUs.
    rate = load * hosts * usable_threads / (mean_life * mean_vcpus)
    # The trace spans ``days`` whatever the mix: a mix of small instances
    # has more arrivals, not a cloud that never fills.
    count = int(rate * days)
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
                                  workload.weighted_choice(rng, sizes))))
    return result


# -- the schedulers -----------------------------------------------------------

def spread(host, request):
    """Nova's default weighing: the most free vCPUs first."""
    return -host.free_vcpus()


def pack(host, request):
    """Nova's CPU weigher with a negative multiplier: the fewest free vCPUs
    first."""
    return host.free_vcpus()


SCHEDULERS = {'spread': spread, 'pack': pack}


def with_weigher(then):
    """TenantPinWeigher's score first, then ``then``."""
    def weigh(host, request):
        return (-fit.tenant_pin_weight(host.plan, request,
                                       THREADS_PER_CORE),
                then(host, request))
    return weigh


def with_weigher_before(then):
    """TenantPinWeigher's score before its room term, then ``then``."""
    def weigh(host, request):
        return (-fit.tenant_pin_weight(host.plan, request,
                                       THREADS_PER_CORE, room=False),
                then(host, request))
    return weigh


class Cloud:
    """Hosts under one placement rule and a scheduler that picks one: the
    hosts in weighed order, the first whose ``check`` passes."""

    def __init__(self, rule, scheduler, make_host, hosts, weigh):
        self.rule = rule
        self.scheduler = scheduler
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


RULES = ('no isolation', 'SMT off', 'nova isolate', 'nova require',
         'tenant-pin', 'tenant-pin + weigher before', 'tenant-pin + weigher')


def clouds(hosts, reserve_stranded=False, rules_wanted=RULES):
    topology = workload.host_topology(SOCKETS, CORES_PER_SOCKET,
                                      THREADS_PER_CORE)
    hk = workload.housekeeping_cpus(topology)
    makers = {
        'no isolation': (lambda: rules.SharedHost(
            topology, hk, THREADS_PER_CORE), None),
        'SMT off': (lambda: rules.SharedHost(topology, hk, 1), None),
        'nova isolate': (lambda: rules.isolate(topology, hk), None),
        'nova require': (lambda: rules.require(topology, hk), None),
        'tenant-pin': (lambda: rules.TenantPinHost(
            topology, hk, reserve_stranded), None),
        'tenant-pin + weigher before': (lambda: rules.TenantPinHost(
            topology, hk, reserve_stranded), with_weigher_before),
        'tenant-pin + weigher': (lambda: rules.TenantPinHost(
            topology, hk, reserve_stranded), with_weigher),
    }
    result = []
    for rule in rules_wanted:
        make, wrap = makers[rule]
        for name, scheduler in SCHEDULERS.items():
            result.append(Cloud(rule, name, make, hosts,
                                wrap(scheduler) if wrap else scheduler))
    return result


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


def run_mix(args, mix_name, sizes, hosts, seeds):
    """``{(rule, scheduler): [(ratio, rejected share, stranded), ...]}``,
    one tuple a seed, the ratio against that seed's bound."""
    results = {}
    elapsed = 0.0
    for seed in seeds:
        all_clouds = clouds(hosts, args.reserve_stranded,
                            _wanted(args.policy))
        usable = all_clouds[0].hosts[0].usable
        requests = trace(random.Random(seed), hosts, usable, args.load,
                         args.days, sizes, args.trace)
        measured = {}
        for cloud in all_clouds:
            start = time.process_time()
            measured[cloud.rule, cloud.scheduler] = replay(cloud, requests)
            elapsed += time.process_time() - start
        bound = max(measured['no isolation', name][0]
                    for name in SCHEDULERS)
        for key, (vcpus, rejected, offered, stranded) in measured.items():
            results.setdefault(key, []).append(
                (vcpus / bound, rejected / offered, stranded))
    return results, elapsed


def _wanted(policies):
    """The rules to run, in the table's order; the bound's always."""
    wanted = set(policies or RULES) | {'no isolation'}
    return tuple(rule for rule in RULES if rule in wanted)


def spread_of(values, fmt):
    mean = statistics.mean(values)
    if len(values) == 1:
        return fmt % mean
    return (fmt + ' (' + fmt + '-' + fmt + ')') % (
        mean, min(values), max(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='5 hosts, 1 seed')
    parser.add_argument('--hosts', type=int, default=10)
    parser.add_argument('--seeds', type=int, default=3,
                        help='how many seeds, from --seed on')
    parser.add_argument('--seed', type=int, default=20261125)
    parser.add_argument('--mix', action='append',
                        help='a mix of %s, or sizes written out ("1x8,2,4"); '
                        'repeat for several (default: all named ones)'
                        % ', '.join(MIXES))
    parser.add_argument('--policy', action='append', choices=RULES,
                        help='run only these policies (repeat for '
                        'several; "no isolation", the bound, always runs)')
    parser.add_argument('--trace', choices=sorted(TRACES), default='zipf')
    parser.add_argument('--load', type=float, default=1.1)
    parser.add_argument('--days', type=float, default=DAYS,
                        help='the trace\'s length (the first third warms '
                        'up)')
    parser.add_argument('--reserve-stranded', action='store_true',
                        help='placement holds stranded threads as reserved '
                        'VCPU, as the compute driver reports them')
    args = parser.parse_args(argv)
    hosts = 5 if args.quick else args.hosts
    count = 1 if args.quick else args.seeds
    seeds = [args.seed + n for n in range(count)]
    mixes = args.mix or list(MIXES)
    print('Cluster simulation: %d hosts of %d usable threads, %g days, '
          'trace %s, offered load %.2f, seeds %s%s' % (
              hosts, 2 * SOCKETS * (CORES_PER_SOCKET - 1),
              args.days, args.trace, args.load,
              ', '.join(map(str, seeds)),
              ', stranded threads reserved in placement'
              if args.reserve_stranded else ''))
    for mix_name in mixes:
        sizes = parse_mix(mix_name)
        mean = sum(v * w for v, w in sizes.items()) / sum(sizes.values())
        results, elapsed = run_mix(args, mix_name, sizes, hosts, seeds)
        print()
        print('mix %s: %s (mean %.1f vCPUs), %.0f s' % (
            mix_name, ', '.join('%d x%g' % (v, w)
                                for v, w in sorted(sizes.items())),
            mean, elapsed))
        header = '%-27s %-7s %-23s %-23s %s' % (
            'policy', 'sched', 'vCPUs run / bound', 'rejected %',
            'stranded')
        print(header)
        print('-' * len(header))
        for (rule, scheduler), rows in results.items():
            ratios, rejected, stranded = zip(*rows)
            print('%-27s %-7s %-23s %-23s %s' % (
                rule, scheduler, spread_of(ratios, '%.3f'),
                spread_of([100 * r for r in rejected], '%.1f'),
                spread_of(stranded, '%.0f')))
    print()
    print('vCPUs run: time-averaged after warm-up, against the bound (the '
          'better of "no isolation" spread and pack, per seed); mean over '
          'the seeds (lowest-highest). rejected: share of the measured '
          'requests no host took. stranded: time-averaged threads idle '
          'inside cores given to an instance or a tenant.')


if __name__ == '__main__':
    main()
