/*
 * eddy_changelog — the state's changelog topics, and restore from them.
 *
 * Every store change goes to <app>-<family>-changelog, partition = the task's
 * partition (a store and its "store#..." indexes share the store's topic; a
 * processor's timers use the processor's name; the task's stream time and its
 * commit markers use <app>-__task-<S>-changelog). At each commit the changed
 * keys are written once with their current value (null: deleted); after they
 * are acknowledged, one commit marker per task records the input offsets the
 * state reflects and, per family, the changelog position the state reflects.
 * LMDB records the same positions (store "__changelog") in the transaction
 * that commits the state.
 *
 * Restore, when a task is assigned: from the positions LMDB recorded (or the
 * beginning, when there is no local state) up to the last commit marker,
 * applying every record; records after that marker belong to an interval
 * that never committed (a crash, an aborted transaction on a broker without
 * transaction markers) and are not applied — their keys are marked changed,
 * so the next commit writes their true values after them and a later replay
 * from the beginning ends at the same state. Compaction keeps that true: it
 * keeps the last record per key, in order.
 */
#ifndef EDDY_CHANGELOG_H
#define EDDY_CHANGELOG_H

#include <signal.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include "eddy_job.h"
#include "eddy_state.h"

typedef struct eddy_changelog eddy_changelog;

/**
 * @brief Changelogs of @p st, written with @p producer and read back with
 *        @p reader (a consumer handle used with assign() only; taken over).
 */
int  eddy_changelog_new(eddy_changelog **out, rd_kafka_t *producer, rd_kafka_t *reader,
                        const char *app_id, eddy_state *st);
/** @brief Free everything; NULL is a no-op. The producer is not touched. */
void eddy_changelog_destroy(eddy_changelog *cl);

/** @brief The job whose layout (sources and families per sub-topology) applies now. */
void eddy_changelog_set_job(eddy_changelog *cl, eddy_job *job);
/** @returns the sub-topology that reads @p topic, or -1. */
int  eddy_changelog_sub_of(const eddy_changelog *cl, const char *topic);

/** @brief Produce every key changed since the last commit, with its value. */
int  eddy_changelog_write_changes(eddy_changelog *cl);
/** @brief After the changes are acknowledged: one commit marker per task written to. */
int  eddy_changelog_write_markers(eddy_changelog *cl);
/** @brief After the markers are acknowledged: their positions into LMDB's open transactions. */
int  eddy_changelog_record(eddy_changelog *cl, char *errstr, size_t errstr_size);

/**
 * @brief Bring the tasks @p ids ((sub-topology << 16) | partition) up to the
 *        last commit in their changelogs before they process a record (see
 *        above), all at once; the input offsets of that commit go to each
 *        task's "__offsets" store. The caller commits the state afterwards.
 * @returns 0, or EDDY_EKAFKA / -1 with the reason in @p errstr.
 */
int  eddy_changelog_restore_tasks(eddy_changelog *cl, const int32_t *ids, int n,
                                  volatile sig_atomic_t *stop, char *errstr, size_t errstr_size);
/** @brief The tasks of @p partition were revoked (after their last commit). */
void eddy_changelog_forget(eddy_changelog *cl, int32_t partition);

/** @brief Restore statistics since the start: records applied, milliseconds spent. */
void eddy_changelog_restored(const eddy_changelog *cl, int64_t *records, int64_t *ms);

/** @brief Delivery report of a changelog record (its msg_opaque): note its position. */
void eddy_changelog_delivered(void *msg_opaque, int64_t offset);

#endif
