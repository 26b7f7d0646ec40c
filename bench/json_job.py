#!/usr/bin/python3
"""bench/json_job.py — scenario (d) of `make bench`: bench/json_job.lua written
the way a user would otherwise write it, on confluent_kafka, tuned sensibly:
batched consume(num_messages=...), produce() with poll(0) once per batch, the
same prefetch and producer settings as bench/passthrough.c (idempotent,
linger 5 ms, 10000 per batch), offsets auto-committed.

usage: /usr/bin/python3 bench/json_job.py BROKERS GROUP IN_TOPIC OUT_TOPIC [-X key=value]...
(-X properties go to the consumer.)
Runs until SIGTERM/SIGINT, then flushes, leaves the group and prints
"json_job.py: N record(s) in, M out" on stderr.
"""
import json
import signal
import sys

from confluent_kafka import Consumer, KafkaException, Producer


def main(argv):
    if len(argv) < 5:
        sys.stderr.write(__doc__)
        return 2
    brokers, group, in_topic, out_topic = argv[1:5]
    extra = {}
    rest = argv[5:]
    while rest:
        if rest[0] != "-X" or len(rest) < 2 or "=" not in rest[1]:
            sys.stderr.write("json_job.py: unexpected argument %s\n" % rest[0])
            return 2
        k, v = rest[1].split("=", 1)
        extra[k] = v
        rest = rest[2:]

    failed = [0]

    def on_delivery(err, msg):
        if err is not None:
            if failed[0] == 0:
                sys.stderr.write("json_job.py: delivery failed: %s\n" % err)
            failed[0] += 1

    producer = Producer({
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 2000000,
        "queue.buffering.max.kbytes": 1048576,
        "compression.type": "none",
        "on_delivery": on_delivery,
    })
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
        "queued.min.messages": 1000000,
        "queued.max.messages.kbytes": 262144,
        "fetch.max.bytes": 52428800,
        **extra,
    })
    consumer.subscribe([in_topic])

    stop = [False]

    def on_stop(signum, frame):
        stop[0] = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    loads, dumps, produce, poll = json.loads, json.dumps, producer.produce, producer.poll
    n_in = n_out = 0
    while not stop[0]:
        msgs = consumer.consume(num_messages=10000, timeout=0.1)
        for m in msgs:
            if m.error():
                continue
            n_in += 1
            v = loads(m.value())
            if v["n"] % 2 == 0:
                out = dumps({"id": v["id"], "n": v["n"], "ok": True})
                while True:
                    try:
                        produce(out_topic, out, m.key())
                        break
                    except BufferError:
                        poll(0.01)
                n_out += 1
        poll(0)
    producer.flush(10)
    consumer.close()
    sys.stderr.write("json_job.py: %d record(s) in, %d out, %d failed\n" % (n_in, n_out, failed[0]))
    return 1 if failed[0] else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except KafkaException as e:
        sys.stderr.write("json_job.py: %s\n" % e)
        sys.exit(1)
