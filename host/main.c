/*
 * main.c — the eddy command line: run, check, broker, version (CONTRACT.md).
 * Parses arguments, merges them over the script's eddy.job{...} options,
 * installs signal handlers and hands over to file mode or Kafka mode.
 */
#include "eddy.h"
#include "eddy_broker.h"
#include "eddy_workers.h"
#include "eddy_http.h"
#include "eddy_status.h"
#include "eddy_file.h"
#include "eddy_job.h"
#include "eddy_kafka.h"
#include "eddy_log.h"
#include "eddy_metrics.h"
#include "eddy_runner.h"
#include "eddy_sink.h"
#include "eddy_state.h"
#include "eddy_reload.h"
#include "eddy_deploy.h"
#include "eddy_watchdog.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <luajit.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t hup_flag;

static void on_hup(int sig)
{
    (void)sig;
    hup_flag = 1;
}

static void on_stop(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "eddy %s: ", cmd);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try: eddy %s --help)\n", cmd);
    return EDDY_EXIT_USAGE;
}

static const char *main_help =
    "eddy — Kafka Streams as one small C program; jobs are Lua scripts.\n"
    "\n"
    "usage:\n"
    "  eddy run SCRIPT [options]    run a job until stopped (Kafka) or until input ends (file)\n"
    "  eddy check SCRIPT            load and validate a script; print its topology\n"
    "  eddy broker [options]        start the embedded development broker\n"
    "  eddy deploy SCRIPT --brokers B  publish a signed script version to every instance\n"
    "  eddy test [SPEC...]          run busted specs with eddy and eddy.testing loaded\n"
    "  eddy stores SCRIPT STORE     print a store's entries (read-only) as JSON lines\n"
    "  eddy version                 print the version\n"
    "\n"
    "eddy COMMAND --help shows the options of a command.\n";

static const char *run_help =
    "usage: eddy run SCRIPT [options]\n"
    "\n"
    "  --brokers LIST            Kafka bootstrap servers (Kafka mode)\n"
    "  --input FILE|-            read source records from a file or stdin (file mode)\n"
    "  --input-format FMT        envelope (kcat -J lines, default) or lines (each line a value)\n"
    "  --output FILE|-           write sink records to a file (default in file mode: stdout)\n"
    "  --dlq FILE|-              where dead-lettered records go (file mode default: stderr)\n"
    "  --partitions N            partitions in file mode (default 1)\n"
    "  --state-dir DIR           where state lives (default ./.eddy-state)\n"
    "  --app-id ID               job name override: consumer group, state dir, topic prefix\n"
    "  --guarantee G             at_least_once (default) or exactly_once (Kafka mode)\n"
    "  --threads N               Kafka mode: N workers in the group (processes; default 1)\n"
    "  --http ADDR               serve /, /metrics, /status, /stores/<store>/<key>, POST /reload\n"
    "                            on PORT, HOST:PORT or :PORT (all interfaces); off by default\n"
    "  --http-token T            token for POST /reload (or EDDY_HTTP_TOKEN); required beyond loopback\n"
    "  --commit-interval MS      how often outputs are flushed and offsets/state committed (1000;\n"
    "                            file mode: also whenever the input pauses)\n"
    "  -X key=value              any librdkafka property (repeatable)\n"
    "  --watch / --no-watch      reload when the script is saved (default: on); SIGHUP reloads too\n"
    "  --allow-unsigned-deploy   accept unsigned versions from the control topic (development only)\n"
    "  --quiet                   only warnings and errors on stderr (and no progress line)\n"
    "  --log-format text|json    log lines as text (level and time first) or JSON objects\n"
    "\n"
    "Every option can also be set in the script: eddy.job{ name=..., brokers=..., ... }.\n"
    "The command line wins. Exit: 0 clean stop or end of input, 1 fatal error, 2 usage.\n";

static const char *check_help =
    "usage: eddy check SCRIPT [--dot | --mermaid]\n"
    "\n"
    "Load the script in a fresh Lua state, validate its topology and print it:\n"
    "the sources, each step with the script line that defined it, and the sinks.\n"
    "--dot / --mermaid print the topology as a Graphviz or Mermaid picture instead\n"
    "(sub-topologies, topics and stores included): eddy check job.lua --dot | dot -Tsvg.\n"
    "Exit 0 when the script is valid, 1 with one line naming file:line when not.\n";

