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

"""The test host image's cache key, from tools/testhost/build-image.sh.

``build-image.sh --key`` is run for real (bash, no root) on a copy of the
tools and requirement files: the key follows what decides the image's
content (the recipe image.sh, guest/, the apt source, the requirement
files, the kernel kind) and nothing else, so a change to how the image is
built (build-image.sh itself) reuses the cached image.
"""

import os
import shutil
import subprocess

import fixtures

from nova_tenant_pin.tests import base

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
REQUIREMENTS = ('requirements.txt', 'test-requirements.txt',
                'upper-constraints.txt')


class TestImageKey(base.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        shutil.copytree(os.path.join(REPO, 'tools', 'testhost'),
                        os.path.join(self.root, 'tools', 'testhost'))
        for name in REQUIREMENTS:
            shutil.copy(os.path.join(REPO, name), self.root)
        self.sources = os.path.join(self.root, 'debian.sources')
        with open(self.sources, 'w') as f:
            f.write('Types: deb\nURIs: http://deb.example/debian\n'
                    'Suites: bookworm\nComponents: main\n')

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def key(self, *args):
        env = dict(os.environ, NTP_TESTHOST_APT_SOURCES=self.sources,
                   NTP_TESTHOST_CACHE=self.path('cache'))
        out = subprocess.run(
            ['bash', self.path('tools', 'testhost', 'build-image.sh'),
             '--key'] + list(args), env=env, check=True,
            capture_output=True, text=True, timeout=60).stdout.strip()
        self.assertRegex(out, '^[0-9a-f]{16}$')
        # Printing the key builds nothing.
        self.assertFalse(os.path.exists(self.path('cache')))
        return out

    def append(self, *parts, text='# a comment\n'):
        with open(self.path(*parts), 'a') as f:
            f.write(text)

    def test_how_the_image_is_built_is_not_in_the_key(self):
        key = self.key()
        self.assertEqual(key, self.key())
        self.append('tools', 'testhost', 'build-image.sh')
        self.append('tools', 'testhost', 'run.sh')
        self.append('tools', 'testhost', 'guest-run.sh')
        self.assertEqual(key, self.key())

    def test_what_decides_the_content_is_in_the_key(self):
        key = self.key()
        changed = set()
        for parts in (('tools', 'testhost', 'image.sh'),
                      ('tools', 'testhost', 'guest', 'ntp-testhost-boot'),
                      ('debian.sources',),
                      ('requirements.txt',),
                      ('test-requirements.txt',),
                      ('upper-constraints.txt',)):
            self.append(*parts)
            new = self.key()
            self.assertNotEqual(key, new, '/'.join(parts))
            changed.add(new)
            key = new
        self.assertEqual(6, len(changed))

    def test_the_kernel_kind_is_in_the_key(self):
        self.assertNotEqual(self.key('--kernel', 'shared'),
                            self.key('--kernel', 'debian'))
        self.assertEqual(self.key(), self.key('--kernel', 'shared'))
