#!/usr/bin/python3
"""bench/bench.py — `make bench` (through bench/run.sh): eddy's throughput
against a tuned librdkafka C passthrough and a confluent_kafka Python job.

One `eddy broker`, one run, the same pre-loaded input topic for every Kafka
scenario (each with its own consumer group, from the beginning, into its own
output topic):

  a  C passthrough on librdkafka (bench/passthrough.c)      the ceiling
  b  eddy passthrough job (bench/passthrough.lua)
  c  eddy JSON filter job (bench/json_job.lua)
  d  the same job in Python on confluent_kafka (bench/json_job.py)
  e  job c in file mode, no Kafka: the engine alone
  f  eddy tumbling-window count (bench/window_count.lua), 1 min windows,
     every update forwarded, at_least_once, over a second topic of N records
     with 100k keys (bench-in-100k, event times 1 ms apart: ~17 windows);
     compared with a. Skipped, with a note, when the binary has no windows.
  g  eddy count per key in file mode (bench/count_keys.lua) over 1M distinct
     keys (BENCH_G_KEYS): records/s, then the restart: the same job on one
     more record against the same --state-dir, timed as a whole process
     (reopen the LMDB state, count, exit); the state's size on disk (du) and
     the peak RSS of both runs (/usr/bin/time %M, VmHWM: mmap'd LMDB pages
     included); and, sampled from /proc/PID/status every ~20 ms during the
     1M-key run, the largest RssAnon (the job's own memory: Lua heap, malloc,
     stacks; LMDB's mmap'd pages are RssFile, not counted) and RssFile.
  h  job f again with --guarantee exactly_once (one transaction per commit
     interval); compared with f (h/f, the cost of exactly-once).
  r  recovery (Kafka mode, once per bench, after the rounds): a count per key
     (bench/count_job.lua, at_least_once) over BENCH_G_KEYS records with
     distinct keys (bench-in-r); once every key's count is out and the group
     has committed everything (and at least 2 commit intervals have passed),
     kill -9. r1: restart on the same --state-dir and app id; the time from
     the spawn until a probe record (a new key, produced right after the
     spawn) has its count in the output topic. r2: stop it (SIGTERM),
     restart on an empty --state-dir (the store comes back from
     <app>-counts-changelog): the same time, and the restore rate, from the
     "changelogs: N task(s) restored in T ms, R record(s) read" lines (R / T). Both
     times include the process start, the group join (~3 s on the
     development broker) and, for r1, the killed member's session timeout
     (6 s). With each probe goes a record for an existing key, whose count
     must come out as 2 (the restored state is right).
  j  stream-table join (bench/join_table.lua, stream:join(table, fn)) over a
     table of BENCH_J_KEYS (1M) distinct keys: topics bench-j-table (1M
     records, one per key, in random order) and bench-j-stream (N records,
     keys drawn at random from the table's), J_PARTS (16) partitions each,
     short values (the development broker keeps ~5 MiB per partition: the
     table's changelog, the largest, gets ~62k records of ~40 bytes per
     partition, and its low watermarks stay 0). Per round,
     one --state-dir and app id, two runs: 1. the table alone (the stream
     source is an empty topic): its load time, from the first record
     processed to the 1Mth, polled from --http's eddy_records_in_total; then
     SIGTERM (the table is committed); 2. the same job on the stream topic:
     the table is in the local state, and the stream part is timed by its
     outputs like the other Kafka scenarios (one output per stream record);
     compared with a (j/a) and b (j/b).
  l  file mode, the engine alone on the simplest input: BENCH_L_LINES (3M)
     distinct lines of 15-70 bytes with --input-format lines (each line a
     value, no key), bench/lines_job.lua (map_values(string.upper), filter
     on the length: ~43 % kept), output to /dev/null; records/s over the
     whole process (spawn to exit).
  s  start-up (once per bench, after the rounds): a file-mode run of
     bench/lines_job.lua over one line (spawn to exit: start, load and check
     the script, process the record, write it, exit), 30 times, interleaved
     with `eddy version` (the floor: exec and dynamic linking); median and
     p99 (of 30 runs: the slowest) of each.
  v  hot reload (once per bench, at the end): bench/reload.sh (100 SIGHUP
     reloads of a 10-step stateful script while records flow, file mode);
     its output goes into the summary, and its swap time's p99 (from the new
     version's check to it being live at the batch boundary, the
     "swapped in ... in T ms" log lines) is checked against the target.

f and h write changelogs: their topics (<app>-window-counts-changelog,
<app>-__task-0-changelog) are created with the broker, with the input's
partition count (the development broker auto-creates topics with 4).

A Kafka scenario is watched from the outside: the sum of its output topic's
high watermarks is polled every few ms (one ListOffsets request). The clock
runs from the first poll that sees output to the poll that sees every
expected output delivered (outputs = inputs for a passthrough; for the JSON
filter the expected count is computed when the data is generated); the job
is then stopped with SIGTERM. Group join and startup are outside the window.
records/s counts input records: (outputs seen in the window) x inputs/outputs
over the window's length.

Each scenario but r, s and v runs BENCH_ROUNDS times (5), the rounds
interleaved (a b c d f h j e g l, a b c d f h j e g l, ...); each Kafka run
has a fresh group and output topic. The summary shows each scenario's median run; the ratios
compare medians. A window of 1M records is short (0.5-2 s) on a noisy 2-core
machine: single runs of the same scenario vary by 20-30 %, hence the rounds.

The summary ends with the target table, one line per target of the
"Performance" issue (TARGETS): b/a >= 0.9, c/a >= 0.6, c/d >= 3, f/a >= 0.6,
h/f >= 0.8, g >= 500k records/s, l >= 3M records/s, reload swap p99 < 5 ms,
r2's restore >= 1M records/s, start-up median < 30 ms, g's peak RssAnon
< 100 MB; then the other figures (e, g's restart, j/a, j/b, r1, r2).

The input is keyed like a Java producer's (murmur2), as eddy's and the C
passthrough's outputs are, so a record keeps its partition number from input
to output: produce batches stay as large as the consumer's fetches.

The summary also shows the CPU the job's process, its main thread and the
broker used during the window (from /proc): main-thread CPU per record is
steadier than records/s and tells where eddy spends its time.

Environment: BENCH_RECORDS (1000000), BENCH_PARTITIONS (64), BENCH_TIMEOUT
(seconds per scenario, 120), BENCH_ONLY (scenarios to run, e.g. "ab";
default "abcdefghjlrsv"), BENCH_ROUNDS (5), BENCH_G_KEYS (1000000; also r's
key count), BENCH_J_KEYS (1000000: j's table), BENCH_L_LINES (3000000),
BENCH_PERF=1 to also record `perf` profiles (BENCH_PERF_FREQ Hz, 999) of the
eddy scenarios' windows (Kafka) or whole runs (e, g's 1M-key run, l) into
build/bench/perf-*.{data,txt} (BENCH_PERF_CG=dwarf: perf's --call-graph
dwarf, for callers in libraries without frame pointers); BENCH_JIT_P=MODE
(e.g. Fl) to run LuaJIT's profiler in every eddy job but r's (EDDY_JIT_P=MODE,FILE, jit.p: the whole
process, startup included) into build/bench/jitp-*.txt. The figures are
perturbed then. See bench/README.md.
"""
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.path.join(ROOT, "build", "bench")
EDDY = os.path.join(ROOT, "build", "eddy")
PASSTHROUGH = os.path.join(BUILD, "passthrough")
PY = "/usr/bin/python3"

N = int(os.environ.get("BENCH_RECORDS", "1000000"))
PARTS = int(os.environ.get("BENCH_PARTITIONS", "64"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "120"))
PERF = os.environ.get("BENCH_PERF", "") not in ("", "0")
ONLY = os.environ.get("BENCH_ONLY", "abcdefghjlrsv")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
PERF_FREQ = os.environ.get("BENCH_PERF_FREQ", "999")
PERF_CG = os.environ.get("BENCH_PERF_CG", "")  # e.g. dwarf: perf record --call-graph dwarf
JIT_P = os.environ.get("BENCH_JIT_P", "")      # e.g. Fl: EDDY_JIT_P=Fl,build/bench/jitp-NAME.txt
NKEYS = 5000
F_KEYS = 100_000
G_KEYS = int(os.environ.get("BENCH_G_KEYS", "1000000"))
F_T0 = 1_700_000_000_000        # event time of f's first record (ms); 1 ms apart
POLL_S = 0.005
J_KEYS = int(os.environ.get("BENCH_J_KEYS", "1000000"))
J_PARTS = 16                    # j's topics: ~62k table records per partition
J_T0 = 1_600_000_000_000        # event time of j's first table record; the stream's come after