static const char *broker_help =
    "usage: eddy broker [--brokers N] [--topic NAME:PARTITIONS]... [--bootstrap-file F]\n"
    "                   [--control PATH]\n"
    "\n"
    "Start librdkafka's mock cluster as a development broker (Kafka protocol over TCP).\n"
    "The first line on stdout is `bootstrap: HOST:PORT[,...]`. Topics not created with\n"
    "--topic are auto-created with 4 partitions. Runs until SIGINT/SIGTERM.\n"
    "Limits: ~5 MiB kept per partition (older data dropped silently), no compaction,\n"
    "no CreateTopics, transactions without markers.\n"
    "\n"
    "--control PATH creates a FIFO at PATH for fault injection: write one command per\n"
    "line (echo 'down 1' > PATH); each is acknowledged on stderr with\n"
    "`broker: control: CMD: ok` or an error line. Commands (BROKER_ID -1: every\n"
    "broker for down/up/rtt, no leader for leader):\n"
    "  down BROKER_ID | up BROKER_ID     disconnect a broker / accept connections again\n"
    "  errors API COUNT ERROR [ERROR...] fail the next COUNT requests of API (Produce,\n"
    "                                    Fetch, OffsetCommit, JoinGroup, ...) with ERROR\n"
    "                                    names as rd_kafka_err2name prints them\n"
    "  topic NAME PARTITIONS             create a topic\n"
    "  leader TOPIC PARTITION BROKER_ID  move a partition's leader\n"
    "  coordinator group|transaction KEY BROKER_ID   pin a coordinator\n"
    "  rtt BROKER_ID MS                  delay a broker's responses\n";

/* Where eddy's Lua modules are: $EDDY_LUA_DIR, next to a checkout's build/,
 * or under an install prefix's share/eddy/lua. */
static int find_lua_dir(char *out, size_t size)
{
    const char *env = getenv("EDDY_LUA_DIR");
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        return -1;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = '\0';
    }
    const char *cands[] = {"%s/../lua", "%s/../share/eddy/lua", "%s/lua"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        char path[PATH_MAX + 64];
        struct stat st;
        snprintf(out, size, cands[i], exe);
        snprintf(path, sizeof path, "%s/eddy/init.lua", out);
        if (stat(path, &st) == 0) {
            char *real = realpath(out, NULL);
            if (real) {
                snprintf(out, size, "%s", real);
                free(real);
            }
            return 0;
        }
    }
    return -1;
}

static int load_job(const char *cmd, const char *script, eddy_job **job)
{
    char lua_dir[PATH_MAX];
    char errstr[2048];
    struct stat st;
    if (stat(script, &st) != 0) {
        fprintf(stderr, "eddy %s: cannot open script %s: %s\n", cmd, script, strerror(errno));
        return EDDY_EXIT_USAGE;
    }
    if (find_lua_dir(lua_dir, sizeof lua_dir) != 0) {
        fprintf(stderr, "eddy %s: cannot find eddy's Lua modules (set EDDY_LUA_DIR)\n", cmd);
        return EDDY_EXIT_FATAL;
    }
    if (eddy_job_load(job, script, lua_dir, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "eddy %s: %s\n", cmd, errstr);
        return EDDY_EXIT_FATAL;
    }
    if (eddy_job_check_examples(*job, errstr, sizeof errstr) != 0) {
        fprintf(stderr, "eddy %s: %s: refused by its examples: %s\n", cmd, script, errstr);
        eddy_job_destroy(*job);
        *job = NULL;
        return EDDY_EXIT_FATAL;
    }
    return 0;
}

static int cmd_version(void)
{
    printf("eddy %s (librdkafka %s, %s, %s)\n", EDDY_VERSION, rd_kafka_version_str(),
           LUAJIT_VERSION, "LMDB");
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    const char *script = NULL;
    int picture = -1;                  /* 0 dot, 1 mermaid */
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(check_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--dot") || !strcmp(argv[i], "--mermaid")) {
            picture = !strcmp(argv[i], "--mermaid");
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("check", "unknown option %s", argv[i]);
        } else if (!script) {
            script = argv[i];
        } else {
            return usage_error("check", "unexpected argument %s", argv[i]);
        }
    }
    if (!script) {
        return usage_error("check", "%s", "a SCRIPT is required");
    }
    eddy_job *job;
    int rc = load_job("check", script, &job);
    if (rc) {
        return rc;
    }
    printf("%s\n", picture >= 0 ? eddy_job_picture(job, picture) : eddy_job_describe(job));
    eddy_job_destroy(job);
    return 0;
}

