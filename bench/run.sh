#!/usr/bin/env bash
# `make bench`: every stream stage and the capture, each against a baseline measured in the same
# run (these machines are shared and noisy: compare ratios, not absolute times, between runs).
#
# 1. Streams from the one generator (examples/synth, `trail::model::synth`): N events (default 1M) with
#    kernel tracking ids, and the same N without ids (input of trail-track).
# 2. Each stage on the N-event stream: wall and CPU seconds, events/s, MB/s of its input, peak
#    RSS, and its time as a multiple of `cat` of the same input. Peers on the same events: jq
#    over trail-print's JSON lines (filter), tcpdump over the pcap file trail-to-pcap wrote,
#    GNU sort over an equivalent line file (sort), DuckDB JSON lines -> Parquet (to-parquet).
# 3. Scaling: a few stages again on BIG events (default 10M, ~7 GB written under target/).
# 4. Capture (root only): bench/capture.sh, a UDP flood across veth.
# 5. Microbenchmarks: cargo bench (benches/, divan).
# Prints the tables and writes them into bench/results.md between the markers (the notes
# around them are kept).
#
# Usage: bench/run.sh [N [BIG]]   (BIG=0 skips the scaling rows). Environment: CAPTURE=0 skips
# the capture, MICRO=0 the microbenchmarks; WORK=DIR for the streams (default target/bench);
# BUDGET=seconds (default 840) bounds the run: a scaling row that would exceed it is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
load_before=$(cut -d" " -f1-3 /proc/loadavg)
n=${1:-1000000}
big=${2:-10000000}
# The issue's bound for the whole run; the scaling rows adapt to it (see `scaled`).
budget=${BUDGET:-840}
reserve=$(( ${CAPTURE:-1} != 0 ? 80 : 0 ))
reserve=$(( reserve + (${MICRO:-1} != 0 ? 45 : 0) ))
rel=target/release
work=${WORK:-target/bench}
results=bench/results.md
[ -x /usr/bin/time ] || { echo "bench: needs GNU time (apt-get install time)" >&2; exit 1; }
for tool in jq tcpdump sort; do
	command -v $tool >/dev/null || { echo "bench: needs $tool (make deps)" >&2; exit 1; }
done
cargo build --release --quiet --bins --examples
python=$(tests/interop/setup.sh)
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
tables=$work/tables.md
: > "$tables"

say() { echo "bench: $*" >&2; }

# measure LABEL EVENTS INPUT OUTPUT COMMAND...: runs COMMAND once with stdin from INPUT and stdout
# to OUTPUT (stderr kept aside, shown if it fails); sets wall, cpu (user + system) and rss (MiB,
# the largest process), and appends a raw row (label events input-bytes wall cpu rss) to
# $work/rows.
measure() {
	local label=$1 events=$2 input=$3 output=$4
	shift 4
	if ! /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" < "$input" > "$output" 2> "$work/stderr"; then
		cat "$work/stderr" >&2
		say "$label failed: $*"
		exit 1
	fi
	local user sys kib
	read -r wall user sys kib < <(tail -1 "$work/time")
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
	rss=$((kib / 1024))
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$events" "${input_bytes:-$(stat -c %s "$input")}" "$wall" "$cpu" "$rss" >> "$work/rows"
	say "$label: ${wall}s wall, ${cpu}s cpu, ${rss} MiB"
}

# baseline INPUT [EVENTS]: `cat` of INPUT into /dev/null, best of 3 (it is short and noisy); sets
# the floor that rows on INPUT are divided by, and leaves the best run as the last raw row.
declare -A floor
baseline() {
	local best= best_row= i
	for i in 1 2 3; do
		measure cat "${2:-0}" "$1" /dev/null cat 2>/dev/null
		if [ -z "$best" ] || awk -v t="$wall" -v b="$best" 'BEGIN { exit !(t < b) }'; then
			best=$wall
			best_row=$(tail -1 "$work/rows")
		fi
	done
	echo "$best_row" >> "$work/rows"
	floor[$1]=$best
}

# compare TRAIL PEER NAME: "NAME N× faster" (or slower) from two wall times.
compare() {
	awk -v t="$1" -v p="$2" -v name="$3" 'BEGIN {
		t = (t < 0.01 ? 0.01 : t); p = (p < 0.01 ? 0.01 : p)
		if (p >= t) printf "%s %.1f× faster", name, p / t; else printf "%s %.1f× slower", name, t / p
	}'
}