IN_TOPIC = "bench-in"
F_TOPIC = "bench-in-100k"
R_TOPIC = "bench-in-r"
R_OUT = "bench-out-r"
R_APP = "bench-r"
COMMIT_MS = 1000                # --commit-interval of the r job (eddy's default)
GROUP_X = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000"]
KAFKA_KEYS = "abcdfh"           # the Kafka scenarios run in every round, in this order
J_TABLE = "bench-j-table"
J_STREAM = "bench-j-stream"
J_EMPTY = "bench-j-empty"       # the stream source while the table loads alone
J_STORE = "j-table"             # bench/join_table.lua's table store
TOPIC_PARTS = {J_TABLE: J_PARTS, J_STREAM: J_PARTS, J_EMPTY: J_PARTS}   # others: PARTS

L_LINES = int(os.environ.get("BENCH_L_LINES", "3000000"))
STARTUP_RUNS = 30
RSS_POLL_S = 0.02               # g: /proc/PID/status sampled this often

# The "Performance" issue's targets (the target table), then the earlier ones
# kept for the other figures (e, g's restart).
TARGETS = {"b/a": 0.9, "c/a": 0.6, "c/d": 3.0, "f/a": 0.6, "h/f": 0.8, "g": 500_000,
           "l": 3_000_000, "v_swap_p99_ms": 5.0, "r_restore": 1_000_000, "s_ms": 30.0,
           "g_rss_anon": 100_000_000,
           "e": 1_000_000, "g_restart": 1.0}


class BrokerGone(Exception):
    """The broker stopped answering (or exited) in the middle of the run."""


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------- the data

def generate(path):
    """1M records: keys of NKEYS distinct values, JSON values of ~100 bytes.
    Writes the file-mode input (envelope lines) and returns the records and
    how many the JSON filter keeps (n even)."""
    rnd = random.Random(20240601)
    pad = "the quick brown fox jumps over the lazy dog " * 3
    recs = []
    kept = 0
    with open(path, "w") as f:
        for i in range(N):
            n = rnd.randrange(1_000_000)
            kept += n % 2 == 0
            key = "user-%04d" % rnd.randrange(NKEYS)
            head = '{"id":%d,"n":%d,"name":"' % (i, n)
            value = head + pad[: max(8, 98 - len(head))] + '"}'
            recs.append((key.encode(), value.encode()))
            f.write('{"key":%s,"payload":%s}\n' % (json.dumps(key), json.dumps(value)))
    return recs, kept


def generate_f():
    """Scenario f's input: N records over F_KEYS keys, values as in generate(),
    event times 1 ms apart (in produce order, so no record is late)."""
    rnd = random.Random(20240602)
    pad = "the quick brown fox jumps over the lazy dog " * 3
    recs = []
    for i in range(N):
        key = "key-%06d" % rnd.randrange(F_KEYS)
        head = '{"id":%d,"n":%d,"name":"' % (i, rnd.randrange(1_000_000))
        value = head + pad[: max(8, 98 - len(head))] + '"}'
        recs.append((key.encode(), value.encode(), F_T0 + i))
    return recs


def generate_g(path, one_path):
    """Scenario g's inputs: G_KEYS distinct keys in random order, one record
    each; and one more record for an existing key (its count becomes 2)."""
    rnd = random.Random(20240603)
    keys = list(range(G_KEYS))
    rnd.shuffle(keys)
    with open(path, "w") as f:
        for i, k in enumerate(keys):
            f.write('{"key":"k-%07d","payload":"{\\"n\\":%d}","ts":%d}\n' % (k, i, F_T0 + i))
    with open(one_path, "w") as f:
        f.write('{"key":"k-%07d","payload":"{\\"n\\":-1}","ts":%d}\n' % (keys[0], F_T0 + G_KEYS))
    return "k-%07d" % keys[0]


def generate_l(path, one_path):
    """Scenario l's input: L_LINES distinct lines, 2-8 words and the line's
    number (15-70 bytes, ~38 on average; about 43 % are longer than 40 bytes,
    the filter's bound); and scenario s's, one line. Every line differs (as
    real data would): LuaJIT interns strings, repeated lines would be cheaper."""
    rnd = random.Random(20240606)
    words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
             "mike november oscar papa quebec romeo sierra tango").split()
    # 4096 word sequences in a random order, each line made unique by its number
    pool = [" ".join(rnd.choice(words) for _ in range(rnd.randrange(2, 9))) for _ in range(4096)]
    with open(path, "w") as f:
        for i in range(0, L_LINES, 8192):
            f.write("".join("%s %d\n" % (pool[rnd.randrange(4096)], n)
                            for n in range(i, min(i + 8192, L_LINES))))
    with open(one_path, "w") as f:
        f.write(pool[0] + "\n")


def generate_r():
    """Scenario r's input: G_KEYS distinct keys (g's names) in random order,
    one record each, a one-byte value (the job does not read it)."""
    rnd = random.Random(20240604)
    keys = list(range(G_KEYS))
    rnd.shuffle(keys)
    return [(b"k-%07d" % k, b"1") for k in keys]


def generate_j():
    """Scenario j's inputs: the table, J_KEYS distinct keys in random order with
    8-byte values and timestamps J_T0 + i; the stream, N records with keys drawn
    at random among the table's, timestamped after every table record (a task
    reads its partitions in timestamp order: the table before the stream)."""
    rnd = random.Random(20240605)
    keys = list(range(J_KEYS))
    rnd.shuffle(keys)
    table = [(b"k-%07d" % k, b"v%07d" % k, J_T0 + i) for i, k in enumerate(keys)]
    stream = [(b"k-%07d" % rnd.randrange(J_KEYS), b"o%07d" % i, J_T0 + J_KEYS + i)
              for i in range(N)]
    return table, stream


def changelogs(app, store):
    """The changelog topics of a job of one sub-topology (0) with one store."""
    return ["%s-%s-changelog" % (app, store), "%s-__task-0-changelog" % app]


def load(brokers, recs, topic=IN_TOPIC):
    p = Producer({
        "bootstrap.servers": brokers, "linger.ms": 20, "batch.num.messages": 10000,
        "queue.buffering.max.messages": 2000000, "queue.buffering.max.kbytes": 1048576,
        "compression.type": "none", "enable.idempotence": True,
        # keyed like a Java producer's (and eddy's) output: a key's records
        # stay in the same partition number from input to output
        "partitioner": "murmur2_random",
    })
    errors = [0]

    def dr(err, msg):
        if err is not None:
            errors[0] += 1
    produce, poll = p.produce, p.poll
    for i, rec in enumerate(recs):
        k, v = rec[0], rec[1]
        ts = rec[2] if len(rec) > 2 else 0
        while True:
            try:
                if ts:
                    produce(topic, v, k, on_delivery=dr, timestamp=ts)
                else:
                    produce(topic, v, k, on_delivery=dr)
                break
            except BufferError:
                poll(0.01)
        if i % 10000 == 0:
            poll(0)
    left = p.flush(60)
    if left or errors[0]:
        raise SystemExit("bench: loading %s failed: %d undelivered, %d errors"
                         % (topic, left, errors[0]))


class Watermarks:
    """Sums of a topic's high (and low) watermarks, one ListOffsets request."""

    def __init__(self, brokers, broker):
        self.broker = broker
        self.c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-watcher",
                           "enable.auto.commit": False})

    def offsets(self, topic, which=-1):
        """Each partition's high (-1) or low (-2) watermark."""
        if self.broker.poll() is not None:
            raise BrokerGone("the broker exited (status %s)" % self.broker.returncode)
        tps = [TopicPartition(topic, i, which) for i in range(TOPIC_PARTS.get(topic, PARTS))]
        try:
            return [max(tp.offset, 0) for tp in self.c.offsets_for_times(tps, timeout=10)]
        except KafkaException as e:
            raise BrokerGone("the broker does not answer: %s" % e) from None

    def _sum(self, topic, which):
        return sum(self.offsets(topic, which))

    def high(self, topic):
        return self._sum(topic, -1)     # -1: latest

    def low(self, topic):
        return self._sum(topic, -2)     # -2: earliest

    def close(self):
        self.c.close()


# ---------------------------------------------------------------- scenarios

TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid):
    """CPU seconds (user+system) of a process and of its main thread, or None."""
    def ticks(path):
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])     # utime, stime
    try:
        return (ticks("/proc/%d/stat" % pid) / TICK,
                ticks("/proc/%d/task/%d/stat" % (pid, pid)) / TICK)
    except (OSError, IndexError, ValueError):
        return None


