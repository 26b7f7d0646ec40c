/*
 * eddy_broker — the embedded development broker (see eddy_broker.h).
 * 2.0.2's mock cluster picks its own ports, has no CreateTopics (we create
 * topics with its own API), auto-creates others with 4 partitions, and keeps
 * at most ~5 MiB per partition.
 */
#include "eddy_broker.h"
#include "eddy.h"
#include "eddy_log.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int eddy_broker_run(int nbrokers, const eddy_broker_topic *topics, int ntopics,
                    const char *bootstrap_file, volatile sig_atomic_t *stop)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        eddy_log_error("broker: %s", errstr);
        return EDDY_EKAFKA;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (!mc) {
        eddy_log_error("broker: cannot start the mock cluster");
        rd_kafka_destroy(rk);
        return EDDY_EKAFKA;
    }
    for (int i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topics[i].name,
                                                             topics[i].partitions, 1);
        if (err) {
            eddy_log_error("broker: cannot create topic %s: %s", topics[i].name,
                           rd_kafka_err2str(err));
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            return EDDY_EKAFKA;
        }
    }
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    printf("bootstrap: %s\n", bootstraps);
    fflush(stdout);
    if (bootstrap_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", bootstrap_file);
        FILE *fp = fopen(tmp, "w");
        if (!fp || fprintf(fp, "%s\n", bootstraps) < 0 || fclose(fp) != 0 ||
            rename(tmp, bootstrap_file) != 0) {
            eddy_log_error("broker: cannot write %s", bootstrap_file);
        }
    }
    eddy_log_info("broker: %d broker(s) at %s; %d topic(s) pre-created; others auto-created "
                  "with 4 partitions", nbrokers, bootstraps, ntopics);
    while (!*stop) {
        usleep(100 * 1000);
    }
    eddy_log_info("broker: stopping");
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
