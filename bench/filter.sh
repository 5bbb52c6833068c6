#!/usr/bin/env bash
# Benchmark of trail-filter against cat on the same 1M-event stream, in one run.
#
# Usage: bench/filter.sh [EVENTS]   (default 1000000; needs a release build: cargo build --release)
#
# Every command reads the stream from a file in the page cache and writes to a pipe read by
# `cat > /dev/null`, so all pay the same output cost. Each runs 5 times; the best wall time
# and the best CPU time count. Prints events/s and the ratio to cat's event rate for both.
set -euo pipefail

events=${1:-1000000}
here=$(cd "$(dirname "$0")" && pwd)
bin=${TRAIL_BIN:-$here/../target/release}
filter=$bin/trail-filter
[ -x "$filter" ] && [ -x "$bin/examples/synth" ] ||
    { echo "run cargo build --release --bins --examples first" >&2; exit 1; }

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
stream=$dir/stream.trail
"$bin/examples/synth" "$events" 1 > "$stream"   # cargo build --release --examples
cat "$stream" > /dev/null # warm the page cache
echo "stream: $events events, $(( $(stat -c %s "$stream") / 1000000 )) MB"

# Runs "$@" 5 times reading the stream and writing into a pipe to `cat > /dev/null`; prints
# the best wall time and the best CPU time (user + system) of the command itself. The machine
# may be shared: CPU time is what the command costs, wall time what it cost here and now.
best() {
    local wall=999999 cpu=999999 w c
    for _ in 1 2 3 4 5; do
        /usr/bin/time -f "%e %U %S" -o "$dir/time" "$@" < /dev/null | cat > /dev/null
        read -r w u s < "$dir/time"
        c=$(echo "$u + $s" | bc -l)
        if (( $(echo "$w < $wall" | bc -l) )); then wall=$w; fi
        if (( $(echo "$c < $cpu" | bc -l) )); then cpu=$c; fi
    done
    echo "$wall $cpu"
}

read -r cat_wall cat_cpu <<< "$(best cat "$stream")"
printf '%-58s %7s %11s %6s %7s %11s %6s %9s\n' command wall events/s "x cat" cpu events/s "x cat" selected
report() { # label wall cpu selected
    # A time of 0.00 (below the clock's resolution) counts as 0.01.
    local w=$2 c=$3
    if (( $(echo "$w < 0.01" | bc -l) )); then w=0.01; fi
    if (( $(echo "$c < 0.01" | bc -l) )); then c=0.01; fi
    printf '%-58s %7.2f %11.0f %6.2f %7.2f %11.0f %6.2f %9s\n' "$1" "$w" "$(echo "$events / $w" | bc -l)" \
        "$(echo "$cat_wall / $w" | bc -l)" "$c" "$(echo "$events / $c" | bc -l)" "$(echo "$cat_cpu / $c" | bc -l)" "$4"
}
report "cat" "$cat_wall" "$cat_cpu" "$events"

for expr in 'true' 'dev.name == "veth0"' 'drop.reason == "NETFILTER_DROP"' \
            'skb.mark & 0x3 == 1 and comm ~ "ksoft*"' 'pcap("tcp port 443")' \
            'pcap("tcp port 443 and host 192.0.2.1")'; do
    read -r w c <<< "$(best "$filter" "$expr" "$stream")"
    report "trail-filter '$expr'" "$w" "$c" "$("$filter" --count "$expr" "$stream")"
done
read -r w c <<< "$(best "$filter" --journey drop "$stream")"
report "trail-filter --journey drop" "$w" "$c" "$("$filter" --journey --count drop "$stream")"
