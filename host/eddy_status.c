/*
 * eddy_status — the operator's snapshot (see eddy_status.h).
 */
#include "eddy_status.h"
#include "eddy_clock.h"
#include "eddy_metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HISTORY 32
#define MAX_TASKS 1024

typedef struct reload_event {
    int64_t wall_ms;
    char    outcome[16];
    char    version[24], from[24];
    char    why[400];
} reload_event;

/* latency buckets of the per-record processing time, in seconds */
static const double buckets[] = {0.000001, 0.000005, 0.00001, 0.00005, 0.0001, 0.0005,
                                 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

static struct {
    pthread_mutex_t lock;
    char            job[128], script[1024], version[24], mode[16];
    int64_t         started_ms;
    reload_event    history[HISTORY];
    int             nhistory, next;
    char            error[600];
    int64_t         error_ms;
    eddy_status_task tasks[MAX_TASKS];
    int             ntasks;
    uint64_t        lat_count[NBUCKETS + 1];
    double          lat_sum;
    uint64_t        lat_n;
    uint64_t        commits;
    double          commit_sum, commit_last;
    int64_t         lua_bytes, state_bytes;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

void eddy_status_init(const char *job, const char *script, const char *version, const char *mode)
{
    pthread_mutex_lock(&S.lock);
    copy(S.job, sizeof S.job, job);
    copy(S.script, sizeof S.script, script);
    copy(S.version, sizeof S.version, version);
    copy(S.mode, sizeof S.mode, mode);
    S.started_ms = eddy_wall_ms();
    pthread_mutex_unlock(&S.lock);
}

void eddy_status_reload(const char *outcome, const char *version, const char *from,
                        const char *why)
{
    pthread_mutex_lock(&S.lock);
    reload_event *e = &S.history[S.next];
    S.next = (S.next + 1) % HISTORY;
    if (S.nhistory < HISTORY) {
        S.nhistory++;
    }
    e->wall_ms = eddy_wall_ms();
    copy(e->outcome, sizeof e->outcome, outcome);
    copy(e->version, sizeof e->version, version);
    copy(e->from, sizeof e->from, from);
    copy(e->why, sizeof e->why, why);
    pthread_mutex_unlock(&S.lock);
}

void eddy_status_version(const char *version)
{
    pthread_mutex_lock(&S.lock);
    copy(S.version, sizeof S.version, version);
    pthread_mutex_unlock(&S.lock);
}

void eddy_status_error(const char *what)
{
    pthread_mutex_lock(&S.lock);
    copy(S.error, sizeof S.error, what);
    S.error_ms = eddy_wall_ms();
    pthread_mutex_unlock(&S.lock);
}

void eddy_status_tasks(const eddy_status_task *tasks, int n)
{
    pthread_mutex_lock(&S.lock);
    S.ntasks = n < MAX_TASKS ? n : MAX_TASKS;
    memcpy(S.tasks, tasks, sizeof(*tasks) * (size_t)S.ntasks);
    pthread_mutex_unlock(&S.lock);
}

void eddy_status_batch(int records, int64_t us)
{
    if (records <= 0) {
        return;
    }
    double per = (double)us / 1e6 / records;
    pthread_mutex_lock(&S.lock);
    size_t i = 0;
    while (i < NBUCKETS && per > buckets[i]) {
        i++;
    }
    S.lat_count[i] += (uint64_t)records;
    S.lat_sum += (double)us / 1e6;
    S.lat_n += (uint64_t)records;
    pthread_mutex_unlock(&S.lock);
}

void eddy_status_commit(int64_t us)
{
    pthread_mutex_lock(&S.lock);
    S.commits++;
    S.commit_last = (double)us / 1e6;
    S.commit_sum += S.commit_last;
    pthread_mutex_unlock(&S.lock);
}

void eddy_status_sizes(int64_t lua_bytes, int64_t state_bytes)
{
    pthread_mutex_lock(&S.lock);
    S.lua_bytes = lua_bytes;
    S.state_bytes = state_bytes;
    pthread_mutex_unlock(&S.lock);
}

static void counter(eddy_buf *b, const char *name, const char *help, uint64_t v)
{
    eddy_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                    (unsigned long long)v);
}

static void label(eddy_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            eddy_buf_putc(b, '\\');
        }
        eddy_buf_putc(b, *s == '\n' ? ' ' : *s);
    }
}

