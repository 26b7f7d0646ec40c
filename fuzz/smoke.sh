#!/bin/sh
# fuzz/smoke.sh — run the libFuzzer harnesses built in build/fuzz/.
#   sh fuzz/smoke.sh SECONDS NAME...          each harness SECONDS on fuzz/corpus/NAME
#                                             (read only: new inputs go to a scratch dir)
#   sh fuzz/smoke.sh --long SECONDS NAME...   the same, keeping new inputs in
#                                             build/fuzz/corpus-NAME/ (make fuzz)
# One TAP line per harness; exit 1 when any harness found a crash, leak, timeout
# or out-of-memory. Crashing inputs are kept in build/fuzz/crashes/NAME/.
long=0
rss=1024          # MB: a leak of a few hundred KB per input shows within a smoke run
if [ "$1" = "--long" ]; then
    long=1
    rss=2048
    shift
fi
secs=${1:-15}
shift
[ $# -gt 0 ] || { echo "usage: $0 [--long] SECONDS NAME..." >&2; exit 2; }

# the harnesses' scratch directories (LMDB, scripts): one per run, removed at the end
mkdir -p build/fuzz
TMPDIR=$(mktemp -d "$(pwd)/build/fuzz/tmp.XXXXXX")
export TMPDIR

n=0
failed=0
echo "1..$#"
for name in "$@"; do
    n=$((n + 1))
    bin=build/fuzz/$name
    seeds=fuzz/corpus/$name
    crashes=build/fuzz/crashes/$name
    log=build/fuzz/$name.log
    mkdir -p "$crashes"
    if [ $long = 1 ]; then
        work=build/fuzz/corpus-$name
        mkdir -p "$work"
    else
        work=$(mktemp -d "$TMPDIR/corpus.XXXXXX")
    fi
    dict=
    [ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=$rss -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$crashes/" $dict "$work" "$seeds" > "$log" 2>&1
    rc=$?
    [ $long = 1 ] || rm -rf "$work"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1)
    if [ $rc -eq 0 ]; then
        echo "ok $n - fuzz $name: ${execs:-0} execs (${rate:-0}/s, $cov), no crash"
    else
        failed=$((failed + 1))
        what=$(grep -m 1 -o -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z -]*[a-z]|runtime error: .*|SUMMARY: .*' "$log")
        echo "not ok $n - fuzz $name: ${what:-exit $rc} after ${execs:-?} execs (see $log, inputs in $crashes/)"
    fi
done
rm -rf "$TMPDIR"
[ $failed -eq 0 ]
