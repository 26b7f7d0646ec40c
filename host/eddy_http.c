/*
 * eddy_http — libmicrohttpd with its internal polling thread (see eddy_http.h).
 */
#include "eddy_http.h"
#include "eddy.h"
#include "eddy_buf.h"
#include "eddy_log.h"
#include "eddy_status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define QUERY_WAIT_MS 5000
#define QUERY_LIMIT 1000

typedef struct query {
    struct query *next;
    char     store[256];
    char     key[512];
    size_t   keylen;
    int      point;                /* /stores/<store>/<key> */
    char     from[512], to[512];
    size_t   flen, tlen;
    int      limit;
    eddy_buf out;                  /* the JSON answer */
    int      nfound;
    int      unknown;              /* the job has no such store */
    int      done, abandoned;
} query;

struct eddy_http {
    struct MHD_Daemon *d;
    eddy_http_conf     conf;
    char               token[256];
    int                loopback;
    pthread_mutex_t    lock;
    pthread_cond_t     cond;
    query             *pending;
    volatile int       starting;   /* libmicrohttpd's messages: kept quiet while starting */
};

/* libmicrohttpd's own messages as eddy log lines; while the daemon starts they are
 * dropped, since a failure to start is reported in one line with its reason. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    eddy_http *h = cls;
    if (h->starting) {
        return;
    }
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        line[--n] = '\0';
    }
    eddy_log_warn("http: %s", line);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_json_error(struct MHD_Connection *c, unsigned status, const char *msg)
{
    eddy_buf b = EDDY_BUF_INIT;
    eddy_buf_puts(&b, "{\"error\":");
    eddy_buf_json_string(&b, msg, strlen(msg));
    eddy_buf_puts(&b, "}\n");
    enum MHD_Result ret = reply(c, status, "application/json", b.data, b.len);
    eddy_buf_free(&b);
    return ret;
}

/* A path segment (libmicrohttpd has unescaped the URL already). */
static size_t segment(const char *in, size_t n, char *out, size_t size)
{
    n = n < size - 1 ? n : size - 1;
    memcpy(out, in, n);
    out[n] = '\0';
    return n;
}

