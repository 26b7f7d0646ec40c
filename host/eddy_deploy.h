/*
 * eddy_deploy — versions published through the job's control topic
 * <app>-control, so that every instance of a job runs the same script:
 * `eddy deploy` publishes (signed with HMAC-SHA256 under EDDY_DEPLOY_KEY),
 * instances follow the topic and hand verified versions to the reload path.
 * Anyone who can write the topic could run code on every instance: unsigned
 * or mis-signed versions are refused, loudly, unless --allow-unsigned-deploy.
 */
#ifndef EDDY_DEPLOY_H
#define EDDY_DEPLOY_H

#include <stddef.h>

typedef struct eddy_deploy eddy_deploy;

/** @brief HMAC-SHA256(key, version "\n" script) as 64 hex digits. */
void eddy_deploy_sign(const char *key, const char *version, const char *script, size_t len,
                      char out[65]);

/**
 * @brief Publish @p script_path (already validated by the caller) as version
 *        @p version to <app_id>-control on @p brokers, signed with @p key (NULL:
 *        unsigned). @returns 0 or EDDY_EKAFKA with the reason in @p errstr.
 */
int eddy_deploy_publish(const char *script_path, const char *version, const char *brokers,
                        const char *app_id, const char *key, const char **props, int nprops,
                        char *errstr, size_t errstr_size);

/**
 * @brief Follow <app_id>-control from its beginning. Verified versions are
 *        written to @p dir/<version>.lua for the reload path to load.
 */
int  eddy_deploy_follow(eddy_deploy **out, const char *brokers, const char *app_id,
                        const char *dir, const char *key, int allow_unsigned,
                        const char **props, int nprops, char *errstr, size_t errstr_size);
void eddy_deploy_destroy(eddy_deploy *d);

/**
 * @brief The newest verified version published since the last call (waiting up
 *        to @p wait_ms for the topic's end), as a file path (valid until the next
 *        call), with its version in @p version; NULL when there is none.
 */
const char *eddy_deploy_poll(eddy_deploy *d, int wait_ms, char version[17]);

#endif
