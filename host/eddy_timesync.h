/*
 * eddy_timesync — a task's records in timestamp order across its partitions
 * (Kafka Streams' stream-time synchronization), for jobs with tables: a
 * stream record is joined with the table as of its timestamp only if the
 * table's older records are processed first. Records wait in a queue per
 * partition; a task hands out the head with the smallest timestamp, and holds
 * back while one of its partitions has nothing buffered but is not at its end
 * (the broker's high watermark), for at most max_idle_ms (KS max.task.idle.ms).
 * Within a partition the order stays the offset order.
 */
#ifndef EDDY_TIMESYNC_H
#define EDDY_TIMESYNC_H

#include <stdint.h>
#include <sys/types.h>
#include <librdkafka/rdkafka.h>

typedef struct eddy_timesync eddy_timesync;

eddy_timesync *eddy_timesync_new(int max_idle_ms);
/** @brief Free it and every record it holds; NULL is a no-op. */
void    eddy_timesync_destroy(eddy_timesync *ts);
/**
 * @brief @p topic [@p partition] is assigned, in task @p task, reading from
 *        offset @p start (-1: not known; the partition's beginning is assumed).
 */
void    eddy_timesync_assign(eddy_timesync *ts, const char *topic, int32_t partition, int32_t task,
                             int64_t start);
/** @brief Forget the partitions numbered @p partition (-1: all), dropping their records. */
void    eddy_timesync_drop(eddy_timesync *ts, int32_t partition);
/** @brief Take a consumed record (of an assigned partition; others are destroyed). */
void    eddy_timesync_push(eddy_timesync *ts, rd_kafka_message_t *m);
/** @returns how many records it holds (fetched, not yet pulled). */
size_t  eddy_timesync_held(const eddy_timesync *ts);
/** @returns how many records were moved to @p out, in the order to process them. */
ssize_t eddy_timesync_pull(eddy_timesync *ts, rd_kafka_t *consumer, rd_kafka_message_t **out,
                           size_t max);

#endif
