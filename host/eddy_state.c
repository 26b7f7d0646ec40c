/*
 * eddy_state — LMDB environments per task, a write transaction per commit
 * interval, store access for Lua, and per-record undo (see eddy_state.h).
 * Shaped after lmdb.h's mtest.c: env per directory, named dbis, cursors.
 */
#include "eddy_state.h"
#include "eddy.h"
#include "eddy_buf.h"
#include "eddy_keyset.h"
#include "eddy_log.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#define MAX_TASKS  4096
#define MAX_DBS    64
#define MAX_ITERS  64

typedef struct task {
    int32_t     id;            /* (sub-topology << 16) | partition */
    MDB_env    *env;
    MDB_txn    *txn;           /* the write transaction of this commit interval */
    MDB_dbi     dbi[MAX_DBS];      /* indexed by the state-wide store handle */
    unsigned char open[MAX_DBS];
    eddy_keyset *changed;      /* keys written since the last commit (changelog on) */
    size_t      room;          /* bytes this interval may write before a commit is due early:
                                * what keeps a transaction inside the map (see note_room) */
    size_t      written;       /* bytes written in this interval (keys, values, overhead) */
} task;

typedef struct iter {
    int         used;
    MDB_cursor *cur;
    int         first;
    MDB_val     from;
    eddy_buf    to;
    int         has_to;
    eddy_buf    fromcopy;
} iter;

typedef struct undo {          /* one store write of the record in hand */
    int32_t task, db;
    size_t  koff, klen;
    size_t  voff;
    ssize_t vlen;              /* -1: the key was absent */
} undo;

struct eddy_state {
    char    *dir;
    char    *names[MAX_DBS];    /* store handle -> name, the same in every task */
    int      nnames;
    unsigned char logged[MAX_DBS];  /* the store's changes go to a changelog */
    int      track;             /* remember changed keys (Kafka mode: changelogs) */
    size_t   map_size;
    int      want_commit;       /* a task's interval nears its map's room: commit early */
    task    *tasks[MAX_TASKS];
    int      ntasks;
    iter     iters[MAX_ITERS];
    /* undo log of the record in hand */
    int32_t  undo_batch_cur;
    const eddy_batch *undo_batch;
    undo    *undos;
    int      nundo, undocap;
    eddy_buf undobuf;
    /* the last eddy_kv_get, so that a put of the same key right after it (the usual
     * read-modify-write) need not read the old value again for the undo log */
    uint64_t wgen;              /* bumped by every write: a memo of an older gen is stale */
    uint64_t lg_gen;
    int32_t  lg_task, lg_db;
    ssize_t  lg_vlen;           /* -1: the key was absent */
    eddy_buf lg_key, lg_val;
    task    *last;              /* the task of the last access */
    char     err[1536];
    char     fatal[1536];       /* set once: the state cannot go on */
};

static int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return errno;
            }
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        return errno;
    }
    return 0;
}

int eddy_state_open(eddy_state **out, const char *dir, size_t map_size,
                    char *errstr, size_t errstr_size)
{
    int rc = mkdirs(dir);
    if (rc) {
        snprintf(errstr, errstr_size, "cannot create the state directory %s: %s", dir,
                 strerror(rc));
        return rc;
    }
    eddy_state *st = calloc(1, sizeof(*st));
    if (!st) {
        return EDDY_ENOMEM;
    }
    st->dir = strdup(dir);
    st->map_size = map_size ? map_size : EDDY_STATE_DEFAULT_MAP_SIZE;
    st->undo_batch_cur = -1;
    *out = st;
    return 0;
}

/* Close every open iterator (their cursors die with the transaction). */
static void close_iters(eddy_state *st)
{
    for (int i = 0; i < MAX_ITERS; i++) {
        if (st->iters[i].used) {
            mdb_cursor_close(st->iters[i].cur);
            st->iters[i].used = 0;
        }
    }
}

static void task_close(eddy_state *st, task *t)
{
    close_iters(st);
    if (st->last == t) {
        st->last = NULL;
    }
    st->wgen++;
    if (t->txn) {
        mdb_txn_abort(t->txn);
    }
    mdb_env_close(t->env);
    eddy_keyset_destroy(t->changed);
    free(t);
}

void eddy_state_close(eddy_state *st)
{
    if (!st) {
        return;
    }
    for (int i = 0; i < st->ntasks; i++) {
        task_close(st, st->tasks[i]);
    }
    for (int i = 0; i < MAX_ITERS; i++) {
        eddy_buf_free(&st->iters[i].to);
        eddy_buf_free(&st->iters[i].fromcopy);
    }
    free(st->undos);
    eddy_buf_free(&st->undobuf);
    eddy_buf_free(&st->lg_key);
    eddy_buf_free(&st->lg_val);
    for (int i = 0; i < st->nnames; i++) {
        free(st->names[i]);
    }
    free(st->dir);
    free(st);
}