/* Hand a query to the processing thread and wait for its answer. */
static enum MHD_Result run_query(eddy_http *h, struct MHD_Connection *c, query *q)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct timespec until = {tv.tv_sec + QUERY_WAIT_MS / 1000, tv.tv_usec * 1000};
    pthread_mutex_lock(&h->lock);
    q->next = h->pending;
    h->pending = q;
    while (!q->done) {
        if (pthread_cond_timedwait(&h->cond, &h->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    if (!q->done) {
        q->abandoned = 1;     /* the processing thread frees it */
        pthread_mutex_unlock(&h->lock);
        return reply_json_error(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                "the job did not answer within 5 s (busy, or not processing)");
    }
    pthread_mutex_unlock(&h->lock);
    enum MHD_Result ret;
    if (q->unknown) {
        ret = reply(c, MHD_HTTP_NOT_FOUND, "application/json", q->out.data, q->out.len);
    } else if (q->point && q->nfound == 0) {
        ret = reply_json_error(c, MHD_HTTP_NOT_FOUND, "no such key in this instance's tasks");
    } else {
        ret = reply(c, MHD_HTTP_OK, "application/json", q->out.data, q->out.len);
    }
    eddy_buf_free(&q->out);
    free(q);
    return ret;
}

static enum MHD_Result stores(eddy_http *h, struct MHD_Connection *c, const char *url)
{
    const char *p = url + strlen("/stores/");
    const char *slash = strchr(p, '/');
    query *q = calloc(1, sizeof(*q));
    if (!q) {
        return reply_json_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    }
    segment(p, slash ? (size_t)(slash - p) : strlen(p), q->store, sizeof q->store);
    if (!q->store[0] || !strncmp(q->store, "__", 2)) {
        free(q);
        return reply_json_error(c, MHD_HTTP_NOT_FOUND, "no such store");
    }
    if (slash && strlen(slash + 1) >= sizeof q->key) {
        free(q);
        return reply_json_error(c, MHD_HTTP_BAD_REQUEST, "keys longer than 511 bytes cannot be queried");
    }
    if (slash && slash[1]) {
        q->point = 1;
        q->keylen = segment(slash + 1, strlen(slash + 1), q->key, sizeof q->key);
    } else {
        const char *v;
        const char *f = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "from");
        const char *t = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "to");
        if ((f && strlen(f) >= sizeof q->from) || (t && strlen(t) >= sizeof q->to)) {
            free(q);
            return reply_json_error(c, MHD_HTTP_BAD_REQUEST, "from, to: at most 511 bytes");
        }
        q->flen = (size_t)snprintf(q->from, sizeof q->from, "%s", f ? f : "");
        q->tlen = (size_t)snprintf(q->to, sizeof q->to, "%s", t ? t : "");
        q->limit = QUERY_LIMIT;
        if ((v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit"))) {
            q->limit = atoi(v);
            if (q->limit <= 0 || q->limit > 100000) {
                free(q);
                return reply_json_error(c, MHD_HTTP_BAD_REQUEST, "limit: 1..100000");
            }
        }
    }
    return run_query(h, c, q);
}

/* Compare without an early exit, so the time taken does not tell how much matched. */
static int same_token(const char *given, const char *token)
{
    size_t n = strlen(given), m = strlen(token);
    unsigned char diff = n != m;
    for (size_t i = 0; i < m; i++) {
        diff |= (unsigned char)(token[i] ^ (i < n ? given[i] : 0));
    }
    return diff == 0;
}

static int token_ok(eddy_http *h, struct MHD_Connection *c)
{
    if (!h->token[0]) {
        return h->loopback;
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *x = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Eddy-Token");
    if (auth && !strncmp(auth, "Bearer ", 7) && same_token(auth + 7, h->token)) {
        return 1;
    }
    return x && same_token(x, h->token);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    eddy_http *h = cls;
    if (!strcmp(method, "POST")) {
        if (*con_cls == NULL) {
            *con_cls = h;            /* the headers: wait for the body */
            return MHD_YES;
        }
        if (*upload_size) {
            *upload_size = 0;        /* the body is not used */
            return MHD_YES;
        }
        if (strcmp(url, "/reload") != 0) {
            return reply_json_error(c, MHD_HTTP_NOT_FOUND, "POST /reload is the only POST");
        }
        if (!token_ok(h, c)) {
            return reply_json_error(c, MHD_HTTP_FORBIDDEN, h->token[0]
                ? "a valid token is needed: Authorization: Bearer <token> (or X-Eddy-Token: <token>)"
                : "bound beyond loopback without a token: set --http-token (or EDDY_HTTP_TOKEN)");
        }
        *h->conf.reload_flag = 1;
        const char *ok = "{\"reload\":\"requested\"}\n";
        return reply(c, MHD_HTTP_ACCEPTED, "application/json", ok, strlen(ok));
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return reply_json_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET or POST");
    }
    eddy_buf b = EDDY_BUF_INIT;
    enum MHD_Result ret;
    if (!strcmp(url, "/metrics")) {
        eddy_status_metrics(&b);
        ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", b.data, b.len);
    } else if (!strcmp(url, "/status")) {
        eddy_status_json(&b);
        ret = reply(c, MHD_HTTP_OK, "application/json", b.data, b.len);
    } else if (!strcmp(url, "/")) {
        ret = reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", eddy_http_page,
                    strlen(eddy_http_page));
    } else if (!strncmp(url, "/stores/", 8)) {
        ret = stores(h, c, url);
    } else {
        ret = reply_json_error(c, MHD_HTTP_NOT_FOUND, "not found: try /, /metrics, /status, "
                                                     "/stores/<store>/<key>");
    }
    eddy_buf_free(&b);
    return ret;
}

int eddy_http_start(eddy_http **out, const eddy_http_conf *conf, char *errstr, size_t errstr_size)
{
    char host[256] = "127.0.0.1";
    int port;
    const char *colon = strrchr(conf->addr, ':');
    if (colon) {
        if (colon != conf->addr) {
            snprintf(host, sizeof host, "%.*s", (int)(colon - conf->addr), conf->addr);
        } else {
            snprintf(host, sizeof host, "0.0.0.0");
        }
        port = atoi(colon + 1);
    } else {
        port = atoi(conf->addr);
    }
    if (!strcmp(host, "localhost")) {
        snprintf(host, sizeof host, "127.0.0.1");
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        snprintf(errstr, errstr_size, "--http %s: expected PORT, HOST:PORT or :PORT with an IPv4 "
                 "host", conf->addr);
        return EDDY_EUSAGE;
    }
    eddy_http *h = calloc(1, sizeof(*h));
    if (!h) {
        return EDDY_ENOMEM;
    }
    h->conf = *conf;
    snprintf(h->token, sizeof h->token, "%s", conf->token ? conf->token : "");
    h->loopback = (ntohl(sa.sin_addr.s_addr) >> 24) == 127;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    h->starting = 1;
    errno = 0;
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port,
                            NULL, NULL, handle, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_END);
    h->starting = 0;
    if (!h->d) {
        int err = errno;
        snprintf(errstr, errstr_size, "--http %s: cannot listen: %s", conf->addr,
                 err ? strerror(err) : "unknown error");
        free(h);
        return EDDY_EUSAGE;
    }
    if (!h->loopback && !h->token[0]) {
        eddy_log_warn("http: %s is beyond loopback and has no token: POST /reload is refused "
                      "(set --http-token or EDDY_HTTP_TOKEN)", conf->addr);
    }
    eddy_log_info("http: serving /, /metrics, /status, /stores/<store>/<key> on %s:%d", host, port);
    *out = h;
    return 0;
}

