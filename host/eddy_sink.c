/*
 * eddy_sink — the sink interface and its file implementation (envelope lines).
 */
#include "eddy_sink.h"
#include "eddy.h"
#include "eddy_envelope.h"
#include "eddy_murmur2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct eddy_sink {
    const eddy_sink_ops *ops;
    void                *ctx;
};

int eddy_sink_new(eddy_sink **out, const eddy_sink_ops *ops, void *ctx)
{
    eddy_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        return EDDY_ENOMEM;
    }
    s->ops = ops;
    s->ctx = ctx;
    *out = s;
    return 0;
}

void eddy_sink_destroy(eddy_sink *s)
{
    if (!s) {
        return;
    }
    s->ops->close(s->ctx);
    free(s);
}

int eddy_sink_write(eddy_sink *s, const char *topic, int32_t partition, int32_t fallback_partition,
                    int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                    const eddy_hdr *hdrs, int nhdrs)
{
    return s->ops->write(s->ctx, topic, partition, fallback_partition, ts, k, klen, v, vlen,
                         hdrs, nhdrs);
}

int eddy_sink_flush(eddy_sink *s)
{
    return s->ops->flush(s->ctx);
}

/* ---- file sink ---- */

#define FILE_FLUSH_BYTES (1 << 20)

typedef struct file_topic {
    char    *name;
    int64_t *next_offset;       /* per partition */
    int32_t  npart;
} file_topic;

typedef struct file_sink {
    FILE       *fp;
    int         owned;
    int         partitions;
    eddy_buf    buf;
    file_topic *topics;
    int         ntopics, tcap;
    eddy_header *hdrs;
    int         hcap;
} file_sink;

static int64_t next_offset(file_sink *fs, const char *topic, int32_t partition)
{
    file_topic *t = NULL;
    for (int i = 0; i < fs->ntopics; i++) {
        if (strcmp(fs->topics[i].name, topic) == 0) {
            t = &fs->topics[i];
            break;
        }
    }
    if (!t) {
        if (fs->ntopics == fs->tcap) {
            int cap = fs->tcap ? fs->tcap * 2 : 8;
            file_topic *nt = realloc(fs->topics, sizeof(*nt) * (size_t)cap);
            if (!nt) {
                abort();
            }
            fs->topics = nt;
            fs->tcap = cap;
        }
        t = &fs->topics[fs->ntopics++];
        t->name = strdup(topic);
        t->next_offset = NULL;
        t->npart = 0;
    }
    if (partition >= t->npart) {
        int32_t n = partition + 1;
        int64_t *p = realloc(t->next_offset, sizeof(int64_t) * (size_t)n);
        if (!p) {
            abort();
        }
        memset(p + t->npart, 0, sizeof(int64_t) * (size_t)(n - t->npart));
        t->next_offset = p;
        t->npart = n;
    }
    return t->next_offset[partition]++;
}

static int file_flush(void *ctx)
{
    file_sink *fs = ctx;
    if (fs->buf.len) {
        if (fwrite(fs->buf.data, 1, fs->buf.len, fs->fp) != fs->buf.len) {
            return errno ? errno : EIO;
        }
        eddy_buf_reset(&fs->buf);
    }
    return fflush(fs->fp) == 0 ? 0 : errno;
}

static int file_write(void *ctx, const char *topic, int32_t partition, int32_t fallback,
                      int64_t ts, const char *k, ssize_t klen, const char *v, ssize_t vlen,
                      const eddy_hdr *hdrs, int nhdrs)
{
    file_sink *fs = ctx;
    if (partition < 0) {
        partition = klen >= 0 ? eddy_murmur2_partition(k, (size_t)klen, fs->partitions)
                              : (fallback >= 0 ? fallback % fs->partitions : 0);
    }
    if (nhdrs > fs->hcap) {
        eddy_header *h = realloc(fs->hdrs, sizeof(*h) * (size_t)nhdrs);
        if (!h) {
            return EDDY_ENOMEM;
        }
        fs->hdrs = h;
        fs->hcap = nhdrs;
    }
    for (int i = 0; i < nhdrs; i++) {
        fs->hdrs[i].name = hdrs[i].name;
        fs->hdrs[i].name_len = (size_t)hdrs[i].nlen;
        fs->hdrs[i].value = hdrs[i].value;
        fs->hdrs[i].value_len = hdrs[i].value ? hdrs[i].vlen : -1;
    }
    eddy_envelope_write(&fs->buf, topic, strlen(topic), partition,
                        next_offset(fs, topic, partition), ts, k, klen, v, vlen, fs->hdrs, nhdrs);
    if (fs->buf.len >= FILE_FLUSH_BYTES) {
        return file_flush(fs);
    }
    return 0;
}

static void file_close(void *ctx)
{
    file_sink *fs = ctx;
    file_flush(fs);
    if (fs->owned) {
        fclose(fs->fp);
    }
    for (int i = 0; i < fs->ntopics; i++) {
        free(fs->topics[i].name);
        free(fs->topics[i].next_offset);
    }
    free(fs->topics);
    eddy_buf_free(&fs->buf);
    free(fs->hdrs);
    free(fs);
}

static const eddy_sink_ops file_ops = {file_write, file_flush, file_close};

int eddy_sink_file_open(eddy_sink **out, const char *path, int partitions,
                        char *errstr, size_t errstr_size)
{
    file_sink *fs = calloc(1, sizeof(*fs));
    if (!fs) {
        return EDDY_ENOMEM;
    }
    fs->partitions = partitions > 0 ? partitions : 1;
    if (strcmp(path, "-") == 0) {
        fs->fp = stdout;
    } else if (strcmp(path, "stderr") == 0) {
        fs->fp = stderr;
    } else {
        fs->fp = fopen(path, "w");
        fs->owned = 1;
        if (!fs->fp) {
            int err = errno;
            snprintf(errstr, errstr_size, "cannot open %s for writing: %s", path, strerror(err));
            free(fs);
            return err;
        }
    }
    int rc = eddy_sink_new(out, &file_ops, fs);
    if (rc) {
        file_close(fs);
    }
    return rc;
}
