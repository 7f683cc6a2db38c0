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
# The local demo: prepare this machine (tools/setup-host.sh), then plan the
# example workload in etc/examples/plan-small.json (three tenants of one
# vCPU each) on THIS machine's real CPU topology, read from sysfs, and print
# the plan: which whole cores each tenant gets, what does not fit and why.
# On a 2-core machine without SMT two tenants fit and the third is refused.
# Changes nothing on the host.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
WORKLOAD=${1:-$REPO/etc/examples/plan-small.json}

bash "$REPO/tools/setup-host.sh"
echo "== this host, from sysfs, and the workload $WORKLOAD"
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
echo "== the full plan (JSON contract of 'nova-tenant-pin plan')"
cat "${TMPDIR:-/tmp}/nova-tenant-pin-demo.json"