def cpu_share(c0, c1, seconds):
    """(process, main thread) CPU use over a window, in cores (1.0 = one core busy)."""
    if not c0 or not c1 or seconds <= 0:
        return None
    return ((c1[0] - c0[0]) / seconds, (c1[1] - c0[1]) / seconds)


def jit_env(name):
    """Under BENCH_JIT_P=MODE, the environment that has eddy run LuaJIT's
    sampling profiler (EDDY_JIT_P=MODE,FILE) into build/bench/jitp-NAME.txt."""
    if not JIT_P:
        return {}
    return {"EDDY_JIT_P": "%s,%s" % (JIT_P, os.path.join(BUILD, "jitp-%s.txt" % name))}


def start_perf(name, pid):
    if not PERF or not shutil.which("perf"):
        return None
    data = os.path.join(BUILD, "perf-%s.data" % name)
    cg = ["--call-graph", PERF_CG] if PERF_CG else ["-g"]
    return subprocess.Popen(["perf", "record", "-q", "-F", PERF_FREQ] + cg + ["-p", str(pid),
                             "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_perf(name, proc):
    if not proc:
        return
    proc.send_signal(signal.SIGINT)
    proc.wait()
    data = os.path.join(BUILD, "perf-%s.data" % name)
    out = os.path.join(BUILD, "perf-%s.txt" % name)
    with open(out, "w") as f:
        subprocess.call(["perf", "report", "-i", data, "--stdio", "--no-children",
                         "--sort", "comm,dso,symbol", "-g", "none", "--percent-limit", "0.5"],
                        stdout=f, stderr=subprocess.DEVNULL)
    log("perf profile of %s: %s" % (name, out))


def run_kafka(name, cmd, wm, out_topic, expected, broker_pid, env=None):
    """Run one Kafka scenario; returns a result dict."""
    errpath = os.path.join(BUILD, "%s.stderr" % name)
    errf = open(errpath, "w")
    base = wm.high(out_topic)
    if base:
        log("%s: output topic %s is not empty (%d)" % (name, out_topic, base))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, cwd=ROOT,
                            env=dict(os.environ, **(env or {}), **jit_env(name)))
    try:
        return watch(name, proc, errf, errpath, wm, out_topic, expected, broker_pid, base,
                     started)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def watch(name, proc, errf, errpath, wm, out_topic, expected, broker_pid, base, started,
          inputs=N, stop=True):
    """Time a job's outputs until `expected` are delivered; `inputs` input
    records make them. Then SIGTERM the job, unless `stop` is false."""
    perf = None
    t0 = out0 = t1 = None
    c0 = b0 = c1 = b1 = w0 = w1 = None
    seen = 0
    status = "ok"
    while True:
        now = time.monotonic()
        seen = wm.high(out_topic) - base
        if t0 is None and seen > 0:
            t0, out0 = now, seen
            c0, b0 = cpu_of(proc.pid), cpu_of(broker_pid)
            w0 = sum(os.times()[:2])
            perf = start_perf(name, proc.pid) if name.startswith("eddy") else None
        if seen >= expected:
            t1 = now
            c1, b1 = cpu_of(proc.pid), cpu_of(broker_pid)
            w1 = sum(os.times()[:2])
            break
        if proc.poll() is not None:
            status = "exited early (status %d)" % proc.returncode
            break
        if now - started > TIMEOUT:
            status = "timed out after %.0f s" % TIMEOUT
            break
        time.sleep(POLL_S)
    stop_perf(name, perf)
    if stop and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    errf.close()
    with open(errpath) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    tail = [l for l in lines if "record(s) in" in l] or lines[-1:]
    res = {"name": name, "status": status, "expected": expected, "seen": seen,
           "log": tail[-1] if tail else "", "stderr": errpath}
    if t1 is not None and t1 > t0 and seen > out0:
        res["seconds"] = t1 - t0
        res["rate"] = (seen - out0) * (inputs / expected) / (t1 - t0)
        res["wall"] = t1 - started
        res["cpu"] = cpu_share(c0, c1, t1 - t0)
        res["broker_cpu"] = cpu_share(b0, b1, t1 - t0)
        res["watcher_cpu"] = (w1 - w0) / (t1 - t0)
    if seen > expected:
        res["status"] = "ok, %d duplicate output(s)" % (seen - expected)
    return res


def run_file(name, script, inpath, n=N, extra=()):
    """A file-mode run over `inpath` (n records), output to /dev/null: records/s
    over the whole process."""
    errpath = os.path.join(BUILD, "%s.stderr" % name)
    cmd = [EDDY, "run", script, "--input", inpath, "--output", "/dev/null"] + list(extra)
    with open(errpath, "w") as errf:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, cwd=ROOT,
                                env=dict(os.environ, **jit_env(name)))
        perf = start_perf(name, proc.pid)
        c1 = None
        while proc.poll() is None:          # sample CPU use just before the end
            c1 = cpu_of(proc.pid) or c1
            time.sleep(POLL_S)
        rc = proc.wait()
        t1 = time.monotonic()
    stop_perf(name, perf)
    with open(errpath) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    tail = [l for l in lines if "record(s) in" in l] or lines[-1:]
    res = {"name": name, "status": "ok" if rc == 0 else "exit status %d" % rc,
           "log": tail[-1] if tail else "", "stderr": errpath}
    if rc == 0:
        res["seconds"] = t1 - t0
        res["rate"] = n / (t1 - t0)
        res["wall"] = t1 - t0
        res["cpu"] = cpu_share((0.0, 0.0), c1, t1 - t0)
    return res


def run_startup(one_path):
    """Scenario s: STARTUP_RUNS file-mode runs of bench/lines_job.lua over one
    line, each timed from the spawn to the exit, interleaved with as many
    `eddy version` (the floor). Returns {"status", "run": [ms], "version": [ms]}."""
    cmds = {"version": [EDDY, "version"],
            "run": [EDDY, "run", "bench/lines_job.lua", "--input", one_path,
                    "--input-format", "lines", "--output", "/dev/null"]}
    times = {"version": [], "run": []}
    status = "ok"
    for _ in range(STARTUP_RUNS):
        for what in ("version", "run"):
            t0 = time.monotonic()
            rc = subprocess.call(cmds[what], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, cwd=ROOT)
            t1 = time.monotonic()
            if rc != 0:
                status = "%s: exit status %d" % (what, rc)
            times[what].append((t1 - t0) * 1000.0)
    return {"name": "eddy-startup", "status": status, "run": sorted(times["run"]),
            "version": sorted(times["version"])}