int eddy_state_ntasks(const eddy_state *st)
{
    return st->ntasks;
}

static int set_err(eddy_state *st, int rc, const task *t, int db, const char *what)
{
    int fatal = rc == MDB_MAP_FULL || rc == MDB_TXN_FULL || rc == MDB_BAD_TXN || rc == ENOSPC ||
                rc == EIO || rc == MDB_PANIC;
    const char *store = (db >= 0 && db < st->nnames) ? st->names[db] : "?";
    if (rc == MDB_MAP_FULL) {
        snprintf(st->err, sizeof st->err, "store %s (task %d_%d): the LMDB map is full at %zu "
                 "MiB; raise state_map_size (MiB) in eddy.job{} (or free disk space)", store,
                 t ? t->id >> 16 : 0, t ? t->id & 0xffff : 0, st->map_size >> 20);
    } else {
        snprintf(st->err, sizeof st->err, "store %s (task %d_%d): %s: %s", store,
                 t ? t->id >> 16 : 0, t ? t->id & 0xffff : 0, what, mdb_strerror(rc));
    }
    if (fatal && !st->fatal[0]) {
        snprintf(st->fatal, sizeof st->fatal, "%s", st->err);
    }
    return -1;
}

const char *eddy_state_failed(const eddy_state *st)
{
    return st->fatal[0] ? st->fatal : NULL;
}

