#!/usr/bin/env bash
# make test-vm: boots each stock Debian kernel of tests/vm/setup.sh (6.1 and 6.12) once under
# QEMU with software emulation (virtme-ng, `--disable-kvm`), and runs inside the root kernel
# tests (`cargo test --test kernel`, built here on the host: the guest sees the host's root
# read-only). Results come back through a shared directory (target/vm/results/RELEASE: test.log,
# rc, console.log); the exit status is non-zero when any kernel's tests fail or do not finish.
# Extra arguments are passed to the test binary (e.g. a test name filter).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
kernels=$(tests/vm/setup.sh)
venv=${TRAIL_VM_VENV:-$root/target/vm/venv}
export PATH=$venv/bin:$PATH
# The kernel test binary (and the trail-* binaries it runs), built once on the host. Release
# by default: under emulation a debug trail-capture cannot keep up with a flood's events
# (measured: most of them lost), and decoding them in the test binary takes minutes.
profile=()
[ "${TRAIL_VM_PROFILE:-release}" = release ] && profile=(--release)
bin=$(cargo test "${profile[@]}" --test kernel --no-run --message-format=json 2>/dev/null |
	jq -r 'select(.reason == "compiler-artifact" and .target.name == "kernel" and .executable != null) | .executable' | tail -1)
[ -x "$bin" ] || { echo "test-vm: cannot build the kernel test binary" >&2; exit 1; }
failed=0
while read -r release dir; do
	results=$root/target/vm/results/$release
	rm -rf "$results"
	mkdir -p "$results"
	echo "test-vm: $release: booting (QEMU TCG)..." >&2
	start=$(date +%s)
	# vng returns 255 without udev on the host whatever the guest did: the guest writes rc.
	timeout "${TRAIL_VM_TIMEOUT:-2400}" vng --run "$dir/boot/vmlinuz-$release" --disable-kvm \
		--memory "${TRAIL_VM_MEMORY:-2G}" --cpus 2 --rwdir "$results" --cwd "$root" \
		--exec "tests/vm/guest.sh $bin $results $*" >"$results/console.log" 2>&1 </dev/null || true
	took=$(($(date +%s) - start))
	rc=$(cat "$results/rc" 2>/dev/null || echo none)
	grep -E '^test result:|^test .* (FAILED|ok)$|SKIPPED' "$results/test.log" 2>/dev/null | sed "s/^/test-vm: $release: /" >&2 || true
	if [ "$rc" != 0 ]; then
		echo "test-vm: $release: FAILED (rc $rc, ${took}s); see $results/test.log and console.log" >&2
		[ -f "$results/test.log" ] && grep -A 30 -- '---- ' "$results/test.log" | head -80 >&2 || tail -30 "$results/console.log" >&2
		failed=1
	else
		echo "test-vm: $release: passed in ${took}s (tests $(cat "$results/seconds")s)" >&2
	fi
done <<<"$kernels"
exit $failed
