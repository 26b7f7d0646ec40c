/*
 * fuzz_topology.c — libFuzzer harness of topology loading and validation: the
 * input bytes drive a small generator that writes a job script (a sequence of
 * DSL calls with arguments from pools of good and bad values: source, map,
 * filter, branch, merge, group_by(_key), window, count / reduce / aggregate,
 * table, global_table, joins, to_stream, process, to), which is then loaded
 * the way `eddy check` loads a script (eddy_job_load: fresh Lua state, the
 * DSL, eddy.runtime.prepare, the host's validate) and, when it loads,
 * described, drawn and configured for file and Kafka mode.
 * Expectation: success or an error message, never a crash, abort or hang.
 * Handlers are never run, so the scripts have no loops.
 */
#include "eddy.h"
#include "eddy_job.h"
#include "eddy_log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EDDY_FUZZ_ROOT
#define EDDY_FUZZ_ROOT "."
#endif

static char script[4200];
static char lua_dir[4096];

typedef struct gen {
    const uint8_t *p, *end;
    char          *out;
    size_t         len, cap;
    int            streams, groups, tables;   /* how many of s1.., g1.., t1.. were assigned */
} gen;

static unsigned byte(gen *g)
{
    return g->p < g->end ? *g->p++ : 0;
}

/* One value of @p pool: mostly one of its first @p ngood (valid) entries, one
 * time in eight one of the rest (wrong on purpose), so that scripts get far. */
static const char *pick(gen *g, const char *const *pool, size_t ngood, size_t n)
{
    unsigned b = byte(g);
    if ((b & 0xe0) == 0xe0 && n > ngood) {
        return pool[ngood + b % (n - ngood)];
    }
    return pool[b % ngood];
}

#define NGOOD(pool) (pool##_good)
#define PICK(g, pool) pick((g), (pool), NGOOD(pool), sizeof(pool) / sizeof((pool)[0]))

static void emit(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(gen *g, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(g->out + g->len, g->cap - g->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < g->cap - g->len) {
            g->len += (size_t)n;
            return;
        }
        g->cap = g->cap * 2 + (size_t)n + 64;
        g->out = realloc(g->out, g->cap);
        if (!g->out) {
            abort();
        }
    }
}

static const char *const topics[] = {
    "\"in-a\"", "\"in-b\"", "\"in.c\"", "\"in_d\"", "\"out-x\"", "\"out-y\"", "\"in-a\"", "\"out-x\"",
    "\"\"", "\"bad topic\"", "\"..\"", "string.rep(\"t\", 250)", "42", "nil", "{\"in-e\", \"in-f\"}",
    "{}", "\"x-repartition\"", "\"in-a-repartition\"",
};
static const size_t topics_good = 8;
static const char *const serde_opts[] = {
    "nil", "{ value = \"json\" }", "{ key = \"string\", value = \"json\" }", "{ value = \"bytes\" }",
    "{ value = \"number\" }", "{ value = \"nope\" }", "\"json\"", "{ value = { encode = F, decode = F } }",
    "{ value = { encode = 1 } }", "{ timestamp = F }", "{ timestamp = 5 }", "{ key = \"json\" }",
};
static const size_t serde_opts_good = 5;
static const char *const fns[] = {"F", "F", "F", "F2", "nil", "5", "\"f\"", "{}"};
static const size_t fns_good = 4;
static const char *const simple[] = {
    "map", "map_values", "filter", "filter_not", "flat_map", "flat_map_values", "select_key", "peek",
};
static const size_t simple_good = 8;
static const char *const group_opts[] = {
    "nil", "{}", "{ key = \"string\" }", "{ name = \"by-user\" }", "{ key = \"nope\" }", "5",
};
static const size_t group_opts_good = 4;
static const char *const windows[] = {
    "eddy.tumbling{ size = \"1m\" }", "eddy.tumbling{ size = 60000, grace = \"10s\" }",
    "eddy.hopping{ size = \"5m\", advance = \"1m\" }", "eddy.sliding{ diff = \"30s\" }",
    "eddy.session{ gap = \"30s\" }", "eddy.session{ gap = \"1m\", merge = F2 }",
    "eddy.tumbling{ size = \"1h\", idle_advance = \"1s\" }",
    "eddy.hopping{ size = \"1m\", advance = \"5m\" }", "eddy.tumbling{ size = -1 }", "eddy.tumbling{}",
    "eddy.tumbling{ size = \"forever\" }", "{}", "nil",
};
static const size_t windows_good = 7;
static const char *const agg_opts[] = {
    "nil", "{}", "{ store = \"counts\" }", "{ store = \"totals\" }", "{ emit = \"final\" }",
    "{ emit = \"sometimes\" }", "{ store = \"__mine\" }", "{ store = \"bad name\" }", "{ store = 7 }", "9",
};
static const size_t agg_opts_good = 5;
static const char *const join_windows[] = {
    "eddy.join_window{ diff = \"10m\" }", "eddy.join_window{ before = \"1m\", after = \"2m\", grace = \"1s\" }",
    "eddy.join_window{}", "eddy.join_window{ size = 1 }", "nil", "5",
};
static const size_t join_windows_good = 2;
static const char *const processors[] = {
    "{ process = P }", "{ process = P, stores = { \"seen\" } }", "{ name = \"dedupe\", process = P, stores = { seen = {} } }",
    "{ process = P, on_timer = P, init = P, close = P }", "{}", "{ process = 5 }", "{ process = P, bogus = 1 }",
    "{ process = P, name = \"bad name\" }", "{ process = P, stores = { \"__x\" } }", "5",
};
static const size_t processors_good = 4;
static const char *const job_heads[] = {
    "eddy.job{ name = \"fz\" }", "eddy.job{ name = \"fz\", on_error = \"skip\" }", "eddy.job(\"fz\")",
    "eddy.job{ name = \"fz\", partitions = 3, on_error = \"fail\" }",
    "eddy.job{ name = \"fz\", on_error = \"maybe\" }", "eddy.job{ name = \"bad name\" }",
    "eddy.job{ name = \"fz\", bogus = 1 }", "eddy.job{ name = 5 }", "eddy.job{ name = \"fz\", partitions = \"x\" }",
};
static const size_t job_heads_good = 4;
static const char *const returns[] = {
    "job", "job", "job", "job", "nil", "5", "{}", "s1", "eddy",
};
static const size_t returns_good = 4;