static task *task_get(eddy_state *st, int32_t id)
{
    if (st->last && st->last->id == id) {
        return st->last;
    }
    for (int i = 0; i < st->ntasks; i++) {
        if (st->tasks[i]->id == id) {
            st->last = st->tasks[i];
            return st->tasks[i];
        }
    }
    if (st->ntasks == MAX_TASKS) {
        snprintf(st->err, sizeof st->err, "too many tasks (at most %d)", MAX_TASKS);
        return NULL;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/%d_%d", st->dir, id >> 16, id & 0xffff);
    int rc = mkdirs(path);
    if (rc) {
        snprintf(st->err, sizeof st->err, "cannot create %s: %s", path, strerror(rc));
        return NULL;
    }
    task *t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    t->id = id;
    if ((rc = mdb_env_create(&t->env)) || (rc = mdb_env_set_maxdbs(t->env, MAX_DBS)) ||
        (rc = mdb_env_set_mapsize(t->env, st->map_size)) ||
        (rc = mdb_env_open(t->env, path, MDB_NOSYNC | MDB_NOTLS, 0644))) {
        snprintf(st->err, sizeof st->err, "cannot open the state of task %d_%d in %s: %s",
                 id >> 16, id & 0xffff, path, mdb_strerror(rc));
        if (t->env) {
            mdb_env_close(t->env);
        }
        free(t);
        return NULL;
    }
    if (st->track && !(t->changed = eddy_keyset_new())) {
        mdb_env_close(t->env);
        free(t);
        return NULL;
    }
    st->tasks[st->ntasks++] = t;
    return t;
}

/* The bytes of @p t's map in use (up to its last page) and the map's size. */
static int map_usage(task *t, size_t *used, size_t *mapsize)
{
    MDB_envinfo info;
    MDB_stat stat;
    if (mdb_env_info(t->env, &info) || mdb_env_stat(t->env, &stat)) {
        return -1;
    }
    *used = (info.me_last_pgno + 1) * (size_t)stat.ms_psize;
    *mapsize = info.me_mapsize;
    return 0;
}

/* How much an interval may write before its commit comes early. A write
 * transaction copies each page it changes (copy-on-write) and pages freed by
 * it are reused only after its commit: in the worst case it needs a copy of
 * every page in use plus its new data, at about half a page's fill. The map
 * grows at a commit when more than half full, so mapsize - used >= used; the
 * room left for new data is then mapsize - 2 * used, halved for the page fill,
 * and halved again as a margin for the branch pages above. */
static void note_room(task *t)
{
    size_t used, mapsize;
    t->written = 0;
    t->room = map_usage(t, &used, &mapsize) == 0 && mapsize > 2 * used
                  ? (mapsize - 2 * used) / 4 : 0;
}

static MDB_txn *task_txn(eddy_state *st, task *t)
{
    if (!t->txn) {
        int rc = mdb_txn_begin(t->env, NULL, 0, &t->txn);
        if (rc) {
            set_err(st, rc, t, -1, "begin a transaction");
            t->txn = NULL;
        } else {
            note_room(t);
        }
    }
    return t->txn;
}

/* A write of @p n bytes into @p t's interval: past its room, ask for an early commit. */
static void note_written(eddy_state *st, task *t, size_t n)
{
    t->written += n + 16;          /* + a node header */
    if (t->written > t->room) {
        st->want_commit = 1;
    }
}

int eddy_state_wants_commit(const eddy_state *st)
{
    return st && st->want_commit;
}

/* grow the map between transactions when it is more than half full */
static void maybe_grow(eddy_state *st, task *t)
{
    size_t used, mapsize;
    if (map_usage(t, &used, &mapsize) == 0 && used > mapsize / 2) {
        size_t ns = mapsize * 2;
        if (mdb_env_set_mapsize(t->env, ns) == 0) {
            eddy_log_info("state: task %d_%d map grown to %zu MiB", t->id >> 16, t->id & 0xffff,
                          ns >> 20);
        }
    }
}

int eddy_state_commit(eddy_state *st, char *errstr, size_t errstr_size)
{
    int ret = 0;
    st->wgen++;
    if (st->fatal[0]) {
        snprintf(errstr, errstr_size, "%s", st->fatal);
        return EDDY_EPARSE;      /* nothing is committed after a failed write */
    }
    close_iters(st);
    st->want_commit = 0;
    for (int i = 0; i < st->ntasks; i++) {
        task *t = st->tasks[i];
        if (!t->txn) {
            continue;
        }
        int rc = mdb_txn_commit(t->txn);
        t->txn = NULL;
        if (!rc) {
            rc = mdb_env_sync(t->env, 1);
        }
        if (rc) {
            set_err(st, rc, t, -1, "commit");
            snprintf(errstr, errstr_size, "%s", st->err);
            ret = rc;
            continue;
        }
        maybe_grow(st, t);
    }
    st->nundo = 0;
    st->undobuf.len = 0;
    return ret;
}

void eddy_state_abort(eddy_state *st)
{
    st->wgen++;
    st->want_commit = 0;
    close_iters(st);
    for (int i = 0; i < st->ntasks; i++) {
        task *t = st->tasks[i];
        if (t->txn) {
            mdb_txn_abort(t->txn);
            t->txn = NULL;
            memset(t->open, 0, sizeof t->open);   /* handles opened in it are closed */
        }
    }
    st->nundo = 0;
    st->undobuf.len = 0;
    st->fatal[0] = '\0';
}

void eddy_state_drop_partition(eddy_state *st, int32_t partition)
{
    for (int i = 0; i < st->ntasks;) {
        if ((st->tasks[i]->id & 0xffff) == partition) {
            task_close(st, st->tasks[i]);
            st->tasks[i] = st->tasks[--st->ntasks];
        } else {
            i++;
        }
    }
}

static int64_t unbe8(const void *p)
{
    const unsigned char *b = p;
    int64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

/* ---- the undo log ---- */

/* Log the old value of @p k before a write: @p old (NULL: absent), or, when
 * @p lookup, whatever the store holds now. */
static void undo_note_val(eddy_state *st, const eddy_batch *b, task *t, int32_t db,
                          const char *k, size_t klen, int lookup, const MDB_val *old)
{
    if (b->cur != st->undo_batch_cur || b != st->undo_batch) {
        st->nundo = 0;                   /* a new record: forget the previous one's log */
        st->undobuf.len = 0;
        st->undo_batch_cur = b->cur;
        st->undo_batch = b;
    }
    if (st->nundo == st->undocap) {
        int cap = st->undocap ? st->undocap * 2 : 16;
        undo *u = realloc(st->undos, sizeof(*u) * (size_t)cap);
        if (!u) {
            abort();
        }
        st->undos = u;
        st->undocap = cap;
    }
    undo *u = &st->undos[st->nundo++];
    u->task = t->id;
    u->db = db;
    u->koff = st->undobuf.len;
    u->klen = klen;
    eddy_buf_append(&st->undobuf, k, klen);
    MDB_val key = {klen, (void *)k}, val;
    u->voff = st->undobuf.len;
    if (lookup && st->lg_gen == st->wgen && st->lg_task == t->id && st->lg_db == db &&
        st->lg_key.len == klen && memcmp(st->lg_key.data, k, klen) == 0) {
        u->vlen = st->lg_vlen;                  /* read just before: no second lookup */
        if (u->vlen >= 0) {
            eddy_buf_append(&st->undobuf, st->lg_val.data, (size_t)u->vlen);
        }
    } else if (lookup ? mdb_get(t->txn, t->dbi[db], &key, &val) == 0 : old != NULL) {
        if (!lookup) {
            val = *old;
        }
        u->vlen = (ssize_t)val.mv_size;
        eddy_buf_append(&st->undobuf, val.mv_data, val.mv_size);
    } else {
        u->vlen = -1;
    }
}

static void undo_note(eddy_state *st, const eddy_batch *b, task *t, int32_t db,
                      const char *k, size_t klen)
{
    undo_note_val(st, b, t, db, k, klen, 1, NULL);
}

void eddy_state_begin_batch(eddy_state *st)
{
    st->nundo = 0;
    st->undobuf.len = 0;
    st->undo_batch = NULL;
    st->undo_batch_cur = INT32_MIN;
}

void eddy_state_undo_record(eddy_state *st)
{
    st->wgen++;
    if (!st->undo_batch || st->undo_batch->cur != st->undo_batch_cur) {
        st->nundo = 0;           /* the log is an earlier record's: this one wrote nothing */
        st->undobuf.len = 0;
        return;
    }
    for (int i = st->nundo - 1; i >= 0; i--) {
        undo *u = &st->undos[i];
        task *t = task_get(st, u->task);
        if (!t || !t->txn) {
            continue;
        }
        MDB_val key = {u->klen, st->undobuf.data + u->koff};
        if (u->vlen < 0) {
            mdb_del(t->txn, t->dbi[u->db], &key, NULL);
        } else {
            MDB_val val = {(size_t)u->vlen, st->undobuf.data + u->voff};
            mdb_put(t->txn, t->dbi[u->db], &key, &val, 0);
        }
    }
    st->nundo = 0;
    st->undobuf.len = 0;
}

/* ---- Lua's store access ---- */

#define STATE(b) ((eddy_state *)(b)->state)

/* Open store handle @p db in task @p t if it is not yet. */
static int dbi_ensure(eddy_state *st, task *t, int32_t db)
{
    if (t->open[db]) {
        return 0;
    }
    int rc = mdb_dbi_open(t->txn, st->names[db], MDB_CREATE, &t->dbi[db]);
    if (rc) {
        return set_err(st, rc, t, db, "open the store");
    }
    t->open[db] = 1;
    return 0;
}

/* A new store name gets the next handle; eddy's bookkeeping is not logged. */
static int32_t register_name(eddy_state *st, const char *name)
{
    st->names[st->nnames] = strdup(name);
    size_t n = strlen(name);
    /* not logged: eddy's bookkeeping, and indexes (rebuilt from their store after a restore) */
    st->logged[st->nnames] = strcmp(name, "__offsets") != 0 && strcmp(name, "__changelog") != 0 &&
                             !(n > 4 && strcmp(name + n - 4, "#idx") == 0);
    return st->nnames++;
}

static int32_t name_handle(eddy_state *st, const char *name)
{
    for (int i = 0; i < st->nnames; i++) {
        if (strcmp(st->names[i], name) == 0) {
            return i;
        }
    }
    if (st->nnames == MAX_DBS) {
        snprintf(st->err, sizeof st->err, "too many stores (at most %d)", MAX_DBS);
        return -1;
    }
    return register_name(st, name);
}

static void note_change(eddy_state *st, task *t, int32_t db, const char *k, size_t klen)
{
    if (t->changed && st->logged[db]) {
        eddy_keyset_add(t->changed, db, k, klen);
    }
}

int32_t eddy_kv_open(eddy_batch *b, int32_t task_id, const char *name)
{
    eddy_state *st = STATE(b);
    if (!st) {
        return -1;            /* no state attached (a stateless run): eddy_kv_error says so */
    }
    int32_t db = name_handle(st, name);
    if (db < 0) {
        return -1;
    }
    task *t = task_get(st, task_id);
    if (!t || !task_txn(st, t) || dbi_ensure(st, t, db) != 0) {
        return -1;
    }
    return db;
}

static task *lookup(eddy_batch *b, int32_t task_id, int32_t db)
{
    eddy_state *st = STATE(b);
    if (db < 0 || db >= st->nnames) {
        snprintf(st->err, sizeof st->err, "bad store handle %d", db);
        return NULL;
    }
    task *t = task_get(st, task_id);
    if (!t || !task_txn(st, t) || dbi_ensure(st, t, db) != 0) {
        return NULL;
    }
    return t;
}

const char *eddy_kv_get(eddy_batch *b, int32_t task_id, int32_t db, const char *k, size_t klen,
                        size_t *vlen)
{
    task *t = lookup(b, task_id, db);
    if (!t) {
        *vlen = 0;
        return NULL;
    }
    eddy_state *st = STATE(b);
    MDB_val key = {klen, (void *)k}, val;
    if (klen == 0 || klen > 511) {
        *vlen = 0;
        return NULL;
    }
    int found = mdb_get(t->txn, t->dbi[db], &key, &val) == 0;
    st->lg_gen = st->wgen;
    st->lg_task = t->id;
    st->lg_db = db;
    st->lg_key.len = 0;
    eddy_buf_append(&st->lg_key, k, klen);
    st->lg_val.len = 0;
    st->lg_vlen = found ? (ssize_t)val.mv_size : -1;
    if (found) {
        eddy_buf_append(&st->lg_val, val.mv_data, val.mv_size);
    }
    if (!found) {
        *vlen = 0;
        return NULL;
    }
    *vlen = val.mv_size;
    return val.mv_data;
}

int eddy_kv_put(eddy_batch *b, int32_t task_id, int32_t db, const char *k, size_t klen,
                const char *v, size_t vlen)
{
    eddy_state *st = STATE(b);
    task *t = lookup(b, task_id, db);
    if (!t) {
        return -1;
    }
    if (klen == 0 || klen > 511) {
        snprintf(st->err, sizeof st->err, "store %s: keys are 1 to 511 bytes (got %zu)",
                 st->names[db], klen);
        return -1;
    }
    undo_note(st, b, t, db, k, klen);
    note_change(st, t, db, k, klen);
    st->wgen++;
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
    int rc = mdb_put(t->txn, t->dbi[db], &key, &val, 0);
    if (rc) {
        st->nundo--;
        return set_err(st, rc, t, db, "put");
    }
    note_written(st, t, klen + vlen);
    return 0;
}

int eddy_kv_del(eddy_batch *b, int32_t task_id, int32_t db, const char *k, size_t klen)
{
    eddy_state *st = STATE(b);
    task *t = lookup(b, task_id, db);
    if (!t) {
        return -1;
    }
    if (klen == 0 || klen > 511) {
        return 0;
    }
    undo_note(st, b, t, db, k, klen);
    note_change(st, t, db, k, klen);
    st->wgen++;
    MDB_val key = {klen, (void *)k};
    int rc = mdb_del(t->txn, t->dbi[db], &key, NULL);
    if (rc == MDB_NOTFOUND) {
        st->nundo--;
        return 0;
    }
    if (rc) {
        return set_err(st, rc, t, db, "delete");
    }
    return 1;
}

int64_t eddy_kv_count(eddy_batch *b, int32_t task_id, int32_t db)
{
    task *t = lookup(b, task_id, db);
    MDB_stat s;
    if (!t || mdb_stat(t->txn, t->dbi[db], &s) != 0) {
        return -1;
    }
    return (int64_t)s.ms_entries;
}

int32_t eddy_kv_iter(eddy_batch *b, int32_t task_id, int32_t db, const char *from, size_t flen,
                     const char *to, size_t tlen)
{
    eddy_state *st = STATE(b);
    task *t = lookup(b, task_id, db);
    if (!t) {
        return -1;
    }
    int i;
    for (i = 0; i < MAX_ITERS && st->iters[i].used; i++) {
    }
    if (i == MAX_ITERS) {
        snprintf(st->err, sizeof st->err, "too many open store iterators (at most %d): finish "
                 "iterating range()/prefix() loops", MAX_ITERS);
        return -1;
    }
    iter *it = &st->iters[i];
    int rc = mdb_cursor_open(t->txn, t->dbi[db], &it->cur);
    if (rc) {
        return set_err(st, rc, t, db, "open a cursor");
    }
    it->used = 1;
    it->first = 1;
    it->fromcopy.len = 0;
    eddy_buf_append(&it->fromcopy, from ? from : "", flen);
    it->from.mv_size = flen;
    it->from.mv_data = it->fromcopy.data;
    it->to.len = 0;
    it->has_to = tlen > 0;
    eddy_buf_append(&it->to, to ? to : "", tlen);
    return i;
}

static int key_below(const MDB_val *k, const eddy_buf *to)
{
    size_t n = k->mv_size < to->len ? k->mv_size : to->len;
    int c = memcmp(k->mv_data, to->data, n);
    return c < 0 || (c == 0 && k->mv_size < to->len);
}

int eddy_kv_next(eddy_batch *b, int32_t id, const char **k, size_t *klen,
                 const char **v, size_t *vlen)
{
    eddy_state *st = STATE(b);
    if (id < 0 || id >= MAX_ITERS || !st->iters[id].used) {
        return 0;
    }
    iter *it = &st->iters[id];
    MDB_val key, val;
    int rc;
    if (it->first) {
        it->first = 0;
        if (it->from.mv_size > 0) {
            key = it->from;
            rc = mdb_cursor_get(it->cur, &key, &val, MDB_SET_RANGE);
        } else {
            rc = mdb_cursor_get(it->cur, &key, &val, MDB_FIRST);
        }
    } else {
        rc = mdb_cursor_get(it->cur, &key, &val, MDB_NEXT);
    }
    if (rc != 0 || (it->has_to && !key_below(&key, &it->to))) {
        eddy_kv_iter_close(b, id);
        return 0;
    }
    *k = key.mv_data;
    *klen = key.mv_size;
    *v = val.mv_data;
    *vlen = val.mv_size;
    return 1;
}

void eddy_kv_iter_close(eddy_batch *b, int32_t id)
{
    eddy_state *st = STATE(b);
    if (id >= 0 && id < MAX_ITERS && st->iters[id].used) {
        mdb_cursor_close(st->iters[id].cur);
        st->iters[id].used = 0;
    }
}

int64_t eddy_kv_del_range(eddy_batch *b, int32_t task_id, int32_t db, const char *from,
                          size_t flen, const char *to, size_t tlen)
{
    eddy_state *st = STATE(b);
    task *t = lookup(b, task_id, db);
    if (!t) {
        return -1;
    }
    MDB_cursor *cur;
    int rc = mdb_cursor_open(t->txn, t->dbi[db], &cur);
    if (rc) {
        return set_err(st, rc, t, db, "open a cursor");
    }
    eddy_buf tob = EDDY_BUF_INIT;
    eddy_buf_append(&tob, to ? to : "", tlen);
    MDB_val key = {flen, (void *)from}, val;
    int64_t n = 0;
    rc = flen ? mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE)
              : mdb_cursor_get(cur, &key, &val, MDB_FIRST);
    st->wgen++;
    while (rc == 0 && (tlen == 0 || key_below(&key, &tob))) {
        undo_note_val(st, b, t, db, key.mv_data, key.mv_size, 0, &val);  /* undone with its record */
        note_change(st, t, db, key.mv_data, key.mv_size);
        if ((rc = mdb_cursor_del(cur, 0)) != 0) {
            break;
        }
        n++;
        rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);   /* after a delete: the next entry */
    }
    mdb_cursor_close(cur);
    eddy_buf_free(&tob);
    if (rc && rc != MDB_NOTFOUND) {
        return set_err(st, rc, t, db, "delete a range");
    }
    return n;
}

