/*
 * eddy_state — a job's state on disk: one LMDB environment per task under
 * <state-dir>/<app-id>/<task>/ (task "S_P": sub-topology S, partition P), a
 * named database per store. Each task has one write transaction open for the
 * commit interval; eddy_state_commit() commits them all, and is called only
 * after the outputs derived from them are flushed, so the state is never ahead
 * of what was acknowledged. Writes of a record that fails are undone.
 *
 * Lua reaches the stores through the eddy_kv_* functions (ffi.C), which take
 * the batch: the task id is (sub-topology << 16) | partition.
 */
#ifndef EDDY_STATE_H
#define EDDY_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "eddy_batch.h"

typedef struct eddy_state eddy_state;

/* The sub-topology of global tables' task (lua/eddy/runtime.lua GLOBAL_SUB): never a
 * Kafka task, never logged to a changelog. */
#define EDDY_GLOBAL_SUB 32767

#define EDDY_STATE_DEFAULT_MAP_SIZE ((size_t)1 << 30)   /* 1 GiB per task, grown as it fills */

/**
 * @brief Open (create) the state directory @p dir (= state-dir/app-id). Task
 *        environments are opened lazily, on a task's first store access.
 */
int  eddy_state_open(eddy_state **out, const char *dir, size_t map_size,
                     char *errstr, size_t errstr_size);
/** @brief Close every task; uncommitted writes are discarded. NULL is a no-op. */
void eddy_state_close(eddy_state *st);

/** @brief Commit every task's open write transaction (and sync it to disk). */
int  eddy_state_commit(eddy_state *st, char *errstr, size_t errstr_size);

/** @brief 1 when a task has written so much since the last commit that its map
 *         could fill before the next one: commit at the next batch boundary (the
 *         map then grows), before the interval is over. */
int  eddy_state_wants_commit(const eddy_state *st);

/**
 * @brief The next input offset of @p topic / @p partition recorded with the
 *        committed state (any sub-topology's task), or -1 when there is none.
 */
int64_t eddy_state_input_offset(eddy_state *st, int32_t partition, const char *topic);

/** @brief Abort every task's open write transaction: back to the last commit. */
void eddy_state_abort(eddy_state *st);

/** @brief Close the tasks of @p partition (all sub-topologies): it was revoked. Commit first. */
void eddy_state_drop_partition(eddy_state *st, int32_t partition);

/** @brief A batch starts: the undo log of the previous one is forgotten. */
void eddy_state_begin_batch(eddy_state *st);

/** @brief Undo the store writes made for the batch's record in hand (it failed). */
void eddy_state_undo_record(eddy_state *st);

/**
 * @brief A failure that no record is to blame for (the LMDB map or the disk is
 *        full, a transaction broke): the job must stop without committing.
 * @returns the message, or NULL when all is well.
 */
const char *eddy_state_failed(const eddy_state *st);

/** @brief The bytes the open tasks' LMDB files use (pages in use). */
int64_t eddy_state_bytes(const eddy_state *st);

/** @brief How many tasks have an open environment. */
int  eddy_state_ntasks(const eddy_state *st);

/** Called for each entry by eddy_state_scan; return non-zero to stop. */
typedef int eddy_state_scan_cb(void *opaque, const char *task, const char *k, size_t klen,
                               const char *v, size_t vlen);

/**
 * @brief Read store @p store of every task under @p dir (= state-dir/app-id),
 *        read-only, in key order per task (for `eddy stores`).
 * @returns 0, or an errno with the reason in @p errstr.
 */
int eddy_state_scan(const char *dir, const char *store, eddy_state_scan_cb *cb, void *opaque,
                    char *errstr, size_t errstr_size);

/* ---- changelogs (Kafka mode): see eddy_changelog.h ---- */

/** @brief Remember the keys written from now on (off by default: file mode needs no changelog). */
void eddy_state_track_changes(eddy_state *st, int on);

/** Called by eddy_state_changes per changed key; @p vlen < 0: the key is gone. Non-zero stops. */
typedef int eddy_state_change_cb(void *opaque, int32_t task, const char *store, const char *k,
                                 size_t klen, const char *v, ssize_t vlen);
/**
 * @brief Each key written since the last call, in every task, with its value
 *        in the open transaction (one call per key however often it was
 *        written); then forget them. Stores "__offsets" and "__changelog" are
 *        eddy's bookkeeping and never reported.
 * @returns 0, or -1 (eddy_state_error says why).
 */
