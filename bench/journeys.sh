#!/bin/sh
# Benchmark trail-sort and trail-track (not a test). Usage: bench/journeys.sh [EVENTS] [DIR]
# Needs release binaries (cargo build --release --bin trail-sort --bin trail-track) and GNU time.
# Prints one line per run: wall seconds, events/s, peak RSS (MiB). GNU sort on as many lines
# (one 20-digit key + a journey number each) is the sanity baseline of the same run.
set -eu
N=${1:-1000000}
DIR=${2:-bench/out}
BIN=${BIN:-target/release}
mkdir -p "$DIR"
[ -x /usr/bin/time ] || { echo "install GNU time (apt-get install time)" >&2; exit 1; }

here=$(dirname "$0")
[ -f "$DIR/tracked-$N.trail" ] || python3 "$here/gen_events.py" "$N" "$DIR/tracked-$N.trail" --tracked
[ -f "$DIR/raw-$N.trail" ] || python3 "$here/gen_events.py" "$N" "$DIR/raw-$N.trail"
[ -f "$DIR/lines-$N.txt" ] || python3 -c "
import random, sys
r = random.Random(1)
with open(sys.argv[1], 'w') as f:
    f.writelines('%020d %d\n' % (r.randrange(10**18), i // 12) for i in range(int(sys.argv[2])))
" "$DIR/lines-$N.txt" "$N"

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
measure "GNU sort, same number of lines" sort "$DIR/lines-$N.txt"
measure "GNU sort -S 32M" sort -S 32M -T "$DIR" "$DIR/lines-$N.txt"