const char *eddy_kv_error(eddy_batch *b)
{
    return STATE(b) ? STATE(b)->err : "no state is attached to this run";
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int eddy_state_scan(const char *dir, const char *store, eddy_state_scan_cb *cb, void *opaque,
                    char *errstr, size_t errstr_size)
{
    DIR *d = opendir(dir);
    if (!d) {
        int err = errno;
        snprintf(errstr, errstr_size, "no state in %s: %s", dir, strerror(err));
        return err;
    }
    char *names[MAX_TASKS];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < MAX_TASKS) {
        int s1, p1;
        if (sscanf(de->d_name, "%d_%d", &s1, &p1) == 2) {
            names[n++] = strdup(de->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    int stop = 0;
    for (int i = 0; i < n; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        MDB_dbi dbi;
        MDB_cursor *cur = NULL;
        if (stop || mdb_env_create(&env) || mdb_env_set_maxdbs(env, MAX_DBS) ||
            mdb_env_open(env, path, MDB_RDONLY | MDB_NOTLS, 0644) ||
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) || mdb_dbi_open(txn, store, 0, &dbi) ||
            mdb_cursor_open(txn, dbi, &cur)) {
            goto next;
        }
        MDB_val k, v;
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !stop;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            stop = cb(opaque, names[i], k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        }
    next:
        if (cur) {
            mdb_cursor_close(cur);
        }
        if (txn) {
            mdb_txn_abort(txn);
        }
        if (env) {
            mdb_env_close(env);
        }
        free(names[i]);
    }
    return 0;
}

int64_t eddy_state_input_offset(eddy_state *st, int32_t partition, const char *topic)
{
    int64_t best = -1;
    for (int sub = 0; sub < 16; sub++) {
        char path[1200];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%d_%d/data.mdb", st->dir, sub, (int)partition);
        if (stat(path, &sb) != 0) {
            continue;
        }
        task *t = task_get(st, (sub << 16) | partition);
        if (!t) {
            continue;
        }
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {strlen(topic), (void *)topic}, v;
        if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) != 0) {
            continue;
        }
        if (mdb_dbi_open(txn, "__offsets", 0, &dbi) == 0 && mdb_get(txn, dbi, &k, &v) == 0 &&
            v.mv_size == 8) {
            int64_t off = unbe8(v.mv_data);
            if (off > best) {
                best = off;
            }
        }
        mdb_txn_abort(txn);
    }
    return best;
}

