/*
 * eddy_file — the file source (see eddy_file.h). Lines are parsed in place in
 * one read buffer; a batch's records borrow that buffer until it is processed.
 */
#include "eddy_file.h"
#include "eddy_http.h"
#include "eddy_state.h"
#include "eddy_status.h"
#include "eddy_clock.h"
#include "eddy.h"
#include "eddy_envelope.h"
#include "eddy_log.h"
#include "eddy_murmur2.h"
#include "eddy_clock.h"
#include "eddy_reload.h"
#include "eddy_metrics.h"
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>

#define READ_CHUNK   (1 << 20)
#define BATCH_MAX    8192

typedef struct reader {
    eddy_runner *runner;
    eddy_job    *job;
    eddy_batch  *batch;
    const eddy_file_conf *conf;
    eddy_envelope env;
    int64_t     *next_offset[256];   /* per source topic, per partition */
    int32_t      npart[256];
    uint32_t     rr;              /* round robin for null keys */
    eddy_buf     scratch;         /* the raw line, kept for the DLQ */
    int64_t      now;             /* the wall clock when the chunk in hand was read: the
                                   * time of its lines without one (one clock read per read()) */
    int64_t      last_commit;     /* eddy_mono_us() of the last commit */
} reader;

static int64_t take_offset(reader *rd, int source, int32_t partition, int64_t given)
{
    if (partition >= rd->npart[source]) {
        int32_t n = partition + 1;
        int64_t *p = realloc(rd->next_offset[source], sizeof(int64_t) * (size_t)n);
        if (!p) {
            abort();
        }
        memset(p + rd->npart[source], 0, sizeof(int64_t) * (size_t)(n - rd->npart[source]));
        rd->next_offset[source] = p;
        rd->npart[source] = n;
    }
    if (given >= 0) {
        rd->next_offset[source][partition] = given + 1;
        return given;
    }
    return rd->next_offset[source][partition]++;
}

static int32_t pick_partition(reader *rd, const char *key, ssize_t klen)
{
    if (klen >= 0) {
        return eddy_murmur2_partition(key, (size_t)klen, rd->conf->partitions);
    }
    return (int32_t)(rd->rr++ % (uint32_t)rd->conf->partitions);
}

static int flush_batch(reader *rd)
{
    if (rd->batch->n == 0) {
        return 0;
    }
    int64_t t0 = eddy_mono_us();
    int nrecs = rd->batch->n;            /* a rollback inside may destroy the batch */
    int rc = eddy_runner_process(rd->runner);
    eddy_status_batch(nrecs, eddy_mono_us() - t0);
    rd->job = eddy_runner_job(rd->runner);        /* a rollback may have changed it (and freed the old batch) */
    rd->batch = eddy_job_batch(rd->job);
    eddy_batch_reset(rd->batch);
    if (rc == 0 && eddy_runner_wants_commit(rd->runner)) {
        char err[1024];
        rc = eddy_runner_commit(rd->runner, err, sizeof err);
    }
    return rc;
}

