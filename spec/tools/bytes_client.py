#!/usr/bin/python3
"""Produce and read records byte for byte, for specs whose keys, values or headers
are not text (run with Debian's /usr/bin/python3, which has confluent_kafka).

usage: bytes_client.py produce BROKERS FILE [-X key=value]...
       bytes_client.py consume BROKERS TOPIC

produce: FILE holds one JSON object per line, bytes as hex strings:
  {"topic": T, "partition": n, "key": hex|null, "value": hex|null, "ts": ms,
   "headers": [[name, hex|null], ...]}
and prints one line per record, in order: {"partition": n, "offset": n, "error": null|str}.
A record produce() refuses is reported with its error, not raised.

consume: reads the whole topic (every partition, from the start to the end as it is
now) and prints one line per record, in partition then offset order:
  {"partition": n, "offset": n, "ts": ms, "key": hex|null, "value": hex|null,
   "headers": [[name, hex|null], ...]}
"""
import json
import sys

from confluent_kafka import Consumer, Producer, TopicPartition


def unhex(s):
    return None if s is None else bytes.fromhex(s)


def tohex(b):
    return None if b is None else b.hex()


def produce(brokers, path, extra):
    conf = {"bootstrap.servers": brokers, "linger.ms": 5}
    for kv in extra:
        k, v = kv.split("=", 1)
        conf[k] = v
    p = Producer(conf)
    records = [json.loads(line) for line in open(path) if line.strip()]
    results = [None] * len(records)

    def report(i):
        def cb(err, msg):
            results[i] = {"partition": msg.partition(), "offset": msg.offset(),
                          "error": None if err is None else str(err)}
        return cb

    for i, r in enumerate(records):
        kw = {"on_delivery": report(i), "key": unhex(r.get("key")), "value": unhex(r.get("value"))}
        if r.get("partition") is not None:
            kw["partition"] = r["partition"]
        if r.get("ts") is not None:
            kw["timestamp"] = r["ts"]
        if r.get("headers"):
            kw["headers"] = [(n, unhex(v)) for n, v in r["headers"]]
        try:
            p.produce(r["topic"], **kw)
        except Exception as e:      # e.g. MSG_SIZE_TOO_LARGE, refused locally
            results[i] = {"partition": -1, "offset": -1, "error": str(e)}
        p.flush(30)                 # in order, one at a time
    for r in results:
        print(json.dumps(r or {"partition": -1, "offset": -1, "error": "not delivered"}))


def consume(brokers, topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "bytes-client",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions) if topic in md.topics else []
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if hi <= lo:
            continue
        c.assign([TopicPartition(topic, p, lo)])
        seen = lo
        while seen < hi:
            m = c.poll(10)
            if m is None:
                raise SystemExit("timed out reading %s[%d] at %d of %d" % (topic, p, seen, hi))
            if m.error():
                continue
            seen = m.offset() + 1
            print(json.dumps({"partition": m.partition(), "offset": m.offset(),
                              "ts": m.timestamp()[1], "key": tohex(m.key()),
                              "value": tohex(m.value()),
                              "headers": [[n, tohex(v)] for n, v in (m.headers() or [])]}))
    c.close()


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "produce":
        extra = [a for a in sys.argv[4:] if a != "-X"]
        produce(sys.argv[2], sys.argv[3], extra)
    elif len(sys.argv) == 4 and sys.argv[1] == "consume":
        consume(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