/* ---- changelogs: what changed, bookkeeping, restore ---- */

void eddy_state_track_changes(eddy_state *st, int on)
{
    st->track = on;
}

/* The task's write transaction with store @p name open in it. */
static task *task_store(eddy_state *st, int32_t task_id, const char *name, int32_t *db)
{
    if ((*db = name_handle(st, name)) < 0) {
        return NULL;
    }
    task *t = task_get(st, task_id);
    if (!t || !task_txn(st, t) || dbi_ensure(st, t, *db) != 0) {
        return NULL;
    }
    return t;
}

int eddy_state_changes(eddy_state *st, eddy_state_change_cb *cb, void *opaque)
{
    close_iters(st);
    for (int i = 0; i < st->ntasks; i++) {
        task *t = st->tasks[i];
        if (!t->changed || eddy_keyset_count(t->changed) == 0) {
            continue;
        }
        if (!task_txn(st, t)) {
            return -1;
        }
        size_t n = eddy_keyset_count(t->changed);
        for (size_t j = 0; j < n; j++) {
            int32_t db;
            const char *k;
            size_t klen;
            eddy_keyset_get(t->changed, j, &db, &k, &klen);
            if (dbi_ensure(st, t, db) != 0) {
                return -1;
            }
            MDB_val key = {klen, (void *)k}, val;
            int rc = mdb_get(t->txn, t->dbi[db], &key, &val);
            if (rc && rc != MDB_NOTFOUND) {
                return set_err(st, rc, t, db, "read a changed key");
            }
            if (cb(opaque, t->id, st->names[db], k, klen, rc ? NULL : val.mv_data,
                   rc ? -1 : (ssize_t)val.mv_size)) {
                return -1;
            }
        }
        eddy_keyset_clear(t->changed);
    }
    return 0;
}

