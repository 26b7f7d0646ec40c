#!/usr/bin/python3
"""Committed offsets of a consumer group, and high watermarks, for the eddy specs.

usage: offsets.py BROKERS GROUP TOPIC:PARTITIONS...

Prints one JSON object: {"TOPIC": {"0": {"committed": n, "high": n}, ...}, ...}
"committed" is -1 when the group has no committed offset for that partition.
Does not join the group (no subscribe), so it does not disturb a running job.
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition


def main():
    if len(sys.argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    brokers, group = sys.argv[1], sys.argv[2]
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "enable.auto.commit": False,
    })
    out = {}
    try:
        tps = []
        for spec in sys.argv[3:]:
            topic, n = spec.rsplit(":", 1)
            tps += [TopicPartition(topic, p) for p in range(int(n))]
        for tp in consumer.committed(tps, timeout=10):
            if tp.error:
                raise SystemExit("committed(%s[%d]): %s" % (tp.topic, tp.partition, tp.error))
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                     timeout=10)
            out.setdefault(tp.topic, {})[str(tp.partition)] = {
                "committed": tp.offset if tp.offset >= 0 else -1,
                "high": high,
            }
    finally:
        consumer.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
