# Shared by the capture benchmarks (bench/capture.sh, bench/select.sh); sourced, POSIX sh.
# The topology and the traffic both measure: two namespaces joined by veth, and a Python sender
# that floods UDP datagrams from one to the other.

# bench_netns A B: namespaces A (veth va, 192.0.2.1/24) and B (veth vb, 192.0.2.2/24), loopback
# and veth up, and A's neighbour entry for B resolved so that every run starts alike.
bench_netns() {
	ip netns add "$1"
	ip netns add "$2"
	ip link add va netns "$1" type veth peer name vb netns "$2"
	ip -n "$1" addr add 192.0.2.1/24 dev va
	ip -n "$2" addr add 192.0.2.2/24 dev vb
	ip -n "$1" link set va up
	ip -n "$2" link set vb up
	ip -n "$1" link set lo up
	ip -n "$2" link set lo up
	ip netns exec "$1" ping -c1 -W1 192.0.2.2 >/dev/null
}

# bench_netns_del A B: removes them (for exit traps: quiet when they do not exist).
bench_netns_del() {
	ip netns del "$1" 2>/dev/null || true
	ip netns del "$2" 2>/dev/null || true
}

# bench_sender FILE BYTES: writes to FILE the flood sender, a Python script to run in A: it sends
# BYTES-byte datagrams to 192.0.2.2 port 9000 as fast as it can for DURATION seconds, then prints
# how many it sent.
bench_sender() {
	cat > "$1" <<PY
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * $2
end = time.monotonic() + $DURATION
n = 0
while time.monotonic() < end:
    for _ in range(1000):
        s.sendto(payload, ("192.0.2.2", 9000))
    n += 1000
print(n)
PY
}
