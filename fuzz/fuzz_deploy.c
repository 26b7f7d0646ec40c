/*
 * fuzz_deploy.c — libFuzzer harness of the control-topic record check
 * (eddy_deploy.c accept_version: headers eddy.version and eddy.signature,
 * HMAC-SHA256 verification under EDDY_DEPLOY_KEY, --allow-unsigned-deploy, the
 * file the version is written to).
 *
 * eddy_deploy.c is #included (accept_version is static); librdkafka's header
 * accessors are replaced by fakes over a header list built here, and fopen by a
 * check that the file written stays <dir>/<16 hex digits>.lua (nothing is
 * written: /dev/null stands in).
 *
 * Input: flags(1) vlen(1) version slen(1) signature payload...
 * flags bit0 has eddy.version, bit1 has eddy.signature, bit2 EDDY_DEPLOY_KEY
 * set, bit3 --allow-unsigned-deploy, bit4 replace the signature by the true
 * one (a valid signed record), bit5 then flip one bit of the payload.
 * Property: with a key, a record whose signature is not the HMAC of its version
 * and payload is never accepted (except unsigned under --allow-unsigned-deploy).
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../host/test/fake_headers.h"

static const char *fuzz_dir = "/nonexistent/eddy-fuzz-deploy";

/* The deploy code may only write <dir>/<16 hex digits>.lua. */
static FILE *fake_fopen(const char *path, const char *mode)
{
    size_t dl = strlen(fuzz_dir);
    const char *name = path + dl + 1;
    int ok = strncmp(path, fuzz_dir, dl) == 0 && path[dl] == '/' && strlen(name) == 20 &&
             strcmp(name + 16, ".lua") == 0;
    for (int i = 0; ok && i < 16; i++) {
        ok = (name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f');
    }
    if (!ok) {
        fprintf(stderr, "fuzz_deploy: a control record made eddy write %s\n", path);
        abort();
    }
    return fopen("/dev/null", mode);
}

#define fopen fake_fopen
#include "../host/eddy_deploy.c"
#undef rd_kafka_message_headers
#undef rd_kafka_header_get_last
#undef fopen

#include "eddy_log.h"

#define KEY "fuzz-deploy-key-0123456789"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    eddy_log_level = -1;                 /* refusals are logged: keep the run quiet */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) {
        return 0;
    }
    uint8_t flags = data[0];
    size_t vlen = data[1];
    if (size < 2 + vlen + 1) {
        return 0;
    }
    const uint8_t *vsrc = data + 2;
    size_t slen = data[2 + vlen];
    if (size < 3 + vlen + slen) {
        return 0;
    }
    const uint8_t *ssrc = data + 3 + vlen;
    size_t plen = size - 3 - vlen - slen;
    /* exact-size copies: any read past them is caught */
    char *v = malloc(vlen + 1), *sig = malloc(slen > 64 ? slen : 65);
    char *payload = malloc(plen ? plen : 1);
    memcpy(v, vsrc, vlen);
    memcpy(sig, ssrc, slen);
    memcpy(payload, ssrc + slen, plen);
    if (flags & 16) {                    /* a valid signature, the way eddy deploy makes it */
        v[vlen] = '\0';
        eddy_deploy_sign(KEY, v, payload, plen, sig);
        slen = strlen(sig);
        if ((flags & 32) && plen) {
            payload[plen / 2] ^= 1;      /* tampered with after signing */
        }
    }
    struct rd_kafka_headers_s h = {0};
    if (flags & 1) {
        fake_header_add(&h, "eddy.version", v, vlen);
    }
    if (flags & 2) {
        fake_header_add(&h, "eddy.signature", sig, slen);
    }
    rd_kafka_message_t m = {0};
    m.payload = plen || !(flags & 64) ? payload : NULL;
    m.len = m.payload ? plen : 0;
    m._private = &h;
    eddy_deploy d = {0};
    d.topic = "fuzz-control";
    d.dir = (char *)fuzz_dir;
    d.key = flags & 4 ? KEY : NULL;
    d.allow_unsigned = (flags & 8) != 0;
    char version[17] = "";
    int rc = accept_version(&d, &m, version);
    if (rc == 0) {
        /* what was accepted: its version is the header's, and when a key is
         * set it is signed by it, or unsigned under --allow-unsigned-deploy */
        char vz[64], sz[128];
        header(&m, "eddy.version", vz, sizeof vz);
        header(&m, "eddy.signature", sz, sizeof sz);
        if (strcmp(version, vz) != 0) {
            abort();
        }
        if (d.key) {
            char want[65];
            eddy_deploy_sign(KEY, vz, m.payload ? m.payload : "", m.len, want);
            if (strcmp(want, sz) != 0 && !(d.allow_unsigned && !sz[0])) {
                fprintf(stderr, "fuzz_deploy: accepted a record not signed by the key\n");
                abort();
            }
        } else if (!d.allow_unsigned) {
            abort();
        }
    }
    free(v);
    free(sig);
    free(payload);
    return 0;
}
