#!/usr/bin/env bash
# Prepares the VM test lane (make test-vm), once: QEMU and busybox from Debian, virtme-ng from PyPI
# into target/vm/venv, and the two stock Debian kernels (6.1 and 6.12) downloaded with
# `apt-get download` and unpacked (never installed into /boot) under the cache directory
# ($TRAIL_VM_CACHE, default ~/.cache/trail/vm), where they stay between runs. Prints one line per
# kernel: RELEASE DIR (DIR holds boot/vmlinuz-RELEASE and lib/modules/RELEASE, with modules.dep).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${TRAIL_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trail/vm}
venv=${TRAIL_VM_VENV:-$root/target/vm/venv}
mkdir -p "$cache"

missing=$(for p in qemu-system-x86 busybox-static kmod xz-utils; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"
done)
if [ -n "$missing" ]; then
	echo "test-vm: installing $missing" >&2
	SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
	$SUDO apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing >&2
fi
if ! "$venv/bin/vng" --version >/dev/null 2>&1; then
	echo "test-vm: installing virtme-ng into $venv" >&2
	python3 -m venv "$venv" >&2
	"$venv/bin/pip" install --quiet --disable-pip-version-check virtme-ng >&2
fi

# The newest 6.1 and 6.12 kernel packages the configured Debian archives offer. A kernel already
# in the cache is used as it is (set TRAIL_VM_REFRESH=1 to look for newer ones).
pick() {
	local pattern=$1 have
	have=$(ls -d "$cache"/$2 2>/dev/null | sort -V | tail -1 || true)
	if [ -n "$have" ] && [ -z "${TRAIL_VM_REFRESH:-}" ]; then
		basename "$have"
		return
	fi
	apt-cache search --names-only "$pattern" | awk '{print $1}' | sort -V | tail -1 | sed 's/^linux-image-//'
}
for spec in '^linux-image-6\.1\.0-[0-9]+-amd64$|6.1.0-*-amd64' '^linux-image-6\.12\.[0-9]+\+deb12-amd64$|6.12.*+deb12-amd64'; do
	release=$(pick "${spec%%|*}" "${spec##*|}")
	if [ -z "$release" ]; then
		# apt's lists may be missing on a fresh machine.
		apt-get update -q >&2 || true
		release=$(pick "${spec%%|*}" "${spec##*|}")
	fi
	[ -n "$release" ] || { echo "test-vm: no Debian kernel package matches ${spec%%|*}" >&2; exit 1; }
	dir=$cache/$release
	if [ ! -e "$dir/lib/modules/$release/modules.dep" ]; then
		echo "test-vm: downloading linux-image-$release" >&2
		tmp=$(mktemp -d)
		chmod 755 "$tmp"  # apt-get download drops privileges to _apt
		(cd "$tmp" && apt-get download -q "linux-image-$release" >&2)
		rm -rf "$dir.part"
		mkdir -p "$dir.part"
		dpkg -x "$tmp"/linux-image-*.deb "$dir.part"
		rm -rf "$tmp"
		# Debian runs depmod at install; an unpacked package has no modules.dep yet.
		depmod -b "$dir.part" "$release"
		rm -rf "$dir"
		mv "$dir.part" "$dir"
	fi
	echo "$release $dir"
done
