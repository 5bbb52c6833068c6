#!/bin/sh
# Benchmark trail-sort and trail-track (not a test). Usage: bench/journeys.sh [EVENTS] [DIR]
# Needs release binaries (cargo build --release --bins --examples) and GNU time. Streams come
# from the one generator (examples/synth: `trail::synth`), the lines for GNU sort from
# examples/lines (one line per event: sort key + base64 event). `make bench` (bench/run.sh) has
# the same stages among the others; this script adds the memory and streaming variants.
# Prints one line per run: wall seconds, events/s, peak RSS (MiB). GNU sort on the same events
# as lines is the sanity baseline of the same run.
set -eu
N=${1:-1000000}
DIR=${2:-bench/out}
BIN=${BIN:-target/release}
mkdir -p "$DIR"
[ -x /usr/bin/time ] || { echo "install GNU time (apt-get install time)" >&2; exit 1; }

[ -f "$DIR/tracked-$N.trail" ] || "$BIN/examples/synth" "$N" 1 --disorder 0.05 > "$DIR/tracked-$N.trail"
[ -f "$DIR/raw-$N.trail" ] || "$BIN/examples/synth" "$N" 1 --no-tracking --disorder 0.05 > "$DIR/raw-$N.trail"
[ -f "$DIR/lines-$N.txt" ] || "$BIN/examples/lines" < "$DIR/tracked-$N.trail" > "$DIR/lines-$N.txt"

measure() { # name, command...
    name=$1; shift
    /usr/bin/time -f '%e %M' -o "$DIR/time" "$@" > /dev/null
    read -r secs kib < "$DIR/time"
    awk -v n="$N" -v s="$secs" -v k="$kib" -v name="$name" \
        'BEGIN { printf "%-34s %7.2f s %10.0f events/s %8.1f MiB peak RSS\n", name, s, n / s, k / 1024 }'
}

ls -l "$DIR/tracked-$N.trail" | awk '{ printf "input: %d events, %.0f MiB\n", '"$N"', $5 / 1048576 }'
measure "trail-sort exact, in memory" "$BIN/trail-sort" --memory 4G "$DIR/tracked-$N.trail"
measure "trail-sort exact, --memory 32M" "$BIN/trail-sort" --memory 32M --temp-dir "$DIR" "$DIR/tracked-$N.trail"
measure "trail-sort streaming (pipe)" sh -c "cat '$DIR/tracked-$N.trail' | '$BIN/trail-sort' --window 1ms"
measure "trail-sort --summary (exact)" "$BIN/trail-sort" --summary "$DIR/tracked-$N.trail"
measure "trail-track (no ids in input)" "$BIN/trail-track" "$DIR/raw-$N.trail"
measure "GNU sort, same events as lines" env LC_ALL=C sort "$DIR/lines-$N.txt"
measure "GNU sort -S 32M" env LC_ALL=C sort -S 32M -T "$DIR" "$DIR/lines-$N.txt"
