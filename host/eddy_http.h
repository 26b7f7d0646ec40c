/*
 * eddy_http — `--http ADDR`: the operator's endpoints, served by
 * libmicrohttpd's own thread, off the processing thread:
 *   GET  /metrics                 Prometheus text (eddy_status_metrics)
 *   GET  /status                  JSON (eddy_status_json)
 *   GET  /                        the live page
 *   GET  /stores/<store>/<key>    interactive query: the key's entries (every window of
 *                                 a window store), JSON; 404 for a store the job lacks
 *   GET  /stores/<store>[?from=&to=&limit=]   the entries with from <= key < to, in key
 *                                 order
 *   POST /reload                  reload the script now (as SIGHUP); a token is needed
 *                                 when one is set, and always beyond loopback
 * Store queries are answered by the processing thread between two batches
 * (eddy_http_serve), through its own transactions, so they see what the job
 * sees; the HTTP thread waits for the answer (at most 5 s).
 */
#ifndef EDDY_HTTP_H
#define EDDY_HTTP_H

#include <signal.h>
#include "eddy_job.h"
#include "eddy_state.h"

typedef struct eddy_http eddy_http;

typedef struct eddy_http_conf {
    const char *addr;                    /* "PORT", "HOST:PORT" or ":PORT" */
    const char *token;                   /* NULL: none */
    volatile sig_atomic_t *reload_flag;  /* set by POST /reload (the SIGHUP flag) */
} eddy_http_conf;

/** @returns 0, or an error with the reason in @p errstr (bad address, port taken). */
int  eddy_http_start(eddy_http **out, const eddy_http_conf *conf, char *errstr, size_t errstr_size);
/** @brief Stop serving; NULL is a no-op. */
void eddy_http_stop(eddy_http *h);
/** @brief The processing thread, between batches: answer the pending store queries. */
void eddy_http_serve(eddy_http *h, eddy_job *job, eddy_state *st);

/** The page of GET / (host/eddy_http_page.c). */
extern const char eddy_http_page[];

#endif
