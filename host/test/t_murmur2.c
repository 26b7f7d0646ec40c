/*
 * t_murmur2.c — unit tests of eddy_murmur2.h: Kafka's partitioner hash.
 *
 * Expected values come from outside eddy: the partitions that librdkafka's
 * murmur2_random partitioner picks, librdkafka's own unittest vectors
 * (rdmurmur2.c, "java_murmur2_results"), the Java client's UtilsTest, and a
 * reference implementation written here differently (64-bit arithmetic,
 * one byte at a time) for random keys.
 */
#include "eddy_murmur2.h"
#include "testhelp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reference: the same function as Utils.murmur2, with every product reduced
 * mod 2^32 in 64-bit arithmetic and the words assembled byte by byte. */
static uint32_t ref_murmur2(const unsigned char *d, size_t len)
{
    const uint64_t M = 0xffffffffu, m = 0x5bd1e995u;
    uint64_t h = (0x9747b28cu ^ (uint64_t)(uint32_t)len) & M;
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        uint64_t k = (uint64_t)d[i] + ((uint64_t)d[i + 1] << 8) + ((uint64_t)d[i + 2] << 16) +
                     ((uint64_t)d[i + 3] << 24);
        k = (k * m) & M;
        k ^= k >> 24;
        k = (k * m) & M;
        h = (h * m) & M;
        h ^= k;
    }
    size_t rem = len - i;
    if (rem == 3) h ^= (uint64_t)d[i + 2] << 16;
    if (rem >= 2) h ^= (uint64_t)d[i + 1] << 8;
    if (rem >= 1) {
        h ^= d[i];
        h = (h * m) & M;
    }
    h ^= h >> 13;
    h = (h * m) & M;
    h ^= h >> 15;
    return (uint32_t)h;
}

static uint32_t hash_str(const char *s)
{
    return eddy_murmur2(s, strlen(s));
}

