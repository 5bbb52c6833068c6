#!/usr/bin/env bash
# Cost of capturing: a UDP flood across veth, with and without tracing (`make bench-capture`, or
# part of `make bench`; needs root).
#
# Two namespaces joined by veth; a Python sender in A floods 16-byte UDP datagrams to a receiver
# in B for DURATION seconds per run (the same sender as the Retis figures in shared FACTS; both
# from bench/lib.sh). Runs:
# no tracing; trail-capture with the default probes; with a pcap filter that rejects every packet
# (when this trail-capture has -f); with 10 probes; tcpdump -w on the same veth. For each: packets/s
# sent (and as % of the untraced rate), events written and lost (trail-capture's summary) or
# packets captured and dropped (tcpdump's), and the CPU time (user + system) of the capturing
# process itself; the BPF programs' own cost is charged to the sender, hence its lower rate.
#
# Prints a Markdown table on stdout (TABLE=1: rows only, with a heading, for bench/run.sh) and
# progress on stderr. Environment: DURATION (default 5), TRAIL_CAPTURE (default
# target/release/trail-capture).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-5}
BIN=${TRAIL_CAPTURE:-target/release/trail-capture}
[ "$(id -u)" = 0 ] || { echo "bench/capture.sh: needs root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bench/capture.sh: no $BIN (cargo build --release --bin trail-capture)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/capture.sh: needs GNU time (apt-get install time)" >&2; exit 2; }
. bench/lib.sh
A=trail-bench-$$-a
B=trail-bench-$$-b
TMP=$(mktemp -d)
RECEIVER=
cleanup() {
	[ -z "$RECEIVER" ] || kill "$RECEIVER" 2>/dev/null || true
	bench_netns_del "$A" "$B"
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
bench_netns "$A" "$B"
bench_sender "$TMP/send.py" 16
cat > "$TMP/recv.py" <<PY
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.2", 9000))
while True:
    s.recv(2048)
PY

say() { echo "bench/capture: $*" >&2; }

# flood: packets/s the sender reached in DURATION seconds, with a receiver bound in B.
flood() {
	ip netns exec "$B" python3 "$TMP/recv.py" 2>/dev/null &
	RECEIVER=$!
	sleep 0.3
	local sent
	sent=$(ip netns exec "$A" python3 "$TMP/send.py" 2>/dev/null)
	kill "$RECEIVER" 2>/dev/null || true
	wait "$RECEIVER" 2>/dev/null || true
	RECEIVER=
	awk -v n="$sent" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }'
}

# wait_for FILE PATTERN: until FILE has a line matching PATTERN (30 s at most).
wait_for() {
	local i
	for i in $(seq 300); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	say "timed out waiting for '$2' in $1:"
	cat "$1" >&2
	return 1
}

# stop PID: SIGINT to the process GNU time runs as PID (time itself would wait it out).
stop() {
	local child
	child=$(pgrep -P "$1" | head -1)
	kill -INT "${child:-$1}"
	wait "$1" || true
}

rows=()
# row LABEL RATE EVENTS LOST CPU NOTE
row() {
	rows+=("$(awk -v l="$1" -v r="$2" -v b="$base" -v e="$3" -v x="$4" -v c="$5" -v d="$DURATION" -v note="$6" 'BEGIN {
		printf "| %s | %.0f | %.1f%% | %s | %s | %s | %s |", l, r, 100 * r / b, e, x,
			(c == "" ? "" : sprintf("%.2f (%.0f%% of a core)", c, 100 * c / d)), note
	}')")
}

base=$(flood)
say "no tracing: $base packets/s"
row "no tracing" "$base" "" "" "" ""

# capture LABEL ARGS...: trail-capture with ARGS while the sender floods.
capture() {
	local label=$1
	shift
	rm -f "$TMP/out.trail"
	/usr/bin/time -f '%U %S' -o "$TMP/cpu" "$BIN" -v -o "$TMP/out.trail" "$@" 2> "$TMP/err" &
	local pid=$!
	if ! wait_for "$TMP/err" "attached in"; then
		stop "$pid"
		row "$label" 0 "" "" "" "did not start: $(grep -m1 error "$TMP/err" || true)"
		return
	fi
	local rate
	rate=$(flood)
	stop "$pid"
	local summary events lost user sys cpu note
	summary=$(grep "events written" "$TMP/err" || true)
	events=$(echo "$summary" | sed -n 's/.*: \([0-9]*\) events written, \([0-9]*\) lost.*/\1/p')
	lost=$(echo "$summary" | sed -n 's/.*: \([0-9]*\) events written, \([0-9]*\) lost.*/\2/p')
	read -r user sys < <(tail -1 "$TMP/cpu")
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	note=$(awk -v s="$(stat -c %s "$TMP/out.trail" 2>/dev/null || echo 0)" -v e="${events:-0}" \
		'BEGIN { if (e > 0) printf "%.0f bytes/event", s / e }')
	say "$label: $rate packets/s, ${events:-?} events, ${lost:-?} lost, cpu ${cpu}s"
	row "$label" "$rate" "${events:-?}" "${lost:-?}" "$cpu" "$note"
}

capture "trail-capture (default probes: 2)"
if "$BIN" --help | grep -qE '^ +-f, '; then
	# Every flood packet is UDP to port 9000: the whole filter program runs and says no.
	capture "trail-capture -f 'udp port 1' (rejects all)" -f 'udp port 1'
else
	say "this trail-capture has no -f: no filtered row"
fi
ten=(tp:net:netif_receive_skb tp:net:net_dev_start_xmit tp:net:net_dev_queue tp:net:net_dev_xmit
	tp:net:netif_rx tp:net:napi_gro_receive_entry tp:skb:consume_skb tp:skb:kfree_skb
	tp:skb:skb_copy_datagram_iovec tp:qdisc:qdisc_dequeue)
capture "trail-capture, 10 probes" "${ten[@]/#/-p}"

# tcpdump on the sending side's veth, as a packet-capture peer.
/usr/bin/time -f '%U %S' -o "$TMP/cpu" ip netns exec "$A" tcpdump -i va -w "$TMP/out.pcap" -Z root 2> "$TMP/err" &
pid=$!
wait_for "$TMP/err" "listening on"
rate=$(flood)
# GNU time runs `ip`, which runs tcpdump in its place: the process to stop is time's child.
stop "$pid"
captured=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$TMP/err")
dropped=$(sed -n 's/^\([0-9]*\) packets\{0,1\} dropped by kernel.*/\1/p' "$TMP/err")
read -r user sys < <(tail -1 "$TMP/cpu")
cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
say "tcpdump -w: $rate packets/s, $captured captured, $dropped dropped, cpu ${cpu}s"
row "peer: tcpdump -w on va" "$rate" "${captured:-?} packets" "${dropped:-?}" "$cpu" ""

if [ "${TABLE:-0}" = 1 ]; then
	echo
	echo "### Capture: UDP flood A -> B over veth, 16-byte datagrams, Python sender, ${DURATION} s per run"
fi
echo
echo "| run | packets/s sent | of untraced | events written | lost | capture CPU s | notes |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
