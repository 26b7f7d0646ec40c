/*
 * eddy_deploy — the control topic: publish and follow signed script versions
 * (see eddy_deploy.h). A record: key "script", value = the script's bytes,
 * headers eddy.version (content hash) and eddy.signature (hex HMAC-SHA256).
 */
#include "eddy_deploy.h"
#include "eddy.h"
#include "eddy_log.h"
#include "eddy_clock.h"
#include "eddy_kafka.h"

#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct eddy_deploy {
    rd_kafka_t *rk;
    char       *topic;
    char       *dir;
    char       *key;
    int         allow_unsigned;
    char        path[4200];
    char        seen[17];        /* the last version handed out */
};

void eddy_deploy_sign(const char *key, const char *version, const char *script, size_t len,
                      char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t vlen = strlen(version);
    unsigned char *msg = malloc(vlen + 1 + len);
    if (!msg) {
        out[0] = '\0';
        return;
    }
    memcpy(msg, version, vlen);
    msg[vlen] = '\n';
    memcpy(msg + vlen + 1, script, len);
    HMAC(EVP_sha256(), key, (int)strlen(key), msg, vlen + 1 + len, md, &mdlen);
    free(msg);
    for (unsigned int i = 0; i < mdlen && i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
    out[64] = '\0';
}

static int set_props(rd_kafka_conf_t *kc, const char *brokers, const char **props, int nprops,
                     char *errstr, size_t errstr_size)
{
    if (rd_kafka_conf_set(kc, "bootstrap.servers", brokers, errstr, errstr_size)) {
        return EDDY_EKAFKA;
    }
    rd_kafka_conf_set(kc, "log_level", "3", NULL, 0);
    for (int i = 0; i < nprops; i++) {
        char k[256];
        const char *eq = strchr(props[i], '=');
        if (!eq || (size_t)(eq - props[i]) >= sizeof k) {
            continue;
        }
        memcpy(k, props[i], (size_t)(eq - props[i]));
        k[eq - props[i]] = '\0';
        rd_kafka_conf_set(kc, k, eq + 1, NULL, 0);   /* the other client's properties: ignored */
    }
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (r == 0) {
            break;
        }
    }
    fclose(fp);
    *len = n;
    return buf;
}

