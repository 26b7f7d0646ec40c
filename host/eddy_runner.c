/*
 * eddy_runner — batch → job → sink, with the error policy (see eddy_runner.h).
 */
#include "eddy_runner.h"
#include "eddy_status.h"
#include "eddy.h"
#include "eddy_log.h"
#include "eddy_metrics.h"
#include "eddy_state.h"
#include "eddy_watchdog.h"
#include "eddy_outbox.h"
#include "eddy_clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

eddy_metrics eddy_stats;

enum { POLICY_DLQ, POLICY_SKIP, POLICY_FAIL };

struct eddy_runner {
    eddy_job  *job;
    eddy_sink *sink;
    eddy_sink *dlq;
    eddy_state *state;
    char      *dlq_topic;
    int        policy;
    int        sink_err;
    char       error[2048];
    eddy_hdr  *hdrs;        /* scratch: original headers + eddy.* */
    int        hcap;
    /* hot reload */
    eddy_job  *prev;        /* the last good generation, during a probation */
    int64_t    probation;   /* records the new generation still has to get through */
    int        streak;      /* records in a row the new generation failed on */
    int32_t    last_fail;   /* index of its last failed record in this batch (-1: the previous batch ended with one) */
    int        rollback_errors;
    int        rollback;    /* set when the streak reached rollback_errors */
    eddy_job  *initial;     /* the caller's generation: never destroyed here */
    eddy_outbox *outbox;    /* a probation's writes, and the records of a streak in progress */
    int        holding;     /* a streak goes on across batches: no commit until it is decided */
    eddy_job  *internal_job;        /* the job internal[] describes */
    unsigned char internal[64];     /* per sink: 0 unknown, 1 a repartition topic, 2 not */
};

/* During a probation every write waits in the outbox until the batch is decided. */
static int sink_write(eddy_runner *r, eddy_sink *sink, const char *topic, int32_t partition,
                      int32_t fallback, int64_t ts, const char *k, ssize_t klen, const char *v,
                      ssize_t vlen, const eddy_hdr *hdrs, int nhdrs)
{
    if (r->prev) {
        eddy_outbox_add(r->outbox, sink, topic, partition, fallback, ts, k, klen, v, vlen, hdrs,
                        nhdrs);
        return 0;
    }
    return eddy_sink_write(sink, topic, partition, fallback, ts, k, klen, v, vlen, hdrs, nhdrs);
}

/* Generations after the first belong to the runner; the first to its caller. */
static void drop_job(eddy_runner *r, eddy_job *job)
{
    if (job && job != r->initial) {
        eddy_job_destroy(job);
    }
}

#define PROBATION_RECORDS 1000

static int policy_of(const char *s)
{
    if (strcmp(s, "skip") == 0) return POLICY_SKIP;
    if (strcmp(s, "fail") == 0) return POLICY_FAIL;
    return POLICY_DLQ;
}

int eddy_runner_new(eddy_runner **out, eddy_job *job, eddy_sink *sink, eddy_sink *dlq,
                    const char *app_id)
{
    eddy_runner *r = calloc(1, sizeof(*r));
    if (!r) {
        return EDDY_ENOMEM;
    }
    r->job = job;
    r->initial = job;
    if (eddy_outbox_new(&r->outbox)) {
        free(r);
        return EDDY_ENOMEM;
    }
    r->sink = sink;
    r->dlq = dlq;
    r->policy = policy_of(eddy_job_on_error(job));
    size_t n = strlen(app_id) + 5;
    r->dlq_topic = malloc(n);
    if (!r->dlq_topic) {
        free(r);
        return EDDY_ENOMEM;
    }
    snprintf(r->dlq_topic, n, "%s-dlq", app_id);
    *out = r;
    return 0;
}

void eddy_runner_destroy(eddy_runner *r)
{
    if (!r) {
        return;
    }
    eddy_outbox_destroy(r->outbox);
    drop_job(r, r->prev);
    if (r->job != r->initial) {
        drop_job(r, r->job);
    }
    free(r->dlq_topic);
    free(r->hdrs);
    free(r);
}

struct eddy_state *eddy_runner_state(const eddy_runner *r)
{
    return r->state;
}

