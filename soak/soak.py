#!/usr/bin/python3
"""soak/soak.py: `make soak`, a long run of a windowed job under steady load
and faults, checked at the end against a reference (soak/README.md).

One `eddy broker` (with --control), one `eddy run` of soak/window_job.lua
(a tumbling-window count per key, 10 s windows, grace 5 s, emit = "final",
at_least_once by default) with --http, and this driver:

  * a producer thread (confluent_kafka) writing SOAK_RATE records/s to soak-in
    (SOAK_PARTITIONS partitions, SOAK_KEYS keys, value {"v":N}, record time =
    the wall clock; 1 % of the records out of order by up to 20 s, some of them
    late); now and then a malformed record (not JSON, or JSON without a numeric
    "v"), which must land in soak-dlq;
  * a sampler thread writing build/soak/samples.tsv every SOAK_SAMPLE_S
    seconds: throughput, the job's VmRSS and RssAnon, the state dir's size on
    disk (du), lag (the job's /status, and the group's committed offsets
    against the input's end);
  * the main thread applying events at seeded random moments (logged to
    build/soak/events.tsv): kill -9 and a restart on the same state dir, or on
    an empty one (the state comes back from the changelogs); the broker down
    and up again (`down -1` / `up -1` on the control FIFO); reloads (saving the
    script with the other of two equivalent versions, or SIGHUP); once a broken
    version, which must be refused while the old version keeps running; bursts
    of malformed records.

At the end: the producer stops, a flush record far ahead in event time goes to
every partition (it closes every window), the driver waits until the group has
committed the whole input, stops the job (SIGTERM: exit 0 expected), reads
soak-in, soak-out and soak-dlq back and compares:

  * the reference is computed from the input topic as read back (in offset
    order per partition, the stream time of a partition being the largest
    timestamp of its valid records so far: a record is counted in its window
    unless stream time has reached window stop + grace), and cross-checked
    against what the producer itself counted per key and window (nothing lost
    by the broker);
  * emit = "final" under at_least_once: a window's final result may be written
    more than once (a crash after the output, before the commit: the records
    are processed again from the committed state and close the window again),
    but every copy must equal the reference (the state is exact, so a re-run
    computes the same final count). Under exactly_once the same rule holds on
    the development broker (no transaction markers: an aborted transaction's
    outputs stay visible; a real cluster's read_committed reader would see one
    copy). So: the set of (key, window) in soak-out must equal the reference's,
    and every record of a (key, window) must carry the reference's count;
  * the DLQ must hold exactly the malformed records: the set of
    (partition, offset) named by its eddy.partition/eddy.offset headers equals
    the set of malformed records in soak-in (copies allowed under
    at_least_once, counted), each with its payload, a non-empty eddy.error and
    the right eddy.stage (deserialize for non-JSON, process for the rest);
  * every topic's low watermark is still 0 (the development broker keeps ~5 MiB
    or 100,000 batches per partition and drops older data silently).

Prints a summary (also build/soak/summary.txt), draws build/soak/soak.png with
gnuplot, exits 1 when a check fails.

Environment: SOAK_MINUTES (30), SOAK_RATE (3000 records/s), SOAK_PARTITIONS
(64), SOAK_KEYS (320), SOAK_SEED (from the clock), SOAK_GUARANTEE
(at_least_once), SOAK_SAMPLE_S (3), SOAK_EVENTS_PER_MIN (1.5), SOAK_EDDY (the
binary to run, default build/eddy; copied at the start).
"""
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition, OFFSET_BEGINNING

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.environ.get("SOAK_DIR") or os.path.join(ROOT, "build", "soak")
RUN = os.path.join(OUT, "run")              # the running script lives here (watched)
SCRIPT = os.path.join(RUN, "job.lua")
VERSION_A = os.path.join(ROOT, "soak", "window_job.lua")
VERSION_B = os.path.join(ROOT, "soak", "window_job_b.lua")

MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))
RATE = int(os.environ.get("SOAK_RATE", "3000"))
PARTS = int(os.environ.get("SOAK_PARTITIONS", "64"))
NKEYS = int(os.environ.get("SOAK_KEYS", "320"))
SEED = int(os.environ.get("SOAK_SEED") or (int(time.time()) % 1000000))
GUARANTEE = os.environ.get("SOAK_GUARANTEE", "at_least_once")
SAMPLE_S = float(os.environ.get("SOAK_SAMPLE_S", "3"))
EVENTS_PER_MIN = float(os.environ.get("SOAK_EVENTS_PER_MIN", "1.5"))

APP = "soak"
IN, OUTT, DLQ = "soak-in", "soak-out", APP + "-dlq"
SIZE, GRACE = 10000, 5000                   # the job's window (both versions)
FLUSH_KEY = "~flush"
OOO_SHARE = 0.01                            # records out of order by up to OOO_MAX_MS
OOO_MAX_MS = 20000
BAD_SHARE = 0.0005                          # malformed records among the steady input
BAD_AGE_MS = 30000                          # a malformed record's time: now - 30 s (see README)
TOPICS = [(IN, PARTS), (OUTT, PARTS), (DLQ, 4), (APP + "-counts-changelog", PARTS),
          (APP + "-__task-0-changelog", PARTS)]
SESSION_X = ["-X", "session.timeout.ms=4000", "-X", "heartbeat.interval.ms=1000"]
VALID = re.compile(rb'\{"v":\d+\}\Z')

T0 = time.time()
LOGF = None


def log(msg):
    line = "soak: [%7.1fs] %s" % (time.time() - T0, msg)
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    if LOGF:
        LOGF.write(line + "\n")
        LOGF.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_json(port, path, timeout=1.5):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        body = r.read().decode()
    return json.loads(body) if path == "/status" else body


