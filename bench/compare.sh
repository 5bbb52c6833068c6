#!/usr/bin/env bash
# Before/after of a change, in one run: every stream stage of two builds (OLD and NEW bin
# directories, e.g. a baseline's target/release and this tree's) on the same N-event synthetic
# stream, interleaved (old, new, old, new ... ROUNDS times) so that both see the same machine
# load, each also against `cat` of its input. Reports per stage the median CPU seconds
# (user + system) of each build, NEW / OLD, and each build's median as a multiple of `cat`'s.
# A benchmark, not a test: it never fails on a slowdown, it shows it.
#
# Usage: bench/compare.sh OLD_BIN_DIR NEW_BIN_DIR [N [ROUNDS]]   (default 1000000 events, 3 rounds)
# The stream comes from NEW_BIN_DIR/examples/synth (cargo build --release --examples).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BIN_DIR NEW_BIN_DIR [N [ROUNDS]]" >&2; exit 2; }
old=$(cd "$1" && pwd)
new=$(cd "$2" && pwd)
n=${3:-1000000}
rounds=${4:-3}
[ -x /usr/bin/time ] || { echo "compare: needs GNU time (apt-get install time)" >&2; exit 2; }
[ -x "$new/examples/synth" ] || { echo "compare: $new/examples/synth missing (cargo build --release --examples)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/trail-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$new/examples/synth" "$n" 1 --disorder 0.05 > "$work/tracked.trail"
"$new/examples/synth" "$n" 1 --no-tracking --disorder 0.05 > "$work/raw.trail"
"$new/trail-sort" "$work/tracked.trail" > "$work/sorted.trail"

# cpu INPUT COMMAND...: CPU seconds of COMMAND reading INPUT on stdin, output discarded.
cpu() {
	local input=$1
	shift
	/usr/bin/time -f '%U %S' -o "$work/time" "$@" < "$input" > /dev/null 2> "$work/stderr" ||
		{ cat "$work/stderr" >&2; echo "compare: failed: $*" >&2; exit 1; }
	awk '{ printf "%.3f", $1 + $2 }' "$work/time"
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Each stage: label, input, arguments (the tool first, without directory).
stages=(
	"print|tracked|trail-print"
	"print --json|tracked|trail-print --json"
	"filter drop|tracked|trail-filter drop"
	"filter pcap(udp)|tracked|trail-filter pcap(\"udp\")"
	"sort (pipe, window)|tracked|trail-sort"
	"sort --exact|tracked|trail-sort --exact"
	"track|raw|trail-track"
	"to-pcap|tracked|trail-to-pcap"
	"to-parquet|tracked|trail-to-parquet -o $work/out.parquet"
	"print --json --journeys|sorted|trail-print --json --journeys"
)
printf '### %s events, %s rounds, load before: %s\n\n' "$n" "$rounds" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| stage | old CPU s | new CPU s | new/old | old/cat | new/cat |\n|---|---|---|---|---|---|\n'
for stage in "${stages[@]}"; do
	IFS='|' read -r label input command <<<"$stage"
	# Words split on spaces only: quotes in an expression are the expression's own.
	read -ra words <<<"$command"
	o='' w='' c=''
	for _ in $(seq "$rounds"); do
		c+=" $(cpu "$work/$input.trail" cat)"
		o+=" $(cpu "$work/$input.trail" "$old/${words[0]}" "${words[@]:1}")"
		w+=" $(cpu "$work/$input.trail" "$new/${words[0]}" "${words[@]:1}")"
	done
	o=$(median <<<"$o") w=$(median <<<"$w") c=$(median <<<"$c")
	awk -v l="$label" -v o="$o" -v w="$w" -v c="$c" 'BEGIN {
		c = (c < 0.01 ? 0.01 : c)
		printf "| %s | %.2f | %.2f | %.2f | %.0f× | %.0f× |\n", l, o, w, (o > 0 ? w / o : 0), o / c, w / c }'
done
