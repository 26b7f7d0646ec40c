/*
 * eddy_changelog — changelog writes, commit markers and restore (see
 * eddy_changelog.h). Marker value, one line of text:
 *   seq=12 offsets=topic@1043,topic2@77 families=counts@5012,process-1@88
 */
#include "eddy_changelog.h"
#include "eddy.h"
#include "eddy_buf.h"
#include "eddy_clock.h"
#include "eddy_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 32
#define MAX_CL_TASKS 4096
#define MARKER_KEY "eddy.commit"
#define SEQ_KEY "#seq"          /* in "__changelog"; family names cannot hold '#' */

typedef struct cl_family {
    char              name[256];
    rd_kafka_topic_t *rkt;
    int64_t           end;      /* the position after this task's last acknowledged record */
} cl_family;

typedef struct cl_task {
    int32_t   id;
    int       owned;            /* restored: this instance owns the task */
    int64_t   seq;              /* the last commit marker's sequence number */
    cl_family fam[MAX_FAMILIES];   /* fam[0]: __task-<S>, stream time and markers */
    int       nfam;
} cl_task;

struct eddy_changelog {
    rd_kafka_t *producer, *reader;
    char       *app_id;
    eddy_state *st;
    eddy_job   *job;
    cl_task    *tasks[MAX_CL_TASKS];
    int         ntasks;
    eddy_buf    kbuf, vbuf;
    int64_t     restored_records, restored_ms;
};

int eddy_changelog_new(eddy_changelog **out, rd_kafka_t *producer, rd_kafka_t *reader,
                       const char *app_id, eddy_state *st)
{
    eddy_changelog *cl = calloc(1, sizeof(*cl));
    if (!cl) {
        return EDDY_ENOMEM;
    }
    cl->producer = producer;
    cl->reader = reader;
    cl->app_id = strdup(app_id);
    cl->st = st;
    rd_kafka_poll_set_consumer(reader);
    eddy_state_track_changes(st, 1);
    *out = cl;
    return 0;
}

static void task_free(cl_task *t)
{
    for (int i = 0; i < t->nfam; i++) {
        if (t->fam[i].rkt) {
            rd_kafka_topic_destroy(t->fam[i].rkt);
        }
    }
    free(t);
}

void eddy_changelog_destroy(eddy_changelog *cl)
{
    if (!cl) {
        return;
    }
    for (int i = 0; i < cl->ntasks; i++) {
        task_free(cl->tasks[i]);
    }
    eddy_state_track_changes(cl->st, 0);
    rd_kafka_consumer_close(cl->reader);
    rd_kafka_destroy(cl->reader);
    eddy_buf_free(&cl->kbuf);
    eddy_buf_free(&cl->vbuf);
    free(cl->app_id);
    free(cl);
}

void eddy_changelog_set_job(eddy_changelog *cl, eddy_job *job)
{
    cl->job = job;
}

void eddy_changelog_restored(const eddy_changelog *cl, int64_t *records, int64_t *ms)
{
    *records = cl->restored_records;
    *ms = cl->restored_ms;
}

void eddy_changelog_delivered(void *msg_opaque, int64_t offset)
{
    int64_t *end = msg_opaque;
    if (offset + 1 > *end) {
        *end = offset + 1;
    }
}

/* ---- the layout ---- */

typedef struct find_sub {
    const char *topic;
    int         sub;
} find_sub;

static int find_sub_fn(void *opaque, const char *kind, int sub, const char *name)
{
    find_sub *f = opaque;
    if (!strcmp(kind, "source") && !strcmp(name, f->topic)) {
        f->sub = sub;
        return 1;
    }
    return 0;
}

int eddy_changelog_sub_of(const eddy_changelog *cl, const char *topic)
{
    find_sub f = {topic, -1};
    eddy_job_layout_each(cl->job, find_sub_fn, &f);
    return f.sub;
}

/* ---- tasks and their families ---- */

