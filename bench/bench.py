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

A Kafka scenario is watched from the outside: the sum of its output topic's
high watermarks is polled every few ms (one ListOffsets request). The clock
runs from the first poll that sees output to the poll that sees every
expected output delivered (outputs = inputs for a passthrough; for the JSON
filter the expected count is computed when the data is generated); the job
is then stopped with SIGTERM. Group join and startup are outside the window.
records/s counts input records: (outputs seen in the window) x inputs/outputs
over the window's length.

Environment: BENCH_RECORDS (1000000), BENCH_PARTITIONS (64), BENCH_TIMEOUT
(seconds per scenario, 120), BENCH_PERF=1 to also record `perf` profiles of
the eddy scenarios into build/bench/perf-*.txt.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.path.join(ROOT, "build", "bench")
EDDY = os.path.join(ROOT, "build", "eddy")
PASSTHROUGH = os.path.join(BUILD, "passthrough")
PY = "/usr/bin/python3"

N = int(os.environ.get("BENCH_RECORDS", "1000000"))
PARTS = int(os.environ.get("BENCH_PARTITIONS", "64"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "120"))
PERF = os.environ.get("BENCH_PERF", "") not in ("", "0")
NKEYS = 5000
POLL_S = 0.005

IN_TOPIC = "bench-in"
GROUP_X = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000"]

TARGETS = {"b/a": 0.8, "c/d": 3.0, "e": 1_000_000}


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


def load(brokers, recs):
    p = Producer({
        "bootstrap.servers": brokers, "linger.ms": 20, "batch.num.messages": 10000,
        "queue.buffering.max.messages": 2000000, "queue.buffering.max.kbytes": 1048576,
        "compression.type": "none", "enable.idempotence": True,
    })
    errors = [0]

    def dr(err, msg):
        if err is not None:
            errors[0] += 1
    produce, poll = p.produce, p.poll
    for i, (k, v) in enumerate(recs):
        while True:
            try:
                produce(IN_TOPIC, v, k, on_delivery=dr)
                break
            except BufferError:
                poll(0.01)
        if i % 10000 == 0:
            poll(0)
    left = p.flush(60)
    if left or errors[0]:
        raise SystemExit("bench: loading %s failed: %d undelivered, %d errors"
                         % (IN_TOPIC, left, errors[0]))


class Watermarks:
    """Sums of a topic's high (and low) watermarks, one ListOffsets request."""

    def __init__(self, brokers):
        self.c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-watcher",
                           "enable.auto.commit": False})

    def high(self, topic):
        tps = [TopicPartition(topic, i, -1) for i in range(PARTS)]    # -1: latest
        return sum(max(tp.offset, 0) for tp in self.c.offsets_for_times(tps, timeout=10))

    def low(self, topic):
        tps = [TopicPartition(topic, i, -2) for i in range(PARTS)]    # -2: earliest
        return sum(max(tp.offset, 0) for tp in self.c.offsets_for_times(tps, timeout=10))

    def close(self):
        self.c.close()


# ---------------------------------------------------------------- scenarios

def start_perf(name, pid):
    if not PERF or not shutil.which("perf"):
        return None
    data = os.path.join(BUILD, "perf-%s.data" % name)
    return subprocess.Popen(["perf", "record", "-q", "-F", "499", "-g", "-p", str(pid),
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


def run_kafka(name, cmd, wm, out_topic, expected):
    """Run one Kafka scenario; returns a result dict."""
    errpath = os.path.join(BUILD, "%s.stderr" % name)
    errf = open(errpath, "w")
    base = wm.high(out_topic)
    if base:
        log("%s: output topic %s is not empty (%d)" % (name, out_topic, base))
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, cwd=ROOT)
    perf = None
    t0 = out0 = t1 = None
    seen = 0
    status = "ok"
    while True:
        now = time.monotonic()
        seen = wm.high(out_topic) - base
        if t0 is None and seen > 0:
            t0, out0 = now, seen
            perf = start_perf(name, proc.pid) if name.startswith("eddy") else None
        if seen >= expected:
            t1 = now
            break
        if proc.poll() is not None:
            status = "exited early (status %d)" % proc.returncode
            break
        if now - started > TIMEOUT:
            status = "timed out after %.0f s" % TIMEOUT
            break
        time.sleep(POLL_S)
    stop_perf(name, perf)
    if proc.poll() is None:
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
        res["rate"] = (seen - out0) * (N / expected) / (t1 - t0)
        res["wall"] = t1 - started
    if seen > expected:
        res["status"] = "ok, %d duplicate output(s)" % (seen - expected)
    return res


def run_file(name, script, inpath):
    errpath = os.path.join(BUILD, "%s.stderr" % name)
    cmd = [EDDY, "run", script, "--input", inpath, "--output", "/dev/null"]
    with open(errpath, "w") as errf:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errf, cwd=ROOT)
        perf = start_perf(name, proc.pid)
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
        res["rate"] = N / (t1 - t0)
        res["wall"] = t1 - t0
    return res


# ---------------------------------------------------------------- main

def fmt_rate(r):
    return "%10.0f" % r["rate"] if "rate" in r else "%10s" % "-"


