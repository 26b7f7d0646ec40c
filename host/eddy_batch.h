/*
 * eddy_batch — the records of one batch, as Lua sees them through the FFI,
 * and the outputs the Lua pipeline emits for them. The first fields of
 * struct eddy_batch are the FFI view declared in lua/eddy/runtime.lua:
 * keep the two in sync.
 */
#ifndef EDDY_BATCH_H
#define EDDY_BATCH_H

#include <stdint.h>
#include "eddy_buf.h"

typedef struct eddy_rec {
    int64_t     offset;
    int64_t     ts;
    const char *key;        /* NULL: null key */
    const char *value;      /* NULL: null value (tombstone) */
    int32_t     klen;
    int32_t     vlen;
    int32_t     partition;
    int32_t     source;     /* index of the record's topic in the job's sources */
    int32_t     hdr;        /* first header in batch->hdrs */
    int32_t     nhdr;
} eddy_rec;

typedef struct eddy_hdr {
    const char *name;
    const char *value;      /* NULL: null header value */
    int32_t     nlen;
    int32_t     vlen;
} eddy_hdr;

typedef struct eddy_out {
    int32_t sink;           /* index in the job's sink topics */
    int32_t src;            /* index of the input record that produced it */
    int64_t ts;
    size_t  koff, voff;     /* offsets of key and value in batch->arena */
    int32_t klen, vlen;     /* -1: null */
} eddy_out;

/* Stages reported in batch->stage when a record fails. */
#define EDDY_STAGE_DESERIALIZE 1
#define EDDY_STAGE_PROCESS     2
#define EDDY_STAGE_SERIALIZE   3

typedef struct eddy_batch {
    /* --- FFI view (lua/eddy/runtime.lua: eddy_batch_view) --- */
    eddy_rec *recs;
    eddy_hdr *hdrs;
    int32_t   n;
    int32_t   cur;          /* record in hand, written by Lua */
    int32_t   stage;        /* EDDY_STAGE_*, written by Lua */
    int32_t   reserved;
    struct eddy_state *state;   /* the job's stores (eddy_state.h); NULL without state */
    int64_t   wall_ms;          /* wall clock at the start of the batch */
    int32_t   late;             /* records dropped as late in this batch (Lua counts) */
    int32_t   nil_keys;         /* records skipped by aggregations for a nil key */
    /* --- host only --- */
    int32_t   rcap, nhdrs, hcap;
    eddy_out *outs;
    int32_t   nouts, ocap;
    eddy_buf  arena;        /* bytes of the outputs */
} eddy_batch;

int  eddy_batch_new(eddy_batch **out);
void eddy_batch_destroy(eddy_batch *b);

/** @brief Forget all records and outputs; capacity is kept. */
void eddy_batch_reset(eddy_batch *b);

/**
 * @brief Append a record. Key, value and headers are borrowed: they must stay
 *        valid until the batch is reset. @returns the record.
 */
eddy_rec *eddy_batch_add(eddy_batch *b, int32_t source, int32_t partition, int64_t offset,
                         int64_t ts, const char *key, int32_t klen,
                         const char *value, int32_t vlen);

/** @brief Append a header to the record added last. */
void eddy_batch_add_header(eddy_batch *b, const char *name, int32_t nlen,
                           const char *value, int32_t vlen);

/** @brief Called from Lua (ffi.C) for each output; copies the bytes. */
void eddy_batch_emit(eddy_batch *b, int32_t sink, const char *k, int32_t klen,
                     const char *v, int32_t vlen, int64_t ts);

/** @brief Called from Lua (ffi.C) for a source read straight into a sink with
 *         byte serdes on both sides: the current record's key, value and
 *         timestamp, unchanged, as an output of @p sink (no Lua strings made). */
void eddy_batch_forward(eddy_batch *b, int32_t sink);

/** @brief Append @p src's records to @p dst (borrowed bytes). */
void eddy_batch_append_records(eddy_batch *dst, const eddy_batch *src);

/** @brief Make @p dst hold the same records as @p src (borrowed bytes, outputs cleared). */
void eddy_batch_copy_records(eddy_batch *dst, const eddy_batch *src);

/** @brief Drop the outputs record @p src emitted (it failed half-way). */
void eddy_batch_drop_outputs_of(eddy_batch *b, int32_t src);

#endif
