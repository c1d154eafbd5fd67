#!/usr/bin/env bash
# Installs what the real-component tests need (btrfs-progs, sqlite3, Open
# vSwitch, iproute2, ethtool, ping, libvirt, qemu, OVMF, D-Bus, sshd, Nix)
# on a Debian machine, only when missing and
# only as root; otherwise says what is missing and leaves the tests to skip
# (or fail under GHOSTBRIDGE_TEST_STRICT=1).
set -euo pipefail

declare -A want=([btrfs-progs]=mkfs.btrfs [sqlite3]=sqlite3 [openvswitch-switch]=ovs-vswitchd [iproute2]=ip [ethtool]=ethtool [iputils-ping]=ping [libvirt-daemon-system]=libvirtd [libvirt-clients]=virsh [qemu-system-x86]=qemu-system-x86_64 [genisoimage]=isoinfo [openssh-server]=sshd [nix-bin]=nix-instantiate [qemu-utils]=qemu-img [ovmf]=/usr/share/qemu/firmware/60-edk2-x86_64.json [dbus]=dbus-daemon)
missing=()
# A value starting with / is a file the package installs (ovmf has no command).
for pkg in "${!want[@]}"; do
	case "${want[$pkg]}" in
	/*) [ -e "${want[$pkg]}" ] || missing+=("$pkg") ;;
	*) command -v "${want[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg") ;;
	esac
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: missing ${missing[*]} (install as root with apt-get); tests that need them will skip" >&2
	exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort)
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