def proc_mem(pid):
    """(VmRSS, RssAnon) in kB from /proc/PID/status, or (None, None)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            d = {}
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon"):
                    d[k] = int(v.split()[0])
            return d.get("VmRSS"), d.get("RssAnon")
    except OSError:
        return None, None


def du_bytes(path):
    """Bytes allocated on disk under path (du: LMDB's map files are sparse)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


# ---------------------------------------------------------------- the broker and the job

class Broker:
    def __init__(self, eddy):
        self.ctl = os.path.join(RUN, "broker.ctl")
        cmd = [eddy, "broker", "--control", self.ctl]
        for t, n in TOPICS:
            cmd += ["--topic", "%s:%d" % (t, n)]
        self.err = open(os.path.join(OUT, "broker.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("bootstrap: "):
            raise SystemExit("soak: eddy broker did not start: %r" % line)
        self.bootstrap = line.split()[1]
        for _ in range(50):
            if os.path.exists(self.ctl):
                break
            time.sleep(0.1)

    def control(self, cmd):
        fd = os.open(self.ctl, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, (cmd + "\n").encode())
        finally:
            os.close(fd)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Job:
    def __init__(self, eddy, lua_dir, brokers):
        self.eddy, self.lua_dir, self.brokers = eddy, lua_dir, brokers
        self.proc = None
        self.port = None
        self.state_no = 0
        self.state_dir = None
        self.started = None
        self.log = open(os.path.join(OUT, "job.log"), "a")
        self.starts = 0

    def new_state_dir(self):
        if self.state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_no += 1
        self.state_dir = os.path.join(OUT, "state-%d" % self.state_no)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        os.makedirs(self.state_dir)

    def start(self):
        for _ in range(5):
            self.port = free_port()
            cmd = [self.eddy, "run", SCRIPT, "--brokers", self.brokers, "--app-id", APP,
                   "--state-dir", self.state_dir, "--guarantee", GUARANTEE,
                   "--http", "127.0.0.1:%d" % self.port] + SESSION_X
            self.log.write("==== soak: [%.1fs] start %d: %s\n" % (time.time() - T0, self.starts + 1,
                                                                  " ".join(cmd)))
            self.log.flush()
            env = dict(os.environ, EDDY_LUA_DIR=self.lua_dir)
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log,
                                         cwd=RUN, env=env, start_new_session=True)
            self.started = time.time()
            self.starts += 1
            # up when /status answers (exit 2 at once: the port was taken, try another)
            for _ in range(100):
                if self.proc.poll() is not None:
                    break
                try:
                    http_json(self.port, "/status")
                    return
                except Exception:
                    time.sleep(0.1)
            if self.proc.poll() is None:
                return
            log("job exited at start with status %s; retrying" % self.proc.returncode)
            time.sleep(1)
        raise SystemExit("soak: the job does not start (see %s)" % self.log.name)

    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def status(self, timeout=1.5):
        try:
            return http_json(self.port, "/status", timeout)
        except Exception:
            return None

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def term(self, timeout=120):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return "killed after %d s" % timeout


# ---------------------------------------------------------------- the producer

class Load(threading.Thread):
    """SOAK_RATE records/s to soak-in; counts what it produced per (key, window)."""

    def __init__(self, brokers, rnd):
        super().__init__(daemon=True)
        self.p = Producer({"bootstrap.servers": brokers, "partitioner": "murmur2_random",
                           "log_level": 2,
                           "linger.ms": 1000, "batch.num.messages": 10000,
                           "queue.buffering.max.messages": 2000000,
                           "queue.buffering.max.kbytes": 1048576,
                           "enable.idempotence": True, "message.timeout.ms": 600000})
        self.rnd = rnd
        self.keys = ["k%03d" % i for i in range(NKEYS)]
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.bursts = collections.deque()
        self.produced = 0                   # valid records
        self.bad_produced = 0
        self.bad_kinds = collections.Counter()
        self.ooo = 0
        self.delivered = 0
        self.failed = 0
        self.fail_samples = []
        self.windows = collections.Counter()   # (key, window start) -> valid records produced
        self.max_ts = 0
        self.bad_seq = 0
        self.seq = 0                        # valid values are {"v":seq}, seq = 1, 2, ...

    def dr(self, err, msg):
        if err is not None:
            self.failed += 1
            if len(self.fail_samples) < 5:
                self.fail_samples.append(str(err))
        else:
            self.delivered += 1

    def bad_value(self):
        self.bad_seq += 1
        n = self.bad_seq
        kind = self.rnd.randrange(6)
        return [b"not json #%d" % n, b'{"v":%d' % n, b"\xff\xfe#%d" % n,        # deserialize
                b'{"w":%d}' % n, b'{"v":"x%d"}' % n, b"[%d]" % n][kind], \
            ("deserialize" if kind < 3 else "process")

    def produce_bad(self):
        value, stage = self.bad_value()
        key = self.rnd.choice(self.keys)
        ts = int(time.time() * 1000) - BAD_AGE_MS
        self._produce(key, value, ts)
        self.bad_produced += 1
        self.bad_kinds[stage] += 1

    def _produce(self, key, value, ts, partition=None):
        while True:
            try:
                if partition is None:
                    self.p.produce(IN, value, key, timestamp=ts, on_delivery=self.dr)
                else:
                    self.p.produce(IN, value, key, partition=partition, timestamp=ts,
                                   on_delivery=self.dr)
                return
            except BufferError:
                self.p.poll(0.1)

    def run(self):
        rnd = self.rnd
        t0 = time.time()
        i = 0
        while not self.stop_flag.is_set():
            target = int((time.time() - t0) * RATE)
            with self.lock:
                while i < target:
                    i += 1
                    now = int(time.time() * 1000)
                    if rnd.random() < BAD_SHARE:
                        self.produce_bad()
                        continue
                    key = rnd.choice(self.keys)
                    ts = now
                    if rnd.random() < OOO_SHARE:
                        ts = now - rnd.randint(1, OOO_MAX_MS)
                        self.ooo += 1
                    self.seq += 1                   # unique: duplicates show in the topic
                    self._produce(key, b'{"v":%d}' % self.seq, ts)
                    self.produced += 1
                    self.windows[(key, ts - ts % SIZE)] += 1
                    if ts > self.max_ts:
                        self.max_ts = ts
                while self.bursts:
                    for _ in range(self.bursts.popleft()):
                        self.produce_bad()
            self.p.poll(0)
            time.sleep(0.005)

    def burst(self, n):
        with self.lock:
            self.bursts.append(n)

    def finish(self):
        """Stop the load, write a flush record to every partition, wait for delivery."""
        self.stop_flag.set()
        self.join()
        with self.lock:
            ts = self.max_ts + 3600 * 1000
            for p in range(PARTS):
                self._produce(FLUSH_KEY, b'{"v":0}', ts, partition=p)   # v 0: not a seq
        left = self.p.flush(120)
        return left


# ---------------------------------------------------------------- sampling

COLS = ["elapsed_s", "pid", "in_rate", "produced_rate", "records_in", "records_out",
        "dlq", "late", "vmrss_kb", "rssanon_kb", "lmdb_bytes", "state_bytes", "lua_bytes",
        "lag_status", "lag_committed", "in_end", "committed", "out_end"]


class Sampler(threading.Thread):
    def __init__(self, brokers, job, load):
        super().__init__(daemon=True)
        self.job, self.load = job, load
        self.stop_flag = threading.Event()
        self.rows = []
        self.f = open(os.path.join(OUT, "samples.tsv"), "w")
        self.f.write("\t".join(COLS) + "\n")
        self.f.flush()
        self.w = Consumer({"bootstrap.servers": brokers, "group.id": APP,
                           "enable.auto.commit": False, "log_level": 2})
        self.prev = None

    def committed_lag(self):
        tps = [TopicPartition(IN, i) for i in range(PARTS)]
        got = self.w.committed(tps, timeout=3)
        committed = sum(max(tp.offset, 0) for tp in got)
        ends = [TopicPartition(IN, i, -1) for i in range(PARTS)]
        end = sum(max(tp.offset, 0) for tp in self.w.offsets_for_times(ends, timeout=3))
        oends = [TopicPartition(OUTT, i, -1) for i in range(PARTS)]
        out_end = sum(max(tp.offset, 0) for tp in self.w.offsets_for_times(oends, timeout=3))
        return end, committed, out_end

    def sample(self):
        now = time.time()
        pid = self.job.pid()
        st = self.job.status() if pid else None
        metrics = {}
        if pid:
            try:
                for line in http_json(self.job.port, "/metrics").splitlines():
                    if line.startswith(("eddy_state_bytes", "eddy_lua_memory_bytes")):
                        k, v = line.split()
                        metrics[k] = float(v)
            except Exception:
                pass
        rss, anon = proc_mem(pid) if pid else (None, None)
        lmdb = du_bytes(self.job.state_dir) if self.job.state_dir else None
        try:
            in_end, committed, out_end = self.committed_lag()
        except Exception:
            in_end = committed = out_end = None
        produced = self.load.produced + self.load.bad_produced
        row = {"elapsed_s": now - T0, "pid": pid or "NaN",
               "records_in": st["records_in"] if st else None,
               "records_out": st["records_out"] if st else None,
               "dlq": st["dead_lettered"] if st else None,
               "late": st["late_records"] if st else None,
               "vmrss_kb": rss, "rssanon_kb": anon, "lmdb_bytes": lmdb,
               "state_bytes": metrics.get("eddy_state_bytes"),
               "lua_bytes": metrics.get("eddy_lua_memory_bytes"),
               "lag_status": st["lag"] if st else None,
               "in_end": in_end, "committed": committed, "out_end": out_end,
               "lag_committed": (in_end - committed) if in_end is not None else None,
               "_produced": produced, "_t": now}
        p = self.prev
        row["in_rate"] = None
        row["produced_rate"] = None
        if p:
            dt = now - p["_t"]
            row["produced_rate"] = (produced - p["_produced"]) / dt
            if st and p["pid"] == pid and p["records_in"] is not None:
                row["in_rate"] = (st["records_in"] - p["records_in"]) / dt
        self.prev = row
        self.rows.append(row)
        self.f.write("\t".join(fmt(row.get(c)) for c in COLS) + "\n")
        self.f.flush()
        return row

    def run(self):
        while not self.stop_flag.is_set():
            t = time.time()
            try:
                self.sample()
            except Exception as e:            # a sample must never stop the soak
                log("sample failed: %s" % e)
            self.stop_flag.wait(max(0.1, SAMPLE_S - (time.time() - t)))


def fmt(v):
    if v is None:
        return "NaN"
    if isinstance(v, float):
        return "%.1f" % v
    return str(v)


# ---------------------------------------------------------------- events

class Events:
    def __init__(self, rnd, broker, job, load):
        self.rnd, self.broker, self.job, self.load = rnd, broker, job, load
        self.applied = []                  # (elapsed_s, kind, detail)
        self.durations = []                # seconds (the broker's down time), else 0
        self.counts = collections.Counter()
        self.findings = []
        self.version = "A"
        self.f = open(os.path.join(OUT, "events.tsv"), "w")
        self.f.write("elapsed_s\tkind\tdetail\n")
        self.reload_outcomes = collections.Counter()
        self.restore_times = []

    def note(self, kind, detail, t=None, duration=0.0):
        t = (time.time() if t is None else t) - T0
        self.applied.append((t, kind, detail))
        self.durations.append(duration)
        self.counts[kind] += 1
        self.f.write("%.1f\t%s\t%s\n" % (t, kind, detail.replace("\t", " ")))
        self.f.flush()
        log("event %s: %s" % (kind, detail))

    def finding(self, what):
        self.findings.append("[%.0fs] %s" % (time.time() - T0, what))
        log("FINDING: " + what)

    def write_script(self, text):
        tmp = os.path.join(RUN, ".job.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, SCRIPT)

    def version_text(self, v):
        with open(VERSION_A if v == "A" else VERSION_B) as f:
            return f.read()

    def reloads(self):
        st = self.job.status()
        return None if st is None else st.get("reloads", [])

    def wait_reload(self, before, timeout=20):
        """The first reload attempt logged after `before` attempts (or None)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.reloads()
            if r is not None and len(r) > before:
                return r[before]
            time.sleep(0.2)
        return None

    def check_alive(self):
        """A job that exited without being killed is a finding; restart it."""
        if self.job.proc.poll() is not None:
            rc = self.job.proc.returncode
            self.finding("the job exited on its own with status %s (see build/soak/job.log); "
                         "restarted on the same state dir" % rc)
            self.job.start()

    # the events
    def kill(self, empty):
        t = time.time()
        pid = self.job.proc.pid
        self.job.kill9()
        delay = self.rnd.uniform(1.5, 3.0)
        time.sleep(delay)
        if empty:
            self.job.new_state_dir()
        self.job.start()
        self.note("kill-empty" if empty else "kill",
                  "kill -9 pid %d, restart after %.1f s on %s state dir %s (pid %d)"
                  % (pid, delay, "an EMPTY" if empty else "the same",
                     os.path.basename(self.job.state_dir), self.job.proc.pid), t)
        # how long until it processes again (group join, session of the dead member, restore)
        t1 = time.time()
        while time.time() - t1 < 60:
            st = self.job.status()
            if st and st.get("records_in", 0) > 0:
                self.restore_times.append(time.time() - t)
                break
            time.sleep(0.2)

    def broker_down(self):
        t = time.time()
        d = self.rnd.uniform(3, 12)
        self.broker.control("down -1")
        time.sleep(d)
        self.broker.control("up -1")
        self.note("broker-down", "down -1 for %.1f s, then up -1" % d, t, d)

    def reload_save(self):
        t = time.time()
        before = len(self.reloads() or [])
        nxt = "B" if self.version == "A" else "A"
        self.write_script(self.version_text(nxt))
        r = self.wait_reload(before)
        outcome = r["outcome"] if r else "none"
        self.reload_outcomes[outcome] += 1
        if outcome != "ok":
            self.finding("saving version %s: reload outcome %s (%s)" % (nxt, outcome, r))
        else:
            self.version = nxt
        self.note("reload-save", "saved version %s: %s %s" % (nxt, outcome,
                                                            r.get("version") if r else ""), t)

    def reload_hup(self):
        t = time.time()
        before = len(self.reloads() or [])
        os.kill(self.job.proc.pid, signal.SIGHUP)
        r = self.wait_reload(before)
        outcome = r["outcome"] if r else "none"
        self.reload_outcomes[outcome] += 1
        if outcome != "ok":
            self.finding("SIGHUP: reload outcome %s (%s)" % (outcome, r))
        self.note("reload-hup", "SIGHUP (version %s): %s" % (self.version, outcome), t)

    def reload_broken(self):
        t = time.time()
        st0 = self.job.status() or {}
        before = len(st0.get("reloads", []))
        running = st0.get("version")
        self.write_script(self.version_text(self.version) + "\nlocal broken = (\n")
        r = self.wait_reload(before)
        outcome = r["outcome"] if r else "none"
        self.reload_outcomes["broken:" + outcome] += 1
        # the old version must keep running and processing
        time.sleep(3)
        st1 = self.job.status() or {}
        n0 = st1.get("records_in", 0)
        time.sleep(3)
        st2 = self.job.status() or {}
        flowing = st2.get("records_in", 0) > n0
        kept = st2.get("version") == running
        if outcome != "refused" or not kept or not flowing:
            self.finding("broken version: outcome %s, old version kept %s, records flowing %s (%s)"
                         % (outcome, kept, flowing, r))
        why = (r or {}).get("why") or ""
        # put a good version back
        before = len(st2.get("reloads", []))
        self.write_script(self.version_text(self.version))
        r2 = self.wait_reload(before)
        if not r2 or r2["outcome"] != "ok":
            self.finding("restoring version %s after the broken one: %s" % (self.version, r2))
        self.note("reload-broken", "broken version saved: %s (%s); old version %s kept: %s, "
                  "records flowing: %s; version %s saved back: %s"
                  % (outcome, why[:160], running, kept, flowing, self.version,
                     r2["outcome"] if r2 else "none"), t)

    def malformed(self):
        t = time.time()
        n = self.rnd.randint(5, 50)
        self.load.burst(n)
        self.note("malformed", "a burst of %d malformed records" % n, t)

    def schedule(self, start, end):
        """Seeded moments and kinds: every kind at least once, the broken reload once."""
        kinds = ["kill", "kill-empty", "broker-down", "reload-save", "reload-hup",
                 "reload-broken", "malformed"]
        n = max(len(kinds), int(round((end - start) / 60 * EVENTS_PER_MIN)))
        weights = {"kill": 3, "kill-empty": 1, "broker-down": 2, "reload-save": 3,
                   "reload-hup": 2, "malformed": 2}
        rest = [self.rnd.choices(list(weights), list(weights.values()))[0]
                for _ in range(n - len(kinds))]
        seq = kinds + rest
        self.rnd.shuffle(seq)
        times = sorted(self.rnd.uniform(start, end) for _ in seq)
        return list(zip(times, seq))

    def apply(self, kind):
        {"kill": lambda: self.kill(False), "kill-empty": lambda: self.kill(True),
         "broker-down": self.broker_down, "reload-save": self.reload_save,
         "reload-hup": self.reload_hup, "reload-broken": self.reload_broken,
         "malformed": self.malformed}[kind]()


# ---------------------------------------------------------------- reading back, checking

def read_topic(brokers, topic, nparts, fn):
    """Calls fn(msg) for every record of the topic, partition by partition in offset order."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": "soak-verify-%d" % random.random(),
                  "enable.auto.commit": False, "enable.partition.eof": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760})
    lows, highs = [], []
    for p in range(nparts):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        lows.append(lo)
        highs.append(hi)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(nparts)])
    left = {p for p in range(nparts) if highs[p] > lows[p]}
    pos = [0] * nparts
    n = 0
    deadline = time.time() + 600
    while left and time.time() < deadline:
        for m in c.consume(10000, 1.0):
            if m.error():
                continue
            p = m.partition()
            fn(m)
            n += 1
            pos[p] = m.offset() + 1
            if pos[p] >= highs[p]:
                left.discard(p)
    c.close()
    return n, lows, highs


