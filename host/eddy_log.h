/*
 * eddy_log — one line per event on stderr: level and time first.
 */
#ifndef EDDY_LOG_H
#define EDDY_LOG_H

enum { EDDY_LOG_ERROR, EDDY_LOG_WARN, EDDY_LOG_INFO, EDDY_LOG_DEBUG };

extern int eddy_log_level;
extern char eddy_log_name[32];  /* "eddy", or "eddy[w2]" in a --threads worker */
extern int eddy_log_json;      /* 1: one JSON object per line (--log-format json) */

void eddy_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define eddy_log_error(...) eddy_log(EDDY_LOG_ERROR, __VA_ARGS__)
#define eddy_log_warn(...)  eddy_log(EDDY_LOG_WARN, __VA_ARGS__)
#define eddy_log_info(...)  eddy_log(EDDY_LOG_INFO, __VA_ARGS__)
#define eddy_log_debug(...) eddy_log(EDDY_LOG_DEBUG, __VA_ARGS__)

#endif