static int one_line(reader *rd, char *line, size_t len, int64_t lineno)
{
    if (len && line[len - 1] == '\r') {
        len--;
    }
    if (rd->conf->lines) {
        int32_t p = pick_partition(rd, NULL, -1);
        eddy_batch_add(rd->batch, 0, p, take_offset(rd, 0, p, -1), rd->now, NULL, -1, line,
                       (int32_t)len);
        return 0;
    }
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t')) {
        i++;
    }
    if (i == len) {
        return 0;                    /* a blank line */
    }
    int escaped = memchr(line, '\\', len) != NULL;
    if (escaped) {                   /* parsing unescapes in place: keep the raw line */
        eddy_buf_reset(&rd->scratch);
        eddy_buf_append(&rd->scratch, line, len);
    }
    char err[256];
    eddy_envelope *env = &rd->env;
    int source = 0;
    int rc = eddy_envelope_parse(env, line, len, err, sizeof err);
    if (rc == 0 && env->topic) {
        source = eddy_job_source_index(rd->job, env->topic, env->topic_len);
        if (source < 0) {
            snprintf(err, sizeof err, "topic \"%.*s\" is not a source of this job",
                     (int)env->topic_len, env->topic);
            rc = EDDY_EPARSE;
        }
    }
    if (rc == 0 && (len > INT32_MAX || env->payload_len > INT32_MAX)) {
        snprintf(err, sizeof err, "record too large");
        rc = EDDY_EPARSE;
    }
    if (rc) {
        char msg[400];
        snprintf(msg, sizeof msg, "input line %lld: %s", (long long)lineno, err);
        const char *raw = escaped ? rd->scratch.data : line;
        if ((rc = flush_batch(rd))) {        /* keep the order of outcomes */
            return rc;
        }
        return eddy_runner_bad_input(rd->runner, eddy_job_source(rd->job, 0), -1, lineno - 1,
                                     rd->now, NULL, -1, raw, (ssize_t)len, "envelope", msg);
    }
    int32_t p = env->partition >= 0 ? env->partition : pick_partition(rd, env->key, env->key_len);
    eddy_batch_add(rd->batch, source, p, take_offset(rd, source, p, env->offset),
                   env->has_ts ? env->ts : rd->now, env->key, (int32_t)env->key_len,
                   env->payload, (int32_t)env->payload_len);
    for (int h = 0; h < env->nheaders; h++) {
        eddy_header *eh = &env->headers[h];
        eddy_batch_add_header(rd->batch, eh->name, (int32_t)eh->name_len, eh->value,
                              (int32_t)eh->value_len);
    }
    return 0;
}

/* The progress line (a TTY only): records, rate, share of the input, errors. */
static void progress(const eddy_file_conf *conf, int64_t done_bytes, int64_t total_bytes,
                     int final)
{
    static int64_t t0, last;
    int64_t now = eddy_wall_ms();
    if (!conf->progress) {
        return;
    }
    if (!t0) {
        t0 = now;
    }
    if (!final && now - last < 250) {
        return;
    }
    last = now;
    double secs = (double)(now - t0) / 1000.0;
    char pct[32] = "";
    if (total_bytes > 0) {
        snprintf(pct, sizeof pct, ", %.0f%% of the input", 100.0 * (double)done_bytes / (double)total_bytes);
    }
    fprintf(stderr, "\r%llu records, %.0f/s%s, %llu errors%s",
            (unsigned long long)eddy_stats.records_in,
            secs > 0 ? (double)eddy_stats.records_in / secs : 0.0, pct,
            (unsigned long long)eddy_stats.errors, final ? "\n" : "   ");
}

/* Can more input be read at once? No: the input pauses (a quiet pipe or TTY);
 * a regular file always can until its end. */
static int input_waiting(int fd)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    return poll(&pfd, 1, 0) > 0;
}

/* Between batches: wall-clock work, then (when @p quiet: the input pauses or
 * ends, when the commit interval has passed, or when the state asks for it
 * because a map could fill) outputs flushed and the state
 * committed (a streaming stdin sees its results now), then, right after that
 * commit, the place for a reload's swap. A long input commits once per interval,
 * not once per read: each LMDB commit writes every page it dirtied and syncs. */
static int between_batches(reader *rd, int quiet, char *errstr, size_t errstr_size)
{
    int rc = eddy_runner_tick(rd->runner);
    if (rc) {
        return rc;
    }
    const eddy_file_conf *conf = rd->conf;
    int64_t now = eddy_mono_us();
    int due = quiet || now - rd->last_commit >= (int64_t)conf->commit_interval_ms * 1000 ||
              eddy_state_wants_commit(eddy_runner_state(rd->runner));
    if (due) {
        rd->last_commit = now;
        if ((rc = eddy_runner_commit(rd->runner, errstr, errstr_size))) {
            return rc;
        }
    }
    if (conf->http) {
        eddy_http_serve(conf->http, eddy_runner_job(rd->runner), eddy_runner_state(rd->runner));
        if (due) {
            eddy_status_sizes(eddy_job_lua_bytes(eddy_runner_job(rd->runner)),
                              eddy_state_bytes(eddy_runner_state(rd->runner)));
        }
    }
    if (!due) {
        return 0;
    }
    eddy_job *next = conf->reload ? eddy_reload_poll(conf->reload, eddy_runner_job(rd->runner))
                                  : NULL;
    if (next) {
        eddy_runner_swap(rd->runner, next, conf->rollback_errors);
        rd->job = eddy_runner_job(rd->runner);
        rd->batch = eddy_job_batch(rd->job);
        eddy_batch_reset(rd->batch);
    }
    return 0;
}