static int parse_int(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0 || v > 1000000) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int cmd_broker(int argc, char **argv)
{
    int nbrokers = 1;
    eddy_broker_topic topics[256];
    int ntopics = 0;
    const char *bootstrap_file = NULL, *control_path = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(broker_help, stdout);
            return 0;
        }
        if (i + 1 >= argc && (!strcmp(a, "--brokers") || !strcmp(a, "--topic") ||
                              !strcmp(a, "--bootstrap-file") || !strcmp(a, "--control"))) {
            return usage_error("broker", "%s needs a value", a);
        }
        if (!strcmp(a, "--brokers")) {
            if (parse_int(argv[++i], &nbrokers) != 0 || nbrokers > 16) {
                return usage_error("broker", "--brokers: expected 1..16, got %s", argv[i]);
            }
        } else if (!strcmp(a, "--topic")) {
            char *spec = argv[++i];
            char *colon = strrchr(spec, ':');
            int parts = 4;
            if (colon) {
                *colon = '\0';
                if (parse_int(colon + 1, &parts) != 0) {
                    return usage_error("broker", "--topic: bad partition count in %s", argv[i]);
                }
            }
            if (!*spec || ntopics == 256) {
                return usage_error("broker", "--topic: expected NAME:PARTITIONS, got %s", argv[i]);
            }
            topics[ntopics].name = spec;
            topics[ntopics++].partitions = parts;
        } else if (!strcmp(a, "--bootstrap-file")) {
            bootstrap_file = argv[++i];
        } else if (!strcmp(a, "--control")) {
            control_path = argv[++i];
        } else {
            return usage_error("broker", "unknown option %s", a);
        }
    }
    install_signals();
    return eddy_broker_run(nbrokers, topics, ntopics, bootstrap_file, control_path,
                           &stop_flag) == 0
               ? EDDY_EXIT_OK : EDDY_EXIT_FATAL;
}

typedef struct run_opts {
    const char *script, *brokers, *input, *input_format, *output, *dlq, *state_dir;
    const char *app_id, *guarantee, *commit_interval, *http, *http_token;
    int threads;
    int partitions;
    int quiet;
    int watch;                 /* 1 on, 0 off, -1 not given */
    int allow_unsigned;
    const char *props[128];
    int nprops;
} run_opts;

/* The command line wins; then the script's eddy.job{...}; then the default. */
static const char *pick(const char *cli, const eddy_job *job, const char *name, const char *def)
{
    if (cli) {
        return cli;
    }
    const char *v = eddy_job_option(job, name);
    return v ? v : def;
}