void eddy_status_metrics(eddy_buf *b)
{
    const eddy_metrics m = eddy_stats;     /* a copy: the counters move meanwhile */
    counter(b, "eddy_records_in_total", "Records read from the sources.", m.records_in);
    counter(b, "eddy_records_out_total", "Records written to the sinks.", m.records_out);
    counter(b, "eddy_errors_total", "Records that failed (whatever the on_error policy).", m.errors);
    counter(b, "eddy_dlq_records_total", "Records sent to the dead-letter queue.", m.dead_lettered);
    counter(b, "eddy_late_records_total", "Records dropped as late by a window.", m.late_records);
    counter(b, "eddy_skipped_nil_key_total", "Records skipped by an aggregation for a nil key.",
            m.nil_keys);
    counter(b, "eddy_batches_total", "Batches processed.", m.batches);
    eddy_buf_printf(b, "# HELP eddy_reloads_total Script reloads by outcome.\n"
                       "# TYPE eddy_reloads_total counter\n"
                       "eddy_reloads_total{outcome=\"ok\"} %llu\n"
                       "eddy_reloads_total{outcome=\"refused\"} %llu\n"
                       "eddy_reloads_total{outcome=\"rolled_back\"} %llu\n",
                    (unsigned long long)m.reloads_ok, (unsigned long long)m.reloads_refused,
                    (unsigned long long)m.reloads_rolled_back);
    eddy_buf_printf(b, "# HELP eddy_transactions_total exactly_once transactions by outcome.\n"
                       "# TYPE eddy_transactions_total counter\n"
                       "eddy_transactions_total{outcome=\"committed\"} %llu\n"
                       "eddy_transactions_total{outcome=\"aborted\"} %llu\n",
                    (unsigned long long)m.txn_commits, (unsigned long long)m.txn_aborts);
    pthread_mutex_lock(&S.lock);
    eddy_buf_printf(b, "# HELP eddy_consumer_lag Records behind the partition's end, per task.\n"
                       "# TYPE eddy_consumer_lag gauge\n");
    for (int i = 0; i < S.ntasks; i++) {
        if (S.tasks[i].lag < 0) {
            continue;
        }
        eddy_buf_puts(b, "eddy_consumer_lag{topic=\"");
        label(b, S.tasks[i].topic);
        eddy_buf_printf(b, "\",partition=\"%d\"} %lld\n", S.tasks[i].partition,
                        (long long)S.tasks[i].lag);
    }
    eddy_buf_printf(b, "# HELP eddy_process_latency_seconds Processing time per record "
                       "(its batch's time divided by its records).\n"
                       "# TYPE eddy_process_latency_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += S.lat_count[i];
        eddy_buf_printf(b, "eddy_process_latency_seconds_bucket{le=\"%g\"} %llu\n", buckets[i],
                        (unsigned long long)cum);
    }
    cum += S.lat_count[NBUCKETS];
    eddy_buf_printf(b, "eddy_process_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                       "eddy_process_latency_seconds_sum %.9f\n"
                       "eddy_process_latency_seconds_count %llu\n",
                    (unsigned long long)cum, S.lat_sum, (unsigned long long)S.lat_n);
    eddy_buf_printf(b, "# HELP eddy_commit_latency_seconds Time of the last commit (flush, "
                       "changelogs, state, offsets).\n# TYPE eddy_commit_latency_seconds gauge\n"
                       "eddy_commit_latency_seconds %.6f\n"
                       "# HELP eddy_commits_total Commits.\n# TYPE eddy_commits_total counter\n"
                       "eddy_commits_total %llu\n"
                       "# HELP eddy_lua_memory_bytes The Lua heap of the running version.\n"
                       "# TYPE eddy_lua_memory_bytes gauge\neddy_lua_memory_bytes %lld\n"
                       "# HELP eddy_state_bytes The LMDB files of the tasks owned, on disk.\n"
                       "# TYPE eddy_state_bytes gauge\neddy_state_bytes %lld\n",
                    S.commit_last, (unsigned long long)S.commits, (long long)S.lua_bytes,
                    (long long)S.state_bytes);
    eddy_buf_puts(b, "# HELP eddy_info The running job and version.\n# TYPE eddy_info gauge\n"
                     "eddy_info{job=\"");
    label(b, S.job);
    eddy_buf_puts(b, "\",version=\"");
    label(b, S.version);
    eddy_buf_puts(b, "\"} 1\n");
    pthread_mutex_unlock(&S.lock);
}

