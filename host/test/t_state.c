/*
 * t_state.c — eddy_state: LMDB environments per task, commit, reopen, undo,
 * iteration, range deletes, a full map. A scratch directory, as LMDB's mtest.c.
 */
#include "eddy_state.h"
#include "testhelp.h"

#include <stdlib.h>
#include <string.h>

static int rmrf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static int get_is(eddy_batch *b, int32_t task, int32_t db, const char *k, const char *want)
{
    size_t vlen;
    const char *v = eddy_kv_get(b, task, db, k, strlen(k), &vlen);
    if (!want) {
        return v == NULL;
    }
    return v && vlen == strlen(want) && memcmp(v, want, vlen) == 0;
}

/* what eddy_state_changes reported, as "task:store:key=value;" (value "-" when gone) */
static char changes[4096];

static int collect(void *opaque, int32_t task, const char *store, const char *k, size_t klen,
                   const char *v, ssize_t vlen)
{
    (void)opaque;
    size_t n = strlen(changes);
    snprintf(changes + n, sizeof changes - n, "%d:%s:%.*s=%.*s;", (int)task, store, (int)klen, k,
             vlen < 0 ? 1 : (int)vlen, vlen < 0 ? "-" : v);
    return 0;
}

static int count_meta(void *opaque, const char *key, size_t klen, int64_t value)
{
    (void)key;
    (void)klen;
    *(int64_t *)opaque += value;
    return 0;
}