static int cmd_run(int argc, char **argv)
{
    run_opts o;
    memset(&o, 0, sizeof o);
    o.watch = -1;
    static const char *with_value[] = {"--brokers", "--input", "--input-format", "--output",
                                       "--dlq", "--partitions", "--state-dir", "--app-id",
                                       "--guarantee", "--commit-interval", "-X", "--http",
                                       "--threads", "--log-format", "--http-token", NULL};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(run_help, stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.quiet = 1;
            continue;
        }
        if (!strcmp(a, "--allow-unsigned-deploy")) {
            o.allow_unsigned = 1;
            continue;
        }
        if (!strcmp(a, "--watch") || !strcmp(a, "--no-watch")) {
            o.watch = !strcmp(a, "--watch");
            continue;
        }
        int takes = 0;
        for (int k = 0; with_value[k]; k++) {
            if (!strcmp(a, with_value[k])) {
                takes = 1;
            }
        }
        if (takes && i + 1 >= argc) {
            return usage_error("run", "%s needs a value", a);
        }
        if (!takes) {
            if (a[0] == '-' && a[1]) {
                return usage_error("run", "unknown option %s", a);
            }
            if (o.script) {
                return usage_error("run", "unexpected argument %s", a);
            }
            o.script = a;
            continue;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--brokers")) o.brokers = v;
        else if (!strcmp(a, "--input")) o.input = v;
        else if (!strcmp(a, "--input-format")) o.input_format = v;
        else if (!strcmp(a, "--output")) o.output = v;
        else if (!strcmp(a, "--dlq")) o.dlq = v;
        else if (!strcmp(a, "--state-dir")) o.state_dir = v;
        else if (!strcmp(a, "--app-id")) o.app_id = v;
        else if (!strcmp(a, "--guarantee")) o.guarantee = v;
        else if (!strcmp(a, "--commit-interval")) o.commit_interval = v;
        else if (!strcmp(a, "--log-format")) {
            if (strcmp(v, "json") && strcmp(v, "text")) {
                return usage_error("run", "--log-format: expected text or json, got %s", v);
            }
            eddy_log_json = !strcmp(v, "json");
        }
        else if (!strcmp(a, "--partitions")) {
            if (parse_int(v, &o.partitions) != 0) {
                return usage_error("run", "--partitions: expected a positive number, got %s", v);
            }
        } else if (!strcmp(a, "-X")) {
            if (!strchr(v, '=') || o.nprops == 128) {
                return usage_error("run", "-X: expected key=value, got %s", v);
            }
            o.props[o.nprops++] = v;
        } else if (!strcmp(a, "--threads")) {
            if (parse_int(v, &o.threads) != 0 || o.threads < 1 || o.threads > 64) {
                return usage_error("run", "--threads: expected 1..64, got %s", v);
            }
        } else if (!strcmp(a, "--http")) {
            o.http = v;
        } else if (!strcmp(a, "--http-token")) {
            o.http_token = v;
        }
    }
    if (!o.script) {
        return usage_error("run", "%s", "a SCRIPT is required");
    }
    if (o.quiet) {
        eddy_log_level = EDDY_LOG_WARN;
    }
    if (o.input && strcmp(o.input, "-") != 0 && access(o.input, R_OK) != 0) {
        fprintf(stderr, "eddy run: cannot open input %s: %s\n", o.input, strerror(errno));
        return EDDY_EXIT_USAGE;
    }
    eddy_job *job;
    int rc = load_job("run", o.script, &job);
    if (rc) {
        return rc;
    }
    const char *brokers = pick(o.brokers, job, "brokers", NULL);
    const char *input = pick(o.input, job, "input", NULL);
    const char *fmt = pick(o.input_format, job, "input_format", "envelope");
    const char *app_id = pick(o.app_id, job, "app_id", eddy_job_name(job));
    const char *guarantee = pick(o.guarantee, job, "guarantee", "at_least_once");
    int partitions = o.partitions;
    if (!partitions) {
        const char *p = eddy_job_option(job, "partitions");
        if (!p || parse_int(p, &partitions) != 0) {
            partitions = 1;
        }
    }
    char app_buf[256], fmt_buf[32], guar_buf[32];   /* option strings live in a shared buffer */
    snprintf(app_buf, sizeof app_buf, "%s", app_id);
    snprintf(fmt_buf, sizeof fmt_buf, "%s", fmt);
    snprintf(guar_buf, sizeof guar_buf, "%s", guarantee);
    char brokers_buf[1024] = "", input_buf[PATH_MAX] = "", output_buf[PATH_MAX] = "",
         dlq_buf[PATH_MAX] = "";
    if (brokers) snprintf(brokers_buf, sizeof brokers_buf, "%s", brokers);
    if (input) snprintf(input_buf, sizeof input_buf, "%s", input);
    const char *output = pick(o.output, job, "output", NULL);
    if (output) snprintf(output_buf, sizeof output_buf, "%s", output);
    const char *dlq = pick(o.dlq, job, "dlq", NULL);
    if (dlq) snprintf(dlq_buf, sizeof dlq_buf, "%s", dlq);
    int commit_ms = 1000;
    const char *ci = pick(o.commit_interval, job, "commit_interval", NULL);
    if (ci && parse_int(ci, &commit_ms) != 0) {
        eddy_job_destroy(job);
        return usage_error("run", "--commit-interval: expected milliseconds, got %s", ci);
    }

    if (strcmp(fmt_buf, "envelope") != 0 && strcmp(fmt_buf, "lines") != 0) {
        eddy_job_destroy(job);
        return usage_error("run", "--input-format: expected envelope or lines, got %s", fmt_buf);
    }
    int exactly_once = strcmp(guar_buf, "exactly_once") == 0;
    if (strcmp(guar_buf, "at_least_once") != 0 && !exactly_once) {
        eddy_job_destroy(job);
        return usage_error("run", "--guarantee: expected at_least_once or exactly_once, got %s",
                           guar_buf);
    }
    if (exactly_once && input_buf[0]) {
        eddy_job_destroy(job);
        return usage_error("run", "%s", "--guarantee exactly_once needs Kafka (--brokers): file "
                           "mode writes its outputs once per run already");
    }
    if (!input_buf[0] && !brokers_buf[0]) {
        eddy_job_destroy(job);
        return usage_error("run", "%s", "give --brokers (Kafka mode) or --input (file mode)");
    }
    int threads = o.threads;
    if (!threads) {
        const char *t = eddy_job_option(job, "threads");
        if (!t || parse_int(t, &threads) != 0 || threads < 1) {
            threads = 1;
        }
    }
    if (threads > 1 && input_buf[0]) {
        eddy_log_warn("--threads %d: file mode runs one worker (its input is one stream)", threads);
        threads = 1;
    }
    install_signals();
    int worker = 0;
    if (threads > 1) {
        int status = 0;
        int r = eddy_workers_run(threads, &worker, &status, &stop_flag, &hup_flag);
        if (r != 0) {
            eddy_job_destroy(job);
            if (r < 0) {
                fprintf(stderr, "eddy run: cannot start %d workers: %s\n", threads, strerror(errno));
                return EDDY_EXIT_FATAL;
            }
            return status;
        }
        snprintf(eddy_log_name, sizeof eddy_log_name, "eddy[w%d]", worker);
    }
    char errstr[2048] = "";
    if (eddy_job_configure(job, app_buf, input_buf[0] == '\0', partitions, errstr,
                           sizeof errstr) != 0) {
        fprintf(stderr, "eddy run: %s\n", errstr);
        eddy_job_destroy(job);
        return EDDY_EXIT_FATAL;
    }
    char version[17];
    eddy_reload_version(o.script, version);
    eddy_job_set_version(job, version);
    int watch = o.watch;
    if (watch < 0) {
        const char *w = eddy_job_option(job, "watch");
        watch = !(w && !strcmp(w, "false"));
    }
    int rollback_errors = 10;
    const char *rbe = eddy_job_option(job, "reload_rollback_errors");
    if (rbe && parse_int(rbe, &rollback_errors) != 0) {
        rollback_errors = 10;
    }
    eddy_reload *reload = NULL;
    {
        char lua_dir[PATH_MAX];
        find_lua_dir(lua_dir, sizeof lua_dir);
        eddy_reload_conf rc_conf = {o.script, lua_dir, app_buf, input_buf[0] == '\0', partitions,
                                    watch, &hup_flag};
        if (eddy_reload_new(&reload, &rc_conf, errstr, sizeof errstr) != 0) {
            fprintf(stderr, "eddy run: %s\n", errstr);
            eddy_job_destroy(job);
            return EDDY_EXIT_FATAL;
        }
    }
    eddy_log_info("job %s: version %s%s", eddy_job_name(job), version,
                  watch ? "; reloads when the script is saved (or on SIGHUP)" : "; reloads on SIGHUP");
    eddy_deploy *deploy = NULL;
    if (!input_buf[0]) {
        /* follow <app>-control: every instance runs the latest published version */
        char ddir[PATH_MAX + 300];
        const char *sd = pick(o.state_dir, job, "state_dir", "./.eddy-state");
        snprintf(ddir, sizeof ddir, "%s/%s", sd, app_buf);
        char cmd_dir[PATH_MAX + 320];
        snprintf(cmd_dir, sizeof cmd_dir, "%s/deploy", ddir);
        mkdir(sd, 0755);
        mkdir(ddir, 0755);
        const char *key = getenv("EDDY_DEPLOY_KEY");
        if (eddy_deploy_follow(&deploy, brokers_buf, app_buf, cmd_dir, key && *key ? key : NULL,
                               o.allow_unsigned, o.props, o.nprops, errstr, sizeof errstr) != 0) {
            eddy_log_warn("deploy: cannot follow %s-control: %s", app_buf, errstr);
            deploy = NULL;
        } else {
            char v[17];
            const char *path = eddy_deploy_poll(deploy, 3000, v);
            if (path && strcmp(v, version) != 0) {
                eddy_log_info("deploy: version %s is the latest on %s-control; starting with it", v,
                              app_buf);
                eddy_job *next = eddy_reload_load(reload, path, v, job);
                if (next) {
                    eddy_job_destroy(job);
                    job = next;
                }
            }
            eddy_reload_set_deploy(reload, deploy);
        }
    }
    int handler_timeout = 30000;
    const char *ht = eddy_job_option(job, "handler_timeout");
    if (ht) {
        handler_timeout = atoi(ht);     /* ms; 0 turns the watchdog off */
    }
    eddy_watchdog_start(handler_timeout);
    int exit_code = -1;                 /* >= 0: a start-up failure after this point */
    eddy_http *http = NULL;
    eddy_state *state = NULL;
    if (eddy_job_stateful(job)) {
        char dir[PATH_MAX + 256];
        const char *sd = pick(o.state_dir, job, "state_dir", "./.eddy-state");
        snprintf(dir, sizeof dir, "%s/%s", sd, app_buf);
        size_t map_size = 0;
        const char *ms = eddy_job_option(job, "state_map_size");
        if (ms) {
            map_size = (size_t)strtoull(ms, NULL, 10) << 20;    /* MiB */
        }
        if (eddy_state_open(&state, dir, map_size, errstr, sizeof errstr) != 0) {
            fprintf(stderr, "eddy run: %s\n", errstr);
            exit_code = EDDY_EXIT_FATAL;
            goto teardown;
        }
    }
    eddy_status_init(eddy_job_name(job), o.script, eddy_job_version(job),
                     input_buf[0] ? "file" : "kafka");
    const char *http_addr = pick(o.http, job, "http", NULL);
    if (http_addr && *http_addr) {
        char addr[300];
        snprintf(addr, sizeof addr, "%s", http_addr);
        char *colon = strrchr(addr, ':');
        char *portp = colon ? colon + 1 : addr;
        if (worker > 1 && atoi(portp) > 0) {
            /* --threads: worker N listens on the port + N - 1 */
            snprintf(portp, sizeof addr - (size_t)(portp - addr), "%d", atoi(portp) + worker - 1);
        }
        const char *token = o.http_token ? o.http_token : getenv("EDDY_HTTP_TOKEN");
        eddy_http_conf hc = {addr, token && *token ? token : NULL, &hup_flag};
        if ((rc = eddy_http_start(&http, &hc, errstr, sizeof errstr)) != 0) {
            fprintf(stderr, "eddy run: %s\n", errstr);
            exit_code = rc == EDDY_EUSAGE ? EDDY_EXIT_USAGE : EDDY_EXIT_FATAL;
            goto teardown;
        }
    }
    if (input_buf[0]) {
        /* file mode */
        eddy_sink *sink = NULL, *dlqs = NULL;
        eddy_runner *runner = NULL;
        const char *out_path = output_buf[0] ? output_buf : "-";
        const char *dlq_path = dlq_buf[0] ? dlq_buf : "stderr";
        if ((rc = eddy_sink_file_open(&sink, out_path, partitions, errstr, sizeof errstr)) ||
            (strcmp(dlq_path, out_path) == 0 ? (dlqs = sink, 0)
             : (rc = eddy_sink_file_open(&dlqs, dlq_path, partitions, errstr, sizeof errstr)))) {
            fprintf(stderr, "eddy run: %s\n", errstr);
            eddy_sink_destroy(sink);
            exit_code = EDDY_EXIT_USAGE;
            goto teardown;
        }
        eddy_runner_new(&runner, job, sink, dlqs, app_buf);
        eddy_runner_set_state(runner, state);
        eddy_file_conf fc = {input_buf, strcmp(fmt_buf, "lines") == 0, partitions, &stop_flag,
                             reload, rollback_errors, isatty(2) && !o.quiet, http, commit_ms};
        rc = eddy_file_run(runner, job, &fc, errstr, sizeof errstr);
        char cerr[1024] = "";
        int frc = rc ? 0 : eddy_runner_finish(runner);
        if (!frc && !rc) {
            frc = eddy_runner_commit(runner, cerr, sizeof cerr);
        }
        if (dlqs != sink) {
            eddy_sink_flush(dlqs);
            eddy_sink_destroy(dlqs);
        }
        eddy_sink_destroy(sink);
        eddy_runner_destroy(runner);
        if (rc == 0 && frc) {
            rc = frc;
            snprintf(errstr, sizeof errstr, "%s", cerr);
        }
        eddy_log_info("job %s: %llu record(s) in, %llu out, %llu error(s), %llu dead-lettered",
                      eddy_job_name(job), (unsigned long long)eddy_stats.records_in,
                      (unsigned long long)eddy_stats.records_out,
                      (unsigned long long)eddy_stats.errors,
                      (unsigned long long)eddy_stats.dead_lettered);
    } else {
        eddy_kafka_conf kc = {.brokers = brokers_buf, .app_id = app_buf, .props = o.props,
                              .nprops = o.nprops, .commit_interval_ms = commit_ms,
                              .output = output_buf[0] ? output_buf : NULL,
                              .dlq = dlq_buf[0] ? dlq_buf : NULL,
                              .file_partitions = partitions, .state = state,
                              .reload = reload, .rollback_errors = rollback_errors,
                              .exactly_once = exactly_once, .worker = worker, .http = http,
                              .state_dir = pick(o.state_dir, job, "state_dir", "./.eddy-state"),
                              .stop = &stop_flag};
        rc = eddy_kafka_run(job, &kc, errstr, sizeof errstr);
        eddy_log_info("job %s: %llu record(s) in, %llu out, %llu error(s), %llu dead-lettered",
                      eddy_job_name(job), (unsigned long long)eddy_stats.records_in,
                      (unsigned long long)eddy_stats.records_out,
                      (unsigned long long)eddy_stats.errors,
                      (unsigned long long)eddy_stats.dead_lettered);
    }
teardown:
    eddy_watchdog_stop();
    eddy_http_stop(http);
    eddy_state_close(state);
    eddy_reload_destroy(reload);
    eddy_deploy_destroy(deploy);
    eddy_job_destroy(job);
    if (exit_code >= 0) {
        return exit_code;      /* a start-up failure, already reported */
    }
    if (rc == EDDY_EUSAGE) {
        fprintf(stderr, "eddy run: %s\n", errstr);
        return EDDY_EXIT_USAGE;
    }
    if (rc) {
        fprintf(stderr, "eddy run: %s\n", errstr[0] ? errstr : eddy_strerror(rc));
        return EDDY_EXIT_FATAL;
    }
    return EDDY_EXIT_OK;
}

