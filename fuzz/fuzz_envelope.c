/*
 * fuzz_envelope.c — libFuzzer harness of eddy_envelope_parse (file mode's
 * kcat -J line reader). The input is one line, in a buffer of exactly its
 * size (no NUL, no newline after it), so any read past `len` is caught by
 * ASan. A line that parses is written back with eddy_envelope_write and
 * parsed again: the second parse must give the same fields (round trip).
 */
#include "eddy.h"
#include "eddy_buf.h"
#include "eddy_envelope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int same(const char *a, ssize_t alen, const char *b, ssize_t blen)
{
    if (alen != blen) {
        return 0;
    }
    return alen <= 0 || memcmp(a, b, (size_t)alen) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static eddy_envelope env, env2;          /* header arrays reused, as file mode does */
    char err[256];
    char *line = malloc(size ? size : 1);
    if (!line) {
        return 0;
    }
    memcpy(line, data, size);
    if (eddy_envelope_parse(&env, line, size, err, sizeof err) != 0) {
        if (!err[0]) {
            abort();                          /* an error always says why */
        }
        free(line);
        return 0;
    }
    /* round trip: write what was read, read it again */
    eddy_buf out = EDDY_BUF_INIT;
    int32_t partition = env.partition < 0 ? 0 : env.partition;
    eddy_envelope_write(&out, env.topic, env.topic_len, partition, env.offset, env.ts, env.key,
                        env.key_len, env.payload, env.payload_len, env.headers, env.nheaders);
    if (out.len == 0 || out.data[out.len - 1] != '\n') {
        abort();
    }
    char *again = malloc(out.len);
    memcpy(again, out.data, out.len - 1);
    if (eddy_envelope_parse(&env2, again, out.len - 1, err, sizeof err) != 0) {
        abort();                              /* what eddy writes, eddy reads */
    }
    if (!same(env.topic, (ssize_t)env.topic_len, env2.topic, (ssize_t)env2.topic_len) ||
        env2.partition != partition || env2.offset != env.offset || env2.ts != env.ts ||
        !same(env.key, env.key_len, env2.key, env2.key_len) ||
        !same(env.payload, env.payload_len, env2.payload, env2.payload_len) ||
        env2.nheaders != env.nheaders) {
        abort();
    }
    for (int i = 0; i < env.nheaders; i++) {
        if (!same(env.headers[i].name, (ssize_t)env.headers[i].name_len, env2.headers[i].name,
                  (ssize_t)env2.headers[i].name_len) ||
            !same(env.headers[i].value, env.headers[i].value_len, env2.headers[i].value,
                  env2.headers[i].value_len)) {
            abort();
        }
    }
    free(again);
    eddy_buf_free(&out);
    free(line);
    return 0;
}
