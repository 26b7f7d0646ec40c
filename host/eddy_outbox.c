/*
 * eddy_outbox — writes and records kept back during a probation (see eddy_outbox.h).
 * Every kept item is one malloc'd block: nothing moves until it is freed.
 */
#include "eddy_outbox.h"
#include "eddy.h"

#include <stdlib.h>
#include <string.h>

typedef struct write {
    eddy_sink *sink;
    char      *topic;
    int32_t    partition, fallback;
    int64_t    ts;
    char      *k, *v;
    ssize_t    klen, vlen;
    eddy_hdr  *hdrs;
    int        nhdrs;
} write_t;

typedef struct held {
    eddy_rec   rec;           /* pointers into the copies below */
    eddy_hdr  *hdrs;
    char      *bytes;
} held_t;

struct eddy_outbox {
    write_t *w;
    int      nw, wcap;
    held_t  *h;
    int      nh, hcap;
};

int eddy_outbox_new(eddy_outbox **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : EDDY_ENOMEM;
}

static char *dup_bytes(const char *p, ssize_t n)
{
    if (n < 0 || !p) {
        return NULL;
    }
    char *c = malloc((size_t)n + 1);
    if (!c) {
        abort();
    }
    memcpy(c, p, (size_t)n);
    c[n] = '\0';
    return c;
}

void eddy_outbox_add(eddy_outbox *ob, eddy_sink *sink, const char *topic, int32_t partition,
                     int32_t fallback, int64_t ts, const char *k, ssize_t klen, const char *v,
                     ssize_t vlen, const eddy_hdr *hdrs, int nhdrs)
{
    if (ob->nw == ob->wcap) {
        ob->wcap = ob->wcap ? ob->wcap * 2 : 64;
        ob->w = realloc(ob->w, sizeof(*ob->w) * (size_t)ob->wcap);
        if (!ob->w) {
            abort();
        }
    }
    write_t *w = &ob->w[ob->nw++];
    w->sink = sink;
    w->topic = dup_bytes(topic, (ssize_t)strlen(topic));
    w->partition = partition;
    w->fallback = fallback;
    w->ts = ts;
    w->k = dup_bytes(k, klen);
    w->klen = k ? klen : -1;
    w->v = dup_bytes(v, vlen);
    w->vlen = v ? vlen : -1;
    w->nhdrs = nhdrs;
    w->hdrs = nhdrs ? calloc((size_t)nhdrs, sizeof(eddy_hdr)) : NULL;
    for (int i = 0; i < nhdrs; i++) {
        w->hdrs[i].name = dup_bytes(hdrs[i].name, hdrs[i].nlen);
        w->hdrs[i].nlen = hdrs[i].nlen;
        w->hdrs[i].value = hdrs[i].value ? dup_bytes(hdrs[i].value, hdrs[i].vlen) : NULL;
        w->hdrs[i].vlen = hdrs[i].vlen;
    }
}

static void free_writes(eddy_outbox *ob)
{
    for (int i = 0; i < ob->nw; i++) {
        write_t *w = &ob->w[i];
        free(w->topic);
        free(w->k);
        free(w->v);
        for (int j = 0; j < w->nhdrs; j++) {
            free((char *)w->hdrs[j].name);
            free((char *)w->hdrs[j].value);
        }
        free(w->hdrs);
    }
    ob->nw = 0;
}

static void free_held(eddy_outbox *ob)
{
    for (int i = 0; i < ob->nh; i++) {
        free(ob->h[i].bytes);
        for (int j = 0; j < ob->h[i].rec.nhdr; j++) {
            free((char *)ob->h[i].hdrs[j].name);
            free((char *)ob->h[i].hdrs[j].value);
        }
        free(ob->h[i].hdrs);
    }
    ob->nh = 0;
}

int eddy_outbox_release(eddy_outbox *ob)
{
    int rc = 0;
    for (int i = 0; i < ob->nw && rc == 0; i++) {
        write_t *w = &ob->w[i];
        rc = eddy_sink_write(w->sink, w->topic, w->partition, w->fallback, w->ts, w->k, w->klen,
                             w->v, w->vlen, w->hdrs, w->nhdrs);
    }
    free_writes(ob);
    free_held(ob);
    return rc;
}

void eddy_outbox_drop_writes(eddy_outbox *ob)
{
    free_writes(ob);
}

void eddy_outbox_discard(eddy_outbox *ob)
{
    free_writes(ob);
    free_held(ob);
}

void eddy_outbox_hold_records(eddy_outbox *ob, const eddy_batch *b)
{
    for (int32_t i = 0; i < b->n; i++) {
        const eddy_rec *r = &b->recs[i];
        if (ob->nh == ob->hcap) {
            ob->hcap = ob->hcap ? ob->hcap * 2 : 64;
            ob->h = realloc(ob->h, sizeof(*ob->h) * (size_t)ob->hcap);
            if (!ob->h) {
                abort();
            }
        }
        held_t *h = &ob->h[ob->nh++];
        h->rec = *r;
        size_t kl = r->key ? (size_t)r->klen : 0, vl = r->value ? (size_t)r->vlen : 0;
        h->bytes = malloc(kl + vl + 1);
        if (!h->bytes) {
            abort();
        }
        if (r->key) {
            memcpy(h->bytes, r->key, kl);
            h->rec.key = h->bytes;
        }
        if (r->value) {
            memcpy(h->bytes + kl, r->value, vl);
            h->rec.value = h->bytes + kl;
        }
        h->hdrs = r->nhdr ? calloc((size_t)r->nhdr, sizeof(eddy_hdr)) : NULL;
        for (int32_t j = 0; j < r->nhdr; j++) {
            const eddy_hdr *s = &b->hdrs[r->hdr + j];
            h->hdrs[j].name = dup_bytes(s->name, s->nlen);
            h->hdrs[j].nlen = s->nlen;
            h->hdrs[j].value = s->value ? dup_bytes(s->value, s->vlen) : NULL;
            h->hdrs[j].vlen = s->vlen;
        }
    }
}

int eddy_outbox_held(const eddy_outbox *ob)
{
    return ob->nh;
}

void eddy_outbox_held_into(const eddy_outbox *ob, eddy_batch *dst)
{
    for (int i = 0; i < ob->nh; i++) {
        const eddy_rec *r = &ob->h[i].rec;
        eddy_batch_add(dst, r->source, r->partition, r->offset, r->ts, r->key,
                       r->key ? r->klen : -1, r->value, r->value ? r->vlen : -1);
        for (int32_t j = 0; j < r->nhdr; j++) {
            const eddy_hdr *hd = &ob->h[i].hdrs[j];
            eddy_batch_add_header(dst, hd->name, hd->nlen, hd->value, hd->value ? hd->vlen : -1);
        }
    }
}

void eddy_outbox_destroy(eddy_outbox *ob)
{
    if (!ob) {
        return;
    }
    eddy_outbox_discard(ob);
    free(ob->w);
    free(ob->h);
    free(ob);
}
