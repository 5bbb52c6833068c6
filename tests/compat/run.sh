#!/usr/bin/env bash
# Behaviour comparison of two builds of every trail tool (`make compat`): runs OLD and NEW on the
# same inputs with the same arguments and reports every case whose stdout, stderr, exit status or
# output files (-o, spill directory) are not byte-identical. Meant to show that a refactor does
# not change behaviour.
#
# Usage: tests/compat/run.sh OLD_BIN_DIR NEW_BIN_DIR [WORKDIR]
#   *_BIN_DIR hold trail, trail-filter, ... (e.g. target/release). WORKDIR (default: a temporary
#   directory, removed on success) keeps inputs and results; it is emptied first, so it must be
#   empty, absent or a previous WORKDIR of this script. SYNTH=PATH names the stream generator
#   (cargo example `synth`); default: NEW_BIN_DIR/examples/synth, then OLD's, then one built here.
#   VERBOSE=1 prints every case; WORKDIR/results/{old,new}.times hold each case's wall time.
# Prints one line per differing case and `N passed, N failed`; exits 1 on any difference, 2 when
# the harness itself cannot run.
#
# Both builds run from the same staged path (WORKDIR/bin, hard links or copies), in the same
# directory, with the same relative paths, a clean environment and TZ=UTC: stream headers record
# each stage's arguments and a producer's argv, so anything else would differ by construction.
# trail-capture needs a live kernel and is out of scope, except options that only print (--help,
# --list-profiles...); those run without any capability (setpriv, when run as root), so that even
# a build that misparses them cannot attach probes.
set -euo pipefail

