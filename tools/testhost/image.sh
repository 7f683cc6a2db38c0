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
# The test host image's recipe: everything that decides what the image
# holds, and nothing about how it is built. build-image.sh sources it and
# keys the image cache by a hash of this file, guest/, the apt source, the
# requirement files and the kernel kind; build-image.sh itself (mounts,
# chroot, logs, clean-up) is not in the key, so a change to how the image
# is built reuses the cached image, and a change here builds a new one.
#
# The functions run on the build machine with ROOT set to the image's root
# and in_root (a command inside it) defined by build-image.sh.

SUITE=bookworm
IMAGE_SIZE=8G
IMAGE_LABEL=ntp-testhost

# The Debian packages inside the test host, on top of debootstrap's minbase;
# with the Debian kernel (no shared test-host kernel), its cloud kernel.
image_packages() {  # KERNEL_KIND
    echo "systemd systemd-sysv systemd-container dbus udev kmod procps
iproute2 util-linux ca-certificates libvirt-daemon-system libvirt-clients
libvirt-dev qemu-system-x86 qemu-utils pkg-config gcc python3 python3-dev
python3-venv"
    if [ "$1" = debian ]; then
        echo "linux-image-cloud-amd64 initramfs-tools"
    fi
}

# A venv (/opt/ntp-venv) with the project's requirements and test
# requirements (Nova and its test tree among them), constrained by
# upper-constraints.txt; build-image.sh copies the three files to /tmp/req.
image_python() {
    in_root python3 -m venv /opt/ntp-venv
    in_root /opt/ntp-venv/bin/pip install -q --upgrade pip
    in_root /opt/ntp-venv/bin/pip install -q \
        -c /tmp/req/upper-constraints.txt \
        -r /tmp/req/requirements.txt -r /tmp/req/test-requirements.txt
}

# systemd: the test host's own unit runs the command and powers off; what
# would only slow the boot or print on the console is masked. libvirtd
# stays up (no idle exit) with a fixed host UUID (no SMBIOS one).
image_configure() {  # GUEST_DIR
    local unit
    install -m 0755 "$1/ntp-testhost-boot" "$ROOT/usr/local/sbin/"
    install -m 0644 "$1/ntp-testhost.service" "$ROOT/etc/systemd/system/"
    ln -sf /etc/systemd/system/ntp-testhost.service \
        "$ROOT/etc/systemd/system/multi-user.target.wants/ntp-testhost.service"
    for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
                e2scrub_reap.service fstrim.timer serial-getty@ttyS0.service \
                getty@tty1.service systemd-timesyncd.service \
                libvirt-guests.service; do
        ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
    done
    echo ntp-testhost > "$ROOT/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 ntp-testhost\n' > "$ROOT/etc/hosts"
    : > "$ROOT/etc/fstab"
    echo 'LIBVIRTD_ARGS=""' > "$ROOT/etc/default/libvirtd"
    echo 'host_uuid = "5e1f7a7e-0000-4000-8000-0000000000a1"' \
        >> "$ROOT/etc/libvirt/libvirtd.conf"
}
