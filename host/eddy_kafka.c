/*
 * eddy_kafka — the Kafka source and sink (see eddy_kafka.h). Shaped like
 * librdkafka's examples/consumer.c, with manual offset commits.
 */
#include "eddy_kafka.h"
#include "eddy.h"
#include "eddy_log.h"
#include "eddy_metrics.h"
#include "eddy_runner.h"
#include "eddy_state.h"
#include "eddy_reload.h"
#include "eddy_clock.h"
#include "eddy_changelog.h"
#include "eddy_dedup.h"
#include "eddy_timesync.h"
#include "eddy_http.h"
#include "eddy_status.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#define BATCH_MAX 4096
#define TIMESYNC_IDLE_MS 1000   /* a task waits this long for a partition behind its end */

/* ---- producer sink ---- */

#define STOP_FLUSH_MS 10000   /* after a stop, wait at most this long for acknowledgements */
#define STOP_COMMIT_MS 6000   /* ... and this long for a group in rebalance to take a commit */

#define SINK_TOPICS 64

typedef struct kafka_sink {
    rd_kafka_t *rk;
    struct {
        char             *name;     /* our copy (generations come and go on reloads) */
        rd_kafka_topic_t *rkt;
    } topics[SINK_TOPICS];          /* a topic handle per name, not a lookup per produce */
    int         ntopics;
    int         last;               /* index of the last topic used */
    volatile sig_atomic_t *stop;
    int         delivery_failures;
    char        first_failure[512];
    int         transactional;      /* exactly_once: failures abort the transaction */
} kafka_sink;

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_sink *ks = opaque;
    if (m->_private && !m->err) {
        eddy_changelog_delivered(m->_private, m->offset);    /* a changelog record */
    }
    if (m->err) {
        if (ks->delivery_failures++ == 0) {
            snprintf(ks->first_failure, sizeof ks->first_failure, "delivery to %s failed: %s",
                     rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        }
    }
}

static int ks_write(void *ctx, const char *topic, int32_t partition, int32_t fallback,
                    int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                    const eddy_hdr *hdrs, int nhdrs)
{
    kafka_sink *ks = ctx;
    rd_kafka_headers_t *h = NULL;
    if (nhdrs > 0) {
        h = rd_kafka_headers_new((size_t)nhdrs);
        for (int i = 0; i < nhdrs; i++) {
            rd_kafka_header_add(h, hdrs[i].name, hdrs[i].nlen, hdrs[i].value,
                                hdrs[i].value ? hdrs[i].vlen : -1);
        }
    }
    rd_kafka_topic_t *rkt = NULL;
    if (ks->ntopics && strcmp(ks->topics[ks->last].name, topic) == 0) {
        rkt = ks->topics[ks->last].rkt;
    } else {
        for (int i = 0; i < ks->ntopics; i++) {
            if (strcmp(ks->topics[i].name, topic) == 0) {
                rkt = ks->topics[i].rkt;
                ks->last = i;
                break;
            }
        }
    }
    rd_kafka_topic_t *temp = NULL;    /* beyond the cache: a handle for this call only */
    if (!rkt) {
        rkt = rd_kafka_topic_new(ks->rk, topic, NULL);
        if (ks->ntopics < SINK_TOPICS) {
            ks->topics[ks->ntopics].name = strdup(topic);
            ks->last = ks->ntopics;
            ks->topics[ks->ntopics++].rkt = rkt;
        } else {
            temp = rkt;
        }
    }
    size_t ksize = klen < 0 ? 0 : (size_t)klen;
    size_t vsize = vlen < 0 ? 0 : (size_t)vlen;
    int32_t part = partition < 0 ? RD_KAFKA_PARTITION_UA : partition;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            ks->rk, RD_KAFKA_V_RKT(rkt),
            RD_KAFKA_V_PARTITION(part),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(k, ksize),
            RD_KAFKA_V_VALUE((void *)v, vsize),
            RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!err) {
            if (temp) {
                rd_kafka_topic_destroy(temp);
            }
            return 0;
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(ks->rk, 10);     /* serve delivery reports, make room */
            continue;
        }
        if (h) {
            rd_kafka_headers_destroy(h);
        }
        if (temp) {
            rd_kafka_topic_destroy(temp);
        }
        char why[256];
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            /* librdkafka's own check: say which record and which setting */
            snprintf(why, sizeof why, "a record of %zu bytes (key %zu, value %zu, and headers) "
                     "is larger than the producer's message.max.bytes: raise it with -X "
                     "message.max.bytes=N (the topic's max.message.bytes must allow it too)",
                     ksize + vsize, ksize, vsize);
        } else {
            snprintf(why, sizeof why, "%s", rd_kafka_err2str(err));
        }
        if (ks->transactional && err != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
            /* the open transaction failed (an abortable error): the commit aborts it and
             * rewinds, so this record is processed again (a record too large fails the
             * same way every time: it stops the job, the transaction aborted, as under
             * at_least_once) */
            if (ks->delivery_failures++ == 0) {
                snprintf(ks->first_failure, sizeof ks->first_failure, "cannot produce to %s: %s",
                         topic, why);
            }
            return 0;
        }
        eddy_log_error("kafka: cannot produce to %s: %s", topic, why);
        snprintf(ks->first_failure, sizeof ks->first_failure, "cannot produce to %s: %s",
                 topic, why);                /* for the stop line */
        return EDDY_EKAFKA;
    }
}

static int ks_flush(void *ctx)
{
    kafka_sink *ks = ctx;
    int waited_since_stop = 0;
    while (rd_kafka_outq_len(ks->rk) > 0) {
        if (ks->transactional && ks->delivery_failures) {
            break;          /* the transaction failed: it is aborted, not waited for */
        }
        rd_kafka_flush(ks->rk, 1000);
        if (rd_kafka_outq_len(ks->rk) == 0) {
            break;
        }
        eddy_log_warn("kafka: waiting for %d output record(s) to be acknowledged",
                      rd_kafka_outq_len(ks->rk));
        if (*ks->stop && (waited_since_stop += 1000) >= STOP_FLUSH_MS) {
            snprintf(ks->first_failure, sizeof ks->first_failure,
                     "%d output record(s) not acknowledged %d s after the stop; offsets not "
                     "committed (the records will be processed again on restart)",
                     rd_kafka_outq_len(ks->rk), STOP_FLUSH_MS / 1000);
            ks->delivery_failures++;
            return EDDY_EKAFKA;
        }
    }
    rd_kafka_poll(ks->rk, 0);
    if (ks->delivery_failures) {
        eddy_log_error("kafka: %d output record(s) failed; first: %s", ks->delivery_failures,
                       ks->first_failure);
        return EDDY_EKAFKA;
    }
    return 0;
}

static void ks_close(void *ctx)
{
    kafka_sink *ks = ctx;
    for (int i = 0; i < ks->ntopics; i++) {
        rd_kafka_topic_destroy(ks->topics[i].rkt);
        free(ks->topics[i].name);
    }
    free(ks);    /* the producer handle is owned by the run */
}

static const eddy_sink_ops kafka_sink_ops = {ks_write, ks_flush, ks_close};

/* ---- the run ---- */

typedef struct run {
    const eddy_kafka_conf *conf;
    eddy_job     *job;
    rd_kafka_t   *consumer;
    rd_kafka_t   *producer;
    eddy_sink    *sink, *dlq;
    kafka_sink   *ks;
    eddy_runner  *runner;
    rd_kafka_topic_partition_list_t *tasks;   /* assigned partitions; .offset = next to commit */
    rd_kafka_topic_partition_list_t *starts;  /* the same; .offset = where each started */
    int           dirty;                     /* offsets advanced since the last commit */
    rd_kafka_topic_partition_list_t *pending; /* processed, flushed, not yet committed */
    eddy_changelog *cl;                      /* the stores' changelogs (stateful jobs) */
    eddy_dedup   *dedup;                     /* repartitioned records already taken */
    eddy_timesync *sync;                     /* jobs with tables: timestamp order per task */
    rd_kafka_t   *global;                    /* global tables: every partition, no group */
    int           global_parts;              /* partitions assigned to it */
    int           in_txn;                    /* exactly_once: a transaction is open */
    int           failed;                    /* a rebalance failed (restore): stop */
    int           stopping;                  /* the last commit: no new transaction after it */
    char         *errstr;
    size_t        errstr_size;
} run;