static const char *test_help =
    "usage: eddy test [SPEC...] [busted options]\n"
    "\n"
    "Run busted specs under eddy's LuaJIT with `eddy` and `eddy.testing` on the path\n"
    "(default: the specs in ./spec). Exit status and output are busted's.\n";

/* eddy test: busted (Debian's lua-busted) inside this binary's LuaJIT. */
static int cmd_test(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(test_help, stdout);
            return 0;
        }
    }
    char lua_dir[PATH_MAX], exe[PATH_MAX];
    if (find_lua_dir(lua_dir, sizeof lua_dir) != 0) {
        fprintf(stderr, "eddy test: cannot find eddy's Lua modules (set EDDY_LUA_DIR)\n");
        return EDDY_EXIT_FATAL;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    setenv("EDDY_BIN", exe, 1);
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;./?.lua;./spec/?.lua;%s", lua_dir, lua_dir,
                    lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    lua_createtable(L, argc + 1, 1);
    lua_pushstring(L, "busted");
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    const char *runner = "require('busted.runner')({ standalone = false })";
    if (luaL_dostring(L, runner) != 0) {
        fprintf(stderr, "eddy test: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return EDDY_EXIT_FATAL;
    }
    lua_close(L);
    return 0;
}

static const char *stores_help =
    "usage: eddy stores SCRIPT STORE [--state-dir DIR] [--app-id ID]\n"
    "\n"
    "Print every entry of STORE, in every task of the job's state, as JSON lines\n"
    "{\"task\":\"0_1\",\"key\":...,\"value\":...} (windowed stores add \"window\").\n"
    "Read-only: safe while the job runs.\n";

typedef struct dump_ctx {
    eddy_job   *job;
    const char *store;
} dump_ctx;

static int dump_entry(void *opaque, const char *task, const char *k, size_t klen, const char *v,
                      size_t vlen)
{
    dump_ctx *d = opaque;
    char line[65536];
    if (eddy_job_dump(d->job, d->store, k, klen, v, vlen, line, sizeof line)) {
        printf("{\"task\":\"%s\",%s\n", task, line + 1);
    }
    return 0;
}

static int cmd_stores(int argc, char **argv)
{
    const char *script = NULL, *store = NULL, *state_dir = NULL, *app_id = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(stores_help, stdout);
            return 0;
        }
        if ((!strcmp(a, "--state-dir") || !strcmp(a, "--app-id")) && i + 1 >= argc) {
            return usage_error("stores", "%s needs a value", a);
        }
        if (!strcmp(a, "--state-dir")) {
            state_dir = argv[++i];
        } else if (!strcmp(a, "--app-id")) {
            app_id = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return usage_error("stores", "unknown option %s", a);
        } else if (!script) {
            script = a;
        } else if (!store) {
            store = a;
        } else {
            return usage_error("stores", "unexpected argument %s", a);
        }
    }
    if (!script || !store) {
        return usage_error("stores", "%s", "SCRIPT and STORE are required");
    }
    setenv("EDDY_EXAMPLES", "off", 1);
    eddy_job *job;
    int rc = load_job("stores", script, &job);
    if (rc) {
        return rc;
    }
    char dir[PATH_MAX + 300], errstr[1024];
    const char *app = app_id ? app_id : (eddy_job_option(job, "app_id") ? eddy_job_option(job, "app_id")
                                                                        : eddy_job_name(job));
    char appbuf[256];
    snprintf(appbuf, sizeof appbuf, "%s", app);
    const char *sd = state_dir ? state_dir : (eddy_job_option(job, "state_dir")
                                              ? eddy_job_option(job, "state_dir") : "./.eddy-state");
    snprintf(dir, sizeof dir, "%s/%s", sd, appbuf);
    dump_ctx d = {job, store};
    rc = eddy_state_scan(dir, store, dump_entry, &d, errstr, sizeof errstr);
    eddy_job_destroy(job);
    if (rc) {
        fprintf(stderr, "eddy stores: %s\n", errstr);
        return EDDY_EXIT_FATAL;
    }
    return 0;
}

