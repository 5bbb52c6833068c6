#!/bin/sh
# Overhead of trail-capture on a UDP flood across veth (not a test; `make bench-capture`).
#
# Two namespaces joined by veth; a Python sender in A floods 16-byte UDP datagrams to a
# Python receiver in B for DURATION seconds, three times: without tracing, with trail-capture
# (default probes, binary stream to a file), and with `tcpdump -w` on the same veth. Prints
# packets/s sent in each run, and for trail-capture events/s written and events lost (from
# its trailer summary). Needs root. Use a release build: TRAIL_CAPTURE defaults to
# target/release/trail-capture.
set -eu
DURATION=${DURATION:-5}
BIN=${TRAIL_CAPTURE:-target/release/trail-capture}
[ "$(id -u)" = 0 ] || { echo "bench/capture.sh: needs root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bench/capture.sh: no $BIN (cargo build --release --bin trail-capture)" >&2; exit 2; }
A=trail-bench-$$-a
B=trail-bench-$$-b
TMP=$(mktemp -d)
cleanup() {
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$A"
ip netns add "$B"
ip link add va netns "$A" type veth peer name vb netns "$B"
ip -n "$A" addr add 192.0.2.1/24 dev va
ip -n "$B" addr add 192.0.2.2/24 dev vb
ip -n "$A" link set va up
ip -n "$B" link set vb up
ip -n "$A" link set lo up
ip -n "$B" link set lo up

cat > "$TMP/send.py" <<PY
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 16
end = time.monotonic() + $DURATION
n = 0
while time.monotonic() < end:
    for _ in range(1000):
        s.sendto(payload, ("192.0.2.2", 9000))
    n += 1000
print(n)
PY
cat > "$TMP/recv.py" <<PY
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.0.2.2", 9000))
s.settimeout(2)
try:
    while True:
        s.recv(2048)
except Exception:
    pass
PY
# Warm up ARP so every run starts alike.
ip netns exec "$A" ping -c1 -W1 192.0.2.2 >/dev/null

start_receiver() {
    ip netns exec "$B" python3 "$TMP/recv.py" &
    RECEIVER=$!
    sleep 0.3
}
send() {
    ip netns exec "$A" python3 "$TMP/send.py" > "$TMP/sent"
}
rate() { echo "$1 $DURATION" | awk '{ printf "%.0f", $1 / $2 }'; }

start_receiver
send
wait "$RECEIVER"
base=$(cat "$TMP/sent")

start_receiver
"$BIN" -o "$TMP/bench.trail" --cmd "ip netns exec $A python3 $TMP/send.py > $TMP/sent" 2> "$TMP/capture.err"
wait "$RECEIVER"
traced=$(cat "$TMP/sent")
summary=$(grep "events written" "$TMP/capture.err")
events=$(echo "$summary" | sed -n 's/.*: \([0-9]*\) events written, \([0-9]*\) lost, \([0-9.]*\) s.*/\1/p')
lost=$(echo "$summary" | sed -n 's/.*: \([0-9]*\) events written, \([0-9]*\) lost, \([0-9.]*\) s.*/\2/p')
secs=$(echo "$summary" | sed -n 's/.*: \([0-9]*\) events written, \([0-9]*\) lost, \([0-9.]*\) s.*/\3/p')
size=$(stat -c %s "$TMP/bench.trail")

start_receiver
ip netns exec "$A" tcpdump -i va -w "$TMP/bench.pcap" -Z root 2> "$TMP/tcpdump.err" &
TCPDUMP=$!
sleep 1
send
kill -INT "$TCPDUMP"
wait "$TCPDUMP" || true
wait "$RECEIVER"
dumped=$(cat "$TMP/sent")
tcpdump_stats=$(grep -E "captured|dropped by kernel" "$TMP/tcpdump.err" | tr '\n' ' ')

echo "UDP flood A -> B over veth, 16-byte datagrams, ${DURATION}s per run"
echo "no tracing:              $(rate "$base") packets/s"
echo "trail-capture -o file:   $(rate "$traced") packets/s ($(echo "$traced $base" | awk '{ printf "%.1f", 100 * $1 / $2 }')% of untraced)"
echo "  events written:        $events in ${secs}s ($(echo "$events $secs" | awk '{ printf "%.0f", $1 / $2 }') events/s), lost $lost, $(echo "$size $events" | awk '{ printf "%.0f", $1 / ($2 > 0 ? $2 : 1) }') bytes/event"
echo "tcpdump -w on va:        $(rate "$dumped") packets/s ($(echo "$dumped $base" | awk '{ printf "%.1f", 100 * $1 / $2 }')% of untraced)"
echo "  tcpdump: $tcpdump_stats"
