/*
 * fake_headers.h — librdkafka's two header accessors replaced by fakes, for tests
 * and fuzzers that include a host .c file to reach its static parsers (a consumed
 * message with headers cannot be made without a broker). A message's _private
 * points at a struct rd_kafka_headers_s; include this before the .c file.
 */
#ifndef EDDY_FAKE_HEADERS_H
#define EDDY_FAKE_HEADERS_H

#include <librdkafka/rdkafka.h>
#include <string.h>

struct rd_kafka_headers_s {          /* opaque in librdkafka: the fake's own */
    int         n;
    const char *name[4];
    const void *value[4];
    size_t      size[4];
};

/* Add a header (value NULL: a null value). */
static inline void fake_header_add(struct rd_kafka_headers_s *h, const char *name,
                                   const void *value, size_t size)
{
    h->name[h->n] = name;
    h->value[h->n] = value;
    h->size[h->n++] = size;
}

static rd_kafka_resp_err_t fake_message_headers(const rd_kafka_message_t *m,
                                                rd_kafka_headers_t **hdrsp)
{
    *hdrsp = m->_private;
    return *hdrsp && (*hdrsp)->n ? RD_KAFKA_RESP_ERR_NO_ERROR : RD_KAFKA_RESP_ERR__NOENT;
}

static rd_kafka_resp_err_t fake_header_get_last(const rd_kafka_headers_t *h, const char *name,
                                                const void **valuep, size_t *sizep)
{
    for (int i = h->n - 1; i >= 0; i--) {
        if (!strcmp(h->name[i], name)) {
            *valuep = h->value[i];
            *sizep = h->size[i];
            return RD_KAFKA_RESP_ERR_NO_ERROR;
        }
    }
    return RD_KAFKA_RESP_ERR__NOENT;
}

#define rd_kafka_message_headers fake_message_headers
#define rd_kafka_header_get_last fake_header_get_last

#endif