def verify(brokers, load, stats):
    res = {"ok": True, "problems": []}

    def bad(msg):
        res["ok"] = False
        res["problems"].append(msg)

    # 1. the input as the broker holds it: the reference, in offset order per partition
    st = {}                                   # partition -> stream time (valid records)
    ref = collections.Counter()               # (key, window start) -> count (not late)
    kp = {}                                   # key -> partition
    held = collections.Counter()              # (key, window start) -> valid records held
    late = [0]
    malformed = {}                            # (partition, offset) -> (payload, stage, key)
    in_bytes = collections.Counter()          # partition -> key + value bytes
    seen = bytearray(load.seq + 1)            # valid records' seqs met in the topic
    seen_bad = set()                          # malformed payloads met
    dups = collections.Counter()              # partition -> records held twice

    def on_in(m):
        p, v, k = m.partition(), m.value(), m.key()
        ts = m.timestamp()[1]
        in_bytes[p] += len(v or b"") + len(k or b"")
        if v is not None and VALID.match(v):
            s = st.get(p)
            if s is None or ts > s:
                st[p] = s = ts
            key = k.decode()
            ws = ts - ts % SIZE
            if key != FLUSH_KEY:
                n = int(v[5:-1])
                if seen[n]:
                    dups[p] += 1                  # the same produced record again
                else:
                    seen[n] = 1
                    held[(key, ws)] += 1
                kp[key] = p
            if ws + SIZE + GRACE > s:
                if key != FLUSH_KEY:
                    ref[(key, ws)] += 1
            else:
                late[0] += 1
        else:
            try:
                json.loads(v)
                stage = "process"
            except Exception:
                stage = "deserialize"
            malformed[(p, m.offset())] = (v, stage, k)
            if v in seen_bad:
                dups[p] += 1
            seen_bad.add(v)

    t = time.time()
    n_in, lows_in, _ = read_topic(brokers, IN, PARTS, on_in)
    stats["read_in_s"] = time.time() - t
    stats["in_bytes_max"] = max(in_bytes.values()) if in_bytes else 0
    stats["input_records"] = n_in
    stats["late_ref"] = late[0]
    # every window of the reference is closed at the end (the flush records): check it
    open_w = [kw for kw in ref if kw[1] + SIZE + GRACE > st[kp[kw[0]]]]
    if open_w:
        bad("%d reference windows still open at the end (flush missing?): %s" % (len(open_w), open_w[:3]))
    stats["ref_windows"] = len(ref)
    stats["ref_counted"] = sum(ref.values())

    # 2. cross-check against what the producer counted: nothing lost or added by the broker
    stats["input_dups"] = sum(dups.values())
    if dups:
        stats["input_dups_note"] = (
            "the input topic holds %d record(s) twice (partitions %s): the development broker "
            "appended a produce request whose response the broker's down time cut off, and the "
            "idempotent producer sent it again (the mock does not check sequence numbers; a real "
            "broker drops such a retry). eddy processes them as input, so the reference counts "
            "them too" % (sum(dups.values()), sorted(dups)))
    if held != load.windows:
        diff = [(kw, load.windows.get(kw, 0), held.get(kw, 0))
                for kw in set(held) | set(load.windows) if held.get(kw, 0) != load.windows.get(kw, 0)]
        bad("the input topic differs from what was produced in %d (key, window)s, e.g. "
            "(key, window, produced, held) %s" % (len(diff), sorted(diff)[:5]))
    if len(seen_bad) != load.bad_produced:
        bad("malformed records: %d produced, %d distinct in the input topic" % (load.bad_produced, len(seen_bad)))
    if load.failed:
        bad("%d records failed delivery: %s" % (load.failed, load.fail_samples))

    # 3. the outputs
    outs = collections.defaultdict(list)
    flush_out = [0]

    def on_out(m):
        k = m.key().decode()
        key, _, ws = k.rpartition("@")
        if key == FLUSH_KEY:
            flush_out[0] += 1
            return
        outs[(key, int(ws))].append(int(m.value()))

    n_out, lows_out, _ = read_topic(brokers, OUTT, PARTS, on_out)
    stats["output_records"] = n_out
    stats["output_windows"] = len(outs)
    stats["output_copies"] = sum(len(v) - 1 for v in outs.values())
    missing = sorted(kw for kw in ref if kw not in outs)
    extra = sorted(kw for kw in outs if kw not in ref)
    wrong = sorted((kw, ref[kw], vs) for kw, vs in outs.items() if kw in ref and any(x != ref[kw] for x in vs))
    stats["missing"], stats["extra"], stats["wrong"] = len(missing), len(extra), len(wrong)
    if missing:
        bad("%d (key, window)s of the reference have no output, first: %s"
            % (len(missing), ["%s@%d=%d" % (k, w, ref[(k, w)]) for k, w in missing[:5]]))
    if extra:
        bad("%d outputs for (key, window)s the reference does not have, first: %s"
            % (len(extra), ["%s@%d=%s" % (k, w, outs[(k, w)]) for k, w in extra[:5]]))
    if wrong:
        bad("%d (key, window)s with a count other than the reference's, first (key@window: "
            "reference, outputs in offset order): %s"
            % (len(wrong), ["%s@%d: %d, %s" % (kw[0], kw[1], r, vs) for kw, r, vs in wrong[:5]]))
    if flush_out[0]:
        bad("%d outputs for the flush key (its window must stay open)" % flush_out[0])

    # 4. the DLQ
    dl = collections.Counter()
    dl_bad = []

    def on_dlq(m):
        h = {}
        for k, v in (m.headers() or []):
            h[k] = v.decode(errors="replace") if v is not None else None
        try:
            pos = (int(h.get("eddy.partition")), int(h.get("eddy.offset")))
        except (TypeError, ValueError):
            dl_bad.append("no eddy.partition/offset: %s" % h)
            return
        dl[pos] += 1
        exp = malformed.get(pos)
        if h.get("eddy.topic") != IN:
            dl_bad.append("%s: eddy.topic %s" % (pos, h.get("eddy.topic")))
        if exp is None:
            dl_bad.append("%s: not a malformed record (payload %r, error %s)" % (pos, m.value(), h.get("eddy.error")))
            return
        if m.value() != exp[0]:
            dl_bad.append("%s: payload %r, the input's %r" % (pos, m.value(), exp[0]))
        if not h.get("eddy.error"):
            dl_bad.append("%s: no eddy.error" % (pos,))
        if h.get("eddy.stage") != exp[1]:
            dl_bad.append("%s: stage %s, expected %s (payload %r, error %s)"
                          % (pos, h.get("eddy.stage"), exp[1], exp[0], h.get("eddy.error")))

    n_dlq, lows_dlq, _ = read_topic(brokers, DLQ, 4, on_dlq)
    stats["dlq_records"] = n_dlq
    stats["dlq_distinct"] = len(dl)
    stats["dlq_copies"] = sum(v - 1 for v in dl.values())
    stats["malformed"] = len(malformed)
    stats["malformed_stages"] = collections.Counter(v[1] for v in malformed.values())
    not_in_dlq = sorted(set(malformed) - set(dl))
    if not_in_dlq:
        bad("%d malformed records not in the DLQ, first: %s"
            % (len(not_in_dlq), [(p, malformed[p][0]) for p in not_in_dlq[:5]]))
    if dl_bad:
        bad("%d DLQ records wrong, first: %s" % (len(dl_bad), dl_bad[:5]))
    if GUARANTEE == "exactly_once" and stats["dlq_copies"]:
        stats["dlq_note"] = "copies under exactly_once: an aborted transaction's records stay visible on the mock"

    # 5. nothing dropped by the development broker
    c = Consumer({"bootstrap.servers": brokers, "group.id": "soak-verify-lows"})
    md = c.list_topics(timeout=10)
    lows = {}
    for name, t in md.topics.items():
        if name.startswith("__"):
            continue
        tps = [TopicPartition(name, p, -2) for p in t.partitions]
        lo = sum(max(tp.offset, 0) for tp in c.offsets_for_times(tps, timeout=10))
        his = [max(tp.offset, 0) for tp in c.offsets_for_times(
            [TopicPartition(name, p, -1) for p in t.partitions], timeout=10)]
        lows[name] = lo
        stats.setdefault("topic_records", {})[name] = (sum(his), max(his) if his else 0)
        if lo:
            bad("topic %s: low watermarks sum to %d: the broker dropped old records" % (name, lo))
    c.close()
    stats["low_watermarks"] = lows
    return res