int eddy_state_active_tasks(const eddy_state *st, int32_t *ids, int max)
{
    int n = 0;
    for (int i = 0; i < st->ntasks && n < max; i++) {
        if (st->tasks[i]->txn) {
            ids[n++] = st->tasks[i]->id;
        }
    }
    return n;
}

static void be8(unsigned char *b, int64_t v)
{
    for (int i = 7; i >= 0; i--) {
        b[i] = (unsigned char)(v & 0xff);
        v = (int64_t)((uint64_t)v >> 8);
    }
}

int64_t eddy_state_meta(eddy_state *st, int32_t task_id, const char *store, const char *key)
{
    int32_t db;
    task *t = task_store(st, task_id, store, &db);
    MDB_val k = {strlen(key), (void *)key}, v;
    if (!t || mdb_get(t->txn, t->dbi[db], &k, &v) != 0 || v.mv_size != 8) {
        return -1;
    }
    return unbe8(v.mv_data);
}

int eddy_state_set_meta(eddy_state *st, int32_t task_id, const char *store, const char *key,
                        int64_t value)
{
    int32_t db;
    task *t = task_store(st, task_id, store, &db);
    if (!t) {
        return -1;
    }
    unsigned char b[8];
    be8(b, value);
    MDB_val k = {strlen(key), (void *)key}, v = {8, b};
    st->wgen++;
    int rc = mdb_put(t->txn, t->dbi[db], &k, &v, 0);
    return rc ? set_err(st, rc, t, db, "put") : 0;
}

