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

"""A transaction open in one green thread is invisible to the others.

Nova's harness starts a compute with one admin context for everything its
start creates: the service record, whose state report saves it every ten
seconds in its own green thread, and the compute node, which the resource
tracker saves at every claim. oslo.db keeps a context's open transaction
in thread-local storage; if that storage is shared by the green threads,
a build whose claim saves the compute node while the state report is
inside a read transaction fails with "Can't upgrade a READER transaction
to a WRITER mid-transaction" (and, with one compute, ends in ERROR).
"""

from eventlet import event
from eventlet import greenthread
from nova.db.main import api as db_api

from nova_tenant_pin.tests.functional import base


class TestGreenThreadTransactions(base.TenantPinTestBase):

    def test_build_while_another_green_thread_reads_with_the_same_context(
            self):
        self.start_compute('host1')
        compute = self.computes['host1']
        ctxt = compute.service_ref._context
        # The sharing this test is about: one context for both records.
        self.assertIs(ctxt,
                      compute.manager.rt.compute_nodes['host1']._context)
        inside, leave = event.Event(), event.Event()

        def report_state():
            # What the service's state report does, held open: a read
            # transaction on the service record's context.
            with db_api.get_context_manager(ctxt).reader.using(ctxt):
                inside.send()
                leave.wait()
        reader = greenthread.spawn(report_state)
        inside.wait()
        try:
            # The claim saves the compute node with that same context.
            server = self.boot('a', 2)
        finally:
            leave.send()
            reader.wait()
        self.assertEqual('host1', self.host_of(server))
        self.assertIn(server['id'], self.manager_of('host1').claims())
