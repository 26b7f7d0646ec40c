/*
 * eddy_kafka — Kafka mode: a high-level consumer in the job's group (the app
 * id), subscribed to the job's sources; partitions assigned by the group
 * become tasks; outputs go through an idempotent producer (murmur2_random).
 * At-least-once: offsets are committed only after every output of the
 * records below them is acknowledged by the broker.
 */
#ifndef EDDY_KAFKA_H
#define EDDY_KAFKA_H

#include <signal.h>
#include "eddy_job.h"
#include "eddy_sink.h"

typedef struct eddy_kafka_conf {
    const char  *brokers;
    const char  *app_id;
    const char **props;          /* "key=value" librdkafka properties (-X), applied last */
    int          nprops;
    int          commit_interval_ms;
    const char  *output;         /* non-NULL: outputs to this file instead of Kafka */
    const char  *dlq;            /* non-NULL: dead letters to this file instead of <app>-dlq */
    int          file_partitions;
    struct eddy_state *state;    /* the job's stores, or NULL (borrowed) */
    struct eddy_reload *reload;  /* hot reload triggers, or NULL */
    int          rollback_errors;
    int          exactly_once;   /* --guarantee exactly_once: transactions (EOS v2) */
    const char  *state_dir;
    int          worker;         /* --threads: this worker's number (1..N), or 0 */
    struct eddy_http *http;      /* --http, or NULL */      /* where the instance id for the transactional id lives */
    volatile sig_atomic_t *stop;
} eddy_kafka_conf;

/**
 * @brief Consume, process and produce until *stop is set; then finish the
 *        batch in hand, commit and leave the group.
 * @returns 0 after a clean stop; EDDY_ESCRIPT (on_error = "fail") or
 *          EDDY_EKAFKA with the reason in @p errstr.
 */
int eddy_kafka_run(eddy_job *job, const eddy_kafka_conf *conf, char *errstr, size_t errstr_size);

/** @brief librdkafka's log lines as eddy's (level, format, --log-format json), for
 *         every client eddy creates (rd_kafka_conf_set_log_cb). */
struct rd_kafka_s;
void eddy_kafka_log_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);

#endif
