/*
 * eddy_keyset — a set of (store handle, key) pairs in insertion order: the
 * keys a task wrote since its last commit, whose current values go to the
 * changelog at the commit (one record per key per commit interval, however
 * often it was written, as Kafka Streams' caching does).
 */
#ifndef EDDY_KEYSET_H
#define EDDY_KEYSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_keyset eddy_keyset;

/** @returns a new empty set, or NULL when out of memory. */
eddy_keyset *eddy_keyset_new(void);
/** @brief Free the set; NULL is a no-op. */
void   eddy_keyset_destroy(eddy_keyset *s);
/** @brief Add (db, key). @returns 1 when added, 0 when it was there already. */
int    eddy_keyset_add(eddy_keyset *s, int32_t db, const char *k, size_t klen);
/** @returns how many pairs the set holds. */
size_t eddy_keyset_count(const eddy_keyset *s);
/** @brief The @p i th pair added (0 <= i < count); valid until the next add or clear. */
void   eddy_keyset_get(const eddy_keyset *s, size_t i, int32_t *db, const char **k, size_t *klen);
/** @brief Empty the set, keeping its memory for the next interval. */
void   eddy_keyset_clear(eddy_keyset *s);

#endif
