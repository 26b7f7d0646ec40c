/*
 * fuzz_dedup.c — libFuzzer harness of the eddy.origin header parser
 * (eddy_dedup_check: "<topic>:<partition>:<offset>:<n>", from the headers of
 * repartition records read from Kafka), over a real eddy_state.
 * Input: origins separated by '\n'; the first byte of each picks the task.
 * Each origin is handed over in a buffer of exactly its size. Properties: the
 * result is -1, 0 or 1, and the same well-formed origin taken twice in a row is
 * a duplicate the second time.
 */
#include "eddy_dedup.h"
#include "eddy_state.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[4096];

static void cleanup(void)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz_dedup: cannot remove %s\n", dir);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/eddy-fuzz-dedup.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        abort();
    }
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eddy_state *st;
    char err[512];
    if (eddy_state_open(&st, dir, 0, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_dedup: %s\n", err);
        abort();
    }
    eddy_dedup *d = eddy_dedup_new(st);
    const uint8_t *p = data, *end = data + size;
    for (int n = 0; p < end && n < 64; n++) {
        const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (len > 0) {
            int32_t task = (int32_t)(p[0] & 3) << 16 | (p[0] >> 2 & 3);
            size_t olen = len - 1;
            char *origin = malloc(olen ? olen : 1);
            memcpy(origin, p + 1, olen);
            int r = eddy_dedup_check(d, task, origin, olen);
            if (r < -1 || r > 1) {
                abort();
            }
            if (r == 1 && eddy_dedup_check(d, task, origin, olen) != 0) {
                abort();                     /* taken once: a duplicate after that */
            }
            free(origin);
        }
        p += len + (nl ? 1 : 0);
    }
    if (eddy_dedup_flush(d) != 0) {
        abort();
    }
    eddy_dedup_destroy(d);
    eddy_state_abort(st);
    eddy_state_close(st);
    return 0;
}
