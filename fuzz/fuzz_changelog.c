/*
 * fuzz_changelog.c — libFuzzer harness of what restore parses from Kafka:
 * changelog records (headers eddy.commit / eddy.db, "store\0key" keys, values,
 * tombstones) applied to a real eddy_state, commit markers ("seq=N offsets=t@o,...
 * families=f@p,...": marker_seq, list_get, marker_offsets) and the stream-time /
 * marker records of the __task-<S> family.
 *
 * eddy_changelog.c is #included (its parsers are static); librdkafka's two
 * header accessors are replaced by fakes over a header list built here, since a
 * rd_kafka_message_t with headers cannot be made without a broker.
 *
 * Input: records, each  flags(1) [dblen(1) db] klen(1) key vlen(1) value;
 * flags bit0 eddy.commit header, bit1 eddy.db header, bit2 null key, bit3 null
 * value, bit4 the record is after the last commit (an orphan), bits5-7 task.
 * The value of the last marker record is then parsed as restore does.
 */
#include <librdkafka/rdkafka.h>
#include <string.h>

#include "../host/test/fake_headers.h"
#include "../host/eddy_changelog.c"
#undef rd_kafka_message_headers
#undef rd_kafka_header_get_last

#include "eddy_log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[4096];

static void cleanup(void)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "fuzz_changelog: cannot remove %s\n", dir);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/eddy-fuzz-changelog.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        abort();
    }
    atexit(cleanup);
    return 0;
}

/* Take n bytes from the input; NULL when it is shorter. */
static const uint8_t *take(const uint8_t **p, const uint8_t *end, size_t n)
{
    if ((size_t)(end - *p) < n) {
        return NULL;
    }
    const uint8_t *r = *p;
    *p += n;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eddy_state *st;
    eddy_changelog cl;
    char err[512];
    if (eddy_state_open(&st, dir, 0, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_changelog: %s\n", err);
        abort();
    }
    eddy_state_track_changes(st, 1);
    memset(&cl, 0, sizeof cl);
    cl.st = st;
    scan_markers sm = {-1, -1, EDDY_BUF_INIT};
    const uint8_t *p = data, *end = data + size;
    int64_t offset = 0;
    for (int nrec = 0; p < end && nrec < 64; nrec++, offset++) {
        const uint8_t *flags = take(&p, end, 1), *len, *db = NULL, *k, *v;
        size_t dblen = 0;
        if (!flags) {
            break;
        }
        if (*flags & 2) {
            if (!(len = take(&p, end, 1)) || !(db = take(&p, end, dblen = *len))) {
                break;
            }
        }
        if (!(len = take(&p, end, 1)) || !(k = take(&p, end, *len))) {
            break;
        }
        size_t klen = *len;
        if (!(len = take(&p, end, 1)) || !(v = take(&p, end, *len))) {
            break;
        }
        size_t vlen = *len;
        /* copies of exactly their size: any read past them is caught */
        char *kc = malloc(klen + 1), *vc = malloc(vlen + 1), *dc = malloc(dblen + 1);
        memcpy(kc, k, klen);
        memcpy(vc, v, vlen);
        if (db) {
            memcpy(dc, db, dblen);
        }
        struct rd_kafka_headers_s h = {0};
        if (*flags & 1) {
            fake_header_add(&h, "eddy.commit", "1", 1);
        }
        if (*flags & 2) {
            fake_header_add(&h, "eddy.db", dc, dblen);
        }
        rd_kafka_message_t m = {0};
        m.key = *flags & 4 ? NULL : kc;
        m.key_len = *flags & 4 ? 0 : klen;
        m.payload = *flags & 8 ? NULL : vc;
        m.len = *flags & 8 ? 0 : vlen;
        m.offset = offset;
        m._private = &h;
        int32_t task = (int32_t)(*flags >> 5) << 16 | 1;
        const char *family = *flags & 0x20 ? "__task-0" : "counts";
        apply_ctx a = {&cl, task, family, *flags & 0x10 ? 0 : INT64_MAX, 0, 0};
        scan_markers_cb(&sm, &m);
        apply_cb(&a, &m);                  /* errors are the state's; never a crash */
        free(kc);
        free(vc);
        free(dc);
    }
    if (sm.last_off >= 0) {              /* the last marker, as restore reads it */
        const char *families = strstr(sm.value.data, " families=");
        families = families ? families + 10 : "";
        (void)list_get(families, "counts");
        (void)list_get(families, "process-1");
        (void)marker_seq(sm.value.data, sm.value.len);
        /* a marker eddy could not write (an empty topic, say) is skipped, not an error
         * that would fail every restore of the task */
        if (marker_offsets(st, 1, sm.value.data) != 0 && !eddy_state_failed(st)) {
            abort();
        }
    }
    eddy_buf_free(&sm.value);
    eddy_state_abort(st);                /* nothing reaches the disk: runs stay independent */
    eddy_state_close(st);
    return 0;
}
