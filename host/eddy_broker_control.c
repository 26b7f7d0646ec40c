/*
 * eddy_broker_control — parse one control command and apply it with the mock
 * API (see eddy_broker_control.h). librdkafka does not publish its RD_KAFKAP_*
 * request keys, so the Kafka API names map to the protocol's numeric keys here.
 */
#include "eddy_broker_control.h"
#include "eddy.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_WORDS  40          /* "errors API COUNT" and up to 37 error names */
#define MAX_COUNT  100000      /* errors pushed by one command */

static const struct { const char *name; int16_t key; } apis[] = {
    {"Produce", 0},            {"Fetch", 1},              {"ListOffsets", 2},
    {"Metadata", 3},           {"OffsetCommit", 8},       {"OffsetFetch", 9},
    {"FindCoordinator", 10},   {"JoinGroup", 11},         {"Heartbeat", 12},
    {"LeaveGroup", 13},        {"SyncGroup", 14},         {"DescribeGroups", 15},
    {"ListGroups", 16},        {"ApiVersions", 18},       {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23}, {"AddPartitionsToTxn", 24}, {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},            {"TxnOffsetCommit", 28},
};

/* Each command's word count (the command included) and its usage line. */
static const struct command { const char *name; int min, max; const char *usage; } commands[] = {
    {"down", 2, 2, "down BROKER_ID"},
    {"up", 2, 2, "up BROKER_ID"},
    {"errors", 4, MAX_WORDS, "errors API COUNT ERROR [ERROR...]"},
    {"topic", 3, 3, "topic NAME PARTITIONS"},
    {"leader", 4, 4, "leader TOPIC PARTITION BROKER_ID"},
    {"coordinator", 4, 4, "coordinator group|transaction KEY BROKER_ID"},
    {"rtt", 3, 3, "rtt BROKER_ID MS"},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (!strcmp(name, commands[i].name)) {
            return &commands[i];
        }
    }
    return NULL;
}

/* A whole-word integer in [lo, hi]. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_api(const char *s, int16_t *out)
{
    long v;
    if (parse_long(s, 0, 1000, &v) == 0) {
        *out = (int16_t)v;
        return 0;
    }
    for (size_t i = 0; i < sizeof apis / sizeof apis[0]; i++) {
        if (!strcasecmp(s, apis[i].name)) {
            *out = apis[i].key;
            return 0;
        }
    }
    return -1;
}

/* An error name as rd_kafka_err2name() prints it (the RD_KAFKA_RESP_ERR_ prefix
 * optional), or its number. */
static int parse_error(const char *s, rd_kafka_resp_err_t *out)
{
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    long v;
    if (parse_long(s, -200, 1000, &v) == 0) {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    if (!strncasecmp(s, prefix, sizeof prefix - 1)) {
        s += sizeof prefix - 1;
    }
    const struct rd_kafka_err_desc *descs;
    size_t n;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name && !strcasecmp(s, descs[i].name)) {
            *out = descs[i].code;
            return 0;
        }
    }
    return -1;
}

static int refused(rd_kafka_resp_err_t err, char *errstr, size_t errstr_size)
{
    snprintf(errstr, errstr_size, "the mock refused: %s (%s)", rd_kafka_err2str(err),
             rd_kafka_err2name(err));
    return EDDY_EKAFKA;
}

static int bad(char *errstr, size_t errstr_size, const char *what, const char *word)
{
    snprintf(errstr, errstr_size, "bad %s \"%s\"", what, word);
    return EDDY_EPARSE;
}

static int push_errors(rd_kafka_mock_cluster_t *mc, char **w, int nw,
                       char *errstr, size_t errstr_size)
{
    int16_t api;
    long count;
    rd_kafka_resp_err_t given[MAX_WORDS];
    if (parse_api(w[1], &api) != 0) {
        snprintf(errstr, errstr_size, "unknown API \"%s\" (a Kafka API name such as Produce, "
                 "Fetch, OffsetCommit, JoinGroup, or its numeric key)", w[1]);
        return EDDY_EPARSE;
    }
    if (parse_long(w[2], 1, MAX_COUNT, &count) != 0) {
        return bad(errstr, errstr_size, "COUNT (1..100000)", w[2]);
    }
    int ngiven = nw - 3;
    for (int i = 0; i < ngiven; i++) {
        if (parse_error(w[3 + i], &given[i]) != 0) {
            snprintf(errstr, errstr_size, "unknown error \"%s\" (a name as rd_kafka_err2name "
                     "prints it, e.g. NOT_COORDINATOR)", w[3 + i]);
            return EDDY_EPARSE;
        }
    }
    rd_kafka_resp_err_t *errs = malloc((size_t)count * sizeof *errs);
    if (!errs) {
        snprintf(errstr, errstr_size, "out of memory");
        return EDDY_ENOMEM;
    }
    for (long i = 0; i < count; i++) {
        errs[i] = given[i % ngiven];
    }
    rd_kafka_mock_push_request_errors_array(mc, api, (size_t)count, errs);
    free(errs);
    return 0;
}

