#!/usr/bin/env bash
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
#
# The local demo. Prepares this machine (tools/setup-host.sh), then:
# 1. plans the example workload of etc/examples/plan-small.json (three
#    tenants of one vCPU) on THIS machine's CPU topology, read from sysfs;
# 2. runs it for real (tools/demo.py): a private libvirtd, one tiny KVM guest
#    per tenant the cores allow, one more tenant refused, the core map and
#    an audit read from cgroups and /proc, a live migration to a second
#    local libvirt host under the exposure sampler, and a full tear-down.
# Needs root. Leaves the machine as it was (the packages aside).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
WORKLOAD=${1:-$REPO/etc/examples/plan-small.json}

bash "$REPO/tools/setup-host.sh"
echo "== the plan for $WORKLOAD on this host (nova-tenant-pin plan)"
"$VENV/bin/nova-tenant-pin" plan --host-topology sysfs "$WORKLOAD" \
    > "${TMPDIR:-/tmp}/nova-tenant-pin-demo.json"
"$VENV/bin/python" - "${TMPDIR:-/tmp}/nova-tenant-pin-demo.json" <<'PY'
import json
import sys

import prettytable

plan = json.load(open(sys.argv[1]))
print('cores (sibling threads):', ' '.join(
    '[%s]' % ','.join(map(str, g))
    for cell in plan['host']['cells'] for g in cell['siblings']))
table = prettytable.PrettyTable(['tenant', 'CPUs (whole cores)', 'vCPUs',
                                 'stranded threads'])
for name, t in sorted(plan['tenants'].items()):
    table.add_row([name, ','.join(map(str, t['cpus'])), t['vcpus'],
                   t['stranded_cpus']])
print(table)
for u in plan['unplaced']:
    print('refused: %s (%s): %s' % (u['uuid'], u['project_id'],
                                    u['reason']))
print('free CPUs: %s; housekeeping CPUs: %s' % (
    plan['free_cpus'] or 'none', plan['housekeeping_cpus'] or 'none'))
PY
rm -f "${TMPDIR:-/tmp}/nova-tenant-pin-demo.json"
echo
echo "== now for real: KVM guests, cgroups, live migration"
exec "$VENV/bin/python" "$REPO/tools/demo.py"