die() { echo "compat: $*" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 OLD_BIN_DIR NEW_BIN_DIR [WORKDIR]"
repo=$(cd "$(dirname "$0")/../.." && pwd)
old=$(cd "$1" && pwd) || die "no directory $1"
new=$(cd "$2" && pwd) || die "no directory $2"
tools=(trail trail-capture trail-filter trail-track trail-sort trail-print trail-to-pcap
	trail-to-parquet trail-from-pcap)
for dir in "$old" "$new"; do
	for tool in "${tools[@]}"; do
		[ -x "$dir/$tool" ] || echo "compat: warning: $dir/$tool missing (its cases will differ)" >&2
	done
done
[ -x "$old/trail-from-pcap" ] || die "$old/trail-from-pcap is needed to import the pcap fixtures"

if [ $# -eq 3 ]; then
	work=$3
	if [ -e "$work" ] && [ ! -e "$work/.trail-compat" ] && [ -n "$(ls -A "$work")" ]; then
		die "$work is not empty and not a compat work directory"
	fi
	rm -rf "$work"
	mkdir -p "$work"
	keep=1
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/trail-compat.XXXXXX")
	keep=0
fi
work=$(cd "$work" && pwd)
touch "$work/.trail-compat"
started=$(date +%s)

# --- inputs (built once, with OLD's importer and one generator) ----------------------------------
synth=${SYNTH:-}
if [ -z "$synth" ]; then
	for candidate in "$new/examples/synth" "$new/synth" "$old/examples/synth" "$old/synth"; do
		if [ -x "$candidate" ]; then synth=$candidate; break; fi
	done
fi
if [ -z "$synth" ]; then
	echo "compat: building the generator (cargo build --release --example synth)" >&2
	(cd "$repo" && cargo build --release --quiet --example synth) || die "cannot build examples/synth"
	synth=$repo/target/release/examples/synth
fi
[ -x "$synth" ] || die "no generator at $synth"

run=$work/run # every case runs here; inputs under in/ and fixtures/, outputs under out/ and tmp/
in=$run/in
mkdir -p "$in" "$run/fixtures" "$run/home"
cp "$repo/tests/fixtures/veth.pcap" "$repo/tests/fixtures/veth.pcapng" "$run/fixtures/"
# The filter corpus as pcap("...") expressions (backslashes escaped for the string).
grep -v -e '^#' -e '^[[:space:]]*$' "$repo/tests/fixtures/filters.txt" | sed 's/\\/\\\\/g' > "$in/filters.txt"

(cd "$run" && "$old/trail-from-pcap" fixtures/veth.pcap > in/veth.trail &&
	"$old/trail-from-pcap" fixtures/veth.pcapng > in/vethng.trail) || die "cannot import the fixtures with $old/trail-from-pcap"
"$synth" 20000 1 --disorder 0.05 > "$in/t20k.trail"              # kernel tracking ids, 5% swapped
"$synth" 20000 1 --no-tracking --disorder 0.05 > "$in/r20k.trail" # the same without ids (trail-track)
"$synth" 3000 9 1500 > "$in/t3k.trail"                           # another seed, full packets, in order
"$synth" 400 7 64 > "$in/small.trail"                            # short snaplen; base of the odd inputs

# frame_at FILE K: byte offset of frame K (0: the header) of FILE's first section.
frame_at() {
	local off=8 i len
	for ((i = 0; i < $2; i++)); do
		len=$(od -An -tu4 --endian=little -j $((off + 1)) -N4 "$1" | tr -d ' ')
		off=$((off + 5 + len))
	done
	echo "$off"
}
# frame TAG HEX: a frame with the MessagePack payload HEX.
frame() {
	local n=$((${#2} / 2))
	printf "%s\\x$(printf %02x $((n & 255)))\\x$(printf %02x $((n >> 8 & 255)))\\x00\\x00" "$1"
	printf "$(sed 's/../\\x&/g' <<< "$2")"
}
hex() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; } # text as hex
str() { printf '%02x%s' $((0xa0 + ${#1})) "$(hex "$1")"; } # MessagePack fixstr
patch() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; } # FILE OFFSET BYTES

small=$in/small.trail
size=$(stat -c %s "$small")
at30=$(frame_at "$small" 30)
at100=$(frame_at "$small" 100)
: > "$in/empty"
head -c $((size - 7)) "$small" > "$in/trunc.trail"     # ends inside the last frame
head -c 8 "$small" > "$in/magiconly.trail"             # magic without header
cp "$small" "$in/badtag.trail"; patch "$in/badtag.trail" "$at30" 'e'            # invalid tag
cp "$small" "$in/hugelen.trail"; patch "$in/hugelen.trail" $((at30 + 4)) '\xff' # oversized length
{ head -c "$at30" "$small"; printf 'E\x01\x00\x00\x00\xc1'; tail -c +$((at30 + 1)) "$small"; } > "$in/badpayload.trail"
cp "$small" "$in/future.trail"; patch "$in/future.trail" 6 "\\x$(printf %02x $(($(od -An -tu1 -j6 -N1 "$small") + 1)))"
printf 'hello world\n' > "$in/garbage.txt"
printf '{"a":1}\n' > "$in/json.txt"
head -c $(($(stat -c %s "$run/fixtures/veth.pcap") - 10)) "$run/fixtures/veth.pcap" > "$in/trunc.pcap"
head -c $(($(stat -c %s "$run/fixtures/veth.pcapng") - 3)) "$run/fixtures/veth.pcapng" > "$in/trunc.pcapng"
head -c 10 "$run/fixtures/veth.pcap" > "$in/short.pcap"
# Records other than events in the middle of a stream: lost, trailer and an unknown tag.
{
	head -c "$at100" "$small"
	frame L "85$(str probe)$(str tp:net:netif_rx)$(str count)05$(str first_ns)01$(str last_ns)02$(str reason)$(str ringbuf-full)"
	frame X "81$(str future)c3"
	tail -c +$((at100 + 1)) "$small"
	frame T "81$(str events)cd0190"
} > "$in/odd.trail"
cat "$in/small.trail" "$in/veth.trail" "$in/t3k.trail" > "$in/concat.trail" # three sections, clocks and hosts
cat "$in/small.trail" "$in/small.trail" > "$in/twice.trail"                 # the same events twice
# pcap-counts STREAM: the number of events of STREAM each expression of the corpus selects.
cat > "$in/pcap-counts" << 'EOF'
#!/usr/bin/env bash
while read -r f; do
	printf '%s: ' "$f"
	trail-filter --count "pcap(\"$f\")" "$1" 2>&1 || echo "exit $?"
done < in/filters.txt
EOF
chmod +x "$in/pcap-counts"

# --- cases -----------------------------------------------------------------------------------
# c 'COMMAND LINE': one case, run by bash (pipefail) in $run with the tools first on PATH; its
# stdout, stderr, exit status, out/ and tmp/ are compared.
cmds=()
c() { cmds+=("$1"); }

streams=(in/veth.trail in/vethng.trail in/t20k.trail in/r20k.trail in/t3k.trail in/concat.trail in/odd.trail in/twice.trail)
small_streams=(in/veth.trail in/vethng.trail in/small.trail in/concat.trail in/odd.trail)
bad=(in/empty in/trunc.trail in/magiconly.trail in/badtag.trail in/hugelen.trail in/badpayload.trail
	in/future.trail in/garbage.txt in/json.txt fixtures/veth.pcap fixtures/veth.pcapng in/missing.trail)

for tool in "${tools[@]}"; do
	[ "$tool" = trail-capture ] && continue
	c "$tool --help"
	c "$tool -h"
	c "$tool -V"
	c "$tool --no-such-option"
done
# trail-capture: printing options only, without capabilities, bounded in time.
for args in --help -h -V --list-profiles "--list-profiles --no-such-option" --no-such-option \
	"--snaplen 0 --list-profiles" "-P no-such-profile --list-profiles" "--list-probes 'skb:*'"; do
	c "\$NOPRIV timeout 20 trail-capture $args"
done

# trail (front command)
c "trail"
c "trail no-such-tool"
c "trail print --format single-line in/veth.trail"
c "trail filter --count drop in/t20k.trail"
c "trail sort --summary in/t20k.trail"
c "trail from-pcap fixtures/veth.pcap"
c "trail to-pcap in/bad-missing.trail"

# trail-print
for s in "${small_streams[@]}"; do
	for opts in "" --json "--format single-line" "--format single-line --utc" --headers "--json --headers" \
		"--fields time,probe,packet" "--format single-line --fields drop,tracking,ct,dev" "--json --fields packet,skb"; do
		c "trail-print $opts $s"
	done
done
for s in "${streams[@]}"; do
	c "trail-print $s"
	c "trail-print --json $s"
done
c "trail-print --format single-line --utc --headers in/t20k.trail"
c "trail-print --format multi < in/t3k.trail"
c "cat in/concat.trail | trail-print --format single-line --headers"
c "trail-print --json in/veth.trail - in/small.trail < in/vethng.trail"
# --journeys reads a file, not a pipe: trail-print (at 35f134d) flushes when its input runs dry and
# then silently drops the rest of the journey it was collecting (flush -> end_journey forgets the
# current journey), so through a pipe its output depends on timing.
c "trail-sort -o out/s.trail in/t20k.trail && trail-print --json --journeys out/s.trail"
c "trail-sort -o out/c.trail in/concat.trail && trail-print --json --journeys --headers out/c.trail"
c "trail-sort in/t20k.trail | trail-print"
c "trail-print --json --journeys in/t20k.trail"
c "trail-print --journeys in/small.trail"
c "trail-print --fields no-such-section in/small.trail"
c "trail-print --fields time --json in/small.trail"
c "trail-print --format yaml in/small.trail"
c "trail-print --json in/t20k.trail | head -n 3"
c "trail-print in/t20k.trail | head -c 100"
for b in "${bad[@]}"; do c "trail-print $b"; done
c "trail-print < in/trunc.trail"
c "trail-print --json in/small.trail in/badtag.trail"

# trail-filter
exprs=('drop' 'not drop' 'drop.reason == "NETFILTER_DROP"' "drop.reason ~ 'N*'" 'pcap("tcp port 443")'
	'pcap("udp and net 192.0.2.0/25")' 'pcap("tcp[tcpflags] & tcp-push != 0")' 'probe ~ "tp:net:*" and skb.mark & 0xff == 1'
	'has ct and ct.state == "new"' 'ct.orig.dport == 443 or ct.reply.sport == 53' 'dev.name == "veth0" or not dev.name ~ "veth*"'
	'time >= 2ms and time < 5ms' 'common.timestamp > 1002000000' 'cpu == 1 && pid != 0' 'skb.len > 1000' '!(skb.len & 0x3 == 0)'
	'tracking.index == 0' 'has skb.vlan_tci' 'netns.inum >= 4026531842' 'comm ~ "[r-t]*" and common.timestamp < 1001000000')
for e in "${exprs[@]}"; do
	c "trail-filter '$e' in/t20k.trail"
	c "trail-filter --count '$e' in/t20k.trail"
done
for e in 'drop' 'pcap("tcp port 443")' 'has ct'; do
	c "trail-filter -v '$e' in/t20k.trail"
	c "trail-filter --journey '$e' in/t20k.trail"
	c "trail-filter --journey -v --count '$e' in/t20k.trail"
done
c "trail-filter --journey --window 1ms drop in/t20k.trail"
c "trail-filter --journey --window 50 --count drop in/t20k.trail"
c "trail-filter --journey --max-buffered 100 drop in/t20k.trail"
c "trail-filter --journey drop in/r20k.trail"
c "trail-sort in/t20k.trail | trail-filter --journey 'drop.reason == \"TCP_CSUM\"'"
c "trail-sort in/t20k.trail | trail-filter --journey --count -v drop"
c "cat in/t20k.trail | trail-filter --journey drop"
c "trail-filter -n 10 drop in/t20k.trail"
c "trail-filter -e drop in/t20k.trail in/small.trail"
c "trail-filter --probe 'tp:skb:*' in/t20k.trail"
c "trail-filter --count --probe 'tp:net:netif_*' --probe tp:skb:kfree_skb in/t20k.trail"
c "trail-filter --probe 'tp:skb:*' -e 'not drop' --count in/t20k.trail"
c "trail-filter --probe pcap --count in/veth.trail"
c "trail-filter -o out/f.trail 'pcap(\"udp\")' in/t20k.trail"
c "trail-filter -o out/f.trail drop in/trunc.trail"
c "trail-filter drop < in/t20k.trail"
c "trail-filter drop in/t20k.trail | head -c 100 | wc -c"
for s in "${small_streams[@]}"; do
	for e in 'pcap("icmp or icmp6")' 'pcap("udp port 4789")' 'pcap("vlan")' 'dev.name == "veth1"' 'probe == "pcap"' 'drop'; do
		c "trail-filter '$e' $s"
	done
	c "trail-filter -v drop $s"
done
c "in/pcap-counts in/veth.trail"
c "in/pcap-counts in/t3k.trail"
for e in 'drop and' 'skb.nosuch == 1' 'pcap("tcp port")' 'time > 5' 'drop.reason == ' '"unterminated' 'skb.len > "x"' 'future.thing == 1'; do
	c "trail-filter '$e' in/small.trail"
done
c "trail-filter"
c "trail-filter --journey --window soon drop in/small.trail"
for b in "${bad[@]}"; do c "trail-filter drop $b"; done
c "trail-filter --count drop in/trunc.trail"

# trail-track
for s in "${streams[@]}"; do c "trail-track $s"; done
c "trail-track < in/r20k.trail"
c "cat in/r20k.trail | trail-track"
for opts in "--window 1ms" "--window 0s" "--idle 1ms" "--max-journeys 16" "--link-window 1us" "--link-window 1s" "--host-window 1ms"; do
	c "trail-track $opts in/r20k.trail"
done
c "trail-track in/veth.trail in/vethng.trail"
c "trail-track in/r20k.trail in/t3k.trail in/small.trail"
c "trail-track -o out/t.trail in/r20k.trail"
c "trail-track -o out/t.trail in/badtag.trail"
c "trail-track in/r20k.trail | trail-sort --summary"
c "trail-track --window nope in/small.trail"
for b in "${bad[@]}"; do c "trail-track $b"; done

# trail-sort
for s in "${streams[@]}"; do c "trail-sort $s"; done
c "trail-sort < in/t20k.trail"
c "cat in/t20k.trail | trail-sort"
c "cat in/t20k.trail | trail-sort --window 1ms"
c "cat in/t20k.trail | trail-sort --window 1ms --memory 64K"
c "cat in/t20k.trail | trail-sort --exact"
c "trail-sort --memory 64K --temp-dir tmp in/t20k.trail"
c "trail-sort --memory 64K in/t20k.trail in/t3k.trail"
c "cat in/t20k.trail | trail-sort --exact --memory 100K"
c "trail-sort --summary in/t20k.trail"
c "trail-sort --summary --format json in/t20k.trail"
c "trail-sort --summary --format json in/concat.trail"
c "trail-sort --summary in/veth.trail"
c "trail-sort --summary --memory 64K in/r20k.trail"
c "trail-sort in/t20k.trail in/small.trail"
c "trail-sort -o out/s.trail in/t20k.trail"
c "trail-sort -o out/s.trail in/t20k.trail in/trunc.trail"
c "trail-sort --memory lots in/small.trail"
c "trail-sort --window soon in/small.trail"
c "trail-sort --temp-dir tmp/missing --memory 16K in/t20k.trail"
c "trail-sort in/t20k.trail | head -c 1000 | wc -c"
for b in "${bad[@]}"; do c "trail-sort $b"; done
c "cat in/badtag.trail | trail-sort"

# trail-to-pcap
for s in "${streams[@]}"; do c "trail-to-pcap $s"; done
c "trail-to-pcap -o out/v.pcapng in/veth.trail"
c "trail-to-pcap -o out/v.pcap --format pcap in/concat.trail"
for opts in "--format pcap" "--link sll2" "--format pcap --link sll2" "--interface-per probe" "--other-links keep" \
	"--probe tp:net:netif_receive_skb" "--probe '*xmit*' --probe '*kfree*'" "--first-per-journey" "--last-per-journey" \
	"--first-per-journey --journey-limit 10" "--last-per-journey --journey-limit 10" "--format pcap --other-links keep"; do
	c "trail-to-pcap $opts in/t20k.trail"
	c "trail-to-pcap $opts in/concat.trail"
done
c "trail-to-pcap < in/t3k.trail"
c "trail-to-pcap in/veth.trail | trail-from-pcap | trail-print --json --headers"
c "trail-to-pcap in/t20k.trail | trail-from-pcap"
c "trail-to-pcap --link sll2 in/concat.trail | trail-from-pcap | trail-print --format single-line"
c "trail-to-pcap --format pcap in/veth.trail | tcpdump -nn -tt -v -r - 2>&1"
c "trail-to-pcap -o out/x.pcapng in/t20k.trail in/hugelen.trail"
c "trail-to-pcap --link nope in/small.trail"
for b in "${bad[@]}"; do c "trail-to-pcap $b"; done

# trail-to-parquet. Parquet bytes are compared as they are: the writer is deterministic for the
# same input and arguments (no timestamps or random names; parallel row groups keep their order).
for s in "${streams[@]}"; do c "trail-to-parquet -o out/e.parquet $s"; done
for opts in "--threads 1" "--threads 2 --row-group-size 1000" "--threads 3 --row-group-size 700 --sort-window 0" \
	"--row-group-size 1000 --sort-window 10" "--compression snappy" "--compression none --no-packet-bytes"; do
	c "trail-to-parquet $opts -o out/e.parquet in/t20k.trail"
done
c "trail-to-parquet in/veth.trail"
c "trail-to-parquet < in/concat.trail > out/stdout.parquet"
c "trail-to-parquet --partition-by host,date,probe -o out/ds in/t20k.trail"
c "trail-to-parquet --partition-by probe --max-open-files 2 --row-group-size 500 -o out/ds in/t20k.trail"
c "trail-to-parquet --partition-by host,date -o out/ds in/concat.trail"
c "trail-to-parquet --partition-by probe -o out/ds in/small.trail && trail-to-parquet --partition-by probe -o out/ds in/t3k.trail"
c "trail-to-parquet --partition-by host in/small.trail"
c "trail-to-parquet --partition-by nope -o out/ds in/small.trail"
c "trail-to-parquet --threads 0 -o out/e.parquet in/small.trail"
c "trail-to-parquet --compression lz4 -o out/e.parquet in/small.trail"
c "trail-to-parquet -o out/e.parquet in/t20k.trail in/trunc.trail"
c "trail-to-parquet --partition-by probe -o out/ds in/t20k.trail in/badtag.trail"
for b in "${bad[@]}"; do c "trail-to-parquet -o out/e.parquet $b"; done

# trail-from-pcap
for opts in fixtures/veth.pcap fixtures/veth.pcapng "< fixtures/veth.pcap" "- < fixtures/veth.pcapng" \
	"--host h1 fixtures/veth.pcapng" "fixtures/veth.pcap fixtures/veth.pcapng" "-o out/v.trail fixtures/veth.pcap"; do
	c "trail-from-pcap $opts"
done
c "trail-from-pcap fixtures/veth.pcapng | trail-print --json --headers"
c "cat fixtures/veth.pcap | trail-from-pcap --host h2 | trail-sort --summary"
for b in in/empty in/garbage.txt in/small.trail in/trunc.pcap in/trunc.pcapng in/short.pcap in/missing.pcap; do
	c "trail-from-pcap -o out/v.trail $b"
	c "trail-from-pcap < $b"
done

# --- running -----------------------------------------------------------------------------------
nopriv=
if [ "$(id -u)" = 0 ]; then
	# No capabilities at all: no BPF, no perf events, whatever the build does with its options.
	command -v setpriv > /dev/null || die "running as root needs setpriv (util-linux) for the trail-capture cases"
	nopriv="setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs"
fi
bin=$work/bin
res=$work/results

# canonical_dataset_names DIR: renames the Parquet files of datasets (--partition-by) from
# part-<UTC time>-<pid>-<random>-<sequence>.parquet, unique by design so that datasets grow by new
# files, never by rewrites, to part-<sequence>-<hash of the content>.parquet. Only the names are
# not byte-stable: the contents are compared byte for byte like every other file.
canonical_dataset_names() {
	local file base seq sum
	while IFS= read -r -d '' file; do
		base=${file##*/}
		sum=$(sha256sum < "$file")
		seq=${base##*-}
		mv "$file" "${file%/*}/part-${seq%.parquet}-${sum:0:16}.parquet"
	done < <(find "$1" -type f -regextype posix-extended \
		-regex '.*/part-[0-9]{8}T[0-9]{6}Z-[0-9]+-[0-9a-f]+-[0-9]+\.parquet' -print0)
}

# side NAME DIR: stages DIR's tools at $bin and runs every case (few processes per case: the
# machines are small). Appends "MS ms #I COMMAND" lines to $res/NAME.times.
side() {
	local name=$1 dir=$2 i out status t0 dirs
	rm -rf "$bin"
	mkdir -p "$bin"
	for tool in "${tools[@]}"; do
		[ -e "$dir/$tool" ] || continue
		ln "$dir/$tool" "$bin/$tool" 2> /dev/null || cp "$dir/$tool" "$bin/$tool"
	done
	for i in "${!cmds[@]}"; do
		out=$res/$name/$i
		mkdir -p "$out" "$run/out" "$run/tmp" "$run/home"
		status=0
		t0=${EPOCHREALTIME/./}
		(cd "$run" && exec env -i PATH="$bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
			HOME="$run/home" TMPDIR="$run/tmp" LC_ALL=C.UTF-8 TZ=UTC NOPRIV="$nopriv" \
			timeout 120 bash -o pipefail -c "${cmds[$i]}") < /dev/null > "$out/stdout" 2> "$out/stderr" || status=$?
		echo "$status" > "$out/status"
		echo "$(((${EPOCHREALTIME/./} - t0) / 1000)) ms #$i ${cmds[$i]}" >> "$res/$name.times"
		mv -t "$out" "$run/out" "$run/tmp"
		dirs=("$out"/out/*/)
		[ ${#dirs[@]} -eq 0 ] || canonical_dataset_names "$out/out"
		[ "${VERBOSE:-0}" = 0 ] || echo "compat: $name #$i exit $status: ${cmds[$i]}" >&2
	done
}

# hint A B: where two files first differ, as a short phrase with the bytes around it (anything
# but printable ASCII shown as `.`).
hint() {
	local where byte from
	where=$(cmp "$1" "$2" 2>&1 | sed -e 's/^.* differ: //' \
		-e "s|^cmp: EOF on $1 after |old ends after |" -e "s|^cmp: EOF on $2 after |new ends after |" \
		-e "s|^cmp: EOF on $1 which is empty|old is empty|" -e "s|^cmp: EOF on $2 which is empty|new is empty|") || true
	byte=$(sed -n 's/^[^0-9]*\([0-9][0-9]*\).*/\1/p' <<< "$where")
	if [ -n "$byte" ]; then
		from=$((byte > 30 ? byte - 30 : 1))
		where+=": \"$(tail -c +"$from" "$1" | head -c 70 | LC_ALL=C tr -c '[:print:]' .)\""
		where+=" vs \"$(tail -c +"$from" "$2" | head -c 70 | LC_ALL=C tr -c '[:print:]' .)\""
	fi
	echo "$where"
}

# compare I: prints what differs for case I (nothing when identical).
compare() {
	local a=$res/old/$1 b=$res/new/$1 what=() f
	cmp -s "$a/status" "$b/status" || what+=("exit $(cat "$a/status") vs $(cat "$b/status")")
	cmp -s "$a/stdout" "$b/stdout" || what+=("stdout ($(hint "$a/stdout" "$b/stdout"))")
	cmp -s "$a/stderr" "$b/stderr" || what+=("stderr ($(hint "$a/stderr" "$b/stderr"))")
	for f in out tmp; do
		if ! diff -q <(cd "$a/$f" && find . | sort) <(cd "$b/$f" && find . | sort) > /dev/null; then
			what+=("$f/ files ($(diff <(cd "$a/$f" && find . -type f | sort) <(cd "$b/$f" && find . -type f | sort) |
				sed -n 's/^< \.\//old only: /p; s/^> \.\//new only: /p' | head -3 | paste -sd ' '))")
		else
			while IFS= read -r -d '' file; do
				cmp -s "$a/$f/$file" "$b/$f/$file" || what+=("$f/${file#./} ($(hint "$a/$f/$file" "$b/$f/$file"))")
			done < <(cd "$a/$f" && find . -type f -print0 | sort -z)
		fi
	done
	[ ${#what[@]} -eq 0 ] || (IFS=';'; echo "${what[*]}" | sed 's/;/; /g')
}

shopt -s nullglob
side old "$old"
side new "$new"
passed=0 failed=0 same=()
for i in "${!cmds[@]}"; do
	if diff -rq "$res/old/$i" "$res/new/$i" > /dev/null 2>&1; then
		passed=$((passed + 1))
		same+=("$res/old/$i" "$res/new/$i")
	else
		failed=$((failed + 1))
		echo "DIFF #$i [${cmds[$i]}]: $(compare "$i")"
	fi
done
rm -rf "$bin" "${same[@]}"
echo "$passed passed, $failed failed ($(($(date +%s) - started)) s)"
if [ "$failed" -gt 0 ]; then
	echo "compat: the differing cases' outputs are in $res/{old,new}/N (N: the case number)" >&2
	exit 1
fi
[ "$keep" = 1 ] || rm -rf "$work"
