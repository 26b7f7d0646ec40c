/*
 * eddy_watchdog — see eddy_watchdog.h.
 */
#include "eddy_watchdog.h"
#include "eddy.h"
#include "eddy_log.h"
#include "eddy_clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static _Atomic(eddy_job *) current;
static atomic_llong since_ms;          /* 0: not in Lua */
static atomic_int running;
static atomic_int timeout_ms_v;
static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

void eddy_watchdog_enter(eddy_job *job)
{
    atomic_store(&current, job);
    atomic_store(&since_ms, eddy_mono_ms());
}

void eddy_watchdog_leave(void)
{
    atomic_store(&since_ms, 0);
}

static void *watch(void *arg)
{
    (void)arg;
    long long interrupted_at = 0;
    while (atomic_load(&running)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&lock);
        if (atomic_load(&running)) {
            pthread_cond_timedwait(&wake, &lock, &until);   /* a stop wakes it at once */
        }
        pthread_mutex_unlock(&lock);
        if (!atomic_load(&running)) {
            break;
        }
        long long s = atomic_load(&since_ms);
        if (!s) {
            interrupted_at = 0;
            continue;
        }
        long long busy = eddy_mono_ms() - s;
        eddy_job *job = atomic_load(&current);
        int timeout = atomic_load(&timeout_ms_v);
        if (timeout <= 0) {
            continue;
        }
        if (busy >= timeout && !interrupted_at && job) {
            interrupted_at = s;
            eddy_log_error("watchdog: a handler of version %s has not returned for %lld ms: "
                           "interrupting it", eddy_job_version(job), busy);
            eddy_job_interrupt(job, timeout);
        } else if (busy >= 2LL * timeout && interrupted_at == s) {
            eddy_log_error("watchdog: FATAL: a handler of version %s has not returned for %lld ms "
                           "and cannot be interrupted (a compiled endless loop?): the job stops "
                           "(exit 1) without committing; fix the script (eddy check) and restart",
                           job ? eddy_job_version(job) : "?", busy);
            _exit(EDDY_EXIT_FATAL);
        }
    }
    return NULL;
}

int eddy_watchdog_start(int timeout_ms)
{
    atomic_store(&timeout_ms_v, timeout_ms);
    atomic_store(&running, 1);
    return pthread_create(&thread, NULL, watch, NULL);
}

void eddy_watchdog_stop(void)
{
    if (atomic_load(&running)) {
        pthread_mutex_lock(&lock);
        atomic_store(&running, 0);
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
        pthread_join(thread, NULL);
    }
}

void eddy_watchdog_set_timeout(int timeout_ms)
{
    atomic_store(&timeout_ms_v, timeout_ms);
}