static cl_family *family_get(eddy_changelog *cl, cl_task *t, const char *name)
{
    for (int i = 0; i < t->nfam; i++) {
        if (!strcmp(t->fam[i].name, name)) {
            return &t->fam[i];
        }
    }
    if (t->nfam == MAX_FAMILIES) {
        return NULL;
    }
    cl_family *f = &t->fam[t->nfam++];
    snprintf(f->name, sizeof f->name, "%s", name);
    char topic[600];
    snprintf(topic, sizeof topic, "%s-%s-changelog", cl->app_id, name);
    f->rkt = rd_kafka_topic_new(cl->producer, topic, NULL);
    f->end = -1;
    return f;
}

typedef struct add_fams {
    eddy_changelog *cl;
    cl_task        *t;
} add_fams;

static int add_fams_fn(void *opaque, const char *kind, int sub, const char *name)
{
    add_fams *a = opaque;
    if (!strcmp(kind, "family") && sub == (a->t->id >> 16)) {
        family_get(a->cl, a->t, name);
    }
    return 0;
}

static cl_task *task_get(eddy_changelog *cl, int32_t id)
{
    for (int i = 0; i < cl->ntasks; i++) {
        if (cl->tasks[i]->id == id) {
            return cl->tasks[i];
        }
    }
    if (cl->ntasks == MAX_CL_TASKS) {
        return NULL;
    }
    cl_task *t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    t->id = id;
    char name[64];
    snprintf(name, sizeof name, "__task-%d", id >> 16);
    family_get(cl, t, name);
    add_fams a = {cl, t};
    eddy_job_layout_each(cl->job, add_fams_fn, &a);
    cl->tasks[cl->ntasks++] = t;
    return t;
}

void eddy_changelog_forget(eddy_changelog *cl, int32_t partition)
{
    for (int i = 0; i < cl->ntasks;) {
        if ((cl->tasks[i]->id & 0xffff) == partition) {
            task_free(cl->tasks[i]);
            cl->tasks[i] = cl->tasks[--cl->ntasks];
        } else {
            i++;
        }
    }
}

/* The family of a store: "__meta", "__dedup" -> "__task-<S>"; "name#index" -> "name". */
static void family_of(const char *store, int32_t task, char *out, size_t size)
{
    if (!strcmp(store, "__meta") || !strcmp(store, "__dedup")) {
        snprintf(out, size, "__task-%d", task >> 16);
        return;
    }
    const char *hash = strchr(store, '#');
    size_t n = hash ? (size_t)(hash - store) : strlen(store);
    snprintf(out, size, "%.*s", (int)n, store);
}

/* ---- writing ---- */

static int produce(eddy_changelog *cl, cl_family *f, int32_t partition, const char *k, size_t klen,
                   const char *v, ssize_t vlen, const char *hname, const char *hval)
{
    void *vp = vlen < 0 ? NULL : (void *)v;
    size_t vsize = vlen < 0 ? 0 : (size_t)vlen;
    for (;;) {
        rd_kafka_headers_t *h = NULL;
        if (hname) {
            h = rd_kafka_headers_new(1);
            rd_kafka_header_add(h, hname, -1, hval, -1);
        }
        rd_kafka_resp_err_t err = rd_kafka_producev(
            cl->producer, RD_KAFKA_V_RKT(f->rkt), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(k, klen),
            RD_KAFKA_V_VALUE(vp, vsize),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(&f->end), RD_KAFKA_V_END);
        if (!err) {
            return 0;
        }
        if (h) {
            rd_kafka_headers_destroy(h);
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(cl->producer, 10);
            continue;
        }
        if (err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
            eddy_log_error("changelog: %s has no partition %d: a changelog needs as many "
                           "partitions as the job's sources (create it so, compacted; on the "
                           "development broker: eddy broker --topic %s:N)",
                           rd_kafka_topic_name(f->rkt), partition, rd_kafka_topic_name(f->rkt));
        } else {
            eddy_log_error("changelog: cannot produce to %s: %s", rd_kafka_topic_name(f->rkt),
                           rd_kafka_err2str(err));
        }
        return EDDY_EKAFKA;
    }
}

