/*
 * bench/passthrough.c — scenario (a) of `make bench`: the ceiling. A minimal
 * consume→produce passthrough written straight on librdkafka, tuned:
 *
 *   consumer  queued.min.messages / queued.max.messages.kbytes hold about a
 *             second of input (with the defaults the fetcher stalls ~1 s
 *             each time its queue fills), batches taken with
 *             rd_kafka_consume_batch_queue, offsets auto-committed;
 *   producer  the same delivery guarantees as eddy's (idempotent, acks=all,
 *             murmur2_random on the key), linger 5 ms, 10000 per batch, a
 *             queue large enough never to block.
 *
 * usage: passthrough BROKERS GROUP IN_TOPIC OUT_TOPIC [-X key=value]...
 * Runs until SIGTERM/SIGINT, then flushes, leaves the group and prints
 * "passthrough: N record(s) in, N out" on stderr.
 */
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 10000

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
    (void)sig;
    stop = 1;
}

static unsigned long long failed;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err && failed++ == 0) {
        fprintf(stderr, "passthrough: delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "passthrough: %s=%s: %s\n", k, v, err);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: passthrough BROKERS GROUP IN_TOPIC OUT_TOPIC [-X key=value]...\n");
        return 2;
    }
    const char *brokers = argv[1], *group = argv[2], *in = argv[3], *out = argv[4];
    char err[512];

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    set(pc, "bootstrap.servers", brokers);
    set(pc, "enable.idempotence", "true");
    set(pc, "partitioner", "murmur2_random");
    set(pc, "linger.ms", "5");
    set(pc, "batch.num.messages", "10000");
    set(pc, "queue.buffering.max.messages", "2000000");
    set(pc, "queue.buffering.max.kbytes", "1048576");
    set(pc, "compression.type", "none");
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);

    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    set(cc, "bootstrap.servers", brokers);
    set(cc, "group.id", group);
    set(cc, "auto.offset.reset", "earliest");
    set(cc, "enable.auto.commit", "true");
    set(cc, "auto.commit.interval.ms", "1000");
    set(cc, "queued.min.messages", "1000000");
    set(cc, "queued.max.messages.kbytes", "262144");
    set(cc, "fetch.max.bytes", "52428800");
    set(cc, "enable.partition.eof", "false");

    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "-X") == 0 && i + 1 < argc) {
            char *kv = argv[++i];
            char *eq = strchr(kv, '=');
            if (!eq) {
                fprintf(stderr, "passthrough: -X %s: expected key=value\n", kv);
                return 2;
            }
            *eq = '\0';
            /* -X applies to both clients; each takes the properties it knows */
            rd_kafka_conf_set(pc, kv, eq + 1, err, sizeof err);
            rd_kafka_conf_set(cc, kv, eq + 1, err, sizeof err);
        } else {
            fprintf(stderr, "passthrough: unexpected argument %s\n", argv[i]);
            return 2;
        }
    }

    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
    if (!p) {
        fprintf(stderr, "passthrough: producer: %s\n", err);
        return 1;
    }
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err);
    if (!c) {
        fprintf(stderr, "passthrough: consumer: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_t *ot = rd_kafka_topic_new(p, out, NULL);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        fprintf(stderr, "passthrough: subscribe: %s\n", rd_kafka_err2str(e));
        return 1;
    }

    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(c);
    static rd_kafka_message_t *msgs[BATCH];
    unsigned long long nin = 0, nout = 0;
    while (!stop) {
        ssize_t n = rd_kafka_consume_batch_queue(q, 100, msgs, BATCH);
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (!m->err) {
                nin++;
                while (rd_kafka_produce(ot, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                        m->payload, m->len, m->key, m->key_len, NULL) == -1) {
                    if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        fprintf(stderr, "passthrough: produce: %s\n",
                                rd_kafka_err2str(rd_kafka_last_error()));
                        return 1;
                    }
                    rd_kafka_poll(p, 10);
                }
                nout++;
            }
            rd_kafka_message_destroy(m);
        }
        rd_kafka_poll(p, 0);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_flush(p, 10000);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_topic_destroy(ot);
    rd_kafka_destroy(p);
    fprintf(stderr, "passthrough: %llu record(s) in, %llu out, %llu failed\n", nin, nout, failed);
    return failed ? 1 : 0;
}
