/*
 * eddy_batch — records in, outputs out, for one call into Lua (see eddy_batch.h).
 */
#include "eddy_batch.h"
#include "eddy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *grow(void *p, int32_t *cap, size_t elem)
{
    int32_t ncap = *cap ? *cap * 2 : 1024;
    void *np = realloc(p, (size_t)ncap * elem);
    if (!np) {
        fprintf(stderr, "eddy: out of memory\n");
        abort();
    }
    *cap = ncap;
    return np;
}

int eddy_batch_new(eddy_batch **out)
{
    eddy_batch *b = calloc(1, sizeof(*b));
    if (!b) {
        return EDDY_ENOMEM;
    }
    *out = b;
    return 0;
}

void eddy_batch_destroy(eddy_batch *b)
{
    if (!b) {
        return;
    }
    free(b->recs);
    free(b->hdrs);
    free(b->outs);
    eddy_buf_free(&b->arena);
    free(b);
}

void eddy_batch_reset(eddy_batch *b)
{
    b->n = 0;
    b->nhdrs = 0;
    b->nouts = 0;
    b->cur = 0;
    b->stage = 0;
    b->arena.len = 0;
}

eddy_rec *eddy_batch_add(eddy_batch *b, int32_t source, int32_t partition, int64_t offset,
                         int64_t ts, const char *key, int32_t klen,
                         const char *value, int32_t vlen)
{
    if (b->n == b->rcap) {
        b->recs = grow(b->recs, &b->rcap, sizeof(eddy_rec));
    }
    eddy_rec *r = &b->recs[b->n++];
    r->offset = offset;
    r->ts = ts;
    r->key = klen < 0 ? NULL : (key ? key : "");
    r->klen = klen < 0 ? 0 : klen;
    r->value = vlen < 0 ? NULL : (value ? value : "");
    r->vlen = vlen < 0 ? 0 : vlen;
    r->partition = partition;
    r->source = source;
    r->hdr = b->nhdrs;
    r->nhdr = 0;
    return r;
}

void eddy_batch_add_header(eddy_batch *b, const char *name, int32_t nlen,
                           const char *value, int32_t vlen)
{
    if (b->nhdrs == b->hcap) {
        b->hdrs = grow(b->hdrs, &b->hcap, sizeof(eddy_hdr));
    }
    eddy_hdr *h = &b->hdrs[b->nhdrs++];
    h->name = name;
    h->nlen = nlen;
    h->value = vlen < 0 ? NULL : (value ? value : "");
    h->vlen = vlen < 0 ? 0 : vlen;
    b->recs[b->n - 1].nhdr++;
}

void eddy_batch_emit(eddy_batch *b, int32_t sink, const char *k, int32_t klen,
                     const char *v, int32_t vlen, int64_t ts)
{
    if (b->nouts == b->ocap) {
        b->outs = grow(b->outs, &b->ocap, sizeof(eddy_out));
    }
    eddy_out *o = &b->outs[b->nouts++];
    o->sink = sink;
    o->src = b->cur;
    o->ts = ts;
    o->klen = k ? klen : -1;
    o->vlen = v ? vlen : -1;
    o->koff = b->arena.len;
    if (k) {
        eddy_buf_append(&b->arena, k, (size_t)klen);
    }
    o->voff = b->arena.len;
    if (v) {
        eddy_buf_append(&b->arena, v, (size_t)vlen);
    }
}

void eddy_batch_forward(eddy_batch *b, int32_t sink)
{
    const eddy_rec *r = &b->recs[b->cur];
    eddy_batch_emit(b, sink, r->key, r->klen, r->value, r->vlen, r->ts);
}

void eddy_batch_drop_outputs_of(eddy_batch *b, int32_t src)
{
    while (b->nouts > 0 && b->outs[b->nouts - 1].src == src) {
        b->nouts--;
    }
}

void eddy_batch_copy_records(eddy_batch *dst, const eddy_batch *src)
{
    eddy_batch_reset(dst);
    eddy_batch_append_records(dst, src);
}

void eddy_batch_append_records(eddy_batch *dst, const eddy_batch *src)
{
    for (int32_t i = 0; i < src->n; i++) {
        const eddy_rec *r = &src->recs[i];
        eddy_rec *c = eddy_batch_add(dst, r->source, r->partition, r->offset, r->ts, r->key,
                                     r->key ? r->klen : -1, r->value, r->value ? r->vlen : -1);
        for (int32_t h = r->hdr; h < r->hdr + r->nhdr; h++) {
            const eddy_hdr *hd = &src->hdrs[h];
            eddy_batch_add_header(dst, hd->name, hd->nlen, hd->value, hd->value ? hd->vlen : -1);
        }
        (void)c;
    }
}
