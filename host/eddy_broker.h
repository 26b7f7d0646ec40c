/*
 * eddy_broker — `eddy broker`: librdkafka's mock cluster as a process, the
 * development broker for the demo and the tests (Kafka protocol over TCP).
 */
#ifndef EDDY_BROKER_H
#define EDDY_BROKER_H

#include <signal.h>

typedef struct eddy_broker_topic {
    const char *name;
    int         partitions;
} eddy_broker_topic;

/**
 * @brief Start a mock cluster of @p nbrokers, create @p topics, print
 *        "bootstrap: HOST:PORT[,...]" on stdout (and to @p bootstrap_file when
 *        set), then serve until *stop is set. @returns 0 or an EDDY_E* code.
 */
int eddy_broker_run(int nbrokers, const eddy_broker_topic *topics, int ntopics,
                    const char *bootstrap_file, volatile sig_atomic_t *stop);

#endif
