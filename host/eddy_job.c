/*
 * eddy_job — a job generation: lua_State, topology, compiled pipeline (see eddy_job.h).
 * Shaped like lua.c's pmain/docall: host setup runs in one protected call,
 * every call into user code has a message handler that adds the script line.
 */
#include "eddy_job.h"
#include "eddy.h"
#include "eddy_log.h"
#include "lib_json.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TOPICS 256

struct eddy_job {
    lua_State  *L;
    eddy_batch *batch;
    int         run_ref;        /* the batch loop, function(start) */
    int         topo_ref;       /* the topology table from eddy.runtime.prepare */
    int         opts_ref;       /* the eddy.job{...} options table */
    char       *name;
    char       *on_error;
    int         stateful;
    char       *describe;
    char       *dot, *mermaid;
    char       *layout;         /* Kafka mode: sources and changelog families per sub-topology */
    char       *script;
    char       *sources[MAX_TOPICS];
    int         nsources;
    char       *sinks[MAX_TOPICS];
    int         nsinks;
    char       *optvals[64];      /* copies handed out by eddy_job_option */
    int         noptvals;
    char        version[17];
    volatile int interrupted;   /* set by the watchdog thread */
    lua_Alloc   allocf;         /* LuaJIT's own allocator, wrapped by job_alloc */
    void       *allocud;
    size_t      mem_used;       /* bytes the Lua state holds */
    size_t      mem_limit;      /* lua_memory_limit in bytes; 0: none */
    int         mem_hit;        /* an allocation was refused since the last check */
    int         mem_guard;      /* > 0: inside a protected call of the script's code, where the
                                 * limit applies (the host's own unprotected calls into the state
                                 * must not fail: LuaJIT would panic) */
};

/* lua_memory_limit when the script does not set it: 1 GiB. */
#define DEFAULT_MEM_LIMIT ((size_t)1024 << 20)

/* LuaJIT's allocator with a count and a cap: a growth past lua_memory_limit
 * fails (the Lua error "not enough memory" in the code that asked), never the
 * host's malloc. Frees and shrinks always go through. */
static void *job_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    eddy_job *job = ud;
    if (nsize > osize && job->mem_guard && job->mem_limit &&
        job->mem_used - osize + nsize > job->mem_limit) {
        job->mem_hit = 1;
        return NULL;
    }
    void *p = job->allocf(job->allocud, ptr, osize, nsize);
    if (p || nsize == 0) {
        job->mem_used = job->mem_used > osize ? job->mem_used - osize + nsize : nsize;
    }
    return p;
}

static const char script_key = 'k';   /* registry: the script's path */

/* Message handler: [-1, +1]. Turns the error into a string naming the first
 * script frame when the message does not already, and appends a traceback
 * (kept out of DLQ headers by cutting at the first newline). */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
            msg = lua_tostring(L, -1);
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
        }
    }
    lua_pushlightuserdata(L, (void *)&script_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    const char *script = lua_tostring(L, -1);
    lua_pop(L, 1);
    /* Find the innermost frame in a user file (not eddy's own modules). */
    lua_Debug ar;
    char where[512] = "";
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || ar.source[0] != '@') {
            continue;
        }
        if (strstr(ar.source, "/eddy/") && !(script && strcmp(ar.source + 1, script) == 0)) {
            continue;    /* one of eddy's modules */
        }
        snprintf(where, sizeof where, "%s:%d", ar.short_src, ar.currentline);
        break;
    }
    if (where[0] && !strstr(msg, where)) {
        msg = lua_pushfstring(L, "%s (at %s)", msg, where);
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Push the message handler, then call the function below it with nargs. */
static int pcall(lua_State *L, int nargs, int nresults)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    return rc;
}

/* Copy the error on top of the stack without its traceback, on one line
 * ("error loading module" messages put the file:line on a second line). */
static void errline(lua_State *L, char *out, size_t size)
{
    const char *msg = lua_tostring(L, -1);
    if (!msg) {
        msg = "unknown error";
    }
    const char *tb = strstr(msg, "\nstack traceback:");
    size_t n = tb ? (size_t)(tb - msg) : strlen(msg);
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        char c = msg[i];
        if (c == '\n' || c == '\t') {
            if (o > 0 && out[o - 1] != ' ') {
                out[o++] = ' ';
            }
            continue;
        }
        out[o++] = c;
    }
    out[o] = '\0';
}

