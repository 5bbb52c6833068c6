#!/bin/sh
# Regenerates bpf/include/<arch>/vmlinux.h from a kernel's BTF. The header is committed so
# that nothing is generated at build time; CO-RE relocations make the objects built from it
# load on other kernels. Usage: bpf/gen-vmlinux.sh [BTF_FILE] [ARCH]
#   BTF_FILE defaults to /sys/kernel/btf/vmlinux, ARCH to the host's (x86 or arm64).
set -eu
btf=${1:-/sys/kernel/btf/vmlinux}
arch=${2:-}
if [ -z "$arch" ]; then
    case $(uname -m) in
        x86_64) arch=x86 ;;
        aarch64) arch=arm64 ;;
        *) echo "gen-vmlinux.sh: unknown arch $(uname -m); pass it as second argument" >&2; exit 2 ;;
    esac
fi
dir=$(dirname "$0")/include/$arch
mkdir -p "$dir"
bpftool btf dump file "$btf" format c > "$dir/vmlinux.h.tmp"
mv "$dir/vmlinux.h.tmp" "$dir/vmlinux.h"
echo "wrote $dir/vmlinux.h ($(wc -c < "$dir/vmlinux.h") bytes) from $btf"
