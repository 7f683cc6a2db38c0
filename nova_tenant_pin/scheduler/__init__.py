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

"""Tenant-aware scheduling: a Nova host filter (``filters``) and weigher
(``weights``), which see a host through ``host_state``, over the pure
per-host decision (``fit``) that the benchmarks share.

Importing this package or ``fit`` imports no Nova; the other modules do.
Their option, ``[tenant_pin] weight_multiplier``, is in
:mod:`nova_tenant_pin.conf`.
"""
