/*
 * eddy_log — levelled log lines on stderr, and eddy_strerror.
 */
#include "eddy_log.h"
#include "eddy.h"
#include "eddy_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

int eddy_log_level = EDDY_LOG_INFO;
int eddy_log_json;
char eddy_log_name[32] = "eddy";

void eddy_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (level > eddy_log_level) {
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[4096];
    int n = snprintf(line, sizeof line, "%s %04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s: ",
                     names[level], tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), eddy_log_name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (eddy_log_json) {
        char ts[64];
        snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000));
        eddy_buf b = EDDY_BUF_INIT;
        eddy_buf_printf(&b, "{\"level\":\"%s\",\"time\":\"%s\",\"msg\":", names[level], ts);
        const char *msg = line + n;
        eddy_buf_json_string(&b, msg, strlen(msg));
        eddy_buf_append(&b, "}\n", 2);
        fwrite(b.data, 1, b.len, stderr);
        eddy_buf_free(&b);
        return;
    }
    size_t len = strlen(line);
    line[len] = '\n';
    fwrite(line, 1, len + 1, stderr);
}

const char *eddy_strerror(int err)
{
    switch (err) {
    case EDDY_OK:      return "success";
    case EDDY_EPARSE:  return "malformed input";
    case EDDY_ESCRIPT: return "script error";
    case EDDY_EKAFKA:  return "Kafka error";
    case EDDY_ETOPO:   return "invalid topology";
    case EDDY_EUSAGE:  return "usage error";
    case EDDY_ENOMEM:  return "out of memory";
    default:           return err > 0 ? strerror(err) : "unknown error";
    }
}