static int change_cb(void *opaque, int32_t task, const char *store, const char *k, size_t klen,
                     const char *v, ssize_t vlen)
{
    eddy_changelog *cl = opaque;
    if ((task >> 16) == EDDY_GLOBAL_SUB) {
        return 0;   /* global tables: the topic is the log */
    }
    cl_task *t = task_get(cl, task);
    if (t && !t->owned) {
        return 0;   /* a task this instance does not own (touched, not assigned): not ours to log */
    }
    char fname[256];
    family_of(store, task, fname, sizeof fname);
    cl_family *f = t ? family_get(cl, t, fname) : NULL;
    if (!f) {
        eddy_log_error("changelog: too many tasks or store families (task %d_%d, %s)",
                       task >> 16, task & 0xffff, store);
        return EDDY_EKAFKA;
    }
    if (!strcmp(store, fname)) {
        return produce(cl, f, task & 0xffff, k, klen, v, vlen, NULL, NULL);
    }
    /* an index of the family: the key says which, so compaction keeps both */
    cl->kbuf.len = 0;
    eddy_buf_append(&cl->kbuf, store, strlen(store) + 1);
    eddy_buf_append(&cl->kbuf, k, klen);
    return produce(cl, f, task & 0xffff, cl->kbuf.data, cl->kbuf.len, v, vlen, "eddy.db", store);
}

int eddy_changelog_write_changes(eddy_changelog *cl)
{
    return eddy_state_changes(cl->st, change_cb, cl) ? EDDY_EKAFKA : 0;
}

static int offsets_cb(void *opaque, const char *key, size_t klen, int64_t value)
{
    eddy_buf *b = opaque;
    eddy_buf_printf(b, "%s%.*s@%lld", b->data[b->len - 1] == '=' ? "" : ",", (int)klen, key,
                    (long long)value);
    return 0;
}

int eddy_changelog_write_markers(eddy_changelog *cl)
{
    int32_t ids[MAX_CL_TASKS];
    int n = eddy_state_active_tasks(cl->st, ids, MAX_CL_TASKS);
    for (int i = 0; i < n; i++) {
        if ((ids[i] >> 16) == EDDY_GLOBAL_SUB) {
            continue;                   /* global tables: no markers */
        }
        cl_task *t = task_get(cl, ids[i]);
        if (!t) {
            return EDDY_EKAFKA;
        }
        if (!t->owned) {
            continue;       /* only a task's owner, restored, may say what it has committed */
        }
        eddy_buf *b = &cl->vbuf;
        b->len = 0;
        eddy_buf_printf(b, "seq=%lld offsets=", (long long)(t->seq + 1));
        eddy_state_meta_each(cl->st, t->id, "__offsets", offsets_cb, b);
        eddy_buf_puts(b, " families=");
        int first = 1;
        for (int j = 1; j < t->nfam; j++) {
            if (t->fam[j].end >= 0) {
                eddy_buf_printf(b, "%s%s@%lld", first ? "" : ",", t->fam[j].name,
                                (long long)t->fam[j].end);
                first = 0;
            }
        }
        if (produce(cl, &t->fam[0], t->id & 0xffff, MARKER_KEY, strlen(MARKER_KEY), b->data,
                    (ssize_t)b->len, "eddy.commit", "1")) {
            return EDDY_EKAFKA;
        }
        t->seq++;
    }
    return 0;
}

int eddy_changelog_record(eddy_changelog *cl, char *errstr, size_t errstr_size)
{
    int32_t ids[MAX_CL_TASKS];
    int n = eddy_state_active_tasks(cl->st, ids, MAX_CL_TASKS);
    for (int i = 0; i < n; i++) {
        cl_task *t = (ids[i] >> 16) == EDDY_GLOBAL_SUB ? NULL : task_get(cl, ids[i]);
        if (!t || !t->owned) {
            continue;
        }
        for (int j = 0; j < t->nfam; j++) {
            if (t->fam[j].end >= 0 &&
                eddy_state_set_meta(cl->st, t->id, "__changelog", t->fam[j].name, t->fam[j].end)) {
                snprintf(errstr, errstr_size, "%s", eddy_state_error(cl->st));
                return -1;
            }
        }
        if (eddy_state_set_meta(cl->st, t->id, "__changelog", SEQ_KEY, t->seq)) {
            snprintf(errstr, errstr_size, "%s", eddy_state_error(cl->st));
            return -1;
        }
    }
    return 0;
}

