/*
 * eddy_keyset — open addressing over entry indexes; the entries themselves
 * ([db][klen][key bytes]) are appended to one buffer (see eddy_keyset.h).
 */
#include "eddy_keyset.h"
#include "eddy_buf.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    uint32_t idx;         /* 0 = empty, else entry index + 1 */
    uint32_t tag;         /* the hash's high half: most misses end here, without the entry */
} slot;

struct eddy_keyset {
    eddy_buf  bytes;      /* the entries, back to back */
    size_t   *offs;       /* entry i starts at bytes.data + offs[i] */
    size_t    n, ocap;
    slot     *slots;
    size_t    nslots;     /* a power of two, at least 2 * n */
};

typedef struct entry_head {
    int32_t  db;
    uint32_t klen;
    uint64_t hash;
} entry_head;

/* 8 bytes at a time, multiply and fold (keys are short: store keys, window keys) */
static uint64_t hash(int32_t db, const char *k, size_t klen)
{
    const uint64_t mul = 0x9E3779B97F4A7C15ULL;
    uint64_t h = ((uint64_t)(uint32_t)db << 32 | klen) * mul;
    size_t i = 0;
    for (; i + 8 <= klen; i += 8) {
        uint64_t w;
        memcpy(&w, k + i, 8);
        h = (h ^ w) * mul;
        h ^= h >> 32;
    }
    if (i < klen) {
        uint64_t w = 0;
        memcpy(&w, k + i, klen - i);
        h = (h ^ w) * mul;
        h ^= h >> 32;
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

static void put_slot(slot *slots, size_t nslots, uint64_t h, uint32_t v)
{
    size_t m = nslots - 1;
    for (size_t j = h & m;; j = (j + 1) & m) {
        if (!slots[j].idx) {
            slots[j].idx = v;
            slots[j].tag = (uint32_t)(h >> 32);
            return;
        }
    }
}

static void grow(eddy_keyset *s)
{
    size_t ns = s->nslots * 2;
    slot *slots = calloc(ns, sizeof(*slots));
    if (!slots) {
        abort();
    }
    for (size_t i = 0; i < s->n; i++) {
        put_slot(slots, ns, head_at(s, i)->hash, (uint32_t)(i + 1));
    }
    free(s->slots);
    s->slots = slots;
    s->nslots = ns;
}

int eddy_keyset_add(eddy_keyset *s, int32_t db, const char *k, size_t klen)
{
    uint64_t h = hash(db, k, klen);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t m = s->nslots - 1;
    for (size_t j = h & m; s->slots[j].idx; j = (j + 1) & m) {
        if (s->slots[j].tag != tag) {
            continue;
        }
        const entry_head *e = head_at(s, s->slots[j].idx - 1);
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
    entry_head eh = {db, (uint32_t)klen, h};
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
