#!/usr/bin/python3
"""Produce records to Kafka for the eddy specs (run with Debian's /usr/bin/python3).

usage: produce.py BROKERS [--rate N] [--input FILE] < records.jsonl

--rate N: produce about N records per second (each record is flushed before the
next one's time comes), to feed a running job over a while; default: all at once.
--input FILE: read the records from FILE instead of stdin.

Each input line is a JSON object:
  {"topic": T, "key": str|null, "value": str|null, "ts": ms, "partition": n,
   "headers": [[name, str|null], ...]}
Only "topic" is required. Prints one JSON line per record, in input order:
  {"partition": n, "offset": n, "error": null|str}
Exits 1 if any record was not delivered.
"""
import argparse
import json
import sys
import time

from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser(usage=__doc__)
    ap.add_argument("brokers")
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--input")
    args = ap.parse_args()
    producer = Producer({
        "bootstrap.servers": args.brokers,
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    src = open(args.input) if args.input else sys.stdin
    records = [json.loads(line) for line in src if line.strip()]
    results = [None] * len(records)

    def report(i):
        def cb(err, msg):
            results[i] = {
                "partition": msg.partition(),
                "offset": msg.offset(),
                "error": None if err is None else str(err),
            }
        return cb

    start = time.monotonic()
    for i, r in enumerate(records):
        if args.rate > 0:
            due = start + i / args.rate
            while time.monotonic() < due:
                producer.poll(min(0.05, max(0.0, due - time.monotonic())))
        kw = {"on_delivery": report(i)}
        if r.get("key") is not None:
            kw["key"] = r["key"].encode("utf-8")
        if r.get("value") is not None:
            kw["value"] = r["value"].encode("utf-8")
        if r.get("ts") is not None:
            kw["timestamp"] = int(r["ts"])
        if r.get("partition") is not None:
            kw["partition"] = int(r["partition"])
        if r.get("headers"):
            kw["headers"] = [(n, None if v is None else v.encode("utf-8"))
                             for n, v in r["headers"]]
        producer.produce(r["topic"], **kw)
        producer.poll(0)
    left = producer.flush(30)
    failed = left > 0
    for res in results:
        if res is None:
            res = {"partition": -1, "offset": -1, "error": "no delivery report"}
        if res["error"]:
            failed = True
        print(json.dumps(res))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
