/*
 * eddy_reload — hot reload: what triggers one (SIGHUP, a saved script or a
 * module next to it, watched with inotify), and building the next generation:
 * a fresh lua_State loaded from the script, configured like the running one,
 * and checked against it (same sources; every store keeps its kind and window).
 * The swap itself happens in the runner, between two batches, right after a
 * commit (eddy_runner_swap); a failing new version is rolled back there.
 */
#ifndef EDDY_RELOAD_H
#define EDDY_RELOAD_H

#include <signal.h>
#include <stddef.h>
#include "eddy_job.h"
#include "eddy_deploy.h"

typedef struct eddy_reload eddy_reload;

typedef struct eddy_reload_conf {
    const char *script;
    const char *lua_dir;
    const char *app_id;
    int         kafka;
    int         partitions;
    int         watch;                   /* inotify on the script's directory */
    volatile sig_atomic_t *hup;          /* set by SIGHUP */
} eddy_reload_conf;

int  eddy_reload_new(eddy_reload **out, const eddy_reload_conf *conf, char *errstr,
                     size_t errstr_size);
void eddy_reload_destroy(eddy_reload *rl);

/**
 * @brief Between batches: was a reload asked for (SIGHUP, a file change that has
 *        been quiet for 100 ms)? If so, load and check the new version against
 *        @p running. A version that fails is logged with the reason and the
 *        running one goes on.
 * @returns a new generation ready to swap in (owned by the caller), or NULL.
 */
eddy_job *eddy_reload_poll(eddy_reload *rl, eddy_job *running);

/** @brief Also take versions published with `eddy deploy` (borrowed). */
void eddy_reload_set_deploy(eddy_reload *rl, eddy_deploy *d);

/**
 * @brief Load @p path as version @p version and check it against @p running.
 * @returns the new generation, or NULL (refused: logged with the reason).
 */
eddy_job *eddy_reload_load(eddy_reload *rl, const char *path, const char *version,
                           eddy_job *running);

/** @brief The content hash naming a script version (16 hex digits). */
void eddy_reload_version(const char *script, char out[17]);

#endif
