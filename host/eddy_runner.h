/*
 * eddy_runner — runs a filled batch through a job and delivers the results:
 * outputs to the sink, failed records to the error policy (dlq | skip | fail).
 * Shared by file mode and Kafka mode, so both treat records the same way.
 */
#ifndef EDDY_RUNNER_H
#define EDDY_RUNNER_H

#include <sys/types.h>
#include "eddy_job.h"
#include "eddy_sink.h"

typedef struct eddy_runner eddy_runner;

/** @brief @p job, @p sink and @p dlq are borrowed and must outlive the runner. */
int  eddy_runner_new(eddy_runner **out, eddy_job *job, eddy_sink *sink, eddy_sink *dlq,
                     const char *app_id);
void eddy_runner_destroy(eddy_runner *r);

/**
 * @brief Give the runner the job's state (borrowed; NULL: a stateless job).
 *        Store writes of a failing record are undone; eddy_runner_commit()
 *        commits the state after the outputs are flushed.
 */
void eddy_runner_set_state(eddy_runner *r, struct eddy_state *st);
struct eddy_state *eddy_runner_state(const eddy_runner *r);

/**
 * @brief Flush the outputs, then commit the state (the order that keeps the
 *        state from getting ahead of what was acknowledged).
 * @returns 0, or an error with the reason in @p errstr.
 */
int eddy_runner_commit(eddy_runner *r, char *errstr, size_t errstr_size);

/**
 * @brief Run the job's wall-clock work between batches (eddy_job_tick) and
 *        write what it emits. A failing handler is logged and counted.
 */
int eddy_runner_tick(eddy_runner *r);

/** @brief Swap the job (after a reload); the batch in hand must be done. */
void eddy_runner_set_job(eddy_runner *r, eddy_job *job);

/** @brief The job generation in use: sources fill eddy_job_batch() of it. */
eddy_job *eddy_runner_job(eddy_runner *r);

/**
 * @brief Swap in a reloaded generation (owned by the runner from now on). Call
 *        it between two batches, right after a commit: every record before the
 *        cut was handled by the old version, every record after by the new one.
 *        The old one is kept for a probation period; if the new version fails
 *        on @p rollback_errors records in a row (or its on_reload hook fails),
 *        the runner rolls back: the failed batch's state is aborted and the
 *        batch is processed again by the old version.
 */
void eddy_runner_swap(eddy_runner *r, eddy_job *next, int rollback_errors);

/** @brief A failure streak of a new version goes on across batches: commit nothing. */
int eddy_runner_holding(const eddy_runner *r);

/** @brief The input ended or the job stops: release what a probation kept back. */
int eddy_runner_finish(eddy_runner *r);

/** @brief During a probation the caller commits after every batch (a rollback
 *         must only ever undo the batch in hand). */
int eddy_runner_wants_commit(const eddy_runner *r);

/**
 * @brief Run the job's batch and write its outputs to the sink.
 * @returns 0; EDDY_ESCRIPT when a record failed under on_error = "fail"
 *          (the message is in eddy_runner_error()); or a sink error.
 */
int eddy_runner_process(eddy_runner *r);

/**
 * @brief A record that never reached the job (a malformed envelope line, a
 *        topic the job does not read): apply the error policy to it.
 */
int eddy_runner_bad_input(eddy_runner *r, const char *topic, int32_t partition, int64_t offset,
                          int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                          const char *stage, const char *msg);

/** @brief Flush the sink and the DLQ (their writes are durable when it returns 0). */
int eddy_runner_flush(eddy_runner *r);

/** @brief The message of the record that stopped the run (on_error = "fail"). */
const char *eddy_runner_error(const eddy_runner *r);

#endif
