/*
 * eddy_dedup — no repartitioned record is applied twice.
 *
 * Under at_least_once a crash makes the upstream sub-topology process its
 * inputs again since its last commit, and write their repartition records
 * again (an aborted transaction's records stay visible on a broker without
 * transaction markers, too). Each repartition record carries its origin in
 * the header eddy.origin, "<topic>:<partition>:<offset>:<n>" (the upstream
 * input record, and the n-th output it made); the downstream task keeps the
 * highest position (offset, n) it has taken per origin partition, in its
 * store "__dedup" (logged to its changelog like the rest of its state, so a
 * new owner has it too), and skips a record at or below it.
 */
#ifndef EDDY_DEDUP_H
#define EDDY_DEDUP_H

#include <stddef.h>
#include <stdint.h>
#include "eddy_state.h"

typedef struct eddy_dedup eddy_dedup;

eddy_dedup *eddy_dedup_new(eddy_state *st);
void        eddy_dedup_destroy(eddy_dedup *d);

/**
 * @brief A record with origin header value @p origin (@p olen bytes) reached
 *        task @p task.
 * @returns 1: new, take it (its position is remembered); 0: a duplicate, skip
 *          it; -1: the header is malformed (take it).
 */
int  eddy_dedup_check(eddy_dedup *d, int32_t task, const char *origin, size_t olen);
/** @brief Write the positions taken since the last flush into the tasks' open transactions. */
int  eddy_dedup_flush(eddy_dedup *d);
/** @brief Forget what memory holds for the tasks of @p partition (-1: all); reread from LMDB. */
void eddy_dedup_forget(eddy_dedup *d, int32_t partition);
/** @brief Records skipped as duplicates since the start. */
uint64_t eddy_dedup_skipped(const eddy_dedup *d);

#endif