def main():
    os.makedirs(BUILD, exist_ok=True)
    for tool in (EDDY, PASSTHROUGH):
        if not os.access(tool, os.X_OK):
            raise SystemExit("bench: %s is missing (run `make` and bench/run.sh)" % tool)

    outs = {"a": "bench-out-c", "b": "bench-out-eddy", "c": "bench-out-json", "d": "bench-out-py"}
    bcmd = [EDDY, "broker", "--topic", "%s:%d" % (IN_TOPIC, PARTS)]
    for t in outs.values():
        bcmd += ["--topic", "%s:%d" % (t, PARTS)]
    broker_err = open(os.path.join(BUILD, "broker.stderr"), "w")
    broker = subprocess.Popen(bcmd, stdout=subprocess.PIPE, stderr=broker_err, text=True)
    try:
        line = broker.stdout.readline()
        if not line.startswith("bootstrap: "):
            raise SystemExit("bench: the broker did not start: %r" % line)
        brokers = line.split(" ", 1)[1].strip()
        log("broker at %s, %s:%d" % (brokers, IN_TOPIC, PARTS))
        return bench(brokers, outs)
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
        broker_err.close()


def bench(brokers, outs):
    inpath = os.path.join(BUILD, "input.jsonl")
    t = time.monotonic()
    recs, kept = generate(inpath)
    log("generated %d records (%.1f s), %d pass the JSON filter; %s" %
        (N, time.monotonic() - t, kept, inpath))
    t = time.monotonic()
    load(brokers, recs)
    del recs
    wm = Watermarks(brokers)
    hi, lo = wm.high(IN_TOPIC), wm.low(IN_TOPIC)
    log("loaded %s in %.1f s: %d records, low watermarks %d" %
        (IN_TOPIC, time.monotonic() - t, hi, lo))
    if hi != N or lo != 0:
        raise SystemExit("bench: %s holds offsets %d..%d, expected 0..%d (the broker "
                         "dropped data? use more partitions)" % (IN_TOPIC, lo, hi, N))

    scen = [
        ("a", "c-passthrough", [PASSTHROUGH, brokers, "bench-c", IN_TOPIC, outs["a"]] + GROUP_X, N),
        ("b", "eddy-passthrough", [EDDY, "run", "bench/passthrough.lua", "--brokers", brokers,
                                   "--app-id", "bench-eddy-passthrough"] + GROUP_X, N),
        ("c", "eddy-json", [EDDY, "run", "bench/json_job.lua", "--brokers", brokers,
                            "--app-id", "bench-eddy-json"] + GROUP_X, kept),
        ("d", "python-json", [PY, "bench/json_job.py", brokers, "bench-py", IN_TOPIC,
                              outs["d"]] + GROUP_X, kept),
    ]
    results = {}
    for key, name, cmd, expected in scen:
        log("%s) %s ..." % (key, name))
        r = run_kafka(name, cmd, wm, outs[key], expected)
        results[key] = r
        log("%s) %s: %s, %s records/s; %s" % (key, name, r["status"],
                                               fmt_rate(r).strip(), r["log"]))
    wm.close()
    log("e) eddy-json-file ...")
    r = run_file("eddy-json-file", "bench/json_job.lua", inpath)
    results["e"] = r
    log("e) eddy-json-file: %s, %s records/s; %s" % (r["status"], fmt_rate(r).strip(), r["log"]))

    summary = summarize(results, kept)
    sys.stdout.write(summary)
    with open(os.path.join(BUILD, "summary.txt"), "w") as f:
        f.write(summary)
    log("summary saved to %s" % os.path.join(BUILD, "summary.txt"))
    return 0


def summarize(res, kept):
    rows = [
        ("a", "C passthrough on librdkafka (ceiling)", "%d" % N),
        ("b", "eddy passthrough", "%d" % N),
        ("c", "eddy JSON filter", "%d" % kept),
        ("d", "Python JSON filter (confluent_kafka)", "%d" % kept),
        ("e", "eddy JSON filter, file mode", "(/dev/null)"),
    ]
    out = []
    out.append("eddy bench: %d records of ~100 bytes, %d keys, topic %s:%d on one `eddy broker`"
               % (N, NKEYS, IN_TOPIC, PARTS))
    out.append("")
    out.append("%-3s %-40s %10s %9s %9s  %s" % ("", "scenario", "records/s", "window_s", "wall_s",
                                              "outputs / status"))
    for k, label, exp in rows:
        r = res.get(k, {})
        window = "%9.2f" % r["seconds"] if "seconds" in r else "%9s" % "-"
        wall = "%9.2f" % r["wall"] if "wall" in r else "%9s" % "-"
        st = r.get("status", "not run")
        outs = ("%d/%s" % (r["seen"], exp)) if "seen" in r else exp
        out.append("%-3s %-40s %s %s %s  %s %s" % (k + ")", label, fmt_rate(r), window, wall,
                                                  outs, "" if st == "ok" else st))
    out.append("")

    def rate(k):
        return res.get(k, {}).get("rate")

    checks = []
    a, b, c, d, e = (rate(k) for k in "abcde")
    checks.append(("b/a", "eddy passthrough / C passthrough", b / a if a and b else None,
                   ">= %.1f" % TARGETS["b/a"], TARGETS["b/a"], "%.2f"))
    checks.append(("c/d", "eddy JSON / Python JSON", c / d if c and d else None,
                   ">= %.1f" % TARGETS["c/d"], TARGETS["c/d"], "%.2f"))
    checks.append(("e", "eddy JSON, file mode, records/s", e,
                   ">= %d" % TARGETS["e"], TARGETS["e"], "%.0f"))
    out.append("%-5s %-34s %10s %10s  %s" % ("ratio", "", "measured", "target", "result"))
    for k, label, v, tgt, lim, f in checks:
        ok = v is not None and v >= lim
        out.append("%-5s %-34s %10s %10s  %s" % (k, label, (f % v) if v is not None else "-",
                                                tgt, "PASS" if ok else "FAIL"))
    out.append("")
    out.append("records/s: input records per second over the window from the first output seen "
               "to all outputs delivered")
    out.append("(Kafka scenarios; startup and group join excluded, wall_s includes them); "
               "file mode: whole process.")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