int eddy_state_changes(eddy_state *st, eddy_state_change_cb *cb, void *opaque);

/** @brief The tasks with an open write transaction (written this interval). @returns how many. */
int eddy_state_active_tasks(const eddy_state *st, int32_t *ids, int max);

/** @brief An 8-byte number under @p key in @p store of the task (in its write transaction); -1 when absent. */
int64_t eddy_state_meta(eddy_state *st, int32_t task, const char *store, const char *key);
int     eddy_state_set_meta(eddy_state *st, int32_t task, const char *store, const char *key,
                            int64_t value);
/** @brief eddy_state_set_meta, and the key goes to the changelog like a store write. */
int     eddy_state_set_logged(eddy_state *st, int32_t task, const char *store, const char *key,
                              int64_t value);
/** @brief Each 8-byte number of @p store in the task (e.g. "__offsets": topic -> next offset). */
int     eddy_state_meta_each(eddy_state *st, int32_t task, const char *store,
                             int (*cb)(void *opaque, const char *key, size_t klen, int64_t value),
                             void *opaque);

/** @brief Restore: put (vlen >= 0) or delete (vlen < 0) a key, without remembering it as changed. */
int eddy_state_apply(eddy_state *st, int32_t task, const char *store, const char *k, size_t klen,
                     const char *v, ssize_t vlen);
/** @brief Remember a key as changed (its value goes to the changelog at the next commit). */
/**
 * @brief Empty every index store ("name#idx") of task @p task: after a restore
 *        applied changelog records, the indexes (not logged: they derive from
 *        their store) are rebuilt by the job. @returns 0, or -1 (eddy_state_error).
 */
int eddy_state_clear_indexes(eddy_state *st, int32_t task);
int eddy_state_mark_changed(eddy_state *st, int32_t task, const char *store, const char *k,
                            size_t klen);
/** @brief The last error of the calls above. */
const char *eddy_state_error(const eddy_state *st);

/** Called per entry by eddy_state_range; return non-zero to stop. */
typedef int eddy_state_range_cb(void *opaque, int32_t task, const char *k, size_t klen,
                                const char *v, size_t vlen);
/**
 * @brief Entries of @p store with from <= key < to (tlen 0: no upper bound) in
 *        every open task, through the tasks' transactions (interactive queries,
 *        on the processing thread).
 */
int eddy_state_range(eddy_state *st, const char *store, const char *from, size_t flen,
                     const char *to, size_t tlen, eddy_state_range_cb *cb, void *opaque);

/* ---- called from Lua through the FFI; @p b is the batch (b->state is the state) ---- */

/** @returns a store handle >= 0 for @p name in @p task, or -1 (eddy_kv_error says why). */
int32_t     eddy_kv_open(eddy_batch *b, int32_t task, const char *name);
/** @returns the value (valid until the next store call) or NULL when absent; *vlen set. */
const char *eddy_kv_get(eddy_batch *b, int32_t task, int32_t db, const char *k, size_t klen,
                        size_t *vlen);
int         eddy_kv_put(eddy_batch *b, int32_t task, int32_t db, const char *k, size_t klen,
                        const char *v, size_t vlen);
/** @returns 1 when deleted, 0 when absent, -1 on error. */
int         eddy_kv_del(eddy_batch *b, int32_t task, int32_t db, const char *k, size_t klen);
int64_t     eddy_kv_count(eddy_batch *b, int32_t task, int32_t db);
/**
 * @brief Position an iterator at the first key >= @p from (or the first key when
 *        flen is 0); keys >= @p to are not returned (tlen 0: no upper bound).
 * @returns an iterator id >= 0, or -1.
 */
int32_t     eddy_kv_iter(eddy_batch *b, int32_t task, int32_t db, const char *from, size_t flen,
                         const char *to, size_t tlen);
/** @returns 1 and the entry (valid until the next store call), or 0 at the end (iterator freed). */
int         eddy_kv_next(eddy_batch *b, int32_t it, const char **k, size_t *klen,
                         const char **v, size_t *vlen);
void        eddy_kv_iter_close(eddy_batch *b, int32_t it);
/** @brief Delete every key in [from, to) in bulk. @returns how many, or -1. */
int64_t     eddy_kv_del_range(eddy_batch *b, int32_t task, int32_t db, const char *from,
                              size_t flen, const char *to, size_t tlen);
/** @brief The last store error, naming the store and what to do. */
const char *eddy_kv_error(eddy_batch *b);

#endif
