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
#include "eddy_batch.h"

typedef struct eddy_state eddy_state;

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
