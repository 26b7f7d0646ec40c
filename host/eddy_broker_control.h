/*
 * eddy_broker_control — fault injection for `eddy broker --control PATH`: one
 * text command line applied to the mock cluster with librdkafka's mock API.
 *
 * Commands (words separated by blanks; API and ERROR names case-insensitive):
 *   down BROKER_ID                        disconnect a broker, refuse new connections
 *   up BROKER_ID                          accept connections again
 *   errors API COUNT ERROR [ERROR...]     fail the next COUNT requests of API (any
 *                                         broker) with the ERRORs in turn, repeated
 *                                         as needed
 *   topic NAME PARTITIONS                 create a topic (replication factor 1)
 *   leader TOPIC PARTITION BROKER_ID      move a partition's leader (-1: none)
 *   coordinator group|transaction KEY BROKER_ID
 *                                         pin a group's / transactional id's coordinator
 *   rtt BROKER_ID MS                      delay every response of a broker
 * BROKER_ID -1 means every broker for down, up and rtt. API is a Kafka API name
 * (Produce, Fetch, OffsetCommit, JoinGroup, ...) or its numeric key; ERROR is a
 * name as rd_kafka_err2name() prints it (NOT_COORDINATOR, REQUEST_TIMED_OUT,
 * _TRANSPORT to drop the connection, ...) or a number.
 */
#ifndef EDDY_BROKER_CONTROL_H
#define EDDY_BROKER_CONTROL_H

#include <librdkafka/rdkafka.h>      /* rdkafka_mock.h needs it first */
#include <librdkafka/rdkafka_mock.h>
#include <stddef.h>

/**
 * @brief Apply one command @p line (no newline; surrounding blanks ignored) to
 *        @p mc. Thread-safe with respect to the cluster: the mock API hands the
 *        change to the cluster's own thread and waits for it.
 * @returns 0, EDDY_EPARSE for a malformed command or EDDY_EKAFKA when the mock
 *          refused it; either way a one-line reason is in @p errstr.
 */
int eddy_broker_control_apply(rd_kafka_mock_cluster_t *mc, const char *line,
                              char *errstr, size_t errstr_size);

#endif
