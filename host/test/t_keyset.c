/*
 * t_keyset.c — unit tests of eddy_keyset.h: the set of changed keys per task.
 * The reference is a plain array searched linearly.
 */
#include "eddy_keyset.h"
#include "testhelp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref_entry {
    int32_t db;
    char    k[32];
    size_t  klen;
} ref_entry;

static int ref_find(const ref_entry *r, size_t n, int32_t db, const char *k, size_t klen)
{
    for (size_t i = 0; i < n; i++) {
        if (r[i].db == db && r[i].klen == klen && memcmp(r[i].k, k, klen) == 0) {
            return (int)i;
        }
    }
    return -1;
}

int main(void)
{
    eddy_keyset *s = eddy_keyset_new();
    test_cond("a new set is empty", s && eddy_keyset_count(s) == 0);
    test_cond("first add is new", eddy_keyset_add(s, 0, "a", 1) == 1);
    test_cond("second add of the same pair is not", eddy_keyset_add(s, 0, "a", 1) == 0);
    test_cond("the same key in another store is another pair", eddy_keyset_add(s, 1, "a", 1) == 1);
    test_cond("keys with a NUL byte are compared by length",
              eddy_keyset_add(s, 0, "a\0b", 3) == 1 && eddy_keyset_add(s, 0, "a\0c", 3) == 1 &&
              eddy_keyset_add(s, 0, "a\0b", 3) == 0);
    test_cond("an empty key is a key", eddy_keyset_add(s, 2, "", 0) == 1 &&
              eddy_keyset_add(s, 2, "", 0) == 0);
    int32_t db;
    const char *k;
    size_t klen;
    eddy_keyset_get(s, 0, &db, &k, &klen);
    int first = db == 0 && klen == 1 && k[0] == 'a';
    eddy_keyset_get(s, 3, &db, &k, &klen);
    test_cond("entries come back in insertion order",
              first && db == 0 && klen == 3 && memcmp(k, "a\0c", 3) == 0);
    eddy_keyset_clear(s);
    test_cond("clear empties the set", eddy_keyset_count(s) == 0 && eddy_keyset_add(s, 0, "a", 1) == 1);
    eddy_keyset_clear(s);

    /* random pairs against the reference, through several growths */
    srand(42);
    enum { N = 20000 };
    ref_entry *ref = calloc(N, sizeof(*ref));
    size_t nref = 0;
    int agree = 1;
    for (int i = 0; i < N; i++) {
        int32_t d = rand() % 3;
        char key[32];
        size_t kl = (size_t)snprintf(key, sizeof key, "k%d", rand() % 5000);
        int expect_new = ref_find(ref, nref, d, key, kl) < 0;
        if (expect_new) {
            ref[nref].db = d;
            memcpy(ref[nref].k, key, kl);
            ref[nref++].klen = kl;
        }
        if (eddy_keyset_add(s, d, key, kl) != expect_new) {
            agree = 0;
        }
    }
    test_cond("random adds agree with the reference on new/known", agree);
    test_cond("the count is the reference's", eddy_keyset_count(s) == nref);
    int order = 1;
    for (size_t i = 0; i < nref; i++) {
        eddy_keyset_get(s, i, &db, &k, &klen);
        if (db != ref[i].db || klen != ref[i].klen || memcmp(k, ref[i].k, klen) != 0) {
            order = 0;
        }
    }
    test_cond("every pair is kept, in insertion order, after growing", order);
    free(ref);
    eddy_keyset_destroy(s);
    eddy_keyset_destroy(NULL);
    test_cond("destroy(NULL) is a no-op", 1);
    test_report();
}
