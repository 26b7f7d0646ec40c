#!/bin/sh
# make asan-test (and one suite of make test): the C unit tests, the file-mode
# end-to-end specs and kafka_spec on the AddressSanitizer + UBSan build (build/asan/). Prints TAP;
# any sanitizer report fails the run (the report names the test or spec).
# Arguments: the sanitized C test binaries.
cd "$(dirname "$0")/.." || exit 1
logs=build/asan/logs
rm -rf "$logs"
mkdir -p "$logs"
# every process writes its reports to its own file (spec runs spawn many eddys)
ASAN_OPTIONS="log_path=$PWD/$logs/asan:detect_leaks=1:abort_on_error=0:exitcode=86"
ASAN_OPTIONS="$ASAN_OPTIONS:suppressions=$PWD/tools/asan.supp:print_suppressions=0"
UBSAN_OPTIONS="log_path=$PWD/$logs/ubsan:print_stacktrace=1:halt_on_error=1:exitcode=87"
LSAN_OPTIONS="suppressions=$PWD/tools/lsan.supp:print_suppressions=0"
EDDY_LUA_DIR=$PWD/lua     # build/asan/eddy is not next to lua/ as build/eddy is
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS EDDY_LUA_DIR
status=0
for t in "$@"; do
    echo "# asan: $t"
    "$t" || status=1
done
# the file-mode specs (no broker) on the sanitized binary, and the basic Kafka one
# (the development broker is the sanitized binary too: `eddy broker`)
EDDY_BIN=$PWD/build/asan/eddy luajit /usr/bin/busted -o TAP \
    spec/file_mode_spec.lua spec/aggregate_spec.lua spec/windows_spec.lua \
    spec/processor_spec.lua spec/reload_spec.lua spec/stores_spec.lua \
    spec/errors_spec.lua spec/gate_spec.lua spec/logs_spec.lua spec/kafka_spec.lua || status=1
# reports: one TAP line per file, so that make test's count sees them
n=0
for f in "$logs"/*; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    echo "not ok - sanitizer report $f: $(grep -m1 -E 'ERROR|runtime error|SUMMARY' "$f")"
    sed 's/^/# /' "$f" | head -40
done
if [ "$n" -eq 0 ]; then
    echo "ok - no sanitizer reports (AddressSanitizer, UBSan, LeakSanitizer)"
else
    status=1
fi
exit $status