static void json_str(eddy_buf *b, const char *s)
{
    eddy_buf_json_string(b, s, strlen(s));
}

void eddy_status_json(eddy_buf *b)
{
    const eddy_metrics m = eddy_stats;
    pthread_mutex_lock(&S.lock);
    eddy_buf_puts(b, "{\"job\":");
    json_str(b, S.job);
    eddy_buf_puts(b, ",\"script\":");
    json_str(b, S.script);
    eddy_buf_puts(b, ",\"version\":");
    json_str(b, S.version);
    eddy_buf_puts(b, ",\"mode\":");
    json_str(b, S.mode);
    eddy_buf_printf(b, ",\"started_ms\":%lld,\"now_ms\":%lld,\"pid\":%d", (long long)S.started_ms,
                    (long long)eddy_wall_ms(), (int)getpid());
    eddy_buf_printf(b, ",\"records_in\":%llu,\"records_out\":%llu,\"errors\":%llu,"
                       "\"dead_lettered\":%llu,\"late_records\":%llu",
                    (unsigned long long)m.records_in, (unsigned long long)m.records_out,
                    (unsigned long long)m.errors, (unsigned long long)m.dead_lettered,
                    (unsigned long long)m.late_records);
    eddy_buf_puts(b, ",\"reloads\":[");
    for (int i = 0; i < S.nhistory; i++) {
        /* oldest first */
        const reload_event *e = &S.history[(S.next - S.nhistory + i + HISTORY) % HISTORY];
        eddy_buf_printf(b, "%s{\"time_ms\":%lld,\"outcome\":", i ? "," : "", (long long)e->wall_ms);
        json_str(b, e->outcome);
        eddy_buf_puts(b, ",\"version\":");
        json_str(b, e->version);
        eddy_buf_puts(b, ",\"from\":");
        json_str(b, e->from);
        if (e->why[0]) {
            eddy_buf_puts(b, ",\"why\":");
            json_str(b, e->why);
        }
        eddy_buf_putc(b, '}');
    }
    eddy_buf_puts(b, "],\"tasks\":[");
    int64_t total = 0;
    for (int i = 0; i < S.ntasks; i++) {
        eddy_buf_printf(b, "%s{\"topic\":", i ? "," : "");
        json_str(b, S.tasks[i].topic);
        eddy_buf_printf(b, ",\"partition\":%d,\"offset\":%lld,\"lag\":%lld}", S.tasks[i].partition,
                        (long long)S.tasks[i].offset, (long long)S.tasks[i].lag);
        total += S.tasks[i].lag > 0 ? S.tasks[i].lag : 0;
    }
    eddy_buf_printf(b, "],\"lag\":%lld,\"last_error\":", (long long)total);
    if (S.error[0]) {
        eddy_buf_printf(b, "{\"time_ms\":%lld,\"message\":", (long long)S.error_ms);
        json_str(b, S.error);
        eddy_buf_putc(b, '}');
    } else {
        eddy_buf_puts(b, "null");
    }
    eddy_buf_puts(b, "}\n");
    pthread_mutex_unlock(&S.lock);
}