void eddy_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (strstr(buf, "is a consumer property and will be ignored") ||
        strstr(buf, "is a producer property and will be ignored")) {
        return;    /* -X applies to both clients; each ignores the other's properties */
    }
    if (!strcmp(fac, "FAIL")) {
        return;    /* connection failures also reach error_cb, which rate-limits them */
    }
    if (level <= 3) {
        eddy_log_error("kafka %s: %s", fac, buf);
    } else if (level <= 4) {
        eddy_log_warn("kafka %s: %s", fac, buf);
    } else {
        eddy_log_debug("kafka %s: %s", fac, buf);
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
        err == RD_KAFKA_RESP_ERR__RESOLVE) {
        /* the same outage is reported by both clients and on every retry: say it every 10 s */
        static time_t last;
        time_t now = time(NULL);
        if (now - last >= 10) {
            last = now;
            eddy_log_warn("kafka: %s (retrying)", reason);
        }
    } else {
        eddy_log_error("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    }
}


/* Move the offsets processed since the last commit into r->pending. */
static void take_offsets(run *r)
{
    if (!r->dirty || !r->tasks) {
        return;
    }
    if (!r->pending) {
        r->pending = rd_kafka_topic_partition_list_new(r->tasks->cnt);
    }
    for (int i = 0; i < r->tasks->cnt; i++) {
        rd_kafka_topic_partition_t *t = &r->tasks->elems[i];
        if (t->offset < 0) {
            continue;
        }
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(r->pending, t->topic, t->partition);
        if (!p) {
            p = rd_kafka_topic_partition_list_add(r->pending, t->topic, t->partition);
        }
        p->offset = t->offset;
    }
    r->dirty = 0;
}

/* Commit r->pending. A failure (a rebalance in progress, say) keeps them
 * pending for the next try. @returns 0 when nothing is left pending. */
static int commit_pending(run *r)
{
    if (!r->pending || r->pending->cnt == 0) {
        return 0;
    }
    if (!r->tasks) {
        return EDDY_EKAFKA;     /* between generations: the assignment callback retries */
    }
    rd_kafka_resp_err_t err = rd_kafka_commit(r->consumer, r->pending, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        static int64_t last_warn;
        int64_t now = eddy_mono_ms();
        if (now - last_warn >= 5000) {
            last_warn = now;
            eddy_log_warn("kafka: offset commit failed: %s (kept; retried)", rd_kafka_err2str(err));
        }
        return EDDY_EKAFKA;
    }
    rd_kafka_topic_partition_list_destroy(r->pending);
    r->pending = NULL;
    return 0;
}

/* Flush every output and changelog record; @returns 0 when all are acknowledged. */
static int flush_all(run *r)
{
    int rc = eddy_sink_flush(r->sink);
    if (rc == 0 && r->dlq != r->sink) {
        rc = eddy_sink_flush(r->dlq);
    }
    if (rc == 0) {
        rc = ks_flush(r->ks);       /* changelogs, and outputs when the sinks are files */
    }
    if (rc) {
        snprintf(r->errstr, r->errstr_size, "%s", r->ks && r->ks->delivery_failures
                 ? r->ks->first_failure : "cannot flush outputs; offsets not committed");
    }
    return rc;
}

static int rewind_tasks(run *r);

/* Abort the open transaction, serving the delivery reports of the records it
 * drops meanwhile (the abort waits for them), for at most a minute. */
static rd_kafka_error_t *abort_txn(run *r)
{
    for (int attempt = 0;; attempt++) {
        /* records the failed transaction still holds (queued, in flight, or waiting for a
         * retry) are purged on every try, and their delivery reports served: the abort
         * waits for them */
        rd_kafka_purge(r->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(r->producer, 100);
        rd_kafka_error_t *e = rd_kafka_abort_transaction(r->producer, 500);
        if (!e || !rd_kafka_error_is_retriable(e) || attempt >= 120) {
            return e;
        }
        if (attempt % 10 == 9) {
            eddy_log_warn("kafka: still aborting the transaction: %s", rd_kafka_error_string(e));
        }
        rd_kafka_error_destroy(e);
    }
}

/* exactly_once: the open transaction holds the interval's outputs, changelog
 * records and commit markers; the input offsets join it, it commits, and the
 * LMDB transaction commits right after. A failure aborts it and rewinds every
 * task to its last commit. */
static int commit_txn(run *r)
{
    rd_kafka_error_t *e = NULL;
    int rc = 0;
    if (!r->in_txn) {
        return 0;          /* after the last commit of a stop */
    }
    if (r->dedup && eddy_dedup_flush(r->dedup)) {
        snprintf(r->errstr, r->errstr_size, "%s", eddy_state_error(r->conf->state));
        return EDDY_EKAFKA;
    }
    if (r->cl && eddy_changelog_write_changes(r->cl)) {
        snprintf(r->errstr, r->errstr_size, "cannot write the changelogs");
        rc = EDDY_EKAFKA;
    }
    if (!rc && r->cl && (rc = flush_all(r)) == 0 && eddy_changelog_write_markers(r->cl)) {
        snprintf(r->errstr, r->errstr_size, "cannot write the commit markers");
        rc = EDDY_EKAFKA;
    }
    if (!rc && r->ks->delivery_failures) {
        /* a record refused by produce() is not in the transaction, which would commit
         * without it, the input offsets with it: abort instead */
        snprintf(r->errstr, r->errstr_size, "%s", r->ks->first_failure);
        rc = EDDY_EKAFKA;
    }
    take_offsets(r);
    if (!rc && r->pending && r->pending->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *gm = rd_kafka_consumer_group_metadata(r->consumer);
        e = rd_kafka_send_offsets_to_transaction(r->producer, r->pending, gm, 30000);
        rd_kafka_consumer_group_metadata_destroy(gm);
    }
    if (!rc && !e) {
        e = rd_kafka_commit_transaction(r->producer, 60000);
    }
    if (!rc && !e && r->ks->delivery_failures) {
        snprintf(r->errstr, r->errstr_size, "%s", r->ks->first_failure);
        rc = EDDY_EKAFKA;
    }
    if (e || rc) {
        if (e && rd_kafka_error_is_fatal(e)) {
            snprintf(r->errstr, r->errstr_size, "transaction failed for good (fenced by a newer "
                     "instance?): %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return EDDY_EKAFKA;
        }
        eddy_log_warn("kafka: transaction failed (%s): aborting it and going back to the last "
                      "commit", e ? rd_kafka_error_string(e) : r->errstr);
        if (e) {
            rd_kafka_error_destroy(e);
        }
        e = abort_txn(r);
        r->in_txn = 0;
        if (e) {
            snprintf(r->errstr, r->errstr_size, "cannot abort the transaction: %s",
                     rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return EDDY_EKAFKA;
        }
        r->ks->delivery_failures = 0;
        eddy_stats.txn_aborts++;
        if ((rc = rewind_tasks(r)) != 0) {
            return rc;
        }
    } else {
        r->in_txn = 0;
        eddy_stats.txn_commits++;
        if (r->pending) {
            /* the broker took them in the transaction; committing them again outside it
             * changes nothing on Kafka, and the development broker needs it (it drops
             * offsets sent in a transaction) */
            rd_kafka_commit(r->consumer, r->pending, 1);
            rd_kafka_topic_partition_list_destroy(r->pending);
            r->pending = NULL;
        }
        if (r->cl && eddy_changelog_record(r->cl, r->errstr, r->errstr_size)) {
            return EDDY_EKAFKA;
        }
        if (r->conf->state && eddy_state_commit(r->conf->state, r->errstr, r->errstr_size)) {
            return EDDY_EKAFKA;
        }
    }
    if (r->stopping) {
        return 0;
    }
    if ((e = rd_kafka_begin_transaction(r->producer)) != NULL) {
        snprintf(r->errstr, r->errstr_size, "cannot begin a transaction: %s",
                 rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return EDDY_EKAFKA;
    }
    r->in_txn = 1;
    return 0;
}

/* Flush outputs, then commit the offsets of everything processed. A commit
 * the broker refuses stays pending; only a failed flush is an error.
 * With changelogs: the changed keys go out with the outputs; once all are
 * acknowledged the commit markers follow, then LMDB commits, then Kafka. */
static int commit_now(run *r);

/* A commit, timed for /metrics. */
static int commit(run *r)
{
    int64_t t0 = eddy_mono_us();
    int rc = commit_now(r);
    eddy_status_commit(eddy_mono_us() - t0);
    if (rc) {
        eddy_status_error(r->errstr);
    }
    return rc;
}

static int commit_now(run *r)
{
    if (r->runner && eddy_runner_holding(r->runner)) {
        return 0;        /* a new version's failure streak is undecided: commit nothing yet */
    }
    if (r->failed) {
        return EDDY_EKAFKA;     /* a restore failed: nothing may be committed */
    }
    if (r->conf->exactly_once) {
        return commit_txn(r);
    }
    if (r->dedup && eddy_dedup_flush(r->dedup)) {
        snprintf(r->errstr, r->errstr_size, "%s", eddy_state_error(r->conf->state));
        return EDDY_EKAFKA;
    }
    if (r->cl && eddy_changelog_write_changes(r->cl)) {
        snprintf(r->errstr, r->errstr_size, "cannot write the changelogs");
        return EDDY_EKAFKA;
    }
    if (flush_all(r)) {
        return EDDY_EKAFKA;
    }
    if (r->cl && (eddy_changelog_write_markers(r->cl) || flush_all(r) ||
                  eddy_changelog_record(r->cl, r->errstr, r->errstr_size))) {
        return EDDY_EKAFKA;
    }
    if (r->conf->state && eddy_state_commit(r->conf->state, r->errstr, r->errstr_size) != 0) {
        return EDDY_EKAFKA;     /* state not durable: offsets are not committed either */
    }
    take_offsets(r);
    commit_pending(r);
    return 0;
}

/* Bring the tasks of @p parts up to their last commit from the changelogs,
 * before any of their records is processed. */
static int restore_tasks(run *r, const rd_kafka_topic_partition_list_t *parts)
{
    if (!r->cl) {
        return 0;
    }
    eddy_changelog_set_job(r->cl, r->job);
    int32_t ids[1024];
    int n = 0;
    for (int i = 0; i < parts->cnt && n < 1024; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int sub = eddy_changelog_sub_of(r->cl, p->topic);
        int32_t id = (sub << 16) | p->partition;
        int seen = sub < 0;
        for (int j = 0; j < n && !seen; j++) {
            seen = ids[j] == id;
        }
        if (!seen) {
            ids[n++] = id;
        }
    }
    if (eddy_changelog_restore_tasks(r->cl, ids, n, r->conf->stop, r->errstr, r->errstr_size)) {
        return EDDY_EKAFKA;
    }
    return eddy_state_commit(r->conf->state, r->errstr, r->errstr_size) ? EDDY_EKAFKA : 0;
}

/* Where each task goes on: after the inputs its state reflects, or the group's
 * committed offset when that is further (an interval that changed no state). */
static void resume_positions(run *r, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_copy(parts);
    int have = rd_kafka_committed(r->consumer, committed, 5000) == 0;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t local = eddy_state_input_offset(r->conf->state, p->partition, p->topic);
        int64_t group = have ? committed->elems[i].offset : -1;
        if (local >= 0 && local > group && local > p->offset) {
            eddy_log_info("task %s[%d]: the state reflects inputs up to offset %lld (the "
                          "group committed %lld): going on from there", p->topic,
                          p->partition, (long long)local, (long long)group);
            p->offset = local;
        } else if (p->offset < 0 && group >= 0) {
            p->offset = group;        /* explicit: where it starts is then known (timesync, lag) */
        }
    }
    rd_kafka_topic_partition_list_destroy(committed);
}

/* exactly_once, after an abort: drop what the aborted transaction did to the
 * state, restore every task to its last commit and seek back to its inputs. */
static int rewind_tasks(run *r)
{
    if (r->pending) {
        rd_kafka_topic_partition_list_destroy(r->pending);
        r->pending = NULL;
    }
    r->dirty = 0;
    if (!r->tasks || r->tasks->cnt == 0) {
        return 0;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_copy(r->tasks);
    for (int i = 0; i < parts->cnt; i++) {
        parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
        r->tasks->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    }
    if (r->sync) {
        eddy_timesync_drop(r->sync, -1);      /* records held back are fetched again */
        for (int i = 0; i < parts->cnt; i++) {
            int sub = eddy_changelog_sub_of(r->cl, parts->elems[i].topic);
            eddy_timesync_assign(r->sync, parts->elems[i].topic, parts->elems[i].partition,
                                 ((sub < 0 ? 0 : sub) << 16) | parts->elems[i].partition, -1);
        }
    }
    int rc = 0;
    if (r->conf->state) {
        eddy_state_abort(r->conf->state);
        if (r->dedup) {
            eddy_dedup_forget(r->dedup, -1);
        }
        eddy_job_forget_all(r->job);
        for (int i = 0; i < parts->cnt; i++) {
            eddy_job_assign_partition(r->job, parts->elems[i].partition);
        }
        rc = restore_tasks(r, parts);
        if (rc == 0) {
            resume_positions(r, parts);
        }
    }
    if (rc == 0) {
        rd_kafka_topic_partition_list_t *committed = rd_kafka_topic_partition_list_copy(parts);
        rd_kafka_committed(r->consumer, committed, 5000);
        for (int i = 0; i < parts->cnt; i++) {
            if (parts->elems[i].offset < 0) {
                parts->elems[i].offset = committed->elems[i].offset >= 0
                                             ? committed->elems[i].offset
                                             : RD_KAFKA_OFFSET_BEGINNING;
            }
        }
        rd_kafka_topic_partition_list_destroy(committed);
        rd_kafka_error_t *e = rd_kafka_seek_partitions(r->consumer, parts, 10000);
        if (e) {
            snprintf(r->errstr, r->errstr_size, "cannot rewind: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            rc = EDDY_EKAFKA;
        } else {
            eddy_log_info("kafka: %d task(s) back at their last commit", parts->cnt);
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return rc;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    run *r = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *p = &parts->elems[i];
            rd_kafka_topic_partition_t *pend =
                r->pending ? rd_kafka_topic_partition_list_find(r->pending, p->topic, p->partition)
                           : NULL;
            if (pend) {
                p->offset = pend->offset;   /* ours again: go on after what we processed */
            }
        }
        if (r->conf->state) {
            /* first the state: up to its last commit from the changelogs; then, as the
             * state records the inputs it reflects, go on after them when the group's
             * committed offset is behind (a crash between the state commit and the
             * offset commit), so no input is applied to the state twice */
            if (r->dedup) {
                eddy_dedup_forget(r->dedup, -1);    /* reread from the restored state */
            }
            if (restore_tasks(r, parts) != 0) {
                eddy_log_error("kafka: cannot restore the state: %s", r->errstr);
                eddy_state_abort(r->conf->state);
                r->failed = 1;
                *r->conf->stop = 1;
            }
            resume_positions(r, parts);
        }
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *p = &parts->elems[i];
            eddy_log_info("task %s[%d] assigned", p->topic, p->partition);
            if (r->sync) {
                int sub = eddy_changelog_sub_of(r->cl, p->topic);
                eddy_timesync_assign(r->sync, p->topic, p->partition,
                                     ((sub < 0 ? 0 : sub) << 16) | p->partition, p->offset);
            }
            if (r->conf->state) {
                eddy_job_assign_partition(r->job, p->partition);
            }
        }
        if (r->pending) {
            /* offsets we could not commit for partitions now owned elsewhere: the new
             * owner processes those records again (at-least-once); never move its
             * position back by committing them late */
            rd_kafka_topic_partition_list_t *keep = rd_kafka_topic_partition_list_new(parts->cnt);
            for (int i = 0; i < r->pending->cnt; i++) {
                rd_kafka_topic_partition_t *q = &r->pending->elems[i];
                if (rd_kafka_topic_partition_list_find(parts, q->topic, q->partition)) {
                    rd_kafka_topic_partition_list_add(keep, q->topic, q->partition)->offset = q->offset;
                } else {
                    eddy_log_warn("task %s[%d]: offset %lld was not committed before it moved; "
                                  "its new owner processes those records again", q->topic,
                                  q->partition, (long long)q->offset);
                }
            }
            rd_kafka_topic_partition_list_destroy(r->pending);
            r->pending = keep;
        }
        if (r->tasks) {
            rd_kafka_topic_partition_list_destroy(r->tasks);
        }
        r->tasks = rd_kafka_topic_partition_list_copy(parts);
        for (int i = 0; i < r->tasks->cnt; i++) {
            r->tasks->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
        }
        if (r->starts) {
            rd_kafka_topic_partition_list_destroy(r->starts);
        }
        r->starts = rd_kafka_topic_partition_list_copy(parts);   /* where each task starts */
        rd_kafka_assign(rk, parts);
        commit_pending(r);
    } else {
        /* revoked: everything processed so far is flushed and committed first */
        if (commit(r) != 0) {
            eddy_log_error("kafka: %s", r->errstr);
        }
        for (int i = 0; i < parts->cnt; i++) {
            eddy_log_info("task %s[%d] revoked", parts->elems[i].topic, parts->elems[i].partition);
            if (r->cl) {
                eddy_changelog_forget(r->cl, parts->elems[i].partition);
            }
            if (r->dedup) {
                eddy_dedup_forget(r->dedup, parts->elems[i].partition);
            }
            if (r->sync) {
                eddy_timesync_drop(r->sync, parts->elems[i].partition);
            }
            if (r->conf->state) {
                eddy_state_drop_partition(r->conf->state, parts->elems[i].partition);
                eddy_job_forget_partition(r->job, parts->elems[i].partition);
            }
        }
        if (r->tasks) {
            rd_kafka_topic_partition_list_destroy(r->tasks);
            r->tasks = NULL;
        }
        if (r->starts) {
            rd_kafka_topic_partition_list_destroy(r->starts);
            r->starts = NULL;
        }
        rd_kafka_assign(rk, NULL);
    }
}

static int set_props(rd_kafka_conf_t *kc, const eddy_kafka_conf *c, const char **defaults,
                     char *errstr, size_t errstr_size)
{
    for (int i = 0; defaults[i]; i += 2) {
        if (rd_kafka_conf_set(kc, defaults[i], defaults[i + 1], errstr, errstr_size)) {
            return EDDY_EKAFKA;
        }
    }
    for (int i = 0; i < c->nprops; i++) {
        char key[256];
        const char *eq = strchr(c->props[i], '=');
        if (!eq || eq == c->props[i] || (size_t)(eq - c->props[i]) >= sizeof key) {
            snprintf(errstr, errstr_size, "-X %s: expected key=value", c->props[i]);
            return EDDY_EUSAGE;
        }
        memcpy(key, c->props[i], (size_t)(eq - c->props[i]));
        key[eq - c->props[i]] = '\0';
        char err2[256];
        rd_kafka_conf_res_t res = rd_kafka_conf_set(kc, key, eq + 1, err2, sizeof err2);
        if (res == RD_KAFKA_CONF_INVALID) {
            snprintf(errstr, errstr_size, "-X %s: %s", c->props[i], err2);
            return EDDY_EUSAGE;
        }
        /* RD_KAFKA_CONF_UNKNOWN: a property of the other client type; ignore here */
    }
    return 0;
}

/* The partition count of a topic in the metadata, or -1. */
static int partitions_of(const struct rd_kafka_metadata *md, const char *topic)
{
    for (int i = 0; i < md->topic_cnt; i++) {
        if (!strcmp(md->topics[i].topic, topic) && !md->topics[i].err) {
            return md->topics[i].partition_cnt;
        }
    }
    return -1;
}

/* A stream-stream join reads both streams in one sub-topology: its sources
 * must have one partition count. @returns 0, or EDDY_ETOPO with the reason. */
static int check_join_sources(run *r, const struct rd_kafka_metadata *md, int sub, const char *join)
{
    const char *first = NULL;
    int parts = -1;
    for (int s = 0; s < eddy_job_nsources(r->job); s++) {
        const char *src = eddy_job_source(r->job, s);
        int n = partitions_of(md, src);
        if (n < 0 || (r->cl && eddy_changelog_sub_of(r->cl, src) != sub)) {
            continue;
        }
        if (!first) {
            first = src;
            parts = n;
        } else if (n != parts) {
            snprintf(r->errstr, r->errstr_size, "join %s reads %s (%d partitions) and %s (%d): the "
                     "streams of a join must be co-partitioned (the same partition count and key)",
                     join, first, parts, src, n);
            return EDDY_ETOPO;
        }
    }
    return 0;
}

/* A job with a table joins it with streams of the same sub-topology: every
 * source of that sub-topology must have the table topic's partition count
 * (Kafka Streams' co-partitioning); so must the streams of a stream-stream
 * join. Called per layout line; @returns 0, or EDDY_ETOPO with the reason. */
typedef struct copart {
    run                             *r;
    const struct rd_kafka_metadata *md;
} copart;

static int copartition_fn(void *opaque, const char *kind, int sub, const char *name)
{
    copart *c = opaque;
    run *r = c->r;
    if (!strcmp(kind, "join")) {
        return check_join_sources(r, c->md, sub, name);
    }
    int tparts = strcmp(kind, "table") ? -1 : partitions_of(c->md, name);
    for (int s = 0; s < eddy_job_nsources(r->job) && tparts > 0; s++) {
        const char *src = eddy_job_source(r->job, s);
        int n = partitions_of(c->md, src);
        if (n < 0 || (r->cl && eddy_changelog_sub_of(r->cl, src) != sub)) {
            continue;
        }
        if (n != tparts) {
            snprintf(r->errstr, r->errstr_size, "table %s has %d partitions but source "
                     "%s has %d: a table and the streams joined with it must be "
                     "co-partitioned (the same partition count and key)", name, tparts, src, n);
            return EDDY_ETOPO;
        }
    }
    return 0;
}

static int check_copartitioning(run *r, const struct rd_kafka_metadata *md)
{
    copart c = {r, md};
    return eddy_job_layout_each(r->job, copartition_fn, &c);
}

typedef struct table_parts {
    const struct rd_kafka_metadata *md;
    int                             sub;
} table_parts;

static int table_parts_fn(void *opaque, const char *kind, int sub, const char *name)
{
    table_parts *t = opaque;
    if (!strcmp(kind, "table") && sub == t->sub) {
        int n = partitions_of(t->md, name);
        return n > 0 ? n : 0;
    }
    return 0;
}

/* The partition count of the table read in sub-topology @p sub, or 0. */
static int table_partitions(const eddy_job *job, const struct rd_kafka_metadata *md, int sub)
{
    table_parts t = {md, sub};
    return eddy_job_layout_each(job, table_parts_fn, &t);
}

/* The changelog topics of the job's families (at most 32). */
typedef struct changelog_names {
    const char *app_id;
    int         n;
    char        names[32][600];
} changelog_names;

static int changelog_name_fn(void *opaque, const char *kind, int sub, const char *name)
{
    changelog_names *c = opaque;
    (void)sub;
    if (!strcmp(kind, "family") && c->n < 32) {
        snprintf(c->names[c->n++], sizeof c->names[0], "%s-%s-changelog", c->app_id, name);
    }
    return 0;
}

/* Create missing sink topics with the Admin API where the broker has a
 * controller; otherwise rely on auto-creation, with one warning. */
static int ensure_topics(run *r)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    for (int attempt = 0; !*r->conf->stop; attempt++) {
        err = rd_kafka_metadata(r->producer, 1, NULL, &md, 2000);
        if (!err) {
            break;
        }
        eddy_log_warn("kafka: cannot reach the brokers at %s (%s); retrying",
                      r->conf->brokers, rd_kafka_err2str(err));
    }
    if (!md) {
        return 0;
    }
    if (check_copartitioning(r, md)) {
        rd_kafka_metadata_destroy(md);
        return EDDY_ETOPO;
    }
    int source_parts = partitions_of(md, eddy_job_source(r->job, 0));
    const char *missing[64];
    int parts[64];
    int nmissing = 0;
    int nsinks = eddy_job_nsinks(r->job);
    /* the sinks (repartition topics included), then the changelogs */
    changelog_names cn;
    cn.app_id = r->conf->app_id;
    cn.n = 0;
    if (r->cl) {
        eddy_job_layout_each(r->job, changelog_name_fn, &cn);
    }
    char (*changelogs)[600] = cn.names;
    int nchangelogs = cn.n;
    int first_changelog = -1;
    for (int s = 0; s < nsinks + nchangelogs && nmissing < 64; s++) {
        const char *t = s < nsinks ? eddy_job_sink(r->job, s) : changelogs[s - nsinks];
        int n = partitions_of(md, t);
        int found = n >= 0;
        if (found && s >= nsinks && source_parts > 0 && n < source_parts) {
            eddy_log_warn("kafka: changelog %s has %d partitions, the sources %d: tasks "
                          "%d and up cannot log their state (recreate it with %d)", t, n,
                          source_parts, n, source_parts);
        }
        if (!found) {
            if (s >= nsinks && first_changelog < 0) {
                first_changelog = nmissing;
            }
            /* a repartition topic read beside a table gets the table's partition count */
            int sub = s < nsinks && r->cl ? eddy_changelog_sub_of(r->cl, t) : -1;
            int tp = sub >= 0 ? table_partitions(r->job, md, sub) : -1;
            parts[nmissing] = tp > 0 ? tp : source_parts;
            missing[nmissing++] = t;
        }
    }
    int32_t controller = rd_kafka_controllerid(r->producer, 2000);
    int has_controller = 0;
    for (int i = 0; i < md->broker_cnt; i++) {
        if (md->brokers[i].id == controller) {
            has_controller = 1;
        }
    }
    rd_kafka_metadata_destroy(md);
    if (nmissing == 0) {
        return 0;
    }
    if (!has_controller) {
        eddy_log_warn("kafka: the broker has no reachable controller for CreateTopics (the "
                      "development broker?): %d missing topic(s), starting with %s, will be "
                      "auto-created on first write with the broker's default partition count%s",
                      nmissing, missing[0], first_changelog >= 0
                      ? " (changelogs need as many partitions as the sources: pre-create them)" : "");
        return 0;
    }
    rd_kafka_NewTopic_t *nt[64];
    char errbuf[256];
    for (int i = 0; i < nmissing; i++) {
        nt[i] = rd_kafka_NewTopic_new(missing[i], parts[i] > 0 ? parts[i] : -1, -1,
                                      errbuf, sizeof errbuf);
        if (first_changelog >= 0 && i >= first_changelog) {
            rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy", "compact");
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(r->producer);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(r->producer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(ao, 5000, errbuf, sizeof errbuf);
    rd_kafka_CreateTopics(r->producer, nt, (size_t)nmissing, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 10000);
    if (!ev || rd_kafka_event_error(ev)) {
        eddy_log_warn("kafka: CreateTopics failed (%s); missing sink topics will be auto-created",
                      ev ? rd_kafka_event_error_string(ev) : "timed out");
    } else {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t cnt;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                eddy_log_warn("kafka: cannot create %s: %s", rd_kafka_topic_result_name(tr[i]),
                              rd_kafka_err2str(e));
            } else if (!e) {
                eddy_log_info("kafka: created topic %s", rd_kafka_topic_result_name(tr[i]));
            }
        }
    }
    if (ev) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    for (int i = 0; i < nmissing; i++) {
        rd_kafka_NewTopic_destroy(nt[i]);
    }
    return 0;
}

#define GLOBAL_TASK (EDDY_GLOBAL_SUB << 16)     /* the task of global tables */

static int is_global_fn(void *opaque, const char *kind, int sub, const char *name)
{
    (void)sub;
    return !strcmp(kind, "global") && !strcmp(name, (const char *)opaque);
}

/* Is @p topic a global table's (read whole by every instance, not through the group)? */
static int is_global(const eddy_job *job, const char *topic)
{
    return eddy_job_layout_each(job, is_global_fn, (void *)topic);
}

/* Global tables: a consumer of their own assigned every partition, from the
 * offsets the state recorded (or the beginning). @returns 0 (also when the job
 * has none), or an error with the reason in r->errstr. */
static int global_start(run *r, rd_kafka_t *gc)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(gc, 1, NULL, &md, 10000) != 0 || !md) {
        snprintf(r->errstr, r->errstr_size, "global tables: cannot list the topics");
        return EDDY_EKAFKA;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (int i = 0; i < md->topic_cnt; i++) {
        const char *t = md->topics[i].topic;
        if (md->topics[i].err || !is_global(r->job, t)) {
            continue;
        }
        for (int p = 0; p < md->topics[i].partition_cnt; p++) {
            char key[600];
            snprintf(key, sizeof key, "%s@%d", t, p);
            int64_t off = r->conf->state ? eddy_state_meta(r->conf->state, GLOBAL_TASK, "__offsets", key) : -1;
            rd_kafka_topic_partition_list_add(l, t, p)->offset = off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
        }
    }
    rd_kafka_metadata_destroy(md);
    int n = l->cnt;
    r->global_parts = n;
    rd_kafka_resp_err_t err = n ? rd_kafka_assign(gc, l) : RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_topic_partition_list_destroy(l);
    if (r->conf->state) {
        eddy_state_commit(r->conf->state, r->errstr, r->errstr_size);
    }
    if (err) {
        snprintf(r->errstr, r->errstr_size, "global tables: %s", rd_kafka_err2str(err));
        return EDDY_EKAFKA;
    }
    eddy_log_info("global tables: reading %d partition(s) whole", n);
    return 0;
}

/* The tasks, their positions and lags, for /status and /metrics. */
static void report_tasks(run *r)
{
    static eddy_status_task ts[1024];
    int n = 0;
    if (r->tasks) {
        rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_copy(r->tasks);
        rd_kafka_position(r->consumer, pos);
        for (int i = 0; i < pos->cnt && n < 1024; i++) {
            rd_kafka_topic_partition_t *p = &pos->elems[i];
            int64_t lo = -1, hi = -1;
            rd_kafka_get_watermark_offsets(r->consumer, p->topic, p->partition, &lo, &hi);
            eddy_status_task *t = &ts[n++];
            snprintf(t->topic, sizeof t->topic, "%s", p->topic);
            t->partition = p->partition;
            rd_kafka_topic_partition_t *st =
                p->offset < 0 && r->starts
                    ? rd_kafka_topic_partition_list_find(r->starts, p->topic, p->partition) : NULL;
            if (st && st->offset >= 0) {
                p->offset = st->offset;                   /* nothing consumed yet: its start */
            }
            t->offset = p->offset;
            t->lag = hi >= 0 ? hi - (p->offset >= 0 ? p->offset : lo) : -1;
            if (t->lag < 0 && hi >= 0) {
                t->lag = 0;
            }
        }
        rd_kafka_topic_partition_list_destroy(pos);
    }
    eddy_status_tasks(ts, n);
    eddy_status_sizes(eddy_job_lua_bytes(r->job), eddy_state_bytes(r->conf->state));
}

/* A repartitioned record the downstream task has taken already (eddy_dedup.h). */
static int is_duplicate(run *r, int sub, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h;
    const void *v;
    size_t n;
    if (rd_kafka_message_headers(m, &h) != 0 ||
        rd_kafka_header_get_last(h, "eddy.origin", &v, &n) != 0 || !v) {
        return 0;
    }
    return eddy_dedup_check(r->dedup, (sub << 16) | m->partition, v, n) == 0;
}

static rd_kafka_topic_partition_t *task_of(run *r, const char *topic, int32_t partition)
{
    if (!r->tasks) {
        return NULL;
    }
    return rd_kafka_topic_partition_list_find(r->tasks, topic, partition);
}

/* A consumer used with assign() only (it never joins its group <app>-<suffix>):
 * committed data only, partition ends reported; @p extra: more defaults. */
static rd_kafka_t *assign_consumer(const eddy_kafka_conf *c, const char *suffix,
                                   const char **extra, char *errstr, size_t errstr_size)
{
    char group[300];
    snprintf(group, sizeof group, "%s-%s", c->app_id, suffix);
    const char *defaults[64] = {
        "bootstrap.servers", c->brokers, "group.id", group, "enable.auto.commit", "false",
        "enable.partition.eof", "true", "isolation.level", "read_committed",
        "auto.offset.reset", "earliest"};
    int n = 12;
    for (int i = 0; extra[i] && n < 62; i++) {
        defaults[n++] = extra[i];
    }
    defaults[n] = NULL;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, eddy_kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_t *rk = NULL;
    if (set_props(conf, c, defaults, errstr, errstr_size) != 0 ||
        !(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errstr_size))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk;
}

/* The transactional id of this instance: <app>-<id>, the id kept in
 * <state-dir>/<app>/instance.id, so a restarted instance fences its own
 * unfinished transaction at once (init_transactions aborts it). */
static int read_id(const char *path, char *id, size_t size)
{
    FILE *fp = fopen(path, "r");
    id[0] = '\0';
    if (fp) {
        if (!fgets(id, (int)size, fp)) {
            id[0] = '\0';
        }
        fclose(fp);
        id[strcspn(id, "\r\n")] = '\0';
    }
    return id[0] != '\0';
}

static void transactional_id(const eddy_kafka_conf *c, char *out, size_t size)
{
    char path[4096], id[64] = "";
    const char *sd = c->state_dir ? c->state_dir : ".";
    snprintf(path, sizeof path, "%s/%s/instance.id", sd, c->app_id);
    if (!read_id(path, id, sizeof id)) {
        unsigned char rnd[8] = {0};
        FILE *ur = fopen("/dev/urandom", "r");
        if (!ur || fread(rnd, 1, sizeof rnd, ur) != sizeof rnd) {
            uint64_t t = (uint64_t)eddy_wall_ms() ^ ((uint64_t)getpid() << 32);
            memcpy(rnd, &t, sizeof rnd);
        }
        if (ur) {
            fclose(ur);
        }
        for (int i = 0; i < 8; i++) {
            snprintf(id + 2 * i, 3, "%02x", rnd[i]);
        }
        char dir[4096], tmp[4200];
        snprintf(dir, sizeof dir, "%s/%s", sd, c->app_id);
        mkdir(sd, 0755);
        mkdir(dir, 0755);
        /* written aside, then linked into place: of workers starting together,
         * the first link wins and the others read its id */
        snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
        FILE *fp = fopen(tmp, "w");
        if (fp) {
            fprintf(fp, "%s\n", id);
            fclose(fp);
            if (link(tmp, path) != 0) {
                read_id(path, id, sizeof id);
            }
            unlink(tmp);
        }
    }
    if (c->worker > 0) {
        snprintf(out, size, "%s-%s-w%d", c->app_id, id, c->worker);
    } else {
        snprintf(out, size, "%s-%s", c->app_id, id);
    }
}

int eddy_kafka_run(eddy_job *job, const eddy_kafka_conf *c, char *errstr, size_t errstr_size)
{
    run r = {.conf = c, .job = job, .errstr = errstr, .errstr_size = errstr_size};
    static rd_kafka_message_t *msgs[BATCH_MAX], *raw[BATCH_MAX];
    rd_kafka_queue_t *cq = NULL, *gq = NULL;
    rd_kafka_topic_partition_list_t *global_eof = NULL;   /* global partitions read to the end */
    int global_ready = 0;
    ssize_t sync_pulled = 0;           /* records the timestamp queues gave last time */
    int rc = 0;
    const char *pdefaults[] = {
        "bootstrap.servers", c->brokers, "enable.idempotence", "true",
        "partitioner", "murmur2_random", "linger.ms", "5", "batch.num.messages", "10000",
        "queue.buffering.max.kbytes", "1048576", "compression.type", "none", NULL};
    const char *cdefaults[] = {
        "bootstrap.servers", c->brokers, "group.id", c->app_id,
        "enable.auto.commit", "false", "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest", "queued.min.messages", "1000000",
        "queued.max.messages.kbytes", "262144", "fetch.max.bytes", "52428800",
        "allow.auto.create.topics", "true", NULL};

    /* producer */
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(pc, eddy_kafka_log_cb);
    rd_kafka_conf_set_error_cb(pc, error_cb);
    if ((rc = set_props(pc, c, pdefaults, errstr, errstr_size))) {
        rd_kafka_conf_destroy(pc);
        return rc;
    }
    char txn_id[512];
    if (c->exactly_once) {
        transactional_id(c, txn_id, sizeof txn_id);
        if (rd_kafka_conf_set(pc, "transactional.id", txn_id, errstr, errstr_size)) {
            rd_kafka_conf_destroy(pc);
            return EDDY_EKAFKA;
        }
    }
    r.ks = calloc(1, sizeof(*r.ks));
    r.ks->stop = c->stop;
    r.ks->transactional = c->exactly_once;
    rd_kafka_conf_set_opaque(pc, r.ks);
    rd_kafka_conf_set_dr_msg_cb(pc, dr_msg_cb);
    r.producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, errstr_size);
    if (!r.producer) {
        rd_kafka_conf_destroy(pc);
        free(r.ks);
        return EDDY_EKAFKA;
    }
    r.ks->rk = r.producer;
    eddy_sink *ksink;
    eddy_sink_new(&ksink, &kafka_sink_ops, r.ks);
    if (c->output) {
        if ((rc = eddy_sink_file_open(&r.sink, c->output, c->file_partitions, errstr, errstr_size))) {
            goto out;
        }
    } else {
        r.sink = ksink;
    }
    if (c->dlq) {
        if ((rc = eddy_sink_file_open(&r.dlq, c->dlq, c->file_partitions, errstr, errstr_size))) {
            goto out;
        }
    } else {
        r.dlq = ksink;
    }

    /* consumer */
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(cc, eddy_kafka_log_cb);
    rd_kafka_conf_set_error_cb(cc, error_cb);
    if ((rc = set_props(cc, c, cdefaults, errstr, errstr_size))) {
        rd_kafka_conf_destroy(cc);
        goto out;
    }
    rd_kafka_conf_set_rebalance_cb(cc, rebalance_cb);
    rd_kafka_conf_set_opaque(cc, &r);
    r.consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, errstr_size);
    if (!r.consumer) {
        rd_kafka_conf_destroy(cc);
        rc = EDDY_EKAFKA;
        goto out;
    }
    rd_kafka_poll_set_consumer(r.consumer);
    cq = rd_kafka_queue_get_consumer(r.consumer);

    if (c->state && eddy_job_stateful(job)) {
        /* the changelogs' reader: fetches tuned for reading to the end quickly */
        const char *rextra[] = {
            "fetch.wait.max.ms", "10", "fetch.error.backoff.ms", "10",
            "topic.metadata.refresh.fast.interval.ms", "20",
            "fetch.max.bytes", "52428800", "queued.min.messages", "1000000", NULL};
        rd_kafka_t *reader = assign_consumer(c, "restore", rextra, errstr, errstr_size);
        if (!reader) {
            rc = EDDY_EKAFKA;
            goto out;
        }
        if ((rc = eddy_changelog_new(&r.cl, r.producer, reader, c->app_id, c->state))) {
            rd_kafka_destroy(reader);
            goto out;
        }
        eddy_changelog_set_job(r.cl, job);
        if (!(r.dedup = eddy_dedup_new(c->state))) {
            rc = EDDY_ENOMEM;
            goto out;
        }
        /* tasks that join several inputs take them in timestamp order */
        const char *layout = eddy_job_layout(job);
        if ((strstr(layout, "table\t") || strstr(layout, "join\t")) &&
            !(r.sync = eddy_timesync_new(TIMESYNC_IDLE_MS))) {
            rc = EDDY_ENOMEM;
            goto out;
        }
    }
    if (c->exactly_once) {
        /* short tries, so a stop while the brokers are away is prompt */
        rd_kafka_error_t *e = NULL;
        int64_t since = eddy_mono_ms(), warned = since;
        while ((e = rd_kafka_init_transactions(r.producer, 1000)) != NULL &&
               rd_kafka_error_is_retriable(e) && !*c->stop) {
            if (eddy_mono_ms() - warned >= 10000) {
                warned = eddy_mono_ms();
                eddy_log_warn("kafka: exactly_once: still waiting for the transaction coordinator "
                              "(%s)", rd_kafka_error_string(e));
            }
            rd_kafka_error_destroy(e);
        }
        if (e && *c->stop && rd_kafka_error_is_retriable(e)) {
            rd_kafka_error_destroy(e);      /* stopped before the brokers answered: a clean stop */
            eddy_log_info("job %s: stopped before the brokers answered", eddy_job_name(job));
            rc = 0;
            goto out;
        }
        if (!e) {
            e = rd_kafka_begin_transaction(r.producer);
        }
        if (e) {
            snprintf(errstr, errstr_size, "exactly_once: cannot start transactions as %s: %s",
                     txn_id, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            rc = EDDY_EKAFKA;
            goto out;
        }
        r.in_txn = 1;
        eddy_log_info("kafka: exactly_once: transactional id %s", txn_id);
    }
    if ((rc = eddy_runner_new(&r.runner, job, r.sink, r.dlq, c->app_id))) {
        goto out;
    }
    eddy_runner_set_state(r.runner, c->state);
    if ((rc = ensure_topics(&r)) != 0) {
        goto out;
    }

    if (strstr(eddy_job_layout(job), "global\t")) {
        const char *gextra[] = {"fetch.wait.max.ms", "50", NULL};
        if (!(r.global = assign_consumer(c, "global", gextra, errstr, errstr_size))) {
            rc = EDDY_EKAFKA;
            goto out;
        }
        rd_kafka_poll_set_consumer(r.global);
        gq = rd_kafka_queue_get_consumer(r.global);
        if ((rc = global_start(&r, r.global)) != 0) {
            goto out;
        }
        global_eof = rd_kafka_topic_partition_list_new(8);
    }

    int nsrc = eddy_job_nsources(job);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(nsrc);
    for (int i = 0; i < nsrc; i++) {
        if (!is_global(job, eddy_job_source(job, i))) {
            rd_kafka_topic_partition_list_add(sub, eddy_job_source(job, i), RD_KAFKA_PARTITION_UA);
        }
    }
    rd_kafka_resp_err_t err = rd_kafka_subscribe(r.consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        snprintf(errstr, errstr_size, "cannot subscribe: %s", rd_kafka_err2str(err));
        rc = EDDY_EKAFKA;
        goto out;
    }
    eddy_log_info("job %s: consuming %s%s as group %s from %s", eddy_job_name(job),
                  eddy_job_source(job, 0), nsrc > 1 ? ", ..." : "", c->app_id, c->brokers);

    eddy_batch *b = eddy_job_batch(job);
    int64_t last_commit = eddy_mono_ms(), last_tick = last_commit, last_status = 0;
    rd_kafka_topic_t *last_rkt = NULL;
    int last_src = -1, last_sub = -1;
    while (!*c->stop) {
        int n = 0;
        job = eddy_runner_job(r.runner);         /* a reload or a rollback may change it */
        r.job = job;
        if (r.cl) {
            eddy_changelog_set_job(r.cl, job);
        }
        if (b != eddy_job_batch(job)) {
            b = eddy_job_batch(job);
            last_rkt = NULL;
        }
        eddy_batch_reset(b);
        /* one call for up to BATCH_MAX records; rebalance callbacks are served inside */
        ssize_t got = 0;
        if (gq) {
            /* global tables first: read to the end before anything else, then kept up to date */
            ssize_t g = rd_kafka_consume_batch_queue(gq, global_ready ? 0 : 100, raw, BATCH_MAX);
            for (ssize_t j = 0; j < g; j++) {
                rd_kafka_message_t *m = raw[j];
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && !global_ready && m->rkt) {
                    const char *tn = rd_kafka_topic_name(m->rkt);
                    if (!rd_kafka_topic_partition_list_find(global_eof, tn, m->partition)) {
                        rd_kafka_topic_partition_list_add(global_eof, tn, m->partition);
                    }
                    rd_kafka_message_destroy(m);
                } else if (m->err) {
                    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        eddy_log_warn("kafka: global table: %s", rd_kafka_message_errstr(m));
                    }
                    rd_kafka_message_destroy(m);
                } else {
                    raw[got++] = m;
                }
            }
            if (!global_ready && global_eof->cnt >= r.global_parts) {
                global_ready = 1;
                eddy_log_info("global tables: read to the end of %d partition(s); processing "
                              "the job's sources", r.global_parts);
            }
        }
        if (!gq || global_ready) {
            /* no wait while the timestamp queues hand out records they hold */
            int ready = r.sync && sync_pulled > 0 && eddy_timesync_held(r.sync) > 0;
            ssize_t g2 = rd_kafka_consume_batch_queue(cq, got > 0 || ready ? 0 : 100, raw + got,
                                                      (size_t)(BATCH_MAX - got));
            if (r.sync && g2 >= 0) {
                /* tables: each task's records in timestamp order across its partitions */
                for (ssize_t j = got; j < got + g2; j++) {
                    if (raw[j]->err) {
                        if (raw[j]->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                            eddy_log_warn("kafka: consume: %s", rd_kafka_message_errstr(raw[j]));
                        }
                        rd_kafka_message_destroy(raw[j]);
                    } else {
                        eddy_timesync_push(r.sync, raw[j]);
                    }
                }
                g2 = eddy_timesync_pull(r.sync, r.consumer, raw + got, (size_t)(BATCH_MAX - got));
                sync_pulled = g2;
            }
            got += g2 > 0 ? g2 : 0;
        }
        if (r.failed) {
            for (ssize_t j = 0; j < got; j++) {
                rd_kafka_message_destroy(raw[j]);
            }
            snprintf(errstr, errstr_size, "%s", r.errstr);
            rc = EDDY_EKAFKA;
            goto out_noncommit;
        }
        for (ssize_t j = 0; j < got; j++) {
            rd_kafka_message_t *m = raw[j];
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    eddy_log_warn("kafka: consume: %s", rd_kafka_message_errstr(m));
                }
                rd_kafka_message_destroy(m);
                continue;
            }
            if (m->rkt != last_rkt) {
                const char *tn = rd_kafka_topic_name(m->rkt);
                last_src = eddy_job_source_index(job, tn, strlen(tn));
                last_sub = r.dedup ? eddy_changelog_sub_of(r.cl, tn) : -1;
                last_rkt = m->rkt;
            }
            if (last_sub > 0 && is_duplicate(&r, last_sub, m)) {
                msgs[n++] = m;       /* not processed again; its offset still moves on */
                continue;
            }
            rd_kafka_timestamp_type_t tstype;
            int64_t ts = rd_kafka_message_timestamp(m, &tstype);
            eddy_batch_add(b, last_src < 0 ? 0 : last_src, m->partition, m->offset, ts,
                           m->key, m->key ? (int32_t)m->key_len : -1,
                           m->payload, m->payload ? (int32_t)m->len : -1);
            rd_kafka_headers_t *hdrs;
            if (rd_kafka_message_headers(m, &hdrs) == 0) {
                const char *name;
                const void *val;
                size_t size;
                for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == 0; i++) {
                    if (last_sub > 0 && !strcmp(name, "eddy.origin")) {
                        continue;       /* eddy's own: not the job's, not its outputs' */
                    }
                    eddy_batch_add_header(b, name, (int32_t)strlen(name), val,
                                          val ? (int32_t)size : -1);
                }
            }
            msgs[n++] = m;
        }
        if (n > 0) {
            int64_t t0 = eddy_mono_us();
            int nrecs = b->n;              /* a rollback inside may destroy the batch */
            rc = eddy_runner_process(r.runner);
            eddy_status_batch(nrecs, eddy_mono_us() - t0);
            rd_kafka_topic_partition_t *t = NULL;      /* the task of the previous record */
            rd_kafka_topic_t *t_rkt = NULL;
            int32_t t_part = -1;
            for (int i = 0; i < n; i++) {
                if (msgs[i]->rkt != t_rkt || msgs[i]->partition != t_part) {
                    t_rkt = msgs[i]->rkt;
                    t_part = msgs[i]->partition;
                    t = task_of(&r, rd_kafka_topic_name(t_rkt), t_part);
                }
                if (t && rc == 0) {
                    t->offset = msgs[i]->offset + 1;
                    r.dirty = 1;
                }
                rd_kafka_message_destroy(msgs[i]);
            }
            if (rc) {
                if (rc == EDDY_ESCRIPT) {
                    snprintf(errstr, errstr_size, "%s", eddy_runner_error(r.runner));
                } else if (rc == EDDY_EKAFKA && r.ks && r.ks->first_failure[0]) {
                    snprintf(errstr, errstr_size, "cannot write outputs: %s", r.ks->first_failure);
                } else {
                    snprintf(errstr, errstr_size, "cannot write outputs: %s", eddy_strerror(rc));
                }
                goto out_noncommit;
            }
        }
        rd_kafka_poll(r.producer, 0);     /* delivery reports */
        eddy_http_serve(c->http, job, c->state);
        int64_t now = eddy_mono_ms();
        if (c->http && now - last_status >= 1000) {
            last_status = now;
            report_tasks(&r);
        }
        if (now - last_tick >= 100) {      /* wall-clock schedules, idle_advance */
            last_tick = now;
            if ((rc = eddy_runner_tick(r.runner))) {
                snprintf(errstr, errstr_size, "cannot write outputs: %s", eddy_strerror(rc));
                goto out_noncommit;
            }
        }
        if (c->reload && !*c->stop) {
            /* between batches, right after a commit: the place for a reload's swap */
            eddy_job *next = NULL;
            if ((next = eddy_reload_poll(c->reload, job)) != NULL) {
                if ((rc = commit(&r))) {
                    eddy_job_destroy(next);
                    goto out_noncommit;
                }
                last_commit = now;
                eddy_runner_swap(r.runner, next, c->rollback_errors);
                continue;
            }
        }
        if (eddy_runner_wants_commit(r.runner) || eddy_state_wants_commit(c->state) ||
            now - last_commit >= c->commit_interval_ms) {
            if ((rc = commit(&r))) {
                goto out_noncommit;
            }
            last_commit = now;
        }
    }
    eddy_log_info("job %s: stopping: committing and leaving the group", eddy_job_name(job));
    if ((rc = eddy_runner_finish(r.runner)) == 0) {
        r.stopping = 1;
        rc = commit(&r);
    }
    /* a commit refused during a rebalance: let the group settle, then retry */
    for (int64_t until = eddy_mono_ms() + STOP_COMMIT_MS; rc == 0 && r.pending && eddy_mono_ms() < until;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(r.consumer, 100);
        if (m) {
            rd_kafka_message_destroy(m);    /* not processed: its offset is not committed */
        }
        if (commit_pending(&r) != 0) {
            usleep(50 * 1000);
        }
    }
    if (rc == 0 && r.pending) {
        snprintf(errstr, errstr_size, "could not commit the offsets of processed records within "
                 "%d s of the stop; they will be processed again on restart", STOP_COMMIT_MS / 1000);
        rc = EDDY_EKAFKA;
    }
