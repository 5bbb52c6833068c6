#!/bin/sh
# Benchmark trail-sort and trail-track (not a test). Usage: bench/journeys.sh [EVENTS] [DIR]
# Needs release binaries and the synthetic generator
# (cargo build --release --bin trail-sort --bin trail-track --example synth) and GNU time.
# Inputs come from bench/synth.rs (`trail::model::synth`: journeys of 5-20 events, ~680 bytes per
# event); they are written to DIR (default target/bench-journeys, ~0.7 GB per million events)
# and deleted at the end unless KEEP=1.
# Prints one line per run: wall seconds, CPU seconds (user+sys), events/s of wall time, peak RSS.
# GNU sort on as many lines (one 20-digit key + a journey number each) is the sanity baseline of
# the same run. GROWTH=0 skips the memory-growth runs (--memory 32M on EVENTS/4 and EVENTS/2),
# TRACK=0 the trail-track run (and its input); PIPE=1 feeds trail-sort from the generator
# instead of a file (see measure_synth); SNAPLEN sets the generator's snap length (256).
set -eu
N=${1:-1000000}
DIR=${2:-target/bench-journeys}
BIN=${BIN:-target/release}
GROWTH=${GROWTH:-1}
TRACK=${TRACK:-1}
SNAPLEN=${SNAPLEN:-256}
SYNTH=${SYNTH:-$BIN/examples/synth}
mkdir -p "$DIR"
[ -x /usr/bin/time ] || { echo "install GNU time (apt-get install time)" >&2; exit 1; }
[ -x "$SYNTH" ] || { echo "build the generator: cargo build --release --example synth" >&2; exit 1; }
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -f "$DIR"/tracked-*.trail "$DIR"/raw-*.trail "$DIR"/lines-*.txt "$DIR/time"; }
trap cleanup EXIT

tracked() { # events -> file with kernel-style tracking ids (input for trail-sort)
    f="$DIR/tracked-$1.trail"
    [ -f "$f" ] || "$SYNTH" "$1" 1 "$SNAPLEN" > "$f"
    echo "$f"
}
[ "$TRACK" = 0 ] || [ "${PIPE:-0}" = 1 ] || [ -f "$DIR/raw-$N.trail" ] || "$SYNTH" "$N" 1 "$SNAPLEN" --no-tracking > "$DIR/raw-$N.trail"
[ -f "$DIR/lines-$N.txt" ] || awk -v n="$N" 'BEGIN {
    srand(1)
    for (i = 0; i < n; i++) printf "%010d%010d %d\n", int(rand() * 1e10), int(rand() * 1e10), int(i / 12)
}' > "$DIR/lines-$N.txt"

report() { # name, events: prints the line for "$DIR/time"
    read -r secs user sys kib < "$DIR/time"
    awk -v n="$2" -v s="$secs" -v u="$user" -v y="$sys" -v k="$kib" -v name="$1" \
        'BEGIN { printf "%-48s %8.2f s wall %7.2f s cpu %10.0f events/s %8.1f MiB peak RSS\n", name, s, u + y, n / s, k / 1024 }'
}
measure() { # name, events, command...
    name=$1; n=$2; shift 2
    /usr/bin/time -f '%e %U %S %M' -o "$DIR/time" "$@" > /dev/null
    report "$name" "$n"
}
# The command reads the generator's output on stdin: no input file (PIPE=1, for inputs larger
# than the disk can hold twice). Wall time then includes waiting for the generator; CPU time
# is the measured tool's own.
measure_synth() { # name, events, command...
    name=$1; n=$2; shift 2
    "$SYNTH" "$n" 1 "$SNAPLEN" | /usr/bin/time -f '%e %U %S %M' -o "$DIR/time" "$@" > /dev/null
    report "$name" "$n"
}

if [ "${PIPE:-0}" = 1 ]; then
    echo "input: $N events from the generator (snaplen $SNAPLEN) through a pipe"
    measure_synth "trail-sort $N, in memory (--exact --memory 64G)" "$N" "$BIN/trail-sort" --exact --memory 64G
    measure_synth "trail-sort $N, spilling (--exact --memory 32M)" "$N" "$BIN/trail-sort" --exact --memory 32M --temp-dir "$DIR"
    measure_synth "trail-sort $N, streaming (--window 1ms)" "$N" "$BIN/trail-sort" --window 1ms
    measure "GNU sort, $N lines (in memory)" "$N" sort -S 50% "$DIR/lines-$N.txt"
    measure "GNU sort -S 32M, $N lines (spilling)" "$N" sort -S 32M -T "$DIR" "$DIR/lines-$N.txt"
    exit 0
fi

input=$(tracked "$N")
ls -l "$input" | awk '{ printf "input: %d events, %.0f MiB\n", '"$N"', $5 / 1048576 }'
measure "trail-sort $N, in memory (--memory 64G)" "$N" "$BIN/trail-sort" --memory 64G "$input"
measure "trail-sort $N, spilling (--memory 32M)" "$N" "$BIN/trail-sort" --memory 32M --temp-dir "$DIR" "$input"
measure "trail-sort $N, streaming (pipe, --window 1ms)" "$N" sh -c "'$BIN/trail-sort' --window 1ms < '$input' | cat > /dev/null"
[ "$TRACK" = 0 ] || measure "trail-track $N (no ids in the input)" "$N" "$BIN/trail-track" "$DIR/raw-$N.trail"
measure "GNU sort, $N lines (in memory)" "$N" sort -S 50% "$DIR/lines-$N.txt"
measure "GNU sort -S 32M, $N lines (spilling)" "$N" sort -S 32M -T "$DIR" "$DIR/lines-$N.txt"
if [ "$GROWTH" = 1 ]; then
    for n in $((N / 4)) $((N / 2)); do
        f=$(tracked "$n")
        measure "trail-sort $n, spilling (--memory 32M)" "$n" "$BIN/trail-sort" --memory 32M --temp-dir "$DIR" "$f"
        measure "trail-sort $n, in memory (--memory 64G)" "$n" "$BIN/trail-sort" --memory 64G "$f"
        rm -f "$f"
    done
fi