# row LABEL INPUT [NOTE]: formats the last measured row as a Markdown table line (and keeps its
# wall time by label, for the scaling rows).
declare -A took
row() {
	local label=$1 input=$2 note=${3:-}
	[ -n "${took[$label]:-}" ] || took[$label]=$wall
	IFS=$'\t' read -r _ events bytes wall cpu rss < <(tail -1 "$work/rows")
	awk -v l="$label" -v e="$events" -v b="$bytes" -v w="$wall" -v c="$cpu" -v m="$rss" \
		-v f="${floor[$input]}" -v note="$note" 'BEGIN {
		w = (w < 0.01 ? 0.01 : w); f = (f < 0.01 ? 0.01 : f)
		printf "| %s | %d | %.0f | %.2f | %.2f | %.0f | %.0f | %.1f | %d | %s |\n",
			l, e, b / 1e6, w, c, e / w, b / w / 1e6, w / f, m, note
	}' >> "$tables"
}

table_head() {
	{
		echo
		echo "$1"
		echo
		echo "| stage | events | input MB | wall s | CPU s | events/s | MB/s | × cat | peak RSS MiB | notes |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
	} >> "$tables"
}

# --- inputs -------------------------------------------------------------------------------
say "generating $n events"
generating=$(date +%s.%N)
$rel/examples/synth "$n" 1 --disorder 0.05 > "$work/tracked.trail"
generated=$(awk -v a="$generating" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
$rel/examples/synth "$n" 1 --no-tracking --disorder 0.05 > "$work/raw.trail"
$rel/examples/lines < "$work/tracked.trail" > "$work/lines.txt"
stream=$work/tracked.trail
for input in "$work/raw.trail" "$work/lines.txt"; do baseline "$input"; done

# --- stages on N events ---------------------------------------------------------------------
table_head "### Stages, $n events ($(($(stat -c %s "$stream") / 1000000)) MB stream, synth seed 1, snaplen 256, 5% of neighbouring events swapped)"
baseline "$stream" "$n"
row "cat (baseline, best of 3)" "$stream"

measure print-text "$n" "$stream" /dev/null $rel/trail-print
row "trail-print > /dev/null" "$stream" "multi-line text"

# JSON lines go to a file: they are the input of the jq and DuckDB peers.
measure print-json "$n" "$stream" "$work/events.jsonl" $rel/trail-print --format json
row "trail-print --format json" "$stream" "to a file: $(($(stat -c %s "$work/events.jsonl") / 1000000)) MB of JSON lines"
baseline "$work/events.jsonl"

field='drop.reason == "NETFILTER_DROP"'
selected=$($rel/trail-filter --count "$field" < "$stream")
measure filter-field "$n" "$stream" /dev/null $rel/trail-filter "$field"
row "trail-filter '$field'" "$stream" "$selected selected"
filter_wall=$wall
measure jq "$n" "$work/events.jsonl" "$work/jq.out" jq -c 'select(.drop.reason == "NETFILTER_DROP")'
row "peer: jq 'select(.drop.reason == \"NETFILTER_DROP\")' on the JSON lines" "$work/events.jsonl" \
	"$(wc -l < "$work/jq.out") selected; $(compare "$filter_wall" "$wall" trail-filter)"
rm -f "$work/jq.out"

pcap='pcap("tcp port 443")'
selected=$($rel/trail-filter --count "$pcap" < "$stream")
measure filter-pcap "$n" "$stream" /dev/null $rel/trail-filter "$pcap"
row "trail-filter '$pcap'" "$stream" "$selected selected"
pcap_wall=$wall

measure track "$n" "$work/raw.trail" /dev/null $rel/trail-track
row "trail-track (no ids in input)" "$work/raw.trail" "same events without tracking"

measure sort "$n" "$stream" /dev/null $rel/trail-sort "$stream"
row "trail-sort (exact, default --memory 256M)" "$stream"
sort_wall=$wall
measure gnu-sort "$n" "$work/lines.txt" /dev/null env LC_ALL=C sort -S 256M -T "$work"
row "peer: GNU sort -S 256M on one line per event" "$work/lines.txt" \
	"key + base64 event; $(compare "$sort_wall" "$wall" trail-sort)"

measure to-pcap "$n" "$stream" /dev/null $rel/trail-to-pcap -o "$work/events.pcapng"
row "trail-to-pcap -o file" "$stream" "pcapng, $(($(stat -c %s "$work/events.pcapng") / 1000000)) MB"
to_pcap_wall=$wall
baseline "$work/events.pcapng"
measure tcpdump "$n" "$work/events.pcapng" /dev/null tcpdump -Z root -q -r - -w /dev/null
row "peer: tcpdump -r that pcapng -w /dev/null" "$work/events.pcapng" \
	"reads and writes packets only; $(compare "$to_pcap_wall" "$wall" trail-to-pcap)"
measure tcpdump-filter "$n" "$work/events.pcapng" /dev/null tcpdump -Z root -q -r - -w /dev/null 'tcp port 443'
row "peer: tcpdump -r that pcapng -w /dev/null 'tcp port 443'" "$work/events.pcapng" "$(compare "$pcap_wall" "$wall" "trail-filter 'pcap(...)'")"
rm -f "$work/events.pcapng"

measure to-parquet "$n" "$stream" /dev/null $rel/trail-to-parquet -o "$work/events.parquet"
row "trail-to-parquet -o file" "$stream" "$(($(stat -c %s "$work/events.parquet") / 1000000)) MB, $(nproc) threads"
parquet_wall=$wall
rm -f "$work/events.parquet"
duckdb_version=$("$python" -c 'import duckdb; print(duckdb.__version__)')
measure duckdb "$n" "$work/events.jsonl" /dev/null "$python" -c "import duckdb; duckdb.sql(\"COPY (SELECT * FROM read_json_auto('$work/events.jsonl', sample_size = -1)) TO '$work/duck.parquet' (FORMAT parquet)\")"
row "peer: DuckDB $duckdb_version JSON lines -> Parquet" "$work/events.jsonl" \
	"$(($(stat -c %s "$work/duck.parquet") / 1000000)) MB; $(compare "$parquet_wall" "$wall" trail-to-parquet)"
rm -f "$work/duck.parquet" "$work/events.jsonl" "$work/lines.txt"

# --- scaling --------------------------------------------------------------------------------
if [ "$big" -gt 0 ]; then
	avail=$(df -P --block-size=1M "$work" | awk 'NR == 2 { print $4 }')
	need=$((big / 1000000 * 760 + 2000))
	# Writing BIG events and reading them thrice (cat) before any scaled stage runs.
	setup=$(awk -v g="$generated" -v c="${floor[$stream]}" -v k="$((big / n))" 'BEGIN { printf "%.0f", (g + 3 * c) * k * 1.3 }')
	if [ "$avail" -lt "$need" ]; then
		say "scaling skipped: $big events need ~$need MB in $work, $avail MB free"
		echo -e "\nScaling skipped: $big events need ~$need MB in $work, $avail MB free." >> "$tables"
	elif [ $(($(date +%s) - started + setup + reserve + 60)) -gt "$budget" ]; then
		say "scaling skipped: no time left in the ${budget}s budget"
		echo -e "\nScaling skipped: writing $big events (~$setup s) would exceed the $budget s budget." >> "$tables"
	else
		say "generating $big events"
		rm -f "$work/raw.trail" "$stream"
		big_stream=$work/big.trail
		$rel/examples/synth "$big" 1 --disorder 0.05 > "$big_stream"
		baseline "$big_stream" "$big"
		table_head "### Scaling, $big events ($(($(stat -c %s "$big_stream") / 1000000)) MB stream; trail-sort reads it from the generator through a pipe, as the disk may not hold input and spill files both): compare with the rows above"
		row "cat (baseline, best of 3)" "$big_stream"
		# Scaled stages, each skipped when its time at N, times BIG/N and a margin, would push
		# the run past BUDGET seconds (leaving time for the capture and microbenchmarks).
		fits() { # LABEL: whether the stage's estimate fits the budget; if not, a "skipped" row.
			local estimate
			estimate=$(awk -v t="${took[$1]}" -v k="$((big / n))" 'BEGIN { printf "%.0f", t * k * 1.3 }')
			if [ $(($(date +%s) - started + estimate + reserve)) -gt "$budget" ]; then
				say "scaling: $1 skipped (~${estimate}s would exceed the ${budget}s budget)"
				echo "| $1 | skipped: ~${estimate} s estimated would exceed the ${budget} s budget | | | | | | | | |" >> "$tables"
				return 1
			fi
		}
		scaled() { # LABEL COMMAND...
			local label=$1
			shift
			fits "$label" || return 0
			measure "$label" "$big" "${scaled_input:-$big_stream}" /dev/null "$@"
			row "$label" "$big_stream" "$(awk -v b="$wall" -v s="${took[$label]}" -v k="$((big / n))" \
				'BEGIN { printf "%.2f× the time per event at %d", b / (s * k), '"$n"' }')"
		}
		scaled "trail-filter '$field'" $rel/trail-filter "$field"
		scaled "trail-print > /dev/null" $rel/trail-print
		# trail-sort spills about its input's size: the stored input goes first, and the sort
		# reads the generator through a pipe (GNU time still measures trail-sort alone; the
		# generator runs on the other core at the same time).
		big_size=$(stat -c %s "$big_stream")
		rm -f "$big_stream"
		free=$(df -P --block-size=1 "$work" | awk 'NR == 2 { print $4 }')
		label="trail-sort (exact, default --memory 256M)"
		if [ "$free" -lt $((big_size + big_size / 10)) ]; then
			say "scaling: $label skipped: it spills ~$((big_size / 1000000)) MB, $((free / 1000000)) MB free"
			echo "| $label | skipped: spills ~$((big_size / 1000000)) MB, $((free / 1000000)) MB free | | | | | | | | |" >> "$tables"
		elif fits "$label"; then
			mkfifo "$work/big.pipe"
			$rel/examples/synth "$big" 1 --disorder 0.05 > "$work/big.pipe" &
			scaled_input=$work/big.pipe input_bytes=$big_size \
				scaled "$label" $rel/trail-sort --exact --temp-dir "$work"
			wait
		fi
	fi
fi

# --- capture --------------------------------------------------------------------------------
if [ "${CAPTURE:-1}" = 0 ]; then
	echo -e "\nCapture: skipped (CAPTURE=0)." >> "$tables"
elif [ "$(id -u)" != 0 ]; then
	say "capture skipped: needs root (sudo make bench)"
	echo -e "\nCapture: skipped, not root (run \`sudo make bench\` or \`make bench-capture\` as root)." >> "$tables"
else
	TABLE=1 bench/capture.sh >> "$tables"
fi

# --- microbenchmarks ------------------------------------------------------------------------
if [ "${MICRO:-1}" != 0 ]; then
	say "cargo bench"
	{
		echo
		echo "### Microbenchmarks (\`cargo bench\`, divan, 1000 synthetic events per iteration)"
		echo
		echo '```text'
		cargo bench --quiet --bench codec --bench hot_paths -- --sample-count 100 2>/dev/null |
			grep -v '^$'
		echo '```'
	} >> "$tables"
fi

# --- results --------------------------------------------------------------------------------
elapsed=$(($(date +%s) - started))
commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- lib bins bench benches Cargo.toml || echo "+changes")
{
	echo "<!-- bench:begin (written by bench/run.sh; edit outside the markers) -->"
	echo "Run $(date -u +%Y-%m-%dT%H:%MZ) at commit $commit: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
	echo "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), load average before the run $load_before, after $(cut -d' ' -f1-3 /proc/loadavg);"
	echo "\`make bench\` took $((elapsed / 60)) min $((elapsed % 60)) s. × cat = wall time over that of \`cat\` of the same input"
	echo "into /dev/null (best of 3). Peak RSS is the largest process's (GNU time %M)."
	cat "$tables"
	echo "<!-- bench:end -->"
} > "$work/generated.md"
cat "$work/generated.md"
if grep -q '<!-- bench:begin' "$results" 2>/dev/null; then
	awk -v gen="$work/generated.md" '
		/<!-- bench:begin/ { while ((getline line < gen) > 0) print line; skip = 1; next }
		/<!-- bench:end/ { skip = 0; next }
		!skip { print }' "$results" > "$work/results.md"
	mv "$work/results.md" "$results"
else
	{ echo "# trail benchmarks (make bench)"; echo; cat "$work/generated.md"; } > "$results"
fi
say "wrote $results in $((elapsed / 60)) min $((elapsed % 60)) s"
