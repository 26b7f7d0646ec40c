/*
 * eddy_reload — reload triggers and the building of a new generation
 * (see eddy_reload.h). Editors save in three ways: write in place,
 * truncate-and-write, write-a-temp-then-rename; watching the directory for
 * IN_CLOSE_WRITE and IN_MOVED_TO catches all three, and a 100 ms quiet period
 * folds the events of one save into one reload.
 */
#include "eddy_reload.h"
#include "eddy_status.h"
#include "eddy.h"
#include "eddy_log.h"
#include "eddy_metrics.h"
#include "eddy_deploy.h"
#include "eddy_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define QUIET_MS 100

struct eddy_reload {
    eddy_reload_conf conf;
    char     *script, *lua_dir, *app_id;
    int       fd;              /* inotify, -1 without --watch */
    int64_t   changed_at;      /* when a watched file last changed; 0: no change pending */
    char      version[17];     /* of the running script */
    eddy_deploy *deploy;       /* the control topic, or NULL */
};

void eddy_reload_set_deploy(eddy_reload *rl, eddy_deploy *d)
{
    rl->deploy = d;
}

void eddy_reload_version(const char *script, char out[17])
{
    uint64_t h = 1469598103934665603ULL;      /* FNV-1a 64 of the script's bytes */
    FILE *fp = fopen(script, "rb");
    if (fp) {
        int c;
        while ((c = getc(fp)) != EOF) {
            h ^= (unsigned char)c;
            h *= 1099511628211ULL;
        }
        fclose(fp);
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int eddy_reload_new(eddy_reload **out, const eddy_reload_conf *conf, char *errstr,
                    size_t errstr_size)
{
    eddy_reload *rl = calloc(1, sizeof(*rl));
    if (!rl) {
        return EDDY_ENOMEM;
    }
    rl->conf = *conf;
    rl->script = strdup(conf->script);
    rl->lua_dir = strdup(conf->lua_dir);
    rl->app_id = strdup(conf->app_id);
    rl->conf.script = rl->script;
    rl->conf.lua_dir = rl->lua_dir;
    rl->conf.app_id = rl->app_id;
    rl->fd = -1;
    eddy_reload_version(rl->script, rl->version);
    if (conf->watch) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", conf->script);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
        } else {
            strcpy(dir, ".");
        }
        rl->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (rl->fd < 0 || inotify_add_watch(rl->fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
            snprintf(errstr, errstr_size, "cannot watch %s: %s (use --no-watch)", dir,
                     strerror(errno));
            eddy_reload_destroy(rl);
            return EDDY_EUSAGE;
        }
    }
    *out = rl;
    return 0;
}

void eddy_reload_destroy(eddy_reload *rl)
{
    if (!rl) {
        return;
    }
    if (rl->fd >= 0) {
        close(rl->fd);
    }
    free(rl->script);
    free(rl->lua_dir);
    free(rl->app_id);
    free(rl);
}

/* Drain inotify: note a change to any .lua file of the script's directory. */
static void drain(eddy_reload *rl)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(rl->fd, buf, sizeof buf);
        if (n <= 0) {
            return;
        }
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            size_t len = ev->len ? strlen(ev->name) : 0;
            if (len > 4 && strcmp(ev->name + len - 4, ".lua") == 0) {
                rl->changed_at = eddy_mono_ms();
            }
            p += sizeof(*ev) + ev->len;
        }
    }
}

eddy_job *eddy_reload_poll(eddy_reload *rl, eddy_job *running)
{
    int asked = 0;
    if (rl->deploy) {
        char v[17];
        const char *path = eddy_deploy_poll(rl->deploy, 0, v);
        if (path && strcmp(v, eddy_job_version(running)) != 0) {
            eddy_log_info("deploy: version %s published on the control topic", v);
            return eddy_reload_load(rl, path, v, running);
        }
    }
    if (rl->conf.hup && *rl->conf.hup) {
        *rl->conf.hup = 0;
        asked = 1;
    }
    if (rl->fd >= 0) {
        drain(rl);
        if (rl->changed_at && eddy_mono_ms() - rl->changed_at >= QUIET_MS) {
            rl->changed_at = 0;
            char v[17];
            eddy_reload_version(rl->script, v);
            if (strcmp(v, rl->version) != 0) {
                asked = 1;            /* a module may have changed too: reload anyway below */
            } else {
                asked = 1;
            }
        }
    }
    if (!asked) {
        return NULL;
    }
    char version[17];
    eddy_reload_version(rl->script, version);
    return eddy_reload_load(rl, rl->script, version, running);
}

eddy_job *eddy_reload_load(eddy_reload *rl, const char *path, const char *version,
                           eddy_job *running)
{
    int64_t t0 = eddy_mono_ms();
    char errstr[2048];
    eddy_job *next = NULL;
    int rc = eddy_job_load(&next, path, rl->lua_dir, errstr, sizeof errstr);
    if (rc == 0) {
        rc = eddy_job_configure(next, rl->app_id, rl->conf.kafka, rl->conf.partitions, errstr,
                                sizeof errstr);
    }
    if (rc == 0) {
        rc = eddy_job_compatible(next, running, errstr, sizeof errstr);
    }
    if (rc == 0 && eddy_job_check_examples(next, errstr, sizeof errstr) != 0) {
        char tmp[2048];
        snprintf(tmp, sizeof tmp, "its examples fail: %.1900s", errstr);
        snprintf(errstr, sizeof errstr, "%s", tmp);
        rc = EDDY_ESCRIPT;
    }
    if (rc != 0) {
        eddy_stats.reloads_refused++;
        eddy_status_reload("refused", version, eddy_job_version(running), errstr);
        eddy_log_error("reload %s refused, %s keeps running: %s", version,
                       eddy_job_version(running), errstr);
        eddy_job_destroy(next);
        return NULL;
    }
    eddy_job_set_version(next, version);
    eddy_log_info("reload %s loaded and checked in %lld ms; swapping at the next batch boundary",
                  version, (long long)(eddy_mono_ms() - t0));
    return next;
}