static const char *deploy_help =
    "usage: eddy deploy SCRIPT --brokers LIST [--app-id ID] [-X key=value]... [--unsigned]\n"
    "\n"
    "Check SCRIPT (as `eddy check` does), then publish it to the job's control topic\n"
    "<app-id>-control. Every running instance of the job (`eddy run --brokers ...`)\n"
    "follows that topic and reloads to the new version; an instance started later\n"
    "starts with the latest version. Versions are named by content hash and signed\n"
    "with HMAC-SHA256 under the key in EDDY_DEPLOY_KEY; instances verify with the\n"
    "same key and refuse anything unsigned or mis-signed unless they run with\n"
    "--allow-unsigned-deploy (development only). --unsigned publishes without a key.\n";

static int cmd_deploy(int argc, char **argv)
{
    const char *script = NULL, *brokers = NULL, *app_id = NULL;
    const char *props[128];
    int nprops = 0, unsigned_ok = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(deploy_help, stdout);
            return 0;
        }
        if (!strcmp(a, "--unsigned")) {
            unsigned_ok = 1;
            continue;
        }
        if ((!strcmp(a, "--brokers") || !strcmp(a, "--app-id") || !strcmp(a, "-X")) && i + 1 >= argc) {
            return usage_error("deploy", "%s needs a value", a);
        }
        if (!strcmp(a, "--brokers")) {
            brokers = argv[++i];
        } else if (!strcmp(a, "--app-id")) {
            app_id = argv[++i];
        } else if (!strcmp(a, "-X")) {
            if (nprops == 128) {
                return usage_error("deploy", "%s", "too many -X");
            }
            props[nprops++] = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return usage_error("deploy", "unknown option %s", a);
        } else if (!script) {
            script = a;
        } else {
            return usage_error("deploy", "unexpected argument %s", a);
        }
    }
    if (!script) {
        return usage_error("deploy", "%s", "a SCRIPT is required");
    }
    const char *key = getenv("EDDY_DEPLOY_KEY");
    if ((!key || !*key) && !unsigned_ok) {
        fprintf(stderr, "eddy deploy: EDDY_DEPLOY_KEY is not set: instances refuse unsigned "
                        "versions (use --unsigned only with --allow-unsigned-deploy instances)\n");
        return EDDY_EXIT_USAGE;
    }
    eddy_job *job;
    int rc = load_job("deploy", script, &job);
    if (rc) {
        return rc;
    }
    if (!brokers) {
        brokers = eddy_job_option(job, "brokers");
    }
    if (!brokers) {
        eddy_job_destroy(job);
        return usage_error("deploy", "%s", "--brokers is required");
    }
    char app[256], brk[1024], version[17], errstr[1024];
    snprintf(app, sizeof app, "%s", app_id ? app_id : (eddy_job_option(job, "app_id")
                                                         ? eddy_job_option(job, "app_id")
                                                         : eddy_job_name(job)));
    snprintf(brk, sizeof brk, "%s", brokers);
    eddy_job_destroy(job);
    eddy_reload_version(script, version);
    rc = eddy_deploy_publish(script, version, brk, app, (key && *key) ? key : NULL, props, nprops,
                             errstr, sizeof errstr);
    if (rc) {
        fprintf(stderr, "eddy deploy: %s\n", errstr);
        return EDDY_EXIT_FATAL;
    }
    printf("deployed %s (%s) to %s-control%s\n", version, script, app,
           (key && *key) ? ", signed" : ", UNSIGNED");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(main_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EDDY_EXIT_USAGE : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        return cmd_version();
    }
    if (!strcmp(cmd, "run")) {
        return cmd_run(argc - 2, argv + 2);
    }
    if (!strcmp(cmd, "check")) {
        return cmd_check(argc - 2, argv + 2);
    }
    if (!strcmp(cmd, "broker")) {
        return cmd_broker(argc - 2, argv + 2);
    }
    if (!strcmp(cmd, "deploy")) {
        return cmd_deploy(argc - 2, argv + 2);
    }
    if (!strcmp(cmd, "test")) {
        return cmd_test(argc - 2, argv + 2);
    }
    if (!strcmp(cmd, "stores")) {
        return cmd_stores(argc - 2, argv + 2);
    }
    fprintf(stderr, "eddy: unknown command %s (try: eddy --help)\n", cmd);
    return EDDY_EXIT_USAGE;
}