int eddy_file_run(eddy_runner *runner, eddy_job *job, const eddy_file_conf *conf,
                  char *errstr, size_t errstr_size)
{
    int fd = 0;
    int rc = 0;
    if (strcmp(conf->input, "-") != 0) {
        fd = open(conf->input, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = errno;
            snprintf(errstr, errstr_size, "cannot open %s: %s", conf->input, strerror(rc));
            return rc;
        }
    }
    reader rd = {.runner = runner, .job = job, .batch = eddy_job_batch(job), .conf = conf};
    size_t cap = READ_CHUNK * 2, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        rc = EDDY_ENOMEM;
        goto done;
    }
    int64_t lineno = 0, done_bytes = 0, total_bytes = -1;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        total_bytes = (int64_t)sb.st_size;
    }
    int eof = 0;
    eddy_batch_reset(rd.batch);
    while (!eof && !*conf->stop) {
        if (cap - len < READ_CHUNK) {
            size_t ncap = cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = EDDY_ENOMEM;
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        /* a quiet stream (stdin): wall-clock work and reloads go on meanwhile */
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr;
        while (!*conf->stop && (pr = poll(&pfd, 1, 100)) <= 0) {
            if (pr < 0 && errno != EINTR) {
                break;                          /* let read() report it */
            }
            if ((rc = between_batches(&rd, 1, errstr, errstr_size))) {
                goto stopped;
            }
        }
        if (*conf->stop) {
            break;                              /* SIGINT/SIGTERM: no new read */
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        rd.now = eddy_wall_ms();
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = errno;
            snprintf(errstr, errstr_size, "reading %s: %s", conf->input, strerror(rc));
            goto done;
        }
        if (n == 0) {
            eof = 1;
            if (len > 0 && buf[len - 1] != '\n') {
                buf[len++] = '\n';       /* the last line has no newline */
            }
        }
        len += (size_t)n;
        size_t pos = 0;
        for (;;) {
            char *nl = memchr(buf + pos, '\n', len - pos);
            if (!nl) {
                break;
            }
            size_t llen = (size_t)(nl - (buf + pos));
            lineno++;
            if ((rc = one_line(&rd, buf + pos, llen, lineno))) {
                goto stopped;
            }
            pos += llen + 1;
            if (rd.batch->n >= BATCH_MAX && (rc = flush_batch(&rd))) {
                goto stopped;
            }
        }
        if ((rc = flush_batch(&rd))) {
            goto stopped;
        }
        if ((rc = between_batches(&rd, eof || !input_waiting(fd), errstr, errstr_size))) {
            goto stopped;
        }
        done_bytes += (int64_t)pos;
        progress(conf, done_bytes, total_bytes, 0);
        memmove(buf, buf + pos, len - pos);
        len -= pos;
    }
    progress(conf, total_bytes, total_bytes, 1);
    /* the end of the input: one last tick (wall-clock schedules due now) */
    if (!*conf->stop && (rc = eddy_runner_tick(runner))) {
        goto stopped;
    }
    goto done;

stopped:
    if (errstr[0]) {
        /* the reason is already there */
    } else if (rc == EDDY_ESCRIPT) {
        snprintf(errstr, errstr_size, "%s", eddy_runner_error(runner));
    } else {
        snprintf(errstr, errstr_size, "writing output: %s", eddy_strerror(rc));
    }
done:
    free(buf);
    for (int i = 0; i < 256; i++) {
        free(rd.next_offset[i]);
    }
    eddy_envelope_free(&rd.env);
    eddy_buf_free(&rd.scratch);
    if (fd > 0) {
        close(fd);
    }
    return rc;
}
