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

# Nova's services run on eventlet here, as in Nova's own functional tests,
# and eventlet must patch the process before anything else is imported.
# oslo.db keeps each request context's open transaction in a
# threading.local subclass: imported before the patch, that storage is
# one per OS thread, shared by every green thread, and two green threads
# using one context (Nova's harness gives a compute's service record and
# its compute node the same admin context) see each other's transactions:
# a build's compute node save then fails with "Can't upgrade a READER
# transaction to a WRITER" while the service's state report is reading.
from nova import monkey_patch  # noqa: E402,I100
monkey_patch.patch()
