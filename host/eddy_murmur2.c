/*
 * eddy_murmur2 — Kafka's murmur2 partitioner (Utils.murmur2 in the Java client).
 */
#include "eddy_murmur2.h"

uint32_t eddy_murmur2(const void *key, size_t len)
{
    const uint32_t seed = 0x9747b28c;
    const uint32_t m = 0x5bd1e995;
    const int r = 24;
    const unsigned char *data = key;
    uint32_t h = seed ^ (uint32_t)len;
    size_t len4 = len / 4;

    for (size_t i = 0; i < len4; i++) {
        size_t i4 = i * 4;
        uint32_t k = (uint32_t)data[i4] | ((uint32_t)data[i4 + 1] << 8) |
                     ((uint32_t)data[i4 + 2] << 16) | ((uint32_t)data[i4 + 3] << 24);
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    size_t tail = len & ~(size_t)3;
    switch (len % 4) {
    case 3: h ^= (uint32_t)data[tail + 2] << 16; /* fallthrough */
    case 2: h ^= (uint32_t)data[tail + 1] << 8;  /* fallthrough */
    case 1: h ^= (uint32_t)data[tail];
            h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

int32_t eddy_murmur2_partition(const void *key, size_t len, int32_t n)
{
    return (int32_t)((eddy_murmur2(key, len) & 0x7fffffff) % (uint32_t)n);
}
