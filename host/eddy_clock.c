/*
 * eddy_clock — monotonic and (offset) wall clocks (see eddy_clock.h).
 */
#include "eddy_clock.h"

#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

int64_t eddy_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t eddy_mono_ms(void)
{
    return eddy_mono_us() / 1000;
}

int64_t eddy_wall_ms(void)
{
    static int64_t offset;
    static int read;
    if (!read) {
        const char *e = getenv("EDDY_CLOCK_OFFSET_MS");
        offset = e ? strtoll(e, NULL, 10) : 0;      /* may be negative (data from the past) */
        read = 1;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000 + offset;
}
