#!/usr/bin/env bash
# build-image.sh OUT_DIR PUBLIC_KEY_FILE [SUITE]
#
# The recipe of the test VMs' base image: Debian 11, 12 or 13 (SUITE bullseye,
# bookworm (the default) or trixie) with its own kernel, systemd, sshd and
# python3, reached as root with one SSH key.
# Writes OUT_DIR/{base.raw,vmlinuz,initrd.img}.  Needs root (debootstrap and
# chroot), no loop mounts: the ext4 image is made from the tree by
# `mkfs.ext4 -d`.  vm.py caches the result under a hash of this directory, so
# any change here rebuilds the image.
#
# OOMGUARD_VM_MIRROR picks the Debian mirror (default: http://deb.debian.org/debian).
set -euo pipefail

out=${1:?usage: build-image.sh OUT_DIR PUBLIC_KEY_FILE [SUITE]}
pubkey=${2:?usage: build-image.sh OUT_DIR PUBLIC_KEY_FILE [SUITE]}
suite=${3:-bookworm}
mirror=${OOMGUARD_VM_MIRROR:-http://deb.debian.org/debian}
here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
rootfs="$out/rootfs"

# What the tests need inside: the collection's modules run on python3;
# numactl drives the node-constrained OOM; procps/iproute2 for debugging.
# The per-service hardening (issue 6) deploys Debian's early OOM killers
# (earlyoom, systemd-oomd) and protects nginx's master/worker pair: they are
# installed here and left disabled, so that only the roles start them.
packages=(systemd-sysv udev kmod dbus openssh-server python3 linux-image-amd64 initramfs-tools
    iproute2 procps numactl earlyoom nginx)
# The units installed for the roles and left off (see below).  Debian 11's
# systemd 247 ships no systemd-oomd: there the early killer is earlyoom.
off_units=(earlyoom.service nginx.service)
case "$suite" in
bullseye) ;;
bookworm)
    packages+=(systemd-oomd)
    off_units+=(systemd-oomd.service systemd-oomd.socket)
    ;;
trixie)
    # The monitor role's proof (molecule/shared/tests/test_monitor.py): Debian's node_exporter
    # serves the collector's textfile and Debian's Prometheus scrapes it and evaluates the rules.
    packages+=(systemd-oomd prometheus prometheus-node-exporter curl)
    off_units+=(systemd-oomd.service systemd-oomd.socket prometheus.service prometheus-node-exporter.service)
    ;;
*)
    echo "build-image.sh: suite '$suite': use bullseye, bookworm or trixie" >&2
    exit 2
    ;;
esac

mkdir -p "$rootfs"
debootstrap --variant=minbase --include="$(
    IFS=,
    echo "${packages[*]}"
)" "$suite" "$rootfs" "$mirror"

in_root() { chroot "$rootfs" "$@"; }

# Each VM gets its own machine-id: systemd derives it from QEMU's -uuid on
# first boot when the file is empty.  systemd-firstboot would wait on the
# console for answers, so it is masked.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
echo oomguard-vm >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 oomguard-vm\n' >"$rootfs/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$rootfs/etc/fstab"
# QEMU's user network answers DNS at 10.0.2.3.
echo 'nameserver 10.0.2.3' >"$rootfs/etc/resolv.conf"
cp "$here/files/80-dhcp.network" "$rootfs/etc/systemd/network/80-dhcp.network"

# Host keys are made per VM at first start, not shared through the image.
rm -f "$rootfs"/etc/ssh/ssh_host_*
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
cp "$here/files/ssh-hostkeys.conf" "$rootfs/etc/systemd/system/ssh.service.d/oomguard-hostkeys.conf"
cp "$here/files/sshd-oomguard.conf" "$rootfs/etc/ssh/sshd_config.d/oomguard.conf"
install -d -m 0700 "$rootfs/root/.ssh"
install -m 0600 "$pubkey" "$rootfs/root/.ssh/authorized_keys"

in_root systemctl enable systemd-networkd.service ssh.service
# Installed for the roles, off until a role turns them on: an early killer
# running behind a test's back would kill its hogs before the kernel does.
in_root systemctl disable "${off_units[@]}"
# Off: what slows a TCG boot or changes the guest behind a test's back.
in_root systemctl mask systemd-firstboot.service systemd-networkd-wait-online.service \
    apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer systemd-timesyncd.service
# A small initramfs (MODULES=list): see files/initramfs-modules.
echo MODULES=list >"$rootfs/etc/initramfs-tools/conf.d/oomguard.conf"
cp "$here/files/initramfs-modules" "$rootfs/etc/initramfs-tools/modules"
in_root update-initramfs -u -k all

in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin

cp "$(readlink -f "$rootfs/vmlinuz")" "$out/vmlinuz"
cp "$(readlink -f "$rootfs/initrd.img")" "$out/initrd.img"
mkfs.ext4 -q -F -L root -d "$rootfs" "$out/base.raw" 2G
rm -rf "$rootfs"
