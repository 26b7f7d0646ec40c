/*
 * eddy_keyset — open addressing over entry indexes; the entries themselves
 * ([db][klen][key bytes]) are appended to one buffer (see eddy_keyset.h).
 */
#include "eddy_keyset.h"
#include "eddy_buf.h"

#include <stdlib.h>
#include <string.h>

struct eddy_keyset {
    eddy_buf  bytes;      /* the entries, back to back */
    size_t   *offs;       /* entry i starts at bytes.data + offs[i] */
    size_t    n, ocap;
    uint32_t *slots;      /* 0 = empty, else entry index + 1 */
    size_t    nslots;     /* a power of two, at least 2 * n */
};

typedef struct entry_head {
    int32_t  db;
    uint32_t klen;
} entry_head;

static uint64_t hash(int32_t db, const char *k, size_t klen)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uint32_t)db;   /* FNV-1a */
    for (size_t i = 0; i < klen; i++) {
        h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

eddy_keyset *eddy_keyset_new(void)
{
    eddy_keyset *s = calloc(1, sizeof(*s));
    if (!s) {
        return NULL;
    }
    s->nslots = 64;
    s->slots = calloc(s->nslots, sizeof(*s->slots));
    if (!s->slots) {
        free(s);
        return NULL;
    }
    return s;
}

void eddy_keyset_destroy(eddy_keyset *s)
{
    if (!s) {
        return;
    }
    eddy_buf_free(&s->bytes);
    free(s->offs);
    free(s->slots);
    free(s);
}

static const entry_head *head_at(const eddy_keyset *s, size_t i)
{
    return (const entry_head *)(s->bytes.data + s->offs[i]);
}

static void put_slot(uint32_t *slots, size_t nslots, uint64_t h, uint32_t v)
{
    size_t m = nslots - 1;
    for (size_t j = h & m;; j = (j + 1) & m) {
        if (!slots[j]) {
            slots[j] = v;
            return;
        }
    }
}

static void grow(eddy_keyset *s)
{
    size_t ns = s->nslots * 2;
    uint32_t *slots = calloc(ns, sizeof(*slots));
    if (!slots) {
        abort();
    }
    for (size_t i = 0; i < s->n; i++) {
        const entry_head *e = head_at(s, i);
        put_slot(slots, ns, hash(e->db, (const char *)(e + 1), e->klen), (uint32_t)(i + 1));
    }
    free(s->slots);
    s->slots = slots;
    s->nslots = ns;
}

int eddy_keyset_add(eddy_keyset *s, int32_t db, const char *k, size_t klen)
{
    uint64_t h = hash(db, k, klen);
    size_t m = s->nslots - 1;
    for (size_t j = h & m; s->slots[j]; j = (j + 1) & m) {
        const entry_head *e = head_at(s, s->slots[j] - 1);
        if (e->db == db && e->klen == klen && memcmp(e + 1, k, klen) == 0) {
            return 0;
        }
    }
    if (s->n == s->ocap) {
        size_t cap = s->ocap ? s->ocap * 2 : 64;
        size_t *o = realloc(s->offs, cap * sizeof(*o));
        if (!o) {
            abort();
        }
        s->offs = o;
        s->ocap = cap;
    }
    /* entries are aligned for their header */
    size_t pad = (sizeof(entry_head) - s->bytes.len % sizeof(entry_head)) % sizeof(entry_head);
    eddy_buf_reserve(&s->bytes, pad + sizeof(entry_head) + klen);
    s->bytes.len += pad;
    s->offs[s->n] = s->bytes.len;
    entry_head eh = {db, (uint32_t)klen};
    eddy_buf_append(&s->bytes, &eh, sizeof eh);
    eddy_buf_append(&s->bytes, k, klen);
    s->n++;
    if (s->n * 2 > s->nslots) {
        grow(s);
    } else {
        put_slot(s->slots, s->nslots, h, (uint32_t)s->n);
    }
    return 1;
}

size_t eddy_keyset_count(const eddy_keyset *s)
{
    return s->n;
}

void eddy_keyset_get(const eddy_keyset *s, size_t i, int32_t *db, const char **k, size_t *klen)
{
    const entry_head *e = head_at(s, i);
    *db = e->db;
    *k = (const char *)(e + 1);
    *klen = e->klen;
}

void eddy_keyset_clear(eddy_keyset *s)
{
    if (s->n == 0) {
        return;
    }
    memset(s->slots, 0, s->nslots * sizeof(*s->slots));
    s->n = 0;
    s->bytes.len = 0;
}