/* A variable of a kind already assigned, or (none yet) a fresh one. */
static int var(gen *g, int have)
{
    return have ? (int)(byte(g) % (unsigned)have) + 1 : 1;
}

static int fresh(gen *g, int *have, int max)
{
    if (*have < max && (byte(g) & 1)) {
        return ++*have;
    }
    return *have ? var(g, *have) : ++*have;
}

static void statement(gen *g)
{
    unsigned op = byte(g) % 16;
    int wrap = byte(g) % 4 == 0;            /* a protected call: the script goes on after an error */
    if (wrap) {
        emit(g, "pcall(function() ");
    }
    if (g->streams == 0 && op != 8 && op != 9) {
        op = 0;                             /* no stream yet: a source first */
    }
    switch (op) {
    case 0: {
        int s = fresh(g, &g->streams, 6);
        emit(g, "s%d = job:source(%s, %s)", s, PICK(g, topics), PICK(g, serde_opts));
        break;
    }
    case 1:
    case 2: {
        int from = var(g, g->streams), s = fresh(g, &g->streams, 6);
        emit(g, "s%d = s%d:%s(%s)", s, from, PICK(g, simple), PICK(g, fns));
        break;
    }
    case 3: {
        int from = var(g, g->streams), a = fresh(g, &g->streams, 6), b = fresh(g, &g->streams, 6);
        emit(g, "s%d, s%d = s%d:branch(%s, %s)", a, b, from, PICK(g, fns), PICK(g, fns));
        break;
    }
    case 4: {
        int a = var(g, g->streams), b = var(g, g->streams), s = fresh(g, &g->streams, 6);
        emit(g, "s%d = s%d:merge(%s)", s, a, byte(g) % 5 ? (char[8]){'s', (char)('0' + b)} : "5");
        break;
    }
    case 5:
        emit(g, "s%d:to(%s, %s)", var(g, g->streams), PICK(g, topics), PICK(g, serde_opts));
        break;
    case 6: {
        int from = var(g, g->streams), gr = fresh(g, &g->groups, 3);
        if (byte(g) & 1) {
            emit(g, "g%d = s%d:group_by_key(%s)", gr, from, PICK(g, group_opts));
        } else {
            emit(g, "g%d = s%d:group_by(%s, %s)", gr, from, PICK(g, fns), PICK(g, group_opts));
        }
        break;
    }
    case 7: {
        if (!g->groups) {
            emit(g, "g1 = s%d:group_by_key()", var(g, g->streams));
            g->groups = 1;
            break;
        }
        int from = var(g, g->groups), t = fresh(g, &g->tables, 4);
        switch (byte(g) % 5) {
        case 0:
            emit(g, "g%d = g%d:window(%s)", from, from, PICK(g, windows));
            break;
        case 1:
        case 2:
            emit(g, "t%d = g%d:count(%s)", t, from, PICK(g, agg_opts));
            break;
        case 3:
            emit(g, "t%d = g%d:reduce(%s, %s)", t, from, PICK(g, fns), PICK(g, agg_opts));
            break;
        default:
            emit(g, "t%d = g%d:aggregate(%s, %s, %s)", t, from, PICK(g, fns), PICK(g, fns),
                 PICK(g, agg_opts));
        }
        break;
    }
    case 8:
    case 9: {
        int t = fresh(g, &g->tables, 4);
        emit(g, "t%d = job:%s(%s, %s)", t, op == 8 ? "table" : "global_table", PICK(g, topics),
             byte(g) % 3 ? "nil" : "{ store = \"tbl\" }");
        break;
    }
    case 10:
    case 11: {
        static const char *const kinds[] = {"join", "left_join", "outer_join"};
            static const size_t kinds_good = 3;
        int from = var(g, g->streams), s = fresh(g, &g->streams, 6);
        const char *kind = PICK(g, kinds);
        if (op == 10 && g->tables) {            /* stream-table (or global table) */
            emit(g, "s%d = s%d:%s(t%d, %s%s)", s, from, kind, var(g, g->tables), PICK(g, fns),
                 byte(g) % 4 ? "" : ", F");
        } else {                                /* stream-stream */
            emit(g, "s%d = s%d:%s(s%d, %s, %s)", s, from, kind, var(g, g->streams),
                 PICK(g, join_windows), PICK(g, fns));
        }
        break;
    }
    case 12:
        if (g->tables >= 1) {
            static const char *const kinds[] = {"join", "left_join", "outer_join"};
            static const size_t kinds_good = 3;
            int t = fresh(g, &g->tables, 4);
            emit(g, "t%d = t%d:%s(t%d, %s)", t, var(g, g->tables), PICK(g, kinds), var(g, g->tables),
                 PICK(g, fns));
        } else {
            emit(g, "s%d:peek(F)", var(g, g->streams));
        }
        break;
    case 13:
        if (g->tables >= 1) {
            int t = var(g, g->tables), s = fresh(g, &g->streams, 6);
            emit(g, "s%d = t%d:to_stream()", s, t);
        } else {
            emit(g, "s%d:to(\"out-z\")", var(g, g->streams));
        }
        break;
    case 14: {
        int from = var(g, g->streams), s = fresh(g, &g->streams, 6);
        emit(g, "s%d = s%d:process(%s)", s, from, PICK(g, processors));
        break;
    }
    default:
        emit(g, "s%d:to(%s)", var(g, g->streams), PICK(g, topics));
    }
    emit(g, wrap ? " end)\n" : "\n");
}

