#!/bin/sh
# scripts/demo.sh (`make run`): eddy end to end on your machine, in ~10 seconds.
#
#   1. start eddy's development broker (a Kafka-protocol mock cluster, no JVM),
#   2. load scripts/data/access.log into the topic access-logs with kcat,
#   3. run the job scripts/access_log.lua against the broker,
#   4. wait until its output stops growing, show it, stop everything.
#
# Environment: DEMO_TIMEOUT (seconds to wait for output, default 30).
cd "$(dirname "$0")/.." || exit 1

EDDY=build/eddy
JOB=scripts/access_log.lua
INPUT=scripts/data/access.log
SOURCE=access-logs
OUTPUT=http-requests
DLQ=access-log-dlq                  # <job name>-dlq
TIMEOUT=${DEMO_TIMEOUT:-30}

for tool in "$EDDY" kcat; do
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

# Print envelopes (kcat -J lines on stdin) readably: key, time, then the value.
pretty() {
    if [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 -c '
import sys, json, datetime
limit = int(sys.argv[1])
for n, line in enumerate(sys.stdin):
    if n >= limit:
        print("    ...")
        break
    e = json.loads(line)
    ts = datetime.datetime.fromtimestamp(e["ts"] / 1000, datetime.timezone.utc)
    key = "null" if e["key"] is None else e["key"]
    print("  [%s/%d@%d] key=%s  time=%s" % (e["topic"], e["partition"], e["offset"], key,
                                            ts.strftime("%Y-%m-%d %H:%M:%S UTC")))
    h = e.get("headers") or []
    for i in range(0, len(h), 2):
        if h[i] == "eddy.error":
            print("    error: " + h[i + 1])
    value = e["payload"]
    try:
        value = json.dumps(json.loads(value), ensure_ascii=False)   # unescape "\/"
    except (TypeError, ValueError):
        pass
    print("    " + ("(null)" if value is None else value))
' "$1"
    else
        head -n "$1"
    fi
}

say "Starting the development broker (build/eddy broker)"
"$EDDY" broker --topic "$SOURCE:2" --topic "$OUTPUT:2" --topic "$DLQ:1" \
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
echo "    Kafka protocol at $bootstrap; topics $SOURCE, $OUTPUT, $DLQ"

say "Loading $INPUT into topic $SOURCE (kcat, one record per line)"
kcat -P -b "$bootstrap" -t "$SOURCE" -l "$INPUT" || exit 1
echo "    $(count "$SOURCE" 2) records"

say "Running $JOB (consumer group access-log; joining takes a few seconds)"
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

say "Topic $OUTPUT: $(count "$OUTPUT" 2) records, the first 5 (kcat -C -J -e):"
kcat -C -b "$bootstrap" -t "$OUTPUT" -o beginning -e -q -J 2>/dev/null | pretty 5

say "Topic $DLQ: $(count "$DLQ" 1) dead-lettered lines, with the reason in header eddy.error:"
kcat -C -b "$bootstrap" -t "$DLQ" -o beginning -e -q -J 2>/dev/null | pretty 3

stop
cat <<EOF

Done: broker and job stopped. What you saw: raw access-log lines went in,
$JOB parsed each into JSON keyed by client IP, dropped health
checks, and dead-lettered the lines it could not parse.

Now make it yours:
  * edit $JOB, e.g. keep only errors by adding
        :filter(function(_, req) return req.status >= 400 end)
    before :to(...), then run  make run  again;
  * try it without Kafka, on the file directly:
        $EDDY run $JOB --input $INPUT --input-format lines --dlq -
  * the other examples (scripts/*.lua) say at their top how to run them.
EOF
exit 0