void eddy_runner_set_job(eddy_runner *r, eddy_job *job)
{
    r->job = job;
    r->policy = policy_of(eddy_job_on_error(job));
}

const char *eddy_runner_error(const eddy_runner *r)
{
    return r->error;
}

/* Dead-letter one record: original key, value and headers plus eddy.*. */
static int dead_letter(eddy_runner *r, const char *topic, int32_t partition, int64_t offset,
                       int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                       const eddy_hdr *orig, int norig, const char *stage, const char *msg)
{
    char pbuf[16], obuf[32];
    {
        char what[600];
        snprintf(what, sizeof what, "%s [%d] offset %lld (%s): %s", topic, (int)partition,
                 (long long)offset, stage, msg);
        eddy_status_error(what);
    }
    int n = norig + 5;
    if (n > r->hcap) {
        eddy_hdr *h = realloc(r->hdrs, sizeof(*h) * (size_t)n);
        if (!h) {
            return EDDY_ENOMEM;
        }
        r->hdrs = h;
        r->hcap = n;
    }
    if (norig > 0) {
        memcpy(r->hdrs, orig, sizeof(*orig) * (size_t)norig);
    }
    snprintf(pbuf, sizeof pbuf, "%d", (int)partition);
    snprintf(obuf, sizeof obuf, "%lld", (long long)offset);
    const char *names[] = {"eddy.error", "eddy.stage", "eddy.topic", "eddy.partition", "eddy.offset"};
    const char *vals[] = {msg, stage, topic, pbuf, obuf};
    for (int i = 0; i < 5; i++) {
        eddy_hdr *h = &r->hdrs[norig + i];
        h->name = names[i];
        h->nlen = (int32_t)strlen(names[i]);
        h->value = vals[i];
        h->vlen = (int32_t)strlen(vals[i]);
    }
    eddy_stats.dead_lettered++;
    return sink_write(r, r->dlq, r->dlq_topic, -1, partition, ts, k, klen, v, vlen,
                           r->hdrs, n);
}

static int apply_policy(eddy_runner *r, const char *topic, int32_t partition, int64_t offset,
                        int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                        const eddy_hdr *hdrs, int nhdrs, const char *stage, const char *msg)
{
    eddy_stats.errors++;
    switch (r->policy) {
    case POLICY_SKIP:
        eddy_log_debug("skipped %s[%d]@%lld (%s): %s", topic, (int)partition,
                       (long long)offset, stage, msg);
        return 0;
    case POLICY_FAIL:
        snprintf(r->error, sizeof r->error, "record %s[%d]@%lld failed (%s): %s", topic,
                 (int)partition, (long long)offset, stage, msg);
        return EDDY_ESCRIPT;
    default: {
        int rc = dead_letter(r, topic, partition, offset, ts, k, klen, v, vlen, hdrs, nhdrs,
                             stage, msg);
        if (rc) {
            r->sink_err = rc;
        }
        return 0;
    }
    }
}

static int on_record_error(void *opaque, const eddy_rec *rec, const char *stage, const char *msg)
{
    eddy_runner *r = opaque;
    if (r->prev && (r->policy == POLICY_FAIL || eddy_job_interrupted(r->job))) {
        /* on probation, a version that would stop the job (on_error = "fail") or
         * that the watchdog had to interrupt is rolled back at once */
        r->rollback = 1;
        snprintf(r->error, sizeof r->error, "%s", msg);
        return EDDY_ESCRIPT;
    }
    if (r->prev) {                           /* a new version on probation */
        int32_t idx = (int32_t)(rec - eddy_job_batch(r->job)->recs);
        r->streak = (idx == r->last_fail + 1) ? r->streak + 1 : 1;
        r->last_fail = idx;
        if (r->streak >= r->rollback_errors) {
            r->rollback = 1;
            snprintf(r->error, sizeof r->error, "%s", msg);
            return EDDY_ESCRIPT;             /* stop: this batch goes to the old version */
        }
    }
    if (r->state && eddy_state_failed(r->state)) {
        /* not the record's fault: stop, commit nothing, say what to change */
        snprintf(r->error, sizeof r->error, "%s", eddy_state_failed(r->state));
        return EDDY_ESCRIPT;
    }
    if (r->state) {
        eddy_state_undo_record(r->state);    /* the record's store writes never happened */
    }
    eddy_batch *b = eddy_job_batch(r->job);
    return apply_policy(r, eddy_job_source(r->job, rec->source), rec->partition, rec->offset,
                        rec->ts, rec->key, rec->key ? rec->klen : -1,
                        rec->value, rec->value ? rec->vlen : -1,
                        b->hdrs + rec->hdr, rec->nhdr, stage, msg);
}

