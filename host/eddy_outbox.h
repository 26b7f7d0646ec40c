/*
 * eddy_outbox — what a new version on probation produces, kept back until the
 * runner knows whether the version stays: its writes to the sinks (outputs
 * and dead letters, in order) and copies of the input records of batches that
 * ended in a failure streak. On a rollback everything is discarded and the
 * kept records go to the old version; otherwise the writes are released.
 */
#ifndef EDDY_OUTBOX_H
#define EDDY_OUTBOX_H

#include <sys/types.h>
#include "eddy_batch.h"
#include "eddy_sink.h"

typedef struct eddy_outbox eddy_outbox;

int  eddy_outbox_new(eddy_outbox **out);
void eddy_outbox_destroy(eddy_outbox *ob);

/** @brief Keep a sink write back (everything is copied). */
void eddy_outbox_add(eddy_outbox *ob, eddy_sink *sink, const char *topic, int32_t partition,
                     int32_t fallback, int64_t ts, const char *k, ssize_t klen, const char *v,
                     ssize_t vlen, const eddy_hdr *hdrs, int nhdrs);

/** @brief Write everything kept back, in order; forget the kept records. */
int  eddy_outbox_release(eddy_outbox *ob);

/** @brief Forget the kept writes only (the kept records stay, to be reprocessed). */
void eddy_outbox_drop_writes(eddy_outbox *ob);

/** @brief Forget the kept writes and records. */
void eddy_outbox_discard(eddy_outbox *ob);

/** @brief Keep copies of @p b's records (the batch ended in a failure streak). */
void eddy_outbox_hold_records(eddy_outbox *ob, const eddy_batch *b);

/** @brief How many records are kept. */
int  eddy_outbox_held(const eddy_outbox *ob);

/** @brief Append the kept records to @p dst (borrowed until the next discard/release). */
void eddy_outbox_held_into(const eddy_outbox *ob, eddy_batch *dst);

#endif
