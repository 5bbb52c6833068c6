#!/usr/bin/env bash
# Benchmark of trail-filter against cat on the same 1M-event stream, in one run.
#
# Usage: bench/filter.sh [EVENTS]   (default 1000000; needs a release build: cargo build --release)
#
# Every command reads the stream from a file in the page cache and writes to a pipe read by
# `cat > /dev/null`, so all pay the same output cost. Each is run 3 times; the best wall time
# counts. Prints events/s and the ratio to cat's event rate.
set -euo pipefail

events=${1:-1000000}
here=$(cd "$(dirname "$0")" && pwd)
bin=${TRAIL_BIN:-$here/../target/release}
filter=$bin/trail-filter
[ -x "$filter" ] || { echo "no $filter: run cargo build --release first" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
stream=$dir/stream.trail
python3 "$here/make-stream.py" "$events" > "$stream"
cat "$stream" > /dev/null # warm the page cache
echo "stream: $events events, $(( $(stat -c %s "$stream") / 1000000 )) MB"

best() { # best wall time in seconds of 3 runs of "$@" | cat > /dev/null
    local best=999999 start end t
    for _ in 1 2 3; do
        start=$(date +%s.%N)
        "$@" < /dev/null | cat > /dev/null
        end=$(date +%s.%N)
        t=$(echo "$end - $start" | bc -l)
        if (( $(echo "$t < $best" | bc -l) )); then best=$t; fi
    done
    echo "$best"
}

cat_time=$(best cat "$stream")
printf '%-44s %8s %12s %8s %10s\n' command seconds events/s "vs cat" selected
report() { # label seconds selected
    local rate ratio
    rate=$(echo "$events / $2" | bc -l)
    ratio=$(echo "$cat_time / $2" | bc -l)
    printf '%-44s %8.3f %12.0f %8.2f %10s\n' "$1" "$2" "$rate" "$ratio" "$3"
}
report "cat" "$cat_time" "$events"

for expr in 'true' 'dev.name == "veth0"' 'drop.reason == "NETFILTER_DROP"' \
            'skb.mark & 0x3 == 1 and comm ~ "ksoft*"' 'pcap("tcp port 443")' \
            'pcap("tcp port 443 and host 192.0.2.1")'; do
    t=$(best "$filter" "$expr" "$stream")
    n=$("$filter" --count "$expr" "$stream")
    report "trail-filter '$expr'" "$t" "$n"
done
t=$(best "$filter" --journey drop "$stream")
report "trail-filter --journey drop" "$t" "$("$filter" --journey --count drop "$stream")"