# ---------------------------------------------------------------- the plot

def plot(events, path_png):
    gp = os.path.join(OUT, "soak.gp")
    colors = {"kill": "#d62728", "kill-empty": "#8c0000", "broker-down": "#1f77b4",
              "reload-save": "#2ca02c", "reload-hup": "#17becf", "reload-broken": "#ff7f0e",
              "malformed": "#9467bd"}
    arrows = []
    for i, (t, kind, _) in enumerate(events.applied):
        d = events.durations[i]
        if d:
            arrows.append("set object %d rect from %.3f, graph 0 to %.3f, graph 1 behind "
                          "fc rgb '%s' fs transparent solid 0.15 noborder"
                          % (i + 1, t / 60, (t + d) / 60, colors.get(kind, "#000000")))
        arrows.append("set arrow %d from %.3f, graph 0 to %.3f, graph 1 nohead lw 1.2 lc rgb '%s' dt 2"
                      % (i + 1, t / 60, t / 60, colors.get(kind, "#000000")))
    legend = "   ".join("%s" % k for k in colors)
    lines = [
        "set terminal pngcairo size 1400,1300 font ',10'" if gnuplot_has("pngcairo") else
        "set terminal png size 1400,1300",
        "set output '%s'" % path_png,
        "set datafile separator '\\t'",
        "set datafile missing 'NaN'",
        "set termoption noenhanced",
        "set key top left horizontal",
        "set grid",
        "set offsets graph 0, graph 0, graph 0.25, graph 0",
        "set multiplot layout 4,1 title \"eddy soak: %s, %d records/s, %d partitions, %d keys, seed %d\\n"
        "event lines: %s\"" % (GUARANTEE, RATE, PARTS, NKEYS, SEED,
                                ", ".join("%s %s" % (k, {"#d62728": "red", "#8c0000": "dark red",
                                                          "#1f77b4": "blue", "#2ca02c": "green",
                                                          "#17becf": "cyan", "#ff7f0e": "orange",
                                                          "#9467bd": "purple"}[c])
                                          for k, c in colors.items())),
        "set lmargin 12",
    ] + arrows + [
        "set ylabel 'records/s'",
        "plot '%s' using ($1/60):3 with lines lw 1.5 title 'consumed by eddy (eddy_records_in_total)', "
        "'' using ($1/60):4 with lines lw 1 title 'produced'" % os.path.join(OUT, "samples.tsv"),
        "set ylabel 'MiB'",
        "plot '%s' using ($1/60):($9/1024) with lines lw 1.5 title 'VmRSS', "
        "'' using ($1/60):($10/1024) with lines lw 1.5 title 'RssAnon', "
        "'' using ($1/60):($13/1048576) with lines lw 1 title 'Lua heap'" % os.path.join(OUT, "samples.tsv"),
        "set ylabel 'MiB'",
        "plot '%s' using ($1/60):($11/1048576) with lines lw 1.5 title 'state dir on disk (du)', "
        "'' using ($1/60):($12/1048576) with lines lw 1 title 'eddy_state_bytes (LMDB pages in use)'"
        % os.path.join(OUT, "samples.tsv"),
        "set ylabel 'records'",
        "set xlabel 'minutes'",
        "plot '%s' using ($1/60):14 with lines lw 1.5 title 'lag (/status)', "
        "'' using ($1/60):15 with lines lw 1 title 'lag (group committed offsets)'"
        % os.path.join(OUT, "samples.tsv"),
        "unset multiplot",
    ]
    with open(gp, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0:
        log("gnuplot failed: %s" % r.stderr.strip())
    return r.returncode == 0


class Replay:
    """The events of a finished run, from build/soak/events.tsv (soak.py --plot)."""

    def __init__(self):
        self.applied, self.durations = [], []
        with open(os.path.join(OUT, "events.tsv")) as f:
            next(f)
            for line in f:
                t, kind, detail = line.rstrip("\n").split("\t", 2)
                self.applied.append((float(t), kind, detail))
                m = re.search(r"down -1 for ([0-9.]+) s", detail)
                self.durations.append(float(m.group(1)) if m else 0.0)


def gnuplot_has(term):
    try:
        r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
        return term in (r.stdout + r.stderr)
    except OSError:
        return False


# ---------------------------------------------------------------- main

def nearest(rows, t, col):
    best = None
    for r in rows:
        if r.get(col) is None:
            continue
        if best is None or abs(r["elapsed_s"] - t) < abs(best["elapsed_s"] - t):
            best = r
    return best.get(col) if best else None


def main():
    global LOGF
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(RUN)
    LOGF = open(os.path.join(OUT, "soak.log"), "w")
    rnd = random.Random(SEED)
    log("seed %d, %.1f min, %d records/s, %d partitions, %d keys, %s"
        % (SEED, MINUTES, RATE, PARTS, NKEYS, GUARANTEE))
    est = RATE * MINUTES * 60 / PARTS * (22 + 61 / max(1.0, RATE / PARTS * 1.0))
    if est > 4 * 1048576:
        log("WARNING: ~%.1f MiB of input per partition expected: near the development broker's "
            "5 MiB, raise SOAK_PARTITIONS" % (est / 1048576))

    # a snapshot of the binary and the Lua modules: others may rebuild build/eddy meanwhile
    eddy = os.path.join(OUT, "bin", "eddy")
    os.makedirs(os.path.dirname(eddy))
    shutil.copy2(os.environ.get("SOAK_EDDY") or os.path.join(ROOT, "build", "eddy"), eddy)
    lua_dir = os.path.join(OUT, "lua")
    shutil.copytree(os.path.join(ROOT, "lua"), lua_dir)
    shutil.copy2(VERSION_A, SCRIPT)

    broker = Broker(eddy)
    log("broker %s (pid %d)" % (broker.bootstrap, broker.proc.pid))
    job = Job(eddy, lua_dir, broker.bootstrap)
    load = Load(broker.bootstrap, random.Random(SEED + 1))
    events = Events(rnd, broker, job, load)
    sampler = Sampler(broker.bootstrap, job, load)
    stats = {}
    rc = 1
    try:
        job.new_state_dir()
        job.start()
        log("job pid %d, http port %d" % (job.proc.pid, job.port))
        load.start()
        sampler.start()
        t_start = time.time()
        t_end = t_start + MINUTES * 60
        plan = events.schedule(t_start + min(30, MINUTES * 60 * 0.1), t_end - min(45, MINUTES * 60 * 0.15))
        log("%d events planned: %s" % (len(plan), ", ".join("%.0fs %s" % (t - T0, k) for t, k in plan)))
        for when, kind in plan:
            while time.time() < when:
                events.check_alive()
                if broker.proc.poll() is not None:
                    raise SystemExit("soak: the broker exited (%s)" % broker.proc.returncode)
                time.sleep(min(0.5, max(0.0, when - time.time())))
            events.apply(kind)
        while time.time() < t_end:
            events.check_alive()
            time.sleep(0.5)

        # the end: stop the load, close every window, wait for the group to commit everything
        log("load stops: %d valid + %d malformed records produced; flush records to every partition"
            % (load.produced, load.bad_produced))
        left = load.finish()
        if left:
            events.finding("%d records still undelivered after the producer's flush" % left)
        t_wait = time.time()
        caught = False
        stable = 0
        while time.time() - t_wait < 600:
            events.check_alive()
            try:
                end, committed, _ = sampler.committed_lag()
            except Exception:
                end = committed = None
            if end is not None and committed == end:
                stable += 1
                if stable >= 2:
                    caught = True
                    break
            else:
                stable = 0
            time.sleep(1)
        stats["catch_up_s"] = time.time() - t_wait
        if not caught:
            events.finding("the group did not commit the whole input within 600 s")
        time.sleep(2 * SAMPLE_S)
        sampler.stop_flag.set()
        sampler.join()
        final_status = job.status() or {}
        stats["rss_end"] = proc_mem(job.proc.pid)
        job_rc = job.term()
        stats["job_rc"] = job_rc
        if job_rc != 0:
            events.finding("SIGTERM: the job exited with %s, not 0" % job_rc)
        stats["final_status"] = final_status

        t = time.time()
        res = verify(broker.bootstrap, load, stats)
        stats["verify_s"] = time.time() - t
        png = os.path.join(OUT, "soak.png")
        plotted = plot(events, png)
        ok = res["ok"] and not events.findings
        rc = 0 if ok else 1
        summary(events, load, sampler.rows, stats, res, plotted, png, ok)
    finally:
        sampler.stop_flag.set()
        load.stop_flag.set()
        if job.proc and job.proc.poll() is None:
            job.kill9()
        broker.stop()
    return rc


def summary(events, load, rows, stats, res, plotted, png, ok):
    mid = MINUTES * 60 / 2
    live = [r for r in rows if r.get("rssanon_kb") is not None]
    first = live[min(len(live) - 1, 5)] if live else {}
    last = live[-1] if live else {}
    lag_s = [r["lag_status"] for r in rows if r.get("lag_status") is not None]
    lag_c = [r["lag_committed"] for r in rows if r.get("lag_committed") is not None]
    rates = [r["in_rate"] for r in rows if r.get("in_rate") is not None]
    lmdb = [r["lmdb_bytes"] for r in rows if r.get("lmdb_bytes") is not None]
    mb = lambda kb: "%.1f MiB" % (kb / 1024) if kb is not None else "n/a"
    mib = lambda b: "%.1f MiB" % (b / 1048576) if b is not None else "n/a"
    L = []
    L.append("==== eddy soak: %s" % ("PASS" if ok else "FAIL"))
    L.append("run: %.1f min, seed %d, %s, emit final, %d records/s target, %d partitions, %d keys"
             % (MINUTES, SEED, GUARANTEE, RATE, PARTS, NKEYS))
    L.append("events applied (%d): %s" % (len(events.applied), ", ".join(
        "%s %d" % (k, v) for k, v in sorted(events.counts.items()))))
    L.append("reload outcomes: %s" % dict(events.reload_outcomes))
    if events.restore_times:
        L.append("kill -> processing again: %s s" % ", ".join("%.1f" % x for x in events.restore_times))
    L.append("produced: %d valid (%d out of order by up to %d s) + %d malformed (%s) + %d flush; "
             "input topic holds %s" % (load.produced, load.ooo, OOO_MAX_MS // 1000, load.bad_produced,
                                       dict(load.bad_kinds), PARTS, stats.get("input_records")))
    if stats.get("input_dups_note"):
        L.append("note: " + stats["input_dups_note"])
    L.append("reference: %s windows, %s records counted, %s late (dropped by the rule)"
             % (stats.get("ref_windows"), stats.get("ref_counted"), stats.get("late_ref")))
    fs = stats.get("final_status", {})
    L.append("processed by the last instance: %s in, %s out, %s dead-lettered, %s late"
             % (fs.get("records_in"), fs.get("records_out"), fs.get("dead_lettered"), fs.get("late_records")))
    L.append("throughput (eddy_records_in_total per sample): median %.0f/s, max %.0f/s"
             % (sorted(rates)[len(rates) // 2] if rates else 0, max(rates) if rates else 0))
    L.append("output: %s records, %s (key, window)s, %s repeated copies; missing %s, extra %s, wrong %s"
             % (stats.get("output_records"), stats.get("output_windows"), stats.get("output_copies"),
                stats.get("missing"), stats.get("extra"), stats.get("wrong")))
    L.append("DLQ: %s records, %s distinct of %s malformed %s, %s repeated copies"
             % (stats.get("dlq_records"), stats.get("dlq_distinct"), stats.get("malformed"),
                dict(stats.get("malformed_stages", {})), stats.get("dlq_copies")))
    L.append("result check: %s" % ("PASS" if res["ok"] else "FAIL"))
    for p in res["problems"]:
        L.append("  - " + p)
    L.append("RSS (VmRSS / RssAnon): start %s / %s, middle %s / %s, end %s / %s"
             % (mb(first.get("vmrss_kb")), mb(first.get("rssanon_kb")),
                mb(nearest(rows, mid, "vmrss_kb")), mb(nearest(rows, mid, "rssanon_kb")),
                mb(last.get("vmrss_kb")), mb(last.get("rssanon_kb"))))
    # each process's own memory over its life: growth there is what a leak looks like
    # (a restart starts from scratch, so the whole run's line mixes lifetimes)
    lives = collections.OrderedDict()
    for r in rows:
        if r.get("rssanon_kb") is not None:
            lives.setdefault(r["pid"], []).append(r)
    for pid, rs in lives.items():
        t0, t1 = rs[0]["elapsed_s"], rs[-1]["elapsed_s"]
        warm = [r for r in rs if r["elapsed_s"] >= t0 + 30] or rs
        rl = [e for e in events.applied if e[1].startswith("reload") and t0 <= e[0] <= t1]
        L.append("  pid %s, %.0f-%.0f s: RssAnon %s after 30 s -> %s at its end (max %s), "
                 "%d reload event(s) in its life"
                 % (pid, t0, t1, mb(warm[0]["rssanon_kb"]), mb(rs[-1]["rssanon_kb"]),
                    mb(max(r["rssanon_kb"] for r in rs)), len(rl)))
    L.append("state dir on disk (du): start %s, middle %s, end %s, max %s"
             % (mib(lmdb[min(len(lmdb) - 1, 5)] if lmdb else None), mib(nearest(rows, mid, "lmdb_bytes")),
                mib(lmdb[-1] if lmdb else None), mib(max(lmdb) if lmdb else None)))
    L.append("lag: max %s (/status), max %s (group committed); catch-up at the end %.1f s"
             % (max(lag_s) if lag_s else "n/a", max(lag_c) if lag_c else "n/a", stats.get("catch_up_s", 0)))
    L.append("low watermarks: %s" % stats.get("low_watermarks"))
    L.append("records per topic (total, largest partition): %s; soak-in's largest partition: "
             "%.2f MiB of keys and values" % (stats.get("topic_records"),
                                             stats.get("in_bytes_max", 0) / 1048576))
    L.append("job exit on SIGTERM: %s" % stats.get("job_rc"))
    L.append("findings: %d" % len(events.findings))
    for f in events.findings:
        L.append("  - " + f)
    L.append("files: build/soak/samples.tsv, events.tsv, soak.log, job.log, broker.log; plot: %s"
             % (png if plotted else "NOT drawn (gnuplot failed)"))
    text = "\n".join(L)
    print(text)
    with open(os.path.join(OUT, "summary.txt"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--plot"]:          # redraw build/soak/soak.png from its TSVs
        m = re.search(r"seed (\d+)", open(os.path.join(OUT, "soak.log")).readline())
        SEED = int(m.group(1)) if m else SEED
        sys.exit(0 if plot(Replay(), os.path.join(OUT, "soak.png")) else 1)
    sys.exit(main())