int main(void)
{
    char name[256];

    /* 1. partitions of 7, as librdkafka's murmur2_random picks them */
    static const struct { const char *key; int32_t part; } parts7[] = {
        {"a", 5}, {"hello", 4}, {"k1", 0}, {"some longer key 123", 1},
        {"abc", 4}, {"abcd", 5}, {"abcde", 4},
    };
    for (size_t i = 0; i < sizeof parts7 / sizeof *parts7; i++) {
        int32_t p = eddy_murmur2_partition(parts7[i].key, strlen(parts7[i].key), 7);
        snprintf(name, sizeof name, "key \"%s\" -> partition %d of 7 (got %d)", parts7[i].key,
                 (int)parts7[i].part, (int)p);
        test_cond(name, p == parts7[i].part);
    }

    /* 2. librdkafka's unittest_murmur2 vectors (the Java client's values) */
    const char *short_unaligned = "1234";
    const char *unaligned = "PreAmbleWillBeRemoved,ThePrePartThatIs";
    struct { const char *key; uint32_t hash; } rdk[] = {
        {"kafka", 0xd067cf64u},
        {"giberish123456789", 0x8f552b0cu},
        {short_unaligned, 0x9fc97b14u},
        {short_unaligned + 1, 0xe7c009cau},
        {short_unaligned + 2, 0x873930dau},
        {short_unaligned + 3, 0x5a4b5ca1u},
        {unaligned, 0x78424f1cu},
        {unaligned + 1, 0x4a62b377u},
        {unaligned + 2, 0xe0e4e09eu},
        {unaligned + 3, 0x62b8b43fu},
        {"", 0x106e08d9u},
    };
    for (size_t i = 0; i < sizeof rdk / sizeof *rdk; i++) {
        uint32_t h = hash_str(rdk[i].key);
        snprintf(name, sizeof name, "librdkafka vector \"%s\" = 0x%08x (got 0x%08x)", rdk[i].key,
                 rdk[i].hash, h);
        test_cond(name, h == rdk[i].hash);
    }

    /* 3. the Java client's UtilsTest.testMurmur2 (signed int32 results) */
    static const struct { const char *key; int32_t hash; } java[] = {
        {"21", -973932308},
        {"foobar", -790332482},
        {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
        {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof java / sizeof *java; i++) {
        int32_t h = (int32_t)hash_str(java[i].key);
        snprintf(name, sizeof name, "Java UtilsTest vector \"%s\" = %d (got %d)", java[i].key,
                 (int)java[i].hash, (int)h);
        test_cond(name, h == java[i].hash);
    }

    /* 4. the empty key: a hash of zero bytes, not a null key */
    test_cond("empty key hashes to 0x106e08d9", eddy_murmur2("", 0) == 0x106e08d9u);
    test_cond("empty key with a NULL pointer and length 0 hashes the same",
              eddy_murmur2(NULL, 0) == 0x106e08d9u);
    test_cond("empty key -> partition 2 of 7 (0x106e08d9 % 7)",
              eddy_murmur2_partition("", 0, 7) == (int32_t)(0x106e08d9u % 7));
    test_cond("empty key -> partition 0 of 1", eddy_murmur2_partition("", 0, 1) == 0);

    /* 5. binary keys: the length counts, NUL bytes included */
    test_cond("\"a\\0b\" (3 bytes) = 0xfed14e49", eddy_murmur2("a\0b", 3) == 0xfed14e49u);
    test_cond("\"\\0\" (1 byte) = 0x166197bc", eddy_murmur2("\0", 1) == 0x166197bcu);
    test_cond("four NUL bytes = 0x32b89340", eddy_murmur2("\0\0\0\0", 4) == 0x32b89340u);
    test_cond("\"a\\0b\" and \"a\" hash differently", eddy_murmur2("a\0b", 3) != eddy_murmur2("a", 1));
    test_cond("\"a\\0b\" -> partition 5 of 7", eddy_murmur2_partition("a\0b", 3, 7) == 5);
    {
        unsigned char hi[] = {0xff, 0xfe, 0x80, 0x00, 0x7f};
        test_cond("bytes >= 0x80 are unsigned (matches the reference)",
                  eddy_murmur2(hi, sizeof hi) == ref_murmur2(hi, sizeof hi));
    }

    /* 6. the sign bit is masked before the modulo (Utils.toPositive) */
    {
        /* "kafka" hashes to 0xd067cf64: the high bit is set */
        int all = 1;
        for (int32_t n = 1; n <= 200; n++) {
            int32_t p = eddy_murmur2_partition("kafka", 5, n);
            if (p != (int32_t)((0xd067cf64u & 0x7fffffffu) % (uint32_t)n)) {
                all = 0;
            }
        }
        test_cond("\"kafka\" (high bit set) -> (h & 0x7fffffff) % n for n = 1..200", all);
        test_cond("\"kafka\" -> partition 3 of 7", eddy_murmur2_partition("kafka", 5, 7) == 3);
    }

    /* 7. alignment does not change the hash */
    {
        unsigned char buf[64 + 8];
        const char *k = "PreAmbleWillBeRemoved,ThePrePartThatIs";
        size_t n = strlen(k);
        int same = 1;
        for (int off = 0; off < 8; off++) {
            memcpy(buf + off, k, n);
            if (eddy_murmur2(buf + off, n) != 0x78424f1cu) {
                same = 0;
            }
        }
        test_cond("the same key at 8 different alignments hashes the same", same);
    }

    /* 8. random keys of every length 0..300 against the reference */
    {
        unsigned char key[300];
        uint32_t seed = 12345;
        int bad = 0, badp = 0, range = 1;
        for (int round = 0; round < 20; round++) {
            for (size_t len = 0; len <= sizeof key; len++) {
                for (size_t i = 0; i < len; i++) {
                    seed = seed * 1103515245u + 12345u;
                    key[i] = (unsigned char)(seed >> 16);
                }
                uint32_t want = ref_murmur2(key, len);
                if (eddy_murmur2(key, len) != want) {
                    bad++;
                }
                int32_t n = (int32_t)(len % 37) + 1;
                int32_t p = eddy_murmur2_partition(key, len, n);
                if (p != (int32_t)((want & 0x7fffffffu) % (uint32_t)n)) {
                    badp++;
                }
                if (p < 0 || p >= n) {
                    range = 0;
                }
            }
        }
        snprintf(name, sizeof name, "6020 random keys (lengths 0..300) match the reference (%d differ)", bad);
        test_cond(name, bad == 0);
        snprintf(name, sizeof name, "their partitions match (h & 0x7fffffff) %% n (%d differ)", badp);
        test_cond(name, badp == 0);
        test_cond("every partition is in [0, n)", range);
    }

    /* 9. a large partition count */
    test_cond("\"hello\" -> 0x7f1ddbbd % 1000000",
              eddy_murmur2_partition("hello", 5, 1000000) == (int32_t)(0x7f1ddbbdu % 1000000u));
    test_cond("partition count INT32_MAX stays in range",
              eddy_murmur2_partition("kafka", 5, INT32_MAX) == (int32_t)(0x5067cf64u % 0x7fffffffu));

    test_report();
}