void eddy_http_stop(eddy_http *h)
{
    if (!h) {
        return;
    }
    MHD_stop_daemon(h->d);
    pthread_mutex_lock(&h->lock);
    for (query *q = h->pending, *next; q; q = next) {
        next = q->next;
        eddy_buf_free(&q->out);
        free(q);
    }
    pthread_mutex_unlock(&h->lock);
    free(h);
}

/* ---- the processing thread ---- */

typedef struct entry {
    char   *key;                /* the raw key, for the order */
    size_t  klen;
    char   *json;               /* {"task":...,"entry":...} */
} entry;

typedef struct answer {
    eddy_job *job;
    query    *q;
    const char *match;          /* point query: the raw key, or a window store's key prefix */
    size_t    mlen;
    int       exact;
    entry    *list;
    size_t    n, cap;
} answer;

static int answer_cb(void *opaque, int32_t task, const char *k, size_t klen, const char *v,
                     size_t vlen)
{
    answer *a = opaque;
    query *q = a->q;
    if (a->exact && (klen != a->mlen || memcmp(k, a->match, klen) != 0)) {
        return 0;
    }
    char line[65536];
    if (!eddy_job_dump(a->job, q->store, k, klen, v, vlen, line, sizeof line)) {
        return 0;           /* an internal entry (index, expired) */
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        entry *l = realloc(a->list, cap * sizeof *l);
        if (!l) {
            return 1;
        }
        a->list = l;
        a->cap = cap;
    }
    entry *e = &a->list[a->n];
    e->key = malloc(klen ? klen : 1);
    if (!e->key || asprintf(&e->json, "{\"task\":\"%d_%d\",\"entry\":%s}", task >> 16,
                            task & 0xffff, line) < 0) {
        free(e->key);
        return 1;
    }
    memcpy(e->key, k, klen);
    e->klen = klen;
    a->n++;
    q->nfound++;
    return !q->point && q->nfound >= q->limit;
}