int eddy_state_set_logged(eddy_state *st, int32_t task_id, const char *store, const char *key,
                          int64_t value)
{
    if (eddy_state_set_meta(st, task_id, store, key, value)) {
        return -1;
    }
    return eddy_state_mark_changed(st, task_id, store, key, strlen(key));
}

int eddy_state_meta_each(eddy_state *st, int32_t task_id, const char *store,
                         int (*cb)(void *opaque, const char *key, size_t klen, int64_t value),
                         void *opaque)
{
    int32_t db;
    task *t = task_store(st, task_id, store, &db);
    MDB_cursor *cur;
    if (!t || mdb_cursor_open(t->txn, t->dbi[db], &cur) != 0) {
        return -1;
    }
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size == 8 && cb(opaque, k.mv_data, k.mv_size, unbe8(v.mv_data))) {
            break;
        }
    }
    mdb_cursor_close(cur);
    return 0;
}

int eddy_state_apply(eddy_state *st, int32_t task_id, const char *store, const char *k,
                     size_t klen, const char *v, ssize_t vlen)
{
    int32_t db;
    task *t = task_store(st, task_id, store, &db);
    if (!t) {
        return -1;
    }
    if (klen == 0 || klen > 511) {
        return 0;
    }
    MDB_val key = {klen, (void *)k}, val = {vlen < 0 ? 0 : (size_t)vlen, (void *)v};
    st->wgen++;
    int rc = vlen < 0 ? mdb_del(t->txn, t->dbi[db], &key, NULL)
                      : mdb_put(t->txn, t->dbi[db], &key, &val, 0);
    if (rc && !(vlen < 0 && rc == MDB_NOTFOUND)) {
        return set_err(st, rc, t, db, "restore");
    }
    note_written(st, t, klen + (vlen < 0 ? 0 : (size_t)vlen));
    return 0;
}

