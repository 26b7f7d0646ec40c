/*
 * eddy_timesync — queues per partition, grouped by task (see eddy_timesync.h).
 */
#include "eddy_timesync.h"
#include "eddy_clock.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define MAX_QUEUES 4096

typedef struct queue {
    char                 topic[256];
    int32_t              partition, task;
    rd_kafka_message_t **m;
    size_t               head, len, cap;     /* a ring */
    int64_t              next_offset;        /* after the last record seen, -1: none */
} queue;

struct eddy_timesync {
    queue   *q[MAX_QUEUES];
    int      nq;
    int      max_idle_ms;
    int64_t  blocked_since[MAX_QUEUES];      /* per queue index of a blocking empty queue */
};

eddy_timesync *eddy_timesync_new(int max_idle_ms)
{
    eddy_timesync *ts = calloc(1, sizeof(*ts));
    if (ts) {
        ts->max_idle_ms = max_idle_ms;
    }
    return ts;
}

static void queue_free(queue *q)
{
    for (size_t i = 0; i < q->len; i++) {
        rd_kafka_message_destroy(q->m[(q->head + i) % q->cap]);
    }
    free(q->m);
    free(q);
}

void eddy_timesync_drop(eddy_timesync *ts, int32_t partition)
{
    for (int i = 0; i < ts->nq;) {
        if (partition < 0 || ts->q[i]->partition == partition) {
            queue_free(ts->q[i]);
            ts->q[i] = ts->q[--ts->nq];
            ts->blocked_since[i] = ts->blocked_since[ts->nq];
        } else {
            i++;
        }
    }
}

void eddy_timesync_destroy(eddy_timesync *ts)
{
    if (ts) {
        eddy_timesync_drop(ts, -1);
        free(ts);
    }
}

static queue *find(eddy_timesync *ts, const char *topic, int32_t partition)
{
    for (int i = 0; i < ts->nq; i++) {
        if (ts->q[i]->partition == partition && !strcmp(ts->q[i]->topic, topic)) {
            return ts->q[i];
        }
    }
    return NULL;
}

size_t eddy_timesync_held(const eddy_timesync *ts)
{
    size_t n = 0;
    for (int i = 0; i < ts->nq; i++) {
        n += ts->q[i]->len;
    }
    return n;
}

void eddy_timesync_assign(eddy_timesync *ts, const char *topic, int32_t partition, int32_t task,
                          int64_t start)
{
    if (find(ts, topic, partition) || ts->nq == MAX_QUEUES) {
        return;
    }
    queue *q = calloc(1, sizeof(*q));
    if (!q) {
        return;
    }
    snprintf(q->topic, sizeof q->topic, "%s", topic);
    q->partition = partition;
    q->task = task;
    q->next_offset = start >= 0 ? start : -1;
    ts->blocked_since[ts->nq] = 0;
    ts->q[ts->nq++] = q;
}

void eddy_timesync_push(eddy_timesync *ts, rd_kafka_message_t *m)
{
    queue *q = find(ts, rd_kafka_topic_name(m->rkt), m->partition);
    if (!q) {
        rd_kafka_message_destroy(m);      /* not (any more) ours */
        return;
    }
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        rd_kafka_message_t **nm = malloc(cap * sizeof(*nm));
        if (!nm) {
            abort();
        }
        for (size_t i = 0; i < q->len; i++) {
            nm[i] = q->m[(q->head + i) % q->cap];
        }
        free(q->m);
        q->m = nm;
        q->head = 0;
        q->cap = cap;
    }
    q->m[(q->head + q->len++) % q->cap] = m;
    q->next_offset = m->offset + 1;
}

static int64_t head_ts(const queue *q)
{
    return rd_kafka_message_timestamp(q->m[q->head], NULL);
}

/* An empty queue whose partition may have more records than we have seen. */
static int behind(rd_kafka_t *consumer, const queue *q)
{
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(consumer, q->topic, q->partition, &lo, &hi) != 0 || hi < 0) {
        return 1;                                /* not known yet */
    }
    int64_t at = q->next_offset >= 0 ? q->next_offset : lo;
    return at < hi;
}

ssize_t eddy_timesync_pull(eddy_timesync *ts, rd_kafka_t *consumer, rd_kafka_message_t **out,
                           size_t max)
{
    size_t n = 0;
    int64_t now = eddy_mono_ms();
    for (int i = 0; i < ts->nq && n < max; i++) {
        int32_t task = ts->q[i]->task;
        int first = 1;
        for (int j = 0; j < i; j++) {
            if (ts->q[j]->task == task) {
                first = 0;
            }
        }
        if (!first) {
            continue;                            /* each task once, from its first queue */
        }
        while (n < max) {
            queue *best = NULL;
            int hold = 0;
            for (int j = i; j < ts->nq; j++) {
                queue *q = ts->q[j];
                if (q->task != task) {
                    continue;
                }
                if (q->len == 0) {
                    if (behind(consumer, q)) {
                        if (!ts->blocked_since[j]) {
                            ts->blocked_since[j] = now;
                        }
                        if (now - ts->blocked_since[j] < ts->max_idle_ms) {
                            hold = 1;
                        }
                    }
                    continue;
                }
                ts->blocked_since[j] = 0;
                if (!best || head_ts(q) < head_ts(best)) {
                    best = q;
                }
            }
            if (!best || hold) {
                break;
            }
            out[n++] = best->m[best->head];
            best->head = (best->head + 1) % best->cap;
            best->len--;
        }
    }
    return (ssize_t)n;
}