static int by_key(const void *x, const void *y)
{
    const entry *a = x, *b = y;
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

/* Is @p name one of the job's stores? The steps of eddy_job_describe name them in
 * brackets ("count [counts]", "process [a, b]"; topic names cannot hold brackets).
 * Asked before touching the state: eddy_state_range would register an unknown name
 * and create it in every task, and enough of those would use up the store handles
 * the job needs. Also collects the names, for the error message. */
static int job_has_store(eddy_job *job, const char *name, char *names, size_t size)
{
    const char *d = eddy_job_describe(job);
    size_t want = strlen(name), used = 0;
    int found = 0;
    names[0] = '\0';
    for (const char *p = d ? strchr(d, '[') : NULL; p; p = strchr(p, '[')) {
        const char *end = strchr(p, ']');
        const char *eol = strchr(p, '\n');
        if (!end || (eol && eol < end)) {
            break;
        }
        for (const char *s = p + 1; s < end;) {
            const char *comma = strstr(s, ", ");
            const char *e = comma && comma < end ? comma : end;
            size_t n = (size_t)(e - s);
            if (n == want && !memcmp(s, name, n)) {
                found = 1;
            }
            if (used + n + 3 < size) {
                used += (size_t)snprintf(names + used, size - used, "%s%.*s", used ? ", " : "",
                                         (int)n, s);
            }
            s = e == end ? end : e + 2;
        }
        p = end;
    }
    return found;
}

static void answer_query(eddy_job *job, eddy_state *st, query *q)
{
    char names[400];
    if (!job_has_store(job, q->store, names, sizeof names)) {
        char msg[700];
        snprintf(msg, sizeof msg, "no such store: %s (this job's stores: %s)", q->store,
                 names[0] ? names : "none");
        eddy_buf_puts(&q->out, "{\"error\":");
        eddy_buf_json_string(&q->out, msg, strlen(msg));
        eddy_buf_puts(&q->out, "}\n");
        q->unknown = 1;
        return;
    }
    eddy_buf_puts(&q->out, "{\"store\":");
    eddy_buf_json_string(&q->out, q->store, strlen(q->store));
    if (q->point) {
        eddy_buf_puts(&q->out, ",\"key\":");
        eddy_buf_json_string(&q->out, q->key, q->keylen);
    }
    eddy_buf_puts(&q->out, ",\"results\":[");
    answer a = {job, q, NULL, 0, 0, NULL, 0, 0};
    if (st) {
        if (q->point) {
            char raw[600];
            /* a key-value store: "=" + key */
            raw[0] = '=';
            memcpy(raw + 1, q->key, q->keylen);
            a.match = raw;
            a.mlen = q->keylen + 1;
            a.exact = 1;
            raw[a.mlen] = '\0';             /* [raw, raw "\0"): the key alone, no scan */
            eddy_state_range(st, q->store, raw, a.mlen, raw, a.mlen + 1, answer_cb, &a);
            /* a window store: be4(len) + key + window..., every window of the key */
            unsigned char pre[600];
            uint32_t n = (uint32_t)q->keylen;
            pre[0] = (unsigned char)(n >> 24);
            pre[1] = (unsigned char)(n >> 16);
            pre[2] = (unsigned char)(n >> 8);
            pre[3] = (unsigned char)n;
            memcpy(pre + 4, q->key, q->keylen);
            char end[600];
            memcpy(end, pre, 4 + q->keylen);
            end[4 + q->keylen] = (char)0xff;       /* keys are at most 511 bytes */
            a.exact = 0;
            eddy_state_range(st, q->store, (const char *)pre, 4 + q->keylen, end, 5 + q->keylen,
                             answer_cb, &a);
        } else {
            char from[600] = "=", to[600] = "=";
            memcpy(from + 1, q->from, q->flen);
            memcpy(to + 1, q->to, q->tlen);
            eddy_state_range(st, q->store, from, q->flen + 1, q->tlen ? to : ">", q->tlen ? q->tlen + 1 : 1,
                             answer_cb, &a);
        }
    }
    /* every task's entries in one key order (a range reads the tasks one by one) */
    if (a.n > 1) {
        qsort(a.list, a.n, sizeof *a.list, by_key);
    }
    for (size_t i = 0; i < a.n; i++) {
        eddy_buf_printf(&q->out, "%s%s", i ? "," : "", a.list[i].json);
        free(a.list[i].key);
        free(a.list[i].json);
    }
    free(a.list);
    eddy_buf_printf(&q->out, "],\"count\":%d}\n", (int)a.n);
}

void eddy_http_serve(eddy_http *h, eddy_job *job, eddy_state *st)
{
    if (!h || !h->pending) {        /* a racy peek: the lock is taken only with work to do */
        return;
    }
    pthread_mutex_lock(&h->lock);
    query *list = h->pending;
    h->pending = NULL;
    pthread_mutex_unlock(&h->lock);
    for (query *q = list, *next; q; q = next) {
        next = q->next;
        if (!q->abandoned) {
            answer_query(job, st, q);
        }
        pthread_mutex_lock(&h->lock);
        if (q->abandoned) {
            eddy_buf_free(&q->out);
            free(q);
        } else {
            q->done = 1;
        }
        pthread_mutex_unlock(&h->lock);
    }
    pthread_cond_broadcast(&h->cond);
}
