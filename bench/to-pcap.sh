#!/usr/bin/env bash
# trail-to-pcap throughput on N synthetic events (default 1M), next to `cat` of the same stream
# and tcpdump copying the equivalent pcap/pcapng, all in one run. Prints CPU time (user+sys, of
# the whole pipeline) and events/s per command; REPS=N runs each N times (default 2), keeps the best.
# Usage: bench/to-pcap.sh [N]    (outputs under bench/out/, which git ignores)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
cargo build --release --quiet --bin trail-to-pcap --bin trail-from-pcap --example synth
bin=target/release
out=bench/out
mkdir -p "$out"
"$bin/examples/synth" "$n" 1 > "$out/events.trail"
"$bin/trail-to-pcap" -o "$out/events.pcapng" "$out/events.trail"
"$bin/trail-to-pcap" --format pcap -o "$out/events.pcap" "$out/events.trail"

reps=${REPS:-2}
measure() { # label, then a shell command; best of $reps runs by CPU time (wall time in brackets)
    local label=$1 cmd=$2 best= wall= line cpu
    for _ in $(seq "$reps"); do
        line=$(/usr/bin/time -f '%U %S %e' bash -c "$cmd" 2>&1 >/dev/null | tail -1)
        cpu=$(echo "$line" | awk '{print $1 + $2}')
        if [ -z "$best" ] || [ "$(echo "$cpu < $best" | bc -l)" = 1 ]; then
            best=$cpu
            wall=$(echo "$line" | awk '{print $3}')
        fi
    done
    printf '%-58s cpu %6.2f s (wall %6.2f s) %12.0f events/s of cpu\n' "$label" "$best" "$wall" \
        "$(echo "$n / ($best + 0.001)" | bc -l)"
}

echo "N=$n events; stream $(du -h "$out/events.trail" | cut -f1), pcapng $(du -h "$out/events.pcapng" | cut -f1), pcap $(du -h "$out/events.pcap" | cut -f1); load: $(cut -d' ' -f1-3 /proc/loadavg)"
measure "cat events.trail > /dev/null" "cat $out/events.trail > /dev/null"
measure "cat events.trail | cat > /dev/null" "cat $out/events.trail | cat > /dev/null"
measure "cat events.trail | trail-to-pcap > /dev/null" "cat $out/events.trail | $bin/trail-to-pcap > /dev/null"
measure "trail-to-pcap -o x.pcapng events.trail" "$bin/trail-to-pcap -o $out/x.pcapng $out/events.trail"
measure "trail-to-pcap --format pcap events.trail > /dev/null" "$bin/trail-to-pcap --format pcap $out/events.trail > /dev/null"
measure "trail-to-pcap --link sll2 events.trail > /dev/null" "$bin/trail-to-pcap --link sll2 $out/events.trail > /dev/null"
measure "trail-to-pcap --last-per-journey events.trail > /dev/null" "$bin/trail-to-pcap --last-per-journey $out/events.trail > /dev/null"
measure "tcpdump -r events.pcap -w /dev/null" "tcpdump -Z root -r $out/events.pcap -w /dev/null"
measure "tcpdump -r events.pcapng -w /dev/null" "tcpdump -r $out/events.pcapng -w /dev/null"
measure "trail-from-pcap events.pcapng > /dev/null" "$bin/trail-from-pcap $out/events.pcapng > /dev/null"