int main(void)
{
    char dir[] = "/tmp/eddy-t-state.XXXXXX";
    char err[2048];
    if (!mkdtemp(dir)) {
        return 1;
    }
    eddy_state *st;
    eddy_batch *b;
    eddy_batch_new(&b);
    test_cond("open", eddy_state_open(&st, dir, 0, err, sizeof err) == 0);
    b->state = st;
    int32_t db = eddy_kv_open(b, 3, "counts");
    test_cond("open a store", db >= 0);
    test_cond("the same name gives the same handle in another task",
              eddy_kv_open(b, (1 << 16) | 2, "counts") == db);
    test_cond("put", eddy_kv_put(b, 3, db, "a", 1, "1", 1) == 0);
    test_cond("put", eddy_kv_put(b, 3, db, "b", 1, "22", 2) == 0);
    test_cond("get sees its own write", get_is(b, 3, db, "b", "22"));
    test_cond("tasks are separate", get_is(b, (1 << 16) | 2, db, "b", NULL));
    test_cond("an empty key is refused", eddy_kv_put(b, 3, db, "", 0, "x", 1) == -1);
    test_cond("the error names the store", strstr(eddy_kv_error(b), "counts") != NULL);
    test_cond("a bad handle is refused", eddy_kv_put(b, 3, 99, "a", 1, "x", 1) == -1);
    test_cond("count", eddy_kv_count(b, 3, db) == 2);
    test_cond("commit", eddy_state_commit(st, err, sizeof err) == 0);
    test_cond("a task directory per task", eddy_state_ntasks(st) == 2);
    eddy_state_close(st);

    /* reopen: the committed state is there; an uncommitted write is not */
    test_cond("reopen", eddy_state_open(&st, dir, 0, err, sizeof err) == 0);
    b->state = st;
    db = eddy_kv_open(b, 3, "counts");
    test_cond("committed value survives a restart", get_is(b, 3, db, "a", "1"));
    eddy_kv_put(b, 3, db, "c", 1, "3", 1);
    eddy_state_close(st);
    eddy_state_open(&st, dir, 0, err, sizeof err);
    b->state = st;
    db = eddy_kv_open(b, 3, "counts");
    test_cond("an uncommitted write is gone after a restart", get_is(b, 3, db, "c", NULL));

    /* undo: the writes of the record in hand */
    b->cur = 7;
    eddy_kv_put(b, 3, db, "a", 1, "100", 3);
    eddy_kv_put(b, 3, db, "new", 3, "x", 1);
    eddy_kv_del(b, 3, db, "b", 1);
    test_cond("writes visible before undo", get_is(b, 3, db, "a", "100"));
    eddy_state_undo_record(st);
    test_cond("undo restores an overwritten value", get_is(b, 3, db, "a", "1"));
    test_cond("undo removes a new key", get_is(b, 3, db, "new", NULL));
    test_cond("undo restores a deleted key", get_is(b, 3, db, "b", "22"));
    b->cur = 8;
    eddy_kv_put(b, 3, db, "a", 1, "2", 1);
    b->cur = 9;
    eddy_kv_put(b, 3, db, "z", 1, "9", 1);
    eddy_state_undo_record(st);
    test_cond("undo touches only the last record's writes", get_is(b, 3, db, "a", "2") &&
              get_is(b, 3, db, "z", NULL));
    test_cond("delete of an absent key", eddy_kv_del(b, 3, db, "nope", 4) == 0);

    /* a put right after a get of the same key logs the value the get saw; a write
     * between them makes the store read it again */
    b->cur = 10;
    get_is(b, 3, db, "a", "2");
    eddy_kv_put(b, 3, db, "a", 1, "30", 2);
    eddy_state_undo_record(st);
    test_cond("undo after get+put restores the value the get saw", get_is(b, 3, db, "a", "2"));
    b->cur = 11;
    get_is(b, 3, db, "a", "2");
    eddy_kv_put(b, 3, db, "a", 1, "31", 2);   /* the memo is now stale */
    eddy_kv_put(b, 3, db, "a", 1, "32", 2);
    eddy_state_undo_record(st);
    test_cond("undo after get+put+put restores the first value", get_is(b, 3, db, "a", "2"));
    b->cur = 12;
    get_is(b, 3, db, "q", NULL);
    eddy_kv_put(b, 3, db, "q", 1, "1", 1);
    eddy_state_undo_record(st);
    test_cond("undo after a get of an absent key removes it again", get_is(b, 3, db, "q", NULL));
    /* a range delete is undone with its record */
    b->cur = 13;
    eddy_kv_put(b, 3, db, "r1", 2, "a", 1);
    eddy_kv_put(b, 3, db, "r2", 2, "b", 1);
    b->cur = 14;
    test_cond("range delete", eddy_kv_del_range(b, 3, db, "r", 1, "s", 1) == 2);
    test_cond("range delete removes", get_is(b, 3, db, "r1", NULL) && get_is(b, 3, db, "r2", NULL));
    eddy_state_undo_record(st);
    test_cond("undo restores what a range delete removed",
              get_is(b, 3, db, "r1", "a") && get_is(b, 3, db, "r2", "b"));
    eddy_kv_del_range(b, 3, db, "r", 1, "s", 1);

    /* iteration and range deletes */
    for (char c = 'd'; c <= 'k'; c++) {
        char k[2] = {c, 0};
        eddy_kv_put(b, 3, db, k, 1, k, 1);
    }
    const char *k, *v;
    size_t kl, vl;
    int32_t it = eddy_kv_iter(b, 3, db, "e", 1, "h", 1);
    char seen[16] = "";
    while (eddy_kv_next(b, it, &k, &kl, &v, &vl)) {
        strncat(seen, k, kl);
    }
    test_cond("iterate [e, h)", strcmp(seen, "efg") == 0);
    it = eddy_kv_iter(b, 3, db, NULL, 0, NULL, 0);
    int n = 0;
    while (eddy_kv_next(b, it, &k, &kl, &v, &vl)) {
        n++;
    }
    test_cond("iterate all", n == 10);
    test_cond("next after the end", eddy_kv_next(b, it, &k, &kl, &v, &vl) == 0);
    test_cond("delete [d, j)", eddy_kv_del_range(b, 3, db, "d", 1, "j", 1) == 6);
    test_cond("what is left", eddy_kv_count(b, 3, db) == 4 && get_is(b, 3, db, "j", "j") &&
              get_is(b, 3, db, "a", "2"));
    test_cond("delete to the end", eddy_kv_del_range(b, 3, db, "j", 1, NULL, 0) == 2);
    test_cond("commit", eddy_state_commit(st, err, sizeof err) == 0);

    /* dropping a partition closes its tasks; handles stay valid when reopened */
    eddy_state_drop_partition(st, 3);
    test_cond("drop closes the task", eddy_state_ntasks(st) == 0);
    test_cond("reopened on use", get_is(b, 3, db, "a", "2"));
    eddy_state_close(st);

    /* a full map: a clear message, nothing committed */
    rmrf(dir);
    eddy_state_open(&st, dir, 1 << 16, err, sizeof err);   /* 64 KiB */
    b->state = st;
    db = eddy_kv_open(b, 0, "blobs");
    char big[4000];
    memset(big, 'x', sizeof big);
    int rc = 0;
    for (int i = 0; i < 100 && rc == 0; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        rc = eddy_kv_put(b, 0, db, key, strlen(key), big, sizeof big);
    }
    test_cond("a full map fails the put", rc == -1);
    test_cond("the state is marked failed", eddy_state_failed(st) != NULL);
    test_cond("the message names the store and the setting",
              strstr(eddy_state_failed(st), "blobs") && strstr(eddy_state_failed(st), "state_map_size"));
    test_cond("commit refuses after a failure", eddy_state_commit(st, err, sizeof err) != 0);
    eddy_state_close(st);
    test_cond("state_open fails on an unwritable place",
              eddy_state_open(&st, "/proc/nope/state", 0, err, sizeof err) != 0);

    /* changelog support: changed keys, bookkeeping, restore */
    rmrf(dir);
    eddy_state_open(&st, dir, 0, err, sizeof err);
    b->state = st;
    eddy_state_track_changes(st, 1);
    db = eddy_kv_open(b, 5, "counts");
    int32_t offs = eddy_kv_open(b, 5, "__offsets");
    eddy_state_begin_batch(st);
    b->cur = 0;
    eddy_kv_put(b, 5, db, "a", 1, "1", 1);
    eddy_kv_put(b, 5, db, "a", 1, "2", 1);
    eddy_kv_put(b, 5, db, "b", 1, "9", 1);
    eddy_kv_put(b, 5, offs, "topic", 5, "12345678", 8);
    b->cur = 1;
    eddy_kv_put(b, 5, db, "c", 1, "7", 1);
    eddy_state_undo_record(st);          /* record 1 failed: c was never written */
    eddy_kv_del(b, 5, db, "b", 1);
    changes[0] = '\0';
    test_cond("changes: each key once, its current value, deletes as gone, bookkeeping never",
              eddy_state_changes(st, collect, NULL) == 0 &&
              strcmp(changes, "5:counts:a=2;5:counts:b=-;5:counts:c=-;") == 0);
    changes[0] = '\0';
    test_cond("changes are forgotten once reported",
              eddy_state_changes(st, collect, NULL) == 0 && changes[0] == '\0');
    eddy_kv_put(b, 5, db, "k1", 2, "x", 1);
    eddy_kv_put(b, 5, db, "k2", 2, "y", 1);
    eddy_kv_del_range(b, 5, db, "k", 1, "l", 1);
    changes[0] = '\0';
    eddy_state_changes(st, collect, NULL);
    test_cond("a range delete reports every key it removed",
              strcmp(changes, "5:counts:k1=-;5:counts:k2=-;") == 0);
    int32_t ids[8];
    test_cond("the task with a transaction is active",
              eddy_state_active_tasks(st, ids, 8) == 1 && ids[0] == 5);
    test_cond("meta: absent is -1", eddy_state_meta(st, 5, "__changelog", "counts") == -1);
    test_cond("meta: set then get",
              eddy_state_set_meta(st, 5, "__changelog", "counts", 4242) == 0 &&
              eddy_state_meta(st, 5, "__changelog", "counts") == 4242);
    int64_t sum = 0;
    eddy_state_set_meta(st, 5, "__offsets", "other", 8);
    eddy_state_meta_each(st, 5, "__offsets", count_meta, &sum);
    test_cond("meta_each sees every 8-byte entry", sum == 0x3132333435363738LL + 8);
    test_cond("apply puts and deletes without marking changed",
              eddy_state_apply(st, 5, "counts", "r", 1, "5", 1) == 0 &&
              eddy_state_apply(st, 5, "counts", "a", 1, NULL, -1) == 0 &&
              eddy_state_apply(st, 5, "counts", "zz", 2, NULL, -1) == 0 &&
              get_is(b, 5, db, "r", "5") && get_is(b, 5, db, "a", NULL));
    changes[0] = '\0';
    eddy_state_changes(st, collect, NULL);
    test_cond("applied keys are not reported", changes[0] == '\0');
    test_cond("mark_changed reports a key with its value",
              eddy_state_mark_changed(st, 5, "counts", "r", 1) == 0 &&
              eddy_state_mark_changed(st, 5, "counts", "nope", 4) == 0 &&
              (changes[0] = '\0', eddy_state_changes(st, collect, NULL) == 0) &&
              strcmp(changes, "5:counts:r=5;5:counts:nope=-;") == 0);
    int32_t ix = eddy_kv_open(b, 5, "counts#idx");
    eddy_kv_put(b, 5, ix, "i1", 2, "", 0);
    changes[0] = '\0';
    eddy_state_changes(st, collect, NULL);
    test_cond("an index store (#idx) is not logged", changes[0] == '\0');
    test_cond("clear_indexes empties the indexes only",
              eddy_state_clear_indexes(st, 5) == 0 && get_is(b, 5, ix, "i1", NULL) &&
              get_is(b, 5, db, "r", "5") && eddy_kv_count(b, 5, ix) == 0);
    eddy_kv_put(b, 5, ix, "i2", 2, "", 0);
    test_cond("an index can be written again after it was cleared", get_is(b, 5, ix, "i2", ""));
    test_cond("commit", eddy_state_commit(st, err, sizeof err) == 0);
    test_cond("meta survives the commit", eddy_state_meta(st, 5, "__changelog", "counts") == 4242);
    eddy_state_track_changes(st, 0);
    eddy_state_close(st);
    eddy_state_open(&st, dir, 0, err, sizeof err);
    b->state = st;
    db = eddy_kv_open(b, 5, "counts");
    eddy_kv_put(b, 5, db, "q", 1, "1", 1);
    changes[0] = '\0';
    test_cond("without tracking nothing is reported",
              eddy_state_changes(st, collect, NULL) == 0 && changes[0] == '\0');
    eddy_state_close(st);

    eddy_batch_destroy(b);
    rmrf(dir);
    test_report();
}
