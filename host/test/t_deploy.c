/*
 * t_deploy.c — the control-topic record check of eddy_deploy.c (accept_version):
 * signatures under EDDY_DEPLOY_KEY, --allow-unsigned-deploy, and the version
 * header that names the file written. eddy_deploy.c is included to reach the
 * static check; its exported names are renamed here so that they do not clash
 * with build/eddy_deploy.o, and librdkafka's header accessors are replaced by
 * fakes (a message with headers cannot be made without a broker).
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_headers.h"
#define eddy_deploy_sign    t_deploy_sign
#define eddy_deploy_publish t_deploy_publish
#define eddy_deploy_follow  t_deploy_follow
#define eddy_deploy_destroy t_deploy_destroy
#define eddy_deploy_poll    t_deploy_poll
#include "../eddy_deploy.c"

#include "eddy_log.h"
#include "testhelp.h"

#define KEY "t-deploy-key"
#define SCRIPT "return 1\n"

static char dir[64];

/* accept_version on a record with these headers (NULL: absent). */
static int check(const char *key, int allow_unsigned, const char *version, const char *sig,
                 const char *payload)
{
    struct rd_kafka_headers_s h = {0};
    if (version) {
        fake_header_add(&h, "eddy.version", version, strlen(version));
    }
    if (sig) {
        fake_header_add(&h, "eddy.signature", sig, strlen(sig));
    }
    rd_kafka_message_t m = {0};
    m.payload = (void *)payload;
    m.len = strlen(payload);
    m._private = &h;
    eddy_deploy d = {0};
    d.topic = "t-control";
    d.dir = dir;
    d.key = (char *)key;
    d.allow_unsigned = allow_unsigned;
    char out[17];
    return accept_version(&d, &m, out);
}

static int exists(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp) {
        fclose(fp);
    }
    return fp != NULL;
}

int main(void)
{
    char sig[65], path[256];
    eddy_log_level = -1;
    snprintf(dir, sizeof dir, "/tmp/eddy-t-deploy.XXXXXX");
    if (!mkdtemp(dir)) {
        return 1;
    }
    const char *v = "0123456789abcdef";
    t_deploy_sign(KEY, v, SCRIPT, strlen(SCRIPT), sig);
    test_cond("a version signed with the key is accepted", check(KEY, 0, v, sig, SCRIPT) == 0);
    snprintf(path, sizeof path, "%s/%s.lua", dir, v);
    test_cond("and written to <dir>/<version>.lua", exists(path));
    test_cond("a tampered script is refused", check(KEY, 0, v, sig, "return 2\n") == -1);
    test_cond("an unsigned version is refused", check(KEY, 0, v, NULL, SCRIPT) == -1);
    test_cond("with no key, unsigned versions are refused", check(NULL, 0, v, NULL, SCRIPT) == -1);
    test_cond("--allow-unsigned-deploy accepts an unsigned version", check(NULL, 1, v, NULL, SCRIPT) == 0);

    /* found by fuzz/fuzz_deploy.c: the version header named the file written, with
     * no check beyond its length, so "../" left the deploy directory */
    const char *escape = "../../../tmp/x-y";
    t_deploy_sign(KEY, escape, SCRIPT, strlen(SCRIPT), sig);
    test_cond("a version that is not 16 hex digits is refused, even signed",
              check(KEY, 0, escape, sig, SCRIPT) == -1);
    test_cond("... and unsigned under --allow-unsigned-deploy",
              check(NULL, 1, escape, NULL, SCRIPT) == -1 && check(KEY, 1, escape, NULL, SCRIPT) == -1);
    test_cond("... and nothing was written outside the directory", !exists("/tmp/x-y.lua"));
    test_cond("upper-case hex is not a version eddy makes",
              check(NULL, 1, "0123456789ABCDEF", NULL, SCRIPT) == -1);
    test_cond("a version with a slash is refused", check(NULL, 1, "0123456789abcd/f", NULL, SCRIPT) == -1);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    test_cond("cleanup", system(cmd) == 0);
    test_report();
}
