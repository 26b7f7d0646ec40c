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
 *        set), then serve until *stop is set.
 *
 * With @p control_path set, a FIFO is created there first (a stale FIFO is
 * replaced; any other file is an error) and every newline-terminated command
 * written to it is applied to the running cluster (eddy_broker_control.h) and
 * answered with one log line, "broker: control: CMD: ok" or an error line; a
 * bad command never stops the broker. The FIFO is removed on exit.
 * @returns 0, a positive errno or an EDDY_E* code.
 */
int eddy_broker_run(int nbrokers, const eddy_broker_topic *topics, int ntopics,
                    const char *bootstrap_file, const char *control_path,
                    volatile sig_atomic_t *stop);

#endif