/* After a failed call: if an allocation was refused (lua_memory_limit), say so
 * in @p msg and collect what the failed call left, so that the next record
 * starts from the memory the state really holds. */
static void memory_check(eddy_job *job, char *msg, size_t size)
{
    if (!job->mem_hit) {
        return;
    }
    job->mem_hit = 0;
    char m[1024];
    snprintf(m, sizeof m, "%s", msg);
    snprintf(msg, size, "the Lua memory limit was reached (lua_memory_limit = %.0f MiB): %s",
             (double)job->mem_limit / 1048576.0, m);
    lua_gc(job->L, LUA_GCCOLLECT, 0);
}

/* A protected call of the script's code: lua_memory_limit applies inside it. */
static int script_pcall(eddy_job *job, int nargs, int nresults)
{
    job->mem_guard++;
    int rc = pcall(job->L, nargs, nresults);
    job->mem_guard--;
    return rc;
}

static char *strdup_or_die(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p) {
        abort();
    }
    return p;
}

static void set_paths(lua_State *L, const char *lua_dir, const char *script)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", script);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
    } else {
        strcpy(dir, ".");
    }
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua;%s",
                    lua_dir, lua_dir, dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
}

/* Read a list of strings at field @p field of the table on top. */
static int read_list(lua_State *L, const char *field, char **out, int *n,
                     char *errstr, size_t errstr_size)
{
    lua_getfield(L, -1, field);
    int len = (int)lua_objlen(L, -1);
    if (len > MAX_TOPICS) {
        snprintf(errstr, errstr_size, "too many %s (at most %d)", field, MAX_TOPICS);
        lua_pop(L, 1);
        return EDDY_ETOPO;
    }
    for (int i = 1; i <= len; i++) {
        lua_rawgeti(L, -1, i);
        out[(*n)++] = strdup_or_die(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* Kafka's rule for topic names: [a-zA-Z0-9._-], 1..249 characters. */
static int legal_topic(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249 || !strcmp(t, ".") || !strcmp(t, "..")) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* The host's own check of the topology the DSL built (topology = data). */
static int validate(const eddy_job *job, char *errstr, size_t errstr_size)
{
    if (job->nsources == 0) {
        snprintf(errstr, errstr_size, "%s: the job has no source", job->script);
        return EDDY_ETOPO;
    }
    for (int i = 0; i < job->nsources; i++) {
        if (!legal_topic(job->sources[i])) {
            snprintf(errstr, errstr_size, "%s: illegal source topic name \"%s\"", job->script,
                     job->sources[i]);
            return EDDY_ETOPO;
        }
        for (int j = 0; j < i; j++) {
            if (!strcmp(job->sources[i], job->sources[j])) {
                snprintf(errstr, errstr_size, "%s: topic \"%s\" is a source twice", job->script,
                         job->sources[i]);
                return EDDY_ETOPO;
            }
        }
    }
    for (int i = 0; i < job->nsinks; i++) {
        if (!legal_topic(job->sinks[i])) {
            snprintf(errstr, errstr_size, "%s: illegal sink topic name \"%s\"", job->script,
                     job->sinks[i]);
            return EDDY_ETOPO;
        }
        size_t sl = strlen(job->sinks[i]);
        int internal = sl > 12 && !strcmp(job->sinks[i] + sl - 12, "-repartition");
        for (int j = 0; j < job->nsources && !internal; j++) {
            if (!strcmp(job->sinks[i], job->sources[j])) {
                eddy_log_warn("%s: topic %s is both a source and a sink of the job: its outputs "
                              "will be read again (a loop)", job->script, job->sinks[i]);
            }
        }
    }
    if (!legal_topic(job->name)) {
        snprintf(errstr, errstr_size, "%s: illegal job name \"%s\" (it prefixes topic names)",
                 job->script, job->name);
        return EDDY_ETOPO;
    }
    return 0;
}

int eddy_job_load(eddy_job **out, const char *script, const char *lua_dir,
                  char *errstr, size_t errstr_size)
{
    int rc = EDDY_ESCRIPT;
    eddy_job *job = calloc(1, sizeof(*job));
    if (!job) {
        return EDDY_ENOMEM;
    }
    job->run_ref = job->opts_ref = job->topo_ref = LUA_NOREF;
    job->script = strdup_or_die(script);
    if ((rc = eddy_batch_new(&job->batch))) {
        goto err;
    }
    rc = EDDY_ESCRIPT;
    job->L = luaL_newstate();
    if (!job->L) {
        snprintf(errstr, errstr_size, "cannot create a Lua state (out of memory)");
        goto err;
    }
    lua_State *L = job->L;
    job->allocf = lua_getallocf(L, &job->allocud);
    job->mem_used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
    job->mem_limit = DEFAULT_MEM_LIMIT;
    lua_setallocf(L, job_alloc, job);
    luaL_openlibs(L);
    lua_getglobal(L, "package");                 /* package.preload["eddy.json"] */
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, eddy_open_json);
    lua_setfield(L, -2, "eddy.json");
    lua_pop(L, 2);
    lua_pushlightuserdata(L, (void *)&script_key);
    lua_pushstring(L, script);
    lua_rawset(L, LUA_REGISTRYINDEX);
    set_paths(L, lua_dir, script);
    if (getenv("EDDY_JIT_V")) {      /* trace log for performance work: EDDY_JIT_V=FILE */
        if (luaL_dostring(L, "require('jit.v').on(os.getenv('EDDY_JIT_V'))") != 0) {
            eddy_log_warn("EDDY_JIT_V: %s", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    if (getenv("EDDY_JIT_P")) {      /* LuaJIT's profiler: EDDY_JIT_P=MODE,FILE (jit.p) */
        if (luaL_dostring(L, "local m, f = os.getenv('EDDY_JIT_P'):match('^([^,]*),?(.*)$') "
                             "require('jit.p').start(m, f ~= '' and f or nil)") != 0) {
            eddy_log_warn("EDDY_JIT_P: %s", lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }

    /* 1. the script, which returns a job */
    if (luaL_loadfile(L, script) != 0) {
        errline(L, errstr, errstr_size);
        goto err;
    }
    if (script_pcall(job, 0, 1) != 0) {
        errline(L, errstr, errstr_size);
        memory_check(job, errstr, errstr_size);
        goto err;
    }
    /* 2. eddy.runtime.prepare(job, batch) -> topology with run */
    lua_getglobal(L, "require");
    lua_pushstring(L, "eddy.runtime");
    if (pcall(L, 1, 1) != 0) {
        errline(L, errstr, errstr_size);
        goto err;
    }
    lua_getfield(L, -1, "prepare");
    lua_remove(L, -2);
    lua_insert(L, -2);                           /* prepare, job */
    lua_pushlightuserdata(L, job->batch);
    if (pcall(L, 2, 1) != 0) {
        char msg[1024];
        errline(L, msg, sizeof msg);
        snprintf(errstr, errstr_size, "%s: %s", script, msg);
        rc = EDDY_ETOPO;
        goto err;
    }
    /* 3. read the topology */
    lua_getfield(L, -1, "name");
    job->name = strdup_or_die(lua_tostring(L, -1));
    lua_getfield(L, -2, "on_error");
    job->on_error = strdup_or_die(lua_tostring(L, -1));
    lua_getfield(L, -3, "describe");
    job->describe = strdup_or_die(lua_tostring(L, -1));
    lua_getfield(L, -4, "dot");
    job->dot = strdup_or_die(lua_tostring(L, -1));
    lua_getfield(L, -5, "mermaid");
    job->mermaid = strdup_or_die(lua_tostring(L, -1));
    lua_pop(L, 2);
    lua_getfield(L, -4, "stateful");
    job->stateful = lua_toboolean(L, -1);
    lua_pop(L, 4);
    if ((rc = read_list(L, "sources", job->sources, &job->nsources, errstr, errstr_size)) ||
        (rc = read_list(L, "sinks", job->sinks, &job->nsinks, errstr, errstr_size))) {
        goto err;
    }
    if ((rc = validate(job, errstr, errstr_size))) {
        goto err;
    }
    lua_getfield(L, -1, "options");
    job->opts_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    job->topo_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    const char *ml = eddy_job_option(job, "lua_memory_limit");
    if (ml) {
        job->mem_limit = (size_t)(strtod(ml, NULL) * 1048576.0);     /* MiB; 0: none */
    }
    *out = job;
    return 0;

err:
    eddy_job_destroy(job);
    return rc;
}

void eddy_job_destroy(eddy_job *job)
{
    if (!job) {
        return;
    }
    if (job->L) {
        if (getenv("EDDY_JIT_P") && luaL_dostring(job->L, "require('jit.p').stop()") != 0) {
            lua_pop(job->L, 1);
        }
        /* LuaJIT frees its own arena at close only while its own allocator is set */
        lua_setallocf(job->L, job->allocf, job->allocud);
        lua_close(job->L);
    }
    eddy_batch_destroy(job->batch);
    for (int i = 0; i < job->nsources; i++) {
        free(job->sources[i]);
    }
    for (int i = 0; i < job->nsinks; i++) {
        free(job->sinks[i]);
    }
    for (int i = 0; i < job->noptvals; i++) {
        free(job->optvals[i]);
    }
    free(job->name);
    free(job->on_error);
    free(job->describe);
    free(job->dot);
    free(job->layout);
    free(job->mermaid);
    free(job->script);
    free(job);
}

static int topo_call(eddy_job *job, const char *name, int nargs, int nres);

int eddy_job_configure(eddy_job *job, const char *app_id, int kafka, int partitions,
                       char *errstr, size_t errstr_size)
{
    lua_State *L = job->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->topo_ref);
    lua_getfield(L, -1, "configure");
    lua_pushstring(L, app_id);
    lua_pushboolean(L, kafka);
    lua_pushinteger(L, partitions);
    if (pcall(L, 3, 1) != 0) {
        char msg[1024];
        errline(L, msg, sizeof msg);
        snprintf(errstr, errstr_size, "%s: %s", job->script, msg);
        lua_settop(L, 0);
        return EDDY_ETOPO;
    }
    for (int i = 0; i < job->nsources; i++) {
        free(job->sources[i]);
    }
    for (int i = 0; i < job->nsinks; i++) {
        free(job->sinks[i]);
    }
    job->nsources = job->nsinks = 0;
    int rc;
    if ((rc = read_list(L, "sources", job->sources, &job->nsources, errstr, errstr_size)) ||
        (rc = read_list(L, "sinks", job->sinks, &job->nsinks, errstr, errstr_size))) {
        lua_settop(L, 0);
        return rc;
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "run");
    job->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, 0);
    free(job->layout);
    job->layout = NULL;
    if (kafka) {
        lua_pushstring(L, app_id);
        if (topo_call(job, "layout", 1, 1) == 0) {
            job->layout = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        }
        lua_settop(L, 0);
    }
    return validate(job, errstr, errstr_size);
}

int64_t eddy_job_lua_bytes(eddy_job *job)
{
    return (int64_t)lua_gc(job->L, LUA_GCCOUNT, 0) * 1024 + lua_gc(job->L, LUA_GCCOUNTB, 0);
}

const char *eddy_job_layout(const eddy_job *job)
{
    return job->layout ? job->layout : "";
}

int eddy_job_layout_each(const eddy_job *job, int (*fn)(void *, const char *, int, const char *),
                         void *opaque)
{
    const char *p = job ? eddy_job_layout(job) : "";
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[600], kind[16], name[512];
        int sub;
        if (n < sizeof line) {
            memcpy(line, p, n);
            line[n] = '\0';
            if (sscanf(line, "%15[^\t]\t%d\t%511[^\t]", kind, &sub, name) == 3) {
                int rc = fn(opaque, kind, sub, name);
                if (rc) {
                    return rc;
                }
            }
        }
        p += n + (nl ? 1 : 0);
    }
    return 0;
}

const char *eddy_job_name(const eddy_job *job) { return job->name; }
const char *eddy_job_on_error(const eddy_job *job) { return job->on_error; }
int eddy_job_nsources(const eddy_job *job) { return job->nsources; }
const char *eddy_job_source(const eddy_job *job, int i) { return job->sources[i]; }
int eddy_job_nsinks(const eddy_job *job) { return job->nsinks; }
const char *eddy_job_sink(const eddy_job *job, int i) { return job->sinks[i]; }
const char *eddy_job_describe(const eddy_job *job) { return job->describe; }
const char *eddy_job_picture(const eddy_job *job, int mermaid)
{
    return mermaid ? job->mermaid : job->dot;
}
int eddy_job_stateful(const eddy_job *job) { return job->stateful; }
eddy_batch *eddy_job_batch(eddy_job *job) { return job->batch; }

int eddy_job_source_index(const eddy_job *job, const char *topic, size_t len)
{
    for (int i = 0; i < job->nsources; i++) {
        if (strlen(job->sources[i]) == len && memcmp(job->sources[i], topic, len) == 0) {
            return i;
        }
    }
    return -1;
}

const char *eddy_job_option(const eddy_job *job, const char *name)
{
    eddy_job *j = (eddy_job *)job;      /* caches copies; logically const */
    lua_State *L = job->L;
    const char *res = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->opts_ref);
    lua_getfield(L, -1, name);
    switch (lua_type(L, -1)) {
    case LUA_TSTRING:
    case LUA_TNUMBER:
        res = lua_tostring(L, -1);
        break;
    case LUA_TBOOLEAN:
        res = lua_toboolean(L, -1) ? "true" : "false";
        break;
    default:
        break;
    }
    if (res && j->noptvals < 64) {
        j->optvals[j->noptvals] = strdup_or_die(res);
        res = j->optvals[j->noptvals++];
    } else if (res) {
        res = NULL;
    }
    lua_pop(L, 2);
    return res;
}

static const char *stage_name(int stage)
{
    switch (stage) {
    case EDDY_STAGE_DESERIALIZE: return "deserialize";
    case EDDY_STAGE_SERIALIZE:   return "serialize";
    default:                     return "process";
    }
}

int eddy_job_run_batch(eddy_job *job, eddy_job_error_cb *on_error, void *opaque)
{
    lua_State *L = job->L;
    eddy_batch *b = job->batch;
    int32_t start = 0;
    while (start < b->n) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, job->run_ref);
        lua_pushinteger(L, start);
        if (script_pcall(job, 1, 0) == 0) {
            break;
        }
        char msg[2048];
        errline(L, msg, sizeof msg);
        lua_settop(L, 0);
        memory_check(job, msg, sizeof msg);
        int32_t idx = b->cur < start ? start : b->cur;   /* failed before its record */
        eddy_batch_drop_outputs_of(b, idx);
        if (on_error(opaque, &b->recs[idx], stage_name(b->stage), msg) != 0) {
            return EDDY_ESCRIPT;
        }
        start = idx + 1;
    }
    lua_settop(L, 0);
    return 0;
}

int eddy_job_tick(eddy_job *job, char *errstr, size_t errstr_size)
{
    lua_State *L = job->L;
    if (job->topo_ref == LUA_NOREF) {
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->topo_ref);
    lua_getfield(L, -1, "tick");
    if (lua_isnil(L, -1)) {
        lua_settop(L, 0);
        return 0;
    }
    lua_pushnumber(L, (lua_Number)job->batch->wall_ms);
    int rc = 0;
    if (script_pcall(job, 1, 0) != 0) {
        errline(L, errstr, errstr_size);
        memory_check(job, errstr, errstr_size);
        rc = EDDY_ESCRIPT;
    }
    lua_settop(L, 0);
    return rc;
}

void eddy_job_forget_partition(eddy_job *job, int32_t partition)
{
    lua_State *L = job->L;
    if (job->topo_ref == LUA_NOREF) {
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->topo_ref);
    lua_getfield(L, -1, "forget");
    if (!lua_isnil(L, -1)) {
        lua_pushinteger(L, partition);
        if (pcall(L, 1, 0) != 0) {
            eddy_log_warn("forget partition %d: %s", (int)partition, lua_tostring(L, -1));
        }
    }
    lua_settop(L, 0);
}

const char *eddy_job_version(const eddy_job *job)
{
    return job->version;
}

void eddy_job_set_version(eddy_job *job, const char *version)
{
    snprintf(job->version, sizeof job->version, "%s", version);
}

/* Call topo[name](args...) of @p job: [-nargs, +nres] on success. */
static int topo_call(eddy_job *job, const char *name, int nargs, int nres)
{
    lua_State *L = job->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->topo_ref);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    lua_insert(L, -1 - nargs);
    return pcall(L, nargs, nres);
}

