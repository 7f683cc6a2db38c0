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

"""Applies the steps of :mod:`nova_tenant_pin.transition` to the host.

Partition steps go to the cgroup tree
(:class:`~nova_tenant_pin.cgroups.TenantPartitions`), pin and metadata
steps to libvirt (:class:`~nova_tenant_pin.guests.Guests`). The executor
stops at the first write that fails and says what it did: every prefix of
a step list is safe, so the host is safe wherever it stopped, and the
caller plans again from what the host then holds.

An executor built with ``write=False`` writes nothing and reports every
step as done: that is the dry run (``adopt --dry-run``, ``release
--dry-run``), and the only one.

``on_step(step, position, total)``, when given, is called after each step
is written (``position`` counts from 1 in the list of ``total``), before
the next one starts: ``adopt`` and ``release`` log each write as it
happens, so a run that stops half way leaves a record of what it did.
"""

import dataclasses

from oslo_log import log as logging

from nova_tenant_pin import cgroups
from nova_tenant_pin import transition

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class Outcome:
    """What :meth:`Executor.run` did: the steps ``done`` (in order), and
    the step that ``failed`` with its ``error`` (None when all ran)."""

    done: list
    failed: transition.Step = None
    error: Exception = None

    @property
    def actions(self):
        """The steps done, as lines an operator reads."""
        return [step.describe() for step in self.done]


class Executor:
    """Writes steps through ``guests`` and ``partitions``.

    :param mems: the memory nodes of a partition it creates.
    :param name: the host name, for the logs.
    """

    def __init__(self, guests, partitions, mems, name='host', write=True,
                 on_step=None):
        self.guests = guests
        self.partitions = partitions
        self.mems = frozenset(mems)
        self.name = name
        self.write = write
        self.on_step = on_step

    def run(self, steps, domains):
        """Apply ``steps`` in order; ``domains`` is ``{uuid: Guest}``.
        Returns an :class:`Outcome`; never raises for a failed write."""
        done = []
        for position, step in enumerate(steps, 1):
            if self.write:
                try:
                    if not self._apply(step, domains):
                        continue
                except Exception as e:
                    LOG.warning('%s: %s failed: %s', self.name,
                                step.describe(), e)
                    # What the write left is unknown: the next change
                    # reads every domain again.
                    self.guests.invalidate()
                    return Outcome(done, step, e)
                if self.on_step is not None:
                    self.on_step(step, position, len(steps))
            done.append(step)
        return Outcome(done)

    def _apply(self, step, domains):
        """Do one step; False when it was skipped (and is not done)."""
        if step.kind == transition.SET_PARTITION:
            if step.old is None:
                self.partitions.ensure_partition(step.key, step.cpus,
                                                 self.mems)
            else:
                self.partitions.set_partition_cpus(step.key, step.cpus)
        elif step.kind == transition.REMOVE_PARTITION:
            try:
                self.partitions.remove_partition(step.key)
            except cgroups.PartitionBusy as e:
                # A domain nobody knows about still runs there; keep it.
                LOG.warning('%s: partition of tenant %s kept: %s',
                            self.name, step.key, e)
                return False
        elif step.kind == transition.METADATA:
            # A write like the others: the steps after it were planned
            # with the domain under the key it records (a guest whose key
            # changes moves to its new key's cores only once the host
            # records that key), so a failure stops the change here too.
            self.guests.set_metadata(domains[step.uuid], step.metadata)
        else:
            guest = domains[step.uuid]
            kind, index = step.thread
            if kind == 'vcpu':
                self.guests.pin_vcpu(guest, index, step.cpus)
            elif kind == 'iothread':
                self.guests.pin_iothread(guest, index, step.cpus)
            else:
                self.guests.pin_emulator(guest, step.cpus)
        return True
