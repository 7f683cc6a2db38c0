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

"""The name Nova loads: ``compute_driver = tenant_pin.TenantPinLibvirtDriver``.

Nova imports compute drivers only as ``nova.virt.<compute_driver>``. This
one module is shipped in the wheel as ``nova/virt/tenant_pin.py`` (setup.cfg
``[files] modules``); there is deliberately no ``nova/__init__.py`` or
``nova/virt/__init__.py`` beside it, so nothing of Nova's own is replaced or
shadowed. The driver itself lives in ``nova_tenant_pin.driver``.
"""

from nova_tenant_pin.driver import TenantPinLibvirtDriver

__all__ = ['TenantPinLibvirtDriver']
