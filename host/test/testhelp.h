/*
 * testhelp.h — a tiny TAP harness for the C unit tests (after Redis's testhelp.h).
 * Each check prints "ok N - name" or "not ok N - name"; tools/test.sh counts them.
 */
#ifndef EDDY_TESTHELP_H
#define EDDY_TESTHELP_H

#include <stdio.h>

static int test_n, test_failed;

#define test_cond(descr, cond) do { \
    test_n++; \
    if (cond) { \
        printf("ok %d - %s\n", test_n, descr); \
    } else { \
        test_failed++; \
        printf("not ok %d - %s (%s:%d)\n", test_n, descr, __FILE__, __LINE__); \
    } \
} while (0)

#define test_report() do { \
    printf("1..%d\n", test_n); \
    return test_failed ? 1 : 0; \
} while (0)

#endif