static void cleanup(void)
{
    unlink(script);
    char *slash = strrchr(script, '/');
    if (slash) {
        *slash = '\0';
        rmdir(script);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/eddy-fuzz-topology.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        abort();
    }
    snprintf(script, sizeof script, "%s/job.lua", dir);
    atexit(cleanup);
    const char *env = getenv("EDDY_LUA_DIR");
    snprintf(lua_dir, sizeof lua_dir, "%s", env ? env : EDDY_FUZZ_ROOT "/lua");
    eddy_log_level = -1;                     /* warnings about loops and the like: quiet */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gen g = {data, data + size, malloc(4096), 0, 4096, 0, 0, 0};
    emit(&g, "local eddy = require \"eddy\"\n"
             "local function F(k, v) return v end\n"
             "local function F2(a, b) return a end\n"
             "local function P(ctx, k, v) ctx:forward(k, v) end\n"
             "local s1, s2, s3, s4, s5, s6, g1, g2, g3, t1, t2, t3, t4\n"
             "local job = %s\n", PICK(&g, job_heads));
    for (int i = 0; i < 48 && g.p < g.end; i++) {
        statement(&g);
    }
    emit(&g, "return %s\n", PICK(&g, returns));

    FILE *fp = fopen(script, "w");
    if (!fp || fwrite(g.out, 1, g.len, fp) != g.len || fclose(fp) != 0) {
        abort();
    }
    if (getenv("FUZZ_TOPOLOGY_PRINT")) {         /* see the script an input makes */
        fwrite(g.out, 1, g.len, stderr);
    }
    free(g.out);

    eddy_job *job = NULL;
    char err[2048] = "";
    int rc = eddy_job_load(&job, script, lua_dir, err, sizeof err);
    if (getenv("FUZZ_TOPOLOGY_PRINT")) {
        fprintf(stderr, "=> %s\n", rc ? err : "loaded");
    }
    if (rc != 0) {
        if (job || !err[0] || (rc != EDDY_ESCRIPT && rc != EDDY_ETOPO)) {
            fprintf(stderr, "fuzz_topology: a failed load must give a reason (rc %d)\n", rc);
            abort();
        }
        return 0;
    }
    (void)eddy_job_describe(job);
    (void)eddy_job_picture(job, 0);
    (void)eddy_job_picture(job, 1);
    (void)eddy_job_stateful(job);
    int kafka = size > 0 && (data[0] & 1);
    if (eddy_job_configure(job, "fuzzapp", kafka, 1 + (int)(size % 4), err, sizeof err) == 0 && kafka) {
        (void)eddy_job_layout(job);
    }
    eddy_job_destroy(job);
    return 0;
}