def pct(v, p):
    """The p-th percentile of sorted v, nearest rank (p99 of 30: the largest)."""
    if not v:
        return None
    return v[max(0, min(len(v) - 1, -(-len(v) * p // 100) - 1))]


SWAP = re.compile(r"swap at the batch boundary:\s+p50 ([\d.]+) ms, p99 ([\d.]+) ms")


def run_reload():
    """Scenario v: bench/reload.sh; its output (for the summary) and its swap p50/p99."""
    t0 = time.monotonic()
    p = subprocess.run(["sh", "bench/reload.sh"], capture_output=True, text=True, cwd=ROOT)
    res = {"name": "reload", "status": "ok" if p.returncode == 0 else
           "exit status %d" % p.returncode, "text": p.stdout, "wall": time.monotonic() - t0}
    with open(os.path.join(BUILD, "reload.stderr"), "w") as f:
        f.write(p.stderr)
    m = SWAP.search(p.stdout)
    if m and m.group(2) != "nan":
        res["swap_p50"], res["swap_p99"] = float(m.group(1)), float(m.group(2))
    elif res["status"] == "ok":
        res["status"] = "no swap times in its output"
    return res


def run_g(rnd, inpath, one_path, one_key):
    """Scenario g: count per key over G_KEYS distinct keys in file mode into a
    fresh state dir, then the restart on one record; peak RSS from /usr/bin/time."""
    name = "eddy-count-keys-%d" % rnd
    state = os.path.join(BUILD, "state-g")
    shutil.rmtree(state, ignore_errors=True)
    errpath = os.path.join(BUILD, "%s.stderr" % name)

    def once(path, out, sample=False):
        # Peak RSS through /usr/bin/time: wait4's ru_maxrss of a child forked
        # from this (large) Python process counts the pre-exec copy too.
        # With `sample`, /proc/PID/status of eddy (time's child) is read every
        # RSS_POLL_S: the largest RssAnon and RssFile seen (bytes), and perf
        # records the run under BENCH_PERF.
        rss_path = os.path.join(BUILD, "g-rss.txt")
        cmd = ["/usr/bin/time", "-f", "%M", "-o", rss_path,
               EDDY, "run", "bench/count_keys.lua", "--input", path, "--output", out,
               "--state-dir", state, "--no-watch"]
        peak = {"RssAnon": 0, "RssFile": 0, "samples": 0}
        perf = None
        with open(errpath, "a") as errf:
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, cwd=ROOT,
                                    env=dict(os.environ, **(jit_env(name) if sample else {})))
            pid = None
            while sample and proc.poll() is None:
                if pid is None:
                    try:
                        with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
                            pid = int(f.read().split()[0])
                        perf = start_perf(name, pid)
                    except (OSError, ValueError, IndexError):
                        pass
                if pid is not None:
                    status = proc_status(pid)
                    if status:
                        peak["samples"] += 1
                        for k in ("RssAnon", "RssFile"):
                            peak[k] = max(peak[k], status.get(k, 0))
                time.sleep(RSS_POLL_S if pid is not None else 0.001)
            rc = proc.wait()
            t1 = time.monotonic()
        stop_perf(name, perf)
        try:
            with open(rss_path) as f:
                rss = int(f.read().split()[-1]) * 1024
        except (OSError, ValueError, IndexError):
            rss = None
        return rc, t1 - t0, rss, peak

    open(errpath, "w").close()
    rc, seconds, rss, peak = once(inpath, "/dev/null", sample=True)
    with open(errpath) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    tail = [l for l in lines if "record(s) in" in l] or lines[-1:]
    res = {"name": name, "status": "ok" if rc == 0 else "exit status %d" % rc,
           "log": tail[-1] if tail else "", "stderr": errpath}
    if rc != 0:
        return res
    res.update(seconds=seconds, wall=seconds, rate=G_KEYS / seconds, rss=rss,
               rss_anon=peak["RssAnon"] or None, rss_file=peak["RssFile"] or None,
               rss_samples=peak["samples"])
    du = subprocess.run(["du", "-sk", state], capture_output=True, text=True)
    res["disk"] = int(du.stdout.split()[0]) * 1024 if du.returncode == 0 else None
    one_out = os.path.join(BUILD, "g-restart.jsonl")
    rc2, seconds2, rss2, _ = once(one_path, one_out)
    with open(one_out) as f:
        outs = [json.loads(l) for l in f if l.strip()]
    shutil.rmtree(state, ignore_errors=True)
    if rc2 != 0:
        res["status"] = "restart: exit status %d" % rc2
        return res
    if len(outs) != 1 or outs[0].get("key") != one_key or outs[0].get("payload") != "2":
        res["status"] = "restart: wrong output %r (expected %s -> 2)" % (outs, one_key)
        return res
    res.update(restart=seconds2, restart_rss=rss2)
    return res


def proc_status(pid):
    """The kB fields of /proc/PID/status that matter here, in bytes, or None."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("RssAnon", "RssFile", "RssShmem", "VmHWM", "VmRSS"):
                    out[k] = int(v.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return out


RESTORED = re.compile(r"changelogs: (\d+) task\(s\) restored in (\d+) ms, (\d+) record\(s\) read")


def log_time(line):
    """The wall-clock time (s since the epoch) of an eddy log line, or None."""
    try:
        t = datetime.datetime.strptime(line.split(" ", 2)[1], "%Y-%m-%dT%H:%M:%S.%fZ")
    except (IndexError, ValueError):
        return None
    return t.replace(tzinfo=datetime.timezone.utc).timestamp()


def restore_log(errpath):
    """From a job's log: the changelog records read and the ms it took (sums over
    the "changelogs: N task(s) restored in T ms, R record(s) read" lines), the tasks, and the
    wall-clock times of the assignment (the first restore's start: the
    "assigned" lines come after the restores) and of the last restore line."""
    n = ms = lines = 0
    assigned = last = None
    with open(errpath) as f:
        for line in f:
            m = RESTORED.search(line)
            t = log_time(line)
            if m:
                n, ms, lines = n + int(m.group(3)), ms + int(m.group(2)), lines + int(m.group(1))
                last = t
                if assigned is None and t is not None:
                    assigned = t - int(m.group(2)) / 1000.0
            elif assigned is None and line.rstrip().endswith(" assigned"):
                assigned = t
    return {"changes": n, "ms": ms, "tasks": lines, "assigned": assigned, "restored": last}


def r_command(brokers, state):
    return [EDDY, "run", "bench/count_job.lua", "--brokers", brokers, "--app-id", R_APP,
            "--guarantee", "at_least_once", "--commit-interval", str(COMMIT_MS),
            "--state-dir", state, "--no-watch"] + GROUP_X


def r_env():
    return dict(os.environ, BENCH_IN=R_TOPIC, BENCH_OUT=R_OUT)


def recover(step, brokers, wm, state, probe, check, producer, reader):
    """One restart of scenario r on `state`: spawn the job, produce `probe` (a
    new key) and `check` (a key counted once already) right after, and time
    until the probe's count is in the output topic (then wait for the check's
    too: it must be 2). Stops the job (SIGTERM) and reads its log. Returns a
    dict: status, seconds (spawn to the probe's output), what the log says."""
    name = "eddy-count-recovery-%s" % step
    errpath = os.path.join(BUILD, "%s.stderr" % name)
    reader.assign([TopicPartition(R_OUT, i, o) for i, o in enumerate(wm.offsets(R_OUT))])
    res = {"name": name, "status": "ok", "stderr": errpath}
    seen, other = {}, 0
    with open(errpath, "w") as errf:
        wall0, t0 = time.time(), time.monotonic()
        proc = subprocess.Popen(r_command(brokers, state), stdout=subprocess.DEVNULL,
                                stderr=errf, cwd=ROOT, env=r_env())
        try:
            producer.produce(R_TOPIC, b"1", probe)
            producer.produce(R_TOPIC, b"1", check)
            if producer.flush(10):
                res["status"] = "the probe records were not delivered"
                return res
            while probe not in seen or check not in seen:
                if proc.poll() is not None:
                    res["status"] = "exited early (status %d)" % proc.returncode
                    break
                if time.monotonic() - t0 > TIMEOUT:
                    res["status"] = "timed out after %.0f s (probe %s)" % (
                        TIMEOUT, "seen" if probe in seen else "not seen")
                    break
                if wm.broker.poll() is not None:
                    raise BrokerGone("the broker exited (status %s)" % wm.broker.returncode)
                for m in reader.consume(1000, 0.05):
                    if m.error():
                        continue
                    if m.key() in (probe, check) and m.key() not in seen:
                        seen[m.key()] = (m.value(), time.monotonic() - t0)
                    else:
                        other += 1
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    reader.unassign()
    rl = restore_log(errpath)
    res.update(replayed=other, restore=rl,
               join=rl["assigned"] - wall0 if rl["assigned"] else None,
               restore_end=rl["restored"] - wall0 if rl["restored"] else None)
    if probe in seen:
        res["seconds"] = seen[probe][1]
    if res["status"] == "ok":
        if seen[probe][0] != b"1" or seen[check][0] != b"2":
            res["status"] = "wrong counts: %s -> %r (expected 1), %s -> %r (expected 2)" % (
                probe.decode(), seen[probe][0], check.decode(), seen[check][0])
    return res


def run_r(brokers, broker_pid, wm):
    """Scenario r: fill a count store with G_KEYS keys, kill -9, then the two
    restarts (recover()). Returns a result dict: the fill's rate as "rate",
    r1 and r2 (recover()'s dicts)."""
    name = "eddy-count-recovery"
    states = [os.path.join(BUILD, "state-r1"), os.path.join(BUILD, "state-r2")]
    for st in states:
        shutil.rmtree(st, ignore_errors=True)
    errpath = os.path.join(BUILD, "%s-fill.stderr" % name)
    errf = open(errpath, "w")
    base = wm.high(R_OUT)
    group = Consumer({"bootstrap.servers": brokers, "group.id": R_APP,
                      "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": brokers, "partitioner": "murmur2_random",
                         "linger.ms": 0})
    reader = Consumer({"bootstrap.servers": brokers, "group.id": "bench-r-reader",
                       "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    started = time.monotonic()
    proc = subprocess.Popen(r_command(brokers, states[0]), stdout=subprocess.DEVNULL,
                            stderr=errf, cwd=ROOT, env=r_env())
    try:
        # 1. every key counted once, and committed
        res = watch(name + "-fill", proc, errf, errpath, wm, R_OUT, G_KEYS, broker_pid, base,
                    started, inputs=G_KEYS, stop=False)
        res["name"] = name
        if not res["status"].startswith("ok"):
            return res
        t_out = time.monotonic()
        tps = [TopicPartition(R_TOPIC, i) for i in range(PARTS)]
        while True:
            done = sum(max(tp.offset, 0) for tp in group.committed(tps, timeout=10))
            now = time.monotonic()
            if done >= G_KEYS and now - t_out >= 2 * COMMIT_MS / 1000.0:
                break
            if proc.poll() is not None or now - t_out > TIMEOUT:
                res["status"] = "the group committed %d of %d offsets (%s)" % (
                    done, G_KEYS, "job exited" if proc.poll() is not None else "timed out")
                return res
            time.sleep(0.1)
        res["commit_wait"] = time.monotonic() - t_out
        proc.kill()                         # kill -9
        proc.wait()
        cl, task_cl = changelogs(R_APP, "counts")
        lo, hi = wm.low(cl), wm.high(cl)
        res["changelog"] = "%s %d, %s %d (commit markers and stream times)" % (
            cl, hi, task_cl, wm.high(task_cl))
        log("r) %d keys counted (%.0f records/s), all committed %.1f s after the last "
            "output; killed (SIGKILL); changelog records: %s; low watermarks of %s: %d" % (
                G_KEYS, res.get("rate", 0), res["commit_wait"], res["changelog"], cl, lo))
        if lo:
            res["status"] = ("%s dropped %d record(s) (low watermarks > 0: over the broker's "
                             "~5 MiB per partition): a restore would be incomplete; use more "
                             "partitions" % (cl, lo))
            log("r) FAILED: %s" % res["status"])
            return res
        # 2. r1: the same state dir; r2: stopped, then an empty state dir
        for step, st, probe, check in (("r1", states[0], b"probe-r1", b"k-0000000"),
                                       ("r2", states[1], b"probe-r2", b"k-0000001")):
            r = recover(step, brokers, wm, st, probe, check, producer, reader)
            res[step] = r
            rl = r["restore"]
            log("%s) %s: probe out %s s after the spawn (assignment at %s s); restored "
                "%d change(s) in %d ms over %d task(s); %d other output(s)" % (
                    step, r["status"], "%.2f" % r["seconds"] if "seconds" in r else "-",
                    "%.2f" % r["join"] if r["join"] is not None else "-",
                    rl["changes"], rl["ms"], rl["tasks"], r["replayed"]))
            if r["status"] != "ok":
                res["status"] = "%s: %s" % (step, r["status"])
                break
        return res
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        group.close()
        reader.close()
        for st in states:
            shutil.rmtree(st, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def records_in(url):
    """eddy_records_in_total from a job's --http /metrics, or None."""
    try:
        with urllib.request.urlopen(url, timeout=2) as f:
            for line in f.read().decode().splitlines():
                if line.startswith("eddy_records_in_total "):
                    return int(float(line.split()[1]))
    except (OSError, ValueError):
        return None
    return None


def j_command(brokers, group, state, stream, out, extra=()):
    return [EDDY, "run", "bench/join_table.lua", "--brokers", brokers, "--app-id", group,
            "--state-dir", state, "--no-watch"] + list(extra) + GROUP_X, \
        {"BENCH_TABLE": J_TABLE, "BENCH_STREAM": stream, "BENCH_OUT": out}


def run_j(rnd, brokers, broker_pid, wm):
    """Scenario j, one round: load the table alone (its load time), stop, then
    the stream part on the same state (run_kafka). Returns run_kafka's result
    with the table load's figures added (table_s, table_rate, table_wall)."""
    name = "eddy-join-table-%d" % rnd
    group, out = group_of("j", rnd), out_topic("j", rnd)
    state = os.path.join(BUILD, "state-j")
    shutil.rmtree(state, ignore_errors=True)
    # 1. the table alone
    port = free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    cmd, env = j_command(brokers, group, state, J_EMPTY, out, ["--http", "127.0.0.1:%d" % port])
    errpath = os.path.join(BUILD, "%s-table.stderr" % name)
    started = time.monotonic()
    t0 = t1 = None
    status = "ok"
    with open(errpath, "w") as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, cwd=ROOT,
                                env=dict(os.environ, **env, **jit_env(name + "-table")))
        try:
            while True:
                n = records_in(url)
                now = time.monotonic()
                if n and t0 is None:
                    t0 = now
                if n is not None and n >= J_KEYS:
                    t1 = now
                    break
                if proc.poll() is not None:
                    status = "table: exited early (status %d)" % proc.returncode
                    break
                if now - started > TIMEOUT:
                    status = "table: timed out after %.0f s (%s records in)" % (TIMEOUT, n)
                    break
                if wm.broker.poll() is not None:
                    raise BrokerGone("the broker exited (status %s)" % wm.broker.returncode)
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)     # commits the table's state and offsets
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    table_wall = time.monotonic() - started
    if status == "ok" and proc.returncode != 0:
        status = "table: exit status %d after SIGTERM" % proc.returncode
    if status != "ok":
        shutil.rmtree(state, ignore_errors=True)
        return {"name": name, "status": status, "log": "", "stderr": errpath}
    # 2. the stream part, on the state the table left
    cmd, env = j_command(brokers, group, state, J_STREAM, out)
    res = run_kafka(name, cmd, wm, out, N, broker_pid, env)
    shutil.rmtree(state, ignore_errors=True)
    res["table_wall"] = table_wall
    if t1 is not None and t0 is not None and t1 > t0:
        res["table_s"] = t1 - t0
        res["table_rate"] = J_KEYS / (t1 - t0)
    return res


def windows_available():
    """Does this eddy build have windowed aggregations? A tiny file-mode run."""
    d = os.path.join(BUILD, "probe-windows")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "in.jsonl"), "w") as f:
        f.write('{"key":"a","payload":"1","ts":1000}\n')
    p = subprocess.run([EDDY, "run", "bench/window_count.lua", "--input",
                        os.path.join(d, "in.jsonl"), "--output", "/dev/null",
                        "--state-dir", os.path.join(d, "state"), "--no-watch"],
                       capture_output=True, text=True, cwd=ROOT)
    shutil.rmtree(d, ignore_errors=True)
    if p.returncode == 0:
        return True, ""
    why = (p.stderr.strip().splitlines() or ["exit status %d" % p.returncode])[-1]
    return False, why


# ---------------------------------------------------------------- main

SCENARIOS = [   # key, name, label, Kafka?
    ("a", "c-passthrough", "C passthrough, librdkafka (ceiling)"),
    ("b", "eddy-passthrough", "eddy passthrough"),
    ("c", "eddy-json", "eddy JSON filter"),
    ("d", "python-json", "Python JSON filter, confluent_kafka"),
    ("e", "eddy-json-file", "eddy JSON filter, file mode"),
    ("f", "eddy-window-count", "eddy tumbling-window count, 100k keys"),
    ("g", "eddy-count-keys", "eddy count, 1M keys, file mode"),
    ("h", "eddy-window-count-eos", "job f, exactly_once"),
    ("j", "eddy-join-table", "eddy stream-table join, 1M-key table"),
    ("l", "eddy-lines-file", "eddy map+filter, lines, file mode"),
    ("r", "eddy-count-recovery", "eddy count, 1M keys, Kafka (r: fill)"),
]


def out_topic(key, rnd):
    return "bench-out-%s-%d" % (key, rnd)


def mib(n):
    return "%.1f MiB" % (n / 1048576.0) if n else "-"


def fmt_rate(r):
    return "%10.0f" % r["rate"] if r and "rate" in r else "%10s" % "-"


def main():
    os.makedirs(BUILD, exist_ok=True)
    for tool in (EDDY, PASSTHROUGH):
        if not os.access(tool, os.X_OK):
            raise SystemExit("bench: %s is missing (run `make` and bench/run.sh)" % tool)
    bcmd = [EDDY, "broker", "--topic", "%s:%d" % (IN_TOPIC, PARTS)]
    bcmd += ["--topic", "%s:%d" % (F_TOPIC, PARTS)]
    for rnd in range(1, ROUNDS + 1):
        for key in KAFKA_KEYS:
            if key not in ONLY:
                continue
            bcmd += ["--topic", "%s:%d" % (out_topic(key, rnd), PARTS)]
            if key in "fh":     # changelogs: one partition per task
                for t in changelogs(group_of(key, rnd), "window-counts"):
                    bcmd += ["--topic", "%s:%d" % (t, PARTS)]
    if "r" in ONLY:
        for t in [R_TOPIC, R_OUT] + changelogs(R_APP, "counts"):
            bcmd += ["--topic", "%s:%d" % (t, PARTS)]
    if "j" in ONLY:
        topics = [J_TABLE, J_STREAM, J_EMPTY]
        for rnd in range(1, ROUNDS + 1):
            topics += [out_topic("j", rnd)] + changelogs(group_of("j", rnd), J_STORE)
        for t in topics:
            bcmd += ["--topic", "%s:%d" % (t, J_PARTS)]
            TOPIC_PARTS[t] = J_PARTS
    broker_err = open(os.path.join(BUILD, "broker.stderr"), "w")
    broker = subprocess.Popen(bcmd, stdout=subprocess.PIPE, stderr=broker_err, text=True)
    try:
        line = broker.stdout.readline()
        if not line.startswith("bootstrap: "):
            raise SystemExit("bench: the broker did not start: %r" % line)
        brokers = line.split(" ", 1)[1].strip()
        log("broker at %s, %s:%d" % (brokers, IN_TOPIC, PARTS))
        return bench(brokers, broker)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
        broker_err.close()


def group_of(key, rnd):
    """Kafka scenario `key`'s consumer group (and app id) in round `rnd`."""
    return "bench-%s-%d" % (key, rnd)


def command(key, brokers, rnd, out):
    """The command line and extra environment of Kafka scenario `key`."""
    group = group_of(key, rnd)
    if key == "a":
        return [PASSTHROUGH, brokers, group, IN_TOPIC, out] + GROUP_X, {}
    if key == "b":
        return [EDDY, "run", "bench/passthrough.lua", "--brokers", brokers, "--app-id",
                group] + GROUP_X, {"BENCH_OUT": out}
    if key == "c":
        return [EDDY, "run", "bench/json_job.lua", "--brokers", brokers, "--app-id",
                group] + GROUP_X, {"BENCH_OUT": out}
    if key in "fh":             # h: job f under exactly_once
        state = os.path.join(BUILD, "state-%s" % key)
        shutil.rmtree(state, ignore_errors=True)
        guarantee = "exactly_once" if key == "h" else "at_least_once"
        return [EDDY, "run", "bench/window_count.lua", "--brokers", brokers, "--app-id", group,
                "--guarantee", guarantee, "--state-dir", state, "--no-watch"] + GROUP_X, \
            {"BENCH_OUT": out}
    return [PY, "bench/json_job.py", brokers, group, IN_TOPIC, out] + GROUP_X, {}


def bench(brokers, broker):
    inpath = os.path.join(BUILD, "input.jsonl")
    t = time.monotonic()
    recs, kept = generate(inpath)
    log("generated %d records (%.1f s), %d pass the JSON filter; %s" %
        (N, time.monotonic() - t, kept, inpath))
    wm = Watermarks(brokers, broker)
    if any(k in ONLY for k in "abcd"):     # the others read their own topics or files
        t = time.monotonic()
        load(brokers, recs)
        hi, lo = wm.high(IN_TOPIC), wm.low(IN_TOPIC)
        log("loaded %s in %.1f s: %d records, low watermarks %d" %
            (IN_TOPIC, time.monotonic() - t, hi, lo))
        if hi != N or lo != 0:
            raise SystemExit("bench: %s holds offsets %d..%d, expected 0..%d (the broker "
                             "dropped data? use more partitions)" % (IN_TOPIC, lo, hi, N))
    del recs
    notes = {}
    if "f" in ONLY or "h" in ONLY:
        ok, why = windows_available()
        if not ok:
            for k in "fh":
                notes[k] = "skipped: this build has no windowed aggregations (%s)" % why
            log("f, h) %s" % notes["f"])
        else:
            t = time.monotonic()
            load(brokers, generate_f(), F_TOPIC)
            hi, lo = wm.high(F_TOPIC), wm.low(F_TOPIC)
            log("loaded %s in %.1f s: %d records over %d keys" %
                (F_TOPIC, time.monotonic() - t, hi, F_KEYS))
            if hi != N or lo != 0:
                raise SystemExit("bench: %s holds offsets %d..%d, expected 0..%d"
                                 % (F_TOPIC, lo, hi, N))
    if "r" in ONLY:
        t = time.monotonic()
        load(brokers, generate_r(), R_TOPIC)
        hi, lo = wm.high(R_TOPIC), wm.low(R_TOPIC)
        log("loaded %s in %.1f s: %d records with distinct keys, low watermarks %d" %
            (R_TOPIC, time.monotonic() - t, hi, lo))
        if hi != G_KEYS or lo != 0:
            raise SystemExit("bench: %s holds offsets %d..%d, expected 0..%d (the broker "
                             "dropped data? use more partitions)" % (R_TOPIC, lo, hi, G_KEYS))
    if "j" in ONLY:
        t = time.monotonic()
        table, stream = generate_j()
        load(brokers, table, J_TABLE)
        load(brokers, stream, J_STREAM)
        del table, stream
        for topic, n in ((J_TABLE, J_KEYS), (J_STREAM, N)):
            hi, lo = wm.high(topic), wm.low(topic)
            if hi != n or lo != 0:
                raise SystemExit("bench: %s holds offsets %d..%d, expected 0..%d (the broker "
                                 "dropped data? use more partitions)" % (topic, lo, hi, n))
        log("loaded %s (%d keys) and %s (%d records) in %.1f s, %d partitions each" %
            (J_TABLE, J_KEYS, J_STREAM, N, time.monotonic() - t, J_PARTS))
    g_inputs = None
    if "g" in ONLY:
        t = time.monotonic()
        gpath, gone = os.path.join(BUILD, "input-g.jsonl"), os.path.join(BUILD, "input-g-one.jsonl")
        g_inputs = (gpath, gone, generate_g(gpath, gone))
        log("generated %d distinct keys for g (%.1f s); %s" % (G_KEYS, time.monotonic() - t, gpath))

    l_inputs = None
    if "l" in ONLY or "s" in ONLY:
        t = time.monotonic()
        l_inputs = (os.path.join(BUILD, "input-l.txt"), os.path.join(BUILD, "input-l-one.txt"))
        generate_l(*l_inputs)
        log("generated %d lines for l (%.1f s); %s" % (L_LINES, time.monotonic() - t,
                                                       l_inputs[0]))

    names = {k: n for k, n, _ in SCENARIOS}
    results = {k: [] for k in names}
    results.update(s=[], v=[])
    try:
        run_rounds(brokers, broker.pid, wm, inpath, kept, names, results, notes, g_inputs,
                   l_inputs)
        aborted = None
    except BrokerGone as e:
        aborted = str(e)
        log("aborted: %s" % aborted)
    wm.close()

    with open(os.path.join(BUILD, "results.json"), "w") as f:    # every run's figures
        json.dump({"results": results, "kept": kept, "notes": notes}, f, default=str)
    summary = summarize(results, kept, notes)
    if aborted:
        summary += "ABORTED: %s; the figures above are partial.\n" % aborted
    sys.stdout.write(summary)
    with open(os.path.join(BUILD, "summary.txt"), "w") as f:
        f.write(summary)
    log("summary saved to %s" % os.path.join(BUILD, "summary.txt"))
    return 1 if aborted else 0


def run_rounds(brokers, broker_pid, wm, inpath, kept, names, results, notes, g_inputs,
               l_inputs):
    # rounds interleave the scenarios, so that a slow spell of the machine
    # does not land on one scenario only
    for rnd in range(1, ROUNDS + 1):
        for key in KAFKA_KEYS:
            if key not in ONLY or key in notes:
                continue
            name = "%s-%d" % (names[key], rnd)
            out = out_topic(key, rnd)
            cmd, env = command(key, brokers, rnd, out)
            expected = N if key in "abfh" else kept
            r = run_kafka(name, cmd, wm, out, expected, broker_pid, env)
            if key in "fh":
                shutil.rmtree(os.path.join(BUILD, "state-%s" % key), ignore_errors=True)
            results[key].append(r)
            log("%s) %s: %s, %s records/s; %s" % (key, name, r["status"], fmt_rate(r).strip(),
                                                   r["log"]))
        if "j" in ONLY:
            t = time.monotonic()
            r = run_j(rnd, brokers, broker_pid, wm)
            results["j"].append(r)
            log("j) %s: %s, table of %d keys loaded in %s s, then %s records/s; %.1f s in all; %s" % (
                r["name"], r["status"], J_KEYS,
                "%.2f" % r["table_s"] if "table_s" in r else "-", fmt_rate(r).strip(),
                time.monotonic() - t, r.get("log", "")))
        if "e" in ONLY:
            name = "%s-%d" % (names["e"], rnd)
            r = run_file(name, "bench/json_job.lua", inpath)
            results["e"].append(r)
            log("e) %s: %s, %s records/s; %s" % (name, r["status"], fmt_rate(r).strip(),
                                                  r["log"]))
        if "g" in ONLY:
            r = run_g(rnd, *g_inputs)
            results["g"].append(r)
            log("g) %s: %s, %s records/s, restart %s s; %s" % (
                r["name"], r["status"], fmt_rate(r).strip(),
                "%.3f" % r["restart"] if "restart" in r else "-", r["log"]))
            log("g) peak RssAnon %s, RssFile %s (%d samples), VmHWM %s" % (
                mib(r.get("rss_anon")), mib(r.get("rss_file")), r.get("rss_samples", 0),
                mib(r.get("rss"))))
        if "l" in ONLY:
            name = "%s-%d" % (names["l"], rnd)
            r = run_file(name, "bench/lines_job.lua", l_inputs[0], L_LINES,
                         ["--input-format", "lines", "--no-watch"])
            results["l"].append(r)
            log("l) %s: %s, %s records/s; %s" % (name, r["status"], fmt_rate(r).strip(),
                                                  r["log"]))
    if "r" in ONLY:     # once: ~30 s, and it leaves 1M keys of state in the broker
        r = run_r(brokers, broker_pid, wm)
        results["r"].append(r)
        log("r) %s: %s" % (r["name"], r["status"]))
    if "s" in ONLY:     # once: 2 x 30 short runs, ~1 s
        r = run_startup(l_inputs[1])
        results["s"].append(r)
        log("s) %s: %s; run median %.1f ms, p99 %.1f ms; `eddy version` median %.1f ms, "
            "p99 %.1f ms" % (r["name"], r["status"], pct(r["run"], 50), pct(r["run"], 99),
                              pct(r["version"], 50), pct(r["version"], 99)))
    if "v" in ONLY:     # once: ~15 s
        r = run_reload()
        results["v"].append(r)
        log("v) bench/reload.sh: %s in %.1f s; swap p99 %s ms" % (
            r["status"], r["wall"], r.get("swap_p99", "-")))


def median_run(runs):
    """The run with the median rate (the lower middle one of an even count);
    None when no run measured anything."""
    ok = sorted((r for r in runs if "rate" in r), key=lambda r: r["rate"])
    return ok[(len(ok) - 1) // 2] if ok else None


def summarize(results, kept, notes=None):
    notes = notes or {}
    expected = {"a": N, "b": N, "c": kept, "d": kept, "f": N, "h": N, "j": N, "r": G_KEYS}
    out = []
    out.append("eddy bench: %d records of ~100 bytes (%d keys), topic %s:%d on one `eddy broker`, "
               "%d round(s)" % (N, NKEYS, IN_TOPIC, PARTS, ROUNDS))
    out.append("")
    out.append("%-3s %-36s %10s %19s %8s %7s %13s %6s  %s" % (
        "", "scenario", "records/s", "(min..max)", "window_s", "wall_s", "cpu job(main)",
        "broker", "outputs/status"))
    med = {}
    for k, _, label in SCENARIOS:
        runs = results.get(k, [])
        r = median_run(runs)
        med[k] = r
        rates = [x["rate"] for x in runs if "rate" in x]
        rng = ("(%7.0f..%7.0f)" % (min(rates), max(rates))) if rates else ""
        window = "%8.2f" % r["seconds"] if r else "%8s" % "-"
        wall = "%7.2f" % r["wall"] if r else "%7s" % "-"
        cpu = "%5.2f (%5.2f)" % r["cpu"] if r and r.get("cpu") else "%13s" % "-"
        bcpu = "%6.2f" % r["broker_cpu"][0] if r and r.get("broker_cpu") else "%6s" % "-"
        bad = ["%s: %s" % (x["name"], x["status"]) for x in runs if x["status"] != "ok"]
        if k in notes:
            st = notes[k]
        elif not runs:
            st = "not run"
        elif k in expected:
            st = "%d x %d" % (len(runs), expected[k])
        else:
            st = "%d x file" % len(runs)
        if bad:
            st += "; " + "; ".join(bad)
        out.append("%-3s %-36s %s %19s %s %s %s %s  %s" % (k + ")", label, fmt_rate(r), rng,
                                                         window, wall, cpu, bcpu, st))
    out.append("")

    def rate(k):
        return med[k]["rate"] if med.get(k) else None

    a, b, c, d, e, f, h, j, gr, lr = (rate(k) for k in "abcdefhjgl")
    g = med.get("g")
    rr = (results.get("r") or [None])[-1]
    r1, r2 = (rr or {}).get("r1") or {}, (rr or {}).get("r2") or {}
    r2_restore = r2.get("restore") or {}
    restore_rate = (r2_restore["changes"] * 1000.0 / r2_restore["ms"]
                    if r2.get("status") == "ok" and r2_restore.get("ms") else None)
    restored = r2_restore.get("changes") if r2.get("status") == "ok" else None
    restarts = sorted(r["restart"] for r in results.get("g", []) if "restart" in r)
    g_restart = restarts[(len(restarts) - 1) // 2] if restarts else None
    anons = [r["rss_anon"] for r in results.get("g", []) if r.get("rss_anon")]
    g_anon = max(anons) if anons else None          # the peak over every round
    st = (results.get("s") or [None])[-1]
    st_ok = st if st and st["status"] == "ok" else None
    rv = (results.get("v") or [None])[-1]
    swap_p99 = rv.get("swap_p99") if rv and rv["status"] == "ok" else None
    T = TARGETS
    # (scenarios needed, label, value, target text, limit, format); limit < 0: v < -limit
    targets = [
        ("ab", "passthrough / C ceiling (b/a)", b / a if a and b else None,
         ">= %.1f" % T["b/a"], T["b/a"], "%.2f"),
        ("ac", "JSON filter / C ceiling (c/a)", c / a if a and c else None,
         ">= %.1f" % T["c/a"], T["c/a"], "%.2f"),
        ("cd", "JSON filter / Python job (c/d)", c / d if c and d else None,
         ">= %.0f" % T["c/d"], T["c/d"], "%.2f"),
        ("af", "window count ALO / C ceiling (f/a)", f / a if a and f else None,
         ">= %.1f" % T["f/a"], T["f/a"], "%.2f"),
        ("fh", "window count EOS / ALO (h/f)", h / f if f and h else None,
         ">= %.1f" % T["h/f"], T["h/f"], "%.2f"),
        ("g", "count, 1M keys, file (g) rec/s", gr,
         ">= %.0fk" % (T["g"] / 1e3), T["g"], "%.0f"),
        ("l", "map+filter, lines, file (l) rec/s", lr,
         ">= %.0fM" % (T["l"] / 1e6), T["l"], "%.0f"),
        ("v", "reload swap p99 (v), ms", swap_p99,
         "< %.0f ms" % T["v_swap_p99_ms"], -T["v_swap_p99_ms"], "%.3f"),
        ("r", "restore from changelog (r2) rec/s", restore_rate,
         ">= %.0fM" % (T["r_restore"] / 1e6), T["r_restore"], "%.0f"),
        ("s", "start to exit, 1 line (s) median ms", pct(st_ok["run"], 50) if st_ok else None,
         "< %.0f ms" % T["s_ms"], -T["s_ms"], "%.1f"),
        ("g", "peak RssAnon, 1M keys (g), MB", g_anon / 1e6 if g_anon else None,
         "< %.0f MB" % (T["g_rss_anon"] / 1e6), -T["g_rss_anon"] / 1e6, "%.1f"),
    ]
    others = [
        ("e", "JSON filter, file mode (e) rec/s", e, ">= %.0fM" % (T["e"] / 1e6), T["e"], "%.0f"),
        ("g", "restart: reopen 1M keys + 1 rec, s", g_restart,
         "< %.0f s" % T["g_restart"], -T["g_restart"], "%.3f"),
        ("aj", "stream-table join / C ceiling (j/a)", j / a if a and j else None, "-", None,
         "%.2f"),
        ("bj", "stream-table join / passthr. (j/b)", j / b if b and j else None, "-", None,
         "%.2f"),
        ("r", "recovery, kill -9, same state (r1) s", r1.get("seconds"), "-", None, "%.2f"),
        ("r", "recovery, empty state dir (r2) s", r2.get("seconds"), "-", None, "%.2f"),
        ("r", "changelog records read (r2)", restored, "-", None, "%d"),
        ("s", "start to exit, 1 line (s) p99 ms", pct(st_ok["run"], 99) if st_ok else None,
         "-", None, "%.1f"),
        ("s", "`eddy version` (floor) median ms", pct(st_ok["version"], 50) if st_ok else None,
         "-", None, "%.1f"),
        ("g", "peak RSS, 1M keys (g, VmHWM) MiB", g["rss"] / 1048576.0 if g and g.get("rss")
         else None, "-", None, "%.1f"),
    ]

    def table(title, rows):
        out.append("%-36s %11s %10s  %s" % (title, "measured", "target", "result"))
        for need, label, v, tgt, lim, fmt in rows:
            if v is None and not all(x in ONLY for x in need):
                result = "n/a (not run)"
            elif v is None and any(x in notes for x in need):
                result = "SKIP (see above)"
            elif v is None:
                result = "FAIL (not measured)"
            elif lim is None:                   # no target: a figure to read
                result = "-"
            elif lim < 0:                       # an upper bound: v < -lim
                result = "PASS" if v < -lim else "FAIL"
            else:
                result = "PASS" if v >= lim else "FAIL"
            out.append("%-36s %11s %10s  %s" % (label, (fmt % v) if v is not None else "-",
                                                tgt, result))

    table("target (the Performance issue)", targets)
    out.append("")
    table("other figures", others)
    if g:
        mb = 1024.0 * 1024.0
        out.append("")
        out.append("g) state of %d keys (median run): LMDB on disk %s (du -s of the state dir%s); "
                   "peak RSS %s counting," % (
                       G_KEYS, "%.1f MiB" % (g["disk"] / mb) if g.get("disk") else "-",
                       ", %.0f bytes/key" % (g["disk"] / G_KEYS) if g.get("disk") else "",
                       "%.0f MiB" % (g["rss"] / mb) if g.get("rss") else "-"))
        out.append("   %s on restart; restart (reopen + 1 record + exit, whole process) %s s, "
                   "runs %s." % ("%.0f MiB" % (g["restart_rss"] / mb) if g.get("restart_rss") else "-",
                                 "%.3f" % g_restart if g_restart is not None else "-",
                                 ", ".join("%.3f" % x for x in restarts) or "-"))
        files = [r["rss_file"] for r in results.get("g", []) if r.get("rss_file")]
        out.append("   Without the mmap'd LMDB pages (/proc/PID/status every %d ms while "
                   "counting): peak RssAnon %s (rounds: %s), peak RssFile %s." % (
                       RSS_POLL_S * 1000, mib(g_anon),
                       ", ".join("%.1f" % (x / mb) for x in anons) or "-",
                       mib(max(files) if files else None)))
    if st:
        out.append("")
        out.append("s) start-up, %d runs each, interleaved: `eddy run bench/lines_job.lua` on one "
                   "line (file mode, spawn to exit) median %s ms, p99 %s ms," % (
                       STARTUP_RUNS, "%.1f" % pct(st["run"], 50) if st["run"] else "-",
                       "%.1f" % pct(st["run"], 99) if st["run"] else "-"))
        out.append("   min %s ms; `eddy version` median %s ms, p99 %s ms (the floor: exec, "
                   "dynamic linking); %s." % (
                       "%.1f" % st["run"][0] if st["run"] else "-",
                       "%.1f" % pct(st["version"], 50) if st["version"] else "-",
                       "%.1f" % pct(st["version"], 99) if st["version"] else "-", st["status"]))
    jm = med.get("j")
    if jm:
        loads = sorted(x["table_s"] for x in results.get("j", []) if "table_s" in x)
        walls = sorted(x["table_wall"] for x in results.get("j", []) if "table_wall" in x)
        load = loads[(len(loads) - 1) // 2] if loads else None
        out.append("")
        out.append("j) table of %d keys loaded alone: median %s (%s records/s; runs %s s), the "
                   "whole table run (spawn, group join," % (
                       J_KEYS, "%.2f s" % load if load else "-",
                       "%.0f" % (J_KEYS / load) if load else "-",
                       ", ".join("%.2f" % x for x in loads) or "-"))
        out.append("   load, commit, stop) median %s; then the stream part: %s records/s "
                   "(median; its run %.1f s from spawn to the last output)." % (
                       "%.1f s" % walls[(len(walls) - 1) // 2] if walls else "-",
                       fmt_rate(jm).strip(), jm.get("wall", 0)))
    if rr:
        def at(x, key):
            return "%.2f s" % x[key] if x.get(key) is not None else "-"

        out.append("")
        out.append("r) fill: %d keys counted, %s records/s (first to last output), all offsets "
                   "committed %s after the last output; then kill -9;" % (
                       G_KEYS, fmt_rate(rr).strip(), at(rr, "commit_wait")))
        out.append("   records in the changelogs then: %s." % rr.get("changelog", "-"))
        for step, x, what in (("r1", r1, "same --state-dir"), ("r2", r2, "empty --state-dir")):
            if not x:
                continue
            rl = x["restore"]
            out.append("   %s (%s): %s; partitions assigned at %s, restored at %s, "
                       "probe's count out at %s after the spawn;" % (
                           step, what, x["status"], at(x, "join"), at(x, "restore_end"),
                           at(x, "seconds")))
            out.append("       restored %d change(s) in %d ms (sum over %d task(s)%s); %d "
                       "other output(s) seen meanwhile (replayed inputs)." % (
                           rl["changes"], rl["ms"], rl["tasks"],
                           ", %.0f/s" % (rl["changes"] * 1000.0 / rl["ms"]) if rl["ms"] else "",
                           x["replayed"]))
        if restored is not None:
            out.append("   r2 restored %d change(s) for %d keys (%+d)." % (
                           restored, G_KEYS, restored - G_KEYS))
    out.append("")
    out.append("records/s: the median round; input records per second from the first output "
               "seen to all outputs delivered")
    out.append("  (Kafka: startup and group join excluded, wall_s includes them); file mode: "
               "the whole process, output to /dev/null.")
    out.append("f: %d records over %d keys on topic %s, 1 ms of event time apart, 1 min "
               "tumbling windows, at_least_once; f/a compares it with the ceiling a." % (
                   N, F_KEYS, F_TOPIC))
    out.append("g: %d records, one per key, into a fresh --state-dir (1 task); records/s over "
               "the whole process." % G_KEYS)
    out.append("h: job f with --guarantee exactly_once (a transaction per 1 s commit interval); "
               "h/f is the cost of exactly-once.")
    out.append("j: a table of %d keys (%s) and %d stream records (%s), %d partitions each, "
               "short values; the table loads alone first" % (J_KEYS, J_TABLE, N, J_STREAM, J_PARTS))
    out.append("  (its load time: the first to the last table record processed, from --http's "
               "eddy_records_in_total), then the stream part")
    out.append("  runs on that state (records/s: outputs, as a-h); j/a and j/b compare it with "
               "the passthroughs (bench-in: %d partitions, ~100-byte values)." % PARTS)
    out.append("r: %s (%d partitions), bench/count_job.lua at_least_once, commit interval %d ms, "
               "%s. Recovery = wall time from the" % (R_TOPIC, PARTS, COMMIT_MS,
                                                      " ".join(GROUP_X[1::2])))
    out.append("  spawn to the probe's count in the output topic: process start, the group join "
               "(~3 s on the development broker),")
    out.append("  restore, then the probe's processing and delivery; r1 also waits for the "
               "killed member's session to time out")
    out.append("  (its partitions stay assigned to it until then). Restore rate: changelog records "
               "read / ms, from the \"changelogs: N task(s) restored in T ms, R record(s) read\"")
    out.append("  log lines of r2 (all assigned tasks restore together, in two passes).")
    out.append("l: %d distinct lines (15-70 bytes, ~43 %% kept), --input-format lines, map_values("
               "string.upper) + a filter on the length, output to /dev/null;" % L_LINES)
    out.append("  records/s over the whole process (spawn to exit).")
    out.append("s: p99 of %d runs is the slowest run. v: bench/reload.sh (its output below); "
               "swap = from the new version's check to it being" % STARTUP_RUNS)
    out.append("  live at the batch boundary (eddy_runner_swap, logged as \"swapped in ... in T "
               "ms\"); its p99 over the reloads.")
    out.append("cpu: cores busy in that window (1.00 = one core) by the job's process, its main "
               "thread, and the broker; the machine has %d cores." % os.cpu_count())
    w = [r["watcher_cpu"] for runs in results.values() for r in runs if "watcher_cpu" in r]
    if w:
        out.append("  The watcher (this script, polling the output topic every %d ms) used %.2f "
                   "cores on average." % (POLL_S * 1000, sum(w) / len(w)))
    if PERF:
        out.append("BENCH_PERF=1: perf was recording the eddy scenarios; their figures are "
                   "perturbed.")
    if JIT_P:
        out.append("BENCH_JIT_P=%s: LuaJIT's profiler was running in the eddy jobs; their "
                   "figures are perturbed." % JIT_P)
    if rv:
        out.append("")
        out.append("v) sh bench/reload.sh: %s (%.1f s)" % (rv["status"], rv["wall"]))
        out.extend(rv["text"].rstrip("\n").split("\n"))
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
