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

"""What TenantPinFilter and TenantPinWeigher cost the scheduler per request.

A cloud of ``--hosts`` Nova ``HostState`` objects (default: 100, then
1,000), each reporting the NUMA topology of a 2 socket x 32 core x 2
thread host (one housekeeping core a socket: 124 shared CPUs) and running
instances of the cluster simulation's default mix (1-32 vCPUs) of 10
tenants a host drawn Zipf, filled to about 85 % of its threads. Each
request is a 1-4 vCPU instance of a tenant drawn the same way; the
request's instance is added to the best-weighed passing host, as the
compute host would, so the next request sees one host changed.

Timed per request in CPU time of the process (the machine's other load
does not count), the median and 95th percentile over ``--requests``:

* ``filter + weigher``: ``TenantPinFilter.host_passes`` on every host,
  then ``TenantPinWeigher`` through Nova's ``HostWeightHandler`` on the
  hosts that pass. ``steady``: the scheduler's plan cache as it is after
  earlier requests (one host changed since the last request);
  ``cold``: the cache emptied before each request (a scheduler that has
  just started, or a cloud larger than the cache), so every host plans.
* ``nova weighers``: Nova's default weighers
  (``nova.scheduler.weights.all_weighers``) on every host of the same
  cloud, measured in the same run: the baseline the ratio is against.

Run ``python tools/bench/scheduler_cost.py`` (``--quick``: 100 hosts, 10
requests).
"""

import argparse
import logging
import random
import statistics
import time
import warnings

warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

import nova.conf  # noqa: E402
from nova import objects  # noqa: E402
from nova.scheduler import host_manager  # noqa: E402
from nova.scheduler import weights as nova_weights  # noqa: E402
from oslo_utils import uuidutils  # noqa: E402

from nova_tenant_pin.scheduler import filters  # noqa: E402
from nova_tenant_pin.scheduler import host_state as tenant_host  # noqa
from nova_tenant_pin.scheduler import weights  # noqa: E402

CONF = nova.conf.CONF
SOCKETS, CORES, THREADS = 2, 32, 2
SIZES = {1: 20, 2: 28, 3: 5, 4: 22, 8: 13, 16: 8, 32: 4}
REQUEST_SIZES = {1: 40, 2: 40, 4: 20}
FILL = 0.85


def numa_topology():
    cells = []
    cores = SOCKETS * CORES
    for socket in range(SOCKETS):
        siblings = [{socket * CORES + i + t * cores for t in range(THREADS)}
                    for i in range(CORES)]
        # The first core of each socket is housekeeping: not reported.
        cpus = set().union(*siblings[1:])
        cells.append(objects.NUMACell(
            id=socket, cpuset=cpus, pcpuset=set(), siblings=siblings[1:],
            memory=262144, cpu_usage=0, memory_usage=0, pinned_cpus=set(),
            mempages=[], network_metadata=objects.NetworkMetadata(
                physnets=set(), tunneled=False)))
    return objects.NUMATopology(cells=cells)


def instance(project, vcpus):
    return objects.Instance(
        uuid=uuidutils.generate_uuid(), project_id=project, vcpus=vcpus,
        flavor=objects.Flavor(vcpus=vcpus, extra_specs={}))


def cloud(rng, count):
    tenants = ['t%d' % i for i in range(10 * count)]
    tenant_weights = [1.0 / (rank + 1) for rank in range(len(tenants))]
    usable = SOCKETS * (CORES - 1) * THREADS
    hosts = []
    for n in range(count):
        state = host_manager.HostState('host%d' % n, 'host%d' % n,
                                       uuidutils.generate_uuid())
        state.numa_topology = numa_topology()
        state.aggregates = []
        state.instances = {}
        used = 0
        while True:
            vcpus = rng.choices(list(SIZES), weights=list(SIZES.values()))[0]
            if used + vcpus > FILL * usable:
                break
            project = rng.choices(tenants, weights=tenant_weights)[0]
            inst = instance(project, vcpus)
            state.instances[inst.uuid] = inst
            used += vcpus
        state.vcpus_total = usable
        state.vcpus_used = used
        state.free_ram_mb = 262144
        state.total_usable_ram_mb = 262144
        state.free_disk_mb = 10 ** 6
        state.cpu_allocation_ratio = 1.0
        state.ram_allocation_ratio = 1.0
        state.disk_allocation_ratio = 1.0
        state.num_io_ops = 0
        state.num_instances = len(state.instances)
        state.failed_builds = 0
        state.total_usable_disk_gb = 10 ** 3
        hosts.append(state)
    return hosts, tenants, tenant_weights


