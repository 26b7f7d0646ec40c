/*
 * eddy_sink — where output and dead-letter records go: a file of envelope
 * lines (eddy_sink_file_open) or a Kafka producer (eddy_kafka_sink_open in
 * eddy_kafka.c). One interface so the runner does not care which.
 */
#ifndef EDDY_SINK_H
#define EDDY_SINK_H

#include <stdint.h>
#include <sys/types.h>
#include "eddy_batch.h"

typedef struct eddy_sink eddy_sink;

typedef struct eddy_sink_ops {
    /* partition -1: by key (murmur2); @p fallback_partition is used for null keys in file mode */
    int  (*write)(void *ctx, const char *topic, int32_t partition, int32_t fallback_partition,
                  int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                  const eddy_hdr *hdrs, int nhdrs);
    /* everything written so far is durable / acknowledged when this returns 0 */
    int  (*flush)(void *ctx);
    void (*close)(void *ctx);
} eddy_sink_ops;

/** @brief Wrap an implementation; @p ctx is owned by the sink (ops->close frees it). */
int  eddy_sink_new(eddy_sink **out, const eddy_sink_ops *ops, void *ctx);
void eddy_sink_destroy(eddy_sink *s);

int eddy_sink_write(eddy_sink *s, const char *topic, int32_t partition, int32_t fallback_partition,
                    int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                    const eddy_hdr *hdrs, int nhdrs);
int eddy_sink_flush(eddy_sink *s);

/**
 * @brief A sink writing envelope lines to @p path ("-" for stdout, "stderr"
 *        for stderr); records without a partition go to murmur2(key) % @p partitions.
 */
int eddy_sink_file_open(eddy_sink **out, const char *path, int partitions,
                        char *errstr, size_t errstr_size);

#endif
