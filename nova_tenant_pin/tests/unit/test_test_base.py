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

"""The base test case's help for a suite that hangs: every thread's Python
stack on SIGUSR1 (the test host's watchdog sends it) and after the test
timeout."""

import faulthandler
import os
import signal
import tempfile
from unittest import mock

from nova_tenant_pin.tests import base


class TestStacksOfAStuckTest(base.TestCase):

    def test_sigusr1_dumps_every_threads_stack(self):
        # faulthandler writes to the descriptor it was given (stderr's);
        # point that descriptor at a file for the moment of the signal. A
        # signal a thread sends its own process, unblocked there, is
        # handled by that thread before kill() returns (not
        # pthread_kill: under eventlet's monkey patching get_ident() is
        # not a pthread). Without the handler SIGUSR1 ends the process.
        with tempfile.TemporaryFile() as f:
            saved = os.dup(2)
            os.dup2(f.fileno(), 2)
            try:
                os.kill(os.getpid(), signal.SIGUSR1)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            f.seek(0)
            dump = f.read().decode()
        self.assertIn('test_sigusr1_dumps_every_threads_stack', dump)

    def armed(self, timeout):
        """The delays this test case arms the stack dump with when
        OS_TEST_TIMEOUT is ``timeout``."""
        calls = []
        with mock.patch.dict(os.environ, {'OS_TEST_TIMEOUT': timeout}), \
                mock.patch.object(faulthandler, 'dump_traceback_later',
                                  lambda delay, **kw: calls.append(delay)):
            self._dump_stacks_if_stuck()
        return calls

    def test_a_stuck_test_dumps_its_stacks_after_the_timeout(self):
        self.assertEqual([67], self.armed('7'))

    def test_no_timeout_no_dump(self):
        self.assertEqual([], self.armed('0'))
