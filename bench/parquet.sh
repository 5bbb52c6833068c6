#!/usr/bin/env bash
# trail-to-parquet throughput and peak RSS (not a test). For each size: `cat` of the stream (the
# floor), trail-to-parquet with --threads 1 (encoding on the reading thread) and with the default
# threads (row groups encoded in parallel while reading), all in the same run; for the first size
# also DuckDB converting the same events from JSON lines (trail-print --format json) to Parquet,
# the peer a user would otherwise reach for (sample_size = -1: the default sample misses keys that
# appear late, e.g. `inner` for the few packets that dissect as tunnels). Machines here are shared and noisy: compare within
# one run only.
#
# Usage: bench/parquet.sh [EVENTS...]     (default: 1000000 10000000). Writes bench/parquet.md.
# Streams of more than 2M events are piped from the generator rather than stored (10M events
# are ~7 GB); their `cat` line then measures the generator piped through cat.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
rel=target/release
cargo build --release --quiet --example synth --bin trail-to-parquet --bin trail-print
python=$(tests/interop/setup.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# measure LABEL SOURCE COMMAND: wall seconds and peak RSS (MiB) of COMMAND reading SOURCE on stdin.
results=()
measure() {
	local label=$1 source=$2 command=$3
	/usr/bin/time -f '%e %M' -o "$work/time" bash -c "$source | $command > /dev/null"
	local secs rss
	read -r secs rss < "$work/time"
	results+=("$label|$secs|$rss")
	echo "$label: ${secs}s, $((rss / 1024)) MiB" >&2
}

for events in "${sizes[@]}"; do
	if [ "$events" -le 2000000 ]; then
		$rel/examples/synth "$events" 1 > "$work/in.trail"
		source="cat '$work/in.trail'"
		size=$(stat -c %s "$work/in.trail")
	else
		source="$rel/examples/synth $events 1"
		size=$($rel/examples/synth 100000 1 | wc -c)
		size=$((size * (events / 100000)))
	fi
	measure "$events cat" "$source" "cat"
	measure "$events trail-to-parquet --threads 1" "$source" \
		"$rel/trail-to-parquet --threads 1 -o $work/t1.parquet"
	measure "$events trail-to-parquet (threads $(nproc))" "$source" \
		"$rel/trail-to-parquet -o $work/tn.parquet"
	echo "$events parquet size: $(stat -c %s "$work/tn.parquet") bytes, stream $size bytes" >&2
	rm -f "$work"/t1.parquet "$work"/tn.parquet
	if [ "$events" = "${sizes[0]}" ] && [ -f "$work/in.trail" ]; then
		$rel/trail-print --format json "$work/in.trail" > "$work/in.jsonl"
		measure "$events duckdb read_json_auto -> parquet" "true" \
			"$python -c \"import duckdb; duckdb.sql(\\\"COPY (SELECT * FROM read_json_auto('$work/in.jsonl', sample_size = -1)) TO '$work/d.parquet' (FORMAT parquet)\\\")\""
		echo "$events JSON lines: $(stat -c %s "$work/in.jsonl") bytes; duckdb parquet $(stat -c %s "$work/d.parquet") bytes" >&2
		rm -f "$work/in.jsonl" "$work/d.parquet"
	fi
	rm -f "$work/in.trail"
done

{
	echo "# trail-to-parquet throughput"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	echo "| run | seconds | events/s | peak RSS MiB |"
	echo "|---|---|---|---|"
	for r in "${results[@]}"; do
		IFS='|' read -r label secs rss <<< "$r"
		events=${label%% *}
		awk -v l="$label" -v s="$secs" -v e="$events" -v m="$rss" \
			'BEGIN{ s = (s < 0.01 ? 0.01 : s); printf "| %s | %.2f | %.0f | %.0f |\n", l, s, e/s, m/1024 }'
	done
} | tee bench/parquet.md
