/*
 * t_dedup.c — eddy_dedup: positions per origin partition, duplicates skipped,
 * malformed origins taken, positions kept in LMDB across a forget / reopen.
 */
#include "eddy_dedup.h"
#include "testhelp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(eddy_dedup *d, int32_t task, const char *origin)
{
    return eddy_dedup_check(d, task, origin, strlen(origin));
}

int main(void)
{
    char dir[] = "/tmp/eddy-t-dedup.XXXXXX";
    char err[512];
    if (!mkdtemp(dir)) {
        return 1;
    }
    eddy_state *st;
    test_cond("open", eddy_state_open(&st, dir, 0, err, sizeof err) == 0);
    eddy_dedup *d = eddy_dedup_new(st);
    int32_t t = (1 << 16) | 2;
    test_cond("a first record is new", check(d, t, "in:0:10:0") == 1);
    test_cond("the next output of the same input is new", check(d, t, "in:0:10:1") == 1);
    test_cond("the same position again is a duplicate", check(d, t, "in:0:10:1") == 0);
    test_cond("an earlier input is a duplicate", check(d, t, "in:0:9:5") == 0);
    test_cond("a later input is new", check(d, t, "in:0:11:0") == 1);
    test_cond("another origin partition has its own position", check(d, t, "in:1:3:0") == 1);
    test_cond("another task has its own position", check(d, t + 1, "in:0:10:0") == 1);
    test_cond("a topic with ':' in the position part is parsed from the right",
              check(d, t, "a:b:5:7:0") == 1 && check(d, t, "a:b:5:7:0") == 0);
    test_cond("malformed: no fields", check(d, t, "garbage") == -1);
    test_cond("malformed: one field", check(d, t, "x:1") == -1);
    test_cond("malformed: negative offset", check(d, t, "in:0:-4:0") == -1);
    test_cond("malformed: n too large", check(d, t, "in:0:4:70000") == -1);
    /* found by fuzz/fuzz_dedup.c: (offset << 16) overflowed, and a wrapped position
     * could make a new record look like a duplicate */
    test_cond("malformed: an offset beyond 2^47 - 1", check(d, t, "big:0:140737488355328:0") == -1 &&
              check(d, t, "big:0:9223372036854775807:65535") == -1);
    /* found by fuzz/fuzz_dedup.c: a NUL byte in the origin's topic part made the
     * entry unfindable (compared with strlen), so every repeat looked new */
    test_cond("malformed: a NUL byte in the origin partition", eddy_dedup_check(d, t, "a\0b:0:1:0", 9) == -1 &&
              eddy_dedup_check(d, t, "\0:0:1:0", 7) == -1);
    test_cond("the largest offset that fits is new, then a duplicate",
              check(d, t, "big:0:140737488355327:65535") == 1 &&
              check(d, t, "big:0:140737488355327:65535") == 0);
    test_cond("duplicates are counted", eddy_dedup_skipped(d) == 4);
    test_cond("flush writes the positions", eddy_dedup_flush(d) == 0);
    test_cond("commit", eddy_state_commit(st, err, sizeof err) == 0);
    eddy_dedup_forget(d, 2);
    test_cond("after a forget the position comes back from LMDB", check(d, t, "in:0:11:0") == 0 &&
              check(d, t, "in:0:11:1") == 1);
    eddy_dedup_destroy(d);
    eddy_state_close(st);
    eddy_state_open(&st, dir, 0, err, sizeof err);
    d = eddy_dedup_new(st);
    test_cond("after a reopen only what was committed is known",
              check(d, t, "in:0:11:0") == 0 && check(d, t, "in:0:11:1") == 1 &&
              check(d, t, "in:1:3:0") == 0);
    eddy_dedup_forget(d, -1);
    eddy_dedup_destroy(d);
    eddy_dedup_destroy(NULL);
    eddy_state_close(st);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    test_cond("cleanup", system(cmd) == 0);
    test_report();
}