int eddy_job_compatible(eddy_job *next, eddy_job *running, char *errstr, size_t errstr_size)
{
    if (topo_call(running, "signature", 0, 1) != 0) {
        errline(running->L, errstr, errstr_size);
        lua_settop(running->L, 0);
        return EDDY_ETOPO;
    }
    lua_pushstring(next->L, lua_tostring(running->L, -1));
    lua_settop(running->L, 0);
    int rc = 0;
    if (topo_call(next, "compatible", 1, 2) != 0) {
        errline(next->L, errstr, errstr_size);
        rc = EDDY_ETOPO;
    } else if (!lua_isnil(next->L, -2)) {
        snprintf(errstr, errstr_size, "%s", lua_tostring(next->L, -2));
        rc = EDDY_ETOPO;
    } else if (lua_tostring(next->L, -1) && *lua_tostring(next->L, -1)) {
        eddy_log_warn("reload: %s", lua_tostring(next->L, -1));
    }
    lua_settop(next->L, 0);
    return rc;
}

int eddy_job_on_reload(eddy_job *job, const char *old_version, char *errstr, size_t errstr_size)
{
    lua_pushstring(job->L, old_version);
    int rc = 0;
    if (topo_call(job, "on_reload", 1, 0) != 0) {
        errline(job->L, errstr, errstr_size);
        rc = EDDY_ESCRIPT;
    }
    lua_settop(job->L, 0);
    return rc;
}

