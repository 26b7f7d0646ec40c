/*
 * eddy_workers — `eddy run --threads N` in Kafka mode: N processing workers,
 * each with its own Lua state, consumer, producer and tasks, all members of
 * the job's group, so Kafka spreads the partitions over them as over
 * instances. Workers are processes (forked after the command line is
 * checked), not threads: LMDB allows an environment to be opened once per
 * process, and a worker may read another's task environment (input offsets);
 * a worker that crashes takes nothing else down with it.
 *
 * The parent forwards SIGINT/SIGTERM/SIGHUP to every worker and waits; when
 * one exits with an error, the others are stopped and that status is the
 * parent's.
 */
#ifndef EDDY_WORKERS_H
#define EDDY_WORKERS_H

#include <signal.h>

/**
 * @brief Fork @p n workers.
 * @returns 0 in a worker, with *index set to 1..n; 1 in the parent after every
 *          worker has exited, with *status the exit status to return; -1 when
 *          fork fails (errno set).
 */
int eddy_workers_run(int n, int *index, int *status, volatile sig_atomic_t *stop,
                     volatile sig_atomic_t *hup);

#endif