int eddy_deploy_publish(const char *script_path, const char *version, const char *brokers,
                        const char *app_id, const char *key, const char **props, int nprops,
                        char *errstr, size_t errstr_size)
{
    size_t len;
    char *script = read_file(script_path, &len);
    if (!script) {
        snprintf(errstr, errstr_size, "cannot read %s", script_path);
        return EDDY_EUSAGE;
    }
    char sig[65] = "";
    if (key) {
        eddy_deploy_sign(key, version, script, len, sig);
    }
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "enable.idempotence", "true", NULL, 0);
    rd_kafka_conf_set_log_cb(kc, eddy_kafka_log_cb);
    if (set_props(kc, brokers, props, nprops, errstr, errstr_size)) {
        rd_kafka_conf_destroy(kc);
        free(script);
        return EDDY_EKAFKA;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, errstr_size);
    if (!rk) {
        rd_kafka_conf_destroy(kc);
        free(script);
        return EDDY_EKAFKA;
    }
    char topic[512];
    snprintf(topic, sizeof topic, "%s-control", app_id);
    const char *base = strrchr(script_path, '/');
    base = base ? base + 1 : script_path;
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    rd_kafka_header_add(h, "eddy.version", -1, version, -1);
    if (key) {
        rd_kafka_header_add(h, "eddy.signature", -1, sig, -1);
    }
    rd_kafka_header_add(h, "eddy.script", -1, base, -1);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY("script", 6),
        RD_KAFKA_V_VALUE(script, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    int rc = 0;
    if (err) {
        rd_kafka_headers_destroy(h);
        snprintf(errstr, errstr_size, "cannot publish to %s: %s", topic, rd_kafka_err2str(err));
        rc = EDDY_EKAFKA;
    } else if (rd_kafka_flush(rk, 15000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
               rd_kafka_outq_len(rk) > 0) {
        snprintf(errstr, errstr_size, "%s: not acknowledged within 15 s", topic);
        rc = EDDY_EKAFKA;
    }
    rd_kafka_destroy(rk);
    free(script);
    return rc;
}

int eddy_deploy_follow(eddy_deploy **out, const char *brokers, const char *app_id,
                       const char *dir, const char *key, int allow_unsigned,
                       const char **props, int nprops, char *errstr, size_t errstr_size)
{
    eddy_deploy *d = calloc(1, sizeof(*d));
    if (!d) {
        return EDDY_ENOMEM;
    }
    char topic[512];
    snprintf(topic, sizeof topic, "%s-control", app_id);
    d->topic = strdup(topic);
    d->dir = strdup(dir);
    d->key = key ? strdup(key) : NULL;
    d->allow_unsigned = allow_unsigned;
    mkdir(dir, 0755);
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "group.id", "eddy-control-follower", NULL, 0);  /* assign(), no group use */
    rd_kafka_conf_set(kc, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(kc, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(kc, "allow.auto.create.topics", "true", NULL, 0);
    rd_kafka_conf_set_log_cb(kc, eddy_kafka_log_cb);     /* its lines as eddy's */
    if (set_props(kc, brokers, props, nprops, errstr, errstr_size)) {
        rd_kafka_conf_destroy(kc);
        eddy_deploy_destroy(d);
        return EDDY_EKAFKA;
    }
    d->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
    if (!d->rk) {
        rd_kafka_conf_destroy(kc);
        eddy_deploy_destroy(d);
        return EDDY_EKAFKA;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, d->topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(d->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    *out = d;
    return 0;
}

void eddy_deploy_destroy(eddy_deploy *d)
{
    if (!d) {
        return;
    }
    if (d->rk) {
        rd_kafka_consumer_close(d->rk);
        rd_kafka_destroy(d->rk);
    }
    free(d->topic);
    free(d->dir);
    free(d->key);
    free(d);
}

static int header(const rd_kafka_message_t *m, const char *name, char *out, size_t size)
{
    rd_kafka_headers_t *h;
    const void *v;
    size_t n;
    out[0] = '\0';
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &n) || !v) {
        return -1;
    }
    if (n >= size) {
        n = size - 1;
    }
    memcpy(out, v, n);
    out[n] = '\0';
    return 0;
}

/* A version is a content hash, 16 lowercase hex digits (eddy_reload_version); it
 * names the file written, so nothing else ("../", "/") may pass. */
static int is_version(const char *v)
{
    if (strlen(v) != 16) {
        return 0;
    }
    for (int i = 0; i < 16; i++) {
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

/* Check one control record; write it to dir/<version>.lua when it may run. */
static int accept_version(eddy_deploy *d, const rd_kafka_message_t *m, char *version)
{
    char v[64], sig[128];
    if (header(m, "eddy.version", v, sizeof v) || !is_version(v)) {
        eddy_log_error("deploy: a record at %s offset %lld has no eddy.version: ignored", d->topic,
                       (long long)m->offset);
        return -1;
    }
    header(m, "eddy.signature", sig, sizeof sig);
    if (d->key) {
        char want[65];
        eddy_deploy_sign(d->key, v, m->payload ? m->payload : "", m->len, want);
        if (strlen(sig) != 64 || CRYPTO_memcmp(want, sig, 64) != 0) {
            if (!(d->allow_unsigned && !sig[0])) {
                eddy_log_error("deploy: REFUSED version %s from %s offset %lld: %s", v, d->topic,
                               (long long)m->offset, sig[0] ? "the signature does not match "
                               "EDDY_DEPLOY_KEY" : "it is not signed");
                return -1;
            }
        }
    } else if (!d->allow_unsigned) {
        eddy_log_error("deploy: REFUSED version %s from %s offset %lld: EDDY_DEPLOY_KEY is not "
                       "set here, so nothing can be verified (--allow-unsigned-deploy is for "
                       "development only)", v, d->topic, (long long)m->offset);
        return -1;
    } else {
        eddy_log_warn("deploy: accepting version %s unverified (--allow-unsigned-deploy)", v);
    }
    snprintf(d->path, sizeof d->path, "%s/%s.lua", d->dir, v);
    FILE *fp = fopen(d->path, "wb");
    if (!fp || fwrite(m->payload ? m->payload : "", 1, m->len, fp) != m->len || fclose(fp) != 0) {
        eddy_log_error("deploy: cannot write %s", d->path);
        return -1;
    }
    memcpy(version, v, 16);              /* is_version: exactly 16 hex digits */
    version[16] = '\0';
    return 0;
}

const char *eddy_deploy_poll(eddy_deploy *d, int wait_ms, char version[17])
{
    int64_t t0 = eddy_mono_ms();
    const char *found = NULL;
    char v[17];
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->rk, wait_ms > 0 ? 100 : 0);
        if (m) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                rd_kafka_message_destroy(m);
                break;                                  /* read to the end */
            }
            if (!m->err && accept_version(d, m, v) == 0) {
                found = d->path;
                snprintf(version, 17, "%s", v);
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (eddy_mono_ms() - t0 >= wait_ms) {
            break;
        }
    }
    if (found && strcmp(version, d->seen) == 0) {
        return NULL;                                    /* already handed out */
    }
    if (found) {
        snprintf(d->seen, sizeof d->seen, "%s", version);
    }
    return found;
}
