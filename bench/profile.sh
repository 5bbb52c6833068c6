#!/usr/bin/env bash
# Where a stage spends its time: runs it under valgrind's callgrind (perf is not available on
# every machine here) on a synthetic stream and prints the functions with the largest inclusive
# instruction counts. Not part of `make bench` (callgrind is ~50× slower than the stage).
#
# Usage: bench/profile.sh STAGE [EVENTS]   (default 100000)
# STAGE: print, print-json, filter, filter-pcap, track, sort, to-pcap, to-parquet.
# Keeps the callgrind output in target/profile/ for callgrind_annotate or kcachegrind.
set -euo pipefail
cd "$(dirname "$0")/.."
stage=${1:?usage: bench/profile.sh STAGE [EVENTS]}
n=${2:-100000}
rel=target/release
out=target/profile
command -v valgrind >/dev/null || { echo "bench/profile.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --quiet --bins --examples
mkdir -p "$out"
input=$out/synth-$n.trail
[ -f "$input" ] || $rel/examples/synth "$n" 1 --disorder 0.05 > "$input"
case $stage in
print) command=($rel/trail-print "$input") ;;
print-json) command=($rel/trail-print --format json "$input") ;;
filter) command=($rel/trail-filter 'drop.reason == "NETFILTER_DROP"' "$input") ;;
filter-pcap) command=($rel/trail-filter 'pcap("tcp port 443")' "$input") ;;
track)
	input=$out/synth-$n-untracked.trail
	[ -f "$input" ] || $rel/examples/synth "$n" 1 --disorder 0.05 --no-tracking > "$input"
	command=($rel/trail-track "$input")
	;;
sort) command=($rel/trail-sort "$input") ;;
to-pcap) command=($rel/trail-to-pcap "$input") ;;
to-parquet) command=($rel/trail-to-parquet --threads 1 -o "$out/out.parquet" "$input") ;;
*) echo "bench/profile.sh: unknown stage $stage" >&2; exit 2 ;;
esac
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$stage" "${command[@]}" > /dev/null 2> "$out/valgrind.$stage.log"
total=$(callgrind_annotate "$out/callgrind.$stage" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo "$stage: $total instructions for $n events ($((total / n)) per event); top inclusive:"
# Function names only (source paths and binaries cut; an inlined function that callgrind lists
# once per source file shown once), the runtime's entry frames left out.
callgrind_annotate --inclusive=yes "$out/callgrind.$stage" 2>/dev/null |
	awk '/^ *[0-9,]+ \(/ && !/PROGRAM TOTALS|below main|lang_start|libc_start|ld-linux|backtrace|::main /' |
	sed -E 's/ \[[^]]*\]$//; s/%\)  [^: ]*:/%)  /' |
	awk '{ name = $0; sub(/^ *[0-9,]+ \([ 0-9.]+%\) +/, "", name) } !seen[name]++' | head -"${TOP:-30}"