int eddy_broker_control_apply(rd_kafka_mock_cluster_t *mc, const char *line,
                              char *errstr, size_t errstr_size)
{
    char buf[1024];
    char *w[MAX_WORDS];
    int nw = 0;
    if (strlen(line) >= sizeof buf) {
        snprintf(errstr, errstr_size, "command longer than %zu bytes", sizeof buf - 1);
        return EDDY_EPARSE;
    }
    snprintf(buf, sizeof buf, "%s", line);
    for (char *save, *t = strtok_r(buf, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
        if (nw == MAX_WORDS) {
            snprintf(errstr, errstr_size, "more than %d words", MAX_WORDS);
            return EDDY_EPARSE;
        }
        w[nw++] = t;
    }
    if (nw == 0) {
        snprintf(errstr, errstr_size, "empty command");
        return EDDY_EPARSE;
    }
    const char *cmd = w[0];
    const struct command *c = find_command(cmd);
    if (!c) {
        snprintf(errstr, errstr_size, "unknown command \"%s\" (commands: down, up, errors, "
                 "topic, leader, coordinator, rtt)", cmd);
        return EDDY_EPARSE;
    }
    if (nw < c->min || nw > c->max) {
        snprintf(errstr, errstr_size, "usage: %s", c->usage);
        return EDDY_EPARSE;
    }

    long id, n;
    rd_kafka_resp_err_t err;
    if (!strcmp(cmd, "down") || !strcmp(cmd, "up")) {
        if (parse_long(w[1], -1, INT32_MAX, &id) != 0) {
            return bad(errstr, errstr_size, "BROKER_ID", w[1]);
        }
        err = !strcmp(cmd, "down") ? rd_kafka_mock_broker_set_down(mc, (int32_t)id)
                                   : rd_kafka_mock_broker_set_up(mc, (int32_t)id);
    } else if (!strcmp(cmd, "errors")) {
        return push_errors(mc, w, nw, errstr, errstr_size);
    } else if (!strcmp(cmd, "topic")) {
        if (parse_long(w[2], 1, 100000, &n) != 0) {
            return bad(errstr, errstr_size, "PARTITIONS", w[2]);
        }
        err = rd_kafka_mock_topic_create(mc, w[1], (int)n, 1);
    } else if (!strcmp(cmd, "leader")) {
        if (parse_long(w[2], 0, INT32_MAX, &n) != 0) {
            return bad(errstr, errstr_size, "PARTITION", w[2]);
        }
        if (parse_long(w[3], -1, INT32_MAX, &id) != 0) {
            return bad(errstr, errstr_size, "BROKER_ID", w[3]);
        }
        err = rd_kafka_mock_partition_set_leader(mc, w[1], (int32_t)n, (int32_t)id);
    } else if (!strcmp(cmd, "coordinator")) {
        if (strcmp(w[1], "group") && strcmp(w[1], "transaction")) {
            return bad(errstr, errstr_size, "coordinator type (group or transaction)", w[1]);
        }
        if (parse_long(w[3], 0, INT32_MAX, &id) != 0) {
            return bad(errstr, errstr_size, "BROKER_ID", w[3]);
        }
        err = rd_kafka_mock_coordinator_set(mc, w[1], w[2], (int32_t)id);
    } else {   /* rtt */
        if (parse_long(w[1], -1, INT32_MAX, &id) != 0) {
            return bad(errstr, errstr_size, "BROKER_ID", w[1]);
        }
        if (parse_long(w[2], 0, 3600 * 1000, &n) != 0) {
            return bad(errstr, errstr_size, "MS", w[2]);
        }
        err = rd_kafka_mock_broker_set_rtt(mc, (int32_t)id, (int)n);
    }
    return err ? refused(err, errstr, errstr_size) : 0;
}
