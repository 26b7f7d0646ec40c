#!/usr/bin/python3
"""Produce records to Kafka for the eddy specs (run with Debian's /usr/bin/python3).

usage: produce.py BROKERS < records.jsonl

Each input line is a JSON object:
  {"topic": T, "key": str|null, "value": str|null, "ts": ms, "partition": n,
   "headers": [[name, str|null], ...]}
Only "topic" is required. Prints one JSON line per record, in input order:
  {"partition": n, "offset": n, "error": null|str}
Exits 1 if any record was not delivered.
"""
import json
import sys

from confluent_kafka import Producer


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    producer = Producer({
        "bootstrap.servers": sys.argv[1],
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    records = [json.loads(line) for line in sys.stdin if line.strip()]
    results = [None] * len(records)

    def report(i):
        def cb(err, msg):
            results[i] = {
                "partition": msg.partition(),
                "offset": msg.offset(),
                "error": None if err is None else str(err),
            }
        return cb

    for i, r in enumerate(records):
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
