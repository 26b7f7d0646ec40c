/*
 * eddy_murmur2 — Kafka's partitioner hash: murmur2 of the key bytes, as the
 * Java client's DefaultPartitioner and librdkafka's murmur2_random compute it.
 */
#ifndef EDDY_MURMUR2_H
#define EDDY_MURMUR2_H

#include <stddef.h>
#include <stdint.h>

/** @brief Kafka's murmur2 (seed 0x9747b28c) of @p len bytes. */
uint32_t eddy_murmur2(const void *key, size_t len);

/** @brief The partition Kafka picks for a non-null key: (murmur2 & 0x7fffffff) % n. */
int32_t eddy_murmur2_partition(const void *key, size_t len, int32_t n);

#endif