int eddy_runner_bad_input(eddy_runner *r, const char *topic, int32_t partition, int64_t offset,
                          int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                          const char *stage, const char *msg)
{
    eddy_stats.records_in++;
    int rc = apply_policy(r, topic, partition, offset, ts, k, klen, v, vlen, NULL, 0, stage, msg);
    if (rc == 0 && r->sink_err) {
        rc = r->sink_err;
        r->sink_err = 0;
    }
    return rc;
}

/* Is sink @p i of the running job one of its own sources (a repartition topic)? */
static int internal_sink(eddy_runner *r, int32_t i)
{
    if (r->internal_job != r->job) {
        memset(r->internal, 0, sizeof r->internal);
        r->internal_job = r->job;
    }
    if (i < 0 || i >= (int32_t)sizeof r->internal) {
        return 0;
    }
    if (!r->internal[i]) {
        const char *t = eddy_job_sink(r->job, i);
        r->internal[i] = eddy_job_source_index(r->job, t, strlen(t)) >= 0 ? 1 : 2;
    }
    return r->internal[i] == 1;
}

/* The headers of an output to a repartition topic: the input's, and its origin
 * "<topic>:<partition>:<offset>:<n>" (eddy_dedup.h). */
static int origin_headers(eddy_runner *r, const eddy_batch *b, const eddy_rec *src, int nth,
                          char *buf, size_t size)
{
    int n = 0;
    if (r->hcap < src->nhdr + 1) {
        eddy_hdr *h = realloc(r->hdrs, sizeof(*h) * (size_t)(src->nhdr + 8));
        if (!h) {
            abort();
        }
        r->hdrs = h;
        r->hcap = src->nhdr + 8;
    }
    for (int i = 0; i < src->nhdr; i++) {
        const eddy_hdr *h = &b->hdrs[src->hdr + i];
        if (!(h->nlen == 11 && memcmp(h->name, "eddy.origin", 11) == 0)) {
            r->hdrs[n++] = *h;
        }
    }
    const char *topic = eddy_job_source(r->job, src->source);
    int len = snprintf(buf, size, "%s:%d:%lld:%d", topic, (int)src->partition,
                       (long long)src->offset, nth);
    r->hdrs[n++] = (eddy_hdr){"eddy.origin", buf, 11, len};
    return n;
}

static int write_outputs(eddy_runner *r, eddy_batch *b)
{
    int32_t last_src = -2;
    int nth = 0;
    char origin[512];
    for (int32_t i = 0; i < b->nouts; i++) {
        const eddy_out *o = &b->outs[i];
        const eddy_rec *src = o->src >= 0 ? &b->recs[o->src] : NULL;
        nth = o->src == last_src ? nth + 1 : 0;
        last_src = o->src;
        const eddy_hdr *hdrs = src ? b->hdrs + src->hdr : NULL;
        int nhdrs = src ? src->nhdr : 0;
        if (src && src->offset >= 0 && internal_sink(r, o->sink)) {
            nhdrs = origin_headers(r, b, src, nth, origin, sizeof origin);
            hdrs = r->hdrs;
        }
        int rc = sink_write(r, r->sink, eddy_job_sink(r->job, o->sink), -1,
                                 src ? src->partition : 0, o->ts,
                                 o->klen < 0 ? NULL : b->arena.data + o->koff, o->klen,
                                 o->vlen < 0 ? NULL : b->arena.data + o->voff, o->vlen,
                                 hdrs, nhdrs);
        if (rc) {
            return rc;
        }
    }
    eddy_stats.records_out += (uint64_t)b->nouts;
    return 0;
}

