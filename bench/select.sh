#!/bin/sh
# Cost of in-kernel selection in trail-capture (not a test; `make bench-select`, root).
#
# 1. Per probe hit: the kernel's own BPF run-time statistics (kernel.bpf_stats_enabled) give the
#    average nanoseconds per run of the probe program. Measured on a UDP flood across veth with
#    the default probes, for: no filter, a ~10-instruction pcap filter, a ~60-instruction pcap
#    filter (both keep the flood's packets, so every instruction runs), a filter that rejects
#    everything, and a meta filter (-m on the device name).
# 2. Packet rate of the flood with no capture at all vs with a capture whose filter rejects
#    everything, each as packets/s sent by the same Python sender in the same run.
# The numbers are ratios within one run: the machine is shared and noisy.
set -eu
DURATION=${DURATION:-4}
BIN=${TRAIL_CAPTURE:-target/release/trail-capture}
[ "$(id -u)" = 0 ] || { echo "bench/select.sh: needs root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bench/select.sh: no $BIN (cargo build --release --bin trail-capture)" >&2; exit 2; }
command -v bpftool >/dev/null || { echo "bench/select.sh: needs bpftool" >&2; exit 2; }
. "$(dirname "$0")/lib.sh"
A=trail-sel-$$-a
B=trail-sel-$$-b
TMP=$(mktemp -d)
old_stats=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
    sysctl -q -w kernel.bpf_stats_enabled="$old_stats" || true
    bench_netns_del "$A" "$B"
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
bench_netns "$A" "$B"
bench_sender "$TMP/send.py" 64
# Nothing listens on port 9000 in B: each datagram is received, then freed (port unreachable).
flood() { ip netns exec "$A" python3 "$TMP/send.py"; }
classic() { tcpdump -d "$1" 2>/dev/null | wc -l; }

SMALL='ip and udp dst port 9000'
LARGE='(udp port 53 or udp port 9000 or tcp port 80 or tcp port 443 or udp port 123) and (host 192.0.2.1 or host 198.51.100.2 or net 203.0.113.0/24 or net 198.51.100.128/25) and not ip[6:2] & 0x1fff != 0 and ip[8] > 1 and len > 40'
NONE='udp port 1'

sysctl -q -w kernel.bpf_stats_enabled=1
# per_hit NAME ARGS...: runs the flood under trail-capture ARGS, then prints
# "NAME runs ns/run pkts/s" from the program's run_time_ns / run_cnt, read while attached.
per_hit() {
    name=$1; shift
    "$BIN" "$@" -o "$TMP/out.trail" --cmd "ip netns exec $A python3 $TMP/send.py > $TMP/sent; bpftool prog show -j > $TMP/progs.json" 2> "$TMP/err" || { cat "$TMP/err" >&2; exit 1; }
    python3 - "$name" "$TMP/progs.json" "$(cat "$TMP/sent")" "$DURATION" <<'PY'
import json, sys
name, path, sent, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
# Probe programs: skb_at_N (raw_tp), tp_btf_skb_at_N (tp_btf twins), kprobe_/fentry_skb_at_N.
progs = [p for p in json.load(open(path)) if "skb_at_" in p.get("name", "")]
runs = sum(p.get("run_cnt", 0) for p in progs)
ns = sum(p.get("run_time_ns", 0) for p in progs)
print(f"{name}\t{runs}\t{ns / max(runs, 1):.0f}\t{sent / duration:.0f}")
PY
}

echo "# trail-capture in-kernel selection: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "filters: small = '$SMALL' ($(classic "$SMALL") classic insns), large = ($(classic "$LARGE") classic insns), reject-all = '$NONE'"
"$BIN" -v -f "$SMALL" --duration 0.1 -o /dev/null 2>&1 | grep selection || true
"$BIN" -v -f "$LARGE" --duration 0.1 -o /dev/null 2>&1 | grep selection || true
printf 'run\tprogram runs\tns per run\tsent pkts/s\n'
base=$(flood)
printf 'no capture\t-\t-\t%.0f\n' "$(echo "$base $DURATION" | awk '{print $1/$2}')"
per_hit "capture, no filter" > "$TMP/r0"; cat "$TMP/r0"
per_hit "capture -f small" -f "$SMALL" > "$TMP/r1"; cat "$TMP/r1"
per_hit "capture -f large" -f "$LARGE" > "$TMP/r2"; cat "$TMP/r2"
per_hit "capture -f reject-all" -f "$NONE" > "$TMP/r3"; cat "$TMP/r3"
per_hit "capture -m dev name" -m 'skb.dev.name == "vb"' > "$TMP/r4"; cat "$TMP/r4"
after=$(flood)
printf 'no capture (again)\t-\t-\t%.0f\n' "$(echo "$after $DURATION" | awk '{print $1/$2}')"