/* ---- restore ---- */

typedef int read_cb(void *opaque, const rd_kafka_message_t *m);

/* One partition of a changelog to read from `start` (-1: the beginning) to its
 * end (the last stable offset under read_committed), `cb` per record. */
typedef struct range {
    char     topic[600];
    int32_t  partition;
    int64_t  start;
    read_cb *cb;
    void    *opaque;
    int      done;
    int64_t  seen;         /* the first offset seen, -1 before */
} range;

/* The partition count of every topic, from one metadata request. */
typedef struct topic_counts {
    const struct rd_kafka_metadata *md;
} topic_counts;

static int partitions_of(const topic_counts *tc, const char *topic)
{
    for (int i = 0; tc->md && i < tc->md->topic_cnt; i++) {
        if (!strcmp(tc->md->topics[i].topic, topic) && !tc->md->topics[i].err) {
            return tc->md->topics[i].partition_cnt;
        }
    }
    return 0;
}

/* Read every range at once (one assignment; a fetch per broker serves them
 * all), until each has reached its end. @returns 0, or EDDY_EKAFKA / -1 with
 * the reason in errstr. */
static int read_ranges(eddy_changelog *cl, range *rs, int n, volatile sig_atomic_t *stop,
                       int64_t *nread, char *errstr, size_t errstr_size)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
    int pending = 0;
    for (int i = 0; i < n; i++) {
        rs[i].seen = -1;
        if (!rs[i].done) {
            rd_kafka_topic_partition_list_add(l, rs[i].topic, rs[i].partition)->offset =
                rs[i].start >= 0 ? rs[i].start : RD_KAFKA_OFFSET_BEGINNING;
            pending++;
        }
    }
    if (pending == 0) {
        rd_kafka_topic_partition_list_destroy(l);
        return 0;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(cl->reader, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        snprintf(errstr, errstr_size, "cannot read the changelogs: %s", rd_kafka_err2str(err));
        return EDDY_EKAFKA;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(cl->reader);
    rd_kafka_message_t *msgs[4096];
    int rc = 0;
    range *last = NULL;
    int64_t last_log = eddy_mono_ms(), idle_since = eddy_mono_ms();
    while (pending > 0 && rc == 0 && !*stop) {
        ssize_t got = rd_kafka_consume_batch_queue(q, 5, msgs, 4096);
        if (got > 0) {
            idle_since = eddy_mono_ms();
        }
        for (ssize_t j = 0; j < got; j++) {
            rd_kafka_message_t *m = msgs[j];
            range *r = last;
            if (m->rkt && (!r || r->partition != m->partition ||
                           strcmp(r->topic, rd_kafka_topic_name(m->rkt)) != 0)) {
                r = NULL;
                for (int i = 0; i < n && !r; i++) {
                    if (rs[i].partition == m->partition &&
                        !strcmp(rs[i].topic, rd_kafka_topic_name(m->rkt))) {
                        r = &rs[i];
                    }
                }
                last = r;
            }
            if (!r || r->done || rc) {
                if (!r && m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && !rc) {
                    snprintf(errstr, errstr_size, "cannot read the changelogs: %s",
                             rd_kafka_message_errstr(m));
                    rc = EDDY_EKAFKA;
                }
                rd_kafka_message_destroy(m);
                continue;
            }
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                r->done = 1;
                pending--;
            } else if (m->err) {
                snprintf(errstr, errstr_size, "cannot read %s [%d]: %s", r->topic, r->partition,
                         rd_kafka_message_errstr(m));
                rc = EDDY_EKAFKA;
            } else {
                if (r->seen < 0) {
                    r->seen = m->offset;
                    if (r->start >= 0 && m->offset > r->start) {
                        eddy_log_warn("changelog %s [%d]: records from %lld to %lld are gone "
                                      "(retention; changelogs must be compacted, not deleted)",
                                      r->topic, r->partition, (long long)r->start,
                                      (long long)m->offset);
                    }
                }
                (*nread)++;
                if (r->cb(r->opaque, m)) {
                    snprintf(errstr, errstr_size, "%s", eddy_state_error(cl->st));
                    rc = -1;
                }
            }
            rd_kafka_message_destroy(m);
        }
        int64_t now = eddy_mono_ms();
        if (now - last_log >= 2000) {
            last_log = now;
            eddy_log_info("changelogs: restoring, %lld records so far, %d partition(s) to go",
                          (long long)*nread, pending);
        }
        if (pending > 0 && now - idle_since > 30000) {
            snprintf(errstr, errstr_size, "reading the changelogs stalled for 30 s (%d "
                     "partition(s) not at their end)", pending);
            rc = EDDY_EKAFKA;
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_assign(cl->reader, NULL);
    if (!rc && *stop) {
        snprintf(errstr, errstr_size, "stopped while restoring");
        rc = EDDY_EKAFKA;
    }
    return rc;
}

/* Which store a changelog record belongs to, and its key in that store. */
static void decode(const rd_kafka_message_t *m, const char *family, int *marker,
                   char *store, size_t size, const char **k, size_t *klen)
{
    rd_kafka_headers_t *h = NULL;
    const void *hv;
    size_t hs;
    *marker = 0;
    snprintf(store, size, "%s", family);
    *k = m->key;
    *klen = m->key_len;
    if (rd_kafka_message_headers(m, &h) != 0) {
        return;
    }
    if (rd_kafka_header_get_last(h, "eddy.commit", &hv, &hs) == 0) {
        *marker = 1;
    } else if (rd_kafka_header_get_last(h, "eddy.db", &hv, &hs) == 0 && hv && hs < size) {
        memcpy(store, hv, hs);
        store[hs] = '\0';
        if (*klen > hs) {                 /* "store\0key" */
            *k += hs + 1;
            *klen -= hs + 1;
        }
    }
}

typedef struct scan_markers {
    int64_t  last_off;      /* the last marker's offset, -1: none */
    int64_t  max_seq;
    eddy_buf value;         /* the last marker */
} scan_markers;

static int64_t marker_seq(const char *v, size_t n)
{
    char tmp[32];
    n = n < sizeof tmp - 1 ? n : sizeof tmp - 1;
    memcpy(tmp, v, n);
    tmp[n] = '\0';
    long long seq = -1;
    sscanf(tmp, "seq=%lld", &seq);
    return seq;
}

static int scan_markers_cb(void *opaque, const rd_kafka_message_t *m)
{
    scan_markers *s = opaque;
    rd_kafka_headers_t *h;
    const void *hv;
    size_t hs;
    if (rd_kafka_message_headers(m, &h) == 0 &&
        rd_kafka_header_get_last(h, "eddy.commit", &hv, &hs) == 0 && m->payload) {
        s->last_off = m->offset;
        s->value.len = 0;
        eddy_buf_append(&s->value, m->payload, m->len);
        eddy_buf_putc(&s->value, '\0');
        s->value.len--;
        int64_t seq = marker_seq(m->payload, m->len);
        if (seq > s->max_seq) {
            s->max_seq = seq;
        }
    }
    return 0;
}

typedef struct apply_ctx {
    eddy_changelog *cl;
    int32_t         task;
    const char     *family;
    int64_t         until;    /* records before this offset are applied; later ones orphans */
    int64_t         applied, orphans;
} apply_ctx;

static int apply_cb(void *opaque, const rd_kafka_message_t *m)
{
    apply_ctx *a = opaque;
    int marker;
    char store[256];
    const char *k;
    size_t klen;
    decode(m, a->family, &marker, store, sizeof store, &k, &klen);
    if (marker || !m->key) {
        return 0;
    }
    if (m->offset < a->until) {
        a->applied++;
        return eddy_state_apply(a->cl->st, a->task, store, k, klen, m->payload,
                                m->payload ? (ssize_t)m->len : -1);
    }
    a->orphans++;
    return eddy_state_mark_changed(a->cl->st, a->task, store, k, klen);
}

/* "name@123" in a list "a@1,b@2": the number, or -1. */
static int64_t list_get(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        if (!strncmp(p, name, n) && p[n] == '@') {
            return strtoll(p + n + 1, NULL, 10);
        }
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    return -1;
}

/* The input offsets of commit marker @p marker ("... offsets=t@1,u@2 ...") into
 * the task's "__offsets" store. @returns 0, or -1 (eddy_state_error says why). */
static int marker_offsets(eddy_state *st, int32_t task, const char *marker)
{
    const char *offsets = strstr(marker, " offsets=");
    for (const char *p = offsets ? offsets + 9 : NULL; p && *p && *p != ' ';) {
        const char *at = strchr(p, '@');
        if (!at) {
            break;
        }
        char tp[512];
        snprintf(tp, sizeof tp, "%.*s", (int)(at - p), p);
        if (tp[0] && eddy_state_set_meta(st, task, "__offsets", tp, strtoll(at + 1, NULL, 10))) {
            return -1;                /* (an entry without a topic is skipped: not eddy's) */
        }
        p = strpbrk(at, ", ");
        p = p && *p == ',' ? p + 1 : NULL;
    }
    return 0;
}

/* One task being restored. */
typedef struct restoring {
    cl_task     *t;
    int64_t      local_seq;
    int64_t      local[MAX_FAMILIES];
    scan_markers sm;
    apply_ctx    a[MAX_FAMILIES];
} restoring;

static void range_set(range *r, const char *app_id, const char *family, int32_t partition,
                      int64_t start, read_cb *cb, void *opaque, const topic_counts *tc)
{
    snprintf(r->topic, sizeof r->topic, "%s-%s-changelog", app_id, family);
    r->partition = partition;
    r->start = start;
    r->cb = cb;
    r->opaque = opaque;
    r->done = partition >= partitions_of(tc, r->topic);     /* never written */
}

int eddy_changelog_restore_tasks(eddy_changelog *cl, const int32_t *ids, int n,
                                 volatile sig_atomic_t *stop, char *errstr, size_t errstr_size)
{
    if (n <= 0) {
        return 0;
    }
    int64_t t0 = eddy_mono_ms(), nread = 0;
    restoring *rt = calloc((size_t)n, sizeof(*rt));
    range *rs = calloc((size_t)n * MAX_FAMILIES, sizeof(*rs));
    topic_counts tc = {NULL};
    int rc = 0;
    if (!rt || !rs) {
        free(rt);
        free(rs);
        snprintf(errstr, errstr_size, "out of memory");
        return EDDY_ENOMEM;
    }
    rd_kafka_resp_err_t err = rd_kafka_metadata(cl->reader, 1, NULL, &tc.md, 10000);
    if (err) {
        snprintf(errstr, errstr_size, "cannot list the changelog topics: %s", rd_kafka_err2str(err));
        rc = EDDY_EKAFKA;
        goto out;
    }
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < cl->ntasks; i++) {     /* start from what LMDB says, not memory */
            if (cl->tasks[i]->id == ids[k]) {
                task_free(cl->tasks[i]);
                cl->tasks[i] = cl->tasks[--cl->ntasks];
                break;
            }
        }
        restoring *x = &rt[k];
        if (!(x->t = task_get(cl, ids[k]))) {
            snprintf(errstr, errstr_size, "too many tasks");
            rc = EDDY_EKAFKA;
            goto out;
        }
        x->local_seq = eddy_state_meta(cl->st, ids[k], "__changelog", SEQ_KEY);
        for (int i = 0; i < x->t->nfam; i++) {
            x->local[i] = eddy_state_meta(cl->st, ids[k], "__changelog", x->t->fam[i].name);
        }
        x->sm.last_off = x->sm.max_seq = -1;
    }

    /* 1. each task's last commit marker after its local state's */
    for (int k = 0; k < n; k++) {
        range_set(&rs[k], cl->app_id, rt[k].t->fam[0].name, ids[k] & 0xffff, rt[k].local[0],
                  scan_markers_cb, &rt[k].sm, &tc);
    }
    if ((rc = read_ranges(cl, rs, n, stop, &nread, errstr, errstr_size))) {
        goto out;
    }

    /* 2. every family up to its position in that marker (or the local one) */
    int nr = 0;
    for (int k = 0; k < n; k++) {
        restoring *x = &rt[k];
        const char *families = NULL;
        if (x->sm.last_off >= 0) {
            families = strstr(x->sm.value.data, " families=");
            families = families ? families + 10 : "";
        }
        for (int i = 0; i < x->t->nfam; i++) {
            int64_t until = x->local[i];
            if (i == 0 && x->sm.last_off >= 0) {
                until = x->sm.last_off;
            } else if (i > 0 && families) {
                int64_t at = list_get(families, x->t->fam[i].name);
                if (at > until) {
                    until = at;
                }
            }
            x->a[i] = (apply_ctx){cl, ids[k], x->t->fam[i].name, until < 0 ? 0 : until, 0, 0};
            x->t->fam[i].end = i == 0 && x->sm.last_off >= 0 ? x->sm.last_off + 1 : until;
            range_set(&rs[nr++], cl->app_id, x->t->fam[i].name, ids[k] & 0xffff, x->local[i],
                      apply_cb, &x->a[i], &tc);
        }
    }
    if ((rc = read_ranges(cl, rs, nr, stop, &nread, errstr, errstr_size))) {
        goto out;
    }

    /* 3. what the state now reflects: positions, commit number, input offsets */
    for (int k = 0; k < n && rc == 0; k++) {
        restoring *x = &rt[k];
        cl_task *t = x->t;
        t->owned = 1;
        t->seq = x->sm.max_seq > x->local_seq ? x->sm.max_seq : x->local_seq;
        if (t->seq < 0) {
            t->seq = 0;
        }
        for (int i = 0; i < t->nfam && rc == 0; i++) {
            if (t->fam[i].end >= 0 &&
                eddy_state_set_meta(cl->st, t->id, "__changelog", t->fam[i].name, t->fam[i].end)) {
                rc = -1;
            }
        }
        if (rc == 0 && eddy_state_set_meta(cl->st, t->id, "__changelog", SEQ_KEY, t->seq)) {
            rc = -1;
        }
        if (rc == 0 && x->sm.last_off >= 0 && marker_offsets(cl->st, t->id, x->sm.value.data)) {
            rc = -1;
        }
        if (rc == -1) {
            snprintf(errstr, errstr_size, "%s", eddy_state_error(cl->st));
            break;
        }
        int64_t applied = 0, orphans = 0;
        for (int i = 0; i < t->nfam; i++) {
            applied += x->a[i].applied;
            orphans += x->a[i].orphans;
        }
        cl->restored_records += applied;
        if (applied && eddy_state_clear_indexes(cl->st, t->id)) {   /* the job rebuilds them */
            snprintf(errstr, errstr_size, "%s", eddy_state_error(cl->st));
            rc = -1;
            break;
        }
        if (applied || orphans || x->sm.last_off >= 0) {
            eddy_log_info("task %d_%d: restored %lld change(s) from %d changelog(s), up to commit "
                          "%lld%s%s", t->id >> 16, t->id & 0xffff, (long long)applied, t->nfam,
                          (long long)t->seq,
                          x->sm.last_off >= 0 ? " (newer than the local state)" : "",
                          orphans ? "; changes of an unfinished commit after it are undone" : "");
        }
    }
    int64_t ms = eddy_mono_ms() - t0;
    cl->restored_ms += ms;
    if (rc == 0 && nread > 0) {
        eddy_log_info("changelogs: %d task(s) restored in %lld ms, %lld record(s) read (%.0f/s)",
                      n, (long long)ms, (long long)nread, ms > 0 ? nread * 1000.0 / (double)ms : 0.0);
    }
out:
    for (int k = 0; k < n; k++) {
        eddy_buf_free(&rt[k].sm.value);
    }
    if (tc.md) {
        rd_kafka_metadata_destroy(tc.md);
    }
    free(rt);
    free(rs);
    return rc;
}
