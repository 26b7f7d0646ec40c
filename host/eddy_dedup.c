/*
 * eddy_dedup — positions per (task, origin partition) in a chained hash,
 * loaded from the task's "__dedup" store on first use (see eddy_dedup.h).
 */
#include "eddy_dedup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096

typedef struct entry {
    struct entry *next;
    int32_t       task;
    int64_t       pos;          /* (offset << 16) | n, -1: nothing taken yet */
    int           dirty;
    char          origin[];     /* "<topic>:<partition>" */
} entry;

struct eddy_dedup {
    eddy_state *st;
    entry      *b[BUCKETS];
    uint64_t    skipped;
};

eddy_dedup *eddy_dedup_new(eddy_state *st)
{
    eddy_dedup *d = calloc(1, sizeof(*d));
    if (d) {
        d->st = st;
    }
    return d;
}

void eddy_dedup_forget(eddy_dedup *d, int32_t partition)
{
    for (int i = 0; i < BUCKETS; i++) {
        entry **pp = &d->b[i];
        while (*pp) {
            entry *e = *pp;
            if (partition < 0 || (e->task & 0xffff) == partition) {
                *pp = e->next;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

void eddy_dedup_destroy(eddy_dedup *d)
{
    if (d) {
        eddy_dedup_forget(d, -1);
        free(d);
    }
}

uint64_t eddy_dedup_skipped(const eddy_dedup *d)
{
    return d->skipped;
}

static unsigned hash(int32_t task, const char *s, size_t n)
{
    unsigned h = 2166136261u ^ (unsigned)task;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    }
    return h % BUCKETS;
}

int eddy_dedup_check(eddy_dedup *d, int32_t task, const char *origin, size_t olen)
{
    /* "<topic>:<partition>:<offset>:<n>": the last two fields are the position */
    const char *c2 = memrchr(origin, ':', olen);
    const char *c1 = c2 ? memrchr(origin, ':', (size_t)(c2 - origin)) : NULL;
    if (!c1 || c1 == origin || olen - (size_t)(c2 - origin) > 16 || c2 - c1 > 24 ||
        memchr(origin, '\0', (size_t)(c1 - origin))) {
        return -1;                       /* the origin is kept as a C string */
    }
    char num[32];
    snprintf(num, sizeof num, "%.*s", (int)(c2 - c1 - 1), c1 + 1);
    long long off = strtoll(num, NULL, 10);
    snprintf(num, sizeof num, "%.*s", (int)(olen - (size_t)(c2 - origin) - 1), c2 + 1);
    long long nth = strtoll(num, NULL, 10);
    if (off < 0 || off > INT64_MAX >> 16 || nth < 0 || nth > 0xffff) {
        return -1;                       /* pos = (off << 16) | nth must fit */
    }
    int64_t pos = ((int64_t)off << 16) | nth;
    size_t klen = (size_t)(c1 - origin);
    unsigned h = hash(task, origin, klen);
    entry *e;
    for (e = d->b[h]; e; e = e->next) {
        if (e->task == task && strlen(e->origin) == klen && !memcmp(e->origin, origin, klen)) {
            break;
        }
    }
    if (!e) {
        e = malloc(sizeof(*e) + klen + 1);
        if (!e) {
            return -1;
        }
        e->task = task;
        memcpy(e->origin, origin, klen);
        e->origin[klen] = '\0';
        e->pos = eddy_state_meta(d->st, task, "__dedup", e->origin);
        e->dirty = 0;
        e->next = d->b[h];
        d->b[h] = e;
    }
    if (pos <= e->pos) {
        d->skipped++;
        return 0;
    }
    e->pos = pos;
    e->dirty = 1;
    return 1;
}

int eddy_dedup_flush(eddy_dedup *d)
{
    for (int i = 0; i < BUCKETS; i++) {
        for (entry *e = d->b[i]; e; e = e->next) {
            if (e->dirty) {
                if (eddy_state_set_logged(d->st, e->task, "__dedup", e->origin, e->pos)) {
                    return -1;
                }
                e->dirty = 0;
            }
        }
    }
    return 0;
}
