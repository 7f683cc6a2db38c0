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
# Run every test of nova-tenant-pin on this machine:
#   flake8 (hacking), the docs and release notes (Sphinx, warnings are
#   errors), unit tests, functional tests (real cgroups, the real privsep
#   daemon, Nova's in-process functional harness) and integration tests
#   (real libvirtd + QEMU/KVM guests), then the real-kernel suite inside
#   the test host (tools/testhost/run.sh: SMT, NUMA, systemd, cgroup v2).
# Prepares the machine first with tools/setup-host.sh (Debian packages and
# the venv) unless --no-setup is given. Tests that need root say so in their
# skip reason; run this as root to run them all.
# Ends with one line "tests: N passed, N failed, N skipped" and exits
# non-zero when anything failed.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
cd "$REPO"
if [ "${1:-}" != "--no-setup" ]; then
    bash tools/setup-host.sh || { echo "setup failed" >&2; exit 1; }
fi
export PATH=$VENV/bin:$PATH
export PYTHONDONTWRITEBYTECODE=1
export OS_TEST_TIMEOUT=${OS_TEST_TIMEOUT:-600}
# Property tests draw new random examples on a developer's machine; in CI
# they replay a fixed set, so that a red CI means a regression.
if [ -n "${CI:-}" ]; then
    export HYPOTHESIS_PROFILE=${HYPOTHESIS_PROFILE:-ci}
fi

# The test host's image (a cold build takes minutes: debootstrap and the
# venv inside) is built in the background while the other suites run; the
# testhost stage waits for it. Its log is printed at that stage.
prepare_pid=
prepare_log=
if [ "$(id -u)" = 0 ]; then
    prepare_log=$(mktemp)
    bash tools/testhost/run.sh --prepare >"$prepare_log" 2>&1 &
    prepare_pid=$!
fi

status=0
# What failed, named again in the last lines of the output, where a
# truncated CI log still shows it.
failures=()
passed=0
failed=0
skipped=0

echo "== flake8"
if flake8; then
    echo "flake8: clean"
else
    echo "flake8: FAILED"
    failures+=(flake8)
    status=1
fi

echo "== docs (Sphinx, warnings are errors)"
if sphinx-build -W --keep-going -q -b html doc/source "$REPO/doc/build/html" &&
   sphinx-build -W --keep-going -q -b html releasenotes/source \
       "$REPO/releasenotes/build/html"; then
    echo "docs: built"
else
    echo "docs: FAILED"
    failures+=(docs)
    status=1
fi

run_suite() {
    local name=$1 path=$2 concurrency=$3
    if ! ls "$path"/test_*.py >/dev/null 2>&1; then
        echo "== $name: no tests in $path"
        return
    fi
    echo "== $name ($path)"
    local args=()
    [ "$concurrency" = 0 ] || args+=(--concurrency "$concurrency")
    if ! stestr --test-path "$path" run "${args[@]}"; then
        status=1
        local ids
        ids=$(stestr failing --list 2>/dev/null | tr '\n' ' ')
        failures+=("$name: ${ids:-the suite did not run or load}")
    fi
    local stats
    stats=$(stestr last --subunit | subunit-stats 2>/dev/null)
    passed=$((passed + $(awk '/^Passed tests:/ {print $3}' <<<"$stats")))
    failed=$((failed + $(awk '/^Failed tests:/ {print $3}' <<<"$stats")))
    skipped=$((skipped + $(awk '/^Skipped tests:/ {print $3}' <<<"$stats")))
}

run_suite unit ./nova_tenant_pin/tests/unit 0
run_suite functional ./nova_tenant_pin/tests/functional 0
run_suite integration ./nova_tenant_pin/tests/integration 1

# The real-kernel suite runs inside the test host (tools/testhost/run.sh):
# SMT siblings, two NUMA nodes, systemd and cgroup v2, which this machine
# kind lacks. Its counts come from stestr inside, printed by subunit-stats.
run_testhost() {
    local path=./nova_tenant_pin/tests/testhost
    echo "== testhost ($path, inside tools/testhost/run.sh)"
    if [ "$(id -u)" != 0 ]; then
        echo "testhost: needs root (image build, QEMU); CI runs it as root"
        skipped=$((skipped + 1))
        return
    fi
    if [ -n "$prepare_pid" ]; then
        wait "$prepare_pid"
        local prc=$?
        tail -n 20 "$prepare_log"
        rm -f "$prepare_log"
        # A failed background build is tried again by run.sh below, in the
        # foreground, where its error shows in full.
        [ "$prc" = 0 ] || echo "testhost: the background image build failed ($prc)"
    fi
    local out
    out=$(mktemp)
    bash tools/testhost/run.sh -- bash -c "stestr --test-path $path run \
        --concurrency 1; rc=\$?; stestr last --subunit | subunit-stats; \
        exit \$rc" 2>&1 | tee "$out"
    if [ "${PIPESTATUS[0]}" != 0 ]; then
        status=1
        failures+=("testhost: $(awk '/ \.\.\. FAILED/ {print $2}' "$out" |
            tr '\n' ' ')")
    fi
    passed=$((passed + $(awk '/^Passed tests:/ {n = $3} END {print n + 0}' "$out")))
    failed=$((failed + $(awk '/^Failed tests:/ {n = $3} END {print n + 0}' "$out")))
    skipped=$((skipped + $(awk '/^Skipped tests:/ {n = $3} END {print n + 0}' "$out")))
    rm -f "$out"
}
run_testhost

if [ "$status" != 0 ] && [ "$failed" = 0 ]; then
    # flake8, or a suite that failed to load, fails the run on its own.
    failed=1
fi
echo
for f in "${failures[@]}"; do
    echo "failed: $f"
done
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
