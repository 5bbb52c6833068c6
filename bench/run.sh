#!/usr/bin/env bash
# Throughput of the stream stages, each as a ratio to `cat` of the same bytes measured in the
# same run (these machines are noisy: only ratios are comparable between runs).
# Usage: bench/run.sh [EVENTS]     (default 1000000). Writes bench/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-1000000}
rel=target/release
cargo build --release --quiet --examples --bins
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stream=$work/in.trail
$rel/examples/synth "$events" 1 > "$stream"
size=$(stat -c %s "$stream")

# measure NAME COMMAND...: runs COMMAND with the stream on stdin (through a pipe, as stages
# read it), best of 3 wall-clock seconds, and peak RSS of the last run.
declare -A secs rss
measure() {
	local name=$1; shift
	local best=
	for _ in 1 2 3; do
		/usr/bin/time -f '%e %M' -o "$work/time" bash -c "cat '$stream' | $* > /dev/null"
		read -r t m < "$work/time"
		if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
	done
	secs[$name]=$best; rss[$name]=$m
}
measure cat "cat"
measure decode "$rel/examples/decode"
measure print-text "$rel/trail-print"
measure print-json "$rel/trail-print --json"
[ -x $rel/trail-filter ] && $rel/trail-filter --help >/dev/null 2>&1 && measure filter-field "$rel/trail-filter 'probe == \"tp:skb:kfree_skb\"'"

{
	echo "# trail stage throughput"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), $events events, $((size / 1048576)) MiB stream"
	echo
	echo "| stage | seconds | events/s | MB/s | ratio to cat (time) | peak RSS MiB |"
	echo "|---|---|---|---|---|---|"
	for name in cat decode print-text print-json filter-field; do
		[ -n "${secs[$name]:-}" ] || continue
		awk -v n="$name" -v s="${secs[$name]}" -v c="${secs[cat]}" -v e="$events" -v b="$size" -v m="${rss[$name]}" \
			'BEGIN{ s = (s < 0.01 ? 0.01 : s); c = (c < 0.01 ? 0.01 : c);
			        printf "| %s | %.2f | %.0f | %.0f | %.1fx | %.0f |\n", n, s, e/s, b/s/1e6, s/c, m/1024 }'
	done
} | tee bench/results.md
