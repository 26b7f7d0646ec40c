#!/bin/sh
# bench/reload.sh: hot-reload swap time for a 10-step script, in one run.
# A file-mode job reads a steady stdin; it gets 100 SIGHUPs, 50 ms apart; each
# reload logs its load+check time and its swap time (eddy_runner_swap: in file
# mode the new version is loaded and checked at a batch boundary, then swapped
# in right away). The processing pause of a reload is their sum, plus one
# commit. Run by bench/bench.py as scenario v (its output goes into the
# summary); it can run alone too.
set -e
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/eddy-reload-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/job.lua" <<'LUA'
local eddy = require "eddy"
local job = eddy.job { name = "reload-bench" }
job:source("in", { value = "json" })
   :filter(function(k, v) return v.n ~= nil end)
   :map_values(function(v) v.seen = true; return v end)
   :peek(function() end)
   :filter_not(function(k, v) return v.n < 0 end)
   :select_key(function(k, v) return "k" .. (v.n % 100) end)
   :map(function(k, v) return k, v end)
   :flat_map_values(function(v, emit) emit(v) end)
   :group_by_key()
   :count { store = "counts" }
   :to_stream()
   :to("out", { value = "number" })
return job
LUA
( i=0; while [ $i -lt 400 ]; do echo "{\"key\":\"a\",\"payload\":\"{\\\"n\\\":$i}\"}"; i=$((i+1)); sleep 0.02; done ) |
    build/eddy run "$dir/job.lua" --input - --state-dir "$dir/state" --output /dev/null --no-watch 2> "$dir/log" &
sleep 1
pid=$(pgrep -f "eddy run $dir/job.lua" | head -1)
n=0
while [ $n -lt 100 ] && kill -HUP "$pid" 2>/dev/null; do n=$((n+1)); sleep 0.05; done
wait
/usr/bin/python3 - "$dir/log" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
load = sorted(float(x) for x in re.findall(r"loaded and checked in (\d+) ms", log))
swap = sorted(float(x) for x in re.findall(r"swapped in \(was \w+\) in ([\d.]+) ms", log))
def pct(v, p): return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")
print("reload bench: %d reloads of a 10-step script (file mode, steady input)" % len(swap))
print("  load + check (fresh lua_State, topology compare): p50 %.1f ms, p99 %.1f ms" % (pct(load, 50), pct(load, 99)))
print("  swap at the batch boundary:                      p50 %.3f ms, p99 %.3f ms" % (pct(swap, 50), pct(swap, 99)))
print("  swap p99 %.3f ms (new version checked -> live at the batch boundary); target p99 < 5 ms: %s" % (
    pct(swap, 99), "PASS" if pct(swap, 99) < 5 else "FAIL"))
print("  processing pause (load + check + swap), p99 %.1f ms; target p99 < 20 ms: %s" % (
    pct(load, 99) + pct(swap, 99), "PASS" if pct(load, 99) + pct(swap, 99) < 20 else "FAIL"))
PY

# Throughput while reloading: the same job over 1M records (file mode), once
# quiet and once with a SIGHUP every 200 ms; the ratio is the dip.
/usr/bin/python3 - "$dir/big.jsonl" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1000000):
        f.write('{"key":"k%d","payload":"{\\"n\\":%d}"}\n' % (i % 1000, i))
PY
t() {
    s=$(date +%s.%N)
    build/eddy run "$dir/job.lua" --input "$dir/big.jsonl" --state-dir "$dir/state-$1" --output /dev/null --no-watch 2> "$dir/log-$1" &
    p=$!
    if [ "$1" = hup ]; then
        sleep 0.2
        while kill -HUP $p 2>/dev/null; do sleep 0.2; done
    fi
    wait $p
    e=$(date +%s.%N)
    echo "$s $e" | awk '{printf "%.3f", $2 - $1}'
}
quiet=$(t quiet)
hup=$(t hup)
swaps=$(grep -c "swapped in" "$dir/log-hup" || true)
echo "$quiet $hup $swaps" | awk '{printf "  1M records: %.2f s quiet, %.2f s with a reload every 200 ms (%d swaps): throughput ratio %.2f\n", $1, $2, $3, $1 / $2}'
