/*
 * eddy_watchdog — a handler that never returns must not hang the job silently.
 * A thread watches the processing thread's calls into Lua: after `timeout`
 * it interrupts the job (a count hook that raises an error, which the
 * interpreter sees: the record fails, and a new version on probation is rolled
 * back by the usual streak rule); after twice that (compiled LuaJIT traces do
 * not look at hooks) it stops the process with one FATAL line naming the
 * version. Compiled endless loops are therefore caught only by the second step.
 */
#ifndef EDDY_WATCHDOG_H
#define EDDY_WATCHDOG_H

#include "eddy_job.h"

/** @brief Start the watchdog thread; timeout_ms 0 disables it. */
int  eddy_watchdog_start(int timeout_ms);
void eddy_watchdog_stop(void);

/** @brief A reloaded version's own handler_timeout (ms; 0: no interrupt). */
void eddy_watchdog_set_timeout(int timeout_ms);

/** @brief The processing thread calls into @p job now / is back. */
void eddy_watchdog_enter(eddy_job *job);
void eddy_watchdog_leave(void);

#endif