def request(rng, tenants, tenant_weights):
    project = rng.choices(tenants, weights=tenant_weights)[0]
    vcpus = rng.choices(list(REQUEST_SIZES),
                        weights=list(REQUEST_SIZES.values()))[0]
    return objects.RequestSpec(
        instance_uuid=uuidutils.generate_uuid(), project_id=project,
        flavor=objects.Flavor(vcpus=vcpus, memory_mb=1024, root_gb=1,
                              ephemeral_gb=0, swap=0, extra_specs={}),
        image=objects.ImageMeta.from_dict({}), num_instances=1,
        scheduler_hints={}, is_bfv=False, instance_group=None)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(hosts, specs, cold):
    """Milliseconds a request of filter + weigher, and the picks."""
    tp_filter = filters.TenantPinFilter()
    handler = nova_weights.HostWeightHandler()
    weighers = [weights.TenantPinWeigher()]
    times = []
    for spec in specs:
        if cold:
            tenant_host._plan.cache_clear()
        start = time.process_time()
        passing = [h for h in hosts if tp_filter.host_passes(h, spec)]
        weighed = handler.get_weighed_objects(weighers, passing, spec)
        times.append((time.process_time() - start) * 1000.0)
        if weighed and not cold:
            chosen = weighed[0].obj
            inst = instance(spec.project_id, spec.vcpus)
            chosen.instances[inst.uuid] = inst
    return times


def measure_nova(hosts, specs):
    handler = nova_weights.HostWeightHandler()
    weighers = handler.get_matching_classes(
        ['nova.scheduler.weights.all_weighers'])
    weighers = [cls() for cls in weighers]
    times = []
    for spec in specs:
        start = time.process_time()
        handler.get_weighed_objects(weighers, hosts, spec)
        times.append((time.process_time() - start) * 1000.0)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--hosts', type=int, action='append')
    parser.add_argument('--requests', type=int, default=30)
    parser.add_argument('--seed', type=int, default=20261207)
    parser.add_argument('--quick', action='store_true',
                        help='100 hosts, 10 requests')
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    CONF([], project='nova')
    objects.register_all()
    counts = [100] if args.quick else (args.hosts or [100, 1000])
    requests = 10 if args.quick else args.requests
    print('Scheduler cost: hosts of 2 sockets x 32 cores x 2 threads '
          '(124 shared CPUs), about %d %% full of 1-32 vCPU instances; '
          '%d requests of 1-4 vCPUs each' % (100 * FILL, requests))
    print()
    header = '%6s %9s %-22s %10s %8s %9s %8s' % (
        'hosts', 'inst/host', 'measure', 'median ms', 'p95 ms', 'ms/host',
        'ratio')
    print(header)
    print('-' * len(header))
    for count in counts:
        rng = random.Random(args.seed)
        hosts, tenants, tenant_weights = cloud(rng, count)
        per_host = statistics.mean(len(h.instances) for h in hosts)
        specs = [request(rng, tenants, tenant_weights)
                 for _ in range(requests)]
        nova = measure_nova(hosts, specs)
        # The first steady request fills the cache: left out.
        steady = measure(hosts, specs[:1] + specs, cold=False)[1:]
        cold = measure(hosts, specs, cold=True)
        base = statistics.median(nova)
        for name, times in (('nova weighers', nova),
                            ('filter + weigher steady', steady),
                            ('filter + weigher cold', cold)):
            median = statistics.median(times)
            print('%6d %9.1f %-22s %10.2f %8.2f %9.3f %8.1f' % (
                count, per_host, name, median, percentile(times, 0.95),
                median / count, median / base))
    print()
    print('ratio: median against Nova\'s default weighers on the same hosts '
          'in the same run. steady: one host changed since the last '
          'request; cold: every host plans.')


if __name__ == '__main__':
    main()
