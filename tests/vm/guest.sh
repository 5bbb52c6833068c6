#!/bin/sh
# Runs inside the VM (see tests/vm/run.sh): the root kernel tests, built on the host, with
# CI=true (nothing may skip for lack of root) and TRAIL_VM=1 (tests that need kprobes or BPF
# trampolines must run, not skip). Writes test.log and rc into the shared results directory.
# Usage: guest.sh TEST_BINARY RESULTS_DIR [TEST_FILTER...]
bin=$1
results=$2
shift 2
export CI=true TRAIL_VM=1 RUST_BACKTRACE=1
uname -r >"$results/kernel"
start=$(date +%s)
"$bin" --test-threads=1 "$@" >"$results/test.log" 2>&1
echo $? >"$results/rc"
echo $(($(date +%s) - start)) >"$results/seconds"