eddy_job *eddy_runner_job(eddy_runner *r)
{
    return r->job;
}

int eddy_runner_wants_commit(const eddy_runner *r)
{
    return r->prev != NULL && !r->holding;
}

int eddy_runner_holding(const eddy_runner *r)
{
    return r->holding;
}

int eddy_runner_finish(eddy_runner *r)
{
    r->holding = 0;                          /* no more input to decide on: keep the results */
    return eddy_outbox_release(r->outbox);
}

static void roll_back(eddy_runner *r, const char *why)
{
    eddy_job *failed = r->job;
    eddy_log_error("reload %s rolled back to %s: %s", eddy_job_version(failed),
                   eddy_job_version(r->prev), why);
    eddy_stats.reloads_rolled_back++;
    eddy_status_reload("rolled_back", eddy_job_version(failed), eddy_job_version(r->prev), why);
    eddy_status_version(eddy_job_version(r->prev));
    r->job = r->prev;
    r->prev = NULL;
    r->policy = policy_of(eddy_job_on_error(r->job));
    eddy_job_forget_all(r->job);            /* its caches predate the new version's commits */
    drop_job(r, failed);
}

void eddy_runner_swap(eddy_runner *r, eddy_job *next, int rollback_errors)
{
    int64_t t0 = eddy_mono_us();
    if (r->prev) {
        drop_job(r, r->prev);                /* the one before is not needed any more */
    }
    eddy_job *old = r->job;
    r->prev = old;
    r->job = next;
    r->policy = policy_of(eddy_job_on_error(next));
    r->probation = PROBATION_RECORDS;
    r->streak = 0;
    r->last_fail = -2;
    r->rollback_errors = rollback_errors > 0 ? rollback_errors : 10;
    const char *rbe = eddy_job_option(next, "reload_rollback_errors");   /* the new version's own */
    if (rbe && atoi(rbe) > 0) {
        r->rollback_errors = atoi(rbe);
    }
    const char *ht = eddy_job_option(next, "handler_timeout");
    if (ht) {
        eddy_watchdog_set_timeout(atoi(ht));
    }
    eddy_stats.reloads_ok++;
    eddy_status_reload("ok", eddy_job_version(next), eddy_job_version(old), NULL);
    eddy_status_version(eddy_job_version(next));
    char err[1024];
    eddy_batch *b = eddy_job_batch(next);
    eddy_batch_reset(b);
    b->state = r->state;
    eddy_log_info("reload %s swapped in (was %s) in %.3f ms", eddy_job_version(next),
                  eddy_job_version(old), (double)(eddy_mono_us() - t0) / 1000.0);
    if (eddy_job_on_reload(next, eddy_job_version(old), err, sizeof err) != 0) {
        eddy_stats.reloads_ok--;
        roll_back(r, err);
    }
}

static int process_once(eddy_runner *r);

int eddy_runner_process(eddy_runner *r)
{
    int rc = process_once(r);
    if (r->rollback) {
        /* the new version failed a streak of records: nothing of this batch is
         * kept (its state is aborted, its outputs never written); the old
         * version processes the same records */
        r->rollback = 0;
        eddy_batch *failed = eddy_job_batch(r->job);
        if (r->state) {
            eddy_state_abort(r->state);      /* back to the commit before the streak began */
        }
        eddy_outbox_drop_writes(r->outbox);  /* nothing the new version wrote since goes out */
        eddy_stats.records_in -= (uint64_t)(failed->n + eddy_outbox_held(r->outbox));
        eddy_batch *b = eddy_job_batch(r->prev);
        eddy_batch_reset(b);
        eddy_outbox_held_into(r->outbox, b); /* the earlier batches of the streak first */
        eddy_batch_append_records(b, failed);
        r->holding = 0;
        char why[2100];
        if (r->streak >= r->rollback_errors) {
            snprintf(why, sizeof why, "%d records in a row failed; the last: %s", r->streak, r->error);
        } else {
            snprintf(why, sizeof why, "%s", r->error);
        }
        roll_back(r, why);
        rc = process_once(r);
        eddy_outbox_discard(r->outbox);      /* the kept records were borrowed by that batch */
    }
    return rc;
}

