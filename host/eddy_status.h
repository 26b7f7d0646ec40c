/*
 * eddy_status — what the operator sees (GET /metrics, GET /status): the
 * version, the reload history, the tasks with their lag, the last error,
 * commit and processing latencies, store sizes, Lua memory. The processing
 * thread writes it; the HTTP thread reads it; a mutex keeps them apart.
 * Counters themselves live in eddy_metrics (eddy_stats).
 */
#ifndef EDDY_STATUS_H
#define EDDY_STATUS_H

#include <stdint.h>
#include "eddy_buf.h"

/** @brief Start: the job's name, script and first version (process-wide, once). */
void eddy_status_init(const char *job, const char *script, const char *version, const char *mode);

/** @brief A reload's outcome: "ok", "refused" or "rolled_back", with the reason when not ok. */
void eddy_status_reload(const char *outcome, const char *version, const char *from,
                        const char *why);
/** @brief The version now running (after a swap or a rollback). */
void eddy_status_version(const char *version);
/** @brief The last error (a dead letter's reason, a failed commit, ...). */
void eddy_status_error(const char *what);

/** One task: the partition of a topic, the next offset to process, the lag (-1: unknown). */
typedef struct eddy_status_task {
    char    topic[256];
    int32_t partition;
    int64_t offset;
    int64_t lag;
} eddy_status_task;
/** @brief The tasks owned now (replaces the previous list). */
void eddy_status_tasks(const eddy_status_task *tasks, int n);

/** @brief A batch of @p records took @p us microseconds to process (latency histogram). */
void eddy_status_batch(int records, int64_t us);
/** @brief A commit took @p us microseconds. */
void eddy_status_commit(int64_t us);
/** @brief The size in bytes of the Lua heap and of the state on disk. */
void eddy_status_sizes(int64_t lua_bytes, int64_t state_bytes);

/** @brief Prometheus text exposition of eddy_stats and the above. */
void eddy_status_metrics(eddy_buf *out);
/** @brief The JSON document of GET /status. */
void eddy_status_json(eddy_buf *out);

#endif
