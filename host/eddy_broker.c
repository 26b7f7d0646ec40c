/*
 * eddy_broker — the embedded development broker (see eddy_broker.h).
 * 2.0.2's mock cluster picks its own ports, has no CreateTopics (we create
 * topics with its own API), auto-creates others with 4 partitions, and keeps
 * at most ~5 MiB per partition. With a control FIFO, the serve loop polls it
 * and applies each command line (eddy_broker_control).
 */
#include "eddy_broker.h"
#include "eddy.h"
#include "eddy_broker_control.h"
#include "eddy_log.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The control FIFO: a non-blocking reader, plus a writer of our own so the
 * reader never sees EOF (and poll() never spins) between two clients. */
typedef struct control {
    const char *path;
    int         rfd, wfd;
    char        line[1024];
    size_t      len;
    int         overlong;      /* discarding the rest of a line too long for line[] */
} control;

static int control_open(control *ctl, const char *path)
{
    struct stat st;
    ctl->path = path;
    ctl->rfd = ctl->wfd = -1;
    ctl->len = 0;
    ctl->overlong = 0;
    if (lstat(path, &st) == 0) {
        if (!S_ISFIFO(st.st_mode)) {
            eddy_log_error("broker: --control %s: exists and is not a FIFO; not replacing it",
                           path);
            return EDDY_EUSAGE;
        }
        if (unlink(path) != 0) {
            eddy_log_error("broker: --control %s: cannot remove the stale FIFO: %s", path,
                           strerror(errno));
            return errno;
        }
    }
    if (mkfifo(path, 0600) != 0) {
        eddy_log_error("broker: --control %s: mkfifo: %s", path, strerror(errno));
        return errno;
    }
    ctl->rfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (ctl->rfd >= 0) {
        ctl->wfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    }
    if (ctl->rfd < 0 || ctl->wfd < 0) {
        int err = errno;
        eddy_log_error("broker: --control %s: open: %s", path, strerror(err));
        if (ctl->rfd >= 0) close(ctl->rfd);
        unlink(path);
        return err;
    }
    return 0;
}

static void control_close(control *ctl)
{
    if (ctl->rfd < 0) {
        return;
    }
    close(ctl->rfd);
    close(ctl->wfd);
    unlink(ctl->path);
    ctl->rfd = ctl->wfd = -1;
}

static void control_line(rd_kafka_mock_cluster_t *mc, char *line)
{
    char errstr[512];
    size_t n = strlen(line);
    while (n > 0 && strchr(" \t\r", line[n - 1])) {
        line[--n] = '\0';
    }
    while (*line == ' ' || *line == '\t') {
        line++;
    }
    if (*line == '\0' || *line == '#') {
        return;
    }
    if (eddy_broker_control_apply(mc, line, errstr, sizeof errstr) == 0) {
        eddy_log_info("broker: control: %s: ok", line);
    } else {
        eddy_log_error("broker: control: %s: %s", line, errstr);
    }
}

/* Read what the FIFO holds and apply every complete line. */
static void control_read(control *ctl, rd_kafka_mock_cluster_t *mc)
{
    char buf[4096];
    ssize_t got;
    while ((got = read(ctl->rfd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < got; i++) {
            if (buf[i] == '\n') {
                if (ctl->overlong) {
                    eddy_log_error("broker: control: a command longer than %zu bytes: ignored",
                                   sizeof ctl->line - 1);
                } else {
                    ctl->line[ctl->len] = '\0';
                    control_line(mc, ctl->line);
                }
                ctl->len = 0;
                ctl->overlong = 0;
            } else if (ctl->len + 1 < sizeof ctl->line) {
                ctl->line[ctl->len++] = buf[i];
            } else {
                ctl->overlong = 1;
            }
        }
    }
    if (got < 0 && errno != EAGAIN && errno != EINTR) {
        eddy_log_error("broker: control: read %s: %s; closing the control channel", ctl->path,
                       strerror(errno));
        control_close(ctl);
    }
}

int eddy_broker_run(int nbrokers, const eddy_broker_topic *topics, int ntopics,
                    const char *bootstrap_file, const char *control_path,
                    volatile sig_atomic_t *stop)
{
    char errstr[512];
    control ctl = {.rfd = -1, .wfd = -1};
    if (control_path) {
        int rc = control_open(&ctl, control_path);
        if (rc != 0) {
            return rc;
        }
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        eddy_log_error("broker: %s", errstr);
        control_close(&ctl);
        return EDDY_EKAFKA;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, nbrokers);
    if (!mc) {
        eddy_log_error("broker: cannot start the mock cluster");
        rd_kafka_destroy(rk);
        control_close(&ctl);
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
            control_close(&ctl);
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
    if (control_path) {
        eddy_log_info("broker: control commands read from %s", control_path);
    }
    while (!*stop) {
        if (ctl.rfd < 0) {
            usleep(100 * 1000);
            continue;
        }
        struct pollfd pfd = {.fd = ctl.rfd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            control_read(&ctl, mc);
        }
    }
    eddy_log_info("broker: stopping");
    control_close(&ctl);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