int eddy_state_clear_indexes(eddy_state *st, int32_t task_id)
{
    task *t = task_get(st, task_id);
    MDB_txn *txn = t ? task_txn(st, t) : NULL;
    MDB_dbi main;
    MDB_cursor *cur;
    if (!txn) {
        return -1;
    }
    int rc = mdb_dbi_open(txn, NULL, 0, &main);
    if (rc || (rc = mdb_cursor_open(txn, main, &cur))) {
        return set_err(st, rc, t, -1, "list the stores");
    }
    char names[MAX_DBS][512];
    int n = 0;
    MDB_val k, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && n < MAX_DBS;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size > 4 && k.mv_size < sizeof names[0] &&
            !memcmp((const char *)k.mv_data + k.mv_size - 4, "#idx", 4)) {
            memcpy(names[n], k.mv_data, k.mv_size);
            names[n++][k.mv_size] = '\0';
        }
    }
    mdb_cursor_close(cur);
    st->wgen++;
    for (int i = 0; i < n; i++) {
        MDB_dbi dbi;
        if ((rc = mdb_dbi_open(txn, names[i], 0, &dbi)) || (rc = mdb_drop(txn, dbi, 0))) {
            return set_err(st, rc, t, -1, "clear an index");
        }
    }
    return 0;
}

int eddy_state_mark_changed(eddy_state *st, int32_t task_id, const char *store, const char *k,
                            size_t klen)
{
    int32_t db;
    task *t = task_store(st, task_id, store, &db);
    if (!t) {
        return -1;
    }
    if (klen > 0 && klen <= 511) {
        note_change(st, t, db, k, klen);
    }
    return 0;
}

const char *eddy_state_error(const eddy_state *st)
{
    return st->err;
}

int eddy_state_range(eddy_state *st, const char *store, const char *from, size_t flen,
                     const char *to, size_t tlen, eddy_state_range_cb *cb, void *opaque)
{
    close_iters(st);
    int ids[MAX_TASKS], n = 0;
    for (int i = 0; i < st->ntasks; i++) {
        ids[n++] = st->tasks[i]->id;
    }
    eddy_buf tob = EDDY_BUF_INIT;
    eddy_buf_append(&tob, to ? to : "", tlen);
    int stop = 0;
    for (int i = 0; i < n && !stop; i++) {
        int32_t db;
        task *t = task_store(st, ids[i], store, &db);
        MDB_cursor *cur;
        if (!t || mdb_cursor_open(t->txn, t->dbi[db], &cur) != 0) {
            continue;
        }
        MDB_val k = {flen, (void *)from}, v;
        int rc = flen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        for (; rc == 0 && !stop && (tlen == 0 || key_below(&k, &tob));
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            stop = cb(opaque, t->id, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        }
        mdb_cursor_close(cur);
    }
    eddy_buf_free(&tob);
    return 0;
}

int64_t eddy_state_bytes(const eddy_state *st)
{
    int64_t total = 0;
    for (int i = 0; st && i < st->ntasks; i++) {
        MDB_envinfo info;
        MDB_stat stat;
        if (mdb_env_info(st->tasks[i]->env, &info) == 0 && mdb_env_stat(st->tasks[i]->env, &stat) == 0) {
            total += (int64_t)(info.me_last_pgno + 1) * stat.ms_psize;
        }
    }
    return total;
}