out_noncommit:
    if (rc) {
        /* do not commit anything more: on restart these records are processed again */
        if (r.tasks) {
            rd_kafka_topic_partition_list_destroy(r.tasks);
            r.tasks = NULL;
        }
        if (r.pending) {
            rd_kafka_topic_partition_list_destroy(r.pending);
            r.pending = NULL;
        }
        r.dirty = 0;
    }
    if (r.in_txn && rc) {
        rd_kafka_error_t *e = abort_txn(&r);
        if (e) {
            rd_kafka_error_destroy(e);
        }
        r.in_txn = 0;
    }
    rd_kafka_consumer_close(r.consumer);
out:
    if (cq) {
        rd_kafka_queue_destroy(cq);
    }
    if (gq) {
        rd_kafka_queue_destroy(gq);
    }
    if (r.global) {
        rd_kafka_consumer_close(r.global);
        rd_kafka_destroy(r.global);
    }
    if (global_eof) {
        rd_kafka_topic_partition_list_destroy(global_eof);
    }
    eddy_runner_destroy(r.runner);
    eddy_changelog_destroy(r.cl);
    if (r.dedup && eddy_dedup_skipped(r.dedup)) {
        eddy_log_info("job %s: %llu repartitioned record(s) skipped as already applied",
                      eddy_job_name(job), (unsigned long long)eddy_dedup_skipped(r.dedup));
    }
    eddy_dedup_destroy(r.dedup);
    eddy_timesync_destroy(r.sync);
    if (r.consumer) {
        rd_kafka_destroy(r.consumer);
    }
    if (r.sink != ksink) {
        eddy_sink_destroy(r.sink);
    }
    if (r.dlq != ksink) {
        eddy_sink_destroy(r.dlq);
    }
    if (r.producer && rc == 0) {
        rd_kafka_flush(r.producer, 5000);
    }
    eddy_sink_destroy(ksink);
    if (r.starts) {
        rd_kafka_topic_partition_list_destroy(r.starts);
    }
    if (r.tasks) {
        rd_kafka_topic_partition_list_destroy(r.tasks);
    }
    if (r.pending) {
        rd_kafka_topic_partition_list_destroy(r.pending);
    }
    rd_kafka_destroy(r.producer);
    return rc;
}