void eddy_job_forget_all(eddy_job *job)
{
    if (topo_call(job, "forget_all", 0, 0) != 0) {
        eddy_log_warn("forget: %s", lua_tostring(job->L, -1));
    }
    lua_settop(job->L, 0);
}

int eddy_job_check_examples(eddy_job *job, char *errstr, size_t errstr_size)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        return 0;
    }
    exe[n] = '\0';
    lua_pushstring(job->L, exe);
    lua_pushstring(job->L, job->script);
    int rc = 0;
    if (topo_call(job, "run_examples", 2, 1) != 0) {
        errline(job->L, errstr, errstr_size);
        rc = EDDY_ESCRIPT;
    } else if (!lua_isnil(job->L, -1)) {
        snprintf(errstr, errstr_size, "%s", lua_tostring(job->L, -1));
        rc = EDDY_ESCRIPT;
    }
    lua_settop(job->L, 0);
    return rc;
}

static int interrupt_ms;

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "the handler did not return within %d ms (the watchdog interrupted it)",
               interrupt_ms);
}

int eddy_job_interrupted(const eddy_job *job)
{
    return job->interrupted;
}

void eddy_job_interrupt(eddy_job *job, int timeout_ms)
{
    interrupt_ms = timeout_ms;
    job->interrupted = 1;
    lua_sethook(job->L, interrupt_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
}

int eddy_job_dump(eddy_job *job, const char *store, const char *k, size_t klen, const char *v,
                  size_t vlen, char *out, size_t out_size)
{
    lua_State *L = job->L;
    lua_pushstring(L, store);
    lua_pushlstring(L, k, klen);
    lua_pushlstring(L, v, vlen);
    int n = 0;
    if (topo_call(job, "dump", 3, 1) == 0 && lua_isstring(L, -1)) {
        snprintf(out, out_size, "%s", lua_tostring(L, -1));
        n = 1;
    }
    lua_settop(L, 0);
    return n;
}

void eddy_job_assign_partition(eddy_job *job, int32_t partition)
{
    lua_pushinteger(job->L, partition);
    if (topo_call(job, "assign", 1, 0) != 0) {
        eddy_log_warn("assign partition %d: %s", (int)partition, lua_tostring(job->L, -1));
    }
    lua_settop(job->L, 0);
}
