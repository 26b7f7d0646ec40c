/*
 * eddy_workers — fork, forward signals, reap (see eddy_workers.h).
 */
#include "eddy_workers.h"
#include "eddy_log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_WORKERS 64

static int exit_status(int st)
{
    if (WIFEXITED(st)) {
        return WEXITSTATUS(st);
    }
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void signal_all(const pid_t *pids, int n, int sig)
{
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0) {
            kill(pids[i], sig);
        }
    }
}

int eddy_workers_run(int n, int *index, int *status, volatile sig_atomic_t *stop,
                     volatile sig_atomic_t *hup)
{
    pid_t pids[MAX_WORKERS] = {0};
    pid_t parent = getpid();
    if (n > MAX_WORKERS) {
        n = MAX_WORKERS;
    }
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            int err = errno;
            signal_all(pids, i, SIGTERM);
            errno = err;
            return -1;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);     /* never outlive the parent */
            if (getppid() != parent) {
                _exit(1);
            }
            *index = i + 1;
            return 0;
        }
        pids[i] = pid;
    }
    eddy_log_info("%d workers started (processes %d..%d), one consumer each in the group", n,
                  (int)pids[0], (int)pids[n - 1]);
    int alive = n, stopping = 0;
    *status = 0;
    while (alive > 0) {
        if (*stop && !stopping) {
            stopping = 1;
            signal_all(pids, n, SIGTERM);
        }
        if (*hup) {
            *hup = 0;
            signal_all(pids, n, SIGHUP);
        }
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) {
            usleep(50 * 1000);
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (pids[i] != pid) {
                continue;
            }
            pids[i] = 0;
            alive--;
            int code = exit_status(st);
            if (code != 0 && *status == 0) {
                *status = code;
                if (!stopping) {
                    eddy_log_error("worker %d exited with status %d: stopping the others", i + 1,
                                   code);
                    stopping = 1;
                    signal_all(pids, n, SIGTERM);
                }
            } else if (code == 0 && !stopping) {
                eddy_log_warn("worker %d stopped; %d still running", i + 1, alive);
            }
        }
    }
    return 1;
}
