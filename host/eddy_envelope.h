/*
 * eddy_envelope — the file-mode record format: one JSON object per line with
 * the fields of `kcat -C -J` (topic, partition, offset, ts, key, payload,
 * headers). Unknown fields (tstype, broker, ...) are accepted and ignored, so
 * a topic dumped with kcat replays unchanged.
 */
#ifndef EDDY_ENVELOPE_H
#define EDDY_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "eddy_buf.h"

typedef struct eddy_header {
    const char *name;
    size_t      name_len;
    const char *value;
    ssize_t     value_len;     /* -1: null value */
} eddy_header;

typedef struct eddy_envelope {
    const char *topic;         /* NULL when absent */
    size_t      topic_len;
    int32_t     partition;     /* -1 when absent */
    int64_t     offset;        /* -1 when absent */
    int64_t     ts;
    int         has_ts;
    const char *key;
    ssize_t     key_len;       /* -1: null or absent */
    const char *payload;
    ssize_t     payload_len;   /* -1: null */
    eddy_header *headers;      /* owned by the envelope, reused across parses */
    int          nheaders;
    int          hcap;
} eddy_envelope;

/**
 * @brief Parse one line into @p env. String fields are unescaped in place,
 *        so the pointers in @p env borrow @p line: valid while it is.
 * @returns 0, or EDDY_EPARSE with the reason in @p errstr.
 */
int eddy_envelope_parse(eddy_envelope *env, char *line, size_t len,
                        char *errstr, size_t errstr_size);

/** @brief Append one envelope line (newline included) to @p out. */
void eddy_envelope_write(eddy_buf *out, const char *topic, size_t topic_len,
                         int32_t partition, int64_t offset, int64_t ts,
                         const char *key, ssize_t key_len,
                         const char *payload, ssize_t payload_len,
                         const eddy_header *headers, int nheaders);

/** @brief Free the envelope's header array (not the envelope itself). */
void eddy_envelope_free(eddy_envelope *env);

#endif