static int process_once(eddy_runner *r)
{
    eddy_batch *b = eddy_job_batch(r->job);
    eddy_stats.records_in += (uint64_t)b->n;
    eddy_stats.batches++;
    b->state = r->state;
    b->wall_ms = eddy_wall_ms();
    b->late = b->nil_keys = 0;
    if (r->state) {
        eddy_state_begin_batch(r->state);
    }
    eddy_watchdog_enter(r->job);
    int failed = eddy_job_run_batch(r->job, on_record_error, r);
    eddy_watchdog_leave();
    if (failed && r->state && eddy_state_failed(r->state)) {
        return failed;     /* no outputs: the state behind them will not be committed */
    }
    eddy_stats.late_records += (uint64_t)b->late;
    eddy_stats.nil_keys += (uint64_t)b->nil_keys;
    int rc;
    if (r->sink_err) {
        rc = r->sink_err;
        r->sink_err = 0;
        return rc;
    }
    if (r->rollback) {
        return 0;                            /* the batch goes to the old version instead */
    }
    if ((rc = write_outputs(r, b))) {
        return rc;
    }
    if (r->prev) {
        if (r->last_fail != b->n - 1) {
            r->streak = 0;                   /* a record after the last failure succeeded */
        }
        r->last_fail = r->streak ? -1 : -2;  /* -1: a streak goes on into the next batch */
        r->probation -= b->n;
        if (r->streak > 0) {
            /* the batch ends inside a failure streak: keep its writes and records back
             * (and commit nothing) until the streak is decided */
            eddy_outbox_hold_records(r->outbox, b);
            r->holding = 1;
        } else {
            r->holding = 0;
            if ((rc = eddy_outbox_release(r->outbox))) {
                return rc;
            }
        }
        if (r->probation <= 0 && !r->holding) {
            eddy_log_info("reload %s confirmed after %d records", eddy_job_version(r->job),
                          PROBATION_RECORDS);
            drop_job(r, r->prev);
            r->prev = NULL;
        }
    }
    return failed;     /* under "fail", the outputs of the records before the failed one are out */
}

int eddy_runner_tick(eddy_runner *r)
{
    eddy_batch *b = eddy_job_batch(r->job);
    eddy_batch_reset(b);
    b->state = r->state;
    b->cur = -1;                       /* outputs of a tick belong to no input record */
    b->wall_ms = eddy_wall_ms();
    b->late = b->nil_keys = 0;
    if (r->state) {
        eddy_state_begin_batch(r->state);
    }
    char err[2048];
    eddy_watchdog_enter(r->job);
    int trc = eddy_job_tick(r->job, err, sizeof err);
    eddy_watchdog_leave();
    if (trc != 0) {
        eddy_stats.errors++;
        eddy_log_error("job %s: a scheduled handler failed: %s", eddy_job_name(r->job), err);
        if (r->state) {
            eddy_state_undo_record(r->state);
        }
        eddy_batch_drop_outputs_of(b, -1);
    }
    eddy_stats.late_records += (uint64_t)b->late;
    int rc = write_outputs(r, b);
    eddy_batch_reset(b);
    return rc;
}

int eddy_runner_flush(eddy_runner *r)
{
    int rc = eddy_sink_flush(r->sink);
    if (r->dlq != r->sink) {
        int rc2 = eddy_sink_flush(r->dlq);
        if (!rc) {
            rc = rc2;
        }
    }
    return rc;
}

void eddy_runner_set_state(eddy_runner *r, struct eddy_state *st)
{
    r->state = st;
}

int eddy_runner_commit(eddy_runner *r, char *errstr, size_t errstr_size)
{
    if (r->holding) {
        return 0;                            /* a failure streak in progress: not yet */
    }
    int rc = eddy_runner_flush(r);
    if (rc) {
        snprintf(errstr, errstr_size, "writing outputs: %s", eddy_strerror(rc));
        return rc;
    }
    if (r->state) {
        rc = eddy_state_commit(r->state, errstr, errstr_size);
    }
    return rc;
}

