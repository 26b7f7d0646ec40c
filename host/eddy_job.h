/*
 * eddy_job — one generation of a job: a lua_State with the user's script
 * loaded, its topology (sources, sinks, options) and the compiled pipeline.
 * All calls into user code go through here, protected, with a traceback.
 * Core modules use this header; only eddy_job.c includes lua.h.
 */
#ifndef EDDY_JOB_H
#define EDDY_JOB_H

#include <stddef.h>
#include <stdint.h>
#include "eddy_batch.h"

typedef struct eddy_job eddy_job;

/**
 * @brief Load @p script into a fresh Lua state and compile its topology.
 * @param lua_dir where eddy's own Lua modules are (the directory holding eddy/).
 * @returns 0, or EDDY_ESCRIPT / EDDY_ETOPO with one line naming file:line in @p errstr.
 */
int eddy_job_load(eddy_job **out, const char *script, const char *lua_dir,
                  char *errstr, size_t errstr_size);
void eddy_job_destroy(eddy_job *job);

const char *eddy_job_name(const eddy_job *job);
const char *eddy_job_on_error(const eddy_job *job);      /* "dlq", "skip", "fail" */
int         eddy_job_nsources(const eddy_job *job);
const char *eddy_job_source(const eddy_job *job, int i);
/** @brief Index of @p topic among the sources, or -1. */
int         eddy_job_source_index(const eddy_job *job, const char *topic, size_t len);
int         eddy_job_nsinks(const eddy_job *job);
const char *eddy_job_sink(const eddy_job *job, int i);
/** @brief The topology as a Graphviz dot (0) or Mermaid (1) picture. */
const char *eddy_job_picture(const eddy_job *job, int mermaid);

/** @brief Does the job keep state (aggregations, processors with stores)? */
int         eddy_job_stateful(const eddy_job *job);

/** @brief The topology, one line per step, as `eddy check` prints it. */
const char *eddy_job_describe(const eddy_job *job);

/**
 * @brief An option from the script's eddy.job{...} table, as a string
 *        (numbers and booleans converted), or NULL when not set.
 *        Valid while the job lives.
 */
const char *eddy_job_option(const eddy_job *job, const char *name);

/**
 * @brief Compile the pipeline for how it will run: the app id (internal topic
 *        names), Kafka or file mode, the file-mode partition count. Adds the
 *        internal topics (repartition) to the sources and sinks. Call once,
 *        after eddy_job_load and before eddy_job_run_batch.
 */
int eddy_job_configure(eddy_job *job, const char *app_id, int kafka, int partitions,
                       char *errstr, size_t errstr_size);

/** @brief The job's batch: fill it, then eddy_job_run_batch(). Owned by the job. */
eddy_batch *eddy_job_batch(eddy_job *job);

/**
 * @brief Kafka mode (after configure): lines "source\tS\ttopic" (sub-topology S
 *        reads topic), "family\tS\tname" (its changelog <app>-<name>-changelog),
 *        "table\tS\ttopic" (a table read in S), "join\tS\tname" (a stream-stream
 *        join in S) and "global\tS\ttopic" (a global table).
 */
const char *eddy_job_layout(const eddy_job *job);

/**
 * @brief Call fn(opaque, kind, sub, name) for each line of the job's layout, in
 *        order, until fn returns non-zero. @returns that value, or 0.
 */
int eddy_job_layout_each(const eddy_job *job, int (*fn)(void *opaque, const char *kind, int sub,
                                                        const char *name), void *opaque);

/** @brief The bytes of the job's Lua heap. */
int64_t eddy_job_lua_bytes(eddy_job *job);

/**
 * Called for each record whose processing failed. @p stage is
 * "deserialize", "process" or "serialize"; @p msg names the script line.
 * Return 0 to go on with the rest of the batch, non-zero to stop.
 */
typedef int eddy_job_error_cb(void *opaque, const eddy_rec *rec, const char *stage,
                              const char *msg);

/**
 * @brief Run the filled batch through the pipeline; outputs land in the batch.
 *        A failing record's outputs are dropped and @p on_error is called.
 * @returns 0, or EDDY_ESCRIPT when @p on_error asked to stop.
 */
int eddy_job_run_batch(eddy_job *job, eddy_job_error_cb *on_error, void *opaque);

/**
 * @brief Between batches: let the job run its wall-clock work (ctx:every
 *        schedules, idle_advance). Outputs land in the batch (src -1). A failing
 *        handler is logged and counted; it does not stop the job.
 * @returns 0, or EDDY_ESCRIPT when a handler failed.
 */
int eddy_job_tick(eddy_job *job, char *errstr, size_t errstr_size);

/** @brief Partition @p partition was assigned: its tasks exist from now on. */
void eddy_job_assign_partition(eddy_job *job, int32_t partition);

/** @brief Partition @p partition was revoked: the job forgets its tasks' in-memory state. */
void eddy_job_forget_partition(eddy_job *job, int32_t partition);

/**
 * @brief May @p next replace @p running? Same source topics; every store of
 *        @p running that @p next still uses keeps its kind and window. Removed
 *        stores are allowed (logged: their data stays on disk).
 * @returns 0, or EDDY_ETOPO with the precise reason in @p errstr.
 */
int eddy_job_compatible(eddy_job *next, eddy_job *running, char *errstr, size_t errstr_size);

/** @brief The version (content hash) of the job's script; "" until set. */
const char *eddy_job_version(const eddy_job *job);
void        eddy_job_set_version(eddy_job *job, const char *version);

/**
 * @brief Run the script's job:example{...} cases through this binary in file
 *        mode (a scratch state). @returns 0, or EDDY_ESCRIPT with the first
 *        difference in @p errstr. A job without examples passes.
 */
int eddy_job_check_examples(eddy_job *job, char *errstr, size_t errstr_size);

/**
 * @brief From another thread: make the running Lua code raise an error at its
 *        next hook check ("did not return within N ms"). Compiled traces do
 *        not check hooks. @locality any thread
 */
void eddy_job_interrupt(eddy_job *job, int timeout_ms);

/**
 * @brief One raw entry of @p store as a JSON object (key, value, window for
 *        windowed stores), in @p out; 0 when the entry is internal or expired.
 */
int eddy_job_dump(eddy_job *job, const char *store, const char *k, size_t klen, const char *v,
                  size_t vlen, char *out, size_t out_size);

/** @brief Did the watchdog interrupt this generation? */
int eddy_job_interrupted(const eddy_job *job);

/** @brief Forget every task's in-memory state (it is reread from LMDB). */
void eddy_job_forget_all(eddy_job *job);

/** @brief Run the script's job:on_reload(fn(ctx, old_version)) hook, if any. */
int eddy_job_on_reload(eddy_job *job, const char *old_version, char *errstr, size_t errstr_size);

#endif
