/*
 * eddy_file — file mode: read source records from a file or stdin (kcat -J
 * envelope lines, or plain lines as values), run them through the job in
 * batches, until the input ends or a stop is asked for.
 */
#ifndef EDDY_FILE_H
#define EDDY_FILE_H

#include <signal.h>
#include "eddy_job.h"
#include "eddy_runner.h"

typedef struct eddy_file_conf {
    const char *input;              /* a path, or "-" for stdin */
    int         lines;              /* 1: each line is a value; 0: envelope */
    int         partitions;         /* records without a partition go by murmur2(key) % this */
    volatile sig_atomic_t *stop;    /* set by a signal handler: stop after the batch in hand */
    struct eddy_reload *reload;     /* hot reload triggers, or NULL */
    int         rollback_errors;
    int         progress;               /* a progress line on stderr (a TTY, not --quiet) */
    struct eddy_http *http;             /* --http: store queries answered between batches */
    int         commit_interval_ms;     /* outputs flushed, state committed at least this often
                                         * while the input keeps coming (and whenever it pauses) */
} eddy_file_conf;

/**
 * @brief Run the job over the input. @returns 0 at the end of the input (or a
 *        stop), EDDY_ESCRIPT when on_error = "fail" stopped it, or an errno.
 */
int eddy_file_run(eddy_runner *r, eddy_job *job, const eddy_file_conf *conf,
                  char *errstr, size_t errstr_size);

#endif
