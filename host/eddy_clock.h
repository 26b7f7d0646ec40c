/*
 * eddy_clock — the two clocks of the host: a monotonic one for intervals and
 * timeouts, and the wall clock jobs see (shifted by $EDDY_CLOCK_OFFSET_MS, the
 * test driver's advance_time).
 */
#ifndef EDDY_CLOCK_H
#define EDDY_CLOCK_H

#include <stdint.h>

/** @brief Monotonic time in ms / in µs (intervals, timeouts). */
int64_t eddy_mono_ms(void);
int64_t eddy_mono_us(void);

/** @brief The wall clock jobs see, in ms since the epoch (offset applied). */
int64_t eddy_wall_ms(void);

#endif
