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

from hypothesis import settings

# Property tests judge results, never time: a loaded machine is slow, not
# wrong. The profiles that test modules register later (dev, ci, stress)
# start from this one, so none of them has a deadline.
settings.register_profile('nova-tenant-pin-base', deadline=None)
settings.load_profile('nova-tenant-pin-base')
