#!/bin/sh
# scripts/demo.sh (`make run`): eddy end to end on your machine, in ~10 seconds.
#
#   1. start eddy's development broker (a Kafka-protocol mock cluster, no JVM),
#   2. load scripts/data/poems.txt into the topic text-lines with kcat,
#   3. run the word count job scripts/wordcount.lua against the broker: its
#      words go through the internal topic wordcount-counts-repartition to the
#      task that counts them (LMDB state under a temporary --state-dir),
#   4. wait until its output stops growing, print the 10 most frequent words
#      (the last count per word in word-counts), stop everything.
#
# Environment: DEMO_TIMEOUT (seconds to wait for output, default 30).
cd "$(dirname "$0")/.." || exit 1

EDDY=build/eddy
JOB=scripts/wordcount.lua
INPUT=scripts/data/poems.txt
SOURCE=text-lines
OUTPUT=word-counts
REPARTITION=wordcount-counts-repartition   # <job name>-<store>-repartition
DLQ=wordcount-dlq                   # <job name>-dlq
TIMEOUT=${DEMO_TIMEOUT:-30}

for tool in "$EDDY" kcat /usr/bin/python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "demo: $tool not found (run make, or make deps)" >&2
        exit 1
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/eddy-demo.XXXXXX") || exit 1
broker_pid=
job_pid=

# Stop what we started, whatever way we leave: the job first (it commits and
# leaves its consumer group), then the broker.
stop() {
    if [ -n "$job_pid" ] && kill -0 "$job_pid" 2>/dev/null; then
        kill -TERM "$job_pid" 2>/dev/null
        wait "$job_pid" 2>/dev/null
    fi
    job_pid=
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null
        wait "$broker_pid" 2>/dev/null
    fi
    broker_pid=
}
trap 'stop; rm -rf "$tmp"' EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT
trap 'exit 143' TERM HUP
trap 'exit 141' PIPE                # e.g. make run | head

if [ -t 1 ]; then bold=$(printf '\033[1m') plain=$(printf '\033[0m'); else bold='' plain=''; fi
say() { printf '%s==> %s%s\n' "$bold" "$*" "$plain"; }

# Records in a topic: the sum of its partitions' end offsets (kcat -Q, instant).
count() {
    topic=$1 parts=$2 args='' p=0
    while [ "$p" -lt "$parts" ]; do args="$args -t $topic:$p:-1"; p=$((p + 1)); done
    # shellcheck disable=SC2086
    kcat -Q -b "$bootstrap" $args 2>/dev/null | awk '{ n += $NF } END { print n + 0 }'
}

# The top N words from word-counts (kcat -J lines on stdin): the last count
# seen per word (its current count), by count then word.
top() {
    /usr/bin/python3 -c '
import sys, json
last = {}
for line in sys.stdin:
    e = json.loads(line)
    last[e["key"]] = int(e["payload"])    # offsets grow per partition: the last one wins
top = sorted(last.items(), key=lambda kv: (-kv[1], kv[0]))[: int(sys.argv[1])]
print("    %d distinct words; the top %d:" % (len(last), len(top)))
for i, (w, n) in enumerate(top, 1):
    print("    %2d. %-12s %4d" % (i, w, n))
' "$1"
}

say "Starting the development broker (build/eddy broker)"
"$EDDY" broker --topic "$SOURCE:2" --topic "$REPARTITION:2" --topic "$OUTPUT:2" --topic "$DLQ:1" \
    > "$tmp/broker.out" 2> "$tmp/broker.log" &
broker_pid=$!
bootstrap=
i=0
while [ -z "$bootstrap" ]; do
    bootstrap=$(sed -n 's/^bootstrap: //p' "$tmp/broker.out" 2>/dev/null)
    [ -n "$bootstrap" ] && break
    if ! kill -0 "$broker_pid" 2>/dev/null || [ "$i" -ge 50 ]; then
        echo "demo: the broker did not start:" >&2
        cat "$tmp/broker.log" >&2
        exit 1
    fi
    i=$((i + 1))
    sleep 0.1
done
echo "    Kafka protocol at $bootstrap; topics $SOURCE, $REPARTITION, $OUTPUT, $DLQ"

say "Loading $INPUT into topic $SOURCE (kcat, one record per line)"
kcat -P -b "$bootstrap" -t "$SOURCE" -l "$INPUT" || exit 1
echo "    $(count "$SOURCE" 2) records"

say "Running $JOB (consumer group wordcount; joining takes a few seconds)"
"$EDDY" run "$JOB" --brokers "$bootstrap" --state-dir "$tmp/state" \
    -X session.timeout.ms=6000 -X heartbeat.interval.ms=1000 2> "$tmp/job.log" &
job_pid=$!

# Wait until output has arrived and stopped growing: the same count three
# times in a row, i.e. for more than the job's 1 s commit interval.
start=$(date +%s)
last=-1
same=0
while :; do
    if ! kill -0 "$job_pid" 2>/dev/null; then
        echo "demo: the job stopped on its own:" >&2
        cat "$tmp/job.log" >&2
        job_pid=
        exit 1
    fi
    now=$(($(count "$OUTPUT" 2) + $(count "$DLQ" 1)))
    if [ "$now" -gt 0 ] && [ "$now" -eq "$last" ]; then same=$((same + 1)); else same=0; fi
    [ "$same" -ge 2 ] && break
    last=$now
    if [ $(($(date +%s) - start)) -ge "$TIMEOUT" ]; then
        echo "demo: no (more) output after ${TIMEOUT}s; the job's log:" >&2
        cat "$tmp/job.log" >&2
        exit 1
    fi
    sleep 0.5
done

say "Stopping the job (SIGTERM: finish the batch, commit, leave the group)"
kill -TERM "$job_pid"
wait "$job_pid"
job_pid=
sed -n 's/^.*eddy: \(job .* record(s) in.*\)$/    \1/p' "$tmp/job.log"

echo "    $(count "$REPARTITION" 2) words went through $REPARTITION"
say "Topic $OUTPUT: $(count "$OUTPUT" 2) count updates (kcat -C -J -e), the last per word:"
kcat -C -b "$bootstrap" -t "$OUTPUT" -o beginning -e -q -J 2>/dev/null | top 10
dead=$(count "$DLQ" 1)
[ "$dead" -gt 0 ] && echo "    ($dead record(s) dead-lettered in $DLQ)"

stop
cat <<EOF

Done: broker and job stopped. What you saw: lines of text went in, the job
split them into words, re-keyed by word through $REPARTITION,
and kept a count per word in LMDB; every occurrence sent the word's new
count to $OUTPUT (the last record per word is its current count).

Now make it yours:
  * edit $JOB, e.g. skip short words by adding
        :filter(function(word) return #word > 3 end)
    before :group_by_key(), then run  make run  again;
  * try it without Kafka, on the file directly (run it twice: the counts
    are kept in --state-dir and go on from where they were):
        $EDDY run $JOB --input $INPUT --input-format lines --state-dir /tmp/wc
  * scripts/access_log.lua, sessions.lua, sensor_alerts.lua and the other
    examples (scripts/*.lua) say at their top how to run them.
EOF
exit 0
