/*
 * eddy_metrics — process-wide counters (CONTRACT metric names in comments).
 * Written by the processing thread only; read by whoever reports them.
 */
#ifndef EDDY_METRICS_H
#define EDDY_METRICS_H

#include <stdint.h>

typedef struct eddy_metrics {
    uint64_t records_in;      /* eddy_records_in_total */
    uint64_t records_out;     /* eddy_records_out_total */
    uint64_t errors;          /* eddy_errors_total: every failed record, whatever the policy */
    uint64_t dead_lettered;   /* eddy_dlq_records_total */
    uint64_t batches;
    uint64_t late_records;    /* eddy_late_records_total */
    uint64_t nil_keys;        /* eddy_skipped_nil_key_total */
    uint64_t reloads_ok;      /* eddy_reloads_total{outcome="ok"} */
    uint64_t reloads_refused; /* eddy_reloads_total{outcome="refused"} */
    uint64_t reloads_rolled_back; /* eddy_reloads_total{outcome="rolled_back"} */
    /* appended fields only: Lua's cdef (lua/eddy/state.lua) declares the ones above */
    uint64_t txn_commits;     /* eddy_transactions_total{outcome="committed"} */
    uint64_t txn_aborts;      /* eddy_transactions_total{outcome="aborted"} */
} eddy_metrics;

extern eddy_metrics eddy_stats;

#endif
