/*
 * eddy.h — error codes and shared definitions of the eddy host.
 * Functions return 0 on success, a positive errno passed through, or a
 * negative EDDY_E* code; eddy_strerror() decodes both (as lmdb.h does).
 */
#ifndef EDDY_H
#define EDDY_H

#include <stddef.h>
#include <stdint.h>

#define EDDY_VERSION "0.1.0"

#define EDDY_OK        0
#define EDDY_EPARSE   -30700   /* malformed input (envelope line, option) */
#define EDDY_ESCRIPT  -30701   /* the Lua script failed (load or handler) */
#define EDDY_EKAFKA   -30702   /* a Kafka error */
#define EDDY_ETOPO    -30703   /* the topology is invalid */
#define EDDY_EUSAGE   -30704   /* bad command line */
#define EDDY_ENOMEM   -30705

/** @brief A readable message for any eddy return code or errno. */
const char *eddy_strerror(int err);

/** Exit statuses of the CLI (CONTRACT: 0 ok, 1 fatal, 2 usage). */
#define EDDY_EXIT_OK     0
#define EDDY_EXIT_FATAL  1
#define EDDY_EXIT_USAGE  2

#endif
